//! Text data: JSONL files of {"question", "answer"} pairs (the loss covers the answer's tokens
//! only) or {"text"} documents (every token after the first), and their encoding into token
//! sequences with the positions that carry a loss.

use super::tokenizer::{ChatMessage, TextTokenizer};
use crate::arch::text::TextModel;
use crate::error::{Error, Result};
use crate::nn::Params;
use candle_core::{Device, Tensor};
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
    let (prompt, mut target) = match &ex.question {
        Some(q) => {
            let prompt = prompt_ids(tok, q, format)?;
            let answer = match format {
                PromptFormat::Chat => answer.to_string(),
                PromptFormat::Plain => format!(" {answer}"),
            };
            (prompt, tok.encode(&answer)?)
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
    Ok(Encoded { ids, target_start })
}

pub fn encode(tok: &TextTokenizer, ex: &TextExample, format: PromptFormat) -> Result<Encoded> {
    encode_with_answer(tok, ex, &ex.answer, format)
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
        })
    }
}

/// Summed log-probability of each row's targets, [B], differentiable.
pub fn target_log_probs(
    model: &TextModel,
    params: &Params,
    batch: &TokenBatch,
    lora_scale: f64,
) -> Result<Tensor> {
    let per_token = model.target_log_probs_at(
        params,
        &batch.ids,
        &batch.mask,
        lora_scale,
        &batch.positions,
        &batch.targets,
    )?;
    let b = batch.counts.len();
    let zeros = Tensor::zeros(b, per_token.dtype(), per_token.device())?;
    Ok(zeros.index_add(&batch.rows, &per_token, 0)?)
}

/// Summed answer log-probabilities of `rows` under `params`, in batches, without gradients.
pub fn answer_log_probs(
    model: &TextModel,
    params: &Params,
    rows: &[Encoded],
    pad_id: u32,
    lora_scale: f64,
    batch_size: usize,
) -> Result<Vec<(f32, usize)>> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        crate::interrupt::check()?;
        let refs: Vec<&Encoded> = chunk.iter().collect();
        let batch = TokenBatch::new(&refs, pad_id, params.device())?;
        let lp: Vec<f32> = target_log_probs(model, params, &batch, lora_scale)?
            .detach()
            .to_vec1()?;
        out.extend(lp.into_iter().zip(batch.counts.iter().copied()));
    }
    Ok(out)
}
