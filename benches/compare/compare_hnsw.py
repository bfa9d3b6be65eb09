#!/usr/bin/env python3
"""HNSW: vellum vs hnswlib vs FAISS IndexHNSWFlat on the same data, same M and ef_construction, in
one run.

Usage: python3 benches/compare/compare_hnsw.py [--n 60000] [--queries 1000] [--m 16]
                                               [--ef-construction 200] [--threads 2]

Data: Fashion-MNIST (real images, 784-d, L2; the ann-benchmarks `fashion-mnist-784-euclidean`
set) from the Debian package `dataset-fashion-mnist`: the first --n training images are the corpus,
the first --queries test images the queries. --data clustered: synthetic 384-d embedding-like
vectors. --vectors DIR: any corpus.npy / queries.npy, e.g. real all-MiniLM-L6-v2 embeddings of
Debian package descriptions and summaries (benches/compare/minilm_vectors.sh). Ground truth: exact
L2 top-10 (FAISS IndexFlatL2); a returned row counts as a true neighbour when it is no farther
than the 10th (ann-benchmarks' recall), so rows tied at the cut-off are all right answers.

For each ef in --efs: recall@10 and queries/s on one thread — the whole query set in one call with
1 thread for all three (vellum also reports one query per call, which adds its per-call overhead) —
and for the batch on --threads threads. Every figure is a median: of --reps repetitions within a
round, then of --rounds rounds in which the three libraries take turns, so that a slow minute of
this shared machine does not fall on one library only. Then, for each library, the 1-thread q/s at
recall@10 = --target (interpolated between the two efs whose recalls bracket it, linear in recall
and in log q/s, as recall-QPS curves are compared in ann-benchmarks), and vellum's ratio to the
best peer there. Also build time (vellum:
`vellum index`, which builds the graph and rewrites the segment; hnswlib `add_items`; FAISS `add`),
and open/load time of the saved index (vellum: open the database; hnswlib `load_index`; FAISS
`read_index`), all on the same machine in the same run.
"""
import argparse, gzip, math, os, statistics, tempfile, time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=60_000)
ap.add_argument("--queries", type=int, default=1000)
ap.add_argument("--m", type=int, default=16)
ap.add_argument("--ef-construction", type=int, default=200)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--efs", default="10,12,14,16,20,24,32,48,64,128,256")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--target", type=float, default=0.95, help="recall@10 at which q/s are compared")
ap.add_argument("--data", choices=["fashion-mnist", "clustered"], default="fashion-mnist",
                help="clustered: 384-d unit vectors shaped like sentence embeddings (shared mean "
                     "direction, 256 topic clusters), searched by L2 (= cosine order on unit vectors)")
ap.add_argument("--vectors", type=Path,
                help="a folder with corpus.npy and queries.npy (float32, [N, d]) to use instead of "
                     "--data, e.g. real MiniLM embeddings from benches/compare/minilm_vectors.sh "
                     "(--n and --queries then cap their rows)")
ap.add_argument("--simd", choices=["native", "avx2"], default="native",
                help="avx2: run vellum (VELLUM_SIMD) and FAISS (SIMDConfig) on their AVX2 code, to "
                     "measure an AVX2 CPU's paths on an AVX-512 one (hnswlib keeps the flags it "
                     "was compiled with)")
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

if args.simd == "avx2":
    os.environ["VELLUM_SIMD"] = "avx2"  # read by `vellum index` and the timing harness
    faiss.SIMDConfig.set_level(faiss.SIMDLevel_AVX2)
efs = [int(e) for e in args.efs.split(",")]
src = Path("/usr/share/datasets/fashion-mnist")


def images(name, n):
    with gzip.open(src / name) as f:
        data = f.read()
    return np.frombuffer(data, dtype=np.uint8, offset=16)[: n * 784].reshape(n, 784).astype(np.float32)


if args.vectors:
    X = np.ascontiguousarray(np.load(args.vectors / "corpus.npy")[: args.n], dtype=np.float32)
    Q = np.ascontiguousarray(np.load(args.vectors / "queries.npy")[: args.queries], dtype=np.float32)
    args.n, args.data = len(X), f"vectors from {args.vectors}"
elif args.data == "fashion-mnist":
    X = images("train-images-idx3-ubyte.gz", args.n)
    Q = images("t10k-images-idx3-ubyte.gz", args.queries)
else:
    X, Q = embedding_like(np.random.default_rng(0), args.n, args.queries)
DIM = X.shape[1]
flat = faiss.IndexFlatL2(DIM)
flat.add(X)
_, truth = flat.search(Q, 11)


def sq_dist(q, rows):
    """Squared L2 from query q to the given rows, in float64 (one formula for both sides)."""
    return ((X[rows].astype(np.float64) - Q[q].astype(np.float64)) ** 2).sum(axis=1)


# Recall counts a returned row as a true neighbour when it is no farther than the 10th true
# neighbour (ann-benchmarks' definition; both distances in float64, with a relative tolerance of
# 1e-9 for their rounding): rows tied at the cut-off (exact duplicates are common in real
# corpora) are all right answers, whichever of them a library's tie-break returns.
kth = np.array([sq_dist(q, truth[q, 9:10])[0] for q in range(len(Q))]) * (1 + 1e-9)
ties = sum(int(sq_dist(q, truth[q, 10:11])[0] <= kth[q]) for q in range(len(Q)))


def recall(ids):
    hits = 0
    for q, row in enumerate(ids):
        row = list(dict.fromkeys(int(i) for i in row if i >= 0))[:10]
        hits += int(np.sum(sq_dist(q, row) <= kth[q])) if row else 0
    return hits / (10 * len(ids))


work = Path(tempfile.mkdtemp(prefix="vellum-hnsw-"))
np.save(work / "queries.npy", Q)

# ---- build all three
db, v_build = indexed_vellum_db(work, X, args.m, args.ef_construction)

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


def timed(fn):
    """Median seconds of --reps calls of fn, and its last result."""
    times, out = [], None
    for _ in range(args.reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def hnswlib_sweep():
    rows = {}
    for ef in efs:
        h2.set_ef(ef)
        h2.set_num_threads(args.threads)
        h2.knn_query(Q, k=10)  # warm-up, as vellum's harness does per ef
        h2.set_num_threads(1)
        single, (ids, _) = timed(lambda: h2.knn_query(Q, k=10))
        h2.set_num_threads(args.threads)
        batch, _ = timed(lambda: h2.knn_query(Q, k=10))
        rows[ef] = {"single_s": single, "batch_s": batch, "recall": recall(ids)}
    return rows


def faiss_sweep():
    rows = {}
    for ef in efs:
        f2.hnsw.efSearch = ef
        faiss.omp_set_num_threads(args.threads)
        f2.search(Q, 10)  # warm-up, as vellum's harness does per ef
        faiss.omp_set_num_threads(1)
        single, (_, ids) = timed(lambda: f2.search(Q, 10))
        faiss.omp_set_num_threads(args.threads)
        batch, _ = timed(lambda: f2.search(Q, 10))
        rows[ef] = {"single_s": single, "batch_s": batch, "recall": recall(ids)}
    return rows


def vellum_sweep():
    v = vellum_timings(db, work / "queries.npy", args.efs, reps=args.reps)
    rows = {r["ef"]: {**r, "recall": recall([[int(i) for i in row] for row in r["top"]])} for r in v["runs"]}
    return rows, v["open_s"]


# ---- rounds: the libraries take turns; medians over rounds
runs = {"vellum": [], "hnswlib": [], "faiss": []}
v_open = []
for r in range(args.rounds):
    order = [("vellum", None), ("hnswlib", hnswlib_sweep), ("faiss", faiss_sweep)]
    order = order[r % 3:] + order[:r % 3]
    for name, sweep in order:
        if name == "vellum":
            rows, open_s = vellum_sweep()
            v_open.append(open_s)
        else:
            rows = sweep()
        runs[name].append(rows)


def merged(name):
    out = {}
    for ef in efs:
        per = [rows[ef] for rows in runs[name]]
        out[ef] = {key: statistics.median(p[key] for p in per)
                   for key in per[0] if key.endswith("_s")}
        out[ef]["recall"] = per[0]["recall"]
    return out


v_rows, h_rows, f_rows = merged("vellum"), merged("hnswlib"), merged("faiss")


def qps_at(rows, target, key="single_s"):
    """1-thread q/s at recall == target, interpolated between the efs that bracket it (linear in
    recall, in log q/s); None when no ef reaches the target; the first ef's q/s when it already
    exceeds it (a lower bound: a smaller ef would be faster)."""
    pts = [(rows[ef]["recall"], nq / rows[ef][key]) for ef in efs]
    if pts[0][0] > target:
        return pts[0][1], "≥"
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 < target <= r1:
            w = (target - r0) / (r1 - r0) if r1 > r0 else 1.0
            return math.exp(math.log(q0) + w * (math.log(q1) - math.log(q0))), ""
    return None, ""


nq = len(Q)
print(cpu.describe())
if args.simd == "avx2":
    print(f"AVX2 paths: VELLUM_SIMD=avx2, FAISS SIMD level {faiss.SIMDConfig.get_level_name()}")
print(f"{ties} of {nq} queries have a tie at the 10th neighbour (recall counts tied rows as right)")
print(f"{args.data} {args.n} x {DIM} (L2), {nq} queries, k=10, M={args.m}, ef_construction={args.ef_construction}, "
      f"medians of {args.reps} reps x {args.rounds} alternating rounds, "
      f"{args.threads} threads; hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else ''}, faiss {faiss.__version__}")
print()
print("| ef | vellum recall | vellum 1-thread q/s (per-call) | vellum batch q/s | hnswlib recall | hnswlib 1-thread q/s | hnswlib batch q/s | FAISS recall | FAISS 1-thread q/s | FAISS batch q/s | vellum / hnswlib (1 thread) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for ef in efs:
    vr, hr, fr = v_rows[ef], h_rows[ef], f_rows[ef]
    v_rec = vr["recall"]
    print(f"| {ef} | {v_rec:.4f} | {nq / vr['single_batch_s']:,.0f} ({nq / vr['single_s']:,.0f}) | {nq / vr['batch_s']:,.0f} | {hr['recall']:.4f} | "
          f"{nq / hr['single_s']:,.0f} | {nq / hr['batch_s']:,.0f} | {fr['recall']:.4f} | {nq / fr['single_s']:,.0f} | "
          f"{nq / fr['batch_s']:,.0f} | {hr['single_s'] / vr['single_batch_s']:.2f}x |")
print()
# vellum's comparable 1-thread figure is the whole query set in one call, as the peers'.
at = {"vellum": qps_at(v_rows, args.target, "single_batch_s"),
      "hnswlib": qps_at(h_rows, args.target), "FAISS": qps_at(f_rows, args.target)}
print(f"1-thread q/s at recall@10 = {args.target} (interpolated between efs): "
      + ", ".join(f"{name} {mark}{q:,.0f}" if q else f"{name} (not reached)" for name, (q, mark) in at.items()))
peers = [q for name, (q, _) in at.items() if name != "vellum" and q]
if at["vellum"][0] and peers:
    # A '≥' figure is a lower bound (the smallest ef measured already exceeds the target): on
    # vellum's side it makes the ratio a lower bound, on the best peer's an upper bound.
    best = max((q, m) for name, (q, m) in at.items() if name != "vellum" and q)
    v_bound, p_bound = at["vellum"][1] == "≥", best[1] == "≥"
    bound = {(False, False): "", (True, False): " (at least: vellum's figure is a lower bound)",
             (False, True): " (at most: the best peer's figure is a lower bound)",
             (True, True): " (both figures are lower bounds: extend --efs below the first ef)"}
    print(f"vellum / best peer at recall {args.target}: {at['vellum'][0] / best[0]:.2f}x"
          + bound[(v_bound, p_bound)])
print()
print("| | vellum | hnswlib | FAISS |")
print("|---|---:|---:|---:|")
print(f"| build ({args.threads} threads) | {v_build:.1f} s (`vellum index`: build + segment rewrite) | {h_build:.1f} s | {f_build:.1f} s |")
print(f"| open / load | {statistics.median(v_open) * 1e3:.2f} ms (open database) | {h_load * 1e3:.1f} ms (load_index) | {f_load * 1e3:.1f} ms (read_index) |")
print(f"\nfiles kept in {work}")
