//! `Rootfs`: applies layer tars to a directory the way a container runtime stacks them.
//!
//! Follows the OCI image spec's layer format (image-spec `layer.md`):
//! - `.wh.<name>` removes `<name>` from lower layers; `.wh..wh..opq` hides a directory's
//!   lower-layer content. Neither touches what the same layer adds, whatever the entry order,
//!   so every path a layer writes (and its parents) is remembered until the layer ends.
//! - Entries replace what is there, except a directory over a directory, which merges. A
//!   file never writes through a symlink: the old entry is removed and the new one created
//!   with `O_EXCL | O_NOFOLLOW`.
//! - Hardlinks may point into lower layers; symlinks are stored verbatim.
//! - Owners are applied only when running as root; device nodes only when the kernel lets us.
//!
//! Layers are hostile input. Paths are resolved by the kernel beneath the rootfs's directory
//! handle (`path`), and an entry that names `..`, an absolute path, or a path through a
//! symlink that climbs out is refused with the entry's name before anything is written for it.

mod ops;
mod path;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use self::path::{entry_path, open_beneath, ResolveError, Resolved};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacking a layer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The rootfs directory could not be created or opened.
    #[error("open rootfs {path}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The layer is not a readable tar.
    #[error("read layer tar")]
    Tar(#[source] io::Error),
    /// An entry tries to reach outside the rootfs.
    #[error("refusing entry {entry:?}: {reason}")]
    Hostile {
        /// The entry's name as in the tar.
        entry: String,
        /// What it tried.
        reason: String,
    },
    /// Writing an entry failed.
    #[error("unpack entry {entry:?}")]
    Entry {
        /// The entry's name as in the tar.
        entry: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel cannot resolve paths safely.
    #[error(
        "this kernel lacks openat2 (Linux 5.6 or later), which unpacking needs to stay inside the rootfs"
    )]
    NoOpenat2,
}

/// What applying one layer did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries applied (whiteouts included).
    pub entries: u64,
    /// Device nodes skipped because we may not create them.
    pub skipped_devices: u64,
}

/// A root filesystem being assembled.
pub struct Rootfs {
    root: OwnedFd,
    creator: ops::Creator,
}

impl Rootfs {
    /// Creates (if needed) and opens the directory `path`.
    ///
    /// # Errors
    /// When it cannot be created or opened.
    pub fn create(path: &Path) -> Result<Self, Error> {
        let open = || -> io::Result<OwnedFd> {
            std::fs::create_dir_all(path)?;
            Ok(rustix::fs::open(
                path,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?)
        };
        let root = open().map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            root,
            creator: ops::Creator::current(),
        })
    }

    /// Applies one uncompressed layer tar on top of what is there.
    ///
    /// # Errors
    /// An unreadable tar, a hostile entry, or a filesystem failure; the error names the entry.
    pub fn apply_layer(&self, tar: impl Read) -> Result<LayerStats, Error> {
        let mut layer = Layer {
            rootfs: self,
            touched: HashSet::new(),
            parent: None,
            saved_times: HashMap::new(),
            buf: vec![0; 256 * 1024],
            stats: LayerStats::default(),
        };
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().map_err(Error::Tar)? {
            let entry = entry.map_err(Error::Tar)?;
            layer.apply(entry)?;
        }
        layer.restore_saved_times();
        Ok(layer.stats)
    }
}

fn hostile(entry: &str, reason: &str) -> Error {
    Error::Hostile {
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    }
}

/// `a/./b/../c` → `a/c`, `/x` → `x`; `..` never climbs above the root (escapes were refused
/// before we get here).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// State of the layer being applied.
struct Layer<'a> {
    rootfs: &'a Rootfs,
    /// Every path this layer wrote, and their parents: whiteouts leave them alone.
    touched: HashSet<PathBuf>,
    /// The directory the last entry went into: entries come grouped by directory, so this
    /// saves resolving the same path again and again. An entry only replaces a child of
    /// its own parent, so only whiteouts (which remove any path) clear it.
    parent: Option<(PathBuf, OwnedFd)>,
    /// The times each directory had before this layer first changed it, or its own entry's.
    /// An entry never changes its directory's times (the rule umoci follows, and the only
    /// one that makes them reproducible): they are put back when the layer ends.
    saved_times: HashMap<PathBuf, ops::Times>,
    /// The copy buffer for file contents, allocated once per layer.
    buf: Vec<u8>,
    stats: LayerStats,
}

impl Layer<'_> {
    fn apply<R: Read>(&mut self, entry: tar::Entry<'_, R>) -> Result<(), Error> {
        let raw = entry.path().map_err(Error::Tar)?.into_owned();
        let name = raw.display().to_string();
        let rel = entry_path(&raw).map_err(|reason| hostile(&name, reason))?;
        self.stats.entries += 1;
        let Some(file_name) = rel.file_name().map(OsStr::to_owned) else {
            return Ok(()); // the root itself: keep the directory we unpack into as it is
        };
        let parent = rel.parent().unwrap_or(Path::new("")).to_owned();
        let file_name_str = file_name.to_string_lossy();
        if file_name_str == OPAQUE {
            self.parent = None;
            self.save_times(&parent, &name)?;
            return self.hide_lower_children(&parent, &name);
        }
        if let Some(hidden) = file_name_str.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
                return Err(hostile(&name, "it whites out an invalid name"));
            }
            self.parent = None;
            self.save_times(&parent, &name)?;
            return self.remove_lower(&parent.join(hidden), &name);
        }
        self.mark_touched(&rel);
        self.write_entry(entry, &rel, &parent, &file_name, &name)
    }

    /// Writes a non-whiteout entry at `parent/file_name`.
    fn write_entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        rel: &Path,
        parent: &Path,
        file_name: &OsStr,
        name: &str,
    ) -> Result<(), Error> {
        let header = entry.header().clone();
        let entry_type = header.entry_type();
        // Check a hardlink's target before anything is written for the entry.
        let link_target = if entry_type.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(Error::Tar)?
                .ok_or_else(|| hostile(name, "hardlink without a target"))?;
            Some(entry_path(&target).map_err(|r| hostile(name, &format!("hardlink target: {r}")))?)
        } else {
            None
        };
        let fail = |source| Error::Entry {
            entry: name.to_owned(),
            source,
        };
        let meta = ops::Meta::from_header(&header, self.rootfs.creator).map_err(fail)?;
        let creator = self.rootfs.creator;
        // borrowed out while `dir` borrows the layer; an error ends the layer anyway
        let mut buf = std::mem::take(&mut self.buf);
        let dir = self.enter(parent, name)?;
        match entry_type {
            t if t.is_dir() => {
                ops::make_dir(dir, file_name, &meta, creator.umask).map_err(fail)?;
                if let (Some(mtime), Some(saved)) = (meta.mtime(), self.saved_times.get_mut(rel)) {
                    *saved = ops::Times::at(mtime);
                }
            }
            t if t.is_file() || t == tar::EntryType::Continuous || t == tar::EntryType::GNUSparse => {
                ops::write_file(dir, file_name, &meta, creator.umask, &mut entry, &mut buf).map_err(fail)?;
            }
            t if t.is_symlink() => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| hostile(name, "symlink without a target"))?;
                ops::make_symlink(dir, file_name, &target, &meta).map_err(fail)?;
            }
            t if t.is_hard_link() => {
                let target = link_target.expect("set for hardlinks");
                if target != rel {
                    self.link(&target, file_name, name)?;
                }
            }
            t if t.is_fifo() || t.is_character_special() || t.is_block_special() => {
                if !ops::make_node(dir, file_name, t, &meta, &header, creator).map_err(fail)? {
                    tracing::debug!("skipping device node {name}: not allowed to create it here");
                    self.stats.skipped_devices += 1;
                }
            }
            other => tracing::debug!("skipping entry {name} of unsupported type {other:?}"),
        }
        self.buf = buf;
        Ok(())
    }

    /// The directory `parent`, created if missing, from the cache when the previous entry
    /// went there too; its times are saved the first time this layer touches it.
    fn enter(&mut self, parent: &Path, name: &str) -> Result<&OwnedFd, Error> {
        if self.parent.as_ref().is_none_or(|(p, _)| p != parent) {
            let fd = self
                .parent_dir(parent, name, true)?
                .expect("created parents exist");
            if !self.saved_times.contains_key(parent) {
                let times = ops::times_of(&fd).map_err(|source| Error::Entry {
                    entry: name.to_owned(),
                    source,
                })?;
                self.saved_times.insert(parent.to_owned(), times);
            }
            self.parent = Some((parent.to_owned(), fd));
        }
        Ok(&self.parent.as_ref().expect("just set").1)
    }

    /// A hardlink at `(current parent, file_name)` to the root-relative `target`.
    fn link(&self, target: &Path, file_name: &OsStr, name: &str) -> Result<(), Error> {
        let dir = &self.parent.as_ref().expect("entered").1;
        let fail = |kind, what: String| Error::Entry {
            entry: name.to_owned(),
            source: io::Error::new(kind, what),
        };
        let tname = target
            .file_name()
            .ok_or_else(|| hostile(name, "hardlink to the root"))?;
        let tdir = self
            .parent_dir(target.parent().unwrap_or(Path::new("")), name, false)?
            .ok_or_else(|| {
                fail(
                    io::ErrorKind::NotFound,
                    format!("hardlink target {} does not exist", target.display()),
                )
            })?;
        ops::make_hardlink(&tdir, tname, dir, file_name)
            .map(|_| ())
            .map_err(|e| fail(e.kind(), format!("link to {}: {e}", target.display())))
    }

    /// Saves `parent`'s times before a whiteout changes it.
    fn save_times(&mut self, parent: &Path, entry: &str) -> Result<(), Error> {
        if self.saved_times.contains_key(parent) {
            return Ok(());
        }
        if let Some(dir) = self.resolve(parent, entry, OFlags::RDONLY | OFlags::DIRECTORY)? {
            let times = ops::times_of(&dir).map_err(|source| Error::Entry {
                entry: entry.to_owned(),
                source,
            })?;
            self.saved_times.insert(parent.to_owned(), times);
        }
        Ok(())
    }

    /// Puts back the saved directory times. A directory that a later entry replaced or
    /// removed has no times left to restore, so not finding one is not an error.
    fn restore_saved_times(&mut self) {
        self.parent = None;
        for (path, times) in std::mem::take(&mut self.saved_times) {
            let entry = path.display().to_string();
            if let Ok(Some(fd)) = self.resolve(
                &path,
                &entry,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            ) {
                let _ = ops::restore_times(&fd, &times);
            }
        }
    }

    fn mark_touched(&mut self, rel: &Path) {
        let mut p = rel.to_path_buf();
        while !p.as_os_str().is_empty() && self.touched.insert(p.clone()) {
            p.pop();
        }
    }

    /// Opens the directory `rel` (creating missing directories when `create`).
    fn parent_dir(&self, rel: &Path, entry: &str, create: bool) -> Result<Option<OwnedFd>, Error> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY;
        match self.resolve(rel, entry, flags)? {
            Some(fd) => Ok(Some(fd)),
            None if !create => Ok(None),
            None => self.create_dirs(rel, entry, 0).map(Some),
        }
    }

    /// Creates the missing directories of `rel`, one component at a time, each resolved from
    /// the root. A component that is a symlink to a missing directory gets its target
    /// created instead (inside the root), as `mkdir -p` in the container would.
    fn create_dirs(&self, rel: &Path, entry: &str, depth: usize) -> Result<OwnedFd, Error> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY;
        let fail = |what: String, kind: io::ErrorKind| Error::Entry {
            entry: entry.to_owned(),
            source: io::Error::new(kind, what),
        };
        if depth > 40 {
            return Err(fail(
                format!("too many symlinks creating {}", rel.display()),
                io::ErrorKind::InvalidInput,
            ));
        }
        let mut current = self
            .resolve(Path::new(""), entry, flags)?
            .expect("the root exists");
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            let parent = prefix.clone();
            prefix.push(component);
            if let Some(fd) = self.resolve(&prefix, entry, flags)? {
                current = fd;
                continue;
            }
            let name = component.as_os_str();
            let kind = path::kind_at(&current, name).map_err(|source| Error::Entry {
                entry: entry.to_owned(),
                source,
            })?;
            if kind == Some(rustix::fs::FileType::Symlink) {
                let target =
                    rustix::fs::readlinkat(&current, name, Vec::new()).map_err(|e| Error::Entry {
                        entry: entry.to_owned(),
                        source: e.into(),
                    })?;
                let target = Path::new(std::ffi::OsStr::from_bytes(target.as_bytes()));
                let joined = if target.is_absolute() {
                    target.to_path_buf()
                } else {
                    parent.join(target)
                };
                self.create_dirs(&lexical(&joined), entry, depth + 1)?;
            } else {
                ops::make_dir(
                    &current,
                    name,
                    &ops::Meta::implicit_dir(),
                    self.rootfs.creator.umask,
                )
                .map_err(|source| {
                    fail(
                        format!("create parent {}: {source}", prefix.display()),
                        source.kind(),
                    )
                })?;
            }
            current = self.resolve(&prefix, entry, flags)?.ok_or_else(|| {
                fail(
                    format!("parent {} is not a directory", prefix.display()),
                    io::ErrorKind::NotFound,
                )
            })?;
        }
        Ok(current)
    }

    fn resolve(&self, rel: &Path, entry: &str, flags: OFlags) -> Result<Option<OwnedFd>, Error> {
        match open_beneath(&self.rootfs.root, rel, flags) {
            Ok(Resolved::Fd(fd)) => Ok(Some(fd)),
            Ok(Resolved::Missing) => Ok(None),
            Err(ResolveError::Escape { symlink }) => Err(Error::Hostile {
                entry: entry.to_owned(),
                reason: format!(
                    "its path goes through symlink {:?}, which points outside the rootfs",
                    symlink.display().to_string()
                ),
            }),
            Err(ResolveError::NoOpenat2) => Err(Error::NoOpenat2),
            Err(ResolveError::Io(e))
                if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
            {
                Ok(None)
            }
            Err(ResolveError::Io(source)) => Err(Error::Entry {
                entry: entry.to_owned(),
                source,
            }),
        }
    }

    /// `.wh.<name>`: removes `rel` as lower layers left it.
    fn remove_lower(&self, rel: &Path, entry: &str) -> Result<(), Error> {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Ok(());
        };
        let Some(dir) = self.parent_dir(parent, entry, false)? else {
            return Ok(());
        };
        if !self.touched.contains(rel) {
            return ops::remove_all(&dir, name).map_err(|source| Error::Entry {
                entry: entry.to_owned(),
                source,
            });
        }
        // This layer wrote something here: keep it, but hide what lies below it.
        match path::kind_at(&dir, name) {
            Ok(Some(rustix::fs::FileType::Directory)) => self.hide_lower_children(rel, entry),
            Ok(_) => Ok(()),
            Err(source) => Err(Error::Entry {
                entry: entry.to_owned(),
                source,
            }),
        }
    }

    /// `.wh..wh..opq`: hides every lower-layer child of `rel`.
    fn hide_lower_children(&self, rel: &Path, entry: &str) -> Result<(), Error> {
        let fail = |source| Error::Entry {
            entry: entry.to_owned(),
            source,
        };
        let Some(dir) = self.resolve(rel, entry, OFlags::RDONLY | OFlags::DIRECTORY)? else {
            return Ok(());
        };
        for child in ops::list_dir(&dir).map_err(fail)? {
            self.remove_lower(&rel.join(&child), entry)?;
        }
        Ok(())
    }
}
