//! `lethe diff`: tensor and output changes between two models, and its HTML report rendered by
//! headless Chromium (installed by .ci/run from Debian's `chromium` package).

use std::path::{Path, PathBuf};
mod common;

use common::{lethe, stderr};
use std::process::Command;

/// The bundled model with its classifier head edited to forget Dress.
fn edited(dir: &Path) -> PathBuf {
    let out = dir.join("edited");
    let o = lethe(&[
        "unlearn",
        "models/fashion-mnist-mlp",
        "--forget-class",
        "Dress",
        "--train",
        "classifier.*",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(3),
        "{}",
        stderr(&o)
    );
    out
}

#[test]
fn diff_names_the_changed_tensors_and_the_changed_outputs() {
    let d = tempfile::tempdir().unwrap();
    let b = edited(d.path());
    let o = lethe(&[
        "diff",
        "models/fashion-mnist-mlp",
        b.to_str().unwrap(),
        "--data",
        "fixtures/fashion-mnist",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["schema"], "lethe.diff/1");
    assert_eq!(r["changed_tensors"], 2);
    for t in r["tensors"].as_array().unwrap() {
        let rel = t["relative_frobenius"].as_f64().unwrap();
        if t["name"].as_str().unwrap().starts_with("classifier.") {
            assert!(rel > 0.0, "{t}");
        } else {
            assert_eq!(rel, 0.0, "{t}");
        }
    }
    let out = &r["outputs"];
    assert!(out["top1_flips"].as_u64().unwrap() > 100);
    assert!(out["mean_kl"].as_f64().unwrap() > 0.0);
    let dress = out["per_class_accuracy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == "Dress")
        .unwrap();
    assert!(
        dress["a"].as_f64().unwrap() > 50.0 && dress["b"].as_f64().unwrap() < 5.0,
        "{dress}"
    );
    assert_eq!(r["run"]["lambda"].as_array().unwrap().len(), 114);
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("LETHE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        path.is_file(),
        "{} not found: apt-get install chromium (or set LETHE_CHROMIUM)",
        path.display()
    );
    path
}

#[test]
fn the_html_report_renders_its_plots_in_headless_chromium_without_console_errors() {
    let d = tempfile::tempdir().unwrap();
    let b = edited(d.path());
    let page = d.path().join("diff.html");
    let o = lethe(&[
        "diff",
        "models/fashion-mnist-mlp",
        b.to_str().unwrap(),
        "--data",
        "fixtures/fashion-mnist",
        "--html",
        page.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads external resources"
    );
    let profile = d.path().join("profile");
    let o = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium failed: {}", stderr(&o));
    let dom = String::from_utf8_lossy(&o.stdout);
    // Three run curves, per-class accuracy and the most-changed tensors, all laid out.
    assert!(
        dom.contains(r#"data-plots-rendered="5""#),
        "plots not rendered: {}",
        &dom[..dom.len().min(400)]
    );
    let log = stderr(&o);
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(
        console_errors.is_empty(),
        "console errors: {console_errors:?}"
    );
}
