//! The run reports: JSON documents with stable schemas (docs/report.md), one family for every
//! kind of model, and the tables people read ([`render`]).

pub mod html;
pub mod render;

use crate::text::metrics::TextMetrics;
use crate::unlearn::lora::LoraConfig;
use crate::unlearn::{RunLog, UnlearnConfig};
use crate::verify::metrics::Metrics;
use crate::verify::Parity;
use serde::Serialize;

/// The report of an unlearning run (`report.json`, `--json`), for classifiers and language
/// models alike.
pub const UNLEARN_SCHEMA: &str = "lethe.unlearn.report/2";
/// The report of a training run (`lethe train`, `lethe train-text`).
pub const TRAIN_SCHEMA: &str = "lethe.train.report/2";

/// What kind of model a run edited; decides which metrics and gates its report carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Classifier,
    Text,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report<M> {
    pub schema: &'static str,
    pub lethe_version: &'static str,
    pub model: ModelInfo,
    pub data: DataInfo,
    pub config: RunConfig,
    pub metrics: MetricsSection<M>,
    /// Language models: greedy answers to a few questions of each set, before and after.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<SideBySide>,
    pub run: RunSummary,
    pub outputs: Outputs,
    pub verification: Option<Parity>,
    pub gates: Vec<Gate>,
    pub passed: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub kind: ModelKind,
    pub source: String,
    pub model_type: String,
    /// Parameters of the architecture (buffers such as batch-norm statistics excluded).
    pub parameters: usize,
    pub trainable_parameters: usize,
    /// The trained tensors (LoRA adapters, or the selected weights).
    pub trainable_tensors: Vec<String>,
    /// The LoRA adapters, when adapters trained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DataInfo {
    /// The forget set: in words for classifiers (`class Dress`), the JSONL file for text.
    pub forget: String,
    pub forget_samples: usize,
    pub retain_samples: usize,
    /// Classifiers: the data files read and the test set's size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_samples: Option<usize>,
    /// Language models: the retain set, the held-out text, and how prompts were laid out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_format: Option<crate::text::PromptFormat>,
    /// The chat template's keyword arguments, when any were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Every setting of the run: the method's, and the text objectives' where they apply.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    #[serde(flatten)]
    pub unlearn: UnlearnConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub npo_beta: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simnpo: Option<crate::unlearn::text_task::SimNpo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rmu: Option<crate::unlearn::text_task::Rmu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The device the run computed on.
    pub device: String,
    /// What the frozen weights were held in (crate::precision).
    pub dtype: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricsSection<M> {
    pub before: M,
    pub after: M,
    /// A reference model (usually retrained on the retain set only), when given.
    pub reference: Option<M>,
    pub gap_to_reference_before: Option<f64>,
    pub gap_to_reference_after: Option<f64>,
}

/// A question of the forget or retain set, answered greedily before and after the run.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct SideBySide {
    pub set: String,
    pub question: String,
    pub reference: String,
    pub before: String,
    pub after: String,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub first: f32,
    pub last: f32,
    pub min: f32,
    pub max: f32,
    pub mean: f32,
}

impl Summary {
    pub fn of(values: &[f32]) -> Option<Summary> {
        let v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        Some(Summary {
            first: v[0],
            last: *v.last().expect("non-empty"),
            min: v.iter().copied().fold(f32::INFINITY, f32::min),
            max: v.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            mean: v.iter().sum::<f32>() / v.len() as f32,
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub steps: usize,
    pub forward_passes: usize,
    pub backward_passes: usize,
    pub wall_seconds: f64,
    pub forget_loss: Option<Summary>,
    pub retain_loss: Option<Summary>,
    pub lambda: Option<Summary>,
    /// Every step's losses and λ.
    pub history: Vec<crate::unlearn::StepRecord>,
}

impl RunSummary {
    pub fn from_log(log: &RunLog) -> RunSummary {
        let forget: Vec<f32> = log.steps.iter().map(|s| s.forget_loss).collect();
        let retain: Vec<f32> = log.steps.iter().map(|s| s.retain_loss).collect();
        let lambda: Vec<f32> = log.steps.iter().filter_map(|s| s.lambda).collect();
        RunSummary {
            steps: log.steps.len(),
            forward_passes: log.forward_passes,
            backward_passes: log.backward_passes,
            wall_seconds: log.wall_seconds,
            forget_loss: Summary::of(&forget),
            retain_loss: Summary::of(&retain),
            lambda: Summary::of(&lambda),
            history: log.steps.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Outputs {
    /// The output directory (null without `--out`).
    pub dir: Option<String>,
    pub checkpoint: Option<String>,
    pub onnx: Option<String>,
    /// The PEFT adapter, when LoRA trained.
    pub adapter: Option<String>,
    pub report: Option<String>,
    /// Files of the input directory that hold forget data and were therefore not copied
    /// (relative to the input directory).
    pub withheld: Vec<String>,
}

/// A pass/fail condition on the result.
#[derive(Clone, Debug, Serialize)]
pub struct Gate {
    pub name: String,
    pub requirement: String,
    pub limit: f64,
    pub value: f64,
    pub passed: bool,
}

impl Gate {
    fn at_most(name: &str, requirement: String, limit: f64, value: f64) -> Gate {
        Gate {
            name: name.into(),
            requirement,
            limit,
            value,
            passed: value <= limit,
        }
    }

    fn at_least(name: &str, requirement: String, limit: f64, value: f64) -> Gate {
        Gate {
            name: name.into(),
            requirement,
            limit,
            value,
            passed: value >= limit,
        }
    }

    /// The ONNX Runtime check as gates: the outputs' parity, and a decoder's generation.
    pub fn parity(p: &Parity) -> Vec<Gate> {
        let mut gates = vec![Gate {
            name: "onnx-parity".into(),
            requirement: format!("ONNX Runtime logits within {:e} of candle's", p.tolerance),
            limit: p.tolerance as f64,
            value: p.max_abs_diff as f64,
            passed: p.max_abs_diff <= p.tolerance,
        }];
        if let Some(g) = &p.generation {
            gates.push(Gate::at_least(
                "onnx-generation",
                format!(
                    "ONNX Runtime's greedy continuations ({} tokens, key/value cache) equal candle's on every prompt",
                    g.max_new_tokens
                ),
                g.prompts as f64,
                g.identical as f64,
            ));
        }
        gates
    }
}

/// Thresholds a run must meet; unset ones are not checked. Each kind of model reads its own.
#[derive(Clone, Debug, Default)]
pub struct GateSpec {
    /// Classifiers: largest allowed fall of TA, in points.
    pub max_test_drop: Option<f64>,
    pub min_ua: Option<f64>,
    pub min_mia: Option<f64>,
    /// Largest allowed gap to the reference model, in points.
    pub max_gap: Option<f64>,
    /// Language models: forget ROUGE-L (0–1) must fall to at most this.
    pub max_forget_rouge: Option<f64>,
    /// Retain ROUGE-L may fall by at most this many points (0–100 scale).
    pub max_retain_rouge_drop: Option<f64>,
    /// Perplexity may rise by at most this many percent.
    pub max_perplexity_rise: Option<f64>,
    /// Forget quality (the KS p-value against the reference model) must reach this.
    pub min_forget_quality: Option<f64>,
    /// Model utility after the run over model utility before must reach this.
    pub min_utility_ratio: Option<f64>,
}

/// Metrics that gates read.
pub trait Gated: Sized {
    fn gates(spec: &GateSpec, m: &MetricsSection<Self>) -> Vec<Gate>;
}

impl Gated for Metrics {
    fn gates(spec: &GateSpec, m: &MetricsSection<Metrics>) -> Vec<Gate> {
        let mut gates = Vec::new();
        if let Some(limit) = spec.max_test_drop {
            let drop = m.before.ta - m.after.ta;
            gates.push(Gate::at_most(
                "max-test-drop",
                format!("TA falls by at most {limit} points"),
                limit,
                drop,
            ));
        }
        if let Some(min) = spec.min_ua {
            gates.push(Gate::at_least(
                "min-ua",
                format!("UA ≥ {min} %"),
                min,
                m.after.ua,
            ));
        }
        if let Some(min) = spec.min_mia {
            let requirement = format!("MIA-efficacy ≥ {min} %");
            gates.push(Gate::at_least("min-mia", requirement, min, m.after.mia));
        }
        if let Some(limit) = spec.max_gap {
            let gap = m.gap_to_reference_after.unwrap_or(f64::NAN);
            let requirement = format!("gap to the reference model ≤ {limit} points");
            gates.push(Gate::at_most("max-gap", requirement, limit, gap));
        }
        gates
    }
}

impl Gated for TextMetrics {
    fn gates(spec: &GateSpec, m: &MetricsSection<TextMetrics>) -> Vec<Gate> {
        let (before, after) = (&m.before, &m.after);
        let mut gates = Vec::new();
        if let Some(limit) = spec.max_forget_rouge {
            let requirement = format!("forget ROUGE-L ≤ {limit}");
            let value = after.forget.rouge_l;
            gates.push(Gate::at_most("max-forget-rouge", requirement, limit, value));
        }
        if let Some(limit) = spec.max_retain_rouge_drop {
            let drop = 100.0 * (before.retain.rouge_l - after.retain.rouge_l);
            let requirement = format!("retain ROUGE-L falls by at most {limit} points");
            gates.push(Gate::at_most(
                "max-retain-rouge-drop",
                requirement,
                limit,
                drop,
            ));
        }
        if let (Some(limit), Some(b), Some(a)) = (
            spec.max_perplexity_rise,
            before.perplexity,
            after.perplexity,
        ) {
            let rise = 100.0 * (a / b - 1.0);
            let requirement = format!("perplexity rises by at most {limit} %");
            gates.push(Gate::at_most(
                "max-perplexity-rise",
                requirement,
                limit,
                rise,
            ));
        }
        if let Some(min) = spec.min_forget_quality {
            // Without a reference model or truth ratios there is no forget quality: not met.
            let value = after.forget_quality.map_or(f64::NAN, |q| q.p_value);
            let requirement = format!("forget quality (KS p-value against the reference) ≥ {min}");
            gates.push(Gate::at_least(
                "min-forget-quality",
                requirement,
                min,
                value,
            ));
        }
        if let Some(min) = spec.min_utility_ratio {
            let value = match (after.model_utility, before.model_utility) {
                (Some(a), Some(b)) if b > 0.0 => a / b,
                _ => f64::NAN,
            };
            let requirement = format!("model utility keeps at least {min} of its value before");
            gates.push(Gate::at_least("min-utility-ratio", requirement, min, value));
        }
        gates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::metrics::SetMetrics;

    fn text(utility: Option<f64>, p_value: Option<f64>) -> TextMetrics {
        let set = SetMetrics {
            questions: 4,
            probability: 0.5,
            nll: 1.0,
            fact_nll: None,
            wording_nll: None,
            rouge_l: 0.5,
            truth_ratio: None,
            fact_recall: None,
        };
        TextMetrics {
            forget: set.clone(),
            retain: set,
            perplexity: None,
            utility_sets: Vec::new(),
            model_utility: utility,
            forget_quality: p_value.map(|p_value| crate::stats::KsTest {
                statistic: 0.3,
                p_value,
            }),
            membership_auc: None,
            privleak: None,
        }
    }

    fn section(before: TextMetrics, after: TextMetrics) -> MetricsSection<TextMetrics> {
        MetricsSection {
            before,
            after,
            reference: None,
            gap_to_reference_before: None,
            gap_to_reference_after: None,
        }
    }

    #[test]
    fn forget_quality_and_utility_ratio_gates() {
        let spec = GateSpec {
            min_forget_quality: Some(0.05),
            min_utility_ratio: Some(0.95),
            ..GateSpec::default()
        };
        let met = TextMetrics::gates(
            &spec,
            &section(text(Some(0.6), None), text(Some(0.58), Some(0.2))),
        );
        assert!(met.iter().all(|g| g.passed), "{met:?}");
        assert!((met[1].value - 0.58 / 0.6).abs() < 1e-12);
        let unmet = TextMetrics::gates(
            &spec,
            &section(text(Some(0.6), None), text(Some(0.5), Some(0.01))),
        );
        assert!(unmet.iter().all(|g| !g.passed), "{unmet:?}");
        // Nothing to judge by (no reference, no utility before): not met.
        let unknown = TextMetrics::gates(&spec, &section(text(None, None), text(Some(0.5), None)));
        assert!(
            unknown.iter().all(|g| !g.passed && g.value.is_nan()),
            "{unknown:?}"
        );
    }
}
