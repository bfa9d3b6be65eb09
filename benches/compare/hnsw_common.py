"""What compare_hnsw.py and compare_hnsw_build.py share: the embedding-like data set, and a vellum
database built, indexed and timed through the CLI, then searched by the timing harness."""
import json, subprocess, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def embedding_like(rng, *sizes, dim=384):
    """Unit vectors shaped like sentence embeddings (shared mean direction, 256 topic clusters), one
    array per size, all drawn around the same centres (L2 order = cosine order)."""
    def unit(v):
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    mean = unit(rng.standard_normal((1, dim)))
    centers = unit(rng.standard_normal((256, dim)))

    def draw(m):
        c = centers[rng.integers(0, len(centers), m)]
        return unit(0.7 * mean + 0.6 * c + 0.8 * rng.standard_normal((m, dim)) / np.sqrt(dim))

    return tuple(draw(m) for m in sizes)


def indexed_vellum_db(work, X, m, ef_construction):
    """Builds the CLI and the timing harness, makes `work/db` (collection docs, L2 field emb) with
    the rows of X, then times `vellum index` (graph build + segment rewrite). Returns (db, seconds)."""
    np.save(work / "corpus.npy", X)
    with open(work / "corpus.jsonl", "w") as f:
        f.writelines(f'{{"id": "{i}"}}\n' for i in range(len(X)))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vellum-cli"], cwd=ROOT, check=True)
    timing_harness()
    vellum = ROOT / "target/release/vellum"
    db = work / "db"

    def run(*a):
        subprocess.run([str(vellum), *map(str, a)], check=True, stdout=subprocess.DEVNULL)

    run("create", db, "-c", "docs", "-f", f"emb:dense:{X.shape[1]}:f32:l2")
    run("ingest", db, "-c", "docs", "--docs", work / "corpus.jsonl", "--vectors", f"emb={work / 'corpus.npy'}")
    t = time.perf_counter()
    run("index", db, "-c", "docs", "-f", "emb", "--hnsw", f"m={m},ef_construction={ef_construction},min_rows=1000")
    return db, time.perf_counter() - t


_HARNESS = []


def timing_harness():
    """The path of the `compare_hnsw_timing` executable, built once per script run: every round
    times the same binary, even if the sources change meanwhile."""
    if not _HARNESS:
        out = subprocess.run(["cargo", "bench", "-q", "--bench", "compare_hnsw_timing", "--no-run",
                              "--message-format=json"], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout
        exes = [m["executable"] for m in map(json.loads, out.splitlines())
                if m.get("reason") == "compiler-artifact" and m.get("executable")
                and m["target"]["name"] == "compare_hnsw_timing"]
        _HARNESS.append(exes[-1])
    return _HARNESS[0]


def vellum_timings(db, queries_npy, efs, reps=5):
    """The timing harness (`hnsw_timing.rs`) on `db`: open time, and per ef the timings and top ids."""
    out = subprocess.run([timing_harness(), "--db", str(db), "--queries", str(queries_npy), "--efs", efs,
                          "--reps", str(reps)], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])
