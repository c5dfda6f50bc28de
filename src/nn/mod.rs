//! Building blocks. Each block gives its parameter names and shapes, a candle forward pass
//! (differentiable, for training) and its ONNX emission, so that the trained graph and the
//! exported graph are two readings of one description.

mod block;
pub mod eager;
pub mod onnx;
pub mod ops;
mod params;

pub use block::{Block, ParamInit, ParamSpec};
pub use params::{Params, RunningStats};

use candle_core::{Tensor, D};

/// log-softmax over the last dimension from primitive ops, so gradients flow
/// (candle's fused softmax kernels have no backward). The max is detached: the shift cancels
/// in the result, so its gradient is zero anyway.
pub fn log_softmax(logits: &Tensor) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&log_sum)
}

/// log-softmax(logits)[targets] of each row: logits [N, V], targets [N] → [N], differentiable.
pub fn target_log_probs(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    if let Some(lp) = crate::kernels::target_log_probs(logits, targets) {
        return lp;
    }
    log_softmax(logits)?
        .gather(&targets.unsqueeze(1)?, 1)?
        .squeeze(1)
}

/// Softmax probabilities for evaluation (no gradient needed).
pub fn softmax(logits: &Tensor) -> candle_core::Result<Tensor> {
    log_softmax(logits)?.exp()
}
