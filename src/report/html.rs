//! The self-contained HTML page of `lethe diff`: inline CSS and SVG plots, no external resources.

use crate::diff::DiffReport;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 640.0;
const H: f64 = 220.0;
const PAD: f64 = 40.0;

/// A line chart of one series over steps; missing values are skipped.
fn line_chart(title: &str, values: &[Option<f32>], color: &str) -> String {
    let pts: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|x| x.is_finite()).map(|x| (i, x as f64)))
        .collect();
    if pts.is_empty() {
        return String::new();
    }
    let (lo, hi) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(_, y)| {
            (a.min(y), b.max(y))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let n = values.len().max(2) - 1;
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / n as f64;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v - lo) / span;
    let points: Vec<String> = pts
        .iter()
        .map(|&(i, v)| format!("{:.1},{:.1}", x(i), y(v)))
        .collect();
    format!(
        r##"<figure><svg class="plot" role="img" aria-label="{t}" viewBox="0 0 {W} {H}" width="{W}" height="{H}">
<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>
<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="#999"/>
<text x="{PAD}" y="{ty}" font-size="11">{hi:.4}</text><text x="{PAD}" y="{ly}" font-size="11">{lo:.4}</text>
<text x="{r}" y="{lx}" font-size="11" text-anchor="end">step {n}</text>
<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{p}"/>
</svg><figcaption>{t}</figcaption></figure>"##,
        t = esc(title),
        b = H - PAD,
        r = W - PAD,
        ty = PAD - 6.0,
        ly = H - PAD + 14.0,
        lx = H - PAD + 14.0,
        p = points.join(" "),
    )
}

/// Horizontal bars, one group per row with one bar per series.
fn bar_chart(
    title: &str,
    rows: &[(String, Vec<f64>)],
    series: &[(&str, &str)],
    max: f64,
) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let bar = 12.0;
    let row_h = bar * series.len() as f64 + 8.0;
    let height = PAD + row_h * rows.len() as f64 + 20.0;
    let left = 190.0;
    let width = W - left - 60.0;
    let max = if max > 0.0 && max.is_finite() {
        max
    } else {
        1.0
    };
    let mut body = String::new();
    for (r, (label, values)) in rows.iter().enumerate() {
        let y0 = PAD + row_h * r as f64;
        body.push_str(&format!(
            r##"<text x="{lx}" y="{ty:.1}" font-size="11" text-anchor="end">{l}</text>"##,
            lx = left - 6.0,
            ty = y0 + bar,
            l = esc(label)
        ));
        for (k, v) in values.iter().enumerate() {
            let v = if v.is_finite() { *v } else { max };
            let w = (width * (v / max)).clamp(0.0, width);
            body.push_str(&format!(
                r##"<rect x="{left}" y="{y:.1}" width="{w:.1}" height="{bh}" fill="{c}"><title>{s}: {v:.4}</title></rect><text x="{tx:.1}" y="{tty:.1}" font-size="10">{v:.3}</text>"##,
                y = y0 + bar * k as f64,
                bh = bar - 2.0,
                c = series[k].1,
                s = esc(series[k].0),
                tx = left + w + 4.0,
                tty = y0 + bar * k as f64 + bar - 3.0,
            ));
        }
    }
    let legend: String = series
        .iter()
        .enumerate()
        .map(|(k, (name, color))| {
            format!(
                r##"<rect x="{x}" y="10" width="10" height="10" fill="{color}"/><text x="{tx}" y="19" font-size="11">{n}</text>"##,
                x = left + 110.0 * k as f64,
                tx = left + 110.0 * k as f64 + 14.0,
                n = esc(name)
            )
        })
        .collect();
    format!(
        r##"<figure><svg class="plot" role="img" aria-label="{t}" viewBox="0 0 {W} {height}" width="{W}" height="{height}"><rect x="0" y="0" width="{W}" height="{height}" fill="#fff"/>{legend}{body}</svg><figcaption>{t}</figcaption></figure>"##,
        t = esc(title)
    )
}

pub fn diff_page(r: &DiffReport) -> String {
    let mut plots = String::new();
    if let Some(run) = &r.run {
        plots.push_str("<h2>The unlearning run</h2>");
        plots.push_str(&line_chart(
            "forget loss per step",
            &run.forget_loss,
            "#c0392b",
        ));
        plots.push_str(&line_chart(
            "retain loss per step",
            &run.retain_loss,
            "#2471a3",
        ));
        plots.push_str(&line_chart(
            "dual variable λ per step",
            &run.lambda,
            "#7d3c98",
        ));
    }
    let mut outputs = String::new();
    if let Some(o) = &r.outputs {
        let rows: Vec<(String, Vec<f64>)> = o
            .per_class_accuracy
            .iter()
            .map(|c| (c.label.clone(), vec![c.a, c.b]))
            .collect();
        outputs.push_str("<h2>Outputs on the probe set</h2>");
        outputs.push_str(&format!(
            "<p>{} samples of {}: mean KL(A‖B) {:.4}, largest {:.4}; top-1 class changed on {} samples ({:.2} %).</p>",
            o.samples,
            esc(&o.probe),
            o.mean_kl,
            o.max_kl,
            o.top1_flips,
            o.flip_rate
        ));
        outputs.push_str(&bar_chart(
            "accuracy per class, % (A before, B after)",
            &rows,
            &[("A", "#95a5a6"), ("B", "#27ae60")],
            100.0,
        ));
    }
    if let Some(o) = &r.text_outputs {
        outputs.push_str("<h2>Outputs on the probe prompts</h2>");
        outputs.push_str(&format!(
            "<p>{} prompts of {}: mean next-token KL(A‖B) {:.4}, largest {:.4}; {} greedy continuations changed.</p>",
            o.prompts,
            esc(&o.probe),
            o.mean_kl,
            o.max_kl,
            o.changed_generations
        ));
        outputs
            .push_str("<table class=\"generations\"><tr><th>prompt</th><th>A</th><th>B</th></tr>");
        for g in &o.generations {
            outputs.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&g.prompt),
                esc(&g.a),
                esc(&g.b)
            ));
        }
        outputs.push_str("</table>");
    }
    let top: Vec<(String, Vec<f64>)> = r
        .tensors
        .iter()
        .filter(|t| t.max_abs_change > 0.0)
        .take(15)
        .map(|t| (t.name.clone(), vec![t.relative_frobenius]))
        .collect();
    let max_rel = top
        .iter()
        .map(|(_, v)| v[0])
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let tensor_plot = bar_chart(
        "most-changed tensors: ‖B − A‖ / ‖A‖",
        &top,
        &[("relative change", "#e67e22")],
        max_rel,
    );
    let rows: String = r
        .tensors
        .iter()
        .map(|t| {
            format!(
                "<tr><td>{}</td><td>{:?}</td><td>{:.6}</td><td>{:.6}</td></tr>",
                esc(&t.name),
                t.shape,
                t.relative_frobenius,
                t.max_abs_change
            )
        })
        .collect();
    format!(
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lethe diff</title>
<style>body{{font-family:sans-serif;max-width:760px;margin:2em auto;color:#222}}table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ddd;padding:3px 6px;text-align:left}}figure{{margin:1em 0}}figcaption{{font-size:13px;color:#555}}</style>
</head><body>
<h1>lethe diff</h1>
<p>A: <code>{a}</code><br>B: <code>{b}</code></p>
<p>{changed} of {total} shared tensors changed{only}.</p>
{plots}{outputs}
<h2>Tensors</h2>
{tensor_plot}
<table><thead><tr><th>tensor</th><th>shape</th><th>‖B − A‖ / ‖A‖</th><th>max |B − A|</th></tr></thead><tbody>{rows}</tbody></table>
<script>
// Marks how many plots the browser laid out with a visible size (checked by the tests).
document.body.dataset.plotsRendered = Array.from(document.querySelectorAll("svg.plot"))
  .filter(function (s) {{ var b = s.getBoundingClientRect(); return b.width > 0 && b.height > 0; }}).length;
</script>
</body></html>
"##,
        a = esc(&r.a),
        b = esc(&r.b),
        changed = r.changed_tensors,
        total = r.tensors.len(),
        only = if r.only_in_a.is_empty() && r.only_in_b.is_empty() {
            String::new()
        } else {
            format!(
                "; only in A: {}; only in B: {}",
                esc(&r.only_in_a.join(", ")),
                esc(&r.only_in_b.join(", "))
            )
        },
    )
}
