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

use std::path::Path;

use super::{check_version, checksum, LeReader, FORMAT_VERSION};
use crate::error::{Error, Result};
pub use crate::meta::manifest::{
    deletes_file_name, segment_file_name, CollectionEntry, DeletesEntry, Manifest, SegmentEntry,
};

/// Magic bytes at the start of `MANIFEST`.
pub const MAGIC: &[u8; 8] = b"VELLUMMF";
/// File name of the manifest inside the database directory.
pub const FILE_NAME: &str = "MANIFEST";
/// Size of the fixed header.
pub const HEADER_LEN: usize = 32;
/// Largest manifest body accepted (a guard against hostile lengths).
pub const MAX_BODY_LEN: u64 = 1 << 30;

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, FieldSpec, Metric, Schema};

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
                plaid: Default::default(),
                encoders: Default::default(),
                versions: Default::default(),
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
        // HNSW parameters the builder cannot take (m = 1) are refused at open, not at a flush.
        let mut m = sample();
        let bad = crate::meta::HnswParams {
            m: 1,
            ..Default::default()
        };
        m.collections[0].indexes.insert("e".into(), bad);
        let err = Manifest::decode(Path::new("M"), &m.encode()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("HNSW index on \"e\"") && text.contains("m = 1 is out of range"),
            "{err}"
        );
    }
}
