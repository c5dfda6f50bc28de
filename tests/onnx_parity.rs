//! The exported ONNX graph, run by ONNX Runtime, must give candle's logits to 1e-4.

mod common;

use candle_core::{Device, Tensor};
use lethe::arch::Classifier;
use lethe::verify::runtime::OnnxModel;

fn max_diff_for(config: serde_json::Value, batch: usize, seed: u64) -> f32 {
    let classifier = Classifier::from_config(&config).unwrap();
    let params = common::random_params(&classifier, seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    lethe::export::write_onnx(&classifier, &params, &path).unwrap();

    let [c, h, w] = classifier.input_shape;
    let mut rng = lethe::rng::Rng::new(seed);
    let input: Vec<f32> = (0..batch * c * h * w)
        .map(|_| rng.next_f64() as f32)
        .collect();
    let x = Tensor::from_vec(input.clone(), (batch, c, h, w), &Device::Cpu).unwrap();
    let candle: Vec<f32> = classifier
        .forward(&params, &x, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut model = OnnxModel::load(&path, &common::onnxruntime()).unwrap();
    let input = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[batch, c, h, w]), input).unwrap();
    let ort: Vec<f32> = model.run_f32(input).unwrap().iter().copied().collect();
    assert_eq!(ort.len(), candle.len());
    assert!(candle.iter().any(|v| v.abs() > 1e-3), "degenerate logits");
    ort.iter()
        .zip(&candle)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

#[test]
fn mlp_matches_onnx_runtime() {
    let d = max_diff_for(common::mlp_config([1, 8, 8], 5), 7, 1);
    assert!(d <= 1e-4, "max |Δ| = {d}");
}

#[test]
fn cnn_with_batch_norm_matches_onnx_runtime() {
    let d = max_diff_for(common::cnn_config([1, 12, 12], 4, true), 5, 2);
    assert!(d <= 1e-4, "max |Δ| = {d}");
}

#[test]
fn cnn_without_batch_norm_and_several_channels_matches() {
    let d = max_diff_for(common::cnn_config([3, 10, 10], 3, false), 4, 3);
    assert!(d <= 1e-4, "max |Δ| = {d}");
}

#[test]
fn batch_dimension_is_dynamic() {
    // One graph serves batches of any size.
    for batch in [1, 3, 16] {
        let d = max_diff_for(common::mlp_config([1, 6, 6], 3), batch, 4);
        assert!(d <= 1e-4, "batch {batch}: max |Δ| = {d}");
    }
}
