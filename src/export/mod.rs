//! Exports: the edited checkpoint directory and the ONNX model beside it.

pub mod graph;
pub mod onnx_proto;

use crate::arch::Classifier;
use crate::checkpoint::{write_edited, Checkpoint};
use crate::error::Result;
use crate::nn::Params;
use candle_core::Tensor;
use std::collections::BTreeMap;
use std::path::Path;

pub const ONNX_FILE: &str = "model.onnx";

/// Writes the edited checkpoint (only `trained` tensors replaced) and `model.onnx` into `dir`.
pub fn export(
    checkpoint: &Checkpoint,
    classifier: &Classifier,
    params: &Params,
    trained: &[String],
    dir: &Path,
) -> Result<()> {
    let updated: BTreeMap<String, Tensor> = trained
        .iter()
        .map(|n| Ok((n.clone(), params.get(n)?.detach())))
        .collect::<Result<_>>()?;
    write_edited(checkpoint, &updated, dir)?;
    write_onnx(classifier, params, &dir.join(ONNX_FILE))
}

pub fn write_onnx(classifier: &Classifier, params: &Params, path: &Path) -> Result<()> {
    let bytes = classifier.to_onnx(params, &[("labels", classifier.labels.join("\n"))])?;
    std::fs::write(path, bytes).map_err(|e| crate::error::Error::io(path, e))
}
