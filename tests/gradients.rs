//! Gradients reach every trainable parameter (candle's fused kernels would stop them silently),
//! and frozen parameters never move.

mod common;

use candle_core::{Device, Tensor};
use lethe::arch::Classifier;
use lethe::unlearn::objective::{cross_entropy, ForgetLoss, ForgetObjective};
use lethe::unlearn::trainable;

fn every_trainable_parameter_gets_a_gradient(config: serde_json::Value) {
    let classifier = Classifier::from_config(&config).unwrap();
    let mut params = common::random_params(&classifier, 5);
    let specs = classifier.param_specs();
    let set = trainable::select(&mut params, &specs, &["*".into()], &[]).unwrap();
    let [c, h, w] = classifier.input_shape;
    let mut rng = lethe::rng::Rng::new(9);
    let x: Vec<f32> = (0..6 * c * h * w).map(|_| rng.next_f64() as f32).collect();
    let x = Tensor::from_vec(x, (6, c, h, w), &Device::Cpu).unwrap();
    let logits = classifier.forward(&params, &x, None).unwrap();
    let labels = [0u32, 1, 2, 0, 1, 2];
    for objective in [
        ForgetObjective::RandomLabel,
        ForgetObjective::KlUniform,
        ForgetObjective::HeldOutLevel,
    ] {
        // τ above any reachable loss keeps the held-out-level objective active.
        let forget_loss = ForgetLoss {
            objective,
            held_out_loss: 100.0,
        };
        let random = [1u32, 2, 0];
        let forget = forget_loss
            .loss(&logits.narrow(0, 0, 3).unwrap(), &labels[..3], &random)
            .unwrap();
        let retain = cross_entropy(&logits.narrow(0, 3, 3).unwrap(), &labels[3..]).unwrap();
        let total = ((forget + 1e-8).unwrap().log().unwrap() + (retain * 0.5).unwrap()).unwrap();
        let grads = total.backward().unwrap();
        for (name, var) in set.names.iter().zip(&set.vars) {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient ({objective:?})"));
            let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{name}: gradient norm {norm}"
            );
        }
    }
    // Buffers are never trainable.
    assert!(set.names.iter().all(|n| !n.contains("running_")));
}

#[test]
fn mlp_gradients_reach_every_parameter() {
    every_trainable_parameter_gets_a_gradient(common::mlp_config([1, 6, 6], 3));
}

#[test]
fn cnn_with_batch_norm_gradients_reach_every_parameter() {
    every_trainable_parameter_gets_a_gradient(common::cnn_config([1, 8, 8], 3, true));
}

#[test]
fn training_mode_batch_norm_passes_gradients_through_batch_statistics() {
    let classifier = Classifier::from_config(&common::cnn_config([1, 8, 8], 3, true)).unwrap();
    let mut params = common::random_params(&classifier, 1);
    let specs = classifier.param_specs();
    let set = trainable::select(&mut params, &specs, &["*".into()], &[]).unwrap();
    let x = Tensor::rand(0f32, 1f32, (4, 1, 8, 8), &Device::Cpu).unwrap();
    let mut stats = lethe::nn::RunningStats::default();
    let logits = classifier.forward(&params, &x, Some(&mut stats)).unwrap();
    let loss = cross_entropy(&logits, &[0, 1, 2, 0]).unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in set.names.iter().zip(&set.vars) {
        assert!(grads.get(var.as_tensor()).is_some(), "{name}: no gradient");
    }
    // Both batch-norm layers report updated running statistics.
    assert_eq!(stats.updates.len(), 4);
}

#[test]
fn patterns_select_and_freeze() {
    let classifier = Classifier::from_config(&common::mlp_config([1, 6, 6], 3)).unwrap();
    let specs = classifier.param_specs();
    let mut params = common::random_params(&classifier, 5);
    let set = trainable::select(
        &mut params,
        &specs,
        &["layers.*".into()],
        &["*.bias".into()],
    )
    .unwrap();
    assert_eq!(set.names, vec!["layers.0.weight", "layers.1.weight"]);
    let mut params = common::random_params(&classifier, 5);
    let err = trainable::select(&mut params, &specs, &["encoder.*".into()], &[])
        .err()
        .unwrap();
    assert!(err.to_string().contains("matches no parameter"), "{err}");
    let mut params = common::random_params(&classifier, 5);
    let err = trainable::select(&mut params, &specs, &["*".into()], &["*".into()])
        .err()
        .unwrap();
    assert!(err.to_string().contains("empty"), "{err}");
}
