//! `lethe verify`: an exported model.onnx run by ONNX Runtime against the checkpoint run by
//! candle.

use super::args::DataArgs;
use super::{gated, Output};
use clap::Args;
use lethe::pipeline::inspect;
use lethe::report::render;
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct VerifyArgs {
    /// A directory with config.json, safetensors and model.onnx (as `lethe unlearn --out`
    /// writes), or a hub id. Classifiers are compared on --data; text models on fixed token
    /// sequences.
    pub dir: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Compare at most this many samples of each set.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub onnxruntime: Option<PathBuf>,
}

pub fn run(a: &VerifyArgs, out: &Output) -> Result<ExitCode, Error> {
    out.full_precision_only("verify")?;
    let parity = inspect::verify_dir(
        &a.dir,
        || a.data.spec(),
        a.onnxruntime.as_deref(),
        a.limit,
        &out.device(None)?,
        out.progress(),
    )?;
    out.result(&parity, || {
        format!("{}: {}", a.dir.display(), render::parity_line(&parity))
    });
    Ok(gated(parity.passed))
}
