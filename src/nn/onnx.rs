//! [`Ops`] emitted as ONNX nodes: the export of a model is its forward pass run on this backend.

use super::ops::{AttentionPattern, Ops, MASKED};
use super::Params;
use crate::error::Result;
use crate::onnx::graph::{Attr, Dim, GraphBuilder};
use candle_core::Tensor;
use std::collections::BTreeSet;

pub struct OnnxOps<'a> {
    pub graph: GraphBuilder,
    params: &'a Params,
    /// Parameters already stored as initializers (tied weights are read twice).
    stored: BTreeSet<String>,
    /// A decoder's graph continues a sequence: it reads positions and the keys and values of
    /// earlier tokens, and writes the extended keys and values.
    decoder: Option<DecoderInputs>,
    /// Matrices stored in f16 (each cast to f32 where it is read), halving the file.
    f16_weights: bool,
}

/// The inputs of a decoder graph with a key/value cache, named and laid out as optimum's
/// decoders with past are: `position_ids` [batch_size, sequence_length] and, per layer,
/// `past_key_values.N.key`/`.value` [batch_size, kv_heads, past_sequence_length, head_dim]
/// extended into `present.N.key`/`.value`.
struct DecoderInputs {
    ids: String,
    positions: String,
    kv_heads: usize,
    head_dim: usize,
}

/// Names of the decoder graph's inputs and outputs.
pub const POSITION_IDS: &str = "position_ids";
pub fn past_name(layer: usize, kind: &str) -> String {
    format!("past_key_values.{layer}.{kind}")
}
pub fn present_name(layer: usize, kind: &str) -> String {
    format!("present.{layer}.{kind}")
}

impl<'a> OnnxOps<'a> {
    pub fn new(params: &'a Params) -> Self {
        OnnxOps {
            graph: GraphBuilder::new(),
            params,
            stored: BTreeSet::new(),
            decoder: None,
            f16_weights: false,
        }
    }

    /// Stores matrices (rank ≥ 2) in f16; the graph computes in f32 from them.
    pub fn with_f16_weights(mut self) -> Self {
        self.f16_weights = true;
        self
    }

    /// A decoder's graph: token ids `ids`, their positions in `positions`, and a key/value
    /// cache of `kv_heads` heads of `head_dim` per layer (inputs declared by the caller for ids
    /// and positions; cache inputs and outputs declared as the layers ask for them).
    pub fn decoder(
        params: &'a Params,
        ids: &str,
        positions: &str,
        kv_heads: usize,
        head_dim: usize,
    ) -> Self {
        let mut ops = OnnxOps::new(params);
        ops.decoder = Some(DecoderInputs {
            ids: ids.to_string(),
            positions: positions.to_string(),
            kv_heads,
            head_dim,
        });
        ops
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.graph.node(op, inputs, None, attrs)
    }

    fn scalar(&mut self, value: f64) -> String {
        self.graph.const_f32(&[], &[value as f32])
    }

    /// The sequence length of `ids` [B, T] as a 1-element int64 tensor.
    fn seq_len(&mut self, ids: &str) -> String {
        let shape = self.node("Shape", &[ids], vec![]);
        let start = self.graph.const_i64(&[1], &[1]);
        let end = self.graph.const_i64(&[1], &[2]);
        self.node("Slice", &[&shape, &start, &end], vec![])
    }
}

impl Ops for OnnxOps<'_> {
    type T = String;

    fn param(&mut self, name: &str) -> Result<String> {
        let tensor = self.params.get(name)?;
        let f16 = self.f16_weights && tensor.rank() >= 2;
        let read_as = if f16 {
            format!("{name}.f32")
        } else {
            name.to_string()
        };
        if self.stored.insert(name.to_string()) {
            if f16 {
                self.graph.initializer_f16(name, tensor)?;
                self.graph.node(
                    "Cast",
                    &[name],
                    Some(&read_as),
                    vec![("to", Attr::Int(crate::onnx::proto::data_type::FLOAT as i64))],
                );
            } else {
                self.graph.initializer(name, tensor)?;
            }
        }
        Ok(read_as)
    }

    fn has_param(&self, name: &str) -> bool {
        self.params.get(name).is_ok()
    }

    fn constant(&mut self, name: &str, value: &Tensor) -> Result<String> {
        self.graph.initializer(name, value)
    }

    fn matmul(&mut self, a: &String, b: &String) -> Result<String> {
        Ok(self.node("MatMul", &[a, b], vec![]))
    }

    fn add(&mut self, a: &String, b: &String) -> Result<String> {
        Ok(self.node("Add", &[a, b], vec![]))
    }

    fn sub(&mut self, a: &String, b: &String) -> Result<String> {
        Ok(self.node("Sub", &[a, b], vec![]))
    }

    fn mul(&mut self, a: &String, b: &String) -> Result<String> {
        Ok(self.node("Mul", &[a, b], vec![]))
    }

    fn div(&mut self, a: &String, b: &String) -> Result<String> {
        Ok(self.node("Div", &[a, b], vec![]))
    }

    fn scale(&mut self, a: &String, factor: f64) -> Result<String> {
        let f = self.scalar(factor);
        Ok(self.node("Mul", &[a, &f], vec![]))
    }

    fn add_scalar(&mut self, a: &String, value: f64) -> Result<String> {
        let v = self.scalar(value);
        Ok(self.node("Add", &[a, &v], vec![]))
    }

    fn sqrt(&mut self, a: &String) -> Result<String> {
        Ok(self.node("Sqrt", &[a], vec![]))
    }

    fn neg(&mut self, a: &String) -> Result<String> {
        Ok(self.node("Neg", &[a], vec![]))
    }

    fn mean_last(&mut self, a: &String) -> Result<String> {
        Ok(self.node(
            "ReduceMean",
            &[a],
            vec![("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))],
        ))
    }

    fn softmax_last(&mut self, a: &String) -> Result<String> {
        Ok(self.node("Softmax", &[a], vec![("axis", Attr::Int(-1))]))
    }

    fn silu(&mut self, a: &String) -> Result<String> {
        let s = self.node("Sigmoid", &[a], vec![]);
        Ok(self.node("Mul", &[a, &s], vec![]))
    }

    fn gelu(&mut self, a: &String, exact: bool) -> Result<String> {
        let inner = if exact {
            // 0.5·x·(1 + erf(x/√2))
            let scaled = self.scale(a, std::f64::consts::FRAC_1_SQRT_2)?;
            self.node("Erf", &[&scaled], vec![])
        } else {
            // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
            let sq = self.node("Mul", &[a, a], vec![]);
            let cube = self.node("Mul", &[&sq, a], vec![]);
            let cube = self.scale(&cube, 0.044715)?;
            let sum = self.node("Add", &[a, &cube], vec![]);
            let scaled = self.scale(&sum, (2.0 / std::f64::consts::PI).sqrt())?;
            self.node("Tanh", &[&scaled], vec![])
        };
        let one_plus = self.add_scalar(&inner, 1.0)?;
        let prod = self.node("Mul", &[a, &one_plus], vec![]);
        self.scale(&prod, 0.5)
    }

    fn reshape(&mut self, a: &String, shape: &[i64]) -> Result<String> {
        let s = self.graph.const_i64(&[shape.len()], shape);
        Ok(self.node("Reshape", &[a, &s], vec![]))
    }

    fn permute(&mut self, a: &String, perm: &[usize]) -> Result<String> {
        let perm = perm.iter().map(|&p| p as i64).collect();
        Ok(self.node("Transpose", &[a], vec![("perm", Attr::Ints(perm))]))
    }

    fn narrow_last(&mut self, a: &String, start: usize, len: usize) -> Result<String> {
        let starts = self.graph.const_i64(&[1], &[start as i64]);
        let ends = self.graph.const_i64(&[1], &[(start + len) as i64]);
        let axes = self.graph.const_i64(&[1], &[-1]);
        Ok(self.node("Slice", &[a, &starts, &ends, &axes], vec![]))
    }

    fn concat_last(&mut self, parts: &[String]) -> Result<String> {
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(self.node("Concat", &refs, vec![("axis", Attr::Int(-1))]))
    }

    fn gather_rows(&mut self, table: &String, ids: &String) -> Result<String> {
        Ok(self.node("Gather", &[table, ids], vec![("axis", Attr::Int(0))]))
    }

    fn row(&mut self, table: &String, index: usize) -> Result<String> {
        let i = self.graph.const_i64(&[], &[index as i64]);
        Ok(self.node("Gather", &[table, &i], vec![("axis", Attr::Int(0))]))
    }

    fn leading_rows(&mut self, table: &String, ids: &String) -> Result<String> {
        if let Some(d) = &self.decoder {
            // The rows of the given positions: [batch, sequence, …].
            let positions = d.positions.clone();
            return Ok(self.node("Gather", &[table, &positions], vec![("axis", Attr::Int(0))]));
        }
        let t = self.seq_len(ids);
        let zero = self.graph.const_i64(&[1], &[0]);
        let axes = self.graph.const_i64(&[1], &[0]);
        Ok(self.node("Slice", &[table, &zero, &t, &axes], vec![]))
    }

    fn attention_bias(&mut self, mask: &String, pattern: AttentionPattern) -> Result<String> {
        const FLOAT: i64 = 1;
        let keep = self.node("Cast", &[mask], vec![("to", Attr::Int(FLOAT))]);
        let one = self.scalar(1.0);
        let dropped = self.node("Sub", &[&one, &keep], vec![]);
        let padding = self.scale(&dropped, MASKED)?;
        let padding = self.reshape(&padding, &[0, 1, 1, 1, -1])?;
        let window = match pattern {
            AttentionPattern::Bidirectional => return Ok(padding),
            AttentionPattern::Causal { window } => window,
        };
        // Queries are the last T of the S keys (S = T without a cache): query i sits at key
        // position P + i, P = S − T.
        let s = self.seq_len(mask);
        let t = match &self.decoder {
            Some(d) => {
                let ids = d.ids.clone();
                self.seq_len(&ids)
            }
            None => s.clone(),
        };
        let rect = self.node("Concat", &[&t, &s], vec![("axis", Attr::Int(0))]);
        let ones = self.node("Expand", &[&one, &rect], vec![]);
        let past = self.node("Sub", &[&s, &t], vec![]);
        let past = self.node("Squeeze", &[&past], vec![]);
        // Strictly above diagonal P: keys after the query.
        let k1 = self.graph.const_i64(&[], &[1]);
        let upper = self.node("Add", &[&past, &k1], vec![]);
        let mut blocked = self.node("Trilu", &[&ones, &upper], vec![("upper", Attr::Int(1))]);
        if let Some(w) = window {
            // At or below diagonal P − w: keys w or more positions back.
            let kw = self.graph.const_i64(&[], &[w as i64]);
            let lower = self.node("Sub", &[&past, &kw], vec![]);
            let old = self.node("Trilu", &[&ones, &lower], vec![("upper", Attr::Int(0))]);
            blocked = self.node("Add", &[&blocked, &old], vec![]);
        }
        let causal = self.scale(&blocked, MASKED)?;
        let axes = self.graph.const_i64(&[3], &[0, 1, 2]);
        let causal = self.node("Unsqueeze", &[&causal, &axes], vec![]);
        Ok(self.node("Add", &[&padding, &causal], vec![]))
    }

    fn for_heads(&mut self, rows: &String) -> Result<String> {
        if self.decoder.is_none() {
            return Ok(rows.clone());
        }
        // [batch, sequence, D] → [batch, 1, 1, sequence, D], against [B, KV, G, T, D].
        let axes = self.graph.const_i64(&[2], &[1, 2]);
        Ok(self.node("Unsqueeze", &[rows, &axes], vec![]))
    }

    fn cached_kv(&mut self, layer: usize, k: &String, v: &String) -> Result<(String, String)> {
        let Some(d) = &self.decoder else {
            return Ok((k.clone(), v.clone()));
        };
        let (kv_heads, head_dim) = (d.kv_heads, d.head_dim);
        let axis = self.graph.const_i64(&[1], &[2]);
        let mut extended = Vec::with_capacity(2);
        for (kind, x) in [("key", k), ("value", v)] {
            let past = past_name(layer, kind);
            self.graph.input(
                &past,
                &[
                    Dim::Named("batch_size"),
                    Dim::Fixed(kv_heads),
                    Dim::Named("past_sequence_length"),
                    Dim::Fixed(head_dim),
                ],
                &format!("the {kind}s of earlier tokens in layer {layer}"),
            );
            // [B, KV, P, D] → [B, KV, 1, P, D], then the new tokens' after them.
            let grouped = self.node("Unsqueeze", &[&past, &axis], vec![]);
            let all = self.node("Concat", &[&grouped, x], vec![("axis", Attr::Int(3))]);
            let present = present_name(layer, kind);
            self.graph
                .node("Squeeze", &[&all, &axis], Some(&present), vec![]);
            self.graph.output(
                &present,
                &[
                    Dim::Named("batch_size"),
                    Dim::Fixed(kv_heads),
                    Dim::Named("past_sequence_length + sequence_length"),
                    Dim::Fixed(head_dim),
                ],
                &format!("the {kind}s of every token so far in layer {layer}"),
            );
            extended.push(all);
        }
        let v_all = extended.pop().expect("two");
        let k_all = extended.pop().expect("two");
        Ok((k_all, v_all))
    }
}
