//! The storage seam: every file-system operation that matters for durability goes through a
//! [`Directory`], so the same commit protocol runs on disk ([`FsDirectory`], the only place that
//! memory-maps files) and in memory ([`MemDirectory`], which keeps written and durable bytes apart
//! and can cut the power at any durability boundary, for crash tests and fuzzing).
//!
//! The commit protocol (see `format-spec/commit.md`) only ever (1) writes a brand-new file under a
//! name no published manifest references and fsyncs it, (2) fsyncs the directory holding it, and
//! (3) replaces `MANIFEST` atomically (temp file, fsync, rename, fsync directory). Published files
//! are never modified or truncated.
//!
//! Paths given to a [`Directory`] are relative to the database directory; `""` is the database
//! directory itself.

mod fs;
mod mem;
mod spill;

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

pub use fs::{map_file, sync_dir, FsDirectory, MappedFile, WriterLock, FORKED_COPY_WAIT};
pub use mem::{Durability, MemDirectory};
pub use spill::{files_created as spill_files_created, SpillBuffer, SpillPolicy};

use crate::error::{Error, Result};

/// A new file being written: bytes, seeks back to patch headers, and an fsync.
pub trait WriteFile: Write + Seek + Send {
    /// Makes the file's bytes durable (`fsync`).
    fn sync(&mut self) -> std::io::Result<()>;
}

/// A held writer lock; released when dropped.
pub trait LockGuard: Send + std::fmt::Debug {}

/// The file-system primitives of a database directory. Implementations: [`FsDirectory`] (the
/// real file system) and [`MemDirectory`] (in memory, with simulated power cuts).
///
/// Every method reports failures as [`Error::Io`] naming the full path (see
/// [`Directory::path_of`]); a missing file is an `Io` error of kind `NotFound`.
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// The full path of `rel`, for messages (and, on disk, for the file system).
    fn path_of(&self, rel: &Path) -> PathBuf;
    /// A real directory for a build's unnamed temporary files ([`SpillBuffer`]), next to the
    /// files written under `rel` (same disk): `None` (the default) where files are not real
    /// ([`MemDirectory`]); such builds use the system's temporary directory.
    fn scratch_dir(&self, rel: &Path) -> Option<PathBuf> {
        let _ = rel;
        None
    }
    /// Creates directory `rel` and its missing parents. Not durable until the parent's
    /// [`Directory::sync_dir`].
    fn create_dir_all(&self, rel: &Path) -> Result<()>;
    /// Creates file `rel` exclusively (fails if it exists) for writing.
    fn create_new(&self, rel: &Path) -> Result<Box<dyn WriteFile>>;
    /// Makes the entries created, renamed or removed in directory `rel` durable.
    fn sync_dir(&self, rel: &Path) -> Result<()>;
    /// Renames `from` to `to` atomically, replacing `to` (same directory).
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Reads a whole (small) file.
    fn read(&self, rel: &Path) -> Result<Vec<u8>>;
    /// The bytes of a whole published (immutable) file, memory-mapped where possible.
    fn map(&self, rel: &Path) -> Result<MappedFile>;
    /// Names of the entries of directory `rel`, or `None` when it does not exist.
    fn list(&self, rel: &Path) -> Result<Option<Vec<String>>>;
    /// Removes file `rel`; a file already gone is not an error.
    fn remove(&self, rel: &Path) -> Result<()>;
    /// Removes directory `rel` and everything in it; a directory already gone is not an error.
    fn remove_dir_all(&self, rel: &Path) -> Result<()>;
    /// Whether `rel` exists.
    fn exists(&self, rel: &Path) -> Result<bool>;
    /// Takes the database's exclusive writer lock, or fails with [`Error::Locked`].
    fn lock(&self) -> Result<Box<dyn LockGuard>>;
}

/// Creates `rel` (which must not exist), writes `bytes` and fsyncs it.
pub fn write_new(dir: &dyn Directory, rel: &Path, bytes: &[u8]) -> Result<()> {
    let path = || dir.path_of(rel);
    let mut file = dir.create_new(rel)?;
    file.write_all(bytes).map_err(|e| Error::io(path(), e))?;
    file.sync().map_err(|e| Error::io(path(), e))
}

/// Atomically replaces `rel` with `bytes`: write `<rel>.tmp`, fsync, rename over `rel`, fsync the
/// parent directory. A crash at any instant leaves either the old or the new content under `rel`.
pub fn replace_atomically(dir: &dyn Directory, rel: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_name(rel);
    dir.remove(&tmp)?;
    write_new(dir, &tmp, bytes)?;
    dir.rename(&tmp, rel)?;
    dir.sync_dir(parent_of(rel))
}

/// The temporary name [`replace_atomically`] writes before renaming.
pub fn tmp_name(rel: &Path) -> PathBuf {
    let mut name = rel.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// `root` joined with `rel`, `root` itself for `""`: what [`Directory::path_of`] returns for the
/// file system and for messages.
pub fn join_root(root: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// The directory holding `rel` (`""` for a name at the top).
pub fn parent_of(rel: &Path) -> &Path {
    rel.parent().unwrap_or(Path::new(""))
}
