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

/// Ownership, permissions and time of an entry.
pub(super) struct Meta {
    mode: u32,
    owner: Option<(u32, u32)>,
    mtime: Option<i64>,
}

impl Meta {
    /// From a tar header; owners only when we may apply them (running as root).
    pub(super) fn from_header(header: &tar::Header, as_root: bool) -> io::Result<Self> {
        let mode = header.mode()? & 0o7777;
        let owner = if as_root {
            let uid = u32::try_from(header.uid()?).map_err(|_| io::Error::other("uid out of range"))?;
            let gid = u32::try_from(header.gid()?).map_err(|_| io::Error::other("gid out of range"))?;
            Some((uid, gid))
        } else {
            None
        };
        let mtime = i64::try_from(header.mtime()?).ok();
        Ok(Self { mode, owner, mtime })
    }

    /// A parent directory the layer did not list: `0755`, owned by us, time of creation.
    pub(super) fn implicit_dir() -> Self {
        Self {
            mode: 0o755,
            owner: None,
            mtime: None,
        }
    }

    /// chown, then chmod (chown clears setuid/setgid), then the times.
    fn apply_to(&self, fd: &OwnedFd) -> io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(self.mode))?;
        if let Some(mtime) = self.mtime {
            set_times(fd, mtime)?;
        }
        Ok(())
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
        if let Some(mtime) = self.mtime {
            let t = Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            };
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

/// A directory's access and modification times.
pub(super) struct Times(Timestamps);

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
pub(super) fn set_times(fd: impl AsFd, mtime: i64) -> io::Result<()> {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Ok(rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
    )?)
}

/// A directory: merged into an existing one, replacing anything else.
pub(super) fn make_dir(dir: &OwnedFd, name: &OsStr, meta: &Meta) -> io::Result<()> {
    match kind_at(dir, name)? {
        Some(FileType::Directory) => {}
        Some(_) => {
            remove_all(dir, name)?;
            rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
        }
        None => rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?,
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    meta.apply_to(&fd)
}

/// A regular file with `content`.
pub(super) fn write_file(
    dir: &OwnedFd,
    name: &OsStr,
    meta: &Meta,
    content: &mut impl Read,
) -> io::Result<()> {
    remove_all(dir, name)?;
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?;
    let mut file = File::from(fd);
    copy(content, &mut file)?;
    meta.apply_to(&file.into())
}

fn copy(from: &mut impl Read, to: &mut File) -> io::Result<()> {
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
    }
}

/// A symlink to `target`, stored exactly as written.
pub(super) fn make_symlink(dir: &OwnedFd, name: &OsStr, target: &[u8], meta: &Meta) -> io::Result<()> {
    remove_all(dir, name)?;
    rustix::fs::symlinkat(OsStr::from_bytes(target), dir, name)?;
    meta.apply_at(dir, name, false)
}

/// A hardlink at `(dir, name)` to the existing `(target_dir, target_name)`.
pub(super) fn make_hardlink(
    target_dir: &OwnedFd,
    target_name: &OsStr,
    dir: &OwnedFd,
    name: &OsStr,
) -> io::Result<()> {
    remove_all(dir, name)?;
    Ok(rustix::fs::linkat(
        target_dir,
        target_name,
        dir,
        name,
        AtFlags::empty(),
    )?)
}

/// A FIFO or device node. Returns `false` when a device may not be created here.
pub(super) fn make_node(
    dir: &OwnedFd,
    name: &OsStr,
    kind: tar::EntryType,
    meta: &Meta,
    header: &tar::Header,
) -> io::Result<bool> {
    let file_type = if kind.is_fifo() {
        FileType::Fifo
    } else if kind.is_character_special() {
        FileType::CharacterDevice
    } else {
        FileType::BlockDevice
    };
    if file_type != FileType::Fifo && meta.owner.is_none() {
        return Ok(false);
    }
    // FIFOs carry no device numbers, and some writers leave the fields blank.
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    remove_all(dir, name)?;
    let dev = rustix::fs::makedev(major, minor);
    match rustix::fs::mknodat(dir, name, file_type, Mode::from_raw_mode(0o600), dev) {
        Ok(()) => {}
        Err(Errno::PERM | Errno::ACCESS) if file_type != FileType::Fifo => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    meta.apply_at(dir, name, true)?;
    Ok(true)
}

/// Removes whatever is at `name`, recursively for directories, without following symlinks.
pub(super) fn remove_all(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let child = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            for entry in list_dir(&child)? {
                remove_all(&child, &entry)?;
            }
            Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
        }
        Some(_) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
    }
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
