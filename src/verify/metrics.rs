//! Evaluation of a classifier: accuracies on the forget, retain and test sets, and the
//! membership-inference attack behind MIA-efficacy.

use crate::arch::Classifier;
use crate::data::{Dataset, Split};
use crate::error::Result;
use crate::nn::Params;
use crate::rng::Rng;
use ndarray::{ArrayView2, Axis};

const EVAL_BATCH: usize = 1024;

/// Logits of `classifier` on the samples `indices` of `data`, row-major [n, classes].
pub fn logits(
    classifier: &Classifier,
    params: &Params,
    data: &Dataset,
    indices: &[usize],
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(indices.len() * classifier.num_labels());
    for chunk in indices.chunks(EVAL_BATCH) {
        crate::interrupt::check()?;
        let (x, _) = data.batch(chunk, params.device())?;
        let l = classifier.forward(params, &x, None)?.detach();
        out.extend(l.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Per-sample prediction and confidence in the true label, from logits.
pub struct Predictions {
    pub predicted: Vec<u32>,
    pub true_confidence: Vec<f32>,
}

/// Host-side logits [n, classes] as an array view.
fn rows(logits: &[f32], n: usize, classes: usize) -> Result<ArrayView2<'_, f32>> {
    ArrayView2::from_shape((n, classes), logits).map_err(|e| {
        crate::error::Error::Runtime(format!(
            "{} logits for {n} rows of {classes}: {e}",
            logits.len()
        ))
    })
}

pub fn predictions(logits: &[f32], labels: &[u32], classes: usize) -> Result<Predictions> {
    let n = labels.len();
    let mut predicted = Vec::with_capacity(n);
    let mut true_confidence = Vec::with_capacity(n);
    for (row, &y) in rows(logits, n, classes)?.axis_iter(Axis(0)).zip(labels) {
        // softmax(row)[y] = exp(row[y] − max − log Σ exp(row − max)).
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let log_sum = row.fold(0f32, |s, &v| s + (v - max).exp()).ln();
        let (arg, _) = row
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 {
                    (i, v)
                } else {
                    best
                }
            });
        predicted.push(arg as u32);
        true_confidence.push((row[y as usize] - max - log_sum).exp());
    }
    Ok(Predictions {
        predicted,
        true_confidence,
    })
}

/// Mean cross-entropy of host-side logits against labels. It is the held-out level τ that
/// training starts from, so it is computed by the same candle cross-entropy that training uses,
/// on the host where the logits are.
pub fn mean_cross_entropy(logits: &[f32], labels: &[u32], classes: usize) -> Result<f32> {
    let host = candle_core::Device::Cpu;
    let t = candle_core::Tensor::from_slice(logits, (labels.len(), classes), &host)?;
    Ok(crate::unlearn::objective::cross_entropy(&t, labels)?.to_scalar::<f32>()?)
}

pub fn accuracy(predicted: &[u32], labels: &[u32]) -> f64 {
    if labels.is_empty() {
        return f64::NAN;
    }
    let correct = predicted.iter().zip(labels).filter(|(p, t)| p == t).count();
    100.0 * correct as f64 / labels.len() as f64
}

/// The four figures of merit, in percent.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Metrics {
    /// Unlearning accuracy: 100 − accuracy on the forget set.
    pub ua: f64,
    /// Accuracy on the retain set.
    pub ra: f64,
    /// Accuracy on the test set (without the forgotten class for class-wise forgetting).
    pub ta: f64,
    /// Share of forget samples the membership-inference attack calls non-members.
    pub mia: f64,
}

impl Metrics {
    /// Mean absolute difference over UA, RA, TA and MIA.
    pub fn gap(&self, other: &Metrics) -> f64 {
        ((self.ua - other.ua).abs()
            + (self.ra - other.ra).abs()
            + (self.ta - other.ta).abs()
            + (self.mia - other.mia).abs())
            / 4.0
    }
}

/// The evaluation sets of a run: forget, retain and test indices.
pub struct EvalSets<'a> {
    pub train: &'a Dataset,
    pub test: &'a Dataset,
    pub split: &'a Split,
    pub test_indices: Vec<usize>,
}

impl<'a> EvalSets<'a> {
    pub fn new(train: &'a Dataset, test: &'a Dataset, split: &'a Split) -> Self {
        let test_indices = (0..test.len())
            .filter(|&i| Some(test.labels[i]) != split.forget_class)
            .collect();
        EvalSets {
            train,
            test,
            split,
            test_indices,
        }
    }
}

/// Logits of the three evaluation sets, kept so that ONNX Runtime's can be compared to them.
pub struct SetLogits {
    pub forget: Vec<f32>,
    pub retain: Vec<f32>,
    pub test: Vec<f32>,
}

pub fn set_logits(classifier: &Classifier, params: &Params, sets: &EvalSets) -> Result<SetLogits> {
    Ok(SetLogits {
        forget: logits(classifier, params, sets.train, &sets.split.forget)?,
        retain: logits(classifier, params, sets.train, &sets.split.retain)?,
        test: logits(classifier, params, sets.test, &sets.test_indices)?,
    })
}

pub fn metrics(sets: &EvalSets, l: &SetLogits, classes: usize, seed: u64) -> Result<Metrics> {
    let labels = |d: &Dataset, idx: &[usize]| idx.iter().map(|&i| d.labels[i]).collect::<Vec<_>>();
    let forget_y = labels(sets.train, &sets.split.forget);
    let retain_y = labels(sets.train, &sets.split.retain);
    let test_y = labels(sets.test, &sets.test_indices);
    let f = predictions(&l.forget, &forget_y, classes)?;
    let r = predictions(&l.retain, &retain_y, classes)?;
    let t = predictions(&l.test, &test_y, classes)?;
    let attack = ConfidenceAttack::fit(&r.true_confidence, &t.true_confidence, seed);
    Ok(Metrics {
        ua: 100.0 - accuracy(&f.predicted, &forget_y),
        ra: accuracy(&r.predicted, &retain_y),
        ta: accuracy(&t.predicted, &test_y),
        mia: 100.0 * attack.non_member_share(&f.true_confidence),
    })
}

/// Membership inference from the model's confidence in the true label: a threshold, fitted on
/// retain samples (members) against test samples (non-members) in equal numbers, that best
/// separates the two; samples below it are called non-members. On a single feature this is what
/// the usual SVM attack on confidence learns, without its kernel machinery.
#[derive(Clone, Copy, Debug)]
pub struct ConfidenceAttack {
    pub threshold: f32,
    /// Balanced accuracy of the threshold on its own training data.
    pub fit_accuracy: f64,
}

impl ConfidenceAttack {
    pub fn fit(members: &[f32], non_members: &[f32], seed: u64) -> ConfidenceAttack {
        let n = members.len().min(non_members.len());
        let mut rng = Rng::derived(seed, "mia");
        let pick = |xs: &[f32], rng: &mut Rng| {
            let mut idx: Vec<usize> = (0..xs.len()).collect();
            rng.shuffle(&mut idx);
            idx[..n].iter().map(|&i| xs[i]).collect::<Vec<f32>>()
        };
        let m = pick(members, &mut rng);
        let nm = pick(non_members, &mut rng);
        // Candidates: every observed value; "member" means confidence ≥ threshold.
        let mut all: Vec<(f32, bool)> = m
            .iter()
            .map(|&c| (c, true))
            .chain(nm.iter().map(|&c| (c, false)))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Sweep: with the threshold just above position i, samples 0..=i are called non-members.
        let mut best = (f32::NEG_INFINITY, 0.5f64);
        let (mut members_below, mut non_members_below) = (0usize, 0usize);
        if n > 0 {
            for i in 0..all.len() {
                if all[i].1 {
                    members_below += 1;
                } else {
                    non_members_below += 1;
                }
                let is_boundary = i + 1 == all.len() || all[i + 1].0 > all[i].0;
                if !is_boundary {
                    continue;
                }
                let acc = 0.5 * (non_members_below as f64 / n as f64)
                    + 0.5 * ((n - members_below) as f64 / n as f64);
                if acc > best.1 {
                    let threshold = match all.get(i + 1) {
                        Some(next) => 0.5 * (all[i].0 + next.0),
                        None => f32::INFINITY,
                    };
                    best = (threshold, acc);
                }
            }
        }
        ConfidenceAttack {
            threshold: best.0,
            fit_accuracy: best.1,
        }
    }

    pub fn non_member_share(&self, confidences: &[f32]) -> f64 {
        if confidences.is_empty() {
            return f64::NAN;
        }
        confidences.iter().filter(|&&c| c < self.threshold).count() as f64
            / confidences.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_separates_confident_members_from_unsure_non_members() {
        let members = vec![0.99, 0.98, 0.97, 0.999, 0.95];
        let non_members = vec![0.5, 0.6, 0.3, 0.7, 0.2];
        let a = ConfidenceAttack::fit(&members, &non_members, 0);
        assert!(a.threshold > 0.7 && a.threshold < 0.95, "{}", a.threshold);
        assert_eq!(a.fit_accuracy, 1.0);
        assert_eq!(a.non_member_share(&[0.1, 0.2, 0.99, 0.98]), 0.5);
    }
}
