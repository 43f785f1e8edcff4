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
//! symlink that climbs out is refused with the entry's name before anything is written for it
//! into the rootfs.
//!
//! A layer may be read before its turn, while the one below it is still being applied: its
//! files are then written ahead into a staging directory and moved into place, in entry
//! order, when its turn comes (`ahead`), with the same result as applying it afterwards.

mod ahead;
mod dirs;
mod entry;
mod guard;
mod modes;
mod ops;
mod path;
mod pax;
mod remove;
mod sparse;
#[cfg(test)]
mod tests;
mod touched;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Mode, OFlags};

pub use self::ahead::Turn;
use self::ahead::{Staging, EARLY_BUDGET};
use self::entry::{Action, Described, Link};
pub use self::guard::TAR_METADATA_LIMIT;
use self::modes::Deferred;
pub use self::touched::BYTES_PER_PATH;

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
    /// Writing a file of a layer read before its turn into the staging directory failed.
    #[error("write entry {entry:?} ahead into {path}")]
    WriteAhead {
        /// The entry's name as in the tar.
        entry: String,
        /// The staged file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another layer failed, so this one stopped.
    #[error("stopped: another layer failed")]
    Abandoned,
}

/// What applying one layer did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries applied (whiteouts included).
    pub entries: u64,
    /// Device nodes skipped because we may not create them.
    pub skipped_devices: u64,
    /// Entries read before the layer's turn, their files written ahead (see `ahead`).
    pub early: u64,
}

/// A root filesystem being assembled.
pub struct Rootfs {
    root: OwnedFd,
    creator: ops::Creator,
    /// Where files of a layer read before its turn wait; `None` when it cannot be had.
    staging: Option<Staging>,
    /// Bytes of entries a layer may hold while it waits for its turn.
    early_budget: usize,
    /// Set when unpacking failed: layers still running stop at their next entry.
    abandoned: AtomicBool,
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
        let staging = Staging::beside(path, &root);
        Ok(Self {
            root,
            creator: ops::Creator::current(),
            staging,
            early_budget: EARLY_BUDGET,
            abandoned: AtomicBool::new(false),
        })
    }

    /// Applies one uncompressed layer tar on top of what is there.
    ///
    /// # Errors
    /// An unreadable tar, a hostile entry, or a filesystem failure; the error names the entry.
    pub fn apply_layer(&self, tar: impl Read) -> Result<LayerStats, Error> {
        self.apply_layer_in_turn(tar, &Turn::given())
    }

    /// Applies a layer once `turn` is given, reading it meanwhile: until
    /// then its files are written ahead into the staging directory (see `ahead`), and
    /// applied in order when the turn comes. The result is the same as
    /// [`Rootfs::apply_layer`] after the turn.
    ///
    /// # Errors
    /// As [`Rootfs::apply_layer`]; [`Error::Abandoned`] when the turn is withdrawn or
    /// [`Rootfs::abandon`] was called.
    pub fn apply_layer_in_turn(&self, tar: impl Read, turn: &Turn) -> Result<LayerStats, Error> {
        let mut layer = Layer {
            rootfs: self,
            touched: touched::Touched::new(),
            parent: None,
            saved_times: HashMap::new(),
            deferred: RefCell::new(Deferred::new(self.creator.root.is_some())),
            buf: vec![0; 256 * 1024],
            stats: LayerStats::default(),
        };
        let mut early = match (turn.poll(), &self.staging) {
            (Some(true), _) => None,
            (Some(false), _) => return Err(Error::Abandoned),
            (None, Some(staging)) => Some(Early {
                staging,
                held: Vec::new(),
                bytes: 0,
            }),
            (None, None) => {
                wait_for(turn)?;
                None
            }
        };
        let (tar, extended) = guard::TarGuard::new(tar);
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().map_err(Error::Tar)? {
            let mut entry = entry.map_err(Error::Tar)?;
            self.check_abandoned()?;
            let extended = extended.borrow_mut().take();
            let described = Described::of(&mut entry, extended, self.creator)?;
            if let Some(held) = early.as_mut() {
                if !turn_came(turn, held.bytes, self.early_budget)? {
                    layer.write_ahead(held, described, &mut entry)?;
                    continue;
                }
            }
            if let Some(held) = early.take() {
                layer.apply_early(held)?;
            }
            layer.apply(described, Content::Stream(&mut entry))?;
        }
        if let Some(held) = early {
            wait_for(turn)?;
            layer.apply_early(held)?;
        }
        // times first: a deferred mode may take away the search bit that reaching a
        // directory below needs
        layer.restore_saved_times();
        layer.apply_deferred_modes()?;
        Ok(layer.stats)
    }

    fn check_abandoned(&self) -> Result<(), Error> {
        if self.abandoned.load(Ordering::Relaxed) {
            Err(Error::Abandoned)
        } else {
            Ok(())
        }
    }

    /// Stops every layer still being applied, at its next entry.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }

    /// Removes the staging directory now, with whatever layers wrote ahead into it: for a
    /// failed unpack, whose layers may still hold this `Rootfs` when the process exits.
    /// Layers still writing ahead then fail (they are meant to be abandoned first).
    ///
    /// # Errors
    /// When the directory cannot be removed.
    pub fn remove_staging(&self) -> io::Result<()> {
        self.staging.as_ref().map_or(Ok(()), Staging::remove)
    }
}

/// Entries of a layer read before its turn, with the names of their staged files.
struct Early<'s> {
    staging: &'s Staging,
    held: Vec<(Described, Option<OsString>)>,
    /// What `held` costs in memory, about.
    bytes: usize,
}

/// Whether a layer holding `held` bytes of entries read early may apply them now: `false`
/// while its turn is not given and it may hold more than `budget`; when it may not, this
/// waits.
fn turn_came(turn: &Turn, held: usize, budget: usize) -> Result<bool, Error> {
    match turn.poll() {
        None if held < budget => Ok(false),
        None => wait_for(turn).map(|()| true),
        Some(true) => Ok(true),
        Some(false) => Err(Error::Abandoned),
    }
}

/// Blocks until `turn` is given; [`Error::Abandoned`] when it is withdrawn.
fn wait_for(turn: &Turn) -> Result<(), Error> {
    if turn.wait() {
        Ok(())
    } else {
        Err(Error::Abandoned)
    }
}

/// A non-whiteout entry on its way to the filesystem.
struct Node<'a> {
    name: &'a str,
    rel: &'a Path,
    file_name: &'a OsStr,
    kind: tar::EntryType,
    meta: &'a ops::Meta,
    link: Option<Link>,
    device: (u32, u32),
    sparse: Option<&'a sparse::Sparse>,
}

/// Where a file entry's content comes from.
enum Content<'a> {
    /// The tar, as it is read.
    Stream(&'a mut dyn Read),
    /// A file written ahead, by its name in the staging directory.
    Staged(&'a Staging, OsString),
}

fn hostile(entry: &str, reason: &str) -> Error {
    Error::Hostile {
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    }
}

/// State of the layer being applied.
struct Layer<'a> {
    rootfs: &'a Rootfs,
    /// Every path this layer wrote, and their parents: whiteouts leave them alone.
    touched: touched::Touched,
    /// The directory the last entry went into: entries come grouped by directory, so this
    /// saves resolving the same path again and again. An entry only replaces a child of
    /// its own parent, so only whiteouts (which remove any path) clear it.
    parent: Option<(PathBuf, OwnedFd)>,
    /// The times each directory had before this layer first changed it, or its own entry's.
    /// An entry never changes its directory's times (the rule umoci follows, and the only
    /// one that makes them reproducible): they are put back when the layer ends.
    saved_times: HashMap<PathBuf, ops::Times>,
    /// Directory modes that would lock us out until the layer ends (not root; `modes`).
    /// In a cell because resolving a path, which only reads the layer, may open one up.
    deferred: RefCell<Deferred>,
    /// The copy buffer for file contents, allocated once per layer.
    buf: Vec<u8>,
    stats: LayerStats,
}

impl Layer<'_> {
    fn apply(&mut self, entry: Described, content: Content<'_>) -> Result<(), Error> {
        self.stats.entries += 1;
        let Described { name, rel, action } = entry;
        let parent = rel.parent().unwrap_or(Path::new("")).to_owned();
        match action {
            Action::Root | Action::Skip => Ok(()), // keep the directory we unpack into as it is
            Action::Opaque => {
                self.parent = None;
                self.save_times(&parent, &name)?;
                self.hide_lower_children(&parent, &name)
            }
            Action::Whiteout(hidden) => {
                self.parent = None;
                self.save_times(&parent, &name)?;
                self.remove_lower(&hidden, &name)
            }
            Action::Write {
                kind,
                meta,
                link,
                device,
                sparse,
            } => {
                self.mark_touched(&rel);
                let file_name = rel.file_name().expect("only the root has none").to_owned();
                let node = Node {
                    name: &name,
                    rel: &rel,
                    file_name: &file_name,
                    kind,
                    meta: &meta,
                    link,
                    device,
                    sparse: sparse.as_ref(),
                };
                self.write_entry(&node, &parent, content)
            }
        }
    }

    /// Holds an entry read before the layer's turn; a regular file's content is written
    /// into the staging directory meanwhile.
    fn write_ahead<R: Read>(
        &mut self,
        early: &mut Early<'_>,
        entry: Described,
        content: &mut tar::Entry<'_, R>,
    ) -> Result<(), Error> {
        self.stats.early += 1;
        let staged = match &entry.action {
            Action::Write { meta, sparse, .. } if entry.is_file() => {
                let staged = early.staging.new_name();
                ops::write_file(
                    &early.staging.dir,
                    &staged,
                    meta,
                    self.rootfs.creator.umask,
                    (content, sparse.as_ref()),
                    &mut self.buf,
                )
                .map_err(|source| Error::WriteAhead {
                    entry: entry.name.clone(),
                    path: early.staging.path_of(&staged),
                    source,
                })?;
                Some(staged)
            }
            _ => None,
        };
        early.bytes += entry.size() + staged.as_ref().map_or(0, |s| s.len());
        early.held.push((entry, staged));
        Ok(())
    }

    /// Applies the entries read before the turn, in their order.
    fn apply_early(&mut self, early: Early<'_>) -> Result<(), Error> {
        for (entry, staged) in early.held {
            self.rootfs.check_abandoned()?;
            let content = match staged {
                Some(name) => Content::Staged(early.staging, name),
                None => Content::Stream(&mut io::empty()),
            };
            self.apply(entry, content)?;
        }
        Ok(())
    }

    /// Writes a non-whiteout entry at `parent/file_name`.
    fn write_entry(&mut self, node: &Node<'_>, parent: &Path, content: Content<'_>) -> Result<(), Error> {
        let name = node.name;
        let fail = |source| Error::Entry {
            entry: name.to_owned(),
            source,
        };
        let creator = self.rootfs.creator;
        // borrowed out while `dir` borrows the layer; an error ends the layer anyway
        let mut buf = std::mem::take(&mut self.buf);
        let dir_mode = node
            .kind
            .is_dir()
            .then(|| self.deferred.get_mut().mode_now(node.rel, node.meta.mode()));
        let dir = self.enter(parent, name)?;
        let (file_name, meta) = (node.file_name, node.meta);
        match node.kind {
            t if t.is_dir() => {
                let meta = meta.clone().with_mode(dir_mode.unwrap_or(meta.mode()));
                ops::make_dir(dir, file_name, &meta, creator.umask).map_err(fail)?;
                if let (Some(mtime), Some(saved)) = (meta.mtime(), self.saved_times.get_mut(node.rel)) {
                    *saved = ops::Times::at(mtime);
                }
            }
            t if entry::is_file_kind(t) => match content {
                Content::Staged(staging, staged) => {
                    if !ahead::place(staging, &staged, dir, file_name).map_err(fail)? {
                        // the rootfs is another mount: copy, times and owner included
                        let mut file = ahead::take(staging, &staged).map_err(fail)?;
                        let holes = node.sparse.map(|_| &sparse::Sparse::Expanded);
                        ops::write_file(dir, file_name, meta, creator.umask, (&mut file, holes), &mut buf)
                            .map_err(fail)?;
                    }
                }
                Content::Stream(stream) => {
                    ops::write_file(
                        dir,
                        file_name,
                        meta,
                        creator.umask,
                        (&mut &mut *stream, node.sparse),
                        &mut buf,
                    )
                    .map_err(fail)?;
                }
            },
            _ => match &node.link {
                Some(Link::Symbolic(target)) => {
                    ops::make_symlink(dir, file_name, target, meta).map_err(fail)?;
                }
                Some(Link::Hard(target)) => {
                    if target != node.rel {
                        self.link(target, file_name, name)?;
                    }
                }
                None if node.kind.is_fifo()
                    || node.kind.is_character_special()
                    || node.kind.is_block_special() =>
                {
                    if !ops::make_node(dir, file_name, node.kind, meta, node.device, creator).map_err(fail)? {
                        tracing::debug!("skipping device node {name}: not allowed to create it here");
                        self.stats.skipped_devices += 1;
                    }
                }
                None => tracing::debug!("skipping entry {name} of unsupported type {:?}", node.kind),
            },
        }
        self.buf = buf;
        Ok(())
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

    fn mark_touched(&mut self, rel: &Path) {
        let mut p = Some(rel);
        while let Some(path) = p.filter(|p| !p.as_os_str().is_empty()) {
            if !self.touched.insert(path) {
                break;
            }
            p = path.parent();
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
            self.deferred.borrow_mut().forget_below(rel);
            return remove::remove_all(&dir, name).map_err(|source| Error::Entry {
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

    /// `.wh..wh..opq`: hides every lower-layer child of `rel`. Children this layer wrote
    /// stay, and are searched in turn: a work list of paths, not recursion, though their
    /// depth is bounded by the names of this layer's entries.
    fn hide_lower_children(&self, rel: &Path, entry: &str) -> Result<(), Error> {
        let fail = |source| Error::Entry {
            entry: entry.to_owned(),
            source,
        };
        let mut pending = vec![rel.to_owned()];
        while let Some(rel) = pending.pop() {
            let Some(dir) = self.resolve(&rel, entry, OFlags::RDONLY | OFlags::DIRECTORY)? else {
                continue;
            };
            self.deferred.borrow_mut().open_up(&rel, &dir).map_err(fail)?;
            for child in ops::list_dir(&dir).map_err(fail)? {
                let path = rel.join(&child);
                if !self.touched.contains(&path) {
                    self.deferred.borrow_mut().forget_below(&path);
                    remove::remove_all(&dir, &child).map_err(fail)?;
                } else if path::kind_at(&dir, &child).map_err(fail)? == Some(rustix::fs::FileType::Directory)
                {
                    pending.push(path);
                }
            }
        }
        Ok(())
    }
}
