//! The `lethe` binary end to end on a tiny model, and its answers to bad input: a clear message,
//! a non-zero exit, and nothing written.

mod common;

use common::{lethe, stderr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

const DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/digits.csv.gz");

/// A small MLP trained on the digits CSV, shared by the tests of this file.
fn digits_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let out = root.join("digits-mlp");
        let o = lethe(&[
            "train",
            "--data",
            DIGITS,
            "--hidden",
            "32",
            "--epochs",
            "40",
            "--batch-size",
            "64",
            "--lr",
            "0.003",
            "--out",
            out.to_str().unwrap(),
            "-q",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        out
    })
}

fn tmp_out() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    (d, out)
}

fn unlearn(model: &Path, out: Option<&Path>, extra: &[&str]) -> Output {
    let mut args = vec![
        "unlearn",
        model.to_str().unwrap(),
        "--data",
        DIGITS,
        "--quiet",
    ];
    if let Some(out) = out {
        args.extend(["--out", out.to_str().unwrap()]);
    }
    args.extend_from_slice(extra);
    lethe(&args)
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn unlearn_a_class_end_to_end() {
    let model = digits_model();
    let (_d, out) = tmp_out();
    let o = unlearn(
        model,
        Some(&out),
        &[
            "--forget-class",
            "3",
            "--lr",
            "0.003",
            "--epsilon",
            "0",
            "--lambda0",
            "5",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "config.json",
        "model.safetensors",
        "model.onnx",
        "report.json",
        "README.md",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let r = report(&out);
    assert_eq!(r["schema"], "lethe.unlearn.report/2");
    let before = &r["metrics"]["before"];
    let after = &r["metrics"]["after"];
    assert!(
        before["ua"].as_f64().unwrap() < 10.0,
        "the trained model already fails the class"
    );
    assert!(
        after["ua"].as_f64().unwrap() >= 90.0,
        "UA after: {}",
        after["ua"]
    );
    let test_drop = before["ta"].as_f64().unwrap() - after["ta"].as_f64().unwrap();
    assert!(test_drop < 10.0, "TA fell by {test_drop}");
    let v = &r["verification"];
    assert_eq!(v["passed"], true);
    assert!(v["max_abs_diff"].as_f64().unwrap() <= 1e-4);
    let run = &r["run"];
    let steps = run["steps"].as_u64().unwrap();
    assert_eq!(
        run["backward_passes"].as_u64().unwrap(),
        steps,
        "igs takes one backward pass a step"
    );
    assert_eq!(run["forward_passes"].as_u64().unwrap(), 2 * steps);
    assert_eq!(run["history"].as_array().unwrap().len() as u64, steps);

    // The exported model verifies on its own.
    let o = lethe(&["verify", out.to_str().unwrap(), "--data", DIGITS, "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_cnn_with_batch_norm_trains_unlearns_and_verifies() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("cnn");
    let o = lethe(&[
        "train",
        "--data",
        DIGITS,
        "--arch",
        "cnn",
        "--channels",
        "6,8",
        "--batch-norm",
        "--epochs",
        "8",
        "--batch-size",
        "64",
        "--lr",
        "0.003",
        "--out",
        model.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "lethe_cnn");
    let out = d.path().join("out");
    let o = unlearn(&model, Some(&out), &["--forget-class", "7", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        r["metrics"]["after"]["ua"].as_f64().unwrap()
            > r["metrics"]["before"]["ua"].as_f64().unwrap()
    );
    assert_eq!(r["verification"]["passed"], true, "{}", r["verification"]);
    // Batch-norm statistics are buffers: never in the trainable set.
    let trained: Vec<&str> = r["model"]["trainable_tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(trained.contains(&"features.0.bn.weight"));
    assert!(!trained.iter().any(|t| t.contains("running")));
}

#[test]
fn overwrite_replaces_an_existing_output_only_when_asked() {
    let model = digits_model();
    let (_d, out) = tmp_out();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("old.txt"), "previous run").unwrap();
    let o = unlearn(model, Some(&out), &["--forget-class", "1", "--steps", "2"]);
    assert_eq!(o.status.code(), Some(2), "bad usage");
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    assert!(out.join("old.txt").is_file());
    let o = unlearn(
        model,
        Some(&out),
        &["--forget-class", "1", "--steps", "2", "--overwrite"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.join("old.txt").exists());
    assert!(out.join("model.safetensors").is_file());
}

#[test]
fn verification_fails_when_the_onnx_model_does_not_match_the_weights() {
    let d = tempfile::tempdir().unwrap();
    let edited = d.path().join("edited");
    let o = unlearn(
        digits_model(),
        Some(&edited),
        &["--forget-class", "0", "--steps", "30"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Pair the edited weights with the original model's graph.
    let o = lethe(&[
        "export",
        digits_model().to_str().unwrap(),
        "--out",
        edited.join("model.onnx").to_str().unwrap(),
        "--overwrite",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lethe(&[
        "verify",
        edited.to_str().unwrap(),
        "--data",
        DIGITS,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["passed"], false);
    assert!(v["max_abs_diff"].as_f64().unwrap() > 1e-4);
}

#[test]
fn json_report_on_stdout_and_unmet_gates_exit_3_with_the_report_written() {
    let model = digits_model();
    let (_d, out) = tmp_out();
    let o = unlearn(
        model,
        Some(&out),
        &[
            "--forget-class",
            "5",
            "--steps",
            "5",
            "--min-ua",
            "101",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(printed["passed"], false);
    let r = report(&out);
    assert_eq!(r["passed"], false);
    let gate = r["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "min-ua")
        .unwrap();
    assert_eq!(gate["passed"], false);
}

#[test]
fn frozen_parameters_stay_bit_identical() {
    let model = digits_model();
    let (_d, out) = tmp_out();
    let o = unlearn(
        model,
        Some(&out),
        &[
            "--forget-class",
            "1",
            "--steps",
            "10",
            "--train",
            "classifier.*",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |p: &Path| {
        let bytes = std::fs::read(p.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        st.names()
            .iter()
            .map(|n| (n.to_string(), st.tensor(n).unwrap().data().to_vec()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (a, b) = (read(model), read(&out));
    assert_eq!(a["layers.0.weight"], b["layers.0.weight"]);
    assert_eq!(a["layers.0.bias"], b["layers.0.bias"]);
    assert_ne!(a["classifier.weight"], b["classifier.weight"]);
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let model = digits_model();
    let run = |seed: &str| {
        let (d, out) = tmp_out();
        let o = unlearn(
            model,
            Some(&out),
            &["--forget-fraction", "0.1", "--steps", "15", "--seed", seed],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let onnx = std::fs::read(out.join("model.onnx")).unwrap();
        drop(d);
        (bytes, onnx)
    };
    let a = run("7");
    let b = run("7");
    assert!(a == b, "two runs with the same seed differ");
    let c = run("8");
    assert!(a.0 != c.0, "the seed has no effect");
}

#[test]
fn every_method_runs() {
    let model = digits_model();
    for method in ["igs", "egs", "ft", "ga", "graddiff", "rl"] {
        let o = unlearn(
            model,
            None,
            &[
                "--forget-class",
                "2",
                "--steps",
                "4",
                "--method",
                method,
                "--json",
            ],
        );
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["run"]["steps"], 4, "{method}");
        let backward = r["run"]["backward_passes"].as_u64().unwrap();
        assert_eq!(backward, if method == "egs" { 8 } else { 4 }, "{method}");
    }
    let o = unlearn(
        model,
        None,
        &["--forget-class", "2", "--steps", "4", "--fast", "--json"],
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        r["run"]["forward_passes"], 4,
        "the fast variant adds no forward pass"
    );
}

/// Runs a command expected to fail with `status`; checks the message and that `out` was not
/// created.
fn refused_with(status: i32, o: Output, out: &Path, needle: &str) {
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(status), "exit status; stderr: {e}");
    assert!(e.contains(needle), "expected {needle:?} in: {e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(!out.exists(), "output written despite the error");
}

/// An error in the inputs or the run: exit 1.
fn refused(o: Output, out: &Path, needle: &str) {
    refused_with(1, o, out, needle)
}

/// Bad usage (arguments, or a selection that selects nothing): exit 2.
fn refused_usage(o: Output, out: &Path, needle: &str) {
    refused_with(2, o, out, needle)
}

#[test]
fn an_empty_forget_set_is_refused() {
    let (d, out) = tmp_out();
    let list = d.path().join("none.txt");
    std::fs::write(&list, "\n").unwrap();
    let o = unlearn(
        digits_model(),
        Some(&out),
        &["--forget-indices", list.to_str().unwrap()],
    );
    refused_usage(o, &out, "forget set (indices from");
}

#[test]
fn a_forget_class_that_does_not_exist_or_does_not_occur_is_refused() {
    let (d, out) = tmp_out();
    let o = unlearn(digits_model(), Some(&out), &["--forget-class", "12"]);
    refused_usage(o, &out, "class 12 does not exist");
    let o = unlearn(digits_model(), Some(&out), &["--forget-class", "Dress"]);
    refused_usage(o, &out, "no class named");
    // A dataset of 8×8 images whose labels never reach class 9.
    let data = d.path().join("partial.safetensors");
    common::write_dataset(&data, 90, [1, 8, 8], 9, 3);
    let o = lethe(&[
        "unlearn",
        digits_model().to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--forget-class",
        "9",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    refused_usage(o, &out, "does not occur in the training data");
}

#[test]
fn a_diverging_run_stops_and_names_the_step() {
    let (_d, out) = tmp_out();
    let o = unlearn(
        digits_model(),
        Some(&out),
        &[
            "--forget-class",
            "4",
            "--method",
            "ga",
            "--lr",
            "1e30",
            "--steps",
            "50",
        ],
    );
    refused(o, &out, "diverged at step");
}

#[test]
fn output_equal_to_input_is_refused_and_the_input_is_untouched() {
    let model = digits_model();
    let before = common::snapshot(model);
    let o = unlearn(
        model,
        Some(model),
        &["--forget-class", "1", "--steps", "2", "--overwrite"],
    );
    assert_eq!(o.status.code(), Some(2), "bad usage");
    assert!(
        stderr(&o).contains("never writes into its inputs"),
        "{}",
        stderr(&o)
    );
    assert_eq!(common::snapshot(model), before);
}

#[test]
fn a_missing_onnx_runtime_library_is_an_error_with_a_remedy() {
    let (_d, out) = tmp_out();
    let o = unlearn(
        digits_model(),
        Some(&out),
        &[
            "--forget-class",
            "1",
            "--steps",
            "2",
            "--onnxruntime",
            "/nonexistent/libonnxruntime.so",
        ],
    );
    refused(o, &out, "scripts/fetch-onnxruntime.sh");
}

#[test]
fn corrupt_inputs_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    // A truncated checkpoint.
    let broken = d.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(digits_model().join(f), broken.join(f)).unwrap();
    }
    let weights = broken.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let o = unlearn(&broken, Some(&out), &["--forget-class", "1"]);
    refused(o, &out, "truncated");
    // An unknown architecture.
    std::fs::write(&weights, &bytes).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(broken.join("config.json")).unwrap()).unwrap();
    config["model_type"] = serde_json::json!("transformer-xl");
    std::fs::write(broken.join("config.json"), config.to_string()).unwrap();
    let o = unlearn(&broken, Some(&out), &["--forget-class", "1"]);
    refused(o, &out, "unknown model_type");
    // A truncated gzip data file.
    let data = d.path().join("digits.csv.gz");
    let raw = std::fs::read(DIGITS).unwrap();
    std::fs::write(&data, &raw[..raw.len() / 3]).unwrap();
    let o = lethe(&[
        "unlearn",
        digits_model().to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--forget-class",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    refused(o, &out, "not a valid gzip stream");
    // Images of the wrong shape for the model.
    let wrong = d.path().join("wrong.safetensors");
    common::write_dataset(&wrong, 40, [1, 6, 6], 4, 1);
    let o = lethe(&[
        "unlearn",
        digits_model().to_str().unwrap(),
        "--data",
        wrong.to_str().unwrap(),
        "--forget-class",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    refused(o, &out, "the model takes [1, 8, 8]");
}

#[test]
fn help_is_there_for_every_command() {
    for cmd in ["unlearn", "train", "eval", "verify", "export", "bench"] {
        let o = lethe(&[cmd, "--help"]);
        assert!(o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage: lethe"),
            "{cmd}"
        );
    }
}
