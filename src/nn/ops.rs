//! The tensor operations a transformer is written in. A model's forward pass is one generic
//! function over [`Ops`]; running it on `Eager` computes with candle (and records
//! gradients through trainable parameters), running it on `OnnxOps` emits the same
//! computation as ONNX nodes. Training and export therefore cannot drift apart except inside one
//! primitive here, and the ONNX Runtime parity tests pin each primitive.

use crate::error::Result;
use candle_core::Tensor;

pub use crate::kernels::MASKED;

/// Which keys a query may attend to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttentionPattern {
    /// Every non-padding key (encoders).
    Bidirectional,
    /// Keys at or before the query, optionally only the last `window` of them.
    Causal { window: Option<usize> },
}

pub trait Ops {
    /// A tensor (candle) or the name of a value in the graph (ONNX).
    type T: Clone;

    /// A parameter of the model by its checkpoint name.
    fn param(&mut self, name: &str) -> Result<Self::T>;
    fn has_param(&self, name: &str) -> bool;
    /// A constant computed by the architecture (rotary tables, say); `name` must be unique.
    fn constant(&mut self, name: &str, value: &Tensor) -> Result<Self::T>;

    /// Batched matrix product over the last two dimensions, broadcasting the leading ones.
    fn matmul(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    fn add(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    fn sub(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    fn mul(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    fn div(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    fn scale(&mut self, a: &Self::T, factor: f64) -> Result<Self::T>;
    fn add_scalar(&mut self, a: &Self::T, value: f64) -> Result<Self::T>;
    fn sqrt(&mut self, a: &Self::T) -> Result<Self::T>;
    fn neg(&mut self, a: &Self::T) -> Result<Self::T>;

    /// Mean over the last dimension, kept as size 1.
    fn mean_last(&mut self, a: &Self::T) -> Result<Self::T>;
    fn softmax_last(&mut self, a: &Self::T) -> Result<Self::T>;
    fn silu(&mut self, a: &Self::T) -> Result<Self::T>;
    /// GELU, exact (erf) or with the tanh approximation.
    fn gelu(&mut self, a: &Self::T, exact: bool) -> Result<Self::T>;

    /// Reshape; 0 keeps the input's size at that position, -1 is inferred (ONNX's convention).
    fn reshape(&mut self, a: &Self::T, shape: &[i64]) -> Result<Self::T>;
    fn permute(&mut self, a: &Self::T, perm: &[usize]) -> Result<Self::T>;
    fn narrow_last(&mut self, a: &Self::T, start: usize, len: usize) -> Result<Self::T>;
    fn concat_last(&mut self, parts: &[Self::T]) -> Result<Self::T>;

    /// Rows of `table` [N, H] picked by integer `ids` [B, T]: [B, T, H].
    fn gather_rows(&mut self, table: &Self::T, ids: &Self::T) -> Result<Self::T>;
    /// Row `index` of `table` [N, H]: [H].
    fn row(&mut self, table: &Self::T, index: usize) -> Result<Self::T>;
    /// The first T rows of `table` [N, ...], T being the sequence length of `ids` [B, T].
    fn leading_rows(&mut self, table: &Self::T, ids: &Self::T) -> Result<Self::T>;
    /// The additive attention bias [B, 1, 1, T or 1, T] for a padding mask [B, T] (1 = token).
    fn attention_bias(&mut self, mask: &Self::T, pattern: AttentionPattern) -> Result<Self::T>;

    /// x·w + scale·(x·aᵀ)·bᵀ: a linear layer (w [in, out]) with a LoRA adapter's
    /// a [r, in] and b [out, r].
    fn adapted_matmul(
        &mut self,
        x: &Self::T,
        w: &Self::T,
        a: &Self::T,
        b: &Self::T,
        scale: f64,
    ) -> Result<Self::T>
    where
        Self: Sized,
    {
        adapted_matmul_composed(self, x, w, a, b, scale)
    }

    /// RMSNorm over the last dimension: x / sqrt(mean(x²) + eps) · w.
    fn rms_norm(&mut self, x: &Self::T, w: &Self::T, eps: f64) -> Result<Self::T>
    where
        Self: Sized,
    {
        rms_norm_composed(self, x, w, eps)
    }

    /// SiLU(gate) · up: the gated MLP of the Llama family.
    fn swiglu(&mut self, gate: &Self::T, up: &Self::T) -> Result<Self::T>
    where
        Self: Sized,
    {
        let gate = self.silu(gate)?;
        self.mul(&gate, up)
    }

    /// x + down(SiLU(gate(n))·up(n)) with n = RMSNorm(x)·norm: the feed-forward half of a
    /// Llama-family block, its three projections plain linear layers with [out, in] weights.
    #[allow(clippy::too_many_arguments)]
    fn residual_gated_mlp(
        &mut self,
        x: &Self::T,
        norm: &Self::T,
        gate: &Self::T,
        up: &Self::T,
        down: &Self::T,
        eps: f64,
    ) -> Result<Self::T>
    where
        Self: Sized,
    {
        residual_gated_mlp_composed(self, x, norm, gate, up, down, eps)
    }

    /// Attention of layer `layer` on projected q, k, v [B, T, ·] with the heads of `heads`; see
    /// [`HeadLayout::attend_composed`]. The backend may compute it as one fused operation.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &mut self,
        heads: &HeadLayout,
        layer: usize,
        q: &Self::T,
        k: &Self::T,
        v: &Self::T,
        bias: &Self::T,
        rotary: Option<&Rotary<Self::T>>,
    ) -> Result<Self::T>
    where
        Self: Sized,
    {
        heads.attend_composed(self, layer, q, k, v, bias, rotary)
    }

    /// Rows of a per-position table (`leading_rows`) made to broadcast over split heads
    /// [B, KV, G, T, D]: as they are where they are [T, D]; a backend that reads positions per
    /// sequence ([B, T, D]) inserts the head axes.
    fn for_heads(&mut self, rows: &Self::T) -> Result<Self::T> {
        Ok(rows.clone())
    }

    /// Keys and values [B, KV, 1, T, D] of attention layer `layer`, extended by those of earlier
    /// calls when the backend keeps a cache (incremental decoding); as given otherwise.
    fn cached_kv(&mut self, _layer: usize, k: &Self::T, v: &Self::T) -> Result<(Self::T, Self::T)> {
        Ok((k.clone(), v.clone()))
    }
}

/// How a linear layer's weight is stored in the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightLayout {
    /// [out, in] (torch.nn.Linear).
    OutIn,
    /// [in, out] (GPT-2's Conv1D).
    InOut,
}

/// `x W^T + b`, plus a LoRA branch `(x A^T) B^T · scale` when the adapter's
/// `{prefix}.lora_A.weight` [r, in] and `{prefix}.lora_B.weight` [out, r] are present.
pub fn linear<O: Ops>(
    ops: &mut O,
    x: &O::T,
    prefix: &str,
    layout: WeightLayout,
    lora_scale: f64,
) -> Result<O::T> {
    let w = ops.param(&format!("{prefix}.weight"))?;
    let w = match layout {
        WeightLayout::OutIn => ops.permute(&w, &[1, 0])?,
        WeightLayout::InOut => w,
    };
    let lora_a = format!("{prefix}.lora_A.weight");
    let mut y = if ops.has_param(&lora_a) {
        let a = ops.param(&lora_a)?;
        let b = ops.param(&format!("{prefix}.lora_B.weight"))?;
        ops.adapted_matmul(x, &w, &a, &b, lora_scale)?
    } else {
        ops.matmul(x, &w)?
    };
    let bias = format!("{prefix}.bias");
    if ops.has_param(&bias) {
        let b = ops.param(&bias)?;
        y = ops.add(&y, &b)?;
    }
    Ok(y)
}

/// Whether `{prefix}` is a plain linear layer: no bias, no LoRA adapter.
pub fn is_plain_linear<O: Ops>(ops: &O, prefix: &str) -> bool {
    !ops.has_param(&format!("{prefix}.bias")) && !ops.has_param(&format!("{prefix}.lora_A.weight"))
}

/// [`Ops::residual_gated_mlp`] from primitives.
pub fn residual_gated_mlp_composed<O: Ops>(
    ops: &mut O,
    x: &O::T,
    norm: &O::T,
    gate: &O::T,
    up: &O::T,
    down: &O::T,
    eps: f64,
) -> Result<O::T> {
    let n = ops.rms_norm(x, norm, eps)?;
    let gate_t = ops.permute(gate, &[1, 0])?;
    let g = ops.matmul(&n, &gate_t)?;
    let up_t = ops.permute(up, &[1, 0])?;
    let u = ops.matmul(&n, &up_t)?;
    let s = ops.swiglu(&g, &u)?;
    let down_t = ops.permute(down, &[1, 0])?;
    let d = ops.matmul(&s, &down_t)?;
    ops.add(x, &d)
}

/// [`Ops::adapted_matmul`] from primitives.
pub fn adapted_matmul_composed<O: Ops>(
    ops: &mut O,
    x: &O::T,
    w: &O::T,
    a: &O::T,
    b: &O::T,
    scale: f64,
) -> Result<O::T> {
    let y = ops.matmul(x, w)?;
    let a_t = ops.permute(a, &[1, 0])?;
    let b_t = ops.permute(b, &[1, 0])?;
    let down = ops.matmul(x, &a_t)?;
    // Scaled at rank r rather than at the output width: the same product, a smaller tensor.
    let down = ops.scale(&down, scale)?;
    let up = ops.matmul(&down, &b_t)?;
    ops.add(&y, &up)
}

/// RMSNorm over the last dimension with `{prefix}.weight` (Llama family).
pub fn rms_norm<O: Ops>(ops: &mut O, x: &O::T, prefix: &str, eps: f64) -> Result<O::T> {
    let w = ops.param(&format!("{prefix}.weight"))?;
    ops.rms_norm(x, &w, eps)
}

/// RMSNorm from primitives: x / sqrt(mean(x²) + eps) · w.
pub fn rms_norm_composed<O: Ops>(ops: &mut O, x: &O::T, w: &O::T, eps: f64) -> Result<O::T> {
    let sq = ops.mul(x, x)?;
    let ms = ops.mean_last(&sq)?;
    let ms = ops.add_scalar(&ms, eps)?;
    let rms = ops.sqrt(&ms)?;
    let normed = ops.div(x, &rms)?;
    ops.mul(&normed, w)
}

/// LayerNorm over the last dimension with `{prefix}.weight` and `{prefix}.bias` (GPT-2, BERT).
pub fn layer_norm<O: Ops>(ops: &mut O, x: &O::T, prefix: &str, eps: f64) -> Result<O::T> {
    let mean = ops.mean_last(x)?;
    let centered = ops.sub(x, &mean)?;
    let sq = ops.mul(&centered, &centered)?;
    let var = ops.mean_last(&sq)?;
    let var = ops.add_scalar(&var, eps)?;
    let std = ops.sqrt(&var)?;
    let normed = ops.div(&centered, &std)?;
    let w = ops.param(&format!("{prefix}.weight"))?;
    let b = ops.param(&format!("{prefix}.bias"))?;
    let scaled = ops.mul(&normed, &w)?;
    ops.add(&scaled, &b)
}

/// Heads of one attention layer: `kv_heads` key/value heads, each shared by
/// `heads / kv_heads` query heads (grouped-query attention; equal counts is plain multi-head).
#[derive(Clone, Copy, Debug)]
pub struct HeadLayout {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl HeadLayout {
    /// [B, T, heads·D] → [B, KV, G, T, D]: query head h = kv·G + g, as Hugging Face's
    /// repeat_kv pairs them.
    pub fn split_queries<O: Ops>(&self, ops: &mut O, q: &O::T) -> Result<O::T> {
        let g = (self.heads / self.kv_heads) as i64;
        let q = ops.reshape(q, &[0, 0, self.kv_heads as i64, g, self.head_dim as i64])?;
        ops.permute(&q, &[0, 2, 3, 1, 4])
    }

    /// [B, T, KV·D] → [B, KV, 1, T, D], broadcast over the query heads of each group.
    pub fn split_keys<O: Ops>(&self, ops: &mut O, k: &O::T) -> Result<O::T> {
        let k = ops.reshape(k, &[0, 0, self.kv_heads as i64, 1, self.head_dim as i64])?;
        ops.permute(&k, &[0, 2, 3, 1, 4])
    }

    /// [B, KV, G, T, D] → [B, T, heads·D].
    pub fn merge<O: Ops>(&self, ops: &mut O, x: &O::T) -> Result<O::T> {
        let x = ops.permute(x, &[0, 3, 1, 2, 4])?;
        ops.reshape(&x, &[0, 0, -1])
    }

    /// Attention of layer `layer` on projected q, k, v [B, T, ·] from primitives: heads split,
    /// rotary positions applied when given, keys and values extended by the backend's cache,
    /// heads merged back. [`Ops::attend`] defaults to it.
    #[allow(clippy::too_many_arguments)]
    pub fn attend_composed<O: Ops>(
        &self,
        ops: &mut O,
        layer: usize,
        q: &O::T,
        k: &O::T,
        v: &O::T,
        bias: &O::T,
        rotary: Option<&Rotary<O::T>>,
    ) -> Result<O::T> {
        let mut q = self.split_queries(ops, q)?;
        let mut k = self.split_keys(ops, k)?;
        let v = self.split_keys(ops, v)?;
        if let Some(r) = rotary {
            q = apply_rotary(ops, &q, &r.cos, &r.sin, self.head_dim)?;
            k = apply_rotary(ops, &k, &r.cos, &r.sin, self.head_dim)?;
        }
        let (k, v) = ops.cached_kv(layer, &k, &v)?;
        let a = attention(ops, &q, &k, &v, bias, self.head_dim)?;
        self.merge(ops, &a)
    }
}

/// cos and sin [T, D] of the input's positions.
pub struct Rotary<T> {
    pub cos: T,
    pub sin: T,
}

/// x · Wᵀ for a weight `name` stored [out, in], without bias: an output head.
pub fn project<O: Ops>(ops: &mut O, x: &O::T, name: &str) -> Result<O::T> {
    let w = ops.param(name)?;
    let w_t = ops.permute(&w, &[1, 0])?;
    ops.matmul(x, &w_t)
}

/// Scaled dot-product attention on split heads: softmax(q kᵀ / √D + bias) v.
pub fn attention<O: Ops>(
    ops: &mut O,
    q: &O::T,
    k: &O::T,
    v: &O::T,
    bias: &O::T,
    head_dim: usize,
) -> Result<O::T> {
    let k_t = ops.permute(k, &[0, 1, 2, 4, 3])?;
    let scores = ops.matmul(q, &k_t)?;
    let scores = ops.scale(&scores, 1.0 / (head_dim as f64).sqrt())?;
    let scores = ops.add(&scores, bias)?;
    let probs = ops.softmax_last(&scores)?;
    ops.matmul(&probs, v)
}

/// Rotary position embedding (the "rotate half" form of Hugging Face's Llama):
/// x·cos + rotate_half(x)·sin with cos, sin [T, D] broadcast over the leading dimensions.
pub fn apply_rotary<O: Ops>(
    ops: &mut O,
    x: &O::T,
    cos: &O::T,
    sin: &O::T,
    head_dim: usize,
) -> Result<O::T> {
    let half = head_dim / 2;
    let x1 = ops.narrow_last(x, 0, half)?;
    let x2 = ops.narrow_last(x, half, half)?;
    let neg_x2 = ops.neg(&x2)?;
    let rotated = ops.concat_last(&[neg_x2, x1])?;
    let a = ops.mul(x, cos)?;
    let b = ops.mul(&rotated, sin)?;
    ops.add(&a, &b)
}
