//! The Llama family: `llama`, `mistral`, `qwen2` and `qwen3` (pre-norm decoder, RMSNorm,
//! rotary positions, grouped-query attention, SwiGLU MLP). Parameter names are Hugging Face's.
//! Mistral adds a sliding attention window; Qwen2 adds biases to the q/k/v projections; Qwen3
//! normalises each query and key head (RMSNorm over the head dimension) before the rotary
//! positions.

use super::family::{Family, Role, LLAMA, QWEN3};
use super::rotary::{self, RotaryTables};
use super::{bool_field, f64_field, usize_field};
use crate::error::{Error, Result};
use crate::nn::ops::{self, AttentionPattern, HeadLayout, Ops, WeightLayout};
use crate::nn::ParamSpec;
use candle_core::Device;
use serde_json::Value;

pub const MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2", "qwen3"];

#[derive(Clone, Debug)]
pub struct Llama {
    /// The tensor names: Llama's, or Qwen3's with the per-head query/key norms.
    pub family: &'static Family,
    pub hidden: usize,
    pub layers: usize,
    pub heads: HeadLayout,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub eps: f64,
    pub tied_embeddings: bool,
    /// Biases on q, k, v (Qwen2, or Llama's attention_bias).
    pub qkv_bias: bool,
    /// A bias on o_proj too (Llama's attention_bias).
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub window: Option<usize>,
    pub rotary: RotaryTables,
}

impl Llama {
    pub fn from_config(model_type: &str, c: &Value) -> Result<Llama> {
        let hidden = usize_field(c, "hidden_size", None)?;
        let heads = usize_field(c, "num_attention_heads", None)?;
        let kv_heads = usize_field(c, "num_key_value_heads", Some(heads))?;
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(Error::Config(format!(
                "num_attention_heads ({heads}) must be a positive multiple of num_key_value_heads ({kv_heads})"
            )));
        }
        let head_dim = match c.get("head_dim") {
            Some(Value::Null) | None => hidden / heads,
            Some(_) => usize_field(c, "head_dim", None)?,
        };
        rotary::check_head_dim(head_dim)?;
        let qwen2 = model_type == "qwen2";
        let qwen3 = model_type == "qwen3";
        let attention_bias = bool_field(c, "attention_bias", false)?;
        let window = match model_type {
            "mistral" => optional_usize(c, "sliding_window")?,
            "qwen2" | "qwen3" if bool_field(c, "use_sliding_window", false)? => {
                return Err(Error::Config(format!(
                    "{model_type} with use_sliding_window is not supported"
                )))
            }
            _ => None,
        };
        let theta = f64_field(c, "rope_theta", 10000.0)?;
        let max_positions = usize_field(c, "max_position_embeddings", None)?;
        let inv_freq = rotary::inv_freq(c, head_dim, theta)?;
        Ok(Llama {
            family: if qwen3 { &QWEN3 } else { &LLAMA },
            hidden,
            layers: usize_field(c, "num_hidden_layers", None)?,
            heads: HeadLayout {
                heads,
                kv_heads,
                head_dim,
            },
            intermediate: usize_field(c, "intermediate_size", None)?,
            vocab: usize_field(c, "vocab_size", None)?,
            max_positions,
            eps: f64_field(c, "rms_norm_eps", 1e-6)?,
            // Hugging Face's Llama, Mistral and Qwen2 configs default to untied heads.
            tied_embeddings: bool_field(c, "tie_word_embeddings", false)?,
            qkv_bias: qwen2 || attention_bias,
            o_bias: attention_bias,
            mlp_bias: bool_field(c, "mlp_bias", false)?,
            window,
            rotary: RotaryTables::new(inv_freq, head_dim, max_positions),
        })
    }

    /// Shape of a role's weight ([out, in] for linear layers) and whether it has a bias.
    fn shape_of(&self, role: Role) -> (Vec<usize>, bool) {
        let (h, d) = (self.hidden, self.heads.head_dim);
        let (q_out, kv_out) = (self.heads.heads * d, self.heads.kv_heads * d);
        match role {
            Role::Embedding | Role::Head => (vec![self.vocab, h], false),
            Role::AttentionNorm | Role::MlpNorm | Role::FinalNorm => (vec![h], false),
            Role::QueryNorm | Role::KeyNorm => (vec![d], false),
            Role::Query => (vec![q_out, h], self.qkv_bias),
            Role::Key | Role::Value => (vec![kv_out, h], self.qkv_bias),
            Role::AttentionOutput => (vec![h, q_out], self.o_bias),
            Role::Gate | Role::Up => (vec![self.intermediate, h], self.mlp_bias),
            Role::Down => (vec![h, self.intermediate], self.mlp_bias),
            other => unreachable!("the Llama family has no {other:?} module"),
        }
    }

    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut specs = Vec::new();
        for (module, role) in self.family.modules(self.layers) {
            if role == Role::Head && self.tied_embeddings {
                continue;
            }
            let (shape, bias) = self.shape_of(role);
            specs.push(ParamSpec::weight(&format!("{module}.weight"), &shape));
            if bias {
                specs.push(ParamSpec::weight(&format!("{module}.bias"), &shape[..1]));
            }
        }
        specs
    }

    /// The linear layers LoRA can attach to, by module name.
    pub fn linear_modules(&self) -> Vec<String> {
        self.family.linear_modules(self.layers)
    }

    /// Builds the rotary tables on `device`, where the forward passes will read them.
    pub fn build_rotary_tables(&self, device: &Device) -> Result<()> {
        self.rotary.build_on(device)
    }

    /// Logits [B, T, vocab] for token ids and a padding mask, both [B, T].
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

    /// The output head: hidden states [.., hidden] → logits [.., vocab].
    pub fn head<O: Ops>(&self, ops: &mut O, hidden: &O::T) -> Result<O::T> {
        let module = if self.tied_embeddings {
            self.family.global(Role::Embedding)
        } else {
            self.family.global(Role::Head)
        };
        ops::project(ops, hidden, &format!("{module}.weight"))
    }

    /// The final normed hidden states [B, T, hidden].
    pub fn hidden_states<O: Ops>(
        &self,
        ops: &mut O,
        ids: &O::T,
        mask: &O::T,
        lora_scale: f64,
    ) -> Result<O::T> {
        let x = self.residual_after(ops, ids, mask, lora_scale, self.layers)?;
        ops::rms_norm(ops, &x, self.family.global(Role::FinalNorm), self.eps)
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
        let rotary = self.rotary.of_input(ops, "rotary", ids)?;
        let bias = ops.attention_bias(
            mask,
            AttentionPattern::Causal {
                window: self.window,
            },
        )?;
        let embed = ops.param(&format!("{}.weight", self.family.global(Role::Embedding)))?;
        let mut x = ops.gather_rows(&embed, ids)?;
        let heads = self.heads;
        let lin = |ops: &mut O, x: &O::T, name: &str| {
            ops::linear(ops, x, name, WeightLayout::OutIn, lora_scale)
        };
        for i in 0..blocks.min(self.layers) {
            let name = |role| self.family.layer_module(i, role);
            let h = ops::rms_norm(ops, &x, &name(Role::AttentionNorm), self.eps)?;
            let mut q = lin(ops, &h, &name(Role::Query))?;
            let mut k = lin(ops, &h, &name(Role::Key))?;
            let v = lin(ops, &h, &name(Role::Value))?;
            if self.family.has(Role::QueryNorm) {
                q = self.head_norm(ops, &q, heads.heads, &name(Role::QueryNorm))?;
                k = self.head_norm(ops, &k, heads.kv_heads, &name(Role::KeyNorm))?;
            }
            let a = ops.attend(&heads, i, &q, &k, &v, &bias, Some(&rotary))?;
            let a = lin(ops, &a, &name(Role::AttentionOutput))?;
            x = ops.add(&x, &a)?;
            let norm = name(Role::MlpNorm);
            let mlp = [Role::Gate, Role::Up, Role::Down].map(name);
            if mlp.iter().all(|m| ops::is_plain_linear(ops, m)) {
                let norm = ops.param(&format!("{norm}.weight"))?;
                let [gate, up, down] = mlp.map(|m| ops.param(&format!("{m}.weight")));
                x = ops.residual_gated_mlp(&x, &norm, &gate?, &up?, &down?, self.eps)?;
            } else {
                let h = ops::rms_norm(ops, &x, &norm, self.eps)?;
                let gate = lin(ops, &h, &mlp[0])?;
                let up = lin(ops, &h, &mlp[1])?;
                let m = ops.swiglu(&gate, &up)?;
                let m = lin(ops, &m, &mlp[2])?;
                x = ops.add(&x, &m)?;
            }
        }
        Ok(x)
    }

    /// RMSNorm of each of `count` heads of a projection [B, T, count·D] over its D features.
    fn head_norm<O: Ops>(&self, ops: &mut O, x: &O::T, count: usize, norm: &str) -> Result<O::T> {
        let d = self.heads.head_dim as i64;
        let split = ops.reshape(x, &[0, 0, count as i64, d])?;
        let normed = ops::rms_norm(ops, &split, norm, self.eps)?;
        ops.reshape(&normed, &[0, 0, count as i64 * d])
    }
}

fn optional_usize(c: &Value, key: &str) -> Result<Option<usize>> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => usize_field(c, key, None).map(Some),
    }
}
