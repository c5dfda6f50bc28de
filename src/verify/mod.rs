//! Verification of an exported model with ONNX Runtime: its logits must match candle's.

pub mod metrics;
pub mod runtime;

use crate::data::Dataset;
use crate::error::Result;
use runtime::OnnxModel;
use std::path::Path;

/// Largest difference allowed between ONNX Runtime's and candle's logits.
pub const PARITY_TOLERANCE: f32 = 1e-4;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Parity {
    pub samples: usize,
    pub max_abs_diff: f32,
    pub tolerance: f32,
    pub passed: bool,
    /// Accuracy of ONNX Runtime's predictions on the compared samples, in percent.
    pub onnx_accuracy: f64,
}

/// Runs the ONNX model on `indices` of `data` and compares with `candle_logits` (same rows).
pub fn onnx_logits(
    model: &mut OnnxModel,
    data: &Dataset,
    indices: &[usize],
    classes: usize,
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(indices.len() * classes);
    for chunk in indices.chunks(1024) {
        let (batch, _) = data.gather(chunk);
        out.extend(model.run_f32(batch, chunk.len(), &data.shape)?);
    }
    Ok(out)
}

/// Compares ONNX Runtime with candle on several sets at once.
pub fn parity(
    onnx_path: &Path,
    library: &Path,
    sets: &[(&Dataset, &[usize], &[f32])],
    classes: usize,
) -> Result<Parity> {
    let mut model = OnnxModel::load(onnx_path, library)?;
    let mut max_abs_diff = 0f32;
    let (mut samples, mut correct) = (0usize, 0usize);
    for (data, indices, candle) in sets {
        let ort = onnx_logits(&mut model, data, indices, classes)?;
        if ort.len() != candle.len() {
            return Err(crate::error::Error::Runtime(format!(
                "ONNX Runtime returned {} values, candle {}",
                ort.len(),
                candle.len()
            )));
        }
        for (a, b) in ort.iter().zip(candle.iter()) {
            let d = (a - b).abs();
            // NaN anywhere must fail the check, not pass it silently.
            max_abs_diff = if d.is_nan() {
                f32::NAN
            } else {
                max_abs_diff.max(d)
            };
        }
        for (row, &i) in ort.chunks(classes).zip(indices.iter()) {
            let arg = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (k, &v)| if v > b.1 { (k, v) } else { b },
                )
                .0;
            correct += (arg as u32 == data.labels[i]) as usize;
        }
        samples += indices.len();
    }
    Ok(Parity {
        samples,
        max_abs_diff,
        tolerance: PARITY_TOLERANCE,
        passed: max_abs_diff <= PARITY_TOLERANCE,
        onnx_accuracy: 100.0 * correct as f64 / samples.max(1) as f64,
    })
}
