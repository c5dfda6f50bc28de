//! The real Gemma-3-270M GGUF (Q4_K_M; fetched by scripts/fetch-gemma3.sh, which .ci/run runs):
//! `lethe convert` must give a checkpoint whose greedy continuations and logits match what
//! transformers' own GGUF loader computes from the same file (fixtures/gemma3-reference.json,
//! made by scripts/gemma3-reference.py), whose first generated tokens match candle-transformers'
//! quantized Gemma 3 run on the GGUF itself, and whose SentencePiece tokenizer (built from the
//! GGUF vocabulary) opens texts with <bos> and round-trips them.

mod common;

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_gemma3::ModelWeights;
use lethe::arch::text::TextModel;
use lethe::checkpoint::Checkpoint;
use lethe::text::TextTokenizer;

const NEW_TOKENS: usize = 10;

/// Greedy decoding with candle-transformers; index_pos 0 starts a fresh cache.
fn quantized_greedy(model: &mut ModelWeights, prompt: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut input = prompt.to_vec();
    let mut pos = 0;
    for _ in 0..NEW_TOKENS {
        let x = Tensor::new(input.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = model.forward(&x, pos).unwrap();
        pos += input.len();
        let next: u32 = logits
            .squeeze(0)
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        out.push(next);
        input = vec![next];
    }
    out
}

#[test]
fn converted_gemma3_matches_transformers_gguf_loader_and_continues_text() {
    let Some(gguf) = common::gemma3_gguf() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gemma3");
    let o = common::lethe(&[
        "convert",
        gguf.to_str().unwrap(),
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));

    let ckpt = Checkpoint::open(&out).unwrap();
    assert_eq!(ckpt.config["model_type"], "gemma3_text");
    let model = TextModel::from_checkpoint(&ckpt).unwrap();
    let params = model
        .load_params(&ckpt, &Device::Cpu, candle_core::DType::F32)
        .unwrap();
    let tok = TextTokenizer::open(&out, &ckpt.config).unwrap();

    // The tokenizer: <bos> (id 2) opens a text; pieces and byte fallback decode back to it.
    let text = "The capital of France is Paris. Ünïcode → ✓";
    let ids = tok.encode_with_special(text).unwrap();
    assert_eq!(ids[0], 2, "{ids:?}");
    assert_eq!(tok.decode(&ids).unwrap(), text);
    assert!(
        ids.len() < text.len() / 2,
        "{} tokens for {} bytes: pieces are not merging",
        ids.len(),
        text.len()
    );

    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/gemma3-reference.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut file = std::fs::File::open(&gguf).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut quantized = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    let mut agreed = 0;
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        let ids = tok.encode_with_special(prompt).unwrap();
        let as_ids = |v: &serde_json::Value| -> Vec<u32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        };
        assert_eq!(ids, as_ids(&case["ids"]), "{prompt:?}");
        // No end-of-sequence stop, so both produce exactly NEW_TOKENS tokens.
        let ours = model
            .generate_greedy(&params, &ids, NEW_TOKENS, None)
            .unwrap();
        assert_eq!(
            ours,
            as_ids(&case["continuation"]),
            "{prompt:?}: lethe {:?}",
            tok.decode(&ours).unwrap()
        );
        // Logits of the prompt's last position at transformers' five most likely tokens.
        let x = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mask = x.ones_like().unwrap();
        let logits: Vec<f32> = model
            .run(&params, &x, &mask, 1.0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .get(ids.len() - 1)
            .unwrap()
            .to_vec1()
            .unwrap();
        for (id, want) in as_ids(&case["top5_ids"])
            .iter()
            .zip(case["top5_logits"].as_array().unwrap())
        {
            let got = logits[*id as usize];
            let want = want.as_f64().unwrap() as f32;
            assert!(
                (got - want).abs() <= 1e-3,
                "{prompt:?}: logit of {id}: lethe {got}, transformers {want}"
            );
        }
        // candle-transformers multiplies with quantized activations (Q8), lethe and transformers
        // in f32 from the dequantized weights: their paths part after the first tokens.
        let reference = quantized_greedy(&mut quantized, &ids);
        eprintln!(
            "{prompt:?}: lethe {:?} / candle-transformers (quantized) {:?}",
            tok.decode(&ours).unwrap(),
            tok.decode(&reference).unwrap()
        );
        let common_prefix = ours
            .iter()
            .zip(&reference)
            .take_while(|(a, b)| a == b)
            .count();
        assert!(
            common_prefix >= 1,
            "{prompt:?}: the first tokens differ from candle-transformers'"
        );
        agreed += common_prefix;
    }
    eprintln!(
        "{agreed} of {} tokens agree with candle-transformers' quantized model",
        cases.len() * NEW_TOKENS
    );
}
