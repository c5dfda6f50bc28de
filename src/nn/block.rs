use super::{Params, RunningStats};
use crate::error::Result;
use crate::onnx::graph::{Attr, GraphBuilder};
use candle_core::Tensor;

/// How a parameter starts when a model is trained from scratch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamInit {
    /// He-uniform: U(−√(6/fan_in), √(6/fan_in)), suited to ReLU networks.
    HeUniform {
        fan_in: usize,
    },
    Zeros,
    Ones,
}

#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: ParamInit,
    /// Buffers (batch-norm running statistics) are never trained by gradient.
    pub is_buffer: bool,
}

/// One layer of a sequential classifier.
#[derive(Clone, Debug)]
pub enum Block {
    Flatten,
    Linear {
        prefix: String,
        in_features: usize,
        out_features: usize,
    },
    Conv2d {
        prefix: String,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
    },
    BatchNorm2d {
        prefix: String,
        channels: usize,
        eps: f64,
        momentum: f64,
    },
    Relu,
    MaxPool2d {
        kernel: usize,
    },
}

impl ParamSpec {
    /// A pretrained weight (never initialised by lethe).
    pub fn weight(name: &str, shape: &[usize]) -> ParamSpec {
        spec(name.to_string(), shape.to_vec(), ParamInit::Zeros, false)
    }
}

fn spec(name: String, shape: Vec<usize>, init: ParamInit, is_buffer: bool) -> ParamSpec {
    ParamSpec {
        name,
        shape,
        init,
        is_buffer,
    }
}

impl Block {
    pub fn params(&self) -> Vec<ParamSpec> {
        match self {
            Block::Linear {
                prefix,
                in_features,
                out_features,
            } => vec![
                spec(
                    format!("{prefix}.weight"),
                    vec![*out_features, *in_features],
                    ParamInit::HeUniform {
                        fan_in: *in_features,
                    },
                    false,
                ),
                spec(
                    format!("{prefix}.bias"),
                    vec![*out_features],
                    ParamInit::Zeros,
                    false,
                ),
            ],
            Block::Conv2d {
                prefix,
                in_channels,
                out_channels,
                kernel,
                ..
            } => vec![
                spec(
                    format!("{prefix}.weight"),
                    vec![*out_channels, *in_channels, *kernel, *kernel],
                    ParamInit::HeUniform {
                        fan_in: in_channels * kernel * kernel,
                    },
                    false,
                ),
                spec(
                    format!("{prefix}.bias"),
                    vec![*out_channels],
                    ParamInit::Zeros,
                    false,
                ),
            ],
            Block::BatchNorm2d {
                prefix, channels, ..
            } => vec![
                spec(
                    format!("{prefix}.weight"),
                    vec![*channels],
                    ParamInit::Ones,
                    false,
                ),
                spec(
                    format!("{prefix}.bias"),
                    vec![*channels],
                    ParamInit::Zeros,
                    false,
                ),
                spec(
                    format!("{prefix}.running_mean"),
                    vec![*channels],
                    ParamInit::Zeros,
                    true,
                ),
                spec(
                    format!("{prefix}.running_var"),
                    vec![*channels],
                    ParamInit::Ones,
                    true,
                ),
            ],
            Block::Flatten | Block::Relu | Block::MaxPool2d { .. } => vec![],
        }
    }

    /// Output shape (without the batch dimension) for an input shape.
    pub fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        match self {
            Block::Flatten => vec![input.iter().product()],
            Block::Linear { out_features, .. } => vec![*out_features],
            Block::Conv2d {
                out_channels,
                kernel,
                padding,
                ..
            } => vec![
                *out_channels,
                input[1] + 2 * padding + 1 - kernel,
                input[2] + 2 * padding + 1 - kernel,
            ],
            Block::BatchNorm2d { .. } | Block::Relu => input.to_vec(),
            Block::MaxPool2d { kernel } => vec![input[0], input[1] / kernel, input[2] / kernel],
        }
    }

    /// The candle forward pass. With `stats`, batch norm normalises by batch statistics and
    /// records updated running statistics (training from scratch); without, it uses the stored
    /// running statistics (inference, and unlearning, which must not shift them).
    pub fn forward(
        &self,
        p: &Params,
        x: &Tensor,
        stats: Option<&mut RunningStats>,
    ) -> Result<Tensor> {
        Ok(match self {
            Block::Flatten => x.flatten_from(1)?,
            Block::Linear { prefix, .. } => {
                let w = p.get(&format!("{prefix}.weight"))?;
                let b = p.get(&format!("{prefix}.bias"))?;
                x.matmul(&w.t()?)?.broadcast_add(b)?
            }
            Block::Conv2d {
                prefix,
                out_channels,
                padding,
                ..
            } => {
                let w = p.get(&format!("{prefix}.weight"))?;
                let b = p.get(&format!("{prefix}.bias"))?;
                x.conv2d(w, *padding, 1, 1, 1)?.broadcast_add(&b.reshape((
                    1,
                    *out_channels,
                    1,
                    1,
                ))?)?
            }
            Block::BatchNorm2d {
                prefix,
                channels,
                eps,
                momentum,
            } => {
                let c = *channels;
                let w = p.get(&format!("{prefix}.weight"))?.reshape((1, c, 1, 1))?;
                let b = p.get(&format!("{prefix}.bias"))?.reshape((1, c, 1, 1))?;
                let mean_name = format!("{prefix}.running_mean");
                let var_name = format!("{prefix}.running_var");
                let (mean, var) = match stats {
                    Some(stats) => {
                        let mean = x.mean_keepdim((0, 2, 3))?;
                        let centered = x.broadcast_sub(&mean)?;
                        let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
                        let (n, _, h, wd) = x.dims4()?;
                        let count = (n * h * wd) as f64;
                        let unbiased = (var.detach() * (count / (count - 1.0).max(1.0)))?;
                        let m = *momentum;
                        let new_mean = ((p.get(&mean_name)? * (1.0 - m))?
                            + (mean.detach().flatten_all()? * m)?)?;
                        let new_var =
                            ((p.get(&var_name)? * (1.0 - m))? + (unbiased.flatten_all()? * m)?)?;
                        stats.updates.push((mean_name, new_mean));
                        stats.updates.push((var_name, new_var));
                        (mean, var)
                    }
                    None => (
                        p.get(&mean_name)?.reshape((1, c, 1, 1))?,
                        p.get(&var_name)?.reshape((1, c, 1, 1))?,
                    ),
                };
                let inv_std = (var + *eps)?.sqrt()?.recip()?;
                x.broadcast_sub(&mean)?
                    .broadcast_mul(&inv_std)?
                    .broadcast_mul(&w)?
                    .broadcast_add(&b)?
            }
            Block::Relu => x.relu()?,
            Block::MaxPool2d { kernel } => x.max_pool2d(*kernel)?,
        })
    }

    /// Adds this block's ONNX nodes reading `x`; returns the name of its output.
    pub fn emit_onnx(&self, g: &mut GraphBuilder, p: &Params, x: &str) -> Result<String> {
        Ok(match self {
            Block::Flatten => g.node("Flatten", &[x], None, vec![("axis", Attr::Int(1))]),
            Block::Linear { prefix, .. } => {
                let [w, b] = initializers(g, p, prefix, ["weight", "bias"])?;
                g.node("Gemm", &[x, &w, &b], None, vec![("transB", Attr::Int(1))])
            }
            Block::Conv2d {
                prefix,
                kernel,
                padding,
                ..
            } => {
                let [w, b] = initializers(g, p, prefix, ["weight", "bias"])?;
                let (k, pad) = (*kernel as i64, *padding as i64);
                g.node(
                    "Conv",
                    &[x, &w, &b],
                    None,
                    vec![
                        ("kernel_shape", Attr::Ints(vec![k, k])),
                        ("pads", Attr::Ints(vec![pad, pad, pad, pad])),
                        ("strides", Attr::Ints(vec![1, 1])),
                    ],
                )
            }
            Block::BatchNorm2d { prefix, eps, .. } => {
                let names = initializers(
                    g,
                    p,
                    prefix,
                    ["weight", "bias", "running_mean", "running_var"],
                )?;
                g.node(
                    "BatchNormalization",
                    &[x, &names[0], &names[1], &names[2], &names[3]],
                    None,
                    vec![("epsilon", Attr::Float(*eps as f32))],
                )
            }
            Block::Relu => g.node("Relu", &[x], None, vec![]),
            Block::MaxPool2d { kernel } => {
                let k = *kernel as i64;
                g.node(
                    "MaxPool",
                    &[x],
                    None,
                    vec![
                        ("kernel_shape", Attr::Ints(vec![k, k])),
                        ("strides", Attr::Ints(vec![k, k])),
                    ],
                )
            }
        })
    }
}

/// Stores the parameters `{prefix}.{part}` as initializers; returns their names.
fn initializers<const N: usize>(
    g: &mut GraphBuilder,
    p: &Params,
    prefix: &str,
    parts: [&str; N],
) -> Result<[String; N]> {
    let mut names: [String; N] = std::array::from_fn(|_| String::new());
    for (slot, part) in names.iter_mut().zip(parts) {
        let name = format!("{prefix}.{part}");
        *slot = g.initializer(&name, p.get(&name)?)?;
    }
    Ok(names)
}
