//! `MANIFEST`: the root of a database. A 32-byte header followed by a UTF-8 JSON body.
//!
//! ```text
//! offset size field
//!      0    8 magic            b"VELLUMMF"
//!      8    4 format_version   u32 LE (1)
//!     12    4 reserved         u32 LE, 0
//!     16    8 body_length      u64 LE
//!     24    8 body_checksum    u64 LE, XXH3-64 of the body
//!     32    n body             JSON object, see format-spec/manifest.md
//! ```

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{check_version, checksum, LeReader, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::schema::{validate_name, Schema};

/// Magic bytes at the start of `MANIFEST`.
pub const MAGIC: &[u8; 8] = b"VELLUMMF";
/// File name of the manifest inside the database directory.
pub const FILE_NAME: &str = "MANIFEST";
/// Size of the fixed header.
pub const HEADER_LEN: usize = 32;
/// Largest manifest body accepted (a guard against hostile lengths).
pub const MAX_BODY_LEN: u64 = 1 << 30;

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
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub indexes: std::collections::BTreeMap<String, crate::hnsw::HnswParams>,
    /// Encoders by dense field name (absent when none): the passage encoder that ingest uses
    /// for documents given as text, and the query encoder that text search uses.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub encoders: std::collections::BTreeMap<String, crate::encode::FieldEncoders>,
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
    /// Encodes header + body.
    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec_pretty(self).expect("manifest serializes");
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&checksum(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes and validates untrusted manifest bytes. `path` is used in error messages only.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let r = LeReader {
            bytes,
            path,
            what: "manifest header",
        };
        let magic = r.slice(0, 8)?;
        if magic != MAGIC {
            return Err(Error::corrupt(
                path,
                "manifest header",
                0,
                format!(
                    "bad magic: expected {:?}, found {:?}",
                    String::from_utf8_lossy(MAGIC),
                    String::from_utf8_lossy(magic)
                ),
            ));
        }
        check_version(path, r.u32(8)?)?;
        let reserved = r.u32(12)?;
        if reserved != 0 {
            return Err(Error::corrupt(
                path,
                "manifest header",
                12,
                format!("reserved field is {reserved}, expected 0"),
            ));
        }
        let body_len = r.u64(16)?;
        let stored_sum = r.u64(24)?;
        if body_len > MAX_BODY_LEN || HEADER_LEN as u64 + body_len != bytes.len() as u64 {
            return Err(Error::corrupt(path, "manifest header", 16, format!(
                "body length {body_len} does not match the file size {} (header {HEADER_LEN} + body)",
                bytes.len()
            )));
        }
        let body = &bytes[HEADER_LEN..];
        let actual = checksum(body);
        if actual != stored_sum {
            return Err(Error::corrupt(
                path,
                "manifest body",
                HEADER_LEN as u64,
                format!(
                "checksum mismatch: header says {stored_sum:#018x}, body hashes to {actual:#018x}"
            ),
            ));
        }
        let manifest: Manifest = serde_json::from_slice(body).map_err(|e| {
            Error::corrupt(
                path,
                "manifest body",
                HEADER_LEN as u64,
                format!("invalid JSON: {e}"),
            )
        })?;
        manifest
            .validate()
            .map_err(|detail| Error::corrupt(path, "manifest body", HEADER_LEN as u64, detail))?;
        Ok(manifest)
    }

    /// Semantic checks on a decoded manifest.
    fn validate(&self) -> std::result::Result<(), String> {
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
                let dim = match c
                    .schema
                    .field_index(field)
                    .map(|i| &c.schema.fields[i].kind)
                {
                    Some(crate::schema::FieldKind::Dense { dim, .. }) => *dim as usize,
                    _ => {
                        return Err(format!(
                            "collection {:?}: encoders name {field:?}, which is not a dense field",
                            c.name
                        ))
                    }
                };
                for r in [&enc.passage, &enc.query] {
                    r.validate()
                        .map_err(|e| format!("collection {:?} field {field:?}: {e}", c.name))?;
                    if r.dims != dim {
                        return Err(format!(
                            "collection {:?} field {field:?}: encoder outputs {} dimensions, the field has {dim}",
                            c.name, r.dims
                        ));
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, FieldSpec, Metric};

    fn sample() -> Manifest {
        Manifest {
            generation: 3,
            next_file_id: 5,
            collections: vec![CollectionEntry {
                name: "docs".into(),
                schema: Schema::new().with_field(FieldSpec::dense("e", 4, DType::F32, Metric::Ip)),
                segments: vec![SegmentEntry {
                    id: 1,
                    rows: 10,
                    bytes: 1000,
                    deletes: Some(DeletesEntry {
                        file_id: 4,
                        count: 2,
                    }),
                }],
                indexes: Default::default(),
                encoders: Default::default(),
            }],
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Manifest::decode(Path::new("M"), &m.encode()).unwrap(), m);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let err = Manifest::decode(Path::new("M"), &b).unwrap_err();
            assert!(err.is_corruption(), "byte {i}: {err}");
        }
        for len in 0..bytes.len() {
            assert!(Manifest::decode(Path::new("M"), &bytes[..len]).is_err());
        }
    }

    #[test]
    fn semantic_errors_are_rejected() {
        let mut m = sample();
        m.next_file_id = 1;
        let err = Manifest::decode(Path::new("M"), &m.encode()).unwrap_err();
        assert!(err.to_string().contains("next_file_id"), "{err}");
        let mut m = sample();
        m.collections[0].name = "../etc".into();
        assert!(Manifest::decode(Path::new("M"), &m.encode()).is_err());
    }
}
