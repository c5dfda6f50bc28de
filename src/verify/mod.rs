//! Verification of an exported model with ONNX Runtime: its outputs must match candle's on the
//! same inputs. Inputs and outputs cross into and out of ONNX Runtime as ndarray arrays, on the
//! host.

pub mod metrics;
pub mod runtime;

use crate::arch::text::TextModel;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::nn::Params;
use crate::text::data::{Encoded, TokenBatch};
use candle_core::{DType, Tensor};
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use runtime::OnnxModel;
use std::path::Path;

/// Largest difference allowed between ONNX Runtime's and candle's classifier logits.
pub const PARITY_TOLERANCE: f32 = 1e-4;

/// ONNX Runtime and candle outputs of a text model must agree to this in f32, per unit of the
/// largest |output| above 1: float error grows with the outputs' scale over a deep model
/// (SmolLM2's logits reach ~30, and its two runtimes differ by ~1e-4 on them).
pub const TEXT_PARITY_TOLERANCE: f32 = 1e-4;

/// The result of comparing ONNX Runtime with candle.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Parity {
    /// Samples (images, or token sequences) compared.
    pub samples: usize,
    pub max_abs_diff: f32,
    /// Text models: the largest |output| compared; the tolerance scales with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_abs_logit: Option<f32>,
    pub tolerance: f32,
    pub passed: bool,
    /// Classifiers: accuracy of ONNX Runtime's predictions on the compared samples, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onnx_accuracy: Option<f64>,
}

/// Runs a classifier's ONNX model on `indices` of `data`: logits, row-major [n, classes].
pub fn onnx_logits(model: &mut OnnxModel, data: &Dataset, indices: &[usize]) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for chunk in indices.chunks(1024) {
        crate::interrupt::check()?;
        let (batch, _) = data.gather(chunk);
        let mut shape = vec![chunk.len()];
        shape.extend_from_slice(&data.shape);
        let input = ArrayD::from_shape_vec(IxDyn(&shape), batch)
            .map_err(|e| Error::Runtime(format!("input batch: {e}")))?;
        out.extend(model.run_f32(input)?.iter().copied());
    }
    Ok(out)
}

/// Compares a classifier's ONNX model with candle's logits on several sets at once: each set is
/// the data, the rows compared, and candle's logits on them (row-major).
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
        let ort = onnx_logits(&mut model, data, indices)?;
        if ort.len() != candle.len() {
            return Err(Error::Runtime(format!(
                "ONNX Runtime returned {} values, candle {}",
                ort.len(),
                candle.len()
            )));
        }
        max_abs_diff = max_abs_diff.max_nan(largest_difference(&ort, candle));
        let ort = Array2::from_shape_vec((indices.len(), classes), ort)
            .map_err(|e| Error::Runtime(format!("ONNX Runtime logits: {e}")))?;
        for (row, &i) in ort.axis_iter(Axis(0)).zip(indices.iter()) {
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
        max_abs_logit: None,
        tolerance: PARITY_TOLERANCE,
        passed: max_abs_diff <= PARITY_TOLERANCE,
        onnx_accuracy: Some(100.0 * correct as f64 / samples.max(1) as f64),
    })
}

/// The largest |a − b|; NaN anywhere makes it NaN, so that the check fails rather than passing
/// silently.
fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .fold(0f32, |m, (x, y)| m.max_nan((x - y).abs()))
}

trait MaxNan {
    fn max_nan(self, other: f32) -> f32;
}

impl MaxNan for f32 {
    fn max_nan(self, other: f32) -> f32 {
        if self.is_nan() || other.is_nan() {
            f32::NAN
        } else {
            self.max(other)
        }
    }
}

/// Compares a text model's ONNX graph (inputs `input_ids`, `attention_mask`) with candle on up
/// to 4 token sequences, padded to a batch: the largest |Δ| over real (unpadded) positions.
pub fn text_parity(
    onnx: &Path,
    library: &Path,
    model: &TextModel,
    params: &Params,
    rows: &[Encoded],
    pad_id: u32,
) -> Result<Parity> {
    let rows: Vec<&Encoded> = rows.iter().take(4).collect();
    let batch = TokenBatch::new(&rows, pad_id, params.device())?;
    let candle = model.run(params, &batch.ids, &batch.mask, 1.0)?;
    let (b, t) = batch.ids.dims2()?;
    let host = |x: &Tensor| -> Result<Array2<i64>> {
        let values: Vec<i64> = x.to_dtype(DType::I64)?.flatten_all()?.to_vec1()?;
        Array2::from_shape_vec((b, t), values)
            .map_err(|e| Error::Runtime(format!("token batch: {e}")))
    };
    let mask = host(&batch.mask)?;
    let mut session = OnnxModel::load(onnx, library)?;
    let ort = session.run_tokens(host(&batch.ids)?, mask.clone())?;
    let candle: Vec<f32> = candle.flatten_all()?.to_vec1()?;
    let candle = ArrayD::from_shape_vec(ort.shape(), candle)
        .map_err(|e| Error::Runtime(format!("ONNX Runtime output shape {:?}: {e}", ort.shape())))?;
    let (mut diff, mut scale) = (0f32, 0f32);
    for ((pos, &o), &c) in ort.indexed_iter().zip(candle.iter()) {
        if mask[[pos[0], pos[1]]] == 0 {
            continue;
        }
        diff = diff.max_nan((o - c).abs());
        scale = scale.max(c.abs());
    }
    let tolerance = TEXT_PARITY_TOLERANCE * scale.max(1.0);
    Ok(Parity {
        samples: b,
        max_abs_diff: diff,
        max_abs_logit: Some(scale),
        tolerance,
        passed: diff <= tolerance,
        onnx_accuracy: None,
    })
}
