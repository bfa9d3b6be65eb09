//! Creating and opening databases; the entry points of the read path ([`Database::snapshot`]) and
//! the write path ([`Database::writer`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::manifest::{self, Manifest};
use crate::snapshot::{read_manifest, Snapshot};
use crate::storage::{self, Directory, FsDirectory};
use crate::writer::{Writer, WriterOptions};

/// A database directory (on disk, or any [`Directory`]). Cheap to clone; holds no open files
/// itself.
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
    store: Arc<dyn Directory>,
    /// The last snapshot taken: the next one reuses its open segments (same file id, same
    /// immutable file) and what they keep, such as metadata filter columns.
    last: Arc<parking_lot::Mutex<Option<Snapshot>>>,
}

impl Database {
    /// Creates a new, empty database at `dir` (created if missing, its entry made durable; must
    /// not hold a database).
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        Self::create_in(Arc::new(FsDirectory::create_root(dir.as_ref())?))
    }

    /// Opens an existing database (checks that its manifest is readable).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_in(Arc::new(FsDirectory::new(dir.as_ref())))
    }

    /// Creates a new, empty database in `store` (for example a
    /// [`MemDirectory`](crate::storage::MemDirectory)).
    pub fn create_in(store: Arc<dyn Directory>) -> Result<Self> {
        let dir = store.path_of(Path::new(""));
        let rel = Path::new(manifest::FILE_NAME);
        // Checked before taking the lock too, so that creating over an open database says that a
        // database exists rather than that it is locked.
        if store.exists(rel)? {
            return Err(Error::AlreadyExists { path: dir });
        }
        let _lock = store.lock()?;
        if store.exists(rel)? {
            return Err(Error::AlreadyExists { path: dir });
        }
        storage::replace_atomically(&*store, rel, &Manifest::default().encode())?;
        Ok(Database {
            dir,
            store,
            last: Default::default(),
        })
    }

    /// Opens the database in `store` (checks that its manifest is readable).
    pub fn open_in(store: Arc<dyn Directory>) -> Result<Self> {
        let db = Database {
            dir: store.path_of(Path::new("")),
            store,
            last: Default::default(),
        };
        db.read_manifest()?;
        Ok(db)
    }

    /// The storage the database lives in.
    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.store
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads and decodes the current manifest.
    pub fn read_manifest(&self) -> Result<Manifest> {
        read_manifest(&*self.store)
    }

    /// A consistent view of the last commit. Never blocks on writers.
    ///
    /// Files of older commits are deleted by the writer once a newer manifest is published; if one
    /// disappears between reading the manifest and mapping it, the snapshot is retaken from the
    /// newer manifest.
    ///
    /// Segments already open in the previous snapshot of this `Database` (or a clone of it) are
    /// reused, not mapped and validated again; so are the structures they keep (the metadata
    /// columns filters build). The previous snapshot stays referenced until the next call.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let previous = self.last.lock().clone();
        let s = Snapshot::latest(&*self.store, previous.as_ref())?;
        *self.last.lock() = Some(s.clone());
        Ok(s)
    }

    /// Opens the single writer (fails with [`Error::Locked`] if another one is open).
    pub fn writer(&self) -> Result<Writer> {
        Writer::open(self.store.clone(), WriterOptions::default())
    }

    /// Opens the writer with options.
    pub fn writer_with(&self, options: WriterOptions) -> Result<Writer> {
        Writer::open(self.store.clone(), options)
    }
}
