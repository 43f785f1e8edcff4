//! `Client`: one repository on one registry, spoken to over the OCI distribution API.
//!
//! The client is a [`Transport`] (scheme, auth, redirects, retries, TLS) plus the
//! repository's paths under `/v2/<name>/` and the token scope
//! `repository:<name>:<actions>`. It knows nothing about Concourse.
//!
//! Requests go through reqwest, the HTTP stack oci-client itself uses; oci-client supplies
//! the error envelope and media-type vocabulary. We do not route requests through
//! `oci_client::Client` because it discards what this resource must act on: response
//! statuses and `Retry-After` on failed requests, token-server errors (it swallows them
//! and retries anonymously), and HEAD 404s (it falls back to a GET).

mod blob;
mod error;
mod tags;
mod upload;

use reqwest::header::ACCEPT;
use reqwest::{Method, Response, StatusCode};

pub use self::blob::ChannelReader;
pub use self::error::Error;
use crate::digest::Digest;
use crate::manifest::MANIFEST_ACCEPT;
use crate::reference::{Repository, Target};
use crate::transport::{Call, Identity, Options, Transport, SMALL_BODY_TIMEOUT};

/// Manifests larger than this are refused (containerd uses the same bound).
const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;

/// The access a token is requested for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `check` and `in`.
    Pull,
    /// `out`: some registries (GCR) refuse a push with a pull-only token.
    Push,
}

impl Scope {
    /// The actions part of a token scope, `repository:<name>:<actions>`.
    #[must_use]
    pub fn actions(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push,pull",
        }
    }
}

/// A client for one repository.
#[derive(Debug)]
pub struct Client {
    transport: Transport,
    repository: Repository,
    scope: String,
}

impl Client {
    /// A client for `repository`, reached at `host` (the repository's registry, or an
    /// endpoint standing for it), presenting `identity` for `scope`.
    ///
    /// # Errors
    /// When a CA certificate is not PEM, or TLS cannot be set up.
    pub fn new(
        repository: Repository,
        host: &str,
        identity: Identity,
        scope: Scope,
        options: &Options,
    ) -> Result<Self, Error> {
        let scope = format!("repository:{}:{}", repository.path(), scope.actions());
        Ok(Self {
            transport: Transport::new(host, identity, options)?,
            repository,
            scope,
        })
    }

    /// The repository this client talks to.
    #[must_use]
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The digest `target` currently names, or `None` when the registry does not know it.
    ///
    /// HEAD first and read `Docker-Content-Digest`; registries that omit the header, or
    /// refuse HEAD, get a GET whose body is hashed.
    ///
    /// # Errors
    /// Registry, auth or transport failures other than "not found".
    pub async fn resolve_digest(&self, target: &Target) -> Result<Option<Digest>, Error> {
        let path = format!("manifests/{target}");
        match self.request(Method::HEAD, &path, MANIFEST_ACCEPT).await {
            Ok(response) => {
                if let Some(digest) = header_digest(&response) {
                    return Ok(Some(digest));
                }
                tracing::debug!("HEAD {path} gave no usable Docker-Content-Digest; falling back to GET");
            }
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) if head_refused(&e) => {
                tracing::debug!("HEAD refused ({e}); falling back to GET");
            }
            Err(e) => return Err(e),
        }
        match self.fetch_manifest(target).await {
            Ok((_, digest)) => Ok(Some(digest)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The manifest bytes `target` names and their digest, checked against the target when
    /// it is a digest.
    ///
    /// # Errors
    /// Registry, auth or transport failures, a body over 4 MiB, or a digest mismatch.
    pub async fn fetch_manifest(&self, target: &Target) -> Result<(Vec<u8>, Digest), Error> {
        let path = format!("manifests/{target}");
        let (url, body) = self
            .get_whole(&path, MANIFEST_ACCEPT, MANIFEST_LIMIT, |url, limit| {
                Error::ManifestTooLarge { url, limit }
            })
            .await?;
        if let Target::Digest(wanted) = target {
            if !wanted.matches(&body) {
                return Err(Error::ManifestDigest {
                    url,
                    found: wanted.of_same_kind(&body).to_string(),
                });
            }
            return Ok((body, wanted.clone()));
        }
        let digest = Digest::sha256(&body);
        Ok((body, digest))
    }

    /// GETs the JSON document at `path` whole, with retries, refusing a body over `limit`
    /// with the error `too_large` makes of the URL and the limit. A body that is not one
    /// whole JSON value (a connection that ended early, with no length to tell) is fetched
    /// again. Returns the URL and the body.
    async fn get_whole(
        &self,
        path: &str,
        accept: &str,
        limit: usize,
        too_large: fn(String, usize) -> Error,
    ) -> Result<(String, Vec<u8>), Error> {
        let url = self.url(path).await?;
        let call = Call::new(Method::GET, url.clone(), &self.scope)
            .header(ACCEPT, accept)
            .whole_within(SMALL_BODY_TIMEOUT);
        match self.transport.fetch_document(&call, limit).await? {
            Some(body) => Ok((url, body)),
            None => Err(too_large(url, limit)),
        }
    }

    /// A whole body of at most `limit` bytes; a broken one is a (transient) transport error.
    pub(crate) async fn read_whole(
        &self,
        response: Response,
        limit: usize,
        too_large: impl FnOnce() -> Error,
    ) -> Result<Vec<u8>, Error> {
        self.transport
            .read_whole(response, limit)
            .await?
            .ok_or_else(too_large)
    }

    /// Sends a request with retries; a non-success status is an error.
    async fn request(&self, method: Method, path: &str, accept: &str) -> Result<Response, Error> {
        let path = self.path(path);
        Ok(self.transport.request(method, &path, accept, &self.scope).await?)
    }

    /// One attempt at `path` (under `/v2/<repository>/`).
    async fn attempt(
        &self,
        method: &Method,
        path: &str,
        accept: &str,
        range_from: Option<u64>,
    ) -> Result<Response, Error> {
        let path = self.path(path);
        Ok(self
            .transport
            .attempt(method, &path, accept, &self.scope, range_from)
            .await?)
    }

    /// The absolute URL of `path` under `/v2/<repository>/`.
    async fn url(&self, path: &str) -> Result<String, Error> {
        Ok(self.transport.url(&self.path(path)).await?)
    }

    fn path(&self, path: &str) -> String {
        format!("/v2/{}/{path}", self.repository.path())
    }
}

fn header_digest(response: &Response) -> Option<Digest> {
    response
        .headers()
        .get("docker-content-digest")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A HEAD failure that a GET might not share: the registry may simply not support HEAD.
fn head_refused(e: &Error) -> bool {
    e.status_codes().is_some_and(|(status, _)| {
        status.is_client_error()
            && ![
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::TOO_MANY_REQUESTS,
            ]
            .contains(&status)
    })
}
