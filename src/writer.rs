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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::collection::Collection;
use crate::db::Snapshot;
use crate::document::Document;
use crate::encode::FieldEncoders;
use crate::error::{Error, Result};
use crate::format::deletes::DeleteBitmap;
use crate::format::manifest::{self, CollectionEntry, DeletesEntry, Manifest, SegmentEntry};
use crate::format::segment::{write_segment_with, Segment, SegmentSource};
use crate::hnsw::{graph_sections, HnswParams};
use crate::schema::{validate_name, FieldKind, Schema};
use crate::storage::{self, WriterLock};

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Buffered document bytes per collection after which a segment file is written (still
    /// invisible until commit). Default 256 MiB.
    pub flush_bytes: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            flush_bytes: 256 << 20,
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

struct PendingDoc {
    id: String,
    text: String,
    meta: Vec<u8>,
    fields: Vec<Vec<u8>>,
}

impl PendingDoc {
    fn bytes(&self) -> usize {
        self.id.len()
            + self.text.len()
            + self.meta.len()
            + self.fields.iter().map(Vec::len).sum::<usize>()
            + 64
    }
}

#[derive(Debug, Clone, Copy)]
enum Loc {
    Batch(usize),
    Flushed { segment: u64, row: u32 },
}

enum Found {
    Pending(Loc),
    Committed { segment: u64, row: u32 },
}

struct Pending {
    schema: Schema,
    /// Indexes that segments written for this batch get.
    indexes: BTreeMap<String, HnswParams>,
    batch: Vec<Option<PendingDoc>>,
    batch_bytes: usize,
    flushed: Vec<(SegmentEntry, Arc<Segment>)>,
    /// Full new tombstone bitmaps, by segment id (committed or flushed segments).
    deletes: HashMap<u64, DeleteBitmap>,
    /// Live ids added in this batch.
    ids: HashMap<String, Loc>,
    added: u64,
    deleted: u64,
}

impl Pending {
    fn new(schema: Schema) -> Self {
        Pending {
            schema,
            indexes: BTreeMap::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            flushed: Vec::new(),
            deletes: HashMap::new(),
            ids: HashMap::new(),
            added: 0,
            deleted: 0,
        }
    }

    fn is_dirty(&self) -> bool {
        self.added > 0 || self.deleted > 0
    }
}

struct BatchSource<'a> {
    schema: &'a Schema,
    docs: Vec<&'a PendingDoc>,
}

impl SegmentSource for BatchSource<'_> {
    fn schema(&self) -> &Schema {
        self.schema
    }
    fn row_count(&self) -> usize {
        self.docs.len()
    }
    fn id(&self, row: usize) -> Result<&[u8]> {
        Ok(self.docs[row].id.as_bytes())
    }
    fn text(&self, row: usize) -> Result<&[u8]> {
        Ok(self.docs[row].text.as_bytes())
    }
    fn metadata(&self, row: usize) -> Result<&[u8]> {
        Ok(&self.docs[row].meta)
    }
    fn field(&self, field: usize, row: usize) -> Result<&[u8]> {
        Ok(&self.docs[row].fields[field])
    }
}

struct MergeSource<'a> {
    schema: &'a Schema,
    rows: Vec<(&'a Segment, u32)>,
}

impl SegmentSource for MergeSource<'_> {
    fn schema(&self) -> &Schema {
        self.schema
    }
    fn row_count(&self) -> usize {
        self.rows.len()
    }
    fn id(&self, row: usize) -> Result<&[u8]> {
        let (s, r) = self.rows[row];
        Ok(s.doc_id(r)?.as_bytes())
    }
    fn text(&self, row: usize) -> Result<&[u8]> {
        let (s, r) = self.rows[row];
        Ok(s.text(r)?.as_bytes())
    }
    fn metadata(&self, row: usize) -> Result<&[u8]> {
        let (s, r) = self.rows[row];
        Ok(s.metadata(r)?.as_bytes())
    }
    fn field(&self, field: usize, row: usize) -> Result<&[u8]> {
        let (s, r) = self.rows[row];
        s.raw_field(field, r)
    }
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
    dir: PathBuf,
    lock: WriterLock,
    base: Snapshot,
    next_file_id: u64,
    new_collections: Vec<(String, Schema)>,
    pending: HashMap<String, Pending>,
    /// New index declarations by collection (the whole map), published at commit.
    index_changes: HashMap<String, BTreeMap<String, HnswParams>>,
    encoder_changes: BTreeMap<(String, String), FieldEncoders>,
    options: WriterOptions,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("dir", &self.dir)
            .field("lock", &self.lock.path())
            .field("generation", &self.base.generation())
            .finish()
    }
}

impl Writer {
    pub(crate) fn open(dir: PathBuf, options: WriterOptions) -> Result<Self> {
        let lock = WriterLock::acquire(&dir)?;
        let manifest = crate::Database::open(&dir)?.read_manifest()?;
        let base = Snapshot::load(&dir, manifest)?;
        let next_file_id = base.manifest().next_file_id;
        let w = Writer {
            dir,
            lock,
            base,
            next_file_id,
            new_collections: Vec::new(),
            pending: HashMap::new(),
            index_changes: HashMap::new(),
            encoder_changes: BTreeMap::new(),
            options,
        };
        // Files left by a writer that crashed before publishing are unreferenced: remove them.
        w.collect_garbage()?;
        Ok(w)
    }

    /// The last committed snapshot (what readers opening now see).
    pub fn committed(&self) -> &Snapshot {
        &self.base
    }

    /// Creates a collection with a fixed schema (visible after commit).
    pub fn create_collection(&mut self, name: &str, schema: Schema) -> Result<()> {
        validate_name("collection", name)?;
        schema.validate()?;
        if self.base.manifest().collection(name).is_some()
            || self.new_collections.iter().any(|(n, _)| n == name)
        {
            return Err(Error::Schema(format!("collection {name:?} already exists")));
        }
        self.new_collections.push((name.to_string(), schema));
        Ok(())
    }

    /// The schema of `collection`, committed or created in this batch.
    pub fn schema_of(&self, collection: &str) -> Result<Schema> {
        if let Some(c) = self.base.manifest().collection(collection) {
            return Ok(c.schema.clone());
        }
        if let Some((_, s)) = self.new_collections.iter().find(|(n, _)| n == collection) {
            return Ok(s.clone());
        }
        let mut names: Vec<&str> = self
            .base
            .manifest()
            .collections
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        names.extend(self.new_collections.iter().map(|(n, _)| n.as_str()));
        Err(Error::NoSuchCollection {
            name: collection.to_string(),
            available: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
        })
    }

    /// The approximate indexes declared for `collection` (including changes of this batch).
    pub fn indexes_of(&self, collection: &str) -> BTreeMap<String, HnswParams> {
        if let Some(m) = self.index_changes.get(collection) {
            return m.clone();
        }
        self.base
            .manifest()
            .collection(collection)
            .map(|c| c.indexes.clone())
            .unwrap_or_default()
    }

    /// Declares (`Some`) or drops (`None`) an HNSW index on dense field `field`, from this commit
    /// on: segments written afterwards (by flushes, commits and compactions) with at least
    /// `params.min_rows` rows carry the field's graph. Existing segments are not rewritten; use
    /// [`Writer::reindex`] (or `vellum index`) to build graphs for them.
    pub fn set_index(
        &mut self,
        collection: &str,
        field: &str,
        params: Option<HnswParams>,
    ) -> Result<()> {
        let schema = self.schema_of(collection)?;
        match schema.field_index(field).map(|i| &schema.fields[i].kind) {
            Some(FieldKind::Dense { .. }) => {}
            Some(_) => {
                return Err(Error::InvalidInput(format!(
                    "field {field:?} of collection {collection:?} is not dense; HNSW indexes dense fields"
                )))
            }
            None => {
                return Err(Error::NoSuchField {
                    collection: collection.into(),
                    field: field.into(),
                    available: schema.field_names(),
                })
            }
        }
        if let Some(p) = &params {
            p.validate()?;
        }
        let mut indexes = self.indexes_of(collection);
        match params {
            Some(p) => indexes.insert(field.to_string(), p),
            None => indexes.remove(field),
        };
        if let Some(p) = self.pending.get_mut(collection) {
            p.indexes = indexes.clone();
        }
        self.index_changes.insert(collection.to_string(), indexes);
        Ok(())
    }

    /// Binds encoders to dense field `field` from this commit on (replacing earlier ones). The
    /// records come from [`crate::encode::TextEncoder::record`]; their output dimensions must
    /// equal the field's. Documents already stored are not re-encoded.
    pub fn set_encoders(
        &mut self,
        collection: &str,
        field: &str,
        encoders: FieldEncoders,
    ) -> Result<()> {
        let schema = self.schema_of(collection)?;
        let dim = match schema.field_index(field).map(|i| &schema.fields[i].kind) {
            Some(FieldKind::Dense { dim, .. }) => *dim as usize,
            Some(_) => {
                return Err(Error::InvalidInput(format!(
                    "field {field:?} of collection {collection:?} is not dense; encoders produce dense vectors"
                )))
            }
            None => {
                return Err(Error::NoSuchField {
                    collection: collection.into(),
                    field: field.into(),
                    available: schema.field_names(),
                })
            }
        };
        for (role, r) in [("passage", &encoders.passage), ("query", &encoders.query)] {
            if r.dims != dim {
                return Err(Error::Encoder {
                    collection: collection.into(),
                    field: field.into(),
                    detail: format!(
                        "the {role} encoder ({}) outputs {} dimensions but the field has {dim}; declare the field with {} dimensions or set dims={dim} (Matryoshka truncation)",
                        r.source, r.dims, r.dims
                    ),
                });
            }
            r.validate().map_err(Error::InvalidInput)?;
        }
        self.encoder_changes
            .insert((collection.to_string(), field.to_string()), encoders);
        Ok(())
    }

    /// The encoders bound to `field` (including changes of this batch).
    pub fn encoders_of(&self, collection: &str, field: &str) -> Option<FieldEncoders> {
        if let Some(e) = self
            .encoder_changes
            .get(&(collection.to_string(), field.to_string()))
        {
            return Some(e.clone());
        }
        self.base
            .manifest()
            .collection(collection)
            .and_then(|c| c.encoders.get(field).cloned())
    }

    fn pending_for(&mut self, collection: &str) -> Result<&mut Pending> {
        if !self.pending.contains_key(collection) {
            let schema = self.schema_of(collection)?;
            let mut p = Pending::new(schema);
            p.indexes = self.indexes_of(collection);
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

    fn insert(&mut self, collection: &str, doc: Document, replace: bool) -> Result<()> {
        let flush_bytes = self.options.flush_bytes;
        self.pending_for(collection)?;
        let base = self.base.collection(collection).ok().cloned();
        let p = self.pending.get_mut(collection).expect("created above");
        let fields = doc.encode_fields(collection, &p.schema)?;
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
            Self::flush(&self.dir, collection, p, id)?;
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

    fn collection_dir(dir: &Path, collection: &str) -> PathBuf {
        dir.join(collection)
    }

    fn flush(dir: &Path, collection: &str, p: &mut Pending, file_id: u64) -> Result<()> {
        let docs: Vec<&PendingDoc> = p.batch.iter().flatten().collect();
        if docs.is_empty() {
            p.batch.clear();
            p.batch_bytes = 0;
            return Ok(());
        }
        let cdir = Self::collection_dir(dir, collection);
        std::fs::create_dir_all(&cdir).map_err(|e| Error::io(&cdir, e))?;
        let path = cdir.join(manifest::segment_file_name(file_id));
        let source = BatchSource {
            schema: &p.schema,
            docs,
        };
        let graphs = graph_sections(&source, &p.indexes)?;
        let bytes = write_segment_with(&path, &source, &graphs)?;
        let segment = Arc::new(Segment::open(&path, file_id)?);
        for (row, d) in p.batch.iter().flatten().enumerate() {
            p.ids.insert(
                d.id.clone(),
                Loc::Flushed {
                    segment: file_id,
                    row: row as u32,
                },
            );
        }
        p.flushed.push((
            SegmentEntry {
                id: file_id,
                rows: segment.rows() as u64,
                bytes,
                deletes: None,
            },
            segment,
        ));
        p.batch.clear();
        p.batch_bytes = 0;
        Ok(())
    }

    fn take_file_id(&mut self) -> u64 {
        let id = self.next_file_id;
        self.next_file_id += 1;
        id
    }

    /// True when there is anything to commit.
    pub fn has_changes(&self) -> bool {
        !self.new_collections.is_empty()
            || !self.index_changes.is_empty()
            || !self.encoder_changes.is_empty()
            || self.pending.values().any(Pending::is_dirty)
    }

    /// Makes every buffered change durable and visible, atomically. With nothing to commit, returns
    /// the current generation without writing anything.
    pub fn commit(&mut self) -> Result<CommitInfo> {
        if !self.has_changes() {
            return Ok(CommitInfo {
                generation: self.base.generation(),
                ..Default::default()
            });
        }
        let names: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.is_dirty())
            .map(|(n, _)| n.clone())
            .collect();
        for name in &names {
            let id = self.take_file_id();
            let p = self.pending.get_mut(name).expect("listed");
            Self::flush(&self.dir, name, p, id)?;
        }
        let mut manifest = self.base.manifest().clone();
        manifest.generation += 1;
        for (name, schema) in &self.new_collections {
            let cdir = Self::collection_dir(&self.dir, name);
            std::fs::create_dir_all(&cdir).map_err(|e| Error::io(&cdir, e))?;
            manifest.collections.push(CollectionEntry {
                name: name.clone(),
                schema: schema.clone(),
                segments: Vec::new(),
                indexes: BTreeMap::new(),
                encoders: BTreeMap::new(),
            });
        }
        for (name, indexes) in &self.index_changes {
            if let Some(entry) = manifest.collections.iter_mut().find(|c| &c.name == name) {
                entry.indexes = indexes.clone();
            }
        }
        for ((name, field), encoders) in &self.encoder_changes {
            if let Some(entry) = manifest.collections.iter_mut().find(|c| &c.name == name) {
                entry.encoders.insert(field.clone(), encoders.clone());
            }
        }
        let mut info = CommitInfo::default();
        let mut dirs = BTreeSet::new();
        for name in &names {
            let cdir = Self::collection_dir(&self.dir, name);
            let entry = manifest
                .collections
                .iter_mut()
                .find(|c| &c.name == name)
                .expect("collection in manifest");
            let p = &self.pending[name];
            info.added += p.added;
            info.deleted += p.deleted;
            entry
                .segments
                .extend(p.flushed.iter().map(|(e, _)| e.clone()));
            for seg in entry.segments.iter_mut() {
                if let Some(bm) = p.deletes.get(&seg.id) {
                    let file_id = self.next_file_id;
                    self.next_file_id += 1;
                    let path = cdir.join(manifest::deletes_file_name(seg.id, file_id));
                    storage::write_new_file(&path, &bm.encode(seg.id))?;
                    seg.deletes = Some(DeletesEntry {
                        file_id,
                        count: bm.count(),
                    });
                }
            }
            entry
                .segments
                .retain(|s| s.deletes.is_none_or(|d| d.count < s.rows));
            dirs.insert(cdir);
        }
        manifest.next_file_id = self.next_file_id;
        for d in &dirs {
            storage::sync_dir(d)?;
        }
        storage::sync_dir(&self.dir)?;
        self.publish(manifest)?;
        info.generation = self.base.generation();
        self.pending.clear();
        self.new_collections.clear();
        self.index_changes.clear();
        self.encoder_changes.clear();
        Ok(info)
    }

    fn publish(&mut self, manifest: Manifest) -> Result<()> {
        storage::replace_file_atomically(&self.dir, manifest::FILE_NAME, &manifest.encode())?;
        self.base = Snapshot::load_reusing(&self.dir, manifest, Some(&self.base))?;
        self.collect_garbage()
    }

    /// Discards every buffered change (as dropping the writer does).
    pub fn rollback(&mut self) -> Result<()> {
        self.pending.clear();
        self.new_collections.clear();
        self.index_changes.clear();
        self.encoder_changes.clear();
        self.collect_garbage()
    }

    /// Merges all segments of a collection into one and drops deleted rows. Commits pending changes
    /// first. Readers holding older snapshots keep working on the old files.
    pub fn compact(&mut self, collection: &str) -> Result<CompactInfo> {
        self.compact_inner(collection, false)
    }

    /// Rewrites a collection as one segment (as [`Writer::compact`], even when it already is one),
    /// so that the graphs of its declared indexes are built for all its rows. Commits pending
    /// changes (index declarations included) first.
    ///
    /// ```
    /// # use vellum::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = Database::create(dir.path()).unwrap();
    /// let mut w = db.writer().unwrap();
    /// w.create_collection("c", Schema::new().with_field(FieldSpec::parse("e:dense:2:f32:l2").unwrap())).unwrap();
    /// for i in 0..50 {
    ///     w.add("c", Document::new(format!("d{i}")).with_dense("e", vec![i as f32, 1.0])).unwrap();
    /// }
    /// w.commit().unwrap();
    /// w.set_index("c", "e", Some(vellum::hnsw::HnswParams { min_rows: 10, ..Default::default() })).unwrap();
    /// w.reindex("c").unwrap();
    /// let snap = db.snapshot().unwrap();
    /// assert!(snap.collection("c").unwrap().slots()[0].segment.graph(0).is_some());
    /// ```
    pub fn reindex(&mut self, collection: &str) -> Result<CompactInfo> {
        self.compact_inner(collection, true)
    }

    fn compact_inner(&mut self, collection: &str, force: bool) -> Result<CompactInfo> {
        self.commit()?;
        let c = self.base.collection(collection)?.clone();
        let segments_before = c.slots().len();
        let rows_dropped: u64 = c
            .slots()
            .iter()
            .map(|s| s.deletes.as_ref().map_or(0, |d| d.count()))
            .sum();
        if !force && segments_before <= 1 && rows_dropped == 0 {
            return Ok(CompactInfo {
                generation: self.base.generation(),
                segments_before,
                segments_after: segments_before,
                rows_dropped: 0,
            });
        }
        let mut rows = Vec::new();
        for slot in c.slots() {
            rows.extend(
                (0..slot.segment.rows())
                    .filter(|&r| !slot.is_deleted(r))
                    .map(|r| (&*slot.segment, r)),
            );
        }
        let mut manifest = self.base.manifest().clone();
        manifest.generation += 1;
        let mut segments = Vec::new();
        if !rows.is_empty() {
            let id = self.take_file_id();
            let cdir = Self::collection_dir(&self.dir, collection);
            let path = cdir.join(manifest::segment_file_name(id));
            let source = MergeSource {
                schema: c.schema(),
                rows,
            };
            let indexes = self.indexes_of(collection);
            let graphs = graph_sections(&source, &indexes)?;
            let bytes = write_segment_with(&path, &source, &graphs)?;
            storage::sync_dir(&cdir)?;
            segments.push(SegmentEntry {
                id,
                rows: c.len(),
                bytes,
                deletes: None,
            });
        }
        let segments_after = segments.len();
        manifest
            .collections
            .iter_mut()
            .find(|e| e.name == collection)
            .expect("exists")
            .segments = segments;
        manifest.next_file_id = self.next_file_id;
        self.publish(manifest)?;
        Ok(CompactInfo {
            generation: self.base.generation(),
            segments_before,
            segments_after,
            rows_dropped,
        })
    }

    /// Deletes segment and tombstone files the committed manifest does not reference, and stale
    /// temporary files. Only vellum's own file names are touched.
    fn collect_garbage(&self) -> Result<()> {
        storage::remove_if_exists(&self.dir.join(format!("{}.tmp", manifest::FILE_NAME)))?;
        let m = self.base.manifest();
        for c in &m.collections {
            let cdir = Self::collection_dir(&self.dir, &c.name);
            let mut keep: BTreeSet<String> = BTreeSet::new();
            for s in &c.segments {
                keep.insert(manifest::segment_file_name(s.id));
                if let Some(d) = s.deletes {
                    keep.insert(manifest::deletes_file_name(s.id, d.file_id));
                }
            }
            // Files of this writer's flushed but uncommitted segments must survive.
            if let Some(p) = self.pending.get(&c.name) {
                keep.extend(
                    p.flushed
                        .iter()
                        .map(|(e, _)| manifest::segment_file_name(e.id)),
                );
            }
            let entries = match std::fs::read_dir(&cdir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&cdir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&cdir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = name.starts_with("seg-")
                    && (name.ends_with(".vseg") || name.ends_with(".vdel"));
                if ours && !keep.contains(&name) {
                    storage::remove_if_exists(&entry.path())?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Best effort: remove segment files spilled for changes that were never committed.
        for (name, p) in &self.pending {
            for (e, _) in &p.flushed {
                let _ = std::fs::remove_file(
                    Self::collection_dir(&self.dir, name).join(manifest::segment_file_name(e.id)),
                );
            }
        }
    }
}
