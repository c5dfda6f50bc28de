//! Rotary position embeddings: inverse frequencies from a config (with `rope_scaling`) and the
//! cos/sin tables the forward passes read.

use super::f64_field;
use crate::error::{Error, Result};
use crate::nn::ops::{Ops, Rotary};
use candle_core::{Device, Tensor};
use serde_json::Value;

/// cos and sin tables [max_positions, head_dim] in the "rotate half" layout, built once: every
/// forward pass (each decoded token included) reads them. Loading the parameters builds them on
/// the parameters' device ([`RotaryTables::build_on`]); a model used without loading (an ONNX
/// export of given weights) builds them on the host at first use.
#[derive(Clone, Debug)]
pub struct RotaryTables {
    /// Inverse frequencies, after any rope scaling.
    pub inv_freq: Vec<f64>,
    head_dim: usize,
    max_positions: usize,
    tables: std::sync::OnceLock<(Tensor, Tensor)>,
}

impl RotaryTables {
    pub fn new(inv_freq: Vec<f64>, head_dim: usize, max_positions: usize) -> Self {
        RotaryTables {
            inv_freq,
            head_dim,
            max_positions,
            tables: std::sync::OnceLock::new(),
        }
    }

    /// Builds the tables on `device`, where the forward passes will read them.
    pub fn build_on(&self, device: &Device) -> Result<()> {
        if self.tables.get().is_none() {
            let tables = self.compute(device)?;
            let _ = self.tables.set(tables);
        }
        Ok(())
    }

    fn tables(&self) -> Result<(Tensor, Tensor)> {
        if let Some(t) = self.tables.get() {
            return Ok(t.clone());
        }
        let tables = self.compute(&Device::Cpu)?;
        Ok(self.tables.get_or_init(|| tables).clone())
    }

    fn compute(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let (d, n) = (self.head_dim, self.max_positions);
        let mut cos = Vec::with_capacity(n * d);
        let mut sin = Vec::with_capacity(n * d);
        for pos in 0..n {
            for i in 0..d {
                // f32 product, as Hugging Face computes the angles.
                let angle = (pos as f32 * self.inv_freq[i % (d / 2)] as f32) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok((
            Tensor::from_vec(cos, (n, d), device)?,
            Tensor::from_vec(sin, (n, d), device)?,
        ))
    }

    /// cos and sin of the input's positions, as graph constants named `{name}.cos`/`{name}.sin`.
    pub fn of_input<O: Ops>(&self, ops: &mut O, name: &str, ids: &O::T) -> Result<Rotary<O::T>> {
        let (cos_table, sin_table) = self.tables()?;
        let cos = ops.constant(&format!("{name}.cos"), &cos_table)?;
        let sin = ops.constant(&format!("{name}.sin"), &sin_table)?;
        let cos = ops.leading_rows(&cos, ids)?;
        let sin = ops.leading_rows(&sin, ids)?;
        Ok(Rotary {
            cos: ops.for_heads(&cos)?,
            sin: ops.for_heads(&sin)?,
        })
    }
}

/// Checks that a head dimension can carry rotary positions.
pub fn check_head_dim(head_dim: usize) -> Result<()> {
    if head_dim == 0 || !head_dim.is_multiple_of(2) || head_dim > 1 << 16 {
        return Err(Error::Config(format!(
            "head dimension {head_dim} must be even, positive and at most 65536 for rotary embeddings"
        )));
    }
    Ok(())
}

/// Inverse rotary frequencies θ^(−2i/D), with the config's `rope_scaling` applied: none,
/// `linear` (frequencies divided by the factor) or `llama3` (low frequencies divided by the
/// factor, high ones kept, a smooth blend between).
pub fn inv_freq(c: &Value, head_dim: usize, theta: f64) -> Result<Vec<f64>> {
    let base = plain_inv_freq(head_dim, theta);
    let scaling = match c.get("rope_scaling") {
        None | Some(Value::Null) => return Ok(base),
        Some(s) => s,
    };
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Config("rope_scaling needs a rope_type".into()))?;
    let factor = f64_field(scaling, "factor", 1.0)?;
    match kind {
        "default" => Ok(base),
        "linear" => Ok(base.iter().map(|f| f / factor).collect()),
        "llama3" => {
            let low = f64_field(scaling, "low_freq_factor", 1.0)?;
            let high = f64_field(scaling, "high_freq_factor", 4.0)?;
            let old_len = f64_field(scaling, "original_max_position_embeddings", 8192.0)?;
            let (low_wavelen, high_wavelen) = (old_len / low, old_len / high);
            Ok(base
                .iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old_len / wavelen - low) / (high - low);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect())
        }
        other => Err(Error::Config(format!(
            "rope_scaling type {other:?} is not supported (supported: default, linear, llama3)"
        ))),
    }
}

/// θ^(−2i/D) without scaling.
pub fn plain_inv_freq(head_dim: usize, theta: f64) -> Vec<f64> {
    (0..head_dim / 2)
        // Hugging Face computes the exponent in f32.
        .map(|i| 1.0 / theta.powf(((2 * i) as f32 / head_dim as f32) as f64))
        .collect()
}
