//! What can go wrong with a repository beyond the transport: content that is not what was
//! asked for, or larger than any real one.

use std::time::Duration;

use oci_client::errors::OciErrorCode;
use reqwest::StatusCode;

use crate::retry::Retryable;
use crate::transport;

/// A failed registry exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request itself failed: status, auth, TLS, connection, retries.
    #[error(transparent)]
    Http(#[from] transport::Error),
    /// A manifest's bytes did not hash to the digest they were fetched by.
    #[error("manifest {url} has digest {found}, not the one asked for or pushed")]
    ManifestDigest {
        /// Request URL.
        url: String,
        /// Digest of the bytes received.
        found: String,
    },
    /// A config blob whose bytes do not hash to its digest.
    #[error("blob {url} hashes to {found}, not the requested digest")]
    BlobDigest {
        /// Request URL.
        url: String,
        /// Digest of the bytes received.
        found: String,
    },
    /// A config blob larger than any real one.
    #[error("blob {url} is larger than {limit} bytes")]
    BlobTooLarge {
        /// Request URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// A manifest larger than any real one; refusing it keeps memory bounded.
    #[error("manifest {url} is larger than {limit} bytes")]
    ManifestTooLarge {
        /// Request URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// An upload session without a `Location` to send the blob to.
    #[error("POST {url} opened an upload but gave no Location header")]
    NoLocation {
        /// Request URL.
        url: String,
    },
    /// A blob arriving slower than [`super::blob::MIN_BLOB_RATE`] (transient: it is resumed).
    #[error(
        "blob {url} arrived too slowly: {bytes} bytes in {waited:.0?} of waiting, under the floor of 1 KiB/s"
    )]
    BlobStalled {
        /// Request URL.
        url: String,
        /// Bytes received in the window.
        bytes: u64,
        /// Time spent waiting for them.
        waited: std::time::Duration,
    },
    /// A blob body that ended before its size (transient: it is resumed).
    #[error("blob {url} ended after {delivered} of {size} bytes")]
    BlobCut {
        /// Request URL.
        url: String,
        /// Bytes received.
        delivered: u64,
        /// Bytes the manifest names.
        size: u64,
    },
    /// A blob body longer than the manifest says.
    #[error("blob {url} is longer than the {size} bytes its descriptor names")]
    BlobTooLong {
        /// Request URL.
        url: String,
        /// Bytes the manifest names.
        size: u64,
    },
    /// A resumed download that does not start where it was asked to.
    #[error("blob {url} answered a request for the bytes from {from} on with another range")]
    BlobRange {
        /// Request URL.
        url: String,
        /// The first byte asked for.
        from: u64,
    },
    /// A tag list page that is not the JSON the spec describes.
    #[error("tag list {url} is not valid")]
    TagList {
        /// Request URL.
        url: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A tag list page larger than the limit.
    #[error("tag list page {url} is larger than {limit} bytes")]
    TagListTooLarge {
        /// Request URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// More tags or pages than the limits allow.
    #[error(
        "tag list of {repository} goes on past {} pages or {} tags",
        super::tags::MAX_TAG_PAGES,
        super::tags::MAX_TAGS
    )]
    TooManyTags {
        /// `registry/repository`.
        repository: String,
    },
    /// A `Link` to the next page on another host.
    #[error("tag list {url} links its next page to another host: {next}")]
    ForeignLink {
        /// Request URL.
        url: String,
        /// The link.
        next: String,
    },
}

impl Error {
    /// The HTTP status, if the failure was an HTTP answer.
    #[must_use]
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Http(e) => e.status(),
            _ => None,
        }
    }

    /// The manifest, blob or repository does not exist (404, `MANIFEST_UNKNOWN`,
    /// `NAME_UNKNOWN`, `NOT_FOUND`, `BLOB_UNKNOWN`).
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Http(e) if e.is_not_found())
    }

    /// The status and error codes of a failed answer.
    pub(crate) fn status_codes(&self) -> Option<(StatusCode, &[OciErrorCode])> {
        match self {
            Self::Http(transport::Error::Status { status, codes, .. }) => Some((*status, codes)),
            _ => None,
        }
    }
}

impl Retryable for Error {
    fn is_transient(&self) -> bool {
        match self {
            Self::Http(e) => e.is_transient(),
            Self::BlobCut { .. } | Self::BlobStalled { .. } => true,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http(e) => e.retry_after(),
            _ => None,
        }
    }

    fn gave_up(self, attempts: u32, elapsed: Duration, wanted: Option<Duration>) -> Self {
        match self {
            Self::Http(e) => Self::Http(e.gave_up(attempts, elapsed, wanted)),
            other => other,
        }
    }
}
