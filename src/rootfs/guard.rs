//! A guard on a tar stream's metadata, between the decompressor and the tar reader.
//!
//! The tar reader keeps a PAX extended header, or a GNU long name or link name, in memory
//! whole before it looks at the entry it describes; a layer could name a 512 MiB one. This
//! reader follows the stream block by block as it passes through (headers, GNU sparse
//! extension blocks, data padded to 512 bytes, the sizes a PAX `size` record sets) and
//! fails before such a member's bytes are read, so memory stays bounded whatever a layer
//! declares. It changes no byte.
//!
//! It also reads each PAX extended header by its record lengths (`pax`) and hands the
//! result to the unpacker, beside the entry the tar reader yields for the member it
//! describes: the tar reader offers the records only split at newlines, which cuts binary
//! extended attribute values apart.

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

use super::pax::{self, Extended};

/// The largest PAX extended header (`x`, `g`) or GNU long name or link (`L`, `K`) a layer
/// may carry: real ones are a few hundred bytes.
pub const TAR_METADATA_LIMIT: u64 = 1024 * 1024;

const BLOCK: usize = 512;

enum State {
    /// Collecting a header block (`filled` bytes so far).
    Header,
    /// Old GNU sparse extension blocks follow the header.
    SparseExtension,
    /// Data of the current member, padding included; `pax` collects a PAX header's data.
    Data { remaining: u64, pax: Option<Vec<u8>> },
    /// After the end-of-archive block: anything passes.
    Tail,
}

/// The extended header of the member whose header passed last (`None` when it had none).
pub(super) type Current = Rc<RefCell<Option<Extended>>>;

/// Passes a tar stream through unchanged, refusing metadata members over
/// [`TAR_METADATA_LIMIT`] before their bytes arrive.
pub(super) struct TarGuard<R> {
    inner: R,
    state: State,
    block: Vec<u8>,
    /// A PAX `size` record for the next member.
    next_size: Option<u64>,
    /// Data of an old GNU sparse member, which follows its extension blocks.
    pending_sparse: u64,
    /// Old GNU sparse extension blocks read for the current member.
    sparse_blocks: u64,
    /// The size of the PAX extended header being collected.
    pax_len: u64,
    /// A PAX extended header read, for the next member.
    pending: Option<Extended>,
    current: Current,
}

impl<R: Read> TarGuard<R> {
    /// Guards `inner`; the second value shows the current member's extended header.
    pub(super) fn new(inner: R) -> (Self, Current) {
        let current = Current::default();
        let guard = Self {
            inner,
            state: State::Header,
            block: Vec::with_capacity(BLOCK),
            next_size: None,
            pending_sparse: 0,
            sparse_blocks: 0,
            pax_len: 0,
            pending: None,
            current: current.clone(),
        };
        (guard, current)
    }

    /// Follows `bytes`, which just passed through.
    fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Tail => return Ok(()),
                State::Header | State::SparseExtension => {
                    let take = (BLOCK - self.block.len()).min(bytes.len());
                    self.block.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.block.len() == BLOCK {
                        let block = std::mem::take(&mut self.block);
                        self.block_done(&block)?;
                    }
                }
                State::Data { remaining, pax } => {
                    let take = usize::try_from(*remaining).unwrap_or(usize::MAX).min(bytes.len());
                    if let Some(pax) = pax {
                        pax.extend_from_slice(&bytes[..take]);
                    }
                    *remaining -= take as u64;
                    bytes = &bytes[take..];
                    if *remaining == 0 {
                        if let State::Data { pax: Some(pax), .. } =
                            std::mem::replace(&mut self.state, State::Header)
                        {
                            self.extended_header(&pax)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A PAX extended header's data, complete (`size` is the member's, padding excluded).
    fn extended_header(&mut self, padded: &[u8]) -> io::Result<()> {
        let size = usize::try_from(self.pax_len)
            .unwrap_or(usize::MAX)
            .min(padded.len());
        let ext = pax::parse(&padded[..size]).map_err(|e| invalid(&format!("a PAX extended header: {e}")))?;
        self.next_size = ext.size;
        self.pending = Some(ext);
        Ok(())
    }

    fn block_done(&mut self, block: &[u8]) -> io::Result<()> {
        if matches!(self.state, State::SparseExtension) {
            self.sparse_blocks += 1;
            if self.sparse_blocks * BLOCK as u64 > TAR_METADATA_LIMIT {
                return Err(invalid(&format!(
                    "a GNU sparse map of more than {TAR_METADATA_LIMIT} bytes"
                )));
            }
            // each extension block says at byte 504 whether another follows (exactly 1)
            if block[504] != 1 {
                self.state = match std::mem::take(&mut self.pending_sparse) {
                    0 => State::Header,
                    remaining => State::Data { remaining, pax: None },
                };
            }
            return Ok(());
        }
        if block.iter().all(|&b| b == 0) {
            self.state = State::Tail;
            return Ok(());
        }
        let kind = block[156];
        let extension = matches!(kind, b'x' | b'L' | b'K');
        // the tar reader treats these as extensions only in ustar and GNU headers
        let magic = &block[257..265];
        if (extension || kind == b'S') && magic != b"ustar\x0000" && magic != b"ustar  \0" {
            return Err(invalid(&format!(
                "a tar member of type {:?} in a header that is neither ustar nor GNU",
                char::from(kind)
            )));
        }
        if !extension {
            *self.current.borrow_mut() = self.pending.take();
        }
        let field = parse_size(&block[124..136])
            .ok_or_else(|| invalid("a tar header has a size field that is not a number"))?;
        let size = match kind {
            // the size record of a PAX header applies to the member after it and its
            // other extensions; a global header is that member for the tar reader, which
            // sizes it by its own field
            b'x' | b'L' | b'K' => field,
            b'g' => {
                self.next_size = None;
                field
            }
            _ => self.next_size.take().unwrap_or(field),
        };
        if matches!(kind, b'x' | b'g' | b'L' | b'K') && size > TAR_METADATA_LIMIT {
            return Err(invalid(&format!(
                "a tar {} of {size} bytes (the limit is {TAR_METADATA_LIMIT})",
                if matches!(kind, b'x' | b'g') {
                    "PAX extended header"
                } else {
                    "GNU long name"
                }
            )));
        }
        // as the tar reader does: every member's data is its size, padded to a block
        let padded = size
            .div_ceil(BLOCK as u64)
            .checked_mul(BLOCK as u64)
            .ok_or_else(|| invalid("a tar member's size overflows"))?;
        let pax = (kind == b'x').then(Vec::new);
        if kind == b'x' {
            self.pax_len = size;
        }
        // exactly 1 means "extension blocks follow", as the tar reader reads it
        if kind == b'S' && block[482] == 1 {
            self.sparse_blocks = 0;
            self.state = State::SparseExtension;
            // its data follows the extension blocks; remember it for when they end
            self.pending_sparse = padded;
            return Ok(());
        }
        self.state = if padded == 0 {
            State::Header
        } else {
            State::Data {
                remaining: padded,
                pax,
            }
        };
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.follow(&buf[..n])?;
        Ok(n)
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// A tar size field: octal digits (padded with spaces or NULs), or base-256 when its first
/// byte has the high bit set.
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(tar: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        // small reads, so blocks arrive in pieces
        let (mut guard, _) = TarGuard::new(io::BufReader::with_capacity(7, tar));
        let mut buf = [0u8; 13];
        loop {
            let n = guard.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    #[test]
    fn passes_real_tars_unchanged_and_stays_in_step() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut header(tar::EntryType::Regular, 3), "a", &b"abc"[..])
            .unwrap();
        // a long name (GNU), a PAX header with a size record, a big file
        let long = "d/".repeat(200) + "f";
        let mut h = tar::Header::new_gnu();
        h.set_size(700);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &vec![7u8; 700][..]).unwrap();
        b.append_pax_extensions([("size", &b"5"[..]), ("path", &b"p"[..])])
            .unwrap();
        let mut h = header(tar::EntryType::Regular, 5);
        h.set_size(5);
        b.append_data(&mut h, "q", &b"12345"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        assert_eq!(through(&tar).unwrap(), tar);
        // and the tar crate reads through the guard what it reads without
        let mut names = Vec::new();
        for e in tar::Archive::new(TarGuard::new(&tar[..]).0).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        assert_eq!(names, ["a", long.as_str(), "p"]);
    }

    #[test]
    fn refuses_oversized_metadata_before_reading_it() {
        for kind in [
            tar::EntryType::XHeader,
            tar::EntryType::GNULongName,
            tar::EntryType::GNULongLink,
        ] {
            let h = header(kind, 512 * 1024 * 1024);
            let e = through(h.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("the limit is 1048576"), "{e}");
        }
        assert!(through(header(tar::EntryType::XHeader, 1000).as_bytes()).is_ok());
        // a regular file may be any size
        assert!(through(header(tar::EntryType::Regular, 1 << 40).as_bytes()).is_ok());
    }

    /// A PAX header, then a global header, then a file: the tar reader gives the PAX
    /// records to the global header, and sizes the file by its own field.
    #[test]
    fn a_global_header_takes_the_pax_records_before_it() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"1024"[..])]).unwrap();
        let mut g = header(tar::EntryType::XGlobalHeader, 0);
        b.append_data(&mut g, "pax_global_header", &b""[..]).unwrap();
        let mut f = header(tar::EntryType::Regular, 3);
        b.append_data(&mut f, "after", &b"abc"[..]).unwrap();
        // what the guard would take as the file's data if it kept the PAX size: a header
        // of an extended header too large to hold
        let big = header(tar::EntryType::XHeader, 512 * 1024 * 1024);
        let mut tar = b.into_inner().unwrap();
        tar.truncate(tar.len() - 1024); // no end-of-archive blocks before it
        tar.extend_from_slice(big.as_bytes());
        let e = through(&tar).unwrap_err();
        assert!(e.to_string().contains("the limit is 1048576"), "{e}");
    }

    /// Byte 482 of an old GNU sparse header other than 1 means no extension blocks, to the
    /// tar reader and to the guard.
    #[test]
    fn sparse_extension_flags_mean_exactly_one() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(0);
        h.as_gnu_mut().unwrap().isextended[0] = 2;
        h.set_cksum();
        let mut tar = h.as_bytes().to_vec();
        tar.extend_from_slice(header(tar::EntryType::XHeader, 512 * 1024 * 1024).as_bytes());
        let e = through(&tar).unwrap_err();
        assert!(e.to_string().contains("the limit is 1048576"), "{e}");
    }

    #[test]
    fn parses_size_fields() {
        assert_eq!(parse_size(b"00000001750\0"), Some(1000));
        assert_eq!(parse_size(b"        1750"), Some(1000));
        assert_eq!(parse_size(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(parse_size(b"12x"), None);
    }
}
