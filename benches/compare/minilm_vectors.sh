#!/usr/bin/env bash
# Real 384-d sentence embeddings for the ANN comparisons (`compare_hnsw.py --vectors OUT`):
# Debian package descriptions as documents and their one-line summaries (spread over the corpus)
# as queries
# (examples/debian/make_corpus.py), encoded by all-MiniLM-L6-v2 (mean pooling, normalised) through
# `vellum ingest`, whose vectors equal sentence-transformers' (benches/RESULTS.md, "Text encoding
# vs sentence-transformers"), then written out by `vellum export` as OUT/corpus.npy [DOCS, 384]
# and OUT/queries.npy [QUERIES, 384] (float32).
#
# Usage: benches/compare/minilm_vectors.sh OUT [DOCS=46000] [QUERIES=1000]
# Needs Debian's English descriptions (`apt-get update -o Acquire::Languages=en`) and the model
# (tools/fetch-minilm.sh, run here). Debian bookworm has 46,233 long descriptions; encoding
# 46,000 took 6.5 minutes on 2 cores (AVX-512).
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 OUT [DOCS=46000] [QUERIES=1000]" >&2
    exit 2
fi
out=$(realpath -m "$1"); docs=${2:-46000}; queries=${3:-1000}
cd "$(dirname "$0")/../.."
tools/fetch-minilm.sh
cargo build --release -q -p vellum-cli
vellum=target/release/vellum
mkdir -p "$out"
python3 examples/debian/make_corpus.py "$out/text" --docs "$docs"
# QUERIES summaries spread evenly over the package names (the file is in name order, where
# families such as fonts-* or golang-* sit together), as `id<TAB>text` documents of a second
# collection, encoded the same way.
total=$(wc -l < "$out/text/queries.tsv")
awk -v total="$total" -v n="$queries" 'taken < n && NR - 1 == int(taken * total / n) { print; taken++ }' \
    "$out/text/queries.tsv" > "$out/text/query_docs.tsv"
rm -rf "$out/db"
for c in docs queries; do
    "$vellum" create "$out/db" --collection "$c" --field emb:dense:384:f32:cosine \
        --encoder emb=models/all-MiniLM-L6-v2
done
"$vellum" ingest "$out/db" --collection queries --docs "$out/text/query_docs.tsv"
"$vellum" ingest "$out/db" --collection docs --docs "$out/text/corpus.jsonl"
"$vellum" export "$out/db" --collection docs --field emb --vectors "$out/corpus.npy" --ids "$out/corpus_ids.txt"
"$vellum" export "$out/db" --collection queries --field emb --vectors "$out/queries.npy" --ids "$out/query_ids.txt"
echo "wrote $out/corpus.npy and $out/queries.npy"
