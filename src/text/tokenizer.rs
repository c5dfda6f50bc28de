//! Tokenization from a checkpoint's tokenizer.json (the `tokenizers` crate) and chat templates
//! found as transformers finds them (rendered by `chat_template`).

use super::chat_template::{self, ChatContext};
use crate::error::{Error, Result};
use serde_json::Value;
use std::ops::Range;
use std::path::Path;

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    chat_template: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    /// Keyword arguments for the chat template (`--chat-template-kwargs`).
    chat_template_vars: serde_json::Map<String, Value>,
    pub eos_id: Option<u32>,
    pub pad_id: u32,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

fn token_string(config: &Value, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(s) => Some(s.clone()),
        // {"content": "<s>", ...} as older configs store special tokens.
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl TextTokenizer {
    /// Reads `dir/tokenizer.json` and, when present, `dir/tokenizer_config.json` and
    /// `dir/chat_template.jinja`.
    pub fn open(dir: &Path, model_config: &Value) -> Result<TextTokenizer> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                reason: "no tokenizer.json: text data needs the model's tokenizer (GGUF files carry one: `lethe convert` writes it)".into(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            reason: format!("cannot read the tokenizer: {e}"),
        })?;
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = match std::fs::read(&config_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Checkpoint {
                path: config_path.clone(),
                reason: format!("invalid JSON: {e}"),
            })?,
            Err(_) => Value::Null,
        };
        let chat_template = chat_template(dir, &config)?;
        let eos_token = token_string(&config, "eos_token");
        let id_of = |field: &str, token: &Option<String>| -> Option<u32> {
            model_config
                .get(field)
                .and_then(Value::as_u64)
                .map(|v| v as u32)
                .or_else(|| token.as_ref().and_then(|t| inner.token_to_id(t)))
        };
        let eos_id = id_of("eos_token_id", &eos_token);
        let pad_id = id_of("pad_token_id", &token_string(&config, "pad_token"))
            .or(eos_id)
            .unwrap_or(0);
        Ok(TextTokenizer {
            chat_template,
            bos_token: token_string(&config, "bos_token"),
            chat_template_vars: serde_json::Map::new(),
            eos_token,
            eos_id,
            pad_id,
            inner,
        })
    }

    /// Variables every rendering of the chat template sees, as keyword arguments of
    /// transformers' `apply_chat_template` (Qwen3's `enable_thinking`, …).
    pub fn set_chat_template_vars(&mut self, vars: serde_json::Map<String, Value>) {
        self.chat_template_vars = vars;
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Token ids of `text`, without special tokens added (templates carry their own).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Usage(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` (no special tokens added) with each token's byte range in `text`.
    pub fn encode_with_offsets(&self, text: &str) -> Result<Vec<(u32, Range<usize>)>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Usage(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(enc
            .get_ids()
            .iter()
            .zip(enc.get_offsets())
            .map(|(&id, &(start, end))| (id, start..end))
            .collect())
    }

    /// Token ids with the tokenizer's own special tokens (BERT's [CLS] … [SEP], Gemma's <bos>).
    pub fn encode_with_special(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Usage(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Usage(format!("cannot decode tokens: {e}")))
    }

    /// The chat template rendered for `messages`; with `add_generation_prompt`, ends where the
    /// assistant's answer begins.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| Error::Usage("the model has no chat template".into()))?;
        let context = ChatContext {
            bos_token: self.bos_token.clone(),
            eos_token: self.eos_token.clone(),
            add_generation_prompt,
            extra: self.chat_template_vars.clone(),
        };
        chat_template::render(template, messages, &context)
    }
}

/// The chat template as transformers finds it: `chat_template.jinja` beside the tokenizer (where
/// current hub repositories keep it) wins over `tokenizer_config.json`'s `chat_template`, which
/// is a string or a list of named templates of which "default" is the one used.
fn chat_template(dir: &Path, config: &Value) -> Result<Option<String>> {
    let file = dir.join(CHAT_TEMPLATE_FILE);
    if file.is_file() {
        return std::fs::read_to_string(&file)
            .map(Some)
            .map_err(|e| Error::io(&file, e));
    }
    Ok(match config.get("chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template").and_then(Value::as_str))
            .map(str::to_string),
        _ => None,
    })
}

/// The file a checkpoint may keep its chat template in.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_template_variables_reach_every_rendering() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/text/tiny-chat");
        std::fs::copy(
            fixture.join("tokenizer.json"),
            dir.path().join("tokenizer.json"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(CHAT_TEMPLATE_FILE),
            "{{ messages[0].content }}{% if enable_thinking is defined and not enable_thinking %} /no_think{% endif %}",
        )
        .unwrap();
        let mut tok = TextTokenizer::open(dir.path(), &Value::Null).unwrap();
        let question = [ChatMessage {
            role: "user".into(),
            content: "Q".into(),
        }];
        assert_eq!(tok.render_chat(&question, true).unwrap(), "Q");
        let mut vars = serde_json::Map::new();
        vars.insert("enable_thinking".into(), Value::Bool(false));
        tok.set_chat_template_vars(vars);
        assert_eq!(tok.render_chat(&question, true).unwrap(), "Q /no_think");
    }

    #[test]
    fn the_template_file_wins_over_the_config_and_named_templates_give_default() {
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({"chat_template": "from the config"});
        assert_eq!(
            chat_template(dir.path(), &config).unwrap().as_deref(),
            Some("from the config")
        );
        let named = serde_json::json!({"chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "plain"},
        ]});
        assert_eq!(
            chat_template(dir.path(), &named).unwrap().as_deref(),
            Some("plain")
        );
        std::fs::write(dir.path().join(CHAT_TEMPLATE_FILE), "from the file").unwrap();
        assert_eq!(
            chat_template(dir.path(), &config).unwrap().as_deref(),
            Some("from the file")
        );
        assert_eq!(
            chat_template(dir.path(), &Value::Null).unwrap().as_deref(),
            Some("from the file")
        );
    }
}
