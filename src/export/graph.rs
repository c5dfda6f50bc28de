//! A small builder for ONNX graphs: blocks add nodes and initializers to it, and the finished
//! graph is encoded as an ONNX model file.

use super::onnx_proto::*;
use crate::error::Result;
use candle_core::Tensor;
use prost::Message;

pub const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;

/// One dimension of a graph input or output.
#[derive(Clone, Debug)]
pub enum Dim {
    Fixed(usize),
    Named(&'static str),
}

pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    counter: usize,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh intermediate value name with a readable stem.
    pub fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    pub fn input(&mut self, name: &str, dims: &[Dim], doc: &str) {
        self.inputs.push(value_info(name, dims, doc));
    }

    pub fn output(&mut self, name: &str, dims: &[Dim], doc: &str) {
        self.outputs.push(value_info(name, dims, doc));
    }

    /// Stores an f32 tensor as an initializer named `name`.
    pub fn initializer(&mut self, name: &str, tensor: &Tensor) -> Result<String> {
        let values: Vec<f32> = tensor.flatten_all()?.to_vec1()?;
        self.initializers.push(TensorProto {
            dims: tensor.dims().iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.to_string(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        Ok(name.to_string())
    }

    pub fn initializer_i64(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            name: name.to_string(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.to_string()
    }

    /// Adds a node with one output, named by `output` or freshly from the op type.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        output: Option<&str>,
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        let out = match output {
            Some(o) => o.to_string(),
            None => self.fresh(&op_type.to_lowercase()),
        };
        let attribute = attrs
            .into_iter()
            .map(|(name, a)| {
                let mut p = AttributeProto {
                    name: name.to_string(),
                    ..Default::default()
                };
                match a {
                    Attr::Int(i) => {
                        p.i = i;
                        p.r#type = attribute_type::INT;
                    }
                    Attr::Ints(v) => {
                        p.ints = v;
                        p.r#type = attribute_type::INTS;
                    }
                    Attr::Float(f) => {
                        p.f = f;
                        p.r#type = attribute_type::FLOAT;
                    }
                }
                p
            })
            .collect();
        let name = format!("{op_type}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name,
            op_type: op_type.to_string(),
            attribute,
            domain: String::new(),
        });
        out
    }

    /// Encodes the graph as an ONNX model file's bytes.
    pub fn finish(self, graph_name: &str, metadata: &[(&str, String)]) -> Vec<u8> {
        let model = ModelProto {
            ir_version: IR_VERSION,
            producer_name: "lethe".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            domain: String::new(),
            model_version: 1,
            doc_string: String::new(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: graph_name.to_string(),
                initializer: self.initializers,
                doc_string: String::new(),
                input: self.inputs,
                output: self.outputs,
            }),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: k.to_string(),
                    value: v.clone(),
                })
                .collect(),
        };
        model.encode_to_vec()
    }
}

fn value_info(name: &str, dims: &[Dim], doc: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| match d {
                            Dim::Fixed(n) => Dimension {
                                dim_value: Some(*n as i64),
                                dim_param: None,
                            },
                            Dim::Named(s) => Dimension {
                                dim_value: None,
                                dim_param: Some(s.to_string()),
                            },
                        })
                        .collect(),
                }),
            }),
        }),
        doc_string: doc.to_string(),
    }
}
