//! The HTTP clients of a transport.
//!
//! Loading the system's CA roots takes about 10 ms, more than a whole `check` against a
//! local registry, and a plain-HTTP server never needs them. So plain-HTTP URLs go through
//! a client without the system roots, and the TLS client is built on the first HTTPS URL.
//! Neither follows redirects by itself: [`super::Transport`] follows them, with the client
//! the next URL needs and with credentials only where they belong.

use std::sync::OnceLock;
use std::time::Duration;

use super::Error;

/// How long connecting (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a response may go without a byte arriving.
pub const READ_TIMEOUT: Duration = Duration::from_mins(1);

#[derive(Debug)]
pub(crate) struct Http {
    plain: reqwest::Client,
    /// For the server itself: presents the client certificate, if any.
    tls: OnceLock<reqwest::Client>,
    /// For other hosts (token realms, blob storage): no client certificate.
    tls_other: OnceLock<reqwest::Client>,
    extra_roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("registry-image-resource/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
}

impl Http {
    /// Clients that trust the system roots plus `extra_roots`, and present `identity` (a
    /// client certificate) when a TLS server asks for one.
    pub(crate) fn new(
        extra_roots: Vec<reqwest::Certificate>,
        identity: Option<reqwest::Identity>,
    ) -> Result<Self, Error> {
        let plain = builder()
            .tls_certs_only(extra_roots.clone())
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self {
            plain,
            tls: OnceLock::new(),
            tls_other: OnceLock::new(),
            extra_roots,
            identity,
        })
    }

    /// The client for `url`: the plain one for `http://`, a TLS one otherwise, which
    /// presents the client certificate only when `own` (the URL is the server's own).
    pub(crate) fn for_url(&self, url: &str, own: bool) -> Result<&reqwest::Client, Error> {
        if url.starts_with("http://") {
            return Ok(&self.plain);
        }
        let (cell, identity) = if own {
            (&self.tls, self.identity.as_ref())
        } else {
            (&self.tls_other, None)
        };
        if let Some(tls) = cell.get() {
            return Ok(tls);
        }
        let mut tls = builder().tls_certs_merge(self.extra_roots.clone());
        if let Some(identity) = identity {
            tls = tls.identity(identity.clone());
        }
        let tls = tls.build().map_err(Error::HttpClient)?;
        Ok(cell.get_or_init(|| tls))
    }
}
