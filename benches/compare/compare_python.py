#!/usr/bin/env python3
"""The Python binding vs the Rust API, and vellum.ray's costs, on this machine in one run.

Usage (in a Python environment with the vellum wheel, numpy and ray installed; see README):
    python benches/compare/compare_python.py [--n 50000] [--dim 384] [--queries 1000] [--k 10]
                                             [--rounds 3] [--reps 5] [--dist clustered]

1. Exact batch search of all queries (k=10) and single queries one at a time, through
   `vellum.Collection.search` and through the Rust API (`benches/compare/timing.rs`, the harness
   the FAISS comparison uses), alternating rounds on the same database (built once by the binding
   from `flat_data`'s corpus). Reports medians and the Python/Rust time ratio; checks both return the
   same top-k.
2. Ray fan-out: the same corpus as two shards (`vellum.ray.ingest` of a Ray Dataset with a vector
   column), searched with `vellum.ray.ShardedSearcher`: batch time, and the round trip of a
   one-query batch against the direct call (the per-batch overhead of fan-out and merge).
3. Distributed ingest throughput: all-MiniLM-L6-v2 encoding of the Debian sample (2,000 passages)
   with 1 and 2 shard actors (`ray.init(num_cpus=2)`), wall time including actor start.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=50_000)
ap.add_argument("--dim", type=int, default=384)
ap.add_argument("--queries", type=int, default=1000)
ap.add_argument("--k", type=int, default=10)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--single", type=int, default=200)
ap.add_argument("--dist", choices=["normal", "clustered"], default="clustered")
ap.add_argument("--skip-ray", action="store_true")
args = ap.parse_args()

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here))
import cpu  # noqa: E402
import flat_data  # noqa: E402

import numpy as np  # noqa: E402

import vellum  # noqa: E402

root = here.parents[1]
data, corpus, queries = flat_data.make(args.n, args.dim, args.queries, args.dist)
X, Q = np.load(corpus), np.load(queries)
db_path = data / "db-python"
if not (db_path / "MANIFEST").exists():
    db = vellum.create(db_path)
    c = db.create_collection("docs", [f"emb:dense:{args.dim}:f32:ip"])
    for s in range(0, len(X), 10_000):
        c.add([str(i) for i in range(s, min(s + 10_000, len(X)))], vectors={"emb": X[s:s + 10_000]})
    db.commit()
    db.close()
subprocess.run(["cargo", "bench", "-q", "--bench", "compare_timing", "--no-run"], cwd=root,
               check=True, stderr=subprocess.DEVNULL)


def run_rust():
    out = subprocess.run(
        ["cargo", "bench", "-q", "--bench", "compare_timing", "--", "--db", str(db_path),
         "--queries", str(queries), "--k", str(args.k), "--reps", str(args.reps),
         "--single", str(args.single)],
        cwd=root, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_python():
    t = time.perf_counter()
    col = vellum.open(db_path, read_only=True)["docs"]
    open_s = time.perf_counter() - t
    ids, _ = col.search(Q, k=args.k)  # warm-up
    batch = []
    for _ in range(args.reps):
        t = time.perf_counter()
        col.search(Q, k=args.k)
        batch.append(time.perf_counter() - t)
    single = []
    n = min(args.single, len(Q))
    for _ in range(args.reps):
        t = time.perf_counter()
        for i in range(n):
            col.search(Q[i], k=args.k)
        single.append((time.perf_counter() - t) / n)
    return {"open_s": open_s, "batch_s": batch, "single_query_s": single,
            "top": [list(r) for r in ids[:100]]}


def med(rounds, key):
    return statistics.median(statistics.median(r[key]) for r in rounds)


rust, py = [], []
for _ in range(args.rounds):
    rust.append(run_rust())
    py.append(run_python())
assert all(a == b for a, b in zip(rust[0]["top"], py[0]["top"])), "Python and Rust disagree"
result = {
    "cpu": cpu.describe(),
    "corpus": f"{args.n} x {args.dim} f32 ({args.dist}), {args.queries} queries, k={args.k}",
    "rust_batch_s": med(rust, "batch_s"), "python_batch_s": med(py, "batch_s"),
    "rust_single_ms": 1e3 * med(rust, "single_query_s"),
    "python_single_ms": 1e3 * med(py, "single_query_s"),
}
result["batch_ratio_python_over_rust"] = result["python_batch_s"] / result["rust_batch_s"]
result["single_ratio_python_over_rust"] = result["python_single_ms"] / result["rust_single_ms"]
print(json.dumps(result, indent=1), flush=True)

if args.skip_ray:
    sys.exit(0)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
import ray  # noqa: E402

import vellum.ray as vr  # noqa: E402

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
tmp = Path(tempfile.mkdtemp(prefix="vellum-ray-bench-"))
ds = ray.data.from_items([{"id": str(i), "vec": X[i]} for i in range(len(X))])
t = time.perf_counter()
vr.ingest(ds, tmp / "shards", collection="docs", fields=[f"emb:dense:{args.dim}:f32:ip"],
          vectors={"emb": "vec"}, num_shards=2, batch_size=2048, commit_every=len(X))
shard_ingest_s = time.perf_counter() - t
direct = vellum.open(db_path, read_only=True)["docs"]
with vr.ShardedSearcher(tmp / "shards") as s:
    ids, _ = s.search(Q, k=args.k)  # warm-up
    assert all(list(a) == list(b) for a, b in zip(ids[:100], py[0]["top"])), "shards disagree"
    batch = []
    for _ in range(args.reps):
        t = time.perf_counter()
        s.search(Q, k=args.k)
        batch.append(time.perf_counter() - t)
    one, one_direct = [], []
    for i in range(50):
        t = time.perf_counter()
        s.search(Q[i:i + 1], k=args.k)
        one.append(time.perf_counter() - t)
        t = time.perf_counter()
        direct.search(Q[i:i + 1], k=args.k)
        one_direct.append(time.perf_counter() - t)
ray_result = {
    "ray_2_shards_batch_s": statistics.median(batch),
    "direct_batch_s": result["python_batch_s"],
    "ray_one_query_ms": 1e3 * statistics.median(one),
    "direct_one_query_ms": 1e3 * statistics.median(one_direct),
    "fanout_overhead_per_batch_ms": 1e3 * (statistics.median(one) - statistics.median(one_direct)),
    "vector_ingest_2_shards_s": shard_ingest_s,
}
minilm = root / "models" / "all-MiniLM-L6-v2"
debian = root / "examples" / "debian" / "corpus.jsonl"
for shards in (1, 2):
    t = time.perf_counter()
    m = vr.ingest(debian, tmp / f"text-{shards}", collection="docs",
                  fields=["emb:dense:384:f32:cosine"], encoders={"emb": str(minilm)},
                  num_shards=shards, commit_every=1000)
    secs = time.perf_counter() - t
    ray_result[f"text_ingest_{shards}_actor_docs_per_s"] = m["documents"] / secs
ray.shutdown()
print(json.dumps(ray_result, indent=1))
