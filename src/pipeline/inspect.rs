//! The commands that take any model lethe knows: `lethe export` writes its ONNX model, and
//! `lethe verify` checks an exported model with ONNX Runtime against candle.

use super::classifier::load_data_for;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::export;
use crate::model::AnyModel;
use crate::rng::Rng;
use crate::text::data::Encoded;
use crate::verify::{self, metrics, runtime, Parity};
use candle_core::Device;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, serde::Serialize)]
pub struct Exported {
    pub model_type: String,
    /// The ONNX file written.
    pub onnx: String,
    /// Its weights file, for models whose weights exceed what one protobuf message holds.
    pub external_data: Option<String>,
}

fn refuse_f16_classifier(model: &AnyModel, f16: bool) -> Result<()> {
    if f16 && matches!(model, AnyModel::Classifier(_)) {
        return Err(Error::Usage(
            "--dtype f16: classifiers export f32 weights only".into(),
        ));
    }
    Ok(())
}

/// `lethe export MODEL --out DIR`: a directory that ONNX serving tools load as they load
/// optimum's exports: `model.onnx` (a decoder's with its key/value cache; `model.onnx_data`
/// beside it when the weights are large) and the checkpoint's config, generation defaults
/// (derived from the config when it has none) and tokenizer files. Written whole or not at all.
pub fn export_onnx_dir(
    model: &Path,
    out: &Path,
    overwrite: bool,
    f16: bool,
    device: &Device,
    progress: bool,
) -> Result<Exported> {
    let opened = AnyModel::open(model, device, progress)?;
    refuse_f16_classifier(&opened, f16)?;
    let source = opened.checkpoint().dir.clone();
    let staging = crate::checkpoint::OutputDir::create(out, &[&source], overwrite)?;
    crate::interrupt::check()?;
    let onnx_path = staging.path().join(export::ONNX_FILE);
    let (model_type, external) = match &opened {
        AnyModel::Classifier(m) => {
            export::write_onnx(&m.arch, &m.params, &onnx_path)?;
            (m.arch.model_type.clone(), false)
        }
        AnyModel::Text(m) => {
            let onnx = m.arch.to_onnx_with(&m.params, &[], f16)?;
            let external =
                export::write_text_onnx(onnx, &onnx_path, export::EXTERNAL_DATA_THRESHOLD)?;
            (m.arch.model_type.clone(), external)
        }
    };
    crate::interrupt::check()?;
    for name in export::DESCRIPTION_FILES {
        let from = source.join(name);
        if from.is_file() {
            let to = staging.path().join(name);
            std::fs::copy(&from, &to).map_err(|e| Error::io(&to, e))?;
        }
    }
    if let AnyModel::Text(m) = &opened {
        let pretty =
            |v: &serde_json::Value| serde_json::to_vec_pretty(v).expect("JSON values serialize");
        if !source.join("generation_config.json").is_file() {
            let config = export::generation_config(&m.checkpoint.config);
            staging.write_file("generation_config.json", &pretty(&config))?;
        }
        if let Some(genai) = export::genai_config(&m.checkpoint.config, &m.arch) {
            staging.write_file("genai_config.json", &pretty(&genai))?;
        }
    }
    let dir = staging.commit()?;
    Ok(Exported {
        model_type,
        onnx: dir.join(export::ONNX_FILE).display().to_string(),
        external_data: external.then(|| dir.join(export::ONNX_DATA_FILE).display().to_string()),
    })
}

/// `lethe export MODEL --out FILE.onnx`: the ONNX model of a checkpoint, written to `out` (and
/// `out`_data beside it when the weights are large), whole or not at all.
pub fn export_onnx(
    model: &Path,
    out: &Path,
    overwrite: bool,
    f16: bool,
    device: &Device,
    progress: bool,
) -> Result<Exported> {
    if out.exists() && !overwrite {
        return Err(Error::Usage(format!(
            "{} exists; lethe replaces it only when asked to overwrite",
            out.display()
        )));
    }
    let model = AnyModel::open(model, device, progress)?;
    refuse_f16_classifier(&model, f16)?;
    crate::interrupt::check()?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Usage(format!("{} is not a file name", out.display())))?;
    let data_name = export::data_file_name(&name);
    // Written under temporary names beside the target, then renamed: an interrupted or failed
    // export leaves nothing.
    let tmp = out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let tmp_data = out.with_file_name(format!(".{data_name}.partial-{}", std::process::id()));
    let result = (|| -> Result<Exported> {
        let (model_type, external) = match &model {
            AnyModel::Classifier(m) => {
                export::write_onnx(&m.arch, &m.params, &tmp)?;
                (m.arch.model_type.clone(), false)
            }
            AnyModel::Text(m) => {
                let onnx = m.arch.to_onnx_with(&m.params, &[], f16)?;
                let external = export::write_text_onnx_named(
                    onnx,
                    &tmp,
                    &tmp_data,
                    &data_name,
                    export::EXTERNAL_DATA_THRESHOLD,
                )?;
                (m.arch.model_type.clone(), external)
            }
        };
        crate::interrupt::check()?;
        let data_path = out.with_file_name(&data_name);
        if external {
            std::fs::rename(&tmp_data, &data_path).map_err(|e| Error::io(&data_path, e))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        Ok(Exported {
            model_type,
            onnx: out.display().to_string(),
            external_data: external.then(|| data_path.display().to_string()),
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&tmp_data);
    }
    result
}

/// The token sequences a text model is verified on when no data is given: three of different
/// lengths (so padding is exercised), drawn from the vocabulary by a fixed seed.
fn probe_sequences(vocab: usize, max_positions: usize) -> Vec<Encoded> {
    let mut rng = Rng::derived(0, "verify-probe");
    [16usize, 11, 5]
        .iter()
        .map(|&len| {
            let len = len.min(max_positions).max(1);
            Encoded {
                ids: (0..len)
                    .map(|_| (rng.next_u64() % vocab as u64) as u32)
                    .collect(),
                target_start: 0,
                fact: None,
            }
        })
        .collect()
}

/// `lethe verify`: the exported `model.onnx` of `dir` run by ONNX Runtime against the checkpoint
/// run by candle: on the training and test data for a classifier (`data`, at most `limit`
/// samples of each), on fixed token sequences for a text model.
pub fn verify_dir(
    dir: &Path,
    data: impl FnOnce() -> Result<DataSpec>,
    onnxruntime: Option<&Path>,
    limit: Option<usize>,
    device: &Device,
    progress: bool,
) -> Result<Parity> {
    let library = runtime::find_library(onnxruntime)?;
    let model = AnyModel::open(dir, device, progress)?;
    let onnx: PathBuf = model.checkpoint().dir.join(export::ONNX_FILE);
    if !onnx.is_file() {
        return Err(Error::Usage(format!(
            "{} has no {} to verify (write one with `lethe export {} --out {}`)",
            dir.display(),
            export::ONNX_FILE,
            dir.display(),
            onnx.display()
        )));
    }
    match &model {
        AnyModel::Classifier(m) => {
            let data = load_data_for(&m.arch, &data()?)?;
            let take = |n: usize| -> Vec<usize> { (0..limit.map_or(n, |l| l.min(n))).collect() };
            let train_idx = take(data.train.len());
            let test_idx = take(data.test.len());
            let train_logits = metrics::logits(&m.arch, &m.params, &data.train, &train_idx)?;
            crate::interrupt::check()?;
            let test_logits = metrics::logits(&m.arch, &m.params, &data.test, &test_idx)?;
            verify::parity(
                &onnx,
                &library,
                &[
                    (&data.train, &train_idx, &train_logits),
                    (&data.test, &test_idx, &test_logits),
                ],
                m.arch.num_labels(),
            )
        }
        AnyModel::Text(m) => {
            let rows = probe_sequences(m.arch.vocab_size(), m.arch.max_positions());
            verify::text_parity(&onnx, &library, &m.arch, &m.params, &rows, 0, None)
        }
    }
}
