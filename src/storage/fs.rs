//! The file system: [`FsDirectory`], the one place that memory-maps files, the durable-write
//! helpers the commit protocol is built from, and the single-writer lock.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{Directory, LockGuard, WriteFile};
use crate::error::{Error, Result};

/// A database directory on the file system.
#[derive(Debug, Clone)]
pub struct FsDirectory {
    root: PathBuf,
}

impl FsDirectory {
    /// The directory at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsDirectory { root: root.into() }
    }

    /// Creates `root` (and missing parents) and makes its entry durable by fsyncing every
    /// directory that gained an entry.
    pub fn create_root(root: &Path) -> Result<Self> {
        let mut missing = Vec::new();
        let mut p = Some(root);
        while let Some(d) = p {
            if d.as_os_str().is_empty() || d.exists() {
                break;
            }
            missing.push(d);
            p = d.parent();
        }
        fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        for d in missing {
            match d.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
                _ => sync_dir(Path::new("."))?,
            }
        }
        Ok(FsDirectory::new(root))
    }

    /// The directory's path.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl WriteFile for File {
    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_all()
    }
}

impl LockGuard for WriterLock {}

impl Directory for FsDirectory {
    fn path_of(&self, rel: &Path) -> PathBuf {
        super::join_root(&self.root, rel)
    }

    fn scratch_dir(&self, rel: &Path) -> Option<PathBuf> {
        Some(self.path_of(rel))
    }

    fn create_dir_all(&self, rel: &Path) -> Result<()> {
        let p = self.path_of(rel);
        fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))
    }

    fn create_new(&self, rel: &Path) -> Result<Box<dyn WriteFile>> {
        Ok(Box::new(create_new(&self.path_of(rel))?))
    }

    fn sync_dir(&self, rel: &Path) -> Result<()> {
        sync_dir(&self.path_of(rel))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let target = self.path_of(to);
        fs::rename(self.path_of(from), &target).map_err(|e| Error::io(&target, e))
    }

    fn read(&self, rel: &Path) -> Result<Vec<u8>> {
        read_file(&self.path_of(rel))
    }

    fn map(&self, rel: &Path) -> Result<MappedFile> {
        map_file(&self.path_of(rel))
    }

    fn list(&self, rel: &Path) -> Result<Option<Vec<String>>> {
        let p = self.path_of(rel);
        let entries = match fs::read_dir(&p) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&p, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&p, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(Some(names))
    }

    fn remove(&self, rel: &Path) -> Result<()> {
        remove_if_exists(&self.path_of(rel))
    }

    fn remove_dir_all(&self, rel: &Path) -> Result<()> {
        let p = self.path_of(rel);
        match fs::remove_dir_all(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    fn exists(&self, rel: &Path) -> Result<bool> {
        let p = self.path_of(rel);
        p.try_exists().map_err(|e| Error::io(&p, e))
    }

    fn lock(&self) -> Result<Box<dyn LockGuard>> {
        Ok(Box::new(WriterLock::acquire(&self.root)?))
    }
}

/// Maps a whole file read-only.
///
/// Returns the map and the file length. Empty files cannot be mapped; callers receive an empty
/// [`MappedFile`] for them and report corruption from their own length checks.
pub fn map_file(path: &Path) -> Result<MappedFile> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Ok(MappedFile {
            backing: Backing::Heap(Vec::new(), 0),
        });
    }
    // SAFETY: vellum only maps files that are immutable once published: segment and delete files
    // are written under fresh names, fsynced, and never modified or truncated afterwards; they are
    // only unlinked, which keeps the mapped pages alive (POSIX semantics). A process outside vellum
    // that truncates a published file breaks this contract (as with any mmap-based database).
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok(MappedFile {
        backing: Backing::Map(map),
    })
}

/// The read-only bytes of a whole file: a memory map, or an in-memory copy (for empty files,
/// tests and fuzzing).
#[derive(Debug)]
pub struct MappedFile {
    backing: Backing,
}

#[derive(Debug)]
enum Backing {
    Map(Mmap),
    /// 8-byte aligned storage and the byte length.
    Heap(Vec<u64>, usize),
}

impl MappedFile {
    /// Copies `bytes` into 8-byte aligned memory, so that 64-byte aligned sections are aligned
    /// for every element type.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        MappedFile {
            backing: Backing::Heap(words, bytes.len()),
        }
    }

    /// The file's bytes. A map is page-aligned and a copy 8-byte aligned, so 64-byte aligned
    /// offsets are aligned for every element type.
    pub fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Map(m) => m,
            Backing::Heap(words, len) => &bytemuck::cast_slice(words)[..*len],
        }
    }
}

/// Creates `path` exclusively (fails if it exists).
fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Fsyncs a directory so that entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let d = File::open(dir).map_err(|e| Error::io(dir, e))?;
        d.sync_all().map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Reads a whole (small) file.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

/// Removes a file, treating "already gone" as success.
fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The exclusive writer lock: an OS advisory lock on `DB/LOCK`, released when dropped (also when
/// the process dies, so a crashed writer never leaves a stale lock).
///
/// The lock (`flock`) belongs to the open file, which a `fork` shares with the child until the
/// child `exec`s. So when another thread of this process spawns a subprocess while we hold the
/// lock, the lock can outlive our drop by the child's fork-to-exec window. A retake that finds the
/// lock held by *this* process although no [`WriterLock`] of this process holds it is such a
/// transient copy, and waits for it (up to [`FORKED_COPY_WAIT`]) instead of reporting a second
/// writer.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
    path: PathBuf,
    /// Canonical lock-file path, the key in the process's registry of held locks.
    key: PathBuf,
}

/// How long [`WriterLock::acquire`] waits for a lock held only by a forked child's copy.
pub const FORKED_COPY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Lock files held by live [`WriterLock`]s of this process.
fn held_locks() -> &'static parking_lot::Mutex<std::collections::HashSet<PathBuf>> {
    static HELD: std::sync::OnceLock<parking_lot::Mutex<std::collections::HashSet<PathBuf>>> =
        std::sync::OnceLock::new();
    HELD.get_or_init(Default::default)
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        held_locks().lock().remove(&self.key);
    }
}

impl WriterLock {
    /// Name of the lock file inside the database directory.
    pub const FILE_NAME: &'static str = "LOCK";

    /// Takes the lock or fails at once with [`Error::Locked`] naming the holder.
    pub fn acquire(db_dir: &Path) -> Result<Self> {
        let path = db_dir.join(Self::FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let who = format!(
            "pid {} on host {}",
            std::process::id(),
            hostname().unwrap_or_else(|| "unknown".into())
        );
        // The registry key: one spelling per file, whatever path the caller used.
        let key = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_micros(200);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.seek(std::io::SeekFrom::Start(0));
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim().to_string();
                    let forked_copy = holder == who && !held_locks().lock().contains(&key);
                    if forked_copy && started.elapsed() < FORKED_COPY_WAIT {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(std::time::Duration::from_millis(50));
                        continue;
                    }
                    return Err(Error::Locked {
                        path: db_dir.to_path_buf(),
                        holder: if holder.is_empty() {
                            "holder unknown".into()
                        } else {
                            holder
                        },
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
        }
        file.set_len(0).map_err(|e| Error::io(&path, e))?;
        file.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| Error::io(&path, e))?;
        file.write_all(who.as_bytes())
            .map_err(|e| Error::io(&path, e))?;
        held_locks().lock().insert(key.clone());
        Ok(WriterLock {
            _file: file,
            path,
            key,
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn hostname() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_reports_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = WriterLock::acquire(dir.path()).unwrap();
        let err = WriterLock::acquire(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("locked by another writer"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        WriterLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_forked_copy_of_the_lock_is_waited_for_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let first = WriterLock::acquire(dir.path()).unwrap();
        // A duplicate of the locked file description, as a forked child holds until it execs.
        let copy = first._file.try_clone().unwrap();
        drop(first);
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(copy);
        });
        let t = std::time::Instant::now();
        let _held = WriterLock::acquire(dir.path()).unwrap();
        assert!(t.elapsed() >= std::time::Duration::from_millis(90));
        release.join().unwrap();
        // While `_held` lives, a second writer in this process is refused at once.
        let t = std::time::Instant::now();
        assert!(matches!(
            WriterLock::acquire(dir.path()),
            Err(Error::Locked { .. })
        ));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn atomic_replace_overwrites_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FsDirectory::new(dir.path());
        super::super::replace_atomically(&fs, Path::new("F"), b"one").unwrap();
        super::super::replace_atomically(&fs, Path::new("F"), b"two").unwrap();
        assert_eq!(read_file(&dir.path().join("F")).unwrap(), b"two");
        assert!(!dir.path().join("F.tmp").exists());
    }

    #[test]
    fn empty_files_map_to_empty_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e");
        std::fs::write(&p, b"").unwrap();
        assert!(map_file(&p).unwrap().bytes().is_empty());
    }
}
