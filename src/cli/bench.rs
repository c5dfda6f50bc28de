//! `lethe bench`: time and peak memory per step of igs, igs fast, egs and fine-tuning on the same
//! samples of a classifier.

use super::args::{DataArgs, ForgetArgs, MethodArgs};
use super::{or_bundled, Output, BUNDLED_MODEL};
use clap::Args;
use lethe::bench::{self, BenchJob};
use lethe::data::ForgetSpec;
use lethe::defaults;
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct BenchArgs {
    /// The model [default: models/fashion-mnist-mlp, in lethe's source checkout].
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub forget: ForgetArgs,
    #[arg(long, default_value_t = defaults::FORGET_SEED)]
    pub forget_seed: u64,
    #[command(flatten)]
    pub method: MethodArgs,
    /// Measured steps per method and round.
    #[arg(long, default_value_t = 40)]
    pub bench_steps: usize,
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Rounds over all methods (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

pub fn run(a: &BenchArgs, out: &Output) -> Result<ExitCode, Error> {
    let forget = a
        .forget
        .spec(a.forget_seed)
        .unwrap_or(ForgetSpec::Class("0".into()));
    let job = BenchJob {
        model: or_bundled(a.model.as_deref(), BUNDLED_MODEL, "a model")?,
        device: out.device(None)?,
        progress: out.progress(),
        data: a.data.spec()?,
        forget: forget.clone(),
        batch_size: a.method.batch_size,
        steps: a.bench_steps,
        warmup: a.warmup,
        rounds: a.rounds.max(1),
        base: a.method.config(&forget),
    };
    let progress = out.progress();
    let rows = bench::run(&job, |name, round| {
        if progress {
            eprintln!("round {} · {name}", round + 1);
        }
    })?;
    out.result(&rows, || {
        let mut s = format!(
            "{:<16} {:>10} {:>9} {:>12} {:>9} {:>6} {:>6}\n",
            "method", "ms/step", "× ft", "peak MiB", "× ft", "fwd", "bwd"
        );
        for r in &rows {
            s.push_str(&format!(
                "{:<16} {:>10.3} {:>9.3} {:>12.2} {:>9.3} {:>6.1} {:>6.1}\n",
                r.method,
                r.step_ms,
                r.time_vs_ft,
                r.peak_bytes as f64 / (1024.0 * 1024.0),
                r.memory_vs_ft,
                r.forwards_per_step,
                r.backwards_per_step
            ));
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}
