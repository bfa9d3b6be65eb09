#!/usr/bin/env python3
"""Exact (flat) search: vellum vs FAISS IndexFlatIP on the same .npy data, in one run.

Usage: python3 benches/compare/compare_flat.py [--n 50000] [--dim 384] [--queries 1000] [--k 10]
                                                [--rounds 3] [--reps 5] [--threads 2]
                                                [--dist normal|clustered | --vectors DIR]

Generates a corpus: --dist normal (standard normal float32) or --dist clustered (unit vectors with
the structure of real sentence embeddings: a shared mean direction, 256 topic clusters, cosine
scores mostly in 0.2-0.7; queries drawn near the clusters). f32 matrix-product cost does not depend
on the values; vellum's screened batch path does (it rescores the rows whose score bound reaches
the top-k), hence both distributions.
builds a vellum database with the release CLI, then alternates vellum and FAISS rounds; each round
times a batch of all queries (median of --reps) and single queries one at a time. Reports medians
over rounds and the vellum/FAISS throughput ratio, and checks that both return the same top-k.

FAISS runs with the OpenBLAS kernels of this CPU (`cpu.py`: SkylakeX with AVX-512, Zen/Haswell with
AVX2; without it the bundled OpenBLAS can fall back to slow generic kernels and the comparison would
flatter vellum), passive OpenMP waits, and the same thread count as vellum (rayon:
RAYON_NUM_THREADS). The output names the CPU and its SIMD flags.
"""
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=50_000)
ap.add_argument("--dim", type=int, default=384)
ap.add_argument("--queries", type=int, default=1000)
ap.add_argument("--k", type=int, default=10)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--single", type=int, default=200)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--dist", choices=["normal", "clustered"], default="normal")
ap.add_argument("--vectors", type=Path,
                help="a folder with corpus.npy and queries.npy (float32, [N, d]) to use instead of "
                     "--dist, e.g. real MiniLM embeddings from benches/compare/minilm_vectors.sh "
                     "(--n and --queries then cap their rows; --dim is read from the data)")
args = ap.parse_args()

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402

cpu.setup_peer_env()
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ["RAYON_NUM_THREADS"] = str(args.threads)
import numpy as np  # noqa: E402
import faiss  # noqa: E402

faiss.omp_set_num_threads(args.threads)
root = Path(__file__).resolve().parents[2]
import flat_data  # noqa: E402

if args.vectors:
    data, corpus, queries = flat_data.from_vectors(args.vectors, args.n, args.queries)
    args.dim = np.load(corpus, mmap_mode="r").shape[1]
else:
    data, corpus, queries = flat_data.make(args.n, args.dim, args.queries, args.dist)
subprocess.run(["cargo", "build", "--release", "-q", "-p", "vellum-cli"], cwd=root, check=True)
vellum = root / "target/release/vellum"
db = data / "db"
if not (db / "MANIFEST").exists():
    subprocess.run([vellum, "create", db, "-c", "docs", "-f", f"emb:dense:{args.dim}:f32:ip"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([vellum, "ingest", db, "-c", "docs", "--docs", data / "corpus.jsonl", "--vectors", f"emb={corpus}"], check=True, stdout=subprocess.DEVNULL)
subprocess.run(["cargo", "bench", "-q", "--bench", "compare_timing", "--no-run"], cwd=root, check=True, stderr=subprocess.DEVNULL)

X, Q = np.load(corpus), np.load(queries)


def run_vellum():
    out = subprocess.run(
        ["cargo", "bench", "-q", "--bench", "compare_timing", "--", "--db", str(db), "--queries", str(queries),
         "--k", str(args.k), "--reps", str(args.reps), "--single", str(args.single)],
        cwd=root, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_faiss():
    t = time.perf_counter()
    index = faiss.IndexFlatIP(args.dim)
    index.add(X)
    load_s = time.perf_counter() - t
    _, top = index.search(Q, args.k)  # warm-up
    batch = []
    for _ in range(args.reps):
        t = time.perf_counter()
        index.search(Q, args.k)
        batch.append(time.perf_counter() - t)
    single = []
    for _ in range(args.reps):
        t = time.perf_counter()
        for i in range(min(args.single, len(Q))):
            index.search(Q[i:i + 1], args.k)
        single.append((time.perf_counter() - t) / min(args.single, len(Q)))
    return {"open_s": load_s, "batch_s": batch, "single_query_s": single, "top": [[str(j) for j in row] for row in top[:100]]}


v_rounds, f_rounds = [], []
for r in range(args.rounds):
    v_rounds.append(run_vellum())
    f_rounds.append(run_faiss())

agree = statistics.mean(len(set(a) & set(b)) / args.k for a, b in zip(v_rounds[0]["top"], f_rounds[0]["top"]))
def med(rounds, key):
    return statistics.median(statistics.median(r[key]) if isinstance(r[key], list) else r[key] for r in rounds)

vb, fb = med(v_rounds, "batch_s"), med(f_rounds, "batch_s")
vs, fs = med(v_rounds, "single_query_s"), med(f_rounds, "single_query_s")
vss = med(v_rounds, "single_streaming_s")
print(cpu.describe())
print(f"corpus {len(X)} x {args.dim} f32 ({args.vectors or args.dist}), {len(Q)} queries, k={args.k}, {args.threads} threads, "
      f"faiss {faiss.__version__}, OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']}")
print(f"top-{args.k} agreement vellum vs faiss (first 100 queries): {agree:.4f}")
print("| measure | vellum | FAISS IndexFlatIP | vellum / FAISS throughput |")
print("|---|---|---|---|")
print(f"| batch of {len(Q)} queries | {vb*1e3:.1f} ms ({len(Q)/vb:,.0f} q/s) | {fb*1e3:.1f} ms ({len(Q)/fb:,.0f} q/s) | {fb/vb:.2f}x |")
print(f"| single query | {vs*1e3:.3f} ms ({1/vs:,.0f} q/s) | {fs*1e3:.3f} ms ({1/fs:,.0f} q/s) | {fs/vs:.2f}x |")
print(f"| single query, full f32 scan (Strategy::Streaming) | {vss*1e3:.3f} ms ({1/vss:,.0f} q/s) | | {fs/vss:.2f}x |")
for name in ("coded", "screened", "blocked"):
    t = statistics.median(statistics.median(r["paths"][f"batch_{name}_s"]) for r in v_rounds)
    print(f"| batch, Strategy::{name.capitalize()} | {t*1e3:.1f} ms ({len(Q)/t:,.0f} q/s) | | {fb/t:.2f}x |")
print(f"vellum kernels: {v_rounds[0]['simd']} (VELLUM_SIMD={os.environ.get('VELLUM_SIMD', 'unset')})")
print(f"| open / load | {med(v_rounds, 'open_s')*1e3:.2f} ms (open) | {med(f_rounds, 'open_s')*1e3:.1f} ms (add to index) | |")
if agree < 0.99:
    sys.exit(f"results disagree: {agree}")
