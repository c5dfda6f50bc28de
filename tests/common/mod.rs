//! Helpers shared by the integration tests: tiny models and data written to temporary
//! directories.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use lethe::arch::{Classifier, CnnConfig, MlpConfig};
use lethe::checkpoint::write_new;
use lethe::data::Dataset;
use lethe::nn::Params;
use std::path::{Path, PathBuf};

pub fn labels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

pub fn mlp_config(shape: [usize; 3], classes: usize) -> serde_json::Value {
    MlpConfig {
        hidden_sizes: vec![16, 12],
    }
    .to_config(shape, &labels(classes))
}

pub fn cnn_config(shape: [usize; 3], classes: usize, batch_norm: bool) -> serde_json::Value {
    CnnConfig {
        channels: vec![4, 6],
        kernel_size: 3,
        batch_norm,
    }
    .to_config(shape, &labels(classes))
}

/// Random parameters; batch-norm statistics are made non-trivial so that exports are tested
/// with real values in them.
pub fn random_params(classifier: &Classifier, seed: u64) -> Params {
    let mut params = lethe::train::init_params(classifier, seed, &Device::Cpu).unwrap();
    let mut rng = lethe::rng::Rng::new(seed + 1);
    for spec in classifier.param_specs() {
        let n: usize = spec.shape.iter().product();
        let jitter: Vec<f32> = (0..n).map(|_| rng.next_f64() as f32 * 0.5 + 0.1).collect();
        if spec.name.ends_with("running_var")
            || spec.name.ends_with("running_mean")
            || spec.name.ends_with(".bias")
        {
            params.insert(
                spec.name.clone(),
                Tensor::from_vec(jitter, &spec.shape[..], &Device::Cpu).unwrap(),
            );
        }
    }
    params
}

/// Writes a checkpoint directory for `config` with random weights and returns its path.
pub fn write_model(
    dir: &Path,
    config: &serde_json::Value,
    seed: u64,
    dtype: safetensors::Dtype,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let classifier = Classifier::from_config(config).unwrap();
    let params = random_params(&classifier, seed);
    let tensors: Vec<(String, Tensor)> = classifier
        .param_specs()
        .iter()
        .map(|s| (s.name.clone(), params.get(&s.name).unwrap().clone()))
        .collect();
    write_new(dir, config, &tensors, dtype).unwrap();
    dir.to_path_buf()
}

/// A small synthetic dataset in lethe's safetensors format: each class has its own bright
/// pixel pattern plus noise, so a tiny model can learn it.
pub fn write_dataset(
    path: &Path,
    n: usize,
    shape: [usize; 3],
    classes: usize,
    seed: u64,
) -> Dataset {
    let mut rng = lethe::rng::Rng::new(seed);
    let d: usize = shape.iter().product();
    let mut images = Vec::with_capacity(n * d);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let y = (i % classes) as u8;
        for p in 0..d {
            let signal = if p % classes == y as usize {
                180.0
            } else {
                20.0
            };
            let v = signal + rng.next_f64() * 60.0;
            images.push(v.min(255.0) as u8);
        }
        labels.push(y);
    }
    let mut dims = vec![n];
    dims.extend_from_slice(&shape);
    let img = safetensors::tensor::TensorView::new(safetensors::Dtype::U8, dims, &images).unwrap();
    let lab =
        safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![n], &labels).unwrap();
    let bytes = safetensors::serialize(vec![("images", img), ("labels", lab)], None).unwrap();
    std::fs::write(path, bytes).unwrap();
    lethe::data::load_split(path, "train").unwrap()
}

/// The ONNX Runtime library: tests that need it fail with the fetch hint when it is missing.
pub fn onnxruntime() -> PathBuf {
    lethe::verify::runtime::find_library(None).unwrap_or_else(|e| panic!("{e}"))
}

/// Every file under `dir` with its bytes, for "nothing was written / changed" checks.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(snapshot(&p));
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Runs the lethe binary from the repository root.
pub fn lethe(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("lethe runs")
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Builds a GGUF v3 file: metadata, then tensors (name, GGUF dims, type id, raw bytes).
pub fn gguf<S: AsRef<str>>(
    metadata: &[(&str, u32, Vec<u8>)],
    tensors: &[(S, Vec<u64>, u32, Vec<u8>)],
) -> Vec<u8> {
    let string = |s: &str| {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    };
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, type_id, value) in metadata {
        out.extend(string(key));
        out.extend(type_id.to_le_bytes());
        out.extend(value);
    }
    let mut offset = 0u64;
    let mut data = Vec::new();
    for (name, dims, type_id, bytes) in tensors {
        out.extend(string(name.as_ref()));
        out.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(type_id.to_le_bytes());
        out.extend(offset.to_le_bytes());
        data.extend_from_slice(bytes);
        while !data.len().is_multiple_of(32) {
            data.push(0);
        }
        offset = data.len() as u64;
    }
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    out.extend(data);
    out
}

/// `relative` under the repository root when a setup script has put it there, else None with a
/// note. In CI a missing file is a failure, unless .ci/run named `script` in LETHE_SKIPPED_SETUP
/// (it does so, with the reason, when the machine lacks the disk the script needs).
pub fn prepared(relative: &str, script: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    if p.is_file() {
        return Some(p);
    }
    let skipped = std::env::var("LETHE_SKIPPED_SETUP").unwrap_or_default();
    if skipped.contains(script) {
        eprintln!("NOT RUN: CI skipped {skipped}");
        return None;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run {script} (it provides {relative})"
    );
    eprintln!("skipped: run {script}");
    None
}

/// The real SmolLM2-135M-Instruct GGUF (scripts/fetch-smollm2.sh).
pub fn smollm2_gguf() -> Option<PathBuf> {
    prepared(
        ".lethe/models/SmolLM2-135M-Instruct.Q4_1.gguf",
        "scripts/fetch-smollm2.sh",
    )
}

/// The real Gemma-3-270M GGUF (scripts/fetch-gemma3.sh).
pub fn gemma3_gguf() -> Option<PathBuf> {
    prepared(
        ".lethe/models/gemma-3-270m-q4_k_m.gguf",
        "scripts/fetch-gemma3.sh",
    )
}

/// The Python reference environment's interpreter (scripts/python-refenv.sh).
pub fn refenv_python() -> Option<PathBuf> {
    prepared(".lethe/refenv/complete", "scripts/python-refenv.sh")
        .map(|complete| complete.with_file_name("bin").join("python"))
}

/// `lethe ARGS` run from `dir`.
pub fn lethe_in(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("lethe runs")
}
