//! Arguments and output of `lethe unlearn-text` and `lethe train-text`.

use clap::{Args, ValueEnum};
use lethe::text::PromptFormat;
use lethe::text_pipeline::{
    TextGates, TextMetrics, TextReport, TextTrainJob, TextTrainable, TextUnlearnJob,
};
use lethe::unlearn::lora::LoraConfig;
use lethe::unlearn::{
    text_defaults, DualUpdate, ForgetObjective, LossForm, MethodKind, OptimizerKind, UnlearnConfig,
};
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
pub enum TextOptimizer {
    Sgd,
    Adamw,
}

/// Which tensors train: LoRA adapters (the default for text), a PEFT adapter to continue, or
/// weights chosen by glob.
#[derive(Args, Clone)]
pub struct TrainableArgs {
    /// LoRA rank r (0: no adapters; train the weights chosen by --train instead).
    #[arg(long, default_value_t = 8)]
    pub lora_rank: usize,
    /// LoRA α: the update is scaled by α/r [default: 2·r].
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// Linear layers that get adapters, by module name.
    #[arg(long, value_delimiter = ',', default_value = "q_proj,v_proj")]
    pub lora_targets: Vec<String>,
    /// Only layers FIRST-LAST (inclusive) get adapters.
    #[arg(long, value_name = "FIRST-LAST")]
    pub lora_layers: Option<String>,
    /// Start from this PEFT LoRA adapter directory (adapter_config.json,
    /// adapter_model.safetensors) instead of fresh adapters.
    #[arg(long, conflicts_with_all = ["lora_alpha", "lora_layers"])]
    pub adapter: Option<PathBuf>,
    /// With --lora-rank 0: train only weights matching these globs (repeatable).
    #[arg(long = "train", value_name = "GLOB")]
    pub train_patterns: Vec<String>,
    /// With --lora-rank 0: keep weights matching these globs frozen (repeatable).
    #[arg(long = "freeze", value_name = "GLOB")]
    pub freeze_patterns: Vec<String>,
}

impl TrainableArgs {
    pub fn resolve(&self) -> Result<TextTrainable, lethe::Error> {
        if let Some(dir) = &self.adapter {
            return Ok(TextTrainable::Adapter(dir.clone()));
        }
        if self.lora_rank == 0 {
            if self.train_patterns.is_empty() {
                return Err(lethe::Error::Usage(
                    "--lora-rank 0 needs --train GLOB to say which weights train".into(),
                ));
            }
            return Ok(TextTrainable::Weights {
                train: self.train_patterns.clone(),
                freeze: self.freeze_patterns.clone(),
            });
        }
        if !self.train_patterns.is_empty() {
            return Err(lethe::Error::Usage(
                "--train selects weights; with LoRA only adapters train (pass --lora-rank 0)"
                    .into(),
            ));
        }
        let layers = match &self.lora_layers {
            None => None,
            Some(s) => {
                let parsed = s
                    .split_once('-')
                    .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                    .or_else(|| s.trim().parse().ok().map(|l| (l, l)));
                match parsed {
                    Some((a, b)) if a <= b => Some((a, b)),
                    _ => {
                        return Err(lethe::Error::Usage(format!(
                            "--lora-layers {s:?} is not FIRST-LAST"
                        )))
                    }
                }
            }
        };
        Ok(TextTrainable::Lora(LoraConfig {
            rank: self.lora_rank,
            alpha: self.lora_alpha.unwrap_or(2.0 * self.lora_rank as f64),
            targets: self.lora_targets.clone(),
            layers,
        }))
    }
}

#[derive(Args, Clone)]
pub struct TextHyperArgs {
    /// Unlearning method (npo is the NPO baseline: NPO on the forget set plus the retain loss).
    #[arg(long, value_enum, default_value_t = MethodKind::Igs)]
    pub method: MethodKind,
    /// Forget objective of igs and egs.
    #[arg(long, value_enum, default_value_t = ForgetObjective::Npo)]
    pub objective: ForgetObjective,
    /// NPO's β.
    #[arg(long, default_value_t = 0.1)]
    pub npo_beta: f64,
    /// The answer the refusal objective teaches.
    #[arg(long, default_value = "I don't know.")]
    pub refusal: String,
    /// How losses enter the surgery objective.
    #[arg(long, value_enum, default_value_t = text_defaults::LOSS_FORM)]
    pub loss_form: LossForm,
    #[arg(long, value_enum, default_value_t = DualUpdate::Projected)]
    pub dual_update: DualUpdate,
    /// igs: read the retain loss after a step from the next batch (no extra forward pass).
    #[arg(long)]
    pub fast: bool,
    /// Tolerated rise of the retain loss per step (ε, in units of the loss form; negative
    /// values demand an improvement).
    #[arg(long, default_value_t = text_defaults::EPSILON, allow_negative_numbers = true)]
    pub epsilon: f64,
    /// Dual step size β.
    #[arg(long, default_value_t = text_defaults::BETA)]
    pub beta: f64,
    /// Initial dual variable λ₀.
    #[arg(long, default_value_t = text_defaults::LAMBDA0)]
    pub lambda0: f64,
    #[arg(long, value_enum, default_value_t = TextOptimizer::Adamw)]
    pub optimizer: TextOptimizer,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Passes over the retain set.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Number of steps (overrides --epochs).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Retain examples per step (and forget examples, unless --forget-batch-size is given).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long)]
    pub forget_batch_size: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prompt layout [default: the chat template when the model has one, else plain].
    #[arg(long, value_enum)]
    pub prompt_format: Option<PromptFormat>,
}

impl TextHyperArgs {
    pub fn config(&self) -> UnlearnConfig {
        UnlearnConfig {
            method: self.method,
            objective: self.objective,
            held_out_loss: 0.0,
            loss_form: self.loss_form,
            dual_update: self.dual_update,
            fast: self.fast,
            epsilon: self.epsilon,
            beta: self.beta,
            lambda0: self.lambda0,
            optimizer: match self.optimizer {
                TextOptimizer::Sgd => OptimizerKind::Sgd {
                    momentum: 0.9,
                    weight_decay: self.weight_decay,
                },
                TextOptimizer::Adamw => OptimizerKind::adamw(self.weight_decay),
            },
            lr: self.lr,
            epochs: self.epochs,
            steps: self.steps,
            batch_size: self.batch_size,
            forget_batch_size: self.forget_batch_size,
            seed: self.seed,
        }
    }
}

/// The forget and retain sets of a language model and how they are measured.
#[derive(Args)]
pub struct TextSetArgs {
    /// JSONL of what to forget: {"question", "answer"} or {"text"} per line.
    #[arg(long)]
    pub forget_set: PathBuf,
    /// JSONL of what to keep.
    #[arg(long)]
    pub retain_set: PathBuf,
    /// Held-out text for perplexity.
    #[arg(long)]
    pub eval_text: Option<PathBuf>,
    /// Tokens of --eval-text used for perplexity.
    #[arg(long, default_value_t = 2048)]
    pub perplexity_tokens: usize,
    /// Longest greedy answer generated for ROUGE-L.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
}

#[derive(Args)]
pub struct UnlearnTextArgs {
    /// A causal LM checkpoint directory (config.json, safetensors, tokenizer.json) or hub id.
    pub model: PathBuf,
    #[command(flatten)]
    pub sets: TextSetArgs,
    /// Questions of each set shown before and after in the report.
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
    #[command(flatten)]
    pub trainable: TrainableArgs,
    #[command(flatten)]
    pub hyper: TextHyperArgs,
    /// Output directory: merged model.safetensors, adapter/ (PEFT), model.onnx, report.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub overwrite: bool,
    /// Gate: forget ROUGE-L (0–1) must fall to at most this.
    #[arg(long)]
    pub max_forget_rouge: Option<f64>,
    /// Gate: retain ROUGE-L may fall by at most this many points (0–100).
    #[arg(long)]
    pub max_retain_rouge_drop: Option<f64>,
    /// Gate: perplexity on --eval-text may rise by at most this many percent.
    #[arg(long, requires = "eval_text")]
    pub max_perplexity_rise: Option<f64>,
    /// Skip the ONNX Runtime check of the exported model.
    #[arg(long)]
    pub no_verify: bool,
    /// Save the run's state every N steps beside --out, for --resume.
    #[arg(long, value_name = "N", requires = "out")]
    pub checkpoint_every: Option<usize>,
    #[arg(long, requires = "out")]
    pub resume: bool,
    #[arg(long)]
    pub onnxruntime: Option<PathBuf>,
}

impl UnlearnTextArgs {
    pub fn job(&self, progress: bool) -> Result<TextUnlearnJob, lethe::Error> {
        Ok(TextUnlearnJob {
            model: self.model.clone(),
            forget_set: self.sets.forget_set.clone(),
            retain_set: self.sets.retain_set.clone(),
            eval_text: self.sets.eval_text.clone(),
            trainable: self.trainable.resolve()?,
            config: self.hyper.config(),
            npo_beta: self.hyper.npo_beta,
            refusal: self.hyper.refusal.clone(),
            prompt_format: self.hyper.prompt_format,
            max_new_tokens: self.sets.max_new_tokens,
            perplexity_tokens: self.sets.perplexity_tokens,
            samples: self.samples,
            gates: TextGates {
                max_forget_rouge: self.max_forget_rouge,
                max_retain_rouge_drop: self.max_retain_rouge_drop,
                max_perplexity_rise: self.max_perplexity_rise,
            },
            out: self.out.clone(),
            overwrite: self.overwrite,
            verify: self.out.is_some() && !self.no_verify,
            onnxruntime: self.onnxruntime.clone(),
            progress,
            checkpoint_every: self.checkpoint_every,
            resume: self.resume,
            attachments: Vec::new(),
        })
    }
}

#[derive(Args)]
pub struct TrainTextArgs {
    /// A causal LM checkpoint directory or hub id.
    pub model: PathBuf,
    /// JSONL to learn: {"question", "answer"} or {"text"} per line.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub trainable: TrainableArgs,
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum)]
    pub prompt_format: Option<PromptFormat>,
    /// Output directory: merged model.safetensors, adapter/ (PEFT), model.onnx, report.json.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub overwrite: bool,
}

impl TrainTextArgs {
    pub fn job(&self, progress: bool) -> Result<TextTrainJob, lethe::Error> {
        let hyper = TextHyperArgs {
            method: MethodKind::Ft,
            objective: ForgetObjective::Npo,
            npo_beta: 0.1,
            refusal: String::new(),
            loss_form: LossForm::Plain,
            dual_update: DualUpdate::Projected,
            fast: false,
            epsilon: 0.0,
            beta: 1.0,
            lambda0: 1.0,
            optimizer: TextOptimizer::Adamw,
            lr: self.lr,
            weight_decay: 0.0,
            epochs: self.epochs,
            steps: None,
            batch_size: self.batch_size,
            forget_batch_size: None,
            seed: self.seed,
            prompt_format: self.prompt_format,
        };
        Ok(TextTrainJob {
            model: self.model.clone(),
            data: self.data.clone(),
            trainable: self.trainable.resolve()?,
            config: hyper.config(),
            prompt_format: self.prompt_format,
            out: self.out.clone(),
            overwrite: self.overwrite,
            progress,
        })
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

/// The terminal summary of a text unlearning report.
pub fn render(r: &TextReport) -> String {
    let mut s = String::new();
    let (b, a) = (&r.before, &r.after);
    s.push_str(&format!(
        "{} · {} · {} on {} forget / {} retain examples · {} trainable parameters of {}\n\n",
        r.model,
        r.config.method.name(),
        serde_json::to_value(r.config.objective)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        r.forget_examples,
        r.retain_examples,
        r.trainable_parameters,
        r.parameters
    ));
    s.push_str(&format!(
        "{:<24} {:>10} {:>10}\n",
        "metric", "before", "after"
    ));
    for (name, x, y) in [
        (
            "forget ROUGE-L %",
            pct(b.forget.rouge_l),
            pct(a.forget.rouge_l),
        ),
        (
            "forget answer prob %",
            pct(b.forget.probability),
            pct(a.forget.probability),
        ),
        (
            "forget answer NLL",
            format!("{:.3}", b.forget.nll),
            format!("{:.3}", a.forget.nll),
        ),
        (
            "retain ROUGE-L %",
            pct(b.retain.rouge_l),
            pct(a.retain.rouge_l),
        ),
        (
            "retain answer prob %",
            pct(b.retain.probability),
            pct(a.retain.probability),
        ),
        (
            "retain answer NLL",
            format!("{:.3}", b.retain.nll),
            format!("{:.3}", a.retain.nll),
        ),
    ] {
        s.push_str(&format!("{name:<24} {x:>10} {y:>10}\n"));
    }
    if let (Some(x), Some(y)) = (b.perplexity, a.perplexity) {
        s.push_str(&format!("{:<24} {x:>10.2} {y:>10.2}\n", "perplexity"));
    }
    s.push('\n');
    for sample in &r.samples {
        s.push_str(&format!(
            "[{}] {}\n  reference: {}\n  before:    {}\n  after:     {}\n",
            sample.set, sample.question, sample.reference, sample.before, sample.after
        ));
    }
    s.push_str(&format!(
        "\n{} steps in {:.1} s ({} forward, {} backward passes)\n",
        r.run.steps, r.run.wall_seconds, r.run.forward_passes, r.run.backward_passes
    ));
    if let Some(v) = &r.verification {
        s.push_str(&format!(
            "ONNX Runtime parity: max |Δlogit| {:.2e} on {} sequences (tolerance {:.0e}) {}\n",
            v.max_abs_diff,
            v.sequences,
            v.tolerance,
            if v.passed { "ok" } else { "FAILED" }
        ));
    }
    for g in &r.gates {
        s.push_str(&format!(
            "gate {}: {:.3} (limit {}) {}\n",
            g.name,
            g.value,
            g.limit,
            if g.passed { "ok" } else { "FAILED" }
        ));
    }
    if let Some(o) = &r.outputs {
        s.push_str(&format!("outputs: {o}\n"));
    }
    s
}

#[derive(Args)]
pub struct EvalTextArgs {
    /// A causal LM checkpoint directory or hub id.
    pub model: PathBuf,
    #[command(flatten)]
    pub sets: TextSetArgs,
    #[arg(long, value_enum)]
    pub prompt_format: Option<PromptFormat>,
}

/// The terminal table of `lethe eval-text`.
pub fn render_metrics(m: &TextMetrics) -> String {
    let mut s = format!(
        "{:<10} {:>10} {:>10} {:>10}\n",
        "set", "ROUGE-L %", "prob %", "NLL"
    );
    for (name, x) in [("forget", &m.forget), ("retain", &m.retain)] {
        s.push_str(&format!(
            "{name:<10} {:>10} {:>10} {:>10.3}\n",
            pct(x.rouge_l),
            pct(x.probability),
            x.nll
        ));
    }
    if let Some(p) = m.perplexity {
        s.push_str(&format!("perplexity {p:.2}\n"));
    }
    s
}
