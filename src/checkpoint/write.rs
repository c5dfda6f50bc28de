//! Writing outputs whole or not at all, and the edited checkpoint itself.

use super::{Checkpoint, Shard};
use crate::error::{Error, Result};
use candle_core::Tensor;
use safetensors::{Dtype, View};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An output directory that is assembled under a temporary name beside its final place and
/// renamed into place by [`OutputDir::commit`]. Dropped without a commit, it leaves nothing behind,
/// so a failed run (bad input, full disk, Ctrl-C between files) never leaves half an output.
pub struct OutputDir {
    staging: PathBuf,
    target: PathBuf,
    overwrite: bool,
    committed: bool,
}

impl OutputDir {
    /// `inputs` are directories the run reads from; writing into one of them is refused.
    pub fn create(target: &Path, inputs: &[&Path], overwrite: bool) -> Result<OutputDir> {
        let target_abs = absolute(target)?;
        for input in inputs {
            let input_abs = absolute(input)?;
            if target_abs == input_abs || target_abs.starts_with(&input_abs) {
                return Err(Error::Usage(format!(
                    "the output directory {} is inside the input {}; lethe never writes into its inputs: choose another output directory",
                    target.display(),
                    input.display()
                )));
            }
        }
        if target_abs.exists() {
            let empty = target_abs
                .read_dir()
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty && !overwrite {
                return Err(Error::OutputNotEmpty(target.to_path_buf()));
            }
        }
        let parent = target_abs
            .parent()
            .ok_or_else(|| Error::Usage(format!("{} has no parent directory", target.display())))?;
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let name = target_abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        }
        std::fs::create_dir(&staging).map_err(|e| Error::io(&staging, e))?;
        Ok(OutputDir {
            staging,
            target: target_abs,
            overwrite,
            committed: false,
        })
    }

    /// Where files are written before the commit.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Writes one file into the staging directory.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.staging.join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    /// Moves the finished directory into place. With `overwrite`, an existing directory is
    /// replaced only after the new one is complete.
    pub fn commit(mut self) -> Result<PathBuf> {
        sync_dir(&self.staging);
        let empty_dir = self
            .target
            .read_dir()
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if empty_dir {
            // An empty directory holds nothing to lose; it was accepted at creation.
            std::fs::remove_dir(&self.target).map_err(|e| Error::io(&self.target, e))?;
        }
        if self.target.exists() {
            if !self.overwrite {
                return Err(Error::Usage(format!(
                    "output directory {} appeared while the run was writing",
                    self.target.display()
                )));
            }
            let old = self.staging.with_extension("old");
            std::fs::rename(&self.target, &old).map_err(|e| Error::io(&self.target, e))?;
            std::fs::rename(&self.staging, &self.target).map_err(|e| Error::io(&self.target, e))?;
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        } else {
            std::fs::rename(&self.staging, &self.target).map_err(|e| Error::io(&self.target, e))?;
        }
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Ok(f) = std::fs::File::open(entry.path()) {
                let _ = f.sync_all();
            }
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    // Canonicalize the longest existing prefix so that symlinks and `..` cannot disguise an input.
    let abs = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let mut existing = abs.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for part in rest.into_iter().rev() {
        out.push(part);
    }
    Ok(out)
}

/// Tensor bytes for the safetensors serializer, borrowed from the input or freshly encoded.
struct TensorBytes<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
}

impl View for &TensorBytes<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes `checkpoint` with the tensors in `updated` replaced, into `out` (a staging directory).
/// Tensors not in `updated` keep their exact bytes; updated ones are stored in their original
/// dtype. Every other file of the input directory is copied, except those `withhold` names (by
/// their path relative to the checkpoint directory); those are returned, in that form.
pub fn write_edited(
    checkpoint: &Checkpoint,
    updated: &BTreeMap<String, Tensor>,
    out: &Path,
    withhold: &dyn Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>> {
    for name in updated.keys() {
        if !checkpoint.contains(name) {
            return Err(Error::MissingTensor(name.clone()));
        }
    }
    for shard in &checkpoint.shards {
        write_shard(shard, updated, &out.join(&shard.file_name))?;
    }
    let shards: Vec<&Path> = checkpoint
        .shards
        .iter()
        .map(|s| Path::new(s.file_name.as_str()))
        .collect();
    let mut withheld = Vec::new();
    let skip = |relative: &Path| shards.contains(&relative) || withhold(relative);
    copy_other_files(&checkpoint.dir, out, Path::new(""), &skip, &mut withheld)?;
    withheld.retain(|p| !shards.contains(&p.as_path()));
    Ok(withheld)
}

fn write_shard(shard: &Shard, updated: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let mut entries = Vec::new();
    for name in shard.names() {
        let info = shard.info(&name).expect("listed name");
        let data = match updated.get(&name) {
            Some(t) => {
                if t.dims() != info.shape.as_slice() {
                    return Err(Error::ShapeMismatch {
                        name: name.clone(),
                        expected: info.shape.clone(),
                        found: t.dims().to_vec(),
                    });
                }
                Cow::Owned(encode(t, info.dtype, &name)?)
            }
            None => Cow::Borrowed(shard.bytes(&name).expect("listed name")),
        };
        entries.push((
            name,
            TensorBytes {
                dtype: info.dtype,
                shape: info.shape.clone(),
                data,
            },
        ));
    }
    let bytes = safetensors::serialize(
        entries.iter().map(|(n, t)| (n.as_str(), t)),
        shard.user_metadata().cloned(),
    )
    .map_err(|e| Error::Output(format!("{}: {e}", path.display())))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Encodes an f32 tensor in a checkpoint dtype, little-endian.
fn encode(t: &Tensor, dtype: Dtype, name: &str) -> Result<Vec<u8>> {
    let values: Vec<f32> = t.flatten_all()?.to_vec1()?;
    let bytes = match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::F64 => values
            .iter()
            .flat_map(|v| (*v as f64).to_le_bytes())
            .collect(),
        other => {
            return Err(Error::Output(format!(
                "cannot store trained tensor {name} as {other:?}"
            )))
        }
    };
    Ok(bytes)
}

/// Copies the files under `from` into `to`, except those `skip` names by their path relative to
/// the checkpoint directory (`prefix` is `from`'s); the skipped ones are added to `skipped`.
fn copy_other_files(
    from: &Path,
    to: &Path,
    prefix: &Path,
    skip: &dyn Fn(&Path) -> bool,
    skipped: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut entries = std::fs::read_dir(from)
        .map_err(|e| Error::io(from, e))?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io(from, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let relative = prefix.join(&name);
        if skip(&relative) {
            skipped.push(relative);
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        if src.is_dir() {
            std::fs::create_dir_all(&dst).map_err(|e| Error::io(&dst, e))?;
            copy_other_files(&src, &dst, &relative, skip, skipped)?;
        } else if src.is_file() {
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&dst, e))?;
        }
    }
    Ok(())
}

/// Writes a new single-file checkpoint: `config.json` and `model.safetensors` with every tensor
/// stored as `dtype`.
pub fn write_new(
    dir: &Path,
    config: &serde_json::Value,
    tensors: &[(String, Tensor)],
    dtype: Dtype,
) -> Result<()> {
    write_safetensors(&dir.join(super::SINGLE_FILE), tensors, dtype, pt_metadata())?;
    let config_path = dir.join(super::CONFIG_FILE);
    let text = serde_json::to_string_pretty(config).expect("a JSON value serialises");
    std::fs::write(&config_path, text).map_err(|e| Error::io(&config_path, e))
}

/// Writes f32 tensors to one safetensors file (adapters, converted checkpoints, run states).
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    write_safetensors(path, tensors, Dtype::F32, pt_metadata())
}

/// The header metadata transformers writes into its own files and checks when it loads one.
fn pt_metadata() -> Option<std::collections::HashMap<String, String>> {
    Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]))
}

fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    dtype: Dtype,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    let entries: Vec<(String, TensorBytes)> = tensors
        .iter()
        .map(|(name, t)| {
            Ok((
                name.clone(),
                TensorBytes {
                    dtype,
                    shape: t.dims().to_vec(),
                    data: Cow::Owned(encode(t, dtype, name)?),
                },
            ))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(entries.iter().map(|(n, t)| (n.as_str(), t)), metadata)
        .map_err(|e| Error::Output(format!("{}: {e}", path.display())))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}
