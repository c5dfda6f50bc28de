//! Unlearning question/answer facts from a causal language model: JSONL forget and retain sets,
//! LoRA adapters or selected weights, then the merged checkpoint, the PEFT adapter and ONNX,
//! measured by answer probability, ROUGE-L and perplexity; and `lethe eval-text`, the same
//! measurement alone.

use super::measure_text::{
    measure, measure_reference, Answers, Evidence, MeasureSettings, SetFiles, TextSets,
};
use super::{Trainable, UnlearnJob, Withheld, Workload, ADAPTER_DIR};
use crate::error::{Error, Result};
use crate::model::LanguageModel;
use crate::nn::Params;
use crate::report::{DataInfo, ModelInfo, RunConfig, SideBySide};
use crate::text::data::{
    answer_log_probs, encode_with_answer, AnswerLogProb, Encoded, PromptFormat,
};
use crate::text::metrics::TextMetrics;
use crate::unlearn::lora::{self, LoraConfig};
use crate::unlearn::resume::RunControl;
use crate::unlearn::text_task::{Rmu, RmuTarget, SimNpo, TextTask};
use crate::unlearn::{
    self, trainable, ForgetObjective, MethodKind, RunLog, Samples, UnlearnConfig,
};
use crate::verify::{self, Parity};
use candle_core::Tensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which tensors train: LoRA adapters (new, or loaded from a PEFT adapter) or selected weights.
#[derive(Clone, Debug)]
pub enum TextTrainable {
    Lora(LoraConfig),
    Adapter(PathBuf),
    Weights {
        train: Vec<String>,
        freeze: Vec<String>,
    },
}

/// What a language-model run forgets, keeps and trains.
#[derive(Clone, Debug)]
pub struct TextSpec {
    /// The forget and retain sets, and the held-out, utility and perplexity sets.
    pub sets: SetFiles,
    /// A model never trained on the forget set, for forget quality and PrivLeak.
    pub reference: Option<PathBuf>,
    pub trainable: TextTrainable,
    pub npo_beta: f64,
    pub simnpo: SimNpo,
    pub rmu: Rmu,
    pub refusal: String,
    pub prompt_format: Option<PromptFormat>,
    /// Keyword arguments for the chat template.
    pub chat_template_kwargs: serde_json::Map<String, serde_json::Value>,
    pub max_new_tokens: usize,
    pub perplexity_tokens: usize,
    /// Retain questions measured (None: all).
    pub retain_questions: Option<usize>,
    /// Questions of each set shown before and after.
    pub samples: usize,
}

pub type TextJob = UnlearnJob<TextSpec>;

/// A language model with its sets, through the stages of a run.
pub struct TextRun {
    lm: LanguageModel,
    format: PromptFormat,
    sets: TextSets,
    /// The forget prompts with the refusal as their answer (the refusal objective's targets).
    refusals: Vec<Encoded>,
    /// The reference model's metrics, and what the measures relative to it need.
    reference: Option<(TextMetrics, Evidence)>,
    /// NPO's β (the NPO objective and baseline read it).
    npo_beta: f64,
    simnpo: SimNpo,
    rmu: Rmu,
    /// Summed log-probability of each forget answer before the run (NPO's reference).
    reference_log_probs: Vec<f32>,
    before: Option<Answers>,
    after: Option<Answers>,
    /// After training: the weights with adapters merged, and the tensors that changed.
    merged: Option<(Params, BTreeMap<String, Tensor>)>,
}

impl TextRun {
    /// τ of the level objectives under the model before unlearning (its adapters, if any, are
    /// still zero): for held-out-level the mean NLL per answer token of the held-out set's
    /// answers, for fact-level the mean NLL per fact token of their facts.
    fn held_out_level(&self, objective: ForgetObjective, trainable: &Trainable) -> Result<f64> {
        let holdout = self.sets.holdout.as_ref().ok_or_else(|| {
            Error::Usage(format!(
                "the {} objective needs --holdout-set: answers of the forget set's kind that the \
                 model never saw, whose likelihood is the level to forget to",
                objective.name()
            ))
        })?;
        if objective == ForgetObjective::FactLevel {
            for set in [&self.sets.forget, holdout] {
                if let Some(i) = set.encoded.iter().position(|e| e.fact.is_none()) {
                    return Err(Error::Usage(format!(
                        "{} line {}: the fact-level objective needs each answer's `value`, \
                         written in the answer as it is (docs/data.md)",
                        set.file.display(),
                        i + 1
                    )));
                }
            }
        }
        let answers = answer_log_probs(
            self.lm.model(),
            self.lm.params(),
            &holdout.encoded,
            self.lm.tokenizer.pad_id,
            trainable.lora.as_ref().map_or(1.0, LoraConfig::scale),
            8,
        )?;
        let per_answer: Vec<f64> = if objective == ForgetObjective::FactLevel {
            answers.iter().filter_map(AnswerLogProb::fact_nll).collect()
        } else {
            answers.iter().map(AnswerLogProb::nll).collect()
        };
        Ok(per_answer.iter().sum::<f64>() / per_answer.len().max(1) as f64)
    }

    fn settings(job: &TextJob) -> MeasureSettings {
        MeasureSettings {
            max_new_tokens: job.spec.max_new_tokens,
            perplexity_tokens: job.spec.perplexity_tokens,
            retain_questions: job.spec.retain_questions,
            precision: job.precision,
            progress: job.progress,
            chat_template_kwargs: job.spec.chat_template_kwargs.clone(),
        }
    }

    /// RMU's target, when the run's method or objective is RMU: c·u with u a random unit
    /// vector drawn from the run's seed, and the trained weights as they were before the run.
    fn rmu_target(
        &self,
        trainable: &Trainable,
        config: &UnlearnConfig,
    ) -> Result<Option<RmuTarget>> {
        let uses = config.method == MethodKind::Rmu || config.objective == ForgetObjective::Rmu;
        if !uses {
            return Ok(None);
        }
        let model = self.lm.model();
        let layer = self.rmu.layer.unwrap_or(model.layers() / 4);
        let mut rng = crate::rng::Rng::derived(config.seed, "rmu-direction");
        let u: Vec<f64> = (0..model.hidden_size()).map(|_| rng.next_f64()).collect();
        let norm = u
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt()
            .max(f64::MIN_POSITIVE);
        let scale = self.rmu.coefficient / norm;
        let target: Vec<f32> = u.iter().map(|x| (x * scale) as f32).collect();
        let params = self.lm.params();
        let target = Tensor::from_vec(target, model.hidden_size(), params.device())?;
        // LoRA: adapters at scale 0 are the model before the run; trained weights need a copy.
        let frozen = match trainable.lora {
            Some(_) => None,
            None => {
                let mut frozen = params.detached();
                for (name, var) in trainable.set.names.iter().zip(&trainable.set.vars) {
                    frozen.insert(name.clone(), var.as_tensor().copy()?);
                }
                Some(frozen)
            }
        };
        Ok(Some(RmuTarget {
            layer,
            target,
            alpha: self.rmu.alpha,
            frozen,
        }))
    }

    fn merged_params(&self) -> &Params {
        &self.merged.as_ref().expect("training finished").0
    }
}

impl Workload for TextRun {
    type Spec = TextSpec;
    type Metrics = TextMetrics;

    fn open(job: &TextJob) -> Result<Self> {
        if !job.config.objective.is_for_text() {
            return Err(Error::Usage(format!(
                "the {} objective is for classifiers; language models take npo or refusal",
                job.config.objective.name()
            )));
        }
        let mut lm = LanguageModel::open(&job.model, &job.device, job.precision, job.progress)?;
        lm.tokenizer
            .set_chat_template_vars(job.spec.chat_template_kwargs.clone());
        let format = lm.prompt_format(job.spec.prompt_format);
        let sets = TextSets::read(&lm, &job.spec.sets, format)?;
        let refusals = sets
            .forget
            .examples
            .iter()
            .map(|ex| {
                let e = encode_with_answer(&lm.tokenizer, ex, &job.spec.refusal, format)?;
                lm.check_length(&e)?;
                Ok(e)
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| Error::Data {
                path: job.spec.sets.forget.clone(),
                reason: format!("with the refusal as its answer: {e}"),
            })?;
        Ok(TextRun {
            lm,
            format,
            sets,
            refusals,
            reference: None,
            npo_beta: job.spec.npo_beta,
            simnpo: job.spec.simnpo,
            rmu: job.spec.rmu,
            reference_log_probs: Vec::new(),
            before: None,
            after: None,
            merged: None,
        })
    }

    fn input_dirs(&self, _: &TextJob) -> Vec<PathBuf> {
        vec![self.lm.opened.checkpoint.dir.clone()]
    }

    fn measure_before(&mut self, job: &TextJob) -> Result<TextMetrics> {
        let m = measure(
            &self.lm,
            self.lm.params(),
            &self.sets,
            self.reference.as_ref().map(|(_, e)| e),
            &Self::settings(job),
            self.format,
            "before",
        )?;
        self.before = Some(m.answers);
        self.reference_log_probs = answer_log_probs(
            self.lm.model(),
            self.lm.params(),
            &self.sets.forget.encoded,
            self.lm.tokenizer.pad_id,
            1.0,
            8,
        )?
        .iter()
        .map(|a| a.sum)
        .collect();
        Ok(m.metrics)
    }

    fn reference(&mut self, job: &TextJob) -> Result<Option<TextMetrics>> {
        let Some(source) = &job.spec.reference else {
            return Ok(None);
        };
        let settings = Self::settings(job);
        let (m, evidence) =
            measure_reference(source, &self.sets, self.format, &settings, &job.device)?;
        self.reference = Some((m.clone(), evidence));
        Ok(Some(m))
    }

    fn select_trainable(&mut self, job: &TextJob) -> Result<Trainable> {
        select_trainable(&mut self.lm, &job.spec.trainable, job.config.seed)
    }

    fn config(&self, job: &TextJob, trainable: &Trainable) -> Result<UnlearnConfig> {
        let mut config = job.config.clone();
        config.held_out_loss = if matches!(
            config.objective,
            ForgetObjective::HeldOutLevel | ForgetObjective::FactLevel
        ) {
            self.held_out_level(config.objective, trainable)? as f32
        } else {
            0.0
        };
        Ok(config)
    }

    fn fingerprint(&self, job: &TextJob, config: &UnlearnConfig) -> serde_json::Value {
        serde_json::json!({
            "lethe": env!("CARGO_PKG_VERSION"),
            "model": self.lm.opened.checkpoint.dir.display().to_string(),
            "forget": job.spec.sets.forget.display().to_string(),
            "retain": job.spec.sets.retain.display().to_string(),
            "trainable": format!("{:?}", job.spec.trainable),
            "config": config,
            "npo_beta": job.spec.npo_beta,
            "simnpo": job.spec.simnpo,
            "rmu": job.spec.rmu,
            "refusal": job.spec.refusal,
        })
    }

    fn run(
        &self,
        trainable: &Trainable,
        config: &UnlearnConfig,
        control: &RunControl,
        progress: &indicatif::ProgressBar,
    ) -> Result<RunLog> {
        let task = TextTask {
            model: self.lm.model(),
            forget: self.sets.forget.encoded.clone(),
            refusals: self.refusals.clone(),
            retain: self.sets.retain.encoded.clone(),
            reference_log_probs: self.reference_log_probs.clone(),
            objective: config.objective,
            held_out_nll: config.held_out_loss,
            npo_beta: self.npo_beta,
            simnpo: self.simnpo,
            rmu: self.rmu_target(trainable, config)?,
            lora_scale: trainable.lora.as_ref().map_or(1.0, LoraConfig::scale),
            pad_id: self.lm.tokenizer.pad_id,
        };
        let forget: Vec<usize> = (0..self.sets.forget.encoded.len()).collect();
        let retain: Vec<usize> = (0..self.sets.retain.encoded.len()).collect();
        unlearn::run(
            &task,
            self.lm.params(),
            &trainable.set,
            Samples {
                forget: &forget,
                retain: &retain,
            },
            config,
            control,
            progress,
        )
    }

    fn finish_training(&mut self, trainable: &Trainable) -> Result<()> {
        self.merged = Some(merged(&self.lm, trainable)?);
        Ok(())
    }

    fn measure_after(&mut self, job: &TextJob) -> Result<TextMetrics> {
        let m = measure(
            &self.lm,
            self.merged_params(),
            &self.sets,
            self.reference.as_ref().map(|(_, e)| e),
            &Self::settings(job),
            self.format,
            "after",
        )?;
        self.after = Some(m.answers);
        Ok(m.metrics)
    }

    fn export(&self, job: &TextJob, trainable: &Trainable, dir: &Path) -> Result<Vec<String>> {
        let (merged_params, changed) = self.merged.as_ref().expect("training finished");
        let withheld = Withheld::new(
            &self.lm.opened.checkpoint.dir,
            &[&job.spec.sets.forget],
            &self.sets.forget.examples,
        );
        let skipped = write_outputs(
            &self.lm,
            trainable,
            merged_params,
            changed,
            dir,
            &crate::hub::base_model(&job.model),
            &|p| withheld.withholds(p),
        )?;
        Ok(Withheld::listed(skipped))
    }

    fn verify(&self, dir: &Path, library: &Path) -> Result<Parity> {
        verify::text_parity(
            &dir.join(crate::export::ONNX_FILE),
            library,
            self.lm.model(),
            // Compared with the exported weights, in f32.
            &*self.lm.in_full_precision(self.merged_params())?,
            &self.sets.retain.encoded,
            self.lm.tokenizer.pad_id,
            self.lm.tokenizer.eos_id,
        )
    }

    fn describe(&self, job: &TextJob, trainable: &Trainable) -> (ModelInfo, DataInfo, RunConfig) {
        let model = ModelInfo {
            kind: crate::report::ModelKind::Text,
            source: job.model.display().to_string(),
            model_type: self.lm.model().model_type.clone(),
            parameters: self.lm.opened.num_parameters(),
            trainable_parameters: trainable.set.num_elements(),
            trainable_tensors: trainable.set.names.clone(),
            lora: trainable.lora.clone(),
        };
        let files = &job.spec.sets;
        let data = DataInfo {
            forget: files.forget.display().to_string(),
            forget_samples: self.sets.forget.examples.len(),
            retain_samples: self.sets.retain.examples.len(),
            train: None,
            test: None,
            test_samples: None,
            retain: Some(files.retain.display().to_string()),
            eval_text: files.eval_text.as_ref().map(|p| p.display().to_string()),
            prompt_format: Some(self.format),
            chat_template_kwargs: Some(job.spec.chat_template_kwargs.clone())
                .filter(|kwargs| !kwargs.is_empty()),
        };
        let config = RunConfig {
            unlearn: job.config.clone(),
            npo_beta: Some(job.spec.npo_beta),
            simnpo: Some(job.spec.simnpo),
            rmu: Some(job.spec.rmu),
            refusal: Some(job.spec.refusal.clone()),
            device: crate::device::name(&job.device),
            dtype: job.precision.name(),
        };
        (model, data, config)
    }

    fn samples(&self, job: &TextJob) -> Vec<SideBySide> {
        let (Some(before), Some(after)) = (&self.before, &self.after) else {
            return Vec::new();
        };
        let mut samples = Vec::new();
        for (set, b, a) in [
            ("forget", &before.forget, &after.forget),
            ("retain", &before.retain, &after.retain),
        ] {
            for (b, a) in b.iter().zip(a.iter()).take(job.spec.samples) {
                samples.push(SideBySide {
                    set: set.into(),
                    question: b.question.clone(),
                    reference: b.reference.clone(),
                    before: b.answer.clone(),
                    after: a.answer.clone(),
                });
            }
        }
        samples
    }
}

/// Chooses and installs the trainable tensors of a language model.
pub fn select_trainable(
    lm: &mut LanguageModel,
    how: &TextTrainable,
    seed: u64,
) -> Result<Trainable> {
    if let TextTrainable::Weights { train, freeze } = how {
        // Weights that train start from the checkpoint's values in f32 (their master copies),
        // whatever precision the frozen ones are held in.
        let specs = lm.model().param_specs();
        let chosen = specs
            .iter()
            .filter(|s| trainable::is_selected(s, train, freeze))
            .map(|s| s.name.as_str());
        lm.restore_f32(chosen)?;
    }
    let (params, model) = (&mut lm.opened.params, &lm.opened.arch);
    Ok(match how {
        TextTrainable::Lora(cfg) => Trainable {
            set: lora::attach(params, model, cfg, seed)?,
            lora: Some(cfg.clone()),
        },
        TextTrainable::Adapter(dir) => {
            let (cfg, set) = lora::load_adapter(dir, params, model)?;
            Trainable {
                set,
                lora: Some(cfg),
            }
        }
        TextTrainable::Weights { train, freeze } => Trainable {
            set: trainable::select(params, &model.param_specs(), train, freeze)?,
            lora: None,
        },
    })
}

/// The model's weights after training, without adapters (merged into their layers), and the
/// tensors that changed.
pub fn merged(
    lm: &LanguageModel,
    trainable: &Trainable,
) -> Result<(Params, BTreeMap<String, Tensor>)> {
    let params = lm.params();
    match &trainable.lora {
        Some(cfg) => {
            // Merged into the base weights as the checkpoint holds them, read in f32.
            let base = |name: &str| match params.get(name)? {
                w if w.dtype() == candle_core::DType::F32 => Ok(w.clone()),
                _ => lm.opened.checkpoint.load_f32(name, params.device()),
            };
            let w = lora::merged_weights(params, lm.model(), &trainable.set, cfg.scale(), &base)?;
            Ok((lora::without_adapters(params, &w), w))
        }
        None => {
            let changed = trainable
                .set
                .names
                .iter()
                .map(|n| Ok((n.clone(), params.get(n)?.detach())))
                .collect::<Result<_>>()?;
            Ok((lora::without_adapters(params, &BTreeMap::new()), changed))
        }
    }
}

/// Writes the edited model: the merged checkpoint (changed weights replaced, the input's other
/// files copied unless withheld), the PEFT adapter when LoRA trained, and model.onnx. Returns the
/// withheld files.
pub fn write_outputs(
    lm: &LanguageModel,
    trainable: &Trainable,
    merged_params: &Params,
    changed: &BTreeMap<String, Tensor>,
    dir: &Path,
    base: &lora::BaseModel,
    withhold: &dyn Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>> {
    let withheld = crate::checkpoint::write_edited(&lm.opened.checkpoint, changed, dir, withhold)?;
    if let Some(cfg) = &trainable.lora {
        let adapter = dir.join(ADAPTER_DIR);
        std::fs::create_dir(&adapter).map_err(|e| Error::io(&adapter, e))?;
        lora::write_adapter(&adapter, lm.model(), cfg, &trainable.set, base)?;
    }
    crate::interrupt::check()?;
    // The ONNX model holds the same weights as the checkpoint written beside it.
    let onnx = lm
        .model()
        .to_onnx(&*lm.in_full_precision(merged_params)?, &[])?;
    crate::export::write_text_onnx(
        onnx,
        &dir.join(crate::export::ONNX_FILE),
        crate::export::EXTERNAL_DATA_THRESHOLD,
    )?;
    Ok(withheld)
}
