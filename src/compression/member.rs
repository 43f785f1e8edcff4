//! The body of a gzip member (RFC 1952: deflate data, then CRC-32 and length), decoded
//! with Intel's ISA-L (`igzip`).
//!
//! Inflating gzip layers is the slowest stage of `in`, and it runs on one thread per layer.
//! ISA-L's hand-written x86-64 decoder inflates the benchmark layers at about 1.45 times
//! the speed of zlib-rs on this machine (690 against 470 MB/s of output), so it replaces
//! flate2 here; flate2 still compresses for `out`.
//!
//! This is the crate's only `unsafe` code: the calls into the C library, each with the
//! reason it is sound.
#![allow(unsafe_code)]

use std::io::{self, BufRead, Read};

use isal_sys::igzip_lib as ffi;

/// A gzip member's deflate stream decoded from a buffered reader, and its trailer
/// checked (ISA-L's PCLMUL CRC-32 costs next to nothing). The reader is left exactly after
/// the trailer, where another member may start.
pub struct MemberBody<R> {
    input: R,
    /// Boxed: the state holds the 32 KiB window and the decoding tables, about 30 KiB more.
    state: Box<ffi::inflate_state>,
    finished: bool,
}

impl<R: BufRead> MemberBody<R> {
    /// Starts decoding at the reader's position, just after a member's header.
    pub fn new(input: R) -> Self {
        // SAFETY: `inflate_state` is a C struct of integers, byte arrays and raw pointers,
        // for all of which zero is a valid value; `isal_inflate_init` then sets it up for a
        // stream with the default window.
        let mut state = Box::new(unsafe { std::mem::zeroed::<ffi::inflate_state>() });
        // SAFETY: `state` points at a live, writable `inflate_state`.
        unsafe { ffi::isal_inflate_init(&raw mut *state) };
        // no header (the caller read it), then deflate data and a trailer to verify
        state.crc_flag = ffi::ISAL_GZIP_NO_HDR_VER;
        Self {
            input,
            state,
            finished: false,
        }
    }

    /// The reader, positioned after the trailer once [`Read::read`] returned 0.
    pub fn into_inner(self) -> R {
        self.input
    }
}

impl<R: BufRead> Read for MemberBody<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.finished {
            return Ok(0);
        }
        loop {
            let input = self.input.fill_buf()?;
            let at_end = input.is_empty();
            let state = &mut *self.state;
            // ISA-L counts in u32: hand it at most that much of each buffer
            let in_len = input.len().min(u32::MAX as usize);
            let out_len = out.len().min(u32::MAX as usize);
            state.next_in = input.as_ptr().cast_mut();
            state.avail_in = u32::try_from(in_len).unwrap_or(u32::MAX);
            state.next_out = out.as_mut_ptr();
            state.avail_out = u32::try_from(out_len).unwrap_or(u32::MAX);
            // SAFETY: `next_in`/`avail_in` describe the first `in_len` bytes of `input`,
            // which ISA-L only reads; `next_out`/`avail_out` describe the first `out_len`
            // bytes of `out`, which it only writes. Both borrows outlive the call, and the
            // pointers are cleared below before the buffers can go away. The state was
            // initialised by `isal_inflate_init` and is only ever touched by these calls.
            let code = unsafe { ffi::isal_inflate(state) };
            // On some corrupt input ISA-L hands back more input than this call gave it (it
            // rewinds into bytes of an earlier call): no count may go below zero.
            let consumed = in_len.checked_sub(state.avail_in as usize);
            let produced = out_len.checked_sub(state.avail_out as usize);
            state.next_in = std::ptr::null_mut();
            state.next_out = std::ptr::null_mut();
            let (Some(consumed), Some(produced)) = (consumed, produced) else {
                return Err(if PROGRESS.contains(&code) {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "corrupt deflate data (the decoder rewound its input)",
                    )
                } else {
                    decode_error(code)
                });
            };
            let done = state.block_state == ffi::isal_block_state_ISAL_BLOCK_FINISH;
            self.input.consume(consumed);
            if !PROGRESS.contains(&code) {
                return Err(decode_error(code));
            }
            if done {
                self.finished = true;
                return Ok(produced);
            }
            if produced > 0 {
                return Ok(produced);
            }
            if at_end {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the gzip stream ends inside a member",
                ));
            }
            if consumed == 0 {
                return Err(io::Error::other("the deflate decoder made no progress"));
            }
        }
    }
}

// ISA-L's header defines its success codes unsigned and its failures signed.
/// The codes of a call that went well: decoded, needs more input, or filled the output.
#[allow(clippy::cast_possible_wrap)]
const PROGRESS: [i32; 3] = [
    ffi::ISAL_DECOMP_OK as i32,
    ffi::ISAL_END_INPUT as i32,
    ffi::ISAL_OUT_OVERFLOW as i32,
];
/// The code of a stream that wants a preset dictionary.
#[allow(clippy::cast_possible_wrap)]
const NEED_DICT: i32 = ffi::ISAL_NEED_DICT as i32;
/// The code of a member whose trailer does not match what was decoded.
const INCORRECT_CHECKSUM: i32 = ffi::ISAL_INCORRECT_CHECKSUM;

/// What an ISA-L error code means for the stream.
fn decode_error(code: i32) -> io::Error {
    let what = match code {
        ffi::ISAL_INVALID_BLOCK => "an invalid deflate block",
        ffi::ISAL_INVALID_SYMBOL => "an invalid deflate symbol",
        ffi::ISAL_INVALID_LOOKBACK => "a back-reference beyond the start of the stream",
        NEED_DICT => "a preset dictionary, which layers never have",
        INCORRECT_CHECKSUM => "a CRC-32 or length in the member trailer that does not match",
        _ => "data the deflate decoder rejects",
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt gzip data: {what} (ISA-L code {code})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A gzip member without its 10-byte header (flate2 writes no optional fields).
    fn body(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        enc.write_all(data).unwrap();
        enc.finish().unwrap().split_off(10)
    }

    #[test]
    fn decodes_and_leaves_the_reader_after_the_trailer() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for capacity in [7, 64 * 1024] {
            let mut stream = body(&data);
            stream.extend_from_slice(b"NEXT");
            let mut member = MemberBody::new(io::BufReader::with_capacity(capacity, &stream[..]));
            let mut out = Vec::new();
            let mut buf = [0u8; 1000];
            loop {
                let n = member.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert!(
                out == data,
                "{capacity}: {} bytes decoded, {} expected",
                out.len(),
                data.len()
            );
            let mut rest = Vec::new();
            member.into_inner().read_to_end(&mut rest).unwrap();
            assert_eq!(rest, b"NEXT", "{capacity}");
        }
    }

    #[test]
    fn truncated_corrupt_and_mismatched_members_are_errors() {
        let data = b"abcdefgh".repeat(10_000);
        let stream = body(&data);
        let err = MemberBody::new(&stream[..stream.len() / 2])
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        let err = MemberBody::new(&[0xff, 0xff, 0xff, 0xff][..])
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let mut wrong_crc = stream.clone();
        let at = wrong_crc.len() - 8;
        wrong_crc[at] ^= 1;
        let err = MemberBody::new(&wrong_crc[..])
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("CRC-32"), "{err}");
    }
}
