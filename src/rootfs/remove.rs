//! Removing a tree without recursion. A layer decides how deep its directories go: one name
//! of 4,096 bytes is about 2,000 levels, and a name may start at a symlink to the bottom
//! of an earlier chain, so up to 40 of them (the kernel's symlink limit) make 80,000. A
//! recursive removal of that overflows the stack; one that keeps every level open runs
//! out of file descriptors. So the removal keeps its own stack of names, holds at most
//! [`MAX_OPEN_DIRS`] directories open, and reopens a directory it closed from its child
//! (`..`), checked to be the same directory by device and inode. Nothing is reached by a
//! path string (a deep chain's path is longer than the kernel resolves), and no symlink is
//! followed: every directory is opened with `O_NOFOLLOW` from its parent's handle.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::path::kind_at;

/// Directories one removal holds open at once, however deep the tree: the deepest ones,
/// where the removal works. Above them only names are kept. At least 2 (the one being
/// read stays open while its child is opened).
pub(super) const MAX_OPEN_DIRS: usize = 64;

/// The owner bits a directory needs for us to empty it: read (list), write, search.
pub(super) const OWNER_RWX: u32 = 0o700;

/// A directory on the way down.
struct Level {
    /// Its name in the level above.
    name: OsString,
    /// `(device, inode)`, to check a reopened directory is this one.
    id: (u64, u64),
    /// Its listing, while it is open.
    dir: Option<Dir>,
}

/// Removes whatever is at `name` in `parent`, a directory with everything beneath it,
/// without following symlinks and without recursion. Not being root, a directory whose
/// mode would stop us emptying it is given its owner's `rwx` first (it goes anyway).
pub(super) fn remove_all(parent: impl AsFd, name: &OsStr) -> io::Result<()> {
    let parent = parent.as_fd();
    match kind_at(parent, name)? {
        None => return Ok(()),
        Some(FileType::Directory) => {}
        Some(_) => return Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?),
    }
    let open_up = !rustix::process::geteuid().is_root();
    let mut levels = vec![open_level(parent, name, open_up)?];
    loop {
        let top = levels
            .last_mut()
            .expect("the loop ends when the first level is removed");
        let dir = top.dir.as_mut().expect("the deepest level is open");
        match next_child(dir)? {
            Some((child, FileType::Directory)) => {
                // close the shallowest open level first, so at most MAX_OPEN_DIRS are ever
                // open (the deepest, which is being read, is never the one closed)
                if let Some(i) = levels.len().checked_sub(MAX_OPEN_DIRS) {
                    levels[i].dir = None;
                }
                let top = levels
                    .last()
                    .and_then(|l| l.dir.as_ref())
                    .expect("the deepest level is open");
                let level = open_level(top.fd()?, &child, open_up)?;
                levels.push(level);
            }
            Some((child, _)) => rustix::fs::unlinkat(dir.fd()?, &child, AtFlags::empty())?,
            None => {
                let done = levels.pop().expect("not empty");
                let Some(above) = levels.last_mut() else {
                    return Ok(rustix::fs::unlinkat(parent, &done.name, AtFlags::REMOVEDIR)?);
                };
                if above.dir.is_none() {
                    let below = done.dir.as_ref().expect("the deepest level is open").fd()?;
                    above.dir = Some(reopen_parent(below, above.id)?);
                }
                drop(done.dir);
                let above = above.dir.as_ref().expect("just opened").fd()?;
                rustix::fs::unlinkat(above, &done.name, AtFlags::REMOVEDIR)?;
            }
        }
    }
}

/// Removes `path` and everything beneath it, resolving only its parent by name.
pub(super) fn remove_path(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name"));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    remove_all(&dir, name)
}

/// Opens the directory `name` in `parent` for emptying.
fn open_level(parent: BorrowedFd<'_>, name: &OsStr, open_up: bool) -> io::Result<Level> {
    if open_up {
        give_owner_rwx(parent, name)?;
    }
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    Ok(Level {
        name: name.to_owned(),
        id: (st.st_dev, st.st_ino),
        dir: Some(Dir::new(fd)?),
    })
}

/// Gives the directory `name` in `parent` its owner's `rwx` when it lacks any of them, and
/// returns the mode it had then. `chmodat` follows a symlink, so the name is checked first
/// not to be one: a directory, as `lstat` sees it.
pub(super) fn give_owner_rwx(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<u32>> {
    let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(Errno::NOTDIR.into());
    }
    let mode = st.st_mode & 0o7777;
    if mode & OWNER_RWX == OWNER_RWX {
        return Ok(None);
    }
    rustix::fs::chmodat(
        parent,
        name,
        Mode::from_raw_mode(mode | OWNER_RWX),
        AtFlags::empty(),
    )?;
    Ok(Some(mode))
}

/// The parent of `below`, which must be the directory `id`: else the tree changed while
/// we removed it, and we stop rather than remove something else.
fn reopen_parent(below: BorrowedFd<'_>, id: (u64, u64)) -> io::Result<Dir> {
    let fd: OwnedFd = rustix::fs::openat(
        below,
        "..",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if (st.st_dev, st.st_ino) != id {
        return Err(io::Error::other("a directory being removed was moved: stopping"));
    }
    // a fresh listing: what was already removed is not in it
    Ok(Dir::new(fd)?)
}

/// The next entry of `dir` other than `.` and `..`, with its type.
fn next_child(dir: &mut Dir) -> io::Result<Option<(OsString, FileType)>> {
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsStr::from_bytes(name).to_owned();
        let kind = match entry.file_type() {
            FileType::Unknown => match kind_at(dir.fd()?, &name)? {
                Some(kind) => kind,
                None => continue,
            },
            kind => kind,
        };
        return Ok(Some((name, kind)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Levels of the chain the tests remove: past the 2,000 one tar name reaches, and
    /// past what the recursive removal survived on a 2 MiB stack.
    const DEPTH: usize = 6_000;

    /// The stack the removal must fit in, however deep the tree.
    const SMALL_STACK: usize = 256 * 1024;

    /// `root/a/a/…/a` (`DEPTH` levels), with a file and a read-only directory at each
    /// 1,000th level, made with handles since the path is longer than `PATH_MAX`.
    fn make_chain(root: &Path) {
        let mut dir = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for level in 0..DEPTH {
            if level > 0 && level % 1000 == 0 {
                let f = rustix::fs::openat(
                    &dir,
                    "f",
                    OFlags::CREATE | OFlags::WRONLY,
                    Mode::from_raw_mode(0o444),
                );
                drop(f.unwrap());
                rustix::fs::mkdirat(&dir, "ro", Mode::from_raw_mode(0o555)).unwrap();
            }
            rustix::fs::mkdirat(&dir, "a", Mode::from_raw_mode(0o755)).unwrap();
            dir = rustix::fs::openat(&dir, "a", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        }
        rustix::fs::symlinkat("/", &dir, "up").unwrap();
    }

    #[test]
    fn a_chain_deeper_than_any_path_is_removed_on_a_small_stack() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(work.path().join("sentinel"), b"stays").unwrap();
        make_chain(&root);
        let left = std::thread::Builder::new()
            .stack_size(SMALL_STACK)
            .spawn(move || {
                let dir = rustix::fs::open(&root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
                remove_all(&dir, OsStr::new("a")).map(|()| std::fs::read_dir(&root).unwrap().count())
            })
            .unwrap()
            .join()
            .expect("no stack overflow")
            .unwrap();
        assert_eq!(left, 0, "the chain is gone");
        assert_eq!(std::fs::read(work.path().join("sentinel")).unwrap(), b"stays");
    }

    #[test]
    fn symlinks_are_removed_not_followed() {
        let work = tempfile::tempdir().unwrap();
        let outside = work.path().join("outside");
        std::fs::create_dir_all(outside.join("kept")).unwrap();
        let root = work.path().join("root");
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d/e/out")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("top")).unwrap();
        remove_path(&root.join("d")).unwrap();
        remove_path(&root.join("top")).unwrap();
        assert!(outside.join("kept").is_dir(), "nothing outside was touched");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }
}
