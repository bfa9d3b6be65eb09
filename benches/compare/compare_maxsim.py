#!/usr/bin/env python3
"""Exact MaxSim over 1,000 candidate documents per query — the rerank stage of late interaction —
vellum against PyTorch on the CPU, side by side in one run.

    python3 benches/compare/compare_maxsim.py [--candidates 1000] [--queries 200] [--threads 1]

Token vectors: the first `--candidates` documents of compare_plaid.py's MiniLM token set
(benches/compare/data/plaid_minilm_20000/, 128-d, unit norm; run compare_plaid.py first) and its
queries. vellum: a collection holding exactly the candidates (f16 and f32 fields), `search(q,
k=10, exact=True)` per query (stacked query tokens × token matrix products, max per document,
sum). PyTorch: the candidates padded to `[n, L, 128]` with a mask, `einsum("qd,nld->nql")`, masked
max over `l`, sum over `q`, `topk(10)` — float32 (and bfloat16 where given). Reports ms per query
and the ratio.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ARGS = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ARGS.add_argument("--candidates", type=int, default=1000)
ARGS.add_argument("--queries", type=int, default=200)
ARGS.add_argument("--threads", type=int, default=1)
args = ARGS.parse_args()
os.environ["RAYON_NUM_THREADS"] = str(args.threads)
os.environ["OMP_NUM_THREADS"] = str(args.threads)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def split(flat, lengths):
    offs = np.concatenate([[0], np.cumsum(lengths)])
    return [flat[offs[i]:offs[i + 1]] for i in range(len(lengths))]


def main():
    import vellum

    torch.set_num_threads(args.threads)
    d = ROOT / "benches/compare/data/plaid_minilm_20000"
    lengths = np.load(d / "lengths.npy")[: args.candidates]
    tokens = np.load(d / "tokens.npy")[: int(lengths.sum())].astype(np.float32)
    docs = split(tokens, lengths)
    queries = split(np.load(d / "q_tokens.npy"), np.load(d / "q_lengths.npy"))[: args.queries]
    print(f"# {cpu.describe()}; {args.threads} thread(s); torch {torch.__version__}")
    print(f"# {len(docs)} candidates ({int(lengths.sum())} tokens, max {lengths.max()}), "
          f"{len(queries)} queries of {np.mean([len(q) for q in queries]):.1f} tokens, d = 128")

    L = int(lengths.max())
    padded = np.zeros((len(docs), L, 128), dtype=np.float32)
    mask = np.zeros((len(docs), L), dtype=bool)
    for i, x in enumerate(docs):
        padded[i, : len(x)] = x
        mask[i, : len(x)] = True
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        X = torch.from_numpy(padded).to(dtype)
        M = torch.from_numpy(mask)

        def rerank(q):
            s = torch.einsum("qd,nld->nql", torch.from_numpy(q).to(dtype), X)
            s = s.masked_fill(~M[:, None, :], float("-inf")).amax(dim=2).float().sum(dim=1)
            return s.topk(10).indices
        with torch.inference_mode():
            for q in queries[:5]:
                rerank(q)
            t0 = time.perf_counter()
            for q in queries:
                rerank(q)
        rows.append((f"PyTorch einsum + masked max + sum ({str(dtype).split('.')[-1]})",
                     (time.perf_counter() - t0) / len(queries) * 1e3))

    with tempfile.TemporaryDirectory() as tmp:
        db = vellum.create(Path(tmp) / "db")
        for dt in ("f32", "f16"):
            c = db.create_collection(f"c{dt}", [f"tok:multi:128:{dt}:ip"])
            c.add([str(i) for i in range(len(docs))], vectors={"tok": docs})
            db.commit()
            for q in queries[:5]:
                c.search(q, k=10, exact=True)
            t0 = time.perf_counter()
            for q in queries:
                c.search(q, k=10, exact=True)
            rows.append((f"vellum exact MaxSim ({dt} field)",
                         (time.perf_counter() - t0) / len(queries) * 1e3))
        db.close()

    base = rows[0][1]
    print()
    print(f"| method | ms / query ({args.threads} thread{'s' if args.threads > 1 else ''}) | vs PyTorch f32 |")
    print("|---|---:|---:|")
    for label, t in rows:
        print(f"| {label} | {t:.2f} | {base / t:.2f}× |")


if __name__ == "__main__":
    main()
