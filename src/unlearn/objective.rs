//! Losses. Forget objectives are minimised: their minimum means "forgotten". They are separate
//! from the methods, so any method can run any objective.

use crate::error::Result;
use crate::nn::log_softmax;
use candle_core::{Device, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ForgetObjective {
    /// Cross-entropy towards a fixed random wrong label per forget sample (the "RL" objective).
    RandomLabel,
    /// KL divergence from the uniform distribution to the model's prediction.
    KlUniform,
}

impl ForgetObjective {
    /// The forget loss on a batch; `random_labels` holds each sample's random wrong label.
    pub fn loss(&self, logits: &Tensor, random_labels: &[u32]) -> Result<Tensor> {
        match self {
            ForgetObjective::RandomLabel => cross_entropy(logits, random_labels),
            ForgetObjective::KlUniform => kl_from_uniform(logits),
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossForm {
    Log,
    Plain,
}

impl LossForm {
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
