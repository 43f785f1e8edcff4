//! Sparse files, in every format GNU tar writes, restored as the file they describe, holes
//! left as holes.
//!
//! - Old GNU (`--format=gnu --sparse`, type `S`): the tar crate reads the map from the
//!   header and yields the file with its holes as zeros; runs of zeros are skipped here.
//! - PAX 0.0 and 0.1: the map is in the extended header (`GNU.sparse.offset`/`.numbytes`
//!   pairs, or `GNU.sparse.map`), the member's data is the map's extents one after another.
//! - PAX 1.0 (GNU tar's default for `--format=posix --sparse`): the map opens the data, as
//!   decimal numbers one per line (the extent count, then offset and length of each),
//!   padded to a 512-byte block; the extents follow.
//!
//! The map is checked before anything is written: extents in order, not overlapping,
//! inside the file's size, and exactly as long as the data that holds them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use super::guard::TAR_METADATA_LIMIT;
use super::pax::SparseRecords;

/// The longest sparse map in a member's data (PAX 1.0) that is read: as for the other
/// metadata of a member.
pub(super) const SPARSE_MAP_LIMIT: u64 = TAR_METADATA_LIMIT;

/// The largest sparse file unpacked. A sparse file's size costs its layer nothing, so
/// without a bound a few bytes could make a file of exabytes that everything reading the
/// rootfs later (a copy, a tar of the volume) reads as zeros; the tar crate itself hands
/// the holes of an old GNU sparse file over as zeros, which are read at memory speed. A
/// tebibyte holds the `lastlog` of a system with UIDs up to 3.7 billion.
pub(super) const MAX_SPARSE_SIZE: u64 = 1 << 40;

/// How a sparse file's content is laid out in its member.
#[derive(Debug)]
pub(super) enum Sparse {
    /// The extents (offset, length) are known; the data is their content in order.
    Map { extents: Vec<(u64, u64)>, size: u64 },
    /// The map opens the data (PAX 1.0).
    InData { size: u64, stored: u64 },
    /// The whole file, its holes as zeros (old GNU sparse, as the tar crate gives it; or a
    /// file written ahead).
    Expanded,
}

impl Sparse {
    /// The layout of a member of `kind` with `stored` bytes of data, from its extended
    /// header's records; `None` when it is not sparse.
    pub(super) fn of(
        records: &SparseRecords,
        header: &tar::Header,
        stored: u64,
    ) -> Result<Option<Self>, String> {
        let kind = header.entry_type();
        let too_large = |size: u64| {
            format!("it is a sparse file of {size} bytes, more than the limit of {MAX_SPARSE_SIZE}")
        };
        if kind == tar::EntryType::GNUSparse {
            let size = header
                .as_gnu()
                .and_then(|g| g.real_size().ok())
                .ok_or("its old GNU sparse header has no real size")?;
            if size > MAX_SPARSE_SIZE {
                return Err(too_large(size));
            }
            return Ok(Some(Self::Expanded));
        }
        let sparse = records.version.is_some() || records.map.is_some();
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return if sparse {
                Err(format!("it has sparse records but is of type {kind:?}"))
            } else {
                Ok(None)
            };
        }
        let size = || match records.size {
            None => Err("it is sparse but its size is not recorded".to_owned()),
            Some(size) if size > MAX_SPARSE_SIZE => Err(too_large(size)),
            Some(size) => Ok(size),
        };
        match (records.version, &records.map) {
            (Some((1, 0)), _) => Ok(Some(Self::InData {
                size: size()?,
                stored,
            })),
            (Some((major, minor)), _) if (major, minor) != (0, 0) && (major, minor) != (0, 1) => {
                Err(format!("GNU sparse format {major}.{minor} is unknown"))
            }
            (_, Some(map)) => {
                if map.len() % 2 != 0 {
                    return Err("its sparse map has an odd count of numbers".to_owned());
                }
                let extents: Vec<(u64, u64)> = map.chunks(2).map(|p| (p[0], p[1])).collect();
                let size = size()?;
                check(&extents, size, stored)?;
                Ok(Some(Self::Map { extents, size }))
            }
            (Some(_), None) => Err("it is sparse but has no sparse map".to_owned()),
            (None, None) => Ok(None),
        }
    }
}

/// Extents in order, not overlapping, within `size`, and holding `stored` bytes in all.
fn check(extents: &[(u64, u64)], size: u64, stored: u64) -> Result<(), String> {
    let mut end = 0u64;
    let mut total = 0u64;
    for &(offset, len) in extents {
        let last = offset.checked_add(len).filter(|&e| offset >= end && e <= size);
        end = last.ok_or("its sparse map has extents out of order, overlapping, or past its size")?;
        total += len;
    }
    if total != stored {
        return Err(format!(
            "its sparse map describes {total} bytes of data but the member holds {stored}"
        ));
    }
    Ok(())
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Writes the sparse file laid out as `sparse` in `content` into the empty `file`.
pub(super) fn write(
    file: &mut File,
    sparse: &Sparse,
    content: &mut impl Read,
    buf: &mut [u8],
) -> io::Result<()> {
    match sparse {
        Sparse::Expanded => {
            let size = copy_skipping_zeros(content, file, buf)?;
            file.set_len(size)
        }
        Sparse::Map { extents, size } => write_extents(file, extents, *size, content, buf),
        Sparse::InData { size, stored } => {
            let (extents, used) = read_map(content)?;
            check(&extents, *size, stored.saturating_sub(used)).map_err(invalid)?;
            if used > *stored {
                return Err(invalid("its sparse map is longer than its data".to_owned()));
            }
            write_extents(file, &extents, *size, content, buf)
        }
    }
}

fn write_extents(
    file: &mut File,
    extents: &[(u64, u64)],
    size: u64,
    content: &mut impl Read,
    buf: &mut [u8],
) -> io::Result<()> {
    for &(offset, len) in extents {
        file.seek(SeekFrom::Start(offset))?;
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let n = match content.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the sparse file's data ends before its map does",
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            file.write_all(&buf[..n])?;
            left -= n as u64;
        }
    }
    file.set_len(size)
}

/// Copies `from` to `to`, seeking over reads that are all zeros so they stay holes; returns
/// the length written.
fn copy_skipping_zeros(from: &mut impl Read, to: &mut File, buf: &mut [u8]) -> io::Result<u64> {
    let mut at = 0u64;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(at),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf[..n].iter().all(|&b| b == 0) {
            to.seek(SeekFrom::Current(i64::try_from(n).map_err(io::Error::other)?))?;
        } else {
            to.write_all(&buf[..n])?;
        }
        at += n as u64;
    }
}

/// Reads a PAX 1.0 sparse map off the start of the data: the extents and the bytes the map
/// took, padding included.
fn read_map(content: &mut impl Read) -> io::Result<(Vec<(u64, u64)>, u64)> {
    let mut numbers: Vec<u64> = Vec::new();
    let mut wanted: Option<u64> = None;
    let mut digits: Vec<u8> = Vec::new();
    let mut used = 0u64;
    let mut block = [0u8; 512];
    loop {
        if used >= SPARSE_MAP_LIMIT {
            return Err(invalid(format!(
                "its sparse map is longer than {SPARSE_MAP_LIMIT} bytes"
            )));
        }
        content.read_exact(&mut block).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid("its data ends inside its sparse map".to_owned())
            } else {
                e
            }
        })?;
        used += 512;
        for &b in &block {
            if wanted.is_some_and(|w| numbers.len() as u64 == w * 2) {
                break;
            }
            if b == b'\n' {
                let n = std::str::from_utf8(&digits)
                    .ok()
                    .filter(|d| !d.is_empty())
                    .and_then(|d| d.parse::<u64>().ok())
                    .ok_or_else(|| invalid("its sparse map holds something other than numbers".to_owned()))?;
                digits.clear();
                match wanted {
                    None => {
                        // each extent takes at least four bytes of map ("0\n0\n")
                        if n > SPARSE_MAP_LIMIT / 4 {
                            return Err(invalid(format!("its sparse map claims {n} extents")));
                        }
                        wanted = Some(n);
                    }
                    Some(_) => numbers.push(n),
                }
            } else if b.is_ascii_digit() && digits.len() < 20 {
                digits.push(b);
            } else {
                return Err(invalid(
                    "its sparse map holds something other than numbers".to_owned(),
                ));
            }
        }
        if wanted.is_some_and(|w| numbers.len() as u64 == w * 2) {
            let extents = numbers.chunks(2).map(|p| (p[0], p[1])).collect();
            return Ok((extents, used));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_must_be_ordered_inside_and_as_long_as_the_data() {
        assert!(check(&[(0, 5), (10, 5), (20, 0)], 20, 10).is_ok());
        assert!(check(&[(10, 5), (0, 5)], 20, 10).is_err());
        assert!(check(&[(0, 5), (3, 5)], 20, 10).is_err());
        assert!(check(&[(0, 5), (18, 5)], 20, 10).is_err());
        assert!(check(&[(0, 5)], 20, 10).unwrap_err().contains("holds 10"));
        assert!(check(&[(u64::MAX, 5)], u64::MAX, 5).is_err());
    }

    #[test]
    fn sizes_are_bounded_and_only_files_are_sparse() {
        let mut file = tar::Header::new_ustar();
        file.set_entry_type(tar::EntryType::Regular);
        let records = |size| SparseRecords {
            version: Some((1, 0)),
            size: Some(size),
            ..SparseRecords::default()
        };
        assert!(Sparse::of(&records(MAX_SPARSE_SIZE), &file, 0).unwrap().is_some());
        let e = Sparse::of(&records(MAX_SPARSE_SIZE + 1), &file, 0).unwrap_err();
        assert!(e.contains("more than the limit"), "{e}");
        let mut dir = tar::Header::new_ustar();
        dir.set_entry_type(tar::EntryType::Directory);
        assert!(Sparse::of(&records(10), &dir, 0)
            .unwrap_err()
            .contains("Directory"));
        assert!(Sparse::of(&SparseRecords::default(), &dir, 0).unwrap().is_none());
        let mut gnu = tar::Header::new_gnu();
        gnu.set_entry_type(tar::EntryType::GNUSparse);
        gnu.as_gnu_mut().unwrap().set_real_size(MAX_SPARSE_SIZE + 1);
        assert!(Sparse::of(&SparseRecords::default(), &gnu, 0).is_err());
    }

    fn padded(text: &str) -> Vec<u8> {
        let mut v = text.as_bytes().to_vec();
        v.resize(text.len().div_ceil(512) * 512, 0);
        v
    }

    #[test]
    fn reads_the_map_that_opens_the_data() {
        let mut data = padded("2\n0\n3\n100\n2\n");
        data.extend_from_slice(b"abcde");
        let mut r = &data[..];
        let (extents, used) = read_map(&mut r).unwrap();
        assert_eq!(extents, [(0, 3), (100, 2)]);
        assert_eq!(used, 512);
        assert_eq!(r, b"abcde");
        assert!(read_map(&mut &padded("1\nx\n0\n")[..]).is_err());
        assert!(read_map(&mut &padded("2\n0\n")[..]).is_err());
        assert!(read_map(&mut &padded("99999999999\n")[..])
            .unwrap_err()
            .to_string()
            .contains("claims"));
    }
}
