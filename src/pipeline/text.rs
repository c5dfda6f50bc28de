//! Unlearning question/answer facts from a causal language model: JSONL forget and retain sets,
//! LoRA adapters or selected weights, then the merged checkpoint, the PEFT adapter and ONNX,
//! measured by answer probability, ROUGE-L and perplexity; and `lethe eval-text`, the same
//! measurement alone.

use super::{Trainable, UnlearnJob, Withheld, Workload, ADAPTER_DIR};
use crate::error::{Error, Result};
use crate::model::LanguageModel;
use crate::nn::Params;
use crate::report::{DataInfo, ModelInfo, RunConfig, SideBySide};
use crate::text::data::{self, answer_log_probs, encode_with_answer, Encoded, PromptFormat};
use crate::text::metrics::{self, Answered, SetMetrics, TextMetrics};
use crate::text::TextExample;
use crate::unlearn::lora::{self, LoraConfig};
use crate::unlearn::resume::RunControl;
use crate::unlearn::text_task::TextTask;
use crate::unlearn::{self, trainable, RunLog, Samples, UnlearnConfig};
use crate::verify::{self, Parity};
use candle_core::{Device, Tensor};
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

/// How a language model's sets are measured.
#[derive(Clone, Copy, Debug)]
pub struct MeasureSettings {
    /// Longest greedy answer generated for ROUGE-L.
    pub max_new_tokens: usize,
    /// Tokens of the held-out text used for perplexity.
    pub perplexity_tokens: usize,
    pub progress: bool,
}

/// What a language-model run forgets, keeps and trains.
#[derive(Clone, Debug)]
pub struct TextSpec {
    pub forget_set: PathBuf,
    pub retain_set: PathBuf,
    /// Held-out text for perplexity.
    pub eval_text: Option<PathBuf>,
    pub trainable: TextTrainable,
    pub npo_beta: f64,
    pub refusal: String,
    pub prompt_format: Option<PromptFormat>,
    pub max_new_tokens: usize,
    pub perplexity_tokens: usize,
    /// Questions of each set shown before and after.
    pub samples: usize,
}

pub type TextJob = UnlearnJob<TextSpec>;

/// The forget and retain examples, read from their JSONL files, and their encodings.
pub struct TextSets {
    pub forget_ex: Vec<TextExample>,
    pub forget_enc: Vec<Encoded>,
    pub retain_ex: Vec<TextExample>,
    pub retain_enc: Vec<Encoded>,
}

impl TextSets {
    pub fn read(
        m: &LanguageModel,
        forget: &Path,
        retain: &Path,
        format: PromptFormat,
    ) -> Result<Self> {
        let forget_ex = data::read_jsonl(forget)?;
        let retain_ex = data::read_jsonl(retain)?;
        Ok(TextSets {
            forget_enc: m.encode_all(forget, &forget_ex, format)?,
            retain_enc: m.encode_all(retain, &retain_ex, format)?,
            forget_ex,
            retain_ex,
        })
    }
}

/// A language model's answers to both sets, kept for the side-by-side samples.
struct Answers {
    forget: Vec<Answered>,
    retain: Vec<Answered>,
}

/// A language model with its sets, through the stages of a run.
pub struct TextRun {
    lm: LanguageModel,
    format: PromptFormat,
    sets: TextSets,
    /// The forget prompts with the refusal as their answer (the refusal objective's targets).
    refusals: Vec<Encoded>,
    eval_text: Option<String>,
    /// NPO's β (the NPO objective and baseline read it).
    npo_beta: f64,
    /// Summed log-probability of each forget answer before the run (NPO's reference).
    reference_log_probs: Vec<f32>,
    before: Option<Answers>,
    after: Option<Answers>,
    /// After training: the weights with adapters merged, and the tensors that changed.
    merged: Option<(Params, BTreeMap<String, Tensor>)>,
}

impl TextRun {
    fn settings(job: &TextJob) -> MeasureSettings {
        MeasureSettings {
            max_new_tokens: job.spec.max_new_tokens,
            perplexity_tokens: job.spec.perplexity_tokens,
            progress: job.progress,
        }
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
        let lm = LanguageModel::open(&job.model, &job.device, job.progress)?;
        let eval_text = job
            .spec
            .eval_text
            .as_deref()
            .map(read_eval_text)
            .transpose()?;
        let format = lm.prompt_format(job.spec.prompt_format);
        let sets = TextSets::read(&lm, &job.spec.forget_set, &job.spec.retain_set, format)?;
        let refusals = sets
            .forget_ex
            .iter()
            .map(|ex| {
                let e = encode_with_answer(&lm.tokenizer, ex, &job.spec.refusal, format)?;
                lm.check_length(&e)?;
                Ok(e)
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| Error::Data {
                path: job.spec.forget_set.clone(),
                reason: format!("with the refusal as its answer: {e}"),
            })?;
        Ok(TextRun {
            lm,
            format,
            sets,
            refusals,
            eval_text,
            npo_beta: job.spec.npo_beta,
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
        let (m, answers) = measure(
            &self.lm,
            self.lm.params(),
            &self.sets,
            self.eval_text.as_deref(),
            &Self::settings(job),
            self.format,
            "before",
        )?;
        self.before = Some(answers);
        self.reference_log_probs = answer_log_probs(
            self.lm.model(),
            self.lm.params(),
            &self.sets.forget_enc,
            self.lm.tokenizer.pad_id,
            1.0,
            8,
        )?
        .into_iter()
        .map(|(lp, _)| lp)
        .collect();
        Ok(m)
    }

    fn reference(&self, _: &TextJob) -> Result<Option<TextMetrics>> {
        Ok(None)
    }

    fn select_trainable(&mut self, job: &TextJob) -> Result<Trainable> {
        select_trainable(&mut self.lm, &job.spec.trainable, job.config.seed)
    }

    fn config(&self, job: &TextJob, _: &Trainable) -> Result<UnlearnConfig> {
        let mut config = job.config.clone();
        config.held_out_loss = 0.0;
        Ok(config)
    }

    fn fingerprint(&self, job: &TextJob, config: &UnlearnConfig) -> serde_json::Value {
        serde_json::json!({
            "lethe": env!("CARGO_PKG_VERSION"),
            "model": self.lm.opened.checkpoint.dir.display().to_string(),
            "forget": job.spec.forget_set.display().to_string(),
            "retain": job.spec.retain_set.display().to_string(),
            "trainable": format!("{:?}", job.spec.trainable),
            "config": config,
            "npo_beta": job.spec.npo_beta,
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
            forget: self.sets.forget_enc.clone(),
            refusals: self.refusals.clone(),
            retain: self.sets.retain_enc.clone(),
            reference_log_probs: self.reference_log_probs.clone(),
            objective: config.objective,
            npo_beta: self.npo_beta,
            lora_scale: trainable.lora.as_ref().map_or(1.0, LoraConfig::scale),
            pad_id: self.lm.tokenizer.pad_id,
        };
        let forget: Vec<usize> = (0..self.sets.forget_enc.len()).collect();
        let retain: Vec<usize> = (0..self.sets.retain_enc.len()).collect();
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
        let (m, answers) = measure(
            &self.lm,
            self.merged_params(),
            &self.sets,
            self.eval_text.as_deref(),
            &Self::settings(job),
            self.format,
            "after",
        )?;
        self.after = Some(answers);
        Ok(m)
    }

    fn export(&self, job: &TextJob, trainable: &Trainable, dir: &Path) -> Result<Vec<String>> {
        let (merged_params, changed) = self.merged.as_ref().expect("training finished");
        let withheld = Withheld::new(
            &self.lm.opened.checkpoint.dir,
            &[&job.spec.forget_set],
            &self.sets.forget_ex,
        );
        let skipped = write_outputs(
            &self.lm,
            trainable,
            merged_params,
            changed,
            dir,
            &job.model.display().to_string(),
            &|p| withheld.withholds(p),
        )?;
        Ok(Withheld::listed(skipped))
    }

    fn verify(&self, dir: &Path, library: &Path) -> Result<Parity> {
        verify::text_parity(
            &dir.join(crate::export::ONNX_FILE),
            library,
            self.lm.model(),
            self.merged_params(),
            &self.sets.retain_enc,
            self.lm.tokenizer.pad_id,
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
        let data = DataInfo {
            forget: job.spec.forget_set.display().to_string(),
            forget_samples: self.sets.forget_ex.len(),
            retain_samples: self.sets.retain_ex.len(),
            train: None,
            test: None,
            test_samples: None,
            retain: Some(job.spec.retain_set.display().to_string()),
            eval_text: job.spec.eval_text.as_ref().map(|p| p.display().to_string()),
            prompt_format: Some(self.format),
        };
        let config = RunConfig {
            unlearn: job.config.clone(),
            npo_beta: Some(job.spec.npo_beta),
            refusal: Some(job.spec.refusal.clone()),
            device: crate::device::name(&job.device),
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
            let w = lora::merged_weights(params, lm.model(), &trainable.set, cfg.scale())?;
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
    base_name: &str,
    withhold: &dyn Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>> {
    let withheld = crate::checkpoint::write_edited(&lm.opened.checkpoint, changed, dir, withhold)?;
    if let Some(cfg) = &trainable.lora {
        let adapter = dir.join(ADAPTER_DIR);
        std::fs::create_dir(&adapter).map_err(|e| Error::io(&adapter, e))?;
        lora::write_adapter(&adapter, lm.model(), cfg, &trainable.set, base_name)?;
    }
    crate::interrupt::check()?;
    let onnx = lm.model().to_onnx(merged_params, &[])?;
    crate::export::write_text_onnx(
        onnx,
        &dir.join(crate::export::ONNX_FILE),
        crate::export::EXTERNAL_DATA_THRESHOLD,
    )?;
    Ok(withheld)
}

/// Metrics of `params` on the sets: answer probability and NLL, greedy ROUGE-L, perplexity;
/// and the greedy answers themselves.
fn measure(
    lm: &LanguageModel,
    params: &Params,
    sets: &TextSets,
    eval_text: Option<&str>,
    settings: &MeasureSettings,
    format: PromptFormat,
    label: &str,
) -> Result<(TextMetrics, Answers)> {
    let questions = sets.forget_ex.len() + sets.retain_ex.len();
    let bar = super::progress_bar(
        settings.progress,
        &format!("{{spinner}} {label} [{{bar:30}}] {{pos}}/{{len}} answers  ({{elapsed}})"),
    );
    bar.set_length(questions as u64);
    let tick = || bar.inc(1);
    let answers = |ex: &[TextExample]| {
        metrics::answer_questions(
            lm.model(),
            params,
            &lm.tokenizer,
            ex,
            format,
            settings.max_new_tokens,
            &tick,
        )
    };
    let forget_answers = answers(&sets.forget_ex)?;
    let retain_answers = answers(&sets.retain_ex)?;
    bar.finish_and_clear();
    let stats =
        |enc: &[Encoded]| metrics::answer_stats(lm.model(), params, enc, lm.tokenizer.pad_id, 1.0);
    let (fs, rs) = (stats(&sets.forget_enc)?, stats(&sets.retain_enc)?);
    let perplexity = match eval_text {
        Some(text) => Some(metrics::perplexity(
            lm.model(),
            params,
            &lm.tokenizer,
            text,
            256,
            settings.perplexity_tokens,
        )?),
        None => None,
    };
    let m = TextMetrics {
        forget: SetMetrics {
            probability: fs.probability,
            nll: fs.nll,
            rouge_l: metrics::mean_rouge(&forget_answers),
        },
        retain: SetMetrics {
            probability: rs.probability,
            nll: rs.nll,
            rouge_l: metrics::mean_rouge(&retain_answers),
        },
        perplexity,
    };
    let answers = Answers {
        forget: forget_answers,
        retain: retain_answers,
    };
    Ok((m, answers))
}

pub fn read_eval_text(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if text.trim().is_empty() {
        return Err(Error::Data {
            path: path.to_path_buf(),
            reason: "the held-out text is empty".into(),
        });
    }
    Ok(text)
}

/// `lethe eval-text`: the text metrics of a model on forget and retain sets (and perplexity).
#[allow(clippy::too_many_arguments)]
pub fn eval_text(
    model: &Path,
    forget_set: &Path,
    retain_set: &Path,
    eval_text: Option<&Path>,
    prompt_format: Option<PromptFormat>,
    settings: &MeasureSettings,
    device: &Device,
) -> Result<TextMetrics> {
    let lm = LanguageModel::open(model, device, settings.progress)?;
    let text = eval_text.map(read_eval_text).transpose()?;
    let format = lm.prompt_format(prompt_format);
    let sets = TextSets::read(&lm, forget_set, retain_set, format)?;
    Ok(measure(
        &lm,
        lm.params(),
        &sets,
        text.as_deref(),
        settings,
        format,
        "measuring",
    )?
    .0)
}
