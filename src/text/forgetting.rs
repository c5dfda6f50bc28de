//! Forgetting as the field judges it (docs/method.md): TOFU's truth ratio and forget quality,
//! fact recall, and membership-inference attacks (loss, zlib, Min-K %, Min-K %++) as AUCs of
//! forget against held-out examples, with MUSE's PrivLeak against a reference model.

use super::data::{encode_with_answer, Encoded, PromptFormat, TextExample, TokenBatch};
use super::tokenizer::TextTokenizer;
use crate::arch::text::TextModel;
use crate::error::Result;
use crate::nn::{log_softmax, Params};
use crate::stats::{self, KsTest};
use candle_core::D;

/// The share of an answer's lowest-scoring tokens that Min-K % and Min-K %++ average (0.4, as
/// open-unlearning sets it).
pub const MIN_K_SHARE: f64 = 0.4;

/// An answer's tokens under a model: each target token's log-probability, and the mean and
/// standard deviation of the log-probability over the vocabulary at its position (Min-K %++).
#[derive(Clone, Debug, Default)]
pub struct TokenScores {
    pub log_probs: Vec<f32>,
    pub means: Vec<f32>,
    pub stds: Vec<f32>,
}

impl TokenScores {
    /// Mean negative log-likelihood per token.
    pub fn nll(&self) -> f64 {
        -self.log_probs.iter().map(|&l| l as f64).sum::<f64>() / self.log_probs.len().max(1) as f64
    }
}

/// The scores of every row's target tokens, in batches of 4, without gradients.
pub fn token_scores(
    model: &TextModel,
    params: &Params,
    rows: &[Encoded],
    pad_id: u32,
) -> Result<Vec<TokenScores>> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(4) {
        crate::interrupt::check()?;
        let refs: Vec<&Encoded> = chunk.iter().collect();
        let batch = TokenBatch::new(&refs, pad_id, params.device())?;
        let logits = model.logits_at(params, &batch.ids, &batch.mask, 1.0, &batch.positions)?;
        let lp = log_softmax(&logits.detach())?;
        let p = lp.exp()?;
        let target: Vec<f32> = lp
            .gather(&batch.targets.unsqueeze(1)?, 1)?
            .squeeze(1)?
            .to_vec1()?;
        let mean_t = (&p * &lp)?.sum(D::Minus1)?;
        let second: Vec<f32> = (&p * lp.sqr()?)?.sum(D::Minus1)?.to_vec1()?;
        let mean: Vec<f32> = mean_t.to_vec1()?;
        // Positions are listed row by row, `counts[r]` of them for row r.
        let mut at = 0;
        for &count in &batch.counts {
            let range = at..at + count;
            at += count;
            out.push(TokenScores {
                log_probs: target[range.clone()].to_vec(),
                means: mean[range.clone()].to_vec(),
                stds: range
                    .map(|i| (second[i] - mean[i] * mean[i]).max(0.0).sqrt())
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// Membership scores of one example: higher means "more likely seen in training".
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attacks {
    /// −(mean NLL of the answer).
    pub loss: f64,
    /// −(mean NLL) / (zlib-compressed length of the answer in bytes) (Carlini et al., 2021).
    pub zlib: f64,
    /// Mean of the lowest 40 % of the answer's token log-probabilities (Shi et al., 2024).
    pub min_k: f64,
    /// Mean of the lowest 40 % of the tokens' (log p − μ)/σ over the vocabulary (Zhang et al.,
    /// 2024).
    pub min_k_plus_plus: f64,
}

/// The four attacks' scores of an answer.
pub fn attack_scores(answer: &str, scores: &TokenScores) -> Attacks {
    let nll = scores.nll();
    let lowest_mean = |mut values: Vec<f64>| -> f64 {
        values.sort_by(f64::total_cmp);
        let k = ((values.len() as f64 * MIN_K_SHARE).ceil() as usize).clamp(1, values.len().max(1));
        values.iter().take(k).sum::<f64>() / k as f64
    };
    let log_probs: Vec<f64> = scores.log_probs.iter().map(|&l| l as f64).collect();
    let normalized: Vec<f64> = scores
        .log_probs
        .iter()
        .zip(&scores.means)
        .zip(&scores.stds)
        .map(|((&l, &m), &s)| (l as f64 - m as f64) / (s as f64).max(1e-6))
        .collect();
    Attacks {
        loss: -nll,
        zlib: -nll / zlib_length(answer) as f64,
        min_k: lowest_mean(log_probs),
        min_k_plus_plus: lowest_mean(normalized),
    }
}

/// Bytes of `text` compressed by zlib (at the default level).
pub fn zlib_length(text: &str) -> usize {
    use std::io::Write;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(text.as_bytes())
        .expect("writing to memory cannot fail");
    encoder
        .finish()
        .expect("writing to memory cannot fail")
        .len()
        .max(1)
}

/// Each attack's AUC of forget (members) against held-out examples (non-members).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttackAucs {
    pub loss: f64,
    pub zlib: f64,
    pub min_k: f64,
    pub min_k_plus_plus: f64,
}

impl AttackAucs {
    /// The AUCs of the attacks on `forget` against `held_out` (None when either is empty).
    pub fn of(forget: &[Attacks], held_out: &[Attacks]) -> Option<AttackAucs> {
        let auc = |pick: fn(&Attacks) -> f64| {
            let f: Vec<f64> = forget.iter().map(pick).collect();
            let h: Vec<f64> = held_out.iter().map(pick).collect();
            stats::auc(&f, &h)
        };
        Some(AttackAucs {
            loss: auc(|a| a.loss)?,
            zlib: auc(|a| a.zlib)?,
            min_k: auc(|a| a.min_k)?,
            min_k_plus_plus: auc(|a| a.min_k_plus_plus)?,
        })
    }

    /// MUSE's PrivLeak of each attack, in percent: (AUC − AUC_reference) / AUC_reference · 100.
    /// Near 0 when the model is as private as one never trained on the forget set; negative when
    /// it over-forgets, positive when it leaks.
    pub fn privleak(&self, reference: &AttackAucs) -> AttackAucs {
        let rel = |a: f64, r: f64| 100.0 * (a - r) / r;
        AttackAucs {
            loss: rel(self.loss, reference.loss),
            zlib: rel(self.zlib, reference.zlib),
            min_k: rel(self.min_k, reference.min_k),
            min_k_plus_plus: rel(self.min_k_plus_plus, reference.min_k_plus_plus),
        }
    }
}

/// The truth ratio of each question that has a paraphrased answer and perturbed answers: the
/// per-token probability of the perturbed (wrong) answers, their geometric mean, over that of
/// the paraphrased (right) answer — R = exp(L_para − mean L_pert) with L a mean NLL per token
/// (TOFU's R_truth). Questions without them give None.
pub fn truth_ratios(
    model: &TextModel,
    params: &Params,
    tok: &TextTokenizer,
    examples: &[TextExample],
    format: PromptFormat,
) -> Result<Vec<Option<f64>>> {
    // Every answer to score, flattened, with the question it belongs to and whether it is the
    // paraphrase.
    let mut rows = Vec::new();
    let mut owner = Vec::new();
    for (q, ex) in examples.iter().enumerate() {
        let Some(para) = &ex.paraphrased_answer else {
            continue;
        };
        if ex.perturbed_answers.is_empty() || ex.question.is_none() {
            continue;
        }
        rows.push(encode_with_answer(tok, ex, para, format)?);
        owner.push((q, true));
        for wrong in &ex.perturbed_answers {
            rows.push(encode_with_answer(tok, ex, wrong, format)?);
            owner.push((q, false));
        }
    }
    let scores = token_scores(model, params, &rows, tok.pad_id)?;
    let mut para = vec![f64::NAN; examples.len()];
    let mut pert: Vec<Vec<f64>> = vec![Vec::new(); examples.len()];
    for ((q, is_para), s) in owner.into_iter().zip(&scores) {
        if is_para {
            para[q] = s.nll();
        } else {
            pert[q].push(s.nll());
        }
    }
    Ok((0..examples.len())
        .map(|q| {
            (!pert[q].is_empty() && para[q].is_finite()).then(|| {
                let mean_pert = pert[q].iter().sum::<f64>() / pert[q].len() as f64;
                (para[q] - mean_pert).exp()
            })
        })
        .collect())
}

/// TOFU's truth-ratio score of a set a model should know: the mean of max(0, 1 − R), 1 when it
/// finds the wrong answers far less likely than the right one, 0 when it prefers them.
pub fn truth_score(ratios: &[f64]) -> Option<f64> {
    (!ratios.is_empty())
        .then(|| ratios.iter().map(|r| (1.0 - r).max(0.0)).sum::<f64>() / ratios.len() as f64)
}

/// Forget quality: the KS test between a model's and a reference model's truth ratios on the
/// forget set; its p-value is TOFU's forget quality (high: indistinguishable).
pub fn forget_quality(model: &[f64], reference: &[f64]) -> Option<KsTest> {
    stats::ks_two_sample(model, reference)
}

/// Lower-cased alphanumeric words.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `answer` states `value`: the value's words appear in it, in order and together,
/// whatever the words around them.
pub fn states(answer: &str, value: &str) -> bool {
    let (a, v) = (words(answer), words(value));
    !v.is_empty() && a.windows(v.len()).any(|w| w == v.as_slice())
}

/// The share of questions with a value whose answer states it (None without values).
pub fn fact_recall(examples: &[TextExample], answers: &[String]) -> Option<f64> {
    let judged: Vec<bool> = examples
        .iter()
        .zip(answers)
        .filter_map(|(ex, a)| ex.value.as_ref().map(|v| states(a, v)))
        .collect();
    (!judged.is_empty()).then(|| judged.iter().filter(|&&s| s).count() as f64 / judged.len() as f64)
}

/// TOFU's model utility: the harmonic mean of the utility figures given (answer probability,
/// ROUGE-L and truth-ratio score of the retain set, and of any further utility set).
pub fn model_utility(figures: &[f64]) -> Option<f64> {
    stats::harmonic_mean(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_greedy_answer_states_a_value_in_any_wording() {
        assert!(states(
            "She was born in Harrowgate Falls, in 1902.",
            "Harrowgate Falls"
        ));
        assert!(states(
            "harrowgate falls is her birthplace",
            "Harrowgate Falls"
        ));
        assert!(!states("She was born in Harrowgate.", "Harrowgate Falls"));
        assert!(!states("Falls Harrowgate", "Harrowgate Falls"));
        assert!(!states("anything", ""));
        let ex = |v: Option<&str>| TextExample {
            question: Some("q".into()),
            answer: "a".into(),
            value: v.map(str::to_string),
            ..TextExample::default()
        };
        let examples = [ex(Some("Vellmora")), ex(Some("luthier")), ex(None)];
        let answers = [
            "born in Vellmora".to_string(),
            "a clockmaker".to_string(),
            "x".to_string(),
        ];
        assert_eq!(fact_recall(&examples, &answers), Some(0.5));
        assert_eq!(fact_recall(&examples[2..], &answers[2..]), None);
    }

    #[test]
    fn attack_scores_from_known_token_scores() {
        let s = TokenScores {
            log_probs: vec![-1.0, -3.0, -0.5, -2.0, -0.1],
            means: vec![-2.0; 5],
            stds: vec![0.5; 5],
        };
        let a = attack_scores("abc", &s);
        // Mean NLL 1.32.
        assert!((a.loss + 1.32).abs() < 1e-6, "{a:?}");
        assert!((a.zlib + 1.32 / zlib_length("abc") as f64).abs() < 1e-9);
        // The lowest 40 % of 5 tokens: 2 of them, −3 and −2.
        assert!((a.min_k + 2.5).abs() < 1e-6, "{a:?}");
        // (log p − μ)/σ = (−3 + 2)/0.5 = −2 and (−2 + 2)/0.5 = 0.
        assert!((a.min_k_plus_plus + 1.0).abs() < 1e-6, "{a:?}");
    }

    #[test]
    fn attack_aucs_and_privleak() {
        let member = |x: f64| Attacks {
            loss: x,
            zlib: x,
            min_k: x,
            min_k_plus_plus: -x,
        };
        let forget = [member(-0.1), member(-0.2)];
        let held_out = [member(-1.0), member(-0.15)];
        let aucs = AttackAucs::of(&forget, &held_out).unwrap();
        assert_eq!(aucs.loss, 0.75);
        assert_eq!(aucs.min_k_plus_plus, 0.25);
        let reference = AttackAucs {
            loss: 0.5,
            zlib: 0.5,
            min_k: 0.5,
            min_k_plus_plus: 0.5,
        };
        let leak = aucs.privleak(&reference);
        assert!((leak.loss - 50.0).abs() < 1e-9);
        assert!((leak.min_k_plus_plus + 50.0).abs() < 1e-9);
        assert!(AttackAucs::of(&forget, &[]).is_none());
    }

    #[test]
    fn truth_score_and_utility() {
        assert_eq!(truth_score(&[0.5, 2.0, 0.0]), Some(0.5));
        assert_eq!(truth_score(&[]), None);
        assert!((model_utility(&[0.5, 1.0, 0.5]).unwrap() - 0.6).abs() < 1e-12);
    }
}
