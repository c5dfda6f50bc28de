//! `lethe pull`: a checkpoint from a Hugging Face hub into the shared cache (docs/hub.md).

use super::Output;
use clap::Args;
use lethe::hub::{self, FileFilter, HubEnv, HubId};
use lethe::Error;
use std::process::ExitCode;

#[derive(Args)]
pub struct PullArgs {
    /// The repository: org/name or org/name@revision.
    pub repo: String,
    /// The revision (branch, tag or commit), as after `@`.
    #[arg(long)]
    pub revision: Option<String>,
    /// Fetch exactly the files matching this glob instead of the checkpoint's (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out the files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
}

pub fn run(a: &PullArgs, out: &Output) -> Result<ExitCode, Error> {
    let not_an_id = || {
        Error::Usage(format!(
            "{:?} is not a hub id of the form org/name[@revision]",
            a.repo
        ))
    };
    let mut id = HubId::parse(&a.repo).ok_or_else(not_an_id)?;
    if let Some(revision) = &a.revision {
        if a.repo.contains('@') && &id.revision != revision {
            return Err(Error::Usage(format!(
                "{} names revision {} and --revision names {revision}: give one",
                a.repo, id.revision
            )));
        }
        id = HubId::parse(&format!("{}@{revision}", id.repo))
            .ok_or_else(|| Error::Usage(format!("{revision:?} is not a valid revision")))?;
    }
    let filter = FileFilter {
        include: a.include.clone(),
        exclude: a.exclude.clone(),
    };
    let dir = hub::pull_files(&id, &HubEnv::from_env(), &filter, out.progress())?;
    let result = serde_json::json!({
        "repo": id.repo,
        "revision": id.revision,
        "path": dir.display().to_string(),
    });
    out.result(&result, || format!("{}\n", dir.display()));
    Ok(ExitCode::SUCCESS)
}
