//! Entry points for fuzzing: each takes arbitrary bytes, runs one parser the way the steps
//! do, and must return (an error is fine) without a panic, a hang or unbounded memory.
//! `tests/fuzz.rs` replays the committed corpus (`tests/fuzz/corpus/`) and mutations of it
//! on stable Rust; `tests/fuzz/` holds the same entry points as coverage-guided `cargo fuzz`
//! targets (nightly Rust, libFuzzer), which share that corpus.

use std::io::Read;
use std::path::Path;

use crate::compression::decompress;
use crate::rootfs::{Rootfs, Turn};
use crate::source::{CheckRequest, InRequest, OutRequest};

/// The most a target reads out of a decompressor: a small input cannot make it spin on an
/// endless stream for long.
pub const OUTPUT_LIMIT: u64 = 64 * 1024 * 1024;

/// A request on stdin, parsed as each step parses it, then validated.
pub fn source(data: &[u8]) {
    let _ = crate::cli::read_request::<CheckRequest>("check", data).map(|r| r.source.validate());
    let _ = crate::cli::read_request::<InRequest>("in", data).map(|r| r.source.validate());
    let _ = crate::cli::read_request::<OutRequest>("out", data).map(|r| r.source.validate());
}

/// A `WWW-Authenticate` header value.
pub fn challenge(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::transport::fuzz_challenge(text);
    }
}

/// A layer blob through the decompressor its first bytes call for.
pub fn decompressor(data: &[u8]) {
    if let Ok((_, reader)) = decompress(data) {
        let _ = std::io::copy(&mut reader.take(OUTPUT_LIMIT), &mut std::io::sink());
    }
}

/// A layer (a tar, or compressed) applied to a fresh rootfs under `scratch`, which must be
/// an empty directory; nothing may appear outside `scratch/rootfs`.
pub fn layer(data: &[u8], scratch: &Path) {
    let Ok(rootfs) = Rootfs::create(&scratch.join("rootfs")) else {
        return;
    };
    if let Ok((_, reader)) = decompress(data) {
        let _ = rootfs.apply_layer_in_turn(reader.take(OUTPUT_LIMIT), &Turn::given());
    }
}
