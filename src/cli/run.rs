//! `lethe run`: a whole unlearning job described by one TOML file (docs/job.md).

use super::{print_json, unlearn, unlearn_text, Output};
use clap::Args;
use lethe::job::{self, JobFile};
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct RunArgs {
    /// The job file.
    pub job: PathBuf,
    /// Check the file, open the model, and print the resolved job without running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the outputs here instead of the job's [output] dir.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: &RunArgs, out: &Output) -> Result<ExitCode, Error> {
    let mut file = JobFile::read(&a.job)?;
    if let Some(note) = file.check_provenance(&a.job)? {
        out.note(&note);
    }
    // The command line's device and dtype replace the file's before the defaults are resolved:
    // the default dtype depends on the device.
    if let Some(device) = out.device_flag() {
        file.model.device = Some(device.to_string());
    }
    if let Some(dtype) = out.dtype_flag() {
        file.model.dtype = Some(dtype.to_string());
    }
    let mut resolved = file.resolved(&a.job)?;
    if let Some(dir) = &a.out {
        resolved.output.dir = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    }
    // The device is checked (and the process prepared for it) before anything is opened.
    out.device(resolved.model.device.as_deref())?;
    resolved.provenance = Some(resolved.provenance()?);
    let toml = resolved.to_toml();
    let attachment = (job::RESOLVED_FILE.to_string(), toml.clone().into_bytes());
    if resolved.is_text() {
        let mut job = resolved.to_text_job(&a.job, out.progress())?;
        if a.dry_run {
            // Opening the model checks config, weights, tokenizer and architecture.
            lethe::model::LanguageModel::open(
                &job.model,
                &job.device,
                job.precision,
                out.progress(),
            )?;
            return dry_run(&toml, out);
        }
        job.output.attachments.push(attachment);
        return unlearn_text::run_job(&job, out);
    }
    let mut job = resolved.to_classifier_job(&a.job, out.progress())?;
    if a.dry_run {
        lethe::model::Opened::<lethe::arch::Classifier>::open(
            &job.model,
            &job.device,
            out.progress(),
        )?;
        return dry_run(&toml, out);
    }
    job.output.attachments.push(attachment);
    unlearn::run_job(&job, out)
}

/// The resolved job: as TOML, or inside JSON with --json.
fn dry_run(toml: &str, out: &Output) -> Result<ExitCode, Error> {
    if out.json {
        let value: toml::Value = toml::from_str(toml).expect("a resolved job parses");
        print_json(&serde_json::json!({ "resolved_job": value }));
    } else {
        print!("{toml}");
    }
    Ok(ExitCode::SUCCESS)
}
