//! Unlearning methods. Each takes one step on a batch of forget and retain samples: implicit
//! gradient surgery (the default), explicit gradient surgery, and the baselines. See
//! docs/method.md for the mathematics.

use super::dual::DualVariable;
use super::objective::LossForm;
use super::optim::Optimizer;
use super::task::{StepBatch, Term};
use crate::error::{Error, Result};
use candle_core::{Tensor, Var};

/// The requested terms of a step, as an array.
fn losses<const N: usize>(batch: &dyn StepBatch, terms: [Term; N]) -> Result<[Tensor; N]> {
    let v = batch.losses(&terms)?;
    v.try_into()
        .map_err(|_| Error::Usage("a step batch returned the wrong number of losses".into()))
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum MethodKind {
    /// Implicit gradient surgery: one backward pass a step, dual variable λ.
    Igs,
    /// Explicit unilateral gradient surgery: two backward passes, closed-form λ*.
    Egs,
    /// Fine-tune on the retain set only.
    Ft,
    /// Gradient ascent on the forget set.
    Ga,
    /// Gradient ascent on the forget set plus descent on the retain set.
    Graddiff,
    /// Random labels on the forget set plus the retain set.
    Rl,
    /// Negative preference optimisation on the forget set plus the retain set (text models).
    Npo,
    /// SimNPO (reference-free, length-normalised NPO) on the forget set plus the retain set
    /// (text models).
    Simnpo,
    /// RMU (representation misdirection on the forget set, the same layer kept where it was on
    /// the retain set; text models).
    Rmu,
}

impl MethodKind {
    pub fn name(&self) -> &'static str {
        match self {
            MethodKind::Igs => "igs",
            MethodKind::Egs => "egs",
            MethodKind::Ft => "ft",
            MethodKind::Ga => "ga",
            MethodKind::Graddiff => "graddiff",
            MethodKind::Rl => "rl",
            MethodKind::Npo => "npo",
            MethodKind::Simnpo => "simnpo",
            MethodKind::Rmu => "rmu",
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct StepStats {
    /// Forget objective before the step.
    pub forget_loss: f32,
    /// Retain cross-entropy before the step.
    pub retain_loss: f32,
    /// The dual variable (or λ*) the step used.
    pub lambda: Option<f32>,
    pub forwards: usize,
    pub backwards: usize,
}

/// Gradients of `loss` for every trainable variable (zeros where the loss does not reach it).
pub fn gradients(loss: &Tensor, vars: &[Var]) -> Result<Vec<Tensor>> {
    let store = loss.backward()?;
    vars.iter()
        .map(|v| match store.get(v.as_tensor()) {
            Some(g) => Ok(g.clone()),
            None => Ok(v.as_tensor().zeros_like()?),
        })
        .collect()
}

pub trait Method {
    fn step(
        &mut self,
        batch: &dyn StepBatch,
        vars: &[Var],
        optimizer: &mut Optimizer,
    ) -> Result<StepStats>;

    /// What the method carries from step to step, for checkpoints of a run.
    fn save_state(&self) -> MethodState {
        MethodState::default()
    }

    fn load_state(&mut self, _state: &MethodState) {}
}

/// The step-to-step state of a method (only implicit surgery has any).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct MethodState {
    pub dual: Option<DualVariable>,
    pub previous_retain_phi: Option<f32>,
}

fn scalar(t: &Tensor) -> Result<f32> {
    Ok(t.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?)
}

fn check_finite(step_what: &'static str, v: f32) -> Result<f32> {
    if v.is_finite() {
        Ok(v)
    } else {
        // The step number is filled in by the run loop.
        Err(Error::NonFinite {
            step: 0,
            what: step_what,
            value: v,
        })
    }
}

/// Implicit gradient surgery (Zhou et al., NeurIPS 2025): minimise φ(ℓ_f) + λ·φ(ℓ_r) with one
/// backward pass, then move λ by the observed change of the retain loss against the tolerance ε.
pub struct ImplicitSurgery {
    pub form: LossForm,
    pub dual: DualVariable,
    /// Observe the retain loss on the next step's batch instead of a second forward pass.
    pub fast: bool,
    previous_retain_phi: Option<f32>,
}

impl ImplicitSurgery {
    pub fn new(form: LossForm, dual: DualVariable, fast: bool) -> Self {
        ImplicitSurgery {
            form,
            dual,
            fast,
            previous_retain_phi: None,
        }
    }
}

impl Method for ImplicitSurgery {
    fn save_state(&self) -> MethodState {
        MethodState {
            dual: Some(self.dual.clone()),
            previous_retain_phi: self.previous_retain_phi,
        }
    }

    fn load_state(&mut self, state: &MethodState) {
        if let Some(d) = &state.dual {
            self.dual = d.clone();
        }
        self.previous_retain_phi = state.previous_retain_phi;
    }

    fn step(
        &mut self,
        batch: &dyn StepBatch,
        vars: &[Var],
        optimizer: &mut Optimizer,
    ) -> Result<StepStats> {
        let [forget_loss, retain_loss] = losses(batch, [Term::Forget, Term::Retain])?;
        let lf = check_finite("the forget loss", scalar(&forget_loss)?)?;
        let lr = check_finite("the retain loss", scalar(&retain_loss)?)?;
        let retain_phi = self.form.apply_f32(lr);
        if self.fast {
            // This batch's retain loss is the "after" reading of the previous step.
            if let Some(before) = self.previous_retain_phi {
                self.dual.update(before - retain_phi);
            }
        }
        let lambda = self.dual.weight();
        check_finite("the dual variable", lambda)?;
        let total =
            (self.form.apply(&forget_loss)? + (self.form.apply(&retain_loss)? * lambda as f64)?)?;
        let grads = gradients(&total, vars)?;
        optimizer.step(vars, &grads)?;
        let mut forwards = 1;
        if self.fast {
            self.previous_retain_phi = Some(retain_phi);
        } else {
            let after = batch.values(&[Term::Retain])?[0];
            forwards += 1;
            let after = check_finite("the retain loss", after)?;
            self.dual.update(retain_phi - self.form.apply_f32(after));
        }
        Ok(StepStats {
            forget_loss: lf,
            retain_loss: lr,
            lambda: Some(lambda),
            forwards,
            backwards: 1,
        })
    }
}

/// Explicit unilateral gradient surgery: d = g_f + λ* g_r with
/// λ* = max(0, (−⟨g_r, g_f⟩ − ε) / (‖g_r‖² + 1e-8)), from two backward passes.
pub struct ExplicitSurgery {
    pub form: LossForm,
    pub epsilon: f64,
}

/// λ* of explicit surgery from the inner product ⟨g_r, g_f⟩ and ‖g_r‖².
pub fn explicit_lambda(dot_rf: f64, norm_r_sq: f64, epsilon: f64) -> f64 {
    ((-dot_rf - epsilon) / (norm_r_sq + 1e-8)).max(0.0)
}

impl Method for ExplicitSurgery {
    fn step(
        &mut self,
        batch: &dyn StepBatch,
        vars: &[Var],
        optimizer: &mut Optimizer,
    ) -> Result<StepStats> {
        // Separate forward passes: each backward then covers only its own half of the batch,
        // so the two backward passes together cost about one backward over the whole batch.
        let [forget_loss] = losses(batch, [Term::Forget])?;
        let [retain_loss] = losses(batch, [Term::Retain])?;
        let lf = check_finite("the forget loss", scalar(&forget_loss)?)?;
        let lr = check_finite("the retain loss", scalar(&retain_loss)?)?;
        let g_f = gradients(&self.form.apply(&forget_loss)?, vars)?;
        let g_r = gradients(&self.form.apply(&retain_loss)?, vars)?;
        let mut dot = 0f64;
        let mut norm = 0f64;
        for (f, r) in g_f.iter().zip(&g_r) {
            dot += scalar(&(f * r)?.sum_all()?)? as f64;
            norm += scalar(&r.sqr()?.sum_all()?)? as f64;
        }
        let lambda = explicit_lambda(dot, norm, self.epsilon);
        check_finite("λ*", lambda as f32)?;
        let direction: Vec<Tensor> = if lambda > 0.0 {
            g_f.iter()
                .zip(&g_r)
                .map(|(f, r)| Ok((f + (r * lambda)?)?))
                .collect::<Result<_>>()?
        } else {
            g_f
        };
        optimizer.step(vars, &direction)?;
        Ok(StepStats {
            forget_loss: lf,
            retain_loss: lr,
            lambda: Some(lambda as f32),
            forwards: 2,
            backwards: 2,
        })
    }
}

/// The baselines: each minimises a fixed weighted sum of terms with one backward pass.
pub struct Baseline {
    pub kind: MethodKind,
}

impl Method for Baseline {
    fn step(
        &mut self,
        batch: &dyn StepBatch,
        vars: &[Var],
        optimizer: &mut Optimizer,
    ) -> Result<StepStats> {
        let (loss, lf, lr) = match self.kind {
            MethodKind::Ft => {
                let [retain] = losses(batch, [Term::Retain])?;
                let lr = scalar(&retain)?;
                (retain, f32::NAN, lr)
            }
            MethodKind::Ga => {
                let [forget] = losses(batch, [Term::ForgetLikelihood])?;
                let lf = scalar(&forget)?;
                ((forget * -1.0)?, lf, f32::NAN)
            }
            MethodKind::Graddiff => {
                let [forget, retain] = losses(batch, [Term::ForgetLikelihood, Term::Retain])?;
                let (lf, lr) = (scalar(&forget)?, scalar(&retain)?);
                ((retain - forget)?, lf, lr)
            }
            MethodKind::Rl | MethodKind::Npo | MethodKind::Simnpo => {
                let term = match self.kind {
                    MethodKind::Rl => Term::ForgetRandomLabel,
                    MethodKind::Npo => Term::ForgetNpo,
                    _ => Term::ForgetSimnpo,
                };
                let [forget, retain] = losses(batch, [term, Term::Retain])?;
                let (lf, lr) = (scalar(&forget)?, scalar(&retain)?);
                ((forget + retain)?, lf, lr)
            }
            MethodKind::Rmu => {
                let [forget, retain] =
                    losses(batch, [Term::ForgetRmu, Term::RetainRepresentation])?;
                let (lf, lr) = (scalar(&forget)?, scalar(&retain)?);
                ((forget + retain)?, lf, lr)
            }
            MethodKind::Igs | MethodKind::Egs => unreachable!("not a baseline"),
        };
        let value = scalar(&loss)?;
        check_finite("the loss", value)?;
        let grads = gradients(&loss, vars)?;
        optimizer.step(vars, &grads)?;
        Ok(StepStats {
            forget_loss: lf,
            retain_loss: lr,
            lambda: None,
            forwards: 1,
            backwards: 1,
        })
    }
}
