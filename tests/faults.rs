//! Interrupted runs: Ctrl-C leaves the outputs untouched and a resumable state, and the resumed
//! run ends bit for bit where an uninterrupted one does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/digits.csv.gz");

fn lethe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lethe"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn model(dir: &Path) -> PathBuf {
    let out = dir.join("digits");
    let o = lethe()
        .args([
            "train",
            "--data",
            DIGITS,
            "--hidden",
            "32",
            "--epochs",
            "20",
            "--batch-size",
            "64",
            "-q",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

fn unlearn_args<'a>(model: &'a Path, out: &'a Path) -> Vec<&'a std::ffi::OsStr> {
    let mut v: Vec<&std::ffi::OsStr> = [
        "unlearn",
        "--data",
        DIGITS,
        "--forget-class",
        "3",
        "--steps",
        "6000",
        "--fast",
        "--optimizer",
        "adamw",
        "--lr",
        "0.0005",
        "-q",
    ]
    .iter()
    .map(std::ffi::OsStr::new)
    .collect();
    v.push(model.as_os_str());
    v.push(std::ffi::OsStr::new("--out"));
    v.push(out.as_os_str());
    v
}

/// Sends Ctrl-C (SIGINT) once the run is under way: its first checkpoint exists.
fn interrupt_after_first_checkpoint(child: &std::process::Child, state: &Path) {
    let started = Instant::now();
    while !state.join("state.json").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
}

#[test]
fn ctrl_c_then_resume_ends_bit_identical_to_an_uninterrupted_run() {
    let d = tempfile::tempdir().unwrap();
    let model = model(d.path());

    let straight = d.path().join("straight");
    let o = lethe()
        .args(unlearn_args(&model, &straight))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let out = d.path().join("resumed");
    let state = d.path().join("resumed.lethe-state");
    let child = lethe()
        .args(unlearn_args(&model, &out))
        .args(["--checkpoint-every", "100"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    interrupt_after_first_checkpoint(&child, &state);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    assert!(!out.exists(), "an interrupted run wrote its outputs");
    assert!(state.join("state.safetensors").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-written outputs left: {leftovers:?}"
    );

    let o = lethe()
        .args(unlearn_args(&model, &out))
        .args(["--resume", "--checkpoint-every", "100"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["model.safetensors", "model.onnx"] {
        let a = std::fs::read(straight.join(f)).unwrap();
        let b = std::fs::read(out.join(f)).unwrap();
        assert!(a == b, "{f} differs after resuming");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["run"]["steps"], 6000);
    assert!(!state.exists(), "the state outlived the finished run");
}

#[test]
fn a_state_from_another_run_is_not_resumed() {
    let d = tempfile::tempdir().unwrap();
    let model = model(d.path());
    let out = d.path().join("out");
    let state = d.path().join("out.lethe-state");
    let mut child = lethe()
        .args(unlearn_args(&model, &out))
        .args(["--checkpoint-every", "50"])
        .spawn()
        .unwrap();
    interrupt_after_first_checkpoint(&child, &state);
    let _ = child.wait();
    // Same output directory, other settings.
    let o = lethe()
        .args(unlearn_args(&model, &out))
        .args(["--resume", "--seed", "9"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "bad usage");
    assert!(stderr(&o).contains("different run"), "{}", stderr(&o));
    assert!(!out.exists());
}
