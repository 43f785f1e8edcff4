//! `Transport`: one server behind registry-style auth, reached over HTTP(S).
//!
//! It owns what every such API needs, whatever its paths: which scheme the server speaks
//! (the probe), the auth handshake (a 401's `WWW-Authenticate`, Basic or a bearer token
//! from the challenge's realm, cached per scope string), redirects, retries
//! (`retry::Backoff`), extra CA roots and a client certificate, and the mapping of
//! responses to typed errors. The registry client is this plus repository paths; the
//! Notary client can be the same plus its own.
//!
//! Where credentials go: to the server's own scheme, host and port, and to the realm of a
//! challenge that the server itself issued, never to a host a redirect led to, nor to a
//! realm named by such a host; and never over plain HTTP unless the server itself is
//! plain HTTP.

mod challenge;
mod error;
mod http;
mod token;

use std::collections::HashMap;

use reqwest::header::{HeaderName, HeaderValue, ACCEPT, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::{Mutex, OnceCell};

use self::challenge::Challenge;
use self::error::read_limited;
pub use self::error::Error;

/// Fuzzing entry point: parses a `WWW-Authenticate` value as a 401 would be read.
#[doc(hidden)]
#[must_use]
pub fn fuzz_challenge(header: &str) -> bool {
    challenge::Challenge::parse(header).is_some()
}
use self::error::Partial;
pub use self::http::{CONNECT_TIMEOUT, READ_TIMEOUT};
use self::token::Token;
pub use self::token::{MAX_TOKEN_LIFETIME, SMALL_BODY_TIMEOUT, TOKEN_LIMIT};
use crate::credentials::Credentials;
use crate::retry::Backoff;
use crate::secret::Secret;

/// Redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;

/// How long a request without a body of ours may wait for the response's status and
/// headers, however slowly they trickle in.
pub const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_mins(1);

/// How long the scheme probe (`GET /v2/`) may take per scheme.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// A client certificate for mutual TLS.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: Secret,
}

/// How to reach a server, besides its name and credentials.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra PEM CA certificates, trusted besides the system roots.
    pub ca_certs: Vec<String>,
    /// A client certificate to present when a TLS server asks for one.
    pub client_cert: Option<ClientCert>,
    /// Allow plain HTTP (loopback hosts always may, unless `https_only`).
    pub insecure: bool,
    /// Never plain HTTP, not even on loopback: for a server named by an `https://` URL.
    pub https_only: bool,
    /// Retry policy for every request.
    pub backoff: Backoff,
}

/// Who we are to a server: the credentials, and a phrase saying where they came from (or,
/// when there are none, where they could be given), for messages.
#[derive(Debug, Clone)]
pub struct Identity {
    /// What to present.
    pub credentials: Credentials,
    /// e.g. `source.username and source.password`; for anonymous access, a sentence such
    /// as `no credentials were given`.
    pub origin: String,
}

impl Identity {
    /// Nobody, with `hint` saying how to be somebody.
    #[must_use]
    pub fn anonymous(hint: impl Into<String>) -> Self {
        Self {
            credentials: Credentials::Anonymous,
            origin: hint.into(),
        }
    }
}

/// A request that can be sent again: its body, if any, is made afresh for each attempt.
pub struct Call<'a> {
    method: Method,
    url: String,
    scope: &'a str,
    headers: Vec<(HeaderName, String)>,
    body: Option<&'a (dyn Fn() -> reqwest::Body + Sync)>,
    timeout: Option<std::time::Duration>,
}

impl<'a> Call<'a> {
    /// `method` on `url`, authorised for the token scope `scope`.
    #[must_use]
    pub fn new(method: Method, url: String, scope: &'a str) -> Self {
        Self {
            method,
            url,
            scope,
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }

    /// Bounds the whole exchange, body included: for small bodies read whole (a
    /// manifest, a tag page), which a trickling server could otherwise stretch for days.
    #[must_use]
    pub fn whole_within(mut self, limit: std::time::Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Sets the body maker.
    #[must_use]
    pub fn body(mut self, body: &'a (dyn Fn() -> reqwest::Body + Sync)) -> Self {
        self.body = Some(body);
        self
    }
}

/// What the server asked for so far.
#[derive(Debug, Clone)]
enum Scheme {
    /// Nothing yet: requests go out without credentials.
    Unknown,
    /// Basic credentials on every request.
    Basic,
    /// Bearer tokens from this realm, one per scope.
    Bearer { realm: String, service: Option<String> },
}

#[derive(Debug)]
struct AuthState {
    scheme: Scheme,
    tokens: HashMap<String, Token>,
}

/// What to put on one request.
enum Attach {
    Nothing,
    Basic,
    Bearer(Secret),
}

/// One server, its credentials and its auth state.
#[derive(Debug)]
pub struct Transport {
    http: http::Http,
    host: String,
    identity: Identity,
    backoff: Backoff,
    allow_http: bool,
    base: OnceCell<String>,
    auth: Mutex<AuthState>,
    /// Every secret this transport holds (its credentials, the tokens it got), in every
    /// form a server may say it back, to take out of anything a server says.
    secrets: std::sync::Mutex<crate::secret::Echoes>,
}

impl Transport {
    /// A transport to `host` (`host[:port]`) presenting `identity`. Plain HTTP is allowed
    /// with `options.insecure` and for loopback hosts.
    ///
    /// # Errors
    /// A CA certificate that is not PEM, a client certificate that does not parse, or TLS
    /// that cannot be set up.
    pub fn new(host: &str, identity: Identity, options: &Options) -> Result<Self, Error> {
        let mut certs = Vec::new();
        for (index, pem) in options.ca_certs.iter().enumerate() {
            let parsed = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|source| Error::CaCert { index, source })?;
            if parsed.is_empty() {
                return Err(Error::NoCaCert { index });
            }
            certs.extend(parsed);
        }
        let identity_pem = options
            .client_cert
            .as_ref()
            .map(|c| {
                let pem = format!("{}\n{}", c.key.expose(), c.cert);
                reqwest::Identity::from_pem(pem.as_bytes()).map_err(Error::ClientCert)
            })
            .transpose()?;
        let mut secrets = crate::secret::Echoes::default();
        match &identity.credentials {
            Credentials::Basic { username, password } => {
                secrets.add(password.expose());
                // a server echoing the Authorization header shows the pair in base64
                secrets.add(&base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{username}:{}", password.expose()),
                ));
            }
            Credentials::RefreshToken { token } => secrets.add(token.expose()),
            Credentials::Anonymous => {}
        }
        Ok(Self {
            secrets: std::sync::Mutex::new(secrets),
            http: http::Http::new(certs, identity_pem)?,
            allow_http: !options.https_only && (options.insecure || is_loopback(host)),
            host: host.to_owned(),
            identity,
            backoff: options.backoff,
            base: OnceCell::new(),
            auth: Mutex::new(AuthState {
                scheme: Scheme::Unknown,
                tokens: HashMap::new(),
            }),
        })
    }

    /// The server's `host[:port]`.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The retry policy.
    #[must_use]
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The absolute URL of `path` (which starts with `/`), probing the scheme first.
    ///
    /// # Errors
    /// None today; kept fallible for the probe.
    pub async fn url(&self, path: &str) -> Result<String, Error> {
        let base = self
            .base
            .get_or_try_init(|| self.backoff.retry(|| self.probe_scheme()))
            .await?;
        Ok(format!("{base}{path}"))
    }

    /// Sends `method` on `path` with `accept`, with retries; a non-success status is an error.
    ///
    /// # Errors
    /// Server, auth or transport failures (transient ones past the retry budget).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        scope: &str,
    ) -> Result<Response, Error> {
        self.backoff
            .retry(|| self.attempt(&method, path, accept, scope, None))
            .await
    }

    /// One attempt at `path`: send, answer one 401 challenge, send again. `range_from`
    /// asks for the bytes from that offset on.
    ///
    /// # Errors
    /// Server, auth or transport failures.
    pub async fn attempt(
        &self,
        method: &Method,
        path: &str,
        accept: &str,
        scope: &str,
        range_from: Option<u64>,
    ) -> Result<Response, Error> {
        let mut call = Call::new(method.clone(), self.url(path).await?, scope).header(ACCEPT, accept);
        if let Some(from) = range_from {
            call = call.header(reqwest::header::RANGE, &format!("bytes={from}-"));
        }
        self.execute(&call).await
    }

    /// Sends `call` once, answering one 401 challenge of the server's own; a non-success
    /// status is an error.
    ///
    /// # Errors
    /// Server, auth or transport failures.
    pub async fn execute(&self, call: &Call<'_>) -> Result<Response, Error> {
        let method = &call.method;
        let mut answered_challenge = false;
        loop {
            let attach = self.attach_for(call.scope).await?;
            let (response, url) = self.send(call, &attach).await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let own = self.is_own(&url);
            let refused = status == StatusCode::UNAUTHORIZED
                && own
                && !matches!(attach, Attach::Nothing)
                && (answered_challenge || response.headers().get(WWW_AUTHENTICATE).is_none());
            if refused {
                let mut error = self.status_error(method, &url, response).await;
                self.say_what_was_refused(&mut error, &attach, call.scope);
                return Err(error);
            }
            // A 401 from a host a redirect led to is that host's business: its challenge
            // is never answered with our credentials.
            if status != StatusCode::UNAUTHORIZED || answered_challenge || !own {
                return Err(self.status_error(method, &url, response).await);
            }
            let Some(header) = response.headers().get(WWW_AUTHENTICATE).cloned() else {
                return Err(self.status_error(method, &url, response).await);
            };
            self.answer(&header, call.scope).await?;
            answered_challenge = true;
        }
    }

    /// Adds to a 401's message what the server refused: our credentials (Basic), or the
    /// token its realm issued (for our credentials, or anonymously), so the reader knows
    /// whether the password or the access rights are wrong.
    fn say_what_was_refused(&self, error: &mut Error, attach: &Attach, scope: &str) {
        let Error::Status { message, .. } = error else {
            return;
        };
        let origin = &self.identity.origin;
        let note = match (attach, &self.identity.credentials) {
            (Attach::Basic, _) => format!("{} refused the credentials from {origin}", self.host),
            (Attach::Bearer(_), Credentials::Anonymous) => format!(
                "{} refused the anonymous token its realm issued for {scope} ({origin}): the repository may be private, or not exist",
                self.host
            ),
            (Attach::Bearer(_), _) => format!(
                "{} refused the token its realm issued for {scope} to the credentials from {origin}: they were accepted, but lack that access",
                self.host
            ),
            (Attach::Nothing, _) => return,
        };
        *message = if message.is_empty() {
            note
        } else {
            format!("{message}; {note}")
        };
    }

    /// Sends `call`, following redirects by hand. Returns the last response and its URL.
    async fn send(&self, call: &Call<'_>, attach: &Attach) -> Result<(Response, String), Error> {
        let mut method = call.method.clone();
        let mut url = call.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let shown = self.shown(&url);
            tracing::debug!("{method} {shown}");
            let response = self.send_once(call, &method, &url, attach).await?;
            tracing::debug!("{method} {shown} -> {}", response.status());
            if !response.status().is_redirection() {
                return Ok((response, url));
            }
            let Some(next) = redirect_target(&response) else {
                return Ok((response, url));
            };
            tracing::debug!("{method} {shown} redirected to {}", self.shown(&next));
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

    /// One request, without following redirects. Credentials go only on URLs of the server
    /// itself (same scheme, host and port as the probed base).
    async fn send_once(
        &self,
        call: &Call<'_>,
        method: &Method,
        url: &str,
        attach: &Attach,
    ) -> Result<Response, Error> {
        let own = self.is_own(url);
        let mut request = self.http.for_url(url, own)?.request(method.clone(), url);
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let Some(limit) = call.timeout {
            request = request.timeout(limit);
        }
        if let (Some(body), true) = (call.body, *method == call.method) {
            request = request.body(body());
        }
        if own {
            match (attach, &self.identity.credentials) {
                (Attach::Basic, Credentials::Basic { username, password }) => {
                    request = request.basic_auth(username, Some(password.expose()));
                }
                (Attach::Bearer(token), _) => request = request.bearer_auth(token.expose()),
                _ => {}
            }
        }
        // A body of ours (an upload) may take long to send; anything else must be answered
        // within the limit, a trickle included.
        let sent = if call.body.is_some() && *method == call.method {
            request.send().await
        } else {
            match tokio::time::timeout(RESPONSE_TIMEOUT, request.send()).await {
                Ok(sent) => sent,
                Err(_) => {
                    return Err(Error::NoResponse {
                        method: method.clone(),
                        url: self.shown(url),
                        limit: RESPONSE_TIMEOUT,
                    })
                }
            }
        };
        sent.map_err(|source| Error::Transport {
            method: method.clone(),
            url: self.shown(url),
            source: source.without_url(),
        })
    }

    /// The whole body `call` gets, a JSON document of at most `limit` bytes (`None` past
    /// that), asked for again while failures are transient. A body that is not one whole
    /// JSON document is one of them: without a length, a connection closed early looks
    /// like the end of the body.
    ///
    /// # Errors
    /// As [`Transport::execute`], once retries are spent.
    pub async fn fetch_document(&self, call: &Call<'_>, limit: usize) -> Result<Option<Vec<u8>>, Error> {
        self.backoff()
            .retry(|| async {
                let response = self.execute(call).await?;
                let url = self.shown(response.url().as_str());
                let Some(body) = self.read_whole(response, limit).await? else {
                    return Ok(None);
                };
                if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
                    return Err(Error::DocumentCut {
                        url,
                        received: body.len(),
                    });
                }
                Ok(Some(body))
            })
            .await
    }

    /// The whole body of `response`, at most `limit` bytes: `None` past that (no reason
    /// to ask again); a body cut short is a (transient) transport error.
    ///
    /// # Errors
    /// The body breaking off.
    pub async fn read_whole(&self, response: Response, limit: usize) -> Result<Option<Vec<u8>>, Error> {
        let url = self.shown(response.url().as_str());
        match read_limited(response, limit).await {
            Ok(body) => Ok(Some(body)),
            Err(Partial::TooLarge) => Ok(None),
            Err(Partial::Broken(source)) => Err(Error::Transport {
                method: Method::GET,
                url,
                source,
            }),
        }
    }

    /// `url` as messages may show it: whole on the server itself; elsewhere without its
    /// query, which on blob storage is a signature (`X-Amz-Security-Token=…`).
    #[must_use]
    pub fn shown(&self, url: &str) -> String {
        if self.is_own(url) {
            return url.to_owned();
        }
        url.split(['?', '#']).next().unwrap_or_default().to_owned()
    }

    /// `text` with every secret this transport holds replaced by `<redacted>`.
    #[must_use]
    pub fn scrub(&self, text: String) -> String {
        match self.secrets.lock() {
            Ok(secrets) => secrets.scrub(text),
            // a thread panicked holding it: show nothing of the server's words
            Err(_) => "<redacted>".to_owned(),
        }
    }

    /// A `Status` error for `response`, its URL as shown and its words scrubbed.
    pub(crate) async fn status_error(&self, method: &Method, url: &str, response: Response) -> Error {
        let scrub = |text| self.scrub(text);
        error::status_error(method.clone(), self.shown(url), response, &scrub).await
    }

    /// Whether `url` is on the server itself: the probed base, then `/`.
    fn is_own(&self, url: &str) -> bool {
        self.base.get().is_some_and(|base| {
            url.strip_prefix(base.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// What to put on a request for `scope` now, fetching or renewing its token first.
    async fn attach_for(&self, scope: &str) -> Result<Attach, Error> {
        let mut state = self.auth.lock().await;
        let (realm, service) = match &state.scheme {
            Scheme::Unknown => return Ok(Attach::Nothing),
            Scheme::Basic => return Ok(Attach::Basic),
            Scheme::Bearer { realm, service } => (realm.clone(), service.clone()),
        };
        if let Some(token) = state.tokens.get(scope).filter(|t| t.is_fresh()) {
            return Ok(Attach::Bearer(token.value.clone()));
        }
        // The lock is held while fetching, so concurrent requests for one scope fetch once.
        let token = self.fetch_token(&realm, service.as_deref(), scope).await?;
        let value = token.value.clone();
        state.tokens.insert(scope.to_owned(), token);
        Ok(Attach::Bearer(value))
    }

    /// Acts on a 401's challenge: switch to Basic, or fetch a token for `scope`.
    async fn answer(&self, header: &HeaderValue, scope: &str) -> Result<(), Error> {
        let host = &self.host;
        let text = header.to_str().unwrap_or_default();
        let challenge = Challenge::parse(text).ok_or_else(|| Error::Challenge {
            host: host.clone(),
            header: text.to_owned(),
        })?;
        tracing::debug!("{host} asks for authentication: {challenge:?}");
        let mut state = self.auth.lock().await;
        match challenge {
            Challenge::Basic => {
                if !matches!(self.identity.credentials, Credentials::Basic { .. }) {
                    return Err(self.credentials_required("Basic"));
                }
                state.scheme = Scheme::Basic;
            }
            Challenge::Bearer { realm, service } => {
                if !(realm.starts_with("https://") || realm.starts_with("http://")) {
                    return Err(Error::Challenge {
                        host: host.clone(),
                        header: text.to_owned(),
                    });
                }
                let token = self.fetch_token(&realm, service.as_deref(), scope).await?;
                state.tokens.insert(scope.to_owned(), token);
                state.scheme = Scheme::Bearer { realm, service };
            }
        }
        Ok(())
    }

    fn credentials_required(&self, scheme: &'static str) -> Error {
        let origin = &self.identity.origin;
        let hint = if self.identity.credentials.is_anonymous() {
            origin.clone()
        } else {
            format!("the credentials from {origin} are a token, which only a token server takes")
        };
        Error::CredentialsRequired {
            host: self.host.clone(),
            scheme,
            hint,
        }
    }

    async fn fetch_token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<Token, Error> {
        let credentials = &self.identity.credentials;
        let server_is_https = self.base.get().is_some_and(|b| b.starts_with("https://"));
        if realm.starts_with("http://") && server_is_https && !credentials.is_anonymous() {
            return Err(Error::InsecureRealm {
                host: self.host.clone(),
                realm: realm.to_owned(),
            });
        }
        let request = token::Request {
            host: &self.host,
            realm,
            service,
            scope,
            origin: &self.identity.origin,
        };
        let scrub = |text| self.scrub(text);
        let own = self.is_own(realm);
        let token = token::fetch_token(self.http.for_url(realm, own)?, &request, credentials, &scrub).await?;
        if let Ok(mut secrets) = self.secrets.lock() {
            secrets.add(token.value.expose());
        }
        Ok(token)
    }

    /// `https://host`, unless plain HTTP is allowed for this host and `/v2/` answers over
    /// plain HTTP like a registry (200 or 401). On loopback plain HTTP is asked first: a
    /// failed TLS handshake with a plain-HTTP server costs tens of milliseconds, a refused
    /// or non-registry answer over HTTP about one. Elsewhere (`insecure`), HTTPS first.
    /// When neither scheme gets any answer, that is the error (transient when both were
    /// refusals or timeouts: a registry restarting), and nothing is decided, so the next
    /// attempt probes again.
    async fn probe_scheme(&self) -> Result<String, Error> {
        let host = &self.host;
        let https = format!("https://{host}");
        if !self.allow_http {
            return Ok(https);
        }
        // Beyond loopback, HTTPS is asked first: a plain-HTTP answer there could come from
        // anyone on the path, and Basic credentials would follow it in clear.
        let mut tls_failure = None;
        if !is_loopback(host) {
            match self.ping(&https).await? {
                Ok(_) => return Ok(https),
                Err(e) => tls_failure = Some(e),
            }
        }
        let http = format!("http://{host}");
        let plain_failure = match self.ping(&http).await? {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::UNAUTHORIZED => {
                tracing::debug!("{host} speaks plain HTTP");
                return Ok(http);
            }
            // A TLS server answering plain HTTP says 400: HTTPS it is.
            Ok(_) => return Ok(https),
            Err(e) => e,
        };
        let tls_failure = match tls_failure {
            Some(e) => e,
            None => match self.ping(&https).await? {
                Ok(_) => return Ok(https),
                Err(e) => e,
            },
        };
        Err(Error::Unreachable {
            host: host.clone(),
            http: plain_failure.without_url(),
            https: tls_failure.without_url(),
        })
    }

    /// `GET <base>/v2/` within [`PROBE_TIMEOUT`]: any answer, or what kept it from coming.
    async fn ping(&self, base: &str) -> Result<reqwest::Result<reqwest::Response>, Error> {
        let ping = format!("{base}/v2/");
        Ok(self
            .http
            .for_url(&ping, true)?
            .get(&ping)
            .timeout(PROBE_TIMEOUT)
            .send()
            .await)
    }
}

/// Whether a server at `host` may be reached over plain HTTP without being told
/// `insecure`: loopback names and addresses, as docker and go-containerregistry do.
#[must_use]
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The absolute URL a redirect points to.
fn redirect_target(response: &Response) -> Option<String> {
    let location = response.headers().get(reqwest::header::LOCATION)?.to_str().ok()?;
    response.url().join(location).ok().map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.2:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
