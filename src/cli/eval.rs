//! `lethe eval`: UA, RA, TA and MIA-efficacy of a classifier for a forget set.

use super::args::ClassifierArgs;
use super::Output;
use clap::Args;
use lethe::defaults;
use lethe::pipeline::classifier;
use lethe::Error;
use std::process::ExitCode;

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub classifier: ClassifierArgs,
    /// Seed of the membership-inference attack's sampling.
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
}

pub fn run(a: &EvalArgs, out: &Output) -> Result<ExitCode, Error> {
    let c = &a.classifier;
    let forget = c.forget.required(c.forget_seed)?;
    let model = c.model()?;
    let device = super::classifier_device(out)?;
    let data = c.data.spec()?;
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
