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
    let (path, at, section) = {
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
        (
            seg.path().to_path_buf(),
            e.offset as usize + layout[1],
            e.offset,
        )
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
    // A search through every cell reaches the damaged code: the error names the section's
    // offset in the file.
    let snap = db.snapshot().unwrap();
    let every_cell = PlaidSearch {
        ncells: 16,
        centroid_threshold: f32::NEG_INFINITY,
        ..PlaidSearch::for_k(10)
    };
    let req = SearchRequest::multi("tok", &docs[0][..6 * DIM], 10).with_plaid(every_cell);
    match snap.collection("c").unwrap().search(&req) {
        Err(vellum::Error::Corrupt { offset, .. }) => assert_eq!(offset, section),
        other => panic!("{other:?}"),
    }
    let report = vellum::verify::verify_database(t.path()).unwrap();
    assert!(!report.is_ok());
}

/// `(codec_id, trained_rows)` of each segment's PLAID section (`None`: no section).
fn codecs_of(db: &Database) -> Vec<Option<(u64, u64)>> {
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    c.slots()
        .iter()
        .map(|s| {
            s.segment
                .plaid(0)
                .map(|v| v.map(|v| (v.codec_id, v.trained_rows)).unwrap())
        })
        .collect()
}

fn add_docs(w: &mut vellum::Writer, prefix: &str, docs: &[Vec<f32>]) {
    for (i, d) in docs.iter().enumerate() {
        w.add(
            "c",
            Document::new(format!("{prefix}{i}")).with_multi("tok", d.clone()),
        )
        .unwrap();
    }
    w.commit().unwrap();
}

/// A codec trained by a segment written after the index was declared on a collection that
/// already had documents accounts for that segment's rows only, so compaction re-clusters over
/// all of them instead of re-coding 1,000 documents with a codec trained on 300. Declarations
/// that change only parameters not shaping the codec keep it; a new seed trains a new one.
#[test]
fn a_codec_accounts_for_the_rows_it_was_trained_from() {
    let t = tempfile::tempdir().unwrap();
    let db = Database::create(t.path()).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::parse(&format!("tok:multi:{DIM}:f16:ip")).unwrap()),
    )
    .unwrap();
    add_docs(&mut w, "a", &corpus(1000, 11));
    let params = PlaidParams {
        min_rows: 10,
        ..Default::default()
    };
    w.set_plaid("c", "tok", Some(params)).unwrap();
    add_docs(&mut w, "b", &corpus(300, 12));
    let before = codecs_of(&db);
    assert_eq!(before.len(), 2);
    assert_eq!(before[0], None, "written before the declaration");
    let (small_codec, trained) = before[1].unwrap();
    assert_eq!(trained, 300);
    w.compact("c").unwrap();
    let after = codecs_of(&db);
    let (codec, trained) = after[0].unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(trained, 1300);
    assert_ne!(codec, small_codec, "re-clustered over every row");

    // Only min_rows and recluster_percent change: the codec stays.
    w.set_plaid(
        "c",
        "tok",
        Some(PlaidParams {
            min_rows: 20,
            recluster_percent: 10,
            ..params
        }),
    )
    .unwrap();
    add_docs(&mut w, "c", &corpus(30, 13));
    assert_eq!(codecs_of(&db)[1].unwrap().0, codec);
    // A new seed shapes a new codec, trained by the next segment.
    w.set_plaid(
        "c",
        "tok",
        Some(PlaidParams {
            min_rows: 20,
            seed: 7,
            ..params
        }),
    )
    .unwrap();
    add_docs(&mut w, "d", &corpus(30, 14));
    let last = codecs_of(&db)[2].unwrap();
    assert_ne!(last.0, codec);
    assert_eq!(last.1, 30);
    let report = vellum::verify::verify_database(t.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

/// The smallest segment a codec can be trained on (`min_rows` documents of one token each, as
/// many centroids as sampled tokens): the residual buckets come from held-out documents, so
/// they are not all zero and decompression restores more than the centroids.
#[test]
fn a_codec_trained_on_a_tiny_segment_keeps_residuals() {
    let mut rng = SplitMix64::new(21);
    let tokens: Vec<f32> = (0..256).flat_map(|_| unit(&mut rng)).collect();
    let ranges: Vec<_> = (0..256).map(|r| r..r + 1).collect();
    let codec =
        vellum::plaid::build::train_codec(&tokens, &ranges, DIM, &PlaidParams::default(), 256)
            .unwrap();
    assert!(codec.centroids.len() / DIM < 256, "some documents held out");
    let spread = codec.weights[codec.weights.len() - 1] - codec.weights[0];
    assert!(spread > 0.05, "weights {:?}", codec.weights);
    // No tokens at all: an error, not a panic.
    let empty: Vec<_> = (0..300).map(|_| 0..0).collect();
    let err = vellum::plaid::build::train_codec(&[], &empty, DIM, &PlaidParams::default(), 300)
        .unwrap_err();
    assert!(err.to_string().contains("no token"), "{err}");
}

/// Stage 2 scores a query token that none of a row's surviving centroids scores as ColBERT's
/// `filter_pids.cpp` does (−9999): a row with no surviving centroid ranks below one whose
/// surviving centroids sum to a negative score.
#[test]
fn stage_two_ranks_rows_without_surviving_centroids_last() {
    use vellum::format::plaid::{PlaidCodec, PlaidView};
    let d = 8;
    let e = |i: usize| -> Vec<f32> { (0..d).map(|j| if j == i { 1.0 } else { 0.0 }).collect() };
    let s = 1.0 / 3f32.sqrt();
    // Centroid 0 scores (0.577, −0.577, −0.577) against the three query tokens: alive at
    // t_cs 0.4, summing to −0.577. Centroid 1 scores 0 everywhere: pruned.
    let c0 = vec![s, 0.0, -s, -s, 0.0, 0.0, 0.0, 0.0];
    let codec = PlaidCodec {
        dim: d,
        nbits: 2,
        centroids: [c0.clone(), e(4)].concat(),
        cutoffs: vec![-0.1, 0.0, 0.1],
        weights: vec![-0.15, -0.05, 0.05, 0.15],
        trained_rows: 2,
        half_centroids: false,
    };
    // Row 0: two tokens at centroid 1 (no surviving centroid); row 1: two at centroid 0.
    let tokens = [e(4), e(4), c0.clone(), c0].concat();
    let ranges = [0..2, 2..4];
    let section = vellum::plaid::build::encode_segment(&codec, &tokens, &ranges).encode();
    let mut buf = vec![0u64; section.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..section.len()].copy_from_slice(&section);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&buf)[..section.len()];
    let path = std::path::Path::new("test.vseg");
    let view = PlaidView::open(bytes, path, 0, 2, 4, d).unwrap();
    let query = [e(0), e(2), e(3)].concat();
    let params = PlaidSearch {
        ncells: 1,
        centroid_threshold: 0.4,
        ndocs: 1,
        full_scores: None,
        decompress: false,
    };
    let rows = vellum::plaid::search::candidates(
        &view,
        path,
        &query,
        &params,
        1,
        &|r| Ok(ranges[r as usize].clone()),
        &|_| true,
    )
    .unwrap();
    assert_eq!(rows, [1]);
}

/// A zero query token on a cosine field scores 0 against every document token (as a zero
/// document token does): exact MaxSim ranks as without it, and PLAID answers.
#[test]
fn a_zero_query_token_on_a_cosine_field_scores_zero() {
    let t = tempfile::tempdir().unwrap();
    let db = Database::create(t.path()).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::parse(&format!("tok:multi:{DIM}:f32:cosine")).unwrap()),
    )
    .unwrap();
    let docs = corpus(400, 15);
    add_docs(&mut w, "d", &docs);
    w.set_plaid(
        "c",
        "tok",
        Some(PlaidParams {
            min_rows: 10,
            ..Default::default()
        }),
    )
    .unwrap();
    w.reindex("c").unwrap();
    let q = &queries(&docs, 1, 16)[0];
    let mut with_zero = q.clone();
    with_zero.extend(std::iter::repeat_n(0.0, DIM));
    assert_eq!(
        ids(&db, q, 10, true, None),
        ids(&db, &with_zero, 10, true, None)
    );
    // PLAID: the zero token probes a cell of its own (every centroid ties), so the candidates
    // may grow; the search must succeed (it failed on a NaN score before).
    assert_eq!(ids(&db, &with_zero, 10, false, None).len(), 10);
}

/// A build whose packed residuals exceed `WriterOptions::index_memory_bytes` puts them in an
/// unnamed temporary file in the collection's directory and writes the same segment bytes as a
/// build in memory: through `reindex` (a trained codec), a commit encoding new rows with the
/// existing codec (a codes-only field), and a compaction. No file is left behind.
#[test]
fn index_builds_over_their_memory_budget_write_the_same_segments() {
    let docs = corpus(400, 21);
    let more = corpus(150, 22);
    let build = |dir: &std::path::Path, budget: usize, codes_only: bool| {
        let db = Database::create(dir).unwrap();
        let mut w = db
            .writer_with(vellum::WriterOptions {
                index_memory_bytes: budget,
                ..Default::default()
            })
            .unwrap();
        w.create_collection(
            "c",
            Schema::new().with_field(FieldSpec::parse(&format!("tok:multi:{DIM}:f16:ip")).unwrap()),
        )
        .unwrap();
        add_docs(&mut w, "a", &docs);
        let params = PlaidParams {
            codes_only,
            ..Default::default()
        };
        w.set_plaid("c", "tok", Some(params)).unwrap();
        w.reindex("c").unwrap();
        add_docs(&mut w, "b", &more);
        let mut segments = vec![segment_bytes(dir)];
        w.compact("c").unwrap();
        segments.push(segment_bytes(dir));
        segments
    };
    for codes_only in [false, true] {
        let (mem, spilled) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let in_memory = build(mem.path(), usize::MAX, codes_only);
        let files = vellum::storage::spill_files_created();
        let over_budget = build(spilled.path(), 0, codes_only);
        // reindex, the commit (codes-only: encoded with the codec) and compact spilled.
        let spills = vellum::storage::spill_files_created() - files;
        assert!(spills >= 2 + u64::from(codes_only), "{spills} spills");
        assert!(in_memory[0].len() == 2 && in_memory[1].len() == 1);
        assert!(
            in_memory == over_budget,
            "codes only {codes_only}: segment bytes differ"
        );
        let names = |d: &std::path::Path| {
            let mut n: Vec<String> = std::fs::read_dir(d.join("c"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(mem.path()), names(spilled.path()));
    }
}

/// The live segment files of collection `c`, by name, with their bytes.
fn segment_bytes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let db = Database::open(dir).unwrap();
    let snap = db.snapshot().unwrap();
    let mut out: Vec<(String, Vec<u8>)> = snap
        .collection("c")
        .unwrap()
        .slots()
        .iter()
        .map(|s| {
            let p = s.segment.path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}
