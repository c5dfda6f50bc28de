//! tokenizer.json and tokenizer_config.json from a GGUF file's `tokenizer.ggml.*` metadata.

use super::meta::Meta;
use crate::error::Result;
use crate::gguf::Value as GgufValue;
use serde_json::{json, Map, Value};

/// tokenizer.json for a GPT-2-style byte-level BPE vocabulary (`tokenizer.ggml.model` =
/// "gpt2"), with the pre-tokenizer that `tokenizer.ggml.pre` names.
pub fn tokenizer_json(meta: &Meta) -> Result<Option<Value>> {
    let model = match meta.get("tokenizer.ggml.model").and_then(GgufValue::as_str) {
        Some(m) => m,
        None => return Ok(None),
    };
    if model != "gpt2" {
        return Err(meta.bad(format!(
            "tokenizer.ggml.model {model:?} is not supported (lethe builds tokenizer.json for \"gpt2\" byte-level BPE)"
        )));
    }
    let tokens = meta
        .strings("tokenizer.ggml.tokens")
        .ok_or_else(|| meta.bad("tokenizer.ggml.tokens is missing or not strings".into()))?;
    let merges = meta.strings("tokenizer.ggml.merges").unwrap_or_default();
    let types: Vec<u64> = match meta.get("tokenizer.ggml.token_type") {
        Some(GgufValue::Array(items)) => items.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
        _ => vec![1; tokens.len()],
    };
    let vocab: Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    // GGUF token types: 3 = control, 4 = user defined.
    let added: Vec<Value> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types.get(*i), Some(3) | Some(4)))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": types.get(i) == Some(&3)})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre = match meta.get("tokenizer.ggml.pre").and_then(GgufValue::as_str) {
        // SmolLM's tokenizer splits digits one by one before the byte-level split.
        Some("smollm") | Some("starcoder") => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]}),
        Some("gpt2") | Some("default") | None => byte_level.clone(),
        Some(other) => {
            return Err(meta.bad(format!(
                "tokenizer.ggml.pre {other:?} is not supported (gpt2, smollm, starcoder)"
            )))
        }
    };
    Ok(Some(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    })))
}

pub fn tokenizer_config(meta: &Meta) -> Value {
    let token = |key: &str| -> Value {
        let tokens = meta.strings("tokenizer.ggml.tokens");
        meta.get(key)
            .and_then(GgufValue::as_u64)
            .and_then(|id| tokens.as_ref()?.get(id as usize).map(|t| json!(t)))
            .unwrap_or(Value::Null)
    };
    let mut c = json!({
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
        "pad_token": token("tokenizer.ggml.padding_token_id"),
        "unk_token": token("tokenizer.ggml.unknown_token_id"),
        "add_bos_token": meta.get("tokenizer.ggml.add_bos_token") == Some(&GgufValue::Bool(true)),
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    if let Some(t) = meta
        .get("tokenizer.chat_template")
        .and_then(GgufValue::as_str)
    {
        c["chat_template"] = json!(t);
    }
    c
}
