//! `gpt2`: learned positions, pre-norm blocks with LayerNorm, fused q/k/v in a Conv1D (weights
//! stored [in, out]), GELU MLP, head tied to the token embedding. Parameter names are Hugging
//! Face's, with or without the `transformer.` prefix of GPT2LMHeadModel.

use super::family::{Role, GPT2};
use super::{f64_field, usize_field};
use crate::error::{Error, Result};
use crate::nn::ops::{self, AttentionPattern, HeadLayout, Ops, WeightLayout};
use crate::nn::ParamSpec;
use serde_json::Value;

pub const MODEL_TYPE: &str = "gpt2";

#[derive(Clone, Debug)]
pub struct Gpt2 {
    /// "transformer." or "".
    pub prefix: String,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub inner: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub eps: f64,
    /// gelu_new (tanh approximation) or exact gelu.
    pub exact_gelu: bool,
}

impl Gpt2 {
    pub fn from_config(c: &Value, has: &dyn Fn(&str) -> bool) -> Result<Gpt2> {
        let hidden = usize_field(c, "n_embd", None)?;
        let heads = usize_field(c, "n_head", None)?;
        if heads == 0 || hidden % heads != 0 {
            return Err(Error::Config(format!(
                "n_embd ({hidden}) must be a multiple of n_head ({heads})"
            )));
        }
        let inner = match c.get("n_inner") {
            None | Some(Value::Null) => 4 * hidden,
            Some(_) => usize_field(c, "n_inner", None)?,
        };
        let exact_gelu = match c.get("activation_function").and_then(Value::as_str) {
            None | Some("gelu_new") | Some("gelu_pytorch_tanh") => false,
            Some("gelu") => true,
            Some(other) => {
                return Err(Error::Config(format!(
                    "activation_function {other:?} is not supported (gelu_new, gelu)"
                )))
            }
        };
        for flag in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"] {
            if c.get(flag).and_then(Value::as_bool) == Some(true) {
                return Err(Error::Config(format!("{flag} = true is not supported")));
            }
        }
        Ok(Gpt2 {
            prefix: if has("transformer.wte.weight") {
                "transformer.".into()
            } else {
                String::new()
            },
            hidden,
            layers: usize_field(c, "n_layer", None)?,
            heads,
            inner,
            vocab: usize_field(c, "vocab_size", None)?,
            max_positions: usize_field(c, "n_positions", None)?,
            eps: f64_field(c, "layer_norm_epsilon", 1e-5)?,
            exact_gelu,
        })
    }

    fn name(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// The weight of a module outside the layers.
    fn weight(&self, role: Role) -> String {
        self.name(&format!("{}.weight", GPT2.global(role)))
    }

    /// Shape of a role's weight (Conv1D layout: [in, out] for linear layers); every module but
    /// the embeddings has a bias.
    fn shape_of(&self, role: Role) -> Vec<usize> {
        let h = self.hidden;
        match role {
            Role::Embedding => vec![self.vocab, h],
            Role::PositionEmbedding => vec![self.max_positions, h],
            Role::AttentionNorm | Role::MlpNorm | Role::FinalNorm => vec![h],
            Role::QueryKeyValue => vec![h, 3 * h],
            Role::AttentionOutput => vec![h, h],
            Role::MlpIn => vec![h, self.inner],
            Role::Down => vec![self.inner, h],
            other => unreachable!("GPT-2 has no {other:?} module"),
        }
    }

    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut specs = Vec::new();
        for (module, role) in GPT2.modules(self.layers) {
            let module = self.name(&module);
            let shape = self.shape_of(role);
            specs.push(ParamSpec::weight(&format!("{module}.weight"), &shape));
            if !matches!(role, Role::Embedding | Role::PositionEmbedding) {
                let out = *shape.last().expect("a shape");
                specs.push(ParamSpec::weight(&format!("{module}.bias"), &[out]));
            }
        }
        specs
    }

    pub fn linear_modules(&self) -> Vec<String> {
        GPT2.linear_modules(self.layers)
            .iter()
            .map(|m| self.name(m))
            .collect()
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

    /// The output head, tied to the token embedding.
    pub fn head<O: Ops>(&self, ops: &mut O, hidden: &O::T) -> Result<O::T> {
        ops::project(ops, hidden, &self.weight(Role::Embedding))
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
        ops::layer_norm(ops, &x, &self.name(GPT2.global(Role::FinalNorm)), self.eps)
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
        let h = self.hidden;
        let layout = HeadLayout {
            heads: self.heads,
            kv_heads: self.heads,
            head_dim: h / self.heads,
        };
        let bias = ops.attention_bias(mask, AttentionPattern::Causal { window: None })?;
        let wte = ops.param(&self.weight(Role::Embedding))?;
        let wpe = ops.param(&self.weight(Role::PositionEmbedding))?;
        let tokens = ops.gather_rows(&wte, ids)?;
        let positions = ops.leading_rows(&wpe, ids)?;
        let mut x = ops.add(&tokens, &positions)?;
        let lin = |ops: &mut O, x: &O::T, name: String| {
            ops::linear(ops, x, &name, WeightLayout::InOut, lora_scale)
        };
        for i in 0..blocks.min(self.layers) {
            let name = |role| self.name(&GPT2.layer_module(i, role));
            let a = ops::layer_norm(ops, &x, &name(Role::AttentionNorm), self.eps)?;
            let qkv = lin(ops, &a, name(Role::QueryKeyValue))?;
            let q = ops.narrow_last(&qkv, 0, h)?;
            let k = ops.narrow_last(&qkv, h, h)?;
            let v = ops.narrow_last(&qkv, 2 * h, h)?;
            let a = ops.attend(&layout, i, &q, &k, &v, &bias, None)?;
            let a = lin(ops, &a, name(Role::AttentionOutput))?;
            x = ops.add(&x, &a)?;
            let m = ops::layer_norm(ops, &x, &name(Role::MlpNorm), self.eps)?;
            let m = lin(ops, &m, name(Role::MlpIn))?;
            let m = ops.gelu(&m, self.exact_gelu)?;
            let m = lin(ops, &m, name(Role::Down))?;
            x = ops.add(&x, &m)?;
        }
        Ok(x)
    }
}
