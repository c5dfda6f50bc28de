//! `lethe unlearn-text`: forget question/answer facts from a causal language model, export the
//! merged checkpoint, the PEFT adapter and ONNX, verify, report.

use super::args::{OutputArgs, TextSetArgs, TrainableArgs};
use super::{gated, Output};
use clap::Args;
use lethe::defaults::{self, text as d};
use lethe::pipeline::{self, text::TextRun, TextJob, TextSpec};
use lethe::report::{render, GateSpec};
use lethe::unlearn::text_task::{Rmu, SimNpo};
use lethe::unlearn::{
    DualUpdate, ForgetObjective, LossForm, LrSchedule, MethodKind, OptimizerName, UnlearnConfig,
};
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

/// The method and schedule of a language-model run.
#[derive(Args, Clone)]
pub struct TextMethodArgs {
    /// Unlearning method (npo and simnpo are the NPO and SimNPO baselines: that loss on the
    /// forget set plus the retain loss; rmu is representation misdirection).
    #[arg(long, value_enum, default_value_t = defaults::METHOD)]
    pub method: MethodKind,
    /// Forget objective of igs and egs [default: held-out-level with --holdout-set, else npo].
    #[arg(long, value_enum)]
    pub objective: Option<ForgetObjective>,
    /// NPO's β.
    #[arg(long, default_value_t = d::NPO_BETA)]
    pub npo_beta: f64,
    /// SimNPO's β (the simnpo objective and method).
    #[arg(long, default_value_t = d::SIMNPO_BETA)]
    pub simnpo_beta: f64,
    /// SimNPO's reward margin γ.
    #[arg(long, default_value_t = d::SIMNPO_GAMMA, allow_negative_numbers = true)]
    pub simnpo_gamma: f64,
    /// RMU: the block (0-based) whose output is steered [default: a quarter of the depth].
    #[arg(long)]
    pub rmu_layer: Option<usize>,
    /// RMU: the steering coefficient c.
    #[arg(long, default_value_t = d::RMU_COEFFICIENT)]
    pub rmu_coefficient: f64,
    /// RMU baseline: the weight α of keeping the retain representations.
    #[arg(long, default_value_t = d::RMU_ALPHA)]
    pub rmu_alpha: f64,
    /// The answer the refusal objective teaches.
    #[arg(long, default_value = d::REFUSAL)]
    pub refusal: String,
    /// How losses enter the surgery objective.
    #[arg(long, value_enum, default_value_t = d::LOSS_FORM)]
    pub loss_form: LossForm,
    #[arg(long, value_enum, default_value_t = defaults::DUAL_UPDATE)]
    pub dual_update: DualUpdate,
    /// igs: read the retain loss after a step from the next batch (no extra forward pass).
    #[arg(long)]
    pub fast: bool,
    /// Tolerated rise of the retain loss per step (ε, in units of the loss form; negative
    /// values demand an improvement).
    #[arg(long, default_value_t = d::EPSILON, allow_negative_numbers = true)]
    pub epsilon: f64,
    /// Dual step size β.
    #[arg(long, default_value_t = d::BETA)]
    pub beta: f64,
    /// Initial dual variable λ₀.
    #[arg(long, default_value_t = d::LAMBDA0)]
    pub lambda0: f64,
    #[arg(long, value_enum, default_value_t = d::OPTIMIZER)]
    pub optimizer: OptimizerName,
    #[arg(long, default_value_t = d::LR)]
    pub lr: f64,
    /// How the learning rate moves over the run.
    #[arg(long, value_enum, default_value_t = d::LR_SCHEDULE)]
    pub lr_schedule: LrSchedule,
    /// SGD momentum.
    #[arg(long, default_value_t = d::MOMENTUM)]
    pub momentum: f64,
    #[arg(long, default_value_t = d::WEIGHT_DECAY)]
    pub weight_decay: f64,
    /// Passes over the retain set.
    #[arg(long, default_value_t = d::EPOCHS)]
    pub epochs: usize,
    /// Number of steps (overrides --epochs).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Retain examples per step (and forget examples, unless --forget-batch-size is given).
    #[arg(long, default_value_t = d::BATCH_SIZE)]
    pub batch_size: usize,
    #[arg(long)]
    pub forget_batch_size: Option<usize>,
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
}

impl TextMethodArgs {
    /// The run's settings; the objective's default depends on whether a held-out set is given.
    pub fn config(&self, has_holdout_set: bool) -> UnlearnConfig {
        UnlearnConfig {
            method: self.method,
            objective: self
                .objective
                .unwrap_or_else(|| d::objective(has_holdout_set)),
            held_out_loss: 0.0,
            loss_form: self.loss_form,
            dual_update: self.dual_update,
            fast: self.fast,
            epsilon: self.epsilon,
            beta: self.beta,
            lambda0: self.lambda0,
            optimizer: self.optimizer.kind(self.momentum, self.weight_decay),
            lr: self.lr,
            lr_schedule: self.lr_schedule,
            epochs: self.epochs,
            steps: self.steps,
            batch_size: self.batch_size,
            forget_batch_size: self.forget_batch_size,
            seed: self.seed,
        }
    }
}

#[derive(Args)]
pub struct UnlearnTextArgs {
    /// A causal LM checkpoint directory (config.json, safetensors, tokenizer.json) or hub id.
    pub model: PathBuf,
    #[command(flatten)]
    pub sets: TextSetArgs,
    /// Questions of each set shown before and after in the report.
    #[arg(long, default_value_t = d::SAMPLES)]
    pub samples: usize,
    #[command(flatten)]
    pub trainable: TrainableArgs,
    #[command(flatten)]
    pub method: TextMethodArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Gate: forget ROUGE-L (0–1) must fall to at most this.
    #[arg(long)]
    pub max_forget_rouge: Option<f64>,
    /// Gate: retain ROUGE-L may fall by at most this many points (0–100).
    #[arg(long)]
    pub max_retain_rouge_drop: Option<f64>,
    /// Gate: perplexity on --eval-text may rise by at most this many percent.
    #[arg(long, requires = "eval_text")]
    pub max_perplexity_rise: Option<f64>,
    /// Gate: forget quality (the KS test's p-value against --reference) must reach this.
    #[arg(long, requires = "reference")]
    pub min_forget_quality: Option<f64>,
    /// Gate: model utility after over model utility before must reach this (e.g. 0.95).
    #[arg(long)]
    pub min_utility_ratio: Option<f64>,
}

pub fn run(a: &UnlearnTextArgs, out: &Output) -> Result<ExitCode, Error> {
    let device = out.device(None)?;
    let job = TextJob {
        model: a.model.clone(),
        precision: out.precision(None, &device, true)?,
        device,
        config: a.method.config(a.sets.holdout_set.is_some()),
        gates: GateSpec {
            max_forget_rouge: a.max_forget_rouge,
            max_retain_rouge_drop: a.max_retain_rouge_drop,
            max_perplexity_rise: a.max_perplexity_rise,
            min_forget_quality: a.min_forget_quality,
            min_utility_ratio: a.min_utility_ratio,
            ..GateSpec::default()
        },
        output: a.output.settings(),
        progress: out.progress(),
        spec: TextSpec {
            sets: a.sets.files(),
            reference: a.sets.reference.clone(),
            trainable: a.trainable.resolve()?,
            npo_beta: a.method.npo_beta,
            simnpo: SimNpo {
                beta: a.method.simnpo_beta,
                gamma: a.method.simnpo_gamma,
            },
            rmu: Rmu {
                layer: a.method.rmu_layer,
                coefficient: a.method.rmu_coefficient,
                alpha: a.method.rmu_alpha,
            },
            refusal: a.method.refusal.clone(),
            prompt_format: a.sets.prompt_format,
            chat_template_kwargs: a.sets.chat.vars(),
            max_new_tokens: a.sets.max_new_tokens,
            perplexity_tokens: a.sets.perplexity_tokens,
            retain_questions: a.sets.retain_questions.map(|n| n as usize),
            samples: a.samples,
        },
    };
    if a.output.out.is_none() {
        out.note("no --out given: nothing is exported or verified");
    }
    run_job(&job, out)
}

/// Runs a language-model job and prints its report; gates decide the exit status.
pub fn run_job(job: &TextJob, out: &Output) -> Result<ExitCode, Error> {
    let report = pipeline::unlearn::<TextRun>(job)?;
    out.result(&report, || render::text(&report));
    Ok(gated(report.passed))
}
