//! Access to the values of CPU tensors, for kernels that read candle's storage directly.

use candle_core::{CpuStorage, Layout, Storage, Tensor};

/// The values of a contiguous f32 storage.
pub fn values<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let all = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&all[start..end]),
        None => candle_core::bail!("fused kernel: non-contiguous input"),
    }
}

/// Runs `f` on the row-major values of `t` (copied only when `t` is not contiguous).
pub fn with_values<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(values(cpu, layout)?),
        _ => candle_core::bail!("fused kernel: CPU tensors only"),
    }
}
