//! Operation sequences against a model: random add / upsert / delete / commit / compact / crash
//! sequences run on a database in a `MemDirectory` and on a `BTreeMap`, which must agree after
//! every step. Shared by the `operations` fuzz target and the integration tests
//! (`tests/integration/operations.rs`), so the CI's test run exercises it too.

use std::collections::BTreeMap;
use std::sync::Arc;

use vellum::storage::MemDirectory;
use vellum::verify::verify_directory;
use vellum::{Database, Document, Error, FieldSpec, Schema, Writer, WriterOptions};

/// id → the value of its one-dimensional vector.
type Model = BTreeMap<String, f32>;

fn schema() -> Schema {
    Schema::new().with_field(FieldSpec::parse("v:dense:2:f32:l2").expect("valid spec"))
}

fn doc(id: &str, value: f32) -> Document {
    Document::new(id)
        .with_text(format!("text {value}"))
        .with_dense("v", vec![value, 1.0])
}

fn stored(db: &Database) -> Model {
    let snap = db.snapshot().expect("snapshot");
    let mut out = Model::new();
    if let Ok(c) = snap.collection("c") {
        c.for_each_live(|d| {
            let v = d.dense("v")?.to_f32_vec()[0];
            assert_eq!(d.text()?, format!("text {v}"));
            assert!(
                out.insert(d.id()?.to_string(), v).is_none(),
                "id live twice"
            );
            Ok(())
        })
        .expect("read every live document");
    }
    out
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
}

fn open_writer(db: &Database, spill: bool) -> Writer {
    let options = WriterOptions {
        flush_bytes: if spill { 200 } else { 256 << 20 },
        // Every segment gets screening codes, so the model also checks searches over them.
        screen_min_rows: 1,
        ..WriterOptions::default()
    };
    db.writer_with(options).expect("writer opens")
}

/// Runs the sequence encoded by `data`; panics when the database and the model disagree.
pub fn run(data: &[u8]) {
    let mut bytes = Bytes(data);
    let spill = bytes.next().is_some_and(|b| b & 1 == 1);
    let mut mem = Arc::new(MemDirectory::new());
    let mut db = Database::create_in(mem.clone()).expect("create");
    let mut w = open_writer(&db, spill);
    w.create_collection("c", schema()).expect("collection");
    w.commit().expect("first commit");
    let mut committed = Model::new();
    let mut pending = committed.clone();
    let mut counter = 0u32;
    while let Some(op) = bytes.next() {
        let key = bytes.next().unwrap_or(0);
        let id = format!("d{}", key % 24);
        counter += 1;
        let value = counter as f32;
        match op % 9 {
            0..=2 => {
                let r = w.add("c", doc(&id, value));
                match pending.entry(id) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        assert!(matches!(r, Err(Error::DuplicateId { .. })), "{r:?}")
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        r.expect("add");
                        slot.insert(value);
                    }
                }
            }
            3 => {
                w.upsert("c", doc(&id, value)).expect("upsert");
                pending.insert(id, value);
            }
            4 => {
                let existed = w.delete("c", &id).expect("delete");
                assert_eq!(existed, pending.remove(&id).is_some(), "delete of {id}");
            }
            5 => {
                w.commit().expect("commit");
                committed = pending.clone();
                assert_eq!(stored(&db), committed);
            }
            6 => {
                // Compaction commits pending changes first.
                w.compact("c").expect("compact");
                committed = pending.clone();
                assert_eq!(stored(&db), committed);
            }
            7 => {
                // Rollback discards the batch.
                w.rollback().expect("rollback");
                pending = committed.clone();
            }
            _ => {
                // Power cut during the next commit (or compaction), at boundary `key % 8`.
                mem.cut_power_after((key % 8) as usize);
                let done = if key & 0x80 == 0 {
                    w.commit().is_ok()
                } else {
                    w.compact("c").is_ok()
                };
                drop(w);
                mem = Arc::new(mem.crash_image());
                db = Database::open_in(mem.clone()).expect("the crashed database opens");
                let got = stored(&db);
                if done {
                    assert_eq!(got, pending, "a completed commit was lost");
                } else {
                    assert!(
                        got == committed || got == pending,
                        "after a crash the database is neither the last commit nor the new one"
                    );
                }
                committed = got;
                pending = committed.clone();
                let report = verify_directory(&*mem).expect("verify");
                assert!(report.is_ok(), "{:?}", report.problems);
                w = open_writer(&db, spill);
            }
        }
        assert_eq!(
            w.committed().generation(),
            db.snapshot().expect("snapshot").generation()
        );
    }
    w.commit().expect("last commit");
    assert_eq!(stored(&db), pending);
    drop(w);
    let report = verify_directory(&*mem).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(
        report.unreferenced_files.is_empty(),
        "{:?}",
        report.unreferenced_files
    );
}
