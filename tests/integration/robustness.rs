//! Faults found by replaying peers' bug reports (FAISS, hnswlib, trec_eval, ...): one test per
//! kind of fault, with expected values from first principles or the reference tool's rule.

use std::path::Path;

use vellum::hnsw::HnswParams;
use vellum::{
    DType, Database, Document, Error, FieldSpec, Metric, Schema, SearchRequest, ShardSet,
};

fn db_with(path: &Path, schema: Schema, docs: Vec<Document>) -> Database {
    let db = Database::create(path).unwrap();
    // Every segment gets screening codes, so the coded paths are checked too.
    let mut w = db
        .writer_with(vellum::WriterOptions {
            screen_min_rows: 1,
            ..Default::default()
        })
        .unwrap();
    w.create_collection("c", schema).unwrap();
    for d in docs {
        w.add("c", d).unwrap();
    }
    w.commit().unwrap();
    db
}

fn ids(hits: &[vellum::Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

/// hnswlib and FAISS search with max(ef, k): a search returns min(k, live rows) hits whatever ef
/// is, and ef = 0 is refused rather than answered with nothing.
#[test]
fn hnsw_returns_k_hits_whatever_ef() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::new().with_field(FieldSpec::dense("e", 8, DType::F32, Metric::L2));
    let docs = (0..10)
        .map(|i| Document::new(format!("d{i}")).with_dense("e", vec![i as f32; 8]))
        .collect();
    let db = db_with(dir.path(), schema, docs);
    let mut w = db.writer().unwrap();
    let params = HnswParams::parse("m=16,min_rows=1,ef=4").unwrap();
    w.set_index("c", "e", Some(params)).unwrap();
    w.reindex("c").unwrap();
    drop(w);
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    assert!(c.slots()[0].segment.has_graph(0));
    let q = [3.2f32; 8];
    for ef in [None, Some(1), Some(2), Some(4)] {
        let mut req = SearchRequest::dense("e", &q, 10);
        req.ef = ef;
        let hits = c.search_one(&req).unwrap();
        assert_eq!(hits.len(), 10, "ef {ef:?}");
        assert_eq!(hits[0].id, "d3");
    }
    // k beyond the live rows: every live row.
    let hits = c
        .search_one(&SearchRequest::dense("e", &q, 50).with_ef(2))
        .unwrap();
    assert_eq!(hits.len(), 10);
    let err = c
        .search(&SearchRequest::dense("e", &q, 10).with_ef(0))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
}

/// A finite input gives a finite score or a clear error at the door; nothing accepted can be
/// stored as infinity (which `verify` would call corruption).
#[test]
fn values_that_would_overflow_are_refused_at_the_door() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::new()
        .with_field(FieldSpec::dense("ip", 3, DType::F32, Metric::Ip))
        .with_field(FieldSpec::dense("h", 2, DType::F16, Metric::L2))
        .with_field(FieldSpec::multi("m", 2, DType::Bf16, Metric::Ip))
        .with_field(FieldSpec::tensor("t", &[2], DType::F16));
    let db = db_with(&dir.path().join("db"), schema, Vec::new());
    let doc = |ip: Vec<f32>, h: Vec<f32>, m: Vec<f32>, t: Vec<f32>| {
        Document::new("x")
            .with_dense("ip", ip)
            .with_dense("h", h)
            .with_multi("m", m)
            .with_tensor("t", t)
    };
    let ok = || {
        doc(
            vec![1.0, 0.0, 0.0],
            vec![1.0, 2.0],
            vec![1.0, 0.0],
            vec![1.0, 2.0],
        )
    };
    let mut w = db.writer().unwrap();
    let cases = [
        (
            doc(
                vec![3e38, 3e38, 0.0],
                vec![1.0, 2.0],
                vec![1.0, 0.0],
                vec![1.0, 2.0],
            ),
            "has norm",
        ),
        (
            doc(
                vec![1.0, 0.0, 0.0],
                vec![1e6, 0.0],
                vec![1.0, 0.0],
                vec![1.0, 2.0],
            ),
            "range of the field's element type f16",
        ),
        (
            doc(
                vec![1.0, 0.0, 0.0],
                vec![1.0, 2.0],
                vec![3.3999e38, 0.0],
                vec![1.0, 2.0],
            ),
            "element type bf16",
        ),
        (
            doc(
                vec![1.0, 0.0, 0.0],
                vec![1.0, 2.0],
                vec![1.0, 0.0],
                vec![0.0, 70000.0],
            ),
            "element type f16",
        ),
    ];
    for (d, expected) in cases {
        let err = w.add("c", d).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        assert!(err.to_string().contains(expected), "{expected}: {err}");
    }
    w.add("c", ok()).unwrap();
    w.commit().unwrap();
    drop(w);
    assert!(vellum::verify::verify_database(&dir.path().join("db"))
        .unwrap()
        .is_ok());
    // Queries beyond the norm limit are refused; within it every score is finite.
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let err = c
        .search(&SearchRequest::dense("ip", &[3e38, 3e38, 0.0], 1))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidQuery(_)), "{err}");
    let big = (vellum::dtype::MAX_VECTOR_NORM * 0.99) as f32;
    let hits = c
        .search_one(&SearchRequest::dense("ip", &[big, 0.0, 0.0], 1))
        .unwrap();
    assert!(hits[0].score.is_finite());
    // A query value the field's element type cannot hold (f16 above 65504) is refused by name,
    // alone or in a batch, on every batch path, instead of being searched as infinity.
    for strategy in [
        vellum::Strategy::Auto,
        vellum::Strategy::Coded,
        vellum::Strategy::Screened,
        vellum::Strategy::Streaming,
    ] {
        for (q, which) in [
            (&[70000.0f32, 0.0][..], "query 0"),
            (&[0.0, 1.0, 1.0, -7e4][..], "query 1"),
        ] {
            let req = SearchRequest::dense_batch("h", q, 1).with_strategy(strategy);
            let err = c.search(&req).unwrap_err();
            assert!(matches!(err, Error::InvalidQuery(_)), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(which) && msg.contains("element type f16"),
                "{msg}"
            );
        }
    }
    let many_tokens = vec![big / 2.0; 2 * 4];
    let err = c
        .search(&SearchRequest::multi("m", &many_tokens, 1))
        .unwrap_err();
    assert!(err.to_string().contains("norms sum to"), "{err}");
}

/// Six identical vectors, k = 2: the top-2 set is the same for one database, for the corpus split
/// into two shards searched in either order, after upserts that move documents between segments,
/// through an HNSW index, and for MaxSim — trec_eval's rule: equal scores rank by document id,
/// descending, so the top-2 are "f" and "e".
#[test]
fn ties_at_the_cut_off_do_not_depend_on_layout() {
    let dir = tempfile::tempdir().unwrap();
    let schema = || {
        Schema::new()
            .with_field(FieldSpec::dense("e", 4, DType::F32, Metric::Ip))
            .with_field(FieldSpec::multi("m", 4, DType::F32, Metric::Ip))
    };
    let doc = |id: &str| {
        Document::new(id)
            .with_dense("e", vec![0.5, 0.5, 0.5, 0.5])
            .with_multi("m", vec![0.5, 0.5, 0.5, 0.5, 0.1, 0.0, 0.0, 0.0])
    };
    let names = ["c", "a", "f", "b", "e", "d"];
    let one = db_with(
        &dir.path().join("one"),
        schema(),
        names.iter().map(|n| doc(n)).collect(),
    );
    let s0 = dir.path().join("s0");
    let s1 = dir.path().join("s1");
    db_with(&s0, schema(), names[..3].iter().map(|n| doc(n)).collect());
    db_with(&s1, schema(), names[3..].iter().map(|n| doc(n)).collect());
    let q = [1.0f32, 0.0, 0.0, 0.0];
    let want = ["f", "e"];

    let snap = one.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    for strategy in [
        vellum::Strategy::Streaming,
        vellum::Strategy::Blocked,
        vellum::Strategy::Screened,
        vellum::Strategy::Coded,
    ] {
        let hits = c
            .search_one(&SearchRequest::dense("e", &q, 2).with_strategy(strategy))
            .unwrap();
        assert_eq!(ids(&hits), want, "{strategy:?}");
        // A batch too (the blocked and screened paths take batches).
        let batch = [q, q].concat();
        let all = c
            .search(&SearchRequest::dense_batch("e", &batch, 2).with_strategy(strategy))
            .unwrap();
        assert!(all.iter().all(|h| ids(h) == want), "{strategy:?} batch");
    }
    let maxsim = c.search_one(&SearchRequest::multi("m", &q, 2)).unwrap();
    assert_eq!(ids(&maxsim), want, "MaxSim");
    for order in [[&s0, &s1], [&s1, &s0]] {
        let shards = ShardSet::open(&order).unwrap();
        let hits = shards
            .search("c", &SearchRequest::dense("e", &q, 2))
            .unwrap();
        assert_eq!(ids(&hits[0]), want, "shards {order:?}");
    }
    // Upserts move "a" and "f" to a new segment: still "f", "e".
    let mut w = one.writer().unwrap();
    w.upsert("c", doc("f")).unwrap();
    w.upsert("c", doc("a")).unwrap();
    w.commit().unwrap();
    let snap = one.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    assert_eq!(c.slots().len(), 2);
    let hits = c.search_one(&SearchRequest::dense("e", &q, 2)).unwrap();
    assert_eq!(ids(&hits), want, "after upserts");
    // Through an HNSW graph.
    w.set_index("c", "e", Some(HnswParams::parse("min_rows=1").unwrap()))
        .unwrap();
    w.reindex("c").unwrap();
    let snap = one.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    assert!(c.slots()[0].segment.has_graph(0));
    let hits = c.search_one(&SearchRequest::dense("e", &q, 2)).unwrap();
    assert_eq!(ids(&hits), want, "HNSW");
}

/// Text inputs that start with a UTF-8 byte-order mark (Windows editors) are read as if it were
/// not there; a field given vectors twice is an error, not "the first one wins".
#[test]
fn byte_order_marks_and_repeated_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let schema = Schema::new().with_field(FieldSpec::dense("e", 2, DType::F32, Metric::Ip));
    let db = db_with(&d.join("db"), schema, Vec::new());
    std::fs::write(
        d.join("docs.jsonl"),
        b"\xEF\xBB\xBF{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": \"b\"}\n",
    )
    .unwrap();
    let npy = |path: &Path, rows: &[[f32; 2]]| {
        // A minimal .npy v1.0 file: '<f4', C order, shape (n, 2).
        let header = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 2), }}",
            rows.len()
        );
        let pad = 64 - (10 + header.len() + 1) % 64;
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&((header.len() + pad + 1) as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(b' ', pad));
        bytes.push(b'\n');
        for r in rows {
            for v in r {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        std::fs::write(path, bytes).unwrap();
    };
    npy(&d.join("e.npy"), &[[1.0, 0.0], [0.0, 1.0]]);
    let input =
        vellum::ingest::VectorInput::parse(&format!("e={}", d.join("e.npy").display())).unwrap();
    let mut w = db.writer().unwrap();
    let twice = [input.clone(), input.clone()];
    let err = vellum::ingest::ingest(
        &mut w,
        "c",
        &d.join("docs.jsonl"),
        &twice,
        vellum::ingest::Mode::Add,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidParameter { .. }) && err.to_string().contains("twice"),
        "{err}"
    );
    let stats = vellum::ingest::ingest(
        &mut w,
        "c",
        &d.join("docs.jsonl"),
        &[input],
        vellum::ingest::Mode::Add,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(stats.documents, 2);
    w.commit().unwrap();
    let snap = db.snapshot().unwrap();
    assert_eq!(
        snap.collection("c")
            .unwrap()
            .get("a")
            .unwrap()
            .unwrap()
            .text()
            .unwrap(),
        "x"
    );
    // Runs and qrels with a byte-order mark.
    std::fs::write(d.join("run.trec"), "\u{feff}q1 Q0 a 1 2.0 t\n").unwrap();
    std::fs::write(d.join("qrels.txt"), "\u{feff}q1 0 a 1\n").unwrap();
    let run = vellum::eval::Run::read(&d.join("run.trec")).unwrap();
    let qrels = vellum::eval::Qrels::read(&d.join("qrels.txt")).unwrap();
    let measures = vellum::eval::parse_measures("mrr@10").unwrap();
    let e = vellum::eval::evaluate(&qrels, &run, &measures);
    assert_eq!(e.mean, vec![1.0]);
}

/// Everything vellum may leave behind is collected: an interrupted model copy (`*.tmp`) and a
/// complete copy no commit references; `verify` notes both until a writer removes them, and
/// never touches a copy the manifest names.
#[cfg(feature = "encoders")]
#[test]
fn leftover_model_copies_are_noted_and_collected() {
    use vellum::encode::{prepare_encoders, EncoderChoice};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db");
    let schema = Schema::new().with_field(FieldSpec::dense("e", 32, DType::F32, Metric::Ip));
    let db = db_with(&p, schema, Vec::new());
    let mut w = db.writer().unwrap();
    let choice = EncoderChoice {
        passage: crate::common::fixture_path("encoders/tiny-a")
            .display()
            .to_string(),
        embed: true,
        ..Default::default()
    };
    w.set_encoders("c", "e", prepare_encoders(&p, &choice).unwrap())
        .unwrap();
    w.commit().unwrap();
    drop(w);
    let models = p.join(".models");
    let (tmp, stale) = (format!("{}.tmp", "01".repeat(16)), "45".repeat(16));
    std::fs::create_dir_all(models.join(&tmp)).unwrap();
    std::fs::write(models.join(&tmp).join("config.json"), "{}").unwrap();
    std::fs::create_dir_all(models.join(&stale)).unwrap();
    let report = vellum::verify::verify_database(&p).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        report.unreferenced_files,
        [format!(".models/{tmp}"), format!(".models/{stale}")]
    );
    drop(db.writer().unwrap());
    let report = vellum::verify::verify_database(&p).unwrap();
    assert!(
        report.is_ok() && report.unreferenced_files.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        std::fs::read_dir(&models).unwrap().count(),
        1,
        "the bound copy stays"
    );
}

/// `verify` checks one commit: files that a concurrent commit collects while it runs are not
/// reported as damage.
#[test]
fn verify_during_commits_reports_no_false_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db");
    let schema = Schema::new().with_field(FieldSpec::dense("e", 4, DType::F32, Metric::Ip));
    let db = db_with(&p, schema, Vec::new());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut w = db.writer().unwrap();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let v = vec![i as f32, 1.0, 0.0, 0.0];
                w.upsert("c", Document::new(format!("d{}", i % 7)).with_dense("e", v))
                    .unwrap();
                w.commit().unwrap();
                if i.is_multiple_of(5) {
                    w.compact("c").unwrap();
                }
                i += 1;
            }
            i
        })
    };
    let started = std::time::Instant::now();
    let mut checks = 0;
    while started.elapsed() < std::time::Duration::from_secs(2) {
        let report = vellum::verify::verify_database(&p).unwrap();
        assert!(report.is_ok(), "check {checks}: {:?}", report.problems);
        checks += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let commits = writer.join().unwrap();
    assert!(
        checks > 10 && commits > 10,
        "{checks} checks, {commits} commits"
    );
}

/// `backup_to` copies one pinned commit while a writer adds, deletes and compacts: every backup
/// opens, verifies, and holds exactly the documents of its generation.
#[test]
fn online_backups_are_consistent_while_a_writer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db");
    let schema = Schema::new().with_field(FieldSpec::dense("e", 4, DType::F32, Metric::Ip));
    let db = db_with(&p, schema, Vec::new());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Generation → live ids, recorded by the writer after each commit.
    let history = std::sync::Arc::new(parking_lot::Mutex::new(std::collections::HashMap::new()));
    let writer = {
        let (db, stop, history) = (db.clone(), stop.clone(), history.clone());
        std::thread::spawn(move || {
            let mut w = db.writer().unwrap();
            let mut live = std::collections::BTreeSet::new();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("d{}", i % 23);
                if i % 3 == 2 {
                    w.delete("c", &id).unwrap();
                    live.remove(&id);
                } else {
                    w.upsert(
                        "c",
                        Document::new(&id).with_dense("e", vec![i as f32, 1.0, 0.0, 0.0]),
                    )
                    .unwrap();
                    live.insert(id);
                }
                let g = w.commit().unwrap().generation;
                history.lock().insert(g, live.clone());
                if i.is_multiple_of(4) {
                    let g = w.compact("c").unwrap().generation;
                    history.lock().insert(g, live.clone());
                }
                i += 1;
            }
        })
    };
    let mut backups = Vec::new();
    for b in 0..15 {
        // Let the writer move on between backups (bounded: the test must not hang).
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while history.lock().len() <= b && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let dest = dir.path().join(format!("backup{b}"));
        let info = db.backup_to(&dest).unwrap();
        backups.push((dest, info));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    // With the writer stopped, the history has every generation a backup can hold (generation 1,
    // the empty collection, comes from `db_with`).
    let history = history.lock();
    let mut generations = std::collections::BTreeSet::new();
    for (dest, info) in &backups {
        let report = vellum::verify::verify_database(dest).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        let copy = Database::open(dest).unwrap().snapshot().unwrap();
        assert_eq!(copy.generation(), info.generation);
        let mut ids = std::collections::BTreeSet::new();
        copy.collection("c")
            .unwrap()
            .for_each_live(|d| {
                ids.insert(d.id()?.to_string());
                Ok(())
            })
            .unwrap();
        let want = history.get(&info.generation).cloned().unwrap_or_else(|| {
            assert_eq!(info.generation, 1, "a generation the writer never reported");
            Default::default()
        });
        assert_eq!(ids, want, "generation {}", info.generation);
        generations.insert(info.generation);
    }
    assert!(
        generations.len() > 1,
        "backups of one generation only: {generations:?}"
    );
    // A non-empty destination is refused.
    let err = db.backup_to(dir.path().join("backup0")).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
}

/// 800 copies of one vector inserted first, then 200 distinct vectors: every live row is found
/// by its own vector through the HNSW graph (hnswlib finds them all; duplicate passages are
/// common in real corpora) — after the build, after deletes, and after compaction.
#[test]
fn hnsw_reaches_every_row_of_a_duplicate_heavy_collection() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::new().with_field(FieldSpec::dense("e", 8, DType::F32, Metric::L2));
    let mut rng = crate::common::Rng(99);
    let mut docs: Vec<Document> = (0..800)
        .map(|i| Document::new(format!("dup{i:04}")).with_dense("e", vec![0.25; 8]))
        .collect();
    let distinct: Vec<Vec<f32>> = (0..200).map(|_| rng.vec(8)).collect();
    for (i, v) in distinct.iter().enumerate() {
        docs.push(Document::new(format!("x{i:03}")).with_dense("e", v.clone()));
    }
    let db = db_with(dir.path(), schema, docs);
    let mut w = db.writer().unwrap();
    w.set_index(
        "c",
        "e",
        Some(HnswParams::parse("m=16,ef_construction=200,min_rows=1").unwrap()),
    )
    .unwrap();
    w.reindex("c").unwrap();
    let found = |db: &Database, ef: usize| {
        let snap = db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        assert!(c.slots().iter().all(|s| s.segment.has_graph(0)));
        let mut n = 0;
        for (i, v) in distinct.iter().enumerate() {
            let id = format!("x{i:03}");
            if c.get(&id).unwrap().is_none() {
                continue;
            }
            let hits = c
                .search_one(&SearchRequest::dense("e", v, 1).with_ef(ef))
                .unwrap();
            n += usize::from(hits[0].id == id);
        }
        n
    };
    assert_eq!(found(&db, 64), 200, "after the build");
    for i in (0..200).step_by(3) {
        w.delete("c", &format!("x{i:03}")).unwrap();
    }
    for i in (0..800).step_by(2) {
        w.delete("c", &format!("dup{i:04}")).unwrap();
    }
    w.commit().unwrap();
    assert_eq!(found(&db, 64), 200 - 67, "after deletes");
    w.compact("c").unwrap();
    assert_eq!(found(&db, 64), 200 - 67, "after compaction");
    // The duplicates themselves: a query at their vector returns k of them.
    let snap = db.snapshot().unwrap();
    let hits = snap
        .collection("c")
        .unwrap()
        .search_one(&SearchRequest::dense("e", &[0.25; 8], 10))
        .unwrap();
    assert!(hits
        .iter()
        .all(|h| h.id.starts_with("dup") && h.score == 0.0));
    assert_eq!(hits.len(), 10);
}

/// Garbage collection touches only the names vellum gives (and `tempfile`'s, in collection
/// directories): a user's folder or file under `.models/` survives, and a writer still opens.
#[test]
fn garbage_collection_leaves_foreign_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db");
    let schema = Schema::new().with_field(FieldSpec::dense("e", 2, DType::F32, Metric::Ip));
    let db = db_with(&p, schema, Vec::new());
    let models = p.join(".models");
    std::fs::create_dir_all(models.join("my-notes")).unwrap();
    std::fs::write(models.join("README"), "mine").unwrap();
    std::fs::create_dir_all(models.join(format!("{}.tmp", "ab".repeat(16)))).unwrap();
    // In a collection's directory: an index build's temporary file that a crash left (where the
    // OS names it) goes; a user's file of a similar name stays.
    let cdir = p.join("c");
    std::fs::write(cdir.join(".tmpAb3xY9"), "residuals").unwrap();
    std::fs::write(cdir.join(".tmp-notes"), "mine").unwrap();
    let mut w = db.writer().unwrap();
    w.add("c", Document::new("a").with_dense("e", vec![1.0, 0.0]))
        .unwrap();
    w.commit().unwrap();
    drop(w);
    let mut left: Vec<String> = std::fs::read_dir(&models)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["README", "my-notes"]);
    assert!(!cdir.join(".tmpAb3xY9").exists());
    assert!(cdir.join(".tmp-notes").exists());
}

/// An L2 MaxSim sum over many tokens that leaves f32 is an error, never an infinite score.
#[test]
fn l2_maxsim_overflow_is_an_error_not_infinity() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::new().with_field(FieldSpec::multi("m", 2, DType::F32, Metric::L2));
    let far = (vellum::dtype::MAX_VECTOR_NORM * 0.6) as f32;
    let db = db_with(
        dir.path(),
        schema,
        vec![Document::new("a").with_multi("m", vec![far, 0.0])],
    );
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    // 32 query tokens near the origin, each ~(0.6 N)² = 0.045 f32::MAX away: the sum overflows.
    let q = vec![-1.0f32; 64];
    let err = c.search(&SearchRequest::multi("m", &q, 1)).unwrap_err();
    assert!(matches!(err, Error::InvalidQuery(_)), "{err}");
    // One token is fine.
    let hits = c
        .search_one(&SearchRequest::multi("m", &q[..2], 1))
        .unwrap();
    assert!(hits[0].score.is_finite());
}

/// Shards whose field differs (metric, element type) are refused by search too, not merged.
#[test]
fn shard_search_refuses_incomparable_fields() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let doc = |id: &str| Document::new(id).with_dense("e", vec![1.0, 0.0]);
    db_with(
        &a,
        Schema::new().with_field(FieldSpec::dense("e", 2, DType::F32, Metric::Ip)),
        vec![doc("x")],
    );
    db_with(
        &b,
        Schema::new().with_field(FieldSpec::dense("e", 2, DType::F32, Metric::L2)),
        vec![doc("y")],
    );
    let shards = ShardSet::open(&[&a, &b]).unwrap();
    let err = shards
        .search("c", &SearchRequest::dense("e", &[1.0, 0.0], 1))
        .unwrap_err();
    assert!(matches!(err, Error::MismatchedShards(_)), "{err}");
}
