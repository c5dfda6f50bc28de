//! A small builder for ONNX graphs: blocks add nodes and initializers to it, and the finished
//! graph is encoded as an ONNX model file.

use super::proto::*;
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
        self.inputs
            .push(value_info(name, data_type::FLOAT, dims, doc));
    }

    /// An int64 graph input (token ids, attention masks).
    pub fn input_int64(&mut self, name: &str, dims: &[Dim], doc: &str) {
        self.inputs
            .push(value_info(name, data_type::INT64, dims, doc));
    }

    pub fn output(&mut self, name: &str, dims: &[Dim], doc: &str) {
        self.outputs
            .push(value_info(name, data_type::FLOAT, dims, doc));
    }

    /// An f32 constant of any shape (a scalar when `dims` is empty), freshly named.
    pub fn const_f32(&mut self, dims: &[usize], values: &[f32]) -> String {
        let name = self.fresh("const");
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// An int64 constant of any shape (a scalar when `dims` is empty), freshly named.
    pub fn const_i64(&mut self, dims: &[usize], values: &[i64]) -> String {
        let name = self.fresh("const");
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Total bytes of the initializers stored so far.
    pub fn initializer_bytes(&self) -> usize {
        self.initializers.iter().map(|t| t.raw_data.len()).sum()
    }

    /// Stores an f32 tensor as an initializer named `name`.
    pub fn initializer(&mut self, name: &str, tensor: &Tensor) -> Result<String> {
        let values: Vec<f32> = tensor.flatten_all()?.to_vec1()?;
        self.initializers.push(TensorProto {
            dims: tensor.dims().iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.to_string(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        Ok(name.to_string())
    }

    /// Stores a tensor as an f16 initializer named `name` (rounded to nearest).
    pub fn initializer_f16(&mut self, name: &str, tensor: &Tensor) -> Result<String> {
        let values: Vec<half::f16> = tensor
            .to_dtype(candle_core::DType::F16)?
            .flatten_all()?
            .to_vec1()?;
        self.initializers.push(TensorProto {
            dims: tensor.dims().iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT16,
            name: name.to_string(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        Ok(name.to_string())
    }

    pub fn initializer_i64(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            name: name.to_string(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
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
        self.into_model(graph_name, metadata).encode_to_vec()
    }

    /// Encodes the graph with the weights' bytes moved to an external data file named
    /// `data_file` (relative to the model file), as protobuf cannot hold a model over 2 GiB.
    /// Returns (model bytes, data file bytes).
    pub fn finish_external(
        mut self,
        graph_name: &str,
        metadata: &[(&str, String)],
        data_file: &str,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut data = Vec::new();
        // Shape operands and scalars stay inline: shape inference reads them.
        let weights = self
            .initializers
            .iter_mut()
            .filter(|t| t.data_type == data_type::FLOAT && t.raw_data.len() >= 1024);
        for t in weights {
            // 64-byte alignment lets readers map each tensor in place.
            data.resize(data.len().next_multiple_of(64), 0);
            let offset = data.len();
            let bytes = std::mem::take(&mut t.raw_data);
            data.extend_from_slice(&bytes);
            t.data_location = 1;
            t.external_data = [
                ("location", data_file.to_string()),
                ("offset", offset.to_string()),
                ("length", bytes.len().to_string()),
            ]
            .into_iter()
            .map(|(key, value)| StringStringEntryProto {
                key: key.into(),
                value,
            })
            .collect();
        }
        (self.into_model(graph_name, metadata).encode_to_vec(), data)
    }

    fn into_model(self, graph_name: &str, metadata: &[(&str, String)]) -> ModelProto {
        ModelProto {
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
        }
    }
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim], doc: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type,
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
