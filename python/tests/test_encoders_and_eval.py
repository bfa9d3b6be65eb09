"""Built-in encoders from Python (parity with sentence-transformers), text ingest and search,
evaluation."""

import _thread
import json
import signal
import threading
import time
import warnings

import numpy as np
import pytest

import vellum
from vellum.errors import EncoderError, InvalidInputError

from conftest import REPO, SENTENCES, TINY_A, TINY_B


def sentences():
    return [json.loads(line)["text"] for line in SENTENCES.read_text().splitlines()]


def test_minilm_matches_sentence_transformers(minilm):
    ref = np.load(REPO / "tests" / "fixtures" / "encoders" / "minilm_reference.npy")
    e = vellum.Encoder(minilm)
    got = e.encode(sentences())
    assert got.shape == ref.shape == (110, 384) and e.dims == 384 and e.output == "dense"
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.99999


def test_int8_encoder_stays_close_to_the_reference(minilm):
    # dtype=int8 quantizes the linear layers: faster, close to (not equal to) the f32 vectors.
    ref = np.load(REPO / "tests" / "fixtures" / "encoders" / "minilm_reference.npy")
    got = vellum.Encoder(minilm, dtype="int8").encode(sentences())
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert 0.94 <= cos.min() and cos.mean() >= 0.99 and cos.max() < 1.0 - 1e-7


def test_text_add_encodes_like_the_encoder_and_search_text(db):
    texts = sentences()[:40]
    c = db.create_collection("c", ["emb:dense:32:f32:cosine"], encoders={"emb": TINY_A},
                             embed_model=True)
    c.add([f"s{i}" for i in range(40)], texts=texts,
          metadata=[{"title": "Title"} if i == 3 else {} for i in range(40)])
    db.commit()
    e = vellum.Encoder(TINY_A)
    want = e.encode(texts)
    want[3] = e.encode(["Title " + texts[3]])[0]  # the title is prepended, as Tevatron does
    for i in (0, 3, 39):
        np.testing.assert_allclose(c.get(f"s{i}")["vectors"]["emb"], want[i], rtol=1e-5, atol=1e-6)
    ids, scores = c.search_text(texts[:5], k=1)
    # Each text finds its own document (s3's vectors include its title, so it is left out).
    assert ids[[0, 1, 2, 4], 0].tolist() == ["s0", "s1", "s2", "s4"]
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    q = c.encode_queries(texts[:5])
    ids2, scores2 = c.search(q, k=1)
    assert (ids2 == ids).all() and (scores2 == scores).all()
    rows = c.query(texts=["Real-time strategy game"], k=2)
    assert rows[0][0]["text"] and "score" in rows[0][0]
    assert c.encoders["emb"]["passage"]["fingerprint"] == e.record["fingerprint"]


def test_text_search_equals_cli_run(db, tmp_path, cli):
    import subprocess

    texts = sentences()
    c = db.create_collection("c", ["emb:dense:32:f32:cosine"], encoders={"emb": TINY_A},
                             embed_model=True)
    c.add([f"s{i}" for i in range(len(texts))], texts=texts)
    db.commit()
    queries = [t.split(" ")[0] + " " + t.split(" ")[-1] for t in texts[:25]]
    (tmp_path / "q.tsv").write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(queries)))
    ids, scores = c.search_text(queries, k=7)
    vellum.eval.write_run(tmp_path / "py.trec", [f"q{i}" for i in range(25)], ids, scores)
    out = subprocess.run([cli, "search", db.path, "--collection", "c", "--field", "emb",
                          "--queries", str(tmp_path / "q.tsv"), "-k", "7"],
                         check=True, capture_output=True, text=True).stdout
    assert (tmp_path / "py.trec").read_text() == out


def test_shard_set_equals_one_database(tmp_path):
    texts = sentences()
    ids = [f"s{i:03d}" for i in range(len(texts))]
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, size=(len(texts), 8)).astype(np.float32)  # many ties

    def make(path, rows):
        db = vellum.create(path)
        c = db.create_collection("c", ["emb:dense:32:f32:cosine", "v:dense:8:f32:ip"],
                                 encoders={"emb": TINY_A})
        c.add([ids[i] for i in rows], texts=[texts[i] for i in rows], vectors={"v": x[rows]})
        db.commit()
        db.close()
        return c

    one = make(tmp_path / "one", list(range(len(texts))))
    make(tmp_path / "a", list(range(0, len(texts), 3)))
    make(tmp_path / "b", [i for i in range(len(texts)) if i % 3])
    shards = vellum.ShardSet([tmp_path / "a", tmp_path / "b"])
    q = rng.integers(-2, 3, size=(20, 8)).astype(np.float32)
    got, got_s = shards.search("c", q, k=12, field="v")
    want, want_s = one.search(q, k=12, field="v")
    assert (got == want).all() and (got_s == want_s).all()
    got, got_s = shards.search_text("c", texts[:15], k=5, field="emb")
    want, want_s = one.search_text(texts[:15], k=5, field="emb")
    assert (got == want).all() and (got_s == want_s).all()
    # A shard encoded by another model is refused.
    other = vellum.create(tmp_path / "other")
    oc = other.create_collection("c", ["emb:dense:32:f32:cosine", "v:dense:8:f32:ip"],
                                 encoders={"emb": TINY_B})
    oc.add(["zz"], texts=["x"], vectors={"v": x[:1]})
    other.commit()
    with pytest.raises(vellum.errors.ShardError):
        vellum.ShardSet([tmp_path / "a", tmp_path / "other"]).search_text("c", "x", field="emb")


def test_encoding_releases_the_gil(minilm):
    e = vellum.Encoder(minilm)
    texts = sentences() * 4
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0)

    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.05)
    start = time.perf_counter()
    e.encode(texts)
    end = time.perf_counter()
    stop.set()
    t.join()
    during = [x for x in ticks if start < x < end]
    assert end - start > 0.05 and len(during) > 100, f"{len(during)} ticks in {end - start:.3f} s"


def test_text_ingest_file_resumes(db, tmp_path):
    texts = sentences()
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"s{i}", "text": t}) + "\n"
                            for i, t in enumerate(texts[:60])))
    c = db.create_collection("c", ["emb:dense:32:f32:cosine"], encoders={"emb": TINY_A})
    s = c.ingest(docs, commit_every=25)
    assert s["documents"] == 60 and s["commits"] >= 3 and s["skipped"] == 0
    again = c.ingest(docs)
    assert again["documents"] == 0 and again["skipped"] == 60 and len(c) == 60


def test_ctrl_c_during_ingest_commits_and_resumes(db, tmp_path, minilm, request):
    # A process started in the background by a non-interactive shell inherits SIGINT ignored,
    # and then Python installs no KeyboardInterrupt handler (interrupt_main does nothing):
    # install it, as an interactive session has it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    n = 300
    lines = (REPO / "examples" / "debian" / "corpus.jsonl").read_text().splitlines()[:n]
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(lines) + "\n")
    c = db.create_collection("c", ["emb:dense:384:f32:cosine"], encoders={"emb": minilm})

    running = threading.Event()
    running.set()

    def press_ctrl_c_after_the_first_commit():
        reader = vellum.open(db.path, read_only=True)
        while running.is_set() and len(reader["c"]) == 0:
            time.sleep(0.01)
        if running.is_set():
            _thread.interrupt_main()  # what Ctrl-C does: SIGINT handling on the main thread

    t = threading.Thread(target=press_ctrl_c_after_the_first_commit, daemon=True)
    t.start()
    interrupted = False
    try:
        c.ingest(docs, commit_every=25)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        running.clear()
        t.join()
    assert interrupted, f"the ingest ran to its end before the interrupt ({n} passages, commits of 25)"
    done = len(c)
    assert 0 < done < n and not db.has_changes
    s = c.ingest(docs)
    assert s["skipped"] == done and len(c) == n


def test_encoder_errors(db, tmp_path):
    with pytest.raises(EncoderError, match="config.json"):
        vellum.Encoder(tmp_path)
    c = db.create_collection("c", ["emb:dense:32:f32:cosine"])
    with pytest.raises(EncoderError, match="no encoder is bound"):
        c.search_text("hello")
    with pytest.raises(EncoderError, match="outputs 32 dimensions but the field has 16"):
        db.create_collection("d", ["emb:dense:16:f32:cosine"], encoders={"emb": TINY_A})
    assert "d" not in db.collections()
    # A field needs its vectors or an encoder: documents without them are refused.
    with pytest.raises(InvalidInputError, match="emb"):
        c.add(["a"], texts=["no vectors and no encoder"])
    # A field with an encoder needs texts (or vectors): no silent encoding of empty text.
    e = db.create_collection("e", ["emb:dense:32:f32:cosine"], encoders={"emb": TINY_A})
    with pytest.raises(InvalidInputError, match="give texts"):
        e.add(["a"])
    # Untied query encoder of another model: recorded, and used for queries.
    u = db.create_collection("u", ["emb:dense:32:f32:cosine"], encoders={"emb": TINY_A},
                             query_encoders={"emb": TINY_B})
    assert u.encoders["emb"]["query"]["fingerprint"] != u.encoders["emb"]["passage"]["fingerprint"]


def test_evaluate_matches_known_values(tmp_path):
    qrels = {"q1": {"d1": 1, "d3": 2}, "q2": {"d9": 1}}
    run = {"q1": {"d2": 0.9, "d1": 0.8, "d3": 0.1}, "q2": {"d4": 1.0, "d5": 0.5}}
    got = vellum.eval.evaluate(qrels, run, ["mrr@10", "recall@2", "p@1"], per_query=True)
    assert got["mrr@10"] == pytest.approx(0.25)
    assert got["recall@2"] == pytest.approx(0.25)
    assert got["p@1"] == 0.0
    assert got["per_query"]["q1"]["mrr@10"] == pytest.approx(0.5)
    # Files work too; queries without judgements are reported, not silently dropped.
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\n")
    (tmp_path / "run.tsv").write_text("q1\td1\t0.5\nq7\td2\t0.4\n")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = vellum.eval.evaluate(tmp_path / "qrels.txt", tmp_path / "run.tsv", "mrr@10")
    assert got == {"mrr@10": 1.0} and "no judgements" in str(w[0].message)
    with pytest.raises(InvalidInputError, match="metric"):
        vellum.eval.evaluate(qrels, run, ["bogus.3"])


def test_run_from_results_and_write_run(tmp_path):
    ids = np.array([["a", "b", None]], dtype=object)
    scores = np.array([[2.0, 1.5, -np.inf]], dtype=np.float32)
    assert vellum.eval.run_from_results(["q"], ids, scores) == {"q": {"a": 2.0, "b": 1.5}}
    vellum.eval.write_run(tmp_path / "r.trec", ["q"], ids, scores)
    assert (tmp_path / "r.trec").read_text() == "q Q0 a 1 2 vellum\nq Q0 b 2 1.5 vellum\n"


COLBERT = REPO / "tests" / "fixtures" / "colbert"


def test_colbert_checkpoints_match_their_reference_implementations():
    ref = json.loads((COLBERT / "reference.json").read_text())
    for name in ("stanford", "pylate", "st6"):
        for side, role in (("queries", "query"), ("documents", "passage")):
            e = vellum.Encoder(COLBERT / name, role=role, truncate=True)
            assert e.output == "multi" and e.record["late_interaction"]["role"] == role
            got = e.encode(ref[side])
            for g, want in zip(got, ref["models"][name][side]):
                w = np.array(want["vectors"], dtype=np.float32)
                assert g.shape == w.shape
                cos = (g * w).sum(1) / np.linalg.norm(g, axis=1) / np.linalg.norm(w, axis=1)
                assert cos.min() >= 0.99999


def test_colbert_field_ingests_text_and_searches_by_maxsim(db):
    texts = sentences()[:30]
    c = db.create_collection("c", ["tok:multi:16:f32:ip"], encoders={"tok": COLBERT / "pylate"})
    c.add([f"s{i}" for i in range(30)], texts=texts)
    db.commit()
    docs = vellum.Encoder(COLBERT / "pylate").encode(texts)
    np.testing.assert_array_equal(c.get("s7")["vectors"]["tok"], docs[7])
    queries = ["strategy game", "XML parser library"]
    ids, scores = c.search_text(queries, k=3)
    q = vellum.Encoder(COLBERT / "pylate", role="query").encode(queries)
    for i, qv in enumerate(q):
        assert qv.shape == (20, 16)  # expanded to the query length
        maxsim = np.array([(qv @ d.T).max(1).sum() for d in docs])
        order = np.argsort(-maxsim, kind="stable")[:3]
        assert ids[i].tolist() == [f"s{j}" for j in order]
        np.testing.assert_allclose(scores[i], maxsim[order], rtol=1e-5)
    with pytest.raises(InvalidInputError, match="query length"):
        c.search_text(["a very long query about many things " * 10], k=1)


def test_plaid_index_from_python(db):
    rng = np.random.default_rng(0)
    c = db.create_collection("c", ["tok:multi:16:f32:ip"])
    docs = [rng.standard_normal((int(rng.integers(3, 9)), 16)).astype(np.float32) for _ in range(300)]
    c.add([f"d{i}" for i in range(300)], vectors={"tok": docs})
    db.commit()
    c.plaid_index("tok", "nbits=2,centroids=32,min_rows=10")
    q = [d[:3] for d in docs[:5]]
    exact_ids, exact_scores = c.search(q, k=5, exact=True)
    wide_ids, wide_scores = c.search(q, k=5, plaid={"ncells": 32, "ndocs": 10000,
                                                    "centroid_threshold": -100})
    assert (wide_ids == exact_ids).all()
    np.testing.assert_allclose(wide_scores, exact_scores, rtol=1e-5)
    ids, _ = c.search(q, k=5)  # the paper's defaults
    assert ids.shape == (5, 5)
    with pytest.raises(vellum.errors.InvalidInputError, match="ncells"):
        c.search(q, k=5, plaid={"ncells": 0})
    # Every row kept by stage 2 (all 300) through the last stage (`full_scores`, default
    # ndocs // 4): exact. With only k of them ranked by centroid scores alone, not.
    def full(n):
        return c.search(q, k=5, plaid={"ncells": 32, "ndocs": 300, "full_scores": n,
                                       "centroid_threshold": -100})[0]
    assert (full(300) == exact_ids).all()
    assert (full(5) != exact_ids).any()
    with pytest.raises(vellum.errors.InvalidInputError, match="full_scores"):
        c.search(q, k=5, plaid={"full_scores": 0})
    # Codes only: documents read back decompressed, close to what was stored.
    c.plaid_index("tok", "nbits=4,centroids=32,min_rows=10,store=codes")
    got = c.get("d3")["vectors"]["tok"]
    assert got.shape == docs[3].shape
    cos = (got * docs[3]).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(docs[3], axis=1)
    assert cos.min() > 0.8, cos
    assert c.search(q, k=5)[0].shape == (5, 5)
    c.plaid_index("tok", None)
    assert c.search(q, k=5)[0].shape == (5, 5)


def test_reencode_switches_and_rolls_back(db):
    texts = sentences()[:50]
    c = db.create_collection("c", ["emb:dense:32:f32:cosine"], encoders={"emb": TINY_A})
    c.add([f"s{i}" for i in range(50)], texts=texts)
    db.commit()
    before = c.search_text(texts[:5], k=3)
    s = c.reencode("emb", TINY_B, piece_rows=16)
    assert (s["from_version"], s["to_version"], s["encoded"]) == (1, 2, 50)
    want = vellum.Encoder(TINY_B).encode(texts[:3])
    for i in range(3):
        np.testing.assert_allclose(c.get(f"s{i}")["vectors"]["emb"], want[i], rtol=1e-5, atol=1e-6)
    after = c.search_text(texts[:5], k=3)
    r = c.rollback_version()
    assert (r["field"], r["from_version"], r["to_version"]) == ("emb", 2, 1)
    back = c.search_text(texts[:5], k=3)
    assert (back[0] == before[0]).all() and (back[1] == before[1]).all()
    c.rollback_version()
    forward = c.search_text(texts[:5], k=3)
    assert (forward[0] == after[0]).all()
    assert c.drop_previous_version() and not c.drop_previous_version()
    with pytest.raises(InvalidInputError, match="no previous encoder version"):
        c.rollback_version()
    with pytest.raises(InvalidInputError, match="name the new encoder"):
        c.reencode("emb")
    assert not c.abort_reencode()


def test_reencode_into_a_new_field(db):
    texts = sentences()[:30]
    c = db.create_collection("c", ["emb:dense:32:f32:cosine"], encoders={"emb": TINY_A})
    c.add([f"s{i}" for i in range(30)], texts=texts)
    db.commit()
    before = c.search_text(texts[:5], k=3)
    s = c.reencode("emb", TINY_B, encoder_options={"dims": 16}, new_field="emb16", piece_rows=8)
    assert (s["from_version"], s["to_version"], s["encoded"]) == (0, 1, 30)
    assert len(c.get("s0")["vectors"]["emb16"]) == 16
    assert len(c.get("s0")["vectors"]["emb"]) == 32
    kept = c.search_text(texts[:5], k=3, field="emb")
    assert (kept[0] == before[0]).all()
    ids, _ = c.search_text(texts[:5], k=3, field="emb16")
    assert ids.shape == (5, 3)
    r = c.rollback_version()
    assert (r["field"], r["from_version"], r["to_version"]) == ("emb16", 1, 0)
    assert "emb16" not in c.get("s0")["vectors"]
    with pytest.raises(InvalidInputError, match="new_field needs the new encoder"):
        c.reencode("emb", new_field="other")


def _debian_sample(tmp_path, n):
    """The first ``n`` Debian documents, with the sample's queries and qrels that judge them."""
    ex = REPO / "examples" / "debian"
    docs = (ex / "corpus.jsonl").read_text().splitlines()[:n]
    ids = {json.loads(l)["id"] for l in docs}
    qrels = [l for l in (ex / "qrels.txt").read_text().splitlines() if l.split(" ")[2] in ids]
    qids = {l.split(" ")[0] for l in qrels}
    queries = [l for l in (ex / "queries.tsv").read_text().splitlines()
               if l.split("\t")[0] in qids]
    (tmp_path / "q.tsv").write_text("\n".join(queries) + "\n")
    (tmp_path / "qrels.txt").write_text("\n".join(qrels) + "\n")
    return [json.loads(l) for l in docs], tmp_path / "q.tsv", tmp_path / "qrels.txt"


def test_train_query_encoder_from_python(db, tmp_path):
    docs, q, r = _debian_sample(tmp_path, 80)
    c = db.create_collection("c", ["emb:dense:32:f32:cosine"], encoders={"emb": TINY_A},
                             encoder_options={"emb": {"pooling": "mean", "normalize": True}})
    c.add([d["id"] for d in docs], texts=[d["text"] for d in docs])
    db.commit()
    stored = c.get(docs[0]["id"])["vectors"]["emb"]
    report = c.train_query_encoder(
        "emb", tmp_path / "student", queries=q, qrels=r, mine_depth=5, eval_queries=q,
        eval_qrels=r, student_layers=1, align_steps=6,
        align_texts=["parser for configuration files", "fonts for the console"],
        max_steps=3, batch_size=4, group_size=2, bind=True, bind_options={"dtype": "int8"})
    assert report["layers"] == [1, 2]
    assert len(report["align_losses"]) == 6 and len(report["losses"]) == 3
    assert report["teacher"]["measures"]["mrr@10"] > 0 and len(report["student"]) == 2
    assert report["generation"] > 0
    # Bound: text search encodes with the student; the stored vectors are unchanged.
    query = c.encoders["emb"]["query"]
    assert query["source"].endswith("student") and query["dtype"].lower() == "int8", query
    np.testing.assert_array_equal(c.get(docs[0]["id"])["vectors"]["emb"], stored)
    student = vellum.Encoder(tmp_path / "student", pooling="mean", normalize=True, dtype="int8")
    v = student.encode(["library for parsing XML"])
    ids, _ = c.search(v, k=5)
    assert list(c.search_text(["library for parsing XML"], k=5)[0][0]) == list(ids[0])
    with pytest.raises(InvalidInputError, match="two students"):
        c.train_query_encoder("emb", tmp_path / "x", queries=q, qrels=r, student_layers=1,
                              student=tmp_path / "student")
    with pytest.raises(InvalidInputError, match="alignment text 1: empty"):
        c.train_query_encoder("emb", tmp_path / "y", queries=q, qrels=r, align_texts=[" "])
    with pytest.raises(InvalidInputError, match="dtype"):
        c.train_query_encoder("emb", tmp_path / "v", queries=q, qrels=r, bind=True,
                              bind_options={"dtype": "int4"})
    assert not (tmp_path / "v").exists()
    with pytest.raises(InvalidInputError, match="pass bind=True"):
        c.train_query_encoder("emb", tmp_path / "u", queries=q, qrels=r,
                              bind_options={"dtype": "int8"})
    with pytest.raises(TypeError, match="sequence of strings"):
        c.train_query_encoder("emb", tmp_path / "z", queries=q, qrels=r, align_texts="text")
    c.delete([docs[1]["id"]])
    with pytest.raises(InvalidInputError, match=r"bind=True\) commits, and this database has uncommitted"):
        c.train_query_encoder("emb", tmp_path / "w", queries=q, qrels=r, bind=True)
    assert not (tmp_path / "w").exists()


def test_train_then_reencode_from_python(db, tmp_path):
    docs, q, r = _debian_sample(tmp_path, 80)
    c = db.create_collection("c", ["emb:dense:32:f32:cosine"], encoders={"emb": TINY_A},
                             encoder_options={"emb": {"pooling": "mean", "normalize": True}})
    c.add([d["id"] for d in docs], texts=[d["text"] for d in docs])
    db.commit()
    report = c.train("emb", tmp_path / "out", queries=q, qrels=r, mine_depth=8,
                     eval_queries=q, eval_qrels=r, eval_depth=10, max_steps=4, batch_size=4,
                     group_size=3, lr=1e-3, reencode=True, piece_rows=30)
    assert report["steps"] == 4 and len(report["losses"]) == 4
    assert report["reencode"]["to_version"] == 2 and report["reencode"]["encoded"] == 80
    # The field now holds the trained model's vectors.
    trained = vellum.Encoder(tmp_path / "out", pooling="mean", normalize=True)
    want = trained.encode([docs[0]["text"]])[0]
    np.testing.assert_allclose(c.get(docs[0]["id"])["vectors"]["emb"], want, rtol=1e-4, atol=1e-5)
    assert c.rollback_version()["to_version"] == 1
    with pytest.raises(InvalidInputError, match="learning_rate"):
        c.train("emb", tmp_path / "o2", queries=q, qrels=r, learning_rate=1e-3)
    with pytest.raises(InvalidInputError, match="already holds"):
        c.train("emb", tmp_path / "out", queries=q, qrels=r, max_steps=1)
