//! GGUF parsing and dequantization on small files written here, with expected values worked out
//! by hand from each format's block layout; and malformed files refused with a clear error.

mod common;

use common::gguf;
use lethe::gguf::{Gguf, TensorType, Value};
use std::path::Path;

fn f16(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

fn sample_file() -> Vec<u8> {
    let mut q8 = f16(0.25).to_vec();
    q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
    let mut q4_0 = f16(0.5).to_vec();
    q4_0.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let mut q4_1 = f16(2.0).to_vec();
    q4_1.extend(f16(-1.0));
    q4_1.extend((0..16u8).map(|j| (j & 0x0F) | (3 << 4)));
    let f32s: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let f16s: Vec<u8> = [0.5f32, -1.5, 2.0, 8.0]
        .iter()
        .flat_map(|&v| f16(v))
        .collect();
    let bf16s: Vec<u8> = [1.0f32, -2.0]
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    // An array: item type (string = 8), count, items.
    let mut names = 8u32.to_le_bytes().to_vec();
    names.extend(2u64.to_le_bytes());
    for s in ["a", "bc"] {
        names.extend((s.len() as u64).to_le_bytes());
        names.extend(s.as_bytes());
    }
    let arch = {
        let mut v = 5u64.to_le_bytes().to_vec();
        v.extend(b"llama");
        v
    };
    gguf(
        &[
            ("general.architecture", 8, arch),
            ("llama.block_count", 4, 30u32.to_le_bytes().to_vec()),
            ("tokenizer.ggml.tokens", 9, names),
        ],
        &[
            ("w.f32", vec![3, 2], 0, f32s),
            ("w.f16", vec![4], 1, f16s),
            ("w.q8_0", vec![32], 8, q8),
            ("w.q4_0", vec![32], 2, q4_0),
            ("w.q4_1", vec![32], 3, q4_1),
            ("w.bf16", vec![2], 30, bf16s),
        ],
    )
}

#[test]
fn metadata_and_every_supported_type_dequantize_as_their_layouts_say() {
    let g = Gguf::parse(Path::new("sample.gguf"), sample_file()).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(
        g.metadata["general.architecture"],
        Value::String("llama".into())
    );
    assert_eq!(g.metadata["llama.block_count"].as_u64(), Some(30));
    assert_eq!(
        g.metadata["tokenizer.ggml.tokens"],
        Value::Array(vec![Value::String("a".into()), Value::String("bc".into())])
    );
    let t = |n: &str| g.tensor(n).unwrap();
    // GGUF lists the fastest dimension first: [3, 2] is 2 rows of 3.
    assert_eq!(t("w.f32").shape(), vec![2, 3]);
    assert_eq!(g.dequantize(t("w.f32")), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(g.dequantize(t("w.f16")), vec![0.5, -1.5, 2.0, 8.0]);
    assert_eq!(g.dequantize(t("w.bf16")), vec![1.0, -2.0]);
    let q8 = g.dequantize(t("w.q8_0"));
    assert_eq!(q8[0], 0.25 * -16.0);
    assert_eq!(q8[31], 0.25 * 15.0);
    let q4 = g.dequantize(t("w.q4_0"));
    // Low nibbles are elements 0..16, high nibbles 16..32; x = d·(q − 8).
    for j in 0..16 {
        assert_eq!(q4[j], 0.5 * (j as f32 - 8.0), "element {j}");
        assert_eq!(
            q4[16 + j],
            0.5 * ((15 - j) as f32 - 8.0),
            "element {}",
            16 + j
        );
    }
    let q41 = g.dequantize(t("w.q4_1"));
    for j in 0..16 {
        assert_eq!(q41[j], 2.0 * j as f32 - 1.0);
        assert_eq!(q41[16 + j], 2.0 * 3.0 - 1.0);
    }
    assert_eq!(t("w.q4_1").kind, TensorType::Q4_1);
}

fn err(bytes: Vec<u8>) -> String {
    Gguf::parse(Path::new("bad.gguf"), bytes)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn malformed_files_are_refused_with_a_reason() {
    let good = sample_file();
    assert!(err(b"GGML....".to_vec()).contains("wrong magic"));
    // The last tensor (2 bytes of bf16, padded to 32) cut short.
    assert!(err(good[..good.len() - 31].to_vec()).contains("past the end"));
    assert!(err(good[..40].to_vec()).contains("truncated"));
    // A quantization type lethe does not dequantize (Q4_K = 12).
    let unsupported = gguf(&[], &[("w", vec![256], 12, vec![0; 144])]);
    let e = err(unsupported);
    assert!(
        e.contains("quantization type Q4_K (12)") && e.contains("Q4_1"),
        "{e}"
    );
    // A string length far beyond the file.
    let mut huge = b"GGUF".to_vec();
    huge.extend(3u32.to_le_bytes());
    huge.extend(0u64.to_le_bytes());
    huge.extend(1u64.to_le_bytes());
    huge.extend(u64::MAX.to_le_bytes());
    assert!(err(huge).contains("implausibly large"));
}
