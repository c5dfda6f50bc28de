//! lethe: machine unlearning for trained classifiers with implicit gradient surgery, exported
//! as safetensors and ONNX and verified with ONNX Runtime.

pub mod arch;
pub mod bench;
pub mod checkpoint;
pub mod convert;
pub mod data;
pub mod diff;
pub mod digest;
pub mod error;
pub mod export;
pub mod gguf;
pub mod hub;
pub mod job;
pub mod nn;
pub mod pipeline;
pub mod report;
pub mod rng;
pub mod runtime;
pub mod text;
pub mod text_pipeline;
pub mod train;
pub mod unlearn;
pub mod untrusted;
pub mod verify;

pub use error::{Error, Result};
