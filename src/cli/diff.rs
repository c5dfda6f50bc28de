//! `lethe diff`: what changed between two models, per tensor and in their outputs, in the
//! terminal, as JSON and as a self-contained HTML page.

use super::Output;
use clap::Args;
use lethe::diff::{self, DiffReport, Probe};
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct DiffArgs {
    /// The model before (a checkpoint directory or hub id).
    pub a: PathBuf,
    /// The model after.
    pub b: PathBuf,
    /// Probe data: its test split is run through both models (a directory of IDX files, or a
    /// file with --test-data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Language models: JSONL probe ({"question", "answer"} or {"text"} per line); both models'
    /// greedy continuations are shown side by side.
    #[arg(long, conflicts_with = "data")]
    pub prompts: Option<PathBuf>,
    /// Longest greedy continuation for --prompts.
    #[arg(long, default_value_t = lethe::defaults::text::MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Write a self-contained HTML report with plots here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Tensors to list in the terminal summary.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

pub fn run(a: &DiffArgs, out: &Output) -> Result<ExitCode, Error> {
    let probe = match (&a.data, &a.prompts) {
        (Some(d), _) => Some(Probe::Data(diff::probe_spec(d, a.test_data.as_deref()))),
        (None, Some(p)) => Some(Probe::Prompts {
            file: p.clone(),
            max_new_tokens: a.max_new_tokens,
        }),
        (None, None) => None,
    };
    let device = out.device(None)?;
    let precision = out.precision(None, &device, true)?;
    let report = diff::diff(
        &a.a,
        &a.b,
        probe.as_ref(),
        &device,
        precision,
        out.progress(),
    )?;
    if let Some(path) = &a.html {
        write_whole(path, lethe::report::html::diff_page(&report).as_bytes())?;
    }
    out.result(&report, || summary(&report, a));
    Ok(ExitCode::SUCCESS)
}

/// Writes a file under a temporary name and renames it into place: whole or not at all.
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("html.partial");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(path, e)
        })
}

fn summary(report: &DiffReport, a: &DiffArgs) -> String {
    let mut s = format!(
        "{} of {} shared tensors changed\n",
        report.changed_tensors,
        report.tensors.len()
    );
    for t in report.tensors.iter().take(a.top) {
        s.push_str(&format!(
            "  {:<32} rel {:>10.6}  max |Δ| {:>10.6}\n",
            t.name, t.relative_frobenius, t.max_abs_change
        ));
    }
    if let Some(o) = &report.outputs {
        s.push_str(&format!(
            "outputs on {} samples: mean KL {:.4}, top-1 flips {} ({:.2} %)\n",
            o.samples, o.mean_kl, o.top1_flips, o.flip_rate
        ));
        for c in &o.per_class_accuracy {
            s.push_str(&format!(
                "  {:<16} {:>7.2} % → {:>7.2} %\n",
                c.label, c.a, c.b
            ));
        }
    }
    if let Some(o) = &report.text_outputs {
        s.push_str(&format!(
            "outputs on {} prompts: mean next-token KL {:.4} (largest {:.4}); {} greedy continuations changed\n",
            o.prompts, o.mean_kl, o.max_kl, o.changed_generations
        ));
        for g in &o.generations {
            s.push_str(&format!("  {}\n    A: {}\n    B: {}\n", g.prompt, g.a, g.b));
        }
    }
    if let Some(p) = &a.html {
        s.push_str(&format!("HTML report: {}\n", p.display()));
    }
    s
}
