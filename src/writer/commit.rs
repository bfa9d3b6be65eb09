//! Commit: spill the remaining batches to new segment files, write new tombstone files, fsync
//! them and their directories, then publish the new manifest atomically (`format-spec/commit.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::pending::{BatchSource, Loc, Pending, PendingDoc};
use super::{CommitInfo, Writer};
use crate::error::{Error, Result};
use crate::format::manifest::{self, CollectionEntry, DeletesEntry, Manifest, SegmentEntry};
use crate::format::screen::screen_sections;
use crate::format::segment::{write_segment_with, ExtraSection, Segment, SegmentSource};
use crate::hnsw::graph_sections;
use crate::meta::{HnswParams, PlaidParams};
use crate::plaid::build::{plaid_sections, Codecs, PlaidBuild};
use crate::snapshot::Snapshot;
use crate::storage::{self, Directory};

/// The optional sections a new segment gets: HNSW graphs of indexed fields (`hnsw.md`),
/// screening codes of dense fields (`screen.md`) when it has at least `screen_min_rows` rows, and
/// PLAID sections of multi-vector fields with a declared PLAID index (`plaid.md`). Also returns
/// the PLAID codecs trained for it (fields that had none to reuse).
pub(super) fn index_sections(
    source: &dyn SegmentSource,
    indexes: &BTreeMap<String, HnswParams>,
    screen_min_rows: u64,
    plaid: &PlaidBuild<'_>,
) -> Result<(Vec<ExtraSection>, Codecs)> {
    let mut extra = graph_sections(source, indexes)?;
    extra.extend(screen_sections(source, screen_min_rows)?);
    let (sections, trained) = plaid_sections(source, plaid)?;
    extra.extend(sections);
    Ok((extra, trained))
}

/// The PLAID codec each declared field's newest section uses in `collection` (what new segments
/// are encoded with until a compaction re-clusters).
pub(super) fn current_codecs(
    collection: Option<&crate::collection::Collection>,
    plaid: &BTreeMap<String, PlaidParams>,
) -> Result<Codecs> {
    let mut out = BTreeMap::new();
    let Some(c) = collection else {
        return Ok(out);
    };
    for name in plaid.keys() {
        let Some(fi) = c.schema().field_index(name) else {
            continue;
        };
        if let Some(view) = c.slots().iter().rev().find_map(|s| s.segment.plaid(fi)) {
            out.insert(name.clone(), Arc::new(view?.codec()));
        }
    }
    Ok(out)
}

impl Writer {
    /// A collection's directory, relative to the database.
    pub(super) fn collection_dir(collection: &str) -> PathBuf {
        PathBuf::from(collection)
    }

    /// Writes `p`'s buffered documents as a new (unpublished) segment file `file_id`.
    pub(super) fn flush(
        dir: &dyn Directory,
        collection: &str,
        p: &mut Pending,
        file_id: u64,
        options: &super::WriterOptions,
    ) -> Result<()> {
        let docs: Vec<&PendingDoc> = p.batch.iter().flatten().collect();
        if docs.is_empty() {
            p.batch.clear();
            p.batch_bytes = 0;
            return Ok(());
        }
        let cdir = Self::collection_dir(collection);
        dir.create_dir_all(&cdir)?;
        let rel = cdir.join(manifest::segment_file_name(file_id));
        let source = BatchSource {
            schema: &p.schema,
            docs,
        };
        let build = PlaidBuild {
            params: &p.plaid,
            codecs: &p.codecs,
            spill: options.spill_policy(dir, &cdir),
        };
        let (extra, trained) =
            index_sections(&source, &p.indexes, options.screen_min_rows, &build)?;
        p.codecs.extend(trained);
        let bytes = write_segment_with(dir, &rel, &source, &extra)?;
        let segment = Arc::new(Segment::from_map(
            &dir.path_of(&rel),
            file_id,
            dir.map(&rel)?,
        )?);
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

    pub(super) fn take_file_id(&mut self) -> u64 {
        let id = self.next_file_id;
        self.next_file_id += 1;
        id
    }

    /// Fails when a record of `e` names an embedded model copy that is not in the database (a
    /// writer opened after `prepare_encoders` collects copies no commit references yet).
    pub(super) fn check_embedded_copies(
        &self,
        collection: &str,
        field: &str,
        e: &crate::meta::FieldEncoders,
    ) -> Result<()> {
        for r in [&e.passage, &e.query] {
            let rel = Path::new(crate::encode::EMBEDDED_MODELS_DIR).join(r.fingerprint_hex());
            if r.embedded && !self.dir.exists(&rel)? {
                return Err(Error::Encoder {
                    collection: collection.to_string(),
                    field: field.to_string(),
                    detail: format!(
                        "the embedded copy of {} at {} is gone; prepare the encoders again with this writer open",
                        r.source,
                        self.dir.path_of(&rel).display()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Makes every buffered change durable and visible, atomically. With nothing to commit, returns
    /// the current generation without writing anything.
    pub fn commit(&mut self) -> Result<CommitInfo> {
        self.usable()?;
        if !self.has_changes() {
            return Ok(CommitInfo {
                generation: self.base.generation(),
                ..Default::default()
            });
        }
        // A record naming an embedded copy is published only with its copy in place (a writer
        // opened after `prepare_encoders` collects copies that no commit references yet).
        for ((collection, field), e) in &self.encoder_changes {
            self.check_embedded_copies(collection, field, e)?;
        }
        // Collections in name order, so that file ids (and the order of the writes) do not depend
        // on hash order.
        let mut names: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.is_dirty())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        for name in &names {
            let id = self.take_file_id();
            let p = self.pending.get_mut(name).expect("listed");
            Self::flush(&*self.dir, name, p, id, &self.options)?;
        }
        let mut manifest = self.base.manifest().clone();
        manifest.generation += 1;
        for (name, schema) in &self.new_collections {
            let cdir = Self::collection_dir(name);
            self.dir.create_dir_all(&cdir)?;
            manifest.collections.push(CollectionEntry {
                name: name.clone(),
                schema: schema.clone(),
                segments: Vec::new(),
                indexes: BTreeMap::new(),
                plaid: BTreeMap::new(),
                encoders: BTreeMap::new(),
                versions: Default::default(),
            });
        }
        for (name, indexes) in &self.index_changes {
            if let Some(entry) = manifest.collections.iter_mut().find(|c| &c.name == name) {
                entry.indexes = indexes.clone();
            }
        }
        for (name, plaid) in &self.plaid_changes {
            if let Some(entry) = manifest.collections.iter_mut().find(|c| &c.name == name) {
                entry.plaid = plaid.clone();
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
            let cdir = Self::collection_dir(name);
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
                    let rel = cdir.join(manifest::deletes_file_name(seg.id, file_id));
                    storage::write_new(&*self.dir, &rel, &bm.encode(seg.id))?;
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
            self.dir.sync_dir(d)?;
        }
        self.dir.sync_dir(Path::new(""))?;
        self.publish(manifest)?;
        info.generation = self.base.generation();
        Ok(info)
    }

    /// Replaces `MANIFEST` atomically with `manifest`, moves the writer's base to it and collects
    /// the files it no longer references.
    ///
    /// Once the manifest is replaced the commit is durable, whatever happens next: the batch is
    /// cleared at once (a retried commit must not publish it twice); garbage collection is best
    /// effort (what it leaves, the next writer collects); a failure to map the new commit makes
    /// the writer unusable ([`crate::Error::WriterFailed`]) rather than leave it building on the
    /// old one.
    pub(super) fn publish(&mut self, manifest: Manifest) -> Result<()> {
        manifest.validate().map_err(|detail| {
            Error::corrupt(
                self.dir.path_of(Path::new(manifest::FILE_NAME)),
                "manifest body (not written)",
                0,
                format!("the writer built an invalid manifest, a bug: {detail}"),
            )
        })?;
        storage::replace_atomically(
            &*self.dir,
            Path::new(manifest::FILE_NAME),
            &manifest.encode(),
        )?;
        self.clear_batch();
        match Snapshot::load_reusing(&*self.dir, manifest, Some(&self.base)) {
            Ok(base) => self.base = base,
            Err(e) => {
                let detail = format!(
                    "generation {} was committed, but: {e}",
                    self.base.generation() + 1
                );
                self.failed = Some(detail.clone());
                return Err(Error::WriterFailed(detail));
            }
        }
        // Best effort: leftovers are collected by the next commit or writer.
        let _ = self.collect_garbage();
        Ok(())
    }
}
