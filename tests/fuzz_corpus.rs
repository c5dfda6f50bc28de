//! Replays the fuzz corpus (fuzz/corpus/<target>/*) through the parsers of untrusted input, so
//! that every input the fuzzer kept — including past crashes, once fixed — is checked on each
//! test run. Also checks that the seeds parse, so the corpus keeps meaning something.

use std::path::Path;

fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for f in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        entry(&bytes);
        n += 1;
    }
    n
}

#[test]
fn every_corpus_input_is_handled_without_a_panic() {
    use lethe::untrusted::*;
    assert!(replay("safetensors_file", safetensors_file) > 0);
    assert!(replay("index_json", index_json) > 0);
    assert!(replay("config_json", config_json) > 0);
    assert!(replay("data_file", data_file) > 0);
    assert!(replay("job_file", job_file) > 0);
    assert!(replay("gguf_file", gguf_file) > 0);
    assert!(replay("text_data", text_data) > 0);
}

#[test]
fn the_seed_inputs_are_valid() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let tiny = std::fs::read(corpus.join("safetensors_file/tiny")).unwrap();
    assert!(lethe::checkpoint::parse_header(Path::new("tiny"), &tiny).is_ok());
    let cnn: serde_json::Value =
        serde_json::from_slice(&std::fs::read(corpus.join("config_json/cnn")).unwrap()).unwrap();
    assert!(lethe::arch::Classifier::from_config(&cnn).is_ok());
    let idx = std::fs::read(corpus.join("data_file/idx")).unwrap();
    let cut = idx[1] as usize;
    let (labels, images) = idx[2..].split_at(cut);
    let ds = lethe::data::formats::parse_idx_pair(Path::new("i"), images, Path::new("l"), labels)
        .unwrap();
    assert_eq!(ds.len(), 2);
    let gguf = std::fs::read(corpus.join("gguf_file/tiny.gguf")).unwrap();
    let g = lethe::gguf::Gguf::parse(Path::new("tiny.gguf"), gguf).unwrap();
    assert_eq!(g.tensors.len(), 2);
    // One tensor of every newer block type (Q5_0, Q5_1, Q2_K to Q6_K), so that fuzzing starts
    // inside their decoders.
    let kquants = std::fs::read(corpus.join("gguf_file/kquants.gguf")).unwrap();
    let g = lethe::gguf::Gguf::parse(Path::new("kquants.gguf"), kquants).unwrap();
    assert_eq!(g.tensors.len(), 7);
    for t in &g.tensors {
        let values = g.dequantize(t);
        assert_eq!(values.len() as u64, t.elements(), "{}", t.name);
        assert!(values.iter().all(|v| v.is_finite()), "{}", t.name);
    }
    let facts = std::fs::read(corpus.join("text_data/facts.jsonl")).unwrap();
    let parsed = lethe::text::data::parse_jsonl(Path::new("facts.jsonl"), &facts).unwrap();
    assert_eq!(parsed.len(), 3);
    let llama: serde_json::Value =
        serde_json::from_slice(&std::fs::read(corpus.join("config_json/llama.json")).unwrap())
            .unwrap();
    assert!(lethe::arch::text::TextModel::from_config(&llama, &|_| true).is_ok());
}
