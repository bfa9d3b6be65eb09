//! Deterministic crash tests: every durability boundary (file fsync, directory fsync, rename) of
//! create, commit, compaction and reindex is cut in turn on a `MemDirectory`, and the database
//! that survives the power cut must open at the last completed commit with nothing lost — exactly
//! the state before the operation, or (once the manifest swap is durable) exactly the state
//! after it — pass `verify`, and take a new commit.
//!
//! The SIGKILL loop in `crash.rs` remains the real-process check.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use vellum::hnsw::HnswParams;
use vellum::storage::{Durability, MemDirectory};
use vellum::verify::verify_directory;
use vellum::{Database, Result, WriterOptions};

use crate::common::{all_kinds_doc, all_kinds_schema, Rng};

/// What a database holds: collection → id → (text, metadata, dense, multi, tensor values), and
/// under the key `#segments` the collection's segments (rows, whether they carry a graph).
type Contents = BTreeMap<String, BTreeMap<String, String>>;

fn contents(db: &Database) -> Contents {
    let snap = db.snapshot().expect("the surviving database opens");
    let mut out = Contents::new();
    for c in snap.collections() {
        let mut docs = BTreeMap::new();
        c.for_each_live(|d| {
            let value = format!(
                "{}|{}|{:?}|{:?}|{:?}",
                d.text()?,
                d.metadata()?,
                d.dense("emb")?.to_f32_vec(),
                d.multi("tok")?.tokens.to_f32_vec(),
                d.tensor("img")?.data.to_f32_vec()
            );
            docs.insert(d.id()?.to_string(), value);
            Ok(())
        })
        .unwrap();
        let segments: Vec<(u32, bool)> = c
            .slots()
            .iter()
            .map(|s| (s.segment.rows(), s.segment.has_graph(0)))
            .collect();
        docs.insert("#segments".into(), format!("{segments:?}"));
        docs.insert(
            "#encoders".into(),
            serde_json::to_string(c.all_encoders()).unwrap(),
        );
        out.insert(c.name().to_string(), docs);
    }
    out
}

/// The base every operation starts from: two segments, one tombstone file.
fn setup(db: &Database) {
    let mut w = db.writer().unwrap();
    w.create_collection("docs", all_kinds_schema()).unwrap();
    let mut rng = Rng(11);
    for i in 0..12 {
        w.add("docs", all_kinds_doc(i, &mut rng)).unwrap();
    }
    w.commit().unwrap();
    for i in 12..20 {
        w.add("docs", all_kinds_doc(i, &mut rng)).unwrap();
    }
    w.delete("docs", "doc-2").unwrap();
    w.commit().unwrap();
}

/// A short name for a durability operation, e.g. `sync docs/seg-….vseg`.
fn describe(op: &Durability) -> String {
    let name = |p: &PathBuf| {
        let s = p.to_string_lossy().into_owned();
        // File ids are allocated deterministically, but keep the list readable.
        if s.is_empty() {
            ".".to_string()
        } else {
            s
        }
    };
    match op {
        Durability::SyncFile(p) => format!("sync {}", name(p)),
        Durability::SyncDir(p) => format!("syncdir {}", name(p)),
        Durability::Rename { from, to } => format!("rename {} -> {}", name(from), name(to)),
    }
}

/// Runs `op` once to learn its durability boundaries (checked against `expected`), then once per
/// boundary with the power cut there, checking the surviving database each time.
fn every_boundary(
    what: &str,
    with_base: bool,
    op: impl Fn(&Database) -> Result<()>,
    expected: &[&str],
) {
    let fresh = || {
        let mem = Arc::new(MemDirectory::new());
        let db = Database::create_in(mem.clone()).unwrap();
        if with_base {
            setup(&db);
        }
        (mem, db)
    };
    let (mem, db) = fresh();
    let before = contents(&db);
    let start = mem.boundaries().len();
    op(&db).unwrap();
    let after = contents(&db);
    let ops: Vec<String> = mem.boundaries()[start..].iter().map(describe).collect();
    assert_eq!(
        ops, expected,
        "{what}: the durability boundaries changed; update the list after checking that the new \
         order still follows format-spec/commit.md"
    );
    assert_ne!(before, after, "{what}: the operation must change something");
    // The last manifest swap (its directory fsync after the rename) publishes the operation's
    // change; an operation made of two commits (reindex) changes nothing visible in the first.
    let commit_point = (1..ops.len())
        .rfind(|&i| ops[i] == "syncdir ." && ops[i - 1].starts_with("rename MANIFEST"))
        .expect("a manifest swap ends with the database directory's fsync");

    for cut in 0..=ops.len() {
        let (mem, db) = fresh();
        mem.cut_power_after(cut);
        let result = op(&db);
        assert_eq!(
            result.is_ok(),
            cut == ops.len(),
            "{what}, cut at boundary {cut}: the operation must fail exactly when the power is cut"
        );
        drop(db);
        let image = Arc::new(mem.crash_image());
        let db = Database::open_in(image.clone())
            .unwrap_or_else(|e| panic!("{what}, cut at boundary {cut}: does not open: {e}"));
        let got = contents(&db);
        let expected_state = if cut > commit_point { &after } else { &before };
        assert!(
            &got == expected_state,
            "{what}, cut at boundary {cut} ({}): the database shows neither the last commit \
             nor, after the commit point, the new one",
            ops.get(cut).map_or("after the last", String::as_str)
        );
        let report = verify_directory(&*image).unwrap();
        assert!(
            report.is_ok(),
            "{what}, cut at boundary {cut}: verify: {:?}",
            report.problems
        );
        // A new writer collects the leftovers and commits on top.
        let mut w = db.writer().unwrap();
        if !got.contains_key("docs") {
            w.create_collection("docs", all_kinds_schema()).unwrap();
        }
        w.upsert("docs", all_kinds_doc(1000, &mut Rng(5))).unwrap();
        w.commit().unwrap();
        drop(w);
        let next = got.clone();
        let after_next = contents(&db);
        let docs = |c: &Contents| c.get("docs").map_or(0, |d| d.len() - 2);
        assert_eq!(docs(&after_next), docs(&next) + 1);
        assert!(verify_directory(&*image).unwrap().is_ok());
        assert!(
            verify_directory(&*image)
                .unwrap()
                .unreferenced_files
                .is_empty(),
            "{what}, cut at boundary {cut}: the next writer left garbage behind"
        );
    }
}

#[test]
fn create_survives_a_crash_at_every_boundary() {
    // Before the manifest is durable the directory is not a database; after, an empty one.
    for cut in 0..3 {
        let mem = Arc::new(MemDirectory::new());
        mem.cut_power_after(cut);
        let created = Database::create_in(mem.clone()).is_ok();
        let image = Arc::new(mem.crash_image());
        match Database::open_in(image.clone()) {
            Ok(db) => assert!(db.snapshot().unwrap().collections().is_empty()),
            Err(e) => {
                assert!(!created, "cut {cut}: created but does not open: {e}");
                assert!(matches!(e, vellum::Error::NotADatabase { .. }), "{e}");
                // Creating again works.
                Database::create_in(image).unwrap();
            }
        }
    }
    let mem = MemDirectory::new();
    Database::create_in(Arc::new(mem.clone())).unwrap();
    let ops: Vec<String> = mem.boundaries().iter().map(describe).collect();
    assert_eq!(
        ops,
        [
            "sync MANIFEST.tmp",
            "rename MANIFEST.tmp -> MANIFEST",
            "syncdir ."
        ]
    );
}

#[test]
fn commit_survives_a_crash_at_every_boundary() {
    every_boundary(
        "commit (adds, upsert, delete, new collection)",
        true,
        |db| {
            let mut w = db.writer()?;
            let mut rng = Rng(3);
            for i in 20..26 {
                w.add("docs", all_kinds_doc(i, &mut rng))?;
            }
            w.upsert("docs", all_kinds_doc(4, &mut rng))?;
            w.delete("docs", "doc-13")?;
            w.create_collection("more", all_kinds_schema())?;
            w.add("more", all_kinds_doc(0, &mut rng))?;
            w.commit()?;
            Ok(())
        },
        &[
            // Step 1: new segment files, written and fsynced.
            "sync docs/seg-0000000000000003.vseg",
            "sync more/seg-0000000000000004.vseg",
            // Step 2: new tombstone files (segment 0: upsert of doc-4; segment 1: doc-13).
            "sync docs/seg-0000000000000000.0000000000000005.vdel",
            "sync docs/seg-0000000000000001.0000000000000006.vdel",
            // Step 3: the collection directories, then the database directory (new collection).
            "syncdir docs",
            "syncdir more",
            "syncdir .",
            // Step 4: the manifest swap; its directory fsync is the commit point.
            "sync MANIFEST.tmp",
            "rename MANIFEST.tmp -> MANIFEST",
            "syncdir .",
        ],
    );
}

#[test]
fn commit_with_spilled_segments_survives_a_crash_at_every_boundary() {
    every_boundary(
        "commit of a batch spilled to segment files before the commit",
        true,
        |db| {
            let mut w = db.writer_with(WriterOptions {
                flush_bytes: 1,
                screen_min_rows: 1,
                ..WriterOptions::default()
            })?;
            let mut rng = Rng(9);
            for i in 20..23 {
                w.add("docs", all_kinds_doc(i, &mut rng))?;
            }
            w.delete("docs", "doc-20")?;
            w.commit()?;
            Ok(())
        },
        &[
            // Two segments spilled while adding, the last one at commit (id 6 went to the empty
            // remainder of the batch).
            "sync docs/seg-0000000000000003.vseg",
            "sync docs/seg-0000000000000004.vseg",
            "sync docs/seg-0000000000000005.vseg",
            "sync docs/seg-0000000000000003.0000000000000007.vdel",
            "syncdir docs",
            "syncdir .",
            "sync MANIFEST.tmp",
            "rename MANIFEST.tmp -> MANIFEST",
            "syncdir .",
        ],
    );
}

#[test]
fn compaction_survives_a_crash_at_every_boundary() {
    every_boundary(
        "compact",
        true,
        |db| {
            let mut w = db.writer()?;
            w.compact("docs")?;
            Ok(())
        },
        &[
            "sync docs/seg-0000000000000003.vseg",
            "syncdir docs",
            "sync MANIFEST.tmp",
            "rename MANIFEST.tmp -> MANIFEST",
            "syncdir .",
        ],
    );
}

#[test]
fn reindex_survives_a_crash_at_every_boundary() {
    every_boundary(
        "set_index + reindex",
        true,
        |db| {
            let mut w = db.writer()?;
            let params = HnswParams {
                min_rows: 1,
                ..Default::default()
            };
            w.set_index("docs", "emb", Some(params))?;
            w.reindex("docs")?;
            Ok(())
        },
        &[
            // The index declaration is committed first (a manifest-only commit)...
            "syncdir .",
            "sync MANIFEST.tmp",
            "rename MANIFEST.tmp -> MANIFEST",
            "syncdir .",
            // ... then the rewritten segment (with its graph) is published.
            "sync docs/seg-0000000000000003.vseg",
            "syncdir docs",
            "sync MANIFEST.tmp",
            "rename MANIFEST.tmp -> MANIFEST",
            "syncdir .",
        ],
    );
}

/// Binding encoders with embedded model copies (`create --embed-model`): the copy's files, its
/// sub-folder (`1_Pooling/`), the copy, `.models/` and the database directory are all durable
/// before the manifest that names the copy, so text search never meets a missing model file.
#[cfg(feature = "encoders")]
#[test]
fn embedding_a_model_survives_a_crash_at_every_boundary() {
    use vellum::encode::{prepare_encoders_in, EncoderChoice, EncoderOptions};
    // The tiny BERT in the sentence-transformers layout: modules.json and a 1_Pooling/ folder.
    let folder = tempfile::tempdir().unwrap();
    let model = folder.path().join("tiny-st");
    std::fs::create_dir_all(model.join("1_Pooling")).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(
            crate::common::fixture_path("encoders/tiny-a").join(f),
            model.join(f),
        )
        .unwrap();
    }
    std::fs::write(
        model.join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#,
    )
    .unwrap();
    std::fs::write(
        model.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 32, "pooling_mode_mean_tokens": true}"#,
    )
    .unwrap();
    every_boundary(
        "bind encoders with an embedded model copy",
        true,
        |db| {
            let mut w = db.writer()?;
            let choice = EncoderChoice {
                passage: model.display().to_string(),
                passage_options: EncoderOptions::parse("normalize=true,dims=8")?,
                embed: true,
                ..Default::default()
            };
            let records = prepare_encoders_in(&**db.directory(), &choice)?;
            w.set_encoders("docs", "emb", records)?;
            w.commit()?;
            Ok(())
        },
        &[
            // The copy, written under a temporary name: every file, then every folder, deepest
            // first.
            "sync .models/891d3afdd847f7632e52b3d491f9ba5f.tmp/config.json",
            "sync .models/891d3afdd847f7632e52b3d491f9ba5f.tmp/tokenizer.json",
            "sync .models/891d3afdd847f7632e52b3d491f9ba5f.tmp/model.safetensors",
            "sync .models/891d3afdd847f7632e52b3d491f9ba5f.tmp/modules.json",
            "sync .models/891d3afdd847f7632e52b3d491f9ba5f.tmp/1_Pooling/config.json",
            "syncdir .models/891d3afdd847f7632e52b3d491f9ba5f.tmp/1_Pooling",
            "syncdir .models/891d3afdd847f7632e52b3d491f9ba5f.tmp",
            // Renamed into place; `.models/` and (new `.models/`) the database directory synced.
            "rename .models/891d3afdd847f7632e52b3d491f9ba5f.tmp -> .models/891d3afdd847f7632e52b3d491f9ba5f",
            "syncdir .models",
            "syncdir .",
            // The commit that names the copy.
            "syncdir .",
            "sync MANIFEST.tmp",
            "rename MANIFEST.tmp -> MANIFEST",
            "syncdir .",
        ],
    );
}
