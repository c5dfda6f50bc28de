#!/usr/bin/env bash
# The Python reference environment, .lethe/refenv: PyTorch, transformers, peft, gguf,
# optimum-onnx, ONNX Runtime and onnxruntime-genai, at pinned versions from PyPI (a few GB:
# PyPI's PyTorch wheel brings CUDA libraries). The fixture scripts and the tests that load
# lethe's outputs with Python's peft, optimum and onnxruntime-genai use it. The file
# .lethe/refenv/complete marks an environment whose install finished; the tests look for it.
# pip's download cache is off: PyPI's PyTorch and CUDA wheels would otherwise stay on disk
# (several GB) beside the 7 GB they install to.
set -euo pipefail
cd "$(dirname "$0")/.."
env=.lethe/refenv
if [ ! -x "$env/bin/python" ]; then
  python3 -m venv "$env"
fi
rm -f "$env/complete"
"$env/bin/pip" install -q --no-cache-dir torch==2.9.1 transformers==4.57.1 safetensors==0.6.2 numpy==2.4.6 \
  peft==0.22.0 accelerate==1.16.0 gguf==0.19.0 optimum-onnx==0.1.0 optimum==2.1.0 onnx==1.23.2 \
  onnxruntime==1.31.1 onnxruntime-genai==0.18.0
touch "$env/complete"
