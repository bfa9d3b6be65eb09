"""A trained ColBERT for measuring PLAID on realistic token vectors: fine-tunes all-MiniLM-L6-v2
with a 128-d linear head (no bias) under ColBERT's in-batch-negative loss on the Debian sample's
training pairs (one-line summary -> long description), and saves it in Stanford ColBERT's
HF_ColBERT layout, which vellum's ColBERT encoder reads.

Why: PLAID's stages assume token vectors that cluster as a trained ColBERT's do. The random
128-d head over MiniLM (``pooling_quality.colbert_from_minilm``) does not, and no real ColBERT
checkpoint can be downloaded on these machines. This is a small, honest stand-in made from the
real MiniLM weights; it is not a MS MARCO ColBERTv2.

    python benches/compare/train_colbert.py OUT_DIR --corpus CORPUS_DIR [--epochs 1]
    python benches/compare/train_colbert.py OUT_DIR --corpus CORPUS_DIR --reference-only

Both write OUT_DIR/reference.npz: this model's token vectors (PyTorch, f32) for the first 64
held-out queries and the first 64 documents, as vellum stores them (queries: all query_maxlen
tokens; documents: punctuation left out). ``next_plaid/make_data.py --model OUT_DIR`` compares
vellum's encoder with them (cosine per token, token counts).

CORPUS_DIR is what ``examples/debian/make_corpus.py DIR --docs N --train`` writes; training uses
train_queries.tsv / train_qrels.txt (documents that give no held-out query), never queries.tsv.
Encoding follows Stanford ColBERT (colbert/modeling/tokenization, colbert/modeling/colbert.py):
queries ``[CLS] [unused0] ... [SEP]`` padded with ``[MASK]`` to query_maxlen (32), which nothing
attends to (attend_to_mask_tokens false) but which are scored; documents ``[CLS] [unused1] ...
[SEP]`` truncated to doc_maxlen (180), punctuation and padding left out of MaxSim; the linear
head, then L2 normalisation per token; loss = cross-entropy of each query's MaxSim scores over
the batch's documents (ColBERT's ``use_ib_negatives``).

Needs torch, transformers, safetensors, numpy (CPU is enough: one epoch over 9,000 pairs took
35 minutes on 2 cores). Not run by CI. Evaluate with the same ``--docs`` as the training corpus:
the held-out queries are every 10th of the documents chosen for that N.
"""

import argparse
import json
import random
import shutil
import string
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertModel

ROOT = Path(__file__).resolve().parents[2]
QUERY_MAXLEN, DOC_MAXLEN, DIM = 32, 180, 128


class ColBERT(torch.nn.Module):
    def __init__(self, minilm: Path):
        super().__init__()
        self.bert = BertModel.from_pretrained(str(minilm), add_pooling_layer=False)
        self.linear = torch.nn.Linear(self.bert.config.hidden_size, DIM, bias=False)
        # The same initial head as pooling_quality.colbert_from_minilm (the untrained stand-in).
        rng = np.random.default_rng(0)
        w = rng.standard_normal((DIM, self.bert.config.hidden_size)) / np.sqrt(self.bert.config.hidden_size)
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(w.astype(np.float32)))

    def forward(self, ids, attention):
        h = self.bert(input_ids=ids, attention_mask=attention).last_hidden_state
        return torch.nn.functional.normalize(self.linear(h), dim=-1)


def tokenize(tok, texts, marker, maxlen, query):
    enc = tok(texts, add_special_tokens=True, truncation=True, max_length=maxlen - 1)
    ids, attention = [], []
    for row in enc["input_ids"]:
        row = [row[0], marker] + row[1:]
        att = [1] * len(row)
        if query:
            att += [0] * (maxlen - len(row))
            row += [tok.mask_token_id] * (maxlen - len(row))
        ids.append(row)
        attention.append(att)
    width = max(len(r) for r in ids)
    pad = lambda rows, v: torch.tensor([r + [v] * (width - len(r)) for r in rows])  # noqa: E731
    return pad(ids, tok.pad_token_id), pad(attention, 0)


def load(path: Path) -> "ColBERT":
    """A checkpoint this script saved (Stanford layout) back into the PyTorch model."""
    from safetensors.torch import load_file

    model = ColBERT(path)  # BertModel reads config.json; the weights are set below
    weights = load_file(str(path / "model.safetensors"))
    model.bert.load_state_dict({k[5:]: v for k, v in weights.items() if k.startswith("bert.")})
    with torch.no_grad():
        model.linear.weight.copy_(weights["linear.weight"])
    return model.eval()


def reference(model, tok, corpus: Path, out: Path, n: int = 64) -> None:
    """Token vectors of the first `n` held-out queries and documents, as vellum stores them."""
    q_marker, d_marker = tok.convert_tokens_to_ids(["[unused0]", "[unused1]"])
    skip = {tok.encode(c, add_special_tokens=False)[0] for c in string.punctuation}
    queries = [l.split("\t", 1)[1] for l in (corpus / "queries.tsv").read_text().splitlines()[:n]]
    docs = [json.loads(l)["text"] for l in (corpus / "corpus.jsonl").read_text().splitlines()[:n]]
    arrays = {}
    with torch.no_grad():
        for name, texts, marker, maxlen, query in [
            ("query", queries, q_marker, QUERY_MAXLEN, True),
            ("doc", docs, d_marker, DOC_MAXLEN, False),
        ]:
            vecs = []
            for t in texts:  # one at a time: no padding in the way
                ids, att = tokenize(tok, [t], marker, maxlen, query)
                v = model(ids, att)[0]
                if not query:
                    v = v[~torch.isin(ids[0], torch.tensor(sorted(skip)))]
                vecs.append(v.numpy())
            arrays[f"{name}_tokens"] = np.concatenate(vecs)
            arrays[f"{name}_lengths"] = np.array([len(v) for v in vecs], dtype=np.int64)
            arrays[f"{name}_texts"] = np.array(texts)
    np.savez(out / "reference.npz", **arrays)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--minilm", default=str(ROOT / "models" / "all-MiniLM-L6-v2"))
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference-only", action="store_true")
    args = ap.parse_args()
    if args.reference_only:
        out = Path(args.out)
        reference(load(out), AutoTokenizer.from_pretrained(str(out)), Path(args.corpus), out)
        return
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    minilm, corpus, out = Path(args.minilm), Path(args.corpus), Path(args.out)

    docs = {}
    for line in (corpus / "corpus.jsonl").read_text().splitlines():
        d = json.loads(line)
        docs[d["id"]] = d["text"]
    queries = dict(l.split("\t", 1) for l in (corpus / "train_queries.tsv").read_text().splitlines())
    pairs = []
    for line in (corpus / "train_qrels.txt").read_text().splitlines():
        q, _, d, rel = line.split()
        if int(rel) > 0 and q in queries and d in docs:
            pairs.append((queries[q], docs[d]))
    print(f"{len(pairs)} training pairs", flush=True)

    tok = AutoTokenizer.from_pretrained(str(minilm))
    q_marker, d_marker = tok.convert_tokens_to_ids(["[unused0]", "[unused1]"])
    skip = {tok.encode(c, add_special_tokens=False)[0] for c in string.punctuation}
    skip.add(tok.pad_token_id)
    skip_ids = torch.tensor(sorted(skip))

    model = ColBERT(minilm)
    model.train()
    opt = torch.optim.AdamW([
        {"params": model.bert.parameters(), "lr": args.lr},
        {"params": model.linear.parameters(), "lr": args.head_lr},
    ], weight_decay=0.0)
    steps = max(1, int(len(pairs) * args.epochs) // args.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, (steps - s) / steps))
    order = []
    t0 = time.perf_counter()
    for step in range(steps):
        if len(order) < args.batch:
            order += random.sample(range(len(pairs)), len(pairs))
        batch = [pairs[i] for i in order[: args.batch]]
        del order[: args.batch]
        qi, qa = tokenize(tok, [q for q, _ in batch], q_marker, QUERY_MAXLEN, True)
        di, da = tokenize(tok, [d for _, d in batch], d_marker, DOC_MAXLEN, False)
        qv, dv = model(qi, qa), model(di, da)
        keep = (~torch.isin(di, skip_ids)).float()  # [B, Ld]
        sims = torch.einsum("aqd,btd->abqt", qv, dv)  # every query against every document
        sims = sims + (keep[None, :, None, :] - 1) * 1e4
        scores = sims.max(-1).values.sum(-1)  # [B queries, B documents]
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch)))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        sched.step()
        if step % 20 == 0 or step == steps - 1:
            print(f"step {step + 1}/{steps} loss {loss.item():.4f} {time.perf_counter() - t0:.0f} s", flush=True)

    out.mkdir(parents=True, exist_ok=True)
    for f in ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]:
        if (minilm / f).exists():
            shutil.copy(minilm / f, out / f)
    config = json.loads((minilm / "config.json").read_text())
    config["architectures"] = ["HF_ColBERT"]
    (out / "config.json").write_text(json.dumps(config, indent=2))
    weights = {f"bert.{k}": v.detach().contiguous() for k, v in model.bert.state_dict().items()}
    weights["linear.weight"] = model.linear.weight.detach().contiguous()
    save_file(weights, str(out / "model.safetensors"))
    (out / "artifact.metadata").write_text(json.dumps({
        "query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_maxlen": QUERY_MAXLEN,
        "doc_maxlen": DOC_MAXLEN, "dim": DIM, "mask_punctuation": True,
        "attend_to_mask_tokens": False, "similarity": "cosine"}))
    reference(model.eval(), tok, corpus, out)
    print(f"saved {out}", flush=True)


if __name__ == "__main__":
    main()
