//! The paths a layer wrote (and their parents), which its whiteouts and opaque markers must
//! leave alone whatever the entry order.
//!
//! Each path is held as a 128-bit hash keyed at random for the process, not as the path:
//! a constant [`BYTES_PER_PATH`] whatever the names' lengths, so a layer of 300,000 entries
//! costs about 12 MiB rather than its names. Two paths of one layer that share a hash would
//! leave a lower path a whiteout names in place; with random keys that no layer can know,
//! the odds for a million paths are below 10⁻²⁶.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// About what one path costs: its 16-byte hash, the set's control byte, and the slack of a
/// table that doubles when it is seven-eighths full.
pub const BYTES_PER_PATH: usize = 40;

/// Paths, by keyed hash.
pub(super) struct Touched {
    /// One random `SipHash` key; the two halves of a path's hash come from inputs that start
    /// with different bytes, so they are as independent as the keyed function's outputs.
    key: RandomState,
    set: HashSet<u128, BuildHasherDefault<Spread>>,
}

impl Touched {
    pub(super) fn new() -> Self {
        Self {
            key: RandomState::new(),
            set: HashSet::default(),
        }
    }

    fn key(&self, path: &Path) -> u128 {
        let bytes = path.as_os_str().as_bytes();
        let half = |domain: u8| {
            let mut h = self.key.build_hasher();
            h.write_u8(domain);
            h.write(bytes);
            h.finish()
        };
        (u128::from(half(0)) << 64) | u128::from(half(1))
    }

    /// Adds `path`; `false` when it was there already.
    pub(super) fn insert(&mut self, path: &Path) -> bool {
        let key = self.key(path);
        self.set.insert(key)
    }

    pub(super) fn contains(&self, path: &Path) -> bool {
        self.set.contains(&self.key(path))
    }
}

/// The set's own hasher: its keys are already keyed hashes, so their low bits will do.
#[derive(Default)]
struct Spread(u64);

impl Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        // the low half, on purpose
        self.0 = (n & u128::from(u64::MAX)).try_into().unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_paths_by_their_bytes() {
        let mut t = Touched::new();
        assert!(t.insert(Path::new("a/b")));
        assert!(!t.insert(Path::new("a/b")));
        assert!(t.contains(Path::new("a/b")));
        assert!(!t.contains(Path::new("a")));
        assert!(!t.contains(Path::new("a/b/c")));
        let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9");
        t.insert(Path::new(latin1));
        assert!(t.contains(Path::new(latin1)));
        assert!(!t.contains(Path::new("caf\u{e9}")));
    }
}
