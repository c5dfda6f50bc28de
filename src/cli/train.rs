//! `lethe train`: a classifier from scratch (the bundled model, or one retrained without a
//! forget set: the gold standard of unlearning).

use super::args::{DataArgs, ForgetArgs};
use super::{classifier_device, Output};
use clap::{Args, ValueEnum};
use lethe::defaults::{self, train as d};
use lethe::pipeline::train::{train_model, ArchChoice, TrainJob};
use lethe::train::TrainConfig;
use lethe::unlearn::OptimizerName;
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum)]
pub enum ArchName {
    Mlp,
    Cnn,
}

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Leave this forget set out of training (the "retrained on the retain set" gold standard).
    #[command(flatten)]
    pub exclude: ForgetArgs,
    #[arg(long, default_value_t = defaults::FORGET_SEED)]
    pub forget_seed: u64,
    #[arg(long, value_enum, default_value_t = ArchName::Mlp)]
    pub arch: ArchName,
    /// MLP hidden layer widths.
    #[arg(long, value_delimiter = ',', default_value = d::HIDDEN)]
    pub hidden: Vec<usize>,
    /// CNN stage widths.
    #[arg(long, value_delimiter = ',', default_value = d::CHANNELS)]
    pub channels: Vec<usize>,
    #[arg(long, default_value_t = d::KERNEL_SIZE)]
    pub kernel_size: usize,
    /// CNN: batch norm after each convolution.
    #[arg(long)]
    pub batch_norm: bool,
    #[arg(long, default_value_t = d::EPOCHS)]
    pub epochs: usize,
    #[arg(long, default_value_t = d::BATCH_SIZE)]
    pub batch_size: usize,
    #[arg(long, default_value_t = d::LR)]
    pub lr: f64,
    #[arg(long, value_enum, default_value_t = d::OPTIMIZER)]
    pub optimizer: OptimizerName,
    #[arg(long, default_value_t = d::MOMENTUM)]
    pub momentum: f64,
    #[arg(long, default_value_t = d::WEIGHT_DECAY)]
    pub weight_decay: f64,
    /// Keep the learning rate constant instead of cosine decay.
    #[arg(long)]
    pub constant_lr: bool,
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
    /// Output checkpoint directory.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(a: &TrainArgs, out: &Output) -> Result<ExitCode, Error> {
    let arch = match a.arch {
        ArchName::Mlp => ArchChoice::Mlp(lethe::arch::MlpConfig {
            hidden_sizes: a.hidden.clone(),
        }),
        ArchName::Cnn => ArchChoice::Cnn(lethe::arch::CnnConfig {
            channels: a.channels.clone(),
            kernel_size: a.kernel_size,
            batch_norm: a.batch_norm,
        }),
    };
    let job = TrainJob {
        arch,
        data: a.data.spec()?,
        exclude: a.exclude.spec(a.forget_seed),
        train: TrainConfig {
            epochs: a.epochs,
            batch_size: a.batch_size,
            lr: a.lr,
            optimizer: a.optimizer.kind(a.momentum, a.weight_decay),
            cosine: !a.constant_lr,
            seed: a.seed,
        },
        out: a.out.clone(),
        overwrite: a.overwrite,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        device: classifier_device(out)?,
        progress: out.progress(),
    };
    let report = train_model(&job)?;
    out.result(&report, || {
        format!(
            "trained {} samples in {:.1} s: train accuracy {:.2} %, test accuracy {:.2} % → {}\n",
            report.train_samples,
            report.wall_seconds,
            report.train_accuracy,
            report.test_accuracy,
            report.out
        )
    });
    Ok(ExitCode::SUCCESS)
}
