//! Text data: JSONL files of {"question", "answer"} pairs (the loss covers the answer's tokens
//! only) or {"text"} documents (every token after the first), and their encoding into token
//! sequences with the positions that carry a loss.

use super::tokenizer::{ChatMessage, TextTokenizer};
use crate::arch::text::TextModel;
use crate::error::{Error, Result};
use crate::nn::Params;
use candle_core::{Device, Tensor};
use std::ops::Range;
use std::path::Path;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TextExample {
    /// None for a plain {"text"} document.
    pub question: Option<String>,
    /// The answer, or the whole document.
    pub answer: String,
    /// The answer in other words (TOFU's paraphrased answer): the truth ratio's denominator.
    pub paraphrased_answer: Option<String>,
    /// Wrong answers in the answer's form (TOFU's perturbed answers): the truth ratio's
    /// numerator.
    pub perturbed_answers: Vec<String>,
    /// The fact itself (a city, a job): a greedy answer that contains it, in any wording,
    /// still states the fact.
    pub value: Option<String>,
}

impl TextExample {
    /// Whether two records hold the same question and answer (whatever else they carry).
    pub fn same_fact(&self, other: &TextExample) -> bool {
        self.question == other.question && self.answer == other.answer
    }
}

/// Reads a JSONL file; blank lines are skipped. Every record must be {"question", "answer"}
/// (optionally with "paraphrased_answer", "perturbed_answers" and "value"; docs/data.md) or
/// {"text"}, with non-empty strings.
pub fn read_jsonl(path: &Path) -> Result<Vec<TextExample>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_jsonl(path, &bytes)
}

pub fn parse_jsonl(path: &Path, bytes: &[u8]) -> Result<Vec<TextExample>> {
    let bad = |line: usize, reason: String| Error::Data {
        path: path.to_path_buf(),
        reason: format!("line {line}: {reason}"),
    };
    let text = std::str::from_utf8(bytes).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        reason: format!("not UTF-8: {e}"),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(n, format!("invalid JSON: {e}")))?;
        let field = |k: &str| -> Result<Option<String>> {
            match v.get(k) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                Some(serde_json::Value::String(_)) => Err(bad(n, format!("\"{k}\" is empty"))),
                Some(_) => Err(bad(n, format!("\"{k}\" must be a string"))),
            }
        };
        let perturbed = match v.get("perturbed_answers") {
            None => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    serde_json::Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                    _ => Err(bad(
                        n,
                        "\"perturbed_answers\" must hold non-empty strings".into(),
                    )),
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(bad(n, "\"perturbed_answers\" must be a list".into())),
        };
        let (paraphrased, value) = (field("paraphrased_answer")?, field("value")?);
        let example = match (field("question")?, field("answer")?, field("text")?) {
            (Some(q), Some(a), None) => TextExample {
                question: Some(q),
                answer: a,
                paraphrased_answer: paraphrased,
                perturbed_answers: perturbed,
                value,
            },
            (None, None, Some(t)) => {
                if paraphrased.is_some() || !perturbed.is_empty() || value.is_some() {
                    return Err(bad(
                        n,
                        "a {\"text\"} document has no paraphrased or perturbed answers and no value"
                            .into(),
                    ));
                }
                TextExample {
                    question: None,
                    answer: t,
                    ..TextExample::default()
                }
            }
            (Some(_), None, None) => return Err(bad(n, "a question without an answer".into())),
            _ => {
                return Err(bad(
                    n,
                    "expected {\"question\": …, \"answer\": …} or {\"text\": …}".into(),
                ))
            }
        };
        out.push(example);
    }
    if out.is_empty() {
        return Err(Error::Data {
            path: path.to_path_buf(),
            reason: "no records".into(),
        });
    }
    Ok(out)
}

/// How a question becomes a prompt.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum PromptFormat {
    /// The model's chat template: the question as a user turn, the answer as the assistant's.
    Chat,
    /// "Question: …\nAnswer:" followed by " answer".
    Plain,
}

/// Token ids of one example; positions `target_start..` are predicted and carry the loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub target_start: usize,
    /// The target tokens (indices into `target()`) that state the example's `value`, when it
    /// has one and its answer contains it: the tokens that carry the fact, as opposed to the
    /// wording around it.
    pub fact: Option<Range<usize>>,
}

impl Encoded {
    pub fn prompt(&self) -> &[u32] {
        &self.ids[..self.target_start]
    }
    pub fn target(&self) -> &[u32] {
        &self.ids[self.target_start..]
    }
}

/// The prompt of a question, ready for generation.
pub fn prompt_ids(tok: &TextTokenizer, question: &str, format: PromptFormat) -> Result<Vec<u32>> {
    match format {
        PromptFormat::Chat => {
            let prompt = tok.render_chat(
                &[ChatMessage {
                    role: "user".into(),
                    content: question.to_string(),
                }],
                true,
            )?;
            tok.encode(&prompt)
        }
        // Plain text is encoded as transformers' tokenizer(text) encodes it: with the
        // tokenizer's own special tokens (Gemma's and Llama's <bos>); templates carry theirs.
        PromptFormat::Plain => tok.encode_with_special(&format!("Question: {question}\nAnswer:")),
    }
}

/// Encodes an example with `answer` in place of its own (refusals use this).
pub fn encode_with_answer(
    tok: &TextTokenizer,
    ex: &TextExample,
    answer: &str,
    format: PromptFormat,
) -> Result<Encoded> {
    encode_answer(tok, ex, answer, None, format)
}

/// Encodes `answer` after the example's prompt; `value`, when the answer contains it, marks
/// the target tokens that state it.
fn encode_answer(
    tok: &TextTokenizer,
    ex: &TextExample,
    answer: &str,
    value: Option<&str>,
    format: PromptFormat,
) -> Result<Encoded> {
    let mut fact = None;
    let (prompt, mut target) = match &ex.question {
        Some(q) => {
            let prompt = prompt_ids(tok, q, format)?;
            let answer = match format {
                PromptFormat::Chat => answer.to_string(),
                PromptFormat::Plain => format!(" {answer}"),
            };
            let tokens = tok.encode_with_offsets(&answer)?;
            fact = value
                .filter(|v| !v.is_empty())
                .and_then(|v| answer.find(v).map(|s| s..s + v.len()))
                .and_then(|value| {
                    // The tokens whose bytes overlap the value's.
                    let inside =
                        |(_, t): &(u32, Range<usize>)| t.start < value.end && t.end > value.start;
                    let first = tokens.iter().position(inside)?;
                    let last = tokens.iter().rposition(inside)?;
                    Some(first..last + 1)
                });
            (prompt, tokens.into_iter().map(|(id, _)| id).collect())
        }
        None => {
            // A document: predict every token after the first (after <bos> where the
            // tokenizer opens texts with one).
            let ids = tok.encode_with_special(answer)?;
            let (first, rest) = ids
                .split_first()
                .ok_or_else(|| Error::Usage(format!("{answer:?} has no tokens")))?;
            (vec![*first], rest.to_vec())
        }
    };
    if ex.question.is_some() {
        if let Some(eos) = tok.eos_id {
            target.push(eos);
        }
    }
    if target.is_empty() {
        return Err(Error::Usage(format!(
            "the answer {answer:?} encodes to no tokens to learn"
        )));
    }
    let target_start = prompt.len();
    let mut ids = prompt;
    ids.extend(target);
    Ok(Encoded {
        ids,
        target_start,
        fact,
    })
}

pub fn encode(tok: &TextTokenizer, ex: &TextExample, format: PromptFormat) -> Result<Encoded> {
    encode_answer(tok, ex, &ex.answer, ex.value.as_deref(), format)
}

/// A padded batch: ids and mask [B, T] (u32), and the positions that predict a target token:
/// their indices into the flattened [B·T] positions, the token each predicts, and its row.
pub struct TokenBatch {
    pub ids: Tensor,
    pub mask: Tensor,
    pub positions: Tensor,
    pub targets: Tensor,
    pub rows: Tensor,
    /// Target tokens per row.
    pub counts: Vec<usize>,
    /// Each row's fact tokens (indices into its targets), where it marks them.
    pub facts: Vec<Option<Range<usize>>>,
}

impl TokenBatch {
    pub fn new(rows: &[&Encoded], pad_id: u32, device: &Device) -> Result<TokenBatch> {
        let b = rows.len();
        let t = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        if b == 0 || t == 0 {
            return Err(Error::Usage("an empty batch of text".into()));
        }
        let mut ids = vec![pad_id; b * t];
        let mut mask = vec![0u32; b * t];
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        let mut row_of = Vec::new();
        let mut counts = Vec::with_capacity(b);
        for (i, r) in rows.iter().enumerate() {
            let row = i * t;
            for (j, &id) in r.ids.iter().enumerate() {
                ids[row + j] = id;
                mask[row + j] = 1;
            }
            // Position p predicts token p+1.
            for p in r.target_start.max(1) - 1..r.ids.len() - 1 {
                positions.push((row + p) as u32);
                targets.push(r.ids[p + 1]);
                row_of.push(i as u32);
            }
            counts.push(r.ids.len() - r.target_start.max(1));
        }
        let n = targets.len();
        Ok(TokenBatch {
            ids: Tensor::from_vec(ids, (b, t), device)?,
            mask: Tensor::from_vec(mask, (b, t), device)?,
            positions: Tensor::from_vec(positions, n, device)?,
            targets: Tensor::from_vec(targets, n, device)?,
            rows: Tensor::from_vec(row_of, n, device)?,
            counts,
            facts: rows.iter().map(|r| r.fact.clone()).collect(),
        })
    }

    /// A per-token quantity [N] (in the order of `targets`) summed over each row: [B].
    pub fn sum_rows(&self, per_token: &Tensor) -> Result<Tensor> {
        let zeros = Tensor::zeros(self.counts.len(), per_token.dtype(), per_token.device())?;
        Ok(zeros.index_add(&self.rows, per_token, 0)?)
    }

    /// Per target token (in the order of `targets`), 1 where it states its row's fact and 0
    /// elsewhere, with each row's number of fact tokens (None for a row that marks no fact).
    pub fn fact_weights(&self) -> Result<(Tensor, Vec<Option<usize>>)> {
        let mut weights = Vec::with_capacity(self.targets.dim(0)?);
        for (fact, &n) in self.facts.iter().zip(&self.counts) {
            weights.extend((0..n).map(|k| match fact {
                Some(f) if f.contains(&k) => 1f32,
                _ => 0.0,
            }));
        }
        let counts = self
            .facts
            .iter()
            .map(|f| f.as_ref().map(|f| f.len()))
            .collect();
        let weights = Tensor::from_vec(weights, self.targets.dim(0)?, self.targets.device())?;
        Ok((weights, counts))
    }
}

/// Log-probability of each target token, [N] in the order of `batch.targets`, differentiable.
pub fn token_log_probs(
    model: &TextModel,
    params: &Params,
    batch: &TokenBatch,
    lora_scale: f64,
) -> Result<Tensor> {
    model.target_log_probs_at(
        params,
        &batch.ids,
        &batch.mask,
        lora_scale,
        &batch.positions,
        &batch.targets,
    )
}

/// Summed log-probability of each row's targets, [B], differentiable.
pub fn target_log_probs(
    model: &TextModel,
    params: &Params,
    batch: &TokenBatch,
    lora_scale: f64,
) -> Result<Tensor> {
    batch.sum_rows(&token_log_probs(model, params, batch, lora_scale)?)
}

/// One answer's summed log-probability, over all its target tokens and over its fact tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnswerLogProb {
    pub sum: f32,
    pub tokens: usize,
    /// Over the tokens that state the fact, with their number; None where the row marks none.
    pub fact: Option<(f32, usize)>,
}

impl AnswerLogProb {
    /// Mean NLL per answer token.
    pub fn nll(&self) -> f64 {
        -(self.sum as f64) / self.tokens.max(1) as f64
    }

    /// Mean NLL per fact token.
    pub fn fact_nll(&self) -> Option<f64> {
        self.fact.map(|(lp, n)| -(lp as f64) / n.max(1) as f64)
    }

    /// Mean NLL per token of the other target tokens (the wording around the fact).
    pub fn wording_nll(&self) -> Option<f64> {
        let (lp, n) = self.fact?;
        let rest = self.tokens.checked_sub(n).filter(|&r| r > 0)?;
        Some(-((self.sum - lp) as f64) / rest as f64)
    }
}

/// [`AnswerLogProb`] of each of `rows` under `params`, in batches, without gradients.
pub fn answer_log_probs(
    model: &TextModel,
    params: &Params,
    rows: &[Encoded],
    pad_id: u32,
    lora_scale: f64,
    batch_size: usize,
) -> Result<Vec<AnswerLogProb>> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        crate::interrupt::check()?;
        let refs: Vec<&Encoded> = chunk.iter().collect();
        let batch = TokenBatch::new(&refs, pad_id, params.device())?;
        let per_token = token_log_probs(model, params, &batch, lora_scale)?.detach();
        let (weights, fact_counts) = batch.fact_weights()?;
        let sums: Vec<f32> = batch.sum_rows(&per_token)?.to_vec1()?;
        let facts: Vec<f32> = batch.sum_rows(&(per_token * weights)?)?.to_vec1()?;
        for (i, &n) in batch.counts.iter().enumerate() {
            out.push(AnswerLogProb {
                sum: sums[i],
                tokens: n,
                fact: fact_counts[i].map(|k| (facts[i], k)),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fact_weights_mark_each_rows_fact_tokens_in_target_order() {
        // Row 0: prompt of 2, targets [7, 8, 9] with the fact at targets 1..3; row 1: no fact.
        let with_fact = Encoded {
            ids: vec![1, 2, 7, 8, 9],
            target_start: 2,
            fact: Some(1..3),
        };
        let without = Encoded {
            ids: vec![1, 4, 5],
            target_start: 1,
            fact: None,
        };
        let batch = TokenBatch::new(&[&with_fact, &without], 0, &Device::Cpu).unwrap();
        let targets: Vec<u32> = batch.targets.to_vec1().unwrap();
        assert_eq!(targets, vec![7, 8, 9, 4, 5]);
        let (weights, counts) = batch.fact_weights().unwrap();
        let weights: Vec<f32> = weights.to_vec1().unwrap();
        assert_eq!(weights, vec![0.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(counts, vec![Some(2), None]);
        let sums: Vec<f32> = batch
            .sum_rows(&Tensor::new(&[1f32, 2., 3., 4., 5.], &Device::Cpu).unwrap())
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(sums, vec![6.0, 9.0]);
    }

    #[test]
    fn an_answers_nll_splits_into_its_fact_and_its_wording() {
        // Five tokens summing to −10, two of them the fact's, summing to −6.
        let a = AnswerLogProb {
            sum: -10.0,
            tokens: 5,
            fact: Some((-6.0, 2)),
        };
        assert_eq!(a.fact_nll(), Some(3.0));
        assert!((a.wording_nll().unwrap() - 4.0 / 3.0).abs() < 1e-12);
        let unmarked = AnswerLogProb { fact: None, ..a };
        assert_eq!((unmarked.fact_nll(), unmarked.wording_nll()), (None, None));
        // An answer that is all fact has no wording to measure.
        let all_fact = AnswerLogProb {
            fact: Some((-10.0, 5)),
            ..a
        };
        assert_eq!(all_fact.wording_nll(), None);
    }
}
