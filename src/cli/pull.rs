//! `lethe pull`: a checkpoint from a Hugging Face hub into the shared cache (docs/hub.md).

use super::Output;
use clap::Args;
use lethe::hub::{self, HubEnv, HubId};
use lethe::Error;
use std::process::ExitCode;

#[derive(Args)]
pub struct PullArgs {
    /// The repository: org/name or org/name@revision.
    pub repo: String,
}

pub fn run(a: &PullArgs, out: &Output) -> Result<ExitCode, Error> {
    let id = HubId::parse(&a.repo).ok_or_else(|| {
        Error::Usage(format!(
            "{:?} is not a hub id of the form org/name[@revision]",
            a.repo
        ))
    })?;
    let dir = hub::pull(&id, &HubEnv::from_env(), out.progress())?;
    let result = serde_json::json!({
        "repo": id.repo,
        "revision": id.revision,
        "path": dir.display().to_string(),
    });
    out.result(&result, || format!("{}\n", dir.display()));
    Ok(ExitCode::SUCCESS)
}
