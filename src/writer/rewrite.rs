//! Segment rewrites: one operation, plan → execute → commit, that replaces every segment of a
//! collection by one new segment holding its live rows, with a per-field transform. Compaction
//! ([`Compact`]) and reindexing ([`Reindex`]) are two policies of it; re-encoding with a new encoder
//! version is a third (a policy that replaces an encoded field's column and the field's encoder
//! records).
//!
//! Crash safety is the commit protocol's: the new segment is written under a fresh file id and
//! fsynced with its directory before the manifest swap publishes it; until then readers and a
//! restarted writer see the old segments, and the new file is garbage.

use std::path::Path;

use super::{CompactInfo, Writer};
use crate::collection::Collection;
use crate::error::{Error, Result};
use crate::format::manifest::{self, CollectionEntry, SegmentEntry};
use crate::format::segment::{write_segment_with, Segment, SegmentSource};
use crate::plaid::build::PlaidBuild;
use crate::schema::Schema;

/// A replacement column for one field of a rewritten collection: one value per live row, in
/// storage order (oldest segment first), each the field's encoded bytes.
#[derive(Debug, Clone, Default)]
pub struct FieldColumn {
    /// Byte offsets: value `i` is `bytes[offsets[i]..offsets[i + 1]]` (`rows + 1` entries).
    pub offsets: Vec<usize>,
    /// The values, concatenated.
    pub bytes: Vec<u8>,
}

impl FieldColumn {
    /// An empty column.
    pub fn new() -> Self {
        FieldColumn {
            offsets: vec![0],
            bytes: Vec::new(),
        }
    }

    /// Appends one row's value.
    pub fn push(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
        self.offsets.push(self.bytes.len());
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// True when the column has no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, row: usize) -> &[u8] {
        &self.bytes[self.offsets[row]..self.offsets[row + 1]]
    }
}

/// The live rows of a collection that a rewrite carries over, in storage order.
#[derive(Debug)]
pub struct RewritePlan<'a> {
    /// The collection as committed.
    pub collection: &'a Collection,
    /// `(segment, row)` of every live row, oldest segment first.
    pub rows: Vec<(&'a Segment, u32)>,
    /// Deleted rows that the rewrite drops.
    pub rows_dropped: u64,
}

/// What a rewrite does. The default methods copy every field as stored and keep the manifest
/// entry (indexes and encoders) as it is.
pub trait RewritePolicy {
    /// Whether `plan` needs a rewrite at all; when false the collection is left untouched.
    fn needed(&self, plan: &RewritePlan<'_>) -> bool;

    /// A replacement for field `field`'s values (one per row of `plan.rows`), or `None` to copy
    /// the stored values.
    fn transform(&self, plan: &RewritePlan<'_>, field: usize) -> Result<Option<FieldColumn>> {
        let _ = (plan, field);
        Ok(None)
    }

    /// Edits the collection's manifest entry published with the new segment (a re-encode binds
    /// the new encoder version here).
    fn edit_entry(&self, entry: &mut CollectionEntry) -> Result<()> {
        let _ = entry;
        Ok(())
    }

    /// Whether PLAID codecs are trained anew on the rewritten rows even when the collection has
    /// not outgrown them (a transformed field always gets a new codec).
    fn recluster(&self) -> bool {
        false
    }
}

/// Compaction: merge all segments into one and drop deleted rows; nothing to do for a collection
/// that already is one segment without deletes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compact;

impl RewritePolicy for Compact {
    fn needed(&self, plan: &RewritePlan<'_>) -> bool {
        plan.collection.slots().len() > 1 || plan.rows_dropped > 0
    }
}

/// Reindexing: rewrite even a single clean segment, so that the graphs of the collection's
/// declared indexes are built for all its rows, and PLAID codecs trained on all of them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reindex;

impl RewritePolicy for Reindex {
    fn needed(&self, _: &RewritePlan<'_>) -> bool {
        true
    }

    fn recluster(&self) -> bool {
        true
    }
}

/// Rows of existing segments as the source of a new one, with replacement columns.
pub(super) struct MergeSource<'a> {
    pub(super) schema: &'a Schema,
    pub(super) rows: &'a [(&'a Segment, u32)],
    /// Replacement columns by field index.
    pub(super) columns: Vec<Option<FieldColumn>>,
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
    fn field(&self, field: usize, row: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
        if let Some(column) = &self.columns[field] {
            return Ok(column.get(row).into());
        }
        let (s, r) = self.rows[row];
        s.raw_field(field, r)
    }
    fn multi_f32(&self, field: usize, row: usize, out: &mut Vec<f32>) -> Result<()> {
        if let Some(column) = &self.columns[field] {
            let dtype = self.schema.fields[field].kind.dtype();
            dtype.decode_into(column.get(row), out);
            return Ok(());
        }
        let (s, r) = self.rows[row];
        s.multi_tokens_f32(field, s.multi_range(field, r)?, out)
    }
    fn token_count(&self, field: usize, row: usize) -> Result<usize> {
        if let Some(column) = &self.columns[field] {
            return crate::format::segment::whole_tokens(
                self.schema,
                field,
                row,
                column.get(row).len(),
            );
        }
        let (s, r) = self.rows[row];
        Ok(s.multi_range(field, r)?.len())
    }
    fn plaid_codes(
        &self,
        field: usize,
        row: usize,
        codec_id: u64,
    ) -> Result<Option<(crate::format::plaid::Codes<'_>, &[u8])>> {
        if self.columns[field].is_some() {
            return Ok(None);
        }
        let (s, r) = self.rows[row];
        let Some(view) = s.plaid(field).transpose()? else {
            return Ok(None);
        };
        if view.codec_id != codec_id {
            return Ok(None);
        }
        let range = s.multi_range(field, r)?;
        let rb = view.residual_bytes();
        let corrupt =
            |what: String| Error::corrupt(s.path(), "plaid index", 0, format!("row {r}: {what}"));
        let codes = view
            .codes
            .slice(range.clone())
            .ok_or_else(|| corrupt(format!("tokens {range:?} lie outside the index's codes")))?;
        // Copied codes are not re-derived: damage `open` does not look for must not travel.
        let k = view.k() as u32;
        codes.try_for_each(|c| match c < k {
            true => Ok(()),
            false => Err(corrupt(format!("a token names centroid {c} of {k}"))),
        })?;
        let residuals = view
            .residuals
            .get(range.start * rb..range.end * rb)
            .ok_or_else(|| corrupt(format!("tokens {range:?} lie outside the residuals")))?;
        Ok(Some((codes, residuals)))
    }
}

impl Writer {
    /// Merges all segments of a collection into one and drops deleted rows. Commits pending changes
    /// first. Readers holding older snapshots keep working on the old files.
    pub fn compact(&mut self, collection: &str) -> Result<CompactInfo> {
        self.rewrite(collection, &Compact)
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
        self.rewrite(collection, &Reindex)
    }

    /// Rewrites `collection` under `policy`: commits pending changes, plans (the live rows),
    /// executes (writes and fsyncs one new segment with the policy's field transforms and the
    /// declared indexes' graphs) and commits (one manifest swap replaces every old segment).
    /// Readers holding older snapshots keep working on the old files.
    pub fn rewrite(&mut self, collection: &str, policy: &dyn RewritePolicy) -> Result<CompactInfo> {
        self.usable()?;
        self.commit()?;
        let c = self.base.collection(collection)?.clone();
        let plan = Self::plan(&c);
        let segments_before = c.slots().len();
        if !policy.needed(&plan) {
            return Ok(CompactInfo {
                generation: self.base.generation(),
                segments_before,
                segments_after: segments_before,
                rows_dropped: 0,
            });
        }
        let segment = self.execute(&plan, policy)?;
        let mut manifest = self.base.manifest().clone();
        manifest.generation += 1;
        let entry = manifest
            .collections
            .iter_mut()
            .find(|e| e.name == collection)
            .expect("collection of the base snapshot");
        entry.segments = segment.into_iter().collect();
        policy.edit_entry(entry)?;
        let segments_after = entry.segments.len();
        manifest.next_file_id = self.next_file_id;
        self.publish(manifest)?;
        Ok(CompactInfo {
            generation: self.base.generation(),
            segments_before,
            segments_after,
            rows_dropped: plan.rows_dropped,
        })
    }

    fn plan(c: &Collection) -> RewritePlan<'_> {
        let mut rows = Vec::new();
        for slot in c.slots() {
            rows.extend(
                (0..slot.segment.rows())
                    .filter(|&r| !slot.is_deleted(r))
                    .map(|r| (&*slot.segment, r)),
            );
        }
        let rows_dropped = c
            .slots()
            .iter()
            .map(|s| s.deletes.as_ref().map_or(0, |d| d.count()))
            .sum();
        RewritePlan {
            collection: c,
            rows,
            rows_dropped,
        }
    }

    /// Writes the plan's rows as one new segment file (fsynced with its directory); `None` when
    /// no row is live.
    fn execute(
        &mut self,
        plan: &RewritePlan<'_>,
        policy: &dyn RewritePolicy,
    ) -> Result<Option<SegmentEntry>> {
        if plan.rows.is_empty() {
            return Ok(None);
        }
        let c = plan.collection;
        let mut columns = Vec::with_capacity(c.schema().fields.len());
        for field in 0..c.schema().fields.len() {
            let column = policy.transform(plan, field)?;
            if let Some(col) = &column {
                if col.len() != plan.rows.len() {
                    return Err(Error::InvalidInput(format!(
                        "rewrite of collection {:?}: the new column of field {:?} has {} values for {} live rows",
                        c.name(),
                        c.schema().fields[field].name,
                        col.len(),
                        plan.rows.len()
                    )));
                }
            }
            columns.push(column);
        }
        let id = self.take_file_id();
        let cdir = Path::new(c.name());
        let rel = cdir.join(manifest::segment_file_name(id));
        let source = MergeSource {
            schema: c.schema(),
            rows: &plan.rows,
            columns,
        };
        let indexes = self.indexes_of(c.name());
        let plaid = self.plaid_of(c.name());
        // Keep the current codecs unless asked to re-cluster, the field's values change, or the
        // rows added since they were trained exceed `recluster_percent` of the rows they were
        // trained on. Rows added are counted from the rows stored (deleted ones included): a
        // deleted row stays stored until compaction, so replacing documents (deletes plus as
        // many adds) counts its adds, where the live count would not move.
        let mut codecs = super::commit::current_codecs(Some(c), &plaid)?;
        let stored: u64 = c.slots().iter().map(|s| u64::from(s.segment.rows())).sum();
        codecs.retain(|name, codec| {
            let params = &plaid[name];
            let transformed = c
                .schema()
                .field_index(name)
                .is_some_and(|fi| source.columns[fi].is_some());
            let added = stored.saturating_sub(codec.trained_rows);
            // A codes-only field is re-clustered only on demand: that re-quantises tokens
            // already decompressed once, and the error would add up with each growth step.
            let grown = !params.codes_only
                && added as f64
                    > codec.trained_rows as f64 * (params.recluster_percent as f64 / 100.0);
            !(policy.recluster() || transformed || grown)
        });
        // A kept codec now accounts for the rows it was trained on less the deleted rows this
        // compaction drops, so that rows added later (replacing them, say) count as added.
        for codec in codecs.values_mut() {
            let mut kept = (**codec).clone();
            kept.trained_rows = kept.trained_rows.saturating_sub(plan.rows_dropped);
            *codec = std::sync::Arc::new(kept);
        }
        let build = PlaidBuild {
            params: &plaid,
            codecs: &codecs,
            spill: self.options.spill_policy(&*self.dir, cdir),
        };
        let (extra, _) =
            super::commit::index_sections(&source, &indexes, self.options.screen_min_rows, &build)?;
        let bytes = write_segment_with(&*self.dir, &rel, &source, &extra)?;
        self.dir.sync_dir(cdir)?;
        Ok(Some(SegmentEntry {
            id,
            rows: plan.rows.len() as u64,
            bytes,
            deletes: None,
        }))
    }
}
