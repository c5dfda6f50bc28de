//! Measuring a language model on its question/answer sets: answer probability and NLL, greedy
//! ROUGE-L, perplexity, and the field's measures of forgetting where the data allow them — truth
//! ratios and model utility, fact recall, membership-inference AUCs against a held-out set, and,
//! against a reference model, forget quality and PrivLeak (docs/method.md). `lethe eval-text` is
//! this module alone; unlearning runs measure before and after with it.

use crate::error::{Error, Result};
use crate::model::LanguageModel;
use crate::nn::Params;
use crate::precision::Precision;
use crate::text::data::{self, Encoded, PromptFormat, TextExample};
use crate::text::forgetting::{self, AttackAucs, Attacks};
use crate::text::metrics::{self, Answered, Evaluation, SetMetrics, TextMetrics};
use candle_core::Device;
use std::path::{Path, PathBuf};

/// How a language model's sets are measured.
#[derive(Clone, Debug)]
pub struct MeasureSettings {
    /// Longest greedy answer generated for ROUGE-L.
    pub max_new_tokens: usize,
    /// Tokens of the held-out text used for perplexity.
    pub perplexity_tokens: usize,
    /// Measure the retain set on this many of its questions, spread evenly over it (None: all).
    pub retain_questions: Option<usize>,
    /// What the models' frozen weights are held in.
    pub precision: Precision,
    pub progress: bool,
    /// Keyword arguments for the chat template of every model measured.
    pub chat_template_kwargs: serde_json::Map<String, serde_json::Value>,
}

/// A question/answer set read from its JSONL file, and its encodings.
pub struct QaSet {
    pub file: PathBuf,
    pub examples: Vec<TextExample>,
    pub encoded: Vec<Encoded>,
}

impl QaSet {
    pub fn read(m: &LanguageModel, file: &Path, format: PromptFormat) -> Result<QaSet> {
        let examples = data::read_jsonl(file)?;
        Ok(QaSet {
            encoded: m.encode_all(file, &examples, format)?,
            file: file.to_path_buf(),
            examples,
        })
    }

    /// `n` of the set's questions spread evenly over it, in order (all of them when `n` is
    /// None or not smaller than the set).
    pub fn evenly(&self, n: Option<usize>) -> QaSet {
        let len = self.examples.len();
        let picks: Vec<usize> = match n {
            Some(n) if n < len => (0..n).map(|i| i * len / n).collect(),
            _ => (0..len).collect(),
        };
        QaSet {
            file: self.file.clone(),
            examples: picks.iter().map(|&i| self.examples[i].clone()).collect(),
            encoded: picks.iter().map(|&i| self.encoded[i].clone()).collect(),
        }
    }
}

/// The sets a language model is measured on.
pub struct TextSets {
    pub forget: QaSet,
    pub retain: QaSet,
    /// Examples of the forget set's kind that no model was trained on: the non-members of the
    /// membership-inference attacks.
    pub holdout: Option<QaSet>,
    /// Further sets whose knowledge must be kept; they count in model utility.
    pub utility: Vec<QaSet>,
    /// Held-out text for perplexity.
    pub eval_text: Option<String>,
}

/// Where a language model's sets are.
#[derive(Clone, Debug, Default)]
pub struct SetFiles {
    pub forget: PathBuf,
    pub retain: PathBuf,
    pub holdout: Option<PathBuf>,
    pub utility: Vec<PathBuf>,
    pub eval_text: Option<PathBuf>,
}

impl TextSets {
    pub fn read(m: &LanguageModel, files: &SetFiles, format: PromptFormat) -> Result<Self> {
        Ok(TextSets {
            forget: QaSet::read(m, &files.forget, format)?,
            retain: QaSet::read(m, &files.retain, format)?,
            holdout: files
                .holdout
                .as_deref()
                .map(|f| QaSet::read(m, f, format))
                .transpose()?,
            utility: files
                .utility
                .iter()
                .map(|f| QaSet::read(m, f, format))
                .collect::<Result<_>>()?,
            eval_text: files.eval_text.as_deref().map(read_eval_text).transpose()?,
        })
    }
}

/// A model's greedy answers to the forget and retain sets.
pub struct Answers {
    pub forget: Vec<Answered>,
    pub retain: Vec<Answered>,
}

/// What the measures relative to a reference need of a model: its truth ratios on the forget
/// set and its membership scores.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub forget_truth_ratios: Vec<f64>,
    pub forget_attacks: Vec<Attacks>,
    pub holdout_attacks: Vec<Attacks>,
}

/// Everything measured of one model.
pub struct Measured {
    pub metrics: TextMetrics,
    pub answers: Answers,
    pub evidence: Evidence,
}

/// Measures `params` on `sets`; `reference` is the evidence of a model never trained on the
/// forget set, for forget quality and PrivLeak.
pub fn measure(
    lm: &LanguageModel,
    params: &Params,
    sets: &TextSets,
    reference: Option<&Evidence>,
    settings: &MeasureSettings,
    format: PromptFormat,
    label: &str,
) -> Result<Measured> {
    let (model, tok) = (lm.model(), &lm.tokenizer);
    // TOFU measures utility on a fixed part of the retain set too: greedy answers are the
    // costly part of measuring, and a few hundred questions already pin the figures down.
    let kept = sets.retain.evenly(settings.retain_questions);
    let utility_questions: usize = sets.utility.iter().map(|s| s.examples.len()).sum();
    let questions = sets.forget.examples.len() + kept.examples.len() + utility_questions;
    let bar = super::progress_bar(
        settings.progress,
        &format!("{{spinner}} {label} [{{bar:30}}] {{pos}}/{{len}} answers  ({{elapsed}})"),
    );
    bar.set_length(questions as u64);
    let tick = || bar.inc(1);
    let answer = |set: &QaSet| {
        metrics::answer_questions(
            model,
            params,
            tok,
            &set.examples,
            format,
            settings.max_new_tokens,
            &tick,
        )
    };
    let forget_answers = answer(&sets.forget)?;
    let retain_answers = answer(&kept)?;
    let utility_answers = sets
        .utility
        .iter()
        .map(answer)
        .collect::<Result<Vec<_>>>()?;
    bar.finish_and_clear();

    let truth_ratios = |set: &QaSet| -> Result<Vec<f64>> {
        let ratios = forgetting::truth_ratios(model, params, tok, &set.examples, format)?;
        Ok(ratios.into_iter().flatten().collect())
    };
    let set_metrics = |set: &QaSet, answers: &[Answered]| -> Result<(SetMetrics, Vec<f64>)> {
        let stats = metrics::answer_stats(model, params, &set.encoded, tok.pad_id, 1.0)?;
        let ratios = truth_ratios(set)?;
        let texts: Vec<String> = answers.iter().map(|a| a.answer.clone()).collect();
        let m = SetMetrics {
            questions: set.examples.len(),
            probability: stats.probability,
            nll: stats.nll,
            fact_nll: stats.fact_nll,
            wording_nll: stats.wording_nll,
            rouge_l: metrics::mean_rouge(answers),
            truth_ratio: forgetting::truth_score(&ratios),
            fact_recall: forgetting::fact_recall(&set.examples, &texts),
        };
        Ok((m, ratios))
    };
    let (forget, forget_truth_ratios) = set_metrics(&sets.forget, &forget_answers)?;
    let (retain, _) = set_metrics(&kept, &retain_answers)?;
    let utility_sets = sets
        .utility
        .iter()
        .zip(&utility_answers)
        .map(|(set, answers)| Ok((set.file.display().to_string(), set_metrics(set, answers)?.0)))
        .collect::<Result<Vec<_>>>()?;
    let perplexity = match &sets.eval_text {
        Some(text) => Some(metrics::perplexity(
            model,
            params,
            tok,
            text,
            256,
            settings.perplexity_tokens,
        )?),
        None => None,
    };

    // Membership: the attacks' scores of the forget answers against held-out ones.
    let attacks = |set: &QaSet| -> Result<Vec<Attacks>> {
        let scores = forgetting::token_scores(model, params, &set.encoded, tok.pad_id)?;
        Ok(set
            .examples
            .iter()
            .zip(&scores)
            .map(|(ex, s)| forgetting::attack_scores(&ex.answer, s))
            .collect())
    };
    let (forget_attacks, holdout_attacks) = match &sets.holdout {
        Some(holdout) => (attacks(&sets.forget)?, attacks(holdout)?),
        None => (Vec::new(), Vec::new()),
    };
    let membership_auc = AttackAucs::of(&forget_attacks, &holdout_attacks);

    let mut utility_figures = figures(&retain);
    for (_, m) in &utility_sets {
        utility_figures.extend(figures(m));
    }
    let metrics = TextMetrics {
        model_utility: forgetting::model_utility(&utility_figures),
        forget_quality: reference
            .and_then(|r| forgetting::forget_quality(&forget_truth_ratios, &r.forget_truth_ratios)),
        privleak: reference.and_then(|r| {
            let own = membership_auc?;
            Some(own.privleak(&AttackAucs::of(&r.forget_attacks, &r.holdout_attacks)?))
        }),
        membership_auc,
        forget,
        retain,
        perplexity,
        utility_sets,
    };
    Ok(Measured {
        metrics,
        answers: Answers {
            forget: forget_answers,
            retain: retain_answers,
        },
        evidence: Evidence {
            forget_truth_ratios,
            forget_attacks,
            holdout_attacks,
        },
    })
}

/// A kept set's figures that count in model utility.
fn figures(m: &SetMetrics) -> Vec<f64> {
    let mut f = vec![m.probability, m.rouge_l];
    f.extend(m.truth_ratio);
    f
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

/// A model never trained on the forget set, measured on the same sets: its metrics, and the
/// evidence the measures relative to it need.
pub fn measure_reference(
    source: &Path,
    sets: &TextSets,
    format: PromptFormat,
    settings: &MeasureSettings,
    device: &Device,
) -> Result<(TextMetrics, Evidence)> {
    let mut reference = LanguageModel::open(source, device, settings.precision, settings.progress)?;
    reference
        .tokenizer
        .set_chat_template_vars(settings.chat_template_kwargs.clone());
    let m = measure(
        &reference,
        reference.params(),
        sets,
        None,
        settings,
        format,
        "reference",
    )?;
    Ok((m.metrics, m.evidence))
}

/// `lethe eval-text`: the metrics of a model on its sets; with a reference model, forget quality
/// and PrivLeak against it.
pub fn eval_text(
    model: &Path,
    files: &SetFiles,
    reference: Option<&Path>,
    prompt_format: Option<PromptFormat>,
    settings: &MeasureSettings,
    device: &Device,
) -> Result<Evaluation> {
    let mut lm = LanguageModel::open(model, device, settings.precision, settings.progress)?;
    lm.tokenizer
        .set_chat_template_vars(settings.chat_template_kwargs.clone());
    let format = lm.prompt_format(prompt_format);
    let sets = TextSets::read(&lm, files, format)?;
    let reference = reference
        .map(|r| measure_reference(r, &sets, format, settings, device))
        .transpose()?;
    let measured = measure(
        &lm,
        lm.params(),
        &sets,
        reference.as_ref().map(|(_, e)| e),
        settings,
        format,
        "measuring",
    )?;
    Ok(Evaluation {
        metrics: measured.metrics,
        reference: reference.map(|(m, _)| m),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> QaSet {
        QaSet {
            file: PathBuf::from("retain.jsonl"),
            examples: (0..n)
                .map(|i| TextExample {
                    question: Some(format!("q{i}")),
                    ..Default::default()
                })
                .collect(),
            encoded: (0..n)
                .map(|i| Encoded {
                    ids: vec![i as u32],
                    target_start: 0,
                    fact: None,
                })
                .collect(),
        }
    }

    #[test]
    fn evenly_spreads_its_picks_over_the_whole_set_and_keeps_pairs_together() {
        let part = set(10).evenly(Some(4));
        let questions: Vec<&str> = part
            .examples
            .iter()
            .map(|e| e.question.as_deref().unwrap())
            .collect();
        assert_eq!(questions, ["q0", "q2", "q5", "q7"]);
        let ids: Vec<u32> = part.encoded.iter().map(|e| e.ids[0]).collect();
        assert_eq!(ids, [0, 2, 5, 7]);
        assert_eq!(set(3).evenly(Some(5)).examples.len(), 3);
        assert_eq!(set(3).evenly(None).examples.len(), 3);
    }
}
