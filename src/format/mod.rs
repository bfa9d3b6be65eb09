//! The on-disk format, version 1: one module per file kind, each with its writer and reader.
//! Byte layouts are specified in `format-spec/`; keep the two in step.
//!
//! * [`manifest`]: `MANIFEST`, the root of a database: collections, schemas, live segments.
//! * [`segment`]: `*.vseg`, immutable segment files holding ids, text, metadata and vectors.
//! * [`deletes`]: `*.vdel`, tombstone bitmaps for a segment, one file per delete generation.
//! * [`graph`]: the HNSW graph section (kind 20) of a segment file, `format-spec/hnsw.md`.

pub mod deletes;
pub mod graph;
pub mod manifest;
pub mod plaid;
pub mod screen;
pub mod segment;

use std::path::Path;

use crate::error::{Error, Result};

/// The format version this build writes.
pub const FORMAT_VERSION: u32 = 1;
/// The oldest format version this build reads.
pub const MIN_READ_VERSION: u32 = 1;
/// Alignment of every section start inside a segment file.
pub const SECTION_ALIGN: u64 = 64;

/// The checksum used everywhere in the format: XXH3-64 with seed 0.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Rounds `n` up to a multiple of [`SECTION_ALIGN`].
pub fn align_up(n: u64) -> Option<u64> {
    n.checked_add(SECTION_ALIGN - 1)
        .map(|v| v / SECTION_ALIGN * SECTION_ALIGN)
}

/// Bounds-checked little-endian reads from an untrusted byte slice, reporting corruption with the
/// file and structure name.
pub(crate) struct LeReader<'a> {
    pub bytes: &'a [u8],
    pub path: &'a Path,
    pub what: &'a str,
}

impl<'a> LeReader<'a> {
    pub fn slice(&self, offset: u64, len: u64) -> Result<&'a [u8]> {
        let end = offset.checked_add(len);
        match end {
            Some(end) if end <= self.bytes.len() as u64 => {
                Ok(&self.bytes[offset as usize..end as usize])
            }
            _ => Err(Error::corrupt(
                self.path,
                self.what,
                offset,
                format!(
                    "{len} bytes at offset {offset} run past the end of the data ({} bytes)",
                    self.bytes.len()
                ),
            )),
        }
    }

    pub fn u32(&self, offset: u64) -> Result<u32> {
        let s = self.slice(offset, 4)?;
        Ok(u32::from_le_bytes(s.try_into().expect("4 bytes")))
    }

    pub fn u64(&self, offset: u64) -> Result<u64> {
        let s = self.slice(offset, 8)?;
        Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
    }
}

/// Checks the version field (offset 8) of a file whose 64-byte header ends with the XXH3-64 of
/// its first 56 bytes: an unreadable version in an intact header is a newer file
/// ([`Error::UnsupportedVersion`]); in a header that fails its checksum it is damage
/// ([`Error::Corrupt`]), not a reason to upgrade.
pub(crate) fn check_header_version(path: &Path, what: &str, header: &[u8]) -> Result<()> {
    let r = LeReader {
        bytes: header,
        path,
        what,
    };
    let found = r.u32(8)?;
    if (MIN_READ_VERSION..=FORMAT_VERSION).contains(&found) {
        return Ok(());
    }
    let stored = r.u64(56)?;
    if checksum(r.slice(0, 56)?) != stored {
        return Err(Error::corrupt(
            path,
            what,
            56,
            format!("header checksum mismatch (the version field reads {found})"),
        ));
    }
    check_version(path, found)
}

/// Checks a version field against what this build reads.
pub(crate) fn check_version(path: &Path, found: u32) -> Result<()> {
    if (MIN_READ_VERSION..=FORMAT_VERSION).contains(&found) {
        Ok(())
    } else {
        Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            min: MIN_READ_VERSION,
            max: FORMAT_VERSION,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_rounds_to_64() {
        assert_eq!(align_up(0), Some(0));
        assert_eq!(align_up(1), Some(64));
        assert_eq!(align_up(64), Some(64));
        assert_eq!(align_up(65), Some(128));
        assert_eq!(align_up(u64::MAX), None);
    }

    #[test]
    fn reader_reports_out_of_bounds_as_corruption() {
        let p = Path::new("f");
        let r = LeReader {
            bytes: &[1, 0, 0, 0],
            path: p,
            what: "header",
        };
        assert_eq!(r.u32(0).unwrap(), 1);
        let err = r.u64(0).unwrap_err();
        assert!(err.is_corruption());
        assert!(err.to_string().contains("header"));
        assert!(r.slice(u64::MAX, 2).is_err());
    }

    #[test]
    fn checksum_is_xxh3_64_seed_0() {
        // Reference value of XXH3-64 for the empty input, from the xxHash test vectors.
        assert_eq!(checksum(b""), 0x2D06800538D394C2);
    }
}
