//! Full integrity check of a database: every checksum, every structure, cross-file consistency.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::deletes::DeleteBitmap;
use crate::format::manifest::{self, Manifest};
use crate::format::segment::Segment;
use crate::storage::{Directory, FsDirectory};

/// The outcome of [`verify_database`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Manifest generation checked (0 if the manifest could not be read).
    pub generation: u64,
    /// Collections checked.
    pub collections: usize,
    /// Segment files checked.
    pub segments: usize,
    /// Live documents counted.
    pub live_documents: u64,
    /// Bytes of segment and tombstone files checked.
    pub bytes: u64,
    /// Problems found; empty means the database is intact.
    pub problems: Vec<String>,
    /// Files not referenced by the manifest (left by an interrupted writer; harmless, removed by
    /// the next writer), embedded model copies included.
    pub unreferenced_files: Vec<String>,
    /// A file of the checked commit disappeared during the check (a concurrent commit collected
    /// it); [`verify_directory`] then checks the newer commit.
    vanished: bool,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the database at `dir`. Returns `Err` only when `dir` is not a database at all; every
/// problem with its files is listed in the report.
pub fn verify_database(dir: &Path) -> Result<VerifyReport> {
    verify_directory(&FsDirectory::new(dir))
}

/// [`verify_database`] for a database in any [`Directory`].
///
/// The check reads one commit: when a file of it disappears while being checked because a writer
/// published a newer commit and collected the file (not damage), the check starts again on the
/// newer commit, as snapshots do.
pub fn verify_directory(store: &dyn Directory) -> Result<VerifyReport> {
    let mut report = verify_once(store)?;
    for _ in 0..16 {
        if !report.vanished {
            break;
        }
        let now = crate::snapshot::read_manifest(store)
            .map(|m| m.generation)
            .unwrap_or(report.generation);
        if now == report.generation {
            break;
        }
        report = verify_once(store)?;
    }
    Ok(report)
}

fn verify_once(store: &dyn Directory) -> Result<VerifyReport> {
    let dir = store.path_of(Path::new(""));
    let dir = dir.as_path();
    let mut report = VerifyReport::default();
    let mrel = Path::new(manifest::FILE_NAME);
    let mpath = store.path_of(mrel);
    let bytes = match store.read(mrel) {
        Ok(b) => b,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotADatabase {
                path: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(e),
    };
    let m = match Manifest::decode(&mpath, &bytes) {
        Ok(m) => m,
        Err(e) => {
            report.problems.push(e.to_string());
            return Ok(report);
        }
    };
    report.generation = m.generation;
    for c in &m.collections {
        report.collections += 1;
        let crel = Path::new(&c.name);
        let cdir = dir.join(&c.name);
        let mut live_ids: HashSet<String> = HashSet::new();
        let mut referenced = BTreeSet::new();
        // Segments of retained encoder versions (a re-encode in progress, the version kept for
        // rollback) are checked as files; their rows are not live.
        // Each with the fields of its version (a re-encode into a new field adds one).
        let retained = [&c.versions.staged, &c.versions.previous]
            .into_iter()
            .flatten()
            .flat_map(|v| {
                let schema = v.schema_or(&c.schema);
                v.segments.iter().map(move |s| (s, false, schema))
            });
        let live = c.segments.iter().map(|s| (s, true, &c.schema));
        for (s, live, schema) in live.chain(retained) {
            if live {
                report.segments += 1;
            }
            let spath = cdir.join(manifest::segment_file_name(s.id));
            referenced.insert(manifest::segment_file_name(s.id));
            let srel = crel.join(manifest::segment_file_name(s.id));
            let seg = match store
                .map(&srel)
                .and_then(|map| Segment::from_map(&spath, s.id, map))
            {
                Ok(seg) => seg,
                Err(e) => {
                    report.vanished |= is_not_found(&e);
                    report.problems.push(e.to_string());
                    continue;
                }
            };
            report.bytes += seg.file_len();
            if let Err(e) = seg.verify() {
                report.problems.push(e.to_string());
                continue;
            }
            if seg.schema() != schema {
                report.problems.push(format!(
                    "{}: schema differs from collection {:?} in the manifest",
                    spath.display(),
                    c.name
                ));
            }
            if seg.rows() as u64 != s.rows || seg.file_len() != s.bytes {
                report.problems.push(format!(
                    "{}: {} rows / {} bytes, manifest says {} / {}",
                    spath.display(),
                    seg.rows(),
                    seg.file_len(),
                    s.rows,
                    s.bytes
                ));
                continue;
            }
            let deletes = match s.deletes {
                None => None,
                Some(d) => {
                    let name = manifest::deletes_file_name(s.id, d.file_id);
                    referenced.insert(name.clone());
                    let dpath = cdir.join(&name);
                    let bm = store.map(&crel.join(&name)).and_then(|map| {
                        report.bytes += map.bytes().len() as u64;
                        DeleteBitmap::decode(&dpath, map.bytes(), s.id, seg.rows(), true)
                    });
                    match bm {
                        Ok(bm) if bm.count() == d.count => Some(bm),
                        Ok(bm) => {
                            report.problems.push(format!(
                                "{}: {} deleted rows, manifest says {}",
                                dpath.display(),
                                bm.count(),
                                d.count
                            ));
                            continue;
                        }
                        Err(e) => {
                            report.vanished |= is_not_found(&e);
                            report.problems.push(e.to_string());
                            continue;
                        }
                    }
                }
            };
            if !live {
                continue;
            }
            for row in 0..seg.rows() {
                if deletes.as_ref().is_some_and(|d| d.contains(row)) {
                    continue;
                }
                report.live_documents += 1;
                let id = seg.doc_id(row).map(str::to_string).unwrap_or_default();
                if !live_ids.insert(id.clone()) {
                    report.problems.push(format!("collection {:?}: id {id:?} is live in more than one segment (second copy in {})", c.name, spath.display()));
                }
            }
        }
        let retained = [&c.versions.staged, &c.versions.previous]
            .into_iter()
            .flatten()
            .map(|v| (&v.field, &v.encoders));
        for (field, enc) in c.encoders.iter().chain(retained) {
            for (role, r) in [("passage", &enc.passage), ("query", &enc.query)] {
                if r.embedded {
                    verify_embedded_model(store, &c.name, field, role, r, &mut report);
                }
            }
        }
        if let Ok(Some(names)) = store.list(crel) {
            for name in names {
                if !referenced.contains(&name) {
                    report.unreferenced_files.push(format!("{}/{name}", c.name));
                }
            }
        }
    }
    let models = Path::new(crate::encode::EMBEDDED_MODELS_DIR);
    if let Ok(Some(names)) = store.list(models) {
        let keep = m.embedded_models();
        for name in names {
            if crate::encode::is_model_dir_name(&name) && !keep.contains(&name) {
                report
                    .unreferenced_files
                    .push(format!("{}/{name}", models.display()));
            }
        }
    }
    Ok(report)
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// An embedded model copy must exist and still have the fingerprint the manifest records.
fn verify_embedded_model(
    store: &dyn Directory,
    collection: &str,
    field: &str,
    role: &str,
    record: &crate::encode::EncoderRecord,
    report: &mut VerifyReport,
) {
    let mrel = Path::new(crate::encode::EMBEDDED_MODELS_DIR).join(record.fingerprint_hex());
    let mdir = store.path_of(&mrel);
    let what = format!("collection {collection:?} field {field:?}: embedded {role} encoder");
    for required in ["config.json", "tokenizer.json", "model.safetensors"] {
        if !store.exists(&mrel.join(required)).unwrap_or(false) {
            report
                .problems
                .push(format!("{what} at {}: missing {required}", mdir.display()));
            return;
        }
    }
    let found = crate::encode::fingerprint_files(|name| {
        let rel = mrel.join(name);
        if !store.exists(&rel)? {
            return Ok(None);
        }
        store.map(&rel).map(Some)
    });
    match found {
        Ok(f) if f == record.fingerprint => {}
        Ok(f) => report.problems.push(format!(
            "{what} at {}: files hash to {f}, the manifest records {}",
            mdir.display(),
            record.fingerprint
        )),
        Err(e) => report.problems.push(format!("{what}: {e}")),
    }
}
