//! Optimizers over the trainable `Var`s, taking the update direction explicitly so that a method
//! can step along a gradient it composed itself (explicit surgery's d = g_f + λ* g_r).

use crate::error::Result;
use candle_core::{Tensor, Var};

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerKind {
    /// PyTorch semantics: g ← g + wd·θ; b ← μ·b + g; θ ← θ − lr·b.
    Sgd { momentum: f64, weight_decay: f64 },
    /// Decoupled weight decay (Loshchilov & Hutter).
    Adamw {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
}

/// An optimizer by name, as the command line and job files choose it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    Sgd,
    Adamw,
}

impl OptimizerName {
    /// The optimizer with its settings; `momentum` applies to SGD only.
    pub fn kind(self, momentum: f64, weight_decay: f64) -> OptimizerKind {
        match self {
            OptimizerName::Sgd => OptimizerKind::Sgd {
                momentum,
                weight_decay,
            },
            OptimizerName::Adamw => OptimizerKind::adamw(weight_decay),
        }
    }
}

/// How the learning rate moves over a run.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The same rate at every step.
    Constant,
    /// Half a cosine from the rate at the first step to zero after the last (Loshchilov &
    /// Hutter, 2017, without restarts): the last steps repair the retain fit in small moves
    /// instead of leaving the model where a large forget step put it.
    Cosine,
}

impl LrSchedule {
    /// The rate of step `step` (from 0) of a run of `total` steps.
    pub fn rate(self, base: f64, step: usize, total: usize) -> f64 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine => {
                let progress = step as f64 / total.max(1) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

impl OptimizerKind {
    /// AdamW with the usual β₁ = 0.9, β₂ = 0.999, ε = 1e-8.
    pub fn adamw(weight_decay: f64) -> Self {
        OptimizerKind::Adamw {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }
}

pub struct Optimizer {
    pub kind: OptimizerKind,
    pub lr: f64,
    step: usize,
    first: Vec<Option<Tensor>>,
    second: Vec<Option<Tensor>>,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, lr: f64, num_vars: usize) -> Self {
        Optimizer {
            kind,
            lr,
            step: 0,
            first: vec![None; num_vars],
            second: vec![None; num_vars],
        }
    }

    /// Steps taken and the moment buffers by name (`first.{i}`, `second.{i}`), for checkpoints.
    pub fn state(&self) -> (usize, Vec<(String, Tensor)>) {
        let mut out = Vec::new();
        for (kind, buffers) in [("first", &self.first), ("second", &self.second)] {
            for (i, b) in buffers.iter().enumerate() {
                if let Some(t) = b {
                    out.push((format!("{kind}.{i}"), t.clone()));
                }
            }
        }
        (self.step, out)
    }

    pub fn restore(&mut self, step: usize, buffers: &std::collections::HashMap<String, Tensor>) {
        self.step = step;
        for (kind, slots) in [("first", &mut self.first), ("second", &mut self.second)] {
            for (i, slot) in slots.iter_mut().enumerate() {
                *slot = buffers.get(&format!("{kind}.{i}")).cloned();
            }
        }
    }

    pub fn step(&mut self, vars: &[Var], directions: &[Tensor]) -> Result<()> {
        self.step += 1;
        for (i, (var, g)) in vars.iter().zip(directions).enumerate() {
            let theta = var.as_tensor().detach();
            // A gradient can still hold its place in the autograd graph (candle detaches the
            // gradients it passes on, not those it leaves on variables): kept in a moment
            // buffer, it would keep every earlier step's activations alive.
            let g = &g.detach();
            let next = match self.kind {
                OptimizerKind::Sgd {
                    momentum,
                    weight_decay,
                } => {
                    let g = if weight_decay != 0.0 {
                        (g + (&theta * weight_decay)?)?
                    } else {
                        g.clone()
                    };
                    let update = if momentum != 0.0 {
                        let buf = match &self.first[i] {
                            Some(b) => ((b * momentum)? + &g)?,
                            None => g,
                        };
                        self.first[i] = Some(buf.clone());
                        buf
                    } else {
                        g
                    };
                    (theta - (update * self.lr)?)?
                }
                OptimizerKind::Adamw {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let m = match &self.first[i] {
                        Some(m) => ((m * beta1)? + (g * (1.0 - beta1))?)?,
                        None => (g * (1.0 - beta1))?,
                    };
                    let v = match &self.second[i] {
                        Some(v) => ((v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?,
                        None => (g.sqr()? * (1.0 - beta2))?,
                    };
                    self.first[i] = Some(m.clone());
                    self.second[i] = Some(v.clone());
                    let m_hat = (m / (1.0 - beta1.powi(self.step as i32)))?;
                    let v_hat = (v / (1.0 - beta2.powi(self.step as i32)))?;
                    let adam = (m_hat / (v_hat.sqrt()? + eps)?)?;
                    let decayed = (&theta * (1.0 - self.lr * weight_decay))?;
                    (decayed - (adam * self.lr)?)?
                }
            };
            var.set(&next)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{LrSchedule, Optimizer, OptimizerKind};
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn moment_buffers_hold_no_autograd_graph() {
        let var =
            Var::from_tensor(&Tensor::ones(4, candle_core::DType::F32, &Device::Cpu).unwrap())
                .unwrap();
        // A gradient that still tracks the op it came from, as candle leaves on variables.
        let grad = (var.as_tensor() * 2.0).unwrap();
        assert!(grad.track_op());
        for kind in [
            OptimizerKind::adamw(0.0),
            OptimizerKind::Sgd {
                momentum: 0.9,
                weight_decay: 0.0,
            },
        ] {
            let mut optimizer = Optimizer::new(kind, 0.1, 1);
            optimizer
                .step(std::slice::from_ref(&var), std::slice::from_ref(&grad))
                .unwrap();
            let (_, buffers) = optimizer.state();
            assert!(!buffers.is_empty());
            assert!(buffers.iter().all(|(_, b)| !b.track_op()), "{kind:?}");
        }
    }

    #[test]
    fn cosine_falls_from_the_rate_to_zero_through_half() {
        let at = |step| LrSchedule::Cosine.rate(0.002, step, 100);
        assert_eq!(at(0), 0.002);
        assert!((at(50) - 0.001).abs() < 1e-12);
        assert!(at(99) > 0.0 && at(99) < 1e-6);
        assert!((1..100).all(|s| at(s) < at(s - 1)));
        assert_eq!(LrSchedule::Constant.rate(0.002, 99, 100), 0.002);
    }
}
