//! A consistent, immutable view of one commit: the read path.
//!
//! [`Database::snapshot`](crate::Database::snapshot) reads `MANIFEST`, maps every live segment and tombstone file, and validates
//! their headers (not their bulk data). A [`Snapshot`] keeps its files mapped, so it stays valid
//! while writers commit and compact.

use std::path::Path;
use std::sync::Arc;

use crate::collection::{Collection, SegmentSlot};
use crate::error::{Error, Result};
use crate::format::deletes::DeleteBitmap;
use crate::format::manifest::{self, Manifest};
use crate::format::segment::Segment;
use crate::storage::Directory;

/// Reads and decodes the current manifest of the database in `dir`.
pub(crate) fn read_manifest(dir: &dyn Directory) -> Result<Manifest> {
    let rel = Path::new(manifest::FILE_NAME);
    let bytes = match dir.read(rel) {
        Ok(b) => b,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotADatabase {
                path: dir.path_of(Path::new("")),
            })
        }
        Err(e) => return Err(e),
    };
    Manifest::decode(&dir.path_of(rel), &bytes)
}

/// A consistent, immutable view of one commit.
#[derive(Debug, Clone)]
pub struct Snapshot {
    manifest: Arc<Manifest>,
    collections: Vec<Arc<Collection>>,
}

impl Snapshot {
    /// A consistent view of the last commit of the database at `dir`, reusing the open segments
    /// of `previous` (and what they keep: filter columns). Never blocks on writers.
    ///
    /// Files of older commits are deleted by the writer once a newer manifest is published; if one
    /// disappears between reading the manifest and mapping it, the snapshot is retaken from the
    /// newer manifest.
    pub(crate) fn latest(dir: &dyn Directory, previous: Option<&Snapshot>) -> Result<Self> {
        let mut last_err = None;
        for _ in 0..16 {
            let manifest = read_manifest(dir)?;
            match Snapshot::load_reusing(dir, manifest, previous) {
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

    pub(crate) fn load(dir: &dyn Directory, manifest: Manifest) -> Result<Self> {
        Self::load_reusing(dir, manifest, None)
    }

    /// Loads a snapshot, reusing already open segments of `previous` (same file id = same file).
    pub(crate) fn load_reusing(
        dir: &dyn Directory,
        manifest: Manifest,
        previous: Option<&Snapshot>,
    ) -> Result<Self> {
        let mut collections = Vec::with_capacity(manifest.collections.len());
        for entry in &manifest.collections {
            let cdir = Path::new(&entry.name);
            let mut slots = Vec::with_capacity(entry.segments.len());
            for s in &entry.segments {
                let reused = previous
                    .and_then(|p| p.collection(&entry.name).ok())
                    .and_then(|c| c.slots().iter().find(|slot| slot.entry.id == s.id))
                    // Same file id, rows and length: the same immutable file (a database
                    // recreated at the same path starts its ids over).
                    .filter(|slot| {
                        slot.segment.rows() as u64 == s.rows && slot.segment.file_len() == s.bytes
                    })
                    .map(|slot| slot.segment.clone());
                let segment = match reused {
                    Some(seg) => seg,
                    None => {
                        let rel = cdir.join(manifest::segment_file_name(s.id));
                        let path = dir.path_of(&rel);
                        let seg = Segment::from_map(&path, s.id, dir.map(&rel)?)?;
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
                        let rel = cdir.join(manifest::deletes_file_name(s.id, d.file_id));
                        let path = dir.path_of(&rel);
                        let map = dir.map(&rel)?;
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
                    .with_indexes(entry.indexes.clone(), entry.plaid.clone())
                    .with_encoders(entry.encoders.clone(), &dir.path_of(Path::new(""))),
            ));
        }
        Ok(Snapshot {
            manifest: Arc::new(manifest),
            collections,
        })
    }

    /// Statistics of every collection (what `vellum info` prints).
    pub fn stats(&self) -> Result<crate::collection::DatabaseStats> {
        Ok(crate::collection::DatabaseStats {
            generation: self.generation(),
            format_version: crate::format::FORMAT_VERSION,
            collections: self
                .collections
                .iter()
                .map(|c| c.stats())
                .collect::<Result<_>>()?,
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
