#!/usr/bin/env python3
"""vellum's PLAID index against exact MaxSim and against fast-plaid (LightOn's PLAID engine,
Rust + PyTorch; `pip install fast-plaid`, also pulled in by PyLate), side by side on the same
token vectors, in one run.

    python3 benches/compare/compare_plaid.py [--docs 20000] [--queries 500] [--threads 1]

Data (made once under benches/compare/data/plaid_minilm_{docs}/): real Debian package
descriptions (the long descriptions of Debian's Translation-en lists, as examples/debian uses)
encoded token by token by all-MiniLM-L6-v2
(sentence-transformers, `output_value="token_embeddings"`, models/all-MiniLM-L6-v2), projected
to 128 dimensions by a fixed seeded Gaussian matrix and L2-normalised per token — a realistic
multi-vector set (ColBERT-like token vectors) without a ColBERT checkpoint. Queries: the one-line
summaries of `--queries` of those packages, encoded the same way; each query's relevant document
is its own package (known-item retrieval).

Reports, for vellum (exact MaxSim; PLAID at the paper's k = 10 defaults and with more cells) and
fast-plaid (n_ivf_probe 1..8, n_full_scores 4096, same nbits): top-10 agreement with exact
MaxSim, MRR@10, mean latency per query (`--threads` threads, one query at a time), index build
time and index bytes per token; then adds 1 % more documents to vellum without re-clustering and
reports agreement again. Needs: numpy, torch, sentence-transformers, fast-plaid, and the vellum
wheel (`tools/python-tests.sh` builds it into python/dist/).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARGS = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ARGS.add_argument("--docs", type=int, default=20000)
ARGS.add_argument("--queries", type=int, default=500, help="queries made with the data")
ARGS.add_argument("--use-queries", type=int, default=200, help="queries searched")
ARGS.add_argument("--threads", type=int, default=1)
ARGS.add_argument("--nbits", type=int, default=2)
ARGS.add_argument("--skip-fast-plaid", action="store_true")
args = ARGS.parse_args()
os.environ["RAYON_NUM_THREADS"] = str(args.threads)
os.environ["OMP_NUM_THREADS"] = str(args.threads)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402  (before numpy / torch)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DIM = 128


def packages():
    """(name, summary, long description) of every package with a long description of at least
    200 characters in Debian's English descriptions (`apt-get update -o
    Acquire::Languages=en`), read as examples/debian/make_corpus.py reads them; sorted by name."""
    sys.path.insert(0, str(ROOT / "examples/debian"))
    import make_corpus

    lists = sorted(Path("/var/lib/apt/lists").glob("*_main_i18n_Translation-en*"))
    if not lists:
        sys.exit("no Translation-en files: run apt-get update -o Acquire::Languages=en")
    dump = "\n\n".join(
        subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(p)], capture_output=True,
                       text=True, check=True).stdout for p in lists)
    by_name = {}
    for p in make_corpus.packages(dump):
        summary, long = make_corpus.description(p["Description-en"])
        if len(long) >= 200 and summary:
            by_name.setdefault(p["Package"], (summary, long.replace("\n", " ")))
    return [(n, *by_name[n]) for n in sorted(by_name)]


def data():
    d = ROOT / "benches/compare/data" / f"plaid_minilm_{args.docs}"
    if (d / "q_lengths.npy").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    import torch
    from sentence_transformers import SentenceTransformer

    rng = np.random.default_rng(0)
    pk = packages()
    pick = np.sort(rng.choice(len(pk), size=min(args.docs, len(pk)), replace=False))
    docs = [pk[i] for i in pick]
    model = SentenceTransformer(str(ROOT / "models/all-MiniLM-L6-v2"), device="cpu")
    model.max_seq_length = 128
    proj = rng.standard_normal((384, DIM)).astype(np.float32) / np.sqrt(DIM)

    def encode(texts):
        toks = model.encode(texts, output_value="token_embeddings", batch_size=64,
                            convert_to_numpy=False, show_progress_bar=True)
        out = []
        for t in toks:
            v = t.float().numpy() @ proj
            out.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
        return out

    with torch.inference_mode():
        doc_tokens = encode([t for _, _, t in docs])
        qsel = np.sort(rng.choice(len(docs), size=args.queries, replace=False))
        q_tokens = encode([docs[i][1] for i in qsel])
    np.save(d / "tokens.npy", np.concatenate(doc_tokens).astype(np.float16))
    np.save(d / "lengths.npy", np.array([len(t) for t in doc_tokens], dtype=np.int64))
    np.save(d / "q_tokens.npy", np.concatenate(q_tokens).astype(np.float32))
    np.save(d / "q_lengths.npy", np.array([len(t) for t in q_tokens], dtype=np.int64))
    np.save(d / "q_relevant.npy", qsel.astype(np.int64))
    return d


def split(flat, lengths):
    offs = np.concatenate([[0], np.cumsum(lengths)])
    return [flat[offs[i]:offs[i + 1]] for i in range(len(lengths))]


def mrr10(runs, relevant):
    s = 0.0
    for r, rel in zip(runs, relevant):
        if rel in r[:10]:
            s += 1.0 / (r.index(rel) + 1)
    return s / len(runs)


def agreement(runs, exact):
    return float(np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(runs, exact)]))


def timed_runs(search, queries):
    runs, t0 = [], time.perf_counter()
    for q in queries:
        runs.append(search(q))
    return runs, (time.perf_counter() - t0) / len(queries) * 1e3


def main():
    import vellum

    d = data()
    tokens = np.load(d / "tokens.npy").astype(np.float32)
    lengths = np.load(d / "lengths.npy")
    docs = split(tokens, lengths)
    queries = split(np.load(d / "q_tokens.npy"), np.load(d / "q_lengths.npy"))[: args.use_queries]
    relevant = [int(i) for i in np.load(d / "q_relevant.npy")][: args.use_queries]
    n = len(docs)
    held = max(1, n // 100)  # 1 % added later, without re-clustering
    print(f"# {cpu.describe()}; {args.threads} thread(s)")
    print(f"# {n} documents, {len(tokens)} tokens x {DIM}, {len(queries)} queries, nbits {args.nbits}")
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        db = vellum.create(Path(tmp) / "db")
        c = db.create_collection("c", [f"tok:multi:{DIM}:f16:ip"])
        base = n - held
        for s in range(0, base, 5000):
            e = min(s + 5000, base)
            c.add([str(i) for i in range(s, e)], vectors={"tok": docs[s:e]})
        db.commit()
        t0 = time.perf_counter()
        c.plaid_index("tok", f"nbits={args.nbits}")
        build = time.perf_counter() - t0
        exact, t_exact = timed_runs(
            lambda q: [int(i) for i in c.search(q, k=10, exact=True)[0][0]], queries)
        rows.append(("vellum exact MaxSim", 1.0, mrr10(exact, relevant), t_exact))
        for label, p in [("vellum PLAID k=10 defaults (ncells 1)", None),
                         ("vellum PLAID ncells 2", {"ncells": 2}),
                         ("vellum PLAID ncells 4", {"ncells": 4}),
                         ("vellum PLAID ncells 8, ndocs 1024", {"ncells": 8, "ndocs": 1024})]:
            runs, t = timed_runs(
                lambda q, p=p: [int(i) for i in c.search(q, k=10, plaid=p)[0][0]], queries)
            rows.append((label, agreement(runs, exact), mrr10(runs, relevant), t))
        section = sum(s["plaid"]["tok"]["bytes"] for s in c.info()["segments"])
        # 1 % more documents, encoded with the existing codec.
        c.add([str(i) for i in range(base, n)], vectors={"tok": docs[base:]})
        db.commit()
        exact2 = [[int(i) for i in c.search(q, k=10, exact=True)[0][0]] for q in queries]
        runs2 = [[int(i) for i in c.search(q, k=10)[0][0]] for q in queries]
        after_adds = agreement(runs2, exact2)
        db.close()

    print(f"vellum PLAID build (k-means + encoding, nbits {args.nbits}): {build:.1f} s")
    if section:
        print(f"vellum PLAID section bytes per token (all-in, codec included): {section / (len(tokens) - sum(lengths[base:])):.1f}")
    print(f"vellum after +1 % documents without re-clustering: agreement {after_adds:.3f} (defaults)")

    if not args.skip_fast_plaid:
        import torch
        from fast_plaid import search as fp

        torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as tmp:
            idx = fp.FastPlaid(index=str(Path(tmp) / "fp"), device="cpu")
            t0 = time.perf_counter()
            idx.create(documents_embeddings=[torch.from_numpy(x) for x in docs], nbits=args.nbits)
            fbuild = time.perf_counter() - t0
            fbytes = sum(f.stat().st_size for f in (Path(tmp) / "fp").rglob("*") if f.is_file())
            for probe in (1, 2, 4, 8):
                def s(q, probe=probe):
                    r = idx.search(torch.from_numpy(q)[None], top_k=10, n_ivf_probe=probe,
                                   n_full_scores=4096, show_progress=False)
                    return [int(i) for i, _ in r[0]]
                runs, t = timed_runs(s, queries)
                rows.append((f"fast-plaid n_ivf_probe {probe}", agreement(runs, exact),
                             mrr10(runs, relevant), t))
        print(f"fast-plaid build: {fbuild:.1f} s; index bytes per token (files): {fbytes / len(tokens):.1f}")

    print()
    print(f"| method | top-10 agreement with exact | MRR@10 | ms / query ({args.threads} thread{'s' if args.threads > 1 else ''}) |")
    print("|---|---:|---:|---:|")
    for label, a, m, t in rows:
        print(f"| {label} | {a:.3f} | {m:.4f} | {t:.2f} |")


if __name__ == "__main__":
    main()
