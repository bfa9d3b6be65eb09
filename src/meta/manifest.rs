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
    /// Encoder versions of re-encoded fields: the current version numbers, a re-encode in
    /// progress and the version kept for rollback (absent when there is none of these).
    #[serde(default, skip_serializing_if = "Versions::is_empty")]
    pub versions: Versions,
}

/// Encoder versions of a collection's fields (`vellum reencode`): a field's stored vectors are
/// those of one encoder version; a re-encode writes the next version's segments beside the
/// current ones (`staged`) and switches every segment at once in one commit, keeping the
/// replaced segments (`previous`) so that a rollback can switch back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    /// Version number of each field that was re-encoded or rolled back (absent fields are at
    /// version 1: what the collection was created with).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub current: BTreeMap<String, u64>,
    /// A re-encode in progress: segments written so far, invisible to readers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<EncoderVersion>,
    /// The version the last switch replaced, kept for rollback until dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<EncoderVersion>,
}

impl Versions {
    /// True when nothing is recorded (the key is then omitted from the manifest).
    pub fn is_empty(&self) -> bool {
        self.current.is_empty() && self.staged.is_none() && self.previous.is_none()
    }

    /// The version number of `field`'s current vectors.
    pub fn current_of(&self, field: &str) -> u64 {
        self.current.get(field).copied().unwrap_or(1)
    }
}

/// One encoder version of one field that is not the current one: either being written (staged)
/// or replaced and kept (previous). Its segments hold every field of every row (the other
/// fields copied as stored); `pieces` say which rows of the other version's segments each holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderVersion {
    /// The re-encoded field.
    pub field: String,
    /// This version's number.
    pub version: u64,
    /// The field's encoders in this version.
    pub encoders: FieldEncoders,
    /// The segments of this version (staged: written so far, in writing order; previous: as they
    /// were live when replaced, with their tombstones).
    pub segments: Vec<SegmentEntry>,
    /// Row correspondence between this version's segments and the current version's.
    pub pieces: Vec<Piece>,
    /// The collection's fields in this version, when they are not the live version's: a
    /// re-encode into a new field (`vellum reencode --new-field`) stages segments with that
    /// field appended to the schema, and the switch keeps the version it replaces with the
    /// fields it had (without the new one; its number is then 0). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Schema>,
}

impl EncoderVersion {
    /// The fields of this version's segments: its own schema, or the live one (`live`).
    pub fn schema_or<'a>(&'a self, live: &'a Schema) -> &'a Schema {
        self.schema.as_ref().unwrap_or(live)
    }
}

/// Rows `start .. start + rows` of segment `whole` of one version are, in order, rows
/// `0 .. rows` of segment `part` of another (every row, deleted ones included, so that
/// tombstones carry over row by row). A re-encode cuts each live segment into parts; after a
/// rollback the wholes are live and the parts retained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Piece {
    /// The segment cut into pieces.
    pub whole: u64,
    /// First row of the piece in `whole`.
    pub start: u64,
    /// Rows in the piece.
    pub rows: u64,
    /// The segment holding exactly the piece's rows.
    pub part: u64,
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

impl EncoderVersion {
    /// Checks the version against its collection: the field has encoders of this kind, version
    /// numbers differ from the current one, and every segment is in a piece of its size.
    fn validate(&self, c: &CollectionEntry, staged: bool) -> std::result::Result<(), String> {
        let schema = self.schema_or(&c.schema);
        if let Some(own) = &self.schema {
            // The schemas differ by this field alone, appended last.
            let (longer, shorter) = if own.fields.len() > c.schema.fields.len() {
                (own, &c.schema)
            } else {
                (&c.schema, own)
            };
            let ok = longer.fields.len() == shorter.fields.len() + 1
                && longer.fields[..shorter.fields.len()] == shorter.fields[..]
                && longer.fields.last().is_some_and(|f| f.name == self.field);
            if !ok || own.validate().is_err() {
                return Err(format!(
                    "encoder version {} of {:?}: its fields differ from the collection's by more than that field, appended",
                    self.version, self.field
                ));
            }
        }
        self.encoders
            .validate()
            .map_err(|e| format!("field {:?} version {}: {e}", self.field, self.version))?;
        match schema.field_index(&self.field) {
            Some(i) => {
                for r in [&self.encoders.passage, &self.encoders.query] {
                    r.fits(&schema.fields[i].kind).map_err(|e| {
                        format!("field {:?} version {}: {e}", self.field, self.version)
                    })?;
                }
            }
            // A version from before the field was added (kept by the switch that added it: a
            // previous version, never a staged one).
            None if self.schema.is_some() && self.version == 0 && !staged => {}
            None => {
                return Err(format!(
                    "encoder version {} names {:?}, which is not a field",
                    self.version, self.field
                ))
            }
        }
        // A field the live version lacks (being added) has no current version to clash with;
        // one that this version lacks is numbered 0.
        let live = c.schema.field_index(&self.field).is_some();
        let absent_here = schema.field_index(&self.field).is_none();
        if (self.version == 0 && !absent_here)
            || (live && self.version == c.versions.current_of(&self.field))
        {
            return Err(format!(
                "field {:?}: a retained encoder version numbered {} (the current one is {})",
                self.field,
                self.version,
                c.versions.current_of(&self.field)
            ));
        }
        for p in &self.pieces {
            let rows = |id: u64| self.segments.iter().find(|s| s.id == id).map(|s| s.rows);
            let bad = rows(p.part).is_some_and(|r| r != p.rows)
                || rows(p.whole).is_some_and(|r| p.start.saturating_add(p.rows) > r)
                || p.rows == 0
                || p.rows > u32::MAX as u64
                || p.part == p.whole;
            if bad {
                return Err(format!(
                    "field {:?} version {}: piece {p:?} does not fit its segments",
                    self.field, self.version
                ));
            }
        }
        for s in &self.segments {
            let fits = self.pieces.iter().any(|p| {
                (p.part == s.id && p.rows == s.rows)
                    || (p.whole == s.id && p.start.saturating_add(p.rows) <= s.rows)
            });
            if !fits {
                return Err(format!(
                    "field {:?} version {}: segment {} is in no piece of its size",
                    self.field, self.version, s.id
                ));
            }
        }
        Ok(())
    }
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
            for (field, params) in &c.indexes {
                params
                    .validate()
                    .map_err(|e| format!("collection {:?} HNSW index on {field:?}: {e}", c.name))?;
            }
            let versions = [&c.versions.staged, &c.versions.previous];
            for (v, staged) in versions.into_iter().zip([true, false]) {
                if let Some(v) = v {
                    v.validate(c, staged)
                        .map_err(|e| format!("collection {:?}: {e}", c.name))?;
                }
            }
            let retained = versions
                .into_iter()
                .flatten()
                .flat_map(|v| v.segments.iter());
            for s in c.segments.iter().chain(retained) {
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
            let versions = [&c.versions.staged, &c.versions.previous];
            let retained = versions.into_iter().flatten().map(|v| &v.encoders);
            for e in c.encoders.values().chain(retained) {
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
