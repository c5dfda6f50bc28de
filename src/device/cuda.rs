//! Opening a CUDA device. candle loads the CUDA libraries when a device is first made and panics
//! when one cannot be loaded, so the libraries are looked for here first: a missing one becomes
//! an error that names it and what provides it.

use crate::error::{Error, Result};
use candle_core::Device;
use std::ffi::CString;

/// The shared libraries a CUDA device needs as soon as it is made (candle creates a cuBLAS
/// handle and a cuRAND generator with every device): what each is, the file names it is found
/// under (CUDA 13's sonames first), and where it comes from.
const LIBRARIES: &[(&str, &[&str], &str)] = &[
    (
        "the CUDA driver",
        &["libcuda.so.1", "libcuda.so"],
        "install the NVIDIA driver (580 or newer for CUDA 13)",
    ),
    (
        "cuBLAS",
        &["libcublas.so.13", "libcublas.so"],
        "install the nvidia-cublas wheel (CUDA 13) or the CUDA toolkit and put its lib \
         directory on LD_LIBRARY_PATH",
    ),
    (
        "cuBLASLt",
        &["libcublasLt.so.13", "libcublasLt.so"],
        "it ships with cuBLAS: put cuBLAS's lib directory on LD_LIBRARY_PATH",
    ),
    (
        "cuRAND",
        &["libcurand.so.10", "libcurand.so"],
        "install the nvidia-curand wheel or the CUDA toolkit and put its lib directory on \
         LD_LIBRARY_PATH",
    ),
];

/// The GPU `ordinal` as a candle device, or an error that says what is missing.
pub fn open(ordinal: usize) -> Result<Device> {
    for (what, files, fix) in LIBRARIES {
        if !files.iter().any(|f| loadable(f)) {
            return Err(Error::Device(format!(
                "device cuda:{ordinal}: {what} cannot be loaded on this machine (looked for {}); \
                 {fix}, or compute on the CPU with --device cpu",
                files.join(", ")
            )));
        }
    }
    Device::new_cuda(ordinal).map_err(|e| {
        Error::Device(format!(
            "device cuda:{ordinal} cannot be opened: {e}; `nvidia-smi -L` lists this machine's \
             GPUs, or compute on the CPU with --device cpu"
        ))
    })
}

/// Whether the dynamic loader finds and can load the shared library `file`.
fn loadable(file: &str) -> bool {
    let Ok(name) = CString::new(file) else {
        return false;
    };
    // SAFETY: `name` is a NUL-terminated string that outlives the call. Loading runs the
    // library's initialisers, which candle's own loading of the same library would run next;
    // the handle is closed at once (the library stays loaded while anything else holds it).
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return false;
        }
        libc::dlclose(handle);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_the_driver_gets_an_error_that_names_it() {
        if loadable("libcuda.so.1") || loadable("libcuda.so") {
            return; // a machine with the driver: nothing to refuse
        }
        let e = open(0).unwrap_err();
        assert!(matches!(e, Error::Device(_)), "{e}");
        let text = e.to_string();
        assert!(text.contains("cuda:0"), "{text}");
        assert!(text.contains("the CUDA driver cannot be loaded"), "{text}");
        assert!(text.contains("--device cpu"), "{text}");
    }

    #[test]
    fn a_library_that_is_not_there_is_not_loadable_and_libc_is() {
        assert!(!loadable("liblethe-no-such-library.so.0"));
        assert!(loadable("libc.so.6"));
        assert!(!loadable("nul\0inside"));
    }
}
