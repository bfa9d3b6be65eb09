"""The corpora of the flat-search comparisons (`compare_flat.py`, `compare_python.py`): made once
under benches/compare/data/flat_{n}x{dim}[_{dist}]/ as corpus.npy, queries.npy and corpus.jsonl.

--dist normal: standard normal float32. --dist clustered: unit vectors with the structure of real
sentence embeddings (a shared mean direction, 256 topic clusters, cosine scores mostly in 0.2-0.7;
queries drawn near the clusters). `from_vectors`: the first rows of any corpus.npy / queries.npy
(e.g. real all-MiniLM-L6-v2 embeddings from benches/compare/minilm_vectors.sh).
"""
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def make(n, dim, n_queries, dist):
    """Returns (data directory, corpus.npy, queries.npy), generating them if missing."""
    suffix = "" if dist == "normal" else f"_{dist}"
    data = ROOT / "benches/compare/data" / f"flat_{n}x{dim}{suffix}"
    data.mkdir(parents=True, exist_ok=True)
    corpus, queries = data / "corpus.npy", data / "queries.npy"
    if not corpus.exists():
        rng = np.random.default_rng(0)
        if dist == "normal":
            np.save(corpus, rng.standard_normal((n, dim), dtype=np.float32))
            np.save(queries, rng.standard_normal((n_queries, dim), dtype=np.float32))
        else:
            def unit(v):
                return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
            mean = unit(rng.standard_normal((1, dim)))
            centers = unit(rng.standard_normal((256, dim)))
            def draw(m, noise):
                c = centers[rng.integers(0, len(centers), m)]
                return unit(0.7 * mean + 0.6 * c + noise * rng.standard_normal((m, dim)) / np.sqrt(dim))
            np.save(corpus, draw(n, 0.8))
            np.save(queries, draw(n_queries, 0.8))
        with open(data / "corpus.jsonl", "w") as f:
            for i in range(n):
                f.write(json.dumps({"id": str(i)}) + "\n")

    return data, corpus, queries


def from_vectors(src, n, n_queries):
    """Returns (data directory, corpus.npy, queries.npy): the first `n` rows of `src`/corpus.npy
    and the first `n_queries` of `src`/queries.npy as float32, copied once under
    benches/compare/data/flat_vectors_{src name}_{n}x{n_queries}/."""
    src = Path(src)
    data = ROOT / "benches/compare/data" / f"flat_vectors_{src.name}_{n}x{n_queries}"
    data.mkdir(parents=True, exist_ok=True)
    corpus, queries = data / "corpus.npy", data / "queries.npy"
    if not corpus.exists():
        X = np.ascontiguousarray(np.load(src / "corpus.npy")[:n], dtype=np.float32)
        np.save(queries, np.ascontiguousarray(np.load(src / "queries.npy")[:n_queries], dtype=np.float32))
        with open(data / "corpus.jsonl", "w") as f:
            for i in range(len(X)):
                f.write(json.dumps({"id": str(i)}) + "\n")
        np.save(corpus, X)
    return data, corpus, queries
