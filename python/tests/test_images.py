"""CLIP from Python: an image-embedding field and a feature (tensor) field bound to the tiny
random CLIP of tests/fixtures/clip, images ingested from a JSONL of paths, text search."""

import json

import numpy as np

from conftest import REPO

CLIP = REPO / "tests" / "fixtures" / "clip"


def test_clip_fields_ingest_images_and_search_by_text(db, tmp_path):
    c = db.create_collection("img", ["emb:dense:24:f32:cosine", "feat:tensor:17x40:f32"],
                             encoders={"emb": CLIP / "tiny", "feat": CLIP / "tiny"})
    names = ["exact.png", "gray.png", "wide.png", "tall.png"]
    lines = [json.dumps({"id": n, "image": str(CLIP / "images" / n)}) for n in names]
    lines.append(json.dumps({"id": "lost", "image": "nowhere.png"}))
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n")
    stats = c.ingest(tmp_path / "docs.jsonl", skip_bad_images=True)
    assert stats["documents"] == 4 and [b[0] for b in stats["bad_images"]] == ["lost"]
    ref = json.loads((CLIP / "reference.json").read_text())
    for n in names:
        doc = c.get(n)
        emb = doc["vectors"]["emb"]
        want = np.array(ref["images"][n]["embedding"])
        assert float(emb @ want / np.linalg.norm(want)) > 0.99999
        feat = doc["vectors"]["feat"]
        assert feat.shape == (17, 40)
        np.testing.assert_allclose(feat, np.array(ref["images"][n]["penultimate"]), atol=1e-4)
    texts = [t["text"] for t in ref["texts"]]
    ids, scores = c.search_text(texts, k=2, field="emb")
    stored = np.stack([c.get(n)["vectors"]["emb"] for n in names])
    for t, row in zip(ref["texts"], ids):
        q = np.array(t["embedding"])
        order = np.argsort(-(stored @ q), kind="stable")[:2]
        assert list(row) == [names[i] for i in order]
