//! Scalar math the row kernels share: a branch-free exp, the sigmoid built on it, and how many
//! rows one parallel task takes.

/// eˣ in f32 within about 2e-7 relative error, 0 below -87. Inline and branch-free, unlike
/// libm's expf (a call with error handling per element), so the softmax and sigmoid loops around
/// it compile to straight-line code.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // x = n·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 split in two for an exact product), then
    // eˣ = 2ⁿ·eʳ with eʳ from its Taylor series to r⁶ (remainder below 1.2e-7).
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer.
    let clamped = x.clamp(-87.0, 88.0);
    let n = (clamped * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = clamped - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        p * scale
    }
}

/// Rows handed to one rayon task: enough work to outweigh scheduling.
pub fn rows_per_task(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
}

pub fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + exp(-a))
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_exp_matches_libm() {
        let mut worst = 0f64;
        for i in -90_000..=88_000 {
            let x = i as f32 / 1000.0;
            let (want, got) = ((x as f64).exp(), super::exp(x) as f64);
            if want > 1e-37 {
                worst = worst.max(((got - want) / want).abs());
            }
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(super::exp(-1e9), 0.0);
        assert_eq!(super::exp(0.0), 1.0);
    }
}
