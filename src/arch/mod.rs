//! Architectures, one file each, found by the `model_type` of config.json. An architecture turns
//! its config into a sequence of blocks; everything else (parameter names, forward pass, ONNX
//! graph) follows from the blocks.

pub mod bert;
mod cnn;
pub mod family;
pub mod gemma3;
pub mod gpt2;
pub mod llama;
mod mlp;
pub mod rotary;
pub mod text;

pub use cnn::CnnConfig;
pub use mlp::MlpConfig;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::nn::{Block, ParamSpec, Params, RunningStats};
use crate::onnx::graph::{Dim, GraphBuilder};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

/// Input and output names of every exported classifier.
pub const INPUT_NAME: &str = "pixel_values";
pub const OUTPUT_NAME: &str = "logits";

type Builder = fn(&Value) -> Result<Vec<Block>>;

/// model_type → block builder.
const REGISTRY: &[(&str, Builder)] = &[
    (mlp::MODEL_TYPE, mlp::blocks_from_config),
    (cnn::MODEL_TYPE, cnn::blocks_from_config),
];

pub fn known_model_types() -> Vec<&'static str> {
    REGISTRY
        .iter()
        .map(|(t, _)| *t)
        .chain(text::TEXT_MODEL_TYPES.iter().copied())
        .collect()
}

/// A sequential image classifier described by its config.json.
#[derive(Clone, Debug)]
pub struct Classifier {
    pub model_type: String,
    /// [channels, height, width] of one input image.
    pub input_shape: [usize; 3],
    pub labels: Vec<String>,
    pub blocks: Vec<Block>,
}

impl Classifier {
    pub fn from_config(config: &Value) -> Result<Classifier> {
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Config("missing string field model_type".into()))?;
        let builder = REGISTRY
            .iter()
            .find(|(t, _)| *t == model_type)
            .map(|(_, b)| *b)
            .ok_or_else(|| Error::UnknownArchitecture {
                found: model_type.to_string(),
                known: known_model_types().join(", "),
            })?;
        let input_shape = input_shape(config)?;
        let labels = labels(config)?;
        let blocks = builder(config)?;
        let classifier = Classifier {
            model_type: model_type.to_string(),
            input_shape,
            labels,
            blocks,
        };
        let out = classifier.output_shape();
        if out != [classifier.labels.len()] {
            return Err(Error::Config(format!(
                "the layers produce shape {out:?} but id2label has {} labels",
                classifier.labels.len()
            )));
        }
        Ok(classifier)
    }

    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    fn output_shape(&self) -> Vec<usize> {
        self.blocks
            .iter()
            .fold(self.input_shape.to_vec(), |s, b| b.output_shape(&s))
    }

    pub fn param_specs(&self) -> Vec<ParamSpec> {
        self.blocks.iter().flat_map(|b| b.params()).collect()
    }

    /// Loads every parameter from the checkpoint as f32, checking names and shapes.
    pub fn load_params(&self, ckpt: &Checkpoint, device: &Device) -> Result<Params> {
        load_params(&self.param_specs(), ckpt, device)
    }

    /// Logits [batch, labels] for images [batch, C, H, W].
    pub fn forward(
        &self,
        params: &Params,
        images: &Tensor,
        mut stats: Option<&mut RunningStats>,
    ) -> Result<Tensor> {
        let mut x = images.clone();
        for block in &self.blocks {
            x = block.forward(params, &x, stats.as_deref_mut())?;
        }
        Ok(x)
    }

    /// The ONNX model: input `pixel_values` [batch, C, H, W] f32, output `logits` [batch, labels].
    pub fn to_onnx(&self, params: &Params, metadata: &[(&str, String)]) -> Result<Vec<u8>> {
        let mut g = GraphBuilder::new();
        let [c, h, w] = self.input_shape;
        g.input(
            INPUT_NAME,
            &[
                Dim::Named("batch"),
                Dim::Fixed(c),
                Dim::Fixed(h),
                Dim::Fixed(w),
            ],
            "images scaled to [0, 1], NCHW",
        );
        let mut x = INPUT_NAME.to_string();
        for block in &self.blocks {
            x = block.emit_onnx(&mut g, params, &x)?;
        }
        g.node("Identity", &[&x], Some(OUTPUT_NAME), vec![]);
        g.output(
            OUTPUT_NAME,
            &[Dim::Named("batch"), Dim::Fixed(self.num_labels())],
            "unnormalised class scores",
        );
        Ok(g.finish(&self.model_type, metadata))
    }
}

fn input_shape(config: &Value) -> Result<[usize; 3]> {
    let dims = usize_list(config, "input_shape")?;
    match dims.as_slice() {
        [c, h, w] if *c > 0 && *h > 0 && *w > 0 => Ok([*c, *h, *w]),
        _ => Err(Error::Config(format!(
            "input_shape must be [channels, height, width] with positive entries, got {dims:?}"
        ))),
    }
}

/// Labels in class order from `id2label` ({"0": "T-shirt/top", ...}).
fn labels(config: &Value) -> Result<Vec<String>> {
    let map = config
        .get("id2label")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::Config("missing object id2label".into()))?;
    let mut labels = vec![None; map.len()];
    for (k, v) in map {
        let i: usize = k
            .parse()
            .map_err(|_| Error::Config(format!("id2label key {k:?} is not a class index")))?;
        let name = v
            .as_str()
            .ok_or_else(|| Error::Config(format!("id2label[{k}] is not a string")))?;
        let slot = labels.get_mut(i).ok_or_else(|| {
            Error::Config(format!("id2label keys must be 0..{}, found {i}", map.len()))
        })?;
        if slot.is_some() {
            // "1" and "001" name the same class.
            return Err(Error::Config(format!("id2label names class {i} twice")));
        }
        *slot = Some(name.to_string());
    }
    if labels.len() < 2 {
        return Err(Error::Config("id2label needs at least two classes".into()));
    }
    // n distinct keys below n fill every slot.
    Ok(labels.into_iter().map(|l| l.unwrap_or_default()).collect())
}

/// Loads the parameters `specs` name from the checkpoint as f32, checking every shape.
pub fn load_params(specs: &[ParamSpec], ckpt: &Checkpoint, device: &Device) -> Result<Params> {
    load_params_in(specs, ckpt, device, DType::F32)
}

/// As [`load_params`], with matrices (rank 2 and more) held in `matrices` (crate::precision).
pub fn load_params_in(
    specs: &[ParamSpec],
    ckpt: &Checkpoint,
    device: &Device,
    matrices: DType,
) -> Result<Params> {
    let mut params = Params::new(device);
    for spec in specs {
        let found = ckpt
            .shape(&spec.name)
            .ok_or_else(|| Error::MissingTensor(spec.name.clone()))?;
        if found != spec.shape.as_slice() {
            return Err(Error::ShapeMismatch {
                name: spec.name.clone(),
                expected: spec.shape.clone(),
                found: found.to_vec(),
            });
        }
        let dtype = if spec.shape.len() >= 2 {
            matrices
        } else {
            DType::F32
        };
        params.insert(spec.name.clone(), ckpt.load_as(&spec.name, dtype, device)?);
    }
    Ok(params)
}

pub(crate) fn usize_list(config: &Value, key: &str) -> Result<Vec<usize>> {
    let arr = config
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Config(format!("missing array {key}")))?;
    arr.iter()
        .map(|v| {
            v.as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| Error::Config(format!("{key} must hold non-negative integers")))
        })
        .collect()
}

pub(crate) fn usize_field(config: &Value, key: &str, default: Option<usize>) -> Result<usize> {
    match config.get(key) {
        Some(v) => v
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| Error::Config(format!("{key} must be a non-negative integer"))),
        None => default.ok_or_else(|| Error::Config(format!("missing integer {key}"))),
    }
}

pub(crate) fn f64_field(config: &Value, key: &str, default: f64) -> Result<f64> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| Error::Config(format!("{key} must be a finite number"))),
    }
}

pub(crate) fn bool_field(config: &Value, key: &str, default: bool) -> Result<bool> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| Error::Config(format!("{key} must be true or false"))),
    }
}

/// The config.json common to all classifiers: model_type, input shape and labels.
pub fn base_config(model_type: &str, input_shape: [usize; 3], labels: &[String]) -> Value {
    let id2label: serde_json::Map<String, Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), Value::String(l.clone())))
        .collect();
    let label2id: serde_json::Map<String, Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), Value::from(i)))
        .collect();
    serde_json::json!({
        "model_type": model_type,
        "input_shape": input_shape,
        "id2label": id2label,
        "label2id": label2id,
    })
}
