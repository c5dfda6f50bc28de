//! Unlearning a text model: forget and retain sets of question/answer pairs (or documents); the
//! loss covers answer tokens only.

use super::objective::ForgetObjective;
use super::task::{StepBatch, Task, Term};
use crate::arch::text::TextModel;
use crate::error::{Error, Result};
use crate::nn::Params;
use crate::text::data::{token_log_probs, Encoded, TokenBatch};
use candle_core::Tensor;

pub struct TextTask<'a> {
    pub model: &'a TextModel,
    /// Forget examples with their own answers.
    pub forget: Vec<Encoded>,
    /// The forget prompts with a refusal as the answer (the refusal objective's targets).
    pub refusals: Vec<Encoded>,
    pub retain: Vec<Encoded>,
    /// Summed log-probability of each forget answer under the model before unlearning (NPO's
    /// reference, computed once).
    pub reference_log_probs: Vec<f32>,
    pub objective: ForgetObjective,
    /// τ of the level objectives: the held-out answers' mean NLL per token (held-out-level)
    /// or per fact token (fact-level).
    pub held_out_nll: f32,
    pub npo_beta: f64,
    /// SimNPO's β and γ.
    pub simnpo: SimNpo,
    /// RMU's layer, direction and weights, for the rmu objective and baseline.
    pub rmu: Option<RmuTarget>,
    pub lora_scale: f64,
    pub pad_id: u32,
}

/// What representation misdirection needs: the layer whose residual stream it steers, the
/// target c·u (a fixed random unit vector u scaled by the steering coefficient c), the weight α
/// of the retain term, and the model before training, whose retain representations the retain
/// term keeps (None for LoRA: the model with its adapters at scale 0 is that model).
pub struct RmuTarget {
    pub layer: usize,
    /// c·u, [hidden], on the parameters' device.
    pub target: Tensor,
    pub alpha: f64,
    pub frozen: Option<Params>,
}

/// RMU's settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rmu {
    /// The block (0-based) whose output is steered [default: a quarter of the way in].
    pub layer: Option<usize>,
    /// The steering coefficient c.
    pub coefficient: f64,
    /// The weight α of the retain term of the RMU baseline.
    pub alpha: f64,
}

impl Task for TextTask<'_> {
    fn step_batch<'b>(
        &'b self,
        params: &'b Params,
        forget: &[usize],
        retain: &[usize],
    ) -> Result<Box<dyn StepBatch + 'b>> {
        Ok(Box::new(TextBatch {
            task: self,
            params,
            forget: forget.to_vec(),
            retain: retain.to_vec(),
        }))
    }
}

pub struct TextBatch<'a> {
    task: &'a TextTask<'a>,
    params: &'a Params,
    forget: Vec<usize>,
    retain: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq)]
enum Rows {
    Forget,
    Refusal,
    Retain,
}

impl TextBatch<'_> {
    fn rows_for(&self, term: Term) -> Result<Rows> {
        Ok(match term {
            Term::Forget => match self.task.objective {
                ForgetObjective::Npo
                | ForgetObjective::Simnpo
                | ForgetObjective::HeldOutLevel
                | ForgetObjective::FactLevel => Rows::Forget,
                ForgetObjective::Refusal => Rows::Refusal,
                other => {
                    return Err(Error::Usage(format!(
                        "the {} objective is for classifiers; text models take held-out-level, fact-level, npo, simnpo, refusal or rmu",
                        other.name()
                    )))
                }
            },
            Term::ForgetLikelihood | Term::ForgetNpo | Term::ForgetSimnpo | Term::ForgetRmu => {
                Rows::Forget
            }
            Term::ForgetRandomLabel => {
                return Err(Error::Usage(
                    "rl (random labels) is a method for classifiers; text models take npo, ga, graddiff or ft".into(),
                ))
            }
            Term::Retain | Term::RetainRepresentation => Rows::Retain,
        })
    }

    /// Whether a term is computed from a layer's representation rather than log-probabilities.
    fn on_representations(&self, term: Term) -> bool {
        matches!(term, Term::ForgetRmu | Term::RetainRepresentation)
            || (term == Term::Forget && self.task.objective == ForgetObjective::Rmu)
    }

    /// RMU's terms: the forget rows' representation against c·u, or α × the retain rows'
    /// against the frozen model's; mean squared distance over the positions that predict the
    /// answer and the hidden width.
    fn representation_loss(&self, term: Term) -> Result<Tensor> {
        let rmu = self.task.rmu.as_ref().ok_or_else(|| {
            Error::Usage("representation misdirection (rmu) needs its layer and target".into())
        })?;
        let forget = term != Term::RetainRepresentation;
        let rows: Vec<&Encoded> = if forget {
            self.forget.iter().map(|&i| &self.task.forget[i]).collect()
        } else {
            self.retain.iter().map(|&i| &self.task.retain[i]).collect()
        };
        let batch = TokenBatch::new(&rows, self.task.pad_id, self.params.device())?;
        let at = |params: &Params, scale: f64| {
            self.task.model.residual_at(
                params,
                &batch.ids,
                &batch.mask,
                scale,
                rmu.layer,
                &batch.positions,
            )
        };
        let h = at(self.params, self.task.lora_scale)?;
        if forget {
            return Ok(h.broadcast_sub(&rmu.target)?.sqr()?.mean_all()?);
        }
        let kept = match &rmu.frozen {
            Some(frozen) => at(frozen, self.task.lora_scale)?,
            None => at(&self.params.detached(), 0.0)?,
        }
        .detach();
        Ok(((h - kept)?.sqr()?.mean_all()? * rmu.alpha)?)
    }

    fn npo(&self, log_probs: &Tensor) -> Result<Tensor> {
        let reference: Vec<f32> = self
            .forget
            .iter()
            .map(|&i| self.task.reference_log_probs[i])
            .collect();
        let reference = Tensor::from_vec(reference, self.forget.len(), self.params.device())?;
        let beta = self.task.npo_beta;
        let x = ((log_probs - reference)? * beta)?;
        Ok((softplus(&x)?.mean_all()? * (2.0 / beta))?)
    }

    /// SimNPO (Fan et al., 2024): (2/β)·mean softplus(β·log π(y|x)/|y| + γ) over the forget
    /// rows, from their summed answer log-probabilities and answer lengths.
    fn simnpo(&self, log_probs: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let SimNpo { beta, gamma } = self.task.simnpo;
        let x = ((nll_per_token(log_probs, lengths)? * -beta)? + gamma)?;
        Ok((softplus(&x)?.mean_all()? * (2.0 / beta))?)
    }
}

impl TextBatch<'_> {
    fn held_out_level(&self, log_probs: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        held_out_level(log_probs, lengths, self.task.held_out_nll)
    }
}

/// The held-out level: mean over forget answers of max(0, τ − NLL per token), from their summed
/// log-probabilities and answer lengths, so that each answer becomes as unlikely as an answer
/// the model never saw, and no more (pushing further is what tells a membership attack which
/// answers were forgotten). The floor is per answer: a floor on the batch's mean NLL is met by
/// ruining a few answers while the others stay as known as before (docs/scenario.md).
fn held_out_level(log_probs: &Tensor, lengths: &[usize], tau: f32) -> Result<Tensor> {
    let short = (nll_per_token(log_probs, lengths)?.neg()? + tau as f64)?.relu()?;
    Ok(short.mean_all()?)
}

/// The fact level: ½·mean over forget answers of (τ − NLL per fact token)², from their summed
/// fact-token log-probabilities and fact lengths. Two-sided, unlike the held-out level: a fact
/// pushed past the level of facts the model never saw is pulled back, since that gap, not only
/// a known fact, is what a membership attack reads; the tokens around the fact (names copied
/// from the question, the answer's wording) carry no loss here, so they stay as taught.
fn fact_level(log_probs: &Tensor, lengths: &[usize], tau: f32) -> Result<Tensor> {
    let off = (nll_per_token(log_probs, lengths)? - tau as f64)?;
    Ok((off.sqr()?.mean_all()? * 0.5)?)
}

/// Each row's mean NLL per token from its summed log-probability and its number of tokens.
fn nll_per_token(log_probs: &Tensor, lengths: &[usize]) -> Result<Tensor> {
    let lengths: Vec<f32> = lengths.iter().map(|&n| n.max(1) as f32).collect();
    let lengths = Tensor::from_vec(lengths, log_probs.dims(), log_probs.device())?;
    Ok((log_probs.neg()? / lengths)?)
}

/// softplus(x) = max(x, 0) + log(1 + e^(−|x|)), stable for any x.
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?)
}

/// SimNPO's settings: the inverse temperature β and the reward margin γ.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SimNpo {
    pub beta: f64,
    pub gamma: f64,
}

impl StepBatch for TextBatch<'_> {
    fn values(&self, terms: &[Term]) -> Result<Vec<f32>> {
        // Detached parameters: the forward pass records no graph, so its activations are freed
        // as it goes (a language model's graph is most of a step's memory).
        let plain = self.params.detached();
        let batch = TextBatch {
            task: self.task,
            params: &plain,
            forget: self.forget.clone(),
            retain: self.retain.clone(),
        };
        batch
            .losses(terms)?
            .iter()
            .map(|t| Ok(t.to_scalar::<f32>()?))
            .collect()
    }

    fn losses(&self, terms: &[Term]) -> Result<Vec<Tensor>> {
        let plain: Vec<Term> = terms
            .iter()
            .copied()
            .filter(|t| !self.on_representations(*t))
            .collect();
        let mut from_log_probs = if plain.is_empty() {
            Vec::new()
        } else {
            self.log_prob_losses(&plain)?
        }
        .into_iter();
        terms
            .iter()
            .map(|&t| {
                if self.on_representations(t) {
                    self.representation_loss(t)
                } else {
                    Ok(from_log_probs.next().expect("one loss per plain term"))
                }
            })
            .collect()
    }
}

impl TextBatch<'_> {
    /// The terms computed from the answers' log-probabilities, with one forward pass.
    fn log_prob_losses(&self, terms: &[Term]) -> Result<Vec<Tensor>> {
        let kinds: Vec<Rows> = terms
            .iter()
            .map(|t| self.rows_for(*t))
            .collect::<Result<_>>()?;
        let mut groups: Vec<Rows> = Vec::new();
        for k in &kinds {
            if !groups.contains(k) {
                groups.push(*k);
            }
        }
        // One forward pass over every needed row, padded to a common length.
        let mut rows: Vec<&Encoded> = Vec::new();
        let mut spans = Vec::new();
        for g in &groups {
            let start = rows.len();
            match g {
                Rows::Forget => rows.extend(self.forget.iter().map(|&i| &self.task.forget[i])),
                Rows::Refusal => rows.extend(self.forget.iter().map(|&i| &self.task.refusals[i])),
                Rows::Retain => rows.extend(self.retain.iter().map(|&i| &self.task.retain[i])),
            }
            spans.push((*g, start, rows.len() - start));
        }
        let batch = TokenBatch::new(&rows, self.task.pad_id, self.params.device())?;
        let per_token =
            token_log_probs(self.task.model, self.params, &batch, self.task.lora_scale)?;
        let log_probs = batch.sum_rows(&per_token)?;
        let span = |g: Rows| spans.iter().find(|s| s.0 == g).expect("group computed");
        // Mean negative log-likelihood per answer token over a group.
        let nll = |g: Rows| -> Result<Tensor> {
            let (_, start, len) = *span(g);
            let tokens: usize = batch.counts[start..start + len].iter().sum();
            Ok((log_probs.narrow(0, start, len)?.sum_all()? * (-1.0 / tokens.max(1) as f64))?)
        };
        terms
            .iter()
            .zip(&kinds)
            .map(|(term, rows)| match (term, rows) {
                (Term::Forget, Rows::Forget) | (Term::ForgetSimnpo, _)
                    if *term == Term::ForgetSimnpo
                        || self.task.objective == ForgetObjective::Simnpo =>
                {
                    let (_, start, len) = *span(Rows::Forget);
                    self.simnpo(
                        &log_probs.narrow(0, start, len)?,
                        &batch.counts[start..start + len],
                    )
                }
                (Term::Forget, Rows::Forget)
                    if self.task.objective == ForgetObjective::HeldOutLevel =>
                {
                    let (_, start, len) = *span(Rows::Forget);
                    self.held_out_level(
                        &log_probs.narrow(0, start, len)?,
                        &batch.counts[start..start + len],
                    )
                }
                (Term::Forget, Rows::Forget)
                    if self.task.objective == ForgetObjective::FactLevel =>
                {
                    let (_, start, len) = *span(Rows::Forget);
                    let (weights, counts) = batch.fact_weights()?;
                    let counts: Vec<usize> = counts[start..start + len]
                        .iter()
                        .map(|n| {
                            n.ok_or_else(|| {
                                Error::Usage(
                                    "the fact-level objective needs every forget answer to \
                                     contain its `value`"
                                        .into(),
                                )
                            })
                        })
                        .collect::<Result<_>>()?;
                    let fact_log_probs = batch.sum_rows(&(&per_token * weights)?)?;
                    fact_level(
                        &fact_log_probs.narrow(0, start, len)?,
                        &counts,
                        self.task.held_out_nll,
                    )
                }
                (Term::Forget, Rows::Forget) | (Term::ForgetNpo, _) => {
                    let (_, start, len) = *span(Rows::Forget);
                    self.npo(&log_probs.narrow(0, start, len)?)
                }
                (_, g) => nll(*g),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn the_held_out_level_pushes_only_answers_likelier_than_unseen_ones() {
        // Per-token NLLs 1 and 5 against τ = 3: the first is short by 2, the second is past it.
        let lp = Var::from_tensor(&Tensor::new(&[-2.0f32, -10.0], &Device::Cpu).unwrap()).unwrap();
        let loss = held_out_level(lp.as_tensor(), &[2, 2], 3.0).unwrap();
        assert_eq!(loss.to_scalar::<f32>().unwrap(), 1.0);
        let grads = loss.backward().unwrap();
        let g: Vec<f32> = grads.get(lp.as_tensor()).unwrap().to_vec1().unwrap();
        // Raising the first answer's NLL lowers the loss; the second gets no push at all.
        assert_eq!(g, vec![0.25, 0.0]);
    }

    #[test]
    fn the_fact_level_pulls_facts_to_the_level_from_either_side() {
        // Per-fact-token NLLs 1 and 5 against τ = 3: ½·mean(2², 2²) = 2.
        let lp = Var::from_tensor(&Tensor::new(&[-2.0f32, -10.0], &Device::Cpu).unwrap()).unwrap();
        let loss = fact_level(lp.as_tensor(), &[2, 2], 3.0).unwrap();
        assert_eq!(loss.to_scalar::<f32>().unwrap(), 2.0);
        let grads = loss.backward().unwrap();
        let g: Vec<f32> = grads.get(lp.as_tensor()).unwrap().to_vec1().unwrap();
        // ∂/∂lp_i = (1/2)·(NLL_i − τ)·(−1/2): descent lowers the known fact's log-probability
        // and raises the one pushed past the level.
        assert_eq!(g, vec![0.5, -0.5]);
        // At the level, nothing moves.
        let at = fact_level(&Tensor::new(&[-6.0f32], &Device::Cpu).unwrap(), &[2], 3.0).unwrap();
        assert_eq!(at.to_scalar::<f32>().unwrap(), 0.0);
    }
}
