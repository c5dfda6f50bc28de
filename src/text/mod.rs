//! Text: tokenization, chat templates, JSONL question/answer data, generation and the language
//! model metrics.

pub mod chat_template;
pub mod data;
pub mod forgetting;
pub mod metrics;
pub mod tokenizer;

pub use data::{Encoded, PromptFormat, TextExample, TokenBatch};
pub use tokenizer::TextTokenizer;
