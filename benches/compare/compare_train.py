#!/usr/bin/env python3
"""Training speed: vellum-train vs PyTorch (sentence-transformers) on CPU, the same model
(all-MiniLM-L6-v2, full fine-tune), the same batches, the same loss, in one run.

Usage: python3 benches/compare/compare_train.py [--steps 8] [--rounds 2] [--threads 2]
       [--batch 16] [--group 4]

Batches: Debian package summaries as queries (examples/debian/queries.tsv) with their own
description first, then group-1 other descriptions, query length 32, passage length 128 tokens.
Each step, on each side: encode queries and passages (mean pooling, L2 normalisation), Tevatron's
contrastive loss (q·pᵀ / 0.02, cross-entropy with each query's positive), backward, global
gradient-norm clipping at 1.0, AdamW (lr 2e-5, linear decay). One untimed warm-up step, then
--steps timed steps; fresh processes, alternating order, median over rounds.
  * PyTorch: SentenceTransformer(...).train() (as Tevatron / sentence-transformers train: dropout
    0.1 on), torch threads = --threads.
  * vellum: train/benches/train_timing.rs (candle, no dropout — see train/README.md).
Reports steps/s and the ratio vellum / PyTorch. Needs torch (CPU), sentence-transformers.

On a GPU: --device cuda (PyTorch on cuda:0, vellum's train_timing with device cuda:0) and --exe
the train_timing binary of benches/gpu/build-train.sh (the GPU machine has no Rust); times are
taken after a CUDA synchronisation on both sides (each step reads its loss).
"""
import argparse, json, os, random, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=8)
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--group", type=int, default=4)
ap.add_argument("--model", default=str(ROOT / "models/all-MiniLM-L6-v2"))
ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
ap.add_argument("--exe", default=None, help="a prebuilt train_timing binary")
ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
args = ap.parse_args()
SPEC = ROOT / "benches/compare/data/train_batches.json"


def make_batches():
    docs = {}
    for line in open(ROOT / "examples/debian/corpus.jsonl"):
        d = json.loads(line)
        docs[d["id"]] = d["text"]
    rel = dict(l.split()[0:3:2] for l in open(ROOT / "examples/debian/qrels.txt"))
    queries = [l.rstrip("\n").split("\t") for l in open(ROOT / "examples/debian/queries.tsv")]
    rng = random.Random(7)
    ids = sorted(docs)
    batches = []
    for b in range(args.steps + 1):
        qs, ps = [], []
        for qid, text in queries[b * args.batch:(b + 1) * args.batch]:
            qs.append(text)
            ps.append(docs[rel[qid]])
            ps.extend(docs[i] for i in rng.sample(ids, args.group - 1))
        batches.append({"queries": qs, "passages": ps})
    SPEC.parent.mkdir(parents=True, exist_ok=True)
    SPEC.write_text(json.dumps({"query_max_len": 32, "passage_max_len": 128, "group": args.group,
                                "temperature": 0.02, "lr": 2e-5, "batches": batches}))


def torch_worker():
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(args.threads)
    spec = json.loads(SPEC.read_text())
    model = SentenceTransformer(args.model, device=args.device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (args.steps - s) / args.steps))

    def encode(texts, length):
        model.max_seq_length = length
        features = model.tokenize(texts)
        features = {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in features.items()}
        return model(features)["sentence_embedding"]

    def step(batch):
        q = encode(batch["queries"], spec["query_max_len"])
        p = encode(batch["passages"], spec["passage_max_len"])
        scores = q @ p.T / spec["temperature"]
        target = torch.arange(len(q), device=q.device) * spec["group"]
        loss = torch.nn.functional.cross_entropy(scores, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); opt.zero_grad()
        return loss.item()

    batches = spec["batches"]
    step(batches[0])
    t = time.perf_counter()
    losses = [step(batches[1 + i % (len(batches) - 1)]) for i in range(args.steps)]
    secs = time.perf_counter() - t
    print(json.dumps({"steps_per_sec": args.steps / secs, "losses": losses}))


def run(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    if args.worker == "torch":
        return torch_worker()
    make_batches()
    if args.exe:
        exe = Path(args.exe)
    else:
        subprocess.run(["cargo", "build", "--release", "-p", "vellum-train", "--benches", "-q"], cwd=ROOT, check=True)
        exe = sorted((ROOT / "target/release/deps").glob("train_timing-*"), key=lambda p: p.stat().st_mtime)
        exe = [p for p in exe if os.access(p, os.X_OK) and p.suffix == ""][-1]
    device = "cuda:0" if args.device == "cuda" else "cpu"
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    res = {"torch": [], "vellum": []}
    for r in range(args.rounds):
        order = ["torch", "vellum"] if r % 2 == 0 else ["vellum", "torch"]
        for side in order:
            if side == "torch":
                out = run([sys.executable, __file__, "--worker", "torch", "--steps", str(args.steps),
                           "--threads", str(args.threads), "--model", args.model,
                           "--device", args.device])
            else:
                out = run([str(exe), args.model, str(SPEC), str(args.steps), device], env)
            res[side].append(out["steps_per_sec"])
            print(f"round {r} {side}: {out['steps_per_sec']:.3f} steps/s, losses {[round(l, 3) for l in out['losses'][:4]]}", flush=True)
    t, v = statistics.median(res["torch"]), statistics.median(res["vellum"])
    print(json.dumps({"bench": "train_step", "device": args.device, "batch": args.batch,
                      "group": args.group, "threads": args.threads,
                      "torch_steps_per_sec": t, "vellum_steps_per_sec": v, "ratio": v / t}))


if __name__ == "__main__":
    main()
