//! Checkpoints of a running unlearning job, so that an interrupted run (Ctrl-C, a crash, a
//! pre-empted machine) can be resumed and end exactly as an uninterrupted one would.
//!
//! A state directory holds `state.json` (step, batch plan with its generator, method and
//! optimizer scalars, the log so far, and a fingerprint of the run's inputs and settings) and
//! `state.safetensors` (the trainable tensors and the optimizer's moment buffers). It is written
//! under a temporary name and renamed into place, so it is always whole.

use super::method::MethodState;
use super::{BatchPlan, RunLog};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How a run saves and resumes its state.
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    /// Where the state lives; without it the run neither checkpoints nor resumes.
    pub state_dir: Option<PathBuf>,
    /// Save the state every this many steps.
    pub checkpoint_every: Option<usize>,
    /// Continue from the saved state when there is one.
    pub resume: bool,
    /// Identifies the run's inputs and settings; a state of another run is never resumed.
    pub fingerprint: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct RunState {
    pub fingerprint: String,
    pub next_step: usize,
    pub plan: BatchPlan,
    pub method: MethodState,
    pub optimizer_step: usize,
    pub log: RunLog,
}

const STATE_JSON: &str = "state.json";
const STATE_TENSORS: &str = "state.safetensors";

pub fn save(
    dir: &Path,
    state: &RunState,
    vars: &[(String, Tensor)],
    optimizer_buffers: &[(String, Tensor)],
) -> Result<()> {
    let tmp = dir.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let json = serde_json::to_vec(state).expect("run state serialises");
    std::fs::write(tmp.join(STATE_JSON), json).map_err(|e| Error::io(&tmp, e))?;
    let tensors: Vec<(String, Tensor)> = vars
        .iter()
        .map(|(n, t)| (format!("var.{n}"), t.clone()))
        .chain(
            optimizer_buffers
                .iter()
                .map(|(n, t)| (format!("opt.{n}"), t.clone())),
        )
        .collect();
    crate::checkpoint::write_tensors(&tmp.join(STATE_TENSORS), &tensors)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))
}

/// The saved state, and its tensors split into trainable values and optimizer buffers.
pub type Loaded = (RunState, HashMap<String, Tensor>, HashMap<String, Tensor>);

pub fn load(dir: &Path, device: &Device) -> Result<Option<Loaded>> {
    let json_path = dir.join(STATE_JSON);
    if !json_path.exists() {
        return Ok(None);
    }
    let text = std::fs::read(&json_path).map_err(|e| Error::io(&json_path, e))?;
    let state: RunState = serde_json::from_slice(&text).map_err(|e| {
        Error::Usage(format!(
            "{}: not a lethe run state: {e}",
            json_path.display()
        ))
    })?;
    let tensors = candle_core::safetensors::load(dir.join(STATE_TENSORS), device)?;
    let (mut vars, mut opt) = (HashMap::new(), HashMap::new());
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix("var.") {
            vars.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix("opt.") {
            opt.insert(n.to_string(), t);
        }
    }
    Ok(Some((state, vars, opt)))
}
