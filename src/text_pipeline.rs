//! The jobs behind `lethe unlearn-text` and `lethe train-text`: a transformer checkpoint, JSONL
//! question/answer sets, LoRA adapters or selected layers, the unlearning run, then the merged
//! checkpoint, the PEFT adapter and ONNX, checked by ONNX Runtime, and a report.

use crate::arch::text::TextModel;
use crate::checkpoint::{write_edited, Checkpoint, OutputDir};
use crate::error::{Error, Result};
use crate::export;
use crate::nn::Params;
use crate::pipeline::{progress_bar, require_runtime, state_dir};
use crate::report::RunSummary;
use crate::text::data::{self, encode, encode_with_answer, Encoded, PromptFormat, TextExample};
use crate::text::metrics::{self, AnswerStats, Answered};
use crate::text::TextTokenizer;
use crate::unlearn::lora::{self, LoraConfig};
use crate::unlearn::text_task::{answer_log_probs, TextTask};
use crate::unlearn::{self, trainable, ForgetObjective, Samples, TrainableSet, UnlearnConfig};
use crate::verify::runtime::OnnxModel;
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::pipeline::REPORT_FILE;
pub const ADAPTER_DIR: &str = "adapter";
/// ONNX Runtime and candle logits of a text model must agree to this in f32, per unit of the
/// largest |logit| above 1: float error grows with the logits' scale over a deep model
/// (SmolLM2's logits reach ~30, and its two runtimes differ by ~1e-4 on them).
pub const TEXT_PARITY_TOLERANCE: f32 = 1e-4;

/// A transformer checkpoint with its tokenizer.
pub struct TextModelDir {
    pub checkpoint: Checkpoint,
    pub model: TextModel,
    pub params: Params,
    pub tokenizer: TextTokenizer,
}

impl TextModelDir {
    pub fn open(source: &Path) -> Result<TextModelDir> {
        let dir = crate::hub::resolve_model(source, true)?;
        let checkpoint = Checkpoint::open(&dir)?;
        let model = TextModel::from_checkpoint(&checkpoint)?;
        if !model.is_causal_lm() {
            return Err(Error::Usage(format!(
                "{} is an encoder; lethe unlearns question/answer data from causal language models",
                model.model_type
            )));
        }
        let params = model.load_params(&checkpoint, &Device::Cpu)?;
        let tokenizer = TextTokenizer::open(&dir, &checkpoint.config)?;
        Ok(TextModelDir {
            checkpoint,
            model,
            params,
            tokenizer,
        })
    }

    pub fn num_parameters(&self) -> usize {
        self.model
            .param_specs()
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum()
    }

    fn prompt_format(&self, chosen: Option<PromptFormat>) -> PromptFormat {
        chosen.unwrap_or(if self.tokenizer.has_chat_template() {
            PromptFormat::Chat
        } else {
            PromptFormat::Plain
        })
    }

    /// Encodes examples, refusing any longer than the model's context.
    fn encode_all(&self, examples: &[TextExample], format: PromptFormat) -> Result<Vec<Encoded>> {
        examples
            .iter()
            .map(|ex| {
                let e = encode(&self.tokenizer, ex, format)?;
                self.check_length(&e)?;
                Ok(e)
            })
            .collect()
    }

    fn check_length(&self, e: &Encoded) -> Result<()> {
        if e.ids.len() > self.model.max_positions() {
            return Err(Error::Usage(format!(
                "an example of {} tokens is longer than the model's max_position_embeddings ({})",
                e.ids.len(),
                self.model.max_positions()
            )));
        }
        Ok(())
    }
}

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

struct Selected {
    set: TrainableSet,
    lora: Option<LoraConfig>,
}

fn select_trainable(m: &mut TextModelDir, how: &TextTrainable, seed: u64) -> Result<Selected> {
    Ok(match how {
        TextTrainable::Lora(cfg) => Selected {
            set: lora::attach(&mut m.params, &m.model, cfg, seed, &Device::Cpu)?,
            lora: Some(cfg.clone()),
        },
        TextTrainable::Adapter(dir) => {
            let (cfg, set) = lora::load_adapter(dir, &mut m.params, &m.model, &Device::Cpu)?;
            Selected {
                set,
                lora: Some(cfg),
            }
        }
        TextTrainable::Weights { train, freeze } => Selected {
            set: trainable::select(&mut m.params, &m.model.param_specs(), train, freeze)?,
            lora: None,
        },
    })
}

/// The model's weights after training, without adapters (merged into their layers).
fn merged(m: &TextModelDir, sel: &Selected) -> Result<(Params, BTreeMap<String, Tensor>)> {
    match &sel.lora {
        Some(cfg) => {
            let w = lora::merged_weights(&m.params, &m.model, &sel.set, cfg.scale())?;
            Ok((lora::without_adapters(&m.params, &w), w))
        }
        None => {
            let changed = sel
                .set
                .names
                .iter()
                .map(|n| Ok((n.clone(), m.params.get(n)?.detach())))
                .collect::<Result<_>>()?;
            Ok((lora::without_adapters(&m.params, &BTreeMap::new()), changed))
        }
    }
}

/// ONNX Runtime against candle on up to 4 examples: the largest |Δlogit|.
pub fn text_parity(
    onnx: &Path,
    library: &Path,
    model: &TextModel,
    params: &Params,
    rows: &[Encoded],
    pad_id: u32,
) -> Result<TextParity> {
    let rows: Vec<&Encoded> = rows.iter().take(4).collect();
    let batch = data::TokenBatch::new(&rows, pad_id, &Device::Cpu)?;
    let candle = model.run(params, &batch.ids, &batch.mask, 1.0)?;
    let (b, t) = batch.ids.dims2()?;
    let as_i64 =
        |x: &Tensor| -> Result<Vec<i64>> { Ok(x.to_dtype(DType::I64)?.flatten_all()?.to_vec1()?) };
    let mut session = OnnxModel::load(onnx, library)?;
    let ort = session.run_tokens(as_i64(&batch.ids)?, as_i64(&batch.mask)?, b, t)?;
    let ort = Tensor::from_vec(ort, candle.dims(), &Device::Cpu)?;
    let keep = batch.mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let scale: f32 = candle
        .abs()?
        .broadcast_mul(&keep)?
        .flatten_all()?
        .max(0)?
        .to_scalar()?;
    let diff: f32 = (ort - candle)?
        .abs()?
        .broadcast_mul(&keep)?
        .flatten_all()?
        .max(0)?
        .to_scalar()?;
    let tolerance = TEXT_PARITY_TOLERANCE * scale.max(1.0);
    Ok(TextParity {
        sequences: b,
        max_abs_diff: diff,
        max_abs_logit: scale,
        tolerance,
        passed: diff <= tolerance,
    })
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TextParity {
    pub sequences: usize,
    pub max_abs_diff: f32,
    /// The largest |logit| compared; the tolerance scales with it.
    pub max_abs_logit: f32,
    pub tolerance: f32,
    pub passed: bool,
}

/// Writes the edited model: merged checkpoint (changed weights replaced, tokenizer and other
/// files copied), the PEFT adapter when LoRA trained, and model.onnx.
fn write_outputs(
    m: &TextModelDir,
    sel: &Selected,
    merged_params: &Params,
    changed: &BTreeMap<String, Tensor>,
    dir: &Path,
    base_name: &str,
) -> Result<bool> {
    write_edited(&m.checkpoint, changed, dir)?;
    // The input's own lethe outputs (an adapter over its base, its ONNX and report) were copied
    // with its other files; they describe the input, not this model.
    for stale in [
        ADAPTER_DIR,
        export::ONNX_FILE,
        export::ONNX_DATA_FILE,
        REPORT_FILE,
    ] {
        let p = dir.join(stale);
        let removed = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else if p.exists() {
            std::fs::remove_file(&p)
        } else {
            Ok(())
        };
        removed.map_err(|e| Error::io(&p, e))?;
    }
    if let Some(cfg) = &sel.lora {
        let adapter = dir.join(ADAPTER_DIR);
        std::fs::create_dir(&adapter).map_err(|e| Error::io(&adapter, e))?;
        lora::write_adapter(&adapter, &m.model, cfg, &sel.set, base_name)?;
    }
    let onnx = m.model.to_onnx(merged_params, &[])?;
    export::write_text_onnx(
        onnx,
        &dir.join(export::ONNX_FILE),
        export::EXTERNAL_DATA_THRESHOLD,
    )
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SetMetrics {
    pub probability: f64,
    pub nll: f64,
    pub rouge_l: f64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TextMetrics {
    pub forget: SetMetrics,
    pub retain: SetMetrics,
    pub perplexity: Option<f64>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SideBySide {
    pub set: String,
    pub question: String,
    pub reference: String,
    pub before: String,
    pub after: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TextGate {
    pub name: String,
    pub limit: f64,
    pub value: f64,
    pub passed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct TextGates {
    /// Forget ROUGE-L (0–1) must fall to at most this.
    pub max_forget_rouge: Option<f64>,
    /// Retain ROUGE-L may fall by at most this many points (0–100 scale).
    pub max_retain_rouge_drop: Option<f64>,
    /// Perplexity may rise by at most this many percent.
    pub max_perplexity_rise: Option<f64>,
}

impl TextGates {
    fn evaluate(&self, before: &TextMetrics, after: &TextMetrics) -> Vec<TextGate> {
        let mut out = Vec::new();
        let mut gate = |name: &str, limit: Option<f64>, value: f64| {
            if let Some(limit) = limit {
                out.push(TextGate {
                    name: name.into(),
                    limit,
                    value,
                    passed: value <= limit,
                });
            }
        };
        gate(
            "max_forget_rouge",
            self.max_forget_rouge,
            after.forget.rouge_l,
        );
        gate(
            "max_retain_rouge_drop",
            self.max_retain_rouge_drop,
            100.0 * (before.retain.rouge_l - after.retain.rouge_l),
        );
        if let (Some(b), Some(a)) = (before.perplexity, after.perplexity) {
            gate(
                "max_perplexity_rise",
                self.max_perplexity_rise,
                100.0 * (a / b - 1.0),
            );
        }
        out
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TextReport {
    pub schema: &'static str,
    pub lethe_version: &'static str,
    pub model: String,
    pub model_type: String,
    pub parameters: usize,
    pub trainable_parameters: usize,
    pub lora: Option<LoraConfig>,
    pub prompt_format: PromptFormat,
    pub forget_examples: usize,
    pub retain_examples: usize,
    pub config: UnlearnConfig,
    pub npo_beta: f64,
    pub before: TextMetrics,
    pub after: TextMetrics,
    pub samples: Vec<SideBySide>,
    pub run: RunSummary,
    pub verification: Option<TextParity>,
    pub outputs: Option<String>,
    pub gates: Vec<TextGate>,
    pub passed: bool,
}

pub const TEXT_SCHEMA: &str = "lethe.text-report.v1";

pub struct TextUnlearnJob {
    pub model: PathBuf,
    pub forget_set: PathBuf,
    pub retain_set: PathBuf,
    /// Held-out text for perplexity.
    pub eval_text: Option<PathBuf>,
    pub trainable: TextTrainable,
    pub config: UnlearnConfig,
    pub npo_beta: f64,
    pub refusal: String,
    pub prompt_format: Option<PromptFormat>,
    pub max_new_tokens: usize,
    /// Tokens of the held-out text used for perplexity.
    pub perplexity_tokens: usize,
    /// Questions of each set shown before and after.
    pub samples: usize,
    pub gates: TextGates,
    pub out: Option<PathBuf>,
    pub overwrite: bool,
    pub verify: bool,
    pub onnxruntime: Option<PathBuf>,
    pub progress: bool,
    pub checkpoint_every: Option<usize>,
    pub resume: bool,
    /// Further files to write into the output directory (name, contents).
    pub attachments: Vec<(String, Vec<u8>)>,
}

/// How the metrics are taken.
#[derive(Clone, Copy, Debug)]
pub struct MeasureSettings {
    pub max_new_tokens: usize,
    pub perplexity_tokens: usize,
    pub progress: bool,
}

/// The forget and retain examples, read from their JSONL files, and their encodings.
struct TextSets {
    forget_ex: Vec<TextExample>,
    forget_enc: Vec<Encoded>,
    retain_ex: Vec<TextExample>,
    retain_enc: Vec<Encoded>,
}

impl TextSets {
    fn read(m: &TextModelDir, forget: &Path, retain: &Path, format: PromptFormat) -> Result<Self> {
        let forget_ex = data::read_jsonl(forget)?;
        let retain_ex = data::read_jsonl(retain)?;
        Ok(TextSets {
            forget_enc: m.encode_all(&forget_ex, format)?,
            retain_enc: m.encode_all(&retain_ex, format)?,
            forget_ex,
            retain_ex,
        })
    }
}

/// Metrics of `params` on the sets: answer probability and NLL, greedy ROUGE-L, perplexity.
fn measure(
    m: &TextModelDir,
    params: &Params,
    sets: &TextSets,
    eval_text: Option<&str>,
    job: &MeasureSettings,
    format: PromptFormat,
    label: &str,
) -> Result<(TextMetrics, Vec<Answered>, Vec<Answered>)> {
    let TextSets {
        forget_ex,
        forget_enc,
        retain_ex,
        retain_enc,
    } = sets;
    let questions = forget_ex.len() + retain_ex.len();
    let bar = progress_bar(
        job.progress,
        &format!("{{spinner}} {label} [{{bar:30}}] {{pos}}/{{len}} answers  ({{elapsed}})"),
    );
    bar.set_length(questions as u64);
    let tick = || bar.inc(1);
    let answers = |ex: &[TextExample]| {
        metrics::answer_questions(
            &m.model,
            params,
            &m.tokenizer,
            ex,
            format,
            job.max_new_tokens,
            &tick,
        )
    };
    let forget_answers = answers(forget_ex)?;
    let retain_answers = answers(retain_ex)?;
    bar.finish_and_clear();
    let stats = |enc: &[Encoded]| -> Result<AnswerStats> {
        metrics::answer_stats(&m.model, params, enc, m.tokenizer.pad_id, 1.0)
    };
    let (fs, rs) = (stats(forget_enc)?, stats(retain_enc)?);
    let perplexity = match eval_text {
        Some(text) => Some(metrics::perplexity(
            &m.model,
            params,
            &m.tokenizer,
            text,
            256,
            job.perplexity_tokens,
        )?),
        None => None,
    };
    Ok((
        TextMetrics {
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
        },
        forget_answers,
        retain_answers,
    ))
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

/// Runs a text unlearning job. Returns the report; `passed` says whether every gate held.
pub fn unlearn_text(job: &TextUnlearnJob) -> Result<TextReport> {
    let mut m = TextModelDir::open(&job.model)?;
    let eval_text = job.eval_text.as_deref().map(read_eval_text).transpose()?;
    let format = m.prompt_format(job.prompt_format);
    let sets = TextSets::read(&m, &job.forget_set, &job.retain_set, format)?;
    let TextSets {
        forget_ex,
        forget_enc,
        retain_ex,
        retain_enc,
    } = &sets;
    let refusals = forget_ex
        .iter()
        .map(|ex| {
            let e = encode_with_answer(&m.tokenizer, ex, &job.refusal, format)?;
            m.check_length(&e)?;
            Ok(e)
        })
        .collect::<Result<Vec<_>>>()?;
    let library = if job.verify {
        Some(require_runtime(job.onnxruntime.as_deref())?)
    } else {
        None
    };
    let output = match &job.out {
        Some(out) => Some(OutputDir::create(out, &[&m.checkpoint.dir], job.overwrite)?),
        None => None,
    };
    let settings = MeasureSettings {
        max_new_tokens: job.max_new_tokens,
        perplexity_tokens: job.perplexity_tokens,
        progress: job.progress,
    };
    let (before, forget_before, retain_before) = measure(
        &m,
        &m.params,
        &sets,
        eval_text.as_deref(),
        &settings,
        format,
        "before",
    )?;
    let reference_log_probs: Vec<f32> =
        answer_log_probs(&m.model, &m.params, forget_enc, m.tokenizer.pad_id, 1.0, 8)?
            .into_iter()
            .map(|(lp, _)| lp)
            .collect();

    let sel = select_trainable(&mut m, &job.trainable, job.config.seed)?;
    let lora_scale = sel.lora.as_ref().map_or(1.0, LoraConfig::scale);
    let mut config = job.config.clone();
    if !matches!(
        config.objective,
        ForgetObjective::Npo | ForgetObjective::Refusal
    ) {
        return Err(Error::Usage(
            "text models take the npo or refusal objective".into(),
        ));
    }
    config.held_out_loss = 0.0;
    let task = TextTask {
        model: &m.model,
        forget: forget_enc.clone(),
        refusals,
        retain: retain_enc.clone(),
        reference_log_probs,
        objective: config.objective,
        npo_beta: job.npo_beta,
        lora_scale,
        pad_id: m.tokenizer.pad_id,
        device: Device::Cpu,
    };
    let forget_ids: Vec<usize> = (0..forget_enc.len()).collect();
    let retain_ids: Vec<usize> = (0..retain_enc.len()).collect();
    let bar = progress_bar(
        job.progress,
        "{spinner} unlearning [{bar:30}] {pos}/{len} steps  {msg}  ({elapsed}, eta {eta})",
    );
    let control = unlearn::resume::RunControl {
        state_dir: job.out.as_deref().map(state_dir),
        checkpoint_every: job.checkpoint_every,
        resume: job.resume,
        fingerprint: crate::digest::sha256_bytes(
            serde_json::json!({
                "lethe": env!("CARGO_PKG_VERSION"),
                "model": m.checkpoint.dir.display().to_string(),
                "forget": job.forget_set.display().to_string(),
                "retain": job.retain_set.display().to_string(),
                "trainable": format!("{:?}", job.trainable),
                "config": config,
                "npo_beta": job.npo_beta,
                "refusal": job.refusal,
            })
            .to_string()
            .as_bytes(),
        ),
    };
    let log = unlearn::run(
        &task,
        &m.params,
        &sel.set,
        Samples {
            forget: &forget_ids,
            retain: &retain_ids,
        },
        &config,
        &control,
        &bar,
    )?;
    drop(task);
    let (merged_params, changed) = merged(&m, &sel)?;
    let (after, forget_after, retain_after) = measure(
        &m,
        &merged_params,
        &sets,
        eval_text.as_deref(),
        &settings,
        format,
        "after",
    )?;
    let mut samples = Vec::new();
    for (set, b, a) in [
        ("forget", &forget_before, &forget_after),
        ("retain", &retain_before, &retain_after),
    ] {
        for (b, a) in b.iter().zip(a.iter()).take(job.samples) {
            samples.push(SideBySide {
                set: set.into(),
                question: b.question.clone(),
                reference: b.reference.clone(),
                before: b.answer.clone(),
                after: a.answer.clone(),
            });
        }
    }
    let mut verification = None;
    let mut outputs = None;
    if let Some(output) = &output {
        write_outputs(
            &m,
            &sel,
            &merged_params,
            &changed,
            output.path(),
            &job.model.display().to_string(),
        )?;
        if let Some(library) = &library {
            verification = Some(text_parity(
                &output.path().join(export::ONNX_FILE),
                library,
                &m.model,
                &merged_params,
                retain_enc,
                m.tokenizer.pad_id,
            )?);
        }
        outputs = Some(output.target().display().to_string());
    }
    let mut gates = job.gates.evaluate(&before, &after);
    if let Some(v) = &verification {
        gates.push(TextGate {
            name: "onnx_parity".into(),
            limit: v.tolerance as f64,
            value: v.max_abs_diff as f64,
            passed: v.passed,
        });
    }
    let passed = gates.iter().all(|g| g.passed);
    let report = TextReport {
        schema: TEXT_SCHEMA,
        lethe_version: env!("CARGO_PKG_VERSION"),
        model: job.model.display().to_string(),
        model_type: m.model.model_type.clone(),
        parameters: m.num_parameters(),
        trainable_parameters: sel.set.num_elements(),
        lora: sel.lora.clone(),
        prompt_format: format,
        forget_examples: forget_ex.len(),
        retain_examples: retain_ex.len(),
        config,
        npo_beta: job.npo_beta,
        before,
        after,
        samples,
        run: RunSummary::from_log(&log),
        verification,
        outputs,
        gates,
        passed,
    };
    if let Some(output) = output {
        crate::pipeline::finish_run(output, &report, &job.attachments, &control)?;
    }
    Ok(report)
}

pub struct TextTrainJob {
    pub model: PathBuf,
    pub data: PathBuf,
    pub trainable: TextTrainable,
    pub config: UnlearnConfig,
    pub prompt_format: Option<PromptFormat>,
    pub out: PathBuf,
    pub overwrite: bool,
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

/// Fine-tunes a text model on JSONL examples (loss on answers), e.g. to teach it facts; writes
/// the merged checkpoint (and the PEFT adapter with LoRA).
pub fn train_text(job: &TextTrainJob) -> Result<TextTrainReport> {
    let mut m = TextModelDir::open(&job.model)?;
    let examples = data::read_jsonl(&job.data)?;
    let format = m.prompt_format(job.prompt_format);
    let encoded = m.encode_all(&examples, format)?;
    let output = OutputDir::create(&job.out, &[&m.checkpoint.dir], job.overwrite)?;
    let pad = m.tokenizer.pad_id;
    let before = metrics::answer_stats(&m.model, &m.params, &encoded, pad, 1.0)?;
    let sel = select_trainable(&mut m, &job.trainable, job.config.seed)?;
    let lora_scale = sel.lora.as_ref().map_or(1.0, LoraConfig::scale);
    let mut config = job.config.clone();
    // Fine-tuning is the retain term alone over the training examples.
    config.method = unlearn::MethodKind::Ft;
    let task = TextTask {
        model: &m.model,
        forget: encoded.clone(),
        refusals: Vec::new(),
        retain: encoded.clone(),
        reference_log_probs: Vec::new(),
        objective: ForgetObjective::Npo,
        npo_beta: 0.1,
        lora_scale,
        pad_id: pad,
        device: Device::Cpu,
    };
    let ids: Vec<usize> = (0..encoded.len()).collect();
    let bar = progress_bar(
        job.progress,
        "{spinner} training [{bar:30}] {pos}/{len} steps  {msg}  ({elapsed}, eta {eta})",
    );
    let log = unlearn::run(
        &task,
        &m.params,
        &sel.set,
        Samples {
            forget: &ids,
            retain: &ids,
        },
        &config,
        &unlearn::resume::RunControl::default(),
        &bar,
    )?;
    drop(task);
    let (merged_params, changed) = merged(&m, &sel)?;
    let after = metrics::answer_stats(&m.model, &merged_params, &encoded, pad, 1.0)?;
    write_outputs(
        &m,
        &sel,
        &merged_params,
        &changed,
        output.path(),
        &job.model.display().to_string(),
    )?;
    let report = TextTrainReport {
        schema: "lethe.text-train-report.v1",
        model: job.model.display().to_string(),
        data: job.data.display().to_string(),
        examples: examples.len(),
        trainable_parameters: sel.set.num_elements(),
        lora: sel.lora.clone(),
        answer_nll_before: before.nll,
        answer_nll_after: after.nll,
        run: RunSummary::from_log(&log),
        out: output.target().display().to_string(),
    };
    output.write_file(
        REPORT_FILE,
        &serde_json::to_vec_pretty(&report).expect("report serialises"),
    )?;
    output.commit()?;
    Ok(report)
}

/// `lethe eval-text`: the text metrics of a model on forget and retain sets (and perplexity).
pub fn eval_text(
    model: &Path,
    forget_set: &Path,
    retain_set: &Path,
    eval_text: Option<&Path>,
    prompt_format: Option<PromptFormat>,
    settings: &MeasureSettings,
) -> Result<TextMetrics> {
    let m = TextModelDir::open(model)?;
    let text = eval_text.map(read_eval_text).transpose()?;
    let format = m.prompt_format(prompt_format);
    let sets = TextSets::read(&m, forget_set, retain_set, format)?;
    Ok(measure(
        &m,
        &m.params,
        &sets,
        text.as_deref(),
        settings,
        format,
        "measuring",
    )?
    .0)
}
