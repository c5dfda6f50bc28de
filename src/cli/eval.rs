//! `lethe eval`: UA, RA, TA and MIA-efficacy of a classifier for a forget set.

use super::args::{DataArgs, ForgetArgs};
use super::{or_bundled, Output, BUNDLED_MODEL};
use clap::Args;
use lethe::defaults;
use lethe::pipeline::classifier;
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct EvalArgs {
    /// The model [default: models/fashion-mnist-mlp, in lethe's source checkout].
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub forget: ForgetArgs,
    #[arg(long, default_value_t = defaults::FORGET_SEED)]
    pub forget_seed: u64,
    /// Seed of the membership-inference attack's sampling.
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
}

pub fn run(a: &EvalArgs, out: &Output) -> Result<ExitCode, Error> {
    let forget = a.forget.required(a.forget_seed)?;
    let model = or_bundled(a.model.as_deref(), BUNDLED_MODEL, "a model")?;
    let device = out.device(None)?;
    let data = a.data.spec()?;
    let (m, split) = classifier::eval(&model, &data, &forget, a.seed, &device, out.progress())?;
    let result = serde_json::json!({
        "model": model.display().to_string(),
        "forget": forget.describe(),
        "forget_samples": split.forget.len(),
        "retain_samples": split.retain.len(),
        "metrics": m,
    });
    out.result(&result, || {
        format!(
            "{}: forget {} ({} samples): UA {:.2} %  RA {:.2} %  TA {:.2} %  MIA {:.2} %\n",
            model.display(),
            forget.describe(),
            split.forget.len(),
            m.ua,
            m.ra,
            m.ta,
            m.mia
        )
    });
    Ok(ExitCode::SUCCESS)
}
