"""Token pooling's effect on late-interaction quality, measured with vellum alone.

A ColBERT-like checkpoint is made from all-MiniLM-L6-v2 (tools/fetch-minilm.sh) in the Stanford
layout: MiniLM's weights under ``bert.``, a fixed random 384 → 128 head (seed 0, the same kind of
projection as the PLAID benchmark's token vectors), markers ``[unused0]`` / ``[unused1]``, query
length 32, document length 180. The Debian sample (examples/debian: 2,000 package descriptions,
their one-line summaries as known-item queries) is ingested through that encoder with
``pool_factor`` 1, 2 and 3, and every query is searched by exact MaxSim (k = 10); the script
prints stored vectors, MRR@10, recall@10, and top-10 agreement with the unpooled field.

Needs the vellum Python package (tools/python-tests.sh builds it) plus numpy and safetensors:
    python benches/compare/pooling_quality.py [--docs 2000]
"""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

import vellum

ROOT = Path(__file__).resolve().parents[2]


def colbert_from_minilm(minilm: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for f in ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]:
        if (minilm / f).exists():
            shutil.copy(minilm / f, out / f)
    config = json.loads((minilm / "config.json").read_text())
    config["architectures"] = ["HF_ColBERT"]
    (out / "config.json").write_text(json.dumps(config, indent=2))
    weights = {f"bert.{k}": v for k, v in load_file(str(minilm / "model.safetensors")).items()}
    rng = np.random.default_rng(0)
    weights["linear.weight"] = (rng.standard_normal((128, 384)) / np.sqrt(384)).astype(np.float32)
    save_file(weights, str(out / "model.safetensors"))
    (out / "artifact.metadata").write_text(json.dumps({
        "query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_maxlen": 32,
        "doc_maxlen": 180, "dim": 128, "mask_punctuation": True, "attend_to_mask_tokens": False,
        "similarity": "cosine"}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000)
    args = ap.parse_args()
    minilm = ROOT / "models" / "all-MiniLM-L6-v2"
    ex = ROOT / "examples" / "debian"
    docs = [json.loads(l) for l in (ex / "corpus.jsonl").read_text().splitlines()[: args.docs]]
    ids = [d["id"] for d in docs]
    known = set(ids)
    qrels = {}
    for line in (ex / "qrels.txt").read_text().splitlines():
        q, _, d, rel = line.split()
        if d in known and int(rel) > 0:
            qrels.setdefault(q, set()).add(d)
    queries = [l.split("\t", 1) for l in (ex / "queries.tsv").read_text().splitlines()]
    queries = [(q, t) for q, t in queries if q in qrels]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "minilm-colbert"
        colbert_from_minilm(minilm, model)
        results = {}
        for factor in [1, 2, 3]:
            db = vellum.create(Path(tmp) / f"db{factor}")
            c = db.create_collection(
                "docs", ["tok:multi:128:f16:ip"], encoders={"tok": model},
                encoder_options={"tok": {"pool_factor": factor}} if factor > 1 else None)
            t0 = time.perf_counter()
            c.add(ids, texts=[d["text"] for d in docs])
            db.commit()
            seconds = time.perf_counter() - t0
            got, _ = c.search_text([t for _, t in queries], k=10)
            results[factor] = (got, seconds, Path(tmp) / f"db{factor}")
        base = results[1][0]
        print(f"docs {len(docs)}, queries {len(queries)}, exact MaxSim k=10")
        for factor, (got, seconds, path) in results.items():
            mrr = recall = agree = 0.0
            for (q, _), row, row1 in zip(queries, got, base):
                rel = qrels[q]
                rank = next((r for r, d in enumerate(row) if d in rel), None)
                mrr += 0 if rank is None else 1 / (rank + 1)
                recall += len(rel & set(row)) / len(rel)
                agree += len(set(row) & set(row1)) / 10
            n = len(queries)
            size = sum(f.stat().st_size for f in Path(path).rglob("*.vseg"))
            print(json.dumps({"pool_factor": factor, "mrr@10": round(mrr / n, 4),
                              "recall@10": round(recall / n, 4),
                              "top10_agreement_with_unpooled": round(agree / n, 4),
                              "segment_bytes": size, "ingest_s": round(seconds, 1)}))


if __name__ == "__main__":
    main()
