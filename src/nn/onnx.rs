//! [`Ops`] emitted as ONNX nodes: the export of a model is its forward pass run on this backend.

use super::ops::{AttentionPattern, Ops, MASKED};
use super::Params;
use crate::error::Result;
use crate::onnx::graph::{Attr, GraphBuilder};
use candle_core::Tensor;
use std::collections::BTreeSet;

pub struct OnnxOps<'a> {
    pub graph: GraphBuilder,
    params: &'a Params,
    /// Parameters already stored as initializers (tied weights are read twice).
    stored: BTreeSet<String>,
}

impl<'a> OnnxOps<'a> {
    pub fn new(params: &'a Params) -> Self {
        OnnxOps {
            graph: GraphBuilder::new(),
            params,
            stored: BTreeSet::new(),
        }
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
        if self.stored.insert(name.to_string()) {
            self.graph.initializer(name, self.params.get(name)?)?;
        }
        Ok(name.to_string())
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
        let t = self.seq_len(mask);
        let square = self.node("Concat", &[&t, &t], vec![("axis", Attr::Int(0))]);
        let ones = self.node("Expand", &[&one, &square], vec![]);
        // Strictly above the diagonal: keys after the query.
        let k1 = self.graph.const_i64(&[], &[1]);
        let mut blocked = self.node("Trilu", &[&ones, &k1], vec![("upper", Attr::Int(1))]);
        if let Some(w) = window {
            // At or below diagonal −w: keys w or more positions back.
            let kw = self.graph.const_i64(&[], &[-(w as i64)]);
            let old = self.node("Trilu", &[&ones, &kw], vec![("upper", Attr::Int(0))]);
            blocked = self.node("Add", &[&blocked, &old], vec![]);
        }
        let causal = self.scale(&blocked, MASKED)?;
        let axes = self.graph.const_i64(&[3], &[0, 1, 2]);
        let causal = self.node("Unsqueeze", &[&causal, &axes], vec![]);
        Ok(self.node("Add", &[&padding, &causal], vec![]))
    }
}
