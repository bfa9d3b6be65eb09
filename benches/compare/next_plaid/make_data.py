"""Token vectors for compare-next-plaid: the Debian sample (examples/debian: package
descriptions; their one-line summaries as known-item queries) encoded by vellum's ColBERT
encoder over all-MiniLM-L6-v2 with a fixed random 128-d head (the checkpoint
``benches/compare/pooling_quality.py`` makes: MiniLM in the Stanford ColBERT layout), documents
with ``role=passage``, queries with ``role=query`` (``[MASK]``-expanded to 32 tokens).

    python benches/compare/next_plaid/make_data.py OUT_DIR [--corpus DIR] [--docs N] [--queries N]
        [--model COLBERT_DIR]

``--model`` encodes with that ColBERT checkpoint instead of the random head (for example the
trained stand-in ``benches/compare/train_colbert.py`` makes).

``--corpus`` is a folder as examples/debian/make_corpus.py writes (corpus.jsonl, queries.tsv,
qrels.txt): the 2,000-document sample by default, or more (``make_corpus.py DIR --docs 10000``).

Writes doc_tokens.npy (f32 [T, 128]), doc_lengths.npy (i64 [N]), query_tokens.npy,
query_lengths.npy and relevant.json (per query, the index of its document). Needs the vellum
Python package, numpy and safetensors.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

import vellum

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from pooling_quality import ROOT, colbert_from_minilm  # noqa: E402


def check_parity(model: Path) -> None:
    """vellum's token vectors against the PyTorch ones ``train_colbert.py`` saved."""
    ref = np.load(model / "reference.npz")
    for name, role in [("query", "query"), ("doc", "passage")]:
        texts = [str(t) for t in ref[f"{name}_texts"]]
        got = vellum.Encoder(model, role=role, truncate=True).encode(texts)
        counts = [len(g) for g in got]
        if counts != list(ref[f"{name}_lengths"]):
            sys.exit(f"{name}: token counts differ from PyTorch's: {counts} vs {list(ref[name + '_lengths'])}")
        a, b = np.concatenate(got).astype(np.float64), ref[f"{name}_tokens"].astype(np.float64)
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        print(f"parity with PyTorch, {len(texts)} {name} texts, {len(a)} tokens: "
              f"min cosine {cos.min():.7f}, mean {cos.mean():.7f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--corpus", default=str(ROOT / "examples" / "debian"))
    ap.add_argument("--docs", type=int, default=None)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ex = Path(args.corpus)
    docs = [json.loads(l) for l in (ex / "corpus.jsonl").read_text().splitlines()[: args.docs]]
    index = {d["id"]: i for i, d in enumerate(docs)}
    relevant_of = {}
    for line in (ex / "qrels.txt").read_text().splitlines():
        q, _, d, rel = line.split()
        if d in index and int(rel) > 0:
            relevant_of.setdefault(q, index[d])
    queries = [l.split("\t", 1) for l in (ex / "queries.tsv").read_text().splitlines()]
    queries = [(q, t) for q, t in queries if q in relevant_of][: args.queries]
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model = Path(args.model)
            if (model / "reference.npz").exists():
                check_parity(model)
        else:
            model = Path(tmp) / "minilm-colbert"
            colbert_from_minilm(ROOT / "models" / "all-MiniLM-L6-v2", model)
        passages = vellum.Encoder(model, role="passage").encode([d["text"] for d in docs])
        qvecs = vellum.Encoder(model, role="query", truncate=True).encode([t for _, t in queries])
    np.save(out / "doc_tokens.npy", np.concatenate(passages).astype(np.float32))
    np.save(out / "doc_lengths.npy", np.array([len(p) for p in passages], dtype=np.int64))
    np.save(out / "query_tokens.npy", np.concatenate(qvecs).astype(np.float32))
    np.save(out / "query_lengths.npy", np.array([len(q) for q in qvecs], dtype=np.int64))
    (out / "relevant.json").write_text(json.dumps([relevant_of[q] for q, _ in queries]))
    print(f"{len(docs)} documents, {sum(len(p) for p in passages)} tokens, {len(queries)} queries")


if __name__ == "__main__":
    main()
