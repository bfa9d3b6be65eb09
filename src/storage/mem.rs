//! [`MemDirectory`]: a database directory in memory that models what survives a power cut.
//!
//! The model (the conservative reading of POSIX that `format-spec/commit.md` assumes):
//! * a file's bytes are durable up to its last [`WriteFile::sync`]; bytes written after it are
//!   lost in a crash;
//! * a directory entry (a created, renamed or removed name, a new sub-directory) is durable only
//!   once its parent directory has been synced with [`Directory::sync_dir`];
//! * a rename is atomic: after a crash the name shows the old or the new file, never a mix.
//!
//! [`MemDirectory::crash_image`] builds the directory a machine would find after a power cut at the
//! current instant. [`MemDirectory::cut_power_after`] makes the n-th durability operation (file
//! sync, directory sync, rename) and everything after it fail, so a test can crash an operation at
//! each of its durability boundaries in turn; [`MemDirectory::boundaries`] lists the operations
//! performed so far.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Directory, LockGuard, MappedFile, WriteFile};
use crate::error::{Error, Result};

/// One durability operation, as recorded by [`MemDirectory::boundaries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// A file's fsync.
    SyncFile(PathBuf),
    /// A directory's fsync.
    SyncDir(PathBuf),
    /// A rename (its durability still needs the directory's fsync).
    Rename {
        /// The old name.
        from: PathBuf,
        /// The new name.
        to: PathBuf,
    },
}

#[derive(Debug, Clone, Default)]
struct Inode {
    /// What readers see now.
    written: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    File(usize),
    Dir,
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    /// The namespace readers see, by path relative to the root (the root itself is implicit).
    entries: BTreeMap<PathBuf, Entry>,
    /// The namespace that survives a crash.
    durable: BTreeMap<PathBuf, Entry>,
    /// Durability operations performed so far.
    log: Vec<Durability>,
    /// Durability operation (0-based) from which every operation fails.
    cut_at: Option<usize>,
    powered_off: bool,
    locked: bool,
}

impl State {
    fn check_power(&self, path: &Path) -> Result<()> {
        if self.powered_off {
            return Err(power_cut(path));
        }
        Ok(())
    }

    /// Records a durability operation, or cuts the power if it is the planned one.
    fn durability(&mut self, path: &Path, op: Durability) -> Result<()> {
        self.check_power(path)?;
        if self.cut_at == Some(self.log.len()) {
            self.powered_off = true;
            return Err(power_cut(path));
        }
        self.log.push(op);
        Ok(())
    }

    fn file(&self, root: &Path, rel: &Path) -> Result<usize> {
        match self.entries.get(rel) {
            Some(Entry::File(i)) => Ok(*i),
            Some(Entry::Dir) => Err(Error::io(
                root.join(rel),
                std::io::Error::other("is a directory"),
            )),
            None => Err(not_found(root, rel)),
        }
    }

    fn parent_exists(&self, rel: &Path) -> bool {
        match rel.parent() {
            None => true,
            Some(p) if p.as_os_str().is_empty() => true,
            Some(p) => self.entries.get(p) == Some(&Entry::Dir),
        }
    }
}

fn power_cut(path: &Path) -> Error {
    Error::io(
        path,
        std::io::Error::other("simulated power cut (MemDirectory)"),
    )
}

fn not_found(root: &Path, rel: &Path) -> Error {
    Error::io(
        root.join(rel),
        std::io::Error::from(std::io::ErrorKind::NotFound),
    )
}

fn parent(rel: &Path) -> &Path {
    rel.parent().unwrap_or(Path::new(""))
}

/// A database directory held in memory, with durable and written-but-not-synced bytes kept apart
/// and power cuts on demand. See the module docs for the crash model.
///
/// ```
/// use std::sync::Arc;
/// use vellum::storage::MemDirectory;
/// use vellum::{Database, Document, FieldSpec, Schema};
///
/// let dir = Arc::new(MemDirectory::new());
/// let db = Database::create_in(dir.clone()).unwrap();
/// let mut w = db.writer().unwrap();
/// w.create_collection("c", Schema::new().with_field(FieldSpec::parse("e:dense:2:f32:l2").unwrap())).unwrap();
/// w.add("c", Document::new("a").with_dense("e", vec![1.0, 0.0])).unwrap();
/// w.commit().unwrap();
/// drop(w);
/// // After a power cut, the committed document is there.
/// let after = Database::open_in(Arc::new(dir.crash_image())).unwrap();
/// assert_eq!(after.snapshot().unwrap().collection("c").unwrap().len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct MemDirectory {
    root: PathBuf,
    state: Arc<Mutex<State>>,
}

impl Default for MemDirectory {
    fn default() -> Self {
        Self::new()
    }
}

impl MemDirectory {
    /// An empty directory, named `mem:` in messages.
    pub fn new() -> Self {
        MemDirectory {
            root: PathBuf::from("mem:"),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// The directory a machine finds after a power cut now: durable entries with their durable
    /// bytes, every entry whose parent directory's entry is not durable dropped. The image is
    /// powered on, unlocked, with an empty operation log.
    pub fn crash_image(&self) -> MemDirectory {
        let s = self.state.lock();
        let mut out = State::default();
        for (path, entry) in &s.durable {
            let reachable = path
                .ancestors()
                .skip(1)
                .filter(|a| !a.as_os_str().is_empty())
                .all(|a| s.durable.get(a) == Some(&Entry::Dir));
            if !reachable {
                continue;
            }
            let e = match entry {
                Entry::Dir => Entry::Dir,
                Entry::File(i) => {
                    let bytes = s.inodes[*i].durable.clone();
                    out.inodes.push(Inode {
                        written: bytes.clone(),
                        durable: bytes,
                    });
                    Entry::File(out.inodes.len() - 1)
                }
            };
            out.entries.insert(path.clone(), e);
            out.durable.insert(path.clone(), e);
        }
        MemDirectory {
            root: self.root.clone(),
            state: Arc::new(Mutex::new(out)),
        }
    }

    /// Cuts the power at durability operation `n` (0-based, counted from now): it and every
    /// later operation of any kind fail with an I/O error, as if the process had died there.
    pub fn cut_power_after(&self, n: usize) {
        let mut s = self.state.lock();
        s.cut_at = Some(s.log.len() + n);
    }

    /// Whether a planned power cut has happened.
    pub fn powered_off(&self) -> bool {
        self.state.lock().powered_off
    }

    /// The durability operations performed so far, in order.
    pub fn boundaries(&self) -> Vec<Durability> {
        self.state.lock().log.clone()
    }

    /// Names and sizes of the files visible now (for tests).
    pub fn files(&self) -> Vec<(PathBuf, usize)> {
        let s = self.state.lock();
        s.entries
            .iter()
            .filter_map(|(p, e)| match e {
                Entry::File(i) => Some((p.clone(), s.inodes[*i].written.len())),
                Entry::Dir => None,
            })
            .collect()
    }
}

struct MemFile {
    state: Arc<Mutex<State>>,
    inode: usize,
    pos: u64,
    /// Relative path, for the operation log.
    rel: PathBuf,
    /// Full path, for messages.
    path: PathBuf,
}

impl Write for MemFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut s = self.state.lock();
        if s.powered_off {
            return Err(std::io::Error::other("simulated power cut (MemDirectory)"));
        }
        let data = &mut s.inodes[self.inode].written;
        let start = self.pos as usize;
        let end = start + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(buf);
        self.pos = end as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for MemFile {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let len = self.state.lock().inodes[self.inode].written.len() as i64;
        let pos = match to {
            SeekFrom::Start(p) => p as i64,
            SeekFrom::End(d) => len + d,
            SeekFrom::Current(d) => self.pos as i64 + d,
        };
        if pos < 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        self.pos = pos as u64;
        Ok(self.pos)
    }
}

impl WriteFile for MemFile {
    fn sync(&mut self) -> std::io::Result<()> {
        let mut s = self.state.lock();
        s.durability(&self.path, Durability::SyncFile(self.rel.clone()))
            .map_err(|_| std::io::Error::other("simulated power cut (MemDirectory)"))?;
        let inode = &mut s.inodes[self.inode];
        inode.durable = inode.written.clone();
        Ok(())
    }
}

#[derive(Debug)]
struct MemLock {
    state: Arc<Mutex<State>>,
}

impl LockGuard for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.state.lock().locked = false;
    }
}

impl Directory for MemDirectory {
    fn path_of(&self, rel: &Path) -> PathBuf {
        super::join_root(&self.root, rel)
    }

    fn create_dir_all(&self, rel: &Path) -> Result<()> {
        let mut s = self.state.lock();
        s.check_power(&self.path_of(rel))?;
        for a in rel.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            match s.entries.get(a) {
                Some(Entry::Dir) => {}
                Some(Entry::File(_)) => {
                    return Err(Error::io(
                        self.path_of(a),
                        std::io::Error::other("a file is in the way"),
                    ))
                }
                None => {
                    s.entries.insert(a.to_path_buf(), Entry::Dir);
                }
            }
        }
        Ok(())
    }

    fn create_new(&self, rel: &Path) -> Result<Box<dyn WriteFile>> {
        let path = self.path_of(rel);
        let mut s = self.state.lock();
        s.check_power(&path)?;
        if s.entries.contains_key(rel) {
            return Err(Error::io(
                path,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        if !s.parent_exists(rel) {
            return Err(not_found(&self.root, parent(rel)));
        }
        s.inodes.push(Inode::default());
        let inode = s.inodes.len() - 1;
        s.entries.insert(rel.to_path_buf(), Entry::File(inode));
        Ok(Box::new(MemFile {
            state: self.state.clone(),
            inode,
            pos: 0,
            rel: rel.to_path_buf(),
            path,
        }))
    }

    fn sync_dir(&self, rel: &Path) -> Result<()> {
        let path = self.path_of(rel);
        let mut s = self.state.lock();
        if !rel.as_os_str().is_empty() && s.entries.get(rel) != Some(&Entry::Dir) {
            s.check_power(&path)?;
            return Err(not_found(&self.root, rel));
        }
        s.durability(&path, Durability::SyncDir(rel.to_path_buf()))?;
        let children = |m: &BTreeMap<PathBuf, Entry>| -> Vec<PathBuf> {
            m.keys().filter(|p| parent(p) == rel).cloned().collect()
        };
        for gone in children(&s.durable) {
            if !s.entries.contains_key(&gone) {
                s.durable.remove(&gone);
            }
        }
        for child in children(&s.entries) {
            let e = s.entries[&child];
            s.durable.insert(child, e);
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let path = self.path_of(to);
        let mut s = self.state.lock();
        s.check_power(&path)?;
        let entry = *s
            .entries
            .get(from)
            .ok_or_else(|| not_found(&self.root, from))?;
        if !s.parent_exists(to) {
            return Err(not_found(&self.root, parent(to)));
        }
        s.durability(
            &path,
            Durability::Rename {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
            },
        )?;
        // A directory moves with everything under it (its entries keep their own durability:
        // only the renamed name itself needs the parent's sync).
        let moved: Vec<(PathBuf, Entry)> = s
            .entries
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, e)| (p.clone(), *e))
            .collect();
        for (p, _) in &moved {
            s.entries.remove(p);
        }
        for (p, e) in moved {
            let rest = p.strip_prefix(from).expect("under from");
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            s.entries.insert(new, e);
        }
        debug_assert!(s.entries.get(to) == Some(&entry));
        // What is durable below a renamed directory belongs to the directory itself, so it is
        // durable under whichever of the two names a crash leaves: keep it under both (the name
        // that is not durable makes its copy unreachable in the crash image).
        if entry == Entry::Dir {
            let below: Vec<(PathBuf, Entry)> = s
                .durable
                .iter()
                .filter(|(p, _)| p.starts_with(from) && p.as_path() != from)
                .map(|(p, e)| (p.clone(), *e))
                .collect();
            for (p, e) in below {
                let rest = p.strip_prefix(from).expect("under from");
                s.durable.insert(to.join(rest), e);
            }
        }
        Ok(())
    }

    fn read(&self, rel: &Path) -> Result<Vec<u8>> {
        let s = self.state.lock();
        s.check_power(&self.path_of(rel))?;
        let i = s.file(&self.root, rel)?;
        Ok(s.inodes[i].written.clone())
    }

    fn map(&self, rel: &Path) -> Result<MappedFile> {
        let s = self.state.lock();
        s.check_power(&self.path_of(rel))?;
        let i = s.file(&self.root, rel)?;
        Ok(MappedFile::from_bytes(&s.inodes[i].written))
    }

    fn list(&self, rel: &Path) -> Result<Option<Vec<String>>> {
        let s = self.state.lock();
        s.check_power(&self.path_of(rel))?;
        if !rel.as_os_str().is_empty() && s.entries.get(rel) != Some(&Entry::Dir) {
            return Ok(None);
        }
        Ok(Some(
            s.entries
                .keys()
                .filter(|p| parent(p) == rel)
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect(),
        ))
    }

    fn remove(&self, rel: &Path) -> Result<()> {
        let mut s = self.state.lock();
        s.check_power(&self.path_of(rel))?;
        if let Some(Entry::File(_)) = s.entries.get(rel) {
            s.entries.remove(rel);
        }
        Ok(())
    }

    fn remove_dir_all(&self, rel: &Path) -> Result<()> {
        let mut s = self.state.lock();
        s.check_power(&self.path_of(rel))?;
        if let Some(Entry::File(_)) = s.entries.get(rel) {
            return Err(Error::io(
                self.path_of(rel),
                std::io::Error::other("not a directory"),
            ));
        }
        s.entries
            .retain(|p, _| !p.starts_with(rel) || rel.as_os_str().is_empty());
        Ok(())
    }

    fn exists(&self, rel: &Path) -> Result<bool> {
        let s = self.state.lock();
        s.check_power(&self.path_of(rel))?;
        Ok(rel.as_os_str().is_empty() || s.entries.contains_key(rel))
    }

    fn lock(&self) -> Result<Box<dyn LockGuard>> {
        let mut s = self.state.lock();
        s.check_power(&self.root)?;
        if s.locked {
            return Err(Error::Locked {
                path: self.root.clone(),
                holder: "another writer of this MemDirectory".into(),
            });
        }
        s.locked = true;
        Ok(Box::new(MemLock {
            state: self.state.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{replace_atomically, write_new};

    #[test]
    fn unsynced_bytes_and_entries_are_lost_in_a_crash() {
        let d = MemDirectory::new();
        d.create_dir_all(Path::new("c")).unwrap();
        write_new(&d, Path::new("c/a"), b"synced").unwrap();
        // The file is synced but its entry (and its directory's) is not: both lost.
        let img = d.crash_image();
        assert!(!img.exists(Path::new("c/a")).unwrap());
        d.sync_dir(Path::new("")).unwrap();
        d.sync_dir(Path::new("c")).unwrap();
        let mut f = d.create_new(Path::new("c/b")).unwrap();
        f.write_all(b"never synced").unwrap();
        d.sync_dir(Path::new("c")).unwrap();
        let img = d.crash_image();
        assert_eq!(img.read(Path::new("c/a")).unwrap(), b"synced");
        // The entry of b is durable, its bytes are not.
        assert_eq!(img.read(Path::new("c/b")).unwrap(), b"");
    }

    #[test]
    fn atomic_replace_shows_old_or_new_at_every_cut() {
        for cut in 0..4 {
            let d = MemDirectory::new();
            replace_atomically(&d, Path::new("M"), b"old").unwrap();
            d.cut_power_after(cut);
            let done = replace_atomically(&d, Path::new("M"), b"new").is_ok();
            let got = d.crash_image().read(Path::new("M")).unwrap();
            if done {
                assert_eq!(got, b"new");
            } else {
                assert!(got == b"old" || got == b"new", "cut {cut}: {got:?}");
            }
        }
    }

    #[test]
    fn a_renamed_directory_keeps_its_durable_content() {
        let d = MemDirectory::new();
        d.create_dir_all(Path::new("m/x.tmp/sub")).unwrap();
        write_new(&d, Path::new("m/x.tmp/sub/f"), b"1").unwrap();
        d.sync_dir(Path::new("m/x.tmp/sub")).unwrap();
        d.sync_dir(Path::new("m/x.tmp")).unwrap();
        d.sync_dir(Path::new("m")).unwrap();
        d.sync_dir(Path::new("")).unwrap();
        d.rename(Path::new("m/x.tmp"), Path::new("m/x")).unwrap();
        assert_eq!(d.read(Path::new("m/x/sub/f")).unwrap(), b"1");
        // Before the parent's sync the old name survives a crash, after it the new one.
        assert!(d.crash_image().exists(Path::new("m/x.tmp/sub/f")).unwrap());
        d.sync_dir(Path::new("m")).unwrap();
        let img = d.crash_image();
        assert_eq!(img.read(Path::new("m/x/sub/f")).unwrap(), b"1");
        assert!(!img.exists(Path::new("m/x.tmp")).unwrap());
    }

    #[test]
    fn power_cut_fails_every_later_operation() {
        let d = MemDirectory::new();
        d.cut_power_after(0);
        assert!(write_new(&d, Path::new("x"), b"1").is_err());
        assert!(d.powered_off());
        assert!(d.read(Path::new("x")).is_err());
        assert!(d.lock().is_err());
    }
}
