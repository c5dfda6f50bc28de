#!/usr/bin/env bash
# Regenerates fixtures/text: tiny random transformer checkpoints and the outputs Hugging Face
# transformers computes for them, plus the real all-MiniLM-L6-v2's outputs on a few sentences.
# Uses the pinned tools of scripts/python-refenv.sh (.lethe/refenv; PyTorch from PyPI, a few GB).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/python-refenv.sh
bash scripts/fetch-minilm.sh
exec .lethe/refenv/bin/python scripts/make-text-fixtures.py
