#!/usr/bin/env python3
"""HNSW build and open/load time at scale: vellum vs hnswlib (and FAISS IndexHNSWFlat with
--faiss), same data, same M and ef_construction, same thread count, in one run. No queries:
`compare_hnsw.py` measures recall and queries/s; this script measures how construction scales.

Usage: python3 benches/compare/compare_hnsw_build.py [--data normal|clustered] [--n 1000000]
                                                     [--dim 16] [--m 16] [--ef-construction 100]
                                                     [--threads 2] [--faiss]

Data: `normal`: i.i.d. standard normal vectors of --dim (low-dimensional data makes construction
bound by graph bookkeeping and memory latency rather than distance arithmetic); `clustered`:
384-d unit vectors shaped like sentence embeddings (as in compare_hnsw.py; --dim ignored).
vellum: `vellum index` on a database holding the vectors (graph build + segment rewrite, fsynced),
then opening the database (in one process, `hnsw_timing.rs`); hnswlib: `add_items`, then `load_index` of the saved file; FAISS:
`add`, then `read_index`.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--data", choices=["normal", "clustered"], default="normal")
ap.add_argument("--n", type=int, default=1_000_000)
ap.add_argument("--dim", type=int, default=16)
ap.add_argument("--m", type=int, default=16)
ap.add_argument("--ef-construction", type=int, default=100)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--faiss", action="store_true", help="also time FAISS IndexHNSWFlat")
args = ap.parse_args()
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ["RAYON_NUM_THREADS"] = str(args.threads)
import numpy as np  # noqa: E402
import hnswlib  # noqa: E402

rng = np.random.default_rng(0)
if args.data == "normal":
    X = rng.standard_normal((args.n, args.dim)).astype(np.float32)
else:
    def unit(v):
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    dim = 384
    mean = unit(rng.standard_normal((1, dim)))
    centers = unit(rng.standard_normal((256, dim)))
    c = centers[rng.integers(0, len(centers), args.n)]
    X = unit(0.7 * mean + 0.6 * c + 0.8 * rng.standard_normal((args.n, dim)) / np.sqrt(dim))
n, dim = X.shape

root = Path(__file__).resolve().parents[2]
work = Path(tempfile.mkdtemp(prefix="vellum-hnsw-build-"))
np.save(work / "corpus.npy", X)
with open(work / "corpus.jsonl", "w") as f:
    f.writelines(f'{{"id": "{i}"}}\n' for i in range(n))

subprocess.run(["cargo", "build", "--release", "-q", "-p", "vellum-cli"], cwd=root, check=True)
vellum = root / "target/release/vellum"
db = work / "db"
run = lambda *a: subprocess.run([str(vellum), *map(str, a)], check=True, stdout=subprocess.DEVNULL)
run("create", db, "-c", "docs", "-f", f"emb:dense:{dim}:f32:l2")
run("ingest", db, "-c", "docs", "--docs", work / "corpus.jsonl", "--vectors", f"emb={work / 'corpus.npy'}")
t = time.perf_counter()
run("index", db, "-c", "docs", "-f", "emb", "--hnsw",
    f"m={args.m},ef_construction={args.ef_construction},min_rows=1000")
v_build = time.perf_counter() - t
# Open time, inside one process: the timing harness opens the database (and answers 10 queries).
np.save(work / "queries.npy", X[:10])
subprocess.run(["cargo", "bench", "-q", "--bench", "compare_hnsw_timing", "--no-run"], cwd=root, check=True,
               stderr=subprocess.DEVNULL)
out = subprocess.run(["cargo", "bench", "-q", "--bench", "compare_hnsw_timing", "--", "--db", str(db),
                      "--queries", str(work / "queries.npy"), "--efs", "16", "--reps", "1"],
                     cwd=root, check=True, capture_output=True, text=True).stdout
v_open = json.loads(out.strip().splitlines()[-1])["open_s"]

h = hnswlib.Index(space="l2", dim=dim)
h.init_index(max_elements=n, ef_construction=args.ef_construction, M=args.m, random_seed=1)
h.set_num_threads(args.threads)
t = time.perf_counter()
h.add_items(X, np.arange(n))
h_build = time.perf_counter() - t
h.save_index(str(work / "hnswlib.bin"))
del h
t = time.perf_counter()
h2 = hnswlib.Index(space="l2", dim=dim)
h2.load_index(str(work / "hnswlib.bin"), max_elements=n)
h_load = time.perf_counter() - t
del h2

f_build = f_load = None
if args.faiss:
    import faiss  # noqa: E402

    faiss.omp_set_num_threads(args.threads)
    f = faiss.IndexHNSWFlat(dim, args.m)
    f.hnsw.efConstruction = args.ef_construction
    t = time.perf_counter()
    f.add(X)
    f_build = time.perf_counter() - t
    faiss.write_index(f, str(work / "faiss.bin"))
    del f
    t = time.perf_counter()
    faiss.read_index(str(work / "faiss.bin"))
    f_load = time.perf_counter() - t

print(f"{args.data} {n} x {dim} (L2), M={args.m}, ef_construction={args.ef_construction}, {args.threads} threads")
print()
print("| | vellum | hnswlib | FAISS | vellum / hnswlib |")
print("|---|---:|---:|---:|---:|")
fb = f"{f_build:.1f} s" if f_build is not None else "-"
fl = f"{f_load * 1e3:.0f} ms" if f_load is not None else "-"
print(f"| build | {v_build:.1f} s | {h_build:.1f} s | {fb} | {v_build / h_build:.2f}x |")
print(f"| open / load | {v_open * 1e3:.2f} ms (open database) | {h_load * 1e3:.0f} ms | {fl} | |")
print(f"\nfiles kept in {work}")
