//! Unlearning a classifier: a class or a set of training samples, measured by UA, RA, TA and
//! MIA-efficacy (docs/method.md); and `lethe eval`, the same measurement alone.

use super::{Trainable, UnlearnJob, Withheld, Workload};
use crate::arch::Classifier;
use crate::data::{self, Data, DataSpec, ForgetSpec, Split};
use crate::error::{Error, Result};
use crate::model::Opened;
use crate::report::{DataInfo, ModelInfo, RunConfig, SideBySide};
use crate::unlearn::resume::RunControl;
use crate::unlearn::{self, trainable, RunLog, UnlearnConfig};
use crate::verify::metrics::{self, EvalSets, Metrics, SetLogits};
use crate::verify::{self, Parity};
use candle_core::Device;
use std::path::{Path, PathBuf};

/// What a classifier run forgets and trains.
#[derive(Clone, Debug)]
pub struct ClassifierSpec {
    pub data: DataSpec,
    pub forget: ForgetSpec,
    /// Train only parameters matching these globs…
    pub train_patterns: Vec<String>,
    /// …except those matching these.
    pub freeze_patterns: Vec<String>,
    /// A model retrained without the forget set, to report the gap to.
    pub reference: Option<PathBuf>,
}

pub type ClassifierJob = UnlearnJob<ClassifierSpec>;

/// A classifier with its data and forget split, through the stages of a run.
pub struct ClassifierRun {
    model: Opened<Classifier>,
    data: Data,
    split: Split,
    /// The model's mean test cross-entropy before the run (τ of the held-out-level objective).
    held_out_loss: f32,
    /// candle's logits after the run, which ONNX Runtime's are compared with.
    after_logits: Option<SetLogits>,
}

impl ClassifierRun {
    fn sets(&self) -> EvalSets<'_> {
        EvalSets::new(&self.data.train, &self.data.test, &self.split)
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

/// Metrics of a classifier on the evaluation sets, with the logits they came from.
pub fn evaluate(
    model: &Opened<Classifier>,
    sets: &EvalSets,
    seed: u64,
) -> Result<(Metrics, SetLogits)> {
    let logits = metrics::set_logits(&model.arch, &model.params, sets)?;
    let m = metrics::metrics(sets, &logits, model.arch.num_labels(), seed)?;
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

impl Workload for ClassifierRun {
    type Spec = ClassifierSpec;
    type Metrics = Metrics;

    fn open(job: &ClassifierJob) -> Result<Self> {
        let model = Opened::<Classifier>::open(&job.model, &job.device, job.progress)?;
        let data = load_data_for(&model.arch, &job.spec.data)?;
        let split = data::select_forget(&data.train, &model.arch.labels, &job.spec.forget)?;
        Ok(ClassifierRun {
            model,
            data,
            split,
            held_out_loss: f32::NAN,
            after_logits: None,
        })
    }

    fn input_dirs(&self, job: &ClassifierJob) -> Vec<PathBuf> {
        let mut dirs = vec![self.model.checkpoint.dir.clone()];
        if job.spec.data.train.is_dir() {
            dirs.push(job.spec.data.train.clone());
        }
        dirs
    }

    fn measure_before(&mut self, job: &ClassifierJob) -> Result<Metrics> {
        let sets = self.sets();
        let (before, logits) = evaluate(&self.model, &sets, job.config.seed)?;
        self.held_out_loss = held_out_loss(&logits, &sets, self.model.arch.num_labels())?;
        Ok(before)
    }

    fn reference(&mut self, job: &ClassifierJob) -> Result<Option<Metrics>> {
        let Some(dir) = &job.spec.reference else {
            return Ok(None);
        };
        let reference = Opened::<Classifier>::open(dir, &job.device, job.progress)?;
        Ok(Some(evaluate(&reference, &self.sets(), job.config.seed)?.0))
    }

    fn select_trainable(&mut self, job: &ClassifierJob) -> Result<Trainable> {
        let specs = self.model.arch.param_specs();
        let set = trainable::select(
            &mut self.model.params,
            &specs,
            &job.spec.train_patterns,
            &job.spec.freeze_patterns,
        )?;
        Ok(Trainable { set, lora: None })
    }

    fn config(&self, job: &ClassifierJob, _: &Trainable) -> Result<UnlearnConfig> {
        let mut config = job.config.clone();
        config.held_out_loss = self.held_out_loss;
        Ok(config)
    }

    fn fingerprint(&self, job: &ClassifierJob, config: &UnlearnConfig) -> serde_json::Value {
        serde_json::json!({
            "lethe": env!("CARGO_PKG_VERSION"),
            "model": self.model.checkpoint.dir.display().to_string(),
            "data": format!("{:?}", job.spec.data),
            "forget": job.spec.forget.describe(),
            "train": job.spec.train_patterns,
            "freeze": job.spec.freeze_patterns,
            "config": config,
        })
    }

    fn run(
        &self,
        trainable: &Trainable,
        config: &UnlearnConfig,
        control: &RunControl,
        progress: &indicatif::ProgressBar,
    ) -> Result<RunLog> {
        let task = unlearn::ClassifierTask::new(
            &self.model.arch,
            &self.data.train,
            unlearn::classifier_forget_loss(config),
            config.seed,
        );
        let samples = unlearn::Samples {
            forget: &self.split.forget,
            retain: &self.split.retain,
        };
        unlearn::run(
            &task,
            &self.model.params,
            &trainable.set,
            samples,
            config,
            control,
            progress,
        )
    }

    fn finish_training(&mut self, _: &Trainable) -> Result<()> {
        Ok(())
    }

    fn measure_after(&mut self, job: &ClassifierJob) -> Result<Metrics> {
        let (after, logits) = evaluate(&self.model, &self.sets(), job.config.seed)?;
        self.after_logits = Some(logits);
        Ok(after)
    }

    fn export(
        &self,
        job: &ClassifierJob,
        trainable: &Trainable,
        dir: &Path,
    ) -> Result<Vec<String>> {
        // The training data holds the forgotten samples; an indices file names them.
        let mut forget_data: Vec<&Path> = vec![&job.spec.data.train];
        if let ForgetSpec::Indices(file) = &job.spec.forget {
            forget_data.push(file);
        }
        let withheld = Withheld::new(&self.model.checkpoint.dir, &forget_data, &[]);
        let skipped = crate::export::export(
            &self.model.checkpoint,
            &self.model.arch,
            &self.model.params,
            &trainable.set.names,
            dir,
            &|p| withheld.withholds(p),
        )?;
        Ok(Withheld::listed(skipped))
    }

    fn verify(&self, dir: &Path, library: &Path) -> Result<Parity> {
        let logits = self.after_logits.as_ref().expect("measured after the run");
        let sets = self.sets();
        verify::parity(
            &dir.join(crate::export::ONNX_FILE),
            library,
            &[
                (sets.train, &sets.split.forget, &logits.forget),
                (sets.train, &sets.split.retain, &logits.retain),
                (sets.test, &sets.test_indices, &logits.test),
            ],
            self.model.arch.num_labels(),
        )
    }

    fn describe(
        &self,
        job: &ClassifierJob,
        trainable: &Trainable,
    ) -> (ModelInfo, DataInfo, RunConfig) {
        let model = ModelInfo {
            kind: crate::report::ModelKind::Classifier,
            source: job.model.display().to_string(),
            model_type: self.model.arch.model_type.clone(),
            parameters: self.model.num_parameters(),
            trainable_parameters: trainable.set.num_elements(),
            trainable_tensors: trainable.set.names.clone(),
            lora: None,
        };
        let data = DataInfo {
            forget: job.spec.forget.describe(),
            forget_samples: self.split.forget.len(),
            retain_samples: self.split.retain.len(),
            train: Some(self.data.train.source.clone()),
            test: Some(self.data.test.source.clone()),
            test_samples: Some(self.sets().test_indices.len()),
            retain: None,
            eval_text: None,
            prompt_format: None,
            chat_template_kwargs: None,
        };
        let config = RunConfig {
            unlearn: job.config.clone(),
            npo_beta: None,
            simnpo: None,
            rmu: None,
            refusal: None,
            device: crate::device::name(&job.device),
            dtype: job.precision.name(),
        };
        (model, data, config)
    }

    fn samples(&self, _: &ClassifierJob) -> Vec<SideBySide> {
        Vec::new()
    }

    fn gap(a: &Metrics, b: &Metrics) -> Option<f64> {
        Some(a.gap(b))
    }
}

/// `lethe eval`: UA, RA, TA and MIA-efficacy of a model for a forget set.
pub fn eval(
    model: &Path,
    data: &DataSpec,
    forget: &ForgetSpec,
    seed: u64,
    device: &Device,
    progress: bool,
) -> Result<(Metrics, Split)> {
    let model = Opened::<Classifier>::open(model, device, progress)?;
    let data = load_data_for(&model.arch, data)?;
    let split = data::select_forget(&data.train, &model.arch.labels, forget)?;
    let sets = EvalSets::new(&data.train, &data.test, &split);
    let (m, _) = evaluate(&model, &sets, seed)?;
    Ok((m, split))
}
