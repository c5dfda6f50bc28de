//! Fused CPU kernels with their own backward passes: RMSNorm and SwiGLU. Composed from
//! primitives, candle's autograd keeps every intermediate of the forward pass alive until the
//! backward pass (four activation-sized tensors per RMSNorm, two per SwiGLU) and runs one
//! memory-bound kernel per primitive. Fused, each keeps only its inputs and reads them once.
//! Attention has its own module, [`super::attention`].

use super::math::rows_per_task;
use super::simd;
use super::storage::{values, with_values};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Tensor};
use rayon::prelude::*;

pub(super) fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let ms = simd::sum_squares(x) / x.len() as f32;
    1.0 / (ms + eps).sqrt()
}

/// RMSNorm(x)·w over rows of w's length.
pub(super) fn normalize(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let h = w.len();
    let rows = rows_per_task(h) * h;
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(rows)
        .zip(x.par_chunks(rows))
        .for_each(|(y, x)| {
            for (y, x) in y.chunks_mut(h).zip(x.chunks(h)) {
                let r = inv_rms(x, eps);
                for ((y, x), w) in y.iter_mut().zip(x).zip(w) {
                    *y = x * r * w;
                }
            }
        });
    y
}

struct RmsNorm {
    eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, candle_core::Shape)> {
        let (x, w) = (values(s1, l1)?, values(s2, l2)?);
        Ok((
            CpuStorage::F32(normalize(x, w, self.eps)),
            l1.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let eps = self.eps;
        let h = w.elem_count();
        let rows = rows_per_task(h) * h;
        // With y = x·r·w and r = (mean(x²) + ε)^(-1/2):
        //   ∂/∂x_i = r·(g_i w_i) − x_i·r³·mean_j(g_j w_j x_j),  ∂/∂w_i = Σ_rows g_i x_i r.
        with_values(x, |xv| {
            with_values(w, |wv| {
                with_values(grad, |gv| {
                    let gx = x.track_op().then(|| {
                        let mut gx = vec![0f32; xv.len()];
                        gx.par_chunks_mut(rows)
                            .zip(xv.par_chunks(rows).zip(gv.par_chunks(rows)))
                            .for_each(|(gx, (x, g))| {
                                for ((gx, x), g) in
                                    gx.chunks_mut(h).zip(x.chunks(h)).zip(g.chunks(h))
                                {
                                    let r = inv_rms(x, eps);
                                    let dot = simd::dot3(g, wv, x);
                                    let c = r * r * r * dot / h as f32;
                                    for i in 0..h {
                                        gx[i] = r * g[i] * wv[i] - x[i] * c;
                                    }
                                }
                            });
                        Tensor::from_vec(gx, x.shape(), x.device())
                    });
                    let gw = w.track_op().then(|| {
                        let gw = xv
                            .par_chunks(rows)
                            .zip(gv.par_chunks(rows))
                            .map(|(x, g)| {
                                let mut part = vec![0f32; h];
                                for (x, g) in x.chunks(h).zip(g.chunks(h)) {
                                    let r = inv_rms(x, eps);
                                    for i in 0..h {
                                        part[i] += g[i] * x[i] * r;
                                    }
                                }
                                part
                            })
                            .reduce(
                                || vec![0f32; h],
                                |mut a, b| {
                                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                                    a
                                },
                            );
                        Tensor::from_vec(gw, w.shape(), w.device())
                    });
                    Ok((gx.transpose()?, gw.transpose()?))
                })
            })
        })
    }
}

/// RMSNorm x·w/√(mean(x²) + ε) over the last dimension of `x`, `w` [hidden].
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, RmsNorm { eps: eps as f32 })
}

/// SiLU(a)·u, element by element over rayon's threads.
pub(super) fn silu_mul(a: &[f32], u: &[f32]) -> Vec<f32> {
    let chunk = rows_per_task(1);
    let mut y = vec![0f32; a.len()];
    y.par_chunks_mut(chunk)
        .zip(a.par_chunks(chunk).zip(u.par_chunks(chunk)))
        .for_each(|(y, (a, u))| simd::silu_mul(y, a, u));
    y
}

/// The gradients of SiLU(a)·u for the output gradient in `g`: g becomes the gradient of a, and
/// the gradient of u is returned.
pub(super) fn silu_mul_backward(g: &mut [f32], a: &[f32], u: &[f32]) -> Vec<f32> {
    let chunk = rows_per_task(1);
    let mut gu = vec![0f32; a.len()];
    g.par_chunks_mut(chunk)
        .zip(gu.par_chunks_mut(chunk))
        .zip(a.par_chunks(chunk).zip(u.par_chunks(chunk)))
        .for_each(|((ga, gu), (a, u))| simd::silu_mul_backward(ga, gu, a, u));
    gu
}

struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, candle_core::Shape)> {
        let (gate, up) = (values(s1, l1)?, values(s2, l2)?);
        Ok((CpuStorage::F32(silu_mul(gate, up)), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // y = a·σ(a)·u:  ∂/∂a = g·u·σ(a)·(1 + a(1 − σ(a))),  ∂/∂u = g·a·σ(a).
        with_values(gate, |a| {
            with_values(up, |u| {
                with_values(grad, |g| {
                    let mut ga = g.to_vec();
                    let gu = silu_mul_backward(&mut ga, a, u);
                    Ok((
                        Some(Tensor::from_vec(ga, gate.shape(), gate.device())?),
                        Some(Tensor::from_vec(gu, up.shape(), up.device())?),
                    ))
                })
            })
        })
    }
}

/// SiLU(gate)·up, the gated MLP of the Llama family.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

/// log softmax(logits)[target] of each row: the per-token log-likelihood of a language model.
/// Composed, the log-softmax keeps three logits-sized tensors (shifted, exponentials,
/// log-probabilities) of [tokens, vocabulary]; fused, the backward pass recomputes the softmax
/// from the logits.
struct TargetLogProbs {
    targets: Vec<u32>,
}

impl CustomOp1 for TargetLogProbs {
    fn name(&self) -> &'static str {
        "fused-target-log-probs"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, candle_core::Shape)> {
        let logits = values(storage, layout)?;
        let (n, vocab) = layout.shape().dims2()?;
        self.check(n, vocab)?;
        let out: Vec<f32> = logits
            .par_chunks(vocab)
            .zip(self.targets.par_iter())
            .map(|(row, &t)| row[t as usize] - simd::log_sum_exp(row).1)
            .collect();
        Ok((CpuStorage::F32(out), candle_core::Shape::from(n)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (_, vocab) = logits.dims2()?;
        // ∂/∂x_j = g·(δ_j,target − softmax_j).
        let gl = with_values(logits, |x| {
            with_values(grad, |g| {
                let mut gl = vec![0f32; x.len()];
                gl.par_chunks_mut(vocab)
                    .zip(x.par_chunks(vocab))
                    .zip(g.par_iter().zip(self.targets.par_iter()))
                    .for_each(|((gl, x), (&g, &t))| {
                        let (_, lse) = simd::log_sum_exp(x);
                        simd::scaled_exp(gl, x, lse, -g);
                        gl[t as usize] += g;
                    });
                Ok(gl)
            })
        })?;
        Ok(Some(Tensor::from_vec(gl, logits.shape(), logits.device())?))
    }
}

impl TargetLogProbs {
    fn check(&self, n: usize, vocab: usize) -> candle_core::Result<()> {
        if self.targets.len() != n || self.targets.iter().any(|&t| t as usize >= vocab) {
            candle_core::bail!(
                "{} targets for {n} rows of {vocab} logits",
                self.targets.len()
            )
        }
        Ok(())
    }
}

/// log softmax(logits)[targets] per row: logits [N, V], targets [N] → [N].
pub fn target_log_probs(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let targets = targets.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    logits.contiguous()?.apply_op1(TargetLogProbs { targets })
}
