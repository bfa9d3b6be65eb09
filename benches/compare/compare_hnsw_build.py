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
import argparse, os, tempfile, time
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
import sys  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402

cpu.setup_peer_env()
import numpy as np  # noqa: E402
import hnswlib  # noqa: E402
from hnsw_common import embedding_like, indexed_vellum_db, vellum_timings  # noqa: E402

rng = np.random.default_rng(0)
if args.data == "normal":
    X = rng.standard_normal((args.n, args.dim)).astype(np.float32)
else:
    (X,) = embedding_like(rng, args.n)
n, dim = X.shape

work = Path(tempfile.mkdtemp(prefix="vellum-hnsw-build-"))
db, v_build = indexed_vellum_db(work, X, args.m, args.ef_construction)
# Open time, inside one process: the timing harness opens the database (and answers 10 queries).
np.save(work / "queries.npy", X[:10])
v_open = vellum_timings(db, work / "queries.npy", "16", reps=1)["open_s"]

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

print(cpu.describe())
print(f"{args.data} {n} x {dim} (L2), M={args.m}, ef_construction={args.ef_construction}, {args.threads} threads")
print()
print("| | vellum | hnswlib | FAISS | vellum / hnswlib |")
print("|---|---:|---:|---:|---:|")
fb = f"{f_build:.1f} s" if f_build is not None else "-"
fl = f"{f_load * 1e3:.0f} ms" if f_load is not None else "-"
print(f"| build | {v_build:.1f} s | {h_build:.1f} s | {fb} | {v_build / h_build:.2f}x |")
print(f"| open / load | {v_open * 1e3:.2f} ms (open database) | {h_load * 1e3:.0f} ms | {fl} | |")
print(f"\nfiles kept in {work}")
