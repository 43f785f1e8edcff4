//! Layer decompression chosen by the stream's first bytes, not by media type.
//!
//! Sniffing is what works in practice: `BuildKit` labels zstd layers with the Docker media type
//! `…rootfs.diff.tar.zstd`, which no spec defines, and a media-type switch sends them to gzip
//! (registry-image-resource issue #405). zstd starts with `28 b5 2f fd`, gzip with `1f 8b`;
//! anything else is read as a plain tar.

use std::io::{self, BufRead, BufReader, Read};

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

/// Wraps `reader` in the decompressor its first bytes call for.
///
/// # Errors
/// When the first bytes cannot be read, or the zstd decoder cannot start.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let kind = Compression::sniff(buffered.fill_buf()?);
    let decoder: Box<dyn Read + 'a> = match kind {
        // MultiGzDecoder: `pigz` and some builders write several gzip members per layer.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        Compression::None => Box::new(buffered),
    };
    Ok((kind, decoder))
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
}
