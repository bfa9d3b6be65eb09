#!/usr/bin/env python3
"""Reduced-precision encoders: speed and retrieval quality of `dtype=f32|bf16|int8` in one run.

Usage: python3 benches/compare/encoder_dtype_quality.py [--dtypes f32,int8,bf16] [--threads 2]

For each dtype, with the release CLI and all-MiniLM-L6-v2 (tools/fetch-minilm.sh): create a
database whose field is encoded with `--encoder-options emb=dtype=D`, ingest the 2,000 Debian
package descriptions of examples/debian (timed: read, tokenize, encode, write, commit), search
the 200 one-line summaries (encoded by the same dtype), and evaluate against the qrels. Reports
docs/s, MRR@10 and recall@10, and each dtype's top-10 agreement with f32. Needs only python3.
"""
import argparse, os, subprocess, sys, tempfile, time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--dtypes", default="f32,int8,bf16")
ap.add_argument("--threads", type=int, default=os.cpu_count())
args = ap.parse_args()
root = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402

print(cpu.describe(), "VELLUM_SIMD=" + os.environ.get("VELLUM_SIMD", "unset"))
ex = root / "examples/debian"
model = root / "models/all-MiniLM-L6-v2"
subprocess.run(["bash", str(root / "tools/fetch-minilm.sh"), str(model)], check=True)
subprocess.run(["cargo", "build", "--release", "-q", "-p", "vellum-cli"], cwd=root, check=True)
vellum = str(root / "target/release/vellum")
env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))


def top10(run_text):
    ranks = {}
    for line in run_text.splitlines():
        qid, _, doc, rank, _score, _tag = line.split()
        if int(rank) <= 10:
            ranks.setdefault(qid, set()).add(doc)
    return ranks


rows, runs = [], {}
with tempfile.TemporaryDirectory() as tmp:
    for dtype in args.dtypes.split(","):
        db = Path(tmp) / dtype
        subprocess.run([vellum, "create", db, "--collection", "docs", "--field", "emb:dense:384:f32:cosine",
                        "--encoder", f"emb={model}", "--encoder-options", f"emb=dtype={dtype}"],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        t = time.perf_counter()
        subprocess.run([vellum, "ingest", db, "--collection", "docs", "--docs", ex / "corpus.jsonl"],
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ingest_s = time.perf_counter() - t
        out = subprocess.run([vellum, "search", db, "--collection", "docs", "--field", "emb", "--queries",
                              ex / "queries.tsv", "-k", "100", "--format", "trec", "--eval", ex / "qrels.txt",
                              "--metrics", "mrr@10,recall@10"],
                             check=True, env=env, capture_output=True, text=True)
        measures = {}
        for line in out.stderr.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ("mrr@10", "recall@10"):
                measures[parts[0]] = float(parts[-1])
        runs[dtype] = top10(out.stdout)
        rows.append((dtype, 2000 / ingest_s, measures.get("mrr@10"), measures.get("recall@10")))

ref = runs.get("f32")
print(f"threads {args.threads}; 2,000 passages, 200 queries (examples/debian)")
print("| dtype | ingest docs/s | MRR@10 | recall@10 | top-10 agreement with f32 |")
print("|---|---|---|---|---|")
for dtype, dps, mrr, rec in rows:
    agree = "" if ref is None else f"{sum(len(runs[dtype].get(q, set()) & s) for q, s in ref.items()) / sum(len(s) for s in ref.values()):.4f}"
    print(f"| {dtype} | {dps:,.1f} | {mrr} | {rec} | {agree} |")
