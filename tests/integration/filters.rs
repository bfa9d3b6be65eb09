//! Metadata filters against the reference evaluation (`Filter::matches_json` on each document's
//! metadata): the per-segment columns select the same rows; filtered exact search (dense, every
//! strategy, and MaxSim) equals the unfiltered ranking restricted to the matching live documents;
//! HNSW and PLAID with filters of every selectivity keep recall and return min(k, matches) hits.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{json, Value};
use vellum::filter::{matching_rows, Filter};
use vellum::hnsw::HnswParams;
use vellum::{
    DType, Database, Document, FieldSpec, Metric, Schema, SearchRequest, Strategy, WriterOptions,
};

use crate::common::Rng;

const LANGS: [&str; 3] = ["en", "de", "fr"];

/// Metadata with missing keys, arrays, nesting, floats, booleans and nulls.
fn metadata(rng: &mut Rng) -> Value {
    let mut m = serde_json::Map::new();
    if rng.below(7) != 0 {
        m.insert("lang".into(), json!(LANGS[rng.below(3) as usize]));
    }
    if rng.below(5) != 0 {
        let y = 1990 + rng.below(30) as i64;
        m.insert(
            "year".into(),
            if rng.below(4) == 0 {
                json!(y as f64 + 0.5)
            } else {
                json!(y)
            },
        );
    }
    let tags: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|_| rng.below(2) == 0)
        .collect();
    if !tags.is_empty() {
        m.insert("tags".into(), json!(tags));
    }
    if rng.below(3) != 0 {
        let site = ["x", "y"][rng.below(2) as usize];
        m.insert("src".into(), json!({"site": site, "n": rng.below(4)}));
    }
    match rng.below(4) {
        0 => {}
        1 => {
            m.insert("flag".into(), Value::Null);
        }
        b => {
            m.insert("flag".into(), json!(b == 2));
        }
    }
    Value::Object(m)
}

/// A random filter expression (JSON text) of the documented forms.
fn filter_text(rng: &mut Rng, depth: u32) -> String {
    let leaf = |rng: &mut Rng| -> String {
        match rng.below(9) {
            0 => format!(r#"{{"lang": "{}"}}"#, LANGS[rng.below(3) as usize]),
            1 => format!(
                r#"{{"year": {{"$gte": {}, "$lt": {}}}}}"#,
                1990 + rng.below(30),
                2000 + rng.below(25)
            ),
            2 => format!(r#"{{"year": {{"$gt": {}.5}}}}"#, 1990 + rng.below(30)),
            3 => r#"{"tags": {"$in": ["a", "c"]}}"#.into(),
            4 => format!(
                r#"{{"tags": {{"$nin": ["{}"]}}}}"#,
                ["a", "b"][rng.below(2) as usize]
            ),
            5 => r#"{"src.site": "y", "src.n": {"$lte": 1}}"#.into(),
            6 => format!(r#"{{"flag": {{"$exists": {}}}}}"#, rng.below(2) == 0),
            7 => [
                r#"{"flag": null}"#,
                r#"{"flag": true}"#,
                r#"{"lang": {"$ne": "en"}}"#,
            ][rng.below(3) as usize]
                .into(),
            _ => "{}".into(),
        }
    };
    if depth == 0 || rng.below(3) == 0 {
        return leaf(rng);
    }
    match rng.below(3) {
        0 => format!(
            r#"{{"$and": [{}, {}]}}"#,
            filter_text(rng, depth - 1),
            filter_text(rng, depth - 1)
        ),
        1 => format!(
            r#"{{"$or": [{}, {}]}}"#,
            filter_text(rng, depth - 1),
            filter_text(rng, depth - 1)
        ),
        _ => format!(r#"{{"$not": {}}}"#, filter_text(rng, depth - 1)),
    }
}

struct Case {
    db: Database,
    _dir: tempfile::TempDir,
}

/// Collection "c" with dense field "d" and multi-vector field "m", in segments of the given
/// sizes, every `delete_every`-th document deleted.
fn build(metric: Metric, segments: &[usize], delete_every: usize, seed: u64) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let mut w = db
        .writer_with(WriterOptions {
            screen_min_rows: 2,
            ..WriterOptions::default()
        })
        .unwrap();
    let schema = Schema::new()
        .with_field(FieldSpec::dense("d", 8, DType::F32, metric))
        .with_field(FieldSpec::multi("m", 4, DType::F16, metric));
    w.create_collection("c", schema).unwrap();
    let mut rng = Rng(seed | 1);
    let mut n = 0;
    for &size in segments {
        for _ in 0..size {
            let tokens = 1 + rng.below(4) as usize;
            w.add(
                "c",
                Document::new(format!("doc{n}"))
                    .with_dense("d", rng.vec(8))
                    .with_multi("m", rng.vec(4 * tokens))
                    .with_metadata(metadata(&mut rng)),
            )
            .unwrap();
            n += 1;
        }
        w.commit().unwrap();
    }
    if delete_every > 0 {
        for i in (0..n).step_by(delete_every) {
            w.delete("c", &format!("doc{i}")).unwrap();
        }
        w.commit().unwrap();
    }
    Case { db, _dir: dir }
}

/// The ids of live documents matching `f`, by the reference evaluation.
fn reference_matches(db: &Database, f: &Filter) -> HashSet<String> {
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let mut out = HashSet::new();
    c.for_each_live(|d| {
        if f.matches_json(&d.metadata_json()?) {
            out.insert(d.id()?.to_string());
        }
        Ok(())
    })
    .unwrap();
    out
}

/// `(id, score)` lists.
fn pairs(hits: &[vellum::Hit]) -> Vec<(String, f32)> {
    hits.iter().map(|h| (h.id.clone(), h.score)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn filtered_exact_search_equals_the_restricted_ranking(
        seed in 1u64..u64::MAX,
        metric in 0u8..3,
        segments in proptest::collection::vec(1usize..40, 1..4),
        delete_every in prop_oneof![Just(0usize), 2usize..6],
    ) {
        let metric = [Metric::Ip, Metric::Cosine, Metric::L2][metric as usize];
        let case = build(metric, &segments, delete_every, seed);
        let snap = case.db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let total: usize = segments.iter().sum();
        let mut rng = Rng(seed ^ 0x5eed);
        for _ in 0..4 {
            let text = filter_text(&mut rng, 2);
            let f = Filter::parse(&text).unwrap();
            let matches = reference_matches(&case.db, &f);
            // The columns select exactly the rows the reference evaluation selects.
            for slot in c.slots() {
                let rows = matching_rows(&slot.segment, &f).unwrap();
                for row in 0..slot.segment.rows() {
                    let meta: Value = serde_json::from_str(slot.segment.metadata(row).unwrap()).unwrap();
                    prop_assert_eq!(rows.contains(row), f.matches_json(&meta), "{} row {}", text, row);
                }
            }
            let k = 1 + rng.below(12) as usize;
            let qd = rng.vec(8);
            let qtokens = 1 + rng.below(3) as usize;
            let qm = rng.vec(4 * qtokens);
            let all_d = c.search_one(&SearchRequest::dense("d", &qd, total).with_strategy(Strategy::Streaming)).unwrap();
            let want_d: Vec<_> = pairs(&all_d).into_iter().filter(|(id, _)| matches.contains(id)).take(k).collect();
            for strategy in [Strategy::Auto, Strategy::Streaming, Strategy::Coded, Strategy::Blocked] {
                let got = c.search_one(&SearchRequest::dense("d", &qd, k).with_strategy(strategy).with_filter(&f)).unwrap();
                if strategy == Strategy::Blocked {
                    // f32 products: scores within rounding, same ids.
                    prop_assert_eq!(got.iter().map(|h| &h.id).collect::<Vec<_>>(), want_d.iter().map(|p| &p.0).collect::<Vec<_>>(), "{}", text);
                } else {
                    prop_assert_eq!(&pairs(&got), &want_d, "{} {:?}", text, strategy);
                }
            }
            let all_m = c.search_one(&SearchRequest::multi("m", &qm, total)).unwrap();
            let want_m: Vec<_> = pairs(&all_m).into_iter().filter(|(id, _)| matches.contains(id)).take(k).collect();
            let got_m = c.search_one(&SearchRequest::multi("m", &qm, k).with_filter(&f)).unwrap();
            prop_assert_eq!(pairs(&got_m), want_m, "{}", text);
        }
    }
}

/// Fashion-MNIST rows with `bucket = i % 1000`: `{"bucket": {"$lt": b}}` selects b / 1000 of them.
fn fashion_db(dir: &std::path::Path) -> (Database, Vec<f32>, usize) {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fashion-mnist/train.npy");
    let a = vellum::ingest::array::Array::open(&p, None).unwrap();
    let (n, dim) = (a.shape()[0], a.shape()[1]);
    let mut data = vec![0f32; n * dim];
    a.read_f32(0, &mut data).unwrap();
    let db = Database::create(dir).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::dense("px", dim as u32, DType::F32, Metric::L2)),
    )
    .unwrap();
    w.set_index(
        "c",
        "px",
        Some(HnswParams {
            min_rows: 500,
            ..HnswParams::default()
        }),
    )
    .unwrap();
    for i in 0..n {
        w.add(
            "c",
            Document::new(format!("img{i}"))
                .with_dense("px", data[i * dim..(i + 1) * dim].to_vec())
                .with_metadata(json!({"bucket": (i * 7919) % 1000})),
        )
        .unwrap();
    }
    w.commit().unwrap();
    (db, data, dim)
}

#[test]
fn filtered_hnsw_keeps_recall_and_returns_min_k_matches_at_every_selectivity() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _, dim) = fashion_db(dir.path());
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fashion-mnist/test.npy");
    let a = vellum::ingest::array::Array::open(&p, None).unwrap();
    let nq = a.shape()[0].min(20);
    let mut queries = vec![0f32; a.shape()[0] * dim];
    a.read_f32(0, &mut queries).unwrap();
    queries.truncate(nq * dim);
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    assert!(c.slots()[0].segment.has_graph(0));
    // 50 %, 10 %, 1 %, 0.1 % of 3,000 rows; ef 10 makes the 50 % filter traverse the graph.
    for (bucket, ef) in [(500, 10), (500, 64), (100, 10), (10, 64), (1, 64)] {
        let f = Filter::parse(&format!(r#"{{"bucket": {{"$lt": {bucket}}}}}"#)).unwrap();
        let matches = reference_matches(&db, &f);
        let approx = c
            .search(
                &SearchRequest::dense_batch("px", &queries, 10)
                    .with_ef(ef)
                    .with_filter(&f),
            )
            .unwrap();
        let exact = c
            .search(
                &SearchRequest::dense_batch("px", &queries, 10)
                    .exact()
                    .with_filter(&f),
            )
            .unwrap();
        let mut hit = 0;
        for (a, e) in approx.iter().zip(&exact) {
            assert_eq!(a.len(), 10.min(matches.len()), "bucket < {bucket}");
            assert!(a.iter().all(|h| matches.contains(&h.id)));
            let truth: HashSet<&str> = e.iter().map(|h| h.id.as_str()).collect();
            hit += a.iter().filter(|h| truth.contains(h.id.as_str())).count();
        }
        let recall = hit as f64 / exact.iter().map(Vec::len).sum::<usize>() as f64;
        assert!(
            recall >= 0.95,
            "bucket < {bucket}, ef {ef}: recall {recall}"
        );
    }
}

#[test]
fn filters_apply_to_plaid_search_and_to_shard_sets() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::multi("m", 8, DType::F32, Metric::Cosine)),
    )
    .unwrap();
    w.set_plaid(
        "c",
        "m",
        Some(vellum::meta::PlaidParams {
            min_rows: 64,
            ..Default::default()
        }),
    )
    .unwrap();
    let mut rng = Rng(7);
    for i in 0..600 {
        let tokens = 3 + rng.below(6) as usize;
        w.add(
            "c",
            Document::new(format!("d{i}"))
                .with_multi("m", rng.vec(8 * tokens))
                .with_metadata(json!({"part": i % 100})),
        )
        .unwrap();
    }
    w.commit().unwrap();
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    assert!(c.slots()[0].segment.has_plaid(0));
    for part in [50, 10, 1] {
        let f = Filter::parse(&format!(r#"{{"part": {{"$lt": {part}}}}}"#)).unwrap();
        let matches = reference_matches(&db, &f);
        for _ in 0..5 {
            let q = rng.vec(8 * 4);
            let got = c
                .search_one(&SearchRequest::multi("m", &q, 10).with_filter(&f))
                .unwrap();
            let exact = c
                .search_one(&SearchRequest::multi("m", &q, 10).exact().with_filter(&f))
                .unwrap();
            assert_eq!(got.len(), 10.min(matches.len()));
            assert!(got.iter().all(|h| matches.contains(&h.id)));
            if part <= 10 {
                // Few matching rows: PLAID scores all of them, as exact search does.
                assert_eq!(
                    got.iter().map(|h| &h.id).collect::<Vec<_>>(),
                    exact.iter().map(|h| &h.id).collect::<Vec<_>>()
                );
            }
        }
    }
    // A shard set passes the filter to every shard.
    let shards = vellum::ShardSet::open(&[dir.path()]).unwrap();
    let f = Filter::parse(r#"{"part": 3}"#).unwrap();
    let q = rng.vec(8 * 2);
    let hits = shards
        .search("c", &SearchRequest::multi("m", &q, 10).with_filter(&f))
        .unwrap();
    assert_eq!(hits[0].len(), 6);
    assert!(hits[0].iter().all(|h| h.id.ends_with("03") || h.id == "d3"));
}

#[test]
fn a_bad_filter_is_an_invalid_query_naming_where() {
    let err = Filter::parse(r#"{"$and": [{"year": {"$gte": "x"}}]}"#).unwrap_err();
    assert!(matches!(err, vellum::Error::InvalidQuery(_)));
    assert!(
        err.to_string().contains("filter at $.$and[0].year.$gte"),
        "{err}"
    );
}

#[test]
fn later_snapshots_reuse_open_segments_and_their_filter_columns() {
    let case = build(Metric::Ip, &[30], 0, 3);
    let f = Filter::parse(r#"{"lang": "en"}"#).unwrap();
    let s1 = case.db.snapshot().unwrap();
    let c1 = s1.collection("c").unwrap();
    let q = [1.0f32; 8];
    let before = c1
        .search_one(&SearchRequest::dense("d", &q, 5).with_filter(&f))
        .unwrap();
    let mut w = case.db.writer().unwrap();
    w.add(
        "c",
        Document::new("late")
            .with_dense("d", vec![0.5; 8])
            .with_multi("m", vec![0.5; 4])
            .with_metadata(json!({"lang": "de"})),
    )
    .unwrap();
    w.commit().unwrap();
    let s2 = case.db.snapshot().unwrap();
    let c2 = s2.collection("c").unwrap();
    assert_eq!(c2.slots().len(), 2);
    assert!(std::sync::Arc::ptr_eq(
        &c1.slots()[0].segment,
        &c2.slots()[0].segment
    ));
    let after = c2
        .search_one(&SearchRequest::dense("d", &q, 5).with_filter(&f))
        .unwrap();
    assert_eq!(pairs(&before), pairs(&after));
}
