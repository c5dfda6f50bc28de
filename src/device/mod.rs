//! The device a run computes on, chosen once (`--device`, or `device` in a job file) and carried
//! by the loaded parameters from then on.

// Built in every test build too (it needs nothing of CUDA to compile), so that its checks are
// tested on machines without a GPU.
#[cfg(any(feature = "cuda", test))]
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod cuda;

use crate::error::{Error, Result};
use candle_core::Device;

/// The devices lethe names, as `--device` takes them. `cuda` needs a build with the `cuda`
/// feature (scripts/build-cuda.sh) and a machine with an NVIDIA GPU and driver.
pub const NAMES: &str = "cpu, cuda, cuda:N";

/// Reads a device name: `cpu`, `cuda` (the first GPU) or `cuda:N`, and opens that device. A
/// CUDA device that cannot be used — a build without CUDA, a machine without the driver, its
/// libraries or the GPU — is an [`Error::Device`] that says which and what to do.
pub fn parse(name: &str) -> Result<Device> {
    match name.trim() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => open_cuda(0),
        n => match n.strip_prefix("cuda:").filter(|i| is_index(i)) {
            Some(i) => open_cuda(i.parse().map_err(|_| not_a_device(n))?),
            None => Err(not_a_device(n)),
        },
    }
}

fn not_a_device(name: &str) -> Error {
    Error::Usage(format!("{name:?} is not a device; lethe takes {NAMES}"))
}

fn is_index(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    cuda::open(ordinal)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Err(Error::Device(format!(
        "device cuda:{ordinal}: this lethe was built without CUDA; build one with \
         scripts/build-cuda.sh (docs/gpu.md), or compute on the CPU with --device cpu"
    )))
}

/// The name of a device as `--device` takes it.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Process-wide settings for the device, applied once before any work: the CPU's allocator and
/// thread-pool tuning (crate::runtime) applies to CPU runs only.
pub fn prepare(device: &Device) {
    if device.is_cpu() {
        crate::runtime::tune_for_training();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_taken_and_unknown_names_are_refused_as_usage() {
        assert!(parse("cpu").unwrap().is_cpu());
        for bad in ["tpu", "cuda:x", "cuda:", "cuda:-1", "CUDA"] {
            let e = parse(bad).unwrap_err();
            assert!(e.is_usage(), "{bad}: {e}");
            assert!(e.to_string().contains("not a device"), "{bad}: {e}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_in_a_build_without_it_says_so_and_how_to_get_it() {
        for name in ["cuda", "cuda:0", "cuda:3"] {
            let e = parse(name).unwrap_err();
            assert!(matches!(e, Error::Device(_)), "{name}: {e}");
            assert!(!e.is_usage());
            let text = e.to_string();
            assert!(text.contains("built without CUDA"), "{text}");
            assert!(text.contains("scripts/build-cuda.sh"), "{text}");
        }
        assert!(parse("cuda:3").unwrap_err().to_string().contains("cuda:3"));
    }
}
