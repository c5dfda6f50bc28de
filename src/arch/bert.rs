//! `bert`: the encoder (post-norm blocks, learned absolute positions, exact GELU). The output is
//! the last hidden state [B, T, hidden]; pooler and task heads are not part of the model here.
//! Names are Hugging Face's, with or without the `bert.` prefix of the task models. Token type
//! ids are all 0, as for single-segment inputs.

use super::{f64_field, usize_field};
use crate::error::{Error, Result};
use crate::nn::ops::{self, AttentionPattern, HeadLayout, Ops, WeightLayout};
use crate::nn::ParamSpec;
use serde_json::Value;

pub const MODEL_TYPE: &str = "bert";

#[derive(Clone, Debug)]
pub struct Bert {
    pub prefix: String,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub eps: f64,
}

impl Bert {
    pub fn from_config(c: &Value, has: &dyn Fn(&str) -> bool) -> Result<Bert> {
        let hidden = usize_field(c, "hidden_size", None)?;
        let heads = usize_field(c, "num_attention_heads", None)?;
        if heads == 0 || hidden % heads != 0 {
            return Err(Error::Config(format!(
                "hidden_size ({hidden}) must be a multiple of num_attention_heads ({heads})"
            )));
        }
        match c.get("hidden_act").and_then(Value::as_str) {
            None | Some("gelu") => {}
            Some(other) => {
                return Err(Error::Config(format!(
                    "hidden_act {other:?} is not supported for bert (gelu)"
                )))
            }
        }
        match c.get("position_embedding_type").and_then(Value::as_str) {
            None | Some("absolute") => {}
            Some(other) => {
                return Err(Error::Config(format!(
                    "position_embedding_type {other:?} is not supported (absolute)"
                )))
            }
        }
        let type_vocab = usize_field(c, "type_vocab_size", Some(2))?;
        if type_vocab == 0 {
            return Err(Error::Config("type_vocab_size must be positive".into()));
        }
        Ok(Bert {
            prefix: if has("bert.embeddings.word_embeddings.weight") {
                "bert.".into()
            } else {
                String::new()
            },
            hidden,
            layers: usize_field(c, "num_hidden_layers", None)?,
            heads,
            intermediate: usize_field(c, "intermediate_size", None)?,
            vocab: usize_field(c, "vocab_size", None)?,
            max_positions: usize_field(c, "max_position_embeddings", None)?,
            type_vocab,
            eps: f64_field(c, "layer_norm_eps", 1e-12)?,
        })
    }

    fn name(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let h = self.hidden;
        let mut specs = vec![
            ParamSpec::weight(
                &self.name("embeddings.word_embeddings.weight"),
                &[self.vocab, h],
            ),
            ParamSpec::weight(
                &self.name("embeddings.position_embeddings.weight"),
                &[self.max_positions, h],
            ),
            ParamSpec::weight(
                &self.name("embeddings.token_type_embeddings.weight"),
                &[self.type_vocab, h],
            ),
        ];
        let norm = |specs: &mut Vec<ParamSpec>, p: String| {
            specs.push(ParamSpec::weight(&format!("{p}.weight"), &[h]));
            specs.push(ParamSpec::weight(&format!("{p}.bias"), &[h]));
        };
        norm(&mut specs, self.name("embeddings.LayerNorm"));
        for i in 0..self.layers {
            let p = self.name(&format!("encoder.layer.{i}"));
            for (m, out, inp) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", self.intermediate, h),
                ("output.dense", h, self.intermediate),
            ] {
                specs.push(ParamSpec::weight(&format!("{p}.{m}.weight"), &[out, inp]));
                specs.push(ParamSpec::weight(&format!("{p}.{m}.bias"), &[out]));
            }
            norm(&mut specs, format!("{p}.attention.output.LayerNorm"));
            norm(&mut specs, format!("{p}.output.LayerNorm"));
        }
        specs
    }

    pub fn linear_modules(&self) -> Vec<String> {
        (0..self.layers)
            .flat_map(|i| {
                [
                    "attention.self.query",
                    "attention.self.key",
                    "attention.self.value",
                    "attention.output.dense",
                    "intermediate.dense",
                    "output.dense",
                ]
                .map(|m| self.name(&format!("encoder.layer.{i}.{m}")))
            })
            .collect()
    }

    /// The last hidden state [B, T, hidden].
    pub fn forward<O: Ops>(
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
        let bias = ops.attention_bias(mask, AttentionPattern::Bidirectional)?;
        let words = ops.param(&self.name("embeddings.word_embeddings.weight"))?;
        let positions = ops.param(&self.name("embeddings.position_embeddings.weight"))?;
        let types = ops.param(&self.name("embeddings.token_type_embeddings.weight"))?;
        let x = ops.gather_rows(&words, ids)?;
        let pos = ops.leading_rows(&positions, ids)?;
        let x = ops.add(&x, &pos)?;
        let type0 = ops.row(&types, 0)?;
        let x = ops.add(&x, &type0)?;
        let mut x = ops::layer_norm(ops, &x, &self.name("embeddings.LayerNorm"), self.eps)?;
        let lin = |ops: &mut O, x: &O::T, name: String| {
            ops::linear(ops, x, &name, WeightLayout::OutIn, lora_scale)
        };
        for i in 0..self.layers {
            let p = self.name(&format!("encoder.layer.{i}"));
            let q = lin(ops, &x, format!("{p}.attention.self.query"))?;
            let k = lin(ops, &x, format!("{p}.attention.self.key"))?;
            let v = lin(ops, &x, format!("{p}.attention.self.value"))?;
            let a = ops.attend(&layout, i, &q, &k, &v, &bias, None)?;
            let a = lin(ops, &a, format!("{p}.attention.output.dense"))?;
            let a = ops.add(&a, &x)?;
            x = ops::layer_norm(
                ops,
                &a,
                &format!("{p}.attention.output.LayerNorm"),
                self.eps,
            )?;
            let m = lin(ops, &x, format!("{p}.intermediate.dense"))?;
            let m = ops.gelu(&m, true)?;
            let m = lin(ops, &m, format!("{p}.output.dense"))?;
            let m = ops.add(&m, &x)?;
            x = ops::layer_norm(ops, &m, &format!("{p}.output.LayerNorm"), self.eps)?;
        }
        Ok(x)
    }
}
