//! Encoder versions (`format-spec/manifest.md`, "versions"): the storage half of a re-encode.
//!
//! A re-encode of field F writes, beside the current segments, a *staged* version: for each
//! current segment, pieces of at most a few thousand rows holding every row (deleted ones too,
//! so that tombstones carry over row by row) with F's new values and the other fields copied as
//! stored. Each piece is published by its own commit that records it under `versions.staged`,
//! which readers ignore; an interrupted re-encode resumes from the pieces committed. One commit
//! then switches: the staged segments become the live ones (with the tombstones of the rows they
//! copy), F's encoders become the staged ones, and the replaced segments are kept as
//! `versions.previous`, so that a rollback is one more switch. Readers see one version or the
//! other, never a mix: every snapshot reads one manifest.
//!
//! The encoding itself lives above this layer (`ingest::reencode`); the writer only stores the
//! columns it is given.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::rewrite::{FieldColumn, MergeSource};
use super::Writer;
use crate::error::{Error, Result};
use crate::format::deletes::DeleteBitmap;
use crate::format::manifest::{self, DeletesEntry, SegmentEntry};
use crate::format::segment::{write_segment_with, Segment};
use crate::meta::{CollectionEntry, EncoderVersion, FieldEncoders, Piece};
use crate::plaid::build::PlaidBuild;
use crate::schema::{FieldSpec, Schema};
use crate::storage;

/// Rows of the current version that a staged re-encode has not written yet: rows
/// `start .. start + rows` of segment `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingPiece {
    /// Segment of the current version.
    pub source: u64,
    /// First row.
    pub start: u64,
    /// Rows.
    pub rows: u64,
}

/// The rows of `entry`'s live segments that its staged version does not hold yet, cut into
/// pieces of at most `max_rows` rows, in segment order. Empty when nothing is staged or the
/// staged version is complete.
pub fn pending_pieces(entry: &CollectionEntry, max_rows: u64) -> Vec<PendingPiece> {
    let max_rows = max_rows.max(1);
    let Some(staged) = &entry.versions.staged else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in &entry.segments {
        // Staged pieces are written in row order, so the rows held are a prefix.
        let done = contiguous_prefix(&staged.pieces, s.id);
        let mut start = done;
        while start < s.rows {
            let rows = max_rows.min(s.rows - start);
            out.push(PendingPiece {
                source: s.id,
                start,
                rows,
            });
            start += rows;
        }
    }
    out
}

/// How many leading rows of `source` the pieces hold without a gap.
fn contiguous_prefix(pieces: &[Piece], source: u64) -> u64 {
    let mut ranges: Vec<(u64, u64)> = pieces
        .iter()
        .filter(|p| p.whole == source)
        .map(|p| (p.start, p.rows))
        .collect();
    ranges.sort_unstable();
    let mut end = 0;
    for (start, rows) in ranges {
        if start != end {
            break;
        }
        end += rows;
    }
    end
}

/// What a switch between versions did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchInfo {
    /// Generation of the manifest that published it.
    pub generation: u64,
    /// The field.
    pub field: String,
    /// Its version number before.
    pub from_version: u64,
    /// Its version number now.
    pub to_version: u64,
    /// Live segments now.
    pub segments: usize,
    /// Whether the replaced version is kept for rollback.
    pub kept_previous: bool,
}

impl Writer {
    /// Starts (or continues) a staged re-encode of `field` with `encoders`: publishes the
    /// intention, so that an interrupted run can tell whether a later one asks for the same
    /// encoders. Returns the staged version's number. Fails when a re-encode of another field, or
    /// to other encoders, is staged (finish it or [`Writer::abort_staged`] it first), when the
    /// field has no encoders, or when the new encoders do not fit the field.
    pub fn begin_staged(
        &mut self,
        collection: &str,
        field: &str,
        encoders: &FieldEncoders,
    ) -> Result<u64> {
        self.usable()?;
        self.commit()?;
        let entry = self.entry(collection)?;
        let fi = field_of(&entry, collection, field)?;
        if !entry.encoders.contains_key(field) {
            return Err(Error::InvalidInput(format!(
                "field {field:?} of collection {collection:?} has no encoder: a re-encode reads the documents' text and needs the field's current encoder to version against; bind encoders when creating the collection"
            )));
        }
        let spec = entry.schema.fields[fi].clone();
        self.begin(&entry, &spec, encoders, None)
    }

    /// Starts (or continues) a staged re-encode into a new field: `new_field` (a field the
    /// collection does not have, of the new encoders' output) is appended to the schema of the
    /// staged version, and the documents' text is encoded into it; every other field is copied
    /// unchanged. After the switch the collection has the new field too; a rollback removes it
    /// again (with any index declared on it). Returns the staged version's number. Fails as
    /// [`Writer::begin_staged`] does, and when the field exists or its spec is invalid.
    pub fn begin_staged_new_field(
        &mut self,
        collection: &str,
        new_field: &FieldSpec,
        encoders: &FieldEncoders,
    ) -> Result<u64> {
        self.usable()?;
        self.commit()?;
        let entry = self.entry(collection)?;
        if entry.schema.field_index(&new_field.name).is_some() {
            return Err(Error::InvalidInput(format!(
                "--new-field {:?}: collection {collection:?} already has a field of that name (fields: {}); re-encode it without --new-field, or name another field",
                new_field.name,
                entry.schema.field_names()
            )));
        }
        let schema = entry.schema.clone().with_field(new_field.clone());
        schema.validate()?;
        self.begin(&entry, new_field, encoders, Some(schema))
    }

    fn begin(
        &mut self,
        entry: &CollectionEntry,
        spec: &FieldSpec,
        encoders: &FieldEncoders,
        schema: Option<Schema>,
    ) -> Result<u64> {
        let (collection, field) = (entry.name.as_str(), spec.name.as_str());
        encoders
            .validate()
            .map_err(|e| Error::InvalidInput(format!("field {field:?}: {e}")))?;
        for r in [&encoders.passage, &encoders.query] {
            r.fits(&spec.kind).map_err(|e| {
                let hint = match schema {
                    None => "; to encode into a new field of the encoder's shape beside this one, re-encode with --new-field NAME (Reencode::new_field)",
                    Some(_) => "",
                };
                Error::InvalidInput(format!("re-encode of field {field:?} ({spec}): {e}{hint}"))
            })?;
        }
        self.check_embedded_copies(collection, field, encoders)?;
        if let Some(staged) = &entry.versions.staged {
            if staged.field != field || &staged.encoders != encoders || staged.schema != schema {
                return Err(Error::InvalidInput(format!(
                    "collection {collection:?} has an unfinished re-encode of field {:?}{} to {} ({} pieces written) with other encoders, options or fields than those given; run the re-encode again without naming an encoder to finish it, or abort it first",
                    staged.field,
                    if staged.schema.is_some() { " (a new field)" } else { "" },
                    staged.encoders.passage.source,
                    staged.pieces.len()
                )));
            }
            return Ok(staged.version);
        }
        let previous = entry
            .versions
            .previous
            .as_ref()
            .filter(|p| p.field == field)
            .map_or(0, |p| p.version);
        let version = if schema.is_some() {
            // A new field's first version (after a version of it that was rolled back: the next).
            previous + 1
        } else {
            entry.versions.current_of(field).max(previous) + 1
        };
        let mut m = self.base.manifest().clone();
        m.generation += 1;
        let e = entry_mut(&mut m.collections, collection);
        e.versions.staged = Some(EncoderVersion {
            field: field.to_string(),
            version,
            encoders: encoders.clone(),
            segments: Vec::new(),
            pieces: Vec::new(),
            schema,
        });
        self.publish(m)?;
        Ok(version)
    }

    /// Writes one piece of the staged version: rows `piece.start .. + piece.rows` of current
    /// segment `piece.source`, deleted rows included, with the staged field's values replaced by
    /// `column` (one value per row, the field's encoded bytes) and every other field copied.
    /// Builds the declared indexes for it and publishes it under `versions.staged` in its own
    /// commit (readers do not see it).
    pub fn stage_piece(
        &mut self,
        collection: &str,
        piece: PendingPiece,
        column: FieldColumn,
    ) -> Result<()> {
        self.usable()?;
        self.commit()?;
        let c = self.base.collection(collection)?.clone();
        let entry = self.entry(collection)?;
        let next = pending_pieces(&entry, u64::MAX)
            .into_iter()
            .find(|p| p.source == piece.source);
        if next.is_none_or(|n| n.start != piece.start) {
            return Err(Error::InvalidInput(format!(
                "staged piece {}..{} of segment {}: the next rows to stage in that segment start at {}",
                piece.start,
                piece.start + piece.rows,
                piece.source,
                next.map_or("its end (it is complete, or not live)".to_string(), |n| format!("row {}", n.start))
            )));
        }
        let staged = entry.versions.staged.clone().ok_or_else(|| {
            Error::InvalidInput(format!("collection {collection:?} has no staged re-encode"))
        })?;
        // The staged version's fields: the live ones, or those plus a new field (appended, so
        // the copied fields keep their positions).
        let schema = staged.schema_or(c.schema()).clone();
        let fi = schema
            .field_index(&staged.field)
            .ok_or_else(|| Error::InvalidInput(format!("staged field {:?}", staged.field)))?;
        let slot = c
            .slots()
            .iter()
            .find(|s| s.entry.id == piece.source)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "collection {collection:?} has no live segment {}",
                    piece.source
                ))
            })?;
        let end = piece.start + piece.rows;
        if piece.rows == 0 || end > slot.segment.rows() as u64 {
            return Err(Error::InvalidInput(format!(
                "piece {}..{end} of segment {} (which has {} rows)",
                piece.start,
                piece.source,
                slot.segment.rows()
            )));
        }
        if column.len() as u64 != piece.rows {
            return Err(Error::InvalidInput(format!(
                "re-encode of field {:?}: {} values for a piece of {} rows",
                staged.field,
                column.len(),
                piece.rows
            )));
        }
        let rows: Vec<(&Segment, u32)> = (piece.start..end)
            .map(|r| (&*slot.segment, r as u32))
            .collect();
        let mut columns = vec![None; schema.fields.len()];
        columns[fi] = Some(column);
        let source = MergeSource {
            schema: &schema,
            rows: &rows,
            columns,
        };
        // PLAID codecs: other fields keep theirs; the re-encoded field's vectors are new, so its
        // codec is trained on the first piece and shared by the others (read back from it). It
        // accounts for that piece's rows only, so the next compaction re-clusters the field over
        // all of them (a piece is the oldest rows, not ColBERT's sample of the collection).
        let plaid = self.plaid_of(collection);
        let mut codecs = super::commit::current_codecs(Some(&c), &plaid)?;
        codecs.remove(&staged.field);
        if plaid.contains_key(&staged.field) {
            for s in &staged.segments {
                let rel = Path::new(collection).join(manifest::segment_file_name(s.id));
                let seg = Segment::from_map(&self.dir.path_of(&rel), s.id, self.dir.map(&rel)?)?;
                if let Some(view) = seg.plaid(fi) {
                    codecs.insert(staged.field.clone(), Arc::new(view?.codec()));
                    break;
                }
            }
        }
        let build = PlaidBuild {
            params: &plaid,
            codecs: &codecs,
            spill: self.options.spill_policy(&*self.dir, Path::new(collection)),
        };
        let indexes = self.indexes_of(collection);
        let (extra, _) =
            super::commit::index_sections(&source, &indexes, self.options.screen_min_rows, &build)?;
        let id = self.take_file_id();
        let cdir = Path::new(collection);
        let rel = cdir.join(manifest::segment_file_name(id));
        let bytes = write_segment_with(&*self.dir, &rel, &source, &extra)?;
        self.dir.sync_dir(cdir)?;
        let mut m = self.base.manifest().clone();
        m.generation += 1;
        m.next_file_id = self.next_file_id;
        let e = entry_mut(&mut m.collections, collection);
        let s = e.versions.staged.as_mut().expect("checked above");
        s.segments.push(SegmentEntry {
            id,
            rows: piece.rows,
            bytes,
            deletes: None,
        });
        s.pieces.push(Piece {
            whole: piece.source,
            start: piece.start,
            rows: piece.rows,
            part: id,
        });
        self.publish(m)
    }

    /// Switches the collection to its staged version in one commit: the staged segments become
    /// the live ones (each with the tombstones of the rows it copies), the field's encoders the
    /// staged ones. The replaced version is kept for [`Writer::rollback_version`] when
    /// `keep_previous` (replacing a version kept before), dropped otherwise. Fails, changing
    /// nothing, while rows remain to be staged ([`pending_pieces`]).
    pub fn switch_to_staged(
        &mut self,
        collection: &str,
        keep_previous: bool,
    ) -> Result<SwitchInfo> {
        self.usable()?;
        self.commit()?;
        let entry = self.entry(collection)?;
        let mut staged = entry.versions.staged.clone().ok_or_else(|| {
            Error::InvalidInput(format!(
                "collection {collection:?} has no staged re-encode to switch to"
            ))
        })?;
        let left = pending_pieces(&entry, u64::MAX);
        if !left.is_empty() {
            return Err(Error::InvalidInput(format!(
                "the re-encode of field {:?} is not finished: {} rows of {} segments are not written yet",
                staged.field,
                left.iter().map(|p| p.rows).sum::<u64>(),
                left.len()
            )));
        }
        // Pieces of segments that are no longer live (compacted away or wholly deleted since
        // they were written) are dropped with their files.
        let live: std::collections::HashSet<u64> = entry.segments.iter().map(|s| s.id).collect();
        staged.pieces.retain(|p| live.contains(&p.whole));
        let kept: std::collections::HashSet<u64> = staged.pieces.iter().map(|p| p.part).collect();
        staged.segments.retain(|s| kept.contains(&s.id));
        // Live order: the pieces of each current segment, in its order, by row.
        let order: HashMap<u64, usize> = entry
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        let by_id: HashMap<u64, &Piece> = staged.pieces.iter().map(|p| (p.part, p)).collect();
        staged
            .segments
            .sort_by_key(|s| (order[&by_id[&s.id].whole], by_id[&s.id].start));
        self.switch(collection, staged, keep_previous, "switch")
    }

    /// Returns the collection to the version kept by the last switch, in one commit (the
    /// version left is kept in its place, so a second rollback undoes the first). Deletions made
    /// since the switch carry over; fails, changing nothing, when there is no kept version or
    /// when documents were added, or segments compacted, since the switch (their rows have no
    /// counterpart in the kept version).
    pub fn rollback_version(&mut self, collection: &str) -> Result<SwitchInfo> {
        self.usable()?;
        self.commit()?;
        let entry = self.entry(collection)?;
        let previous = entry.versions.previous.clone().ok_or_else(|| {
            Error::InvalidInput(format!(
                "collection {collection:?} keeps no previous encoder version to roll back to (none was kept, or it was dropped)"
            ))
        })?;
        self.switch(collection, previous, true, "rollback")
    }

    /// Drops the staged (unfinished) re-encode of a collection; its files are collected.
    /// Returns false when none was staged.
    pub fn abort_staged(&mut self, collection: &str) -> Result<bool> {
        self.edit_versions(collection, |v| v.staged.take().is_some())
    }

    /// Drops the version kept for rollback; its files (and embedded models no other record
    /// uses) are collected. Returns false when none was kept.
    pub fn drop_previous(&mut self, collection: &str) -> Result<bool> {
        self.edit_versions(collection, |v| v.previous.take().is_some())
    }

    fn edit_versions(
        &mut self,
        collection: &str,
        edit: impl FnOnce(&mut crate::meta::Versions) -> bool,
    ) -> Result<bool> {
        self.usable()?;
        self.commit()?;
        self.entry(collection)?;
        let mut m = self.base.manifest().clone();
        let e = entry_mut(&mut m.collections, collection);
        if !edit(&mut e.versions) {
            return Ok(false);
        }
        m.generation += 1;
        self.publish(m)?;
        Ok(true)
    }

    /// Makes `target` (a retained version of one field) the live one: its segments get the
    /// tombstones of the current rows they correspond to (by its pieces); the current version
    /// becomes the retained `previous` (or is dropped).
    fn switch(
        &mut self,
        collection: &str,
        target: EncoderVersion,
        keep_previous: bool,
        what: &str,
    ) -> Result<SwitchInfo> {
        let c = self.base.collection(collection)?.clone();
        let entry = self.entry(collection)?;
        let field = target.field.clone();
        // A switch that adds or removes a field changes the schema that a staged re-encode's
        // pieces were written against: refuse it while another re-encode is staged.
        if target.schema.is_some() {
            let other =
                |s: &&EncoderVersion| s.field != target.field || s.version != target.version;
            if let Some(staged) = entry.versions.staged.as_ref().filter(other) {
                return Err(Error::InvalidInput(format!(
                    "cannot {what} collection {collection:?}: it adds or removes field {field:?}, and a re-encode of field {:?} is staged against the current fields; finish it or abort it (--abort) first",
                    staged.field
                )));
            }
        }
        let adding = entry.schema.field_index(&field).is_none();
        let current_encoders = match entry.encoders.get(&field) {
            Some(e) => e.clone(),
            // The field is being added: the version replaced (without it) keeps the new
            // encoders as a placeholder; they are not used while the field is absent.
            None if adding && target.schema.is_some() => target.encoders.clone(),
            None => {
                return Err(Error::InvalidInput(format!(
                    "{what}: field {field:?} of collection {collection:?} has no encoders"
                )))
            }
        };
        // Row maps between the live segments and the target's: (target, target row, live,
        // live row, rows).
        let target_ids: std::collections::HashSet<u64> =
            target.segments.iter().map(|s| s.id).collect();
        let live_ids: std::collections::HashSet<u64> =
            entry.segments.iter().map(|s| s.id).collect();
        // One side of every piece is the target's, the same side for all of them (a segment of
        // either side may be gone: all its rows were deleted).
        let target_is_part = if target.pieces.iter().any(|p| target_ids.contains(&p.part)) {
            true
        } else if target.pieces.iter().any(|p| target_ids.contains(&p.whole)) {
            false
        } else {
            target.pieces.iter().any(|p| live_ids.contains(&p.whole))
        };
        let mut spans = Vec::new();
        let mut covered: BTreeMap<u64, u64> = BTreeMap::new();
        for p in &target.pieces {
            let (t, t0, l, l0) = if target_is_part {
                (p.part, 0, p.whole, p.start)
            } else {
                (p.whole, p.start, p.part, 0)
            };
            spans.push((t, t0, l, l0, p.rows));
            *covered.entry(l).or_default() += p.rows;
        }
        for s in &entry.segments {
            if covered.get(&s.id).copied().unwrap_or(0) != s.rows {
                return Err(Error::InvalidInput(format!(
                    "cannot {what} field {field:?} of collection {collection:?} to version {}: live segment {} holds rows that version has no copy of (documents added, or segments compacted, since the switch); re-encode with the wanted encoder instead",
                    target.version, s.id
                )));
            }
        }
        let cdir = Path::new(collection);
        let mut segments = Vec::with_capacity(target.segments.len());
        for t in &target.segments {
            let mut bitmap = DeleteBitmap::new(t.rows as u32);
            for &(ts, t0, l, l0, n) in spans.iter().filter(|s| s.0 == t.id) {
                let slot = c.slots().iter().find(|s| s.entry.id == l);
                for i in 0..n {
                    // A live-side segment gone from the manifest had every row deleted.
                    let deleted = slot.is_none_or(|s| s.is_deleted((l0 + i) as u32));
                    if deleted {
                        bitmap.insert((t0 + i) as u32);
                    }
                }
                debug_assert_eq!(ts, t.id);
            }
            let count = bitmap.count();
            if count == t.rows {
                continue; // every row deleted: the segment leaves the manifest
            }
            let deletes = if count == 0 {
                None
            } else {
                let file_id = self.take_file_id();
                let rel = cdir.join(manifest::deletes_file_name(t.id, file_id));
                storage::write_new(&*self.dir, &rel, &bitmap.encode(t.id))?;
                Some(DeletesEntry { file_id, count })
            };
            segments.push(SegmentEntry {
                deletes,
                ..t.clone()
            });
        }
        self.dir.sync_dir(cdir)?;
        let from_version = if adding {
            0
        } else {
            entry.versions.current_of(&field)
        };
        let mut m = self.base.manifest().clone();
        m.generation += 1;
        m.next_file_id = self.next_file_id;
        let e = entry_mut(&mut m.collections, collection);
        // A switch that adds or removes a field (a re-encode into a new field, its rollback)
        // changes the schema; the version it replaces keeps the schema it had.
        let replaced_schema = target.schema.as_ref().map(|_| e.schema.clone());
        let replaced = EncoderVersion {
            field: field.clone(),
            version: from_version,
            encoders: current_encoders,
            segments: std::mem::replace(&mut e.segments, segments),
            pieces: target.pieces.clone(),
            schema: replaced_schema,
        };
        if let Some(schema) = &target.schema {
            e.schema = schema.clone();
        }
        if e.schema.field_index(&field).is_some() {
            e.encoders.insert(field.clone(), target.encoders.clone());
        } else {
            // Back to before the field was added: its encoders and indexes go with it.
            e.encoders.remove(&field);
            e.indexes.remove(&field);
            e.plaid.remove(&field);
        }
        if target.version <= 1 {
            e.versions.current.remove(&field);
        } else {
            e.versions.current.insert(field.clone(), target.version);
        }
        if e.versions
            .staged
            .as_ref()
            .is_some_and(|s| s.version == target.version && s.field == field)
        {
            e.versions.staged = None;
        }
        e.versions.previous = keep_previous.then_some(replaced);
        let segments = e.segments.len();
        self.publish(m)?;
        Ok(SwitchInfo {
            generation: self.base.generation(),
            field,
            from_version,
            to_version: target.version,
            segments,
            kept_previous: keep_previous,
        })
    }

    /// The committed manifest entry of `collection`.
    fn entry(&self, collection: &str) -> Result<CollectionEntry> {
        self.base
            .manifest()
            .collection(collection)
            .cloned()
            .ok_or_else(|| Error::NoSuchCollection {
                name: collection.to_string(),
                available: self.base.manifest().collection_names(),
            })
    }
}

/// Index of `field` in `entry`'s schema, or the error naming the fields there are.
fn field_of(entry: &CollectionEntry, collection: &str, field: &str) -> Result<usize> {
    entry
        .schema
        .field_index(field)
        .ok_or_else(|| Error::NoSuchField {
            collection: collection.to_string(),
            field: field.to_string(),
            available: entry.schema.field_names(),
        })
}

fn entry_mut<'a>(entries: &'a mut [CollectionEntry], name: &str) -> &'a mut CollectionEntry {
    entries
        .iter_mut()
        .find(|c| c.name == name)
        .expect("collection of the base manifest")
}
