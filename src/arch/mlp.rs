//! `lethe_mlp`: flatten, then Linear+ReLU hidden layers, then a linear head.
//! Parameters: `layers.{i}.weight|bias`, `classifier.weight|bias`.

use super::{base_config, usize_list};
use crate::error::{Error, Result};
use crate::nn::Block;
use serde_json::Value;

pub const MODEL_TYPE: &str = "lethe_mlp";

pub struct MlpConfig {
    pub hidden_sizes: Vec<usize>,
}

impl MlpConfig {
    pub fn to_config(&self, input_shape: [usize; 3], labels: &[String]) -> Value {
        let mut c = base_config(MODEL_TYPE, input_shape, labels);
        c["hidden_sizes"] = Value::from(self.hidden_sizes.clone());
        c
    }
}

pub fn blocks_from_config(config: &Value) -> Result<Vec<Block>> {
    let hidden = usize_list(config, "hidden_sizes")?;
    if hidden.contains(&0) {
        return Err(Error::Config("hidden_sizes must be positive".into()));
    }
    let input: usize = usize_list(config, "input_shape")?.iter().product();
    let labels = config
        .get("id2label")
        .and_then(Value::as_object)
        .map(|m| m.len())
        .unwrap_or(0);
    let mut blocks = vec![Block::Flatten];
    let mut width = input;
    for (i, &h) in hidden.iter().enumerate() {
        blocks.push(Block::Linear {
            prefix: format!("layers.{i}"),
            in_features: width,
            out_features: h,
        });
        blocks.push(Block::Relu);
        width = h;
    }
    blocks.push(Block::Linear {
        prefix: "classifier".into(),
        in_features: width,
        out_features: labels,
    });
    Ok(blocks)
}
