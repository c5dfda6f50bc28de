//! The device a run computes on, chosen once (`--device`, or `device` in a job file) and carried
//! by the loaded parameters from then on.

use crate::error::{Error, Result};
use candle_core::Device;

/// The devices this build of lethe computes on, as `--device` names them.
pub const SUPPORTED: &[&str] = &["cpu"];

/// Reads a device name: `cpu`. (`cuda` and `cuda:N` are recognised and refused with what to do
/// instead: this build has no CUDA backend.)
pub fn parse(name: &str) -> Result<Device> {
    match name.trim() {
        "cpu" => Ok(Device::Cpu),
        n if n == "cuda" || n.strip_prefix("cuda:").is_some_and(is_index) => {
            Err(Error::Usage(format!(
                "device {n:?}: this build of lethe computes on the CPU only; choose the device cpu"
            )))
        }
        other => Err(Error::Usage(format!(
            "{other:?} is not a device; lethe takes {}",
            SUPPORTED.join(", ")
        ))),
    }
}

fn is_index(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
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
    fn cpu_is_taken_and_everything_else_refused_with_a_reason() {
        assert!(parse("cpu").unwrap().is_cpu());
        let cuda = parse("cuda:0").unwrap_err().to_string();
        assert!(cuda.contains("CPU only"), "{cuda}");
        assert!(parse("cuda").is_err());
        let other = parse("tpu").unwrap_err().to_string();
        assert!(other.contains("not a device"), "{other}");
        assert!(parse("cuda:x")
            .unwrap_err()
            .to_string()
            .contains("not a device"));
    }
}
