//! lethe: machine unlearning with implicit gradient surgery for classifiers and language models,
//! exported as safetensors, PEFT adapters and ONNX, and verified with ONNX Runtime.

pub mod arch;
pub mod bench;
pub mod checkpoint;
pub mod convert;
pub mod data;
pub mod defaults;
pub mod device;
pub mod diff;
pub mod digest;
pub mod error;
pub mod export;
pub mod gguf;
pub mod hub;
pub mod interrupt;
pub mod job;
pub mod kernels;
pub mod model;
pub mod nn;
pub mod onnx;
pub mod pipeline;
pub mod precision;
pub mod report;
pub mod rng;
pub mod runtime;
pub mod stats;
pub mod text;
pub mod train;
pub mod unlearn;
pub mod untrusted;
pub mod verify;

pub use error::{Error, Result};
