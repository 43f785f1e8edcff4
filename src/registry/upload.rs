//! Pushing: blob existence checks, monolithic blob uploads, manifest PUTs.
//!
//! Blobs go up as one `POST` (open an upload session) and one `PUT` carrying the whole body
//! and the digest, with a `Content-Length`: the form every registry accepts, including ECR
//! and Artifactory, whose chunked `PATCH` handling is broken (crates.md §1.4). A failed
//! attempt starts a new session, with the body made afresh.

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use super::{Call, Client, Error};
use crate::digest::Digest;

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
        self.backoff
            .retry(|| async {
                let start = Call::new(Method::POST, self.url("blobs/uploads/").await?);
                let session = self.execute(&start).await?;
                let location = self.location(&session)?;
                let separator = if location.contains('?') { '&' } else { '?' };
                let put = Call::new(Method::PUT, format!("{location}{separator}digest={digest}"))
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, &size.to_string())
                    .body(body);
                let done = self.execute(&put).await?;
                if done.status() != StatusCode::CREATED {
                    tracing::debug!("blob {digest} upload answered {}", done.status());
                }
                Ok(())
            })
            .await
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
        let call = Call::new(Method::PUT, url.clone())
            .header(CONTENT_TYPE, media_type)
            .body(&body);
        let response = self.backoff.retry(|| self.execute(&call)).await?;
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
    fn location(&self, response: &reqwest::Response) -> Result<String, Error> {
        let url = response.url().to_string();
        let value = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(Error::NoLocation { url: url.clone() })?;
        if value.starts_with("http://") || value.starts_with("https://") {
            return Ok(value.to_owned());
        }
        let base = self.base.get().cloned().unwrap_or_default();
        Ok(if value.starts_with('/') {
            format!("{base}{value}")
        } else {
            format!("{base}/{value}")
        })
    }
}
