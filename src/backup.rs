//! Online backup: a consistent copy of a live database, taken while a writer keeps committing.
//!
//! A plain file copy of a database directory is consistent only while no writer runs: a commit or
//! a compaction during the copy can leave a `MANIFEST` that names a tombstone file the copy lacks,
//! or a half-copied merged segment. [`Database::backup_to`] copies one pinned snapshot instead. The
//! snapshot keeps every file of its commit mapped, so the bytes it copies are that commit's even if
//! the writer deletes the files meanwhile (POSIX unlink semantics, as for every reader); the
//! destination gets the files first (each fsynced), the manifest last (atomically), and is then
//! verified. Embedded model copies (`.models/`) are copied from the source directory; if a commit
//! collects one during the backup, the backup starts again from the newer commit.

use std::path::{Path, PathBuf};

use crate::db::Database;
use crate::error::{Error, Result};
use crate::format::manifest;
use crate::storage::{self, Directory, FsDirectory};

/// What [`Database::backup_to`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The commit generation the backup holds.
    pub generation: u64,
    /// Segment and tombstone files copied.
    pub files: usize,
    /// Bytes of segment and tombstone files copied.
    pub bytes: u64,
    /// Embedded model copies copied.
    pub models: usize,
}

impl Database {
    /// Copies the last commit of this database into a new database at `dest` (which must not
    /// exist, or be an empty directory) while writers may keep committing, then verifies the
    /// copy. The backup opens anywhere, at exactly that commit.
    ///
    /// ```
    /// # use vellum::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = Database::create(dir.path().join("db")).unwrap();
    /// let mut w = db.writer().unwrap();
    /// w.create_collection("c", Schema::new().with_field(FieldSpec::parse("e:dense:2:f32:ip").unwrap())).unwrap();
    /// w.add("c", Document::new("a").with_dense("e", vec![1.0, 0.0])).unwrap();
    /// w.commit().unwrap();
    /// let info = db.backup_to(dir.path().join("copy")).unwrap();
    /// let copy = Database::open(dir.path().join("copy")).unwrap();
    /// assert_eq!(copy.snapshot().unwrap().generation(), info.generation);
    /// ```
    pub fn backup_to(&self, dest: impl AsRef<Path>) -> Result<BackupInfo> {
        let dest = dest.as_ref();
        if dest.exists() {
            let empty = std::fs::read_dir(dest)
                .map_err(|e| Error::io(dest, e))?
                .next()
                .is_none();
            if !empty {
                return Err(Error::AlreadyExists {
                    path: dest.to_path_buf(),
                });
            }
        }
        let mut last = None;
        for _ in 0..16 {
            match self.backup_once(dest) {
                Err(Error::Io { path, source })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && path.starts_with(self.path()) =>
                {
                    // A model copy of this commit was collected by a newer one: start again.
                    last = Some(Error::Io { path, source });
                    std::fs::remove_dir_all(dest).map_err(|e| Error::io(dest, e))?;
                }
                other => return other,
            }
        }
        Err(last.expect("loop ran"))
    }

    fn backup_once(&self, dest: &Path) -> Result<BackupInfo> {
        let snap = self.snapshot()?;
        let out = FsDirectory::create_root(dest)?;
        let mut info = BackupInfo {
            generation: snap.generation(),
            files: 0,
            bytes: 0,
            models: 0,
        };
        for c in snap.collections() {
            let cdir = PathBuf::from(c.name());
            out.create_dir_all(&cdir)?;
            for slot in c.slots() {
                let seg = &slot.segment;
                let name = manifest::segment_file_name(slot.entry.id);
                storage::write_new(&out, &cdir.join(&name), seg.file_bytes())?;
                info.files += 1;
                info.bytes += seg.file_len();
                if let (Some(d), Some(bitmap)) = (slot.entry.deletes, &slot.deletes) {
                    let name = manifest::deletes_file_name(slot.entry.id, d.file_id);
                    let bytes = bitmap.encode(slot.entry.id);
                    storage::write_new(&out, &cdir.join(&name), &bytes)?;
                    info.files += 1;
                    info.bytes += bytes.len() as u64;
                }
            }
            out.sync_dir(&cdir)?;
        }
        // The copy holds the live version only: a re-encode in progress and the version kept
        // for rollback stay with the original.
        let mut copied = snap.manifest().clone();
        for c in &mut copied.collections {
            c.versions.staged = None;
            c.versions.previous = None;
        }
        let models = copied.embedded_models();
        if !models.is_empty() {
            let source = self.directory().path_of(Path::new(""));
            for hex in &models {
                let rel = Path::new(crate::encode::EMBEDDED_MODELS_DIR).join(hex);
                let from = source.join(&rel);
                if !from.is_dir() {
                    return Err(Error::io(
                        from,
                        std::io::Error::from(std::io::ErrorKind::NotFound),
                    ));
                }
                let model = crate::encode::ModelDir::at(from.clone(), hex)?;
                model.copy_into(&out, &rel)?;
                // A copy collected while being read is incomplete: start again (as above).
                let copied = crate::encode::ModelDir::at(dest.join(&rel), hex)
                    .and_then(|m| m.fingerprint())
                    .unwrap_or_default();
                if copied != format!("xxh3-128:{hex}") {
                    return Err(Error::io(
                        from,
                        std::io::Error::from(std::io::ErrorKind::NotFound),
                    ));
                }
                info.models += 1;
            }
        }
        out.sync_dir(Path::new(""))?;
        storage::replace_atomically(&out, Path::new(manifest::FILE_NAME), &copied.encode())?;
        let report = crate::verify::verify_directory(&out)?;
        if !report.is_ok() {
            return Err(Error::corrupt(
                dest,
                "backup",
                0,
                format!("the copy does not verify: {}", report.problems.join("; ")),
            ));
        }
        Ok(info)
    }
}
