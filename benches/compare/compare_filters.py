#!/usr/bin/env python3
"""Filtered search: HNSW with metadata filters of selectivity 50 %, 10 %, 1 % and 0.1 % beside an
unfiltered run, against filtered exact search (recall@10, queries/s on one thread, hits returned).

Usage: python3 benches/compare/compare_filters.py [--n 60000] [--queries 1000] [--ef 64]

Data: Fashion-MNIST (784-d, L2) from the Debian package `dataset-fashion-mnist`, as
compare_hnsw.py: the first --n training images, the first --queries test images. Each document
gets `{"bucket": (i * 7919) mod 1000}`; the filter `{"bucket": {"$lt": b}}` keeps b / 1000 of the
rows, uncorrelated with the vectors. The database (HNSW M = 16, ef_construction = 200) is built
once under benches/compare/data/filters_<n>/ by the timing harness
(benches/compare/filter_timing.rs), which prints the table.
"""
import argparse, gzip, subprocess, sys
from pathlib import Path

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=60_000)
ap.add_argument("--queries", type=int, default=1000)
ap.add_argument("--ef", type=int, default=64)
args = ap.parse_args()
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402

root = Path(__file__).resolve().parents[2]
src = Path("/usr/share/datasets/fashion-mnist")
data = root / "benches" / "compare" / "data" / f"filters_{args.n}"
data.mkdir(parents=True, exist_ok=True)


def images(name, n):
    with gzip.open(src / name) as f:
        raw = f.read()
    return np.frombuffer(raw, dtype=np.uint8, offset=16)[: n * 784].reshape(n, 784).astype(np.float32)


if not (data / "corpus.npy").exists():
    np.save(data / "corpus.npy", images("train-images-idx3-ubyte.gz", args.n))
    np.save(data / "queries.npy", images("t10k-images-idx3-ubyte.gz", args.queries))
print(cpu.describe())
subprocess.run(
    ["cargo", "bench", "--quiet", "--bench", "compare_filter_timing", "--", "--db", str(data / "db"),
     "--corpus", str(data / "corpus.npy"), "--queries", str(data / "queries.npy"), "--ef",
     str(args.ef)], cwd=root, check=True)
