//! The library's error type. Every failure a user can cause is a variant with a message that says
//! what went wrong and, where there is one, what to do about it. The CLI renders it once.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: not a valid checkpoint: {reason}")]
    Checkpoint { path: PathBuf, reason: String },

    #[error("{path}: invalid safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },

    #[error("config.json: {0}")]
    Config(String),

    #[error("unknown model_type {found:?}; lethe knows: {known}")]
    UnknownArchitecture { found: String, known: String },

    #[error(
        "tensor {name}: config.json implies shape {expected:?}, the checkpoint holds {found:?}"
    )]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("tensor {0} is required by the architecture but missing from the checkpoint")]
    MissingTensor(String),

    #[error("{path}: invalid data file: {reason}")]
    Data { path: PathBuf, reason: String },

    #[error("{0}")]
    Selection(String),

    #[error("{0}")]
    Usage(String),

    #[error(
        "the output directory {0} is not empty; lethe replaces it only when asked to overwrite"
    )]
    OutputNotEmpty(PathBuf),

    #[error("training diverged at step {step}: {what} is {value} (lower the learning rate or the dual step size)")]
    NonFinite {
        step: usize,
        what: &'static str,
        value: f32,
    },

    #[error("hub: {0}")]
    Hub(String),

    /// A device that was asked for but cannot be used here (no CUDA in this build, no driver or
    /// GPU on this machine): an error of the environment, not of the command line.
    #[error("{0}")]
    Device(String),

    #[error("interrupted before step {step}; the run state is saved in {state}: run the same job again, resuming, to continue")]
    Interrupted { step: usize, state: String },

    #[error("interrupted; nothing was written")]
    Cancelled,

    #[error("ONNX Runtime: {0}")]
    Runtime(String),

    #[error("{0}")]
    Output(String),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Whether the error is in how lethe was asked (arguments, job settings, a selection that
    /// selects nothing) rather than in the inputs or the run.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Usage(_) | Error::Selection(_) | Error::OutputNotEmpty(_)
        )
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
