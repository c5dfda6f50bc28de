//! GGUF files (llama.cpp's format): the header, metadata and tensor table, and dequantization of
//! the tensor types lethe reads to f32: F32, F16, BF16, the legacy Q4_0, Q4_1, Q5_0, Q5_1 and
//! Q8_0, and the K-quants Q2_K to Q6_K ([`blocks`]). Every count, length and offset is checked
//! against the bytes present: GGUF files are untrusted input.
//!
//! Layout (version 2 and 3, little-endian): magic "GGUF", u32 version, u64 tensor count, u64
//! metadata count, the metadata key/value pairs, the tensor infos (name, dimensions, type,
//! offset), padding to `general.alignment` (default 32), then the tensor data.

mod blocks;

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Bounds that keep a hostile header from asking for absurd allocations.
const MAX_ITEMS: u64 = 1 << 24;
const MAX_DIMS: u32 = 8;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The tensor types lethe dequantizes, by their GGML type ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    BF16,
}

/// The types lethe reads, for messages.
const READS: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

impl TensorType {
    fn from_id(id: u32) -> Option<TensorType> {
        Some(match id {
            0 => TensorType::F32,
            1 => TensorType::F16,
            2 => TensorType::Q4_0,
            3 => TensorType::Q4_1,
            6 => TensorType::Q5_0,
            7 => TensorType::Q5_1,
            8 => TensorType::Q8_0,
            10 => TensorType::Q2K,
            11 => TensorType::Q3K,
            12 => TensorType::Q4K,
            13 => TensorType::Q5K,
            14 => TensorType::Q6K,
            30 => TensorType::BF16,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block).
    fn block(self) -> (u64, u64) {
        match self {
            TensorType::F32 => (1, 4),
            TensorType::F16 | TensorType::BF16 => (1, 2),
            TensorType::Q4_0 => (32, 18),
            TensorType::Q4_1 => (32, 20),
            TensorType::Q5_0 => (32, 22),
            TensorType::Q5_1 => (32, 24),
            TensorType::Q8_0 => (32, 34),
            TensorType::Q2K => (256, 84),
            TensorType::Q3K => (256, 110),
            TensorType::Q4K => (256, 144),
            TensorType::Q5K => (256, 176),
            TensorType::Q6K => (256, 210),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions as GGUF stores them: the fastest-varying first.
    pub dims: Vec<u64>,
    pub kind: TensorType,
    /// Byte range in the file.
    pub start: usize,
    pub end: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The shape in row-major order (the order safetensors and candle use).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// The name of a GGML tensor type id, for messages.
fn ggml_type_name(id: u32) -> &'static str {
    const NAMES: [&str; 31] = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
        "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
    ];
    NAMES.get(id as usize).copied().unwrap_or("unknown")
}

/// A parsed GGUF file held in memory.
pub struct Gguf {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    bytes: Vec<u8>,
}

struct Reader<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::Checkpoint {
            path: self.path.to_path_buf(),
            reason: format!(
                "not a valid GGUF file: {} (at byte {})",
                reason.into(),
                self.pos
            ),
        }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| self.bad("length out of range"))?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.bad("truncated"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N as u64)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn count(&mut self, what: &str) -> Result<u64> {
        let n = self.u64()?;
        if n > MAX_ITEMS {
            return Err(self.bad(format!("{what} count {n} is implausibly large")));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String> {
        let n = self.count("string length")?;
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| self.bad("a string is not UTF-8"))
    }

    fn value(&mut self, type_id: u32, depth: u32) -> Result<Value> {
        Ok(match type_id {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(self.array::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.bad(format!("boolean byte {b}"))),
            },
            8 => Value::String(self.string()?),
            9 => {
                if depth > 4 {
                    return Err(self.bad("arrays nested too deeply"));
                }
                let inner = self.u32()?;
                let n = self.count("array length")?;
                let mut items = Vec::with_capacity(n.min(4096) as usize);
                for _ in 0..n {
                    items.push(self.value(inner, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(self.bad(format!("unknown metadata type {other}"))),
        })
    }
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Gguf> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Gguf::parse(path, bytes)
    }

    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Gguf> {
        let mut r = Reader {
            path,
            bytes: &bytes,
            pos: 0,
        };
        if r.take(4)? != MAGIC {
            return Err(r.bad("wrong magic (expected \"GGUF\")"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(r.bad(format!("version {version}; lethe reads versions 2 and 3")));
        }
        let n_tensors = r.count("tensor")?;
        let n_kv = r.count("metadata")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let type_id = r.u32()?;
            let value = r.value(type_id, 0)?;
            metadata.insert(key, value);
        }
        let mut raw_tensors = Vec::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(r.bad(format!("tensor {name} has {n_dims} dimensions")));
            }
            let dims: Vec<u64> = (0..n_dims).map(|_| r.u64()).collect::<Result<_>>()?;
            let type_id = r.u32()?;
            let offset = r.u64()?;
            raw_tensors.push((name, dims, type_id, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            Some(v) => v
                .as_u64()
                .filter(|a| *a > 0 && a.is_power_of_two() && *a <= 1 << 16)
                .ok_or_else(|| r.bad("general.alignment is not a small power of two"))?,
            None => DEFAULT_ALIGNMENT,
        };
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw_tensors.len());
        for (name, dims, type_id, offset) in raw_tensors {
            let kind = TensorType::from_id(type_id).ok_or_else(|| {
                r.bad(format!(
                    "tensor {name} has quantization type {} ({type_id}), which lethe cannot dequantize (it reads {READS})",
                    ggml_type_name(type_id)
                ))
            })?;
            let elements = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(|| r.bad(format!("tensor {name}: dimensions overflow")))?;
            let (block, block_bytes) = kind.block();
            if elements % block != 0 {
                return Err(r.bad(format!(
                    "tensor {name}: {elements} elements are not whole blocks of {block}"
                )));
            }
            let size = (elements / block)
                .checked_mul(block_bytes)
                .ok_or_else(|| r.bad(format!("tensor {name}: size overflows")))?;
            let start = data_start
                .checked_add(offset)
                .ok_or_else(|| r.bad(format!("tensor {name}: offset overflows")))?;
            let end = start
                .checked_add(size)
                .filter(|&e| e <= bytes.len() as u64)
                .ok_or_else(|| r.bad(format!("tensor {name} lies past the end of the file")))?;
            tensors.push(TensorInfo {
                name,
                dims,
                kind,
                start: start as usize,
                end: end as usize,
            });
        }
        Ok(Gguf {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            bytes,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's values as f32, in row-major order of [`TensorInfo::shape`].
    pub fn dequantize(&self, info: &TensorInfo) -> Vec<f32> {
        dequantize(info.kind, &self.bytes[info.start..info.end])
    }
}

/// Dequantizes whole blocks of `kind` (the caller guarantees whole blocks).
pub fn dequantize(kind: TensorType, data: &[u8]) -> Vec<f32> {
    let decode: fn(&[u8], &mut Vec<f32>) = match kind {
        TensorType::F32 => {
            return data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
        TensorType::F16 => {
            return data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect()
        }
        TensorType::BF16 => {
            return data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect()
        }
        TensorType::Q4_0 => blocks::q4_0,
        TensorType::Q4_1 => blocks::q4_1,
        TensorType::Q5_0 => blocks::q5_0,
        TensorType::Q5_1 => blocks::q5_1,
        TensorType::Q8_0 => blocks::q8_0,
        TensorType::Q2K => blocks::q2_k,
        TensorType::Q3K => blocks::q3_k,
        TensorType::Q4K => blocks::q4_k,
        TensorType::Q5K => blocks::q5_k,
        TensorType::Q6K => blocks::q6_k,
    };
    let (values, bytes) = kind.block();
    let mut out = Vec::with_capacity(data.len() / bytes as usize * values as usize);
    for block in data.chunks_exact(bytes as usize) {
        decode(block, &mut out);
    }
    out
}
