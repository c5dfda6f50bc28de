//! Hugging Face-layout checkpoint directories: `config.json` plus `model.safetensors`, or shards
//! listed by `model.safetensors.index.json`. Tensors stay memory-mapped; only what the model
//! needs in f32 is converted. Writing an edited checkpoint keeps every untouched tensor's bytes,
//! the dtypes, `__metadata__` and every other file of the input directory.

mod write;

pub use write::{write_edited, write_new, write_tensors, OutputDir};

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.json";
pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// One safetensors file of a checkpoint, mapped read-only.
pub struct Shard {
    pub file_name: String,
    mmap: Mmap,
    header_len: usize,
    metadata: Metadata,
}

impl Shard {
    pub fn open(path: &Path) -> Result<Shard> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the file is opened read-only and lethe never writes to its inputs; a concurrent
        // writer from outside would be a misuse the OS cannot prevent for any reader.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let (header_len, metadata) = parse_header(path, &mmap)?;
        Ok(Shard {
            file_name: file_name_of(path),
            mmap,
            header_len,
            metadata,
        })
    }

    /// Tensor names in file order (by data offset).
    pub fn names(&self) -> Vec<String> {
        self.metadata.offset_keys()
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.metadata.info(name)
    }

    pub fn user_metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.metadata().as_ref()
    }

    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        let info = self.metadata.info(name)?;
        let start = 8 + self.header_len + info.data_offsets.0;
        let end = 8 + self.header_len + info.data_offsets.1;
        Some(&self.mmap[start..end])
    }
}

/// Validates a safetensors header against the bytes present: header length, JSON, dtypes, and
/// offsets that tile the data exactly.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<(usize, Metadata)> {
    SafeTensors::read_metadata(bytes).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        reason: describe_safetensors_error(&e),
    })
}

fn describe_safetensors_error(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "file is shorter than the 8-byte header length (truncated?)".into(),
        E::InvalidHeaderLength => {
            "header length points past the end of the file (truncated?)".into()
        }
        E::MetadataIncompleteBuffer => {
            "tensor data does not end where the file ends (truncated, or the header lies about sizes)"
                .into()
        }
        E::InvalidOffset(name) => format!("tensor {name} has offsets that overlap or leave gaps"),
        E::TensorInvalidInfo => "a tensor's byte range does not match its dtype and shape".into(),
        other => format!("{other}"),
    }
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A checkpoint directory, opened and validated.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: serde_json::Value,
    pub shards: Vec<Shard>,
    /// Tensor name → index into `shards`.
    location: BTreeMap<String, usize>,
}

impl Checkpoint {
    pub fn open(dir: impl AsRef<Path>) -> Result<Checkpoint> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::Checkpoint {
                path: dir,
                reason: "not a directory (expected config.json and model.safetensors)".into(),
            });
        }
        let config_path = dir.join(CONFIG_FILE);
        let config_text =
            std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let config: serde_json::Value = serde_json::from_str(&config_text)
            .map_err(|e| Error::Config(format!("{}: {e}", config_path.display())))?;
        if !config.is_object() {
            return Err(Error::Config(format!(
                "{}: expected a JSON object",
                config_path.display()
            )));
        }

        let shard_files = shard_file_names(&dir)?;
        let mut shards = Vec::with_capacity(shard_files.len());
        let mut location = BTreeMap::new();
        for (i, file) in shard_files.iter().enumerate() {
            let shard = Shard::open(&dir.join(file))?;
            for name in shard.names() {
                if location.insert(name.clone(), i).is_some() {
                    return Err(Error::Checkpoint {
                        path: dir.clone(),
                        reason: format!("tensor {name} appears in more than one shard"),
                    });
                }
            }
            shards.push(shard);
        }
        let ckpt = Checkpoint {
            dir,
            config,
            shards,
            location,
        };
        ckpt.check_index_agrees()?;
        Ok(ckpt)
    }

    fn check_index_agrees(&self) -> Result<()> {
        let index_path = self.dir.join(INDEX_FILE);
        if !index_path.exists() {
            return Ok(());
        }
        let map = read_index(&index_path)?;
        for (name, file) in &map {
            let shard = self.location.get(name).map(|&i| &self.shards[i].file_name);
            if shard != Some(file) {
                return Err(Error::Checkpoint {
                    path: index_path.clone(),
                    reason: format!(
                        "index places {name} in {file}, but that file does not hold it"
                    ),
                });
            }
        }
        if map.len() != self.location.len() {
            return Err(Error::Checkpoint {
                path: index_path,
                reason: "the shards hold tensors the index does not list".into(),
            });
        }
        Ok(())
    }

    pub fn tensor_names(&self) -> impl Iterator<Item = &String> {
        self.location.keys()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.location.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        let shard = &self.shards[*self.location.get(name)?];
        shard.info(name).map(|i| i.shape.as_slice())
    }

    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        let shard = &self.shards[*self.location.get(name)?];
        shard.info(name).map(|i| i.dtype)
    }

    /// The tensor converted to `dtype` on `device`. The conversion happens in host memory, so
    /// a device never holds more than the converted tensor.
    pub fn load_as(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        if dtype == DType::F32 {
            return self.load_f32(name, device);
        }
        if dtype == DType::BF16 && self.dtype(name) == Some(Dtype::BF16) {
            // Stored as held: the values are read as they are (large models load much faster).
            let shard = &self.shards[self.location[name]];
            let info = shard.info(name).expect("name located in shard");
            let bytes = shard.bytes(name).expect("name located in shard");
            let values = le_values(bytes, half::bf16::from_le_bytes);
            return Ok(Tensor::from_vec(values, &info.shape[..], device)?);
        }
        let host = self.load_f32(name, &Device::Cpu)?.to_dtype(dtype)?;
        Ok(host.to_device(device)?)
    }

    /// The tensor converted to f32 on `device`.
    pub fn load_f32(&self, name: &str, device: &Device) -> Result<Tensor> {
        let shard = &self.shards[*self
            .location
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?];
        let info = shard.info(name).expect("name located in shard");
        let bytes = shard.bytes(name).expect("name located in shard");
        let tensor = match info.dtype {
            Dtype::F32 => {
                Tensor::from_vec(le_values(bytes, f32::from_le_bytes), &info.shape[..], device)?
            }
            Dtype::F16 => {
                let v = le_values(bytes, |b| half::f16::from_le_bytes(b).to_f32());
                Tensor::from_vec(v, &info.shape[..], device)?
            }
            Dtype::BF16 => {
                let v = le_values(bytes, |b| half::bf16::from_le_bytes(b).to_f32());
                Tensor::from_vec(v, &info.shape[..], device)?
            }
            Dtype::F64 => {
                let v: Vec<f32> = le_values(bytes, f64::from_le_bytes)
                    .into_iter()
                    .map(|x| x as f32)
                    .collect();
                Tensor::from_vec(v, &info.shape[..], device)?
            }
            other => {
                return Err(Error::Checkpoint {
                    path: self.dir.join(&shard.file_name),
                    reason: format!(
                        "tensor {name} has dtype {other:?}; lethe trains f32, f16, bf16 and f64 weights"
                    ),
                })
            }
        };
        Ok(tensor.to_dtype(DType::F32)?)
    }
}

/// Reads little-endian values of any width without assuming the slice is aligned
/// (files from other tools may place tensors at odd offsets).
fn le_values<const N: usize, T>(bytes: &[u8], from: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| from(c.try_into().expect("chunk of N bytes")))
        .collect()
}

/// The safetensors files of a checkpoint directory, in index order.
fn shard_file_names(dir: &Path) -> Result<Vec<String>> {
    let index_path = dir.join(INDEX_FILE);
    if index_path.exists() {
        let map = read_index(&index_path)?;
        let mut files: Vec<String> = map.values().cloned().collect();
        files.sort();
        files.dedup();
        for f in &files {
            if !is_plain_file_name(f) {
                return Err(Error::Checkpoint {
                    path: index_path.clone(),
                    reason: format!("shard name {f:?} is not a plain file name in this directory"),
                });
            }
            if !dir.join(f).is_file() {
                return Err(Error::Checkpoint {
                    path: index_path.clone(),
                    reason: format!("shard {f} listed in the index does not exist"),
                });
            }
        }
        if files.is_empty() {
            return Err(Error::Checkpoint {
                path: index_path,
                reason: "weight_map is empty".into(),
            });
        }
        return Ok(files);
    }
    if dir.join(SINGLE_FILE).is_file() {
        return Ok(vec![SINGLE_FILE.to_string()]);
    }
    Err(Error::Checkpoint {
        path: dir.to_path_buf(),
        reason: format!("neither {SINGLE_FILE} nor {INDEX_FILE} found"),
    })
}

/// A shard name must stay inside the checkpoint directory.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && !name.contains('\0')
}

/// `weight_map` of an index file: tensor name → shard file name.
pub fn read_index(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_index(path, &text)
}

pub fn parse_index(path: &Path, text: &[u8]) -> Result<BTreeMap<String, String>> {
    let value: serde_json::Value = serde_json::from_slice(text).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("not JSON: {e}"),
    })?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: "no weight_map object".into(),
        })?;
    map.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), s.to_string()))
                .ok_or_else(|| Error::Checkpoint {
                    path: path.to_path_buf(),
                    reason: format!("weight_map entry {k} is not a string"),
                })
        })
        .collect()
}
