#!/usr/bin/env bash
# Builds lethe with CUDA (the `cuda` feature) on a machine without a GPU and without a CUDA
# toolkit, from the package registries alone (docs/gpu.md, "Building"):
#
#   scripts/build-cuda.sh            # -> target/cuda/release/lethe and target/cuda/lethe.xz
#   scripts/build-cuda.sh --check    # type-checks the CUDA build and its tests, links nothing
#
# 1. nvcc, its compiler back end and the CUDA headers come from PyPI's CUDA 13.0 wheels, pinned:
#    a GPU machine with a 580 driver (CUDA 13.0) cannot load PTX from a newer compiler, and the
#    nvcc wheel's own requirements are unpinned. They go into .lethe/cuda-13.0/.
# 2. The binary loads the CUDA libraries when a device is opened (dlopen), so that it starts on
#    machines without them and `--device cuda` can say what is missing. candle-core asks cudarc
#    to link them instead; a copy of cudarc whose build script turns that request into its
#    loading mode is used for this build only (Cargo.toml and Cargo.lock stay as they are).
# 3. The CUDA runtime that candle's kernels link is taken from the wheel's static archive.
# 4. Kernels are compiled for compute capability 9.0 (H100/H200) unless CUDA_COMPUTE_CAP says
#    otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

mode=build
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *) echo "usage: scripts/build-cuda.sh [--check]" >&2; exit 2 ;;
esac

CUDARC_VERSION=0.19.10
toolkit=$root/.lethe/cuda-13.0
wheels=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-cccl==13.0.85
)
cu13=$toolkit/nvidia/cu13
if [ ! -x "$cu13/bin/nvcc" ]; then
  echo "lethe: fetching the CUDA 13.0 compiler wheels into $toolkit" >&2
  rm -rf "$toolkit.partial"
  python3 -m pip install --quiet --no-deps --target "$toolkit.partial" "${wheels[@]}"
  rm -rf "$toolkit"
  mv "$toolkit.partial" "$toolkit"
fi

# cudarc's source, as cargo downloads it, copied once with its build script patched.
cargo fetch --quiet
registry_copy=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-$CUDARC_VERSION | head -n1)
patched=$root/target/cuda-patch/cudarc-$CUDARC_VERSION
if [ ! -f "$patched/.lethe-patched" ]; then
  rm -rf "$patched"
  mkdir -p "$(dirname "$patched")"
  cp -r "$registry_copy" "$patched"
  python3 - "$patched/build.rs" <<'PY'
import sys
path = sys.argv[1]
src = open(path).read()
linking = '    #[cfg(feature = "dynamic-linking")]\n    dynamic_linking(major, minor);\n'
if linking not in src:
    sys.exit(f"{path}: cudarc's build script has changed; update scripts/build-cuda.sh")
src = src.replace(linking, '    // lethe: load the libraries at run time instead of linking them.\n'
                  '    #[cfg(feature = "dynamic-linking")]\n'
                  '    println!("cargo:rustc-cfg=feature=\\"dynamic-loading\\"");\n')
open(path, "w").write(src)
PY
  touch "$patched/.lethe-patched"
fi

# A directory that holds only the static CUDA runtime, under the name the linker asks for.
linkdir=$root/target/cuda-patch/lib
mkdir -p "$linkdir"
ln -sf "$cu13/lib/libcudart_static.a" "$linkdir/libcudart.a"

export PATH=$cu13/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=13000
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$linkdir"

# The patch must not change the project's lock file.
cp Cargo.lock target/cuda-patch/Cargo.lock.saved
trap 'cp target/cuda-patch/Cargo.lock.saved Cargo.lock' EXIT
args=(--release --features cuda --target-dir target/cuda
      --config "patch.crates-io.cudarc.path='$patched'")
if [ "$mode" = check ]; then
  cargo check "${args[@]}" --all-targets
  exit 0
fi
cargo build "${args[@]}" --bin lethe
bin=target/cuda/release/lethe
strip "$bin"
xz -T0 -6 -c "$bin" > target/cuda/lethe.xz.partial
mv target/cuda/lethe.xz.partial target/cuda/lethe.xz
echo "lethe: built $bin ($(du -h "$bin" | cut -f1)); target/cuda/lethe.xz ($(du -h target/cuda/lethe.xz | cut -f1)) is the copy to carry to a GPU machine" >&2
