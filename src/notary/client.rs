//! A Notary server's TUF API over the shared transport: the metadata of one GUN under
//! `/v2/<gun>/_trust/tuf/`, the key the server signs snapshots with, and publishing
//! changed roles (a multipart POST of `files` parts, one per role).
//!
//! Auth is the registry's: the server's 401 names a token realm, and the token is asked
//! for the scope `repository:<gun>:<actions>`.

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Method;
use sha2::{Digest as _, Sha256};

use crate::transport::{self, Call, Identity, Options, Transport, SMALL_BODY_TIMEOUT};

/// The largest role file read (a targets role with tens of thousands of signed tags).
pub const METADATA_LIMIT: usize = 16 * 1024 * 1024;

/// What the server did not do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request failed.
    #[error(transparent)]
    Http(#[from] transport::Error),
    /// A role file over [`METADATA_LIMIT`].
    #[error("{url} is larger than {limit} bytes")]
    TooLarge {
        /// Where.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// A server key document that is not `{"keytype", "keyval": {"public"}}`.
    #[error("{url} is not a public key")]
    BadKey {
        /// Where.
        url: String,
    },
}

/// A public key as the server hands it out.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ServerKey {
    /// `ed25519`, `ecdsa`…
    pub keytype: String,
    /// Its material.
    pub keyval: ServerKeyVal,
}

/// `keyval` of a [`ServerKey`].
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ServerKeyVal {
    /// base64.
    pub public: String,
}

/// One GUN on one notary server.
#[derive(Debug)]
pub struct Client {
    transport: Transport,
    gun: String,
    scope: String,
}

impl Client {
    /// A client for `gun` on the server at `host` (`host[:port]`, always HTTPS),
    /// presenting `identity` and asking tokens for `actions` (`push,pull`).
    ///
    /// # Errors
    /// A CA certificate or client certificate that does not parse.
    pub fn new(
        host: &str,
        gun: &str,
        actions: &str,
        identity: Identity,
        options: &Options,
    ) -> Result<Self, transport::Error> {
        let options = Options {
            https_only: true,
            ..options.clone()
        };
        Ok(Self {
            transport: Transport::new(host, identity, &options)?,
            gun: gun.to_owned(),
            scope: format!("repository:{gun}:{actions}"),
        })
    }

    /// The GUN.
    #[must_use]
    pub fn gun(&self) -> &str {
        &self.gun
    }

    /// The server, `https://host[:port]`.
    #[must_use]
    pub fn server(&self) -> String {
        format!("https://{}", self.transport.host())
    }

    /// `text` with every secret of the transport taken out.
    #[must_use]
    pub fn scrub(&self, text: String) -> String {
        self.transport.scrub(text)
    }

    fn path(&self, file: &str) -> String {
        format!("/v2/{}/_trust/tuf/{file}", self.gun)
    }

    /// The bytes of `<role>.json`, or `None` when the server has none.
    ///
    /// # Errors
    /// Server, auth or transport failures, or a file over [`METADATA_LIMIT`].
    pub async fn role(&self, role: &str) -> Result<Option<Vec<u8>>, Error> {
        match self.get(&format!("{role}.json")).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::Http(e)) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The public key the server signs `role` (`snapshot`, `timestamp`) with.
    ///
    /// # Errors
    /// Server, auth or transport failures, or an answer that is not a key.
    pub async fn server_key(&self, role: &str) -> Result<ServerKey, Error> {
        let file = format!("{role}.key");
        let bytes = self.get(&file).await?;
        serde_json::from_slice(&bytes).map_err(|_| Error::BadKey {
            url: self.shown(&file),
        })
    }

    fn shown(&self, file: &str) -> String {
        format!("{}{}", self.server(), self.path(file))
    }

    async fn get(&self, file: &str) -> Result<Vec<u8>, Error> {
        let url = self.transport.url(&self.path(file)).await?;
        let call = Call::new(Method::GET, url.clone(), &self.scope)
            .header(ACCEPT, "application/json")
            .whole_within(SMALL_BODY_TIMEOUT);
        let body = self.transport.fetch_document(&call, METADATA_LIMIT).await?;
        body.ok_or(Error::TooLarge {
            url,
            limit: METADATA_LIMIT,
        })
    }

    /// Publishes `roles` (name and the bytes of its new envelope) in one request, as the
    /// notary client does: the server checks them and signs a new snapshot and timestamp.
    ///
    /// # Errors
    /// Server (a role it refuses), auth or transport failures.
    pub async fn publish(&self, roles: &[(String, Vec<u8>)]) -> Result<(), Error> {
        let (boundary, body) = multipart(roles);
        let body = bytes::Bytes::from(body);
        let url = self.transport.url(&self.path("")).await?;
        let make = || reqwest::Body::from(body.clone());
        let call = Call::new(Method::POST, url, &self.scope)
            .header(CONTENT_TYPE, &format!("multipart/form-data; boundary={boundary}"))
            .header(ACCEPT, "application/json")
            .whole_within(SMALL_BODY_TIMEOUT)
            .body(&make);
        self.transport
            .backoff()
            .retry(|| self.transport.execute(&call))
            .await?;
        Ok(())
    }
}

/// A `multipart/form-data` body with one `files` part per role, named after the role
/// (role names are checked to be `targets` or `targets/<name>` of safe characters), and
/// its boundary.
fn multipart(roles: &[(String, Vec<u8>)]) -> (String, Vec<u8>) {
    // The boundary is a hash of the parts: for a part to hold it, the part would have to
    // hold a hash of itself. One pass checks anyway, and a salt makes another.
    let mut salt = 0u32;
    let boundary = loop {
        let mut hasher = Sha256::new();
        hasher.update(salt.to_be_bytes());
        for (role, bytes) in roles {
            hasher.update(role.as_bytes());
            hasher.update(bytes);
        }
        let boundary = format!("registry-image-{}", hex::encode(hasher.finalize()));
        let held = |bytes: &[u8]| bytes.windows(boundary.len()).any(|w| w == boundary.as_bytes());
        if !roles.iter().any(|(_, bytes)| held(bytes)) {
            break boundary;
        }
        salt += 1;
    };
    let mut body = Vec::new();
    for (role, bytes) in roles {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"files\"; filename=\"{role}\"\r\n").as_bytes(),
        );
        body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (boundary, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multipart_body_has_one_files_part_per_role() {
        let (boundary, body) = multipart(&[
            ("targets".to_owned(), b"{\"a\":\"--registry-image-\"}".to_vec()),
            ("targets/releases".to_owned(), b"{}".to_vec()),
        ]);
        assert!(
            boundary.starts_with("registry-image-") && boundary.len() > 64,
            "{boundary}"
        );
        let text = String::from_utf8(body).unwrap();
        assert_eq!(text.matches("name=\"files\"").count(), 2);
        assert!(text.contains(
            "filename=\"targets/releases\"\r\nContent-Type: application/octet-stream\r\n\r\n{}\r\n"
        ));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        assert_eq!(text.matches(&format!("--{boundary}\r\n")).count(), 2);
    }
}
