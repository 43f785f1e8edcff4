//! `Remote`: the origin repository, and the mirror to ask first when there is one.
//!
//! Every read that the steps make goes through here. With a mirror, each one (a tag's
//! digest, a manifest, a blob) is asked of the mirror first; a failure, or a tag or blob
//! the mirror lacks, is logged with its reason and the origin is asked. A blob the mirror
//! breaks off mid-way is resumed from the origin at the byte where it stopped, so the
//! reader sees one stream. Writes never go to the mirror.

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::reference::{Repository, Target};
use crate::registry::{self, Client};

/// A failed read, naming every registry asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The origin failed (no mirror, or not asked).
    #[error(transparent)]
    Origin(registry::Error),
    /// The mirror failed or lacked it, and then the origin failed too.
    #[error("mirror {mirror}: {mirror_failure}; then origin {origin}")]
    Both {
        /// The mirror's host.
        mirror: String,
        /// What the mirror said, its whole cause chain.
        mirror_failure: String,
        /// The origin's host.
        origin: String,
        /// The origin's failure.
        #[source]
        source: registry::Error,
    },
}

impl RemoteError {
    /// The origin said it does not exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Origin(e) | Self::Both { source: e, .. } => e.is_not_found(),
        }
    }
}

/// The origin, and the mirror to ask first.
#[derive(Debug)]
pub struct Remote {
    origin: Client,
    mirror: Option<Client>,
}

/// An error and its causes on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

impl Remote {
    pub(crate) fn new(origin: Client, mirror: Option<Client>) -> Self {
        Self { origin, mirror }
    }

    /// The origin repository: what files and messages name.
    #[must_use]
    pub fn repository(&self) -> &Repository {
        self.origin.repository()
    }

    /// The origin's client, for writes.
    #[must_use]
    pub fn origin(&self) -> &Client {
        &self.origin
    }

    /// Runs `op` on the mirror, then, if it failed or its answer is `missing`, on the origin.
    async fn read<'a, T, F, Fut>(
        &'a self,
        what: &str,
        missing: fn(&T) -> bool,
        op: F,
    ) -> Result<T, RemoteError>
    where
        F: Fn(&'a Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, registry::Error>>,
    {
        let Some(mirror) = &self.mirror else {
            return op(&self.origin).await.map_err(RemoteError::Origin);
        };
        let host = mirror.repository().registry();
        let failure = match op(mirror).await {
            Ok(found) if !missing(&found) => return Ok(found),
            Ok(_) => "not found".to_owned(),
            Err(e) => chain(&e),
        };
        tracing::info!(
            "{what} from mirror {host}: {failure}; asking the origin {}",
            self.origin.repository().registry()
        );
        op(&self.origin)
            .await
            .map_err(|source| self.both(host, failure, source))
    }

    /// The origin's failure after the mirror's.
    fn both(&self, mirror: &str, mirror_failure: String, source: registry::Error) -> RemoteError {
        RemoteError::Both {
            mirror: mirror.to_owned(),
            mirror_failure,
            origin: self.origin.repository().registry().to_owned(),
            source,
        }
    }

    /// The digest `target` currently names, or `None` when the registry does not know it.
    ///
    /// # Errors
    /// Failures other than "not found".
    pub async fn resolve_digest(&self, target: &Target) -> Result<Option<Digest>, RemoteError> {
        self.read(&format!("manifest {target}"), Option::is_none, |c| {
            c.resolve_digest(target)
        })
        .await
    }

    /// Every tag of the repository, in the registry's order (see [`Client::list_tags`]);
    /// a mirror that lists none is not believed, and the origin is asked.
    ///
    /// # Errors
    /// Failures at the origin (after the mirror's, if any); a missing repository is a
    /// not-found error.
    pub async fn list_tags(&self) -> Result<Vec<String>, RemoteError> {
        self.read("tag list", Vec::is_empty, Client::list_tags).await
    }

    /// The manifest bytes `target` names and their digest (see [`Client::fetch_manifest`]).
    ///
    /// # Errors
    /// Failures at the origin (after the mirror's, if any).
    pub async fn fetch_manifest(&self, target: &Target) -> Result<(Vec<u8>, Digest), RemoteError> {
        self.read(
            &format!("manifest {target}"),
            |_| false,
            |c| c.fetch_manifest(target),
        )
        .await
    }

    /// A small blob, whole and verified (see [`Client::fetch_blob`]).
    ///
    /// # Errors
    /// Failures at the origin (after the mirror's, if any).
    pub async fn fetch_blob(&self, digest: &Digest) -> Result<Vec<u8>, RemoteError> {
        self.read(&format!("blob {digest}"), |_| false, |c| c.fetch_blob(digest))
            .await
    }

    /// Streams blob `digest` into `sink` (see [`Client::stream_blob`]); from the mirror
    /// first, the rest from the origin if the mirror fails.
    ///
    /// # Errors
    /// Failures at the origin (after the mirror's, if any).
    pub async fn stream_blob(
        &self,
        digest: &Digest,
        size: u64,
        sink: mpsc::Sender<Bytes>,
        observe: &(dyn Fn(&[u8], u64) + Sync),
    ) -> Result<Option<u64>, RemoteError> {
        let mut delivered = 0;
        let Some(mirror) = &self.mirror else {
            return self
                .origin
                .stream_blob(digest, size, &mut delivered, &sink, observe)
                .await
                .map_err(RemoteError::Origin);
        };
        let failure = match mirror
            .stream_blob(digest, size, &mut delivered, &sink, observe)
            .await
        {
            Ok(done) => return Ok(done),
            Err(e) => chain(&e),
        };
        let host = mirror.repository().registry();
        tracing::info!(
            "blob {digest} from mirror {host}: {failure}; asking the origin {} from byte {delivered}",
            self.origin.repository().registry()
        );
        self.origin
            .stream_blob(digest, size, &mut delivered, &sink, observe)
            .await
            .map_err(|source| self.both(host, failure, source))
    }
}
