//! The write path: the single [`Writer`] of a database.
//!
//! Changes are buffered; documents are spilled to new (unpublished) segment files when the buffer
//! grows past [`WriterOptions::flush_bytes`]. [`Writer::commit`] publishes everything at once:
//!
//! 1. write and fsync the remaining new segment files and the new tombstone files;
//! 2. fsync the collection directories (and the database directory for new collections);
//! 3. atomically replace `MANIFEST` (temp file, fsync, rename, fsync directory);
//! 4. delete files no longer referenced.
//!
//! A crash before step 3 completes leaves the previous manifest in place and only unreferenced
//! files behind, which the next writer removes when it opens. See `format-spec/commit.md`.

mod catalogue;
mod commit;
mod gc;
mod pending;
mod rewrite;
mod versions;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::collection::Collection;
use crate::document::Document;
use crate::error::{Error, Result};
use crate::format::deletes::DeleteBitmap;
use crate::meta::{FieldEncoders, HnswParams};
use crate::schema::Schema;
use crate::snapshot::{read_manifest, Snapshot};
use crate::storage::{Directory, LockGuard};
use pending::{Found, Loc, Pending, PendingDoc};

pub use rewrite::{Compact, FieldColumn, Reindex, RewritePlan, RewritePolicy};
pub use versions::{pending_pieces, PendingPiece, SwitchInfo};

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Buffered document bytes per collection after which a segment file is written (still
    /// invisible until commit). Default 256 MiB.
    pub flush_bytes: usize,
    /// Segments with at least this many rows get screening codes for every dense field
    /// (`format-spec/screen.md`: an 8-bit copy, a quarter of f32's bytes, that exact single-query
    /// search scans before rescoring the few rows that can reach the top-k). Smaller segments are
    /// scanned at full precision. Default 1024.
    pub screen_min_rows: u64,
    /// Bytes of PLAID packed residuals (~32 per token at 2 bits and 128 dimensions) that
    /// building one segment keeps in memory, shared by its PLAID fields; beyond, they go to an
    /// unnamed temporary file in the collection's directory, read back once as the segment is
    /// written, so that a large segment's build holds only its codes and inverted lists (~8
    /// bytes per token). Default 256 MiB.
    pub index_memory_bytes: usize,
}

impl WriterOptions {
    /// Where a segment build of collection directory `cdir` spills index data past
    /// [`WriterOptions::index_memory_bytes`].
    pub(crate) fn spill_policy(
        &self,
        dir: &dyn crate::storage::Directory,
        cdir: &std::path::Path,
    ) -> crate::storage::SpillPolicy {
        crate::storage::SpillPolicy {
            dir: dir.scratch_dir(cdir),
            limit: self.index_memory_bytes,
        }
    }
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            flush_bytes: 256 << 20,
            screen_min_rows: 1024,
            index_memory_bytes: crate::storage::SpillPolicy::DEFAULT_LIMIT,
        }
    }
}

/// What a commit published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitInfo {
    /// The new manifest generation.
    pub generation: u64,
    /// Documents added (upserts included).
    pub added: u64,
    /// Documents deleted (upserts' replaced copies included).
    pub deleted: u64,
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactInfo {
    /// Generation of the manifest that published the compacted collection.
    pub generation: u64,
    /// Segments before.
    pub segments_before: usize,
    /// Segments after (0 or 1).
    pub segments_after: usize,
    /// Deleted rows dropped.
    pub rows_dropped: u64,
}

/// The single writer of a database. Holds the writer lock until dropped; dropping it without
/// committing discards the buffered changes.
///
/// ```
/// use vellum::*;
/// let dir = tempfile::tempdir().unwrap();
/// let db = Database::create(dir.path()).unwrap();
/// let mut w = db.writer().unwrap();
/// w.create_collection("c", Schema::new().with_field(FieldSpec::dense("e", 2, DType::F32, Metric::L2))).unwrap();
/// w.add("c", Document::new("a").with_dense("e", vec![0.0, 1.0])).unwrap();
/// w.commit().unwrap();
/// w.upsert("c", Document::new("a").with_dense("e", vec![1.0, 1.0])).unwrap();
/// assert!(w.delete("c", "a").unwrap());
/// let info = w.commit().unwrap();
/// assert_eq!(info.deleted, 2); // the committed copy and the upserted one
/// assert!(db.snapshot().unwrap().collection("c").unwrap().is_empty());
/// ```
pub struct Writer {
    dir: Arc<dyn Directory>,
    lock: Box<dyn LockGuard>,
    base: Snapshot,
    next_file_id: u64,
    new_collections: Vec<(String, Schema)>,
    pending: HashMap<String, Pending>,
    /// New index declarations by collection (the whole map), published at commit.
    index_changes: HashMap<String, BTreeMap<String, HnswParams>>,
    /// PLAID declarations changed in this batch, by collection.
    plaid_changes: HashMap<String, BTreeMap<String, crate::meta::PlaidParams>>,
    encoder_changes: BTreeMap<(String, String), FieldEncoders>,
    options: WriterOptions,
    /// Set when a commit was published but the writer could not map it: the writer refuses
    /// further work (open a new one).
    failed: Option<String>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("dir", &self.dir.path_of("".as_ref()))
            .field("lock", &self.lock)
            .field("generation", &self.base.generation())
            .finish()
    }
}

impl Writer {
    pub(crate) fn open(dir: Arc<dyn Directory>, options: WriterOptions) -> Result<Self> {
        let lock = dir.lock()?;
        let manifest = read_manifest(&*dir)?;
        let base = Snapshot::load(&*dir, manifest)?;
        let next_file_id = base.manifest().next_file_id;
        let w = Writer {
            dir,
            lock,
            base,
            next_file_id,
            new_collections: Vec::new(),
            pending: HashMap::new(),
            index_changes: HashMap::new(),
            plaid_changes: HashMap::new(),
            encoder_changes: BTreeMap::new(),
            options,
            failed: None,
        };
        // Files left by a writer that crashed before publishing are unreferenced: remove them.
        w.collect_garbage()?;
        Ok(w)
    }

    /// The last committed snapshot (what readers opening now see).
    pub fn committed(&self) -> &Snapshot {
        &self.base
    }

    fn pending_for(&mut self, collection: &str) -> Result<&mut Pending> {
        if !self.pending.contains_key(collection) {
            let schema = self.schema_of(collection)?;
            let mut p = Pending::new(schema);
            p.indexes = self.indexes_of(collection);
            p.plaid = self.plaid_of(collection);
            let base = self.base.collection(collection).ok().map(|c| &**c);
            p.codecs = commit::current_codecs(base, &p.plaid)?;
            // A declaration changed in this batch gets a codec of its own parameters (unless
            // only parameters that do not shape the codec changed).
            let committed = base.map(|c| c.plaid_params().clone()).unwrap_or_default();
            p.codecs.retain(|name, _| {
                matches!((committed.get(name), p.plaid.get(name)),
                    (Some(a), Some(b)) if a.same_codec(b))
            });
            self.pending.insert(collection.to_string(), p);
        }
        Ok(self.pending.get_mut(collection).expect("inserted"))
    }

    fn find_live(base: Option<&Collection>, p: &Pending, id: &str) -> Result<Option<Found>> {
        if let Some(loc) = p.ids.get(id) {
            return Ok(Some(Found::Pending(*loc)));
        }
        if let Some(c) = base {
            for slot in c.slots().iter().rev() {
                if let Some(row) = slot.segment.find(id)? {
                    let deleted = match p.deletes.get(&slot.entry.id) {
                        Some(bm) => bm.contains(row),
                        None => slot.is_deleted(row),
                    };
                    if !deleted {
                        return Ok(Some(Found::Committed {
                            segment: slot.entry.id,
                            row,
                        }));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Whether a live document (committed or added in this batch, and not deleted) has this id.
    pub fn contains(&mut self, collection: &str, id: &str) -> Result<bool> {
        self.pending_for(collection)?;
        let base = self.base.collection(collection).ok().cloned();
        let p = &self.pending[collection];
        Ok(Self::find_live(base.as_deref(), p, id)?.is_some())
    }

    /// Adds a document; fails with [`Error::DuplicateId`] if the id is live.
    pub fn add(&mut self, collection: &str, doc: Document) -> Result<()> {
        self.insert(collection, doc, false)
    }

    /// Adds a document, replacing the live document with the same id if there is one.
    pub fn upsert(&mut self, collection: &str, doc: Document) -> Result<()> {
        self.insert(collection, doc, true)
    }

    /// Adds documents all or nothing: every document is validated and every id checked (against
    /// the collection, this batch and the other documents given) before any is buffered, so an
    /// error leaves the uncommitted batch as it was.
    pub fn add_all(&mut self, collection: &str, docs: Vec<Document>) -> Result<()> {
        self.insert_all(collection, docs, false)
    }

    /// Upserts documents all or nothing: every document is validated before any is buffered. An
    /// id given twice keeps its last document, as consecutive upserts do.
    pub fn upsert_all(&mut self, collection: &str, docs: Vec<Document>) -> Result<()> {
        self.insert_all(collection, docs, true)
    }

    fn insert_all(&mut self, collection: &str, docs: Vec<Document>, replace: bool) -> Result<()> {
        self.usable()?;
        self.pending_for(collection)?;
        let base = self.base.collection(collection).ok().cloned();
        let p = &self.pending[collection];
        let mut given = std::collections::HashSet::with_capacity(docs.len());
        let mut encoded = Vec::with_capacity(docs.len());
        for doc in &docs {
            encoded.push(doc.encode_fields(collection, &p.schema)?);
            if replace {
                continue;
            }
            let detail = if !given.insert(doc.id.as_str()) {
                "it is given twice in this call"
            } else {
                match Self::find_live(base.as_deref(), p, &doc.id)? {
                    None => continue,
                    Some(Found::Pending(_)) => "it was already added in this uncommitted batch",
                    Some(Found::Committed { .. }) => {
                        "it is already committed; use upsert to replace it"
                    }
                }
            };
            return Err(Error::DuplicateId {
                collection: collection.to_string(),
                id: doc.id.clone(),
                detail: detail.into(),
            });
        }
        for (doc, fields) in docs.into_iter().zip(encoded) {
            self.insert_encoded(collection, doc, fields, replace)?;
        }
        Ok(())
    }

    fn insert(&mut self, collection: &str, doc: Document, replace: bool) -> Result<()> {
        self.usable()?;
        self.pending_for(collection)?;
        let fields = doc.encode_fields(collection, &self.pending[collection].schema)?;
        self.insert_encoded(collection, doc, fields, replace)
    }

    fn insert_encoded(
        &mut self,
        collection: &str,
        doc: Document,
        fields: Vec<Vec<u8>>,
        replace: bool,
    ) -> Result<()> {
        let flush_bytes = self.options.flush_bytes;
        let base = self.base.collection(collection).ok().cloned();
        let p = self
            .pending
            .get_mut(collection)
            .expect("created by the caller");
        if let Some(found) = Self::find_live(base.as_deref(), p, &doc.id)? {
            if !replace {
                let detail = match found {
                    Found::Pending(_) => "it was already added in this uncommitted batch",
                    Found::Committed { .. } => "it is already committed; use upsert to replace it",
                };
                return Err(Error::DuplicateId {
                    collection: collection.to_string(),
                    id: doc.id,
                    detail: detail.into(),
                });
            }
            Self::remove(base.as_deref(), p, &doc.id, found);
        }
        let meta = serde_json::to_vec(&doc.metadata).expect("JSON map serializes");
        let pd = PendingDoc {
            id: doc.id,
            text: doc.text,
            meta,
            fields,
        };
        p.batch_bytes += pd.bytes();
        p.ids.insert(pd.id.clone(), Loc::Batch(p.batch.len()));
        p.batch.push(Some(pd));
        p.added += 1;
        if p.batch_bytes >= flush_bytes {
            let id = self.next_file_id;
            self.next_file_id += 1;
            let p = self.pending.get_mut(collection).expect("present");
            Self::flush(&*self.dir, collection, p, id, &self.options)?;
        }
        Ok(())
    }

    fn remove(base: Option<&Collection>, p: &mut Pending, id: &str, found: Found) {
        let rows_of = |seg: u64| -> (u32, Option<DeleteBitmap>) {
            if let Some(c) = base {
                if let Some(slot) = c.slots().iter().find(|s| s.entry.id == seg) {
                    return (slot.segment.rows(), slot.deletes.as_deref().cloned());
                }
            }
            let (_, s) = p
                .flushed
                .iter()
                .find(|(e, _)| e.id == seg)
                .expect("flushed segment");
            (s.rows(), None)
        };
        match found {
            Found::Pending(Loc::Batch(i)) => {
                if let Some(d) = p.batch[i].take() {
                    p.batch_bytes -= d.bytes();
                }
                p.ids.remove(id);
            }
            Found::Pending(Loc::Flushed { segment, row }) | Found::Committed { segment, row } => {
                let bitmap = p.deletes.entry(segment).or_insert_with(|| {
                    let (rows, existing) = rows_of(segment);
                    existing.unwrap_or_else(|| DeleteBitmap::new(rows))
                });
                bitmap.insert(row);
                p.ids.remove(id);
            }
        }
        p.deleted += 1;
    }

    /// Deletes the live document with this id. Returns false if there was none.
    pub fn delete(&mut self, collection: &str, id: &str) -> Result<bool> {
        self.usable()?;
        self.pending_for(collection)?;
        let base = self.base.collection(collection).ok().cloned();
        let p = self.pending.get_mut(collection).expect("created above");
        match Self::find_live(base.as_deref(), p, id)? {
            Some(found) => {
                Self::remove(base.as_deref(), p, id, found);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// True when there is anything to commit.
    pub fn has_changes(&self) -> bool {
        !self.new_collections.is_empty()
            || !self.index_changes.is_empty()
            || !self.plaid_changes.is_empty()
            || !self.encoder_changes.is_empty()
            || self.pending.values().any(Pending::is_dirty)
    }

    /// Discards every buffered change (as dropping the writer does).
    pub fn rollback(&mut self) -> Result<()> {
        self.clear_batch();
        self.collect_garbage()
    }

    /// Forgets every buffered change (files already spilled stay until garbage collection).
    fn clear_batch(&mut self) {
        self.pending.clear();
        self.new_collections.clear();
        self.index_changes.clear();
        self.plaid_changes.clear();
        self.encoder_changes.clear();
    }

    /// Fails when an earlier commit left the writer unusable.
    fn usable(&self) -> Result<()> {
        match &self.failed {
            Some(detail) => Err(Error::WriterFailed(detail.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Best effort: remove segment files spilled for changes that were never committed.
        for (name, p) in &self.pending {
            for (e, _) in &p.flushed {
                let _ = self.dir.remove(
                    &Self::collection_dir(name)
                        .join(crate::format::manifest::segment_file_name(e.id)),
                );
            }
        }
    }
}
