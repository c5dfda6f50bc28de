//! Matrix products with a frozen right-hand side whose backward passes compute only what
//! training needs. candle's own matmul backward also computes (and allocates) the gradient of the
//! weight even when nothing asks for it: for LoRA on a frozen model that doubles the cost of a
//! backward pass and allocates a weight-sized tensor per layer per step. A LoRA-adapted layer is
//! one operation, x·W + s·(x·Aᵀ)·Bᵀ, written into one output: composed, it would keep the base
//! product, the adapter's product and their sum, three output-sized tensors per layer.

use super::fused::{filled, gemm, values, with_values};
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Storage, Tensor};

/// A frozen weight [K, N], possibly a transposed view, and its storage's strides.
struct Frozen {
    weight: Tensor,
}

impl Frozen {
    /// Runs `f` with the weight as a strided operand after checking that [k, n] fits its
    /// storage.
    fn with_operand<R>(
        &self,
        k: usize,
        f: impl FnOnce(super::fused::Operand, usize) -> candle_core::Result<R>,
    ) -> candle_core::Result<R> {
        let (wk, n) = self.weight.dims2()?;
        if wk != k {
            candle_core::bail!("frozen matmul: [·, {k}] · [{wk}, {n}]")
        }
        let (storage, layout) = self.weight.storage_and_layout();
        let Storage::Cpu(w) = &*storage else {
            candle_core::bail!("frozen matmul: CPU weights only")
        };
        let w = w.as_slice::<f32>()?;
        let (rs, cs) = (layout.stride()[0], layout.stride()[1]);
        let start = layout.start_offset();
        if k == 0 || n == 0 || start + (k - 1) * rs + (n - 1) * cs >= w.len() {
            candle_core::bail!("frozen matmul: the weight's layout exceeds its storage")
        }
        f((w[start..].as_ptr(), rs as isize, cs as isize), n)
    }

    /// y [m, n] = x [m, k] · W.
    fn forward(&self, x: &[f32], m: usize, k: usize) -> candle_core::Result<Vec<f32>> {
        self.with_operand(k, |w, n| {
            // Safety: x is [m, k] row-major, w was checked to cover [k, n] with k > 0, and the
            // product writes all of y [m, n].
            Ok(unsafe {
                filled(m * n, |y| {
                    gemm(
                        m,
                        n,
                        k,
                        y,
                        n as isize,
                        false,
                        (x.as_ptr(), k as isize, 1),
                        w,
                        true,
                    )
                })
            })
        })
    }

    /// gx [m, k] = g [m, n] · Wᵀ.
    fn input_grad(&self, g: &[f32], m: usize, k: usize) -> candle_core::Result<Vec<f32>> {
        self.with_operand(k, |w, n| {
            // Safety: g is [m, n] with n > 0; Wᵀ swaps the checked strides of W; the product
            // writes all of gx [m, k].
            Ok(unsafe {
                filled(m * k, |gx| {
                    gemm(
                        m,
                        k,
                        n,
                        gx,
                        k as isize,
                        false,
                        (g.as_ptr(), n as isize, 1),
                        (w.0, w.2, w.1),
                        true,
                    )
                })
            })
        })
    }
}

struct FrozenMatmul(Frozen);

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = layout.shape().dims2()?;
        let y = self.0.forward(values(storage, layout)?, m, k)?;
        Ok((CpuStorage::F32(y), Shape::from((m, self.0.weight.dim(1)?))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (m, k) = arg.dims2()?;
        let gx = with_values(grad_res, |g| self.0.input_grad(g, m, k))?;
        Ok(Some(Tensor::from_vec(gx, (m, k), arg.device())?))
    }
}

/// x [M, K] · w [K, N] for a frozen `w` (not a variable, not computed from one), recording a
/// backward pass for `x` only. f32 on the CPU.
pub fn frozen_matmul(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?
        .apply_op1(FrozenMatmul(Frozen { weight: w.clone() }))
}

/// x·W + s·(x·Aᵀ)·Bᵀ with W frozen and the adapter's A [r, K] and B [N, r] trainable.
struct FrozenLora {
    base: Frozen,
    scale: f32,
}

impl FrozenLora {
    /// u [m, r] = x [m, k] · Aᵀ.
    fn down(x: &[f32], a: &[f32], m: usize, k: usize, r: usize) -> Vec<f32> {
        let mut u = vec![0f32; m * r];
        // Safety: x is [m, k], a is [r, k] read transposed, u is [m, r].
        unsafe {
            gemm(
                m,
                r,
                k,
                u.as_mut_ptr(),
                r as isize,
                false,
                (x.as_ptr(), k as isize, 1),
                (a.as_ptr(), 1, k as isize),
                true,
            )
        };
        u
    }
}

impl CustomOp3 for FrozenLora {
    fn name(&self) -> &'static str {
        "frozen-lora-matmul"
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
        let (m, k) = l1.shape().dims2()?;
        let (r, ak) = l2.shape().dims2()?;
        let (n, br) = l3.shape().dims2()?;
        let (x, a, b) = (values(s1, l1)?, values(s2, l2)?, values(s3, l3)?);
        if ak != k || br != r {
            candle_core::bail!(
                "frozen-lora-matmul: x {:?}, A {:?}, B {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            )
        }
        let mut y = self.base.forward(x, m, k)?;
        if y.len() != m * n {
            candle_core::bail!(
                "frozen-lora-matmul: B {:?} does not fit the weight",
                l3.shape()
            )
        }
        let mut u = Self::down(x, a, m, k, r);
        u.iter_mut().for_each(|v| *v *= self.scale);
        // Safety: u is [m, r], b is [n, r] read transposed, y is [m, n].
        unsafe {
            gemm(
                m,
                n,
                r,
                y.as_mut_ptr(),
                n as isize,
                true,
                (u.as_ptr(), r as isize, 1),
                (b.as_ptr(), 1, r as isize),
                true,
            )
        };
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let ((m, k), (r, _), (n, _)) = (x.dims2()?, a.dims2()?, b.dims2()?);
        let s = self.scale;
        // With u = x·Aᵀ and gu = s·g·B:  gx = g·Wᵀ + gu·A,  gA = guᵀ·x,  gB = s·gᵀ·u.
        with_values(x, |xv| {
            with_values(a, |av| {
                with_values(b, |bv| {
                    with_values(grad, |g| {
                        let mut gu = vec![0f32; m * r];
                        // Safety (every product below): operands are the row-major buffers of
                        // the shapes named in the comment, transposed by swapping strides.
                        unsafe {
                            gemm(
                                m,
                                r,
                                n,
                                gu.as_mut_ptr(),
                                r as isize,
                                false,
                                (g.as_ptr(), n as isize, 1),
                                (bv.as_ptr(), r as isize, 1),
                                true,
                            )
                        };
                        gu.iter_mut().for_each(|v| *v *= s);
                        let gx = if x.track_op() {
                            let mut gx = self.base.input_grad(g, m, k)?;
                            unsafe {
                                gemm(
                                    m,
                                    k,
                                    r,
                                    gx.as_mut_ptr(),
                                    k as isize,
                                    true,
                                    (gu.as_ptr(), r as isize, 1),
                                    (av.as_ptr(), k as isize, 1),
                                    true,
                                )
                            };
                            Some(Tensor::from_vec(gx, (m, k), x.device())?)
                        } else {
                            None
                        };
                        let ga = if a.track_op() {
                            let mut ga = vec![0f32; r * k];
                            unsafe {
                                gemm(
                                    r,
                                    k,
                                    m,
                                    ga.as_mut_ptr(),
                                    k as isize,
                                    false,
                                    (gu.as_ptr(), 1, r as isize),
                                    (xv.as_ptr(), k as isize, 1),
                                    true,
                                )
                            };
                            Some(Tensor::from_vec(ga, (r, k), a.device())?)
                        } else {
                            None
                        };
                        let gb = if b.track_op() {
                            let u = Self::down(xv, av, m, k, r);
                            let mut gb = vec![0f32; n * r];
                            unsafe {
                                gemm(
                                    n,
                                    r,
                                    m,
                                    gb.as_mut_ptr(),
                                    r as isize,
                                    false,
                                    (g.as_ptr(), 1, n as isize),
                                    (u.as_ptr(), r as isize, 1),
                                    true,
                                )
                            };
                            gb.iter_mut().for_each(|v| *v *= s);
                            Some(Tensor::from_vec(gb, (n, r), b.device())?)
                        } else {
                            None
                        };
                        Ok((gx, ga, gb))
                    })
                })
            })
        })
    }
}

/// x [M, K] · w [K, N] + scale·(x·aᵀ)·bᵀ for a frozen `w` and an adapter's a [r, K], b [N, r].
/// f32 on the CPU.
pub fn frozen_lora_matmul(
    x: &Tensor,
    w: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
) -> candle_core::Result<Tensor> {
    let op = FrozenLora {
        base: Frozen { weight: w.clone() },
        scale: scale as f32,
    };
    x.contiguous()?
        .apply_op3(&a.contiguous()?, &b.contiguous()?, op)
}
