//! ONNX Runtime, loaded at run time from a shared library (the `ort` crate's load-dynamic mode).
//! The library is looked up before `ort` sees it: `ort` panics on a missing library, lethe
//! answers with what to do instead.

use crate::error::{Error, Result};
use ndarray::{Array2, ArrayD, IxDyn};
use ort::session::{Session, SessionInputValue};
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
    /// A decoder's cache inputs (`past_key_values.N.key`/`.value`) with their key/value heads
    /// and head dimension; empty for other models.
    past: Vec<(String, usize, usize)>,
}

/// The cache output that continues a cache input: `past_key_values.N.key` ← `present.N.key`.
fn present_of(past: &str) -> String {
    past.replacen("past_key_values.", "present.", 1)
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
        let past = session
            .inputs()
            .iter()
            .filter(|i| i.name().starts_with("past_key_values."))
            .map(|i| {
                let dims = i
                    .dtype()
                    .tensor_shape()
                    .map(|s| s.to_vec())
                    .unwrap_or_default();
                match dims[..] {
                    [_, kv, _, d] if kv > 0 && d > 0 => {
                        Ok((i.name().to_string(), kv as usize, d as usize))
                    }
                    _ => Err(Error::Runtime(format!(
                        "cache input {} has shape {dims:?}, not [batch, heads, past, dim]",
                        i.name()
                    ))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(OnnxModel {
            session,
            input,
            output,
            past,
        })
    }

    /// Whether the graph stores its matrices in f16 (metadata `lethe.weights` = `f16`).
    pub fn has_f16_weights(&self) -> bool {
        let (key, value) = crate::arch::text::F16_WEIGHTS;
        self.session
            .metadata()
            .ok()
            .and_then(|m| m.custom(key))
            .is_some_and(|v| v == value)
    }

    /// Whether the graph continues sequences through a key/value cache.
    pub fn has_cache(&self) -> bool {
        !self.past.is_empty()
    }

    /// Runs a decoder step: token ids [batch, seq] at `positions`, the mask over the cached
    /// tokens and these, and the cache (None: empty). Returns the logits and the new cache.
    fn run_step(
        &mut self,
        ids: Array2<i64>,
        mask: Array2<i64>,
        positions: Array2<i64>,
        cache: Option<Vec<ArrayD<f32>>>,
    ) -> Result<(ArrayD<f32>, Vec<ArrayD<f32>>)> {
        let err = |e: ort::Error| Error::Runtime(e.to_string());
        let batch = ids.dim().0;
        let cache = match cache {
            Some(c) => c,
            None => self
                .past
                .iter()
                .map(|(_, kv, d)| ArrayD::zeros(IxDyn(&[batch, *kv, 0, *d])))
                .collect(),
        };
        let mut inputs: Vec<(String, SessionInputValue)> = vec![
            (
                "input_ids".into(),
                Tensor::from_array(ids).map_err(err)?.into(),
            ),
            (
                "attention_mask".into(),
                Tensor::from_array(mask).map_err(err)?.into(),
            ),
        ];
        if self.has_cache() {
            inputs.push((
                "position_ids".into(),
                Tensor::from_array(positions).map_err(err)?.into(),
            ));
            for ((name, _, _), values) in self.past.iter().zip(cache) {
                inputs.push((
                    name.clone(),
                    Tensor::from_array(values).map_err(err)?.into(),
                ));
            }
        }
        let outputs = self.session.run(inputs).map_err(err)?;
        let logits = outputs[self.output.as_str()]
            .try_extract_array::<f32>()
            .map_err(err)?
            .to_owned();
        let present = self
            .past
            .iter()
            .map(|(name, _, _)| {
                Ok(outputs[present_of(name).as_str()]
                    .try_extract_array::<f32>()
                    .map_err(err)?
                    .to_owned())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((logits, present))
    }

    /// Greedy decoding through the graph's key/value cache: the prompt in one step, then one
    /// token per step; at most `max_new` tokens, stopping before `eos`.
    pub fn generate_greedy(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        eos: Option<u32>,
    ) -> Result<Vec<u32>> {
        if !self.has_cache() {
            return Err(Error::Runtime(
                "the ONNX model has no key/value cache inputs".into(),
            ));
        }
        let mut out = Vec::new();
        let mut input: Vec<i64> = prompt.iter().map(|&t| i64::from(t)).collect();
        let mut cache = None;
        let mut offset = 0;
        for _ in 0..max_new {
            let n = input.len();
            let ids = Array2::from_shape_vec((1, n), input.clone())
                .map_err(|e| Error::Runtime(e.to_string()))?;
            let positions = Array2::from_shape_fn((1, n), |(_, j)| (offset + j) as i64);
            let mask = Array2::ones((1, offset + n));
            let (logits, present) = self.run_step(ids, mask, positions, cache)?;
            cache = Some(present);
            offset += n;
            let last = logits.index_axis(ndarray::Axis(1), n - 1);
            let next = last
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0 as u32;
            if Some(next) == eos {
                break;
            }
            out.push(next);
            input = vec![i64::from(next)];
        }
        Ok(out)
    }

    /// Runs a text model on token ids and an attention mask, both [batch, seq] (the inputs
    /// `input_ids` and `attention_mask`; a decoder's positions 0, 1, … as lethe numbers them,
    /// and an empty cache); returns the first output.
    pub fn run_tokens(&mut self, ids: Array2<i64>, mask: Array2<i64>) -> Result<ArrayD<f32>> {
        let positions = Array2::from_shape_fn(ids.dim(), |(_, j)| j as i64);
        Ok(self.run_step(ids, mask, positions, None)?.0)
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
