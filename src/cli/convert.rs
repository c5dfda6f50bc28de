//! `lethe convert`: a GGUF file (llama.cpp) to a Hugging Face-layout checkpoint lethe can edit.

use super::Output;
use clap::Args;
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ConvertArgs {
    /// The GGUF file (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants Q2_K to
    /// Q6_K are dequantized to f32).
    pub gguf: PathBuf,
    /// The output directory: config.json, model.safetensors, tokenizer.json, tokenizer_config.json.
    pub out: PathBuf,
    /// Replace the output directory if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(a: &ConvertArgs, out: &Output) -> Result<ExitCode, Error> {
    if out.progress() {
        eprintln!("converting {} …", a.gguf.display());
    }
    let r = lethe::convert::convert_gguf(&a.gguf, &a.out, a.overwrite)?;
    out.result(&r, || {
        let types: Vec<String> = r
            .tensor_types
            .iter()
            .map(|(t, n)| format!("{n} {t}"))
            .collect();
        format!(
            "{}: {} ({} tensors: {}; {:.1} M parameters; {} embeddings{}{})\n",
            r.out.display(),
            r.architecture,
            r.tensors,
            types.join(", "),
            r.parameters as f64 / 1e6,
            if r.tied_embeddings { "tied" } else { "untied" },
            if r.tokenizer { "; tokenizer.json" } else { "" },
            if r.chat_template {
                "; chat template"
            } else {
                ""
            },
        )
    });
    Ok(ExitCode::SUCCESS)
}
