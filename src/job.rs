//! Job files: one TOML file describes a whole unlearning run (source, data, forget set, trainable
//! set, method, optimizer, schedule, outputs, gates). Unknown keys are errors. The resolved job —
//! every default filled in, plus the lethe version and the SHA-256 of every input file — is
//! written next to the outputs, and running it again repeats the run exactly (docs/job.md).

use crate::data::{DataSpec, ForgetSpec};
use crate::defaults;
use crate::error::{Error, Result};
use crate::pipeline::{ClassifierJob, ClassifierSpec, OutputSettings, TextJob, TextSpec};
use crate::precision::Precision;
use crate::report::GateSpec;
use crate::unlearn::{
    DualUpdate, ForgetObjective, LossForm, LrSchedule, MethodKind, OptimizerName, UnlearnConfig,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::pipeline::RESOLVED_FILE;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub model: ModelSection,
    pub data: DataSection,
    /// Classifiers: which samples to forget (text jobs name a forget set under [data]).
    #[serde(default, skip_serializing_if = "ForgetSection::is_empty")]
    pub forget: ForgetSection,
    #[serde(default)]
    pub trainable: TrainableSection,
    #[serde(default)]
    pub method: MethodSection,
    #[serde(default)]
    pub optimizer: OptimizerSection,
    #[serde(default)]
    pub schedule: ScheduleSection,
    pub output: OutputSection,
    #[serde(default)]
    pub gates: GatesSection,
    /// Written into resolved jobs; checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A checkpoint directory or hub id.
    pub source: PathBuf,
    /// The device to compute on (`cpu`, `cuda`, `cuda:N`).
    pub device: Option<String>,
    /// What a language model's frozen weights are held in (`f32`, `bf16`; crate::precision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Classifiers: the training data (and optionally the test data).
    pub train: Option<PathBuf>,
    pub test: Option<PathBuf>,
    pub holdout: Option<f64>,
    pub holdout_seed: Option<u64>,
    /// Language models: JSONL question/answer sets, and held-out text for perplexity.
    pub forget_set: Option<PathBuf>,
    pub retain_set: Option<PathBuf>,
    pub eval_text: Option<PathBuf>,
    /// Examples of the forget set's kind no model was trained on (membership attacks).
    pub holdout_set: Option<PathBuf>,
    /// Further sets whose knowledge must be kept (model utility).
    pub utility_sets: Option<Vec<PathBuf>>,
    /// Retain questions measured, spread evenly over the set (none: all).
    pub retain_questions: Option<usize>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ForgetSection {
    pub class: Option<String>,
    pub indices: Option<PathBuf>,
    pub fraction: Option<f64>,
    pub seed: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainableSection {
    pub train: Option<Vec<String>>,
    pub freeze: Option<Vec<String>>,
    /// Language models: LoRA adapters (rank 0: train the weights chosen by `train`).
    pub lora_rank: Option<usize>,
    pub lora_alpha: Option<f64>,
    pub lora_targets: Option<Vec<String>>,
    /// Inclusive layer range [first, last].
    pub lora_layers: Option<[usize; 2]>,
    /// Start from this PEFT adapter directory.
    pub adapter: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MethodSection {
    pub name: Option<MethodKind>,
    pub objective: Option<ForgetObjective>,
    pub loss_form: Option<LossForm>,
    pub dual_update: Option<DualUpdate>,
    pub fast: Option<bool>,
    pub epsilon: Option<f64>,
    pub beta: Option<f64>,
    pub lambda0: Option<f64>,
    /// Language models: NPO's β, the refusal answer, the prompt layout.
    pub npo_beta: Option<f64>,
    pub simnpo_beta: Option<f64>,
    pub simnpo_gamma: Option<f64>,
    /// RMU's layer (none: a quarter of the depth), steering coefficient and retain weight.
    pub rmu_layer: Option<usize>,
    pub rmu_coefficient: Option<f64>,
    pub rmu_alpha: Option<f64>,
    pub refusal: Option<String>,
    pub prompt_format: Option<crate::text::PromptFormat>,
    /// Keyword arguments for the chat template (`{ enable_thinking = false }`).
    pub chat_template_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSection {
    pub kind: Option<OptimizerName>,
    pub lr: Option<f64>,
    pub lr_schedule: Option<LrSchedule>,
    pub momentum: Option<f64>,
    pub weight_decay: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    pub epochs: Option<usize>,
    pub steps: Option<usize>,
    pub batch_size: Option<usize>,
    pub forget_batch_size: Option<usize>,
    pub seed: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    pub dir: PathBuf,
    pub overwrite: Option<bool>,
    pub verify: Option<bool>,
    pub onnxruntime: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatesSection {
    pub max_test_drop: Option<f64>,
    pub min_ua: Option<f64>,
    pub min_mia: Option<f64>,
    pub max_gap: Option<f64>,
    pub reference: Option<PathBuf>,
    /// Language models (docs/text.md).
    pub max_forget_rouge: Option<f64>,
    pub max_retain_rouge_drop: Option<f64>,
    pub max_perplexity_rise: Option<f64>,
    pub min_forget_quality: Option<f64>,
    pub min_utility_ratio: Option<f64>,
}

/// What a resolved job was made from.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    pub lethe_version: String,
    /// Input file → "sha256:<hex>".
    pub inputs: BTreeMap<String, String>,
}

impl ForgetSection {
    fn is_empty(&self) -> bool {
        *self == ForgetSection::default()
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Usage(format!("{}: {}", path.display(), reason.into()))
}

impl JobFile {
    pub fn read(path: &Path) -> Result<JobFile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut job: JobFile = toml::from_str(&text).map_err(|e| bad(path, e.to_string()))?;
        // Relative paths are relative to the job file, so a job runs the same from anywhere.
        let base = path.parent().unwrap_or(Path::new("."));
        job.rebase(base);
        Ok(job)
    }

    fn rebase(&mut self, base: &Path) {
        // Absolute, so that the resolved job written elsewhere still names the same files.
        let fix = |p: &mut PathBuf| {
            let joined = if p.is_relative() {
                base.join(&*p)
            } else {
                p.clone()
            };
            *p = lexically_normal(&std::path::absolute(&joined).unwrap_or(joined));
        };
        // A hub id (org/name[@revision]) stays as it is unless such a directory exists here.
        let is_hub_id = self.model.source.is_relative()
            && !base.join(&self.model.source).exists()
            && self
                .model
                .source
                .to_str()
                .and_then(crate::hub::HubId::parse)
                .is_some();
        if !is_hub_id {
            fix(&mut self.model.source);
        }
        self.data.train.iter_mut().for_each(fix);
        self.data.test.iter_mut().for_each(fix);
        self.data.forget_set.iter_mut().for_each(fix);
        self.data.retain_set.iter_mut().for_each(fix);
        self.data.eval_text.iter_mut().for_each(fix);
        self.data.holdout_set.iter_mut().for_each(fix);
        self.data.utility_sets.iter_mut().flatten().for_each(fix);
        self.trainable.adapter.iter_mut().for_each(fix);
        self.forget.indices.iter_mut().for_each(fix);
        fix(&mut self.output.dir);
        self.output.onnxruntime.iter_mut().for_each(fix);
        self.gates.reference.iter_mut().for_each(fix);
    }

    fn forget_spec(&self, path: &Path) -> Result<ForgetSpec> {
        let f = &self.forget;
        match (&f.class, &f.indices, f.fraction) {
            (Some(c), None, None) => Ok(ForgetSpec::Class(c.clone())),
            (None, Some(p), None) => Ok(ForgetSpec::Indices(p.clone())),
            (None, None, Some(fraction)) => Ok(ForgetSpec::Fraction {
                fraction,
                seed: f.seed.unwrap_or(0),
            }),
            _ => Err(bad(
                path,
                "[forget] needs exactly one of class, indices or fraction",
            )),
        }
    }

    /// A language-model job: it names forget and retain sets under [data].
    pub fn is_text(&self) -> bool {
        self.data.forget_set.is_some() || self.data.retain_set.is_some()
    }

    /// The same job with every default written out.
    pub fn resolved(&self, path: &Path) -> Result<JobFile> {
        if self.is_text() {
            return self.resolved_text(path);
        }
        if self.data.train.is_none() {
            return Err(bad(
                path,
                "[data] needs train (a classifier's data) or forget_set and retain_set (a language model's)",
            ));
        }
        let forget = self.forget_spec(path)?;
        let mut r = self.clone();
        r.resolve_common();
        r.data.holdout.get_or_insert(defaults::HOLDOUT);
        r.data.holdout_seed.get_or_insert(defaults::HOLDOUT_SEED);
        if matches!(forget, ForgetSpec::Fraction { .. }) {
            r.forget.seed.get_or_insert(defaults::FORGET_SEED);
        }
        r.trainable.train.get_or_insert_with(|| vec!["*".into()]);
        r.trainable.freeze.get_or_insert_with(Vec::new);
        use defaults::classifier as d;
        let schedule = d::schedule_for(&forget);
        let m = &mut r.method;
        let objective = *m
            .objective
            .get_or_insert(ForgetObjective::default_for(&forget));
        m.loss_form.get_or_insert(LossForm::default_for(objective));
        m.epsilon.get_or_insert(schedule.epsilon);
        m.beta.get_or_insert(d::BETA);
        m.lambda0.get_or_insert(d::LAMBDA0);
        let o = &mut r.optimizer;
        let kind = *o.kind.get_or_insert(schedule.optimizer);
        o.lr.get_or_insert(schedule.lr);
        o.lr_schedule.get_or_insert(schedule.lr_schedule);
        if kind == OptimizerName::Sgd {
            o.momentum.get_or_insert(d::MOMENTUM);
        }
        o.weight_decay.get_or_insert(d::WEIGHT_DECAY);
        let s = &mut r.schedule;
        if s.steps.is_none() {
            s.epochs.get_or_insert(schedule.epochs);
        }
        s.batch_size.get_or_insert(d::BATCH_SIZE);
        Ok(r)
    }

    /// The defaults every kind of job shares.
    fn resolve_common(&mut self) {
        let device = self
            .model
            .device
            .get_or_insert_with(|| defaults::DEVICE.to_string());
        let gpu = device.starts_with("cuda");
        let text = self.is_text();
        self.model
            .dtype
            .get_or_insert_with(|| Precision::default_for(gpu, text).name().to_string());
        let m = &mut self.method;
        m.name.get_or_insert(defaults::METHOD);
        m.dual_update.get_or_insert(defaults::DUAL_UPDATE);
        m.fast.get_or_insert(false);
        self.schedule.seed.get_or_insert(defaults::SEED);
        self.output.overwrite.get_or_insert(false);
        self.output.verify.get_or_insert(true);
    }

    fn resolved_text(&self, path: &Path) -> Result<JobFile> {
        if self.data.forget_set.is_none() || self.data.retain_set.is_none() {
            return Err(bad(path, "[data] needs both forget_set and retain_set"));
        }
        if self.data.train.is_some() || self.forget != ForgetSection::default() {
            return Err(bad(
                path,
                "a language-model job names its data as forget_set and retain_set, not train or [forget]",
            ));
        }
        if self.data.retain_questions == Some(0) {
            return Err(bad(path, "[data] retain_questions must be at least 1"));
        }
        let mut r = self.clone();
        r.resolve_common();
        use defaults::text as d;
        let t = &mut r.trainable;
        if t.adapter.is_none() {
            let rank = *t.lora_rank.get_or_insert(d::LORA_RANK);
            if rank > 0 {
                t.lora_alpha
                    .get_or_insert(d::LORA_ALPHA_PER_RANK * rank as f64);
                t.lora_targets
                    .get_or_insert_with(|| d::LORA_TARGETS.iter().map(|s| s.to_string()).collect());
            } else if t.train.is_none() {
                return Err(bad(path, "lora_rank = 0 needs [trainable] train"));
            }
        }
        let m = &mut r.method;
        m.objective
            .get_or_insert(d::objective(r.data.holdout_set.is_some()));
        m.loss_form.get_or_insert(d::LOSS_FORM);
        m.epsilon.get_or_insert(d::EPSILON);
        m.beta.get_or_insert(d::BETA);
        m.lambda0.get_or_insert(d::LAMBDA0);
        m.npo_beta.get_or_insert(d::NPO_BETA);
        m.simnpo_beta.get_or_insert(d::SIMNPO_BETA);
        m.simnpo_gamma.get_or_insert(d::SIMNPO_GAMMA);
        m.rmu_coefficient.get_or_insert(d::RMU_COEFFICIENT);
        m.rmu_alpha.get_or_insert(d::RMU_ALPHA);
        m.refusal.get_or_insert_with(|| d::REFUSAL.into());
        let o = &mut r.optimizer;
        let kind = *o.kind.get_or_insert(d::OPTIMIZER);
        o.lr.get_or_insert(d::LR);
        o.lr_schedule.get_or_insert(d::LR_SCHEDULE);
        if kind == OptimizerName::Sgd {
            o.momentum.get_or_insert(d::MOMENTUM);
        }
        o.weight_decay.get_or_insert(d::WEIGHT_DECAY);
        let s = &mut r.schedule;
        if s.steps.is_none() {
            s.epochs.get_or_insert(d::EPOCHS);
        }
        s.batch_size.get_or_insert(d::BATCH_SIZE);
        Ok(r)
    }

    fn unlearn_config(&self) -> UnlearnConfig {
        let (m, o, s) = (&self.method, &self.optimizer, &self.schedule);
        UnlearnConfig {
            method: m.name.expect("resolved"),
            objective: m.objective.expect("resolved"),
            held_out_loss: f32::NAN,
            loss_form: m.loss_form.expect("resolved"),
            dual_update: m.dual_update.expect("resolved"),
            fast: m.fast.expect("resolved"),
            epsilon: m.epsilon.expect("resolved"),
            beta: m.beta.expect("resolved"),
            lambda0: m.lambda0.expect("resolved"),
            // Resolved for SGD; AdamW has no momentum.
            optimizer: o
                .kind
                .expect("resolved")
                .kind(o.momentum.unwrap_or(0.0), o.weight_decay.expect("resolved")),
            lr: o.lr.expect("resolved"),
            lr_schedule: o.lr_schedule.expect("resolved"),
            epochs: s.epochs.unwrap_or(0),
            steps: s.steps,
            batch_size: s.batch_size.expect("resolved"),
            forget_batch_size: s.forget_batch_size,
            seed: s.seed.expect("resolved"),
        }
    }

    /// The device, the precision, the gates and the output settings of a resolved job.
    fn common(&self) -> Result<(candle_core::Device, Precision, GateSpec, OutputSettings)> {
        let device = crate::device::parse(self.model.device.as_deref().expect("resolved"))?;
        let precision = Precision::resolve(
            Some(self.model.dtype.as_deref().expect("resolved")),
            device.is_cuda(),
            self.is_text(),
        )?;
        let g = &self.gates;
        let gates = GateSpec {
            max_test_drop: g.max_test_drop,
            min_ua: g.min_ua,
            min_mia: g.min_mia,
            max_gap: g.max_gap,
            max_forget_rouge: g.max_forget_rouge,
            max_retain_rouge_drop: g.max_retain_rouge_drop,
            max_perplexity_rise: g.max_perplexity_rise,
            min_forget_quality: g.min_forget_quality,
            min_utility_ratio: g.min_utility_ratio,
        };
        let output = OutputSettings {
            dir: Some(self.output.dir.clone()),
            overwrite: self.output.overwrite.expect("resolved"),
            verify: self.output.verify.expect("resolved"),
            onnxruntime: self.output.onnxruntime.clone(),
            ..OutputSettings::default()
        };
        Ok((device, precision, gates, output))
    }

    /// The language-model job this file describes.
    pub fn to_text_job(&self, path: &Path, progress: bool) -> Result<TextJob> {
        use crate::pipeline::TextTrainable;
        let r = self.resolved(path)?;
        if !r.is_text() {
            return Err(bad(path, "not a language-model job"));
        }
        let t = &r.trainable;
        let trainable = match (&t.adapter, t.lora_rank) {
            (Some(dir), _) => TextTrainable::Adapter(dir.clone()),
            (None, Some(0)) => TextTrainable::Weights {
                train: t.train.clone().unwrap_or_default(),
                freeze: t.freeze.clone().unwrap_or_default(),
            },
            (None, rank) => TextTrainable::Lora(crate::unlearn::lora::LoraConfig {
                rank: rank.expect("resolved"),
                alpha: t.lora_alpha.expect("resolved"),
                targets: t.lora_targets.clone().expect("resolved"),
                layers: t.lora_layers.map(|[a, b]| (a, b)),
                rank_pattern: Default::default(),
            }),
        };
        let (device, precision, gates, output) = r.common()?;
        let m = &r.method;
        Ok(TextJob {
            model: r.model.source.clone(),
            device,
            precision,
            config: r.unlearn_config(),
            gates,
            output,
            progress,
            spec: TextSpec {
                sets: crate::pipeline::measure_text::SetFiles {
                    forget: r.data.forget_set.clone().expect("resolved"),
                    retain: r.data.retain_set.clone().expect("resolved"),
                    holdout: r.data.holdout_set.clone(),
                    utility: r.data.utility_sets.clone().unwrap_or_default(),
                    eval_text: r.data.eval_text.clone(),
                },
                reference: r.gates.reference.clone(),
                trainable,
                npo_beta: m.npo_beta.expect("resolved"),
                simnpo: crate::unlearn::text_task::SimNpo {
                    beta: m.simnpo_beta.expect("resolved"),
                    gamma: m.simnpo_gamma.expect("resolved"),
                },
                rmu: crate::unlearn::text_task::Rmu {
                    layer: m.rmu_layer,
                    coefficient: m.rmu_coefficient.expect("resolved"),
                    alpha: m.rmu_alpha.expect("resolved"),
                },
                refusal: m.refusal.clone().expect("resolved"),
                prompt_format: m.prompt_format,
                chat_template_kwargs: m.chat_template_kwargs.clone().unwrap_or_default(),
                max_new_tokens: defaults::text::MAX_NEW_TOKENS,
                perplexity_tokens: defaults::text::PERPLEXITY_TOKENS,
                retain_questions: r.data.retain_questions,
                samples: defaults::text::SAMPLES,
            },
        })
    }

    /// The classifier job this file describes.
    pub fn to_classifier_job(&self, path: &Path, progress: bool) -> Result<ClassifierJob> {
        let r = self.resolved(path)?;
        if r.is_text() {
            return Err(bad(path, "a language-model job (see to_text_job)"));
        }
        let forget = r.forget_spec(path)?;
        if r.gates.max_gap.is_some() && r.gates.reference.is_none() {
            return Err(bad(path, "[gates] max_gap needs a reference model"));
        }
        let (device, precision, gates, output) = r.common()?;
        Ok(ClassifierJob {
            model: r.model.source.clone(),
            device,
            precision,
            config: r.unlearn_config(),
            gates,
            output,
            progress,
            spec: ClassifierSpec {
                data: DataSpec {
                    train: r.data.train.clone().expect("resolved"),
                    test: r.data.test.clone(),
                    holdout: r.data.holdout.expect("resolved"),
                    seed: r.data.holdout_seed.expect("resolved"),
                },
                forget,
                train_patterns: r.trainable.train.clone().expect("resolved"),
                freeze_patterns: r.trainable.freeze.clone().expect("resolved"),
                reference: r.gates.reference.clone(),
            },
        })
    }

    /// The input files of the job, for provenance: the checkpoint directory's files and the data.
    pub fn input_files(&self) -> Result<Vec<PathBuf>> {
        let model_dir = crate::hub::resolve_model(&self.model.source, false)?;
        let mut files = files_under(&model_dir)?;
        let mut data: Vec<PathBuf> = self.data.train.iter().cloned().collect();
        data.extend(self.data.test.clone());
        data.extend(self.data.forget_set.clone());
        data.extend(self.data.retain_set.clone());
        data.extend(self.data.eval_text.clone());
        data.extend(self.data.holdout_set.clone());
        data.extend(self.data.utility_sets.iter().flatten().cloned());
        data.extend(self.trainable.adapter.clone());
        data.extend(self.forget.indices.clone());
        data.extend(self.gates.reference.clone());
        for d in data {
            if d.is_dir() {
                files.extend(files_under(&d)?);
            } else {
                files.push(d);
            }
        }
        files.sort();
        files.dedup();
        Ok(files)
    }

    pub fn provenance(&self) -> Result<Provenance> {
        let mut inputs = BTreeMap::new();
        for f in self.input_files()? {
            inputs.insert(
                f.display().to_string(),
                format!("sha256:{}", crate::digest::sha256_file(&f)?),
            );
        }
        Ok(Provenance {
            lethe_version: env!("CARGO_PKG_VERSION").to_string(),
            inputs,
        })
    }

    /// Refuses to repeat a resolved job whose inputs have changed since it was written. Returns
    /// a note when another version of lethe resolved it.
    pub fn check_provenance(&self, path: &Path) -> Result<Option<String>> {
        let Some(recorded) = &self.provenance else {
            return Ok(None);
        };
        let now = self.provenance()?;
        for (file, hash) in &recorded.inputs {
            match now.inputs.get(file) {
                Some(h) if h == hash => {}
                Some(_) => {
                    return Err(Error::Data {
                        path: path.to_path_buf(),
                        reason: format!(
                            "input {file} changed since this job was resolved (hash differs)"
                        ),
                    })
                }
                None => {
                    return Err(Error::Data {
                        path: path.to_path_buf(),
                        reason: format!("input {file} is gone"),
                    })
                }
            }
        }
        Ok((recorded.lethe_version != now.lethe_version).then(|| {
            format!(
                "this job was resolved by lethe {}, this is {}",
                recorded.lethe_version, now.lethe_version
            )
        }))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a job serialises")
    }
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        if p.is_dir() {
            out.extend(files_under(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}
