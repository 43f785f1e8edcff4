//! A tar entry read into what applying it needs, apart from its content: so an entry can be
//! checked before anything is written for it, and applied later when it was written ahead.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::ops::{Creator, Meta};
use super::path::entry_path;
use super::pax::Extended;
use super::sparse::Sparse;
use super::{hostile, Error, OPAQUE, WHITEOUT_PREFIX};

/// What an entry asks for.
pub(super) enum Action {
    /// The rootfs itself (`./`): the directory we unpack into is kept as it is.
    Root,
    /// A PAX global header: nothing to write (as umoci and Go's tar reader treat it).
    Skip,
    /// `.wh..wh..opq`: hide the lower-layer content of the entry's directory.
    Opaque,
    /// `.wh.<name>`: remove this root-relative path as lower layers left it.
    Whiteout(PathBuf),
    /// Create a node of `kind`.
    Write {
        kind: tar::EntryType,
        meta: Meta,
        /// The target of a symlink (verbatim) or of a hardlink (root-relative).
        link: Option<Link>,
        /// Major and minor numbers of a device node.
        device: (u32, u32),
        /// How a sparse file's content is laid out.
        sparse: Option<Sparse>,
    },
}

/// A link's target.
pub(super) enum Link {
    Symbolic(Vec<u8>),
    Hard(PathBuf),
}

/// An entry, checked: a name that escapes, or a link without a target, is refused here.
pub(super) struct Described {
    /// The entry's name as in the tar, for errors.
    pub(super) name: String,
    /// Its root-relative path.
    pub(super) rel: PathBuf,
    pub(super) action: Action,
}

/// The longest path the kernel resolves (`PATH_MAX`): a longer name or link target could
/// never be created, and entries read ahead are held in memory.
const PATH_MAX: usize = 4096;

impl Described {
    pub(super) fn of<R: Read>(
        entry: &mut tar::Entry<'_, R>,
        extended: Option<Extended>,
        creator: Creator,
    ) -> Result<Self, Error> {
        let extended = extended.unwrap_or_default();
        let records = &extended.sparse;
        // a sparse file in PAX 0.1 or 1.0 is stored under a placeholder name; the name
        // counts only for a file that is sparse, as Go's tar reader has it
        let sparse_name = records
            .name
            .as_ref()
            .filter(|_| records.version.is_some() || records.map.is_some());
        let raw: Cow<'_, Path> = match sparse_name {
            Some(name) if name.is_empty() => {
                return Err(hostile(
                    &entry.path().map_err(Error::Tar)?.display().to_string(),
                    "its GNU.sparse.name is empty",
                ))
            }
            Some(name) => Cow::Owned(PathBuf::from(OsStr::from_bytes(name))),
            None => entry.path().map_err(Error::Tar)?,
        };
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            return Ok(Self {
                name: raw.display().to_string(),
                rel: PathBuf::new(),
                action: Action::Skip,
            });
        }
        if raw.as_os_str().len() > PATH_MAX {
            let start: String = raw.display().to_string().chars().take(64).collect();
            return Err(hostile(
                &format!("{start}…"),
                "its name is longer than 4096 bytes",
            ));
        }
        let name = raw.display().to_string();
        let rel = entry_path(&raw).map_err(|reason| hostile(&name, reason))?;
        let Some(file_name) = rel.file_name() else {
            return Ok(Self {
                name,
                rel,
                action: Action::Root,
            });
        };
        // names are bytes: a whiteout of a name that is not UTF-8 hides that very name
        let file_name = file_name.as_bytes();
        let parent = rel.parent().unwrap_or(Path::new(""));
        let action = if file_name == OPAQUE.as_bytes() {
            Action::Opaque
        } else if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(hostile(&name, "it whites out an invalid name"));
            }
            Action::Whiteout(parent.join(OsStr::from_bytes(hidden)))
        } else {
            Self::write(entry, extended, &name, creator)?
        };
        Ok(Self { name, rel, action })
    }

    fn write<R: Read>(
        entry: &tar::Entry<'_, R>,
        extended: Extended,
        name: &str,
        creator: Creator,
    ) -> Result<Action, Error> {
        let header = entry.header();
        let kind = header.entry_type();
        if entry.link_name_bytes().is_some_and(|l| l.len() > PATH_MAX) {
            return Err(hostile(name, "its link target is longer than 4096 bytes"));
        }
        let link = if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(Error::Tar)?
                .ok_or_else(|| hostile(name, "hardlink without a target"))?;
            let target = entry_path(&target).map_err(|r| hostile(name, &format!("hardlink target: {r}")))?;
            Some(Link::Hard(target))
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| hostile(name, "symlink without a target"))?;
            Some(Link::Symbolic(target.into_owned()))
        } else {
            None
        };
        let sparse =
            Sparse::of(&extended.sparse, header, entry.size()).map_err(|reason| hostile(name, &reason))?;
        let meta = Meta::from_header(header, extended, creator).map_err(|source| Error::Entry {
            entry: name.to_owned(),
            source,
        })?;
        // FIFOs carry no device numbers, and some writers leave the fields blank.
        let device = (
            header.device_major().ok().flatten().unwrap_or(0),
            header.device_minor().ok().flatten().unwrap_or(0),
        );
        Ok(Action::Write {
            kind,
            meta,
            link,
            device,
            sparse,
        })
    }

    /// About what holding it in memory costs.
    pub(super) fn size(&self) -> usize {
        let link = match &self.action {
            Action::Write {
                link: Some(Link::Symbolic(t)),
                ..
            } => t.len(),
            Action::Write {
                link: Some(Link::Hard(t)),
                ..
            }
            | Action::Whiteout(t) => t.as_os_str().len(),
            _ => 0,
        };
        let meta = match &self.action {
            Action::Write { meta, sparse, .. } => {
                meta.extra_size()
                    + match sparse {
                        Some(Sparse::Map { extents, .. }) => extents.len() * 16,
                        _ => 0,
                    }
            }
            _ => 0,
        };
        std::mem::size_of::<Self>() + self.name.len() + self.rel.as_os_str().len() + link + meta
    }

    /// A regular file, whose content is written.
    pub(super) fn is_file(&self) -> bool {
        matches!(&self.action, Action::Write { kind, .. } if is_file_kind(*kind))
    }
}

/// Entry types whose content becomes a regular file.
pub(super) fn is_file_kind(kind: tar::EntryType) -> bool {
    kind.is_file() || kind == tar::EntryType::Continuous || kind == tar::EntryType::GNUSparse
}
