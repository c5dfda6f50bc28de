//! ONNX exports that serving tools load: optimum-onnx's ORTModelForCausalLM loads the directory
//! `lethe export MODEL --out DIR` writes, and the output directory of a LoRA unlearning run, and
//! generates from a left-padded batch the same tokens as transformers on the same weights
//! (scripts/optimum-generate.py); onnxruntime-genai runs the same directory through its
//! genai_config.json and generates candle's tokens (scripts/genai-generate.py). Needs the
//! reference Python environment of scripts/python-refenv.sh, which .ci/run installs.

mod common;

use serde_json::Value;
use std::path::Path;

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// optimum's and transformers' greedy tokens for the export in `export` of `checkpoint`.
fn optimum_and_transformers(python: &Path, export: &Path, checkpoint: &Path) -> Value {
    let o = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/optimum-generate.py"))
        .arg(export)
        .arg(checkpoint)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn assert_same_generation(r: &Value, what: &str) {
    assert_eq!(r["uses_cache"], true, "{what}: {r}");
    let inputs: Vec<&str> = r["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for name in [
        "input_ids",
        "attention_mask",
        "position_ids",
        "past_key_values.0.key",
        "past_key_values.0.value",
    ] {
        assert!(inputs.contains(&name), "{what}: inputs {inputs:?}");
    }
    assert_eq!(r["optimum"], r["transformers"], "{what}");
}

#[test]
fn optimum_loads_lethes_exports_and_generates_as_transformers_does() {
    let Some(python) = common::refenv_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for name in ["llama", "mistral", "gemma3", "gpt2"] {
        let checkpoint = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/text")
            .join(name);
        let export = dir.path().join(name);
        let o = common::lethe(&["export", &s(&checkpoint), "--out", &s(&export), "--json"]);
        assert!(o.status.success(), "{name}: {}", common::stderr(&o));
        for file in ["model.onnx", "config.json", "generation_config.json"] {
            assert!(export.join(file).is_file(), "{name}: no {file}");
        }
        let r = optimum_and_transformers(&python, &export, &checkpoint);
        assert_same_generation(&r, name);
    }
}

#[test]
fn onnxruntime_genai_runs_lethes_exports_and_generates_as_candle_does() {
    let Some(python) = common::refenv_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prompt = [5u32, 17, 33, 2, 60];
    for name in ["llama", "mistral", "qwen2", "qwen3", "gemma3"] {
        let checkpoint = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/text")
            .join(name);
        let export = dir.path().join(name);
        let o = common::lethe(&["export", &s(&checkpoint), "--out", &s(&export), "--quiet"]);
        assert!(o.status.success(), "{name}: {}", common::stderr(&o));
        assert!(export.join("genai_config.json").is_file(), "{name}");
        let o = std::process::Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/genai-generate.py"))
            .arg(&export)
            .arg(serde_json::to_string(&prompt).unwrap())
            .arg("12")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let genai: Vec<u32> = serde_json::from_slice(&o.stdout).unwrap();
        let ckpt = lethe::checkpoint::Checkpoint::open(&checkpoint).unwrap();
        let model = lethe::arch::text::TextModel::from_checkpoint(&ckpt).unwrap();
        let params = model
            .load_params(&ckpt, &candle_core::Device::Cpu, candle_core::DType::F32)
            .unwrap();
        let candle = model.generate_greedy(&params, &prompt, 12, None).unwrap();
        assert_eq!(genai, candle, "{name}");
    }
}

#[test]
fn a_lora_unlearning_runs_output_loads_in_optimum() {
    let Some(python) = common::refenv_python() else {
        return;
    };
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/text/tiny-chat");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = common::lethe(&[
        "unlearn-text",
        &s(&tiny),
        "--forget-set",
        &s(&tiny.join("forget.jsonl")),
        "--retain-set",
        &s(&tiny.join("retain.jsonl")),
        "--lora-targets",
        "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        "--steps",
        "5",
        "--lr",
        "1e-2",
        "--out",
        &s(&out),
        "--json",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        report["verification"]["generation"]["passed"], true,
        "{report}"
    );
    // The run's directory is the edited checkpoint with its ONNX model beside it.
    let r = optimum_and_transformers(&python, &out, &out);
    assert_same_generation(&r, "unlearning run");
}
