//! The run driver. An unlearning run goes through the same stages whatever it edits: open the
//! model and data, create the output, measure before, choose the trainable set, run the method,
//! measure after, export, check the export with ONNX Runtime, evaluate the gates, report, and
//! commit the output. [`unlearn`] writes those stages once; a classifier and a language model
//! plug in as two [`Workload`]s ([`classifier`], [`text`]). Training from scratch and the
//! commands that take any model (export, verify) are in [`train`] and [`inspect`].

pub mod classifier;
pub mod inspect;
pub mod measure_text;
pub mod text;
pub mod train;

use crate::checkpoint::OutputDir;
use crate::error::Result;
use crate::precision::Precision;
use crate::report::{
    self, DataInfo, Gate, GateSpec, Gated, MetricsSection, ModelInfo, Outputs, Report, RunConfig,
    RunSummary, SideBySide,
};
use crate::unlearn::lora::LoraConfig;
use crate::unlearn::resume::RunControl;
use crate::unlearn::{RunLog, TrainableSet, UnlearnConfig};
use crate::verify::{runtime, Parity};
use candle_core::Device;
use std::path::{Path, PathBuf};

pub use classifier::{ClassifierJob, ClassifierSpec};
pub use text::{TextJob, TextSpec, TextTrainable};

pub const REPORT_FILE: &str = "report.json";
/// The resolved job a job-file run writes beside its outputs (docs/job.md).
pub const RESOLVED_FILE: &str = "job.resolved.toml";
/// Where a LoRA run writes its PEFT adapter, inside the output directory.
pub const ADAPTER_DIR: &str = "adapter";

/// An unlearning job: the model, the settings every run has, and the workload's own (`spec`).
pub struct UnlearnJob<S> {
    /// A checkpoint directory or hub id.
    pub model: PathBuf,
    pub device: Device,
    /// What frozen weights are held in (crate::precision); classifiers take f32.
    pub precision: Precision,
    pub config: UnlearnConfig,
    pub gates: GateSpec,
    pub output: OutputSettings,
    /// Progress bars on stderr.
    pub progress: bool,
    pub spec: S,
}

/// Where and how a run writes its outputs.
#[derive(Clone, Debug, Default)]
pub struct OutputSettings {
    /// Without a directory, nothing is exported or verified.
    pub dir: Option<PathBuf>,
    pub overwrite: bool,
    /// Check the exported ONNX model with ONNX Runtime.
    pub verify: bool,
    pub onnxruntime: Option<PathBuf>,
    /// Save the run's state every this many steps (beside the output, in `<out>.lethe-state`).
    pub checkpoint_every: Option<usize>,
    /// Continue from a saved state of the same run.
    pub resume: bool,
    /// Further files to write into the output directory (name, contents).
    pub attachments: Vec<(String, Vec<u8>)>,
}

/// The tensors a run trains: LoRA adapters (with their settings) or selected weights.
pub struct Trainable {
    pub set: TrainableSet,
    pub lora: Option<LoraConfig>,
}

/// What a kind of model brings to the stages of [`unlearn`].
pub trait Workload: Sized {
    /// The job settings of this kind of model.
    type Spec;
    /// What is measured before and after.
    type Metrics: Clone + serde::Serialize + Gated;

    /// Opens the model and reads the data (refusing bad input before anything is written).
    fn open(job: &UnlearnJob<Self::Spec>) -> Result<Self>;
    /// Directories the run reads from: the output may not lie inside one.
    fn input_dirs(&self, job: &UnlearnJob<Self::Spec>) -> Vec<PathBuf>;
    /// The model before the run; also takes what the run needs from it (the held-out loss
    /// level, NPO's reference likelihoods).
    fn measure_before(&mut self, job: &UnlearnJob<Self::Spec>) -> Result<Self::Metrics>;
    /// A reference model (never trained on the forget set) on the same sets, when given; the
    /// measures before and after read it.
    fn reference(&mut self, job: &UnlearnJob<Self::Spec>) -> Result<Option<Self::Metrics>>;
    fn select_trainable(&mut self, job: &UnlearnJob<Self::Spec>) -> Result<Trainable>;
    /// The run's settings, completed from what was measured before.
    fn config(&self, job: &UnlearnJob<Self::Spec>, trainable: &Trainable) -> Result<UnlearnConfig>;
    /// The inputs and settings that identify the run (a saved state resumes only its own run).
    fn fingerprint(
        &self,
        job: &UnlearnJob<Self::Spec>,
        config: &UnlearnConfig,
    ) -> serde_json::Value;
    /// Runs the method over the forget and retain sets.
    fn run(
        &self,
        trainable: &Trainable,
        config: &UnlearnConfig,
        control: &RunControl,
        progress: &indicatif::ProgressBar,
    ) -> Result<RunLog>;
    /// Fixes the trained model (merging adapters) for measuring and export.
    fn finish_training(&mut self, trainable: &Trainable) -> Result<()>;
    fn measure_after(&mut self, job: &UnlearnJob<Self::Spec>) -> Result<Self::Metrics>;
    /// Writes the edited checkpoint, the adapter and the ONNX model into `dir`; returns the
    /// files of the input directory that were withheld.
    fn export(
        &self,
        job: &UnlearnJob<Self::Spec>,
        trainable: &Trainable,
        dir: &Path,
    ) -> Result<Vec<String>>;
    /// Compares the exported ONNX model with candle.
    fn verify(&self, dir: &Path, library: &Path) -> Result<Parity>;
    /// The report's description of the model and data.
    fn describe(
        &self,
        job: &UnlearnJob<Self::Spec>,
        trainable: &Trainable,
    ) -> (ModelInfo, DataInfo, RunConfig);
    /// Answers shown side by side before and after (language models).
    fn samples(&self, job: &UnlearnJob<Self::Spec>) -> Vec<SideBySide>;
    /// Mean absolute difference to the reference, where the metrics define one.
    fn gap(_a: &Self::Metrics, _b: &Self::Metrics) -> Option<f64> {
        None
    }
}

/// Runs an unlearning job through every stage. Returns the report; `report.passed` says whether
/// every gate held.
pub fn unlearn<W: Workload>(job: &UnlearnJob<W::Spec>) -> Result<Report<W::Metrics>> {
    let mut work = W::open(job)?;
    let out = &job.output;
    let library = match (out.verify, &out.dir) {
        (true, Some(_)) => Some(runtime::find_library(out.onnxruntime.as_deref())?),
        _ => None,
    };
    // A bad output directory is refused before any training happens.
    let output = match &out.dir {
        Some(dir) => {
            let inputs = work.input_dirs(job);
            let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
            Some(OutputDir::create(dir, &inputs, out.overwrite)?)
        }
        None => None,
    };
    let reference = work.reference(job)?;
    let before = work.measure_before(job)?;
    let trainable = work.select_trainable(job)?;
    let config = work.config(job, &trainable)?;
    let control = RunControl {
        state_dir: out.dir.as_deref().map(state_dir),
        checkpoint_every: out.checkpoint_every,
        resume: out.resume,
        fingerprint: crate::digest::sha256_bytes(
            work.fingerprint(job, &config).to_string().as_bytes(),
        ),
    };
    let bar = steps_bar(job.progress, "unlearning");
    let log = work.run(&trainable, &config, &control, &bar)?;
    work.finish_training(&trainable)?;
    let after = work.measure_after(job)?;
    let gap = |m: &W::Metrics| reference.as_ref().and_then(|r| W::gap(m, r));
    let metrics = MetricsSection {
        gap_to_reference_before: gap(&before),
        gap_to_reference_after: gap(&after),
        before,
        after,
        reference,
    };

    let mut outputs = Outputs::default();
    let mut verification = None;
    if let Some(output) = &output {
        crate::interrupt::check()?;
        outputs.withheld = work.export(job, &trainable, output.path())?;
        if let Some(library) = &library {
            crate::interrupt::check()?;
            verification = Some(work.verify(output.path(), library)?);
        }
        let target = output.target();
        let path = |name: &str| Some(target.join(name).display().to_string());
        outputs.dir = Some(target.display().to_string());
        outputs.checkpoint = Some(target.display().to_string());
        outputs.onnx = path(crate::export::ONNX_FILE);
        outputs.adapter = trainable.lora.as_ref().and_then(|_| path(ADAPTER_DIR));
        outputs.report = path(REPORT_FILE);
    }
    let mut gates = W::Metrics::gates(&job.gates, &metrics);
    gates.extend(verification.iter().flat_map(Gate::parity));
    let passed = gates.iter().all(|g| g.passed);
    let (model, data, mut run_config) = work.describe(job, &trainable);
    run_config.unlearn = config;
    let report = Report {
        schema: report::UNLEARN_SCHEMA,
        lethe_version: env!("CARGO_PKG_VERSION"),
        model,
        data,
        config: run_config,
        metrics,
        samples: work.samples(job),
        run: RunSummary::from_log(&log),
        outputs,
        verification,
        gates,
        passed,
    };
    if let Some(output) = output {
        finish_run(output, &report, &out.attachments, &control)?;
    }
    Ok(report)
}

/// Writes a run's report and attachments into its output, moves the output into place, and
/// removes the run's resumable state (the run is complete: it has served its purpose).
fn finish_run(
    output: OutputDir,
    report: &impl serde::Serialize,
    attachments: &[(String, Vec<u8>)],
    control: &RunControl,
) -> Result<()> {
    crate::interrupt::check()?;
    let json = serde_json::to_vec_pretty(report).expect("a report serialises");
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

/// Where the state of a run writing to `out` is kept: beside it, never inside the output.
pub fn state_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    out.with_file_name(format!("{name}.lethe-state"))
}

/// A progress bar (hidden when `show` is false) with the given template.
pub fn progress_bar(show: bool, template: &str) -> indicatif::ProgressBar {
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

/// The bar of a training or unlearning loop: steps, losses and λ, time left.
pub fn steps_bar(show: bool, what: &str) -> indicatif::ProgressBar {
    progress_bar(
        show,
        &format!("{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} steps  {{msg}}  ({{elapsed}}, eta {{eta}})"),
    )
}

/// Files of a model directory that an edited output never carries: the input's own lethe
/// outputs (its adapter, ONNX model, report and resolved job describe the input, not the edited
/// model), and the data the run forgets, when it sits inside the model directory.
pub struct Withheld {
    model_dir: PathBuf,
    /// Files and directories read as forget data, made absolute.
    forget_paths: Vec<PathBuf>,
    /// Language models: a JSONL file holding any of these examples is forget data too.
    forget_examples: Vec<crate::text::TextExample>,
}

impl Withheld {
    pub fn new(
        model_dir: &Path,
        forget_paths: &[&Path],
        forget_examples: &[crate::text::TextExample],
    ) -> Withheld {
        let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        Withheld {
            model_dir: absolute(model_dir),
            forget_paths: forget_paths.iter().map(|p| absolute(p)).collect(),
            forget_examples: forget_examples.to_vec(),
        }
    }

    /// Whether the file at `relative` (to the model directory) stays out of the output.
    pub fn withholds(&self, relative: &Path) -> bool {
        Self::is_stale(relative) || self.is_forget_data(relative)
    }

    /// The input's own lethe outputs, which the edited model's outputs replace.
    fn is_stale(relative: &Path) -> bool {
        let stale = [
            ADAPTER_DIR,
            crate::export::ONNX_FILE,
            crate::export::ONNX_DATA_FILE,
            REPORT_FILE,
            RESOLVED_FILE,
        ];
        relative.parent() == Some(Path::new("")) && stale.iter().any(|s| relative == Path::new(s))
    }

    fn is_forget_data(&self, relative: &Path) -> bool {
        let path = self.model_dir.join(relative);
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        if self
            .forget_paths
            .iter()
            .any(|f| path == *f || path.starts_with(f))
        {
            return true;
        }
        self.holds_forget_examples(&path)
    }

    fn holds_forget_examples(&self, path: &Path) -> bool {
        if self.forget_examples.is_empty()
            || path.extension().and_then(|e| e.to_str()) != Some("jsonl")
        {
            return false;
        }
        match crate::text::data::read_jsonl(path) {
            Ok(examples) => examples
                .iter()
                .any(|e| self.forget_examples.iter().any(|f| f.same_fact(e))),
            // Not question/answer data: not forget data either.
            Err(_) => false,
        }
    }

    /// The forget data among `withheld`, as the report lists it (the input's own lethe outputs
    /// are replaced, not reported).
    pub fn listed(withheld: Vec<PathBuf>) -> Vec<String> {
        withheld
            .iter()
            .filter(|p| !Self::is_stale(p))
            .map(|p| p.display().to_string())
            .collect()
    }
}
