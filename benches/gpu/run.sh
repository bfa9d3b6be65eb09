#!/usr/bin/env bash
# Everything vellum checks and measures on a GPU machine, in one call of a few minutes
# (the `device` tool: run `benches/gpu/build.sh` here first, carry benches/gpu/bin.tar.xz):
#   1. parity: the `gpu::` integration tests (GPU results = the CPU's exact results);
#   2. the CLI's --device cuda:0 against its CPU run;
#   3. vellum vs PyTorch side by side on the same data and GPU: exact dense search of 1,000
#      queries over 1 M × 768 (f32, TF32, f16, bf16) and MaxSim re-ranking of 1,000 candidates
#      per query (benches/gpu/gpu_timing.rs, benches/gpu/peer.py).
#   4. with benches/gpu/vellum-train-cuda.tar.xz carried too (benches/gpu/build-train.sh): the
#      same 20 training steps on the CPU and on cuda:0 (f32 and bf16 mixed precision), losses
#      compared.
# Results: $OUT/gpu-results.jsonl (one object per measurement), $OUT/summary.txt (ratios).
# Needs: an NVIDIA driver, Python with torch and numpy ($PYTHON), the CUDA 13 cuBLAS and NVRTC
# libraries (found in torch's `nvidia/cu13/lib`, or set LD_LIBRARY_PATH).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/vellum-gpu-out}
DATA=${DATA:-/tmp/vellum-gpu-data}
ROWS=${ROWS:-1000000}
mkdir -p "$OUT" "$DATA"
PY=${PYTHON:-$(command -v /opt/torch/.venv/bin/python || command -v python3)}
tar -xJf benches/gpu/bin.tar.xz -C benches/gpu
BIN=benches/gpu/bin
LIB=$("$PY" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="${LIB}:${LD_LIBRARY_PATH:-}"
R="$OUT/gpu-results.jsonl"
: > "$R"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  lscpu | grep 'Model name'
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

echo "== 1. parity tests"
timeout 300 "$BIN/integration" gpu:: --test-threads 1 2>&1 | tail -15 | tee "$OUT/parity.txt"

echo "== 2. CLI"
T=$(mktemp -d)
"$PY" - "$T" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]; r = np.random.default_rng(0)
np.save(f"{d}/x.npy", r.standard_normal((20000, 64)).astype(np.float32))
np.save(f"{d}/q.npy", r.standard_normal((100, 64)).astype(np.float32))
open(f"{d}/docs.jsonl", "w").write("".join(f'{{"id": "d{i}"}}\n' for i in range(20000)))
PYEOF
(cd "$T" && "$OLDPWD/$BIN/vellum" create DB -c c -f e:dense:64:f32:ip >/dev/null \
  && "$OLDPWD/$BIN/vellum" ingest DB -c c --docs docs.jsonl --vectors e=x.npy >/dev/null 2>&1 \
  && "$OLDPWD/$BIN/vellum" search DB -c c --field e --query-vectors q.npy -k 10 > cpu.trec \
  && "$OLDPWD/$BIN/vellum" search DB -c c --field e --query-vectors q.npy -k 10 --device cuda:0 > gpu.trec \
  && cmp cpu.trec gpu.trec && echo "CLI: --device cuda:0 run = CPU run") 2>&1 | tee "$OUT/cli.txt"
rm -rf "$T"

echo "== 3. vellum vs PyTorch"
"$BIN/gpu_timing" dense --data "$DATA" --rows "$ROWS" --dim 768 --queries 1000 --k 10 | tee -a "$R"
for p in f32 tf32 f16 bf16; do
  "$PY" benches/gpu/peer.py dense --dir "$DATA/dense_${ROWS}x768_f32" --dtype $p | tee -a "$R"
done
"$BIN/gpu_timing" rerank --data "$DATA" --docs 100000 --dim 128 --queries 1000 --candidates 1000 | tee -a "$R"
"$PY" benches/gpu/peer.py rerank --dir "$DATA/multi_100000x128" | tee -a "$R"
# Encoding: a random BERT-base (12 x 768) made by transformers, 20,000 texts of ~100 tokens.
M="$DATA/bert-base-random"
[ -d "$M" ] || "$PY" benches/gpu/peer.py make-model --dir "$M" \
  --tokenizer tests/fixtures/encoders/tiny-a --texts "$DATA/texts.jsonl"
for d in f32 f16; do
  "$BIN/gpu_timing" encode --data "$DATA" --model "$M" --texts "$DATA/texts.jsonl" --dtype $d | tee -a "$R"
  "$PY" benches/gpu/peer.py encode --dir "$M" --texts "$DATA/texts.jsonl" --dtype $d \
    --vellum "$DATA/encode_$d.npy" --reps 3 | tee -a "$R"
done
# Ingest end to end (tokenise, encode on the GPU, write, commit) against the bare encoder.
T=$(mktemp -d)
"$BIN/vellum" create "$T/DB" -c c -f emb:dense:768:f16:ip --encoder "emb=$M" \
  --encoder-options emb=dtype=f16 > /dev/null
t0=$(date +%s.%N)
"$BIN/vellum" ingest "$T/DB" -c c --docs "$DATA/texts.jsonl" --encoder-options device=cuda:0,batch_size=256 > /dev/null 2>&1
t1=$(date +%s.%N)
echo "{\"bench\": \"ingest\", \"dtype\": \"f16\", \"ingest_s\": $(echo "$t1 - $t0" | bc)}" | tee -a "$R"
rm -rf "$T"

# 4. Training on the GPU (only with the CLI of benches/gpu/build-train.sh carried as
# benches/gpu/vellum-train-cuda.tar.xz): the same 20 steps from the same seed on the CPU and on
# cuda:0 (tiny BERT fixture, Debian sample), losses compared.
if [ -f benches/gpu/vellum-train-cuda.tar.xz ]; then
  echo "== 4. training: cpu vs cuda:0"
  mkdir -p benches/gpu/train && tar -xJf benches/gpu/vellum-train-cuda.tar.xz -C benches/gpu/train
  V=benches/gpu/train/vellum
  T=$(mktemp -d)
  "$V" create "$T/DB" -c docs --field emb:dense:32:f32:cosine \
    --encoder emb=tests/fixtures/encoders/tiny-a --encoder-options emb=pooling=mean,normalize=true > /dev/null
  "$V" ingest "$T/DB" -c docs --docs examples/debian/corpus.jsonl > /dev/null 2>&1
  for run in cpu:f32 cuda:0:f32 cuda:0:bf16; do
    dev=${run%:*} prec=${run##*:}
    "$V" train "$T/DB" -c docs -f emb --queries examples/debian/queries.tsv \
      --qrels examples/debian/qrels.txt -o "$T/out-${dev/:/}-$prec" --max-steps 20 --batch-size 16 \
      --group-size 4 --lr 1e-4 --device "$dev" --precision "$prec" > /dev/null 2>&1 \
      || echo "train on $dev ($prec) failed"
  done
  # A training step of the random BERT-base (section 3's model): vellum vs sentence-transformers
  # on the GPU, same batches, loss, optimiser (benches/compare/compare_train.py).
  if [ -d "$M" ]; then
    "$PY" benches/compare/compare_train.py --device cuda --exe benches/gpu/train/train_timing \
      --model "$M" --steps 10 --rounds 2 --batch 16 --group 4 2>&1 | tail -1 | tee -a "$R"
  fi
  "$PY" - "$T" <<'PYEOF' | tee -a "$R"
import json, sys
t = sys.argv[1]
names = ("cpu-f32", "cuda0-f32", "cuda0-bf16")
runs = {d: json.load(open(f"{t}/out-{d}/training_report.json"))["report"] for d in names}
a, b, c = (runs[n]["losses"] for n in names)
rel = lambda x, y: max(abs(p - q) / max(1e-9, abs(p)) for p, q in zip(x, y))
print(json.dumps({"bench": "train", "steps": len(a), "loss_cpu": a[-1], "loss_gpu": b[-1],
                  "loss_gpu_bf16": c[-1], "max_relative_loss_difference": rel(a, b),
                  "max_relative_loss_difference_bf16": rel(a, c),
                  "cpu_s": runs["cpu-f32"]["seconds"], "gpu_s": runs["cuda0-f32"]["seconds"],
                  "gpu_bf16_s": runs["cuda0-bf16"]["seconds"]}))
PYEOF
  rm -rf "$T"
fi

"$PY" - "$R" <<'PYEOF' | tee "$OUT/summary.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ours = {(r["bench"], r.get("gpu_precision", "")): r for r in rows if "peer" not in r}
for r in rows:
    if r.get("peer") != "pytorch":
        continue
    key = (r["bench"], {"f32": "f32"}.get(r.get("gpu_precision", ""), r.get("gpu_precision", "")))
    v = ours.get(key)
    if not v:
        continue
    line = f'{r["bench"]:6} {key[1] or "f16":5} vellum {v["batch_s"]*1e3:8.2f} ms  pytorch {r["batch_s"]*1e3:8.2f} ms  ratio {r["batch_s"]/v["batch_s"]:.2f}x  equal_to_cpu {v["equal_to_cpu"]}'
    if r["bench"] == "encode":
        v = next((x for x in rows if x.get("bench") == "encode" and "peer" not in x and x["dtype"] == r["dtype"]), None)
        if v:
            print(f'encode {r["dtype"]:5} vellum {v["texts_per_s"]:8.0f} texts/s  sentence-transformers {r["texts_per_s"]:8.0f} texts/s  ratio {v["texts_per_s"]/r["texts_per_s"]:.2f}x  min cosine {r["min_cosine_vs_vellum"]:.6f}')
        continue
    if "gemm_tflops" in r:
        flops = 2.0 * v["queries"] * v["rows"] * v["dim"]
        line += f'  vellum {flops / v["batch_s"] / 1e12:.1f} TFLOP/s = {100 * flops / v["batch_s"] / 1e12 / r["gemm_tflops"]:.0f}% of GEMM {r["gemm_tflops"]:.1f}'
    print(line)
ts = next((x for x in rows if x.get("bench") == "train_step"), None)
if ts:
    print(f'train step (BERT-base, batch {ts["batch"]} x group {ts["group"]}): vellum {ts["vellum_steps_per_sec"]:.2f} steps/s, PyTorch {ts["torch_steps_per_sec"]:.2f}, ratio {ts["ratio"]:.2f}x')
tr = next((x for x in rows if x.get("bench") == "train"), None)
if tr:
    print(f'train: {tr["steps"]} steps, loss cpu {tr["loss_cpu"]:.6f} gpu {tr["loss_gpu"]:.6f} (bf16 {tr["loss_gpu_bf16"]:.6f}), max relative difference {tr["max_relative_loss_difference"]:.2e} (bf16 {tr["max_relative_loss_difference_bf16"]:.2e})')
ing = next((x for x in rows if x.get("bench") == "ingest"), None)
enc = next((x for x in rows if x.get("bench") == "encode" and "peer" not in x and x["dtype"] == "f16"), None)
if ing and enc:
    print(f'ingest f16: {enc["texts"] / ing["ingest_s"]:.0f} docs/s = {100 * enc["encode_s"] / ing["ingest_s"]:.0f}% of the bare encoder')
PYEOF
echo "results in $OUT"
