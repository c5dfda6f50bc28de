//! Argument groups several commands share. Their defaults are read from `lethe::defaults`, where
//! job files read them too.

use super::{or_bundled, BUNDLED_DATA, BUNDLED_MODEL};
use clap::Args;
use lethe::data::{DataSpec, ForgetSpec};
use lethe::defaults;
use lethe::pipeline::measure_text::SetFiles;
use lethe::pipeline::{OutputSettings, TextTrainable};
use lethe::text::PromptFormat;
use lethe::unlearn::lora::LoraConfig;
use lethe::unlearn::{
    DualUpdate, ForgetObjective, LossForm, LrSchedule, MethodKind, OptimizerName, UnlearnConfig,
};
use lethe::Error;
use std::path::PathBuf;

/// A classifier's data.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// Training data: a directory of IDX files (train-*/t10k-*), an *-images-idx3-ubyte[.gz] file,
    /// a digits *.csv[.gz], or a lethe *.safetensors dataset [default: fixtures/fashion-mnist,
    /// in lethe's source checkout].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Test data, when --data is not a directory that holds it.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Without test data, hold out this share of the training file as the test set.
    #[arg(long, default_value_t = defaults::HOLDOUT)]
    pub holdout: f64,
    /// Seed of the holdout draw. Keep it fixed across train, unlearn and eval runs so that they
    /// all see the same split.
    #[arg(long, default_value_t = defaults::HOLDOUT_SEED)]
    pub holdout_seed: u64,
}

impl DataArgs {
    pub fn spec(&self) -> Result<DataSpec, Error> {
        Ok(DataSpec {
            train: or_bundled(self.data.as_deref(), BUNDLED_DATA, "--data")?,
            test: self.test_data.clone(),
            holdout: self.holdout,
            seed: self.holdout_seed,
        })
    }
}

/// A share strictly between 0 and 1.
fn fraction(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if x > 0.0 && x < 1.0 {
        Ok(x)
    } else {
        Err(format!("{x} is not between 0 and 1"))
    }
}

/// What a classifier forgets (or, for `train`, leaves out).
#[derive(Args, Clone)]
#[group(multiple = false)]
pub struct ForgetArgs {
    /// Forget a class, by index or label name (e.g. 3 or Dress).
    #[arg(long)]
    pub forget_class: Option<String>,
    /// Forget the training samples whose indices this file lists.
    #[arg(long)]
    pub forget_indices: Option<PathBuf>,
    /// Forget a random share of the training data, between 0 and 1 (drawn with --forget-seed).
    #[arg(long, value_parser = fraction)]
    pub forget_fraction: Option<f64>,
}

impl ForgetArgs {
    pub fn spec(&self, seed: u64) -> Option<ForgetSpec> {
        if let Some(c) = &self.forget_class {
            Some(ForgetSpec::Class(c.clone()))
        } else if let Some(p) = &self.forget_indices {
            Some(ForgetSpec::Indices(p.clone()))
        } else {
            self.forget_fraction
                .map(|fraction| ForgetSpec::Fraction { fraction, seed })
        }
    }

    pub fn required(&self, seed: u64) -> Result<ForgetSpec, Error> {
        self.spec(seed).ok_or_else(|| {
            Error::Usage(
                "say what to forget: --forget-class, --forget-indices or --forget-fraction".into(),
            )
        })
    }
}

/// A classifier, its data and what to forget: what unlearn, eval and bench take.
#[derive(Args, Clone)]
pub struct ClassifierArgs {
    /// The model: a checkpoint directory (config.json + safetensors) or hub id [default:
    /// models/fashion-mnist-mlp, in lethe's source checkout].
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub forget: ForgetArgs,
    /// Seed of --forget-fraction's draw.
    #[arg(long, default_value_t = defaults::FORGET_SEED)]
    pub forget_seed: u64,
}

impl ClassifierArgs {
    /// The model given, or the bundled one.
    pub fn model(&self) -> Result<PathBuf, Error> {
        or_bundled(self.model.as_deref(), BUNDLED_MODEL, "a model")
    }
}

/// The method and schedule of a classifier run.
#[derive(Args, Clone)]
pub struct MethodArgs {
    /// Unlearning method.
    #[arg(long, value_enum, default_value_t = defaults::METHOD)]
    pub method: MethodKind,
    /// Forget objective of igs and egs [default: random-label for a class, held-out-level for
    /// samples].
    #[arg(long, value_enum)]
    pub objective: Option<ForgetObjective>,
    /// How losses enter the surgery objective: log(x + 1e-8) or as they are [default: plain for
    /// held-out-level, else log].
    #[arg(long, value_enum)]
    pub loss_form: Option<LossForm>,
    /// Update rule of igs's dual variable.
    #[arg(long, value_enum, default_value_t = defaults::DUAL_UPDATE)]
    pub dual_update: DualUpdate,
    /// igs: read the retain loss after a step from the next batch (no extra forward pass).
    #[arg(long)]
    pub fast: bool,
    /// Tolerated rise of the retain loss per step (ε, in units of the loss form; negative
    /// values demand an improvement) [default: 0 for a class, -0.04 for samples].
    #[arg(long, allow_negative_numbers = true)]
    pub epsilon: Option<f64>,
    /// Dual step size β.
    #[arg(long, default_value_t = defaults::classifier::BETA)]
    pub beta: f64,
    /// Initial dual variable λ₀.
    #[arg(long, default_value_t = defaults::classifier::LAMBDA0)]
    pub lambda0: f64,
    /// [default: sgd for a class, adamw for samples]
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerName>,
    /// Learning rate [default: 0.003 for a class, 0.002 for samples].
    #[arg(long)]
    pub lr: Option<f64>,
    /// How the learning rate moves over the run [default: constant for a class, cosine for
    /// samples].
    #[arg(long, value_enum)]
    pub lr_schedule: Option<LrSchedule>,
    /// SGD momentum.
    #[arg(long, default_value_t = defaults::classifier::MOMENTUM)]
    pub momentum: f64,
    #[arg(long, default_value_t = defaults::classifier::WEIGHT_DECAY)]
    pub weight_decay: f64,
    /// Passes over the retain set [default: 2 for a class, 20 for samples].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Number of steps (overrides --epochs).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Retain samples per step (and forget samples, unless --forget-batch-size is given).
    #[arg(long, default_value_t = defaults::classifier::BATCH_SIZE)]
    pub batch_size: usize,
    /// Forget samples per step.
    #[arg(long)]
    pub forget_batch_size: Option<usize>,
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
}

impl MethodArgs {
    pub fn config(&self, forget: &ForgetSpec) -> UnlearnConfig {
        let objective = self
            .objective
            .unwrap_or_else(|| ForgetObjective::default_for(forget));
        let d = defaults::classifier::schedule_for(forget);
        UnlearnConfig {
            method: self.method,
            objective,
            held_out_loss: f32::NAN,
            loss_form: self
                .loss_form
                .unwrap_or_else(|| LossForm::default_for(objective)),
            dual_update: self.dual_update,
            fast: self.fast,
            epsilon: self.epsilon.unwrap_or(d.epsilon),
            beta: self.beta,
            lambda0: self.lambda0,
            optimizer: self
                .optimizer
                .unwrap_or(d.optimizer)
                .kind(self.momentum, self.weight_decay),
            lr: self.lr.unwrap_or(d.lr),
            lr_schedule: self.lr_schedule.unwrap_or(d.lr_schedule),
            epochs: self.epochs.unwrap_or(d.epochs),
            steps: self.steps,
            batch_size: self.batch_size,
            forget_batch_size: self.forget_batch_size,
            seed: self.seed,
        }
    }
}

/// Where an unlearning run writes, and how.
#[derive(Args, Clone)]
pub struct OutputArgs {
    /// Output directory for the edited checkpoint, model.onnx and report.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Skip the ONNX Runtime check of the exported model.
    #[arg(long)]
    pub no_verify: bool,
    /// Save the run's state every N steps beside --out (in OUT.lethe-state), for --resume.
    #[arg(long, value_name = "N", requires = "out")]
    pub checkpoint_every: Option<usize>,
    /// Continue an interrupted run from its saved state (same command, same inputs).
    #[arg(long, requires = "out")]
    pub resume: bool,
    /// Path of libonnxruntime.so (default: $ORT_DYLIB_PATH, then .lethe/onnxruntime/).
    #[arg(long)]
    pub onnxruntime: Option<PathBuf>,
}

impl OutputArgs {
    pub fn settings(&self) -> OutputSettings {
        OutputSettings {
            dir: self.out.clone(),
            overwrite: self.overwrite,
            verify: !self.no_verify && self.out.is_some(),
            onnxruntime: self.onnxruntime.clone(),
            checkpoint_every: self.checkpoint_every,
            resume: self.resume,
            attachments: Vec::new(),
        }
    }
}

/// Which tensors of a language model train: LoRA adapters (the default), a PEFT adapter to
/// continue, or weights chosen by glob.
#[derive(Args, Clone)]
pub struct TrainableArgs {
    /// LoRA rank r (0: no adapters; train the weights chosen by --train instead).
    #[arg(long, default_value_t = defaults::text::LORA_RANK)]
    pub lora_rank: usize,
    /// LoRA α: the update is scaled by α/r [default: 2·r].
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// Linear layers that get adapters, by module name.
    #[arg(long, value_delimiter = ',', default_value = defaults::text::LORA_TARGETS_ARG)]
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
    pub fn resolve(&self) -> Result<TextTrainable, Error> {
        if let Some(dir) = &self.adapter {
            return Ok(TextTrainable::Adapter(dir.clone()));
        }
        if self.lora_rank == 0 {
            if self.train_patterns.is_empty() {
                return Err(Error::Usage(
                    "--lora-rank 0 needs --train GLOB to say which weights train".into(),
                ));
            }
            return Ok(TextTrainable::Weights {
                train: self.train_patterns.clone(),
                freeze: self.freeze_patterns.clone(),
            });
        }
        if !self.train_patterns.is_empty() {
            return Err(Error::Usage(
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
                        return Err(Error::Usage(format!(
                            "--lora-layers {s:?} is not FIRST-LAST"
                        )))
                    }
                }
            }
        };
        Ok(TextTrainable::Lora(LoraConfig {
            rank: self.lora_rank,
            alpha: self
                .lora_alpha
                .unwrap_or(defaults::text::LORA_ALPHA_PER_RANK * self.lora_rank as f64),
            targets: self.lora_targets.clone(),
            layers,
            rank_pattern: Default::default(),
        }))
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
    /// JSONL of examples like the forget set's that no model was trained on: the non-members
    /// of the membership-inference attacks (loss, zlib, Min-K %, Min-K %++).
    #[arg(long)]
    pub holdout_set: Option<PathBuf>,
    /// JSONL of further knowledge to keep; counts in model utility (repeatable).
    #[arg(long = "utility-set", value_name = "JSONL")]
    pub utility_sets: Vec<PathBuf>,
    /// A model never trained on the forget set (e.g. taught the retain set only), measured on
    /// the same sets: forget quality and PrivLeak are reported against it.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Tokens of --eval-text used for perplexity.
    #[arg(long, default_value_t = defaults::text::PERPLEXITY_TOKENS)]
    pub perplexity_tokens: usize,
    /// Longest greedy answer generated for ROUGE-L.
    #[arg(long, default_value_t = defaults::text::MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Measure the retain set on N of its questions, spread evenly over it (a run still trains
    /// on all of them) [default: all].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub retain_questions: Option<u64>,
    /// Prompt layout [default: the chat template when the model has one, else plain].
    #[arg(long, value_enum)]
    pub prompt_format: Option<PromptFormat>,
    #[command(flatten)]
    pub chat: ChatTemplateArgs,
}

/// Variables for the chat template.
#[derive(Args, Clone, Default)]
pub struct ChatTemplateArgs {
    /// Keyword arguments for the chat template, as a JSON object (what transformers'
    /// apply_chat_template passes on), e.g. '{"enable_thinking": false}' for Qwen3's answers
    /// without a reasoning block.
    #[arg(long, value_name = "JSON", value_parser = json_object)]
    pub chat_template_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ChatTemplateArgs {
    pub fn vars(&self) -> serde_json::Map<String, serde_json::Value> {
        self.chat_template_kwargs.clone().unwrap_or_default()
    }
}

fn json_object(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str(s) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err("expected a JSON object, e.g. '{\"enable_thinking\": false}'".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

impl TextSetArgs {
    pub fn files(&self) -> SetFiles {
        SetFiles {
            forget: self.forget_set.clone(),
            retain: self.retain_set.clone(),
            holdout: self.holdout_set.clone(),
            utility: self.utility_sets.clone(),
            eval_text: self.eval_text.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// The help of --epsilon, --optimizer, --lr, --lr-schedule and --epochs states both forget
    /// kinds' defaults; they are written out there, so this holds them to src/defaults.rs.
    #[test]
    fn help_states_the_defaults_of_each_forget_kind() {
        let command = MethodArgs::augment_args(clap::Command::new("unlearn"));
        let help = |id: &str| {
            let arg = command.get_arguments().find(|a| a.get_id() == id).unwrap();
            arg.get_help().unwrap().to_string()
        };
        let (class, samples) = (defaults::classifier::CLASS, defaults::classifier::SAMPLES);
        let name = |v: clap::builder::PossibleValue| v.get_name().to_string();
        let expected = [
            (
                "epsilon",
                class.epsilon.to_string(),
                samples.epsilon.to_string(),
            ),
            (
                "optimizer",
                name(class.optimizer.to_possible_value().unwrap()),
                name(samples.optimizer.to_possible_value().unwrap()),
            ),
            ("lr", class.lr.to_string(), samples.lr.to_string()),
            (
                "lr_schedule",
                name(class.lr_schedule.to_possible_value().unwrap()),
                name(samples.lr_schedule.to_possible_value().unwrap()),
            ),
            (
                "epochs",
                class.epochs.to_string(),
                samples.epochs.to_string(),
            ),
        ];
        for (id, class, samples) in expected {
            let stated = format!("[default: {class} for a class, {samples} for samples]");
            assert!(
                help(id).contains(&stated),
                "--{id}: {} lacks {stated}",
                help(id)
            );
        }
    }
}
