//! `Client`: one repository on one registry, spoken to over the OCI distribution API.
//!
//! The client owns the transport: which scheme the registry speaks, the auth handshake
//! (`token`), retries (`retry::Backoff`) and the mapping of responses to typed errors
//! (`error`). It knows nothing about Concourse.
//!
//! Requests go through reqwest, the HTTP stack oci-client itself uses; oci-client supplies
//! the error envelope and media-type vocabulary. We do not route requests through
//! `oci_client::Client` because it discards what this resource must act on: response
//! statuses and `Retry-After` on failed requests, token-server errors (it swallows them
//! and retries anonymously), and HEAD 404s (it falls back to a GET).

mod blob;
mod error;
mod http;
mod token;
mod upload;

use reqwest::header::{HeaderValue, ACCEPT, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::{Mutex, OnceCell};

pub use self::blob::ChannelReader;
use self::error::status_error;
pub use self::error::Error;
use self::token::{Challenge, Token};
use crate::auth::{Credentials, Scope};
use crate::digest::Digest;
use crate::manifest::MANIFEST_ACCEPT;
use crate::reference::{Repository, Target};
use crate::retry::Backoff;

/// Manifests larger than this are refused (containerd uses the same bound).
const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;

/// How to reach a registry, besides its name.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra PEM CA certificates, trusted besides the system roots.
    pub ca_certs: Vec<String>,
    /// Allow plain HTTP (after HTTPS fails), as for loopback hosts.
    pub insecure: bool,
    /// Retry policy for every request.
    pub backoff: Backoff,
}

/// A request that can be sent again: its body, if any, is made afresh for each attempt.
pub(crate) struct Call<'a> {
    method: Method,
    url: String,
    headers: Vec<(reqwest::header::HeaderName, String)>,
    body: Option<&'a (dyn Fn() -> reqwest::Body + Sync)>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, url: String) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body: None,
        }
    }

    pub(crate) fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub(crate) fn body(mut self, body: &'a (dyn Fn() -> reqwest::Body + Sync)) -> Self {
        self.body = Some(body);
        self
    }
}

/// The credentials to put on the next request.
#[derive(Debug, Clone)]
enum Auth {
    /// Nothing yet: the registry has not asked.
    None,
    /// Basic credentials on every request.
    Basic,
    /// A bearer token from this challenge's realm.
    Bearer {
        realm: String,
        service: Option<String>,
        token: Token,
    },
}

/// A client for one repository.
#[derive(Debug)]
pub struct Client {
    http: http::Http,
    repository: Repository,
    credentials: Credentials,
    scope: Scope,
    backoff: Backoff,
    allow_http: bool,
    base: OnceCell<String>,
    auth: Mutex<Auth>,
}

impl Client {
    /// A client for `repository`, authenticating as `credentials` for `scope`.
    ///
    /// # Errors
    /// When a `ca_certs` entry is not a PEM certificate, or TLS cannot be set up.
    pub fn new(
        repository: Repository,
        credentials: Credentials,
        scope: Scope,
        options: &Options,
    ) -> Result<Self, Error> {
        let mut certs = Vec::new();
        for (index, pem) in options.ca_certs.iter().enumerate() {
            let parsed = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|source| Error::CaCert { index, source })?;
            if parsed.is_empty() {
                return Err(Error::NoCaCert { index });
            }
            certs.extend(parsed);
        }
        let http = http::Http::new(certs)?;
        Ok(Self {
            http,
            allow_http: options.insecure || repository.is_loopback(),
            repository,
            credentials,
            scope,
            backoff: options.backoff,
            base: OnceCell::new(),
            auth: Mutex::new(Auth::None),
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
        let digest = Digest::sha256(&body);
        if let Target::Digest(wanted) = target {
            if wanted.as_str().starts_with("sha256:") && *wanted != digest {
                return Err(Error::ManifestDigest {
                    url,
                    found: digest.to_string(),
                });
            }
        }
        Ok((body, digest))
    }

    /// GETs `path` whole, with retries, refusing a body over `limit` with the error
    /// `too_large` makes of the URL and the limit. Returns the URL and the body.
    async fn get_whole(
        &self,
        path: &str,
        accept: &str,
        limit: usize,
        too_large: fn(String, usize) -> Error,
    ) -> Result<(String, Vec<u8>), Error> {
        let url = self.url(path).await?;
        let body = self
            .backoff
            .retry(|| async {
                let response = self.attempt(&Method::GET, path, accept, None).await?;
                error::read_limited(response, limit)
                    .await
                    .ok_or_else(|| too_large(url.clone(), limit))
            })
            .await?;
        Ok((url, body))
    }

    /// Sends a request with retries; a non-success status is an error.
    async fn request(&self, method: Method, path: &str, accept: &str) -> Result<Response, Error> {
        self.backoff
            .retry(|| self.attempt(&method, path, accept, None))
            .await
    }

    /// One attempt at `path` (under `/v2/<repository>/`): send, answer one 401 challenge,
    /// send again. `range_from` asks for the bytes from that offset on.
    async fn attempt(
        &self,
        method: &Method,
        path: &str,
        accept: &str,
        range_from: Option<u64>,
    ) -> Result<Response, Error> {
        let mut call = Call::new(method.clone(), self.url(path).await?).header(ACCEPT, accept);
        if let Some(from) = range_from {
            call = call.header(reqwest::header::RANGE, &format!("bytes={from}-"));
        }
        self.execute(&call).await
    }

    /// Sends `call`, answering one 401 challenge; a non-success status is an error.
    async fn execute(&self, call: &Call<'_>) -> Result<Response, Error> {
        let (method, url) = (&call.method, &call.url);
        let mut answered_challenge = false;
        loop {
            let auth = self.current_auth().await?;
            tracing::debug!("{method} {url}");
            let response = self.send(call, &auth).await?;
            let status = response.status();
            tracing::debug!("{method} {url} -> {status}");
            if status.is_success() {
                return Ok(response);
            }
            if status != StatusCode::UNAUTHORIZED || answered_challenge {
                return Err(self.status_error(method, url, response).await);
            }
            let Some(header) = response.headers().get(WWW_AUTHENTICATE).cloned() else {
                return Err(self.status_error(method, url, response).await);
            };
            self.answer(&header).await?;
            answered_challenge = true;
        }
    }

    async fn send(&self, call: &Call<'_>, auth: &Auth) -> Result<Response, Error> {
        let mut method = call.method.clone();
        let mut url = call.url.clone();
        for _ in 0..10 {
            let response = self.send_once(call, &method, &url, auth).await?;
            if http::Http::follows_redirects(&url) || !response.status().is_redirection() {
                return Ok(response);
            }
            let Some(next) = redirect_target(&response) else {
                return Ok(response);
            };
            tracing::debug!("{method} {url} -> {} {next}", response.status());
            let keeps_method = matches!(response.status().as_u16(), 307 | 308) || method == Method::HEAD;
            if !keeps_method {
                method = Method::GET;
            }
            url = next;
        }
        Err(Error::Redirects {
            url: call.url.clone(),
        })
    }

    /// One request, without following redirects.
    async fn send_once(
        &self,
        call: &Call<'_>,
        method: &Method,
        url: &str,
        auth: &Auth,
    ) -> Result<Response, Error> {
        let mut request = self.http.for_url(url)?.request(method.clone(), url);
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let (Some(body), true) = (call.body, method == call.method) {
            request = request.body(body());
        }
        // Credentials go to the registry only, never to a host it redirects to.
        let base = self.base.get().map_or("", String::as_str);
        if url.starts_with(&format!("{base}/")) {
            match (auth, &self.credentials) {
                (Auth::Basic, Credentials::Basic { username, password }) => {
                    request = request.basic_auth(username, Some(password.expose()));
                }
                (Auth::Bearer { token, .. }, _) => request = request.bearer_auth(token.value.expose()),
                _ => {}
            }
        }
        request.send().await.map_err(|source| Error::Transport {
            method: method.clone(),
            url: url.to_owned(),
            source,
        })
    }

    /// The auth to use now, renewing an expired bearer token first.
    async fn current_auth(&self) -> Result<Auth, Error> {
        let mut auth = self.auth.lock().await;
        if let Auth::Bearer {
            realm,
            service,
            token,
        } = &*auth
        {
            if !token.is_fresh() {
                tracing::debug!("token for {} expired; renewing", self.repository);
                let token = self.fetch_token(realm, service.as_deref()).await?;
                *auth = Auth::Bearer {
                    realm: realm.clone(),
                    service: service.clone(),
                    token,
                };
            }
        }
        Ok(auth.clone())
    }

    /// Acts on a 401's challenge: switch to Basic, or fetch a token.
    async fn answer(&self, header: &HeaderValue) -> Result<(), Error> {
        let registry = self.repository.registry();
        let text = header.to_str().unwrap_or_default();
        let challenge = Challenge::parse(text).ok_or_else(|| Error::Challenge {
            registry: registry.to_owned(),
            header: text.to_owned(),
        })?;
        tracing::debug!("{registry} asks for authentication: {challenge:?}");
        let next = match challenge {
            Challenge::Basic => {
                if self.credentials == Credentials::Anonymous {
                    return Err(Error::CredentialsRequired {
                        registry: registry.to_owned(),
                        scheme: "Basic",
                    });
                }
                Auth::Basic
            }
            Challenge::Bearer { realm, service } => {
                let token = self.fetch_token(&realm, service.as_deref()).await?;
                Auth::Bearer {
                    realm,
                    service,
                    token,
                }
            }
        };
        *self.auth.lock().await = next;
        Ok(())
    }

    async fn fetch_token(&self, realm: &str, service: Option<&str>) -> Result<Token, Error> {
        token::fetch_token(
            self.http.for_url(realm)?,
            self.repository.registry(),
            realm,
            service,
            self.repository.path(),
            self.scope,
            &self.credentials,
        )
        .await
    }

    async fn status_error(&self, method: &Method, url: &str, response: Response) -> Error {
        status_error(
            self.repository.registry(),
            self.repository.path(),
            method.clone(),
            url,
            response,
        )
        .await
    }

    async fn url(&self, path: &str) -> Result<String, Error> {
        let base = self.base.get_or_try_init(|| self.probe_scheme()).await?;
        Ok(format!("{base}/v2/{}/{path}", self.repository.path()))
    }

    /// `https://host`, unless plain HTTP is allowed for this host and `/v2/` answers over
    /// plain HTTP like a registry (200 or 401). Plain HTTP is asked first: a failed TLS
    /// handshake with a plain-HTTP server costs tens of milliseconds, a refused or
    /// non-registry answer over HTTP about one.
    async fn probe_scheme(&self) -> Result<String, Error> {
        let registry = self.repository.registry();
        let https = format!("https://{registry}");
        if !self.allow_http {
            return Ok(https);
        }
        let http = format!("http://{registry}");
        let ping = format!("{http}/v2/");
        match self.http.for_url(&ping)?.get(&ping).send().await {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::UNAUTHORIZED => {
                tracing::debug!("{registry} speaks plain HTTP");
                Ok(http)
            }
            // A TLS server answering plain HTTP says 400; nothing listening, a refusal:
            // either way HTTPS it is, and its errors are the ones worth reporting.
            _ => Ok(https),
        }
    }
}

/// The absolute URL a redirect points to.
fn redirect_target(response: &Response) -> Option<String> {
    let location = response.headers().get(reqwest::header::LOCATION)?.to_str().ok()?;
    response.url().join(location).ok().map(String::from)
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
    matches!(
        e,
        Error::Status { status, .. }
            if status.is_client_error()
                && ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN, StatusCode::TOO_MANY_REQUESTS]
                    .contains(status)
    )
}
