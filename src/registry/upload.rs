//! Pushing: blob existence checks, monolithic blob uploads, manifest PUTs.
//!
//! Blobs go up as one `POST` (open an upload session) and one `PUT` carrying the whole body
//! and the digest, with a `Content-Length`: the form every registry accepts, including ECR
//! and Artifactory, whose chunked `PATCH` handling is broken (crates.md §1.4). A failed
//! attempt starts a new session, with the body made afresh.

use oci_client::errors::OciErrorCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use super::{Client, Error};
use crate::digest::Digest;
use crate::transport::Call;

/// `location` with `digest=` added to its query.
fn with_digest(location: &str, digest: &Digest) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

/// A `PUT` with a body turned down for its form rather than its content: not allowed, or
/// not understood. (A wrong digest or an auth failure would fail a `PATCH` just the same.)
fn refuses_monolithic(e: &Error) -> bool {
    e.status_codes().is_some_and(|(status, codes)| {
        [
            StatusCode::METHOD_NOT_ALLOWED,
            StatusCode::NOT_IMPLEMENTED,
            StatusCode::LENGTH_REQUIRED,
            StatusCode::RANGE_NOT_SATISFIABLE,
        ]
        .contains(&status)
            || (status == StatusCode::BAD_REQUEST
                && !codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::DigestInvalid | OciErrorCode::SizeInvalid)))
    })
}

impl Client {
    /// Whether the repository already has blob `digest`.
    ///
    /// # Errors
    /// Registry failures other than "not found".
    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool, Error> {
        match self
            .request(Method::HEAD, &format!("blobs/{digest}"), "*/*")
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Uploads blob `digest` of `size` bytes; `body` makes the bytes, once per attempt.
    ///
    /// # Errors
    /// Registry failures (a `DIGEST_INVALID` when the bytes are not the blob).
    pub async fn upload_blob(
        &self,
        digest: &Digest,
        size: u64,
        body: &(dyn Fn() -> reqwest::Body + Sync),
    ) -> Result<(), Error> {
        self.transport
            .backoff()
            .retry(|| async {
                let location = self.start_upload().await?;
                let put = Call::new(Method::PUT, with_digest(&location, digest), &self.scope)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, &size.to_string())
                    .body(body);
                match self.transport.execute(&put).await.map_err(Error::from) {
                    Ok(_) => Ok(()),
                    Err(e) if refuses_monolithic(&e) => {
                        tracing::debug!("{e}: uploading blob {digest} as PATCH + PUT instead");
                        self.upload_chunked(digest, size, body).await
                    }
                    Err(e) => Err(e),
                }
            })
            .await
    }

    /// The same blob as one `PATCH` with the body and a closing `PUT` with the digest, for
    /// registries that refuse a body on the `PUT`.
    async fn upload_chunked(
        &self,
        digest: &Digest,
        size: u64,
        body: &(dyn Fn() -> reqwest::Body + Sync),
    ) -> Result<(), Error> {
        let location = self.start_upload().await?;
        let last = size.saturating_sub(1);
        let patch = Call::new(Method::PATCH, location, &self.scope)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, &size.to_string())
            .header(reqwest::header::CONTENT_RANGE, &format!("0-{last}"))
            .body(body);
        let patched = self.transport.execute(&patch).await?;
        let location = Self::location(&patched)?;
        let close =
            Call::new(Method::PUT, with_digest(&location, digest), &self.scope).header(CONTENT_LENGTH, "0");
        self.transport.execute(&close).await?;
        Ok(())
    }

    /// Opens an upload session; returns where to send the blob.
    async fn start_upload(&self) -> Result<String, Error> {
        let start = Call::new(Method::POST, self.url("blobs/uploads/").await?, &self.scope);
        let session = self.transport.execute(&start).await?;
        Self::location(&session)
    }

    /// PUTs a manifest under `reference` (a tag or its digest) and checks the digest the
    /// registry computed.
    ///
    /// # Errors
    /// Registry failures, or a registry that stored something else.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, Error> {
        let ours = Digest::sha256(bytes);
        let url = self.url(&format!("manifests/{reference}")).await?;
        let body = || reqwest::Body::from(bytes.to_vec());
        let call = Call::new(Method::PUT, url.clone(), &self.scope)
            .header(CONTENT_TYPE, media_type)
            .body(&body);
        let response = self
            .transport
            .backoff()
            .retry(|| self.transport.execute(&call))
            .await?;
        let theirs = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match theirs {
            Some(t) if t != ours.as_str() => Err(Error::ManifestDigest { url, found: t }),
            _ => Ok(ours),
        }
    }

    /// The absolute upload URL of a `202 Accepted`.
    fn location(response: &reqwest::Response) -> Result<String, Error> {
        let url = response.url().to_string();
        let value = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(Error::NoLocation { url: url.clone() })?;
        if value.starts_with("http://") || value.starts_with("https://") {
            return Ok(value.to_owned());
        }
        // relative to the URL that answered, as RFC 9110 says
        response
            .url()
            .join(value)
            .map(String::from)
            .map_err(|_| Error::NoLocation { url })
    }
}
