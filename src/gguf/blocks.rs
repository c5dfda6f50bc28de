//! Dequantization of GGML's block formats to f32, each as ggml defines it: the same layout and
//! the same f32 arithmetic in the same order, so the values come out bit for bit as llama.cpp's.
//!
//! Legacy formats hold 32 values per block with one f16 scale (and a minimum for the `_1`
//! kinds). K-quants hold 256 values per super-block: sub-blocks of 16 or 32 values, each with a
//! quantized scale (and minimum), scaled again by the super-block's f16 factors.

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Q8_0 (34 bytes): d (f16), 32 signed bytes; x = q·d.
pub fn q8_0(b: &[u8], y: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    y.extend(b[2..34].iter().map(|&q| (q as i8) as f32 * d));
}

/// Q4_0 (18 bytes): d, 16 bytes of nibbles; element j is byte j's low nibble, element j + 16
/// its high nibble; x = (q − 8)·d.
pub fn q4_0(b: &[u8], y: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let q = &b[2..18];
    y.extend(q.iter().map(|&x| ((x & 0x0F) as i32 - 8) as f32 * d));
    y.extend(q.iter().map(|&x| ((x >> 4) as i32 - 8) as f32 * d));
}

/// Q4_1 (20 bytes): d, m, nibbles as Q4_0; x = q·d + m.
pub fn q4_1(b: &[u8], y: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let q = &b[4..20];
    y.extend(q.iter().map(|&x| (x & 0x0F) as f32 * d + m));
    y.extend(q.iter().map(|&x| (x >> 4) as f32 * d + m));
}

/// The fifth bits of Q5_0 and Q5_1: bit j of the u32 `qh` belongs to element j.
fn fifth_bits(qh: u32, j: usize) -> (u8, u8) {
    let low = (((qh >> j) << 4) & 0x10) as u8;
    let high = ((qh >> (j + 12)) & 0x10) as u8;
    (low, high)
}

/// Q5_0 (22 bytes): d, qh (u32, the fifth bits), 16 bytes of nibbles; x = (q − 16)·d.
pub fn q5_0(b: &[u8], y: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let q = &b[6..22];
    let mut out = [0f32; 32];
    for j in 0..16 {
        let (h0, h1) = fifth_bits(qh, j);
        out[j] = (((q[j] & 0x0F) | h0) as i32 - 16) as f32 * d;
        out[j + 16] = (((q[j] >> 4) | h1) as i32 - 16) as f32 * d;
    }
    y.extend_from_slice(&out);
}

/// Q5_1 (24 bytes): d, m, qh, nibbles; x = q·d + m.
pub fn q5_1(b: &[u8], y: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let q = &b[8..24];
    let mut out = [0f32; 32];
    for j in 0..16 {
        let (h0, h1) = fifth_bits(qh, j);
        out[j] = ((q[j] & 0x0F) | h0) as f32 * d + m;
        out[j + 16] = ((q[j] >> 4) | h1) as f32 * d + m;
    }
    y.extend_from_slice(&out);
}

/// Q2_K (84 bytes): scales[16] (low nibble a sub-block's scale, high nibble its minimum),
/// qs[64] (2-bit quants), d, dmin. Each 128-value half reads 32 bytes of qs four times, two bits
/// further each time; x = d·scale·q − dmin·min.
pub fn q2_k(b: &[u8], y: &mut Vec<f32>) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, min) = (f16_at(b, 80), f16_at(b, 82));
    let mut is = 0;
    for half in 0..2 {
        let q = &qs[32 * half..32 * half + 32];
        for shift in [0, 2, 4, 6] {
            for part in 0..2 {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * (sc & 0x0F) as f32, min * (sc >> 4) as f32);
                for &x in &q[16 * part..16 * part + 16] {
                    y.push(dl * ((x >> shift) & 3) as f32 - ml);
                }
            }
        }
    }
}

/// Q3_K (110 bytes): hmask[32] (the third bits), qs[64] (the low two bits), scales[12] (16
/// six-bit scales, offset by 32), d. A cleared hmask bit subtracts 4; x = d·(scale − 32)·q.
pub fn q3_k(b: &[u8], y: &mut Vec<f32>) {
    let (hmask, qs, packed) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    let scales = unpack_q3_k_scales(packed);
    let mut is = 0;
    let mut m = 1u8;
    for half in 0..2 {
        let q = &qs[32 * half..32 * half + 32];
        for shift in [0, 2, 4, 6] {
            for part in 0..2 {
                let dl = d * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in 16 * part..16 * part + 16 {
                    let low = ((q[l] >> shift) & 3) as i32;
                    let high = if hmask[l] & m != 0 { 0 } else { 4 };
                    y.push(dl * (low - high) as f32);
                }
            }
            m <<= 1;
        }
    }
}

/// Q3_K's 16 six-bit scales: the low four bits of scale i are nibbles of bytes 0–7 (scales 0–7
/// low nibbles, 8–15 high nibbles), the top two bits come from bytes 8–11, two bits per scale.
fn unpack_q3_k_scales(p: &[u8]) -> [u8; 16] {
    let mut s = [0u8; 16];
    for (i, v) in s.iter_mut().enumerate() {
        let low = if i < 8 { p[i] & 0x0F } else { p[i - 8] >> 4 };
        let high = (p[8 + i % 4] >> (2 * (i / 4))) & 3;
        *v = low | (high << 4);
    }
    s
}

/// Scale and minimum of sub-block `j` of Q4_K and Q5_K: eight six-bit pairs packed in 12 bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K (144 bytes): d, dmin, scales[12], qs[128]. Each 64 values read 32 bytes: low nibbles
/// for the first sub-block, high nibbles for the second; x = d·scale·q − dmin·min.
pub fn q4_k(b: &[u8], y: &mut Vec<f32>) {
    let (d, min) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (k, q) in qs.chunks_exact(32).enumerate() {
        let (sc, m) = scale_min_k4(2 * k, scales);
        let (d1, m1) = (d * sc as f32, min * m as f32);
        let (sc, m) = scale_min_k4(2 * k + 1, scales);
        let (d2, m2) = (d * sc as f32, min * m as f32);
        y.extend(q.iter().map(|&x| d1 * (x & 0x0F) as f32 - m1));
        y.extend(q.iter().map(|&x| d2 * (x >> 4) as f32 - m2));
    }
}

/// Q5_K (176 bytes): d, dmin, scales[12], qh[32] (fifth bits, two per 64 values), qs[128].
pub fn q5_k(b: &[u8], y: &mut Vec<f32>) {
    let (d, min) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    let (mut u1, mut u2) = (1u8, 2u8);
    for (k, q) in qs.chunks_exact(32).enumerate() {
        let (sc, m) = scale_min_k4(2 * k, scales);
        let (d1, m1) = (d * sc as f32, min * m as f32);
        let (sc, m) = scale_min_k4(2 * k + 1, scales);
        let (d2, m2) = (d * sc as f32, min * m as f32);
        for l in 0..32 {
            let high = if qh[l] & u1 != 0 { 16 } else { 0 };
            y.push(d1 * ((q[l] & 0x0F) + high) as f32 - m1);
        }
        for l in 0..32 {
            let high = if qh[l] & u2 != 0 { 16 } else { 0 };
            y.push(d2 * ((q[l] >> 4) + high) as f32 - m2);
        }
        u1 <<= 2;
        u2 <<= 2;
    }
}

/// Q6_K (210 bytes): ql[128] (low four bits), qh[64] (high two bits), scales[16] (signed), d.
/// Each 128 values read 64 bytes of ql, 32 of qh and 8 scales; x = d·scale·(q − 32).
pub fn q6_k(b: &[u8], y: &mut Vec<f32>) {
    let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for half in 0..2 {
        let (ql, qh, sc) = (
            &ql[64 * half..64 * half + 64],
            &qh[32 * half..32 * half + 32],
            &sc[8 * half..8 * half + 8],
        );
        let mut out = [0f32; 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| d * (sc[is + k] as i8) as f32;
            out[l] = s(0) * q1 as f32;
            out[l + 32] = s(2) * q2 as f32;
            out[l + 64] = s(4) * q3 as f32;
            out[l + 96] = s(6) * q4 as f32;
        }
        y.extend_from_slice(&out);
    }
}
