//! `lethe export`: the ONNX model of any checkpoint lethe knows.

use super::{or_bundled, Output, BUNDLED_MODEL};
use clap::Args;
use lethe::pipeline::inspect;
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ExportArgs {
    /// A checkpoint directory or hub id [default: models/fashion-mnist-mlp, in lethe's source
    /// checkout].
    pub model: Option<PathBuf>,
    /// A .onnx file to write (large text models also get OUT_data beside it), or a directory
    /// (any other name) laid out as optimum's exports are: model.onnx (a decoder's with its
    /// key/value cache) with the model's config, generation config and tokenizer files, and a
    /// decoder's genai_config.json; optimum's ORTModelForCausalLM and onnxruntime-genai load it.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(a: &ExportArgs, out: &Output) -> Result<ExitCode, Error> {
    // f16 stores a language model's matrices in half the bytes; the graph computes in f32.
    let f16 = match out.dtype_flag() {
        None | Some("f32") => false,
        Some("f16") => true,
        Some(other) => {
            return Err(Error::Usage(format!(
            "--dtype {other}: `lethe export` writes f32 weights, or f16 ones for language models"
        )))
        }
    };
    let model = or_bundled(a.model.as_deref(), BUNDLED_MODEL, "a model")?;
    let device = out.device(None)?;
    let r = if a.out.extension().is_some_and(|e| e == "onnx") {
        inspect::export_onnx(&model, &a.out, a.overwrite, f16, &device, out.progress())?
    } else {
        inspect::export_onnx_dir(&model, &a.out, a.overwrite, f16, &device, out.progress())?
    };
    out.result(&r, || match &r.external_data {
        Some(data) => format!("wrote {} ({}; weights in {data})\n", r.onnx, r.model_type),
        None => format!("wrote {} ({})\n", r.onnx, r.model_type),
    });
    Ok(ExitCode::SUCCESS)
}
