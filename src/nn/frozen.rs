//! A matrix product with a frozen right-hand side whose backward pass computes only the input's
//! gradient. candle's own matmul backward also computes (and allocates) the gradient of the
//! weight even when nothing asks for it: for LoRA on a frozen model that doubles the cost of a
//! backward pass and allocates a weight-sized tensor per layer per step.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Storage, Tensor};

struct FrozenMatmul {
    /// [K, N], possibly a transposed view.
    weight: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let values = storage.as_slice::<f32>()?;
        // frozen_matmul hands over contiguous inputs only.
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("frozen-matmul: non-contiguous input")
        };
        let x = values[start..end].to_vec();
        let x = Tensor::from_vec(x, layout.shape(), &candle_core::Device::Cpu)?;
        let y = x.matmul(&self.weight)?;
        let shape = y.shape().clone();
        let (s, l) = y.storage_and_layout();
        match &*s {
            Storage::Cpu(cpu) if l.start_offset() == 0 && l.is_contiguous() => {
                Ok((cpu.clone(), shape))
            }
            _ => candle_core::bail!("frozen-matmul: unexpected result layout"),
        }
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&self.weight.t()?)?))
    }
}

/// x [M, K] · w [K, N] for a frozen `w` (not a variable, not computed from one), recording a
/// backward pass for `x` only.
pub fn frozen_matmul(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?
        .apply_op1(FrozenMatmul { weight: w.clone() })
}
