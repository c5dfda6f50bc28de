//! The real SmolLM2-135M-Instruct GGUF (fetched by scripts/fetch-smollm2.sh, which .ci/run
//! runs): `lethe convert` must give a checkpoint whose greedy continuations match
//! candle-transformers' quantized Llama run on the GGUF file itself, and whose tokenizer and
//! chat template make it answer.

mod common;

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use lethe::arch::text::TextModel;
use lethe::checkpoint::Checkpoint;
use lethe::text::tokenizer::ChatMessage;
use lethe::text::TextTokenizer;
use std::path::{Path, PathBuf};

const NEW_TOKENS: usize = 10;

fn gguf_path() -> Option<PathBuf> {
    common::smollm2_gguf()
}

fn load_quantized(gguf: &Path) -> ModelWeights {
    let mut file = std::fs::File::open(gguf).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap()
}

/// Greedy decoding with candle-transformers; each prompt starts at position 0 with a fresh
/// cache (index_pos 0 resets it).
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
fn converted_smollm2_agrees_with_the_quantized_reference_and_answers() {
    let Some(gguf) = gguf_path() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2");
    let o = common::lethe(&[
        "convert",
        gguf.to_str().unwrap(),
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));

    let ckpt = Checkpoint::open(&out).unwrap();
    let model = TextModel::from_checkpoint(&ckpt).unwrap();
    let params = model
        .load_params(&ckpt, &Device::Cpu, candle_core::DType::F32)
        .unwrap();
    let tok = TextTokenizer::open(&out, &ckpt.config).unwrap();

    let mut reference_model = load_quantized(&gguf);
    let mut agreed = 0;
    let prompts = [
        "The capital of France is",
        "def fibonacci(n):",
        "Once upon a time",
    ];
    for prompt in prompts {
        let ids = tok.encode(prompt).unwrap();
        // No end-of-sequence stop, so both produce exactly NEW_TOKENS tokens.
        let ours = model
            .generate_greedy(&params, &ids, NEW_TOKENS, None)
            .unwrap();
        let reference = quantized_greedy(&mut reference_model, &ids);
        eprintln!(
            "{prompt:?}: lethe {:?} / candle-transformers {:?}",
            tok.decode(&ours).unwrap(),
            tok.decode(&reference).unwrap()
        );
        // The reference multiplies with quantized activations, lethe in f32 from dequantized
        // weights: the first tokens must agree; a near-tie may later resolve differently.
        let common_prefix = ours
            .iter()
            .zip(&reference)
            .take_while(|(a, b)| a == b)
            .count();
        assert!(
            common_prefix >= 4,
            "{prompt:?}: only {common_prefix} tokens agree"
        );
        agreed += common_prefix;
    }
    eprintln!("{agreed} of {} tokens agree", prompts.len() * NEW_TOKENS);

    let ids = tok.encode("The capital of France is").unwrap();
    let text = tok
        .decode(&model.generate_greedy(&params, &ids, 4, tok.eos_id).unwrap())
        .unwrap();
    assert!(text.contains("Paris"), "continuation {text:?}");

    assert!(tok.has_chat_template());
    let chat = tok
        .render_chat(
            &[ChatMessage {
                role: "user".into(),
                content: "What is the capital of France?".into(),
            }],
            true,
        )
        .unwrap();
    assert!(chat.ends_with("<|im_start|>assistant\n"), "{chat:?}");
    let ids = tok.encode(&chat).unwrap();
    let answer = tok
        .decode(
            &model
                .generate_greedy(&params, &ids, 12, tok.eos_id)
                .unwrap(),
        )
        .unwrap();
    assert!(answer.contains("Paris"), "chat answer {answer:?}");
}
