//! Screening codes (`format-spec/screen.md`) end to end: which segments get them, compaction adds
//! them to older segments, `stats` reports them, and exact search over them equals the full scan.

use vellum::{
    DType, Database, Document, FieldSpec, Metric, Schema, SearchRequest, Strategy, WriterOptions,
};

use crate::common::Rng;

fn fill(db: &Database, options: WriterOptions, rows: usize, seed: u64) {
    let mut w = db.writer_with(options).unwrap();
    if db.snapshot().unwrap().collection("c").is_err() {
        let schema = Schema::new()
            .with_field(FieldSpec::dense("e", 48, DType::F16, Metric::Cosine))
            .with_field(FieldSpec::dense("l", 5, DType::F32, Metric::L2));
        w.create_collection("c", schema).unwrap();
    }
    let mut rng = Rng(seed);
    for i in 0..rows {
        let doc = Document::new(format!("s{seed}-{i}"))
            .with_dense("e", rng.vec(48))
            .with_dense("l", rng.vec(5));
        w.add("c", doc).unwrap();
    }
    w.commit().unwrap();
}

fn coded_fields(db: &Database) -> Vec<Vec<String>> {
    let snap = db.snapshot().unwrap();
    let stats = snap.collection("c").unwrap().stats().unwrap();
    stats
        .segments
        .iter()
        .map(|s| s.screening_codes.keys().cloned().collect())
        .collect()
}

#[test]
fn segments_at_the_threshold_get_codes_and_compaction_adds_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let options = |min| WriterOptions {
        screen_min_rows: min,
        ..WriterOptions::default()
    };
    fill(&db, options(1024), 1023, 1);
    fill(&db, options(1024), 1024, 2);
    fill(&db, options(u64::MAX), 1500, 3);
    let both = vec!["e".to_string(), "l".to_string()];
    assert_eq!(coded_fields(&db), vec![vec![], both.clone(), vec![]]);
    let report = vellum::verify::verify_database(dir.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");

    // Every single query gives the full scan's hits, scores bit for bit, on both fields.
    let check = |db: &Database| {
        let snap = db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        let mut rng = Rng(99);
        for (field, dim) in [("e", 48), ("l", 5)] {
            for _ in 0..20 {
                let q = rng.vec(dim);
                let run = |s| {
                    c.search_one(&SearchRequest::dense(field, &q, 7).with_strategy(s))
                        .unwrap()
                        .iter()
                        .map(|h| (h.id.clone(), h.score.to_bits()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(run(Strategy::Coded), run(Strategy::Streaming), "{field}");
                assert_eq!(run(Strategy::Auto), run(Strategy::Streaming), "{field}");
            }
        }
    };
    check(&db);

    let mut w = db.writer().unwrap();
    w.compact("c").unwrap();
    drop(w);
    assert_eq!(coded_fields(&db), vec![both]);
    check(&db);
}
