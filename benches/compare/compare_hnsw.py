#!/usr/bin/env python3
"""HNSW: vellum vs hnswlib vs FAISS IndexHNSWFlat on the same data, same M and ef_construction, in
one run.

Usage: python3 benches/compare/compare_hnsw.py [--n 60000] [--queries 1000] [--m 16]
                                               [--ef-construction 200] [--threads 2]

Data: Fashion-MNIST (real images, 784-d, L2; the ann-benchmarks `fashion-mnist-784-euclidean`
set) from the Debian package `dataset-fashion-mnist`: the first --n training images are the corpus,
the first --queries test images the queries. Ground truth: exact L2 top-10 (FAISS IndexFlatL2).

For each ef in {16, 32, 64, 128, 256}: recall@10 and queries/s on one thread — the whole query set
in one call with 1 thread for all three (vellum also reports one query per call, which adds its
per-call overhead) — and for the batch on --threads threads. Also build time (vellum:
`vellum index`, which builds the graph and rewrites the segment; hnswlib `add_items`; FAISS `add`),
and open/load time of the saved index (vellum: open the database; hnswlib `load_index`; FAISS
`read_index`), all on the same machine in the same run.
"""
import argparse, gzip, os, tempfile, time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=60_000)
ap.add_argument("--queries", type=int, default=1000)
ap.add_argument("--m", type=int, default=16)
ap.add_argument("--ef-construction", type=int, default=200)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--efs", default="16,32,64,128,256")
ap.add_argument("--data", choices=["fashion-mnist", "clustered"], default="fashion-mnist",
                help="clustered: 384-d unit vectors shaped like sentence embeddings (shared mean "
                     "direction, 256 topic clusters), searched by L2 (= cosine order on unit vectors)")
args = ap.parse_args()
import sys  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402

cpu.setup_peer_env()
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ["RAYON_NUM_THREADS"] = str(args.threads)
import numpy as np  # noqa: E402
import faiss  # noqa: E402
import hnswlib  # noqa: E402
from hnsw_common import ROOT as root, embedding_like, indexed_vellum_db, vellum_timings  # noqa: E402

efs = [int(e) for e in args.efs.split(",")]
src = Path("/usr/share/datasets/fashion-mnist")


def images(name, n):
    with gzip.open(src / name) as f:
        data = f.read()
    return np.frombuffer(data, dtype=np.uint8, offset=16)[: n * 784].reshape(n, 784).astype(np.float32)


if args.data == "fashion-mnist":
    X = images("train-images-idx3-ubyte.gz", args.n)
    Q = images("t10k-images-idx3-ubyte.gz", args.queries)
else:
    X, Q = embedding_like(np.random.default_rng(0), args.n, args.queries)
DIM = X.shape[1]
flat = faiss.IndexFlatL2(DIM)
flat.add(X)
_, truth = flat.search(Q, 10)


def recall(ids):
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)]))


work = Path(tempfile.mkdtemp(prefix="vellum-hnsw-"))
np.save(work / "queries.npy", Q)

# ---- vellum
db, v_build = indexed_vellum_db(work, X, args.m, args.ef_construction)
v = vellum_timings(db, work / "queries.npy", args.efs)
v_rows = {r["ef"]: r for r in v["runs"]}

# ---- hnswlib
h = hnswlib.Index(space="l2", dim=DIM)
h.init_index(max_elements=args.n, ef_construction=args.ef_construction, M=args.m, random_seed=1)
h.set_num_threads(args.threads)
t = time.perf_counter()
h.add_items(X, np.arange(args.n))
h_build = time.perf_counter() - t
h.save_index(str(work / "hnswlib.bin"))
t = time.perf_counter()
h2 = hnswlib.Index(space="l2", dim=DIM)
h2.load_index(str(work / "hnswlib.bin"), max_elements=args.n)
h_load = time.perf_counter() - t
h_rows = {}
for ef in efs:
    h2.set_ef(ef)
    h2.set_num_threads(1)
    t = time.perf_counter()
    ids, _ = h2.knn_query(Q, k=10)
    single = time.perf_counter() - t
    h2.set_num_threads(args.threads)
    t = time.perf_counter()
    h2.knn_query(Q, k=10)
    batch = time.perf_counter() - t
    h_rows[ef] = {"single_s": single, "batch_s": batch, "recall": recall(ids)}

# ---- FAISS
f = faiss.IndexHNSWFlat(DIM, args.m)
f.hnsw.efConstruction = args.ef_construction
faiss.omp_set_num_threads(args.threads)
t = time.perf_counter()
f.add(X)
f_build = time.perf_counter() - t
faiss.write_index(f, str(work / "faiss.bin"))
t = time.perf_counter()
f2 = faiss.read_index(str(work / "faiss.bin"))
f_load = time.perf_counter() - t
f_rows = {}
for ef in efs:
    f2.hnsw.efSearch = ef
    faiss.omp_set_num_threads(1)
    t = time.perf_counter()
    _, ids = f2.search(Q, 10)
    single = time.perf_counter() - t
    faiss.omp_set_num_threads(args.threads)
    t = time.perf_counter()
    f2.search(Q, 10)
    batch = time.perf_counter() - t
    f_rows[ef] = {"single_s": single, "batch_s": batch, "recall": recall(ids)}

nq = len(Q)
print(cpu.describe())
print(f"{args.data} {args.n} x {DIM} (L2), {nq} queries, k=10, M={args.m}, ef_construction={args.ef_construction}, "
      f"{args.threads} threads; hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else ''}, faiss {faiss.__version__}")
print()
print("| ef | vellum recall | vellum 1-thread q/s (per-call) | vellum batch q/s | hnswlib recall | hnswlib 1-thread q/s | hnswlib batch q/s | FAISS recall | FAISS 1-thread q/s | FAISS batch q/s | vellum / hnswlib (1 thread) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for ef in efs:
    vr, hr, fr = v_rows[ef], h_rows[ef], f_rows[ef]
    v_rec = recall([[int(i) for i in row] for row in vr["top"]])
    print(f"| {ef} | {v_rec:.4f} | {nq / vr['single_batch_s']:,.0f} ({nq / vr['single_s']:,.0f}) | {nq / vr['batch_s']:,.0f} | {hr['recall']:.4f} | "
          f"{nq / hr['single_s']:,.0f} | {nq / hr['batch_s']:,.0f} | {fr['recall']:.4f} | {nq / fr['single_s']:,.0f} | "
          f"{nq / fr['batch_s']:,.0f} | {hr['single_s'] / vr['single_batch_s']:.2f}x |")
print()
print("| | vellum | hnswlib | FAISS |")
print("|---|---:|---:|---:|")
print(f"| build ({args.threads} threads) | {v_build:.1f} s (`vellum index`: build + segment rewrite) | {h_build:.1f} s | {f_build:.1f} s |")
print(f"| open / load | {v['open_s'] * 1e3:.2f} ms (open database) | {h_load * 1e3:.1f} ms (load_index) | {f_load * 1e3:.1f} ms (read_index) |")
print(f"\nfiles kept in {work}")
