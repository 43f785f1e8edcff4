//! Layer decompression chosen by the stream's first bytes, not by media type.
//!
//! Sniffing is what works in practice: `BuildKit` labels zstd layers with the Docker media type
//! `…rootfs.diff.tar.zstd`, which no spec defines, and a media-type switch sends them to gzip
//! (registry-image-resource issue #405). zstd starts with `28 b5 2f fd`, gzip with `1f 8b`;
//! anything else is read as a plain tar.

mod member;

use std::io::{self, BufRead, Cursor, Read};

use member::MemberBody;

/// The compression of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (RFC 1952).
    Gzip,
    /// zstd (RFC 8878).
    Zstd,
    /// An uncompressed tar.
    None,
}

impl Compression {
    /// Reads a stream's magic bytes.
    #[must_use]
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else {
            Self::None
        }
    }
}

/// Wraps `reader` in the decompressor its first bytes call for. The decompressors read
/// `reader`'s own buffers (no copy in between); a plain `Read` needs a `BufReader` around it.
///
/// # Errors
/// When the first bytes cannot be read, or the zstd decoder cannot start.
pub fn decompress<'a, R: BufRead + 'a>(mut reader: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    // the magic bytes may arrive split over reads: collect them, then put them back in front
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let kind = Compression::sniff(&head[..got]);
    let input = Cursor::new(head[..got].to_vec()).chain(reader);
    let decoder: Box<dyn Read + 'a> = match kind {
        Compression::Gzip => Box::new(Gzip::Header(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::None => Box::new(input),
    };
    Ok((kind, decoder))
}

/// The longest file name or comment a gzip header may carry (they are skipped).
pub const GZIP_FIELD_LIMIT: u64 = 64 * 1024;

/// gzip (RFC 1952) inflated member after member (`pigz` and some builders write several);
/// this reads the headers, [`MemberBody`] the deflate data and the trailers.
enum Gzip<R> {
    /// Before a member header (or at the end).
    Header(R),
    /// Inside a member's deflate stream.
    Body(MemberBody<R>),
    /// After the last member.
    Done,
}

impl<R: BufRead> Gzip<R> {
    /// Reads a member header; `Ok(false)` at a clean end of input.
    fn start_member(input: &mut R, first: bool) -> io::Result<bool> {
        if input.fill_buf()?.is_empty() && !first {
            return Ok(false);
        }
        let mut head = [0u8; 10];
        input.read_exact(&mut head)?;
        if head[..3] != [0x1f, 0x8b, 8] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a gzip member (bad magic or method)",
            ));
        }
        let flags = head[3];
        if flags & 0x04 != 0 {
            let mut len = [0u8; 2];
            input.read_exact(&mut len)?;
            io::copy(
                &mut input.by_ref().take(u64::from(u16::from_le_bytes(len))),
                &mut io::sink(),
            )?;
        }
        // FNAME, FCOMMENT: NUL-terminated, skipped, at most GZIP_FIELD_LIMIT bytes each
        for flag in [0x08, 0x10] {
            if flags & flag != 0 {
                let mut field = Vec::new();
                input.by_ref().take(GZIP_FIELD_LIMIT).read_until(0, &mut field)?;
                if field.last() != Some(&0) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a gzip header's name or comment runs past {GZIP_FIELD_LIMIT} bytes, or past the end"),
                    ));
                }
            }
        }
        if flags & 0x02 != 0 {
            input.read_exact(&mut [0u8; 2])?;
        }
        Ok(true)
    }
}

impl<R: BufRead> Read for Gzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match std::mem::replace(self, Self::Done) {
                Self::Done => return Ok(0),
                Self::Header(mut input) => {
                    if !Self::start_member(&mut input, true)? {
                        return Ok(0);
                    }
                    *self = Self::Body(MemberBody::new(input));
                }
                Self::Body(mut decoder) => {
                    let n = decoder.read(buf)?;
                    if n > 0 || buf.is_empty() {
                        *self = Self::Body(decoder);
                        return Ok(n);
                    }
                    // member done, trailer checked: look for another
                    let mut input = decoder.into_inner();
                    if !Self::start_member(&mut input, false)? {
                        return Ok(0);
                    }
                    *self = Self::Body(MemberBody::new(input));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(data: &[u8], compressed: &[u8], kind: Compression) {
        let (k, mut r) = decompress(compressed).unwrap();
        assert_eq!(k, kind);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn sniffs_gzip_zstd_and_plain() {
        let data = b"some tar bytes, or something like them".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        roundtrip(&data, &gz.finish().unwrap(), Compression::Gzip);
        roundtrip(&data, &zstd::encode_all(&data[..], 3).unwrap(), Compression::Zstd);
        roundtrip(&data, &data, Compression::None);
        roundtrip(b"", b"", Compression::None);
    }

    #[test]
    fn magic_bytes_split_over_reads() {
        let data = b"tar bytes".repeat(1000);
        let gz = {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&data).unwrap();
            gz.finish().unwrap()
        };
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        for (compressed, kind) in [(gz, Compression::Gzip), (zst, Compression::Zstd)] {
            // one byte per read, as a stream cut into tiny chunks delivers them
            let (k, mut r) = decompress(io::BufReader::with_capacity(1, &compressed[..])).unwrap();
            assert_eq!(k, kind);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert!(out == data, "{kind:?}");
        }
    }

    #[test]
    fn gzip_members_and_header_fields() {
        let member = |data: &[u8], name: Option<&str>| {
            let mut b = flate2::GzBuilder::new().extra(vec![1, 2, 3]).comment("c");
            if let Some(n) = name {
                b = b.filename(n);
            }
            let mut gz = b.write(Vec::new(), flate2::Compression::fast());
            gz.write_all(data).unwrap();
            gz.finish().unwrap()
        };
        let mut two = member(b"first half, ", Some("layer.tar"));
        two.extend(member(b"second half", None));
        roundtrip(b"first half, second half", &two, Compression::Gzip);
        roundtrip(b"", &member(b"", None), Compression::Gzip);
        let (_, mut r) = decompress(&[0x1f, 0x8b, 9, 0, 0, 0, 0, 0, 0, 0][..]).unwrap();
        assert!(r.read_to_end(&mut Vec::new()).is_err(), "wrong method is refused");
    }
}
