//! Multi-head attention as one CPU kernel with its own backward pass: rotary positions, grouped
//! key/value heads, the additive bias, softmax and the weighted sum, reading q, k and v in the
//! layout the projections produce ([B, T, heads·D]) and writing the merged heads.
//!
//! Composed from primitives, attention keeps the rotated queries and keys, their per-head copies
//! and four score-sized tensors (scores, scaled, biased, probabilities) per layer for the backward
//! pass. Here the backward pass recomputes the probabilities of one head at a time from q and k,
//! which the graph keeps anyway, so a layer keeps nothing of its own.

use super::mat::{Mat, Threads};
use super::products::{accumulate, product, product_to};
use super::storage::{values, with_values};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;

/// Query rows per block of products: a causal block stops at its last visible key.
const QUERY_BLOCK: usize = 48;
/// Bias values below this mark masked keys (the mask adds [`super::MASKED`], once or twice).
const MASKED_LIMIT: f32 = (super::MASKED / 2.0) as f32;

/// cos and sin rows [T, D] of the sequence's positions ("rotate half" layout).
pub struct RotaryRows {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

pub struct Attention {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Additive bias [B, T, S], row-major. Shared by every layer of a forward pass, as are
    /// the rotary rows.
    pub bias: Arc<Vec<f32>>,
    pub rotary: Option<Arc<RotaryRows>>,
}

/// Dimensions of one call: batch, query and key positions.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    s: usize,
}

/// A pointer shared by tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: a pointer is only an address; the tasks that receive it write disjoint parts of the
// buffer, and the buffer outlives the parallel loop that hands it out.
unsafe impl Send for Shared {}
// SAFETY: as for Send: writes through it are disjoint.
unsafe impl Sync for Shared {}

impl Shared {
    /// The element `offset` places in. A method, so that closures capture the whole `Shared`
    /// (which is Sync) rather than its raw pointer field (which is not).
    fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers stay inside the buffer the pointer was taken from.
        unsafe { self.0.add(offset) }
    }
}

impl Attention {
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Row `pos` of head values `x` (D values) rotated by the position's angles, times `scale`.
    fn rotate_into(&self, x: &[f32], pos: usize, scale: f32, out: &mut [f32]) {
        let d = self.head_dim;
        match &self.rotary {
            None => out.iter_mut().zip(x).for_each(|(o, x)| *o = x * scale),
            Some(r) => {
                let (c, s) = (&r.cos[pos * d..][..d], &r.sin[pos * d..][..d]);
                let half = d / 2;
                for i in 0..half {
                    out[i] = (x[i] * c[i] - x[i + half] * s[i]) * scale;
                    out[i + half] = (x[i + half] * c[i + half] + x[i] * s[i + half]) * scale;
                }
            }
        }
    }

    /// The transpose of [`Self::rotate_into`]: carries a gradient back through the rotation.
    fn unrotate_into(&self, g: &[f32], pos: usize, scale: f32, out: &mut [f32]) {
        let d = self.head_dim;
        match &self.rotary {
            None => out.iter_mut().zip(g).for_each(|(o, g)| *o = g * scale),
            Some(r) => {
                let (c, s) = (&r.cos[pos * d..][..d], &r.sin[pos * d..][..d]);
                let half = d / 2;
                for i in 0..half {
                    let (lo, hi) = (g[i], g[i + half]);
                    out[i] = (lo * c[i] + hi * s[i + half]) * scale;
                    out[i + half] = (hi * c[i + half] - lo * s[i]) * scale;
                }
            }
        }
    }

    /// Rotated rows [n, D] of one head of `x` [B, n, width] in batch `b`, starting at column
    /// `col`, times `scale`.
    fn head_rows(
        &self,
        x: &[f32],
        b: usize,
        n: usize,
        width: usize,
        col: usize,
        scale: f32,
    ) -> Vec<f32> {
        let d = self.head_dim;
        let mut out = vec![0f32; n * d];
        for (pos, row) in out.chunks_mut(d).enumerate() {
            let start = (b * n + pos) * width + col;
            self.rotate_into(&x[start..start + d], pos, scale, row);
        }
        out
    }

    /// Blocks of query rows with the number of leading keys each block sees: one past the last
    /// unmasked key of any of its rows. Under a causal mask the early blocks skip the later keys,
    /// whose probabilities are exactly 0 (a row with every key masked attends to all of them).
    fn blocks(&self, dims: Dims, b: usize) -> Vec<(Range<usize>, usize)> {
        let (t, s) = (dims.t, dims.s);
        let visible = self.bias[b * t * s..][..t * s]
            .chunks(s)
            .map(|row| {
                row.iter()
                    .rposition(|&v| v > MASKED_LIMIT)
                    .map_or(s, |j| j + 1)
            })
            .collect::<Vec<_>>();
        if visible.iter().all(|&e| e == s) {
            return vec![(0..t, s)];
        }
        (0..t)
            .step_by(QUERY_BLOCK)
            .map(|r0| {
                let rows = r0..(r0 + QUERY_BLOCK).min(t);
                let keys = visible[rows.clone()].iter().copied().max().unwrap_or(s);
                (rows, keys)
            })
            .collect()
    }

    /// Attention probabilities [rows, keys] of query rows `qr` [T, D] against the first `keys`
    /// key rows `kr` in batch `b`.
    fn probabilities(
        &self,
        dims: Dims,
        b: usize,
        (rows, keys): (&Range<usize>, usize),
        qr: &[f32],
        kr: &[f32],
    ) -> Vec<f32> {
        let (t, s, d) = (dims.t, dims.s, self.head_dim);
        let mut p = product(
            Mat::rows(&qr[rows.start * d..], rows.len(), d, d),
            Mat::rows(kr, keys, d, d).t(),
            Threads::This,
        );
        let bias = &self.bias[(b * t + rows.start) * s..][..rows.len() * s];
        for (row, bias) in p.chunks_mut(keys).zip(bias.chunks(s)) {
            super::simd::softmax_biased(row, &bias[..keys]);
        }
        p
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    fn forward(&self, dims: Dims, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let (d, g) = (self.head_dim, self.group());
        let (qw, kw) = (self.heads * d, self.kv_heads * d);
        let mut out = vec![0f32; dims.b * dims.t * qw];
        let dst = Shared(out.as_mut_ptr());
        (0..dims.b * self.kv_heads)
            .into_par_iter()
            .for_each(|task| {
                let (b, kv) = (task / self.kv_heads, task % self.kv_heads);
                let kr = self.head_rows(k, b, dims.s, kw, kv * d, 1.0);
                let v_rows = &v[b * dims.s * kw + kv * d..];
                let blocks = self.blocks(dims, b);
                for h in kv * g..(kv + 1) * g {
                    let qr = self.head_rows(q, b, dims.t, qw, h * d, self.scale());
                    for (rows, keys) in &blocks {
                        let p = self.probabilities(dims, b, (rows, *keys), &qr, &kr);
                        let p = Mat::rows(&p, rows.len(), *keys, *keys);
                        let v_head = Mat::rows(v_rows, *keys, d, kw);
                        // SAFETY: task (b, kv) alone writes the rows of batch b in the columns
                        // of head h of kv's group, all inside `out`.
                        unsafe {
                            let o = dst.at((b * dims.t + rows.start) * qw + h * d);
                            product_to(o, qw, false, p, v_head, Threads::This);
                        }
                    }
                }
            });
        out
    }

    /// Gradients of q, k and v for the output gradient `go` [B, T, heads·D].
    fn backward(&self, dims: Dims, q: &[f32], k: &[f32], v: &[f32], go: &[f32]) -> [Vec<f32>; 3] {
        let (d, g) = (self.head_dim, self.group());
        let (qw, kw) = (self.heads * d, self.kv_heads * d);
        let (t, s) = (dims.t, dims.s);
        let mut gq = vec![0f32; q.len()];
        let mut gk = vec![0f32; k.len()];
        let mut gv = vec![0f32; v.len()];
        let (gq_p, gk_p, gv_p) = (
            Shared(gq.as_mut_ptr()),
            Shared(gk.as_mut_ptr()),
            Shared(gv.as_mut_ptr()),
        );
        (0..dims.b * self.kv_heads)
            .into_par_iter()
            .for_each(|task| {
                let (b, kv) = (task / self.kv_heads, task % self.kv_heads);
                let kr = self.head_rows(k, b, s, kw, kv * d, 1.0);
                let v_rows = &v[b * s * kw + kv * d..];
                let blocks = self.blocks(dims, b);
                let mut gkr = vec![0f32; s * d];
                let mut gv_head = vec![0f32; s * d];
                let mut row = vec![0f32; d];
                for h in kv * g..(kv + 1) * g {
                    let qr = self.head_rows(q, b, t, qw, h * d, self.scale());
                    for (rows, keys) in &blocks {
                        let (n, keys) = (rows.len(), *keys);
                        let mut p = self.probabilities(dims, b, (rows, keys), &qr, &kr);
                        let go_head = Mat::rows(&go[(b * t + rows.start) * qw + h * d..], n, d, qw);
                        let v_head = Mat::rows(v_rows, keys, d, kw);
                        // gv += pᵀ·go;  gp = go·vᵀ
                        accumulate(
                            &mut gv_head[..keys * d],
                            Mat::rows(&p, n, keys, keys).t(),
                            go_head,
                            Threads::This,
                        );
                        let gp = product(go_head, v_head.t(), Threads::This);
                        // Softmax backward, in place: gs = p ⊙ (gp − Σ_j gp_j p_j).
                        for (pr, gr) in p.chunks_mut(keys).zip(gp.chunks(keys)) {
                            let dot: f32 = pr.iter().zip(gr).map(|(p, g)| p * g).sum();
                            pr.iter_mut().zip(gr).for_each(|(p, g)| *p *= g - dot);
                        }
                        let gs = Mat::rows(&p, n, keys, keys);
                        // gqr = gs·kr;  gkr += gsᵀ·qr
                        let gqr = product(gs, Mat::rows(&kr, keys, d, d), Threads::This);
                        accumulate(
                            &mut gkr[..keys * d],
                            gs.t(),
                            Mat::rows(&qr[rows.start * d..], n, d, d),
                            Threads::This,
                        );
                        for (i, pos) in rows.clone().enumerate() {
                            self.unrotate_into(&gqr[i * d..][..d], pos, self.scale(), &mut row);
                            // SAFETY: task (b, kv) alone writes batch b's columns of head h.
                            unsafe {
                                let dst = gq_p.at((b * t + pos) * qw + h * d);
                                std::ptr::copy_nonoverlapping(row.as_ptr(), dst, d);
                            }
                        }
                    }
                }
                for pos in 0..s {
                    self.unrotate_into(&gkr[pos * d..][..d], pos, 1.0, &mut row);
                    // SAFETY: task (b, kv) alone writes batch b's columns of key head kv.
                    unsafe {
                        let at = (b * s + pos) * kw + kv * d;
                        std::ptr::copy_nonoverlapping(row.as_ptr(), gk_p.at(at), d);
                        std::ptr::copy_nonoverlapping(gv_head[pos * d..].as_ptr(), gv_p.at(at), d);
                    }
                }
            });
        [gq, gk, gv]
    }

    fn dims(&self, q: &Shape, k: &Shape, v: &Shape) -> candle_core::Result<Dims> {
        let (b, t, qw) = q.dims3()?;
        let (kb, s, kw) = k.dims3()?;
        if kb != b
            || k != v
            || qw != self.heads * self.head_dim
            || kw != self.kv_heads * self.head_dim
            || !self.heads.is_multiple_of(self.kv_heads)
            || self.bias.len() != b * t * s
            || self.rotary.as_ref().is_some_and(|r| {
                t != s || r.cos.len() < t * self.head_dim || r.sin.len() < t * self.head_dim
            })
        {
            candle_core::bail!("fused attention: q {q:?}, k {k:?}, v {v:?} do not fit the heads")
        }
        Ok(Dims { b, t, s })
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.dims(l1.shape(), l2.shape(), l3.shape())?;
        let out = self.forward(dims, values(s1, l1)?, values(s2, l2)?, values(s3, l3)?);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = self.dims(q.shape(), k.shape(), v.shape())?;
        let [gq, gk, gv] = with_values(q, |qv| {
            with_values(k, |kv| {
                with_values(v, |vv| {
                    with_values(grad, |gv| Ok(self.backward(dims, qv, kv, vv, gv)))
                })
            })
        })?;
        Ok((
            Some(Tensor::from_vec(gq, q.shape(), q.device())?),
            Some(Tensor::from_vec(gk, k.shape(), k.device())?),
            Some(Tensor::from_vec(gv, v.shape(), v.device())?),
        ))
    }
}

/// Attention of q [B, T, heads·D] over k, v [B, S, kv_heads·D]; merged heads [B, T, heads·D].
pub fn attention(op: Attention, q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}
