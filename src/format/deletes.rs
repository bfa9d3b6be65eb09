//! `*.vdel`: the tombstone bitmap of one segment, as of one commit.
//!
//! ```text
//! offset size field
//!      0    8 magic            b"VELLUMDL"
//!      8    4 format_version   u32 LE (1)
//!     12    4 reserved         u32 LE, 0
//!     16    8 segment_id       u64 LE, the segment this file belongs to
//!     24    8 row_count        u64 LE, rows of that segment
//!     32    8 deleted_count    u64 LE, bits set in the bitmap
//!     40    8 bitmap_checksum  u64 LE, XXH3-64 of the bitmap bytes
//!     48    8 reserved         u64 LE, 0
//!     56    8 header_checksum  u64 LE, XXH3-64 of bytes 0..56
//!     64    w bitmap           ceil(row_count / 64) u64 LE words; bit r%64 of word r/64 = row r deleted;
//!                              bits at or past row_count are zero
//! ```

use std::path::Path;

use super::{check_header_version, checksum, LeReader, FORMAT_VERSION};
use crate::error::{Error, Result};

/// Magic bytes of a tombstone file.
pub const MAGIC: &[u8; 8] = b"VELLUMDL";
/// Header length.
pub const HEADER_LEN: usize = 64;

/// A segment's set of deleted rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteBitmap {
    words: Vec<u64>,
    rows: u32,
    count: u64,
}

impl DeleteBitmap {
    /// An empty bitmap for a segment of `rows` rows.
    pub fn new(rows: u32) -> Self {
        DeleteBitmap {
            words: vec![0; (rows as usize).div_ceil(64)],
            rows,
            count: 0,
        }
    }

    /// A bitmap of `rows` rows from its words (bit `r % 64` of word `r / 64` = row `r`); bits at
    /// or past `rows` are cleared, missing words are zero.
    pub fn from_words(mut words: Vec<u64>, rows: u32) -> Self {
        let n = (rows as usize).div_ceil(64);
        words.resize(n, 0);
        if !rows.is_multiple_of(64) {
            words[n - 1] &= (1u64 << (rows % 64)) - 1;
        }
        let count = words.iter().map(|w| u64::from(w.count_ones())).sum();
        DeleteBitmap { words, rows, count }
    }

    /// The bitmap's words (bit `r % 64` of word `r / 64` = row `r`).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Rows covered.
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// Number of deleted rows.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether `row` is deleted. Rows out of range count as deleted.
    #[inline]
    pub fn contains(&self, row: u32) -> bool {
        if row >= self.rows {
            return true;
        }
        self.words[row as usize / 64] >> (row % 64) & 1 == 1
    }

    /// Marks `row` deleted; returns false if it already was. Panics if `row` is out of range.
    pub fn insert(&mut self, row: u32) -> bool {
        assert!(row < self.rows, "row {row} out of range {}", self.rows);
        let w = &mut self.words[row as usize / 64];
        let bit = 1u64 << (row % 64);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.count += 1;
        true
    }

    /// Encodes the file for segment `segment_id`.
    pub fn encode(&self, segment_id: u64) -> Vec<u8> {
        let bitmap: &[u8] = bytemuck::cast_slice(&self.words);
        let mut out = Vec::with_capacity(HEADER_LEN + bitmap.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&segment_id.to_le_bytes());
        out.extend_from_slice(&(self.rows as u64).to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&checksum(bitmap).to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        let header_sum = checksum(&out[..56]);
        out.extend_from_slice(&header_sum.to_le_bytes());
        for w in &self.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Decodes a tombstone file for segment `segment_id` of `rows` rows. With `full`, also checks
    /// the bitmap checksum and the deleted count (what `verify` does); without it only the header
    /// is checked, keeping open cost independent of the bitmap size.
    pub fn decode(
        path: &Path,
        bytes: &[u8],
        segment_id: u64,
        rows: u32,
        full: bool,
    ) -> Result<Self> {
        let r = LeReader {
            bytes,
            path,
            what: "deletes header",
        };
        let magic = r.slice(0, 8)?;
        if magic != MAGIC {
            return Err(Error::corrupt(
                path,
                "deletes header",
                0,
                "bad magic: not a vellum tombstone file",
            ));
        }
        check_header_version(path, "deletes header", bytes)?;
        let header_sum = r.u64(56)?;
        if checksum(&bytes[..56]) != header_sum {
            return Err(Error::corrupt(
                path,
                "deletes header",
                56,
                "header checksum mismatch",
            ));
        }
        let field = |off: u64, name: &str, expected: u64| -> Result<()> {
            let found = r.u64(off)?;
            if found != expected {
                return Err(Error::corrupt(
                    path,
                    "deletes header",
                    off,
                    format!("{name}: expected {expected}, found {found}"),
                ));
            }
            Ok(())
        };
        field(16, "segment_id", segment_id)?;
        field(24, "row_count", rows as u64)?;
        let count = r.u64(32)?;
        if count > rows as u64 {
            return Err(Error::corrupt(
                path,
                "deletes header",
                32,
                format!("deleted_count {count} exceeds row_count {rows}"),
            ));
        }
        let n_words = (rows as usize).div_ceil(64);
        let expected_len = HEADER_LEN + n_words * 8;
        if bytes.len() != expected_len {
            return Err(Error::corrupt(
                path,
                "deletes bitmap",
                HEADER_LEN as u64,
                format!(
                    "file is {} bytes, expected {expected_len} for {rows} rows",
                    bytes.len()
                ),
            ));
        }
        let bitmap = &bytes[HEADER_LEN..];
        let words: Vec<u64> = bitmap
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let out = DeleteBitmap { words, rows, count };
        if full {
            if checksum(bitmap) != r.u64(40)? {
                return Err(Error::corrupt(
                    path,
                    "deletes bitmap",
                    HEADER_LEN as u64,
                    "bitmap checksum mismatch",
                ));
            }
            let set: u64 = out.words.iter().map(|w| w.count_ones() as u64).sum();
            let tail_bits = rows % 64;
            let tail_clean = tail_bits == 0 || out.words.last().is_none_or(|w| w >> tail_bits == 0);
            if set != count || !tail_clean {
                return Err(Error::corrupt(
                    path,
                    "deletes bitmap",
                    HEADER_LEN as u64,
                    format!(
                        "bitmap has {set} bits set (clean tail: {tail_clean}), header says {count}"
                    ),
                ));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_contains() {
        let mut d = DeleteBitmap::new(130);
        assert!(d.insert(0));
        assert!(d.insert(129));
        assert!(!d.insert(129));
        assert_eq!(d.count(), 2);
        let bytes = d.encode(7);
        let back = DeleteBitmap::decode(Path::new("x"), &bytes, 7, 130, true).unwrap();
        assert_eq!(back, d);
        assert!(back.contains(0) && back.contains(129) && !back.contains(64));
        assert!(back.contains(130), "out of range rows count as deleted");
    }

    #[test]
    fn every_flipped_byte_is_detected_by_full_decode() {
        let mut d = DeleteBitmap::new(100);
        d.insert(3);
        let bytes = d.encode(1);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(
                DeleteBitmap::decode(Path::new("x"), &b, 1, 100, true).is_err(),
                "byte {i}"
            );
        }
        assert!(
            DeleteBitmap::decode(Path::new("x"), &bytes, 2, 100, false).is_err(),
            "wrong segment"
        );
    }
}
