//! [`Ops`] computed with candle: the training and evaluation forward pass. Gradients flow
//! through every primitive (candle's fused softmax has no backward, so softmax is built here).

use super::ops::{self, AttentionPattern, HeadLayout, Ops, Rotary, MASKED};
use super::Params;
use crate::error::{Error, Result};
use crate::kernels::{self, Attention, RotaryRows};
use candle_core::{DType, Device, Tensor, TensorId, D};
use std::sync::Arc;

pub struct Eager<'a> {
    pub params: &'a Params,
    pub device: Device,
    cache: Option<&'a mut KvCache>,
    /// The fused attention kernel's copies of the attention bias and rotary rows, made once per
    /// forward pass: every layer gets the same tensors.
    attention_inputs: Option<AttentionInputs>,
}

struct AttentionInputs {
    /// Ids of the bias and cos tensors these copies were made from.
    key: (TensorId, Option<TensorId>),
    bias: Arc<Vec<f32>>,
    rotary: Option<Arc<RotaryRows>>,
}

/// Keys and values of the tokens seen so far, for decoding one token at a time.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Tokens already in the cache: the position of the next input token.
    pub offset: usize,
}

impl<'a> Eager<'a> {
    /// A forward pass over `params`, on their device.
    pub fn new(params: &'a Params) -> Self {
        Eager {
            params,
            device: params.device().clone(),
            cache: None,
            attention_inputs: None,
        }
    }

    /// A forward pass that continues the sequence held in `cache` and extends it; the caller
    /// advances `cache.offset` by the number of input tokens afterwards.
    pub fn with_cache(params: &'a Params, cache: &'a mut KvCache) -> Self {
        Eager {
            params,
            device: params.device().clone(),
            cache: Some(cache),
            attention_inputs: None,
        }
    }

    fn offset(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.offset)
    }
}

/// Rows read from a table held in a lower precision (crate::precision), as the f32 the
/// activations are computed in. (A no-op for f32 tables: candle returns the same tensor.)
fn in_f32(t: Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::F32)?)
}

impl Ops for Eager<'_> {
    type T = Tensor;

    fn param(&mut self, name: &str) -> Result<Tensor> {
        Ok(self.params.get(name)?.clone())
    }

    fn has_param(&self, name: &str) -> bool {
        self.params.get(name).is_ok()
    }

    fn constant(&mut self, _name: &str, value: &Tensor) -> Result<Tensor> {
        Ok(value.to_device(&self.device)?)
    }

    fn matmul(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let (ra, rb) = (a.rank(), b.rank());
        if rb == 2 && ra >= 2 {
            // A frozen weight: only the input needs a gradient.
            if let Some(y) = kernels::frozen_matmul(a, b) {
                return Ok(y?);
            }
            // x [.., K] · W [K, N]: one large matrix product over the flattened rows.
            let dims = a.dims().to_vec();
            let rows: usize = dims[..ra - 1].iter().product();
            let x = a.reshape((rows, dims[ra - 1]))?;
            // A weight held in a lower precision (crate::precision) multiplies in its own dtype,
            // as autocast does; the product returns to the activations' dtype.
            let y = if b.dtype() == a.dtype() {
                x.matmul(b)?
            } else {
                x.to_dtype(b.dtype())?.matmul(b)?.to_dtype(a.dtype())?
            };
            let mut out = dims;
            out[ra - 1] = b.dim(1)?;
            return Ok(y.reshape(out)?);
        }
        // Broadcast batch dimensions (a key head shared by a group of query heads) are
        // materialised: candle's matmul takes no zero strides.
        let batch_a = &a.dims()[..ra - 2];
        let batch_b = &b.dims()[..rb - 2];
        let batch = candle_core::Shape::from(batch_a)
            .broadcast_shape_binary_op(&candle_core::Shape::from(batch_b), "matmul")?;
        let n: usize = batch.elem_count();
        // Flattened to one batch dimension: candle rejects the odd strides that size-1
        // dimensions can carry.
        let flat = |t: &Tensor, r: usize| -> Result<Tensor> {
            let (m, k) = (t.dim(r - 2)?, t.dim(r - 1)?);
            let mut dims = batch.dims().to_vec();
            dims.extend_from_slice(&[m, k]);
            Ok(t.broadcast_as(dims)?.contiguous()?.reshape((n, m, k))?)
        };
        let y = flat(a, ra)?.matmul(&flat(b, rb)?)?;
        let mut dims = batch.dims().to_vec();
        dims.extend_from_slice(&y.dims()[1..]);
        Ok(y.reshape(dims)?)
    }

    fn add(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok(a.broadcast_add(b)?)
    }

    fn sub(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok(a.broadcast_sub(b)?)
    }

    fn mul(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok(a.broadcast_mul(b)?)
    }

    fn div(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok(a.broadcast_div(b)?)
    }

    fn scale(&mut self, a: &Tensor, factor: f64) -> Result<Tensor> {
        Ok((a * factor)?)
    }

    fn add_scalar(&mut self, a: &Tensor, value: f64) -> Result<Tensor> {
        Ok((a + value)?)
    }

    fn sqrt(&mut self, a: &Tensor) -> Result<Tensor> {
        Ok(a.sqrt()?)
    }

    fn neg(&mut self, a: &Tensor) -> Result<Tensor> {
        Ok(a.neg()?)
    }

    fn mean_last(&mut self, a: &Tensor) -> Result<Tensor> {
        Ok(a.mean_keepdim(D::Minus1)?)
    }

    fn softmax_last(&mut self, a: &Tensor) -> Result<Tensor> {
        // The max only shifts the exponent; its gradient cancels, so it is detached.
        let max = a.max_keepdim(D::Minus1)?.detach();
        let e = a.broadcast_sub(&max)?.exp()?;
        let sum = e.sum_keepdim(D::Minus1)?;
        Ok(e.broadcast_div(&sum)?)
    }

    fn silu(&mut self, a: &Tensor) -> Result<Tensor> {
        // candle's fused SiLU has a backward and keeps one tensor for it, not four.
        Ok(a.silu()?)
    }

    fn gelu(&mut self, a: &Tensor, exact: bool) -> Result<Tensor> {
        Ok(if exact { a.gelu_erf()? } else { a.gelu()? })
    }

    fn reshape(&mut self, a: &Tensor, shape: &[i64]) -> Result<Tensor> {
        let dims = a.dims();
        let total = a.elem_count();
        let mut out: Vec<usize> = Vec::with_capacity(shape.len());
        let mut infer = None;
        for (i, &s) in shape.iter().enumerate() {
            match s {
                0 => out.push(*dims.get(i).ok_or_else(|| {
                    Error::Config(format!("reshape {dims:?} to {shape:?}: no dimension {i}"))
                })?),
                -1 => {
                    infer = Some(i);
                    out.push(1);
                }
                n => out.push(n as usize),
            }
        }
        if let Some(i) = infer {
            let known: usize = out.iter().product();
            out[i] = total / known.max(1);
        }
        Ok(a.contiguous()?.reshape(out)?)
    }

    fn permute(&mut self, a: &Tensor, perm: &[usize]) -> Result<Tensor> {
        Ok(a.permute(perm)?)
    }

    fn narrow_last(&mut self, a: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        Ok(a.narrow(D::Minus1, start, len)?)
    }

    fn concat_last(&mut self, parts: &[Tensor]) -> Result<Tensor> {
        Ok(Tensor::cat(parts, D::Minus1)?)
    }

    fn gather_rows(&mut self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let rows = table.index_select(&ids.flatten_all()?, 0)?;
        Ok(in_f32(rows)?.reshape((b, t, table.dim(1)?))?)
    }

    fn row(&mut self, table: &Tensor, index: usize) -> Result<Tensor> {
        in_f32(table.get(index)?)
    }

    fn leading_rows(&mut self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let (offset, t) = (self.offset(), ids.dim(1)?);
        if offset + t > table.dim(0)? {
            return Err(Error::Usage(format!(
                "a sequence of {} tokens is longer than the model's {} positions",
                offset + t,
                table.dim(0)?
            )));
        }
        in_f32(table.narrow(0, offset, t)?)
    }

    fn attention_bias(&mut self, mask: &Tensor, pattern: AttentionPattern) -> Result<Tensor> {
        // With a cache the mask covers every key: the cached ones, then this call's queries.
        let (b, keys) = mask.dims2()?;
        let offset = self.offset();
        let queries = keys.checked_sub(offset).ok_or_else(|| {
            Error::Usage("the attention mask is shorter than the cached sequence".into())
        })?;
        let keep = mask.to_dtype(DType::F32)?;
        let padding = ((1.0 - keep)? * MASKED)?.reshape((b, 1, 1, 1, keys))?;
        match pattern {
            AttentionPattern::Bidirectional => Ok(padding),
            AttentionPattern::Causal { window } => {
                let mut bias = vec![0f32; queries * keys];
                for q in 0..queries {
                    let i = q + offset;
                    for j in 0..keys {
                        let outside_window = window.is_some_and(|w| i >= j + w);
                        if j > i || outside_window {
                            bias[q * keys + j] = MASKED as f32;
                        }
                    }
                }
                let causal = Tensor::from_vec(bias, (1, 1, 1, queries, keys), &self.device)?;
                Ok(padding.broadcast_add(&causal)?)
            }
        }
    }

    fn adapted_matmul(
        &mut self,
        x: &Tensor,
        w: &Tensor,
        a: &Tensor,
        b: &Tensor,
        scale: f64,
    ) -> Result<Tensor> {
        match kernels::adapted_matmul(x, w, a, b, scale) {
            Some(y) => Ok(y?),
            None => ops::adapted_matmul_composed(self, x, w, a, b, scale),
        }
    }

    fn rms_norm(&mut self, x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
        match kernels::rms_norm(x, w, eps) {
            Some(y) => Ok(y?),
            None => ops::rms_norm_composed(self, x, w, eps),
        }
    }

    fn swiglu(&mut self, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        match kernels::swiglu(gate, up) {
            Some(y) => Ok(y?),
            None => Ok(gate.silu()?.mul(up)?),
        }
    }

    fn residual_gated_mlp(
        &mut self,
        x: &Tensor,
        norm: &Tensor,
        gate: &Tensor,
        up: &Tensor,
        down: &Tensor,
        eps: f64,
    ) -> Result<Tensor> {
        match kernels::residual_gated_mlp(x, norm, gate, up, down, eps) {
            Some(y) => Ok(y?),
            None => ops::residual_gated_mlp_composed(self, x, norm, gate, up, down, eps),
        }
    }

    fn attend(
        &mut self,
        heads: &HeadLayout,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: &Tensor,
        rotary: Option<&Rotary<Tensor>>,
    ) -> Result<Tensor> {
        // Incremental decoding extends cached keys; it runs one token at a time, where fusing
        // saves little, so it keeps the composed form.
        if self.cache.is_some() || !kernels::applies(&[q, k, v]) {
            return heads.attend_composed(self, layer, q, k, v, bias, rotary);
        }
        let (b, t, _) = q.dims3()?;
        let s = k.dim(1)?;
        let key = (bias.id(), rotary.map(|r| r.cos.id()));
        if self.attention_inputs.as_ref().is_none_or(|c| c.key != key) {
            let rows = |x: &Tensor| -> Result<Vec<f32>> { Ok(x.flatten_all()?.to_vec1::<f32>()?) };
            self.attention_inputs = Some(AttentionInputs {
                key,
                bias: Arc::new(rows(&bias.broadcast_as((b, 1, 1, t, s))?)?),
                rotary: match rotary {
                    Some(r) => Some(Arc::new(RotaryRows {
                        cos: rows(&r.cos)?,
                        sin: rows(&r.sin)?,
                    })),
                    None => None,
                },
            });
        }
        let inputs = self.attention_inputs.as_ref().expect("set above");
        let op = Attention {
            heads: heads.heads,
            kv_heads: heads.kv_heads,
            head_dim: heads.head_dim,
            bias: inputs.bias.clone(),
            rotary: inputs.rotary.clone(),
        };
        match kernels::attention(op, q, k, v) {
            Some(y) => Ok(y?),
            None => heads.attend_composed(self, layer, q, k, v, bias, rotary),
        }
    }

    fn cached_kv(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let Some(cache) = self.cache.as_deref_mut() else {
            return Ok((k.clone(), v.clone()));
        };
        if cache.layers.len() <= layer {
            cache.layers.resize(layer + 1, None);
        }
        let (k, v) = match &cache.layers[layer] {
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 3)?, Tensor::cat(&[pv, v], 3)?),
            None => (k.clone(), v.clone()),
        };
        cache.layers[layer] = Some((k.clone(), v.clone()));
        Ok((k, v))
    }
}

#[cfg(test)]
mod tests {
    //! The fused kernels against the same computation from primitives: outputs and every
    //! input's gradient.
    use super::*;
    use candle_core::Var;

    fn random(shape: &[usize], seed: u64) -> Var {
        let mut rng = crate::rng::Rng::new(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)
            .collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    }

    /// Σ out ⊙ r for a fixed random r, so every output element carries its own gradient.
    fn probe(out: &Tensor) -> Tensor {
        let r = random(out.dims(), 99);
        (out * r.as_tensor()).unwrap().sum_all().unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// Compares `fused` with `composed` on `inputs`: the outputs and the gradients.
    fn check(inputs: &[&Var], tol: f32, f: impl Fn(&mut Eager, bool) -> Tensor) {
        let params = Params::new(&Device::Cpu);
        let mut eager = Eager::new(&params);
        let (fused, composed) = (f(&mut eager, true), f(&mut eager, false));
        assert!(
            max_diff(&fused, &composed) < tol,
            "outputs differ by {}",
            max_diff(&fused, &composed)
        );
        let (gf, gc) = (
            probe(&fused).backward().unwrap(),
            probe(&composed).backward().unwrap(),
        );
        for (i, x) in inputs.iter().enumerate() {
            let (a, b) = (
                gf.get(x.as_tensor()).unwrap(),
                gc.get(x.as_tensor()).unwrap(),
            );
            let d = max_diff(a, b);
            let scale = b
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                scale > 0.0 && d < tol * scale.max(1.0),
                "gradient {i} differs by {d} (scale {scale})"
            );
        }
    }

    #[test]
    fn fused_rms_norm_matches_primitives() {
        let (x, w) = (random(&[3, 5, 16], 1), random(&[16], 2));
        check(&[&x, &w], 1e-5, |e, fused| {
            if fused {
                e.rms_norm(x.as_tensor(), w.as_tensor(), 1e-5).unwrap()
            } else {
                ops::rms_norm_composed(e, x.as_tensor(), w.as_tensor(), 1e-5).unwrap()
            }
        });
    }

    #[test]
    fn fused_swiglu_matches_primitives() {
        let (g, u) = (random(&[4, 7, 12], 3), random(&[4, 7, 12], 4));
        check(&[&g, &u], 1e-5, |e, fused| {
            if fused {
                e.swiglu(g.as_tensor(), u.as_tensor()).unwrap()
            } else {
                g.as_tensor().silu().unwrap().mul(u.as_tensor()).unwrap()
            }
        });
    }

    #[test]
    fn fused_target_log_probs_match_log_softmax() {
        let logits = random(&[5, 11], 8);
        let logits = Var::from_tensor(&(logits.as_tensor() * 4.0).unwrap()).unwrap();
        let targets = Tensor::new(&[0u32, 10, 3, 3, 7], &Device::Cpu).unwrap();
        check(&[&logits], 1e-5, |_, fused| {
            let x = logits.as_tensor();
            if fused {
                crate::nn::target_log_probs(x, &targets).unwrap()
            } else {
                let lp = crate::nn::log_softmax(x).unwrap();
                lp.gather(&targets.unsqueeze(1).unwrap(), 1)
                    .unwrap()
                    .squeeze(1)
                    .unwrap()
            }
        });
    }

    #[test]
    fn fused_lora_linear_matches_primitives() {
        let x = random(&[2, 5, 12], 10);
        let w = random(&[9, 12], 11);
        let w_t = w.as_tensor().detach().t().unwrap();
        let (a, b) = (random(&[3, 12], 12), random(&[9, 3], 13));
        check(&[&x, &a, &b], 1e-5, |e, fused| {
            let (xt, at, bt) = (x.as_tensor(), a.as_tensor(), b.as_tensor());
            if fused {
                e.adapted_matmul(xt, &w_t, at, bt, 2.0).unwrap()
            } else {
                ops::adapted_matmul_composed(e, xt, &w_t, at, bt, 2.0).unwrap()
            }
        });
    }

    #[test]
    fn fused_gated_mlp_matches_primitives() {
        let x = random(&[2, 5, 16], 20);
        let frozen = |shape: &[usize], seed| random(shape, seed).as_tensor().detach();
        let (norm, gate, up, down) = (
            frozen(&[16], 21),
            frozen(&[24, 16], 22),
            frozen(&[24, 16], 23),
            frozen(&[16, 24], 24),
        );
        check(&[&x], 1e-5, |e, fused| {
            let xt = x.as_tensor();
            if fused {
                e.residual_gated_mlp(xt, &norm, &gate, &up, &down, 1e-5)
                    .unwrap()
            } else {
                ops::residual_gated_mlp_composed(e, xt, &norm, &gate, &up, &down, 1e-5).unwrap()
            }
        });
    }

    #[test]
    fn a_gated_mlp_with_trainable_weights_gives_them_gradients() {
        let x = random(&[2, 3, 8], 30);
        let gate = random(&[12, 8], 31);
        let (norm, up, down) = (
            random(&[8], 32).as_tensor().detach(),
            random(&[12, 8], 33).as_tensor().detach(),
            random(&[8, 12], 34).as_tensor().detach(),
        );
        let params = Params::new(&Device::Cpu);
        let mut eager = Eager::new(&params);
        let y = eager
            .residual_gated_mlp(x.as_tensor(), &norm, gate.as_tensor(), &up, &down, 1e-5)
            .unwrap();
        let grads = probe(&y).backward().unwrap();
        assert!(grads.get(gate.as_tensor()).is_some());
        assert!(grads.get(x.as_tensor()).is_some());
    }

    fn attention_case(pattern: AttentionPattern, rotary: bool, t: usize) {
        let heads = HeadLayout {
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
        };
        let b = 3;
        let q = random(&[b, t, 32], 5);
        let k = random(&[b, t, 16], 6);
        let v = random(&[b, t, 16], 7);
        // Left padding in one row, right padding in another.
        let mask: Vec<u32> = (0..b * t)
            .map(|i| match (i / t, i % t) {
                (0, j) => u32::from(j >= 2),
                (2, j) => u32::from(j + 2 < t),
                _ => 1,
            })
            .collect();
        let mask = Tensor::from_vec(mask, (b, t), &Device::Cpu).unwrap();
        let angles: Vec<f32> = (0..t * 8)
            .map(|i| (i / 8) as f32 * 0.3 * (1 + i % 4) as f32)
            .collect();
        let table = |f: fn(f32) -> f32| {
            Tensor::from_vec(
                angles.iter().map(|&a| f(a)).collect::<Vec<_>>(),
                (t, 8),
                &Device::Cpu,
            )
            .unwrap()
        };
        let tables = Rotary {
            cos: table(f32::cos),
            sin: table(f32::sin),
        };
        let rot = rotary.then_some(&tables);
        check(&[&q, &k, &v], 1e-5, |e, fused| {
            let bias = e.attention_bias(&mask, pattern).unwrap();
            let (q, k, v) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            if fused {
                e.attend(&heads, 0, q, k, v, &bias, rot).unwrap()
            } else {
                heads.attend_composed(e, 0, q, k, v, &bias, rot).unwrap()
            }
        });
    }

    #[test]
    fn fused_attention_matches_primitives() {
        attention_case(AttentionPattern::Causal { window: None }, true, 6);
        attention_case(AttentionPattern::Causal { window: Some(3) }, true, 6);
        attention_case(AttentionPattern::Bidirectional, false, 6);
        // Long enough for several query blocks, where causal blocks skip the later keys.
        attention_case(AttentionPattern::Causal { window: None }, true, 101);
        attention_case(AttentionPattern::Causal { window: Some(30) }, false, 101);
        attention_case(AttentionPattern::Bidirectional, true, 101);
    }
}
