//! The precision a language model's frozen weights are held in (`--dtype`): f32, or bf16, which
//! halves their memory on a GPU. Whatever is chosen, trainable weights, LoRA adapters, optimizer
//! state, losses, log-probabilities and the dual variable stay f32 (mixed precision), and every
//! output keeps the checkpoint's own dtype: weights that did not train are copied byte for byte,
//! trained ones start from and are merged into the checkpoint's values read in f32.

use crate::error::{Error, Result};
use candle_core::DType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    Bf16,
}

/// The names `--dtype` takes.
pub const NAMES: &str = "f32, bf16";

impl Precision {
    pub fn parse(name: &str) -> Result<Precision> {
        match name.trim() {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(Error::Usage(format!(
                "{other:?} is not a dtype; lethe takes {NAMES}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The dtype of the frozen weight matrices (embeddings and linear layers). Vectors (norms,
    /// biases) stay f32: they are small, and norms are where precision matters most.
    pub fn frozen_dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }

    /// The precision a run takes when none is chosen: `gpu` says whether it computes on a GPU,
    /// `text` whether the model is a language model.
    pub fn default_for(gpu: bool, text: bool) -> Precision {
        let name = if text && gpu {
            crate::defaults::DTYPE_GPU_TEXT
        } else {
            crate::defaults::DTYPE
        };
        Precision::parse(name).expect("the defaults name a dtype")
    }

    /// The precision of a run: `chosen` (`--dtype` or a job's `dtype`) or the default. Classifiers
    /// are small and train whole: they take f32 only.
    pub fn resolve(chosen: Option<&str>, gpu: bool, text: bool) -> Result<Precision> {
        let precision = match chosen {
            Some(name) => Precision::parse(name)?,
            None => Precision::default_for(gpu, text),
        };
        if !text && precision != Precision::F32 {
            return Err(Error::Usage(format!(
                "--dtype {}: classifiers train in f32; the dtype applies to language models",
                precision.name()
            )));
        }
        Ok(precision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_usage_errors() {
        for p in [Precision::F32, Precision::Bf16] {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
        }
        let e = Precision::parse("fp8").unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("f32, bf16"), "{e}");
    }

    #[test]
    fn the_cpu_keeps_f32_a_gpu_takes_bf16_for_text_and_classifiers_refuse_bf16() {
        assert_eq!(Precision::default_for(true, true), Precision::Bf16);
        assert_eq!(Precision::default_for(true, false), Precision::F32);
        assert_eq!(Precision::default_for(false, true), Precision::F32);
        assert_eq!(
            Precision::resolve(None, false, true).unwrap(),
            Precision::F32
        );
        assert_eq!(
            Precision::resolve(Some("bf16"), false, true).unwrap(),
            Precision::Bf16
        );
        let e = Precision::resolve(Some("bf16"), false, false).unwrap_err();
        assert!(e.is_usage(), "{e}");
        assert_eq!(
            Precision::resolve(Some("f32"), false, false).unwrap(),
            Precision::F32
        );
    }
}
