//! Append-only bytes kept in memory up to a limit, then in an unnamed temporary file: what a
//! segment build holds of a section too large to keep whole in memory (a PLAID index's packed
//! residuals, ~32 bytes per token), read back once, in order, when the section is written.
//!
//! The file comes from [`tempfile::tempfile_in`], in the directory the build names (the
//! collection's directory: the same disk as the segment about to be written), else the system's
//! temporary directory. On Linux it never has a name (`O_TMPFILE`); elsewhere it is named
//! `.tmp` + 6 letters or digits for an instant (Unix: created, then unlinked) or while it is open
//! (Windows: deleted on close), so a crash there can leave one behind: the next writer removes
//! such files from collection directories (`writer/gc.rs`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};

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

/// Bytes per write to the temporary file once spilled, and per read back.
const IO_CHUNK: usize = 1 << 20;

/// Temporary files created by this process so far (diagnostics; tests check that a build over
/// its budget did spill).
static FILES_CREATED: AtomicU64 = AtomicU64::new(0);

/// Number of temporary files [`SpillBuffer`]s of this process have created.
pub fn files_created() -> u64 {
    FILES_CREATED.load(Ordering::Relaxed)
}

/// Append-only bytes: in memory up to the policy's limit, then in an unnamed temporary file
/// (the bytes appended since its last write, at most 1 MiB, still in memory). Memory held: at
/// most the limit before spilling, at most 1 MiB after.
#[derive(Debug)]
pub struct SpillBuffer {
    policy: SpillPolicy,
    /// The bytes after the file's.
    mem: Vec<u8>,
    /// The first `spilled` bytes, once the limit was passed. Locked for each write and for a
    /// whole read back, which both move the file's one cursor.
    file: Option<Mutex<File>>,
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

    /// The temporary file's place, for messages.
    fn label(&self) -> PathBuf {
        self.policy
            .dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join("(unnamed temporary file of index data)")
    }

    /// Appends `bytes`: in memory while they fit the limit; past it, everything goes to the
    /// temporary file (created on the first spill), in writes of about 1 MiB.
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory when the temporary file cannot be created or written
    /// (a full disk, a read-only directory). The buffer is then unusable: its build fails.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<()> {
        let limit = match self.file {
            None => self.policy.limit,
            Some(_) => IO_CHUNK,
        };
        let len = self.mem.len().saturating_add(bytes.len());
        if len <= limit {
            if len > self.mem.capacity() {
                // Grow by doubling, but never past the limit.
                let target = (self.mem.capacity() * 2).clamp(len, limit.max(len));
                self.mem.reserve_exact(target - self.mem.len());
            }
            self.mem.extend_from_slice(bytes);
            return Ok(());
        }
        if self.file.is_none() {
            let file = match &self.policy.dir {
                Some(dir) => tempfile::tempfile_in(dir),
                None => tempfile::tempfile(),
            }
            .map_err(|e| Error::io(self.label(), e))?;
            FILES_CREATED.fetch_add(1, Ordering::Relaxed);
            self.file = Some(Mutex::new(file));
        }
        let held = std::mem::take(&mut self.mem);
        self.write_at_end(&held)?;
        self.write_at_end(bytes)?;
        Ok(())
    }

    /// Writes `bytes` after the file's `spilled` bytes (wherever a read left the cursor).
    fn write_at_end(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let label = self.label();
        let io = |e: std::io::Error| Error::io(&label, e);
        let mut f = self.file.as_ref().expect("spilled").lock();
        f.seek(SeekFrom::Start(self.spilled)).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        self.spilled += bytes.len() as u64;
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
    /// the bytes in memory. Calls from several threads take turns (the file is locked for the
    /// whole read back).
    ///
    /// # Errors
    /// [`Error::Io`] when the temporary file cannot be read back (or is shorter than written);
    /// `put`'s errors.
    pub fn write_to(&self, put: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        if let Some(file) = &self.file {
            let label = self.label();
            let io = |e: std::io::Error| Error::io(&label, e);
            let mut f = file.lock();
            f.seek(SeekFrom::Start(0)).map_err(io)?;
            let mut buf = vec![0u8; (IO_CHUNK as u64).min(self.spilled) as usize];
            let mut left = self.spilled;
            while left > 0 {
                let n = (buf.len() as u64).min(left) as usize;
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

    /// Reads back from several threads at once take turns: each gets every byte in order; an
    /// append after a read goes after the bytes already spilled.
    #[test]
    fn concurrent_reads_and_appends_after_reads_keep_the_bytes() {
        let before = files_created();
        let mut b = SpillBuffer::new(SpillPolicy {
            dir: None,
            limit: 100,
        });
        let mut expected: Vec<u8> = (0..3 * IO_CHUNK + 12_345)
            .map(|i| (i % 253) as u8)
            .collect();
        b.extend_from_slice(&expected).unwrap();
        assert!(b.is_spilled() && files_created() > before);
        std::thread::scope(|s| {
            let reads: Vec<_> = (0..4).map(|_| s.spawn(|| collect(&b))).collect();
            for r in reads {
                assert!(r.join().unwrap() == expected);
            }
        });
        let tail: Vec<u8> = (0..IO_CHUNK + 7).map(|i| (i % 7) as u8).collect();
        b.extend_from_slice(&tail).unwrap();
        expected.extend_from_slice(&tail);
        assert!(collect(&b) == expected);
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
