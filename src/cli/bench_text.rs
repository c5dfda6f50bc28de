//! `lethe bench-text`: LoRA igs steps of a causal language model on synthetic sequences
//! (scripts/bench-vs-pytorch.sh compares them with PyTorch + peft).

use super::Output;
use clap::Args;
use lethe::bench::{self, TextBenchJob};
use lethe::unlearn::lora::LoraConfig;
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct BenchTextArgs {
    /// A causal LM checkpoint directory.
    pub model: PathBuf,
    /// Sequences per step: half forget, half retain.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Tokens at the end of each sequence that carry the loss.
    #[arg(long, default_value_t = 32)]
    pub answer_len: usize,
    #[arg(long, default_value_t = 8)]
    pub lora_rank: usize,
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    #[arg(long, value_delimiter = ',', default_value = lethe::defaults::text::LORA_TARGETS_ARG)]
    pub lora_targets: Vec<String>,
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
}

pub fn run(a: &BenchTextArgs, out: &Output) -> Result<ExitCode, Error> {
    let device = out.device(None)?;
    let r = bench::run_text(&TextBenchJob {
        model: a.model.clone(),
        precision: out.precision(None, &device, true)?,
        device,
        progress: out.progress(),
        batch: a.batch,
        seq_len: a.seq_len,
        answer_len: a.answer_len,
        lora: LoraConfig {
            rank: a.lora_rank,
            alpha: a.lora_alpha,
            targets: a.lora_targets.clone(),
            layers: None,
            rank_pattern: Default::default(),
        },
        steps: a.steps,
        warmup: a.warmup,
    })?;
    out.result(&r, || {
        format!(
            "igs LoRA step: median {:.0} ms over {} steps; peak RSS {:.0} MiB; {} trainable parameters\n",
            r.step_ms_median,
            r.step_ms.len(),
            r.peak_rss_mib,
            r.trainable_parameters
        )
    });
    Ok(ExitCode::SUCCESS)
}
