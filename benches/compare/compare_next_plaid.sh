#!/usr/bin/env bash
# vellum's PLAID against next-plaid (LightOn's Rust PLAID crate, crates.io next-plaid 1.8.5) on
# the same token vectors, in one process (benches/compare/next_plaid/src/main.rs).
#   1. data: Debian package descriptions (examples/debian/make_corpus.py; DOCS of them, default
#      10,000) encoded by vellum's ColBERT encoder over all-MiniLM-L6-v2 with a fixed random
#      128-d head (benches/compare/next_plaid/make_data.py), 200 known-item queries;
#   2. the comparison: build time; exact MaxSim; vellum PLAID at the paper's k = 10 defaults, more
#      cells and more full scores; next-plaid at n_ivf_probe 1..8, n_full_scores 256 / 4096.
# The build also makes `plaid-stages` (where each PLAID stage loses exact MaxSim's top-10):
#   target/next_plaid/release/plaid-stages "$DATA" /tmp/plaid_db
# Needs: apt lists with English descriptions (apt-get update -o Acquire::Languages=en), the
# vellum Python package (tools/python-tests.sh builds .venv-python), numpy, safetensors,
# tools/fetch-minilm.sh. Usage: benches/compare/compare_next_plaid.sh [DOCS] [THREADS]
# With MODEL=DIR (a ColBERT checkpoint, e.g. the trained stand-in benches/compare/train_colbert.py
# makes) the vectors come from that model instead of the random head (data in ..._trained_DOCS;
# delete that folder after retraining the model, or its old vectors are reused).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DOCS="${1:-10000}"
THREADS="${2:-}"
PY="${PY:-$ROOT/.venv-python/bin/python}"
MODEL="${MODEL:-}"
DATA="$ROOT/benches/compare/data/next_plaid_${MODEL:+trained_}$DOCS"
bash "$ROOT/tools/fetch-minilm.sh"
if [ ! -f "$DATA/relevant.json" ]; then
    python3 "$ROOT/examples/debian/make_corpus.py" "$DATA/corpus" --docs "$DOCS"
    "$PY" -m pip install --quiet safetensors
    "$PY" "$ROOT/benches/compare/next_plaid/make_data.py" "$DATA" --corpus "$DATA/corpus" ${MODEL:+--model "$MODEL"}
fi
(cd "$ROOT/benches/compare/next_plaid" && CARGO_TARGET_DIR="$ROOT/target/next_plaid" cargo build --release)
if [ -n "$THREADS" ]; then export RAYON_NUM_THREADS="$THREADS"; fi
"$ROOT/target/next_plaid/release/compare-next-plaid" "$DATA"
