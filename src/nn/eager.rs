//! [`Ops`] computed with candle: the training and evaluation forward pass. Gradients flow
//! through every primitive (candle's fused softmax has no backward, so softmax is built here).

use super::ops::{AttentionPattern, Ops, MASKED};
use super::Params;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, D};

pub struct Eager<'a> {
    pub params: &'a Params,
    pub device: Device,
    cache: Option<&'a mut KvCache>,
}

/// Keys and values of the tokens seen so far, for decoding one token at a time.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Tokens already in the cache: the position of the next input token.
    pub offset: usize,
}

impl<'a> Eager<'a> {
    pub fn new(params: &'a Params, device: &Device) -> Self {
        Eager {
            params,
            device: device.clone(),
            cache: None,
        }
    }

    /// A forward pass that continues the sequence held in `cache` and extends it; the caller
    /// advances `cache.offset` by the number of input tokens afterwards.
    pub fn with_cache(params: &'a Params, device: &Device, cache: &'a mut KvCache) -> Self {
        Eager {
            params,
            device: device.clone(),
            cache: Some(cache),
        }
    }

    fn offset(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.offset)
    }
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
            // x [.., K] · W [K, N]: one large matrix product over the flattened rows.
            let dims = a.dims().to_vec();
            let rows: usize = dims[..ra - 1].iter().product();
            let x = a.reshape((rows, dims[ra - 1]))?;
            let y = if x.track_op() && !b.track_op() {
                // A frozen weight: only the input needs a gradient.
                super::frozen::frozen_matmul(&x, b)?
            } else {
                x.matmul(b)?
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
        Ok(rows.reshape((b, t, table.dim(1)?))?)
    }

    fn row(&mut self, table: &Tensor, index: usize) -> Result<Tensor> {
        Ok(table.get(index)?)
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
        Ok(table.narrow(0, offset, t)?)
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
