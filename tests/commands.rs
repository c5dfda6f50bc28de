//! The command line keeps its promises: `export` and `verify` take every architecture lethe
//! knows; bad usage exits 2 (as JSON with --json); the first Ctrl-C stops a long command that
//! does not train with exit 130 and nothing written; defaults that point into the source
//! checkout say so elsewhere; a device this build lacks is refused.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/text")
        .join(name)
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// A copy of a fixture's files, so that an export can be written beside its weights.
fn copy_of(fixture_dir: &Path, into: &Path) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    for entry in std::fs::read_dir(fixture_dir).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), into.join(entry.file_name())).unwrap();
        }
    }
    into.to_path_buf()
}

#[test]
fn export_and_verify_take_every_text_architecture() {
    let d = tempfile::tempdir().unwrap();
    let ort = common::onnxruntime();
    for name in [
        "llama",
        "llama-tied",
        "mistral",
        "qwen2",
        "qwen3",
        "gemma3",
        "gpt2",
        "bert",
        "tiny-chat",
    ] {
        let dir = copy_of(&fixture(name), &d.path().join(name));
        let onnx = dir.join("model.onnx");
        let o = common::lethe(&["export", arg(&dir), "--out", arg(&onnx), "--json"]);
        assert!(o.status.success(), "{name}: {}", common::stderr(&o));
        let exported = stdout_json(&o);
        assert!(onnx.is_file(), "{name}: no model.onnx");
        assert!(exported["model_type"].is_string(), "{name}: {exported}");
        let o = common::lethe(&["verify", arg(&dir), "--onnxruntime", arg(&ort), "--json"]);
        assert!(o.status.success(), "{name}: {}", common::stderr(&o));
        let parity = stdout_json(&o);
        assert_eq!(parity["passed"], true, "{name}: {parity}");
        assert_eq!(parity["samples"], 3, "{name}: {parity}");
        assert!(
            parity["max_abs_diff"].as_f64().unwrap() <= parity["tolerance"].as_f64().unwrap(),
            "{name}: {parity}"
        );
        // Decoders also generate through their key/value cache; encoders have none.
        if name == "bert" {
            assert!(parity.get("generation").is_none(), "{name}: {parity}");
        } else {
            assert_eq!(parity["generation"]["identical"], 3, "{name}: {parity}");
            assert_eq!(parity["generation"]["passed"], true, "{name}: {parity}");
        }
    }
}

#[test]
fn verify_catches_an_onnx_model_of_other_weights() {
    // The llama-tied fixture's graph beside the llama fixture's weights: same outputs
    // shapes, other values.
    let d = tempfile::tempdir().unwrap();
    let llama = copy_of(&fixture("llama"), &d.path().join("llama"));
    let o = common::lethe(&[
        "export",
        arg(&llama),
        "--out",
        arg(&llama.join("model.onnx")),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let tied = copy_of(&fixture("llama-tied"), &d.path().join("tied"));
    let o = common::lethe(&["export", arg(&tied), "--out", arg(&tied.join("model.onnx"))]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let moved = d.path().join("moved");
    copy_of(&llama, &moved);
    std::fs::copy(tied.join("model.onnx"), moved.join("model.onnx")).unwrap();
    let ort = common::onnxruntime();
    let o = common::lethe(&["verify", arg(&moved), "--onnxruntime", arg(&ort), "--json"]);
    let parity = stdout_json(&o);
    assert_eq!(o.status.code(), Some(3), "{parity}");
    assert_eq!(parity["passed"], false, "{parity}");
}

#[test]
fn export_refuses_to_replace_a_file_unless_asked() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("model.onnx");
    std::fs::write(&out, "keep me").unwrap();
    let gpt2 = fixture("gpt2");
    let o = common::lethe(&["export", arg(&gpt2), "--out", arg(&out)]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    let o = common::lethe(&["export", arg(&gpt2), "--out", arg(&out), "--overwrite"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_ne!(std::fs::read(&out).unwrap(), b"keep me");
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

#[test]
fn usage_errors_exit_2_and_say_so_in_json_with_json() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let cases: &[&[&str]] = &[
        // Out of range, refused by the argument parser.
        &["unlearn", "--forget-fraction", "1.5", "--out", arg(&out)],
        // Refused by the library: nothing to forget.
        &["unlearn", "--out", arg(&out)],
        &[
            "unlearn",
            "--forget-class",
            "Dress",
            "--device",
            "abacus",
            "--out",
            arg(&out),
        ],
        &["unlearn", "--no-such-flag"],
        // Classifiers train in f32; export and verify work on the weights as they are.
        &[
            "unlearn",
            "--forget-class",
            "Dress",
            "--dtype",
            "bf16",
            "--out",
            arg(&out),
        ],
        &[
            "unlearn",
            "--forget-class",
            "Dress",
            "--dtype",
            "f16",
            "--out",
            arg(&out),
        ],
        &["export", "--dtype", "bf16", "--out", arg(&out)],
        // The chat template's keyword arguments are a JSON object.
        &[
            "eval-text",
            "m",
            "--forget-set",
            "f",
            "--retain-set",
            "r",
            "--chat-template-kwargs",
            "[false]",
        ],
        &[
            "train-text",
            "m",
            "--data",
            "d",
            "--out",
            arg(&out),
            "--chat-template-kwargs",
            "{enable_thinking: false}",
        ],
    ];
    for args in cases {
        let o = common::lethe(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", common::stderr(&o));
        assert!(!common::stderr(&o).contains("panicked"), "{args:?}");
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let o = common::lethe(&with_json);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let v = stdout_json(&o);
        assert_eq!(v["kind"], "usage", "{args:?}: {v}");
        assert_eq!(v["exit_status"], 2, "{args:?}: {v}");
        assert!(!v["error"].as_str().unwrap().is_empty(), "{args:?}: {v}");
        assert!(!out.exists(), "{args:?} wrote an output");
    }
}

/// Asking a build without CUDA for a GPU is an error of the environment, not of the command line:
/// exit 1, no panic, nothing written, and a message that says how to get a CUDA build.
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_from_a_build_without_it_exits_1_and_says_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let job = d.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[model]\nsource = \"{root}/models/fashion-mnist-mlp\"\ndevice = \"cuda\"\n\
             [data]\ntrain = \"{root}/fixtures/fashion-mnist\"\n\
             [forget]\nclass = \"Dress\"\n[output]\ndir = {:?}\n",
            out.display().to_string(),
            root = env!("CARGO_MANIFEST_DIR")
        ),
    )
    .unwrap();
    let cases: &[&[&str]] = &[
        &[
            "unlearn",
            "--forget-class",
            "Dress",
            "--device",
            "cuda:0",
            "--out",
            arg(&out),
        ],
        &["eval", "--forget-class", "Dress", "--device", "cuda"],
        &["run", arg(&job)],
    ];
    for args in cases {
        let o = common::lethe(args);
        let err = common::stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains("built without CUDA"), "{args:?}: {err}");
        assert!(err.contains("scripts/build-cuda.sh"), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} wrote an output");
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let v = stdout_json(&common::lethe(&with_json));
        assert_eq!(v["kind"], "error", "{args:?}: {v}");
        assert_eq!(v["exit_status"], 1, "{args:?}: {v}");
    }
}

#[test]
fn an_error_in_the_inputs_exits_1_with_json_when_asked() {
    let d = tempfile::tempdir().unwrap();
    let o = common::lethe(&[
        "eval-text",
        arg(d.path()),
        "--forget-set",
        "f",
        "--retain-set",
        "r",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v = stdout_json(&o);
    assert_eq!(v["kind"], "error", "{v}");
    assert!(
        o.stderr.is_empty(),
        "--json keeps stderr for nothing: {}",
        common::stderr(&o)
    );
}

#[test]
fn bundled_defaults_say_where_they_live_when_lethe_runs_elsewhere() {
    let d = tempfile::tempdir().unwrap();
    let o = common::lethe_in(d.path(), &["unlearn", "--forget-class", "Dress"]);
    assert_eq!(o.status.code(), Some(2));
    let e = common::stderr(&o);
    assert!(
        e.contains("models/fashion-mnist-mlp") && e.contains("source checkout"),
        "{e}"
    );
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist-mlp");
    let o = common::lethe_in(d.path(), &["eval", arg(&model), "--forget-class", "Dress"]);
    assert_eq!(o.status.code(), Some(2));
    let e = common::stderr(&o);
    assert!(
        e.contains("fixtures/fashion-mnist") && e.contains("--data"),
        "{e}"
    );
}

#[test]
fn help_speaks_of_language_models_too() {
    let o = common::lethe(&["--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    let first = help.lines().next().unwrap();
    assert!(first.contains("language model"), "{first}");
    assert!(first.contains("classifier"), "{first}");
}

#[test]
fn ctrl_c_stops_a_conversion_with_exit_130_and_nothing_written() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("converted");
    let child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["convert", arg(&gguf), arg(&out), "-q"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The conversion assembles its output under a temporary name; once that exists, it is
    // dequantizing tensors, which takes seconds.
    let started = Instant::now();
    let staging = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(".partial-"))
    };
    while !staging(d.path()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no staging directory appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("interrupted"),
        "{}",
        common::stderr(&o)
    );
    assert!(!out.exists(), "an interrupted conversion wrote its output");
    assert!(!staging(d.path()), "the staging directory was left behind");
}

#[test]
fn completion_scripts_cover_every_command_and_bash_parses_its_own() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = common::lethe(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", common::stderr(&o));
        let script = String::from_utf8(o.stdout).unwrap();
        for word in [
            "unlearn-text",
            "eval-text",
            "completions",
            "retain-questions",
        ] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("lethe.bash");
            std::fs::write(&file, &script).unwrap();
            let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
            assert!(check.status.success(), "{}", common::stderr(&check));
        }
    }
    let o = common::lethe(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}
