//! What a method needs from the model and data of a step, independent of the kind of model:
//! a method asks a [`StepBatch`] for loss terms; classifiers and text models answer.

use super::objective::{cross_entropy, ForgetLoss};
use crate::arch::Classifier;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::nn::Params;
use candle_core::Tensor;

/// A loss term over a step's forget or retain rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Term {
    /// The configured forget objective (minimised; its minimum means "forgotten").
    Forget,
    /// Mean negative log-likelihood of the forget rows' own targets (GA, GradDiff).
    ForgetLikelihood,
    /// Cross-entropy towards a random wrong label per forget row (the RL baseline; classifiers).
    ForgetRandomLabel,
    /// Negative preference optimisation on the forget rows (the NPO baseline; text models).
    ForgetNpo,
    /// SimNPO on the forget rows (the SimNPO baseline; text models).
    ForgetSimnpo,
    /// Representation misdirection on the forget rows (the RMU baseline; text models).
    ForgetRmu,
    /// α × the distance of the retain rows' representation from the frozen model's (the RMU
    /// baseline's retain term; text models).
    RetainRepresentation,
    /// Mean negative log-likelihood of the retain rows.
    Retain,
}

impl Term {
    pub fn on_forget_rows(&self) -> bool {
        !matches!(self, Term::Retain | Term::RetainRepresentation)
    }
}

/// One step's forget and retain samples together with the model that scores them.
pub trait StepBatch {
    /// The requested terms, computed with one forward pass over just the rows they need.
    fn losses(&self, terms: &[Term]) -> Result<Vec<Tensor>>;

    /// The terms' values only: no gradient graph is kept (readings such as igs's retain loss
    /// after a step).
    fn values(&self, terms: &[Term]) -> Result<Vec<f32>> {
        self.losses(terms)?
            .iter()
            .map(|t| Ok(t.to_scalar::<f32>()?))
            .collect()
    }
}

/// A model and its data, handing out the batches of a run.
pub trait Task {
    /// The step batch of the given forget and retain samples (indices into the task's sets).
    fn step_batch<'a>(
        &'a self,
        params: &'a Params,
        forget: &[usize],
        retain: &[usize],
    ) -> Result<Box<dyn StepBatch + 'a>>;
}

/// Unlearning a classifier: samples are rows of the training set.
pub struct ClassifierTask<'a> {
    pub classifier: &'a Classifier,
    pub train: &'a Dataset,
    pub objective: ForgetLoss,
    /// A fixed random wrong label for every training sample.
    pub random_labels: Vec<u32>,
}

impl<'a> ClassifierTask<'a> {
    pub fn new(
        classifier: &'a Classifier,
        train: &'a Dataset,
        objective: ForgetLoss,
        seed: u64,
    ) -> Self {
        let mut rng = crate::rng::Rng::derived(seed, "random-labels");
        let random_labels =
            super::objective::random_wrong_labels(&train.labels, classifier.num_labels(), &mut rng);
        ClassifierTask {
            classifier,
            train,
            objective,
            random_labels,
        }
    }
}

impl Task for ClassifierTask<'_> {
    fn step_batch<'b>(
        &'b self,
        params: &'b Params,
        forget: &[usize],
        retain: &[usize],
    ) -> Result<Box<dyn StepBatch + 'b>> {
        let mut both = forget.to_vec();
        both.extend_from_slice(retain);
        let (images, labels) = self.train.batch(&both, params.device())?;
        Ok(Box::new(ClassifierBatch {
            classifier: self.classifier,
            params,
            objective: self.objective,
            images,
            n_forget: forget.len(),
            forget_labels: labels[..forget.len()].to_vec(),
            forget_random_labels: forget.iter().map(|&i| self.random_labels[i]).collect(),
            retain_labels: labels[forget.len()..].to_vec(),
        }))
    }
}

/// Forget rows first, then retain rows, in one tensor.
pub struct ClassifierBatch<'a> {
    pub classifier: &'a Classifier,
    pub params: &'a Params,
    pub objective: ForgetLoss,
    pub images: Tensor,
    pub n_forget: usize,
    pub forget_labels: Vec<u32>,
    pub forget_random_labels: Vec<u32>,
    pub retain_labels: Vec<u32>,
}

impl StepBatch for ClassifierBatch<'_> {
    fn losses(&self, terms: &[Term]) -> Result<Vec<Tensor>> {
        let nf = self.n_forget;
        let nr = self.retain_labels.len();
        let need_forget = terms.iter().any(Term::on_forget_rows);
        let need_retain = terms.contains(&Term::Retain);
        let logits = |start: usize, len: usize| -> Result<Tensor> {
            let x = self.images.narrow(0, start, len)?;
            self.classifier.forward(self.params, &x, None)
        };
        // One forward pass over the rows the terms need.
        let (forget_logits, retain_logits) = match (need_forget, need_retain) {
            (true, true) => {
                let all = logits(0, nf + nr)?;
                (Some(all.narrow(0, 0, nf)?), Some(all.narrow(0, nf, nr)?))
            }
            (true, false) => (Some(logits(0, nf)?), None),
            (false, _) => (None, Some(logits(nf, nr)?)),
        };
        terms
            .iter()
            .map(|term| {
                let f = || forget_logits.as_ref().expect("forget rows computed");
                match term {
                    Term::Forget => {
                        self.objective
                            .loss(f(), &self.forget_labels, &self.forget_random_labels)
                    }
                    Term::ForgetLikelihood => cross_entropy(f(), &self.forget_labels),
                    Term::ForgetRandomLabel => cross_entropy(f(), &self.forget_random_labels),
                    Term::ForgetNpo
                    | Term::ForgetSimnpo
                    | Term::ForgetRmu
                    | Term::RetainRepresentation => Err(Error::Usage(
                        "npo, simnpo and rmu are methods for text models; classifiers take rl, ga, graddiff or ft"
                            .into(),
                    )),
                    Term::Retain => cross_entropy(
                        retain_logits.as_ref().expect("retain rows computed"),
                        &self.retain_labels,
                    ),
                }
            })
            .collect()
    }
}
