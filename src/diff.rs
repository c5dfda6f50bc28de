//! `lethe diff A B`: what changed between two models — per tensor, and in their outputs on a
//! probe set — as JSON and as a self-contained HTML page with plots (no network resources).

use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::nn::log_softmax;
use crate::pipeline::LoadedModel;
use crate::verify::metrics;
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::path::Path;

pub const SCHEMA: &str = "lethe.diff/1";

#[derive(Clone, Debug, Serialize)]
pub struct TensorChange {
    pub name: String,
    pub shape: Vec<usize>,
    /// ‖B − A‖_F / ‖A‖_F (∞ when A is all zeros and B is not).
    pub relative_frobenius: f64,
    pub max_abs_change: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassAccuracy {
    pub label: String,
    pub samples: usize,
    pub a: f64,
    pub b: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OutputChange {
    pub probe: String,
    pub samples: usize,
    /// Mean and largest per-sample KL(p_A ‖ p_B).
    pub mean_kl: f64,
    pub max_kl: f64,
    /// Samples whose top-1 class differs between A and B.
    pub top1_flips: usize,
    pub flip_rate: f64,
    pub per_class_accuracy: Vec<ClassAccuracy>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunCurves {
    pub forget_loss: Vec<Option<f32>>,
    pub retain_loss: Vec<Option<f32>>,
    pub lambda: Vec<Option<f32>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DiffReport {
    pub schema: &'static str,
    pub a: String,
    pub b: String,
    pub changed_tensors: usize,
    /// Every tensor both models hold, most changed first.
    pub tensors: Vec<TensorChange>,
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    pub outputs: Option<OutputChange>,
    /// Losses and λ per step, when B is a lethe output with its report.json.
    pub run: Option<RunCurves>,
}

pub fn diff(a: &Path, b: &Path, probe: Option<&DataSpec>) -> Result<DiffReport> {
    let ma = LoadedModel::open(a)?;
    let mb = LoadedModel::open(b)?;
    let device = Device::Cpu;
    let names_a: Vec<&String> = ma.checkpoint.tensor_names().collect();
    let names_b: Vec<&String> = mb.checkpoint.tensor_names().collect();
    let mut tensors = Vec::new();
    for name in &names_a {
        if !mb.checkpoint.contains(name) {
            continue;
        }
        let (sa, sb) = (ma.checkpoint.shape(name), mb.checkpoint.shape(name));
        if sa != sb {
            return Err(Error::ShapeMismatch {
                name: name.to_string(),
                expected: sa.unwrap_or_default().to_vec(),
                found: sb.unwrap_or_default().to_vec(),
            });
        }
        let (ta, tb) = match (
            ma.checkpoint.load_f32(name, &device),
            mb.checkpoint.load_f32(name, &device),
        ) {
            (Ok(x), Ok(y)) => (x, y),
            // Integer tensors (ids, counters) are compared by bytes only.
            _ => continue,
        };
        let delta = (&tb - &ta)?;
        let norm = |t: &Tensor| -> Result<f64> {
            Ok(t.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt() as f64)
        };
        let (dn, an) = (norm(&delta)?, norm(&ta)?);
        let relative_frobenius = if an > 0.0 {
            dn / an
        } else if dn > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        let max_abs_change = delta.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? as f64;
        tensors.push(TensorChange {
            name: name.to_string(),
            shape: sa.unwrap_or_default().to_vec(),
            relative_frobenius,
            max_abs_change,
        });
    }
    tensors.sort_by(|x, y| y.relative_frobenius.total_cmp(&x.relative_frobenius));
    let only = |xs: &[&String], other: &LoadedModel| -> Vec<String> {
        xs.iter()
            .filter(|n| !other.checkpoint.contains(n))
            .map(|n| n.to_string())
            .collect()
    };
    let outputs = match probe {
        Some(spec) => Some(output_change(&ma, &mb, spec)?),
        None => None,
    };
    Ok(DiffReport {
        schema: SCHEMA,
        a: a.display().to_string(),
        b: b.display().to_string(),
        changed_tensors: tensors.iter().filter(|t| t.max_abs_change > 0.0).count(),
        only_in_a: only(&names_a, &mb),
        only_in_b: only(&names_b, &ma),
        tensors,
        outputs,
        run: run_curves(&mb.checkpoint.dir.join(crate::pipeline::REPORT_FILE)),
    })
}

fn output_change(a: &LoadedModel, b: &LoadedModel, spec: &DataSpec) -> Result<OutputChange> {
    if a.classifier.labels != b.classifier.labels
        || a.classifier.input_shape != b.classifier.input_shape
    {
        return Err(Error::Usage(
            "the two models have different inputs or classes; their outputs cannot be compared"
                .into(),
        ));
    }
    let data = crate::pipeline::load_data_for(&a.classifier, spec)?;
    let probe = &data.test;
    let idx: Vec<usize> = (0..probe.len()).collect();
    let classes = a.classifier.num_labels();
    let la = metrics::logits(&a.classifier, &a.params, probe, &idx)?;
    let lb = metrics::logits(&b.classifier, &b.params, probe, &idx)?;
    let n = idx.len();
    let lpa = log_softmax(&Tensor::from_vec(la, (n, classes), &Device::Cpu)?)?;
    let lpb = log_softmax(&Tensor::from_vec(lb, (n, classes), &Device::Cpu)?)?;
    let kl: Vec<f32> = (lpa.exp()? * (&lpa - &lpb)?)?.sum(1)?.to_vec1()?;
    let top_a: Vec<u32> = lpa.argmax(1)?.to_vec1()?;
    let top_b: Vec<u32> = lpb.argmax(1)?.to_vec1()?;
    let flips = top_a.iter().zip(&top_b).filter(|(x, y)| x != y).count();
    let per_class_accuracy = a
        .classifier
        .labels
        .iter()
        .enumerate()
        .map(|(c, label)| {
            let members: Vec<usize> = idx
                .iter()
                .copied()
                .filter(|&i| probe.labels[i] == c as u32)
                .collect();
            let acc = |top: &[u32]| {
                if members.is_empty() {
                    f64::NAN
                } else {
                    100.0 * members.iter().filter(|&&i| top[i] == c as u32).count() as f64
                        / members.len() as f64
                }
            };
            ClassAccuracy {
                label: label.clone(),
                samples: members.len(),
                a: acc(&top_a),
                b: acc(&top_b),
            }
        })
        .collect();
    Ok(OutputChange {
        probe: probe.source.clone(),
        samples: n,
        mean_kl: kl.iter().map(|&k| k as f64).sum::<f64>() / n.max(1) as f64,
        max_kl: kl.iter().copied().fold(0f32, f32::max) as f64,
        top1_flips: flips,
        flip_rate: 100.0 * flips as f64 / n.max(1) as f64,
        per_class_accuracy,
    })
}

fn run_curves(report: &Path) -> Option<RunCurves> {
    let text = std::fs::read_to_string(report).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let history = value.get("run")?.get("history")?.as_array()?;
    let pick = |k: &str| -> Vec<Option<f32>> {
        history
            .iter()
            .map(|s| s.get(k).and_then(|v| v.as_f64()).map(|v| v as f32))
            .collect()
    };
    Some(RunCurves {
        forget_loss: pick("forget_loss"),
        retain_loss: pick("retain_loss"),
        lambda: pick("lambda"),
    })
}

/// Loads only the probe data's test split for `diff` (a directory, or --test-data).
pub fn probe_spec(path: &Path, test: Option<&Path>) -> DataSpec {
    DataSpec {
        train: path.to_path_buf(),
        test: test.map(Path::to_path_buf),
        holdout: crate::unlearn::defaults::HOLDOUT,
        seed: 0,
    }
}
