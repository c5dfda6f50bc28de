#!/usr/bin/env bash
# The GPU check (docs/gpu.md): parity of the CUDA build with the CPU, the demo on cuda, a LoRA
# igs step against PyTorch + peft, and the largest Llama that fits; figures into
# target/gpu-check/gpu-check.{json,md}. Needs Python with PyTorch, transformers and peft for the
# comparison, no Rust and no network; skips its GPU parts (saying so) where there is no GPU.
#
#   scripts/gpu-check.sh                 # with target/cuda/release/lethe, or target/cuda/lethe.xz
#   scripts/gpu-check.sh --quick         # tiny models: try it on a CPU
#   LETHE_BIN=path scripts/gpu-check.sh  # another binary
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LETHE_BIN:-target/cuda/release/lethe}
if [ ! -x "$bin" ] && [ -f target/cuda/lethe.xz ]; then
  # The carried copy (a GPU machine takes the working tree and a few carried files).
  bin=$(mktemp -d)/lethe
  xz -dc target/cuda/lethe.xz > "$bin"
  chmod +x "$bin"
fi
if [ ! -x "$bin" ]; then
  echo "error: no CUDA build of lethe at $bin: build one with scripts/build-cuda.sh" >&2
  exit 1
fi
exec "${PYTHON:-python3}" scripts/gpu_check.py --lethe "$bin" "$@"
