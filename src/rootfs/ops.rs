//! Filesystem operations on `(directory handle, name)` pairs. None of them follows a symlink
//! in the final component, so whatever a layer left at a name, the next entry replaces it
//! rather than writing through it.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use super::path::kind_at;
use super::pax::Extended;
use super::remove::remove_all;
use super::sparse::{self, Sparse};

/// Ownership, permissions, extended attributes and time of an entry.
#[derive(Clone)]
pub(super) struct Meta {
    mode: u32,
    /// `Some` only when it must be applied: running as root, and not already ours.
    owner: Option<(u32, u32)>,
    mtime: Option<Timespec>,
    /// Extended attributes (name, value), from `SCHILY.xattr.*` records.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Extended attributes never set from a layer, nor cleared from a directory a layer merges
/// into: a security label and an NFS access list belong to the host, not to the image
/// (umoci leaves the same two alone).
const HOST_XATTRS: [&[u8]; 2] = [b"security.selinux", b"system.nfs4_acl"];

/// Prefixes of extended attributes never set from a layer: overlayfs reads them as its own
/// markers (opaque directories, redirects, metacopy) when the rootfs becomes a lower layer
/// of an overlay, as a volume of a container runtime may.
const OVERLAY_XATTRS: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// Whether a layer's extended attribute `name` is left alone.
fn not_ours(name: &[u8]) -> bool {
    HOST_XATTRS.contains(&name) || OVERLAY_XATTRS.iter().any(|p| name.starts_with(p))
}

/// The most a directory's extended attribute names take, listed (the kernel's
/// `XATTR_LIST_MAX`).
const XATTR_LIST_MAX: usize = 64 * 1024;

/// Who we are and what our umask strips, read once per rootfs.
#[derive(Clone, Copy)]
pub(super) struct Creator {
    /// `(euid, egid)` when running as root, so owners are applied.
    pub(super) root: Option<(u32, u32)>,
    /// The process umask, which `openat`/`mkdirat` modes pass through.
    pub(super) umask: u32,
}

impl Creator {
    pub(super) fn current() -> Self {
        let euid = rustix::process::geteuid();
        let root = euid
            .is_root()
            .then(|| (euid.as_raw(), rustix::process::getegid().as_raw()));
        // umask can only be read by setting it: set it back at once.
        let umask = rustix::process::umask(Mode::empty());
        rustix::process::umask(umask);
        Self {
            root,
            umask: umask.bits(),
        }
    }
}

impl Meta {
    /// From a tar header and its extended header; owners only when we may apply them
    /// (running as root).
    pub(super) fn from_header(
        header: &tar::Header,
        extended: Extended,
        creator: Creator,
    ) -> io::Result<Self> {
        let mode = header.mode()? & 0o7777;
        let owner = match creator.root {
            Some(us) => {
                // the extended header's owners, read by record length, over the header's
                let uid = extended.uid.map_or_else(|| header.uid(), Ok)?;
                let gid = extended.gid.map_or_else(|| header.gid(), Ok)?;
                let uid = u32::try_from(uid).map_err(|_| io::Error::other("uid out of range"))?;
                let gid = u32::try_from(gid).map_err(|_| io::Error::other("gid out of range"))?;
                ((uid, gid) != us).then_some((uid, gid))
            }
            None => None,
        };
        let mtime = match extended.mtime {
            Some(t) => Some(t),
            None => i64::try_from(header.mtime()?)
                .ok()
                .map(|tv_sec| Timespec { tv_sec, tv_nsec: 0 }),
        };
        let xattrs = extended
            .xattrs
            .into_iter()
            .filter(|(name, _)| {
                let skip = not_ours(name);
                if skip {
                    tracing::debug!(
                        "skipping extended attribute {}: not set from a layer",
                        String::from_utf8_lossy(name)
                    );
                }
                !skip
            })
            .collect();
        Ok(Self {
            mode,
            owner,
            mtime,
            xattrs,
        })
    }

    /// The entry's mtime, if it has one.
    pub(super) fn mtime(&self) -> Option<Timespec> {
        self.mtime
    }

    /// What its extended attributes take in memory.
    pub(super) fn extra_size(&self) -> usize {
        self.xattrs.iter().map(|(n, v)| n.len() + v.len() + 48).sum()
    }

    /// The permission bits (with setuid, setgid and sticky).
    pub(super) fn mode(&self) -> u32 {
        self.mode
    }

    /// The same with another mode.
    pub(super) fn with_mode(self, mode: u32) -> Self {
        Self { mode, ..self }
    }

    /// A parent directory the layer did not list: `0755`, owned by us, time of creation.
    pub(super) fn implicit_dir() -> Self {
        Self {
            mode: 0o755,
            owner: None,
            mtime: None,
            xattrs: Vec::new(),
        }
    }

    /// chown, then chmod when the created mode is not the final one (umask, special bits,
    /// which chown clears anyway), then the extended attributes (after chown and the
    /// content, which would clear `security.capability`), then the times.
    fn apply_to(&self, fd: &OwnedFd, created_mode: u32) -> io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        }
        if created_mode != self.mode || (self.owner.is_some() && self.mode & 0o6000 != 0) {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(self.mode))?;
        }
        for (name, value) in &self.xattrs {
            let set = xattr_name(name).and_then(|n| {
                rustix::fs::fsetxattr(fd, n, value, rustix::fs::XattrFlags::empty()).map_err(io::Error::from)
            });
            skipped_xattr(name, set);
        }
        if let Some(mtime) = self.mtime {
            set_times(fd, mtime)?;
        }
        Ok(())
    }

    /// Removes the extended attributes of an existing directory that this entry does not
    /// list, as a directory entry over a directory replaces its metadata.
    fn clear_other_xattrs(&self, fd: &OwnedFd) {
        let mut list = vec![0u8; XATTR_LIST_MAX];
        let n = match rustix::fs::flistxattr(fd, &mut list[..]) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("could not list extended attributes: {e}");
                return;
            }
        };
        for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
            if not_ours(name) || self.xattrs.iter().any(|(n, _)| n == name) {
                continue;
            }
            let removed =
                xattr_name(name).and_then(|n| rustix::fs::fremovexattr(fd, n).map_err(io::Error::from));
            if let Err(e) = removed {
                tracing::debug!(
                    "could not remove extended attribute {}: {e}",
                    String::from_utf8_lossy(name)
                );
            }
        }
    }

    /// The same for something we cannot open (symlinks, device nodes, FIFOs).
    fn apply_at(&self, dir: &OwnedFd, name: &OsStr, chmod: bool) -> io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            rustix::fs::chownat(
                dir,
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if chmod {
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(self.mode), AtFlags::empty())?;
        }
        if !self.xattrs.is_empty() {
            // no handle of a symlink or device can set them: its path through our handle
            // of the directory, the last component not followed
            let mut path = format!("/proc/self/fd/{}/", std::os::fd::AsRawFd::as_raw_fd(dir)).into_bytes();
            path.extend_from_slice(name.as_bytes());
            for (xname, value) in &self.xattrs {
                let set = xattr_name(xname).and_then(|n| {
                    rustix::fs::lsetxattr(
                        OsStr::from_bytes(&path),
                        n,
                        value,
                        rustix::fs::XattrFlags::empty(),
                    )
                    .map_err(io::Error::from)
                });
                skipped_xattr(xname, set);
            }
        }
        if let Some(t) = self.mtime {
            rustix::fs::utimensat(
                dir,
                name,
                &Timestamps {
                    last_access: t,
                    last_modification: t,
                },
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(())
    }
}

/// An extended attribute's name as the kernel takes it.
fn xattr_name(name: &[u8]) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in its name"))
}

/// An extended attribute that could not be set is skipped with a debug line: the filesystem
/// may not support it (`ENOTSUP`), or we may not set it (`trusted.*` without
/// `CAP_SYS_ADMIN`, `security.capability` without `CAP_SETFCAP`, `user.*` on a symlink).
fn skipped_xattr(name: &[u8], set: io::Result<()>) {
    if let Err(e) = set {
        tracing::debug!(
            "skipping extended attribute {}: {e}",
            String::from_utf8_lossy(name)
        );
    }
}

/// A directory's access and modification times.
pub(super) struct Times(Timestamps);

impl Times {
    /// Both set to `t`, as an entry's own times are applied.
    pub(super) fn at(t: Timespec) -> Self {
        Self(Timestamps {
            last_access: t,
            last_modification: t,
        })
    }
}

/// Reads a directory's times.
pub(super) fn times_of(fd: &OwnedFd) -> io::Result<Times> {
    let st = rustix::fs::fstat(fd)?;
    // nanoseconds are below 10^9, so they always fit
    let nanos = |n| i64::try_from(n).unwrap_or(0);
    Ok(Times(Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: nanos(st.st_atime_nsec),
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: nanos(st.st_mtime_nsec),
        },
    }))
}

/// Puts back times read with [`times_of`].
pub(super) fn restore_times(fd: &OwnedFd, times: &Times) -> io::Result<()> {
    Ok(rustix::fs::futimens(fd, &times.0)?)
}

/// Sets access and modification time.
pub(super) fn set_times(fd: impl AsFd, t: Timespec) -> io::Result<()> {
    Ok(rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
    )?)
}

/// A directory: merged into an existing one, replacing anything else. Returns `true` when
/// something other than a directory had to be removed first.
pub(super) fn make_dir(dir: &OwnedFd, name: &OsStr, meta: &Meta, umask: u32) -> io::Result<bool> {
    // owner-writable while we fill it; the final mode comes after
    let create = (meta.mode & 0o777) | 0o700;
    let mut replaced = false;
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(create)) {
        Ok(()) => {}
        Err(Errno::EXIST) => {
            if kind_at(dir, name)? == Some(FileType::Directory) {
                // merging: the existing directory's mode is unknown, so always set it
                let fd = open_dir(dir, name)?;
                meta.clear_other_xattrs(&fd);
                meta.apply_to(&fd, u32::MAX)?;
                return Ok(false);
            }
            remove_all(dir, name)?;
            rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(create))?;
            replaced = true;
        }
        Err(e) => return Err(e.into()),
    }
    let fd = open_dir(dir, name)?;
    meta.apply_to(&fd, create & !umask)?;
    Ok(replaced)
}

fn open_dir(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Creates `name` with `create`, replacing whatever is there (a first attempt assumes
/// nothing is, which holds for most entries). Returns `true` when something was removed.
fn create_replacing<T>(
    dir: &OwnedFd,
    name: &OsStr,
    create: impl Fn() -> rustix::io::Result<T>,
) -> io::Result<(T, bool)> {
    match create() {
        Ok(v) => Ok((v, false)),
        Err(Errno::EXIST) => {
            remove_all(dir, name)?;
            Ok((create()?, true))
        }
        Err(e) => Err(e.into()),
    }
}

/// A regular file with `content`, laid out as `sparse` says when it is sparse. Returns
/// `true` when something was replaced.
pub(super) fn write_file(
    dir: &OwnedFd,
    name: &OsStr,
    meta: &Meta,
    umask: u32,
    (content, sparse): (&mut impl Read, Option<&Sparse>),
    buf: &mut [u8],
) -> io::Result<bool> {
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let create = meta.mode & 0o777;
    let (fd, replaced) = create_replacing(dir, name, || {
        rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(create))
    })?;
    let mut file = File::from(fd);
    match sparse {
        Some(sparse) => sparse::write(&mut file, sparse, content, buf)?,
        None => copy(content, &mut file, buf)?,
    }
    meta.apply_to(&file.into(), create & !umask)?;
    Ok(replaced)
}

fn copy(from: &mut impl Read, to: &mut File, buf: &mut [u8]) -> io::Result<()> {
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
    }
}

/// A symlink to `target`, stored exactly as written. Returns `true` when something was replaced.
pub(super) fn make_symlink(dir: &OwnedFd, name: &OsStr, target: &[u8], meta: &Meta) -> io::Result<bool> {
    let ((), replaced) = create_replacing(dir, name, || {
        rustix::fs::symlinkat(OsStr::from_bytes(target), dir, name)
    })?;
    meta.apply_at(dir, name, false)?;
    Ok(replaced)
}

/// A hardlink at `(dir, name)` to the existing `(target_dir, target_name)`.
pub(super) fn make_hardlink(
    target_dir: &OwnedFd,
    target_name: &OsStr,
    dir: &OwnedFd,
    name: &OsStr,
) -> io::Result<bool> {
    let ((), replaced) = create_replacing(dir, name, || {
        rustix::fs::linkat(target_dir, target_name, dir, name, AtFlags::empty())
    })?;
    Ok(replaced)
}

/// A FIFO or device node. Returns `false` when a device may not be created here.
pub(super) fn make_node(
    dir: &OwnedFd,
    name: &OsStr,
    kind: tar::EntryType,
    meta: &Meta,
    (major, minor): (u32, u32),
    creator: Creator,
) -> io::Result<bool> {
    let file_type = if kind.is_fifo() {
        FileType::Fifo
    } else if kind.is_character_special() {
        FileType::CharacterDevice
    } else {
        FileType::BlockDevice
    };
    if file_type != FileType::Fifo && creator.root.is_none() {
        return Ok(false);
    }
    let dev = rustix::fs::makedev(major, minor);
    match create_replacing(dir, name, || {
        rustix::fs::mknodat(dir, name, file_type, Mode::from_raw_mode(0o600), dev)
    }) {
        Ok(_) => {}
        Err(e)
            if file_type != FileType::Fifo
                && matches!(e.raw_os_error(), Some(c) if c == Errno::PERM.raw_os_error() || c == Errno::ACCESS.raw_os_error()) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(e),
    }
    meta.apply_at(dir, name, true)?;
    Ok(true)
}

/// The names in a directory, without `.` and `..`.
pub(super) fn list_dir(dir: &OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_owned());
        }
    }
    Ok(names)
}
