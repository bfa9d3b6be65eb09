//! `reencode` as a versioned maintenance operation (issue: training as a maintenance operation):
//! the switch gives exactly what a fresh ingest with the new encoder gives, rollback restores
//! the previous results exactly, an interrupted re-encode resumes without re-encoding committed
//! pieces, readers searching during a re-encode always see one version, and SIGKILL at random
//! instants leaves a database that opens, verifies and searches one version.
//!
//! Iterations of the kill loop: 50 by default, `VELLUM_REENCODE_KILLS` for more.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vellum::encode::{prepare_encoders, EncoderChoice, EncoderOptions, FieldEncoders};
use vellum::ingest::pipeline::{ingest_text, TextIngest};
use vellum::ingest::reencode::{reencode, Reencode, ReencodeEvent};
use vellum::{Database, Error, FieldSpec, Schema, SearchRequest};

use crate::common::{fixture_path, kill_child_after, Rng};

const QUERIES: [&str; 4] = [
    "Real-time strategy game",
    "library for parsing XML",
    "documentation files",
    "command line tool",
];

fn tiny(name: &str) -> String {
    fixture_path(&format!("encoders/{name}"))
        .to_str()
        .unwrap()
        .to_string()
}

/// The first `n` documents of the Debian sample as JSONL.
fn corpus(dir: &Path, n: usize) -> PathBuf {
    let all = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/debian/corpus.jsonl"),
    )
    .unwrap();
    let lines: Vec<&str> = all.lines().take(n).collect();
    let p = dir.join("docs.jsonl");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn encoders_of(db: &Database, model: &str) -> FieldEncoders {
    let choice = EncoderChoice {
        passage: model.to_string(),
        passage_options: EncoderOptions::parse("pooling=cls,normalize=true").unwrap(),
        ..Default::default()
    };
    prepare_encoders(db.path(), &choice).unwrap()
}

/// A database of `n` documents encoded with `model`, committed in several segments.
fn database(dir: &Path, model: &str, n: usize) -> Database {
    let db = Database::create(dir).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "docs",
        Schema::new().with_field(FieldSpec::parse("emb:dense:32:f32:cosine").unwrap()),
    )
    .unwrap();
    w.set_encoders("docs", "emb", encoders_of(&db, model))
        .unwrap();
    w.commit().unwrap();
    let docs = corpus(dir.parent().unwrap(), n);
    let mut job = TextIngest::new("docs", &docs);
    job.commit_every = 40;
    job.window = 20;
    ingest_text(&mut w, &job, &mut |_| {}).unwrap();
    db
}

/// Text search results (ids and scores) of the current snapshot.
fn results(db: &Database) -> Vec<Vec<(String, f32)>> {
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    let q = c.query_encoder("emb").unwrap();
    c.search_text(&*q, &QUERIES, SearchRequest::text("emb", 8))
        .unwrap()
        .into_iter()
        .map(|hits| hits.into_iter().map(|h| (h.id, h.score)).collect())
        .collect()
}

fn assert_same_results(got: &[Vec<(String, f32)>], want: &[Vec<(String, f32)>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        let ids = |r: &[(String, f32)]| r.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>();
        assert_eq!(ids(g), ids(w), "{what}");
        for ((_, a), (_, b)) in g.iter().zip(w) {
            assert!((a - b).abs() < 1e-5, "{what}: score {a} vs {b}");
        }
    }
}

fn job<'a>(encoders: Option<FieldEncoders>, piece_rows: u64) -> Reencode<'a> {
    let mut j = Reencode::new("docs", "emb", encoders);
    j.piece_rows = piece_rows;
    j
}

#[test]
fn switch_equals_a_fresh_ingest_and_rollback_restores_exactly() {
    let t = tempfile::tempdir().unwrap();
    let db = database(&t.path().join("db"), &tiny("tiny-a"), 100);
    // Rows 34..40 of the first segment (40 rows) are one whole piece of 17-row pieces: its
    // staged copy is dropped at the switch, and rollbacks must still map every row.
    let gone: Vec<String> = std::fs::read_to_string(t.path().join("docs.jsonl"))
        .unwrap()
        .lines()
        .skip(34)
        .take(6)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        db.snapshot().unwrap().collection("docs").unwrap().slots()[0]
            .segment
            .rows(),
        40
    );
    let mut w = db.writer().unwrap();
    assert!(w.delete("docs", "0ad").unwrap());
    for id in &gone {
        assert!(w.delete("docs", id).unwrap());
    }
    w.commit().unwrap();
    let before = results(&db);

    // The oracle: the same documents ingested with tiny-b from the start.
    let fresh = database(&t.path().join("fresh/db"), &tiny("tiny-b"), 100);
    let mut fw = fresh.writer().unwrap();
    fw.delete("docs", "0ad").unwrap();
    for id in &gone {
        fw.delete("docs", id).unwrap();
    }
    fw.commit().unwrap();
    let want = results(&fresh);
    assert_ne!(
        before.iter().flatten().map(|h| &h.0).collect::<Vec<_>>(),
        want.iter().flatten().map(|h| &h.0).collect::<Vec<_>>(),
        "the two encoders must rank differently for this test to mean anything"
    );

    let new = encoders_of(&db, &tiny("tiny-b"));
    let stats = reencode(&mut w, &job(Some(new), 17), &mut |_| {}).unwrap();
    assert_eq!(stats.encoded, 93, "deleted rows are not encoded");
    assert_eq!((stats.switch.from_version, stats.switch.to_version), (1, 2));
    assert_same_results(&results(&db), &want, "after the switch");
    let report = vellum::verify::verify_database(db.path()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.live_documents, 93);
    assert!(db
        .snapshot()
        .unwrap()
        .collection("docs")
        .unwrap()
        .get("0ad")
        .unwrap()
        .is_none());

    // Rollback: exactly the results before, then forward again.
    let r = w.rollback_version("docs").unwrap();
    assert_eq!((r.from_version, r.to_version), (2, 1));
    assert_eq!(
        results(&db),
        before,
        "rollback restores the previous results exactly"
    );
    w.rollback_version("docs").unwrap();
    assert_same_results(&results(&db), &want, "rolled forward");

    // Deletions after the switch carry over to the rolled-back version.
    assert!(w.delete("docs", "9mount").unwrap());
    w.commit().unwrap();
    w.rollback_version("docs").unwrap();
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    assert!(c.get("9mount").unwrap().is_none());
    assert_eq!(c.len(), 92);
    drop(snap);

    // A document added after the switch has no copy in the other version: refused, unchanged.
    w.rollback_version("docs").unwrap();
    let snap = db.snapshot().unwrap();
    let doc = snap
        .collection("docs")
        .unwrap()
        .get("abicheck")
        .unwrap()
        .unwrap();
    let added = vellum::Document::new("added")
        .with_text("added later")
        .with_dense("emb", doc.dense("emb").unwrap().to_f32_vec());
    drop(snap);
    w.add("docs", added).unwrap();
    w.commit().unwrap();
    let generation = db.snapshot().unwrap().generation();
    let e = w.rollback_version("docs").unwrap_err().to_string();
    assert!(e.contains("documents added"), "{e}");
    assert_eq!(db.snapshot().unwrap().generation(), generation);

    // Dropping the kept version frees its files.
    assert!(w.drop_previous("docs").unwrap());
    drop(w);
    let report = vellum::verify::verify_database(db.path()).unwrap();
    assert!(
        report.is_ok() && report.unreferenced_files.is_empty(),
        "{report:?}"
    );
}

#[test]
fn an_interrupted_reencode_resumes_from_its_committed_pieces() {
    let t = tempfile::tempdir().unwrap();
    let db = database(&t.path().join("db"), &tiny("tiny-a"), 90);
    let before = results(&db);
    let mut w = db.writer().unwrap();
    let new = encoders_of(&db, &tiny("tiny-b"));
    let stop = Arc::new(AtomicBool::new(false));
    let mut j = job(Some(new.clone()), 20);
    j.interrupt = Some(stop.clone());
    let mut staged = 0;
    let err = reencode(&mut w, &j, &mut |e| {
        if let ReencodeEvent::Staged { rows_done, .. } = e {
            staged = *rows_done;
            stop.store(true, Ordering::SeqCst);
        }
    })
    .unwrap_err();
    assert!(matches!(err, Error::Interrupted(_)), "{err}");
    assert_eq!(staged, 20);
    drop(w);
    // Readers still see the old version; the database verifies.
    assert_eq!(results(&db), before);
    assert!(vellum::verify::verify_database(db.path()).unwrap().is_ok());

    // Another encoder is refused while this one is staged.
    let mut w = db.writer().unwrap();
    let other = encoders_of(&db, &tiny("tiny-roberta"));
    let e = reencode(&mut w, &job(Some(other), 20), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unfinished re-encode") && e.contains("tiny-b"),
        "{e}"
    );

    // Resuming (no encoder named: the staged one) encodes only the rest.
    let mut plan = None;
    let stats = reencode(&mut w, &job(None, 20), &mut |e| {
        if let ReencodeEvent::Plan(p) = e {
            plan = Some(p.clone());
        }
    })
    .unwrap();
    let plan = plan.unwrap();
    assert_eq!((plan.rows_total, plan.rows_done), (90, 20));
    assert!(plan.bytes_needed > 0);
    assert_eq!(stats.encoded, 70, "committed pieces are not encoded again");
    let fresh = database(&t.path().join("fresh/db"), &tiny("tiny-b"), 90);
    assert_same_results(&results(&db), &results(&fresh), "after resuming");

    // Abort discards a staged re-encode and its files.
    let back = encoders_of(&db, &tiny("tiny-a"));
    w.begin_staged("docs", "emb", &back).unwrap();
    assert!(w.abort_staged("docs").unwrap());
    assert!(!w.abort_staged("docs").unwrap());
}

#[test]
fn readers_searching_during_a_reencode_see_one_version() {
    let t = tempfile::tempdir().unwrap();
    let db = database(&t.path().join("db"), &tiny("tiny-a"), 120);
    let old = results(&db);
    let fresh = database(&t.path().join("fresh/db"), &tiny("tiny-b"), 120);
    let new = results(&fresh);
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let db = Database::open(db.path()).unwrap();
            let (old, new, done) = (old.clone(), new.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut saw_old, mut saw_new) = (0, 0);
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let r = results(&db);
                    if r == old {
                        saw_old += 1;
                    } else {
                        assert_same_results(&r, &new, "a reader saw neither version");
                        saw_new += 1;
                    }
                    if finished {
                        return (saw_old, saw_new);
                    }
                }
            })
        })
        .collect();
    let mut w = db.writer().unwrap();
    let enc = encoders_of(&db, &tiny("tiny-b"));
    reencode(&mut w, &job(Some(enc), 7), &mut |_| {
        std::thread::sleep(Duration::from_millis(2))
    })
    .unwrap();
    done.store(true, Ordering::SeqCst);
    for r in readers {
        let (saw_old, saw_new) = r.join().unwrap();
        assert!(saw_old > 0 && saw_new > 0, "old {saw_old}, new {saw_new}");
    }
}

/// Text search results of `field` (ids and scores) of the current snapshot.
fn results_of(db: &Database, field: &str) -> vellum::Result<Vec<Vec<(String, f32)>>> {
    let snap = db.snapshot()?;
    let c = snap.collection("docs")?;
    let q = c.query_encoder(field)?;
    Ok(c.search_text(&*q, &QUERIES, SearchRequest::text(field, 8))?
        .into_iter()
        .map(|hits| hits.into_iter().map(|h| (h.id, h.score)).collect())
        .collect())
}

fn small_encoders(db: &Database) -> FieldEncoders {
    let choice = EncoderChoice {
        passage: tiny("tiny-b"),
        passage_options: EncoderOptions::parse("pooling=cls,normalize=true,dims=16").unwrap(),
        ..Default::default()
    };
    prepare_encoders(db.path(), &choice).unwrap()
}

#[test]
fn a_reencode_into_a_new_field_adds_it_and_a_rollback_removes_it() {
    let t = tempfile::tempdir().unwrap();
    let db = database(&t.path().join("db"), &tiny("tiny-a"), 60);
    let before = results(&db);
    let mut w = db.writer().unwrap();
    let spec = FieldSpec::parse("emb16:dense:16:f32:cosine").unwrap();

    // The name of an existing field is refused.
    let mut j = job(Some(small_encoders(&db)), 25);
    j.new_field = Some(FieldSpec::parse("emb:dense:16:f32:cosine").unwrap());
    let e = reencode(&mut w, &j, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("already has a field"), "{e}");

    // Interrupted after its first piece: readers see the collection as it was.
    let stop = Arc::new(AtomicBool::new(false));
    let mut j = job(Some(small_encoders(&db)), 25);
    j.new_field = Some(spec.clone());
    j.interrupt = Some(stop.clone());
    let err = reencode(&mut w, &j, &mut |e| {
        if let ReencodeEvent::Staged { .. } = e {
            stop.store(true, Ordering::SeqCst);
        }
    })
    .unwrap_err();
    assert!(matches!(err, Error::Interrupted(_)), "{err}");
    drop(w);
    let reopened = Database::open(db.path()).unwrap();
    let snap = reopened.snapshot().unwrap();
    assert_eq!(snap.collection("docs").unwrap().schema().fields.len(), 1);
    drop(snap);
    assert_eq!(results(&db), before);
    let report = vellum::verify::verify_database(db.path()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);

    // Resumed by the new field's name: only the rest is encoded; the switch adds the field.
    let mut w = db.writer().unwrap();
    let stats = reencode(&mut w, &Reencode::new("docs", "emb16", None), &mut |_| {}).unwrap();
    assert_eq!(stats.encoded, 35);
    assert_eq!(stats.switch.field, "emb16");
    assert_eq!((stats.switch.from_version, stats.switch.to_version), (0, 1));
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    assert_eq!(c.schema().fields[1], spec);
    assert_eq!(c.encoders("emb16").unwrap().passage.dims, 16);
    drop(snap);
    // The old field is untouched; the new one searches as a fresh ingest into such a field.
    assert_eq!(results(&db), before);
    let added = results_of(&db, "emb16").unwrap();
    let fresh = Database::create(t.path().join("fresh/db")).unwrap();
    {
        let mut fw = fresh.writer().unwrap();
        fw.create_collection("docs", Schema::new().with_field(spec.clone()))
            .unwrap();
        fw.set_encoders("docs", "emb16", small_encoders(&fresh))
            .unwrap();
        fw.commit().unwrap();
        let docs = corpus(&t.path().join("fresh"), 60);
        ingest_text(&mut fw, &TextIngest::new("docs", &docs), &mut |_| {}).unwrap();
    }
    assert_same_results(&added, &results_of(&fresh, "emb16").unwrap(), "new field");
    assert!(vellum::verify::verify_database(db.path()).unwrap().is_ok());

    // A rollback that removes the field waits for a staged re-encode to finish or be aborted
    // (its pieces hold the current fields).
    w.begin_staged("docs", "emb", &encoders_of(&db, &tiny("tiny-b")))
        .unwrap();
    let e = w.rollback_version("docs").unwrap_err().to_string();
    assert!(e.contains("abort it"), "{e}");
    assert!(w.abort_staged("docs").unwrap());
    // Rollback removes the field (and its encoders); a second one brings it back.
    let back = w.rollback_version("docs").unwrap();
    assert_eq!((back.from_version, back.to_version), (1, 0));
    let e = results_of(&db, "emb16").unwrap_err();
    assert!(matches!(e, Error::NoSuchField { .. }), "{e}");
    assert_eq!(results(&db), before);
    let reopened = Database::open(db.path()).unwrap();
    assert!(reopened
        .snapshot()
        .unwrap()
        .collection("docs")
        .unwrap()
        .encoders("emb16")
        .is_none());
    assert!(vellum::verify::verify_database(db.path()).unwrap().is_ok());
    w.rollback_version("docs").unwrap();
    assert_same_results(&results_of(&db, "emb16").unwrap(), &added, "rolled forward");
    assert_eq!(results(&db), before);

    // Documents ingested afterwards are encoded into both fields.
    let more = t.path().join("more.jsonl");
    std::fs::write(
        &more,
        "{\"id\": \"extra\", \"text\": \"a command line tool\"}\n",
    )
    .unwrap();
    ingest_text(&mut w, &TextIngest::new("docs", &more), &mut |_| {}).unwrap();
    let snap = db.snapshot().unwrap();
    let doc = snap
        .collection("docs")
        .unwrap()
        .get("extra")
        .unwrap()
        .unwrap();
    assert_eq!(doc.dense("emb16").unwrap().to_f32_vec().len(), 16);
    assert_eq!(doc.dense("emb").unwrap().to_f32_vec().len(), 32);
}

#[test]
fn bad_reencodes_are_refused_and_lose_nothing() {
    let t = tempfile::tempdir().unwrap();
    let db = database(&t.path().join("db"), &tiny("tiny-a"), 30);
    let before = results(&db);
    let generation = db.snapshot().unwrap().generation();
    let mut w = db.writer().unwrap();

    // Another dimension: the field keeps its shape (a new field is the way: --new-field).
    let choice = EncoderChoice {
        passage: tiny("tiny-b"),
        passage_options: EncoderOptions::parse("pooling=cls,normalize=true,dims=16").unwrap(),
        ..Default::default()
    };
    let small = prepare_encoders(db.path(), &choice).unwrap();
    let e = reencode(&mut w, &job(Some(small), 10), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("emb") && e.contains("16") && e.contains("32") && e.contains("--new-field"),
        "{e}"
    );

    // Unknown field, and rollback with no kept version.
    let e = reencode(
        &mut w,
        &Reencode::new("docs", "nope", Some(encoders_of(&db, &tiny("tiny-b")))),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("nope"), "{e}");
    let e = w.rollback_version("docs").unwrap_err().to_string();
    assert!(e.contains("no previous encoder version"), "{e}");
    let e = reencode(&mut w, &job(None, 10), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("name the new encoder"), "{e}");
    assert_eq!(db.snapshot().unwrap().generation(), generation);

    // A document whose vector was given (no text): refused, naming it; nothing lost.
    let snap = db.snapshot().unwrap();
    let v = snap
        .collection("docs")
        .unwrap()
        .get("0ad")
        .unwrap()
        .unwrap();
    let doc = vellum::Document::new("vector-only")
        .with_dense("emb", v.dense("emb").unwrap().to_f32_vec());
    drop(snap);
    w.add("docs", doc).unwrap();
    w.commit().unwrap();
    let e = reencode(
        &mut w,
        &job(Some(encoders_of(&db, &tiny("tiny-b"))), 10),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("vector-only") && e.contains("no text"), "{e}");
    w.abort_staged("docs").unwrap();
    drop(w);
    let snap = db.snapshot().unwrap();
    assert_eq!(snap.collection("docs").unwrap().len(), 31);
    drop(snap);
    let mut w = db.writer().unwrap();
    w.delete("docs", "vector-only").unwrap();
    w.commit().unwrap();
    assert_eq!(results(&db), before);
}

const ENV_DIR: &str = "VELLUM_REENCODE_CHILD_DIR";

/// The child's workload, run until killed: re-encode to whichever tiny model the field is not
/// on (resuming a staged re-encode first), forever.
fn child(dir: &Path) {
    let db = Database::open(dir).unwrap();
    loop {
        let mut w = db.writer().unwrap();
        let staged = w
            .committed()
            .manifest()
            .collection("docs")
            .unwrap()
            .versions
            .staged
            .is_some();
        let encoders = if staged {
            None
        } else {
            let on_a = w
                .committed()
                .collection("docs")
                .unwrap()
                .encoders("emb")
                .unwrap()
                .passage
                .source
                .ends_with("tiny-a");
            Some(encoders_of(
                &db,
                &tiny(if on_a { "tiny-b" } else { "tiny-a" }),
            ))
        };
        reencode(&mut w, &job(encoders, 6), &mut |_| {}).unwrap();
    }
}

#[test]
fn reencode_child_process_entry() {
    if let Ok(dir) = std::env::var(ENV_DIR) {
        child(Path::new(&dir));
    }
}

#[test]
fn sigkill_during_reencode_leaves_one_version_and_the_rerun_completes() {
    let iters: u64 = std::env::var("VELLUM_REENCODE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("db");
    let db = database(&dir, &tiny("tiny-a"), 60);
    let on_a = results(&db);
    drop(db);
    let on_b = results(&database(&t.path().join("b/db"), &tiny("tiny-b"), 60));
    let mut rng = Rng(0xdead);
    let (mut switches, mut last_version) = (0, 1);
    let mut staged_seen = 0;
    for i in 0..iters {
        kill_child_after(
            "reencode::reencode_child_process_entry",
            ENV_DIR,
            &dir,
            Duration::from_millis(20 + rng.below(250)),
            &format!("iteration {i}"),
        );
        let db = Database::open(&dir).unwrap();
        let report = vellum::verify::verify_database(&dir).unwrap();
        assert!(report.is_ok(), "iteration {i}: {:?}", report.problems);
        let snap = db.snapshot().unwrap();
        let c = snap.collection("docs").unwrap();
        let source = c.encoders("emb").unwrap().passage.source.clone();
        let entry = snap.manifest().collection("docs").unwrap();
        staged_seen += entry.versions.staged.is_some() as u32;
        let version = entry.versions.current_of("emb");
        assert_eq!(c.len(), 60, "iteration {i}");
        drop(snap);
        let want = if source.ends_with("tiny-a") {
            &on_a
        } else {
            &on_b
        };
        assert_same_results(&results(&db), want, &format!("iteration {i} ({source})"));
        if version != last_version {
            switches += 1;
            last_version = version;
        }
    }
    eprintln!("{iters} kills: {switches} switches, {staged_seen} during staging");
    assert!(
        switches >= 2,
        "only {switches} switches completed across {iters} kills"
    );
    assert!(
        staged_seen >= 2,
        "only {staged_seen} kills landed during staging"
    );
    // A new writer removes what the killed ones left behind.
    drop(Database::open(&dir).unwrap().writer().unwrap());
    let report = vellum::verify::verify_database(&dir).unwrap();
    assert!(
        report.is_ok() && report.unreferenced_files.is_empty(),
        "{report:?}"
    );
}
