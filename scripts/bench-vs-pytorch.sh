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
# The two run in alternation, ROUNDS times: this machine's speed drifts by tens of percent over
# minutes, so each ratio compares runs made moments apart, and the median ratio is reported.
rounds=${ROUNDS:-3}
results=()
for round in $(seq "$rounds"); do
  l=$(./target/release/lethe bench-text "$model" "${args[@]}" --json)
  t=$("$env/bin/python" scripts/bench_pytorch_step.py "$model" "${args[@]}" --threads "$(nproc)" 2>/dev/null)
  results+=("$l" "$t")
done
python3 - "${results[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
pairs = list(zip(runs[0::2], runs[1::2]))
print(f"{'round':<8}{'lethe ms':>10}{'torch ms':>10}{'ratio':>7}{'lethe MiB':>11}{'torch MiB':>11}{'ratio':>7}")
for i, (l, t) in enumerate(pairs, 1):
    print(f"{i:<8}{l['step_ms_median']:>10.0f}{t['step_ms_median']:>10.0f}"
          f"{l['step_ms_median'] / t['step_ms_median']:>7.2f}{l['peak_rss_mib']:>11.0f}"
          f"{t['peak_rss_mib']:>11.0f}{l['peak_rss_mib'] / t['peak_rss_mib']:>7.2f}")
time_ratio = statistics.median(l['step_ms_median'] / t['step_ms_median'] for l, t in pairs)
mem_ratio = statistics.median(l['peak_rss_mib'] / t['peak_rss_mib'] for l, t in pairs)
l, t = pairs[0]
print(f"median ratio: time {time_ratio:.2f}, peak RSS {mem_ratio:.2f} (targets ≤ 1.0)")
print(f"trainable parameters: lethe {l['trainable_parameters']}, torch {t['trainable_parameters']}")
print(f"torch {t['torch']}, {t['threads']} threads")
PY
