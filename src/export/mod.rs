//! Exports: the edited checkpoint directory and the ONNX model beside it.

use crate::arch::text::OnnxModel;
use crate::arch::Classifier;
use crate::checkpoint::{write_edited, Checkpoint};
use crate::error::{Error, Result};
use crate::nn::Params;
use candle_core::Tensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const ONNX_FILE: &str = "model.onnx";

/// Writes the edited checkpoint (only `trained` tensors replaced, the input's other files copied
/// unless `withhold` names them) and `model.onnx` into `dir`. Returns the withheld files.
pub fn export(
    checkpoint: &Checkpoint,
    classifier: &Classifier,
    params: &Params,
    trained: &[String],
    dir: &Path,
    withhold: &dyn Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>> {
    let updated: BTreeMap<String, Tensor> = trained
        .iter()
        .map(|n| Ok((n.clone(), params.get(n)?.detach())))
        .collect::<Result<_>>()?;
    let withheld = write_edited(checkpoint, &updated, dir, withhold)?;
    write_onnx(classifier, params, &dir.join(ONNX_FILE))?;
    Ok(withheld)
}

/// Models whose initializers exceed this many bytes keep them in `model.onnx_data`: a
/// protobuf message cannot exceed 2 GiB.
pub const EXTERNAL_DATA_THRESHOLD: usize = 1 << 30;
/// The external data file beside `model.onnx`, named as optimum and onnxruntime-genai name it.
pub const ONNX_DATA_FILE: &str = "model.onnx_data";

/// The external data file's name for an ONNX file's name: `model.onnx` → `model.onnx_data`.
pub fn data_file_name(onnx_name: &str) -> String {
    format!("{onnx_name}_data")
}

/// The files of a checkpoint that describe it to the tools that load its ONNX export
/// (optimum's `ORTModelForCausalLM`, onnxruntime-genai): its config, generation defaults and
/// tokenizer.
pub const DESCRIPTION_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "added_tokens.json",
];

/// generation_config.json as transformers derives it from a config that has none: the token
/// ids generation starts, stops and pads with.
pub fn generation_config(config: &serde_json::Value) -> serde_json::Value {
    let mut g = serde_json::Map::new();
    for key in ["bos_token_id", "eos_token_id", "pad_token_id"] {
        if let Some(v) = config.get(key).filter(|v| !v.is_null()) {
            g.insert(key.into(), v.clone());
        }
    }
    g.insert("_from_model_config".into(), serde_json::Value::Bool(true));
    serde_json::Value::Object(g)
}

/// genai_config.json, with which onnxruntime-genai runs a decoder's export: the graph's input
/// and output names, the attention layout, the special token ids, and greedy search up to the
/// model's context length.
pub fn genai_config(
    config: &serde_json::Value,
    model: &crate::arch::text::TextModel,
) -> Option<serde_json::Value> {
    use serde_json::json;
    let (kv_heads, head_dim) = model.kv_layout()?;
    let id = |key: &str| config.get(key).filter(|v| !v.is_null()).cloned();
    let heads = config
        .get("num_attention_heads")
        .or_else(|| config.get("n_head"))
        .cloned()?;
    Some(json!({
        "model": {
            "type": model.model_type,
            "bos_token_id": id("bos_token_id").unwrap_or(json!(0)),
            "eos_token_id": id("eos_token_id").unwrap_or(json!(0)),
            "pad_token_id": id("pad_token_id").or_else(|| id("eos_token_id")).unwrap_or(json!(0)),
            "context_length": model.max_positions(),
            "vocab_size": model.vocab_size(),
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": ONNX_FILE,
                "head_size": head_dim,
                "hidden_size": model.hidden_size(),
                "num_attention_heads": heads,
                "num_key_value_heads": kv_heads,
                "num_hidden_layers": model.layers(),
                "inputs": {
                    "input_ids": crate::arch::text::INPUT_IDS,
                    "attention_mask": crate::arch::text::ATTENTION_MASK,
                    "position_ids": crate::nn::onnx::POSITION_IDS,
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": crate::arch::text::LOGITS,
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
            },
        },
        "search": {
            "do_sample": false, "num_beams": 1, "num_return_sequences": 1, "early_stopping": true,
            "max_length": model.max_positions(), "min_length": 0, "past_present_share_buffer": false,
            "repetition_penalty": 1.0, "temperature": 1.0, "top_k": 1, "top_p": 1.0,
        },
    }))
}

/// Writes a text model's ONNX graph as `path` (and `path`'s sibling `model.onnx_data` when its
/// weights exceed `external_threshold` bytes). Returns whether external data was written.
pub fn write_text_onnx(model: OnnxModel, path: &Path, external_threshold: usize) -> Result<bool> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(ONNX_FILE);
    let location = data_file_name(name);
    write_text_onnx_named(
        model,
        path,
        &path.with_file_name(&location),
        &location,
        external_threshold,
    )
}

/// As [`write_text_onnx`], with the external data written to `data_file` while the graph names
/// it `data_location` (relative to the graph's final place): an export assembled under
/// temporary names refers to the names it will have.
pub fn write_text_onnx_named(
    model: OnnxModel,
    path: &Path,
    data_file: &Path,
    data_location: &str,
    external_threshold: usize,
) -> Result<bool> {
    let metadata: Vec<(&str, String)> = model
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let write = |p: &Path, bytes: &[u8]| std::fs::write(p, bytes).map_err(|e| Error::io(p, e));
    if model.graph.initializer_bytes() > external_threshold {
        let (graph, data) = model
            .graph
            .finish_external(&model.name, &metadata, data_location);
        write(data_file, &data)?;
        write(path, &graph)?;
        Ok(true)
    } else {
        write(path, &model.graph.finish(&model.name, &metadata))?;
        Ok(false)
    }
}

pub fn write_onnx(classifier: &Classifier, params: &Params, path: &Path) -> Result<()> {
    let bytes = classifier.to_onnx(params, &[("labels", classifier.labels.join("\n"))])?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}
