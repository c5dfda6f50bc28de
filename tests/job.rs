//! `lethe run`: one job file runs the whole pipeline, gates it, and leaves a resolved job that
//! repeats the run bit for bit.

use std::path::{Path, PathBuf};
mod common;

use common::{lethe, stderr};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The documented job, with its output moved into `dir` and `extra` appended.
fn job_in(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("{ROOT}/docs/forget-dress.toml")).unwrap();
    let text = text.replace("\"../", &format!("\"{ROOT}/")).replace(
        &format!("dir = \"{ROOT}/target/jobs/forget-dress\""),
        &format!("dir = \"{}\"", dir.join("out").display()),
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

fn bytes(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap()
}

/// Runs `job` (its output in `dir`/out), checks that the resolved job holds each of `keys`,
/// runs the resolved job again into `dir`/again, and checks that each of `files` comes out
/// byte for byte the same. Returns the first run's report.
fn run_and_repeat(dir: &Path, job: &Path, keys: &[&str], files: &[&str]) -> serde_json::Value {
    let o = lethe(&["run", job.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.join("out");
    let report: serde_json::Value = serde_json::from_slice(&bytes(&out, "report.json")).unwrap();
    let resolved = out.join("job.resolved.toml");
    let text = std::fs::read_to_string(&resolved).unwrap();
    for key in keys {
        assert!(text.contains(key), "resolved job lacks {key}:\n{text}");
    }
    let again = dir.join("again");
    let o = lethe(&[
        "run",
        resolved.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in files {
        assert!(
            bytes(&out, f) == bytes(&again, f),
            "{f} differs on the repeated run"
        );
    }
    report
}

#[test]
fn the_documented_job_runs_and_its_resolved_job_repeats_it_bit_for_bit() {
    let d = tempfile::tempdir().unwrap();
    let job = job_in(d.path(), "");
    let report = run_and_repeat(
        d.path(),
        &job,
        &[
            "lambda0 = 5.0",
            "batch_size = 128",
            "lethe_version",
            "sha256:",
        ],
        &["model.safetensors", "model.onnx"],
    );
    assert_eq!(report["passed"], true);
}

#[test]
fn a_gate_beyond_reach_fails_the_run_and_still_writes_the_report() {
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(job_in(d.path(), "")).unwrap();
    let job = d.path().join("strict.toml");
    std::fs::write(&job, text.replace("min_ua = 99.0", "min_ua = 100.5")).unwrap();
    let o = lethe(&["run", job.to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&bytes(&d.path().join("out"), "report.json")).unwrap();
    assert_eq!(report["passed"], false);
}

#[test]
fn unknown_keys_are_errors_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    let job = job_in(d.path(), "[schedule2]\nepochs = 3\n");
    let o = lethe(&["run", job.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "bad usage");
    assert!(stderr(&o).contains("schedule2"), "{}", stderr(&o));
    assert!(!d.path().join("out").exists());

    let text = std::fs::read_to_string(job_in(d.path(), "")).unwrap();
    let typo = d.path().join("typo.toml");
    std::fs::write(&typo, text.replace("epsilon = 0.0", "epsilom = 0.0")).unwrap();
    let o = lethe(&["run", typo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "bad usage");
    assert!(stderr(&o).contains("epsilom"), "{}", stderr(&o));
}

/// The dry-run plan of a job that names only its model, data and what to forget.
fn plan_of(dir: &Path, forget: &str) -> String {
    let job = dir.join("bare.toml");
    std::fs::write(
        &job,
        format!(
            "[model]\nsource = \"{ROOT}/models/fashion-mnist-mlp\"\n[data]\ntrain = \"{ROOT}/fixtures/fashion-mnist\"\n[forget]\n{forget}\n[output]\ndir = \"{}\"\n",
            dir.join("out").display()
        ),
    )
    .unwrap();
    let o = lethe(&["run", job.to_str().unwrap(), "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn a_job_takes_the_schedule_of_what_it_forgets() {
    let d = tempfile::tempdir().unwrap();
    let expected = [
        (
            "fraction = 0.1",
            ["\"adamw\"", "0.002", "\"cosine\"", "-0.04", "20"],
        ),
        (
            "class = \"Dress\"",
            ["\"sgd\"", "0.003", "\"constant\"", "0.0", "2"],
        ),
    ];
    for (forget, values) in expected {
        let plan = plan_of(d.path(), forget);
        let keys = ["kind", "lr", "lr_schedule", "epsilon", "epochs"];
        for (key, value) in keys.iter().zip(values) {
            let line = format!("{key} = {value}");
            assert!(
                plan.lines().any(|l| l.trim() == line),
                "{forget}: {line} missing:\n{plan}"
            );
        }
    }
}

#[test]
fn dry_run_prints_the_plan_and_runs_nothing() {
    let d = tempfile::tempdir().unwrap();
    let job = job_in(d.path(), "");
    let o = lethe(&["run", job.to_str().unwrap(), "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = String::from_utf8(o.stdout).unwrap();
    assert!(plan.contains("objective = \"random-label\""), "{plan}");
    assert!(plan.contains("momentum = 0.9"), "{plan}");
    assert!(!d.path().join("out").exists());
}

#[test]
fn a_resolved_job_refuses_inputs_that_changed() {
    let d = tempfile::tempdir().unwrap();
    // A private copy of the model, so that it can be changed.
    let model = d.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(
            format!("{ROOT}/models/fashion-mnist-mlp/{f}"),
            model.join(f),
        )
        .unwrap();
    }
    let text = std::fs::read_to_string(job_in(d.path(), ""))
        .unwrap()
        .replace(
            &format!("source = \"{ROOT}/models/fashion-mnist-mlp\""),
            &format!("source = \"{}\"", model.display()),
        );
    let job = d.path().join("job.toml");
    std::fs::write(&job, text.replace("epochs = 2", "steps = 3")).unwrap();
    let o = lethe(&[
        "run",
        job.to_str().unwrap(),
        "-q",
        "--out",
        d.path().join("first").to_str().unwrap(),
    ]);
    // Three steps do not meet the job's gates (exit 3), but the outputs are written.
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let mut config = std::fs::read_to_string(model.join("config.json")).unwrap();
    config.push('\n');
    std::fs::write(model.join("config.json"), config).unwrap();
    let resolved = d.path().join("first/job.resolved.toml");
    let o = lethe(&[
        "run",
        resolved.to_str().unwrap(),
        "--out",
        d.path().join("second").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("changed since this job was resolved"),
        "{}",
        stderr(&o)
    );
}

/// The documented language-model job, with its output moved into `dir` and `extra` appended.
fn text_job_in(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("{ROOT}/docs/forget-facts.toml")).unwrap();
    let text = text.replace("\"../", &format!("\"{ROOT}/")).replace(
        &format!("dir = \"{ROOT}/target/jobs/forget-facts\""),
        &format!("dir = \"{}\"", dir.join("out").display()),
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

#[test]
fn a_language_model_job_runs_gates_and_repeats_bit_for_bit() {
    let d = tempfile::tempdir().unwrap();
    let job = text_job_in(d.path(), "");
    let report = run_and_repeat(
        d.path(),
        &job,
        &[
            "lora_alpha = 8.0",
            "npo_beta = 0.1",
            "batch_size = 8",
            "sha256:",
        ],
        &[
            "model.safetensors",
            "model.onnx",
            "adapter/adapter_model.safetensors",
            "adapter/adapter_config.json",
        ],
    );
    assert_eq!(report["schema"], "lethe.unlearn.report/2");
    assert_eq!(report["model"]["lora"]["rank"], 4);

    // A gate beyond reach: exit 3, report written.
    let d = tempfile::tempdir().unwrap();
    let job = text_job_in(d.path(), "max_forget_rouge = -1.0\n");
    let o = lethe(&["run", job.to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&bytes(&d.path().join("out"), "report.json")).unwrap();
    assert_eq!(report["passed"], false);
}
