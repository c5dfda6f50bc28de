//! Training from scratch and fine-tuning: `lethe train` makes a classifier (the bundled model, or
//! the "retrained without the forget set" gold standard) and `lethe train-text` teaches a
//! language model question/answer data (e.g. facts to forget later).

use super::text::{merged, select_trainable, write_outputs, TextTrainable};
use super::{steps_bar, Withheld, REPORT_FILE};
use crate::arch::Classifier;
use crate::checkpoint::{write_new, OutputDir};
use crate::data::{self, Data, DataSpec, ForgetSpec};
use crate::error::Result;
use crate::export;
use crate::model::LanguageModel;
use crate::precision::Precision;
use crate::report::{RunSummary, TRAIN_SCHEMA};
use crate::text::data::PromptFormat;
use crate::text::metrics;
use crate::train::{self, EpochRecord, TrainConfig};
use crate::unlearn::lora::LoraConfig;
use crate::unlearn::text_task::TextTask;
use crate::unlearn::{self, ForgetObjective, Samples, UnlearnConfig};
use crate::verify::metrics as classifier_metrics;
use candle_core::Device;
use std::path::PathBuf;

/// The architecture of a model trained from scratch; its input shape and labels come from the data.
pub enum ArchChoice {
    Mlp(crate::arch::MlpConfig),
    Cnn(crate::arch::CnnConfig),
}

impl ArchChoice {
    pub fn to_config(&self, data: &Data) -> serde_json::Value {
        let classes = data.train.num_classes().max(data.test.num_classes());
        let labels = data
            .train
            .label_names
            .clone()
            .filter(|l| l.len() >= classes)
            .unwrap_or_else(|| (0..classes).map(|i| i.to_string()).collect());
        match self {
            ArchChoice::Mlp(c) => c.to_config(data.train.shape, &labels),
            ArchChoice::Cnn(c) => c.to_config(data.train.shape, &labels),
        }
    }
}

pub struct TrainJob {
    pub arch: ArchChoice,
    pub data: DataSpec,
    /// Train on the retain set only (the gold standard of unlearning).
    pub exclude: Option<ForgetSpec>,
    pub train: TrainConfig,
    pub out: PathBuf,
    pub overwrite: bool,
    /// The command line, recorded in the model card.
    pub command: String,
    pub device: Device,
    pub progress: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainReport {
    pub schema: &'static str,
    pub out: String,
    pub train_samples: usize,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub history: Vec<EpochRecord>,
    pub wall_seconds: f64,
}

/// `lethe train`: a classifier from scratch, written as a checkpoint directory with its ONNX
/// model and a model card.
pub fn train_model(job: &TrainJob) -> Result<TrainReport> {
    let data = data::load(&job.data)?;
    let config = job.arch.to_config(&data);
    let classifier = Classifier::from_config(&config)?;
    let (indices, excluded_class) = match &job.exclude {
        Some(spec) => {
            let split = data::select_forget(&data.train, &classifier.labels, spec)?;
            (split.retain, split.forget_class)
        }
        None => ((0..data.train.len()).collect(), None),
    };
    let output = OutputDir::create(&job.out, &[], job.overwrite)?;
    let params = train::init_params(&classifier, job.train.seed, &job.device)?;
    let bar = steps_bar(job.progress, "training");
    let start = std::time::Instant::now();
    let (params, history) = train::train(
        &classifier,
        params,
        &data.train,
        &indices,
        &job.train,
        |_| {},
        &bar,
    )?;
    let wall_seconds = start.elapsed().as_secs_f64();

    let accuracy_on = |ds: &data::Dataset, idx: &[usize]| -> Result<f64> {
        let l = classifier_metrics::logits(&classifier, &params, ds, idx)?;
        let y: Vec<u32> = idx.iter().map(|&i| ds.labels[i]).collect();
        let p = classifier_metrics::predictions(&l, &y, classifier.num_labels())?;
        Ok(classifier_metrics::accuracy(&p.predicted, &y))
    };
    let test_idx: Vec<usize> = (0..data.test.len())
        .filter(|&i| Some(data.test.labels[i]) != excluded_class)
        .collect();
    let train_accuracy = accuracy_on(&data.train, &indices)?;
    let test_accuracy = accuracy_on(&data.test, &test_idx)?;

    let tensors: Vec<(String, candle_core::Tensor)> = classifier
        .param_specs()
        .iter()
        .map(|s| Ok((s.name.clone(), params.get(&s.name)?.clone())))
        .collect::<Result<_>>()?;
    write_new(output.path(), &config, &tensors, safetensors::Dtype::F32)?;
    export::write_onnx(&classifier, &params, &output.path().join(export::ONNX_FILE))?;
    crate::interrupt::check()?;
    let report = TrainReport {
        schema: TRAIN_SCHEMA,
        out: output.target().display().to_string(),
        train_samples: indices.len(),
        train_accuracy,
        test_accuracy,
        history,
        wall_seconds,
    };
    let card = model_card(job, &config, &report, &data);
    output.write_file("README.md", card.as_bytes())?;
    output.write_file(
        "training.json",
        &serde_json::to_vec_pretty(&serde_json::json!({
            "config": job.train,
            "command": job.command,
            "result": report,
        }))
        .expect("serialises"),
    )?;
    output.commit()?;
    Ok(report)
}

fn model_card(job: &TrainJob, config: &serde_json::Value, r: &TrainReport, data: &Data) -> String {
    let last = r.history.last();
    format!(
        "# {model_type} classifier\n\n\
Trained from scratch by lethe {version}. Input: {shape:?} images scaled to [0, 1]; output: \
logits over {classes} classes ({labels}). The ONNX model beside the weights takes `pixel_values` \
[batch, C, H, W] and returns `logits` [batch, classes].\n\n\
Architecture (config.json): `{arch}`\n\n\
Command:\n\n    {command}\n\n\
Data: {train} ({n} training samples{excluded}); test set {test}.\n\n\
| figure | value |\n|---|---|\n\
| training accuracy (eval mode, after training) | {train_acc:.2} % |\n\
| test accuracy | {test_acc:.2} % |\n\
| final epoch loss | {loss:.4} |\n\
| epochs | {epochs} |\n\
| wall time | {wall:.1} s |\n",
        model_type = config["model_type"].as_str().unwrap_or("?"),
        shape = data.train.shape,
        classes = config["id2label"].as_object().map_or(0, |m| m.len()),
        labels = data
            .train
            .label_names
            .as_ref()
            .map(|l| l.join(", "))
            .unwrap_or_else(|| "numbered".into()),
        arch = config,
        version = env!("CARGO_PKG_VERSION"),
        command = job.command,
        train = data.train.source,
        n = r.train_samples,
        excluded = job
            .exclude
            .as_ref()
            .map(|e| format!(", without {}", e.describe()))
            .unwrap_or_default(),
        test = data.test.source,
        train_acc = r.train_accuracy,
        test_acc = r.test_accuracy,
        loss = last.map(|l| l.loss).unwrap_or(f32::NAN),
        epochs = job.train.epochs,
        wall = r.wall_seconds,
    )
}

pub struct TextTrainJob {
    pub model: PathBuf,
    pub data: PathBuf,
    pub trainable: TextTrainable,
    pub config: UnlearnConfig,
    pub prompt_format: Option<PromptFormat>,
    /// Keyword arguments for the chat template.
    pub chat_template_kwargs: serde_json::Map<String, serde_json::Value>,
    pub out: PathBuf,
    pub overwrite: bool,
    pub device: Device,
    pub precision: Precision,
    pub progress: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TextTrainReport {
    pub schema: &'static str,
    pub model: String,
    pub data: String,
    pub examples: usize,
    pub trainable_parameters: usize,
    pub lora: Option<LoraConfig>,
    pub answer_nll_before: f64,
    pub answer_nll_after: f64,
    pub run: RunSummary,
    pub out: String,
}

/// `lethe train-text`: fine-tunes a language model on JSONL examples (loss on answers), e.g. to
/// teach it facts; writes the merged checkpoint (and the PEFT adapter with LoRA).
pub fn train_text(job: &TextTrainJob) -> Result<TextTrainReport> {
    let mut lm = LanguageModel::open(&job.model, &job.device, job.precision, job.progress)?;
    lm.tokenizer
        .set_chat_template_vars(job.chat_template_kwargs.clone());
    let examples = crate::text::data::read_jsonl(&job.data)?;
    let format = lm.prompt_format(job.prompt_format);
    let encoded = lm.encode_all(&job.data, &examples, format)?;
    let output = OutputDir::create(&job.out, &[&lm.opened.checkpoint.dir], job.overwrite)?;
    let pad = lm.tokenizer.pad_id;
    let before = metrics::answer_stats(lm.model(), lm.params(), &encoded, pad, 1.0)?;
    let trainable = select_trainable(&mut lm, &job.trainable, job.config.seed)?;
    let mut config = job.config.clone();
    // Fine-tuning is the retain term alone over the training examples.
    config.method = unlearn::MethodKind::Ft;
    let task = TextTask {
        model: lm.model(),
        forget: encoded.clone(),
        refusals: Vec::new(),
        retain: encoded.clone(),
        reference_log_probs: Vec::new(),
        objective: ForgetObjective::Npo,
        held_out_nll: 0.0,
        npo_beta: crate::defaults::text::NPO_BETA,
        simnpo: crate::unlearn::text_task::SimNpo {
            beta: crate::defaults::text::SIMNPO_BETA,
            gamma: crate::defaults::text::SIMNPO_GAMMA,
        },
        rmu: None,
        lora_scale: trainable.lora.as_ref().map_or(1.0, LoraConfig::scale),
        pad_id: pad,
    };
    let ids: Vec<usize> = (0..encoded.len()).collect();
    let bar = steps_bar(job.progress, "training");
    let log = unlearn::run(
        &task,
        lm.params(),
        &trainable.set,
        Samples {
            forget: &ids,
            retain: &ids,
        },
        &config,
        &unlearn::resume::RunControl::default(),
        &bar,
    )?;
    drop(task);
    let (merged_params, changed) = merged(&lm, &trainable)?;
    let after = metrics::answer_stats(lm.model(), &merged_params, &encoded, pad, 1.0)?;
    // The taught data is not forget data; only the input's own lethe outputs stay behind.
    let withheld = Withheld::new(&lm.opened.checkpoint.dir, &[], &[]);
    write_outputs(
        &lm,
        &trainable,
        &merged_params,
        &changed,
        output.path(),
        &crate::hub::base_model(&job.model),
        &|p| withheld.withholds(p),
    )?;
    let report = TextTrainReport {
        schema: TRAIN_SCHEMA,
        model: job.model.display().to_string(),
        data: job.data.display().to_string(),
        examples: examples.len(),
        trainable_parameters: trainable.set.num_elements(),
        lora: trainable.lora.clone(),
        answer_nll_before: before.nll,
        answer_nll_after: after.nll,
        run: RunSummary::from_log(&log),
        out: output.target().display().to_string(),
    };
    crate::interrupt::check()?;
    output.write_file(
        REPORT_FILE,
        &serde_json::to_vec_pretty(&report).expect("a report serialises"),
    )?;
    output.commit()?;
    Ok(report)
}
