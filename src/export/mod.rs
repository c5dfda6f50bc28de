//! Exports: the edited checkpoint directory and the ONNX model beside it.

pub mod graph;
pub mod onnx_proto;

use crate::arch::text::OnnxModel;
use crate::arch::Classifier;
use crate::checkpoint::{write_edited, Checkpoint};
use crate::error::{Error, Result};
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

/// Models whose initializers exceed this many bytes keep them in `model.onnx.data`: a
/// protobuf message cannot exceed 2 GiB.
pub const EXTERNAL_DATA_THRESHOLD: usize = 1 << 30;
pub const ONNX_DATA_FILE: &str = "model.onnx.data";

/// Writes a text model's ONNX graph as `path` (and `path`'s sibling `model.onnx.data` when its
/// weights exceed `external_threshold` bytes). Returns whether external data was written.
pub fn write_text_onnx(model: OnnxModel, path: &Path, external_threshold: usize) -> Result<bool> {
    let metadata: Vec<(&str, String)> = model
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let write = |p: &Path, bytes: &[u8]| std::fs::write(p, bytes).map_err(|e| Error::io(p, e));
    if model.graph.initializer_bytes() > external_threshold {
        let data_name = format!(
            "{}.data",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(ONNX_FILE)
        );
        let (graph, data) = model
            .graph
            .finish_external(&model.name, &metadata, &data_name);
        write(&path.with_file_name(&data_name), &data)?;
        write(path, &graph)?;
        Ok(true)
    } else {
        write(path, &model.graph.finish(&model.name, &metadata))?;
        Ok(false)
    }
}

pub fn write_onnx(classifier: &Classifier, params: &Params, path: &Path) -> Result<()> {
    let bytes = classifier.to_onnx(params, &[("labels", classifier.labels.join("\n"))])?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}
