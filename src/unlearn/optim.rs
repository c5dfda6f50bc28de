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
