//! `lethe unlearn`: forget a class or samples from a classifier, export, verify, report.

use super::args::{ClassifierArgs, MethodArgs, OutputArgs};
use super::{gated, Output};
use clap::Args;
use lethe::pipeline::{self, classifier::ClassifierRun, ClassifierJob, ClassifierSpec};
use lethe::report::{render, GateSpec};
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct UnlearnArgs {
    #[command(flatten)]
    pub classifier: ClassifierArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    /// Train only parameters matching these globs (repeatable; default: all).
    #[arg(long = "train", value_name = "GLOB", default_value = "*")]
    pub train_patterns: Vec<String>,
    /// Keep parameters matching these globs frozen (repeatable).
    #[arg(long = "freeze", value_name = "GLOB")]
    pub freeze_patterns: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// A reference model (e.g. retrained on the retain set) to report the gap to.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Gate: TA may fall by at most this many points.
    #[arg(long)]
    pub max_test_drop: Option<f64>,
    /// Gate: UA must reach this (percent).
    #[arg(long)]
    pub min_ua: Option<f64>,
    /// Gate: MIA-efficacy must reach this (percent).
    #[arg(long)]
    pub min_mia: Option<f64>,
    /// Gate: the gap to --reference must be at most this (points).
    #[arg(long, requires = "reference")]
    pub max_gap: Option<f64>,
}

pub fn run(a: &UnlearnArgs, out: &Output) -> Result<ExitCode, Error> {
    let c = &a.classifier;
    let forget = c.forget.required(c.forget_seed)?;
    let device = out.device(None)?;
    let job = ClassifierJob {
        model: c.model()?,
        precision: out.precision(None, &device, false)?,
        device,
        config: a.method.config(&forget),
        gates: GateSpec {
            max_test_drop: a.max_test_drop,
            min_ua: a.min_ua,
            min_mia: a.min_mia,
            max_gap: a.max_gap,
            ..GateSpec::default()
        },
        output: a.output.settings(),
        progress: out.progress(),
        spec: ClassifierSpec {
            data: c.data.spec()?,
            forget,
            train_patterns: a.train_patterns.clone(),
            freeze_patterns: a.freeze_patterns.clone(),
            reference: a.reference.clone(),
        },
    };
    if a.output.out.is_none() {
        out.note("no --out given: nothing is exported or verified");
    }
    run_job(&job, out)
}

/// Runs a classifier job and prints its report; gates decide the exit status.
pub fn run_job(job: &ClassifierJob, out: &Output) -> Result<ExitCode, Error> {
    let report = pipeline::unlearn::<ClassifierRun>(job)?;
    out.result(&report, || render::classifier(&report));
    Ok(gated(report.passed))
}
