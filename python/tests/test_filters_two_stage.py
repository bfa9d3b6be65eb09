"""Metadata filters and two-stage search against numpy brute force (small-integer vectors, so
scores are exact and ties are real; vellum ranks equal scores by id, descending)."""

import numpy as np
import pytest

from conftest import TINY_A, TINY_B
from vellum.errors import InvalidInputError


def ranked(ids, scores):
    """Indices of `scores` best first, equal scores by id descending."""
    return sorted(range(len(ids)), key=lambda j: (-scores[j], tuple(-ord(ch) for ch in ids[j])))


def make(db, n=240, seed=11):
    rng = np.random.default_rng(seed)
    a = rng.integers(-2, 3, size=(n, 8)).astype(np.float32)
    b = rng.integers(-2, 3, size=(n, 8)).astype(np.float32)
    toks = [rng.integers(-2, 3, size=(1 + i % 3, 8)).astype(np.float32) for i in range(n)]
    ids = [f"d{i:03d}" for i in range(n)]
    meta = [{"lang": ["en", "de", "fr"][i % 3], "year": 1990 + i % 30,
             "tags": ["x", "y"][: i % 3]} for i in range(n)]
    c = db.create_collection("c", ["a:dense:8:f32:ip", "b:dense:8:f32:ip", "m:multi:8:f32:ip"])
    half = n // 2
    c.add(ids[:half], vectors={"a": a[:half], "b": b[:half], "m": toks[:half]}, metadata=meta[:half])
    db.commit()
    c.add(ids[half:], vectors={"a": a[half:], "b": b[half:], "m": toks[half:]}, metadata=meta[half:])
    db.commit()
    return c, a, b, toks, ids, meta


@pytest.mark.parametrize("flt,keep", [
    ({"lang": "en"}, lambda m: m["lang"] == "en"),
    ({"year": {"$gte": 2000, "$lt": 2005}}, lambda m: 2000 <= m["year"] < 2005),
    ({"$or": [{"tags": "y"}, {"lang": {"$in": ["fr"]}}]}, lambda m: "y" in m["tags"] or m["lang"] == "fr"),
    ({"$not": {"tags": {"$exists": True}}}, lambda m: False),
    ('{"year": 1995}', lambda m: m["year"] == 1995),
])
def test_filtered_search_equals_brute_force(db, flt, keep):
    c, a, _, _, ids, meta = make(db)
    q = np.random.default_rng(1).integers(-2, 3, size=(6, 8)).astype(np.float32)
    got_ids, got_scores = c.search(q, k=15, field="a", filter=flt)
    for qi in range(len(q)):
        rows = [j for j in range(len(ids)) if keep(meta[j])]
        s = a[rows] @ q[qi]
        order = ranked([ids[j] for j in rows], s)[:15]
        want = [ids[rows[o]] for o in order]
        assert [x for x in got_ids[qi] if x is not None] == want
        np.testing.assert_array_equal(got_scores[qi, : len(want)], s[order])
    # query() applies the same filter and returns the metadata.
    docs = c.query(q[:1], k=5, field="a", filter=flt)[0]
    assert all(keep(d["metadata"]) for d in docs)


def test_bad_filters_are_invalid_input(db):
    c, *_ = make(db, n=12)
    q = np.ones(8, dtype=np.float32)
    with pytest.raises(InvalidInputError, match=r"filter at \$\.year\.\$gte: expected a number"):
        c.search(q, k=3, field="a", filter={"year": {"$gte": "2000"}})
    with pytest.raises(InvalidInputError, match="unknown operator"):
        c.search(q, k=3, field="a", filter={"year": {"$between": [1, 2]}})


@pytest.mark.parametrize("combine", [None, (0.5, 2.0)])
def test_two_stage_equals_brute_force_and_saved_candidates_rerank_the_same(db, combine):
    c, a, b, toks, ids, meta = make(db)
    rng = np.random.default_rng(2)
    qa = rng.integers(-2, 3, size=(5, 8)).astype(np.float32)
    qb = rng.integers(-2, 3, size=(5, 8)).astype(np.float32)
    qm = [rng.integers(-2, 3, size=(2, 8)).astype(np.float32) for _ in range(5)]
    depth, k = 30, 8
    flt = {"lang": {"$ne": "de"}}
    rows = [j for j in range(len(ids)) if meta[j]["lang"] != "de"]
    for field, queries, score in [
        ("b", qb, lambda qi, j: float(b[j] @ qb[qi])),
        ("m", qm, lambda qi, j: float((toks[j] @ qm[qi].T).max(axis=0).sum())),
    ]:
        got_ids, got_scores = c.search_two_stage(
            qa, queries, k, field="a", rerank_field=field, depth=depth, combine=combine,
            filter=flt)
        for qi in range(5):
            s1 = a[rows] @ qa[qi]
            cand = [rows[o] for o in ranked([ids[j] for j in rows], s1)[:depth]]
            first = {j: float(a[j] @ qa[qi]) for j in cand}
            final = [score(qi, j) if combine is None
                     else np.float32(combine[0]) * np.float32(first[j])
                     + np.float32(combine[1]) * np.float32(score(qi, j)) for j in cand]
            order = ranked([ids[j] for j in cand], final)[:k]
            assert list(got_ids[qi]) == [ids[cand[o]] for o in order]
            np.testing.assert_allclose(got_scores[qi], [final[o] for o in order], rtol=1e-6)
        # Stage 1 saved as (id, score) pairs, re-ranked later: the same run.
        s1_ids, s1_scores = c.search(qa, k=depth, field="a", filter=flt)
        cands = [list(zip(r, s)) for r, s in zip(s1_ids.tolist(), s1_scores.tolist())]
        later_ids, later_scores = c.rerank(cands, queries, k, field=field, combine=combine)
        assert (later_ids == got_ids).all()
        np.testing.assert_array_equal(later_scores, got_scores)


def test_two_stage_with_text_queries_equals_encoded_vectors(db):
    c = db.create_collection("t", ["a:dense:32:f32:cosine", "b:dense:32:f32:cosine"],
                             encoders={"a": TINY_A, "b": TINY_B})
    texts = [f"passage number {i} about {['cats', 'ships', 'rain'][i % 3]}" for i in range(40)]
    c.add([f"p{i}" for i in range(40)], texts=texts)
    db.commit()
    qs, rs = ["cats and ships", "rain at sea"], ["a cat", "heavy rain"]
    by_text = c.search_two_stage(texts=qs, rerank_texts=rs, k=5, field="a", rerank_field="b",
                                 depth=12)
    va = c.encode_queries(qs, field="a")
    vb = c.encode_queries(rs, field="b")
    by_vec = c.search_two_stage(va, vb, 5, field="a", rerank_field="b", depth=12)
    assert (by_text[0] == by_vec[0]).all()
    np.testing.assert_array_equal(by_text[1], by_vec[1])
    # Candidates given as bare ids re-rank too; unknown ids are skipped.
    ids, _ = c.rerank([["p1", "p2", "nope"], ["p3"]], vb, 5, field="b")
    assert set(ids[0][:2]) == {"p1", "p2"} and ids[0][2] is None and ids[1][0] == "p3"
    with pytest.raises(InvalidInputError, match="vectors or as texts"):
        c.search_two_stage(va, vb, 5, field="a", rerank_field="b", rerank_texts=rs)


def test_rerank_takes_padded_search_rows_and_checks_weights(db):
    c, a, b, toks, ids, meta = make(db, n=30)
    q = np.ones((2, 8), dtype=np.float32)
    # Few matches: search() pads rows shorter than k with None / -inf.
    s_ids, s_scores = c.search(q, k=12, field="a", filter={"year": {"$lt": 1992}})
    assert s_ids[0][-1] is None
    pairs = [list(zip(r, s)) for r, s in zip(s_ids.tolist(), s_scores.tolist())]
    got, _ = c.rerank(pairs, q, 5, field="b", combine=(1.0, 1.0))
    assert all(x is None or meta[ids.index(x)]["year"] < 1992 for x in got[0])
    got, _ = c.rerank(s_ids.tolist(), q, 5, field="b")
    assert got[0][0] is not None
    with pytest.raises(InvalidInputError, match="pairs"):
        c.rerank(s_ids.tolist(), q, 5, field="b", combine=(1.0, 1.0))
    with pytest.raises(InvalidInputError, match="finite"):
        c.rerank(pairs, q, 5, field="b", combine=(float("nan"), 1.0))
    # NumPy scalars in a filter are numbers.
    n_ids, _ = c.search(q, k=3, field="a", filter={"year": {"$gte": np.int64(2015)}})
    assert all(x is None or meta[ids.index(x)]["year"] >= 2015 for x in n_ids[0])
