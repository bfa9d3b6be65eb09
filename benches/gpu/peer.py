#!/usr/bin/env python3
"""The PyTorch peer of `gpu_timing` (benches/gpu/run.sh), on the same data files and GPU.

dense:  exact search as a PyTorch user writes it: Q @ X.T (torch.mm, same dtype; TF32 only when
        asked) then torch.topk, timed with CUDA events after a warm-up, median of --reps.
        Also the device's GEMM rate in that dtype (a large square torch.mm), the yardstick of
        "% of the GEMM rate".
rerank: MaxSim of each query's candidates, as PyLate / ColBERT do it on GPU: candidates'
        tokens gathered into a padded [candidates, Lmax, dim] tensor with a mask, einsum with
        the query's tokens, max over document tokens, sum over query tokens, topk.

encode: a random BERT-base-sized model (12 layers, 768 wide, the tokenizer of
        tests/fixtures/encoders/tiny-a, mean pooling + normalise) made once with transformers
        (make-model), and sentence-transformers' encode throughput on it (same texts, batch and
        dtype as `gpu_timing encode`), with the cosine between its vectors and vellum's.

Prints one JSON object per measurement. Usage:
  peer.py dense --dir DATA/dense_1000000x768_f32 [--k 10] [--dtype f32|tf32|f16|bf16]
  peer.py rerank --dir DATA/multi_100000x128 [--k 10]
  peer.py make-model --dir DATA/bert-base-random --tokenizer tests/fixtures/encoders/tiny-a
          --texts DATA/texts.jsonl [--n 20000]
  peer.py encode --dir DATA/bert-base-random --texts DATA/texts.jsonl --dtype f16
          --vellum DATA/encode_f16.npy
"""

import argparse
import json

import numpy as np
import torch


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    return float(np.median(times))


DTYPES = {"f32": torch.float32, "tf32": torch.float32, "f16": torch.float16,
          "bf16": torch.bfloat16}


def dense(a):
    torch.backends.cuda.matmul.allow_tf32 = a.dtype == "tf32"
    dt = DTYPES[a.dtype]
    x = torch.from_numpy(np.load(f"{a.dir}/x.npy", mmap_mode="r")[:]).to("cuda", dt)
    q = torch.from_numpy(np.load(f"{a.dir}/q.npy")).to("cuda", dt)

    def search():
        return torch.topk((q @ x.T).float(), a.k, dim=1)

    s = timed(search, a.reps)
    n = 8192
    m1 = torch.randn(n, n, device="cuda", dtype=dt)
    m2 = torch.randn(n, n, device="cuda", dtype=dt)
    g = timed(lambda: m1 @ m2, a.reps)
    flops = 2.0 * q.shape[0] * x.shape[0] * x.shape[1]
    print(json.dumps({"peer": "pytorch", "bench": "dense", "gpu_precision": a.dtype,
                      "rows": x.shape[0], "dim": x.shape[1], "queries": q.shape[0], "k": a.k,
                      "batch_s": s, "search_tflops": flops / s / 1e12,
                      "gemm_tflops": 2.0 * n ** 3 / g / 1e12, "torch": torch.__version__,
                      "device": torch.cuda.get_device_name()}))


def rerank(a):
    tokens = torch.from_numpy(np.load(f"{a.dir}/tokens.npy", mmap_mode="r")[:]).to(
        "cuda", torch.float16)
    lengths = np.load(f"{a.dir}/lengths.npy").astype(np.int64)
    q = torch.from_numpy(np.load(f"{a.dir}/q.npy")).to("cuda", torch.float16)
    cands = torch.from_numpy(np.load(f"{a.dir}/candidates.npy").astype(np.int64)).cuda()
    # Padded documents [docs, Lmax, dim] and their mask, built once (as an index would hold).
    lmax = int(lengths.max())
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    pos = torch.arange(lmax, device="cuda")
    lens = torch.from_numpy(lengths).cuda()
    starts = torch.from_numpy(offsets[:-1]).cuda()
    index = (starts[:, None] + pos[None, :]).clamp(max=tokens.shape[0] - 1)
    mask = pos[None, :] < lens[:, None]
    padded = tokens[index]
    padded[~mask] = 0

    def run():
        out = []
        for i in range(q.shape[0]):
            d = padded[cands[i]]                       # [c, Lmax, dim]
            s = torch.einsum("qd,cld->cql", q[i], d).float()
            s = s.masked_fill(~mask[cands[i]][:, None, :], float("-inf"))
            out.append(torch.topk(s.max(dim=2).values.sum(dim=1), a.k))
        return out

    s = timed(run, a.reps)
    print(json.dumps({"peer": "pytorch", "bench": "rerank", "queries": q.shape[0],
                      "candidates": cands.shape[1], "k": a.k, "batch_s": s,
                      "torch": torch.__version__, "device": torch.cuda.get_device_name()}))


def make_model(a):
    """The model folder and the texts (sentences of the fixtures joined to ~100 tokens)."""
    import os
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=f"{a.tokenizer}/tokenizer.json",
                                  unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    raw = a.dir + "-raw"
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=768, num_hidden_layers=12,
                     num_attention_heads=12, intermediate_size=3072,
                     max_position_embeddings=512)
    BertModel(cfg).save_pretrained(raw)
    tok.save_pretrained(raw)
    t = models.Transformer(raw, max_seq_length=128)
    SentenceTransformer(modules=[t, models.Pooling(768, "mean"), models.Normalize()]).save(a.dir)
    here = os.path.dirname(os.path.abspath(__file__))
    lines = [json.loads(l)["text"] for l in
             open(os.path.join(here, "../../tests/fixtures/encoders/sentences.jsonl"))]
    rng = np.random.default_rng(0)
    with open(a.texts, "w") as f:
        for i in range(a.n):
            f.write(json.dumps({"id": f"t{i}", "text": " ".join(rng.choice(lines, 6))}) + "\n")


def encode(a):
    from sentence_transformers import SentenceTransformer
    texts = [json.loads(l)["text"] for l in open(a.texts)]
    m = SentenceTransformer(a.dir, device="cuda")
    if a.dtype == "f16":
        m = m.half()
    elif a.dtype == "bf16":
        m = m.to(torch.bfloat16)
    def run():
        return m.encode(texts, batch_size=a.batch, convert_to_numpy=True)
    run()
    times = []
    for _ in range(a.reps):
        torch.cuda.synchronize()
        t = __import__("time").perf_counter()
        run()
        torch.cuda.synchronize()
        times.append(__import__("time").perf_counter() - t)
    s = float(np.median(times))
    ours = np.load(a.vellum)
    theirs = m.encode(texts[: len(ours)], batch_size=a.batch, convert_to_numpy=True).astype(
        np.float64)
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    print(json.dumps({"peer": "sentence-transformers", "bench": "encode", "dtype": a.dtype,
                      "texts": len(texts), "batch": a.batch, "encode_s": s,
                      "texts_per_s": len(texts) / s, "min_cosine_vs_vellum": float(cos.min()),
                      "torch": torch.__version__, "device": torch.cuda.get_device_name()}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bench", choices=["dense", "rerank", "make-model", "encode"])
    p.add_argument("--dir", required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--dtype", default="f32", choices=list(DTYPES))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--tokenizer")
    p.add_argument("--texts")
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--vellum")
    a = p.parse_args()
    {"dense": dense, "rerank": rerank, "make-model": make_model, "encode": encode}[a.bench](a)


if __name__ == "__main__":
    main()
