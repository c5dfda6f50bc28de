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
    // A quantization type lethe does not dequantize (IQ4_XS = 23).
    let unsupported = gguf(&[], &[("w", vec![256], 23, vec![0; 136])]);
    let e = err(unsupported);
    assert!(
        e.contains("quantization type IQ4_XS (23)") && e.contains("Q6_K"),
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

/// A deterministic byte stream for random blocks.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// `n` blocks of `block_bytes` random bytes whose f16 factors (at `factors`) are finite and of
/// ordinary size (positive and negative), so that every product is a number.
fn random_blocks(seed: u64, n: usize, block_bytes: usize, factors: &[usize]) -> Vec<u8> {
    let mut b = bytes(seed, n * block_bytes);
    for (i, block) in b.chunks_exact_mut(block_bytes).enumerate() {
        for (k, &at) in factors.iter().enumerate() {
            let v = ((i * 7 + k * 3) % 23) as f32 * 0.01 - 0.1;
            block[at..at + 2].copy_from_slice(&f16(v));
        }
    }
    b
}

/// Every block format against candle's own ggml dequantization (an implementation written
/// apart from lethe's), bit for bit, on random blocks.
#[test]
fn every_quantized_type_matches_candles_ggml_decoding_bit_for_bit() {
    use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
    use candle_core::Device;
    // (lethe's type, candle's, values and bytes per block, where the f16 factors sit)
    let types: &[(TensorType, GgmlDType, usize, usize, &[usize])] = &[
        (TensorType::Q4_0, GgmlDType::Q4_0, 32, 18, &[0]),
        (TensorType::Q4_1, GgmlDType::Q4_1, 32, 20, &[0, 2]),
        (TensorType::Q5_0, GgmlDType::Q5_0, 32, 22, &[0]),
        (TensorType::Q5_1, GgmlDType::Q5_1, 32, 24, &[0, 2]),
        (TensorType::Q8_0, GgmlDType::Q8_0, 32, 34, &[0]),
        (TensorType::Q2K, GgmlDType::Q2K, 256, 84, &[80, 82]),
        (TensorType::Q3K, GgmlDType::Q3K, 256, 110, &[108]),
        (TensorType::Q4K, GgmlDType::Q4K, 256, 144, &[0, 2]),
        (TensorType::Q5K, GgmlDType::Q5K, 256, 176, &[0, 2]),
        (TensorType::Q6K, GgmlDType::Q6K, 256, 210, &[208]),
    ];
    for (i, &(ours, theirs, values, block_bytes, factors)) in types.iter().enumerate() {
        let blocks = 6;
        let raw = random_blocks(i as u64 + 1, blocks, block_bytes, factors);
        let got = lethe::gguf::dequantize(ours, &raw);
        let q = qtensor_from_ggml(theirs, &raw, vec![blocks * values], &Device::Cpu).unwrap();
        let want: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().to_vec1().unwrap();
        assert_eq!(got.len(), want.len(), "{ours:?}");
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{ours:?} value {k}: {a} vs {b}");
        }
    }
}

/// Hand-made blocks of each newer format, with edge scales (zero, the largest six-bit scale,
/// i8's minimum), whose values follow from the block layouts by hand.
#[test]
fn hand_made_blocks_decode_to_the_values_their_layouts_give() {
    let dq = lethe::gguf::dequantize;
    let block = |parts: &[&[u8]]| parts.concat();

    // Q5_0: d = 0.5; low nibbles 0..15, high nibbles 0; fifth bits set for elements 0..15:
    // elements j < 16 are (j | 16) − 16 = j, the rest 0 − 16.
    let qs: Vec<u8> = (0..16).collect();
    let y = dq(
        TensorType::Q5_0,
        &block(&[&f16(0.5), &0x0000_FFFFu32.to_le_bytes(), &qs]),
    );
    let want: Vec<f32> = (0..32)
        .map(|j| if j < 16 { j as f32 * 0.5 } else { -8.0 })
        .collect();
    assert_eq!(y, want);

    // Q5_1: d = 2, m = −1, fifth bits for elements 16..31: j → 2j − 1, then 16 → 31.
    let y = dq(
        TensorType::Q5_1,
        &block(&[&f16(2.0), &f16(-1.0), &0xFFFF_0000u32.to_le_bytes(), &qs]),
    );
    let want: Vec<f32> = (0..32)
        .map(|j| if j < 16 { 2.0 * j as f32 - 1.0 } else { 31.0 })
        .collect();
    assert_eq!(y, want);

    // Q2_K: sub-block i has scale i (0 to 15), minimum 0; every quant 3; d = 1: value k is
    // 3·(k / 16).
    let scales: Vec<u8> = (0..16).collect();
    let y = dq(
        TensorType::Q2K,
        &block(&[&scales, &[0xFF; 64], &f16(1.0), &f16(0.5)]),
    );
    let want: Vec<f32> = (0..256).map(|k| 3.0 * (k / 16) as f32).collect();
    assert_eq!(y, want);
    // Scale 1 and minimum 15 everywhere (dmin 0.5 → 7.5); quants 0, 1, 2, 3 by shift.
    let y = dq(
        TensorType::Q2K,
        &block(&[&[0xF1; 16], &[0xE4; 64], &f16(1.0), &f16(0.5)]),
    );
    let want: Vec<f32> = (0..256).map(|k| ((k % 128) / 32) as f32 - 7.5).collect();
    assert_eq!(y, want);

    // Q3_K: every six-bit scale 63 (→ 31) or 0 (→ −32); quants 3 with the third bit set, 0
    // without (→ 0 − 4).
    let all_63 = [0xFFu8; 12];
    let y = dq(
        TensorType::Q3K,
        &block(&[&[0xFF; 32], &[0xFF; 64], &all_63, &f16(1.0)]),
    );
    assert!(y.iter().all(|&v| v == 93.0), "{y:?}");
    let y = dq(
        TensorType::Q3K,
        &block(&[&[0x00; 32], &[0x00; 64], &[0; 12], &f16(0.25)]),
    );
    assert!(y.iter().all(|&v| v == 32.0), "{y:?}");
    // Scale i for sub-block i (i − 32 after the offset), quants 1 with the third bit set.
    let mut packed = [0u8; 12];
    for i in 0..16u8 {
        if i < 8 {
            packed[i as usize] |= i & 0x0F;
        } else {
            packed[i as usize - 8] |= (i & 0x0F) << 4;
        }
    }
    let y = dq(
        TensorType::Q3K,
        &block(&[&[0xFF; 32], &[0x55; 64], &packed, &f16(1.0)]),
    );
    let want: Vec<f32> = (0..256).map(|k| (k / 16) as f32 - 32.0).collect();
    assert_eq!(y, want);

    // Q4_K: every scale and minimum 63 (all twelve bytes 0xFF); low nibbles 0, high 15; d = 0.5,
    // dmin = 0.25: 0·31.5 − 15.75, then 15·31.5 − 15.75, per 64 values.
    let y = dq(
        TensorType::Q4K,
        &block(&[&f16(0.5), &f16(0.25), &[0xFF; 12], &[0xF0; 128]]),
    );
    let want: Vec<f32> = (0..256)
        .map(|k| if k % 64 < 32 { -15.75 } else { 456.75 })
        .collect();
    assert_eq!(y, want);

    // Q5_K: scales 63, minimums 63 but dmin 0; quants 0 with the fifth bit set on the first
    // sub-block of every pair (qh = 0x55): 16·63, then 0.
    let y = dq(
        TensorType::Q5K,
        &block(&[&f16(1.0), &f16(0.0), &[0xFF; 12], &[0x55; 32], &[0x00; 128]]),
    );
    let want: Vec<f32> = (0..256)
        .map(|k| if k % 64 < 32 { 1008.0 } else { 0.0 })
        .collect();
    assert_eq!(y, want);

    // Q6_K: every scale i8::MIN; quants 0 (→ −32) or 63 (→ 31).
    let y = dq(
        TensorType::Q6K,
        &block(&[&[0; 128], &[0; 64], &[0x80; 16], &f16(1.0)]),
    );
    assert!(y.iter().all(|&v| v == 4096.0), "{y:?}");
    let y = dq(
        TensorType::Q6K,
        &block(&[&[0xFF; 128], &[0xFF; 64], &[0x80; 16], &f16(1.0)]),
    );
    assert!(y.iter().all(|&v| v == -3968.0), "{y:?}");
}
