use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;

/// The tensors a forward pass reads, by checkpoint name. Trainable entries are the tensors of
/// candle `Var`s (sharing storage), so a forward pass through them records gradients; frozen
/// entries are plain tensors.
///
/// The parameters carry the run's device: every tensor a run makes (batches, adapters, tables,
/// resumed state) is made on `params.device()`, so the device is chosen once, when the
/// parameters are loaded.
#[derive(Clone)]
pub struct Params {
    tensors: BTreeMap<String, Tensor>,
    device: Device,
}

impl Params {
    pub fn new(device: &Device) -> Self {
        Params {
            tensors: BTreeMap::new(),
            device: device.clone(),
        }
    }

    /// Where these parameters live, and where everything computed from them is made.
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.tensors.iter()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    /// The same parameters with every matrix (rank ≥ 2) rounded to f16 and held in f32 again:
    /// what an export with f16 weights computes with.
    pub fn rounded_to_f16(&self) -> Result<Params> {
        let tensors = self
            .tensors
            .iter()
            .map(|(k, v)| {
                let v = if v.rank() >= 2 {
                    v.to_dtype(candle_core::DType::F16)?
                        .to_dtype(candle_core::DType::F32)?
                } else {
                    v.clone()
                };
                Ok((k.clone(), v))
            })
            .collect::<Result<_>>()?;
        Ok(Params {
            tensors,
            device: self.device.clone(),
        })
    }

    /// The same tensors cut from any gradient graph (they share storage).
    pub fn detached(&self) -> Params {
        Params {
            tensors: self
                .tensors
                .iter()
                .map(|(k, v)| (k.clone(), v.detach()))
                .collect(),
            device: self.device.clone(),
        }
    }

    /// Whether every tensor is f32 (no matrix is held in a lower precision).
    pub fn all_f32(&self) -> bool {
        self.tensors.values().all(|t| t.dtype() == DType::F32)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// Batch-norm running statistics computed in a training-mode forward pass, applied by the
/// trainer after the step (name → new value).
#[derive(Default)]
pub struct RunningStats {
    pub updates: Vec<(String, Tensor)>,
}
