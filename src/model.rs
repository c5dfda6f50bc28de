//! Opening a model, the same way for every command: a checkpoint directory, or a hub id pulled
//! into the shared cache first; its architecture found by config.json's `model_type`; its
//! parameters read onto the run's device, which they carry from then on.

use crate::arch::text::TextModel;
use crate::arch::Classifier;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::nn::{ParamSpec, Params};
use crate::precision::Precision;
use crate::text::data::{encode, Encoded, PromptFormat, TextExample};
use crate::text::TextTokenizer;
use candle_core::Device;
use serde_json::Value;
use std::borrow::Cow;
use std::path::Path;

/// What lethe needs of an architecture to open a checkpoint of it.
pub trait Architecture: Sized {
    fn from_checkpoint(checkpoint: &Checkpoint) -> Result<Self>;
    fn param_specs(&self) -> Vec<ParamSpec>;
    /// Reads every parameter onto `device`, checking names and shapes.
    fn load_params(&self, checkpoint: &Checkpoint, device: &Device) -> Result<Params>;
    fn model_type(&self) -> &str;
}

impl Architecture for Classifier {
    fn from_checkpoint(checkpoint: &Checkpoint) -> Result<Self> {
        Classifier::from_config(&checkpoint.config)
    }
    fn param_specs(&self) -> Vec<ParamSpec> {
        Classifier::param_specs(self)
    }
    fn load_params(&self, checkpoint: &Checkpoint, device: &Device) -> Result<Params> {
        Classifier::load_params(self, checkpoint, device)
    }
    fn model_type(&self) -> &str {
        &self.model_type
    }
}

impl Architecture for TextModel {
    fn from_checkpoint(checkpoint: &Checkpoint) -> Result<Self> {
        TextModel::from_checkpoint(checkpoint)
    }
    fn param_specs(&self) -> Vec<ParamSpec> {
        TextModel::param_specs(self)
    }
    fn load_params(&self, checkpoint: &Checkpoint, device: &Device) -> Result<Params> {
        TextModel::load_params(self, checkpoint, device, candle_core::DType::F32)
    }
    fn model_type(&self) -> &str {
        &self.model_type
    }
}

/// A checkpoint opened as architecture `A`, its parameters on the run's device.
pub struct Opened<A> {
    pub checkpoint: Checkpoint,
    pub arch: A,
    pub params: Params,
}

impl<A: Architecture> Opened<A> {
    /// Opens a checkpoint directory, or pulls a hub id (`org/name[@revision]`) first.
    pub fn open(source: &Path, device: &Device, progress: bool) -> Result<Self> {
        let checkpoint = open_checkpoint(source, progress)?;
        let arch = A::from_checkpoint(&checkpoint)?;
        let params = arch.load_params(&checkpoint, device)?;
        Ok(Opened {
            checkpoint,
            arch,
            params,
        })
    }

    /// Parameters of the architecture, buffers (batch-norm statistics) excluded.
    pub fn num_parameters(&self) -> usize {
        self.arch
            .param_specs()
            .iter()
            .filter(|s| !s.is_buffer)
            .map(|s| s.shape.iter().product::<usize>())
            .sum()
    }
}

fn open_checkpoint(source: &Path, progress: bool) -> Result<Checkpoint> {
    let dir = crate::hub::resolve_model(source, progress)?;
    Checkpoint::open(&dir)
}

/// Any model lethe knows, for the commands that take either kind (export, verify, diff).
pub enum AnyModel {
    Classifier(Opened<Classifier>),
    Text(Opened<TextModel>),
}

impl AnyModel {
    pub fn open(source: &Path, device: &Device, progress: bool) -> Result<AnyModel> {
        let checkpoint = open_checkpoint(source, progress)?;
        let model_type = checkpoint
            .config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(if crate::arch::text::is_text_model_type(model_type) {
            let arch = TextModel::from_checkpoint(&checkpoint)?;
            let params = arch.load_params(&checkpoint, device, candle_core::DType::F32)?;
            AnyModel::Text(Opened {
                checkpoint,
                arch,
                params,
            })
        } else {
            let arch = Classifier::from_checkpoint(&checkpoint)?;
            let params = arch.load_params(&checkpoint, device)?;
            AnyModel::Classifier(Opened {
                checkpoint,
                arch,
                params,
            })
        })
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        match self {
            AnyModel::Classifier(m) => &m.checkpoint,
            AnyModel::Text(m) => &m.checkpoint,
        }
    }
}

/// A causal language model with its tokenizer: what text runs, metrics and diffs open.
pub struct LanguageModel {
    pub opened: Opened<TextModel>,
    pub tokenizer: TextTokenizer,
}

impl LanguageModel {
    /// Opens a language model with its frozen matrices held in `precision` (crate::precision).
    pub fn open(
        source: &Path,
        device: &Device,
        precision: Precision,
        progress: bool,
    ) -> Result<LanguageModel> {
        let checkpoint = open_checkpoint(source, progress)?;
        let arch = TextModel::from_checkpoint(&checkpoint)?;
        let params = arch.load_params(&checkpoint, device, precision.frozen_dtype())?;
        let opened = Opened {
            checkpoint,
            arch,
            params,
        };
        if !opened.arch.is_causal_lm() {
            return Err(Error::Usage(format!(
                "{} is an encoder; lethe unlearns question/answer data from causal language models",
                opened.arch.model_type
            )));
        }
        let tokenizer = TextTokenizer::open(&opened.checkpoint.dir, &opened.checkpoint.config)?;
        Ok(LanguageModel { opened, tokenizer })
    }

    /// Reads `names` again from the checkpoint in f32: the master copies of weights about to
    /// train while the others are held in a lower precision.
    pub fn restore_f32<'n>(&mut self, names: impl IntoIterator<Item = &'n str>) -> Result<()> {
        let opened = &mut self.opened;
        for name in names {
            if opened.params.get(name)?.dtype() != candle_core::DType::F32 {
                let t = opened.checkpoint.load_f32(name, opened.params.device())?;
                opened.params.insert(name, t);
            }
        }
        Ok(())
    }

    /// `params` (this model's weights after training) with every tensor held in a lower
    /// precision read again from the checkpoint in f32: what is exported and verified. Such
    /// tensors did not train, so the checkpoint holds their values exactly.
    pub fn in_full_precision<'p>(&self, params: &'p Params) -> Result<Cow<'p, Params>> {
        if params.all_f32() {
            return Ok(Cow::Borrowed(params));
        }
        let mut full = Params::new(params.device());
        for (name, t) in params.iter() {
            let t = if t.dtype() == candle_core::DType::F32 {
                t.clone()
            } else {
                self.opened.checkpoint.load_f32(name, params.device())?
            };
            full.insert(name.clone(), t);
        }
        Ok(Cow::Owned(full))
    }

    pub fn model(&self) -> &TextModel {
        &self.opened.arch
    }

    pub fn params(&self) -> &Params {
        &self.opened.params
    }

    /// The prompt layout: the chosen one, else the chat template when the model has one.
    pub fn prompt_format(&self, chosen: Option<PromptFormat>) -> PromptFormat {
        chosen.unwrap_or(if self.tokenizer.has_chat_template() {
            PromptFormat::Chat
        } else {
            PromptFormat::Plain
        })
    }

    /// Encodes the examples read from `file`, refusing any longer than the model's context.
    pub fn encode_all(
        &self,
        file: &Path,
        examples: &[TextExample],
        format: PromptFormat,
    ) -> Result<Vec<Encoded>> {
        examples
            .iter()
            .map(|ex| {
                let e = encode(&self.tokenizer, ex, format)?;
                self.check_length(&e)?;
                Ok(e)
            })
            .collect::<Result<_>>()
            .map_err(|e| Error::Data {
                path: file.to_path_buf(),
                reason: e.to_string(),
            })
    }

    pub fn check_length(&self, e: &Encoded) -> Result<()> {
        let max = self.model().max_positions();
        if e.ids.len() > max {
            return Err(Error::Usage(format!(
                "an example of {} tokens is longer than the model's max_position_embeddings ({max})",
                e.ids.len()
            )));
        }
        Ok(())
    }
}
