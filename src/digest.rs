//! `Digest`: a validated content address (`sha256:<64 hex>` or `sha512:<128 hex>`), and
//! the hashing that checks bytes against one.
//!
//! Follows the OCI image spec's descriptor digest grammar; only the registered algorithms
//! `sha256` and `sha512` are accepted, with lowercase hex of the right length, and content
//! is always checked with the algorithm its digest names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256, Sha512};

/// A content digest such as `sha256:e3b0c442…`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("digest {value:?} has no algorithm prefix (expected sha256:<64 hex digits>)")]
    MissingAlgorithm {
        /// The rejected text.
        value: String,
    },
    /// An algorithm other than sha256/sha512.
    #[error("digest {value:?} uses unsupported algorithm {algorithm:?} (expected sha256 or sha512)")]
    UnsupportedAlgorithm {
        /// The rejected text.
        value: String,
        /// Its algorithm part.
        algorithm: String,
    },
    /// Wrong length or characters after the algorithm.
    #[error("digest {value:?} must have {expected} lowercase hex digits after {algorithm:?}")]
    BadHex {
        /// The rejected text.
        value: String,
        /// Its algorithm part.
        algorithm: String,
        /// The number of hex digits that algorithm needs.
        expected: usize,
    },
}

/// A registered digest algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256, the canonical one: what registries name content by.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// A hasher of this algorithm.
    #[must_use]
    pub fn hasher(self) -> Hasher {
        match self {
            Self::Sha256 => Hasher::Sha256(Sha256::new()),
            Self::Sha512 => Hasher::Sha512(Box::default()),
        }
    }

    /// The digest of `bytes` with this algorithm.
    #[must_use]
    pub fn digest(self, bytes: &[u8]) -> Digest {
        let mut hasher = self.hasher();
        hasher.update(bytes);
        hasher.finish()
    }
}

/// A running hash of one [`Algorithm`].
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256.
    Sha256(Sha256),
    /// SHA-512 (boxed: it is twice the size).
    Sha512(Box<Sha512>),
}

impl Hasher {
    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything added.
    #[must_use]
    pub fn finish(self) -> Digest {
        match self {
            Self::Sha256(h) => Digest(format!("sha256:{}", hex::encode(h.finalize()))),
            Self::Sha512(h) => Digest(format!("sha512:{}", hex::encode(h.finalize()))),
        }
    }
}

impl Digest {
    /// The sha256 digest of `bytes`.
    #[must_use]
    pub fn sha256(bytes: &[u8]) -> Self {
        Algorithm::Sha256.digest(bytes)
    }

    /// The algorithm this digest names.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        if self.0.starts_with("sha512:") {
            Algorithm::Sha512
        } else {
            Algorithm::Sha256
        }
    }

    /// Whether `bytes` hash to this digest, with its own algorithm.
    #[must_use]
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.algorithm().digest(bytes) == *self
    }

    /// The digest of `bytes` with this digest's algorithm (to name what was found instead).
    #[must_use]
    pub fn of_same_kind(&self, bytes: &[u8]) -> Self {
        self.algorithm().digest(bytes)
    }

    /// The whole digest, `algorithm:hex`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part after the colon.
    #[must_use]
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, h)| h)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let Some((algorithm, hex)) = value.split_once(':') else {
            return Err(DigestError::MissingAlgorithm { value: value.into() });
        };
        let expected = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            _ => {
                return Err(DigestError::UnsupportedAlgorithm {
                    value: value.into(),
                    algorithm: algorithm.into(),
                })
            }
        };
        let lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if hex.len() != expected || !hex.chars().all(lower_hex) {
            return Err(DigestError::BadHex {
                value: value.into(),
                algorithm: algorithm.into(),
                expected,
            });
        }
        Ok(Self(value.to_owned()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A blob's bytes did not match its descriptor.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// More or fewer bytes than the descriptor's size.
    #[error("blob {expected} should be {size} bytes, got {found}")]
    Size {
        /// The digest the blob was fetched by.
        expected: Digest,
        /// The descriptor's size.
        size: u64,
        /// Bytes seen.
        found: u64,
    },
    /// The bytes hash to another digest.
    #[error("blob {expected} is corrupt: its content hashes to {found}")]
    Digest {
        /// The digest the blob was fetched by.
        expected: Digest,
        /// The digest of the bytes seen.
        found: Digest,
    },
}

/// Checks `seen` bytes hashed into `hasher` (made by `expected.algorithm()`) against a
/// descriptor's digest and size.
///
/// # Errors
/// The size or the hash differs.
pub fn verify(expected: &Digest, size: u64, seen: u64, hasher: Hasher) -> Result<(), VerifyError> {
    if seen != size {
        return Err(VerifyError::Size {
            expected: expected.clone(),
            size,
            found: seen,
        });
    }
    let found = hasher.finish();
    if &found != expected {
        return Err(VerifyError::Digest {
            expected: expected.clone(),
            found,
        });
    }
    Ok(())
}

/// Hashes what is read through it; reading past `limit` bytes is an error at once, so a
/// blob longer than its descriptor cannot run on.
pub struct Hashing<R> {
    inner: R,
    hasher: Hasher,
    seen: u64,
    limit: u64,
}

impl<R: std::io::Read> Hashing<R> {
    /// Wraps `inner`, which should produce `limit` bytes hashing with `algorithm`.
    pub fn new(inner: R, limit: u64, algorithm: Algorithm) -> Self {
        Self {
            inner,
            hasher: algorithm.hasher(),
            seen: 0,
            limit,
        }
    }

    /// Checks what was read against `expected` (and the limit as the size).
    ///
    /// # Errors
    /// The size or the hash differs.
    pub fn verify(self, expected: &Digest) -> Result<(), VerifyError> {
        verify(expected, self.limit, self.seen, self.hasher)
    }
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if self.seen > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "blob is longer than its descriptor says",
            ));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashing_reader_checks_size_and_content() {
        use std::io::Read;
        let data = b"hello world";
        let good = Digest::sha256(data);
        let mut r = Hashing::new(&data[..], 11, Algorithm::Sha256);
        r.read_to_end(&mut Vec::new()).unwrap();
        assert!(r.verify(&good).is_ok());
        let mut r = Hashing::new(&data[..], 11, Algorithm::Sha256);
        r.read_to_end(&mut Vec::new()).unwrap();
        assert!(matches!(
            r.verify(&Digest::sha256(b"x")),
            Err(VerifyError::Digest { .. })
        ));
        let mut r = Hashing::new(&data[..], 12, Algorithm::Sha256);
        r.read_to_end(&mut Vec::new()).unwrap();
        assert!(matches!(
            r.verify(&good),
            Err(VerifyError::Size { found: 11, .. })
        ));
        assert!(Hashing::new(&data[..], 4, Algorithm::Sha256)
            .read_to_end(&mut Vec::new())
            .is_err());
    }

    #[test]
    fn sha512_digests_are_checked_with_sha512() {
        let data = b"hello world";
        let d = Algorithm::Sha512.digest(data);
        assert!(d.as_str().starts_with("sha512:"));
        assert_eq!(d.hex().len(), 128);
        assert_eq!(d.as_str().parse::<Digest>().unwrap(), d);
        assert!(d.matches(data));
        assert!(!d.matches(b"hello worle"));
        assert!(!Digest::sha256(data).matches(b"x"));
        assert_eq!(d.of_same_kind(b"x").algorithm(), Algorithm::Sha512);
        // The well-known SHA-512 of "abc".
        assert_eq!(
            Algorithm::Sha512.digest(b"abc").hex(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(Digest::sha256(b"").as_str(), EMPTY);
        assert_eq!(Digest::sha256(b"").hex().len(), 64);
    }

    #[test]
    fn parses_valid_and_rejects_invalid() {
        assert_eq!(EMPTY.parse::<Digest>().unwrap().as_str(), EMPTY);
        assert!(matches!(
            "deadbeef".parse::<Digest>(),
            Err(DigestError::MissingAlgorithm { .. })
        ));
        assert!(matches!(
            "md5:abc".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            "sha256:abc".parse::<Digest>(),
            Err(DigestError::BadHex { .. })
        ));
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        assert!(matches!(upper.parse::<Digest>(), Err(DigestError::BadHex { .. })));
    }
}
