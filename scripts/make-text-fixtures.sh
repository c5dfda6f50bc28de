#!/usr/bin/env bash
# Regenerates fixtures/text: tiny random transformer checkpoints and the outputs Hugging Face
# transformers computes for them, plus the real all-MiniLM-L6-v2's outputs on a few sentences.
# Installs its pinned tools into .lethe/refenv (PyTorch from PyPI; a few GB).
set -euo pipefail
cd "$(dirname "$0")/.."
env=.lethe/refenv
if [ ! -x "$env/bin/python" ]; then
  python3 -m venv "$env"
fi
"$env/bin/pip" install -q torch==2.9.1 transformers==4.57.1 safetensors==0.6.2 numpy
bash scripts/fetch-minilm.sh
exec "$env/bin/python" scripts/make-text-fixtures.py
