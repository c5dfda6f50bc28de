//! Every default setting, defined once. The command line (clap's `default_value_t`) and job files
//! (`JobFile::resolved`, which writes each one into `job.resolved.toml`) both read them from here.

use crate::unlearn::{DualUpdate, LossForm, LrSchedule, MethodKind, OptimizerName};

/// Shared by every kind of run.
pub const METHOD: MethodKind = MethodKind::Igs;
pub const DUAL_UPDATE: DualUpdate = DualUpdate::Projected;
pub const SEED: u64 = 0;
/// Without test data, this share of the training file is held out as the test set.
pub const HOLDOUT: f64 = 0.2;
pub const HOLDOUT_SEED: u64 = 0;
/// Seed of a random forget share's draw.
pub const FORGET_SEED: u64 = 0;
/// The device every command computes on.
pub const DEVICE: &str = "cpu";
/// The precision frozen weights are held in (`--dtype`) ...
pub const DTYPE: &str = "f32";
/// ... except a language model's on a GPU, where bf16 halves the memory of the frozen weights.
pub const DTYPE_GPU_TEXT: &str = "bf16";

/// Unlearning a classifier (`lethe unlearn`, classifier jobs). What forgets a whole class
/// differs from what forgets scattered samples, so the schedule depends on the forget kind.
pub mod classifier {
    use super::{LrSchedule, OptimizerName};
    use crate::data::ForgetSpec;

    pub const BETA: f64 = 1.0;
    pub const LAMBDA0: f64 = 5.0;
    pub const MOMENTUM: f64 = 0.9;
    pub const WEIGHT_DECAY: f64 = 5e-4;
    pub const BATCH_SIZE: usize = 128;

    /// The settings that depend on what is forgotten.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Schedule {
        pub epsilon: f64,
        pub optimizer: OptimizerName,
        pub lr: f64,
        pub lr_schedule: LrSchedule,
        pub epochs: usize,
    }

    /// A whole class: two short SGD passes, chosen on the bundled model by a sweep over every
    /// class (README, "every class").
    pub const CLASS: Schedule = Schedule {
        epsilon: 0.0,
        optimizer: OptimizerName::Sgd,
        lr: 0.003,
        lr_schedule: LrSchedule::Constant,
        epochs: 2,
    };

    /// Samples (a random share or listed indices): the forget loss only has to rise to the
    /// held-out level, while the retain fit must end as tight as a retrained model's, or the
    /// membership attack tells the difference. ε < 0 keeps λ demanding retain progress, and
    /// the cosine decay lets the last passes settle the retain fit. Chosen by the gap to
    /// retrained models on the bundled model over 3 forget draws × 3 run seeds
    /// (docs/benchmarks.md, "Classifier defaults").
    pub const SAMPLES: Schedule = Schedule {
        epsilon: -0.04,
        optimizer: OptimizerName::Adamw,
        lr: 2e-3,
        lr_schedule: LrSchedule::Cosine,
        epochs: 20,
    };

    pub fn schedule_for(forget: &ForgetSpec) -> Schedule {
        match forget {
            ForgetSpec::Class(_) => CLASS,
            _ => SAMPLES,
        }
    }
}

/// Unlearning a language model (`lethe unlearn-text`, text jobs), chosen on the scenario of
/// docs/scenario.md.
pub mod text {
    use super::{LossForm, LrSchedule, OptimizerName};
    use crate::unlearn::ForgetObjective;

    /// The forget objective of igs and egs when none is chosen: with a held-out set, each forget
    /// answer is pushed until it is as unlikely as the held-out answers and no further
    /// (held-out-level); without one, NPO. On the CPU benchmark's forget 10 % (docs/scenario.md)
    /// NPO's objective pushed the forget answers a hundred times below the never-trained
    /// reference (membership AUC 0.02 against its 0.37, forget quality 0.014), held-out-level
    /// stopped near it (AUC 0.27, forget quality 0.99, utility kept).
    pub fn objective(has_holdout_set: bool) -> ForgetObjective {
        if has_holdout_set {
            ForgetObjective::HeldOutLevel
        } else {
            ForgetObjective::Npo
        }
    }

    /// Plain, not log: a model that knows its retain answers has a retain loss near 1e-3, and
    /// the log form's gradient ∇ℓ_r/ℓ_r then outweighs the forget gradient a thousandfold (and
    /// fills AdamW's second moment, which stalls the forget term long after λ has fallen).
    pub const LOSS_FORM: LossForm = LossForm::Plain;
    /// Each step must lower the retain loss by 0.05 or λ grows: with ε = 0, λ reads only each
    /// step's own change and falls to zero once the forget loss has saturated, leaving the
    /// retain damage of the early steps unrepaired.
    pub const EPSILON: f64 = -0.05;
    pub const BETA: f64 = 1.0;
    pub const LAMBDA0: f64 = 1.0;
    pub const OPTIMIZER: OptimizerName = OptimizerName::Adamw;
    pub const LR: f64 = 1e-3;
    pub const LR_SCHEDULE: LrSchedule = LrSchedule::Constant;
    /// SGD's momentum, when SGD is chosen.
    pub const MOMENTUM: f64 = 0.9;
    pub const WEIGHT_DECAY: f64 = 0.0;
    pub const EPOCHS: usize = 5;
    pub const BATCH_SIZE: usize = 8;
    /// NPO's β (Zhang et al., 2024).
    pub const NPO_BETA: f64 = 0.1;
    /// SimNPO's β and γ (Fan et al., 2024), as open-unlearning sets them for TOFU.
    pub const SIMNPO_BETA: f64 = 4.5;
    pub const SIMNPO_GAMMA: f64 = 0.125;
    /// RMU's steering coefficient c and retain weight α, as Li et al. (2024) set them for
    /// Zephyr-7B; the layer defaults to a quarter of the model's depth (their layer 7 of 32).
    pub const RMU_COEFFICIENT: f64 = 6.5;
    pub const RMU_ALPHA: f64 = 1200.0;
    /// The answer the refusal objective teaches.
    pub const REFUSAL: &str = "I don't know.";
    pub const LORA_RANK: usize = 8;
    /// LoRA α is this many times the rank when not given.
    pub const LORA_ALPHA_PER_RANK: f64 = 2.0;
    pub const LORA_TARGETS: &[&str] = &["q_proj", "v_proj"];
    /// The same list as one comma-separated value, for clap.
    pub const LORA_TARGETS_ARG: &str = "q_proj,v_proj";
    /// Longest greedy answer generated for ROUGE-L.
    pub const MAX_NEW_TOKENS: usize = 32;
    /// Tokens of the held-out text used for perplexity.
    pub const PERPLEXITY_TOKENS: usize = 2048;
    /// Questions of each set shown before and after in the report.
    pub const SAMPLES: usize = 3;
}

/// Training a classifier from scratch (`lethe train`).
pub mod train {
    use super::OptimizerName;
    pub const EPOCHS: usize = 40;
    pub const BATCH_SIZE: usize = 128;
    pub const LR: f64 = 1e-3;
    pub const OPTIMIZER: OptimizerName = OptimizerName::Adamw;
    pub const MOMENTUM: f64 = 0.9;
    pub const WEIGHT_DECAY: f64 = 0.0;
    pub const HIDDEN: &str = "256,128";
    pub const CHANNELS: &str = "16,32";
    pub const KERNEL_SIZE: usize = 3;
}

/// Fine-tuning a language model (`lethe train-text`).
pub mod train_text {
    pub const LR: f64 = 2e-3;
    pub const EPOCHS: usize = 10;
    pub const BATCH_SIZE: usize = 8;
}
