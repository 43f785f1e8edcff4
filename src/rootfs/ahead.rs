//! Writing a layer's files ahead of its turn.
//!
//! Layers must be applied in order, but inflating one is most of the work of unpacking it,
//! and that work does not depend on the layers below. So while a layer is being applied,
//! the next one is read as well: its regular files are written, with their final content,
//! mode, owner and times, into a staging directory beside the rootfs, and its entries are
//! remembered. When its turn comes, the remembered entries are applied in their order
//! exactly as if they were read then, except that a file's content is moved into place
//! with `rename` instead of written. Every byte is still written once, and both cores
//! inflate.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::remove::{remove_all, remove_path};

/// Bytes of entries (paths, link targets) a layer may hold while it waits for its turn,
/// about 10k entries; past that it waits.
pub(super) const EARLY_BUDGET: usize = 4 * 1024 * 1024;

/// A layer's turn to write into the rootfs, given once every layer below it is applied, or
/// withdrawn when one of them failed.
pub struct Turn {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Given,
    Withdrawn,
}

impl Turn {
    /// A turn not given yet.
    #[must_use]
    pub fn waiting() -> Self {
        Self::with(State::Waiting)
    }

    /// A turn already given: the first layer's.
    #[must_use]
    pub fn given() -> Self {
        Self::with(State::Given)
    }

    fn with(state: State) -> Self {
        Self {
            state: Mutex::new(state),
            changed: Condvar::new(),
        }
    }

    /// The layers below are applied.
    pub fn give(&self) {
        self.set(State::Given);
    }

    /// A layer below failed: this one must not be applied. No effect once given.
    pub fn withdraw(&self) {
        self.set(State::Withdrawn);
    }

    fn set(&self, state: State) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *s == State::Waiting {
            *s = state;
        }
        self.changed.notify_all();
    }

    /// `Some(true)` once given, `Some(false)` once withdrawn, `None` while waiting.
    pub(super) fn poll(&self) -> Option<bool> {
        match *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            State::Waiting => None,
            State::Given => Some(true),
            State::Withdrawn => Some(false),
        }
    }

    /// Blocks until the turn is given (`true`) or withdrawn (`false`).
    pub(super) fn wait(&self) -> bool {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *s == State::Waiting {
            s = self
                .changed
                .wait(s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *s == State::Given
    }
}

/// The staging directory: a sibling of the rootfs (on the same filesystem, so `rename`
/// works), private to us, removed when the rootfs is dropped.
pub(super) struct Staging {
    path: PathBuf,
    pub(super) dir: OwnedFd,
    /// Names the next staged file.
    next: AtomicU64,
}

impl Staging {
    /// `.<name>.staging` beside `rootfs`, empty. `None` when it cannot be made or lies on
    /// another filesystem: layers are then only applied in their turn.
    pub(super) fn beside(rootfs: &Path, root: &OwnedFd) -> Option<Self> {
        let name = rootfs.file_name()?;
        let path = rootfs.with_file_name(format!(".{}.staging", name.to_string_lossy()));
        let made = Self::make(&path).and_then(|staging| {
            if rustix::fs::fstat(&staging.dir)?.st_dev == rustix::fs::fstat(root)?.st_dev {
                Ok(staging)
            } else {
                Err(io::Error::other("on another filesystem than the rootfs"))
            }
        });
        match made {
            Ok(staging) => Some(staging),
            Err(e) => {
                tracing::debug!(
                    "not writing layers ahead: staging directory {}: {e}",
                    path.display()
                );
                let _ = remove_path(&path);
                None
            }
        }
    }

    /// An empty staging directory at `path`, whatever was there before (a run that was
    /// killed), on whatever filesystem.
    fn make(path: &Path) -> io::Result<Self> {
        match remove_path(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        rustix::fs::mkdir(path, Mode::from_raw_mode(0o700))?;
        let dir = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            path: path.to_owned(),
            dir,
            next: AtomicU64::new(0),
        })
    }

    /// A name no staged file had, whichever layer asks.
    pub(super) fn new_name(&self) -> OsString {
        OsString::from(self.next.fetch_add(1, Ordering::Relaxed).to_string())
    }

    /// Where the staged file `name` is, for errors.
    pub(super) fn path_of(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }
}

impl Staging {
    /// Removes the staging directory and what it holds. A layer still writing ahead can
    /// add a file between the listing and the last `rmdir`, so this tries again, a few
    /// times; once the directory is gone nothing can be added to it.
    pub(super) fn remove(&self) -> io::Result<()> {
        let mut attempt = 1;
        loop {
            match remove_path(&self.path) {
                Err(e)
                    if e.raw_os_error() == Some(Errno::NOTEMPTY.raw_os_error())
                        && attempt < REMOVAL_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                other => return other,
            }
        }
    }
}

/// Times [`Staging::remove`] starts over when a layer wrote into the directory meanwhile.
const REMOVAL_ATTEMPTS: usize = 8;

impl Drop for Staging {
    fn drop(&mut self) {
        // empty unless a layer failed halfway through its turn
        if let Err(e) = self.remove() {
            tracing::debug!("remove staging directory {}: {e}", self.path.display());
        }
    }
}

/// Moves the staged file `staged` to `(dir, name)`, replacing whatever is there as
/// writing it would have: `rename` replaces a file or symlink itself (never what a
/// symlink points to); a directory is removed first. `Ok(false)` when the rootfs is on
/// another mount than the staging directory (a bind mount): [`take`] the file and copy it.
pub(super) fn place(staging: &Staging, staged: &OsStr, dir: &OwnedFd, name: &OsStr) -> io::Result<bool> {
    match rustix::fs::renameat(&staging.dir, staged, dir, name) {
        Ok(()) => Ok(true),
        Err(Errno::XDEV) => Ok(false),
        Err(Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST) => {
            remove_all(dir, name)?;
            rustix::fs::renameat(&staging.dir, staged, dir, name)?;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the staged file `staged` for reading and removes its name.
pub(super) fn take(staging: &Staging, staged: &OsStr) -> io::Result<File> {
    let fd = rustix::fs::openat(
        &staging.dir,
        staged,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::unlinkat(&staging.dir, staged, AtFlags::empty())?;
    Ok(File::from(fd))
}

#[cfg(test)]
impl Staging {
    /// A staging directory at `path`, whatever filesystem it is on (tests put one on another).
    pub(super) fn at(path: &Path) -> Self {
        Self::make(path).unwrap()
    }
}
