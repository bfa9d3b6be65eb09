#!/usr/bin/env bash
# Fine-tuning inside vellum on real text (benches/RESULTS.md, "Training"): all-MiniLM-L6-v2 on
# Debian package descriptions, trained on 9,000 summary → description pairs, evaluated on 1,000
# held-out summaries by full retrieval over the 10,000 descriptions (known-item MRR@10), before
# and after training.
#
# Usage: examples/debian/train_experiment.sh [WORKDIR] [STEPS]
# Needs: target/release/vellum (cargo build --release -p vellum-cli), models/all-MiniLM-L6-v2
# (tools/fetch-minilm.sh), Debian's English package descriptions (apt-get update).
set -euo pipefail
cd "$(dirname "$0")/../.."
W="${1:-/tmp/vellum-train-debian}"
STEPS="${2:-300}"
V="${VELLUM:-target/release/vellum}"
MODEL="${MODEL:-models/all-MiniLM-L6-v2}"
mkdir -p "$W"
[ -f "$W/data/corpus.jsonl" ] || python3 examples/debian/make_corpus.py "$W/data" --docs 10000 --train
D="$W/data"

build() { # DB MODEL
  [ -d "$1" ] && return
  "$V" create "$1" -c deb --field emb:dense:384:f32:cosine --encoder "emb=$2"
  /usr/bin/time -f "ingest %e s, %M KB" "$V" ingest "$1" -c deb --docs "$D/corpus.jsonl"
}
evaluate() { # DB NAME
  "$V" search --db "$1" -c deb -f emb --queries "$D/queries.tsv" -k 100 > "$W/$2.run"
  echo "$2: $("$V" eval --run "$W/$2.run" --qrels "$D/qrels.txt" --metrics mrr@10,recall@10,recall@100 --json)"
}

build "$W/base.db" "$MODEL"
evaluate "$W/base.db" base
[ -f "$W/model/training_report.json" ] || /usr/bin/time -f "train %e s, %M KB" "$V" train "$W/base.db" -c deb -f emb \
  --queries "$D/train_queries.tsv" --qrels "$D/train_qrels.txt" -o "$W/model" --resume \
  --max-steps "$STEPS" --batch-size 16 --group-size 4 --lr 3e-5 --warmup-ratio 0.1 \
  --query-max-len 32 --passage-max-len 128 --mine-depth 30 --mine-skip 3 --save-every 100
build "$W/tuned.db" "$W/model"
evaluate "$W/tuned.db" tuned

# Query-encoder-only training on the untouched base database: students of 2 and 1 layers of
# MiniLM, aligned to its query vectors on the training queries and 51,096 unjudged one-line
# summaries of packages outside the corpus (align_texts.txt), then trained against the stored
# passage vectors.
for L in 2 1; do
  [ -f "$W/query$L/training_report.json" ] && continue
  /usr/bin/time -f "query-only $L layers: %e s, %M KB" "$V" train "$W/base.db" -c deb -f emb \
    --queries "$D/train_queries.tsv" --qrels "$D/train_qrels.txt" -o "$W/query$L" --query-only \
    --student-layers "$L" --align-steps 3000 --align-lr 2e-4 --align-texts "$D/align_texts.txt" \
    --max-steps 600 --lr 3e-5 --batch-size 32 --group-size 8 --mine-depth 30 --mine-skip 3 \
    --eval-queries "$D/queries.tsv" --eval-qrels "$D/qrels.txt"
done

# Query encoding speed of the current encoder and the students, side by side, alternating, in
# fresh processes: all 1,000 held-out queries in batches of 32, and one query at a time.
python3 -c "import sys,json; [print(json.dumps({'id': l.split('\t')[0], 'text': l.rstrip('\n').split('\t', 1)[1]})) for l in open(sys.argv[1])]" \
  "$D/queries.tsv" > "$W/queries.jsonl"
for round in 1 2 3; do
  for M in "$MODEL" "$W/query2" "$W/query1"; do
    for B in 32 1; do
      echo "round $round batch $B $M: $(cargo bench -q --features encoders --bench compare_encode_timing -- \
        --model "$M" --docs "$W/queries.jsonl" --batch "$B")"
    done
  done
done
