//! GGUF metadata as conversion reads it: typed getters, keys under the architecture's prefix,
//! and errors that name the file.

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value as GgufValue};

/// A GGUF file's metadata, read with its architecture's key prefix.
pub struct Meta<'a> {
    pub gguf: &'a Gguf,
    pub arch: String,
}

impl Meta<'_> {
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.gguf.metadata.get(key)
    }

    pub fn arch_u64(&self, key: &str) -> Result<u64> {
        let full = format!("{}.{key}", self.arch);
        self.get(&full)
            .and_then(GgufValue::as_u64)
            .ok_or_else(|| self.bad(format!("missing integer metadata {full}")))
    }

    pub fn arch_f64(&self, key: &str) -> Option<f64> {
        match self.get(&format!("{}.{key}", self.arch))? {
            // The shortest decimal of the f32 (1e-5, not 9.99999974e-6).
            GgufValue::F32(v) => v.to_string().parse().ok(),
            GgufValue::F64(v) => Some(*v),
            other => other.as_u64().map(|v| v as f64),
        }
    }

    pub fn bad(&self, reason: String) -> Error {
        Error::Checkpoint {
            path: self.gguf.path.clone(),
            reason,
        }
    }

    pub fn strings(&self, key: &str) -> Option<Vec<&str>> {
        match self.get(key)? {
            GgufValue::Array(items) => items.iter().map(GgufValue::as_str).collect(),
            _ => None,
        }
    }
}
