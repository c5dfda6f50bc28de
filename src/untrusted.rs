//! One entry point per parser of untrusted input, taking raw bytes. The fuzz targets in fuzz/
//! call these, and tests/fuzz_corpus.rs replays the committed corpus through them on every test
//! run, so that whatever the fuzzer once found stays fixed. Each must return (an error is fine)
//! and never panic, whatever the bytes.

use std::path::Path;

const NAME: &str = "untrusted-input";

/// A safetensors file: header length, header JSON, dtypes and offsets against the bytes present.
pub fn safetensors_file(bytes: &[u8]) {
    if let Ok((header_len, metadata)) = crate::checkpoint::parse_header(Path::new(NAME), bytes) {
        for name in metadata.offset_keys() {
            let info = metadata.info(&name).expect("listed");
            let (start, end) = info.data_offsets;
            // The header was validated against the file: this slice must be in bounds.
            let _ = &bytes[8 + header_len + start..8 + header_len + end];
        }
    }
}

/// A sharded checkpoint's `model.safetensors.index.json`.
pub fn index_json(bytes: &[u8]) {
    if let Ok(map) = crate::checkpoint::parse_index(Path::new(NAME), bytes) {
        for file in map.values() {
            let _ = crate::checkpoint::is_plain_file_name(file);
        }
    }
}

/// A model's `config.json`, through to the architecture's parameter list and ONNX-free shapes.
pub fn config_json(bytes: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return;
    };
    if let Ok(classifier) = crate::arch::Classifier::from_config(&value) {
        let _ = classifier.param_specs();
    }
    if let Ok(text) = crate::arch::text::TextModel::from_config(&value, &|_| false) {
        let _ = text.param_specs();
        let _ = text.linear_modules();
    }
}

/// A JSONL file of question/answer pairs or documents.
pub fn text_data(bytes: &[u8]) {
    let _ = crate::text::data::parse_jsonl(Path::new(NAME), bytes);
}

/// Data files: the first byte picks IDX labels + images (the second byte is the length of the
/// labels file), the digits CSV, or lethe's safetensors dataset.
pub fn data_file(bytes: &[u8]) {
    use crate::data::formats;
    let Some((&kind, rest)) = bytes.split_first() else {
        return;
    };
    let path = Path::new(NAME);
    match kind % 3 {
        0 => {
            let Some((&cut, body)) = rest.split_first() else {
                return;
            };
            let (labels, images) = body.split_at((cut as usize).min(body.len()));
            let _ = formats::parse_idx_pair(path, images, path, labels);
        }
        1 => {
            let _ = formats::parse_digits_csv(path, rest.to_vec());
        }
        _ => {
            let _ = formats::parse_native(path, rest);
        }
    }
}

/// A GGUF file: header, metadata, tensor table, and every tensor dequantized.
pub fn gguf_file(bytes: &[u8]) {
    if let Ok(g) = crate::gguf::Gguf::parse(Path::new(NAME), bytes.to_vec()) {
        for t in &g.tensors {
            // Bounded work: tensors were checked to lie inside the input.
            let _ = g.dequantize(t);
        }
    }
}

/// A job file for `lethe run`, through to the resolved job.
pub fn job_file(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(job) = toml::from_str::<crate::job::JobFile>(text) {
        if let Ok(resolved) = job.resolved(Path::new(NAME)) {
            let _ = resolved.to_toml();
        }
    }
}
