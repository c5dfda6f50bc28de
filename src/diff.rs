//! `lethe diff A B`: what changed between two models — per tensor, and in their outputs on a
//! probe set — as JSON and as a self-contained HTML page with plots (no network resources).

use crate::arch::Classifier;
use crate::checkpoint::Checkpoint;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::model::{LanguageModel, Opened};
use crate::nn::log_softmax;
use crate::precision::Precision;
use crate::verify::metrics;
use candle_core::{Device, Tensor};
use ndarray::{Array2, Axis};
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

/// One prompt's greedy continuation by each model.
#[derive(Clone, Debug, Serialize)]
pub struct GenerationPair {
    pub prompt: String,
    pub a: String,
    pub b: String,
}

/// How a language model's outputs changed on probe prompts.
#[derive(Clone, Debug, Serialize)]
pub struct TextOutputChange {
    pub probe: String,
    pub prompts: usize,
    /// Mean and largest KL(p_A ‖ p_B) of the next-token distributions, over every token of
    /// the probe examples (prompt and answer).
    pub mean_kl: f64,
    pub max_kl: f64,
    /// Prompts whose greedy continuation differs.
    pub changed_generations: usize,
    pub generations: Vec<GenerationPair>,
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
    /// For language models given --prompts.
    pub text_outputs: Option<TextOutputChange>,
    /// Losses and λ per step, when B is a lethe output with its report.json.
    pub run: Option<RunCurves>,
}

/// What to run both models on: classifier data, or prompts for language models.
pub enum Probe {
    Data(DataSpec),
    Prompts {
        file: std::path::PathBuf,
        max_new_tokens: usize,
    },
}

/// Compares model `b` with model `a` on `device`: every shared tensor, and the outputs on the
/// probe when one is given.
pub fn diff(
    a: &Path,
    b: &Path,
    probe: Option<&Probe>,
    device: &Device,
    precision: Precision,
    progress: bool,
) -> Result<DiffReport> {
    let ca = &Checkpoint::open(crate::hub::resolve_model(a, progress)?)?;
    let cb = &Checkpoint::open(crate::hub::resolve_model(b, progress)?)?;
    let names_a: Vec<&String> = ca.tensor_names().collect();
    let names_b: Vec<&String> = cb.tensor_names().collect();
    let mut tensors = Vec::new();
    for name in &names_a {
        if !cb.contains(name) {
            continue;
        }
        let (sa, sb) = (ca.shape(name), cb.shape(name));
        if sa != sb {
            return Err(Error::ShapeMismatch {
                name: name.to_string(),
                expected: sa.unwrap_or_default().to_vec(),
                found: sb.unwrap_or_default().to_vec(),
            });
        }
        crate::interrupt::check()?;
        let (ta, tb) = match (ca.load_f32(name, device), cb.load_f32(name, device)) {
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
    let only = |xs: &[&String], other: &Checkpoint| -> Vec<String> {
        xs.iter()
            .filter(|n| !other.contains(n))
            .map(|n| n.to_string())
            .collect()
    };
    let (mut outputs, mut text_outputs) = (None, None);
    match probe {
        Some(Probe::Data(spec)) => {
            outputs = Some(output_change(
                &Opened::<Classifier>::open(&ca.dir, device, progress)?,
                &Opened::<Classifier>::open(&cb.dir, device, progress)?,
                spec,
            )?)
        }
        Some(Probe::Prompts {
            file,
            max_new_tokens,
        }) => {
            text_outputs = Some(text_output_change(
                &LanguageModel::open(&ca.dir, device, precision, progress)?,
                &LanguageModel::open(&cb.dir, device, precision, progress)?,
                file,
                *max_new_tokens,
            )?)
        }
        None => {}
    }
    Ok(DiffReport {
        schema: SCHEMA,
        a: a.display().to_string(),
        b: b.display().to_string(),
        changed_tensors: tensors.iter().filter(|t| t.max_abs_change > 0.0).count(),
        only_in_a: only(&names_a, cb),
        only_in_b: only(&names_b, ca),
        tensors,
        outputs,
        text_outputs,
        run: run_curves(&cb.dir.join(crate::pipeline::REPORT_FILE)),
    })
}

fn output_change(
    a: &Opened<Classifier>,
    b: &Opened<Classifier>,
    spec: &DataSpec,
) -> Result<OutputChange> {
    if a.arch.labels != b.arch.labels || a.arch.input_shape != b.arch.input_shape {
        return Err(Error::Usage(
            "the two models have different inputs or classes; their outputs cannot be compared"
                .into(),
        ));
    }
    let data = crate::pipeline::classifier::load_data_for(&a.arch, spec)?;
    let probe = &data.test;
    let idx: Vec<usize> = (0..probe.len()).collect();
    let classes = a.arch.num_labels();
    let n = idx.len();
    let log_probs = |m: &Opened<Classifier>| -> Result<Array2<f32>> {
        let logits = metrics::logits(&m.arch, &m.params, probe, &idx)?;
        let logits = Array2::from_shape_vec((n, classes), logits)
            .map_err(|e| Error::Runtime(format!("logits: {e}")))?;
        Ok(host_log_softmax(logits))
    };
    let (lpa, lpb) = (log_probs(a)?, log_probs(b)?);
    let kl: Vec<f32> = lpa
        .axis_iter(Axis(0))
        .zip(lpb.axis_iter(Axis(0)))
        .map(|(pa, pb)| pa.iter().zip(pb).map(|(x, y)| x.exp() * (x - y)).sum())
        .collect();
    let top = |lp: &Array2<f32>| -> Vec<u32> { lp.axis_iter(Axis(0)).map(argmax).collect() };
    let (top_a, top_b) = (top(&lpa), top(&lpb));
    let flips = top_a.iter().zip(&top_b).filter(|(x, y)| x != y).count();
    let per_class_accuracy = a
        .arch
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

/// log-softmax of each row of host-side logits.
fn host_log_softmax(mut logits: Array2<f32>) -> Array2<f32> {
    for mut row in logits.axis_iter_mut(Axis(0)) {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let log_sum = row.fold(0f32, |s, &v| s + (v - max).exp()).ln();
        row.mapv_inplace(|v| v - max - log_sum);
    }
    logits
}

/// The index of a row's largest value (the first, among equals).
fn argmax(row: ndarray::ArrayView1<f32>) -> u32 {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0 as u32
}

fn text_output_change(
    ma: &LanguageModel,
    mb: &LanguageModel,
    file: &Path,
    max_new_tokens: usize,
) -> Result<TextOutputChange> {
    use crate::text::data::{self, prompt_ids, TokenBatch};
    if ma.model().vocab_size() != mb.model().vocab_size() {
        return Err(Error::Usage(
            "the two models have different vocabularies; their outputs cannot be compared".into(),
        ));
    }
    let examples = data::read_jsonl(file)?;
    let format = ma.prompt_format(None);
    let (mut kl_sum, mut kl_max, mut tokens) = (0f64, 0f64, 0usize);
    let mut generations = Vec::new();
    for ex in &examples {
        let enc = data::encode(&ma.tokenizer, ex, format)?;
        crate::interrupt::check()?;
        let batch = TokenBatch::new(&[&enc], ma.tokenizer.pad_id, ma.params().device())?;
        let lpa = log_softmax(&ma.model().run(ma.params(), &batch.ids, &batch.mask, 1.0)?)?;
        let lpb = log_softmax(&mb.model().run(mb.params(), &batch.ids, &batch.mask, 1.0)?)?;
        let kl: Vec<f32> = (lpa.exp()? * (&lpa - &lpb)?)?
            .sum(2)?
            .flatten_all()?
            .to_vec1()?;
        for k in kl {
            kl_sum += k as f64;
            kl_max = kl_max.max(k as f64);
            tokens += 1;
        }
        let (prompt_text, prompt) = match &ex.question {
            Some(q) => (q.clone(), prompt_ids(&ma.tokenizer, q, format)?),
            None => (ex.answer.clone(), enc.ids[..enc.ids.len().min(16)].to_vec()),
        };
        let generate = |m: &LanguageModel| -> Result<String> {
            let ids = m.model().generate_greedy(
                m.params(),
                &prompt,
                max_new_tokens,
                m.tokenizer.eos_id,
            )?;
            Ok(m.tokenizer.decode(&ids)?.trim().to_string())
        };
        generations.push(GenerationPair {
            prompt: prompt_text,
            a: generate(ma)?,
            b: generate(mb)?,
        });
    }
    Ok(TextOutputChange {
        probe: file.display().to_string(),
        prompts: examples.len(),
        mean_kl: kl_sum / tokens.max(1) as f64,
        max_kl: kl_max,
        changed_generations: generations.iter().filter(|g| g.a != g.b).count(),
        generations,
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
        holdout: crate::defaults::HOLDOUT,
        seed: crate::defaults::HOLDOUT_SEED,
    }
}
