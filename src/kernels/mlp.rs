//! The feed-forward half of a Llama-family block with frozen weights, x + down(SiLU(gate(n)) ·
//! up(n)) with n = RMSNorm(x), as one operation with its own backward pass.
//!
//! Composed, the half is six autograd nodes (norm, three products, SwiGLU, residual sum). candle's
//! backward pass gives each node's inputs a zero-filled gradient buffer and adds into it, about
//! thirteen activation-sized buffers per layer; the graph also keeps the norm output, both
//! projections and the SwiGLU output. As one node, the gradient of x is computed in one buffer,
//! and the operation keeps only the two projections, which the backward pass needs.

use super::frozen::Frozen;
use super::fused::{inv_rms, normalize, silu_mul, silu_mul_backward};
use super::math::rows_per_task;
use super::storage::{values, with_values};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

pub struct GatedMlp {
    norm: Vec<f32>,
    eps: f32,
    /// The projections' weights as [in, out] views.
    gate: Frozen,
    up: Frozen,
    down: Frozen,
    /// Whether a backward pass may follow, so that the projections are worth keeping.
    keep: bool,
    /// gate(n) and up(n) [rows, intermediate] from the forward pass.
    saved: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

impl CustomOp1 for GatedMlp {
    fn name(&self) -> &'static str {
        "fused-gated-mlp"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = values(storage, layout)?;
        let h = self.norm.len();
        if layout.shape().dims().last() != Some(&h) {
            candle_core::bail!("gated MLP: input {:?}, hidden size {h}", layout.shape())
        }
        let m = x.len() / h;
        let n = normalize(x, &self.norm, self.eps);
        let gate = self.gate.forward(&n, m, h)?;
        let up = self.up.forward(&n, m, h)?;
        drop(n);
        let f = gate.len() / m.max(1);
        let s = silu_mul(&gate, &up);
        // The residual sum: the down projection accumulates onto a copy of x.
        let mut y = x.to_vec();
        self.down.forward_onto(&mut y, &s, m, f)?;
        if self.keep {
            *self.saved.lock().expect("not poisoned") = Some((gate, up));
        }
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let saved = self.saved.lock().expect("not poisoned");
        let Some((gate, up)) = saved.as_ref() else {
            candle_core::bail!("gated MLP: backward pass without a recorded forward pass")
        };
        let h = self.norm.len();
        let (eps, w) = (self.eps, &self.norm);
        let gx = with_values(x, |xv| {
            with_values(grad, |gy| {
                let m = xv.len() / h;
                let f = gate.len() / m.max(1);
                // Through the down projection, then SiLU(a)·u: with σ = σ(a),
                //   ∂/∂a = g·u·σ·(1 + a(1 − σ)),  ∂/∂u = g·a·σ.
                let mut g_gate = self.down.input_grad(gy, m, f)?;
                let g_up = silu_mul_backward(&mut g_gate, gate, up);
                // Both projections read n: their input gradients add up in one buffer.
                let mut gn = self.gate.input_grad(&g_gate, m, h)?;
                drop(g_gate);
                self.up.input_grad_onto(&mut gn, &g_up, m, h)?;
                drop(g_up);
                // Through the norm (y = x·r·w, r = (mean(x²) + ε)^(-1/2)) and the residual:
                //   ∂/∂x_i = g_i + r·(gn_i w_i) − x_i·r³·mean_j(gn_j w_j x_j).
                let rows = rows_per_task(h) * h;
                gn.par_chunks_mut(rows)
                    .zip(xv.par_chunks(rows).zip(gy.par_chunks(rows)))
                    .for_each(|(gn, (x, gy))| {
                        for ((gn, x), gy) in gn.chunks_mut(h).zip(x.chunks(h)).zip(gy.chunks(h)) {
                            let r = inv_rms(x, eps);
                            let dot: f32 =
                                gn.iter().zip(w).zip(x).map(|((g, w), x)| g * w * x).sum();
                            let c = r * r * r * dot / h as f32;
                            for i in 0..h {
                                gn[i] = gy[i] + r * gn[i] * w[i] - x[i] * c;
                            }
                        }
                    });
                Ok(gn)
            })
        })?;
        Ok(Some(Tensor::from_vec(gx, x.shape(), x.device())?))
    }
}

/// x + down(SiLU(gate(n))·up(n)), n = RMSNorm(x)·norm, for frozen f32 CPU weights given
/// [out, in] (torch.nn.Linear's layout). Records a backward pass for x only.
pub fn gated_mlp(
    x: &Tensor,
    norm: &Tensor,
    gate: &Tensor,
    up: &Tensor,
    down: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let op = GatedMlp {
        norm: norm.flatten_all()?.to_vec1::<f32>()?,
        eps: eps as f32,
        gate: Frozen { weight: gate.t()? },
        up: Frozen { weight: up.t()? },
        down: Frozen { weight: down.t()? },
        keep: x.track_op(),
        saved: Mutex::new(None),
    };
    x.contiguous()?.apply_op1(op)
}
