//! Directory modes that would lock us out, applied when the layer ends (unpacking as a
//! user other than root).
//!
//! Not being root, we are bound by a directory's mode like anyone else: a layer that makes
//! `usr/bin` 0555 and then puts files in it (Fedora's does) would be refused them. So, as
//! `umoci unpack --rootless` and GNU tar do, a directory whose mode lacks any of its
//! owner's read, write and search bits is kept at `mode | 0700` while the layer is
//! applied, and given its mode when the layer ends, deepest first so that each is still
//! reachable. A directory a lower layer left so is opened up the same way when this layer
//! writes, removes or looks into it, and closed again at the end. As root nothing is
//! deferred: modes do not bind root, and each directory gets its mode at once, as ever.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::path::{open_beneath, Resolved};
use super::remove::{give_owner_rwx, OWNER_RWX};
use super::{Error, Layer};

/// The modes to give directories when the layer ends.
pub(super) struct Deferred {
    /// Not root: modes bind us, so some must wait.
    enabled: bool,
    /// Root-relative directory → the mode it must end with.
    wanted: HashMap<PathBuf, u32>,
}

impl Deferred {
    pub(super) fn new(root: bool) -> Self {
        Self {
            enabled: !root,
            wanted: HashMap::new(),
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The mode to give the directory `rel` now, for an entry that wants `mode`: with the
    /// owner's `rwx` added (and `mode` kept for the end) when it lacks any of them.
    pub(super) fn mode_now(&mut self, rel: &Path, mode: u32) -> u32 {
        if self.enabled && mode & OWNER_RWX != OWNER_RWX {
            self.wanted.insert(rel.to_owned(), mode);
            mode | OWNER_RWX
        } else {
            self.wanted.remove(rel);
            mode
        }
    }

    /// Opens up the directory `rel`, open as `fd`, if its mode would refuse us; it gets
    /// that mode back when the layer ends.
    pub(super) fn open_up(&mut self, rel: &Path, fd: &OwnedFd) -> io::Result<()> {
        if !self.enabled || self.wanted.contains_key(rel) {
            return Ok(());
        }
        let mode = rustix::fs::fstat(fd)?.st_mode & 0o7777;
        if mode & OWNER_RWX != OWNER_RWX {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(mode | OWNER_RWX))?;
            self.wanted.insert(rel.to_owned(), mode);
        }
        Ok(())
    }

    /// Forgets `rel` and what is below it: a whiteout removed them.
    pub(super) fn forget_below(&mut self, rel: &Path) {
        if !self.wanted.is_empty() {
            self.wanted.retain(|p, _| !p.starts_with(rel));
        }
    }
}

impl Layer<'_> {
    /// Opens up every directory on the way to `rel`, `rel` included, whose mode refuses
    /// us, after a resolution was denied. Each is looked at from its parent, resolved
    /// beneath the root; `true` when one was changed, so resolving again may succeed.
    pub(super) fn open_up_path(&self, rel: &Path) -> bool {
        let mut deferred = self.deferred.borrow_mut();
        let mut changed = false;
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            let parent = open_beneath(&self.rootfs.root, &prefix, OFlags::PATH | OFlags::DIRECTORY);
            prefix.push(component);
            let Ok(Resolved::Fd(parent)) = parent else {
                break;
            };
            match give_owner_rwx(parent.as_fd(), component.as_os_str()) {
                Ok(Some(mode)) => {
                    deferred.wanted.entry(prefix.clone()).or_insert(mode);
                    changed = true;
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
        changed
    }

    /// Gives the directories their deferred modes, deepest first. One no longer there (a
    /// later entry replaced it) is skipped.
    pub(super) fn apply_deferred_modes(&mut self) -> Result<(), Error> {
        let wanted = std::mem::take(&mut self.deferred.borrow_mut().wanted);
        let mut wanted: Vec<_> = wanted.into_iter().collect();
        wanted.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, mode) in wanted {
            let entry = rel.display().to_string();
            let flags = OFlags::RDONLY | OFlags::DIRECTORY;
            if let Some(fd) = self.resolve(&rel, &entry, flags)? {
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| Error::Entry {
                    entry,
                    source: e.into(),
                })?;
            }
        }
        Ok(())
    }
}
