//! Entry names and in-root path resolution.
//!
//! Every path a layer names is resolved by the kernel beneath the rootfs's directory handle
//! (`openat2` with `RESOLVE_BENEATH`), never by joining strings. A symlink may point at an
//! absolute path (`var/run -> /run` is in every Debian image); such a path is then resolved
//! with `RESOLVE_IN_ROOT`, the way a container runtime sees it, after checking that no
//! symlink on the way climbs above the root with `..`: that cannot be legitimate, so the
//! layer is refused instead of silently clamped.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{openat2, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// A symlink chain longer than this is a loop (the kernel's own limit).
pub(super) const MAX_SYMLINKS: usize = 40;

/// Why an entry is refused before anything is written.
pub(super) type Refusal = &'static str;

/// Turns a tar entry name into a relative path with only normal components.
/// `./a/b/` becomes `a/b`; the root itself becomes the empty path.
pub(super) fn entry_path(raw: &Path) -> Result<PathBuf, Refusal> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("its name contains a `..` component"),
            Component::RootDir | Component::Prefix(_) => return Err("its name is an absolute path"),
        }
    }
    Ok(out)
}

/// How a path was resolved.
pub(super) enum Resolved {
    /// A file descriptor of the path.
    Fd(OwnedFd),
    /// Nothing is there (or a parent is missing).
    Missing,
}

/// Opens `rel` beneath `root` with `flags` (`O_PATH` or `O_RDONLY` plus `O_DIRECTORY`).
pub(super) fn open_beneath(root: &OwnedFd, rel: &Path, flags: OFlags) -> Result<Resolved, ResolveError> {
    let path: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let flags = flags | OFlags::CLOEXEC;
    let beneath = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    match openat2(root, path, flags, Mode::empty(), beneath) {
        Ok(fd) => return Ok(Resolved::Fd(fd)),
        Err(Errno::NOENT) => return Ok(Resolved::Missing),
        Err(Errno::XDEV) => {}
        Err(Errno::NOSYS) => return Err(ResolveError::NoOpenat2),
        Err(e) => return Err(ResolveError::Io(e.into())),
    }
    // A symlink on the way is absolute or climbs out: find out which.
    if let Some(link) = escaping_symlink(root, path).map_err(ResolveError::Io)? {
        return Err(ResolveError::Escape { symlink: link });
    }
    let in_root = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    match openat2(root, path, flags, Mode::empty(), in_root) {
        Ok(fd) => Ok(Resolved::Fd(fd)),
        Err(Errno::NOENT) => Ok(Resolved::Missing),
        Err(e) => Err(ResolveError::Io(e.into())),
    }
}

/// Failure to resolve a path beneath the root.
#[derive(Debug)]
pub(super) enum ResolveError {
    /// The symlink at this root-relative path leads above the root.
    Escape { symlink: PathBuf },
    /// The kernel has no `openat2` (Linux < 5.6).
    NoOpenat2,
    /// Anything else.
    Io(io::Error),
}

/// Walks `path` component by component, as the kernel would from the root, and returns the
/// symlink whose target climbs above the root. Entry names carry no `..` (see
/// [`entry_path`]), so any `..` comes from the last symlink expanded. Absolute targets
/// restart at the root, which is how a container sees them and is not an escape.
fn escaping_symlink(root: &OwnedFd, path: &Path) -> io::Result<Option<PathBuf>> {
    let mut resolved: Vec<Vec<u8>> = Vec::new();
    let mut pending: Vec<Vec<u8>> = components(path.as_os_str().as_bytes()).rev().collect();
    let mut last_symlink = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.as_slice() {
            b"." => {}
            b".." => {
                if resolved.pop().is_none() {
                    return Ok(Some(last_symlink));
                }
            }
            name => {
                let mut candidate = join(&resolved);
                candidate.push(OsStr::from_bytes(name));
                let kind = match rustix::fs::statat(root, &candidate, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => FileType::from_raw_mode(st.st_mode),
                    Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                if kind != FileType::Symlink {
                    resolved.push(name.to_vec());
                    continue;
                }
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(Errno::LOOP.raw_os_error()));
                }
                let target = rustix::fs::readlinkat(root, &candidate, Vec::new())?;
                if target.as_bytes().starts_with(b"/") {
                    resolved.clear();
                }
                pending.extend(components(target.as_bytes()).rev());
                last_symlink = candidate;
            }
        }
    }
    Ok(None)
}

fn components(bytes: &[u8]) -> impl DoubleEndedIterator<Item = Vec<u8>> + '_ {
    bytes
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
}

fn join(parts: &[Vec<u8>]) -> PathBuf {
    let mut p = PathBuf::new();
    for part in parts {
        p.push(OsStr::from_bytes(part));
    }
    p
}

/// The type of whatever is at `name` in `dir`, without following a symlink.
pub(super) fn kind_at(dir: impl AsFd, name: &OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert_eq!(entry_path(Path::new("./a/b/")).unwrap(), PathBuf::from("a/b"));
        assert_eq!(entry_path(Path::new("a//./b")).unwrap(), PathBuf::from("a/b"));
        assert_eq!(entry_path(Path::new("./")).unwrap(), PathBuf::new());
        assert!(entry_path(Path::new("a/../../b")).is_err());
        assert!(entry_path(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn escaping_symlinks_are_found_and_absolute_ones_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink("..", root.join("a/b/parent")).unwrap();
        std::os::unix::fs::symlink("/a", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("/..", root.join("rootdots")).unwrap();
        let fd = rustix::fs::open(&root, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        let esc = |p: &str| escaping_symlink(&fd, Path::new(p)).unwrap();
        assert_eq!(esc("a/b/up/x"), Some(PathBuf::from("a/b/up")));
        assert_eq!(esc("a/b/parent/b/x"), None);
        assert_eq!(esc("abs/b/x"), None);
        assert_eq!(esc("rootdots/x"), Some(PathBuf::from("rootdots")));
        assert_eq!(esc("missing/x"), None);
        // the real resolution: absolute symlinks land inside the root
        assert!(matches!(
            open_beneath(&fd, Path::new("abs/b"), OFlags::PATH | OFlags::DIRECTORY),
            Ok(Resolved::Fd(_))
        ));
        assert!(matches!(
            open_beneath(&fd, Path::new("a/b/up/x"), OFlags::PATH),
            Err(ResolveError::Escape { .. })
        ));
    }
}
