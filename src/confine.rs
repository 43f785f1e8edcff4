//! Files read strictly beneath a directory: `out`'s sources directory, and the image
//! layout directories in it.
//!
//! Every path is resolved by the kernel beneath a directory handle (`openat2` with
//! `RESOLVE_BENEATH`), never by joining strings: a name with `..` that climbs out, an
//! absolute name, or a symlink on the way that leads out of the directory (absolutely or
//! with `..`) is refused with the name, and a symlink that stays inside is followed.
//! What is opened is the file later read, so a path swapped after the check cannot
//! redirect the read.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// A path that cannot be read beneath its directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfineError {
    /// The path, or a symlink on its way, leads outside the directory.
    #[error("{path} leads outside {dir} (an absolute path, `..`, or a symlink out of it); only files inside it are read")]
    Outside {
        /// The path as named.
        path: PathBuf,
        /// The directory it must stay in.
        dir: PathBuf,
    },
    /// The kernel cannot resolve beneath a directory (Linux before 5.6).
    #[error("reading {path} safely needs openat2 (Linux 5.6 or later)")]
    NoOpenat2 {
        /// The path as named.
        path: PathBuf,
    },
    /// Opening or reading failed.
    #[error("{path}")]
    Io {
        /// The path, inside its directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl ConfineError {
    /// Whether the path does not exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// What a path beneath a directory is.
pub enum Entry {
    /// A regular file, opened, with its size.
    File(Arc<File>, u64),
    /// A directory, opened.
    Dir(Dir),
    /// Something else (a device, a socket, a fifo).
    Other,
}

/// A directory whose paths are resolved beneath it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    shown: PathBuf,
}

impl Dir {
    /// Opens the directory `path` itself (given by the caller, so trusted as it is).
    ///
    /// # Errors
    /// It cannot be opened as a directory.
    pub fn open(path: &Path) -> Result<Self, ConfineError> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ConfineError::Io {
            path: path.to_owned(),
            source: e.into(),
        })?;
        Ok(Self {
            fd,
            shown: path.to_owned(),
        })
    }

    /// The directory as messages show it.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// `rel` as messages show it: inside this directory.
    #[must_use]
    pub fn shown(&self, rel: &Path) -> PathBuf {
        self.shown.join(rel)
    }

    /// Opens `rel` beneath this directory: a file for reading, or a directory.
    ///
    /// # Errors
    /// `rel` leads outside, does not exist, or cannot be opened.
    pub fn entry(&self, rel: &Path) -> Result<Entry, ConfineError> {
        let fd = self.resolve(rel, OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK)?;
        let io_error = |e: Errno| ConfineError::Io {
            path: self.shown(rel),
            source: e.into(),
        };
        let stat = rustix::fs::fstat(&fd).map_err(io_error)?;
        let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
        Ok(match kind {
            rustix::fs::FileType::RegularFile => {
                #[allow(clippy::cast_sign_loss)] // st_size of a regular file is never negative
                let size = stat.st_size as u64;
                Entry::File(Arc::new(File::from(fd)), size)
            }
            rustix::fs::FileType::Directory => Entry::Dir(Self {
                fd,
                shown: self.shown(rel),
            }),
            _ => Entry::Other,
        })
    }

    /// Opens the regular file `rel` beneath this directory, with its size.
    ///
    /// # Errors
    /// `rel` leads outside, does not exist, is not a regular file, or cannot be opened.
    pub fn file(&self, rel: &Path) -> Result<(Arc<File>, u64), ConfineError> {
        match self.entry(rel)? {
            Entry::File(file, size) => Ok((file, size)),
            _ => Err(ConfineError::Io {
                path: self.shown(rel),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            }),
        }
    }

    /// Reads the regular file `rel` beneath this directory, refusing one over `limit` bytes.
    ///
    /// # Errors
    /// As [`Dir::file`], or the file is larger than `limit`.
    pub fn read(&self, rel: &Path, limit: u64) -> Result<Vec<u8>, ConfineError> {
        let (file, size) = self.file(rel)?;
        let too_large = || ConfineError::Io {
            path: self.shown(rel),
            source: io::Error::new(io::ErrorKind::InvalidData, format!("larger than {limit} bytes")),
        };
        if size > limit {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        Slice::new(file, 0, limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ConfineError::Io {
                path: self.shown(rel),
                source,
            })?;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        Ok(bytes)
    }

    fn resolve(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, ConfineError> {
        let path: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let beneath = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        match openat2(&self.fd, path, flags | OFlags::CLOEXEC, Mode::empty(), beneath) {
            Ok(fd) => Ok(fd),
            Err(Errno::XDEV) => Err(ConfineError::Outside {
                path: rel.to_owned(),
                dir: self.shown.clone(),
            }),
            Err(Errno::NOSYS) => Err(ConfineError::NoOpenat2 {
                path: self.shown(rel),
            }),
            Err(e) => Err(ConfineError::Io {
                path: self.shown(rel),
                source: e.into(),
            }),
        }
    }
}

/// A byte range of an open file, read with positioned reads: many may read one file at
/// once without sharing an offset.
#[derive(Debug)]
pub struct Slice {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Slice {
    /// `len` bytes of `file` from `offset`.
    #[must_use]
    pub fn new(file: Arc<File>, offset: u64, len: u64) -> Self {
        Self {
            file,
            pos: offset,
            end: offset.saturating_add(len),
        }
    }
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_are_refused_and_links_inside_are_followed() {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/in.txt"), b"inside").unwrap();
        std::fs::write(work.path().join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink("sub/in.txt", src.join("good")).unwrap();
        std::os::unix::fs::symlink("../secret", src.join("up")).unwrap();
        std::os::unix::fs::symlink(work.path().join("secret"), src.join("abs")).unwrap();
        std::os::unix::fs::symlink("..", src.join("sub/parent")).unwrap();
        let dir = Dir::open(&src).unwrap();
        assert_eq!(dir.read(Path::new("good"), 100).unwrap(), b"inside");
        assert_eq!(
            dir.read(Path::new("sub/parent/sub/in.txt"), 100).unwrap(),
            b"inside"
        );
        for bad in [
            "up",
            "abs",
            "../secret",
            "sub/../../secret",
            "/etc/passwd",
            "sub/parent/../secret",
        ] {
            let e = dir.read(Path::new(bad), 100).unwrap_err();
            assert!(matches!(e, ConfineError::Outside { .. }), "{bad}: {e}");
        }
        assert!(dir.read(Path::new("missing"), 100).unwrap_err().is_not_found());
        assert!(dir.read(Path::new("sub"), 100).is_err());
        assert!(dir.read(Path::new("good"), 3).is_err(), "over the limit");
    }

    #[test]
    fn slices_read_their_range_only() {
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("f"), b"0123456789").unwrap();
        let (file, size) = Dir::open(work.path()).unwrap().file(Path::new("f")).unwrap();
        assert_eq!(size, 10);
        let mut out = String::new();
        Slice::new(file.clone(), 3, 4).read_to_string(&mut out).unwrap();
        assert_eq!(out, "3456");
        let mut out = String::new();
        Slice::new(file, 8, 100).read_to_string(&mut out).unwrap();
        assert_eq!(out, "89");
    }
}
