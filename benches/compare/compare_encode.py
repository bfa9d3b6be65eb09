#!/usr/bin/env python3
"""Text encoding: vellum vs sentence-transformers on the same passages, same model, same thread
count, in one run.

Usage: python3 benches/compare/compare_encode.py [--rounds 3] [--threads 2] [--batch 32]
                                                 [--docs examples/debian/corpus.jsonl]
                                                 [--dtypes int8] [--simd native|avx2|avx2-novnni]

Model: sentence-transformers/all-MiniLM-L6-v2 (tools/fetch-minilm.sh). Passages: the 2,000 real
Debian package descriptions of the sample corpus (mean 98 tokens, up to the 256-token limit).
Needs: sentence-transformers, torch (CPU), numpy; builds vellum's release binaries itself.

Per round, in alternating order, each in a fresh process:
  * sentence-transformers: `model.encode(texts, batch_size, normalize_embeddings=True)` with
    torch.set_num_threads(threads) — it sorts by length and pads per batch;
  * vellum encoder: `TextEncoder::encode` (benches/compare/encode_timing.rs) — tokenize, sort by
    length, batch, forward, pool, normalize; model load excluded for both;
  * vellum ingest: `vellum create --encoder` + `vellum ingest` into a fresh database, end to end
    (read, tokenize, encode, write, commit; model load included), timed around the command.
Reports the median docs/s of each and the ratios; checks that vellum's stored vectors equal
sentence-transformers' (cosine >= 0.99999), so both did the same work.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--docs", default=None)
ap.add_argument("--dtypes", default="int8",
                help="reduced-precision encoder dtypes timed beside f32 (comma-separated; '' for none)")
ap.add_argument("--simd", choices=["native", "avx2", "avx2-novnni"], default="native",
                help="avx2, avx2-novnni: to measure an AVX2 CPU's paths on an AVX-512 one, vellum's kernels "
                     "at VELLUM_SIMD=<this value> (avx2-novnni: without AVX-VNNI, as on Zen 3 or Haswell to "
                     "Skylake client CPUs) and PyTorch at ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2 "
                     "(which also leaves out AVX-VNNI), MKL_ENABLE_INSTRUCTIONS=AVX2, OpenBLAS Haswell. "
                     "The `gemm` crate behind vellum's f32 products keeps its own dispatch (AVX-512 where "
                     "present): benches/compare/compare_encode_avx2.sh runs this script on a build "
                     "where it takes its AVX2 kernels")
args = ap.parse_args()
root = Path(__file__).resolve().parents[2]
docs = Path(args.docs) if args.docs else root / "examples/debian/corpus.jsonl"
model = root / "models/all-MiniLM-L6-v2"
subprocess.run(["bash", str(root / "tools/fetch-minilm.sh"), str(model)], check=True)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402

cpu.setup_peer_env()  # PyTorch's OpenMP: passive waits; OpenBLAS: this CPU's kernels
print(cpu.describe())
env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
if args.simd != "native":
    env.update(VELLUM_SIMD=args.simd, ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2",
               MKL_ENABLE_INSTRUCTIONS="AVX2", OPENBLAS_CORETYPE="Haswell")
    gemm = ("AVX2 (gemm-common patched by compare_encode_avx2.sh)" if os.environ.get("VELLUM_GEMM_AVX2")
            else "its own choice: AVX-512 on an AVX-512 CPU (use compare_encode_avx2.sh for AVX2)")
    print(f"AVX2 paths: VELLUM_SIMD={args.simd}; vellum's f32 products (gemm): {gemm}; PyTorch "
          "ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2; OPENBLAS_CORETYPE=Haswell")

print("building vellum (release) ...", file=sys.stderr)
subprocess.run(["cargo", "build", "--release", "-q", "-p", "vellum-cli"], cwd=root, check=True)
subprocess.run(["cargo", "bench", "-q", "--features", "encoders", "--bench", "compare_encode_timing", "--no-run"],
               cwd=root, check=True)
bench_bin = max(
    (p for p in (root / "target/release/deps").glob("compare_encode_timing-*") if os.access(p, os.X_OK) and p.suffix == ""),
    key=lambda p: p.stat().st_mtime,
)
vellum = root / "target/release/vellum"

ST = r'''
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from sentence_transformers import SentenceTransformer
texts = [json.loads(l)["text"] for l in open(sys.argv[2])]
m = SentenceTransformer(sys.argv[1], device="cpu")
m.encode(texts[:64], batch_size=int(sys.argv[4]))
t = time.perf_counter()
e = m.encode(texts, batch_size=int(sys.argv[4]), normalize_embeddings=True)
s = time.perf_counter() - t
import numpy as np
np.save(sys.argv[5], e.astype(np.float32))
print(json.dumps({"docs": len(texts), "seconds": s, "docs_per_s": len(texts) / s, "threads": torch.get_num_threads(),
                  "capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()}))
'''


def run_st(out_npy):
    r = subprocess.run([sys.executable, "-c", ST, str(model), str(docs), str(args.threads), str(args.batch), out_npy],
                       env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_encoder(dtype="f32"):
    r = subprocess.run([str(bench_bin), "--model", str(model), "--docs", str(docs), "--batch", str(args.batch),
                        "--dtype", dtype], env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_ingest(tmp):
    db = Path(tmp) / f"db{time.time_ns()}"
    subprocess.run([str(vellum), "create", str(db), "--collection", "docs", "--field", "emb:dense:384:f32:cosine",
                    "--encoder", f"emb={model}", "--encoder-options", f"emb=batch_size={args.batch}"],
                   env=env, check=True, capture_output=True)
    t = time.perf_counter()
    subprocess.run([str(vellum), "ingest", str(db), "--collection", "docs", "--docs", str(docs),
                    "--encoder-options", f"batch_size={args.batch}"], env=env, check=True, capture_output=True)
    s = time.perf_counter() - t
    n = sum(1 for l in open(docs) if l.strip())
    return {"docs": n, "seconds": s, "docs_per_s": n / s, "db": str(db)}


import numpy as np  # noqa: E402

extra = [d for d in args.dtypes.split(",") if d]
results = {"sentence-transformers": [], "vellum encoder": [], "vellum ingest": []}
results.update({f"vellum encoder {d}": [] for d in extra})
with tempfile.TemporaryDirectory() as tmp:
    st_npy = str(Path(tmp) / "st.npy")
    for r in range(args.rounds):
        order = [("sentence-transformers", lambda: run_st(st_npy)), ("vellum encoder", run_encoder),
                 ("vellum ingest", lambda: run_ingest(tmp))]
        order += [(f"vellum encoder {d}", lambda d=d: run_encoder(d)) for d in extra]
        if r % 2:
            order.reverse()
        for name, fn in order:
            res = fn()
            results[name].append(res)
            print(f"round {r}: {name}: {res['docs_per_s']:.1f} docs/s", file=sys.stderr)
    # Same work: vellum's stored vectors vs sentence-transformers' output.
    last = results["vellum ingest"][-1]["db"]
    subprocess.run([str(vellum), "export", last, "--collection", "docs", "--field", "emb",
                    "--vectors", f"{tmp}/v.npy", "--ids", f"{tmp}/ids.txt"], check=True, capture_output=True)
    ids = open(f"{tmp}/ids.txt").read().split()
    order = {json.loads(l)["id"]: i for i, l in enumerate(open(docs))}
    ours = np.load(f"{tmp}/v.npy")
    theirs = np.load(st_npy)[[order[i] for i in ids]]
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)

med = {k: statistics.median(x["docs_per_s"] for x in v) for k, v in results.items()}
tokens = results["vellum encoder"][-1]["tokens"]
n = results["vellum encoder"][-1]["docs"]
print(f"\n{n} passages, {tokens} tokens (mean {tokens / n:.0f}), batch {args.batch}, {args.threads} threads, "
      f"median of {args.rounds} rounds")
print(f"{'':24} {'docs/s':>8} {'tokens/s':>9}  ratio")
for k, v in med.items():
    print(f"{k:24} {v:8.1f} {v * tokens / n:9.0f}  {v / med['sentence-transformers']:.2f}x ST")
print(f"vellum ingest / vellum encoder: {med['vellum ingest'] / med['vellum encoder']:.1%}")
print(f"PyTorch's CPU capability: {results['sentence-transformers'][-1]['capability']}")
print(f"vellum vs sentence-transformers vectors: min cosine {cos.min():.8f}, "
      f"max abs diff {np.abs(ours - theirs).max():.2e}")
