//! PLAID indexes on multi-vector fields against exact MaxSim (the oracle): agreement at the
//! paper's defaults, equality when no stage prunes, deletes, adds encoded with the existing codec,
//! re-clustering at compaction, `verify`.

use vellum::meta::PlaidParams;
use vellum::plaid::{PlaidSearch, SplitMix64};
use vellum::{Database, Document, FieldSpec, Schema, SearchRequest};

const DIM: usize = 32;

fn unit(rng: &mut SplitMix64) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIM)
        .map(|_| rng.below(2001) as f32 / 1000.0 - 1.0)
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// `base + noise·(a random unit vector)`, normalised: a word in context.
fn near(base: &[f32], noise: f32, rng: &mut SplitMix64) -> Vec<f32> {
    let r = unit(rng);
    let mut v: Vec<f32> = base.iter().zip(&r).map(|(a, b)| a + noise * b).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// A vocabulary of 3,000 words in 48 topics, as unit vectors: ColBERT's token vectors cluster
/// by word and meaning.
fn words() -> Vec<Vec<f32>> {
    let mut rng = SplitMix64::new(99);
    let topics: Vec<Vec<f32>> = (0..48).map(|_| unit(&mut rng)).collect();
    (0..3000)
        .map(|w| near(&topics[w % 48], 0.8, &mut rng))
        .collect()
}

/// Documents of 8–24 tokens, each a word of one of the document's three topics in context;
/// returns the token vectors and the words.
fn corpus(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let vocab = words();
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let own: Vec<usize> = (0..3).map(|_| rng.below(48)).collect();
            let len = 8 + rng.below(17);
            let mut doc = Vec::with_capacity(len * DIM);
            for _ in 0..len {
                let w = own[rng.below(3)] + 48 * rng.below(3000 / 48);
                doc.extend(near(&vocab[w], 0.3, &mut rng));
            }
            doc
        })
        .collect()
}

/// Queries: 6 of a document's tokens with fresh context noise.
fn queries(docs: &[Vec<f32>], n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let d = &docs[rng.below(docs.len())];
            let tokens = d.len() / DIM;
            let mut q = Vec::new();
            for _ in 0..6 {
                let t = rng.below(tokens);
                q.extend(near(&d[t * DIM..(t + 1) * DIM], 0.3, &mut rng));
            }
            q
        })
        .collect()
}

fn db_with(dir: &std::path::Path, docs: &[Vec<f32>], params: PlaidParams) -> Database {
    let db = Database::create(dir).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::parse(&format!("tok:multi:{DIM}:f16:ip")).unwrap()),
    )
    .unwrap();
    for (i, d) in docs.iter().enumerate() {
        w.add(
            "c",
            Document::new(format!("d{i:05}")).with_multi("tok", d.clone()),
        )
        .unwrap();
    }
    w.commit().unwrap();
    w.set_plaid("c", "tok", Some(params)).unwrap();
    w.reindex("c").unwrap();
    db
}

fn ids(db: &Database, q: &[f32], k: usize, exact: bool, p: Option<PlaidSearch>) -> Vec<String> {
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let mut req = SearchRequest::multi("tok", q, k);
    if exact {
        req = req.exact();
    }
    if let Some(p) = p {
        req = req.with_plaid(p);
    }
    c.search(&req).unwrap()[0]
        .iter()
        .map(|h| h.id.clone())
        .collect()
}

/// The codec id of each segment's PLAID section.
fn codec_ids(db: &Database) -> Vec<u64> {
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    c.slots()
        .iter()
        .map(|s| s.segment.plaid(0).unwrap().unwrap().codec_id)
        .collect()
}

fn agreement(db: &Database, qs: &[Vec<f32>], k: usize, p: Option<PlaidSearch>) -> f64 {
    let mut same = 0;
    for q in qs {
        let want = ids(db, q, k, true, None);
        let got = ids(db, q, k, false, p);
        same += got.iter().filter(|i| want.contains(i)).count();
    }
    same as f64 / (qs.len() * k) as f64
}

#[test]
fn plaid_agrees_with_exact_maxsim_and_equals_it_without_pruning() {
    let t = tempfile::tempdir().unwrap();
    let docs = corpus(1500, 1);
    let db = db_with(t.path(), &docs, PlaidParams::default());
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    assert_eq!(c.slots().len(), 1);
    let view = c.slots()[0].segment.plaid(0).unwrap().unwrap();
    // ColBERT's rule on ~24k tokens: 2^floor(log2(16·155)) = 2048 centroids.
    let tokens = view.codes.len();
    assert_eq!(
        view.k(),
        vellum::meta::PlaidParams::default().centroids_for(tokens)
    );
    drop(snap);
    let qs = queries(&docs, 60, 2);
    // On this small collection ColBERT's rule gives ~12 tokens per centroid, so one cell per
    // query token (the k ≤ 10 default) misses some neighbours; probing more cells closes the
    // gap (agreement grows with ncells).
    let a = agreement(&db, &qs, 10, None);
    assert!(
        a >= 0.7,
        "top-10 agreement with exact MaxSim at the defaults: {a}"
    );
    let four = PlaidSearch {
        ncells: 4,
        ..PlaidSearch::for_k(10)
    };
    let a4 = agreement(&db, &qs, 10, Some(four));
    assert!(a4 >= 0.95 && a4 > a, "ncells 4: {a4} (1: {a})");
    // Nothing pruned: every row is a candidate and all reach stage 4 → exactly the oracle.
    let all = PlaidSearch {
        ncells: 1 << 20,
        centroid_threshold: f32::NEG_INFINITY,
        ndocs: 1 << 20,
        full_scores: None,
        decompress: false,
    };
    assert_eq!(agreement(&db, &qs[..15], 10, Some(all)), 1.0);
    // ... with the very scores exact search reports (stage 4 is exact search's per-document
    // MaxSim).
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    for q in &qs[..15] {
        let scores = |req: SearchRequest<'_>| -> Vec<(String, u32)> {
            c.search(&req).unwrap()[0]
                .iter()
                .map(|h| (h.id.clone(), h.score.to_bits()))
                .collect()
        };
        assert_eq!(
            scores(SearchRequest::multi("tok", q, 10).with_plaid(all)),
            scores(SearchRequest::multi("tok", q, 10).exact())
        );
    }
    drop(snap);
    // More rows through stage 4 (`full_scores`, default ndocs / 4): stage 3 keeps a superset,
    // so every exact top-10 hit found at the default is still found, and agreement cannot drop.
    let narrow = PlaidSearch {
        ndocs: 64,
        ..PlaidSearch::for_k(10)
    };
    let wide = PlaidSearch {
        full_scores: Some(64),
        ..narrow
    };
    let (mut found_narrow, mut found_wide) = (0, 0);
    for q in &qs {
        let exact = ids(&db, q, 10, true, None);
        let n = ids(&db, q, 10, false, Some(narrow));
        let w = ids(&db, q, 10, false, Some(wide));
        let hits = |got: &[String]| exact.iter().filter(|e| got.contains(e)).count();
        assert!(
            n.iter()
                .filter(|x| exact.contains(x))
                .all(|x| w.contains(x)),
            "{n:?} ⊄ {w:?}"
        );
        found_narrow += hits(&n);
        found_wide += hits(&w);
    }
    assert!(
        found_wide > found_narrow,
        "full_scores 64: {found_wide} vs 16: {found_narrow}"
    );
    // Fewer than k: k rows still reach stage 4, and k hits come back.
    let one = PlaidSearch {
        full_scores: Some(1),
        ..narrow
    };
    assert_eq!(ids(&db, &qs[0], 10, false, Some(one)).len(), 10);
    let zero = PlaidSearch {
        full_scores: Some(0),
        ..narrow
    };
    let snap = db.snapshot().unwrap();
    let e = snap
        .collection("c")
        .unwrap()
        .search(&SearchRequest::multi("tok", &qs[0], 10).with_plaid(zero))
        .unwrap_err();
    assert!(e.to_string().contains("full_scores"), "{e}");
    drop(snap);
    // Stage 4 on decompressed vectors (2-bit residuals) stays close.
    let dec = PlaidSearch {
        decompress: true,
        ..four
    };
    let a = agreement(&db, &qs[..30], 10, Some(dec));
    assert!(a >= 0.8, "agreement with decompressed rerank: {a}");
    let report = vellum::verify::verify_database(t.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn deletes_adds_and_reclustering() {
    let t = tempfile::tempdir().unwrap();
    let docs = corpus(1200, 3);
    let params = PlaidParams {
        min_rows: 10,
        ..Default::default()
    };
    let db = db_with(t.path(), &docs, params);
    let qs = queries(&docs, 20, 4);
    let first = codec_ids(&db);
    // Deleted rows are never returned.
    let top = ids(&db, &qs[0], 5, false, None);
    let mut w = db.writer().unwrap();
    for id in &top[..3] {
        w.delete("c", id).unwrap();
    }
    w.commit().unwrap();
    let after = ids(&db, &qs[0], 5, false, None);
    assert!(top[..3].iter().all(|id| !after.contains(id)), "{after:?}");
    // 1 % more documents: a new segment encoded with the existing codec (no re-clustering).
    let more = corpus(12, 5);
    for (i, d) in more.iter().enumerate() {
        w.add(
            "c",
            Document::new(format!("new{i}")).with_multi("tok", d.clone()),
        )
        .unwrap();
    }
    w.commit().unwrap();
    let ids_now = codec_ids(&db);
    assert_eq!(ids_now.len(), 2);
    assert!(ids_now.iter().all(|&i| i == first[0]), "{ids_now:?}");
    let four = PlaidSearch {
        ncells: 4,
        ..PlaidSearch::for_k(10)
    };
    let a = agreement(&db, &qs, 10, Some(four));
    assert!(a >= 0.95, "after adds: {a}");
    // A new document is found through the old codec.
    let own = ids(&db, &more[3][..6 * DIM], 1, false, None);
    assert_eq!(own, ["new3"]);
    // Compaction keeps the codec within 5 % growth...
    w.compact("c").unwrap();
    assert_eq!(codec_ids(&db), [first[0]]);
    // ... and re-clusters beyond it.
    for (i, d) in corpus(100, 6).iter().enumerate() {
        w.add(
            "c",
            Document::new(format!("more{i}")).with_multi("tok", d.clone()),
        )
        .unwrap();
    }
    w.commit().unwrap();
    w.compact("c").unwrap();
    let last = codec_ids(&db);
    assert_eq!(last.len(), 1);
    assert_ne!(last[0], first[0]);
    assert!(agreement(&db, &qs, 10, Some(four)) >= 0.95);
    let report = vellum::verify::verify_database(t.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

/// Re-clustering counts the documents added since training, not the net growth: replacing 8 %
/// of the documents (as many deletes as adds) re-clusters at compaction; deletes alone do not.
#[test]
fn replacing_documents_counts_towards_reclustering() {
    let t = tempfile::tempdir().unwrap();
    let docs = corpus(1200, 3);
    let params = PlaidParams {
        min_rows: 10,
        ..Default::default()
    };
    let db = db_with(t.path(), &docs, params);
    let first = codec_ids(&db)[0];
    let ids_of = |db: &Database| -> Vec<String> {
        let snap = db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let seg = &c.slots()[0].segment;
        (0..seg.rows())
            .map(|r| seg.doc_id(r).unwrap().to_string())
            .collect()
    };
    let all = ids_of(&db);
    let mut w = db.writer().unwrap();
    // Deletes alone: the codec stays.
    for id in &all[..100] {
        w.delete("c", id).unwrap();
    }
    w.commit().unwrap();
    w.compact("c").unwrap();
    assert_eq!(codec_ids(&db), [first]);
    // 100 replaced (as many adds as deletes; the live count is back where it was): 8 % added
    // since training, beyond the default 5 %.
    for (i, d) in corpus(100, 8).iter().enumerate() {
        w.add(
            "c",
            Document::new(format!("replaced{i}")).with_multi("tok", d.clone()),
        )
        .unwrap();
    }
    w.commit().unwrap();
    w.compact("c").unwrap();
    assert_ne!(codec_ids(&db), [first]);
}

#[test]
fn plaid_is_declared_only_on_fields_it_can_index() {
    let t = tempfile::tempdir().unwrap();
    let db = Database::create(t.path()).unwrap();
    let mut w = db.writer().unwrap();
    let schema = Schema::new()
        .with_field(FieldSpec::parse("emb:dense:8:f32:ip").unwrap())
        .with_field(FieldSpec::parse("l2:multi:8:f32:l2").unwrap())
        .with_field(FieldSpec::parse("odd:multi:12:f32:ip").unwrap());
    w.create_collection("c", schema).unwrap();
    for (field, msg) in [
        ("emb", "multi-vector fields"),
        ("l2", "inner product"),
        ("odd", "multiple of 8"),
        ("nope", "no field"),
    ] {
        let e = w
            .set_plaid("c", field, Some(PlaidParams::default()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(msg), "{field}: {e}");
    }
}

#[test]
fn ties_and_dropped_indexes_match_exact_search() {
    let t = tempfile::tempdir().unwrap();
    // 40 identical documents: every score ties; exact search ranks them by id, descending, and
    // PLAID's stage cuts keep every row tied at the cut.
    let doc = corpus(1, 8).remove(0);
    let docs = vec![doc.clone(); 40];
    let params = PlaidParams {
        min_rows: 10,
        centroids: Some(4),
        ..Default::default()
    };
    let db = db_with(t.path(), &docs, params);
    let q = &doc[..3 * DIM];
    let exact = ids(&db, q, 3, true, None);
    let tight = PlaidSearch {
        ncells: 4,
        centroid_threshold: f32::NEG_INFINITY,
        ndocs: 1,
        full_scores: None,
        decompress: false,
    };
    assert_eq!(ids(&db, q, 3, false, Some(tight)), exact);
    assert_eq!(exact, ["d00039", "d00038", "d00037"]);
    // A dropped index is not used, even before a rewrite removes its sections.
    let mut w = db.writer().unwrap();
    w.set_plaid("c", "tok", None).unwrap();
    w.commit().unwrap();
    let bad = PlaidSearch {
        ncells: 1,
        centroid_threshold: 10.0,
        ndocs: 1,
        full_scores: None,
        decompress: false,
    };
    assert_eq!(ids(&db, q, 3, false, Some(bad)), exact);
}

/// `(id, score bits)` of the top `k` for `req`.
fn scored(db: &Database, req: SearchRequest<'_>) -> Vec<(String, u32)> {
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    c.search(&req).unwrap()[0]
        .iter()
        .map(|h| (h.id.clone(), h.score.to_bits()))
        .collect()
}

/// Every live document's codes and packed residuals, by id.
fn coded_rows(db: &Database) -> std::collections::BTreeMap<String, (Vec<u32>, Vec<u8>)> {
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let mut out = std::collections::BTreeMap::new();
    for s in c.slots() {
        let v = s.segment.plaid(0).unwrap().unwrap();
        let rb = v.residual_bytes();
        for r in 0..s.segment.rows() {
            if s.is_deleted(r) {
                continue;
            }
            let t = s.segment.multi_range(0, r).unwrap();
            out.insert(
                s.segment.doc_id(r).unwrap().to_string(),
                (
                    v.codes.slice(t.clone()).unwrap().to_vec(),
                    v.residuals[t.start * rb..t.end * rb].to_vec(),
                ),
            );
        }
    }
    out
}

/// A codes-only field (`store=codes`): segments keep the PLAID section and no token section;
/// reads and every search path see the decompressed tokens, exactly as a field that keeps its
/// tokens sees them when it decompresses; small later segments are coded with the existing
/// codec; compaction copies codes and residuals byte for byte; `verify` and reopening pass.
#[test]
fn codes_only_fields_read_search_and_compact_through_their_codes() {
    let (t_full, t_codes) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let docs = corpus(600, 11);
    let full = db_with(t_full.path(), &docs, PlaidParams::default());
    let codes_only = PlaidParams {
        codes_only: true,
        ..Default::default()
    };
    let db = db_with(t_codes.path(), &docs, codes_only);
    {
        let (sf, sc) = (full.snapshot().unwrap(), db.snapshot().unwrap());
        let (f, c) = (
            &sf.collection("c").unwrap().slots()[0].segment,
            &sc.collection("c").unwrap().slots()[0].segment,
        );
        assert!(f.stores_tokens(0) && !c.stores_tokens(0));
        assert!(c.multi_tokens(0).is_none());
        let (vf, vc) = (f.plaid(0).unwrap().unwrap(), c.plaid(0).unwrap().unwrap());
        assert_eq!(vf.codec_id, vc.codec_id);
        assert_eq!(vf.codes, vc.codes);
        let size =
            |s: &vellum::format::segment::Segment| std::fs::metadata(s.path()).unwrap().len();
        // f16 tokens of 32 dimensions are 64 bytes each; 2-bit codes are 2 + 8.
        assert!(
            size(c) * 3 < size(f),
            "codes-only {} bytes vs {} with tokens",
            size(c),
            size(f)
        );
        // A document reads back decompressed: close to what was stored.
        let doc = sc.collection("c").unwrap().get("d00007").unwrap().unwrap();
        let got = doc.multi("tok").unwrap().tokens.to_f32_vec();
        assert_eq!(got.len(), docs[7].len());
        for (a, b) in got.chunks_exact(DIM).zip(docs[7].chunks_exact(DIM)) {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(dot / na > 0.9, "decompressed token cosine {}", dot / na);
        }
    }
    let qs = queries(&docs, 8, 12);
    let all = PlaidSearch {
        ncells: 1 << 20,
        centroid_threshold: f32::NEG_INFINITY,
        ndocs: 1 << 20,
        full_scores: None,
        decompress: true,
    };
    for q in &qs {
        // The defaults, and exact search (over decompressed tokens), give the very scores of
        // the full field's search on decompressed vectors.
        let dec = PlaidSearch {
            decompress: true,
            ..PlaidSearch::for_k(10)
        };
        assert_eq!(
            scored(&db, SearchRequest::multi("tok", q, 10)),
            scored(&full, SearchRequest::multi("tok", q, 10).with_plaid(dec))
        );
        assert_eq!(
            scored(&db, SearchRequest::multi("tok", q, 10).exact()),
            scored(&full, SearchRequest::multi("tok", q, 10).with_plaid(all))
        );
    }
    // A small batch (below min_rows) is coded with the existing codec: no tokens stored.
    let mut w = db.writer().unwrap();
    let more = corpus(20, 13);
    for (i, d) in more.iter().enumerate() {
        w.add(
            "c",
            Document::new(format!("new{i}")).with_multi("tok", d.clone()),
        )
        .unwrap();
    }
    w.commit().unwrap();
    let first = codec_ids(&db);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0], first[1]);
    {
        let snap = db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        assert!(!c.slots()[1].segment.stores_tokens(0));
    }
    assert_eq!(ids(&db, &more[4][..6 * DIM], 1, false, None), ["new4"]);
    // Deletes, then compaction within the re-clustering threshold: the survivors' codes and
    // residuals are copied byte for byte.
    for i in 0..5 {
        w.delete("c", &format!("d{i:05}")).unwrap();
    }
    w.commit().unwrap();
    let before = coded_rows(&db);
    assert_eq!(before.len(), 615);
    w.compact("c").unwrap();
    assert_eq!(codec_ids(&db), [first[0]]);
    assert_eq!(coded_rows(&db), before);
    {
        let snap = db.snapshot().unwrap();
        assert!(!snap.collection("c").unwrap().slots()[0]
            .segment
            .stores_tokens(0));
    }
    // Growth beyond recluster_percent does not re-cluster a codes-only field at compaction
    // (that would re-quantise decompressed tokens); only an explicit reindex does.
    for (i, d) in corpus(60, 14).iter().enumerate() {
        w.add(
            "c",
            Document::new(format!("more{i}")).with_multi("tok", d.clone()),
        )
        .unwrap();
    }
    w.commit().unwrap();
    w.compact("c").unwrap();
    assert_eq!(codec_ids(&db), [first[0]]);
    // Reindexing re-clusters from the decompressed tokens and stays codes-only.
    w.reindex("c").unwrap();
    assert_ne!(codec_ids(&db), [first[0]]);
    drop(w);
    let report = vellum::verify::verify_database(t_codes.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    let reopened = Database::open(t_codes.path()).unwrap();
    assert_eq!(
        ids(&reopened, &more[4][..6 * DIM], 1, false, None),
        ["new4"]
    );
    let snap = reopened.snapshot().unwrap();
    assert!(!snap.collection("c").unwrap().slots()[0]
        .segment
        .stores_tokens(0));
}

/// Dropping the index of a codes-only field brings its tokens back — the decompressed ones;
/// a damaged code is reported as corruption by a compaction that would copy it.
#[test]
fn codes_only_fields_dropped_or_damaged() {
    let t = tempfile::tempdir().unwrap();
    let docs = corpus(300, 21);
    let params = PlaidParams {
        codes_only: true,
        centroids: Some(16),
        ..Default::default()
    };
    let db = db_with(t.path(), &docs, params);
    let mut w = db.writer().unwrap();
    w.set_plaid("c", "tok", None).unwrap();
    w.reindex("c").unwrap();
    {
        let snap = db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let seg = &c.slots()[0].segment;
        assert!(seg.stores_tokens(0) && seg.plaid(0).is_none());
        let got = c
            .get("d00003")
            .unwrap()
            .unwrap()
            .multi("tok")
            .unwrap()
            .tokens
            .to_f32_vec();
        assert_eq!(got.len(), docs[3].len());
    }
    // Codes only again, then one code damaged on disk (section checksums are read by `verify`,
    // not at open): compaction refuses to copy it.
    w.set_plaid("c", "tok", Some(params)).unwrap();
    w.reindex("c").unwrap();
    w.add(
        "c",
        Document::new("extra").with_multi("tok", docs[0].clone()),
    )
    .unwrap();
    w.commit().unwrap();
    drop(w);
    let (path, at) = {
        let snap = db.snapshot().unwrap();
        let seg = &snap.collection("c").unwrap().slots()[0].segment;
        let e = seg
            .sections()
            .iter()
            .find(|e| e.kind == vellum::format::segment::SectionKind::Plaid)
            .copied()
            .unwrap();
        let v = seg.plaid(0).unwrap().unwrap();
        assert!(matches!(v.codes, vellum::format::plaid::Codes::U16(_)));
        let layout = vellum::format::plaid::layout(
            DIM,
            v.nbits,
            v.k(),
            v.codes.len() as u64,
            v.list_rows.len() as u64,
            v.layout,
        )
        .unwrap();
        (seg.path().to_path_buf(), e.offset as usize + layout[1])
    };
    drop(db);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at..at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let db = Database::open(t.path()).unwrap();
    let mut w = db.writer().unwrap();
    let err = w.compact("c").unwrap_err();
    assert!(matches!(err, vellum::Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("centroid 65535 of 16"), "{err}");
    let report = vellum::verify::verify_database(t.path()).unwrap();
    assert!(!report.is_ok());
}
