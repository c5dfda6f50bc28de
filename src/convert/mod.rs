//! `lethe convert`: a GGUF file (llama.cpp's format) to a Hugging Face-layout checkpoint:
//! dequantized f32 weights under Hugging Face names, llama.cpp's Q/K row permutation undone,
//! and config.json, tokenizer.json and tokenizer_config.json built from the GGUF metadata.

mod meta;
mod tokenizer;

use crate::arch::family::{Family, Role, GEMMA3, LLAMA, QWEN3};
use crate::checkpoint::{write_tensors, OutputDir};
use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value as GgufValue};
use candle_core::{Device, Tensor};
use meta::Meta;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokenizer::{tokenizer_config, tokenizer_json};

/// GGUF architectures lethe converts.
pub const ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3", "gemma3"];

#[derive(Debug, serde::Serialize)]
pub struct ConvertReport {
    pub out: PathBuf,
    pub architecture: String,
    pub tensors: usize,
    pub parameters: u64,
    /// GGUF tensor type → count.
    pub tensor_types: BTreeMap<String, usize>,
    pub tied_embeddings: bool,
    pub tokenizer: bool,
    pub chat_template: bool,
}

/// Undoes llama.cpp's reordering of the rows of a Q or K projection (weight [heads·D, in] or
/// bias [heads·D]). llama.cpp stores, within each head, the rows of the two rotary halves
/// interleaved: GGUF row 2i+j of a head is Hugging Face row j·D/2 + i.
pub fn unpermute_rows(values: &[f32], heads: usize, row_len: usize) -> Vec<f32> {
    let rows = values.len() / row_len;
    let d = rows / heads;
    let half = d / 2;
    let mut out = vec![0f32; values.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * d + 2 * i + j;
                let dst = h * d + j * half + i;
                out[dst * row_len..(dst + 1) * row_len]
                    .copy_from_slice(&values[src * row_len..(src + 1) * row_len]);
            }
        }
    }
    out
}

fn config_json(meta: &Meta, tied: bool, vocab: usize) -> Result<Value> {
    let heads = meta.arch_u64("attention.head_count")? as usize;
    let hidden = meta.arch_u64("embedding_length")? as usize;
    let kv_heads = meta
        .arch_u64("attention.head_count_kv")
        .unwrap_or(heads as u64) as usize;
    let (model_type, class) = match meta.arch.as_str() {
        "qwen2" => ("qwen2", "Qwen2ForCausalLM"),
        "qwen3" => ("qwen3", "Qwen3ForCausalLM"),
        "gemma3" => ("gemma3_text", "Gemma3ForCausalLM"),
        _ => ("llama", "LlamaForCausalLM"),
    };
    let mut c = json!({
        "model_type": model_type,
        "architectures": [class],
        "hidden_size": hidden,
        "intermediate_size": meta.arch_u64("feed_forward_length")?,
        "num_hidden_layers": meta.arch_u64("block_count")?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": meta.arch_u64("context_length")?,
        "rms_norm_eps": meta.arch_f64("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
        "rope_theta": meta.arch_f64("rope.freq_base").unwrap_or(10000.0),
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
    });
    // llama.cpp writes the head dimension as the key length (Qwen3) or as the rotary
    // dimension count, where it differs from hidden / heads.
    if let Ok(dim) = meta
        .arch_u64("attention.key_length")
        .or_else(|_| meta.arch_u64("rope.dimension_count"))
    {
        if dim as usize != hidden / heads {
            c["head_dim"] = json!(dim);
        }
    }
    if meta.arch == "gemma3" {
        gemma3_config(meta, &mut c)?;
    }
    for (key, field) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token_id"),
    ] {
        if let Some(id) = meta.get(key).and_then(GgufValue::as_u64) {
            c[field] = json!(id);
        }
    }
    Ok(c)
}

/// Gemma 3's fields beyond Llama's, as llama.cpp reads them from its GGUF: the head dimension is
/// the key length; every sixth layer attends globally (the pattern llama.cpp assumes when the
/// file names none), the others within `attention.sliding_window` with the local rotary base
/// (10,000 unless `rope.local_freq_base` says otherwise); queries are scaled by
/// 1/√head_dim, except in the 62-layer (27 B) model where llama.cpp scales by
/// 1/√(hidden / heads).
fn gemma3_config(meta: &Meta, c: &mut Value) -> Result<()> {
    let layers = meta.arch_u64("block_count")? as usize;
    let head_dim = meta.arch_u64("attention.key_length")?;
    let pattern = meta
        .arch_u64("attention.sliding_window_pattern")
        .unwrap_or(6)
        .max(1) as usize;
    let layer_types: Vec<&str> = (0..layers)
        .map(|i| {
            if (i + 1) % pattern == 0 {
                "full_attention"
            } else {
                "sliding_attention"
            }
        })
        .collect();
    let query_scalar = if layers == 62 {
        meta.arch_u64("embedding_length")? / meta.arch_u64("attention.head_count")?
    } else {
        head_dim
    };
    c["head_dim"] = json!(head_dim);
    c["layer_types"] = json!(layer_types);
    c["sliding_window"] = json!(meta.arch_u64("attention.sliding_window")?);
    c["rope_local_base_freq"] = json!(meta.arch_f64("rope.local_freq_base").unwrap_or(10000.0));
    c["query_pre_attn_scalar"] = json!(query_scalar);
    c["hidden_activation"] = json!("gelu_pytorch_tanh");
    if let Some(factor) = meta.arch_f64("rope.scaling.factor") {
        if factor != 1.0 {
            c["rope_scaling"] = json!({"rope_type": "linear", "factor": factor});
        }
    }
    Ok(())
}

/// Converts `gguf_path` into a Hugging Face-layout directory `out`, written whole or not at all.
pub fn convert_gguf(gguf_path: &Path, out: &Path, overwrite: bool) -> Result<ConvertReport> {
    let gguf = Gguf::open(gguf_path)?;
    let arch = gguf
        .metadata
        .get("general.architecture")
        .and_then(GgufValue::as_str)
        .unwrap_or("")
        .to_string();
    if !ARCHITECTURES.contains(&arch.as_str()) {
        return Err(Error::UnknownArchitecture {
            found: format!("{arch} (GGUF general.architecture)"),
            known: ARCHITECTURES.join(", "),
        });
    }
    let meta = Meta {
        gguf: &gguf,
        arch: arch.clone(),
    };
    let heads = meta.arch_u64("attention.head_count")? as usize;
    let kv_heads = meta
        .arch_u64("attention.head_count_kv")
        .unwrap_or(heads as u64) as usize;
    // llama.cpp permutes Q and K only for the llama architecture.
    let permuted = arch == "llama";
    let family: &Family = match arch.as_str() {
        "qwen3" => &QWEN3,
        "gemma3" => &GEMMA3,
        _ => &LLAMA,
    };
    // llama.cpp stores Gemma's norm weights as the scale they apply, 1 + w.
    let norm_shift = arch == "gemma3";
    let staging = OutputDir::create(out, &[gguf_path], overwrite)?;
    let mut tensors = Vec::with_capacity(gguf.tensors.len());
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    let mut parameters = 0u64;
    let mut vocab = None;
    for info in &gguf.tensors {
        let (name, role) = family.from_gguf(&info.name).ok_or_else(|| {
            meta.bad(format!(
                "tensor {} has no Hugging Face counterpart in lethe's {arch} mapping",
                info.name
            ))
        })?;
        let shape = info.shape();
        crate::interrupt::check()?;
        let mut values = gguf.dequantize(info);
        if permuted {
            let row_len: usize = shape.iter().skip(1).product();
            match role {
                Role::Query => values = unpermute_rows(&values, heads, row_len),
                Role::Key => values = unpermute_rows(&values, kv_heads, row_len),
                _ => {}
            }
        }
        if role == Role::Embedding && name.ends_with(".weight") {
            vocab = shape.first().copied();
        }
        *types.entry(format!("{:?}", info.kind)).or_default() += 1;
        parameters += info.elements();
        if norm_shift && role.is_norm() {
            values.iter_mut().for_each(|v| *v -= 1.0);
        }
        tensors.push((name, Tensor::from_vec(values, shape, &Device::Cpu)?));
    }
    let vocab =
        vocab.ok_or_else(|| meta.bad("no token embedding tensor (token_embd.weight)".into()))?;
    let head = format!("{}.weight", family.global(Role::Head));
    let tied = !tensors.iter().any(|(n, _)| *n == head);
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors(&staging.path().join("model.safetensors"), &tensors)?;
    drop(tensors);
    let config = config_json(&meta, tied, vocab)?;
    let pretty = |v: &Value| serde_json::to_vec_pretty(v).expect("JSON values serialize");
    staging.write_file("config.json", &pretty(&config))?;
    let tokenizer = tokenizer_json(&meta)?;
    if let Some(t) = &tokenizer {
        staging.write_file("tokenizer.json", &pretty(t))?;
        staging.write_file("tokenizer_config.json", &pretty(&tokenizer_config(&meta)))?;
    }
    let chat_template = meta.get("tokenizer.chat_template").is_some();
    let out = staging.commit()?;
    Ok(ConvertReport {
        out,
        architecture: arch,
        tensors: types.values().sum(),
        parameters,
        tensor_types: types,
        tied_embeddings: tied,
        tokenizer: tokenizer.is_some(),
        chat_template,
    })
}
