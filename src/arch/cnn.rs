//! `lethe_cnn`: stages of 3×3-style convolution (same padding), optional batch norm, ReLU and
//! 2×2 max pooling, then flatten and a linear head.
//! Parameters: `features.{i}.conv.weight|bias`, `features.{i}.bn.weight|bias|running_mean|running_var`,
//! `classifier.weight|bias`.

use super::{base_config, usize_field, usize_list};
use crate::error::{Error, Result};
use crate::nn::Block;
use serde_json::Value;

pub const MODEL_TYPE: &str = "lethe_cnn";

pub struct CnnConfig {
    pub channels: Vec<usize>,
    pub kernel_size: usize,
    pub batch_norm: bool,
}

impl CnnConfig {
    pub fn to_config(&self, input_shape: [usize; 3], labels: &[String]) -> Value {
        let mut c = base_config(MODEL_TYPE, input_shape, labels);
        c["channels"] = Value::from(self.channels.clone());
        c["kernel_size"] = Value::from(self.kernel_size);
        c["batch_norm"] = Value::from(self.batch_norm);
        c
    }
}

pub fn blocks_from_config(config: &Value) -> Result<Vec<Block>> {
    let channels = usize_list(config, "channels")?;
    if channels.is_empty() || channels.contains(&0) {
        return Err(Error::Config("channels must list positive widths".into()));
    }
    let kernel = usize_field(config, "kernel_size", Some(3))?;
    if kernel == 0 || kernel % 2 == 0 {
        return Err(Error::Config("kernel_size must be odd".into()));
    }
    let batch_norm = config
        .get("batch_norm")
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| Error::Config("batch_norm must be true or false".into()))
        })
        .transpose()?
        .unwrap_or(false);
    let input = usize_list(config, "input_shape")?;
    let labels = config
        .get("id2label")
        .and_then(Value::as_object)
        .map(|m| m.len())
        .unwrap_or(0);
    let (mut c, mut h, mut w) = match input.as_slice() {
        [c, h, w] => (*c, *h, *w),
        _ => return Err(Error::Config("input_shape must have three entries".into())),
    };
    let mut blocks = Vec::new();
    for (i, &out) in channels.iter().enumerate() {
        if h < 2 || w < 2 {
            return Err(Error::Config(format!(
                "{} pooling stages shrink the {}×{} input to nothing",
                channels.len(),
                input[1],
                input[2]
            )));
        }
        blocks.push(Block::Conv2d {
            prefix: format!("features.{i}.conv"),
            in_channels: c,
            out_channels: out,
            kernel,
            padding: kernel / 2,
        });
        if batch_norm {
            blocks.push(Block::BatchNorm2d {
                prefix: format!("features.{i}.bn"),
                channels: out,
                eps: 1e-5,
                momentum: 0.1,
            });
        }
        blocks.push(Block::Relu);
        blocks.push(Block::MaxPool2d { kernel: 2 });
        c = out;
        h /= 2;
        w /= 2;
    }
    blocks.push(Block::Flatten);
    blocks.push(Block::Linear {
        prefix: "classifier".into(),
        in_features: c * h * w,
        out_features: labels,
    });
    Ok(blocks)
}
