//! Exports: the edited checkpoint directory and the ONNX model beside it.

use crate::arch::text::OnnxModel;
use crate::arch::Classifier;
use crate::checkpoint::{write_edited, Checkpoint};
use crate::error::{Error, Result};
use crate::nn::Params;
use candle_core::Tensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const ONNX_FILE: &str = "model.onnx";

/// Writes the edited checkpoint (only `trained` tensors replaced, the input's other files copied
/// unless `withhold` names them) and `model.onnx` into `dir`. Returns the withheld files.
pub fn export(
    checkpoint: &Checkpoint,
    classifier: &Classifier,
    params: &Params,
    trained: &[String],
    dir: &Path,
    withhold: &dyn Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>> {
    let updated: BTreeMap<String, Tensor> = trained
        .iter()
        .map(|n| Ok((n.clone(), params.get(n)?.detach())))
        .collect::<Result<_>>()?;
    let withheld = write_edited(checkpoint, &updated, dir, withhold)?;
    write_onnx(classifier, params, &dir.join(ONNX_FILE))?;
    Ok(withheld)
}

/// Models whose initializers exceed this many bytes keep them in `model.onnx.data`: a
/// protobuf message cannot exceed 2 GiB.
pub const EXTERNAL_DATA_THRESHOLD: usize = 1 << 30;
pub const ONNX_DATA_FILE: &str = "model.onnx.data";

/// Writes a text model's ONNX graph as `path` (and `path`'s sibling `model.onnx.data` when its
/// weights exceed `external_threshold` bytes). Returns whether external data was written.
pub fn write_text_onnx(model: OnnxModel, path: &Path, external_threshold: usize) -> Result<bool> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(ONNX_FILE);
    let location = format!("{name}.data");
    write_text_onnx_named(
        model,
        path,
        &path.with_file_name(&location),
        &location,
        external_threshold,
    )
}

/// As [`write_text_onnx`], with the external data written to `data_file` while the graph names
/// it `data_location` (relative to the graph's final place): an export assembled under
/// temporary names refers to the names it will have.
pub fn write_text_onnx_named(
    model: OnnxModel,
    path: &Path,
    data_file: &Path,
    data_location: &str,
    external_threshold: usize,
) -> Result<bool> {
    let metadata: Vec<(&str, String)> = model
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let write = |p: &Path, bytes: &[u8]| std::fs::write(p, bytes).map_err(|e| Error::io(p, e));
    if model.graph.initializer_bytes() > external_threshold {
        let (graph, data) = model
            .graph
            .finish_external(&model.name, &metadata, data_location);
        write(data_file, &data)?;
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
