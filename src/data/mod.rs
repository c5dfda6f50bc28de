//! Labelled image data: gzipped or raw IDX (MNIST / Fashion-MNIST), the UCI digits CSV, and
//! lethe's own safetensors-based format. See docs/data.md.

pub mod formats;
mod split;

pub use split::{select_forget, ForgetSpec, Split};

use crate::error::{Error, Result};
use crate::rng::Rng;
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};

/// Images scaled to [0, 1] in NCHW order, with integer class labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub images: Vec<f32>,
    /// [channels, height, width] of one image.
    pub shape: [usize; 3],
    pub labels: Vec<u32>,
    /// Class names where the format carries them.
    pub label_names: Option<Vec<String>>,
    pub source: String,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn num_classes(&self) -> usize {
        self.labels
            .iter()
            .max()
            .map(|&m| m as usize + 1)
            .unwrap_or(0)
    }

    /// The images and labels of the samples `indices`, in that order.
    pub fn gather(&self, indices: &[usize]) -> (Vec<f32>, Vec<u32>) {
        let d = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * d);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(&self.images[i * d..(i + 1) * d]);
            labels.push(self.labels[i]);
        }
        (images, labels)
    }

    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let (images, labels) = self.gather(indices);
        Dataset {
            images,
            shape: self.shape,
            labels,
            label_names: self.label_names.clone(),
            source: self.source.clone(),
        }
    }

    /// A batch of images [n, C, H, W] and their labels, for the given sample indices.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<(Tensor, Vec<u32>)> {
        let (images, labels) = self.gather(indices);
        let [c, h, w] = self.shape;
        let t = Tensor::from_vec(images, (indices.len(), c, h, w), device)?;
        Ok((t, labels))
    }
}

/// Where training and test data come from.
#[derive(Clone, Debug)]
pub struct DataSpec {
    /// A directory in Fashion-MNIST layout (train-* and t10k-* IDX files), an IDX images file,
    /// a digits CSV, or a lethe .safetensors dataset.
    pub train: PathBuf,
    /// The test set; defaults to the t10k files of a directory, else a holdout of `train`.
    pub test: Option<PathBuf>,
    /// Share of the training file held out as the test set when no test set is given.
    pub holdout: f64,
    pub seed: u64,
}

/// Training and test sets.
pub struct Data {
    pub train: Dataset,
    pub test: Dataset,
}

pub fn load(spec: &DataSpec) -> Result<Data> {
    let train = load_split(&spec.train, "train")?;
    let test = match (&spec.test, spec.train.is_dir()) {
        (Some(p), _) => Some(load_split(p, "t10k")?),
        (None, true) => Some(load_split(&spec.train, "t10k")?),
        (None, false) => None,
    };
    let (train, test) = match test {
        Some(test) => (train, test),
        None => holdout(train, spec.holdout, spec.seed)?,
    };
    if train.shape != test.shape {
        return Err(Error::Data {
            path: spec.test.clone().unwrap_or_else(|| spec.train.clone()),
            reason: format!(
                "test images are {:?} but training images are {:?}",
                test.shape, train.shape
            ),
        });
    }
    Ok(Data { train, test })
}

fn holdout(all: Dataset, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Usage(format!(
            "{}: no test set given, and no share of the training data held out as one (the holdout must be between 0 and 1)",
            all.source
        )));
    }
    let mut order: Vec<usize> = (0..all.len()).collect();
    Rng::derived(seed, "holdout").shuffle(&mut order);
    let n_test = ((all.len() as f64) * fraction).round() as usize;
    let (test_idx, train_idx) = order.split_at(n_test);
    let mut test_idx = test_idx.to_vec();
    let mut train_idx = train_idx.to_vec();
    test_idx.sort_unstable();
    train_idx.sort_unstable();
    Ok((all.subset(&train_idx), all.subset(&test_idx)))
}

/// Loads one split: `prefix` picks `train` or `t10k` files inside an IDX directory.
pub fn load_split(path: &Path, prefix: &str) -> Result<Dataset> {
    let ds = if path.is_dir() {
        let images = find_idx(path, &format!("{prefix}-images-idx3-ubyte"))?;
        let labels = find_idx(path, &format!("{prefix}-labels-idx1-ubyte"))?;
        formats::read_idx_pair(&images, &labels)?
    } else {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".safetensors") {
            formats::read_native(path)?
        } else if name.ends_with(".csv") || name.ends_with(".csv.gz") {
            formats::read_digits_csv(path)?
        } else if name.contains("images-idx3") {
            let labels = path.with_file_name(name.replace("images-idx3", "labels-idx1"));
            formats::read_idx_pair(path, &labels)?
        } else {
            return Err(Error::Data {
                path: path.to_path_buf(),
                reason: "unknown data format: expected a directory of IDX files, *-images-idx3-ubyte[.gz], *.csv[.gz] or *.safetensors".into(),
            });
        }
    };
    if ds.is_empty() {
        return Err(Error::Data {
            path: path.to_path_buf(),
            reason: "holds no samples".into(),
        });
    }
    Ok(ds)
}

fn find_idx(dir: &Path, stem: &str) -> Result<PathBuf> {
    for candidate in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(candidate);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Data {
        path: dir.to_path_buf(),
        reason: format!("no {stem}[.gz] in this directory"),
    })
}
