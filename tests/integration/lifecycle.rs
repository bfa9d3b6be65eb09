//! The library API end to end: create, add, upsert, delete, commit, snapshots, compaction, lock.

use vellum::{
    DType, Database, Document, Error, FieldSpec, Metric, Schema, SearchRequest, WriterOptions,
};

use crate::common::{all_kinds_schema, build_all_kinds, Rng};

#[test]
fn nothing_is_visible_before_commit_and_snapshots_are_stable() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::dense("e", 2, DType::F32, Metric::Ip)),
    )
    .unwrap();
    assert!(
        db.snapshot().unwrap().collection("c").is_err(),
        "collection visible before commit"
    );
    w.commit().unwrap();
    w.add("c", Document::new("a").with_dense("e", vec![1.0, 0.0]))
        .unwrap();
    w.add("c", Document::new("a2").with_dense("e", vec![1.0, 0.5]))
        .unwrap();
    let before = db.snapshot().unwrap();
    assert_eq!(before.collection("c").unwrap().len(), 0);
    w.commit().unwrap();
    assert_eq!(
        before.collection("c").unwrap().len(),
        0,
        "an old snapshot must not change"
    );
    let after = db.snapshot().unwrap();
    assert_eq!(after.collection("c").unwrap().len(), 2);
    // Compaction with a reader holding the old snapshot: the reader keeps working.
    w.add("c", Document::new("b").with_dense("e", vec![0.0, 1.0]))
        .unwrap();
    w.commit().unwrap();
    w.delete("c", "a").unwrap();
    w.commit().unwrap();
    let held = db.snapshot().unwrap();
    let info = w.compact("c").unwrap();
    assert_eq!(
        (info.segments_before, info.segments_after, info.rows_dropped),
        (2, 1, 1)
    );
    let hits = held
        .collection("c")
        .unwrap()
        .search(&SearchRequest::dense("e", &[0.0, 1.0], 5))
        .unwrap();
    assert_eq!(
        hits[0].iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["b", "a2"]
    );
    assert_eq!(
        held.collection("c")
            .unwrap()
            .get("b")
            .unwrap()
            .unwrap()
            .dense("e")
            .unwrap()
            .to_f32_vec(),
        vec![0.0, 1.0]
    );
    let now = db.snapshot().unwrap();
    assert_eq!(now.collection("c").unwrap().slots().len(), 1);
    assert_eq!(now.collection("c").unwrap().len(), 2);
    // A segment whose rows are all deleted leaves the manifest at commit.
    w.delete("c", "a2").unwrap();
    w.delete("c", "b").unwrap();
    w.commit().unwrap();
    assert!(db
        .snapshot()
        .unwrap()
        .collection("c")
        .unwrap()
        .slots()
        .is_empty());
    assert!(vellum::verify::verify_database(dir.path()).unwrap().is_ok());
}

#[test]
fn upsert_delete_and_duplicate_ids() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let mut w = db
        .writer_with(WriterOptions {
            flush_bytes: 200,
            ..Default::default()
        })
        .unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::dense("e", 2, DType::F16, Metric::L2)),
    )
    .unwrap();
    for i in 0..10 {
        w.add(
            "c",
            Document::new(format!("d{i}")).with_dense("e", vec![i as f32, 0.0]),
        )
        .unwrap();
    }
    // Duplicate within the batch (some rows are already spilled to uncommitted segment files).
    let err = w
        .add("c", Document::new("d1").with_dense("e", vec![0.0, 0.0]))
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateId { .. }), "{err}");
    w.commit().unwrap();
    let err = w
        .add("c", Document::new("d2").with_dense("e", vec![0.0, 0.0]))
        .unwrap_err();
    assert!(
        err.to_string().contains("already committed; use upsert"),
        "{err}"
    );
    w.upsert("c", Document::new("d2").with_dense("e", vec![100.0, 0.0]))
        .unwrap();
    w.upsert("c", Document::new("d2").with_dense("e", vec![200.0, 0.0]))
        .unwrap();
    assert!(w.delete("c", "d3").unwrap());
    assert!(!w.delete("c", "d3").unwrap());
    assert!(!w.delete("c", "nope").unwrap());
    let info = w.commit().unwrap();
    assert_eq!((info.added, info.deleted), (2, 3));
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    assert_eq!(c.len(), 9);
    assert_eq!(
        c.get("d2")
            .unwrap()
            .unwrap()
            .dense("e")
            .unwrap()
            .to_f32_vec(),
        vec![200.0, 0.0]
    );
    assert!(c.get("d3").unwrap().is_none());
    let hits = c
        .search(&SearchRequest::dense("e", &[201.0, 0.0], 1))
        .unwrap();
    assert_eq!((hits[0][0].id.as_str(), hits[0][0].score), ("d2", -1.0));
    drop(w);
    assert!(vellum::verify::verify_database(dir.path()).unwrap().is_ok());
}

#[test]
fn dropped_writer_discards_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = build_all_kinds(dir.path());
    let before = db.snapshot().unwrap().collection("docs").unwrap().len();
    {
        let mut w = db
            .writer_with(WriterOptions {
                flush_bytes: 1,
                ..Default::default()
            })
            .unwrap();
        let mut rng = Rng(3);
        for i in 100..110 {
            w.add("docs", crate::common::all_kinds_doc(i, &mut rng))
                .unwrap();
        }
        w.delete("docs", "doc-0").unwrap();
    }
    assert_eq!(
        db.snapshot().unwrap().collection("docs").unwrap().len(),
        before
    );
    let report = vellum::verify::verify_database(dir.path()).unwrap();
    assert!(
        report.is_ok() && report.unreferenced_files.is_empty(),
        "{report:?}"
    );
}

#[test]
fn second_writer_is_refused_with_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let _w = db.writer().unwrap();
    let err = db.writer().unwrap_err();
    assert!(matches!(err, Error::Locked { .. }));
    assert!(
        err.to_string().contains("locked by another writer (pid"),
        "{err}"
    );
    db.snapshot().unwrap(); // readers never block
}

#[test]
fn zero_copy_access_to_every_field_kind() {
    let dir = tempfile::tempdir().unwrap();
    let db = build_all_kinds(dir.path());
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    assert_eq!(c.schema(), &all_kinds_schema());
    assert_eq!(c.len(), 29);
    let d = c.get("doc-5").unwrap().unwrap();
    assert_eq!(d.text().unwrap(), "text of document 5 — ünïcode");
    assert_eq!(d.metadata_json().unwrap()["i"], 5);
    let m = d.multi("tok").unwrap();
    assert_eq!((m.n_tokens(), m.dim), (3, 4));
    assert!(matches!(m.tokens.as_ref(), vellum::VectorRef::F16(_)));
    let t = d.tensor("img").unwrap();
    assert_eq!(t.shape, &[2, 3]);
    assert!(matches!(t.data, vellum::VectorRef::Bf16(v) if v.len() == 6));
    assert!(matches!(d.dense("emb").unwrap(), vellum::VectorRef::F32(v) if v.len() == 8));
    assert!(d.dense("tok").is_err());
    assert!(c.get("doc-3").unwrap().is_none(), "deleted");
    let err = c
        .search(&SearchRequest::dense("img", &[0.0; 6], 1))
        .unwrap_err();
    assert!(err.to_string().contains("tensor field"), "{err}");
    let err = c
        .search(&SearchRequest::dense("emb", &[0.0; 8], 1))
        .unwrap_err();
    assert!(err.to_string().contains("zero vector"), "{err}");
    let err = c
        .search(&SearchRequest::dense("emb", &[1.0; 7], 1))
        .unwrap_err();
    assert!(err.to_string().contains("dimension 8"), "{err}");
}

#[test]
fn copied_directory_opens_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    build_all_kinds(&dir.path().join("a"));
    let b = dir.path().join("b");
    copy_dir(&dir.path().join("a"), &b);
    let snap = Database::open(&b).unwrap().snapshot().unwrap();
    assert_eq!(snap.collection("docs").unwrap().len(), 29);
    assert!(vellum::verify::verify_database(&b).unwrap().is_ok());
}

pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn readers_see_consistent_snapshots_while_a_writer_commits_and_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let mut w = db
        .writer_with(WriterOptions {
            flush_bytes: 4096,
            ..Default::default()
        })
        .unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::dense("e", 4, DType::F32, Metric::Ip)),
    )
    .unwrap();
    w.commit().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut snapshots = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let snap = db.snapshot().unwrap();
                        let c = snap.collection("c").unwrap();
                        // Invariant of every commit below: documents come in whole rounds of 10,
                        // and doc `r-j` holds the vector [r, j, 1, 1].
                        let n = c.len();
                        assert_eq!(
                            n % 10,
                            0,
                            "snapshot of generation {} shows {n} documents",
                            snap.generation()
                        );
                        let hits = c
                            .search(&SearchRequest::dense("e", &[1.0, 0.0, 0.0, 0.0], 1000))
                            .unwrap();
                        assert_eq!(hits[0].len() as u64, n);
                        for h in &hits[0] {
                            let d = c
                                .get(&h.id)
                                .unwrap()
                                .expect("hit is gettable in the same snapshot");
                            let v = d.dense("e").unwrap().to_f32_vec();
                            assert_eq!(h.id, format!("{}-{}", v[0], v[1]));
                        }
                        snapshots += 1;
                    }
                    snapshots
                })
            })
            .collect();
        for round in 1..=40 {
            for j in 0..10 {
                w.add(
                    "c",
                    Document::new(format!("{round}-{j}"))
                        .with_dense("e", vec![round as f32, j as f32, 1.0, 1.0]),
                )
                .unwrap();
            }
            if round > 2 {
                for j in 0..10 {
                    w.delete("c", &format!("{}-{j}", round - 2)).unwrap();
                }
            }
            w.commit().unwrap();
            if round % 5 == 0 {
                w.compact("c").unwrap();
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let total: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(total > 0);
    });
    assert!(vellum::verify::verify_database(dir.path()).unwrap().is_ok());
}

#[test]
fn batch_adds_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let mut w = db.writer().unwrap();
    let schema = Schema::new().with_field(FieldSpec::parse("e:dense:2:f32:ip").unwrap());
    w.create_collection("c", schema).unwrap();
    let doc = |id: &str, v: [f32; 2]| Document::new(id).with_dense("e", v.to_vec());
    w.add("c", doc("a", [1.0, 0.0])).unwrap();
    w.commit().unwrap();

    // A bad document, an id already committed, or an id given twice: nothing of the call is kept.
    let bad = w.add_all("c", vec![doc("x", [1.0, 1.0]), doc("y", [f32::NAN, 0.0])]);
    assert!(matches!(bad, Err(Error::InvalidInput(_))), "{bad:?}");
    let dup = w.add_all("c", vec![doc("x", [1.0, 1.0]), doc("a", [0.0, 1.0])]);
    assert!(
        matches!(&dup, Err(Error::DuplicateId { id, .. }) if id == "a"),
        "{dup:?}"
    );
    let twice = w.add_all("c", vec![doc("x", [1.0, 1.0]), doc("x", [0.0, 1.0])]);
    assert!(
        matches!(&twice, Err(Error::DuplicateId { detail, .. }) if detail.contains("twice")),
        "{twice:?}"
    );
    assert!(!w.has_changes());

    // Upserts replace, and an id given twice keeps its last document.
    w.upsert_all(
        "c",
        vec![
            doc("a", [0.0, 2.0]),
            doc("b", [3.0, 0.0]),
            doc("b", [4.0, 0.0]),
        ],
    )
    .unwrap();
    w.add_all("c", vec![doc("z", [5.0, 5.0])]).unwrap();
    let info = w.commit().unwrap();
    assert_eq!((info.added, info.deleted), (4, 2));
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    assert_eq!(c.len(), 3);
    let b = c.get("b").unwrap().unwrap();
    assert_eq!(b.dense("e").unwrap().to_f32_vec(), vec![4.0, 0.0]);
}
