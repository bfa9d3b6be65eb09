//! Flipped bytes in every kind of section: `verify` reports them; opening, reading and searching
//! never panic.

use std::path::{Path, PathBuf};

use vellum::format::segment::Segment;
use vellum::{Database, SearchRequest};

use crate::common::build_all_kinds;
use crate::lifecycle::copy_dir;

/// Exercises the read path; errors are fine, panics are not.
fn read_everything(dir: &Path) {
    let Ok(db) = Database::open(dir) else { return };
    let Ok(snap) = db.snapshot() else { return };
    let Ok(c) = snap.collection("docs") else {
        return;
    };
    let _ = c.search(&SearchRequest::dense("emb", &[0.3; 8], 5));
    let _ = c.search(&SearchRequest::dense_batch("emb", &[0.3; 16], 5));
    let _ = c.search(&SearchRequest::multi("tok", &[0.3; 8], 5));
    for i in 0..32 {
        if let Ok(Some(d)) = c.get(&format!("doc-{i}")) {
            let _ = (
                d.text(),
                d.metadata_json(),
                d.dense("emb"),
                d.multi("tok"),
                d.tensor("img"),
            );
        }
    }
    let _ = c.for_each_live(|d| {
        d.id()?;
        Ok(())
    });
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "vseg"))
        .collect();
    v.sort();
    v
}

fn flip_and_check(pristine: &Path, rel: &Path, offset: u64, what: &str) {
    let work = tempfile::tempdir().unwrap();
    copy_dir(pristine, work.path());
    let file = work.path().join(rel);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[offset as usize] ^= 0x5A;
    std::fs::write(&file, &bytes).unwrap();
    let report = vellum::verify::verify_database(work.path()).unwrap();
    assert!(
        !report.is_ok(),
        "{what}: flip at {} offset {offset} not reported",
        rel.display()
    );
    read_everything(work.path());
}

#[test]
fn every_section_kind_is_protected() {
    let dir = tempfile::tempdir().unwrap();
    build_all_kinds(dir.path());
    let mut kinds_seen = std::collections::BTreeSet::new();
    for seg_path in segment_files(dir.path()) {
        let rel = seg_path.strip_prefix(dir.path()).unwrap().to_path_buf();
        let seg = Segment::open(&seg_path, 0).unwrap();
        // Header fields and the section table.
        for off in [0, 8, 16, 24, 40, 56, 64, 64 + 8, 64 + 40] {
            flip_and_check(dir.path(), &rel, off, "header/table");
        }
        for s in seg.sections() {
            if s.length == 0 {
                continue;
            }
            kinds_seen.insert(s.kind.name());
            for off in [s.offset, s.offset + s.length / 2, s.offset + s.length - 1] {
                flip_and_check(dir.path(), &rel, off, s.kind.name());
            }
        }
    }
    assert_eq!(
        kinds_seen.len(),
        13,
        "every section kind covered: {kinds_seen:?}"
    );
    // Tombstone file and manifest, every byte.
    let del: Vec<PathBuf> = std::fs::read_dir(dir.path().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "vdel"))
        .collect();
    assert_eq!(del.len(), 1);
    for (rel, len) in [
        (
            del[0].strip_prefix(dir.path()).unwrap().to_path_buf(),
            std::fs::metadata(&del[0]).unwrap().len(),
        ),
        (
            PathBuf::from("MANIFEST"),
            std::fs::metadata(dir.path().join("MANIFEST"))
                .unwrap()
                .len(),
        ),
    ] {
        for off in (0..len).step_by(7) {
            flip_and_check(dir.path(), &rel, off, "small file");
        }
    }
}

#[test]
fn truncated_and_missing_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    build_all_kinds(dir.path());
    for seg in segment_files(dir.path()) {
        let len = std::fs::metadata(&seg).unwrap().len();
        for cut in [0, 10, 63, 64, 200, len / 2, len - 1] {
            let work = tempfile::tempdir().unwrap();
            copy_dir(dir.path(), work.path());
            let target = work.path().join(seg.strip_prefix(dir.path()).unwrap());
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .unwrap();
            f.set_len(cut).unwrap();
            let err = Database::open(work.path()).unwrap().snapshot().unwrap_err();
            assert!(err.is_corruption(), "cut at {cut}: {err}");
            assert!(
                err.to_string().contains(".vseg"),
                "error names the file: {err}"
            );
            assert!(!vellum::verify::verify_database(work.path())
                .unwrap()
                .is_ok());
        }
    }
    let work = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), work.path());
    std::fs::remove_file(&segment_files(work.path())[0]).unwrap();
    let err = Database::open(work.path()).unwrap().snapshot().unwrap_err();
    assert!(err.to_string().contains("No such file"), "{err}");
}

/// A damaged version byte is damage, not a newer file: only a version field in a header that
/// passes its checksum asks for a newer vellum.
#[test]
fn a_flipped_version_byte_is_corruption_not_a_newer_format() {
    let dir = tempfile::tempdir().unwrap();
    build_all_kinds(dir.path());
    let seg_path = segment_files(dir.path()).remove(0);
    let good = std::fs::read(&seg_path).unwrap();
    let mut flipped = good.clone();
    flipped[8] ^= 0x02;
    let err = Segment::from_bytes(&seg_path, 0, &flipped).unwrap_err();
    assert!(matches!(err, vellum::Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("version field reads 3"), "{err}");
    // The same version with a valid header checksum: written by a newer vellum.
    let mut newer = good;
    newer[8..12].copy_from_slice(&2u32.to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64(&newer[..56]);
    newer[56..64].copy_from_slice(&sum.to_le_bytes());
    let err = Segment::from_bytes(&seg_path, 0, &newer).unwrap_err();
    assert!(
        matches!(err, vellum::Error::UnsupportedVersion { found: 2, .. }),
        "{err}"
    );
}

/// Flipped bytes anywhere in a PLAID section (header, codec, codes, lists, residuals): `verify`
/// reports them; opening and PLAID searches return errors or results, never panic.
#[test]
fn plaid_sections_are_protected() {
    use vellum::{Document, FieldSpec, Schema};
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "docs",
        Schema::new().with_field(FieldSpec::parse("tok:multi:8:f32:ip").unwrap()),
    )
    .unwrap();
    w.set_plaid(
        "docs",
        "tok",
        Some(vellum::meta::PlaidParams {
            min_rows: 1,
            centroids: Some(4),
            ..Default::default()
        }),
    )
    .unwrap();
    for i in 0..40 {
        let v: Vec<f32> = (0..8 * (1 + i % 3))
            .map(|j| ((i * 7 + j * 3) % 11) as f32 - 5.0)
            .collect();
        w.add(
            "docs",
            Document::new(format!("doc-{i}")).with_multi("tok", v),
        )
        .unwrap();
    }
    w.commit().unwrap();
    drop(w);
    let segs = segment_files(dir.path());
    assert_eq!(segs.len(), 1);
    let rel = segs[0].strip_prefix(dir.path()).unwrap().to_path_buf();
    let seg = Segment::open(&segs[0], 0).unwrap();
    let s = seg
        .sections()
        .iter()
        .find(|s| s.kind == vellum::format::segment::SectionKind::Plaid)
        .expect("a PLAID section")
        .to_owned();
    for off in (0..s.length).step_by((s.length as usize / 40).max(1)) {
        flip_and_check(dir.path(), &rel, s.offset + off, "plaid index");
    }
}
