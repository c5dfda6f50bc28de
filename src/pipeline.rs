//! The jobs behind the commands, each a straight run through the stages:
//! checkpoint → model → trainable set → unlearner → exports → verification → report.

use crate::arch::Classifier;
use crate::checkpoint::{write_new, Checkpoint, OutputDir};
use crate::data::{self, Data, DataSpec, ForgetSpec, Split};
use crate::error::{Error, Result};
use crate::export;
use crate::nn::Params;
use crate::report::{
    self, DataInfo, GateSpec, MetricsSection, ModelInfo, Outputs, Report, RunSummary,
};
use crate::train::{self, EpochRecord, TrainConfig};
use crate::unlearn::{self, trainable, UnlearnConfig};
use crate::verify::metrics::{self, EvalSets, Metrics, SetLogits};
use crate::verify::{self, runtime, Parity};
use candle_core::Device;
use std::path::{Path, PathBuf};

pub const REPORT_FILE: &str = "report.json";

/// A model opened from a checkpoint directory.
pub struct LoadedModel {
    pub checkpoint: Checkpoint,
    pub classifier: Classifier,
    pub params: Params,
}

impl LoadedModel {
    /// Opens a checkpoint directory, or pulls a hub id (`org/name[@revision]`) first.
    pub fn open(source: &Path) -> Result<LoadedModel> {
        let dir = crate::hub::resolve_model(source, true)?;
        let checkpoint = Checkpoint::open(&dir)?;
        let classifier = Classifier::from_config(&checkpoint.config)?;
        let params = classifier.load_params(&checkpoint, &Device::Cpu)?;
        Ok(LoadedModel {
            checkpoint,
            classifier,
            params,
        })
    }

    pub fn num_parameters(&self) -> usize {
        self.classifier
            .param_specs()
            .iter()
            .filter(|s| !s.is_buffer)
            .map(|s| s.shape.iter().product::<usize>())
            .sum()
    }
}

/// Loads data and checks it fits the classifier.
pub fn load_data_for(classifier: &Classifier, spec: &DataSpec) -> Result<Data> {
    let data = data::load(spec)?;
    for (name, ds) in [("training", &data.train), ("test", &data.test)] {
        if ds.shape != classifier.input_shape {
            return Err(Error::Data {
                path: PathBuf::from(&ds.source),
                reason: format!(
                    "{name} images are {:?} but the model takes {:?}",
                    ds.shape, classifier.input_shape
                ),
            });
        }
        if ds.num_classes() > classifier.num_labels() {
            return Err(Error::Data {
                path: PathBuf::from(&ds.source),
                reason: format!(
                    "{name} labels go up to {} but the model has {} classes",
                    ds.num_classes() - 1,
                    classifier.num_labels()
                ),
            });
        }
    }
    Ok(data)
}

/// Checks for the ONNX Runtime library before any long work starts.
pub fn require_runtime(explicit: Option<&Path>) -> Result<PathBuf> {
    runtime::find_library(explicit)
}

pub struct UnlearnJob {
    pub model: PathBuf,
    pub data: DataSpec,
    pub forget: ForgetSpec,
    pub train_patterns: Vec<String>,
    pub freeze_patterns: Vec<String>,
    pub config: UnlearnConfig,
    pub out: Option<PathBuf>,
    pub overwrite: bool,
    pub reference: Option<PathBuf>,
    pub gates: GateSpec,
    pub onnxruntime: Option<PathBuf>,
    pub verify: bool,
    pub progress: bool,
    /// Further files to write into the output directory (name, contents).
    pub attachments: Vec<(String, Vec<u8>)>,
    /// Save the run's state every this many steps (beside the output, in `<out>.lethe-state`).
    pub checkpoint_every: Option<usize>,
    /// Continue from a saved state of the same run.
    pub resume: bool,
}

/// Where the state of a run writing to `out` is kept: beside it, never inside the output.
pub fn state_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    out.with_file_name(format!("{name}.lethe-state"))
}

pub(crate) fn progress_bar(show: bool, template: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

pub fn evaluate(model: &LoadedModel, sets: &EvalSets, seed: u64) -> Result<(Metrics, SetLogits)> {
    let logits = metrics::set_logits(&model.classifier, &model.params, sets)?;
    let m = metrics::metrics(sets, &logits, model.classifier.num_labels(), seed)?;
    Ok((m, logits))
}

/// Mean cross-entropy on the test samples: the loss level of data the model never saw.
pub fn held_out_loss(logits: &SetLogits, sets: &EvalSets, classes: usize) -> Result<f32> {
    let labels: Vec<u32> = sets
        .test_indices
        .iter()
        .map(|&i| sets.test.labels[i])
        .collect();
    metrics::mean_cross_entropy(&logits.test, &labels, classes)
}

/// Runs an unlearning job. Returns the report; `report.passed` says whether every gate held.
pub fn unlearn(job: &UnlearnJob) -> Result<Report> {
    let mut model = LoadedModel::open(&job.model)?;
    let data = load_data_for(&model.classifier, &job.data)?;
    let split = data::select_forget(&data.train, &model.classifier.labels, &job.forget)?;
    let library = if job.verify {
        Some(require_runtime(job.onnxruntime.as_deref())?)
    } else {
        None
    };
    // Refuse a bad output directory before any training happens.
    let output = match &job.out {
        Some(out) => {
            let mut inputs: Vec<&Path> = vec![&model.checkpoint.dir];
            if job.data.train.is_dir() {
                inputs.push(&job.data.train);
            }
            Some(OutputDir::create(out, &inputs, job.overwrite)?)
        }
        None => None,
    };
    let sets = EvalSets::new(&data.train, &data.test, &split);
    let seed = job.config.seed;
    let (before, before_logits) = evaluate(&model, &sets, seed)?;
    let mut config = job.config.clone();
    config.held_out_loss = held_out_loss(&before_logits, &sets, model.classifier.num_labels())?;
    let reference = match &job.reference {
        Some(dir) => {
            let r = LoadedModel::open(dir)?;
            Some(evaluate(&r, &sets, seed)?.0)
        }
        None => None,
    };

    let specs = model.classifier.param_specs();
    let trainable = trainable::select(
        &mut model.params,
        &specs,
        &job.train_patterns,
        &job.freeze_patterns,
    )?;
    let bar = progress_bar(
        job.progress,
        "{spinner} unlearning [{bar:30}] {pos}/{len} steps  {msg}  ({elapsed}, eta {eta})",
    );
    let control = unlearn::resume::RunControl {
        state_dir: job.out.as_deref().map(state_dir),
        checkpoint_every: job.checkpoint_every,
        resume: job.resume,
        fingerprint: fingerprint(job, &model, &config),
    };
    let task = unlearn::ClassifierTask::new(
        &model.classifier,
        &data.train,
        unlearn::classifier_forget_loss(&config),
        config.seed,
    );
    let samples = unlearn::Samples {
        forget: &split.forget,
        retain: &split.retain,
    };
    let log = unlearn::run(
        &task,
        &model.params,
        &trainable,
        samples,
        &config,
        &control,
        &bar,
    )?;
    let (after, after_logits) = evaluate(&model, &sets, seed)?;

    let metrics = MetricsSection {
        gap_to_reference_before: reference.map(|r| before.gap(&r)),
        gap_to_reference_after: reference.map(|r| after.gap(&r)),
        before,
        after,
        reference,
    };
    let mut outputs = Outputs {
        checkpoint: None,
        onnx: None,
        report: None,
    };
    let mut verification = None;
    if let Some(output) = &output {
        export::export(
            &model.checkpoint,
            &model.classifier,
            &model.params,
            &trainable.names,
            output.path(),
        )?;
        if let Some(library) = &library {
            verification = Some(check_parity(
                &output.path().join(export::ONNX_FILE),
                library,
                &sets,
                &after_logits,
                model.classifier.num_labels(),
            )?);
        }
        let target = output.target();
        outputs.checkpoint = Some(target.display().to_string());
        outputs.onnx = Some(target.join(export::ONNX_FILE).display().to_string());
        outputs.report = Some(target.join(REPORT_FILE).display().to_string());
    }
    let gates = job.gates.evaluate(&metrics, verification.as_ref());
    let passed = gates.iter().all(|g| g.passed);
    let report = Report {
        schema: report::SCHEMA,
        lethe_version: env!("CARGO_PKG_VERSION"),
        model: ModelInfo {
            source: job.model.display().to_string(),
            model_type: model.classifier.model_type.clone(),
            parameters: model.num_parameters(),
            trainable_parameters: trainable.num_elements(),
            trainable_tensors: trainable.names.clone(),
        },
        data: DataInfo {
            train: data.train.source.clone(),
            test: data.test.source.clone(),
            forget: job.forget.describe(),
            forget_samples: split.forget.len(),
            retain_samples: split.retain.len(),
            test_samples: sets.test_indices.len(),
        },
        config,
        metrics,
        run: RunSummary::from_log(&log),
        outputs,
        verification,
        gates,
        passed,
    };
    if let Some(output) = output {
        finish_run(output, &report, &job.attachments, &control)?;
    }
    Ok(report)
}

/// Writes an unlearning run's report and attachments into its output, moves the output into
/// place, and removes the run's resumable state (the run is complete: it has served its purpose).
pub(crate) fn finish_run(
    output: OutputDir,
    report: &impl serde::Serialize,
    attachments: &[(String, Vec<u8>)],
    control: &crate::unlearn::resume::RunControl,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(report).expect("report serialises");
    output.write_file(REPORT_FILE, &json)?;
    for (name, bytes) in attachments {
        output.write_file(name, bytes)?;
    }
    output.commit()?;
    if let Some(dir) = &control.state_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// Identifies a run by its inputs and settings, so that a saved state resumes only its own run.
fn fingerprint(job: &UnlearnJob, model: &LoadedModel, config: &UnlearnConfig) -> String {
    let description = serde_json::json!({
        "lethe": env!("CARGO_PKG_VERSION"),
        "model": model.checkpoint.dir.display().to_string(),
        "data": format!("{:?}", job.data),
        "forget": job.forget.describe(),
        "train": job.train_patterns,
        "freeze": job.freeze_patterns,
        "config": config,
    });
    crate::digest::sha256_bytes(description.to_string().as_bytes())
}

fn check_parity(
    onnx: &Path,
    library: &Path,
    sets: &EvalSets,
    candle: &SetLogits,
    classes: usize,
) -> Result<Parity> {
    verify::parity(
        onnx,
        library,
        &[
            (sets.train, &sets.split.forget, &candle.forget),
            (sets.train, &sets.split.retain, &candle.retain),
            (sets.test, &sets.test_indices, &candle.test),
        ],
        classes,
    )
}

/// `lethe verify`: ONNX Runtime against candle on the training and test data.
pub fn verify_dir(
    dir: &Path,
    data: &DataSpec,
    onnxruntime: Option<&Path>,
    limit: Option<usize>,
) -> Result<Parity> {
    let library = require_runtime(onnxruntime)?;
    let model = LoadedModel::open(dir)?;
    let onnx = dir.join(export::ONNX_FILE);
    if !onnx.is_file() {
        return Err(Error::Usage(format!(
            "{} has no {} to verify (export one with `lethe export`)",
            dir.display(),
            export::ONNX_FILE
        )));
    }
    let data = load_data_for(&model.classifier, data)?;
    let take = |n: usize| -> Vec<usize> { (0..limit.map_or(n, |l| l.min(n))).collect() };
    let train_idx = take(data.train.len());
    let test_idx = take(data.test.len());
    let train_logits = metrics::logits(&model.classifier, &model.params, &data.train, &train_idx)?;
    let test_logits = metrics::logits(&model.classifier, &model.params, &data.test, &test_idx)?;
    verify::parity(
        &onnx,
        &library,
        &[
            (&data.train, &train_idx, &train_logits),
            (&data.test, &test_idx, &test_logits),
        ],
        model.classifier.num_labels(),
    )
}

/// `lethe eval`: UA, RA, TA and MIA-efficacy of a model for a forget set.
pub fn eval(
    model: &Path,
    data: &DataSpec,
    forget: &ForgetSpec,
    seed: u64,
) -> Result<(Metrics, Split)> {
    let model = LoadedModel::open(model)?;
    let data = load_data_for(&model.classifier, data)?;
    let split = data::select_forget(&data.train, &model.classifier.labels, forget)?;
    let sets = EvalSets::new(&data.train, &data.test, &split);
    let (m, _) = evaluate(&model, &sets, seed)?;
    Ok((m, split))
}

/// `lethe export`: the ONNX model of a checkpoint, written beside nothing else.
pub fn export_onnx(model: &Path, out: &Path, overwrite: bool) -> Result<()> {
    let model = LoadedModel::open(model)?;
    if out.exists() && !overwrite {
        return Err(Error::Usage(format!(
            "{} exists (pass --overwrite to replace it)",
            out.display()
        )));
    }
    let tmp = out.with_extension("onnx.partial");
    let written = export::write_onnx(&model.classifier, &model.params, &tmp)
        .and_then(|()| std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

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
    pub progress: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainReport {
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
    let params = train::init_params(&classifier, job.train.seed, &Device::Cpu)?;
    let bar = progress_bar(
        job.progress,
        "{spinner} training [{bar:30}] {pos}/{len} steps  {msg}  ({elapsed}, eta {eta})",
    );
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
        let l = metrics::logits(&classifier, &params, ds, idx)?;
        let y: Vec<u32> = idx.iter().map(|&i| ds.labels[i]).collect();
        let p = metrics::predictions(&l, &y, classifier.num_labels())?;
        Ok(metrics::accuracy(&p.predicted, &y))
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
    let report = TrainReport {
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
