#!/usr/bin/env bash
# One LoRA igs step on SmolLM2-135M (8 sequences × 128 tokens: 4 forget, 4 retain; loss on the
# last 32 tokens), timed in lethe and in PyTorch + peft on this machine, side by side.
# PyTorch is installed into .lethe/refenv for the benchmark only.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${STEPS:-5}
env=.lethe/refenv
if [ ! -x "$env/bin/python" ]; then
  python3 -m venv "$env"
fi
"$env/bin/pip" install -q torch==2.9.1 transformers==4.57.1 peft==0.17.1 safetensors numpy
bash scripts/fetch-smollm2.sh
cargo build --release -q
model=.lethe/models/smollm2-135m-instruct
if [ ! -f "$model/model.safetensors" ]; then
  ./target/release/lethe convert .lethe/models/SmolLM2-135M-Instruct.Q4_1.gguf "$model" -q
fi
args=(--batch 8 --seq-len 128 --answer-len 32 --lora-rank 8 --lora-alpha 16 --lora-targets q_proj,v_proj --steps "$steps" --warmup 1)
lethe_json=$(./target/release/lethe bench-text "$model" "${args[@]}" --json)
torch_json=$("$env/bin/python" scripts/bench_pytorch_step.py "$model" "${args[@]}" --threads "$(nproc)" 2>/dev/null)
python3 - "$lethe_json" "$torch_json" <<'PY'
import json, sys
l, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{'':24}{'lethe':>12}{'PyTorch+peft':>14}{'ratio':>8}")
print(f"{'median step (ms)':24}{l['step_ms_median']:>12.0f}{t['step_ms_median']:>14.0f}{l['step_ms_median']/t['step_ms_median']:>8.2f}")
print(f"{'peak RSS (MiB)':24}{l['peak_rss_mib']:>12.0f}{t['peak_rss_mib']:>14.0f}{l['peak_rss_mib']/t['peak_rss_mib']:>8.2f}")
print(f"{'trainable parameters':24}{l['trainable_parameters']:>12}{t['trainable_parameters']:>14}")
print(f"torch {t['torch']}, {t['threads']} threads")
PY
