//! The forget set and the retain set: the forget set is a class, a list of sample indices, or
//! a seeded random fraction of the training data; the retain set is the rest.

use super::Dataset;
use crate::error::{Error, Result};
use crate::rng::Rng;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq)]
pub enum ForgetSpec {
    /// A class index or label name.
    Class(String),
    /// A file of sample indices into the training data (whitespace or comma separated).
    Indices(PathBuf),
    /// A random share of the training data, drawn with `seed`.
    Fraction { fraction: f64, seed: u64 },
}

impl ForgetSpec {
    pub fn describe(&self) -> String {
        match self {
            ForgetSpec::Class(c) => format!("class {c}"),
            ForgetSpec::Indices(p) => format!("indices from {}", p.display()),
            ForgetSpec::Fraction { fraction, seed } => {
                format!("random {:.1} % (seed {seed})", fraction * 100.0)
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Split {
    pub forget: Vec<usize>,
    pub retain: Vec<usize>,
    /// The forgotten class, for class-wise forgetting (its test samples leave the test metric).
    pub forget_class: Option<u32>,
}

pub fn select_forget(train: &Dataset, labels: &[String], spec: &ForgetSpec) -> Result<Split> {
    let (forget, forget_class) = match spec {
        ForgetSpec::Class(c) => {
            let class = resolve_class(c, labels)?;
            let idx: Vec<usize> = (0..train.len())
                .filter(|&i| train.labels[i] == class)
                .collect();
            if idx.is_empty() {
                return Err(Error::Selection(format!(
                    "class {c} ({}) does not occur in the training data {}",
                    labels[class as usize], train.source
                )));
            }
            (idx, Some(class))
        }
        ForgetSpec::Indices(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let mut idx = Vec::new();
            for tok in text
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|t| !t.is_empty())
            {
                let i: usize = tok.parse().map_err(|_| Error::Data {
                    path: path.clone(),
                    reason: format!("{tok:?} is not a sample index"),
                })?;
                if i >= train.len() {
                    return Err(Error::Data {
                        path: path.clone(),
                        reason: format!(
                            "index {i} is out of range: the training data has {} samples",
                            train.len()
                        ),
                    });
                }
                idx.push(i);
            }
            idx.sort_unstable();
            idx.dedup();
            (idx, None)
        }
        ForgetSpec::Fraction { fraction, seed } => {
            if !(*fraction > 0.0 && *fraction < 1.0) {
                return Err(Error::Selection(format!(
                    "the forget fraction must be between 0 and 1, got {fraction}"
                )));
            }
            let mut order: Vec<usize> = (0..train.len()).collect();
            Rng::derived(*seed, "forget-fraction").shuffle(&mut order);
            let n = ((train.len() as f64) * fraction).round() as usize;
            let mut idx = order[..n].to_vec();
            idx.sort_unstable();
            (idx, None)
        }
    };
    if forget.is_empty() {
        return Err(Error::Selection(format!(
            "the forget set ({}) is empty",
            spec.describe()
        )));
    }
    let mut is_forget = vec![false; train.len()];
    for &i in &forget {
        is_forget[i] = true;
    }
    let retain: Vec<usize> = (0..train.len()).filter(|&i| !is_forget[i]).collect();
    if retain.is_empty() {
        return Err(Error::Selection(
            "the forget set covers the whole training data; nothing is left to retain".into(),
        ));
    }
    Ok(Split {
        forget,
        retain,
        forget_class,
    })
}

/// A class given as an index ("3") or a label name ("Dress", case-insensitive).
pub fn resolve_class(c: &str, labels: &[String]) -> Result<u32> {
    if let Ok(i) = c.parse::<usize>() {
        if i < labels.len() {
            return Ok(i as u32);
        }
        return Err(Error::Selection(format!(
            "class {i} does not exist: the model has {} classes (0..{})",
            labels.len(),
            labels.len() - 1
        )));
    }
    labels
        .iter()
        .position(|l| l.eq_ignore_ascii_case(c))
        .map(|i| i as u32)
        .ok_or_else(|| {
            Error::Selection(format!(
                "no class named {c:?}; the model's classes are: {}",
                labels.join(", ")
            ))
        })
}
