//! `lethe eval-text`: a language model's figures on forget and retain question/answer sets, and
//! the field's measures of forgetting where the data and a reference model allow them.

use super::args::TextSetArgs;
use super::Output;
use clap::Args;
use lethe::pipeline::measure_text::{self, MeasureSettings};
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
    let device = out.device(None)?;
    let m = measure_text::eval_text(
        &a.model,
        &a.sets.files(),
        a.sets.reference.as_deref(),
        a.sets.prompt_format,
        &MeasureSettings {
            max_new_tokens: a.sets.max_new_tokens,
            perplexity_tokens: a.sets.perplexity_tokens,
            retain_questions: a.sets.retain_questions.map(|n| n as usize),
            precision: out.precision(None, &device, true)?,
            progress: out.progress(),
            chat_template_kwargs: a.sets.chat.vars(),
        },
        &device,
    )?;
    out.result(&m, || render::evaluation(&m));
    Ok(ExitCode::SUCCESS)
}
