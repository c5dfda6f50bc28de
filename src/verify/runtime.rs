//! ONNX Runtime, loaded at run time from a shared library (the `ort` crate's load-dynamic mode).
//! The library is looked up before `ort` sees it: `ort` panics on a missing library, lethe
//! answers with what to do instead.

use crate::error::{Error, Result};
use ndarray::{Array2, ArrayD};
use ort::session::Session;
use ort::value::Tensor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const LIBRARY_HINT: &str = "fetch it with `bash scripts/fetch-onnxruntime.sh` (downloads the onnxruntime==1.31.1 wheel from PyPI), or point ORT_DYLIB_PATH or --onnxruntime at libonnxruntime.so";

/// Where lethe looks for libonnxruntime.so, in order.
pub fn candidate_paths(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push(p.to_path_buf());
        return out;
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
        return out;
    }
    let rel = Path::new(".lethe/onnxruntime/libonnxruntime.so");
    if let Ok(cwd) = std::env::current_dir() {
        out.push(cwd.join(rel));
    }
    // Next to a checkout's target/{debug,release}/lethe.
    if let Ok(exe) = std::env::current_exe() {
        for ancestor in exe.ancestors().skip(1).take(4) {
            out.push(ancestor.join(rel));
        }
    }
    out.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel));
    out.dedup();
    out
}

pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf> {
    let candidates = candidate_paths(explicit);
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            Error::Runtime(format!(
                "the ONNX Runtime library was not found (looked at: {}); {LIBRARY_HINT}",
                looked.join(", ")
            ))
        })
}

static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> =
    OnceLock::new();

/// The process-wide ONNX Runtime environment; the first library path given wins.
fn environment(library: &Path) -> Result<&'static ort::environment::Environment> {
    let env = ENVIRONMENT.get_or_init(|| {
        let path = library.to_path_buf();
        let loaded = std::panic::catch_unwind(move || {
            ort::init_from(&path)
                .map_err(|e| format!("cannot load {}: {e}", path.display()))?
                .with_name("lethe")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
        });
        match loaded {
            Ok(r) => r,
            Err(_) => Err(format!(
                "loading {} failed; is it libonnxruntime.so 1.31? {LIBRARY_HINT}",
                library.display()
            )),
        }
    });
    env.as_ref().map_err(|e| Error::Runtime(e.clone()))
}

/// An ONNX model loaded into ONNX Runtime.
pub struct OnnxModel {
    session: Session,
    input: String,
    output: String,
}

impl OnnxModel {
    pub fn load(model: &Path, library: &Path) -> Result<OnnxModel> {
        let env = environment(library)?;
        let session = Session::builder(env)
            .map_err(|e| Error::Runtime(e.to_string()))?
            .with_intra_threads(2)
            .map_err(|e| Error::Runtime(e.to_string()))?
            .commit_from_file(model)
            .map_err(|e| Error::Runtime(format!("{}: {e}", model.display())))?;
        let input = session
            .inputs()
            .first()
            .map(|o| o.name().to_string())
            .ok_or_else(|| Error::Runtime("the model has no inputs".into()))?;
        let output = session
            .outputs()
            .first()
            .map(|o| o.name().to_string())
            .ok_or_else(|| Error::Runtime("the model has no outputs".into()))?;
        Ok(OnnxModel {
            session,
            input,
            output,
        })
    }

    /// Runs a text model on token ids and an attention mask, both [batch, seq] (the inputs
    /// `input_ids` and `attention_mask`); returns the first output.
    pub fn run_tokens(&mut self, ids: Array2<i64>, mask: Array2<i64>) -> Result<ArrayD<f32>> {
        let err = |e: ort::Error| Error::Runtime(e.to_string());
        let ids = Tensor::from_array(ids).map_err(err)?;
        let mask = Tensor::from_array(mask).map_err(err)?;
        let outputs = self
            .session
            .run(ort::inputs!["input_ids" => ids, "attention_mask" => mask])
            .map_err(err)?;
        let values = outputs[self.output.as_str()]
            .try_extract_array::<f32>()
            .map_err(err)?;
        Ok(values.to_owned())
    }

    /// Runs the model on a batch of f32 inputs (the first dimension is the batch); returns the
    /// first output.
    pub fn run_f32(&mut self, input: ArrayD<f32>) -> Result<ArrayD<f32>> {
        let err = |e: ort::Error| Error::Runtime(e.to_string());
        let tensor = Tensor::from_array(input).map_err(err)?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(err)?;
        let values = outputs[self.output.as_str()]
            .try_extract_array::<f32>()
            .map_err(err)?;
        Ok(values.to_owned())
    }
}
