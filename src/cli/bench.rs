//! `lethe bench`: time and peak memory per step of igs, igs fast, egs and fine-tuning on the same
//! samples of a classifier.

use super::args::{ClassifierArgs, MethodArgs};
use super::Output;
use clap::Args;
use lethe::bench::{self, BenchJob};
use lethe::data::ForgetSpec;
use lethe::Error;
use std::process::ExitCode;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub classifier: ClassifierArgs,
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
    let c = &a.classifier;
    let forget = c
        .forget
        .spec(c.forget_seed)
        .unwrap_or(ForgetSpec::Class("0".into()));
    let job = BenchJob {
        model: c.model()?,
        device: super::classifier_device(out)?,
        progress: out.progress(),
        data: c.data.spec()?,
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
