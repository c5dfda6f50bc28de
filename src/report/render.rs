//! The tables people read at the end of a run: one for classifiers, one for language models,
//! and the table of `lethe eval-text`.

use super::{Gate, Report};
use crate::text::metrics::{Evaluation, TextMetrics};
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
/// and retain sets, perplexity, the measures of forgetting the data allow, and a few answers
/// before and after.
pub fn text(report: &Report<TextMetrics>) -> String {
    let mut s = String::new();
    let m = &report.metrics;
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
    let mut columns = vec![&m.before, &m.after];
    let mut header = vec!["before", "after"];
    if let Some(r) = &m.reference {
        columns.push(r);
        header.push("reference");
    }
    s.push_str(&table(&columns, &header));
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

/// Rows of text metrics, one column per model; a row appears when any model has its figure.
fn table(columns: &[&TextMetrics], header: &[&str]) -> String {
    let pct = |x: f64| format!("{:.1}", 100.0 * x);
    let num = |x: f64| format!("{x:.3}");
    type Row<'a> = (&'a str, Box<dyn Fn(&TextMetrics) -> Option<String>>);
    let rows: Vec<Row> = vec![
        (
            "forget ROUGE-L %",
            Box::new(move |m| Some(pct(m.forget.rouge_l))),
        ),
        (
            "forget answer prob %",
            Box::new(move |m| Some(pct(m.forget.probability))),
        ),
        (
            "forget answer NLL",
            Box::new(move |m| Some(num(m.forget.nll))),
        ),
        (
            "forget truth ratio",
            Box::new(move |m| m.forget.truth_ratio.map(num)),
        ),
        (
            "forget fact recall %",
            Box::new(move |m| m.forget.fact_recall.map(pct)),
        ),
        (
            "retain ROUGE-L %",
            Box::new(move |m| Some(pct(m.retain.rouge_l))),
        ),
        (
            "retain answer prob %",
            Box::new(move |m| Some(pct(m.retain.probability))),
        ),
        (
            "retain answer NLL",
            Box::new(move |m| Some(num(m.retain.nll))),
        ),
        (
            "retain truth ratio",
            Box::new(move |m| m.retain.truth_ratio.map(num)),
        ),
        (
            "perplexity",
            Box::new(|m| m.perplexity.map(|p| format!("{p:.2}"))),
        ),
        ("model utility", Box::new(move |m| m.model_utility.map(num))),
        (
            "forget quality (KS p)",
            Box::new(|m| m.forget_quality.map(|q| format!("{:.3e}", q.p_value))),
        ),
        (
            "MIA AUC loss",
            Box::new(move |m| m.membership_auc.map(|a| num(a.loss))),
        ),
        (
            "MIA AUC zlib",
            Box::new(move |m| m.membership_auc.map(|a| num(a.zlib))),
        ),
        (
            "MIA AUC Min-K %",
            Box::new(move |m| m.membership_auc.map(|a| num(a.min_k))),
        ),
        (
            "MIA AUC Min-K %++",
            Box::new(move |m| m.membership_auc.map(|a| num(a.min_k_plus_plus))),
        ),
        (
            "PrivLeak (loss) %",
            Box::new(|m| m.privleak.map(|p| format!("{:.1}", p.loss))),
        ),
    ];
    let mut s = format!("{:<24}", "metric");
    for h in header {
        s.push_str(&format!(" {h:>10}"));
    }
    s.push('\n');
    for (name, value) in &rows {
        let cells: Vec<Option<String>> = columns.iter().map(|m| value(m)).collect();
        if cells.iter().all(Option::is_none) {
            continue;
        }
        s.push_str(&format!("{name:<24}"));
        for c in cells {
            s.push_str(&format!(" {:>10}", c.unwrap_or_else(|| "—".into())));
        }
        s.push('\n');
    }
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
    for g in report
        .gates
        .iter()
        .filter(|g| g.name != "onnx-parity" && g.name != "onnx-generation")
    {
        s.push_str(&gate_line(g));
    }
    s
}

/// The lines of the ONNX Runtime check (also `lethe verify`'s).
pub fn parity_line(p: &Parity) -> String {
    let ok = |passed: bool| if passed { "ok" } else { "FAILED" };
    let mut s = format!(
        "ONNX Runtime parity: max |Δlogit| = {:.2e} over {} samples (tolerance {:.0e}) — {}\n",
        p.max_abs_diff,
        p.samples,
        p.tolerance,
        ok(p.max_abs_diff <= p.tolerance)
    );
    if let Some(g) = &p.generation {
        s.push_str(&format!(
            "ONNX Runtime generation (key/value cache): {} of {} greedy continuations of {} tokens equal candle's — {}\n",
            g.identical,
            g.prompts,
            g.max_new_tokens,
            ok(g.passed)
        ));
    }
    s
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

/// The table of `lethe eval-text`: the model's figures, and the reference model's beside them.
pub fn evaluation(e: &Evaluation) -> String {
    match &e.reference {
        Some(r) => table(&[&e.metrics, r], &["model", "reference"]),
        None => table(&[&e.metrics], &["model"]),
    }
}
