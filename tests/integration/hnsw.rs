//! HNSW on real data (a Fashion-MNIST sample, `tests/fixtures/fashion-mnist`): recall@10 against
//! exact search at the default `ef`, with deletes, across segments with and without graphs; damaged
//! graph sections are errors, never panics or endless searches.

use std::collections::HashSet;
use std::path::Path;

use vellum::hnsw::HnswParams;
use vellum::ingest::array::Array;
use vellum::{DType, Database, Document, FieldSpec, Metric, Schema, SearchRequest};

fn load(name: &str) -> (Vec<f32>, usize) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fashion-mnist")
        .join(name);
    let a = Array::open(&p, None).unwrap();
    let mut v = vec![0f32; a.shape()[0] * a.shape()[1]];
    a.read_f32(0, &mut v).unwrap();
    (v, a.shape()[0])
}

const DIM: usize = 784;

fn params() -> HnswParams {
    HnswParams {
        min_rows: 500,
        ..HnswParams::default()
    }
}

/// A database at `path` with collection "c" whose field `field` ("px") has the HNSW index
/// `params`; rows of `data` are committed in segments ending at each of `ends`.
fn indexed_db(
    path: &Path,
    field: FieldSpec,
    params: HnswParams,
    data: &[f32],
    ends: &[usize],
) -> Database {
    let dim = field.kind.row_elements();
    let db = Database::create(path).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection("c", Schema::new().with_field(field))
        .unwrap();
    w.set_index("c", "px", Some(params)).unwrap();
    let mut start = 0;
    for &end in ends {
        for i in start..end {
            let v = data[i * dim..(i + 1) * dim].to_vec();
            w.add("c", Document::new(format!("img{i}")).with_dense("px", v))
                .unwrap();
        }
        w.commit().unwrap();
        start = end;
    }
    db
}

/// Recall@10 of the default (graph) search against exact search, and no deleted row returned.
fn recall(db: &Database, queries: &[f32], deleted: &HashSet<String>) -> f64 {
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let approx = c
        .search(&SearchRequest::dense_batch("px", queries, 10))
        .unwrap();
    let exact = c
        .search(&SearchRequest::dense_batch("px", queries, 10).exact())
        .unwrap();
    let mut hit = 0;
    for (a, e) in approx.iter().zip(&exact) {
        assert!(
            a.iter().all(|h| !deleted.contains(&h.id)),
            "a deleted row was returned"
        );
        let truth: HashSet<&str> = e.iter().map(|h| h.id.as_str()).collect();
        hit += a.iter().filter(|h| truth.contains(h.id.as_str())).count();
    }
    hit as f64 / (10 * approx.len()) as f64
}

#[test]
fn recall_at_default_ef_with_deletes_and_mixed_segments() {
    let (train, n) = load("train.npy");
    let (queries, _) = load("test.npy");
    let dir = tempfile::tempdir().unwrap();
    // Three segments: 2,000 rows and 900 rows (graphs), 100 rows (below min_rows: exact).
    let field = FieldSpec::dense("px", DIM as u32, DType::F32, Metric::L2);
    let db = indexed_db(dir.path(), field, params(), &train, &[2000, 2900, n]);
    let snap = db.snapshot().unwrap();
    let graphs: Vec<bool> = snap
        .collection("c")
        .unwrap()
        .slots()
        .iter()
        .map(|s| s.segment.graph(0).is_some())
        .collect();
    assert_eq!(graphs, [true, true, false]);
    let r = recall(&db, &queries, &HashSet::new());
    assert!(r >= 0.95, "recall@10 {r} at the default ef");
    // Delete 30% of the rows: recall must hold, and no deleted row may come back.
    let mut w = db.writer().unwrap();
    let mut deleted = HashSet::new();
    for i in (0..n).filter(|i| i % 10 < 3) {
        let id = format!("img{i}");
        assert!(w.delete("c", &id).unwrap());
        deleted.insert(id);
    }
    w.commit().unwrap();
    drop(w);
    let r = recall(&db, &queries, &deleted);
    assert!(r >= 0.95, "recall@10 {r} with 30% deleted");
    // A higher ef is at least as good; the graph sections pass verify.
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let wide = c
        .search(&SearchRequest::dense_batch("px", &queries, 10).with_ef(256))
        .unwrap();
    assert_eq!(wide.len(), 100);
    let report = vellum::verify::verify_database(dir.path()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // Reindex merges everything into one segment with one graph over the live rows.
    let mut w = db.writer().unwrap();
    w.reindex("c").unwrap();
    drop(w);
    let snap = db.snapshot().unwrap();
    let slots = snap.collection("c").unwrap().slots();
    assert_eq!(slots.len(), 1);
    assert!(slots[0].segment.graph(0).is_some());
    let r = recall(&db, &queries, &deleted);
    assert!(r >= 0.95, "recall@10 {r} after reindex");
}

#[test]
fn damaged_graph_sections_are_errors_not_panics() {
    let (train, _) = load("train.npy");
    let (queries, _) = load("test.npy");
    let dir = tempfile::tempdir().unwrap();
    let field = FieldSpec::dense("px", DIM as u32, DType::F32, Metric::L2);
    let params = HnswParams {
        min_rows: 100,
        m: 8,
        ef_construction: 32,
        ..HnswParams::default()
    };
    let db = indexed_db(&dir.path().join("db"), field, params, &train, &[600]);
    let snap = db.snapshot().unwrap();
    let seg = snap.collection("c").unwrap().slots()[0].segment.clone();
    let section = *seg
        .sections()
        .iter()
        .find(|e| e.kind.name() == "hnsw graph")
        .unwrap();
    let path = seg.path().to_path_buf();
    drop(snap);
    let original = std::fs::read(&path).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for iter in 0..60 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut bytes = original.clone();
        // Early iterations hit the header and layer table, later ones anywhere in the section.
        let span = if iter < 30 {
            64 + 32 * 4
        } else {
            section.length as usize
        };
        let at = section.offset as usize + (x as usize % span);
        bytes[at] ^= 1 << ((x >> 60) % 8);
        if iter % 2 == 0 {
            bytes[at] = 0xff;
        }
        std::fs::write(&path, &bytes).unwrap();
        // Opening may fail (header checks); searching may fail; neither may panic or hang.
        if let Ok(snap) = Database::open(dir.path().join("db")).and_then(|d| d.snapshot()) {
            let c = snap.collection("c").unwrap();
            let _ = c.search(&SearchRequest::dense_batch("px", &queries[..10 * DIM], 10));
        }
        let report = vellum::verify::verify_database(&dir.path().join("db")).unwrap();
        if bytes != original {
            assert!(
                !report.is_ok(),
                "iteration {iter}: a flipped graph byte at {at} went unnoticed by verify"
            );
        }
    }
    std::fs::write(&path, &original).unwrap();
}

#[test]
fn recall_with_navigation_codes_for_every_metric_and_dtype() {
    // Small enough for debug builds (the graph builder runs unoptimised there).
    let mut rng = crate::common::Rng(11);
    let (n, dim) = (1500, 24);
    let data: Vec<f32> = rng.vec(n * dim);
    let queries: Vec<f32> = rng.vec(40 * dim);
    for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
        for dtype in [DType::F32, DType::F16] {
            let dir = tempfile::tempdir().unwrap();
            let p = HnswParams {
                m: 12,
                ef_construction: 100,
                min_rows: 500,
                ..HnswParams::default()
            };
            let field = FieldSpec::dense("px", dim as u32, dtype, metric);
            let db = indexed_db(dir.path(), field, p, &data, &[n]);
            let snap = db.snapshot().unwrap();
            let c = snap.collection("c").unwrap();
            assert!(c.slots()[0].segment.graph(0).is_some());
            let approx = c
                .search(&SearchRequest::dense_batch("px", &queries, 10))
                .unwrap();
            let exact = c
                .search(&SearchRequest::dense_batch("px", &queries, 10).exact())
                .unwrap();
            let mut hit = 0;
            for (a, e) in approx.iter().zip(&exact) {
                let truth: HashSet<&str> = e.iter().map(|h| h.id.as_str()).collect();
                hit += a.iter().filter(|h| truth.contains(h.id.as_str())).count();
                // Returned scores are exact scores, not navigation scores.
                for h in a {
                    if let Some(x) = e.iter().find(|x| x.id == h.id) {
                        assert_eq!(x.score, h.score);
                    }
                }
            }
            let recall = hit as f64 / (10 * approx.len()) as f64;
            assert!(recall >= 0.95, "{metric:?} {dtype:?}: recall@10 {recall}");
        }
    }
}
