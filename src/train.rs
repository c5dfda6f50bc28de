//! Training a classifier from scratch: the bundled model, and the gold standard of unlearning,
//! a model retrained on the retain set only.

use crate::arch::Classifier;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::nn::{ParamInit, Params, RunningStats};
use crate::rng::Rng;
use crate::unlearn::objective::cross_entropy;
use crate::unlearn::{LrSchedule, Optimizer, OptimizerKind};
use candle_core::{Device, Tensor, Var};

#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    /// Cosine decay of the learning rate to zero over the run.
    pub cosine: bool,
    pub seed: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: f32,
    pub train_accuracy: f32,
}

/// Fresh parameters for a classifier, drawn from `seed`.
pub fn init_params(classifier: &Classifier, seed: u64, device: &Device) -> Result<Params> {
    let mut rng = Rng::derived(seed, "init");
    let mut params = Params::new(device);
    for spec in classifier.param_specs() {
        let n: usize = spec.shape.iter().product();
        let values: Vec<f32> = match spec.init {
            ParamInit::HeUniform { fan_in } => {
                let bound = (6.0 / fan_in as f64).sqrt();
                (0..n)
                    .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                    .collect()
            }
            ParamInit::Zeros => vec![0.0; n],
            ParamInit::Ones => vec![1.0; n],
        };
        params.insert(
            spec.name.clone(),
            Tensor::from_vec(values, &spec.shape[..], device)?,
        );
    }
    Ok(params)
}

/// Trains all parameters on `indices` of `train`; returns the final parameters.
pub fn train(
    classifier: &Classifier,
    mut params: Params,
    train: &Dataset,
    indices: &[usize],
    cfg: &TrainConfig,
    mut on_epoch: impl FnMut(&EpochRecord),
    progress: &indicatif::ProgressBar,
) -> Result<(Params, Vec<EpochRecord>)> {
    if indices.is_empty() {
        return Err(Error::Selection("no training samples".into()));
    }
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(Error::Usage(
            "the number of epochs and the batch size must be positive".into(),
        ));
    }
    let device = params.device().clone();
    let specs = classifier.param_specs();
    let mut names = Vec::new();
    let mut vars = Vec::new();
    for spec in specs.iter().filter(|s| !s.is_buffer) {
        let var = Var::from_tensor(params.get(&spec.name)?)?;
        params.insert(spec.name.clone(), var.as_tensor().clone());
        names.push(spec.name.clone());
        vars.push(var);
    }
    let mut optimizer = Optimizer::new(cfg.optimizer, cfg.lr, vars.len());
    let mut rng = Rng::derived(cfg.seed, "train-batches");
    let mut order = indices.to_vec();
    let steps_per_epoch = order.len().div_ceil(cfg.batch_size);
    let total = steps_per_epoch * cfg.epochs;
    progress.set_length(total as u64);
    let mut history = Vec::new();
    let mut step = 0;
    for epoch in 0..cfg.epochs {
        rng.shuffle(&mut order);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        for chunk in order.chunks(cfg.batch_size) {
            if cfg.cosine {
                optimizer.lr = LrSchedule::Cosine.rate(cfg.lr, step, total);
            }
            let (x, y) = train.batch(chunk, &device)?;
            let mut stats = RunningStats::default();
            let logits = classifier.forward(&params, &x, Some(&mut stats))?;
            let loss = cross_entropy(&logits, &y)?;
            let value = loss.to_scalar::<f32>()?;
            if !value.is_finite() {
                return Err(Error::NonFinite {
                    step,
                    what: "the training loss",
                    value,
                });
            }
            let store = loss.backward()?;
            let grads: Vec<Tensor> = vars
                .iter()
                .map(|v| match store.get(v.as_tensor()) {
                    Some(g) => Ok(g.clone()),
                    None => Ok(v.as_tensor().zeros_like()?),
                })
                .collect::<Result<_>>()?;
            optimizer.step(&vars, &grads)?;
            for (name, value) in stats.updates {
                params.insert(name, value);
            }
            let predicted: Vec<u32> = logits.argmax(1)?.to_vec1()?;
            correct += predicted.iter().zip(&y).filter(|(p, t)| p == t).count();
            seen += y.len();
            loss_sum += value as f64 * y.len() as f64;
            step += 1;
            progress.inc(1);
        }
        let record = EpochRecord {
            epoch,
            loss: (loss_sum / seen as f64) as f32,
            train_accuracy: 100.0 * correct as f32 / seen as f32,
        };
        progress.set_message(format!(
            "epoch {} loss {:.4} train acc {:.2} %",
            epoch + 1,
            record.loss,
            record.train_accuracy
        ));
        on_epoch(&record);
        history.push(record);
    }
    progress.finish_and_clear();
    // Return plain tensors: the trained values, detached from their variables.
    let mut out = Params::new(params.device());
    for (name, t) in params.iter() {
        out.insert(name.clone(), t.detach());
    }
    Ok((out, history))
}
