//! The HTTP clients of a registry client.
//!
//! Loading the system's CA roots takes about 10 ms, more than a whole `check` against a
//! local registry, and a plain-HTTP registry never needs them. So plain-HTTP URLs go
//! through a client without the system roots, and the TLS client is built on the first
//! HTTPS URL. The plain client does not follow redirects by itself, because a redirect may
//! lead to an HTTPS host (blob storage): [`super::Client`] follows those with the right
//! client.

use std::sync::OnceLock;
use std::time::Duration;

use super::Error;

#[derive(Debug)]
pub(crate) struct Http {
    plain: reqwest::Client,
    tls: OnceLock<reqwest::Client>,
    extra_roots: Vec<reqwest::Certificate>,
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("registry-image-resource/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
}

impl Http {
    /// Clients that trust the system roots plus `extra_roots`.
    pub(crate) fn new(extra_roots: Vec<reqwest::Certificate>) -> Result<Self, Error> {
        let plain = builder()
            .tls_certs_only(extra_roots.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self {
            plain,
            tls: OnceLock::new(),
            extra_roots,
        })
    }

    /// The client for `url`: the plain one for `http://`, the TLS one otherwise.
    pub(crate) fn for_url(&self, url: &str) -> Result<&reqwest::Client, Error> {
        if url.starts_with("http://") {
            return Ok(&self.plain);
        }
        if let Some(tls) = self.tls.get() {
            return Ok(tls);
        }
        let tls = builder()
            .tls_certs_merge(self.extra_roots.clone())
            .build()
            .map_err(Error::HttpClient)?;
        Ok(self.tls.get_or_init(|| tls))
    }

    /// Whether responses from `url` may be redirects this code must follow itself.
    pub(crate) fn follows_redirects(url: &str) -> bool {
        !url.starts_with("http://")
    }
}
