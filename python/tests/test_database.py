"""Round trips, search against brute force and the CLI, maintenance, errors."""

import json
import subprocess

import numpy as np
import pytest

import vellum
from vellum.errors import (AlreadyExistsError, InvalidInputError, LockedError, NotFoundError,
                           VellumError)


def bf16_round(x):
    """float32 -> bfloat16 -> float32 with round-to-nearest-even (vellum's conversion)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


STORED = {"f32": lambda x: x.astype(np.float32), "f16": lambda x: x.astype(np.float16).astype(np.float32),
          "bf16": bf16_round}


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_dense_round_trip(db, dtype, metric):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    c = db.create_collection("c", [f"emb:dense:8:{dtype}:{metric}"])
    ids = [f"d{i}" for i in range(50)]
    assert c.add(ids, vectors={"emb": x}, texts=[f"t{i}" for i in range(50)],
                 metadata=[{"i": i, "tag": ["x"]} for i in range(50)]) == 50
    assert db.has_changes
    info = db.commit()
    assert info["added"] == 50 and len(c) == 50
    for i in (0, 17, 49):
        d = c.get(ids[i])
        assert d["text"] == f"t{i}" and d["metadata"] == {"i": i, "tag": ["x"]}
        np.testing.assert_array_equal(d["vectors"]["emb"], STORED[dtype](x[i]))
    assert c.get("nope") is None


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_multi_round_trip_both_forms(db, dtype):
    rng = np.random.default_rng(2)
    c = db.create_collection("c", [f"tok:multi:4:{dtype}:ip"])
    lengths = [1, 3, 7]
    rows = [rng.standard_normal((n, 4)).astype(np.float32) for n in lengths]
    c.add(["a", "b", "c"], vectors={"tok": rows})
    c.add(["x", "y", "z"], vectors={"tok": (np.concatenate(rows), np.array(lengths))})
    db.commit()
    for name, r in zip("abc", rows):
        np.testing.assert_array_equal(c.get(name)["vectors"]["tok"], STORED[dtype](r))
    for name, r in zip("xyz", rows):
        np.testing.assert_array_equal(c.get(name)["vectors"]["tok"], STORED[dtype](r))


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_tensor_round_trip(db, dtype):
    rng = np.random.default_rng(3)
    c = db.create_collection("c", [f"img:tensor:3x5:{dtype}", "emb:dense:2:f32:l2"])
    t = rng.standard_normal((4, 3, 5)).astype(np.float32)
    c.add(list("abcd"), vectors={"img": t, "emb": np.zeros((4, 2)) + [[0, 1]]})
    db.commit()
    got = c.get("c")["vectors"]["img"]
    assert got.shape == (3, 5)
    np.testing.assert_array_equal(got, STORED[dtype](t[2]))


def brute_force(x, q, k, ids):
    """Top-k by inner product, equal scores by id descending (vellum's rank order)."""
    scores = q @ x.T
    out_ids, out_scores = [], []
    for row in scores:
        order = sorted(range(len(ids)), key=lambda j: (-row[j], tuple(-ord(ch) for ch in ids[j])))
        out_ids.append([ids[j] for j in order[:k]])
        out_scores.append([row[j] for j in order[:k]])
    return np.array(out_ids, dtype=object), np.array(out_scores, dtype=np.float32)


def test_exact_search_equals_brute_force_with_ties(db):
    rng = np.random.default_rng(4)
    # Small integers: every product is exact in f32, and many scores tie.
    x = rng.integers(-2, 3, size=(300, 16)).astype(np.float32)
    q = rng.integers(-2, 3, size=(25, 16)).astype(np.float32)
    ids = [f"doc{i:03d}" for i in range(300)]
    c = db.create_collection("c", ["emb:dense:16:f32:ip"])
    c.add(ids[:150], vectors={"emb": x[:150]})
    db.commit()
    c.add(ids[150:], vectors={"emb": x[150:]})  # two segments
    db.commit()
    got_ids, got_scores = c.search(q, k=20)
    want_ids, want_scores = brute_force(x, q, 20, ids)
    assert got_ids.shape == (25, 20) and got_scores.dtype == np.float32
    assert (got_ids == want_ids).all()
    np.testing.assert_array_equal(got_scores, want_scores)
    # One query as a 1-D array; fewer documents than k pads with None / -inf.
    one_ids, one_scores = c.search(q[0], k=400)
    assert one_ids.shape == (1, 400) and one_ids[0, 299] is not None and one_ids[0, 300] is None
    assert np.isneginf(one_scores[0, 300:]).all()


def test_search_equals_cli_run(db, tmp_path, cli):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((500, 24)).astype(np.float32)
    q = rng.standard_normal((30, 24)).astype(np.float32)
    c = db.create_collection("c", ["emb:dense:24:f16:cosine"])
    c.add([f"d{i}" for i in range(500)], vectors={"emb": x})
    db.commit()
    np.save(tmp_path / "q.npy", q)
    (tmp_path / "qids.txt").write_text("".join(f"q{i}\n" for i in range(30)))
    ids, scores = c.search(q, k=10)
    for fmt in ("trec", "tsv", "json"):
        vellum.eval.write_run(tmp_path / f"py.{fmt}", [f"q{i}" for i in range(30)], ids, scores, fmt)
        out = subprocess.run(
            [cli, "search", db.path, "--collection", "c", "--field", "emb", "--query-vectors",
             str(tmp_path / "q.npy"), "--query-ids", str(tmp_path / "qids.txt"), "-k", "10",
             "--format", fmt], check=True, capture_output=True, text=True).stdout
        assert (tmp_path / f"py.{fmt}").read_text() == out


def test_multi_vector_maxsim_search(db):
    rng = np.random.default_rng(6)
    c = db.create_collection("c", ["tok:multi:8:f32:ip"])
    docs = [rng.standard_normal((rng.integers(1, 6), 8)).astype(np.float32) for _ in range(40)]
    c.add([f"d{i}" for i in range(40)], vectors={"tok": docs})
    db.commit()
    queries = [rng.standard_normal((3, 8)).astype(np.float32) for _ in range(4)]
    ids, scores = c.search(queries, k=5)
    for qi, qv in enumerate(queries):
        maxsim = np.array([(qv @ d.T).max(axis=1).sum() for d in docs], dtype=np.float32)
        best = np.argsort(-maxsim, kind="stable")[:5]
        assert list(ids[qi]) == [f"d{j}" for j in best]
        np.testing.assert_allclose(scores[qi], maxsim[best], rtol=1e-5)
    # The same queries as one [n, tokens, dim] array, and one query as [tokens, dim].
    ids3, _ = c.search(np.stack(queries), k=5)
    assert (ids3 == ids).all()
    ids1, _ = c.search(queries[2], k=5)
    assert (ids1[0] == ids[2]).all()


def test_upsert_delete_compact_index_and_info(db):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    c = db.create_collection("c", ["emb:dense:16:f32:l2"], hnsw={"emb": "m=8"})
    c.add([f"d{i}" for i in range(200)], vectors={"emb": x})
    db.commit()
    assert c.upsert(["d0"], vectors={"emb": x[1:2]}, texts=["new"]) == 1
    assert c.delete(["d5", "d6", "missing"]) == 2
    assert "d5" not in c  # buffered delete seen by this handle
    db.commit()
    assert len(c) == 198 and c.get("d0")["text"] == "new" and c.get("d5") is None
    ids, _ = c.search(x[10], k=1, ef=64)
    assert ids[0, 0] == "d10"
    ids, scores = c.search(x[10], k=1, exact=True)
    assert ids[0, 0] == "d10" and scores[0, 0] == 0.0  # L2: negated squared distance
    info = c.compact()
    assert info["segments_after"] == 1 and info["rows_dropped"] == 3
    assert c.info()["documents"] == 198 and c.info()["indexes"]["emb"]["m"] == 8
    c.index("emb", None)
    assert c.info()["indexes"] == {}
    report = db.verify()
    assert report["ok"] and report["live_documents"] == 198


def test_add_is_all_or_nothing(db):
    c = db.create_collection("c", ["emb:dense:2:f32:ip"])
    c.add(["a"], vectors={"emb": [[1, 0]]})
    db.commit()
    bad = np.array([[1, 0], [np.nan, 0], [0, 1]], dtype=np.float32)
    with pytest.raises(InvalidInputError, match="emb"):
        c.add(["x", "y", "z"], vectors={"emb": bad})
    with pytest.raises(InvalidInputError, match="already committed") as e:
        c.add(["b", "a"], vectors={"emb": [[0, 1], [1, 1]]})
    assert e.value.kind == "DuplicateId"
    with pytest.raises(InvalidInputError, match="given twice"):
        c.add(["b", "b"], vectors={"emb": [[0, 1], [1, 1]]})
    assert not db.has_changes
    db.commit()
    assert len(c) == 1


def test_errors_name_the_problem(db, tmp_path):
    c = db.create_collection("c", ["emb:dense:4:f32:ip"])
    with pytest.raises(InvalidInputError, match=r"must have shape \[2, 4\].*\[2, 3\]"):
        c.add(["a", "b"], vectors={"emb": np.zeros((2, 3))})
    with pytest.raises(InvalidInputError, match=r"shape \[4\] or \[n, 4\]"):
        c.search(np.zeros((2, 5)))
    with pytest.raises(NotFoundError, match=r'no collection named "nope" \(the database has: c\)'):
        db["nope"]
    with pytest.raises(NotFoundError, match="no field"):
        c.search(np.zeros(4), field="other")
    with pytest.raises(InvalidInputError, match="ids"):
        c.add("abc", vectors={"emb": np.zeros((3, 4))})
    with pytest.raises(ValueError):  # InvalidInputError is a ValueError
        db.create_collection("d", ["emb:dense:0:f32:ip"])
    with pytest.raises(AlreadyExistsError):
        vellum.create(db.path)
    with pytest.raises(NotFoundError, match="no vellum database"):
        vellum.open(tmp_path / "nothing-here")
    # One writer per database: a second handle that writes is refused; readers are not.
    db.commit()
    other = vellum.open(db.path)
    with pytest.raises(LockedError, match="locked"):
        other["c"].add(["z"], vectors={"emb": np.ones((1, 4))})
    reader = vellum.open(db.path, read_only=True)
    assert reader["c"].search(np.ones(4), k=1)[0].shape == (1, 1)
    with pytest.raises(InvalidInputError, match="read-only"):
        reader["c"].delete(["a"])
    assert issubclass(LockedError, VellumError)


def test_context_manager_commits_or_discards(tmp_path):
    path = tmp_path / "db"
    with vellum.create(path) as db:
        db.create_collection("c", ["emb:dense:2:f32:ip"])
        db["c"].add(["a"], vectors={"emb": [[1, 0]]})
    with pytest.raises(RuntimeError):
        with vellum.open(path) as db:
            db["c"].add(["b"], vectors={"emb": [[0, 1]]})
            raise RuntimeError("boom")
    assert len(vellum.open(path, read_only=True)["c"]) == 1


def test_query_dicts_and_arrow(db):
    pa = pytest.importorskip("pyarrow")
    c = db.create_collection("c", ["emb:dense:2:f32:ip"])
    c.add(["a", "b"], vectors={"emb": [[1, 0], [0, 1]]}, texts=["alpha", "beta"],
          metadata=[{"lang": "en"}, {"lang": "fr", "n": 2}])
    db.commit()
    rows = c.query([[0.2, 1.0]], k=2)
    assert rows == [[{"id": "b", "score": 1.0, "text": "beta", "metadata": {"lang": "fr", "n": 2}},
                     {"id": "a", "score": pytest.approx(0.2), "text": "alpha", "metadata": {"lang": "en"}}]]
    t = c.query_arrow([[0.2, 1.0], [1, 0]], k=1)
    assert isinstance(t, pa.Table) and t.num_rows == 2
    assert t.column("id").to_pylist() == ["b", "a"] and t.column("rank").to_pylist() == [1, 1]
    assert json.loads(t.column("metadata")[0].as_py()) == {"lang": "fr", "n": 2}


def test_backup_and_precomputed_ingest(db, tmp_path):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((20, 4)).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    (tmp_path / "docs.jsonl").write_text("".join(
        json.dumps({"id": f"d{i}", "text": f"text {i}"}) + "\n" for i in range(20)))
    c = db.create_collection("c", ["emb:dense:4:f32:ip"])
    stats = c.ingest(tmp_path / "docs.jsonl", vectors={"emb": tmp_path / "v.npy"})
    assert stats["documents"] == 20 and len(c) == 20
    np.testing.assert_array_equal(c.get("d7")["vectors"]["emb"], x[7])
    info = db.backup(tmp_path / "copy")
    assert info["generation"] == db.info()["generation"]
    assert len(vellum.open(tmp_path / "copy", read_only=True)["c"]) == 20


def test_create_collection_keeps_other_pending_changes(db):
    c = db.create_collection("c", ["emb:dense:2:f32:ip"])
    c.add(["a"], vectors={"emb": [[1, 0]]})
    with pytest.raises(InvalidInputError, match="uncommitted changes"):
        db.create_collection("d", ["emb:dense:2:f32:ip"])
    assert db.has_changes  # the pending add is still there
    db.commit()
    assert len(c) == 1 and "d" not in db.collections()
    with pytest.raises(vellum.errors.EncoderError):
        db.create_collection("d", ["emb:dense:2:f32:ip"], encoders={"emb": "/no/such/model"})
    assert "d" not in db.collections() and not db.has_changes


def test_k_and_empty_batches(db):
    c = db.create_collection("c", ["emb:dense:3:f32:ip", "tok:multi:3:f32:ip"])
    c.add(["a"], vectors={"emb": [[1, 0, 0]], "tok": [np.ones((2, 3))]})
    db.commit()
    ids, scores = c.search(np.zeros((0, 3)), k=4, field="emb")
    assert ids.shape == (0, 4) and scores.shape == (0, 4)
    ids, scores = c.search([], k=4, field="tok")
    assert ids.shape == (0, 4)
    with pytest.raises(InvalidInputError, match="k = 0"):
        c.search(np.ones(3), k=0, field="emb")
    with pytest.raises(InvalidInputError, match="smaller k"):
        c.search(np.ones((4, 3)), k=2**30, field="emb")
    ids, _ = c.search(np.ones(3), k=10**6, field="emb")  # a big k over few rows is fine
    assert ids.shape == (1, 10**6) and ids[0, 0] == "a" and ids[0, 1] is None


def test_misaligned_and_half_precision_inputs(db):
    c = db.create_collection("c", ["emb:dense:4:f32:ip", "tok:multi:4:f32:ip"])
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    raw = np.zeros(x.nbytes + 1, dtype=np.uint8)
    raw[1:] = x.view(np.uint8).ravel()
    misaligned = np.frombuffer(raw.data, dtype=np.float32, offset=1, count=8).reshape(2, 4)
    assert not misaligned.flags.aligned
    assert vellum._vellum.matrix_source(misaligned)[0] == "copied"
    c.add(["a", "b"], vectors={"emb": misaligned, "tok": [x.astype(np.float16), x[:1]]})
    db.commit()
    np.testing.assert_array_equal(c.get("b")["vectors"]["emb"], x[1])
    ids, _ = c.search(misaligned, k=1, field="emb")
    assert ids[:, 0].tolist() == ["b", "b"]
    q = np.stack([x, x]).astype(np.float16)  # [n, tokens, dim] in float16: converted once
    ids, scores = c.search(q, k=2, field="tok")
    assert ids.shape == (2, 2) and (scores[0] == scores[1]).all()


def test_threads_writing_and_reading_do_not_deadlock(db):
    import threading
    import time

    c = db.create_collection("c", ["emb:dense:8:f32:ip"])
    c.add(["a"], vectors={"emb": np.ones((1, 8))})
    db.commit()
    stop = threading.Event()
    failures = []
    rounds = [0]

    def guarded(body):
        def run():
            try:
                while not stop.is_set():
                    body()
            except BaseException as e:  # noqa: BLE001 - reported by the assertion below
                failures.append(e)
        return run

    def write_once():
        i = rounds[0]
        try:
            c.add(["a"], vectors={"emb": np.ones((1, 8))})  # DuplicateId every time
        except InvalidInputError:
            pass
        c.add([f"n{i}"], vectors={"emb": np.ones((1, 8))})
        if i % 50 == 0:
            db.commit()
            c.compact()
        rounds[0] += 1

    def read_once():
        db.has_changes
        "a" in c
        c.search(np.ones(8), k=3)

    threads = [threading.Thread(target=guarded(f), daemon=True)
               for f in (write_once, read_once, read_once)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    assert not failures, failures
    assert rounds[0] > 20, "the writer made progress"
    db.commit()
    assert db.verify()["ok"]


def _cuda_driver():
    import ctypes
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_search_on_a_gpu_device(db, metric):
    """device="cuda:0": the CPU's results on a GPU machine, a clear error elsewhere."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    c = db.create_collection("c", [f"emb:dense:16:f32:{metric}"])
    c.add([f"d{i}" for i in range(300)], vectors={"emb": x})
    db.commit()
    q = rng.standard_normal((5, 16)).astype(np.float32)
    cpu = c.search(q, k=7)
    if _cuda_driver():
        for precision in ("stored", "tf32", "f16", "bf16"):
            gpu = c.search(q, k=7, device="cuda:0", gpu_precision=precision)
            np.testing.assert_array_equal(gpu[0], cpu[0])
            np.testing.assert_array_equal(gpu[1], cpu[1])
    else:
        with pytest.raises(VellumError, match="cuda:0: no CUDA driver found") as e:
            c.search(q, k=7, device="cuda:0")
        assert e.value.kind == "Device"
    with pytest.raises(InvalidInputError, match="expected cpu or cuda:N"):
        c.search(q, k=7, device="gpu")


def test_re_ranking_on_a_gpu_device(db):
    """Multi-vector re-ranking with device="cuda:0": the CPU's results, or a clear error."""
    rng = np.random.default_rng(5)
    c = db.create_collection("c", ["tok:multi:8:f32:ip"])
    ids = [f"d{i}" for i in range(50)]
    c.add(ids, vectors={"tok": [rng.standard_normal((1 + i % 4, 8)).astype(np.float32)
                                for i in range(50)]})
    db.commit()
    q = [rng.standard_normal((3, 8)).astype(np.float32)]
    cpu = c.rerank([ids], q, k=5, field="tok")
    if _cuda_driver():
        gpu = c.rerank([ids], q, k=5, field="tok", device="cuda:0")
        np.testing.assert_array_equal(gpu[0], cpu[0])
        np.testing.assert_array_equal(gpu[1], cpu[1])
    else:
        with pytest.raises(VellumError, match="no CUDA driver found"):
            c.rerank([ids], q, k=5, field="tok", device="cuda:0")
