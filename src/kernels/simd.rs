//! Row kernels with an AVX2 and FMA form, taken at run time when the CPU has them, and a scalar
//! form. lethe is built for baseline x86-64, where the compiler leaves these loops scalar: exp,
//! which softmax and SiLU rows spend most of their time in, has integer conversions and a select
//! that it does not vectorise. The AVX2 form runs exp on 8 lanes with the same polynomial.

use super::math::{exp, sigmoid};

/// Whether the CPU runs the AVX2 and FMA builds (checked once).
pub fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX2.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

const LANES: usize = 8;

/// row ← softmax(row + bias).
pub fn softmax_biased(row: &mut [f32], bias: &[f32]) {
    assert_eq!(row.len(), bias.len(), "softmax: row and bias lengths");
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths match (asserted above).
        return unsafe { wide::softmax_biased(row, bias) };
    }
    for (v, b) in row.iter_mut().zip(bias) {
        *v += b;
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in row.iter_mut() {
        *v = exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// (max, log Σ exp) of a row.
pub fn log_sum_exp(row: &[f32]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA; the function reads only inside its slice.
        return unsafe { wide::log_sum_exp(row) };
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|v| exp(v - max)).sum();
    (max, max + sum.ln())
}

/// out ← scale·exp(x − shift).
pub fn scaled_exp(out: &mut [f32], x: &[f32], shift: f32, scale: f32) {
    assert_eq!(out.len(), x.len(), "scaled exp: lengths");
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths match (asserted above).
        return unsafe { wide::scaled_exp(out, x, shift, scale) };
    }
    for (o, x) in out.iter_mut().zip(x) {
        *o = scale * exp(x - shift);
    }
}

/// Σ x².
pub fn sum_squares(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA; the function reads only inside its slice.
        return unsafe { wide::sum_squares(x) };
    }
    x.iter().map(|v| v * v).sum()
}

/// Σ a·b·c over three rows of one length.
pub fn dot3(a: &[f32], b: &[f32], c: &[f32]) -> f32 {
    assert!(b.len() == a.len() && c.len() == a.len(), "dot: lengths");
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths match (asserted above).
        return unsafe { wide::dot3(a, b, c) };
    }
    a.iter().zip(b).zip(c).map(|((a, b), c)| a * b * c).sum()
}

/// out ← SiLU(a)·u.
pub fn silu_mul(out: &mut [f32], a: &[f32], u: &[f32]) {
    assert!(
        a.len() == out.len() && u.len() == out.len(),
        "SiLU·u: lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths match (asserted above).
        return unsafe { wide::silu_mul(out, a, u) };
    }
    for ((o, a), u) in out.iter_mut().zip(a).zip(u) {
        *o = a * sigmoid(*a) * u;
    }
}

/// The gradients of SiLU(a)·u for the output gradient g: g_a = g·u·σ(a)·(1 + a(1 − σ(a))) and
/// g_u = g·a·σ(a), written over `g` (which becomes g_a) and into `g_u`.
pub fn silu_mul_backward(g: &mut [f32], g_u: &mut [f32], a: &[f32], u: &[f32]) {
    let n = g.len();
    assert!(
        g_u.len() == n && a.len() == n && u.len() == n,
        "SiLU·u backward: lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths match (asserted above).
        return unsafe { wide::silu_mul_backward(g, g_u, a, u) };
    }
    for i in 0..n {
        let s = sigmoid(a[i]);
        let grad = g[i];
        g[i] = grad * u[i] * s * (1.0 + a[i] * (1.0 - s));
        g_u[i] = grad * a[i] * s;
    }
}

/// The AVX2 and FMA builds, 8 lanes at a time; the tails reuse the scalar forms.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{exp, sigmoid, LANES};
    use std::arch::x86_64::*;

    /// eˣ on 8 lanes: the same reduction and polynomial as [`super::exp`].
    #[target_feature(enable = "avx2,fma")]
    pub fn exp8(x: __m256) -> __m256 {
        let clamped = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
            _mm256_set1_ps(88.0),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(clamped, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), clamped);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        let y = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
        let underflow = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.0));
        _mm256_andnot_ps(underflow, y)
    }

    #[target_feature(enable = "avx2,fma")]
    fn sum8(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    #[target_feature(enable = "avx2,fma")]
    fn max8(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<1>(m, m)))
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn max_of(row: &[f32]) -> f32 {
        // SAFETY: every load reads 8 values starting at i + 8 ≤ whole ≤ row.len(), inside `row`; AVX2 and FMA per the contract.
        unsafe {
            let whole = row.len() / LANES * LANES;
            let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
            for i in (0..whole).step_by(LANES) {
                m = _mm256_max_ps(m, _mm256_loadu_ps(row.as_ptr().add(i)));
            }
            row[whole..].iter().copied().fold(max8(m), f32::max)
        }
    }

    /// row ← exp(row − shift); returns the sum of the new values.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp_shifted(row: &mut [f32], shift: f32) -> f32 {
        // SAFETY: every load and store touches 8 values starting at i + 8 ≤ whole ≤ row.len(), inside `row`; AVX2 and FMA per the contract.
        unsafe {
            let whole = row.len() / LANES * LANES;
            let s = _mm256_set1_ps(shift);
            let mut sum = _mm256_setzero_ps();
            for i in (0..whole).step_by(LANES) {
                let p = row.as_mut_ptr().add(i);
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p), s));
                _mm256_storeu_ps(p, e);
                sum = _mm256_add_ps(sum, e);
            }
            let mut total = sum8(sum);
            for v in &mut row[whole..] {
                *v = exp(*v - shift);
                total += *v;
            }
            total
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn softmax_biased(row: &mut [f32], bias: &[f32]) {
        // SAFETY: only calls this module's functions, whose contract (AVX2 and FMA) is this one's.
        unsafe {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
            let max = max_of(row);
            let inv = 1.0 / exp_shifted(row, max);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn log_sum_exp(row: &[f32]) -> (f32, f32) {
        // SAFETY: every load reads 8 values starting at i + 8 ≤ whole ≤ row.len(), inside `row`; AVX2 and FMA per the contract.
        unsafe {
            let max = max_of(row);
            let whole = row.len() / LANES * LANES;
            let shift = _mm256_set1_ps(max);
            let mut sum = _mm256_setzero_ps();
            for i in (0..whole).step_by(LANES) {
                let v = _mm256_loadu_ps(row.as_ptr().add(i));
                sum = _mm256_add_ps(sum, exp8(_mm256_sub_ps(v, shift)));
            }
            let total = sum8(sum) + row[whole..].iter().map(|v| exp(v - max)).sum::<f32>();
            (max, max + total.ln())
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA, and `x` must be at least as long as `out`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn scaled_exp(out: &mut [f32], x: &[f32], shift: f32, scale: f32) {
        // SAFETY: loads from `x` and stores to `out` touch 8 values starting at i + 8 ≤ whole ≤ out.len() ≤ x.len(); AVX2 and FMA per the contract.
        unsafe {
            let whole = out.len() / LANES * LANES;
            let (sh, sc) = (_mm256_set1_ps(shift), _mm256_set1_ps(scale));
            for i in (0..whole).step_by(LANES) {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x.as_ptr().add(i)), sh));
                _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_mul_ps(sc, e));
            }
            for i in whole..out.len() {
                out[i] = scale * exp(x[i] - shift);
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sum_squares(x: &[f32]) -> f32 {
        // SAFETY: every load reads 8 values starting at i + 8 ≤ whole ≤ x.len(), inside `x`; AVX2 and FMA per the contract.
        unsafe {
            let whole = x.len() / LANES * LANES;
            let mut sum = _mm256_setzero_ps();
            for i in (0..whole).step_by(LANES) {
                let v = _mm256_loadu_ps(x.as_ptr().add(i));
                sum = _mm256_fmadd_ps(v, v, sum);
            }
            sum8(sum) + x[whole..].iter().map(|v| v * v).sum::<f32>()
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA, and `b` and `c` must be at least as long as `a`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot3(a: &[f32], b: &[f32], c: &[f32]) -> f32 {
        // SAFETY: loads touch 8 values starting at i + 8 ≤ whole ≤ a.len() ≤ b.len(), c.len(); AVX2 and FMA per the contract.
        unsafe {
            let whole = a.len() / LANES * LANES;
            let mut sum = _mm256_setzero_ps();
            for i in (0..whole).step_by(LANES) {
                let ab = _mm256_mul_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                );
                sum = _mm256_fmadd_ps(ab, _mm256_loadu_ps(c.as_ptr().add(i)), sum);
            }
            let tail: f32 = (whole..a.len()).map(|i| a[i] * b[i] * c[i]).sum();
            sum8(sum) + tail
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn sigmoid8(a: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), a));
        _mm256_div_ps(one, _mm256_add_ps(one, e))
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA, and `a` and `u` must be at least as long as `out`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn silu_mul(out: &mut [f32], a: &[f32], u: &[f32]) {
        // SAFETY: loads and stores touch 8 values starting at i + 8 ≤ whole ≤ out.len() ≤ a.len(), u.len(); AVX2 and FMA per the contract.
        unsafe {
            let whole = out.len() / LANES * LANES;
            for i in (0..whole).step_by(LANES) {
                let av = _mm256_loadu_ps(a.as_ptr().add(i));
                let uv = _mm256_loadu_ps(u.as_ptr().add(i));
                let y = _mm256_mul_ps(_mm256_mul_ps(av, sigmoid8(av)), uv);
                _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
            }
            for i in whole..out.len() {
                out[i] = a[i] * sigmoid(a[i]) * u[i];
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA, and `g_u`, `a` and `u` must be at least as long as `g`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn silu_mul_backward(g: &mut [f32], g_u: &mut [f32], a: &[f32], u: &[f32]) {
        // SAFETY: loads and stores touch 8 values starting at i + 8 ≤ whole ≤ g.len() ≤ the other lengths; AVX2 and FMA per the contract.
        unsafe {
            let whole = g.len() / LANES * LANES;
            let one = _mm256_set1_ps(1.0);
            for i in (0..whole).step_by(LANES) {
                let av = _mm256_loadu_ps(a.as_ptr().add(i));
                let uv = _mm256_loadu_ps(u.as_ptr().add(i));
                let gv = _mm256_loadu_ps(g.as_ptr().add(i));
                let s = sigmoid8(av);
                // g·u·σ·(1 + a(1 − σ)) and g·a·σ
                let slope = _mm256_fmadd_ps(av, _mm256_sub_ps(one, s), one);
                let ga = _mm256_mul_ps(_mm256_mul_ps(gv, uv), _mm256_mul_ps(s, slope));
                let gu = _mm256_mul_ps(_mm256_mul_ps(gv, av), s);
                _mm256_storeu_ps(g.as_mut_ptr().add(i), ga);
                _mm256_storeu_ps(g_u.as_mut_ptr().add(i), gu);
            }
            for i in whole..g.len() {
                let s = sigmoid(a[i]);
                let grad = g[i];
                g[i] = grad * u[i] * s * (1.0 + a[i] * (1.0 - s));
                g_u[i] = grad * a[i] * s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_and_follow_the_bias() {
        for len in [1, 7, 8, 9, 130] {
            let mut row: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
            let bias: Vec<f32> = (0..len)
                .map(|i| if i % 3 == 1 { -1e9 } else { 0.0 })
                .collect();
            let expected: Vec<f32> = {
                let z: Vec<f64> = row.iter().zip(&bias).map(|(v, b)| (v + b) as f64).collect();
                let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                e.iter().map(|v| (v / sum) as f32).collect()
            };
            softmax_biased(&mut row, &bias);
            for (a, b) in row.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-6, "length {len}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn exp_on_eight_lanes_matches_the_scalar_form() {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            use std::arch::x86_64::*;
            let xs: Vec<f32> = (0..4000).map(|i| -100.0 + i as f32 * 0.047).collect();
            for c in xs.chunks_exact(LANES) {
                let mut out = [0f32; LANES];
                // SAFETY: AVX2 and FMA are present; both pointers cover 8 values.
                unsafe {
                    _mm256_storeu_ps(out.as_mut_ptr(), wide::exp8(_mm256_loadu_ps(c.as_ptr())))
                };
                for (x, y) in c.iter().zip(out) {
                    let e = exp(*x);
                    assert!((y - e).abs() <= 4e-7 * e, "exp({x}): {y} vs {e}");
                }
            }
        }
    }

    #[test]
    fn silu_rows_match_their_definition() {
        let n = 37;
        let a: Vec<f32> = (0..n).map(|i| (i as f32 - 18.0) * 0.7).collect();
        let u: Vec<f32> = (0..n).map(|i| (i as f32 * 0.3).cos()).collect();
        let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.5).sin()).collect();
        let sig = |x: f32| 1.0 / (1.0 + (-x as f64).exp()) as f32;
        let mut out = vec![0f32; n];
        silu_mul(&mut out, &a, &u);
        let (mut ga, mut gu) = (g.clone(), vec![0f32; n]);
        silu_mul_backward(&mut ga, &mut gu, &a, &u);
        for i in 0..n {
            let s = sig(a[i]);
            assert!((out[i] - a[i] * s * u[i]).abs() < 1e-5);
            assert!((ga[i] - g[i] * u[i] * s * (1.0 + a[i] * (1.0 - s))).abs() < 1e-5);
            assert!((gu[i] - g[i] * a[i] * s).abs() < 1e-5);
        }
    }

    #[test]
    fn log_sum_exp_matches_f64() {
        let row: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.11).cos() * 20.0).collect();
        let (max, lse) = log_sum_exp(&row);
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let expected = (m as f64)
            + row
                .iter()
                .map(|&v| ((v - m) as f64).exp())
                .sum::<f64>()
                .ln();
        assert_eq!(max, m);
        assert!((lse as f64 - expected).abs() < 1e-5, "{lse} vs {expected}");
    }
}
