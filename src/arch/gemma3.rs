//! Gemma 3's text decoder (`gemma3_text`, Hugging Face's Gemma3ForCausalLM): Llama's layout
//! with RMSNorms that scale by (1 + w), four of them per block (before and after attention,
//! before and after the MLP), an RMSNorm of each query and key head, a GELU (tanh)-gated MLP,
//! embeddings scaled by √hidden, queries scaled by `query_pre_attn_scalar`^(−1/2), and layers
//! that attend within a sliding window with their own rotary base beside global ones.

use super::family::{Role, GEMMA3};
use super::rotary::{self, RotaryTables};
use super::{bool_field, f64_field, usize_field};
use crate::error::{Error, Result};
use crate::nn::ops::{self, AttentionPattern, HeadLayout, Ops, WeightLayout};
use crate::nn::ParamSpec;
use candle_core::Device;
use serde_json::Value;

pub const MODEL_TYPE: &str = "gemma3_text";

#[derive(Clone, Debug)]
pub struct Gemma3 {
    pub hidden: usize,
    pub layers: usize,
    pub heads: HeadLayout,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub eps: f64,
    pub tied_embeddings: bool,
    /// Per layer: attends within the sliding window (with the local rotary base) or globally.
    pub sliding: Vec<bool>,
    pub window: usize,
    /// The factor queries are multiplied by so that attention's 1/√head_dim scaling becomes
    /// 1/√query_pre_attn_scalar.
    query_factor: f64,
    global_rotary: RotaryTables,
    local_rotary: RotaryTables,
}

impl Gemma3 {
    pub fn from_config(c: &Value) -> Result<Gemma3> {
        let hidden = usize_field(c, "hidden_size", None)?;
        let heads = usize_field(c, "num_attention_heads", None)?;
        let kv_heads = usize_field(c, "num_key_value_heads", Some(heads))?;
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(Error::Config(format!(
                "num_attention_heads ({heads}) must be a positive multiple of num_key_value_heads ({kv_heads})"
            )));
        }
        let head_dim = usize_field(c, "head_dim", Some(256))?;
        rotary::check_head_dim(head_dim)?;
        let layers = usize_field(c, "num_hidden_layers", None)?;
        for key in ["final_logit_softcapping", "attn_logit_softcapping"] {
            if !matches!(c.get(key), None | Some(Value::Null)) {
                return Err(Error::Config(format!(
                    "gemma3_text with {key} is not supported (Gemma 3 has none)"
                )));
            }
        }
        if bool_field(c, "use_bidirectional_attention", false)? {
            return Err(Error::Config(
                "gemma3_text with use_bidirectional_attention is not supported".into(),
            ));
        }
        if bool_field(c, "attention_bias", false)? {
            return Err(Error::Config(
                "gemma3_text with attention_bias is not supported".into(),
            ));
        }
        let activation = c
            .get("hidden_activation")
            .and_then(Value::as_str)
            .unwrap_or("gelu_pytorch_tanh");
        if activation != "gelu_pytorch_tanh" {
            return Err(Error::Config(format!(
                "gemma3_text with hidden_activation {activation:?} is not supported (gelu_pytorch_tanh is)"
            )));
        }
        let sliding = layer_pattern(c, layers)?;
        let max_positions = usize_field(c, "max_position_embeddings", None)?;
        let global_theta = f64_field(c, "rope_theta", 1_000_000.0)?;
        let local_theta = f64_field(c, "rope_local_base_freq", 10_000.0)?;
        let query_scalar = f64_field(c, "query_pre_attn_scalar", head_dim as f64)?;
        if query_scalar <= 0.0 {
            return Err(Error::Config(format!(
                "query_pre_attn_scalar {query_scalar} must be positive"
            )));
        }
        Ok(Gemma3 {
            hidden,
            layers,
            heads: HeadLayout {
                heads,
                kv_heads,
                head_dim,
            },
            intermediate: usize_field(c, "intermediate_size", None)?,
            vocab: usize_field(c, "vocab_size", None)?,
            max_positions,
            eps: f64_field(c, "rms_norm_eps", 1e-6)?,
            // Gemma 3's configs default to a head tied to the embeddings.
            tied_embeddings: bool_field(c, "tie_word_embeddings", true)?,
            sliding,
            window: usize_field(c, "sliding_window", Some(4096))?,
            query_factor: (head_dim as f64 / query_scalar).sqrt(),
            // Global layers use rope_theta and rope_scaling; sliding ones their own base, unscaled.
            global_rotary: RotaryTables::new(
                rotary::inv_freq(c, head_dim, global_theta)?,
                head_dim,
                max_positions,
            ),
            local_rotary: RotaryTables::new(
                rotary::plain_inv_freq(head_dim, local_theta),
                head_dim,
                max_positions,
            ),
        })
    }

    fn shape_of(&self, role: Role) -> Vec<usize> {
        let (h, d) = (self.hidden, self.heads.head_dim);
        let (q_out, kv_out) = (self.heads.heads * d, self.heads.kv_heads * d);
        match role {
            Role::Embedding | Role::Head => vec![self.vocab, h],
            Role::AttentionNorm
            | Role::PostAttentionNorm
            | Role::MlpNorm
            | Role::PostMlpNorm
            | Role::FinalNorm => vec![h],
            Role::QueryNorm | Role::KeyNorm => vec![d],
            Role::Query => vec![q_out, h],
            Role::Key | Role::Value => vec![kv_out, h],
            Role::AttentionOutput => vec![h, q_out],
            Role::Gate | Role::Up => vec![self.intermediate, h],
            Role::Down => vec![h, self.intermediate],
            other => unreachable!("Gemma 3 has no {other:?} module"),
        }
    }

    pub fn param_specs(&self) -> Vec<ParamSpec> {
        GEMMA3
            .modules(self.layers)
            .into_iter()
            .filter(|(_, role)| *role != Role::Head || !self.tied_embeddings)
            .map(|(module, role)| {
                ParamSpec::weight(&format!("{module}.weight"), &self.shape_of(role))
            })
            .collect()
    }

    pub fn linear_modules(&self) -> Vec<String> {
        GEMMA3.linear_modules(self.layers)
    }

    /// Builds both rotary tables on `device`, where the forward passes will read them.
    pub fn build_rotary_tables(&self, device: &Device) -> Result<()> {
        self.global_rotary.build_on(device)?;
        self.local_rotary.build_on(device)
    }

    pub fn forward<O: Ops>(
        &self,
        ops: &mut O,
        ids: &O::T,
        mask: &O::T,
        lora_scale: f64,
    ) -> Result<O::T> {
        let h = self.hidden_states(ops, ids, mask, lora_scale)?;
        self.head(ops, &h)
    }

    pub fn head<O: Ops>(&self, ops: &mut O, hidden: &O::T) -> Result<O::T> {
        let role = if self.tied_embeddings {
            Role::Embedding
        } else {
            Role::Head
        };
        ops::project(ops, hidden, &format!("{}.weight", GEMMA3.global(role)))
    }

    pub fn hidden_states<O: Ops>(
        &self,
        ops: &mut O,
        ids: &O::T,
        mask: &O::T,
        lora_scale: f64,
    ) -> Result<O::T> {
        let x = self.residual_after(ops, ids, mask, lora_scale, self.layers)?;
        self.norm(ops, &x, GEMMA3.global(Role::FinalNorm))
    }

    /// The residual stream [B, T, hidden] after the first `blocks` blocks.
    pub fn residual_after<O: Ops>(
        &self,
        ops: &mut O,
        ids: &O::T,
        mask: &O::T,
        lora_scale: f64,
        blocks: usize,
    ) -> Result<O::T> {
        let blocks = blocks.min(self.layers);
        let global = self.global_rotary.of_input(ops, "rotary", ids)?;
        let local = self.local_rotary.of_input(ops, "rotary_local", ids)?;
        let full = ops.attention_bias(mask, AttentionPattern::Causal { window: None })?;
        let windowed = if self.sliding[..blocks].iter().any(|&s| s) {
            Some(ops.attention_bias(
                mask,
                AttentionPattern::Causal {
                    window: Some(self.window),
                },
            )?)
        } else {
            None
        };
        let embed = ops.param(&format!("{}.weight", GEMMA3.global(Role::Embedding)))?;
        let x = ops.gather_rows(&embed, ids)?;
        // Hugging Face multiplies by √hidden rounded to the weights' dtype; the embeddings
        // arrive here in f32.
        let mut x = ops.scale(&x, (self.hidden as f32).sqrt() as f64)?;
        let heads = self.heads;
        let lin = |ops: &mut O, x: &O::T, name: &str| {
            ops::linear(ops, x, name, WeightLayout::OutIn, lora_scale)
        };
        for i in 0..blocks {
            let name = |role| GEMMA3.layer_module(i, role);
            let (rotary, bias) = match (self.sliding[i], &windowed) {
                (true, Some(windowed)) => (&local, windowed),
                _ => (&global, &full),
            };
            let h = self.norm(ops, &x, &name(Role::AttentionNorm))?;
            let q = lin(ops, &h, &name(Role::Query))?;
            let k = lin(ops, &h, &name(Role::Key))?;
            let v = lin(ops, &h, &name(Role::Value))?;
            let mut q = self.head_norm(ops, &q, heads.heads, &name(Role::QueryNorm))?;
            let k = self.head_norm(ops, &k, heads.kv_heads, &name(Role::KeyNorm))?;
            if self.query_factor != 1.0 {
                q = ops.scale(&q, self.query_factor)?;
            }
            let a = ops.attend(&heads, i, &q, &k, &v, bias, Some(rotary))?;
            let a = lin(ops, &a, &name(Role::AttentionOutput))?;
            let a = self.norm(ops, &a, &name(Role::PostAttentionNorm))?;
            x = ops.add(&x, &a)?;
            let h = self.norm(ops, &x, &name(Role::MlpNorm))?;
            let gate = lin(ops, &h, &name(Role::Gate))?;
            let up = lin(ops, &h, &name(Role::Up))?;
            let gate = ops.gelu(&gate, false)?;
            let m = ops.mul(&gate, &up)?;
            let m = lin(ops, &m, &name(Role::Down))?;
            let m = self.norm(ops, &m, &name(Role::PostMlpNorm))?;
            x = ops.add(&x, &m)?;
        }
        Ok(x)
    }

    /// Gemma's RMSNorm: x / rms(x) · (1 + w).
    fn norm<O: Ops>(&self, ops: &mut O, x: &O::T, prefix: &str) -> Result<O::T> {
        let w = ops.param(&format!("{prefix}.weight"))?;
        let scale = ops.add_scalar(&w, 1.0)?;
        ops.rms_norm(x, &scale, self.eps)
    }

    /// Gemma's RMSNorm of each of `count` heads of a projection [B, T, count·D].
    fn head_norm<O: Ops>(&self, ops: &mut O, x: &O::T, count: usize, norm: &str) -> Result<O::T> {
        let d = self.heads.head_dim as i64;
        let split = ops.reshape(x, &[0, 0, count as i64, d])?;
        let normed = self.norm(ops, &split, norm)?;
        ops.reshape(&normed, &[0, 0, count as i64 * d])
    }
}

/// Which layers attend within the sliding window: `layer_types` when given, else every layer
/// but each `sliding_window_pattern`-th (6 by default), as transformers derives it.
fn layer_pattern(c: &Value, layers: usize) -> Result<Vec<bool>> {
    if let Some(types) = c.get("layer_types").filter(|v| !v.is_null()) {
        let types = types
            .as_array()
            .ok_or_else(|| Error::Config("layer_types must be a list".into()))?;
        if types.len() != layers {
            return Err(Error::Config(format!(
                "layer_types has {} entries for {layers} layers",
                types.len()
            )));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => Err(Error::Config(format!(
                    "layer type {t} is not supported (sliding_attention, full_attention are)"
                ))),
            })
            .collect();
    }
    let pattern = usize_field(c, "sliding_window_pattern", Some(6))?.max(1);
    Ok((0..layers).map(|i| (i + 1) % pattern != 0).collect())
}
