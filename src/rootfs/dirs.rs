//! Directories of the rootfs: resolving an entry's parent beneath the root, creating the
//! missing ones the way `mkdir -p` in the container would, keeping each directory's
//! times as they were before a layer wrote into it, and (not being root) opening up the
//! ones whose mode would refuse us (`modes`).

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use rustix::io::Errno;

use super::path::{self, open_beneath, ResolveError, Resolved};
use super::{ops, Error, Layer};

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

impl Layer<'_> {
    /// The directory `parent`, created if missing, from the cache when the previous entry
    /// went there too; its times are saved the first time this layer touches it.
    pub(super) fn enter(&mut self, parent: &Path, name: &str) -> Result<&OwnedFd, Error> {
        if self.parent.as_ref().is_none_or(|(p, _)| p != parent) {
            let fd = self
                .parent_dir(parent, name, true)?
                .expect("created parents exist");
            if !self.saved_times.contains_key(parent) {
                self.note_dir(parent, &fd, name)?;
            }
            self.parent = Some((parent.to_owned(), fd));
        }
        Ok(&self.parent.as_ref().expect("just set").1)
    }

    /// Saves `parent`'s times before a whiteout changes it.
    pub(super) fn save_times(&mut self, parent: &Path, entry: &str) -> Result<(), Error> {
        if self.saved_times.contains_key(parent) {
            return Ok(());
        }
        if let Some(dir) = self.resolve(parent, entry, OFlags::RDONLY | OFlags::DIRECTORY)? {
            self.note_dir(parent, &dir, entry)?;
        }
        Ok(())
    }

    /// The first time this layer changes the directory `rel`: saves its times, and opens
    /// it up if its mode would refuse us.
    fn note_dir(&mut self, rel: &Path, fd: &OwnedFd, entry: &str) -> Result<(), Error> {
        let fail = |source| Error::Entry {
            entry: entry.to_owned(),
            source,
        };
        let times = ops::times_of(fd).map_err(fail)?;
        self.saved_times.insert(rel.to_owned(), times);
        self.deferred.get_mut().open_up(rel, fd).map_err(fail)
    }

    /// Puts back the saved directory times. A directory that a later entry replaced or
    /// removed has no times left to restore, so not finding one is not an error.
    pub(super) fn restore_saved_times(&mut self) {
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

    /// Opens the directory `rel` (creating missing directories when `create`).
    pub(super) fn parent_dir(&self, rel: &Path, entry: &str, create: bool) -> Result<Option<OwnedFd>, Error> {
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
    pub(super) fn create_dirs(&self, rel: &Path, entry: &str, depth: usize) -> Result<OwnedFd, Error> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY;
        let fail = |what: String, kind: io::ErrorKind| Error::Entry {
            entry: entry.to_owned(),
            source: io::Error::new(kind, what),
        };
        if depth > path::MAX_SYMLINKS {
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
                self.deferred
                    .borrow_mut()
                    .open_up(&parent, &current)
                    .map_err(|source| Error::Entry {
                        entry: entry.to_owned(),
                        source,
                    })?;
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

    pub(super) fn resolve(&self, rel: &Path, entry: &str, flags: OFlags) -> Result<Option<OwnedFd>, Error> {
        let mut resolved = open_beneath(&self.rootfs.root, rel, flags);
        if matches!(&resolved, Err(ResolveError::Io(e)) if e.raw_os_error() == Some(Errno::ACCESS.raw_os_error()))
            && self.deferred.borrow().enabled()
            && self.open_up_path(rel)
        {
            resolved = open_beneath(&self.rootfs.root, rel, flags);
        }
        match resolved {
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
}
