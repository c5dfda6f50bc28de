#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library that `lethe verify` loads, from the PyPI wheel
# onnxruntime==1.31.1 (the version the `ort` crate's API level is built against).
# Result: .lethe/onnxruntime/libonnxruntime.so (a path lethe looks at by default).
set -euo pipefail
version=1.31.1
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.lethe/onnxruntime"
lib="$dest/libonnxruntime.so"
if [ -f "$lib" ]; then
  echo "$lib"
  exit 0
fi
python=$(command -v python3 || command -v python || true)
if [ -z "$python" ]; then
  echo "error: python3 with pip is needed to fetch the onnxruntime wheel from PyPI" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-cache-dir --no-deps --only-binary=:all: --dest "$work" "onnxruntime==$version" >&2
wheel=$(ls "$work"/onnxruntime-*.whl | head -n 1)
"$python" - "$wheel" "$work/unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if "/capi/libonnxruntime.so" in name:
            z.extract(name, sys.argv[2])
PY
found=$(find "$work/unpacked" -name "libonnxruntime.so.$version" | head -n 1)
if [ -z "$found" ]; then
  echo "error: the wheel $wheel holds no libonnxruntime.so.$version" >&2
  exit 1
fi
mkdir -p "$dest"
cp "$found" "$dest/libonnxruntime.so.tmp"
mv "$dest/libonnxruntime.so.tmp" "$lib"
echo "$lib"
