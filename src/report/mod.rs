//! The run report: a JSON document with a stable schema (docs/report.md) and a table for people.

pub mod html;

use crate::unlearn::{RunLog, UnlearnConfig};
use crate::verify::metrics::Metrics;
use crate::verify::Parity;
use serde::Serialize;

pub const SCHEMA: &str = "lethe.unlearn.report/1";

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub lethe_version: &'static str,
    pub model: ModelInfo,
    pub data: DataInfo,
    pub config: UnlearnConfig,
    pub metrics: MetricsSection,
    pub run: RunSummary,
    pub outputs: Outputs,
    pub verification: Option<Parity>,
    pub gates: Vec<Gate>,
    pub passed: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub source: String,
    pub model_type: String,
    pub parameters: usize,
    pub trainable_parameters: usize,
    pub trainable_tensors: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DataInfo {
    pub train: String,
    pub test: String,
    pub forget: String,
    pub forget_samples: usize,
    pub retain_samples: usize,
    pub test_samples: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricsSection {
    pub before: Metrics,
    pub after: Metrics,
    /// A reference model (usually retrained on the retain set only), when given.
    pub reference: Option<Metrics>,
    pub gap_to_reference_before: Option<f64>,
    pub gap_to_reference_after: Option<f64>,
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

#[derive(Clone, Debug, Serialize)]
pub struct Outputs {
    pub checkpoint: Option<String>,
    pub onnx: Option<String>,
    pub report: Option<String>,
}

/// A pass/fail condition on the result.
#[derive(Clone, Debug, Serialize)]
pub struct Gate {
    pub name: String,
    pub requirement: String,
    pub value: f64,
    pub passed: bool,
}

/// Thresholds a run must meet; unset ones are not checked.
#[derive(Clone, Debug, Default)]
pub struct GateSpec {
    /// Largest allowed fall of TA, in points.
    pub max_test_drop: Option<f64>,
    pub min_ua: Option<f64>,
    pub min_mia: Option<f64>,
    /// Largest allowed gap to the reference model, in points.
    pub max_gap: Option<f64>,
}

impl GateSpec {
    pub fn evaluate(&self, m: &MetricsSection, parity: Option<&Parity>) -> Vec<Gate> {
        let mut gates = Vec::new();
        if let Some(limit) = self.max_test_drop {
            let drop = m.before.ta - m.after.ta;
            gates.push(Gate {
                name: "max-test-drop".into(),
                requirement: format!("TA falls by at most {limit} points"),
                value: drop,
                passed: drop <= limit,
            });
        }
        if let Some(min) = self.min_ua {
            gates.push(Gate {
                name: "min-ua".into(),
                requirement: format!("UA ≥ {min} %"),
                value: m.after.ua,
                passed: m.after.ua >= min,
            });
        }
        if let Some(min) = self.min_mia {
            gates.push(Gate {
                name: "min-mia".into(),
                requirement: format!("MIA-efficacy ≥ {min} %"),
                value: m.after.mia,
                passed: m.after.mia >= min,
            });
        }
        if let Some(limit) = self.max_gap {
            let gap = m.gap_to_reference_after.unwrap_or(f64::NAN);
            gates.push(Gate {
                name: "max-gap".into(),
                requirement: format!("gap to the reference model ≤ {limit} points"),
                value: gap,
                passed: gap <= limit,
            });
        }
        if let Some(p) = parity {
            gates.push(Gate {
                name: "onnx-parity".into(),
                requirement: format!("ONNX Runtime logits within {:e} of candle's", p.tolerance),
                value: p.max_abs_diff as f64,
                passed: p.passed,
            });
        }
        gates
    }
}

/// The table printed at the end of a run.
pub fn render(report: &Report) -> String {
    let m = &report.metrics;
    let mut s = String::new();
    s.push_str(&format!(
        "{} on {} ({}): forget {} — {} forget / {} retain / {} test samples\n\n",
        report.config.method.name(),
        report.model.source,
        report.model.model_type,
        report.data.forget,
        report.data.forget_samples,
        report.data.retain_samples,
        report.data.test_samples
    ));
    s.push_str(&format!(
        "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "", "UA %", "RA %", "TA %", "MIA %", "gap"
    ));
    let gap = |g: Option<f64>| {
        g.map(|g| format!("{g:>8.2}"))
            .unwrap_or_else(|| format!("{:>8}", "—"))
    };
    let row = |name: &str, x: &Metrics, g: String| {
        format!(
            "{:<12} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {}\n",
            name, x.ua, x.ra, x.ta, x.mia, g
        )
    };
    s.push_str(&row("before", &m.before, gap(m.gap_to_reference_before)));
    s.push_str(&row("after", &m.after, gap(m.gap_to_reference_after)));
    if let Some(r) = &m.reference {
        s.push_str(&row("reference", r, gap(Some(0.0))));
    }
    let run = &report.run;
    s.push_str(&format!(
        "\n{} steps, {} forward / {} backward passes, {:.2} s",
        run.steps, run.forward_passes, run.backward_passes, run.wall_seconds
    ));
    if let (Some(f), Some(r)) = (&run.forget_loss, &run.retain_loss) {
        s.push_str(&format!(
            "; forget loss {:.4} → {:.4}, retain loss {:.4} → {:.4}",
            f.first, f.last, r.first, r.last
        ));
    }
    if let Some(l) = &run.lambda {
        s.push_str(&format!(
            "; λ {:.4} → {:.4} (max {:.4})",
            l.first, l.last, l.max
        ));
    }
    s.push('\n');
    if let Some(p) = &report.verification {
        s.push_str(&format!(
            "ONNX Runtime parity: max |Δlogit| = {:.2e} over {} samples (tolerance {:.0e}) — {}\n",
            p.max_abs_diff,
            p.samples,
            p.tolerance,
            if p.passed { "ok" } else { "FAILED" }
        ));
    }
    if let Some(dir) = &report.outputs.checkpoint {
        s.push_str(&format!("edited model: {dir}\n"));
    }
    for g in &report.gates {
        if g.name != "onnx-parity" {
            s.push_str(&format!(
                "gate {}: {} — value {:.2} — {}\n",
                g.name,
                g.requirement,
                g.value,
                if g.passed { "met" } else { "NOT MET" }
            ));
        }
    }
    s
}
