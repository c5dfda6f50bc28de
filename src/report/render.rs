//! The tables people read at the end of a run: one for classifiers, one for language models,
//! and the table of `lethe eval-text`.

use super::{Gate, Report};
use crate::text::metrics::TextMetrics;
use crate::verify::metrics::Metrics;
use crate::verify::Parity;

/// The end-of-run table of a classifier: UA, RA, TA, MIA before and after (and of the reference).
pub fn classifier(report: &Report<Metrics>) -> String {
    let m = &report.metrics;
    let mut s = String::new();
    s.push_str(&format!(
        "{} on {} ({}): forget {} — {} forget / {} retain / {} test samples\n\n",
        report.config.unlearn.method.name(),
        report.model.source,
        report.model.model_type,
        report.data.forget,
        report.data.forget_samples,
        report.data.retain_samples,
        report.data.test_samples.unwrap_or(0)
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
    s.push('\n');
    s.push_str(&run_line(report));
    s.push_str(&closing_lines(report));
    s
}

/// The end-of-run table of a language model: answer ROUGE-L, probability and NLL on the forget
/// and retain sets, perplexity, and a few answers before and after.
pub fn text(report: &Report<TextMetrics>) -> String {
    let mut s = String::new();
    let (b, a) = (&report.metrics.before, &report.metrics.after);
    s.push_str(&format!(
        "{} · {} · {} on {} forget / {} retain examples · {} trainable parameters of {}\n\n",
        report.model.source,
        report.config.unlearn.method.name(),
        report.config.unlearn.objective.name(),
        report.data.forget_samples,
        report.data.retain_samples,
        report.model.trainable_parameters,
        report.model.parameters
    ));
    s.push_str(&format!(
        "{:<24} {:>10} {:>10}\n",
        "metric", "before", "after"
    ));
    let pct = |x: f64| format!("{:.1}", 100.0 * x);
    let nll = |x: f64| format!("{x:.3}");
    for (name, x, y) in [
        (
            "forget ROUGE-L %",
            pct(b.forget.rouge_l),
            pct(a.forget.rouge_l),
        ),
        (
            "forget answer prob %",
            pct(b.forget.probability),
            pct(a.forget.probability),
        ),
        ("forget answer NLL", nll(b.forget.nll), nll(a.forget.nll)),
        (
            "retain ROUGE-L %",
            pct(b.retain.rouge_l),
            pct(a.retain.rouge_l),
        ),
        (
            "retain answer prob %",
            pct(b.retain.probability),
            pct(a.retain.probability),
        ),
        ("retain answer NLL", nll(b.retain.nll), nll(a.retain.nll)),
    ] {
        s.push_str(&format!("{name:<24} {x:>10} {y:>10}\n"));
    }
    if let (Some(x), Some(y)) = (b.perplexity, a.perplexity) {
        s.push_str(&format!("{:<24} {x:>10.2} {y:>10.2}\n", "perplexity"));
    }
    s.push('\n');
    for sample in &report.samples {
        s.push_str(&format!(
            "[{}] {}\n  reference: {}\n  before:    {}\n  after:     {}\n",
            sample.set, sample.question, sample.reference, sample.before, sample.after
        ));
    }
    s.push('\n');
    s.push_str(&run_line(report));
    s.push_str(&closing_lines(report));
    s
}

/// Steps, passes, time, and how the losses and λ moved.
fn run_line<M>(report: &Report<M>) -> String {
    let run = &report.run;
    let mut s = format!(
        "{} steps, {} forward / {} backward passes, {:.2} s",
        run.steps, run.forward_passes, run.backward_passes, run.wall_seconds
    );
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
    s
}

/// The ONNX Runtime check, where the output went, what was withheld, and each gate.
fn closing_lines<M>(report: &Report<M>) -> String {
    let mut s = String::new();
    if let Some(p) = &report.verification {
        s.push_str(&parity_line(p));
    }
    if let Some(dir) = &report.outputs.dir {
        s.push_str(&format!("edited model: {dir}\n"));
    }
    if !report.outputs.withheld.is_empty() {
        s.push_str(&format!(
            "forget data not copied from the input: {}\n",
            report.outputs.withheld.join(", ")
        ));
    }
    for g in report.gates.iter().filter(|g| g.name != "onnx-parity") {
        s.push_str(&gate_line(g));
    }
    s
}

/// One line for the ONNX Runtime check (also `lethe verify`'s).
pub fn parity_line(p: &Parity) -> String {
    format!(
        "ONNX Runtime parity: max |Δlogit| = {:.2e} over {} samples (tolerance {:.0e}) — {}\n",
        p.max_abs_diff,
        p.samples,
        p.tolerance,
        if p.passed { "ok" } else { "FAILED" }
    )
}

fn gate_line(g: &Gate) -> String {
    format!(
        "gate {}: {} — value {:.2} — {}\n",
        g.name,
        g.requirement,
        g.value,
        if g.passed { "met" } else { "NOT MET" }
    )
}

/// The table of `lethe eval-text`.
pub fn text_metrics(m: &TextMetrics) -> String {
    let pct = |x: f64| format!("{:.1}", 100.0 * x);
    let mut s = format!(
        "{:<10} {:>10} {:>10} {:>10}\n",
        "set", "ROUGE-L %", "prob %", "NLL"
    );
    for (name, x) in [("forget", &m.forget), ("retain", &m.retain)] {
        s.push_str(&format!(
            "{name:<10} {:>10} {:>10} {:>10.3}\n",
            pct(x.rouge_l),
            pct(x.probability),
            x.nll
        ));
    }
    if let Some(p) = m.perplexity {
        s.push_str(&format!("perplexity {p:.2}\n"));
    }
    s
}
