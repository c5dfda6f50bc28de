#!/usr/bin/env bash
# Forgets the class "Dress" from the bundled Fashion-MNIST classifier with implicit gradient
# surgery, exports safetensors + ONNX, verifies the ONNX model with ONNX Runtime and prints the
# before/after table. Extra arguments go to `lethe unlearn`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-onnxruntime.sh >/dev/null
cargo build --release --quiet
exec ./target/release/lethe unlearn models/fashion-mnist-mlp \
  --data fixtures/fashion-mnist \
  --forget-class Dress \
  --out target/demo/fashion-mnist-mlp-without-dress --overwrite \
  --max-test-drop 1.5 --min-ua 99 --min-mia 95 \
  "$@"
