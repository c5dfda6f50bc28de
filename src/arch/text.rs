//! Transformer text models: the architectures of [`TEXT_MODEL_TYPES`], read from config.json and
//! a checkpoint's tensor names. Each is one forward function over [`Ops`], so the same code runs
//! training (candle) and writes the ONNX graph.

use super::{bert::Bert, gemma3::Gemma3, gpt2::Gpt2, llama::Llama};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::nn::eager::{Eager, KvCache};
use crate::nn::onnx::{OnnxOps, POSITION_IDS};
use crate::nn::ops::Ops;
use crate::nn::{ParamSpec, Params};
use crate::onnx::graph::Dim;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

pub const TEXT_MODEL_TYPES: &[&str] = &[
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma3_text",
    "gpt2",
    "bert",
];

/// ONNX input and output names of exported text models.
pub const INPUT_IDS: &str = "input_ids";
pub const ATTENTION_MASK: &str = "attention_mask";
pub const LOGITS: &str = "logits";
pub const LAST_HIDDEN_STATE: &str = "last_hidden_state";
/// The metadata entry of an export whose matrices are stored in f16.
pub const F16_WEIGHTS: (&str, &str) = ("lethe.weights", "f16");

#[derive(Clone, Debug)]
pub enum TextArch {
    Llama(Llama),
    Gemma3(Gemma3),
    Gpt2(Gpt2),
    Bert(Bert),
}

#[derive(Clone, Debug)]
pub struct TextModel {
    pub model_type: String,
    pub arch: TextArch,
}

pub fn is_text_model_type(model_type: &str) -> bool {
    TEXT_MODEL_TYPES.contains(&model_type)
}

impl TextModel {
    /// Builds the model description; `has` tells which tensors the checkpoint holds (to find
    /// name prefixes such as `transformer.`).
    pub fn from_config(config: &Value, has: &dyn Fn(&str) -> bool) -> Result<TextModel> {
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Config("missing string field model_type".into()))?;
        let arch = match model_type {
            t if super::llama::MODEL_TYPES.contains(&t) => {
                TextArch::Llama(Llama::from_config(t, config)?)
            }
            super::gemma3::MODEL_TYPE => TextArch::Gemma3(Gemma3::from_config(config)?),
            super::gpt2::MODEL_TYPE => TextArch::Gpt2(Gpt2::from_config(config, has)?),
            super::bert::MODEL_TYPE => TextArch::Bert(Bert::from_config(config, has)?),
            other => {
                return Err(Error::UnknownArchitecture {
                    found: other.to_string(),
                    known: super::known_model_types().join(", "),
                })
            }
        };
        let model = TextModel {
            model_type: model_type.to_string(),
            arch,
        };
        model.check_sizes()?;
        Ok(model)
    }

    /// Refuses sizes no real model has, before anything is allocated from them.
    fn check_sizes(&self) -> Result<()> {
        let (layers, widths): (usize, Vec<usize>) = match &self.arch {
            TextArch::Llama(m) => (
                m.layers,
                vec![
                    m.hidden,
                    m.intermediate,
                    m.vocab,
                    m.heads.heads.saturating_mul(m.heads.head_dim),
                ],
            ),
            TextArch::Gemma3(m) => (
                m.layers,
                vec![
                    m.hidden,
                    m.intermediate,
                    m.vocab,
                    m.window,
                    m.heads.heads.saturating_mul(m.heads.head_dim),
                ],
            ),
            TextArch::Gpt2(m) => (m.layers, vec![m.hidden, m.inner, m.vocab]),
            TextArch::Bert(m) => (m.layers, vec![m.hidden, m.intermediate, m.vocab]),
        };
        const MAX_LAYERS: usize = 1024;
        const MAX_WIDTH: usize = 1 << 24;
        if layers == 0 || layers > MAX_LAYERS {
            return Err(Error::Config(format!(
                "{layers} layers: lethe takes 1 to {MAX_LAYERS}"
            )));
        }
        if let Some(w) = widths.iter().find(|&&w| w == 0 || w > MAX_WIDTH) {
            return Err(Error::Config(format!(
                "a dimension of {w}: lethe takes 1 to {MAX_WIDTH}"
            )));
        }
        if self.max_positions() == 0 || self.max_positions() > MAX_WIDTH {
            return Err(Error::Config(format!(
                "max_position_embeddings {} is out of range",
                self.max_positions()
            )));
        }
        Ok(())
    }

    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<TextModel> {
        TextModel::from_config(&ckpt.config, &|n| ckpt.shape(n).is_some())
    }

    /// Causal LMs give next-token logits; encoders give hidden states.
    pub fn is_causal_lm(&self) -> bool {
        !matches!(self.arch, TextArch::Bert(_))
    }

    pub fn vocab_size(&self) -> usize {
        match &self.arch {
            TextArch::Llama(m) => m.vocab,
            TextArch::Gemma3(m) => m.vocab,
            TextArch::Gpt2(m) => m.vocab,
            TextArch::Bert(m) => m.vocab,
        }
    }

    /// The longest input the model takes, in tokens.
    pub fn max_positions(&self) -> usize {
        match &self.arch {
            TextArch::Llama(m) => m.max_positions,
            TextArch::Gemma3(m) => m.max_positions,
            TextArch::Gpt2(m) => m.max_positions,
            TextArch::Bert(m) => m.max_positions,
        }
    }

    pub fn param_specs(&self) -> Vec<ParamSpec> {
        match &self.arch {
            TextArch::Llama(m) => m.param_specs(),
            TextArch::Gemma3(m) => m.param_specs(),
            TextArch::Gpt2(m) => m.param_specs(),
            TextArch::Bert(m) => m.param_specs(),
        }
    }

    /// Module names of the linear layers (where LoRA adapters attach).
    pub fn linear_modules(&self) -> Vec<String> {
        match &self.arch {
            TextArch::Llama(m) => m.linear_modules(),
            TextArch::Gemma3(m) => m.linear_modules(),
            TextArch::Gpt2(m) => m.linear_modules(),
            TextArch::Bert(m) => m.linear_modules(),
        }
    }

    /// The forward pass on any backend: logits [B, T, vocab] (decoders) or the last hidden
    /// state [B, T, hidden] (encoders). `lora_scale` is α/r of attached adapters.
    pub fn forward<O: Ops>(
        &self,
        ops: &mut O,
        ids: &O::T,
        mask: &O::T,
        lora_scale: f64,
    ) -> Result<O::T> {
        match &self.arch {
            TextArch::Llama(m) => m.forward(ops, ids, mask, lora_scale),
            TextArch::Gemma3(m) => m.forward(ops, ids, mask, lora_scale),
            TextArch::Gpt2(m) => m.forward(ops, ids, mask, lora_scale),
            TextArch::Bert(m) => m.forward(ops, ids, mask, lora_scale),
        }
    }

    /// Log-probabilities of `targets` [N] at the positions `rows` [N] (indices into the
    /// flattened [B·T] positions): the output head runs on those positions only, which is most
    /// of a language model's training cost when answers are short.
    pub fn target_log_probs_at(
        &self,
        params: &Params,
        ids: &Tensor,
        mask: &Tensor,
        lora_scale: f64,
        rows: &Tensor,
        targets: &Tensor,
    ) -> Result<Tensor> {
        let logits = self.logits_at(params, ids, mask, lora_scale, rows)?;
        Ok(crate::nn::target_log_probs(&logits, targets)?)
    }

    /// Next-token logits [N, vocab] at the positions `rows` [N] only (indices into the
    /// flattened [B·T] positions).
    pub fn logits_at(
        &self,
        params: &Params,
        ids: &Tensor,
        mask: &Tensor,
        lora_scale: f64,
        rows: &Tensor,
    ) -> Result<Tensor> {
        self.check_length(ids.dim(1)?)?;
        let mut eager = Eager::new(params);
        let hidden = match &self.arch {
            TextArch::Llama(m) => m.hidden_states(&mut eager, ids, mask, lora_scale)?,
            TextArch::Gemma3(m) => m.hidden_states(&mut eager, ids, mask, lora_scale)?,
            TextArch::Gpt2(m) => m.hidden_states(&mut eager, ids, mask, lora_scale)?,
            TextArch::Bert(_) => {
                return Err(Error::Usage(format!(
                    "{} is an encoder; it has no next-token head",
                    self.model_type
                )))
            }
        };
        let width = hidden.dim(2)?;
        let picked = hidden.reshape(((), width))?.index_select(rows, 0)?;
        match &self.arch {
            TextArch::Llama(m) => m.head(&mut eager, &picked),
            TextArch::Gemma3(m) => m.head(&mut eager, &picked),
            TextArch::Gpt2(m) => m.head(&mut eager, &picked),
            TextArch::Bert(_) => unreachable!("refused above"),
        }
    }

    /// The residual stream [N, hidden] after block `layer` (0-based) at the positions `rows`
    /// [N] (indices into the flattened [B·T] positions): what representation misdirection
    /// (RMU) steers.
    pub fn residual_at(
        &self,
        params: &Params,
        ids: &Tensor,
        mask: &Tensor,
        lora_scale: f64,
        layer: usize,
        rows: &Tensor,
    ) -> Result<Tensor> {
        self.check_length(ids.dim(1)?)?;
        if layer >= self.layers() {
            return Err(Error::Usage(format!(
                "layer {layer} does not exist: the model has layers 0 to {}",
                self.layers() - 1
            )));
        }
        let mut eager = Eager::new(params);
        let x = match &self.arch {
            TextArch::Llama(m) => m.residual_after(&mut eager, ids, mask, lora_scale, layer + 1)?,
            TextArch::Gemma3(m) => {
                m.residual_after(&mut eager, ids, mask, lora_scale, layer + 1)?
            }
            TextArch::Gpt2(m) => m.residual_after(&mut eager, ids, mask, lora_scale, layer + 1)?,
            TextArch::Bert(_) => {
                return Err(Error::Usage(format!(
                    "{} is an encoder; lethe unlearns from causal language models",
                    self.model_type
                )))
            }
        };
        let width = x.dim(2)?;
        Ok(x.reshape(((), width))?.index_select(rows, 0)?)
    }

    /// Transformer blocks.
    pub fn layers(&self) -> usize {
        match &self.arch {
            TextArch::Llama(m) => m.layers,
            TextArch::Gemma3(m) => m.layers,
            TextArch::Gpt2(m) => m.layers,
            TextArch::Bert(m) => m.layers,
        }
    }

    fn check_length(&self, t: usize) -> Result<()> {
        if t > self.max_positions() {
            return Err(Error::Usage(format!(
                "an input of {t} tokens is longer than the model's max_position_embeddings ({})",
                self.max_positions()
            )));
        }
        Ok(())
    }

    /// Runs the forward pass with candle. `ids` and `mask` are [B, T] u32 tensors.
    pub fn run(
        &self,
        params: &Params,
        ids: &Tensor,
        mask: &Tensor,
        lora_scale: f64,
    ) -> Result<Tensor> {
        self.check_length(ids.dim(1)?)?;
        let mut eager = Eager::new(params);
        self.forward(&mut eager, ids, mask, lora_scale)
    }

    /// Greedy decoding: the `max_new` most likely next tokens after `prompt` (fewer when `eos`
    /// comes first, which is not returned), with a key/value cache.
    pub fn generate_greedy(
        &self,
        params: &Params,
        prompt: &[u32],
        max_new: usize,
        eos: Option<u32>,
    ) -> Result<Vec<u32>> {
        let device = params.device();
        if !self.is_causal_lm() {
            return Err(Error::Usage(format!(
                "{} is an encoder; it does not generate text",
                self.model_type
            )));
        }
        if prompt.is_empty() {
            return Err(Error::Usage("an empty prompt".into()));
        }
        let room = self.max_positions().saturating_sub(prompt.len());
        let mut cache = KvCache::default();
        let mut out = Vec::new();
        let mut input = prompt.to_vec();
        for _ in 0..max_new.min(room) {
            let ids = Tensor::from_vec(input.clone(), (1, input.len()), device)?;
            let mask = Tensor::ones((1, cache.offset + input.len()), DType::U32, device)?;
            let logits = {
                let mut eager = Eager::with_cache(params, &mut cache);
                self.forward(&mut eager, &ids, &mask, 1.0)?
            };
            cache.offset += input.len();
            let last = logits.get(0)?.get(input.len() - 1)?;
            let next = last.argmax(0)?.to_scalar::<u32>()?;
            if Some(next) == eos {
                break;
            }
            out.push(next);
            input = vec![next];
        }
        Ok(out)
    }

    /// Key/value heads and head dimension of a decoder's attention (None for encoders).
    pub fn kv_layout(&self) -> Option<(usize, usize)> {
        match &self.arch {
            TextArch::Llama(m) => Some((m.heads.kv_heads, m.heads.head_dim)),
            TextArch::Gemma3(m) => Some((m.heads.kv_heads, m.heads.head_dim)),
            TextArch::Gpt2(m) => Some((m.heads, m.hidden / m.heads)),
            TextArch::Bert(_) => None,
        }
    }

    /// The ONNX model. A decoder's is laid out as optimum's decoders with past are: int64
    /// `input_ids` and `position_ids` [batch_size, sequence_length], `attention_mask`
    /// [batch_size, past_sequence_length + sequence_length] and per layer
    /// `past_key_values.N.key`/`.value` → `logits` [batch_size, sequence_length, vocab] and
    /// `present.N.key`/`.value`; an encoder's takes `input_ids` and `attention_mask` and gives
    /// `last_hidden_state`.
    pub fn to_onnx(&self, params: &Params, metadata: &[(&str, String)]) -> Result<OnnxModel> {
        self.to_onnx_with(params, metadata, false)
    }

    /// [`TextModel::to_onnx`], with matrices stored in f16 when `f16_weights` (the graph casts
    /// them to f32 where it reads them; metadata `lethe.weights` = `f16` says so).
    pub fn to_onnx_with(
        &self,
        params: &Params,
        metadata: &[(&str, String)],
        f16_weights: bool,
    ) -> Result<OnnxModel> {
        let tokens = [Dim::Named("batch_size"), Dim::Named("sequence_length")];
        let (mut ops, output, width, doc) = match self.kv_layout() {
            Some((kv_heads, head_dim)) => {
                let mut ops = OnnxOps::decoder(params, INPUT_IDS, POSITION_IDS, kv_heads, head_dim);
                ops.graph.input_int64(
                    INPUT_IDS,
                    &tokens,
                    "token ids, int64 [batch_size, sequence_length]",
                );
                ops.graph.input_int64(
                    ATTENTION_MASK,
                    &[
                        Dim::Named("batch_size"),
                        Dim::Named("past_sequence_length + sequence_length"),
                    ],
                    "1 for tokens, 0 for padding, over the cached tokens and the new ones, int64",
                );
                ops.graph.input_int64(
                    POSITION_IDS,
                    &tokens,
                    "each token's position in its sequence, int64 [batch_size, sequence_length]",
                );
                (ops, LOGITS, self.vocab_size(), "next-token scores")
            }
            None => {
                let mut ops = OnnxOps::new(params);
                ops.graph.input_int64(
                    INPUT_IDS,
                    &tokens,
                    "token ids, int64 [batch_size, sequence_length]",
                );
                ops.graph.input_int64(
                    ATTENTION_MASK,
                    &tokens,
                    "1 for tokens, 0 for padding, int64 [batch_size, sequence_length]",
                );
                let doc = "last hidden state";
                (ops, LAST_HIDDEN_STATE, self.hidden_size(), doc)
            }
        };
        if f16_weights {
            ops = ops.with_f16_weights();
        }
        // The first output is the model's answer; the cache's outputs follow it.
        ops.graph.output(
            output,
            &[
                Dim::Named("batch_size"),
                Dim::Named("sequence_length"),
                Dim::Fixed(width),
            ],
            doc,
        );
        let y = self.forward(
            &mut ops,
            &INPUT_IDS.to_string(),
            &ATTENTION_MASK.to_string(),
            1.0,
        )?;
        let mut graph = ops.graph;
        graph.node("Identity", &[&y], Some(output), vec![]);
        Ok(OnnxModel {
            output: output.to_string(),
            graph,
            name: self.model_type.clone(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .chain(f16_weights.then(|| (F16_WEIGHTS.0.to_string(), F16_WEIGHTS.1.to_string())))
                .collect(),
        })
    }

    pub fn hidden_size(&self) -> usize {
        match &self.arch {
            TextArch::Llama(m) => m.hidden,
            TextArch::Gemma3(m) => m.hidden,
            TextArch::Gpt2(m) => m.hidden,
            TextArch::Bert(m) => m.hidden,
        }
    }

    /// Loads every parameter onto `device`, matrices in `matrices` and the rest in f32
    /// (crate::precision), checking names and shapes against the checkpoint, and builds the
    /// model's position tables there.
    pub fn load_params(
        &self,
        ckpt: &Checkpoint,
        device: &Device,
        matrices: DType,
    ) -> Result<Params> {
        let params = super::load_params_in(&self.param_specs(), ckpt, device, matrices)?;
        match &self.arch {
            TextArch::Llama(m) => m.build_rotary_tables(device)?,
            TextArch::Gemma3(m) => m.build_rotary_tables(device)?,
            TextArch::Gpt2(_) | TextArch::Bert(_) => {}
        }
        Ok(params)
    }
}

/// An ONNX graph ready to be written (inline, or with an external data file when large).
pub struct OnnxModel {
    pub graph: crate::onnx::graph::GraphBuilder,
    pub name: String,
    pub output: String,
    pub metadata: Vec<(String, String)>,
}
