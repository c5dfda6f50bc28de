//! Hand-written CPU kernels with their own backward passes, for the steps that dominate training
//! a transformer: products with frozen weights (with or without a LoRA adapter), RMSNorm, SiLU·up,
//! the feed-forward half of a Llama block, attention, and target log-probabilities.
//!
//! This module is the one entry. Each function below runs its kernel when the kernel applies to
//! the operands and returns `None` otherwise, so that the caller (the `Eager` backend of
//! the `nn` module) keeps the composed form, which runs on any device. The composed forms are what
//! the kernels are tested against, outputs and input gradients alike.
//!
//! Inside: scalar math ([`math`]) and its AVX2 rows ([`simd`]); strided matrix views ([`mat`]) and
//! their products ([`products`], on lethe's own packed kernels in [`sgemm`] where the CPU has AVX2
//! and FMA); the fused operations themselves ([`fused`], [`frozen`], [`mlp`], [`attention`]).

mod attention;
mod frozen;
mod fused;
mod mat;
mod math;
mod mlp;
mod products;
#[cfg(target_arch = "x86_64")]
mod sgemm;
mod simd;
mod storage;

pub use attention::{Attention, RotaryRows};

use candle_core::{DType, Tensor};

/// The additive attention bias of a masked position. Finite, so a row with every key masked (a
/// padding query) gives uniform weights rather than NaN; exp(-1e9 - max) is exactly 0 in f32.
/// The attention kernel tells masked keys by it; the attention biases of `nn` are built from it.
pub const MASKED: f64 = -1e9;

type Fused = Option<candle_core::Result<Tensor>>;

/// Whether the kernels run on these operands: f32 tensors in the CPU's memory.
pub fn applies(operands: &[&Tensor]) -> bool {
    operands
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// x [.., K] · w [K, N] for a weight that takes no gradient: the backward pass computes only
/// the input's gradient (candle's would compute the weight's too).
pub fn frozen_matmul(x: &Tensor, w: &Tensor) -> Fused {
    let fits = applies(&[x, w]) && !w.track_op() && w.rank() == 2 && x.rank() >= 2;
    fits.then(|| frozen::frozen_matmul(x, w))
}

/// x·w + scale·(x·a)·b for a frozen weight w [K, N] and LoRA factors a [K, r], b [r, N].
pub fn adapted_matmul(x: &Tensor, w: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> Fused {
    let fits = applies(&[x, w, a, b]) && !w.track_op() && w.rank() == 2 && x.rank() >= 2;
    fits.then(|| frozen::frozen_lora_matmul(x, w, a, b, scale))
}

/// RMSNorm(x)·w over the last dimension.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Fused {
    applies(&[x, w]).then(|| fused::rms_norm(x, w, eps))
}

/// SiLU(gate)·up, element by element.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Fused {
    applies(&[gate, up]).then(|| fused::swiglu(gate, up))
}

/// x + down(SiLU(gate(n))·up(n)) with n = RMSNorm(x)·norm, when every weight is frozen.
pub fn residual_gated_mlp(
    x: &Tensor,
    norm: &Tensor,
    gate: &Tensor,
    up: &Tensor,
    down: &Tensor,
    eps: f64,
) -> Fused {
    let frozen = [norm, gate, up, down].iter().all(|w| !w.track_op());
    let fits = frozen
        && applies(&[x, norm, gate, up, down])
        && [gate, up, down].iter().all(|w| w.rank() == 2);
    fits.then(|| mlp::gated_mlp(x, norm, gate, up, down, eps))
}

/// Attention of q [B, T, H·D] over k, v [B, S, KV·D] in projection layout, heads merged in the
/// output; the caller has checked [`applies`] to build `op`'s shared inputs.
pub fn attention(op: Attention, q: &Tensor, k: &Tensor, v: &Tensor) -> Fused {
    applies(&[q, k, v]).then(|| attention::attention(op, q, k, v))
}

/// log-softmax(logits)[target] per row: logits [N, V], targets [N].
pub fn target_log_probs(logits: &Tensor, targets: &Tensor) -> Fused {
    applies(&[logits]).then(|| fused::target_log_probs(logits, targets))
}
