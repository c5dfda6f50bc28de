//! `lethe eval-text`: a language model's figures on forget and retain question/answer sets.

use super::args::TextSetArgs;
use super::Output;
use clap::Args;
use lethe::pipeline::text::{self, MeasureSettings};
use lethe::report::render;
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct EvalTextArgs {
    /// A causal LM checkpoint directory or hub id.
    pub model: PathBuf,
    #[command(flatten)]
    pub sets: TextSetArgs,
}

pub fn run(a: &EvalTextArgs, out: &Output) -> Result<ExitCode, Error> {
    let m = text::eval_text(
        &a.model,
        &a.sets.forget_set,
        &a.sets.retain_set,
        a.sets.eval_text.as_deref(),
        a.sets.prompt_format,
        &MeasureSettings {
            max_new_tokens: a.sets.max_new_tokens,
            perplexity_tokens: a.sets.perplexity_tokens,
            progress: out.progress(),
        },
        &out.device(None)?,
    )?;
    out.result(&m, || render::text_metrics(&m));
    Ok(ExitCode::SUCCESS)
}
