//! `bert`: the encoder (post-norm blocks, learned absolute positions, exact GELU). The output is
//! the last hidden state [B, T, hidden]; pooler and task heads are not part of the model here.
//! Names are Hugging Face's, with or without the `bert.` prefix of the task models. Token type
//! ids are all 0, as for single-segment inputs.

use super::family::{Role, BERT};
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

    /// Shape of a role's weight ([out, in] for linear layers); every module but the
    /// embeddings has a bias.
    fn shape_of(&self, role: Role) -> Vec<usize> {
        let h = self.hidden;
        match role {
            Role::Embedding => vec![self.vocab, h],
            Role::PositionEmbedding => vec![self.max_positions, h],
            Role::TokenTypeEmbedding => vec![self.type_vocab, h],
            Role::EmbeddingNorm | Role::MlpNorm | Role::OutputNorm => vec![h],
            Role::Query | Role::Key | Role::Value | Role::AttentionOutput => vec![h, h],
            Role::MlpIn => vec![self.intermediate, h],
            Role::Down => vec![h, self.intermediate],
            other => unreachable!("BERT has no {other:?} module"),
        }
    }

    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut specs = Vec::new();
        for (module, role) in BERT.modules(self.layers) {
            let module = self.name(&module);
            let shape = self.shape_of(role);
            specs.push(ParamSpec::weight(&format!("{module}.weight"), &shape));
            let embedding = matches!(
                role,
                Role::Embedding | Role::PositionEmbedding | Role::TokenTypeEmbedding
            );
            if !embedding {
                specs.push(ParamSpec::weight(&format!("{module}.bias"), &shape[..1]));
            }
        }
        specs
    }

    pub fn linear_modules(&self) -> Vec<String> {
        BERT.linear_modules(self.layers)
            .iter()
            .map(|m| self.name(m))
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
        let weight = |role| self.name(&format!("{}.weight", BERT.global(role)));
        let words = ops.param(&weight(Role::Embedding))?;
        let positions = ops.param(&weight(Role::PositionEmbedding))?;
        let types = ops.param(&weight(Role::TokenTypeEmbedding))?;
        let x = ops.gather_rows(&words, ids)?;
        let pos = ops.leading_rows(&positions, ids)?;
        let x = ops.add(&x, &pos)?;
        let type0 = ops.row(&types, 0)?;
        let x = ops.add(&x, &type0)?;
        let norm = self.name(BERT.global(Role::EmbeddingNorm));
        let mut x = ops::layer_norm(ops, &x, &norm, self.eps)?;
        let lin = |ops: &mut O, x: &O::T, name: String| {
            ops::linear(ops, x, &name, WeightLayout::OutIn, lora_scale)
        };
        for i in 0..self.layers {
            let name = |role| self.name(&BERT.layer_module(i, role));
            let q = lin(ops, &x, name(Role::Query))?;
            let k = lin(ops, &x, name(Role::Key))?;
            let v = lin(ops, &x, name(Role::Value))?;
            let a = ops.attend(&layout, i, &q, &k, &v, &bias, None)?;
            let a = lin(ops, &a, name(Role::AttentionOutput))?;
            let a = ops.add(&a, &x)?;
            x = ops::layer_norm(ops, &a, &name(Role::MlpNorm), self.eps)?;
            let m = lin(ops, &x, name(Role::MlpIn))?;
            let m = ops.gelu(&m, true)?;
            let m = lin(ops, &m, name(Role::Down))?;
            let m = ops.add(&m, &x)?;
            x = ops::layer_norm(ops, &m, &name(Role::OutputNorm), self.eps)?;
        }
        Ok(x)
    }
}
