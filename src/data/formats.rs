//! Readers for the supported data formats. Every length, count and value is checked against
//! the bytes actually present: data files are untrusted input.

use super::Dataset;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Reads a file, gunzipping when its name ends in `.gz`.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::Data {
                path: path.to_path_buf(),
                reason: format!("not a valid gzip stream: {e}"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Parses an IDX file of unsigned bytes: magic 0x0000_08_NN (NN = number of dimensions),
/// then NN big-endian u32 sizes, then the data.
fn parse_idx_u8(path: &Path, bytes: &[u8], expect_dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    if bytes.len() < 4 {
        return Err(bad(path, "shorter than an IDX header"));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(bad(
            path,
            "not an IDX file of unsigned bytes (bad magic number)",
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims != expect_dims {
        return Err(bad(
            path,
            format!("IDX file has {ndims} dimensions, expected {expect_dims}"),
        ));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(bad(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(path, "IDX dimensions overflow"))?;
    let data = &bytes[header..];
    if data.len() != count {
        return Err(bad(
            path,
            format!(
                "IDX header promises {count} bytes of data, file holds {} (truncated or corrupt)",
                data.len()
            ),
        ));
    }
    Ok((dims, data.to_vec()))
}

pub fn read_idx_pair(images_path: &Path, labels_path: &Path) -> Result<Dataset> {
    let images = read_maybe_gz(images_path)?;
    let labels = read_maybe_gz(labels_path)?;
    parse_idx_pair(images_path, &images, labels_path, &labels)
}

/// IDX images and labels from bytes; the paths name them in errors (and reveal Fashion-MNIST).
pub fn parse_idx_pair(
    images_path: &Path,
    images: &[u8],
    labels_path: &Path,
    labels: &[u8],
) -> Result<Dataset> {
    let (dims, pixels) = parse_idx_u8(images_path, images, 3)?;
    let (ldims, labels) = parse_idx_u8(labels_path, labels, 1)?;
    if dims[0] != ldims[0] {
        return Err(bad(
            labels_path,
            format!(
                "{} labels for {} images in {}",
                ldims[0],
                dims[0],
                images_path.display()
            ),
        ));
    }
    let known = known_label_names(images_path, &labels);
    Ok(Dataset {
        images: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        shape: [1, dims[1], dims[2]],
        labels: labels.iter().map(|&l| l as u32).collect(),
        label_names: known,
        source: images_path.display().to_string(),
    })
}

/// Fashion-MNIST's class names, recognised by the path; other IDX data has numeric labels.
fn known_label_names(path: &Path, labels: &[u8]) -> Option<Vec<String>> {
    const FASHION: [&str; 10] = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ];
    let is_fashion = path.to_string_lossy().to_lowercase().contains("fashion");
    (is_fashion && labels.iter().all(|&l| l < 10))
        .then(|| FASHION.iter().map(|s| s.to_string()).collect())
}

/// The UCI optical digits CSV shipped with scikit-learn: 64 pixel values in 0..=16, then the
/// label, one sample a line.
pub fn read_digits_csv(path: &Path) -> Result<Dataset> {
    parse_digits_csv(path, read_maybe_gz(path)?)
}

pub fn parse_digits_csv(path: &Path, bytes: Vec<u8>) -> Result<Dataset> {
    let text = String::from_utf8(bytes).map_err(|_| bad(path, "not UTF-8 text"))?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 65 {
            return Err(bad(
                path,
                format!(
                    "line {}: {} fields, expected 65 (64 pixels and a label)",
                    lineno + 1,
                    fields.len()
                ),
            ));
        }
        for f in &fields[..64] {
            let v: f32 = f
                .trim()
                .parse()
                .map_err(|_| bad(path, format!("line {}: {f:?} is not a number", lineno + 1)))?;
            if !(0.0..=16.0).contains(&v) {
                return Err(bad(
                    path,
                    format!("line {}: pixel {v} outside 0..=16", lineno + 1),
                ));
            }
            images.push(v / 16.0);
        }
        let label: u32 = fields[64].trim().parse().map_err(|_| {
            bad(
                path,
                format!(
                    "line {}: label {:?} is not a class index",
                    lineno + 1,
                    fields[64]
                ),
            )
        })?;
        labels.push(label);
    }
    Ok(Dataset {
        images,
        shape: [1, 8, 8],
        labels,
        label_names: None,
        source: path.display().to_string(),
    })
}

/// lethe's own format: a safetensors file with `images` (U8 scaled by 1/255, or F32 already in
/// [0, 1]) of shape [N, C, H, W] or [N, H, W], and `labels` (U8, I32 or I64) of shape [N].
/// Optional `__metadata__` key `label_names`: a JSON list of class names.
pub fn read_native(path: &Path) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_native(path, &bytes)
}

pub fn parse_native(path: &Path, bytes: &[u8]) -> Result<Dataset> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(path, format!("not a valid safetensors file: {e}")))?;
    let images = st
        .tensor("images")
        .map_err(|_| bad(path, "no tensor named images"))?;
    let labels = st
        .tensor("labels")
        .map_err(|_| bad(path, "no tensor named labels"))?;
    let shape = match images.shape() {
        [_, c, h, w] => [*c, *h, *w],
        [_, h, w] => [1, *h, *w],
        other => {
            return Err(bad(
                path,
                format!("images must be [N, C, H, W] or [N, H, W], got {other:?}"),
            ))
        }
    };
    let n = images.shape()[0];
    if labels.shape() != [n] {
        return Err(bad(
            path,
            format!(
                "labels shape {:?} does not match {n} images",
                labels.shape()
            ),
        ));
    }
    let pixels: Vec<f32> = match images.dtype() {
        Dtype::U8 => images.data().iter().map(|&p| p as f32 / 255.0).collect(),
        Dtype::F32 => images
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        other => return Err(bad(path, format!("images dtype {other:?}: use U8 or F32"))),
    };
    if pixels.iter().any(|p| !p.is_finite()) {
        return Err(bad(path, "images hold NaN or infinite values"));
    }
    let label_values: Vec<i64> = match labels.dtype() {
        Dtype::U8 => labels.data().iter().map(|&l| l as i64).collect(),
        Dtype::I32 => labels
            .data()
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        Dtype::I64 => labels
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        other => {
            return Err(bad(
                path,
                format!("labels dtype {other:?}: use U8, I32 or I64"),
            ))
        }
    };
    let labels: Vec<u32> = label_values
        .iter()
        .map(|&l| {
            u32::try_from(l).map_err(|_| bad(path, format!("label {l} is negative or too large")))
        })
        .collect::<Result<_>>()?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(path, format!("not a valid safetensors file: {e}")))?;
    let label_names = match meta.metadata().as_ref().and_then(|m| m.get("label_names")) {
        Some(json) => Some(
            serde_json::from_str::<Vec<String>>(json)
                .map_err(|_| bad(path, "metadata label_names is not a JSON list of strings"))?,
        ),
        None => None,
    };
    Ok(Dataset {
        images: pixels,
        shape,
        labels,
        label_names,
        source: path.display().to_string(),
    })
}
