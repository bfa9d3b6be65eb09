//! The manifest's JSON body: what one commit made visible (collections, schemas, live segments,
//! declared indexes, bound encoders). Plain serde data; `format::manifest` turns it into bytes and
//! back (header, checksum) and `format-spec/manifest.md` specifies every key.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::encoder::FieldEncoders;
use super::index::HnswParams;
use crate::schema::{validate_name, Schema};

/// The decoded manifest: what one commit made visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Commit counter, +1 per commit.
    pub generation: u64,
    /// Next unused file id; segment and delete file names are derived from ids below it.
    pub next_file_id: u64,
    /// The collections, in creation order.
    pub collections: Vec<CollectionEntry>,
}

/// One collection in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionEntry {
    /// Collection name (also its sub-directory name).
    pub name: String,
    /// The fixed schema.
    pub schema: Schema,
    /// Live segments, oldest first. Order defines tie-breaking in search.
    pub segments: Vec<SegmentEntry>,
    /// Approximate indexes by dense field name (absent when none). Segments written while an index
    /// is declared, with at least its `min_rows` rows, carry the field's graph section.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub indexes: BTreeMap<String, HnswParams>,
    /// PLAID indexes by multi-vector field name (absent when none). Segments written while one
    /// is declared, with at least its `min_rows` rows, carry the field's PLAID section.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plaid: BTreeMap<String, crate::meta::plaid::PlaidParams>,
    /// Encoders by dense field name (absent when none): the passage encoder that ingest uses
    /// for documents given as text, and the query encoder that text search uses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub encoders: BTreeMap<String, FieldEncoders>,
}

/// One live segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    /// File id: the file is `<collection>/seg-<id as 16 hex digits>.vseg`.
    pub id: u64,
    /// Rows in the segment (deleted ones included).
    pub rows: u64,
    /// Size of the segment file in bytes.
    pub bytes: u64,
    /// The current tombstone file, if any row is deleted.
    pub deletes: Option<DeletesEntry>,
}

/// Reference to a tombstone file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletesEntry {
    /// File id of the tombstone file: `<collection>/seg-<segment id>.<file id>.vdel`.
    pub file_id: u64,
    /// Number of deleted rows it marks.
    pub count: u64,
}

/// Name of a segment file.
pub fn segment_file_name(id: u64) -> String {
    format!("seg-{id:016x}.vseg")
}

/// Name of a tombstone file.
pub fn deletes_file_name(segment_id: u64, file_id: u64) -> String {
    format!("seg-{segment_id:016x}.{file_id:016x}.vdel")
}

impl Manifest {
    /// Semantic checks on a decoded manifest.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for c in &self.collections {
            validate_name("collection", &c.name).map_err(|e| e.to_string())?;
            if !names.insert(c.name.as_str()) {
                return Err(format!("collection {:?} listed twice", c.name));
            }
            c.schema
                .validate()
                .map_err(|e| format!("collection {:?}: {e}", c.name))?;
            for (field, enc) in &c.encoders {
                let kind = c
                    .schema
                    .field_index(field)
                    .map(|i| &c.schema.fields[i].kind);
                let Some(kind) = kind else {
                    return Err(format!(
                        "collection {:?}: encoders name {field:?}, which is not a field",
                        c.name
                    ));
                };
                enc.validate()
                    .map_err(|e| format!("collection {:?} field {field:?}: {e}", c.name))?;
                for r in [&enc.passage, &enc.query] {
                    r.fits(kind)
                        .map_err(|e| format!("collection {:?} field {field:?}: {e}", c.name))?;
                }
            }
            for (field, params) in &c.plaid {
                let kind = c
                    .schema
                    .field_index(field)
                    .map(|i| &c.schema.fields[i].kind);
                let ok = matches!(
                    kind,
                    Some(crate::schema::FieldKind::Multi {
                        dim,
                        metric: crate::dtype::Metric::Ip | crate::dtype::Metric::Cosine,
                        ..
                    }) if dim % 8 == 0
                );
                if !ok {
                    return Err(format!(
                        "collection {:?}: a PLAID index on {field:?}, which is not a multi-vector field of metric ip or cosine with a dimension that is a multiple of 8",
                        c.name
                    ));
                }
                params
                    .validate()
                    .map_err(|e| format!("collection {:?} field {field:?}: {e}", c.name))?;
            }
            for s in &c.segments {
                if s.id >= self.next_file_id || !ids.insert(s.id) {
                    return Err(format!(
                        "segment id {} is duplicated or not below next_file_id {}",
                        s.id, self.next_file_id
                    ));
                }
                if s.rows > u32::MAX as u64 {
                    return Err(format!(
                        "segment {} claims {} rows (max {})",
                        s.id,
                        s.rows,
                        u32::MAX
                    ));
                }
                if let Some(d) = s.deletes {
                    if d.count > s.rows || d.file_id >= self.next_file_id || !ids.insert(d.file_id)
                    {
                        return Err(format!("segment {}: invalid deletes entry {d:?}", s.id));
                    }
                }
            }
        }
        Ok(())
    }

    /// The fingerprint hex digits (folder names under `.models/`) of every embedded encoder the
    /// manifest references.
    pub fn embedded_models(&self) -> std::collections::BTreeSet<String> {
        let mut keep = std::collections::BTreeSet::new();
        for c in &self.collections {
            for e in c.encoders.values() {
                for r in [&e.passage, &e.query] {
                    if r.embedded {
                        keep.insert(r.fingerprint_hex().to_string());
                    }
                }
            }
        }
        keep
    }

    /// Looks a collection up by name.
    pub fn collection(&self, name: &str) -> Option<&CollectionEntry> {
        self.collections.iter().find(|c| c.name == name)
    }

    /// Comma-separated collection names, for error messages.
    pub fn collection_names(&self) -> String {
        if self.collections.is_empty() {
            return "none".into();
        }
        self.collections
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
