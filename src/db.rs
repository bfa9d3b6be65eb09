//! Opening databases and taking consistent read snapshots.
//!
//! The read path starts at [`Database::snapshot`]: it reads `MANIFEST`, maps every live segment and
//! tombstone file, and validates their headers (not their bulk data). A [`Snapshot`] keeps its
//! files mapped, so it stays valid while writers commit and compact.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::collection::{Collection, SegmentSlot};
use crate::error::{Error, Result};
use crate::format::deletes::DeleteBitmap;
use crate::format::manifest::{self, Manifest};
use crate::format::segment::Segment;
use crate::storage;
use crate::writer::{Writer, WriterOptions};

/// A database directory. Cheap to clone; holds no open files itself.
///
/// ```
/// use vellum::{Database, Document, Schema, FieldSpec, DType, Metric, SearchRequest};
/// let dir = tempfile::tempdir().unwrap();
/// let db = Database::create(dir.path().join("db")).unwrap();
/// let mut w = db.writer().unwrap();
/// w.create_collection("docs", Schema::new().with_field(FieldSpec::dense("emb", 2, DType::F32, Metric::Ip))).unwrap();
/// w.add("docs", Document::new("a").with_dense("emb", vec![1.0, 0.0])).unwrap();
/// w.add("docs", Document::new("b").with_dense("emb", vec![0.0, 1.0])).unwrap();
/// w.commit().unwrap();
/// let snap = db.snapshot().unwrap();
/// let hits = snap.collection("docs").unwrap().search(&SearchRequest::dense("emb", &[0.9, 0.1], 1)).unwrap();
/// assert_eq!(hits[0][0].id, "a");
/// ```
#[derive(Debug, Clone)]
pub struct Database {
    dir: PathBuf,
}

impl Database {
    /// Creates a new, empty database at `dir` (created if missing; must not hold a database).
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let _lock = storage::WriterLock::acquire(&dir)?;
        if dir.join(manifest::FILE_NAME).exists() {
            return Err(Error::AlreadyExists { path: dir });
        }
        storage::replace_file_atomically(&dir, manifest::FILE_NAME, &Manifest::default().encode())?;
        Ok(Database { dir })
    }

    /// Opens an existing database (checks that its manifest is readable).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let db = Database {
            dir: dir.as_ref().to_path_buf(),
        };
        db.read_manifest()?;
        Ok(db)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads and decodes the current manifest.
    pub fn read_manifest(&self) -> Result<Manifest> {
        let path = self.dir.join(manifest::FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotADatabase {
                    path: self.dir.clone(),
                })
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        Manifest::decode(&path, &bytes)
    }

    /// A consistent view of the last commit. Never blocks on writers.
    ///
    /// Files of older commits are deleted by the writer once a newer manifest is published; if one
    /// disappears between reading the manifest and mapping it, the snapshot is retaken from the
    /// newer manifest.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let mut last_err = None;
        for _ in 0..16 {
            let manifest = self.read_manifest()?;
            match Snapshot::load(&self.dir, manifest) {
                Ok(s) => return Ok(s),
                Err(Error::Io { path, source })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    last_err = Some(Error::Io { path, source });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("loop ran"))
    }

    /// Opens the single writer (fails with [`Error::Locked`] if another one is open).
    pub fn writer(&self) -> Result<Writer> {
        Writer::open(self.dir.clone(), WriterOptions::default())
    }

    /// Opens the writer with options.
    pub fn writer_with(&self, options: WriterOptions) -> Result<Writer> {
        Writer::open(self.dir.clone(), options)
    }
}

/// A consistent, immutable view of one commit.
#[derive(Debug, Clone)]
pub struct Snapshot {
    manifest: Arc<Manifest>,
    collections: Vec<Arc<Collection>>,
}

impl Snapshot {
    pub(crate) fn load(dir: &Path, manifest: Manifest) -> Result<Self> {
        Self::load_reusing(dir, manifest, None)
    }

    /// Loads a snapshot, reusing already open segments of `previous` (same file id = same file).
    pub(crate) fn load_reusing(
        dir: &Path,
        manifest: Manifest,
        previous: Option<&Snapshot>,
    ) -> Result<Self> {
        let mut collections = Vec::with_capacity(manifest.collections.len());
        for entry in &manifest.collections {
            let cdir = dir.join(&entry.name);
            let mut slots = Vec::with_capacity(entry.segments.len());
            for s in &entry.segments {
                let reused = previous
                    .and_then(|p| p.collection(&entry.name).ok())
                    .and_then(|c| c.slots().iter().find(|slot| slot.entry.id == s.id))
                    .map(|slot| slot.segment.clone());
                let segment = match reused {
                    Some(seg) => seg,
                    None => {
                        let path = cdir.join(manifest::segment_file_name(s.id));
                        let seg = Segment::open(&path, s.id)?;
                        if seg.schema() != &entry.schema {
                            return Err(Error::corrupt(&path, "schema", 0, format!("segment schema differs from collection {:?}'s schema in the manifest", entry.name)));
                        }
                        if seg.rows() as u64 != s.rows || seg.file_len() != s.bytes {
                            return Err(Error::corrupt(&path, "segment header", 16, format!(
                                "segment has {} rows / {} bytes, the manifest says {} rows / {} bytes",
                                seg.rows(), seg.file_len(), s.rows, s.bytes
                            )));
                        }
                        Arc::new(seg)
                    }
                };
                let deletes = match s.deletes {
                    None => None,
                    Some(d) => {
                        let path = cdir.join(manifest::deletes_file_name(s.id, d.file_id));
                        let map = storage::map_file(&path)?;
                        let bitmap =
                            DeleteBitmap::decode(&path, map.bytes(), s.id, segment.rows(), false)?;
                        if bitmap.count() != d.count {
                            return Err(Error::corrupt(
                                &path,
                                "deletes header",
                                32,
                                format!(
                                    "{} deleted rows, the manifest says {}",
                                    bitmap.count(),
                                    d.count
                                ),
                            ));
                        }
                        Some(Arc::new(bitmap))
                    }
                };
                slots.push(SegmentSlot {
                    entry: s.clone(),
                    segment,
                    deletes,
                });
            }
            collections.push(Arc::new(
                Collection::new(entry.name.clone(), entry.schema.clone(), slots)
                    .with_indexes(entry.indexes.clone())
                    .with_encoders(entry.encoders.clone(), dir),
            ));
        }
        Ok(Snapshot {
            manifest: Arc::new(manifest),
            collections,
        })
    }

    /// The commit generation this snapshot shows.
    pub fn generation(&self) -> u64 {
        self.manifest.generation
    }

    /// The manifest this snapshot was built from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// All collections.
    pub fn collections(&self) -> &[Arc<Collection>] {
        &self.collections
    }

    /// The collection named `name`.
    pub fn collection(&self, name: &str) -> Result<&Arc<Collection>> {
        self.collections
            .iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| Error::NoSuchCollection {
                name: name.to_string(),
                available: self.manifest.collection_names(),
            })
    }
}
