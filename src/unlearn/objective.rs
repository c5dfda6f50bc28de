//! Losses. Forget objectives are minimised: their minimum means "forgotten". They are separate
//! from the methods, so any method can run any objective.

use crate::error::Result;
use crate::nn::log_softmax;
use candle_core::{Device, Tensor};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum ForgetObjective {
    /// Cross-entropy towards a fixed random wrong label per forget sample (the "RL" objective).
    RandomLabel,
    /// KL divergence from the uniform distribution to the model's prediction.
    KlUniform,
    /// Raise the forget set's cross-entropy (true labels) to the model's loss on held-out data,
    /// and no further: max(0, τ − CE_forget), τ = mean test cross-entropy before unlearning.
    /// For forgetting random samples, whose forgotten state is "looks like unseen data". Text
    /// models: per forget answer, max(0, τ − its NLL per token), τ the mean NLL per token of the
    /// held-out set's answers (`--holdout-set`) before unlearning.
    HeldOutLevel,
    /// Text models: bring each forget answer's fact (the tokens that state its `value`) to the
    /// likelihood of the held-out set's facts, from either side: ½·mean (NLL_fact − τ)², τ the
    /// mean NLL per fact token of the held-out answers before unlearning. The wording around
    /// the fact is left to the retain term.
    FactLevel,
    /// Text models: negative preference optimisation, (2/β)·mean softplus(β·(log π − log π_ref))
    /// over the forget answers, with π_ref the model before unlearning.
    Npo,
    /// Text models: cross-entropy towards a refusal ("I don't know.") in place of the answer.
    Refusal,
    /// Text models: SimNPO, NPO without a reference model and normalised by answer length,
    /// (2/β)·mean softplus(β·log π/|y| + γ).
    Simnpo,
    /// Text models: representation misdirection (RMU): the mean squared distance of a chosen
    /// layer's residual stream on the forget answers from c·u, a fixed random unit vector
    /// scaled by the steering coefficient c.
    Rmu,
}

impl ForgetObjective {
    /// The objectives of language models.
    pub fn is_for_text(&self) -> bool {
        matches!(
            self,
            ForgetObjective::Npo
                | ForgetObjective::Refusal
                | ForgetObjective::Simnpo
                | ForgetObjective::Rmu
                | ForgetObjective::HeldOutLevel
                | ForgetObjective::FactLevel
        )
    }

    /// The name on the command line and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            ForgetObjective::RandomLabel => "random-label",
            ForgetObjective::KlUniform => "kl-uniform",
            ForgetObjective::HeldOutLevel => "held-out-level",
            ForgetObjective::FactLevel => "fact-level",
            ForgetObjective::Npo => "npo",
            ForgetObjective::Refusal => "refusal",
            ForgetObjective::Simnpo => "simnpo",
            ForgetObjective::Rmu => "rmu",
        }
    }

    /// The objective a forget set calls for when none is chosen: a forgotten class should be
    /// predicted as anything but itself; forgotten samples should look like unseen data.
    pub fn default_for(forget: &crate::data::ForgetSpec) -> ForgetObjective {
        match forget {
            crate::data::ForgetSpec::Class(_) => ForgetObjective::RandomLabel,
            _ => ForgetObjective::HeldOutLevel,
        }
    }
}

/// A forget objective with what it needs besides the batch.
#[derive(Clone, Copy, Debug)]
pub struct ForgetLoss {
    pub objective: ForgetObjective,
    /// τ of [`ForgetObjective::HeldOutLevel`] (and of [`ForgetObjective::FactLevel`] for text).
    pub held_out_loss: f32,
}

impl ForgetLoss {
    /// The forget loss on forget logits; labels are the samples' true and random wrong labels.
    pub fn loss(
        &self,
        logits: &Tensor,
        true_labels: &[u32],
        random_labels: &[u32],
    ) -> Result<Tensor> {
        match self.objective {
            ForgetObjective::RandomLabel => cross_entropy(logits, random_labels),
            ForgetObjective::KlUniform => kl_from_uniform(logits),
            ForgetObjective::HeldOutLevel => {
                let ce = cross_entropy(logits, true_labels)?;
                Ok(((ce * -1.0)? + self.held_out_loss as f64)?.relu()?)
            }
            ForgetObjective::Npo
            | ForgetObjective::Refusal
            | ForgetObjective::Simnpo
            | ForgetObjective::Rmu
            | ForgetObjective::FactLevel => {
                Err(crate::error::Error::Usage(format!(
                    "the {} objective is for text models; classifiers take random-label, kl-uniform or held-out-level",
                    self.objective.name()
                )))
            }
        }
    }
}

/// One-hot targets [n, classes]; gathering by multiplication keeps the gradient path simple.
fn one_hot(labels: &[u32], classes: usize, device: &Device) -> Result<Tensor> {
    let mut v = vec![0f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        v[i * classes + l as usize] = 1.0;
    }
    Ok(Tensor::from_vec(v, (labels.len(), classes), device)?)
}

/// Mean cross-entropy of logits [n, classes] against integer labels.
pub fn cross_entropy(logits: &Tensor, labels: &[u32]) -> Result<Tensor> {
    let (n, classes) = logits.dims2()?;
    let targets = one_hot(labels, classes, logits.device())?;
    let picked = (log_softmax(logits)? * targets)?.sum_all()?;
    Ok((picked * (-1.0 / n as f64))?)
}

/// Mean KL(u ‖ p) with u uniform: −log K − mean_k log p_k, averaged over the batch. ≥ 0.
pub fn kl_from_uniform(logits: &Tensor) -> Result<Tensor> {
    let (n, classes) = logits.dims2()?;
    let mean_log_p = (log_softmax(logits)?.sum_all()? * (1.0 / (n * classes) as f64))?;
    Ok(((mean_log_p * -1.0)? - (classes as f64).ln())?)
}

/// A random label different from each true label, drawn once per sample.
pub fn random_wrong_labels(
    true_labels: &[u32],
    classes: usize,
    rng: &mut crate::rng::Rng,
) -> Vec<u32> {
    true_labels
        .iter()
        .map(|&y| {
            let r = rng.below(classes - 1) as u32;
            if r >= y {
                r + 1
            } else {
                r
            }
        })
        .collect()
}

/// How losses enter the combined objective of the dual method: log(x + 1e-8) or as they are.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum LossForm {
    Log,
    Plain,
}

impl LossForm {
    /// The log form suits objectives that approach zero smoothly; the level objectives reach
    /// zero exactly, where log would blow their gradient up, so they take the plain form.
    pub fn default_for(objective: ForgetObjective) -> LossForm {
        match objective {
            ForgetObjective::HeldOutLevel | ForgetObjective::FactLevel => LossForm::Plain,
            _ => LossForm::Log,
        }
    }

    pub fn apply(&self, loss: &Tensor) -> Result<Tensor> {
        Ok(match self {
            LossForm::Log => (loss + 1e-8)?.log()?,
            LossForm::Plain => loss.clone(),
        })
    }

    pub fn apply_f32(&self, loss: f32) -> f32 {
        match self {
            LossForm::Log => (loss + 1e-8).ln(),
            LossForm::Plain => loss,
        }
    }
}
