//! Text unlearning end to end on a tiny random Llama with a word-level tokenizer
//! (fixtures/text/tiny-chat): LoRA trains adapters only and exports a PEFT adapter that loads
//! back; teaching then unlearning facts moves the forget and retain answers as it should; bad
//! inputs are refused with a clear message and nothing written.

mod common;

use candle_core::{DType, Device, Tensor};
use lethe::arch::text::TextModel;
use lethe::checkpoint::Checkpoint;
use lethe::unlearn::lora;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/text/tiny-chat")
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tensors(file: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(file, &Device::Cpu).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// `lethe unlearn-text MODEL --forget-set F --retain-set R EXTRA…`
fn unlearn_text(model: &str, forget: &str, retain: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "unlearn-text",
        model,
        "--forget-set",
        forget,
        "--retain-set",
        retain,
    ];
    args.extend_from_slice(extra);
    common::lethe(&args)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn lora_trains_adapters_only_and_its_peft_adapter_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let t = tiny();
    let o = unlearn_text(
        arg(&t),
        arg(&t.join("forget.jsonl")),
        arg(&t.join("retain.jsonl")),
        &[
            "--lora-rank",
            "4",
            "--lora-alpha",
            "8",
            "--lora-targets",
            "q_proj,v_proj",
            "--steps",
            "5",
            "--lr",
            "1e-2",
            "--out",
            arg(&out),
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));

    // Only the adapted layers' weights change in the merged checkpoint.
    let before = tensors(&t.join("model.safetensors"));
    let after = tensors(&out.join("model.safetensors"));
    assert_eq!(before.len(), after.len());
    let mut changed = 0;
    for (name, b) in &before {
        let adapted = name.ends_with("q_proj.weight") || name.ends_with("v_proj.weight");
        let same = bits(b) == bits(&after[name]);
        assert_eq!(same, !adapted, "{name}: changed = {}", !same);
        changed += usize::from(!same);
    }
    assert_eq!(changed, 4, "q_proj and v_proj of both layers");

    // PEFT's layout.
    let adapter = out.join("adapter");
    let config = json(&adapter.join("adapter_config.json"));
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(config["r"], 4);
    // As PEFT writes them: an integral α as an integer, the base as an absolute path.
    assert!(config["lora_alpha"].is_u64(), "{config}");
    assert_eq!(config["lora_alpha"], 8);
    let base = std::path::absolute(&t).unwrap();
    assert_eq!(
        config["base_model_name_or_path"],
        base.display().to_string()
    );
    assert!(config["revision"].is_null(), "{config}");
    let bytes = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let format = header.metadata().as_ref().and_then(|m| m.get("format"));
    assert_eq!(format.map(String::as_str), Some("pt"));
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    let weights = tensors(&adapter.join("adapter_model.safetensors"));
    assert_eq!(weights.len(), 8);
    let a = &weights["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"];
    let b = &weights["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"];
    assert_eq!(a.dims(), &[4, 32]);
    assert_eq!(b.dims(), &[16, 4]);

    // Loading the adapter onto the base and merging gives the exported merged weights.
    let ckpt = Checkpoint::open(&t).unwrap();
    let model = TextModel::from_checkpoint(&ckpt).unwrap();
    let mut params = model
        .load_params(&ckpt, &Device::Cpu, candle_core::DType::F32)
        .unwrap();
    let (cfg, set) = lora::load_adapter(&adapter, &mut params, &model).unwrap();
    assert_eq!((cfg.rank, cfg.alpha), (4, 8.0));
    let merged = lora::merged_weights(&params, &model, &set, cfg.scale(), &|n| {
        Ok(params.get(n)?.clone())
    })
    .unwrap();
    assert_eq!(merged.len(), 4);
    for (name, w) in &merged {
        let d: f32 = (w - &after[name])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 1e-6, "{name}: {d}");
    }

    // A run can start from the exported adapter.
    let again = dir.path().join("again");
    let o = unlearn_text(
        arg(&t),
        arg(&t.join("forget.jsonl")),
        arg(&t.join("retain.jsonl")),
        &[
            "--adapter",
            arg(&adapter),
            "--steps",
            "2",
            "--out",
            arg(&again),
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(json(&again.join("adapter/adapter_config.json"))["r"], 4);

    // An output used as the next input: its old adapter and ONNX are not carried over.
    let next = dir.path().join("next");
    let o = unlearn_text(
        arg(&out),
        arg(&t.join("forget.jsonl")),
        arg(&t.join("retain.jsonl")),
        &[
            "--lora-rank",
            "2",
            "--steps",
            "1",
            "--out",
            arg(&next),
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(json(&next.join("adapter/adapter_config.json"))["r"], 2);
}

#[test]
fn taught_facts_are_forgotten_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let t = tiny();
    let taught = dir.path().join("taught");
    let o = common::lethe(&[
        "train-text",
        arg(&t),
        "--data",
        arg(&t.join("all.jsonl")),
        "--lora-rank",
        "0",
        "--train",
        "*",
        "--lr",
        "1e-2",
        "--epochs",
        "150",
        "--batch-size",
        "20",
        "--out",
        arg(&taught),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let trained = json(&taught.join("report.json"));
    assert!(
        trained["answer_nll_after"].as_f64().unwrap() < 0.1,
        "{trained}"
    );

    let out = dir.path().join("unlearned");
    let o = unlearn_text(
        arg(&taught),
        arg(&t.join("forget.jsonl")),
        arg(&t.join("retain.jsonl")),
        &[
            "--lora-rank",
            "0",
            "--train",
            "*",
            "--lr",
            "3e-3",
            "--epochs",
            "10",
            "--out",
            arg(&out),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = |when: &str, set: &str, what: &str| r["metrics"][when][set][what].as_f64().unwrap();
    assert!(m("before", "forget", "rouge_l") > 0.9);
    // Forgotten: the answers became unlikely and are no longer reproduced.
    assert!(
        m("after", "forget", "nll") > m("before", "forget", "nll") + 2.0,
        "{r}"
    );
    assert!(m("after", "forget", "rouge_l") < 0.8, "{r}");
    // Kept: the retained answers stay likely and are still given.
    assert!(m("after", "retain", "nll") < 0.5, "{r}");
    assert!(m("after", "retain", "rouge_l") > 0.8, "{r}");
    assert_eq!(r["verification"]["passed"], true, "{r}");
    assert!(out.join("model.onnx").is_file());
    assert_eq!(
        json(&out.join("report.json"))["schema"],
        "lethe.unlearn.report/2"
    );

    // lethe diff shows both models' greedy answers side by side.
    let html = dir.path().join("diff.html");
    let o = common::lethe(&[
        "diff",
        arg(&taught),
        arg(&out),
        "--prompts",
        arg(&t.join("forget.jsonl")),
        "--html",
        arg(&html),
        "--json",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let d: Value = serde_json::from_slice(&o.stdout).unwrap();
    let g = &d["text_outputs"]["generations"];
    assert_eq!(g.as_array().unwrap().len(), 2);
    assert_eq!(g[0]["prompt"], "where was arlen born ?");
    assert_eq!(g[0]["a"], "arlen was born in vellmora .");
    assert_ne!(g[0]["b"], g[0]["a"]);
    assert!(d["text_outputs"]["mean_kl"].as_f64().unwrap() > 0.0);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<td>arlen was born in vellmora .</td>"));
}

/// Runs unlearn-text with `forget` as the forget set on `model`; asserts it fails with
/// `needle` in its message and writes nothing.
fn refused(model: &Path, forget: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let forget_path = dir.path().join("forget.jsonl");
    std::fs::write(&forget_path, forget).unwrap();
    let out = dir.path().join("out");
    let o = unlearn_text(
        arg(model),
        arg(&forget_path),
        arg(&tiny().join("retain.jsonl")),
        &["--steps", "1", "--out", arg(&out), "--quiet"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    let err = common::stderr(&o);
    assert!(err.contains(needle), "expected {needle:?} in {err}");
    assert!(!out.exists(), "an output was written");
}

const FACT: &str =
    "{\"question\": \"where was arlen born ?\", \"answer\": \"arlen was born in vellmora .\"}\n";

#[test]
fn bad_inputs_are_refused_and_nothing_is_written() {
    let t = tiny();
    refused(
        &t,
        "{\"question\": \"where was arlen born ?\", \"answer\": \"\"}\n",
        "line 1: \"answer\" is empty",
    );
    refused(&t, "", "no records");
    refused(
        &t,
        "{\"question\": \"where ?\"}\n",
        "a question without an answer",
    );
    let long = format!(
        "{{\"question\": \"{}\", \"answer\": \"arlen .\"}}\n",
        "where ".repeat(80)
    );
    refused(&t, &long, "max_position_embeddings (64)");

    let dir = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ] {
            std::fs::copy(t.join(f), d.join(f)).unwrap();
        }
        d
    };
    let no_tokenizer = copy("no-tokenizer");
    std::fs::remove_file(no_tokenizer.join("tokenizer.json")).unwrap();
    refused(&no_tokenizer, FACT, "no tokenizer.json");

    let wrong_shape = copy("wrong-shape");
    let mut config = json(&wrong_shape.join("config.json"));
    config["intermediate_size"] = 64.into();
    std::fs::write(wrong_shape.join("config.json"), config.to_string()).unwrap();
    refused(&wrong_shape, FACT, "config.json implies shape [64, 32]");
}

/// GGUF metadata value encodings: (type id, bytes).
fn string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}
fn u32v(x: u32) -> (u32, Vec<u8>) {
    (4, x.to_le_bytes().to_vec())
}
fn f32v(x: f32) -> (u32, Vec<u8>) {
    (6, x.to_le_bytes().to_vec())
}
fn strv(s: &str) -> (u32, Vec<u8>) {
    (8, string(s))
}
fn str_array(items: &[String]) -> (u32, Vec<u8>) {
    let mut v = 8u32.to_le_bytes().to_vec();
    v.extend((items.len() as u64).to_le_bytes());
    for s in items {
        v.extend(string(s));
    }
    (9, v)
}

/// llama.cpp's reordering of Q/K rows, applied to a Hugging Face [heads·D, in] weight.
fn permute_like_llama_cpp(values: &[f32], heads: usize, row_len: usize) -> Vec<f32> {
    let rows = values.len() / row_len;
    let (d, half) = (rows / heads, rows / heads / 2);
    let mut out = vec![0f32; values.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let hf = h * d + j * half + i;
                let gguf = h * d + 2 * i + j;
                out[gguf * row_len..(gguf + 1) * row_len]
                    .copy_from_slice(&values[hf * row_len..(hf + 1) * row_len]);
            }
        }
    }
    out
}

#[test]
fn gguf_conversion_restores_the_hugging_face_weights_and_builds_a_tokenizer() {
    let t = tiny();
    let original = tensors(&t.join("model.safetensors"));
    let gguf_name = |hf: &str| -> String {
        let fixed = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("model.norm.weight", "output_norm.weight"),
        ];
        if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
            return g.to_string();
        }
        let rest = hf.strip_prefix("model.layers.").unwrap();
        let (layer, part) = rest.split_once('.').unwrap();
        let module = match part.trim_end_matches(".weight") {
            "input_layernorm" => "attn_norm",
            "post_attention_layernorm" => "ffn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            other => panic!("{other}"),
        };
        format!("blk.{layer}.{module}.weight")
    };
    let mut names: Vec<&String> = original.keys().collect();
    names.sort();
    let mut gguf_tensors = Vec::new();
    for name in names {
        let t = &original[name];
        let dims: Vec<usize> = t.dims().to_vec();
        let mut values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let row_len: usize = dims.iter().skip(1).product();
        if name.ends_with("q_proj.weight") {
            values = permute_like_llama_cpp(&values, 2, row_len);
        } else if name.ends_with("k_proj.weight") {
            values = permute_like_llama_cpp(&values, 1, row_len);
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let gdims: Vec<u64> = dims.iter().rev().map(|&d| d as u64).collect();
        gguf_tensors.push((gguf_name(name), gdims, 0u32, bytes));
    }
    let mut tokens: Vec<String> = vec!["<|end|>".into(), "a".into(), "b".into(), "ab".into()];
    tokens.extend((4..96).map(|i| format!("t{i}")));
    let mut types = 5u32.to_le_bytes().to_vec();
    types.extend(96u64.to_le_bytes());
    for i in 0..96i32 {
        types.extend(if i == 0 { 3i32 } else { 1 }.to_le_bytes());
    }
    let meta: Vec<(&str, (u32, Vec<u8>))> = vec![
        ("general.architecture", strv("llama")),
        ("llama.block_count", u32v(2)),
        ("llama.context_length", u32v(64)),
        ("llama.embedding_length", u32v(32)),
        ("llama.feed_forward_length", u32v(48)),
        ("llama.attention.head_count", u32v(2)),
        ("llama.attention.head_count_kv", u32v(1)),
        ("llama.rope.freq_base", f32v(100000.0)),
        ("llama.attention.layer_norm_rms_epsilon", f32v(1e-6)),
        ("llama.rope.dimension_count", u32v(16)),
        ("tokenizer.ggml.model", strv("gpt2")),
        ("tokenizer.ggml.tokens", str_array(&tokens)),
        ("tokenizer.ggml.merges", str_array(&["a b".to_string()])),
        ("tokenizer.ggml.token_type", (9, types)),
        ("tokenizer.ggml.eos_token_id", u32v(0)),
        (
            "tokenizer.chat_template",
            strv("{{ messages[0]['content'] }}"),
        ),
    ];
    let meta: Vec<(&str, u32, Vec<u8>)> = meta.into_iter().map(|(k, (t, v))| (k, t, v)).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.gguf");
    std::fs::write(&file, common::gguf(&meta, &gguf_tensors)).unwrap();
    let out = dir.path().join("converted");
    let o = common::lethe(&["convert", arg(&file), arg(&out), "--json"]);
    assert!(o.status.success(), "{}", common::stderr(&o));

    // Every weight comes back bit for bit under its Hugging Face name.
    let converted = tensors(&out.join("model.safetensors"));
    assert_eq!(converted.len(), original.len());
    for (name, t) in &original {
        assert_eq!(bits(t), bits(&converted[name]), "{name}");
    }
    let config = json(&out.join("config.json"));
    assert_eq!(config["num_key_value_heads"], 1);
    assert_eq!(config["rms_norm_eps"], 1e-6);
    assert_eq!(config["tie_word_embeddings"], true);
    let ckpt = Checkpoint::open(&out).unwrap();
    TextModel::from_checkpoint(&ckpt).unwrap();
    let tok = lethe::text::TextTokenizer::open(&out, &ckpt.config).unwrap();
    assert_eq!(tok.encode("ab").unwrap(), vec![3]);
    assert_eq!(tok.eos_id, Some(0));
    assert!(tok.has_chat_template());

    // An unsupported quantization type is named, and nothing is written.
    // (IQ4_XS, type 23: 136-byte blocks of 256 values.)
    let iq4_xs = vec![(
        "token_embd.weight".to_string(),
        vec![256u64, 96],
        23u32,
        vec![0u8; 96 * 136],
    )];
    let bad = dir.path().join("iq4_xs.gguf");
    std::fs::write(&bad, common::gguf(&meta, &iq4_xs)).unwrap();
    let out = dir.path().join("not-written");
    let o = common::lethe(&["convert", arg(&bad), arg(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("IQ4_XS (23)"),
        "{}",
        common::stderr(&o)
    );
    assert!(!out.exists());
}

/// A SentencePiece vocabulary (`tokenizer.ggml.model` "llama") becomes a tokenizer.json that
/// merges pieces by score, prefixes a space when `add_space_prefix` says so, falls back to UTF-8
/// bytes, opens texts with <s> and decodes back to the text.
#[test]
fn sentencepiece_gguf_vocabularies_become_a_working_tokenizer() {
    let pieces: [(&str, f32, i32); 12] = [
        ("<unk>", 0.0, 2),
        ("<s>", 0.0, 3),
        ("</s>", 0.0, 3),
        ("▁", -5.0, 1),
        ("a", -6.0, 1),
        ("b", -7.0, 1),
        ("▁a", -2.0, 1),
        ("▁b", -3.0, 1),
        ("ab", -4.0, 1),
        ("▁ab", -1.0, 1),
        ("<0xC3>", 0.0, 6),
        ("<0xA9>", 0.0, 6),
    ];
    let tokens: Vec<String> = pieces.iter().map(|p| p.0.to_string()).collect();
    let mut scores = 6u32.to_le_bytes().to_vec();
    scores.extend((pieces.len() as u64).to_le_bytes());
    let mut types = 5u32.to_le_bytes().to_vec();
    types.extend((pieces.len() as u64).to_le_bytes());
    for (_, score, kind) in pieces {
        scores.extend(score.to_le_bytes());
        types.extend(kind.to_le_bytes());
    }
    let yes = (7u32, vec![1u8]);
    let meta: Vec<(&str, (u32, Vec<u8>))> = vec![
        ("general.architecture", strv("llama")),
        ("llama.block_count", u32v(0)),
        ("llama.context_length", u32v(16)),
        ("llama.embedding_length", u32v(4)),
        ("llama.feed_forward_length", u32v(8)),
        ("llama.attention.head_count", u32v(1)),
        ("tokenizer.ggml.model", strv("llama")),
        ("tokenizer.ggml.tokens", str_array(&tokens)),
        ("tokenizer.ggml.scores", (9, scores)),
        ("tokenizer.ggml.token_type", (9, types)),
        ("tokenizer.ggml.unknown_token_id", u32v(0)),
        ("tokenizer.ggml.bos_token_id", u32v(1)),
        ("tokenizer.ggml.eos_token_id", u32v(2)),
        ("tokenizer.ggml.add_bos_token", yes.clone()),
        ("tokenizer.ggml.add_space_prefix", yes),
    ];
    let meta: Vec<(&str, u32, Vec<u8>)> = meta.into_iter().map(|(k, (t, v))| (k, t, v)).collect();
    let embedding: Vec<u8> = (0..pieces.len() * 4)
        .flat_map(|i| (i as f32).to_le_bytes())
        .collect();
    let norm: Vec<u8> = [1f32; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let gguf_tensors = vec![
        (
            "token_embd.weight".to_string(),
            vec![4u64, pieces.len() as u64],
            0u32,
            embedding,
        ),
        ("output_norm.weight".to_string(), vec![4u64], 0u32, norm),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spm.gguf");
    std::fs::write(&file, common::gguf(&meta, &gguf_tensors)).unwrap();
    let out = dir.path().join("converted");
    let o = common::lethe(&["convert", arg(&file), arg(&out), "--json"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let tok = lethe::text::TextTokenizer::open(&out, &json(&out.join("config.json"))).unwrap();
    // "▁ab▁b▁é": ▁a (score −2) joins first, then ▁ab (−1), then ▁b (−3); é falls back to bytes.
    let ids = tok.encode_with_special("ab b é").unwrap();
    assert_eq!(ids, [1, 9, 7, 3, 10, 11]);
    assert_eq!(tok.decode(&ids).unwrap(), "ab b é");
    assert_eq!(
        tok.encode("ab").unwrap(),
        [9],
        "no <s> without special tokens"
    );
}

/// A Qwen3 GGUF (llama.cpp's names, no Q/K permutation, the head dimension as the key length)
/// converts back to the Hugging Face checkpoint it came from: every weight bit for bit, the
/// per-head query/key norms included, and the converted model gives transformers' logits.
#[test]
fn qwen3_gguf_converts_back_to_its_hugging_face_checkpoint() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/text/qwen3");
    let original = tensors(&source.join("model.safetensors"));
    let gguf_name = |hf: &str| -> String {
        let fixed = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("model.norm.weight", "output_norm.weight"),
            ("lm_head.weight", "output.weight"),
        ];
        if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
            return g.to_string();
        }
        let rest = hf.strip_prefix("model.layers.").unwrap();
        let (layer, part) = rest.split_once('.').unwrap();
        let module = match part.trim_end_matches(".weight") {
            "input_layernorm" => "attn_norm",
            "post_attention_layernorm" => "ffn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "self_attn.q_norm" => "attn_q_norm",
            "self_attn.k_norm" => "attn_k_norm",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            other => panic!("{other}"),
        };
        format!("blk.{layer}.{module}.weight")
    };
    let mut names: Vec<&String> = original.keys().collect();
    names.sort();
    let gguf_tensors: Vec<_> = names
        .into_iter()
        .map(|name| {
            let t = &original[name];
            let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let dims: Vec<u64> = t.dims().iter().rev().map(|&d| d as u64).collect();
            (gguf_name(name), dims, 0u32, bytes)
        })
        .collect();
    let meta: Vec<(&str, (u32, Vec<u8>))> = vec![
        ("general.architecture", strv("qwen3")),
        ("qwen3.block_count", u32v(2)),
        ("qwen3.context_length", u32v(64)),
        ("qwen3.embedding_length", u32v(32)),
        ("qwen3.feed_forward_length", u32v(48)),
        ("qwen3.attention.head_count", u32v(4)),
        ("qwen3.attention.head_count_kv", u32v(2)),
        ("qwen3.attention.key_length", u32v(16)),
        ("qwen3.attention.value_length", u32v(16)),
        ("qwen3.rope.freq_base", f32v(1000000.0)),
        ("qwen3.attention.layer_norm_rms_epsilon", f32v(1e-6)),
    ];
    let meta: Vec<(&str, u32, Vec<u8>)> = meta.into_iter().map(|(k, (t, v))| (k, t, v)).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("qwen3.gguf");
    std::fs::write(&file, common::gguf(&meta, &gguf_tensors)).unwrap();
    let out = dir.path().join("converted");
    let o = common::lethe(&["convert", arg(&file), arg(&out), "--json"]);
    assert!(o.status.success(), "{}", common::stderr(&o));

    let converted = tensors(&out.join("model.safetensors"));
    assert_eq!(converted.len(), original.len());
    for (name, t) in &original {
        assert_eq!(bits(t), bits(&converted[name]), "{name}");
    }
    let config = json(&out.join("config.json"));
    assert_eq!(config["model_type"], "qwen3");
    assert_eq!(config["architectures"][0], "Qwen3ForCausalLM");
    assert_eq!(config["head_dim"], 16);
    assert_eq!(config["tie_word_embeddings"], false);

    let ckpt = Checkpoint::open(&out).unwrap();
    let model = TextModel::from_checkpoint(&ckpt).unwrap();
    let params = model.load_params(&ckpt, &Device::Cpu, DType::F32).unwrap();
    let expected = tensors(&source.join("expected.safetensors"));
    let (ids, mask) = (&expected["input_ids"], &expected["attention_mask"]);
    let y = model.run(&params, ids, mask, 1.0).unwrap();
    // Compared on the tokens the mask keeps (padding rows are free to differ).
    let keep = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    let diff = ((y - &expected["output"])
        .unwrap()
        .abs()
        .unwrap()
        .broadcast_mul(&keep))
    .unwrap()
    .max_all()
    .unwrap()
    .to_scalar::<f32>()
    .unwrap();
    assert!(diff < 1e-4, "max |lethe − transformers| = {diff:e}");
}

/// `--chat-template-kwargs` reaches the chat template (here a prompt that the template cuts short
/// unless `short` is false) and the report records it.
#[test]
fn chat_template_kwargs_reach_the_template_and_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(tiny().join(f), model.join(f)).unwrap();
    }
    std::fs::write(
        model.join("chat_template.jinja"),
        "{% for m in messages %}<|{{ m.role }}|> {% if short is defined and not short %}{{ m.content }} {% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}",
    )
    .unwrap();
    let mut forget_answers = Vec::new();
    for kwargs in [None, Some(r#"{"short": false}"#)] {
        let out = dir.path().join(format!("out-{}", kwargs.is_some()));
        let mut extra = vec!["--steps", "1", "--no-verify", "--json", "--out", arg(&out)];
        if let Some(k) = kwargs {
            extra.extend(["--chat-template-kwargs", k]);
        }
        let o = unlearn_text(
            arg(&model),
            arg(&tiny().join("forget.jsonl")),
            arg(&tiny().join("retain.jsonl")),
            &extra,
        );
        assert!(o.status.success(), "{}", common::stderr(&o));
        let r: Value = serde_json::from_slice(&o.stdout).unwrap();
        match kwargs {
            None => assert!(r["data"].get("chat_template_kwargs").is_none(), "{r}"),
            Some(_) => assert_eq!(
                r["data"]["chat_template_kwargs"],
                serde_json::json!({"short": false})
            ),
        }
        forget_answers.push(r["metrics"]["before"]["forget"]["probability"].clone());
    }
    // With the question in the prompt, the untouched model scores the answers differently.
    assert_ne!(forget_answers[0], forget_answers[1], "{forget_answers:?}");
}

#[test]
fn forget_data_beside_the_model_is_never_copied_into_the_output() {
    let dir = tempfile::tempdir().unwrap();
    // The forget set named where it lies (inside the model directory), and as a copy kept
    // elsewhere: either way the model directory's files that hold forget facts stay behind.
    let copy = dir.path().join("facts-to-forget.jsonl");
    std::fs::copy(tiny().join("forget.jsonl"), &copy).unwrap();
    for (i, forget) in [tiny().join("forget.jsonl"), copy].iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let o = unlearn_text(
            arg(&tiny()),
            arg(forget),
            arg(&tiny().join("retain.jsonl")),
            &["--steps", "1", "--out", arg(&out), "--no-verify", "--json"],
        );
        assert!(o.status.success(), "{}", common::stderr(&o));
        assert!(
            !out.join("forget.jsonl").exists(),
            "the forget set was shipped"
        );
        assert!(
            !out.join("all.jsonl").exists(),
            "all.jsonl holds the forget facts too and was shipped"
        );
        assert!(out.join("retain.jsonl").is_file(), "other files are kept");
        assert!(out.join("tokenizer.json").is_file());
        let r: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            r["outputs"]["withheld"],
            serde_json::json!(["all.jsonl", "forget.jsonl"]),
            "{r}"
        );
        assert_eq!(
            json(&out.join("report.json"))["outputs"]["withheld"],
            r["outputs"]["withheld"]
        );
    }
}

/// `--dtype bf16` holds the frozen weights in bf16 (mixed precision) and still writes what an f32
/// run writes, in kind: weights that did not train keep their exact bytes, trained ones start
/// from and merge into the checkpoint's f32 values, and the ONNX model (from the same weights)
/// passes ONNX Runtime's check. Its metrics stay close to the f32 run's.
#[test]
fn bf16_holds_frozen_weights_in_bf16_and_the_outputs_keep_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let t = tiny();
    let run = |dtype: &str, case: usize, extra: &[&str]| {
        let out = dir.path().join(format!("{dtype}-{case}"));
        let mut args = vec!["--steps", "5", "--lr", "1e-2", "--dtype", dtype];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", arg(&out), "--json"]);
        let o = unlearn_text(
            arg(&t),
            arg(&t.join("forget.jsonl")),
            arg(&t.join("retain.jsonl")),
            &args,
        );
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{dtype} {extra:?}: {said}");
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        (out, report)
    };
    let before = tensors(&t.join("model.safetensors"));
    let cases = [
        &["--lora-rank", "4", "--lora-targets", "q_proj,v_proj"][..],
        &["--lora-rank", "0", "--train", "*.mlp.down_proj.weight"][..],
    ];
    for (case, extra) in cases.into_iter().enumerate() {
        let (out32, r32) = run("f32", case, extra);
        let (out16, r16) = run("bf16", case, extra);
        assert_eq!(r16["config"]["dtype"], "bf16", "{r16}");
        assert_eq!(r32["config"]["dtype"], "f32", "{r32}");
        assert_eq!(r16["verification"]["passed"], true, "{extra:?}: {r16}");
        let (a32, a16) = (
            tensors(&out32.join("model.safetensors")),
            tensors(&out16.join("model.safetensors")),
        );
        for (name, b) in &before {
            let trained = a32[name].dtype() == DType::F32 && bits(b) != bits(&a32[name]);
            assert_eq!(a16[name].dtype(), b.dtype(), "{name}");
            if !trained {
                assert_eq!(
                    bits(b),
                    bits(&a16[name]),
                    "{extra:?}: {name} changed in bf16"
                );
            }
        }
        let p = |r: &Value, set: &str| r["metrics"]["after"][set]["probability"].as_f64().unwrap();
        for set in ["forget", "retain"] {
            let (x, y) = (p(&r32, set), p(&r16, set));
            assert!(
                (x - y).abs() <= 0.05 * x.max(y),
                "{extra:?} {set}: f32 {x}, bf16 {y}"
            );
        }
    }
}

/// An adapter whose `rank_pattern` and `alpha_pattern` give some modules their own rank and α
/// (as PEFT writes them) loads with each module scaled by its own α/r, and lethe writes it back
/// so that PEFT reads the same products.
#[test]
fn rank_and_alpha_patterns_scale_each_module_as_peft_does() {
    let dir = tempfile::tempdir().unwrap();
    let t = tiny();
    let out = dir.path().join("out");
    let o = unlearn_text(
        arg(&t),
        arg(&t.join("forget.jsonl")),
        arg(&t.join("retain.jsonl")),
        &[
            "--lora-rank",
            "4",
            "--lora-alpha",
            "8",
            "--lora-targets",
            "q_proj,v_proj",
            "--steps",
            "3",
            "--lr",
            "1e-2",
            "--out",
            arg(&out),
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    // Layer 0's q_proj cut to rank 2 (rank_pattern), layer 1's v_proj given α = 24 (scale 6
    // instead of 2); everything else keeps r = 4, α = 8.
    let q0 = "model.layers.0.self_attn.q_proj";
    let v1 = "model.layers.1.self_attn.v_proj";
    let mut w = tensors(&out.join("adapter/adapter_model.safetensors"));
    let key = |m: &str, ab: &str| format!("base_model.model.{m}.lora_{ab}.weight");
    let a = w[&key(q0, "A")].narrow(0, 0, 2).unwrap();
    let b = w[&key(q0, "B")].narrow(1, 0, 2).unwrap();
    w.insert(key(q0, "A"), a);
    w.insert(key(q0, "B"), b);
    let patterned = dir.path().join("patterned");
    std::fs::create_dir(&patterned).unwrap();
    let mut config = json(&out.join("adapter/adapter_config.json"));
    config["rank_pattern"] = serde_json::json!({ "layers.0.self_attn.q_proj": 2 });
    config["alpha_pattern"] = serde_json::json!({ v1: 24 });
    std::fs::write(patterned.join("adapter_config.json"), config.to_string()).unwrap();
    candle_core::safetensors::save(&w, patterned.join("adapter_model.safetensors")).unwrap();

    let ckpt = Checkpoint::open(&t).unwrap();
    let model = TextModel::from_checkpoint(&ckpt).unwrap();
    let mut params = model.load_params(&ckpt, &Device::Cpu, DType::F32).unwrap();
    let base = params.clone();
    let (cfg, set) = lora::load_adapter(&patterned, &mut params, &model).unwrap();
    let merged = lora::merged_weights(&params, &model, &set, cfg.scale(), &|n| {
        Ok(base.get(n)?.clone())
    })
    .unwrap();
    // Each module: W + (α_m / r_m)·B·A, computed here from the file.
    for (module, scale) in [
        (q0, 8.0 / 2.0),
        (v1, 24.0 / 4.0),
        ("model.layers.0.self_attn.v_proj", 2.0),
    ] {
        let delta = (w[&key(module, "B")].matmul(&w[&key(module, "A")]).unwrap() * scale).unwrap();
        let want = (base.get(&format!("{module}.weight")).unwrap() + delta).unwrap();
        let got = &merged[&format!("{module}.weight")];
        let d: f32 = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 1e-6, "{module}: {d}");
    }
    assert_eq!(cfg.rank_pattern.get(q0), Some(&2));

    // Written back: the rank pattern, and α for it such that PEFT's α_m/r_m is lethe's α/r.
    let again = dir.path().join("again");
    let o = unlearn_text(
        arg(&t),
        arg(&t.join("forget.jsonl")),
        arg(&t.join("retain.jsonl")),
        &[
            "--adapter",
            arg(&patterned),
            "--steps",
            "1",
            "--out",
            arg(&again),
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let written = json(&again.join("adapter/adapter_config.json"));
    assert_eq!(written["rank_pattern"][q0], 2, "{written}");
    assert_eq!(written["alpha_pattern"][q0], 4.0, "{written}");

    // A regular expression as a key is refused by name.
    config["rank_pattern"] = serde_json::json!({ "layers\\.[0-9]+\\.q_proj": 2 });
    std::fs::write(patterned.join("adapter_config.json"), config.to_string()).unwrap();
    let e = lora::load_adapter(
        &patterned,
        &mut model.load_params(&ckpt, &Device::Cpu, DType::F32).unwrap(),
        &model,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("regular expression"), "{e}");
}
