//! Language-model metrics: answer probability and NLL, ROUGE-L recall of greedy answers,
//! perplexity on held-out text.

use super::data::{prompt_ids, Encoded, PromptFormat, TextExample};
use super::tokenizer::TextTokenizer;
use crate::arch::text::TextModel;
use crate::error::Result;
use crate::nn::Params;
use crate::text::data::{answer_log_probs, AnswerLogProb};

/// A question/answer set's figures: mean answer probability and NLL (per token), and the mean
/// ROUGE-L recall of greedy answers against the reference answers; where the data allow, the
/// truth-ratio score (records with paraphrased and perturbed answers) and the fact recall
/// (records with a value). docs/method.md defines each.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SetMetrics {
    /// Questions measured.
    #[serde(default)]
    pub questions: usize,
    pub probability: f64,
    pub nll: f64,
    /// Mean NLL per token of the answers' fact tokens (their `value`), where every answer
    /// states its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fact_nll: Option<f64>,
    /// Mean NLL per token of the rest of the answers (the wording around the fact), likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wording_nll: Option<f64>,
    pub rouge_l: f64,
    /// Mean of max(0, 1 − R) over the questions' truth ratios R.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth_ratio: Option<f64>,
    /// Share of questions whose greedy answer states their value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fact_recall: Option<f64>,
}

/// A language model's figures on its forget and retain sets, its perplexity on held-out text,
/// and the field's measures of forgetting where the data and a reference model allow them
/// (docs/method.md).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TextMetrics {
    pub forget: SetMetrics,
    pub retain: SetMetrics,
    pub perplexity: Option<f64>,
    /// Further sets whose knowledge must be kept (`--utility-set`), by file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub utility_sets: Vec<(String, SetMetrics)>,
    /// TOFU's model utility: the harmonic mean of the retain (and utility) sets' answer
    /// probability, ROUGE-L and truth-ratio score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_utility: Option<f64>,
    /// TOFU's forget quality: the KS test of the forget set's truth ratios against the
    /// reference model's (`p_value` is the forget quality).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget_quality: Option<crate::stats::KsTest>,
    /// Membership-inference AUCs of forget against held-out examples (`--holdout-set`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership_auc: Option<super::forgetting::AttackAucs>,
    /// MUSE's PrivLeak of each attack against the reference model, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privleak: Option<super::forgetting::AttackAucs>,
}

/// The result of `lethe eval-text`: a model's metrics, and the reference model's when one was
/// given.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    #[serde(flatten)]
    pub metrics: TextMetrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<TextMetrics>,
}

/// Mean over examples of the per-token answer probability exp(−NLL/|a|), and the mean
/// per-token NLL; where every answer marks its fact (its `value`), also the mean NLL per token of
/// the fact's tokens and of the rest (the wording), which tell forgetting a fact from garbling
/// how it is said.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AnswerStats {
    pub probability: f64,
    pub nll: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fact_nll: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wording_nll: Option<f64>,
}

pub fn answer_stats(
    model: &TextModel,
    params: &Params,
    rows: &[Encoded],
    pad_id: u32,
    lora_scale: f64,
) -> Result<AnswerStats> {
    let parts = answer_log_probs(model, params, rows, pad_id, lora_scale, 8)?;
    let n = parts.len().max(1) as f64;
    let per_token: Vec<f64> = parts.iter().map(AnswerLogProb::nll).collect();
    // The mean of a per-answer figure, where every answer has it.
    let mean = |f: fn(&AnswerLogProb) -> Option<f64>| -> Option<f64> {
        let v: Option<Vec<f64>> = parts.iter().map(f).collect();
        v.filter(|v| !v.is_empty())
            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
    };
    Ok(AnswerStats {
        probability: per_token.iter().map(|nll| (-nll).exp()).sum::<f64>() / n,
        nll: per_token.iter().sum::<f64>() / n,
        fact_nll: mean(AnswerLogProb::fact_nll),
        wording_nll: mean(AnswerLogProb::wording_nll),
    })
}

/// Lower-cased alphanumeric words.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// ROUGE-L recall: the longest common subsequence of words over the reference's length.
pub fn rouge_l_recall(candidate: &str, reference: &str) -> f64 {
    let (c, r) = (words(candidate), words(reference));
    if r.is_empty() {
        return 0.0;
    }
    let mut prev = vec![0usize; c.len() + 1];
    for rw in &r {
        let mut cur = vec![0usize; c.len() + 1];
        for (j, cw) in c.iter().enumerate() {
            cur[j + 1] = if rw == cw {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        prev = cur;
    }
    prev[c.len()] as f64 / r.len() as f64
}

/// A question with the reference answer and the model's greedy answer.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Answered {
    pub question: String,
    pub reference: String,
    pub answer: String,
    pub rouge_l: f64,
}

/// Greedy answers to the questions of `examples` (documents are skipped).
#[allow(clippy::too_many_arguments)]
pub fn answer_questions(
    model: &TextModel,
    params: &Params,
    tok: &TextTokenizer,
    examples: &[TextExample],
    format: PromptFormat,
    max_new_tokens: usize,
    on_each: &dyn Fn(),
) -> Result<Vec<Answered>> {
    let mut out = Vec::new();
    for ex in examples {
        crate::interrupt::check()?;
        let Some(q) = &ex.question else { continue };
        let prompt = prompt_ids(tok, q, format)?;
        let ids = model.generate_greedy(params, &prompt, max_new_tokens, tok.eos_id)?;
        let answer = tok.decode(&ids)?.trim().to_string();
        out.push(Answered {
            question: q.clone(),
            reference: ex.answer.clone(),
            rouge_l: rouge_l_recall(&answer, &ex.answer),
            answer,
        });
        on_each();
    }
    Ok(out)
}

pub fn mean_rouge(answered: &[Answered]) -> f64 {
    if answered.is_empty() {
        return 0.0;
    }
    answered.iter().map(|a| a.rouge_l).sum::<f64>() / answered.len() as f64
}

/// Perplexity exp(mean NLL per token) of `text`, in windows of `window` tokens, over at most
/// `max_tokens` tokens.
pub fn perplexity(
    model: &TextModel,
    params: &Params,
    tok: &TextTokenizer,
    text: &str,
    window: usize,
    max_tokens: usize,
) -> Result<f64> {
    let mut ids = tok.encode(text)?;
    ids.truncate(max_tokens);
    let window = window.clamp(2, model.max_positions());
    let rows: Vec<Encoded> = ids
        .chunks(window)
        .filter(|c| c.len() >= 2)
        .map(|c| Encoded {
            ids: c.to_vec(),
            target_start: 1,
            fact: None,
        })
        .collect();
    if rows.is_empty() {
        return Err(crate::error::Error::Usage(
            "the held-out text has fewer than two tokens".into(),
        ));
    }
    let lp = answer_log_probs(model, params, &rows, tok.pad_id, 1.0, 4)?;
    let (sum, count) = lp
        .iter()
        .fold((0f64, 0usize), |(s, n), a| (s - a.sum as f64, n + a.tokens));
    Ok((sum / count as f64).exp())
}
