//! lethe's PEFT adapter loaded by Python's peft (AutoPeftModelForCausalLM, base found through
//! adapter_config.json) gives the logits of lethe's merged checkpoint. Needs the reference Python
//! environment of scripts/python-refenv.sh, which .ci/run installs.

mod common;

use candle_core::{DType, Device, Tensor};
use lethe::arch::text::TextModel;
use lethe::checkpoint::Checkpoint;
use std::path::Path;

#[test]
fn python_peft_loads_the_adapter_and_matches_the_merged_model() {
    let Some(python) = common::refenv_python() else {
        return;
    };
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/text/tiny-chat");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let o = common::lethe(&[
        "unlearn-text",
        &s(&tiny),
        "--forget-set",
        &s(&tiny.join("forget.jsonl")),
        "--retain-set",
        &s(&tiny.join("retain.jsonl")),
        "--lora-rank",
        "4",
        "--lora-alpha",
        "8",
        "--lora-targets",
        "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        "--steps",
        "5",
        "--lr",
        "1e-2",
        "--no-verify",
        "--out",
        &s(&out),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));

    let ids: Vec<Vec<u32>> = vec![
        vec![1, 5, 9, 17, 33, 40, 2, 61, 70],
        vec![88, 3, 14, 15, 92, 65, 35, 89, 79],
    ];
    let logits_file = dir.path().join("peft-logits.safetensors");
    let py = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peft-logits.py"))
        .arg(out.join("adapter"))
        .arg(serde_json::to_string(&ids).unwrap())
        .arg(&logits_file)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let peft =
        candle_core::safetensors::load(&logits_file, &Device::Cpu).unwrap()["logits"].clone();

    let ckpt = Checkpoint::open(&out).unwrap();
    let model = TextModel::from_checkpoint(&ckpt).unwrap();
    let params = model.load_params(&ckpt, &Device::Cpu, DType::F32).unwrap();
    let flat: Vec<u32> = ids.concat();
    let x = Tensor::from_vec(flat, (ids.len(), ids[0].len()), &Device::Cpu).unwrap();
    let ours = model
        .run(&params, &x, &x.ones_like().unwrap(), 1.0)
        .unwrap();
    let diff: f32 = (ours - &peft)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    // The untouched base's logits differ from the merged model's by far more than the bound.
    let base = Checkpoint::open(&tiny).unwrap();
    let base_params = model.load_params(&base, &Device::Cpu, DType::F32).unwrap();
    let base_logits = model
        .run(&base_params, &x, &x.ones_like().unwrap(), 1.0)
        .unwrap();
    let moved: f32 = (base_logits - &peft)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    eprintln!("max |lethe merged − peft| = {diff:e}; the adapter moves logits by up to {moved:e}");
    assert!(diff <= 1e-4, "max |lethe merged − peft| = {diff:e}");
    assert!(
        moved > 100.0 * diff.max(1e-6),
        "the adapter changed nothing: {moved:e}"
    );
}
