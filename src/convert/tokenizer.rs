//! tokenizer.json and tokenizer_config.json from a GGUF file's `tokenizer.ggml.*` metadata.

use super::meta::Meta;
use crate::error::Result;
use crate::gguf::Value as GgufValue;
use serde_json::{json, Map, Value};

/// tokenizer.json for the GGUF's vocabulary: GPT-2-style byte-level BPE (`tokenizer.ggml.model`
/// = "gpt2", with the pre-tokenizer that `tokenizer.ggml.pre` names) or SentencePiece BPE
/// ("llama"); None when the file has no tokenizer.
pub fn tokenizer_json(meta: &Meta) -> Result<Option<Value>> {
    let model = match meta.get("tokenizer.ggml.model").and_then(GgufValue::as_str) {
        Some(m) => m,
        None => return Ok(None),
    };
    match model {
        "gpt2" => {}
        "llama" => return sentencepiece_json(meta).map(Some),
        other => {
            return Err(meta.bad(format!(
                "tokenizer.ggml.model {other:?} is not supported (lethe builds tokenizer.json for \"gpt2\" byte-level BPE and \"llama\" SentencePiece BPE)"
            )))
        }
    }
    let tokens = meta
        .strings("tokenizer.ggml.tokens")
        .ok_or_else(|| meta.bad("tokenizer.ggml.tokens is missing or not strings".into()))?;
    let merges = meta.strings("tokenizer.ggml.merges").unwrap_or_default();
    let types = token_types(meta, tokens.len());
    let vocab: Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    let added = added_tokens(&tokens, &types);
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

/// GGUF token types (llama.cpp's): 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused,
/// 6 byte.
const NORMAL: u64 = 1;
const CONTROL: u64 = 3;
const USER_DEFINED: u64 = 4;

fn token_types(meta: &Meta, n: usize) -> Vec<u64> {
    match meta.get("tokenizer.ggml.token_type") {
        Some(GgufValue::Array(items)) => items.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
        _ => vec![NORMAL; n],
    }
}

/// Control and user-defined tokens, matched whole in the raw text before the model splits it;
/// control tokens are special (skipped when decoding).
fn added_tokens(tokens: &[&str], types: &[u64]) -> Vec<Value> {
    tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types.get(*i), Some(&CONTROL) | Some(&USER_DEFINED)))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": types.get(i) == Some(&CONTROL)})
        })
        .collect()
}

/// tokenizer.json for a SentencePiece BPE vocabulary (`tokenizer.ggml.model` = "llama": Llama 2,
/// Gemma): spaces become "▁" (with one prefixed when `add_space_prefix` says so), pieces merge
/// by score, characters outside the vocabulary fall back to their UTF-8 bytes (`<0xNN>`), and
/// `<bos>` opens each text when `add_bos_token` says so.
fn sentencepiece_json(meta: &Meta) -> Result<Value> {
    let tokens = meta
        .strings("tokenizer.ggml.tokens")
        .ok_or_else(|| meta.bad("tokenizer.ggml.tokens is missing or not strings".into()))?;
    let scores: Vec<f64> = match meta.get("tokenizer.ggml.scores") {
        Some(GgufValue::Array(items)) if items.len() == tokens.len() => items
            .iter()
            .map(|v| match v {
                GgufValue::F32(f) => f64::from(*f),
                GgufValue::F64(f) => *f,
                _ => 0.0,
            })
            .collect(),
        _ => {
            return Err(
                meta.bad("tokenizer.ggml.scores is missing or not one score per token".into())
            )
        }
    };
    let types = token_types(meta, tokens.len());
    let merges = sentencepiece_merges(&tokens, &scores, &types);
    let vocab: Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    let flag = |key: &str| meta.get(key) == Some(&GgufValue::Bool(true));
    let token = |key: &str| -> Option<(u64, &str)> {
        let id = meta.get(key).and_then(GgufValue::as_u64)?;
        Some((id, *tokens.get(id as usize)?))
    };
    let unk = token("tokenizer.ggml.unknown_token_id").map(|(_, t)| t);
    let space_prefix = flag("tokenizer.ggml.add_space_prefix");
    let mut normalizers = Vec::new();
    if space_prefix {
        normalizers.push(json!({"type": "Prepend", "prepend": "▁"}));
    }
    normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}));
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let post_processor = match token("tokenizer.ggml.bos_token_id") {
        Some((id, bos)) if flag("tokenizer.ggml.add_bos_token") => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [id], "tokens": [bos]}},
        }),
        _ => Value::Null,
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(&tokens, &types),
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": null,
        "post_processor": post_processor,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    }))
}

/// SentencePiece BPE as merges: every split of a normal piece into two normal pieces, ranked by
/// the merged piece's score (highest first; then by the pieces' ids), which is the order in
/// which SentencePiece joins adjacent pieces.
fn sentencepiece_merges(tokens: &[&str], scores: &[f64], types: &[u64]) -> Vec<[String; 2]> {
    let normal: std::collections::HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| types.get(*i) == Some(&NORMAL))
        .map(|(i, t)| (*t, i))
        .collect();
    let mut merges: Vec<(f64, usize, usize, usize)> = Vec::new();
    for (&piece, &id) in &normal {
        for (split, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(split);
            if let (Some(&l), Some(&r)) = (normal.get(left), normal.get(right)) {
                merges.push((scores[id], id, l, r));
            }
        }
    }
    merges.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    merges
        .into_iter()
        .map(|(_, _, l, r)| [tokens[l].to_string(), tokens[r].to_string()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_the_merged_pieces_scores() {
        let tokens = ["<unk>", "a", "b", "c", "ab", "bc", "abc", "<0x41>"];
        let scores = [0.0, -1.0, -1.0, -1.0, -3.0, -2.0, -4.0, 0.0];
        let types = [2, 1, 1, 1, 1, 1, 1, 6];
        let merges = sentencepiece_merges(&tokens, &scores, &types);
        let pairs: Vec<String> = merges.iter().map(|[l, r]| format!("{l} {r}")).collect();
        // bc (−2) before ab (−3) before the two ways to abc (−4); bytes and unk never merge.
        assert_eq!(pairs, ["b c", "a b", "a bc", "ab c"]);
    }
}
