"""vellum.ray on a local Ray (loopback only): distributed ingest equals one database, distributed
exact search equals one database hit for hit, a killed shard actor resumes from its last commit,
shards with other encoders are refused, and a two-node cluster works."""

import json
import os
import time

import numpy as np
import pytest

# Loopback only: Ray otherwise advertises the machine's outward address for every node.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")

import vellum  # noqa: E402
import vellum.ray as vr  # noqa: E402
from vellum.errors import ShardError  # noqa: E402

from conftest import REPO, SENTENCES, TINY_A, TINY_B  # noqa: E402

DEBIAN = REPO / "examples" / "debian" / "corpus.jsonl"

RAY_ARGS = dict(include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, **RAY_ARGS)
    yield
    ray.shutdown()


def corpus(n):
    """n documents; every seventh repeats an earlier text, so equal scores (ties) occur."""
    base = [json.loads(line)["text"] for line in SENTENCES.read_text().splitlines()]
    docs = []
    for i in range(n):
        text = base[i % len(base)] if i % 7 else base[(i // 7) % len(base)]
        docs.append({"id": f"doc{i:05d}", "text": f"{text} ({i % 13})", "metadata": {"i": i}})
    return docs


def write_jsonl(path, docs):
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def single(tmp_path, docs_file, model=TINY_A):
    db = vellum.create(tmp_path / "single")
    c = db.create_collection("docs", ["emb:dense:32:f32:cosine"], encoders={"emb": model})
    c.ingest(docs_file)
    return db, c


@pytest.mark.parametrize("num_shards", [2, 4])
def test_file_ingest_and_search_equal_one_database(local_ray, tmp_path, num_shards):
    docs = corpus(600)
    f = write_jsonl(tmp_path / "docs.jsonl", docs)
    _, one = single(tmp_path, f)
    m = vr.ingest(f, tmp_path / "shards", collection="docs", fields=["emb:dense:32:f32:cosine"],
                  encoders={"emb": str(TINY_A)}, num_shards=num_shards, commit_every=100)
    assert m["documents"] == 600 and len(m["shards"]) == num_shards
    assert json.loads((tmp_path / "shards" / vr.MANIFEST).read_text())["documents"] == 600
    shards = [vellum.open(s["path"], read_only=True)["docs"] for s in vr.read_manifest(tmp_path / "shards")["shards"]]
    assert sum(len(s) for s in shards) == 600
    for d in docs[::37]:
        held = [s.get(d["id"]) for s in shards]
        got = [h for h in held if h is not None]
        assert len(got) == 1, "each document is in exactly one shard"
        np.testing.assert_allclose(got[0]["vectors"]["emb"], one.get(d["id"])["vectors"]["emb"],
                                   rtol=1e-6, atol=1e-7)
    queries = [d["text"] for d in docs[:40]]
    want_ids, want_scores = one.search_text(queries, k=15)
    with vr.ShardedSearcher(tmp_path / "shards") as s:
        got_ids, got_scores = s.search_text(queries, k=15)
        vectors = one.encode_queries(queries)
        v_ids, v_scores = s.search(vectors, k=15)
    assert (got_ids == want_ids).all() and (v_ids == want_ids).all()
    np.testing.assert_array_equal(got_scores, want_scores)
    np.testing.assert_array_equal(v_scores, want_scores)
    # Ties really occur: some query has equal scores among its hits.
    assert any(len(set(row)) < len(row) for row in want_scores.tolist())


def test_dataset_ingest_equals_one_database(local_ray, tmp_path):
    docs = corpus(300)
    f = write_jsonl(tmp_path / "docs.jsonl", docs)
    _, one = single(tmp_path, f)
    rows = [{"id": d["id"], "text": d["text"], "i": d["metadata"]["i"],
             "tags": np.array([d["metadata"]["i"] % 3, 7]),
             "score": float("nan") if d["metadata"]["i"] % 5 == 0 else 0.5} for d in docs]
    ds = ray.data.from_items(rows)
    m = vr.ingest(ds, tmp_path / "shards", collection="docs", fields=["emb:dense:32:f32:cosine"],
                  encoders={"emb": str(TINY_A)}, num_shards=2, batch_size=64, commit_every=100)
    assert m["documents"] == 300
    shards = [vellum.open(s["path"], read_only=True)["docs"] for s in vr.read_manifest(tmp_path / "shards")["shards"]]
    for d in docs[::11]:
        got = [x for x in (s.get(d["id"]) for s in shards) if x is not None]
        i = d["metadata"]["i"]
        meta = {"i": i, "tags": [i % 3, 7]}
        if i % 5:
            meta["score"] = 0.5  # NaN (a missing float) is left out
        assert len(got) == 1 and got[0]["metadata"] == meta
        assert got[0]["text"] == d["text"]
        np.testing.assert_allclose(got[0]["vectors"]["emb"], one.get(d["id"])["vectors"]["emb"],
                                   rtol=1e-6, atol=1e-7)
    # Precomputed vectors from a column.
    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    ds = ray.data.from_items([{"id": f"v{i}", "vec": x[i]} for i in range(50)])
    m = vr.ingest(ds, tmp_path / "vec-shards", collection="v", fields=["e:dense:8:f32:l2"],
                  vectors={"e": "vec"}, num_shards=2)
    assert m["documents"] == 50
    with vr.ShardedSearcher(tmp_path / "vec-shards") as s:
        ids, scores = s.search(x[:5], k=1, exact=True)
    assert ids[:, 0].tolist() == [f"v{i}" for i in range(5)]


def test_killed_shard_actor_resumes_from_its_last_commit(local_ray, tmp_path, minilm):
    # all-MiniLM-L6-v2 over 400 real passages: each shard takes seconds, so the kill lands
    # after the first commit and well before the shard is done.
    lines = DEBIAN.read_text().splitlines()[:400]
    f = tmp_path / "docs.jsonl"
    f.write_text("\n".join(lines) + "\n")
    job = vr.start_ingest(f, tmp_path / "shards", collection="docs",
                          fields=["emb:dense:384:f32:cosine"], encoders={"emb": str(minilm)},
                          num_shards=2, commit_every=25)
    victim = job.paths[0]
    deadline = time.time() + 300
    committed = 0
    while time.time() < deadline and committed == 0:
        try:
            committed = len(vellum.open(victim, read_only=True)["docs"])
        except vellum.errors.VellumError:
            pass  # not created yet
        time.sleep(0.02)
    assert 0 < committed < 200, "the kill must land mid-ingest"
    ray.kill(job.actors[0], no_restart=False)
    m = job.wait()
    assert m["documents"] == 400
    assert m["skipped"][0] >= committed, "the restarted actor skipped what was committed"
    shard = vellum.open(victim, read_only=True)
    assert len(shard["docs"]) == 200 and shard.verify()["ok"]


def test_mismatched_encoders_are_refused(local_ray, tmp_path):
    f = write_jsonl(tmp_path / "docs.jsonl", corpus(60))

    def existing(root, i, **encoder):
        db = vellum.create(root / f"shard-{i:04d}-of-0002")
        db.create_collection("docs", ["emb:dense:32:f32:cosine"], **encoder)
        db.close()

    # Both shards exist, written with another model: they agree with each other, not with
    # what the ingest declares.
    root = tmp_path / "model"
    for i in range(2):
        existing(root, i, encoders={"emb": TINY_B})
    with pytest.raises(ShardError, match="than the ingest declares.*model"):
        vr.ingest(f, root, collection="docs", fields=["emb:dense:32:f32:cosine"],
                  encoders={"emb": str(TINY_A)}, num_shards=2)
    assert not (root / vr.MANIFEST).exists()
    # Same model, other options (vectors would differ): refused too.
    root = tmp_path / "options"
    existing(root, 1, encoders={"emb": TINY_A}, encoder_options={"emb": {"max_length": 16}})
    with pytest.raises(ShardError, match="max_length"):
        vr.ingest(f, root, collection="docs", fields=["emb:dense:32:f32:cosine"],
                  encoders={"emb": str(TINY_A)}, num_shards=2)
    assert not (root / vr.MANIFEST).exists()


def test_two_node_cluster(tmp_path):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        assert cluster.address.startswith("127.0.0.1:")
        ray.init(address=cluster.address, log_to_driver=False)
        docs = corpus(200)
        f = write_jsonl(tmp_path / "docs.jsonl", docs)
        _, one = single(tmp_path, f)
        m = vr.ingest(f, tmp_path / "shards", collection="docs",
                      fields=["emb:dense:32:f32:cosine"], encoders={"emb": str(TINY_A)},
                      num_shards=2)
        assert len({s["node_id"] for s in m["shards"]}) == 2, "one shard per node"
        queries = [d["text"] for d in docs[:10]]
        with vr.ShardedSearcher(tmp_path / "shards") as s:
            ids, scores = s.search_text(queries, k=10)
        want_ids, want_scores = one.search_text(queries, k=10)
        assert (ids == want_ids).all()
        np.testing.assert_array_equal(scores, want_scores)
    finally:
        ray.shutdown()
        cluster.shutdown()
