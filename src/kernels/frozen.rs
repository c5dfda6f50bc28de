//! Matrix products with a frozen right-hand side whose backward passes compute only what
//! training needs. candle's own matmul backward also computes (and allocates) the gradient of the
//! weight even when nothing asks for it: for LoRA on a frozen model that doubles the cost of a
//! backward pass and allocates a weight-sized tensor per layer per step. A LoRA-adapted layer is
//! one operation, x·W + s·(x·Aᵀ)·Bᵀ, written into one output: composed, it would keep the base
//! product, the adapter's product and their sum, three output-sized tensors per layer.

use super::mat::{Mat, Threads};
use super::products::{accumulate, product};
use super::storage::{values, with_values};
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Storage, Tensor};

const ALL: Threads = Threads::All;

/// A frozen weight [K, N], possibly a transposed view of its storage.
pub(super) struct Frozen {
    pub(super) weight: Tensor,
}

impl Frozen {
    /// Runs `f` on the weight as a [k, n] view.
    fn with_view<R>(
        &self,
        k: usize,
        f: impl FnOnce(Mat) -> candle_core::Result<R>,
    ) -> candle_core::Result<R> {
        let (wk, n) = self.weight.dims2()?;
        if wk != k {
            candle_core::bail!("frozen matmul: [·, {k}] · [{wk}, {n}]")
        }
        let (storage, layout) = self.weight.storage_and_layout();
        let Storage::Cpu(w) = &*storage else {
            candle_core::bail!("frozen matmul: CPU weights only")
        };
        let w = &w.as_slice::<f32>()?[layout.start_offset()..];
        let (rs, cs) = (layout.stride()[0], layout.stride()[1]);
        f(Mat::new(w, k, n, rs, cs))
    }

    /// y [m, n] = x [m, k] · W.
    pub(super) fn forward(&self, x: &[f32], m: usize, k: usize) -> candle_core::Result<Vec<f32>> {
        self.with_view(k, |w| Ok(product(Mat::rows(x, m, k, k), w, ALL)))
    }

    /// y [m, n] += x [m, k] · W.
    pub(super) fn forward_onto(
        &self,
        y: &mut [f32],
        x: &[f32],
        m: usize,
        k: usize,
    ) -> candle_core::Result<()> {
        self.with_view(k, |w| {
            accumulate(y, Mat::rows(x, m, k, k), w, ALL);
            Ok(())
        })
    }

    /// gx [m, k] += g [m, n] · Wᵀ.
    pub(super) fn input_grad_onto(
        &self,
        gx: &mut [f32],
        g: &[f32],
        m: usize,
        k: usize,
    ) -> candle_core::Result<()> {
        let n = self.weight.dim(1)?;
        self.with_view(k, |w| {
            accumulate(gx, Mat::rows(g, m, n, n), w.t(), ALL);
            Ok(())
        })
    }

    /// gx [m, k] = g [m, n] · Wᵀ.
    pub(super) fn input_grad(
        &self,
        g: &[f32],
        m: usize,
        k: usize,
    ) -> candle_core::Result<Vec<f32>> {
        let n = self.weight.dim(1)?;
        self.with_view(k, |w| Ok(product(Mat::rows(g, m, n, n), w.t(), ALL)))
    }
}

/// The rows of a [.., K] input taken as a matrix, and K. Taking the shape as it is, rather than
/// reshaping to two dimensions and back, keeps two reshape nodes per product out of the autograd
/// graph: candle's backward pass accumulates every node's gradient into a fresh zero tensor.
fn rows_and_width(shape: &Shape) -> candle_core::Result<(usize, usize)> {
    match shape.dims().split_last() {
        Some((&k, rows)) if !rows.is_empty() => Ok((rows.iter().product(), k)),
        _ => candle_core::bail!("frozen matmul: input of shape {shape:?}, not [.., K]"),
    }
}

/// `shape` with its last dimension replaced by `n`.
fn with_width(shape: &Shape, n: usize) -> Shape {
    let mut dims = shape.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    Shape::from(dims)
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
        let (m, k) = rows_and_width(layout.shape())?;
        let y = self.0.forward(values(storage, layout)?, m, k)?;
        Ok((
            CpuStorage::F32(y),
            with_width(layout.shape(), self.0.weight.dim(1)?),
        ))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (m, k) = rows_and_width(arg.shape())?;
        let gx = with_values(grad_res, |g| self.0.input_grad(g, m, k))?;
        Ok(Some(Tensor::from_vec(gx, arg.shape(), arg.device())?))
    }
}

/// x [.., K] · w [K, N] for a frozen `w` (not a variable, not computed from one), recording a
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
        let (m, k) = rows_and_width(l1.shape())?;
        let (r, ak) = l2.shape().dims2()?;
        let (n, br) = l3.shape().dims2()?;
        if ak != k || br != r || n != self.base.weight.dim(1)? {
            candle_core::bail!(
                "frozen-lora-matmul: x {:?}, A {:?}, B {:?}, W {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape(),
                self.base.weight.shape()
            )
        }
        let (x, a, b) = (values(s1, l1)?, values(s2, l2)?, values(s3, l3)?);
        let mut y = self.base.forward(x, m, k)?;
        let mut u = product(Mat::rows(x, m, k, k), Mat::rows(a, r, k, k).t(), ALL);
        u.iter_mut().for_each(|v| *v *= self.scale);
        accumulate(
            &mut y,
            Mat::rows(&u, m, r, r),
            Mat::rows(b, n, r, r).t(),
            ALL,
        );
        Ok((CpuStorage::F32(y), with_width(l1.shape(), n)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let ((m, k), (r, _), (n, _)) = (rows_and_width(x.shape())?, a.dims2()?, b.dims2()?);
        let s = self.scale;
        // With u = x·Aᵀ and gu = s·g·B:  gx = g·Wᵀ + gu·A,  gA = guᵀ·x,  gB = s·gᵀ·u.
        with_values(x, |xv| {
            with_values(a, |av| {
                with_values(b, |bv| {
                    with_values(grad, |gv| {
                        let (xm, am) = (Mat::rows(xv, m, k, k), Mat::rows(av, r, k, k));
                        let g = Mat::rows(gv, m, n, n);
                        let mut gu = product(g, Mat::rows(bv, n, r, r), ALL);
                        gu.iter_mut().for_each(|v| *v *= s);
                        let gum = Mat::rows(&gu, m, r, r);
                        let gx = if x.track_op() {
                            let mut gx = self.base.input_grad(gv, m, k)?;
                            accumulate(&mut gx, gum, am, ALL);
                            Some(Tensor::from_vec(gx, x.shape(), x.device())?)
                        } else {
                            None
                        };
                        let ga = if a.track_op() {
                            let ga = product(gum.t(), xm, ALL);
                            Some(Tensor::from_vec(ga, (r, k), a.device())?)
                        } else {
                            None
                        };
                        let gb = if b.track_op() {
                            let u = product(xm, am.t(), ALL);
                            let mut gb = product(g.t(), Mat::rows(&u, m, r, r), ALL);
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

/// x [.., K] · w [K, N] + scale·(x·aᵀ)·bᵀ for a frozen `w` and an adapter's a [r, K], b [N, r].
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
