//! Append-only bytes kept in memory up to a limit, then in an unnamed temporary file: what a
//! segment build holds of a section too large to keep whole in memory (a PLAID index's packed
//! residuals, ~32 bytes per token), read back once, in order, when the section is written.
//!
//! The file is created with [`tempfile::tempfile_in`]: it has no name (unlinked at creation, or
//! deleted on close where the OS cannot unlink an open file), so a crash leaves nothing behind.
//! It is created in the directory the build names (the database's collection directory: the
//! same disk as the segment about to be written), else the system's temporary directory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Bytes read back per call of the consumer in [`SpillBuffer::write_to`].
const READ_CHUNK: usize = 1 << 20;

/// Where and when a [`SpillBuffer`] moves its bytes to a temporary file.
#[derive(Debug, Clone)]
pub struct SpillPolicy {
    /// Directory of the temporary file; `None`: the system's temporary directory.
    pub dir: Option<PathBuf>,
    /// Bytes held in memory at most; more go to the file.
    pub limit: usize,
}

impl SpillPolicy {
    /// Bytes a build holds in memory before it spills: 256 MiB (8 M tokens of 2-bit, 128-d
    /// residuals).
    pub const DEFAULT_LIMIT: usize = 256 << 20;

    /// Never spills.
    pub fn memory() -> Self {
        SpillPolicy {
            dir: None,
            limit: usize::MAX,
        }
    }
}

/// Append-only bytes: in memory up to the policy's limit, then in an unnamed temporary file
/// (with the last bytes, less than the limit, still in memory).
#[derive(Debug)]
pub struct SpillBuffer {
    policy: SpillPolicy,
    /// The bytes after the file's.
    mem: Vec<u8>,
    /// The first `spilled` bytes, once the limit was passed.
    file: Option<File>,
    spilled: u64,
}

impl SpillBuffer {
    /// An empty buffer.
    pub fn new(policy: SpillPolicy) -> Self {
        SpillBuffer {
            policy,
            mem: Vec::new(),
            file: None,
            spilled: 0,
        }
    }

    /// A buffer that holds `bytes` in memory and never spills.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        SpillBuffer {
            policy: SpillPolicy::memory(),
            mem: bytes,
            file: None,
            spilled: 0,
        }
    }

    /// Where the temporary file is (or would be) created, for messages.
    fn dir_label(&self) -> PathBuf {
        self.policy.dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// Appends `bytes`; past the limit, the bytes held in memory move to the temporary file.
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory when the temporary file cannot be created or written
    /// (a full disk, a read-only directory).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<()> {
        self.mem.extend_from_slice(bytes);
        if self.mem.len() <= self.policy.limit {
            return Ok(());
        }
        let label = self.dir_label();
        let io = |e: std::io::Error| Error::io(&label, e);
        if self.file.is_none() {
            let file = match &self.policy.dir {
                Some(dir) => tempfile::tempfile_in(dir),
                None => tempfile::tempfile(),
            }
            .map_err(io)?;
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("created above");
        file.write_all(&self.mem).map_err(io)?;
        self.spilled += self.mem.len() as u64;
        self.mem.clear();
        Ok(())
    }

    /// Number of bytes appended.
    pub fn len(&self) -> u64 {
        self.spilled + self.mem.len() as u64
    }

    /// Whether no byte was appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether some bytes are in the temporary file.
    pub fn is_spilled(&self) -> bool {
        self.file.is_some()
    }

    /// All bytes, when they are in memory (`None` once spilled).
    pub fn as_slice(&self) -> Option<&[u8]> {
        (!self.is_spilled()).then_some(&self.mem[..])
    }

    /// Calls `put` with every byte, in order, in pieces of at most 1 MiB from the file and then
    /// the bytes in memory.
    ///
    /// # Errors
    /// [`Error::Io`] when the temporary file cannot be read back (or is shorter than written);
    /// `put`'s errors.
    pub fn write_to(&self, put: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        if let Some(file) = &self.file {
            let label = self.dir_label();
            let io = |e: std::io::Error| Error::io(&label, e);
            // `&File` reads and seeks without `&mut`: one reader at a time (this call).
            let mut f = file;
            f.seek(SeekFrom::Start(0)).map_err(io)?;
            let mut buf = vec![0u8; READ_CHUNK.min(self.spilled as usize)];
            let mut left = self.spilled;
            while left > 0 {
                let n = buf.len().min(left as usize);
                f.read_exact(&mut buf[..n]).map_err(io)?;
                put(&buf[..n])?;
                left -= n as u64;
            }
        }
        put(&self.mem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(b: &SpillBuffer) -> Vec<u8> {
        let mut out = Vec::new();
        b.write_to(&mut |p| {
            out.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
        out
    }

    /// Pieces appended across the limit come back whole and in order, from the file and then
    /// memory; below the limit nothing is spilled.
    #[test]
    fn bytes_come_back_in_order_across_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let expected: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for limit in [0, 1, 10, 999, 10_000] {
            let mut b = SpillBuffer::new(SpillPolicy {
                dir: Some(dir.path().to_path_buf()),
                limit,
            });
            for piece in expected.chunks(37) {
                b.extend_from_slice(piece).unwrap();
            }
            assert_eq!(b.len(), expected.len() as u64);
            assert_eq!(b.is_spilled(), limit < expected.len(), "limit {limit}");
            assert_eq!(b.as_slice().is_none(), b.is_spilled());
            assert_eq!(collect(&b), expected, "limit {limit}");
            // Read back twice: the same bytes.
            assert_eq!(collect(&b), expected, "limit {limit}, second read");
        }
        // The temporary files have no name in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A directory the file cannot be created in: an I/O error naming it.
    #[test]
    fn an_unusable_directory_is_named() {
        let missing = std::env::temp_dir().join("vellum-no-such-dir/inner");
        let mut b = SpillBuffer::new(SpillPolicy {
            dir: Some(missing.clone()),
            limit: 4,
        });
        b.extend_from_slice(b"abc").unwrap();
        let e = b.extend_from_slice(b"defgh").unwrap_err().to_string();
        assert!(e.contains("vellum-no-such-dir"), "{e}");
    }
}
