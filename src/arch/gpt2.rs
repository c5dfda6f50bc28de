//! `gpt2`: learned positions, pre-norm blocks with LayerNorm, fused q/k/v in a Conv1D (weights
//! stored [in, out]), GELU MLP, head tied to the token embedding. Parameter names are Hugging
//! Face's, with or without the `transformer.` prefix of GPT2LMHeadModel.

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

    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let h = self.hidden;
        let mut specs = vec![
            ParamSpec::weight(&self.name("wte.weight"), &[self.vocab, h]),
            ParamSpec::weight(&self.name("wpe.weight"), &[self.max_positions, h]),
        ];
        let norm = |specs: &mut Vec<ParamSpec>, p: String| {
            specs.push(ParamSpec::weight(&format!("{p}.weight"), &[h]));
            specs.push(ParamSpec::weight(&format!("{p}.bias"), &[h]));
        };
        for i in 0..self.layers {
            let p = self.name(&format!("h.{i}"));
            norm(&mut specs, format!("{p}.ln_1"));
            for (m, inp, out) in [
                ("attn.c_attn", h, 3 * h),
                ("attn.c_proj", h, h),
                ("mlp.c_fc", h, self.inner),
                ("mlp.c_proj", self.inner, h),
            ] {
                specs.push(ParamSpec::weight(&format!("{p}.{m}.weight"), &[inp, out]));
                specs.push(ParamSpec::weight(&format!("{p}.{m}.bias"), &[out]));
                if m == "attn.c_proj" {
                    norm(&mut specs, format!("{p}.ln_2"));
                }
            }
        }
        norm(&mut specs, self.name("ln_f"));
        specs
    }

    pub fn linear_modules(&self) -> Vec<String> {
        (0..self.layers)
            .flat_map(|i| {
                ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
                    .map(|m| self.name(&format!("h.{i}.{m}")))
            })
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
        ops::project(ops, hidden, &self.name("wte.weight"))
    }

    /// The final normed hidden states [B, T, hidden].
    pub fn hidden_states<O: Ops>(
        &self,
        ops: &mut O,
        ids: &O::T,
        mask: &O::T,
        lora_scale: f64,
    ) -> Result<O::T> {
        let h = self.hidden;
        let layout = HeadLayout {
            heads: self.heads,
            kv_heads: self.heads,
            head_dim: h / self.heads,
        };
        let bias = ops.attention_bias(mask, AttentionPattern::Causal { window: None })?;
        let wte = ops.param(&self.name("wte.weight"))?;
        let wpe = ops.param(&self.name("wpe.weight"))?;
        let tokens = ops.gather_rows(&wte, ids)?;
        let positions = ops.leading_rows(&wpe, ids)?;
        let mut x = ops.add(&tokens, &positions)?;
        let lin = |ops: &mut O, x: &O::T, name: String| {
            ops::linear(ops, x, &name, WeightLayout::InOut, lora_scale)
        };
        for i in 0..self.layers {
            let p = self.name(&format!("h.{i}"));
            let a = ops::layer_norm(ops, &x, &format!("{p}.ln_1"), self.eps)?;
            let qkv = lin(ops, &a, format!("{p}.attn.c_attn"))?;
            let q = ops.narrow_last(&qkv, 0, h)?;
            let k = ops.narrow_last(&qkv, h, h)?;
            let v = ops.narrow_last(&qkv, 2 * h, h)?;
            let a = ops.attend(&layout, i, &q, &k, &v, &bias, None)?;
            let a = lin(ops, &a, format!("{p}.attn.c_proj"))?;
            x = ops.add(&x, &a)?;
            let m = ops::layer_norm(ops, &x, &format!("{p}.ln_2"), self.eps)?;
            let m = lin(ops, &m, format!("{p}.mlp.c_fc"))?;
            let m = ops.gelu(&m, self.exact_gelu)?;
            let m = lin(ops, &m, format!("{p}.mlp.c_proj"))?;
            x = ops.add(&x, &m)?;
        }
        ops::layer_norm(ops, &x, &self.name("ln_f"), self.eps)
    }
}
