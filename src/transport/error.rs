//! What can go wrong talking to an HTTP API behind registry-style auth, and whether it is
//! worth trying again.

use std::time::Duration;

use oci_client::errors::{OciEnvelope, OciErrorCode};
use reqwest::{Method, StatusCode};

use crate::retry::Retryable;

/// A failed exchange with a server or its token realm. Every variant names the host (or
/// the URL, which contains it) so a message alone says where things went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a non-success status.
    #[error("{method} {url}: {status}{}", detail(codes, message))]
    Status {
        /// Request method.
        method: Method,
        /// Request URL (never carries credentials).
        url: String,
        /// Response status.
        status: StatusCode,
        /// Error codes from the OCI error envelope, if the body had one.
        codes: Vec<OciErrorCode>,
        /// The envelope's messages, or a short excerpt of a non-envelope body.
        message: String,
        /// `Retry-After`, when the server sent one.
        retry_after: Option<Duration>,
    },
    /// No HTTP response: connection refused, TLS failure, reset, timeout.
    #[error("{method} {url}")]
    Transport {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// The transport failure.
        #[source]
        source: reqwest::Error,
    },
    /// A JSON document (manifest, config, notary role) whose body is not one whole JSON
    /// document: cut short by a connection that ended with no length to tell (transient:
    /// it is fetched again).
    #[error("{url} gave {received} bytes that are not one whole JSON document (cut short, or not JSON)")]
    DocumentCut {
        /// Request URL.
        url: String,
        /// Bytes received.
        received: usize,
    },
    /// No status and headers within the limit (a silent or trickling server).
    #[error("{method} {url}: no response within {limit:?}")]
    NoResponse {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// The limit.
        limit: Duration,
    },
    /// Neither scheme got an answer from the server (the scheme probe).
    #[error(
        "no server answers at {host}: plain HTTP: {}; HTTPS: {}",
        innermost(http),
        innermost(https)
    )]
    Unreachable {
        /// Server host.
        host: String,
        /// What the plain-HTTP attempt met.
        http: reqwest::Error,
        /// What the HTTPS attempt met.
        https: reqwest::Error,
    },
    /// A server asked for credentials that we do not have (or cannot use for its scheme).
    #[error("{host} requires authentication ({scheme} challenge), but {hint}")]
    CredentialsRequired {
        /// Server host.
        host: String,
        /// `Basic` or `Bearer`.
        scheme: &'static str,
        /// What was (not) given, and where credentials come from.
        hint: String,
    },
    /// The token server refused or failed.
    #[error("fetch token for {host} from {realm}: {status}{}{}", detail(&[], message), origin_note(*status, origin))]
    Token {
        /// Server host.
        host: String,
        /// Token endpoint.
        realm: String,
        /// Response status.
        status: StatusCode,
        /// The server's explanation, shortened.
        message: String,
        /// `Retry-After`, when the server sent one.
        retry_after: Option<Duration>,
        /// Where the credentials presented came from.
        origin: String,
    },
    /// The token server could not be reached.
    #[error("fetch token for {host} from {realm}")]
    TokenTransport {
        /// Server host.
        host: String,
        /// Token endpoint.
        realm: String,
        /// The transport failure.
        #[source]
        source: reqwest::Error,
    },
    /// The token server answered 200 without a usable token.
    #[error("token response from {realm} is not usable")]
    TokenBody {
        /// Token endpoint.
        realm: String,
        /// Why the body did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The token server redirected; credentials are never sent after a redirect.
    #[error("fetch token for {host} from {realm}: {status} redirect to {location:?}, which is not followed")]
    TokenRedirect {
        /// Server host.
        host: String,
        /// Token endpoint.
        realm: String,
        /// The redirect status.
        status: StatusCode,
        /// Where it pointed.
        location: String,
    },
    /// An HTTPS server whose token realm is plain HTTP: the credentials would travel in clear.
    #[error("{host} is HTTPS but its token realm {realm} is plain HTTP: refusing to send credentials in clear text")]
    InsecureRealm {
        /// Server host.
        host: String,
        /// Token endpoint.
        realm: String,
    },
    /// A 401 whose `WWW-Authenticate` header we cannot act on.
    #[error("{host} answered 401 with an unusable WWW-Authenticate header {header:?}")]
    Challenge {
        /// Server host.
        host: String,
        /// The header as received.
        header: String,
    },
    /// A CA certificate entry that is not PEM.
    #[error("CA certificate {index} (0-based) is not PEM")]
    CaCert {
        /// Position in the list (0-based).
        index: usize,
        /// The parse failure.
        #[source]
        source: reqwest::Error,
    },
    /// A CA certificate entry without any `BEGIN CERTIFICATE` block.
    #[error(
        "CA certificate {index} (0-based) holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
    )]
    NoCaCert {
        /// Position in the list (0-based).
        index: usize,
    },
    /// A client certificate and key that do not make a TLS identity.
    #[error("client certificate and key are not a PEM certificate chain and private key")]
    ClientCert(#[source] reqwest::Error),
    /// A chain of more than [`super::MAX_REDIRECTS`] redirects.
    #[error("{url}: more than {} redirects", super::MAX_REDIRECTS)]
    Redirects {
        /// The first URL.
        url: String,
    },
    /// The HTTP client could not be built.
    #[error("build HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// Transient failures went on past the retry budget.
    #[error("gave up after {attempts} attempts over {elapsed:.1?}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last failure.
        #[source]
        source: Box<Error>,
    },
    /// The server asked for a wait longer than the retry budget allows.
    #[error("gave up after {attempts} attempts: the server asked to wait {wanted:?} (Retry-After), longer than the retry budget")]
    RetryAfterTooLong {
        /// Attempts made.
        attempts: u32,
        /// The wait asked for.
        wanted: Duration,
        /// The failure that carried the request.
        #[source]
        source: Box<Error>,
    },
}

/// Largest error body read for its message.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// How long an error body may take to arrive.
pub const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Characters of a server's message kept for ours.
pub const MESSAGE_LIMIT: usize = 300;

/// Where refused credentials came from, for the statuses that mean "refused".
fn origin_note(status: StatusCode, origin: &str) -> String {
    if origin.is_empty() || !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        String::new()
    } else {
        format!("; credentials from {origin}")
    }
}

fn detail(codes: &[OciErrorCode], message: &str) -> String {
    let codes: Vec<String> = codes
        .iter()
        .map(|c| match serde_json::to_value(c) {
            Ok(serde_json::Value::String(s)) => s,
            _ => format!("{c:?}"),
        })
        .collect();
    match (codes.is_empty(), message.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!(" ({message})"),
        (false, true) => format!(" ({})", codes.join(", ")),
        (false, false) => format!(" ({}: {message})", codes.join(", ")),
    }
}

impl Error {
    /// The HTTP status, if the failure was an HTTP answer.
    #[must_use]
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } | Self::Token { status, .. } => Some(*status),
            Self::GaveUp { source, .. } | Self::RetryAfterTooLong { source, .. } => source.status(),
            _ => None,
        }
    }

    /// The manifest, blob or repository does not exist (404, `MANIFEST_UNKNOWN`,
    /// `NAME_UNKNOWN`, `NOT_FOUND`, `BLOB_UNKNOWN`).
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Status { status, codes, .. } => {
                *status == StatusCode::NOT_FOUND
                    || codes.iter().any(|c| {
                        matches!(
                            c,
                            OciErrorCode::ManifestUnknown
                                | OciErrorCode::NameUnknown
                                | OciErrorCode::NotFound
                                | OciErrorCode::BlobUnknown
                        )
                    })
            }
            _ => false,
        }
    }
}

fn transient_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error()
            && status != StatusCode::NOT_IMPLEMENTED
            && status != StatusCode::HTTP_VERSION_NOT_SUPPORTED)
}

/// The innermost cause of a transport failure (`Connection refused (os error 111)`,
/// `operation timed out`), which is what a reader needs; the layers above it only say
/// that a request was being sent.
pub(crate) fn innermost(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".to_owned();
    }
    let mut last: &(dyn std::error::Error + 'static) = err;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// A reset connection, a refused one (a registry restarting), a body cut short or a
/// timeout: the network's fault, not the request's.
fn transient_transport(err: &reqwest::Error) -> bool {
    use std::io::ErrorKind;
    if err.is_timeout() {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
                    | ErrorKind::TimedOut
                    | ErrorKind::ConnectionRefused
            ) {
                return true;
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() {
                return true;
            }
        }
        cause = e.source();
    }
    false
}

impl Retryable for Error {
    fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, codes, .. } => {
                transient_status(*status) || codes.contains(&OciErrorCode::Toomanyrequests)
            }
            Self::Token { status, .. } => transient_status(*status),
            Self::Transport { source, .. } | Self::TokenTransport { source, .. } => {
                transient_transport(source)
            }
            Self::NoResponse { .. } | Self::DocumentCut { .. } => true,
            Self::Unreachable { http, https, .. } => transient_transport(http) && transient_transport(https),
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } | Self::Token { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn gave_up(self, attempts: u32, elapsed: Duration, wanted: Option<Duration>) -> Self {
        match wanted {
            Some(wanted) => Self::RetryAfterTooLong {
                attempts,
                wanted,
                source: Box::new(self),
            },
            None => Self::GaveUp {
                attempts,
                elapsed,
                source: Box::new(self),
            },
        }
    }
}

/// Builds a `Status` error from a response, reading (a bounded part of) its body for the
/// OCI error envelope, for at most [`ERROR_BODY_TIMEOUT`]; `scrub` takes out of the
/// server's words any secret it echoed. `url` is as it may be shown.
pub(crate) async fn status_error(
    method: Method,
    url: String,
    response: reqwest::Response,
    scrub: &(dyn Fn(String) -> String + Sync),
) -> Error {
    let status = response.status();
    let headers = response.headers().clone();
    let retry_after = retry_after(&headers);
    let body = if method == Method::HEAD {
        Vec::new()
    } else {
        tokio::time::timeout(ERROR_BODY_TIMEOUT, read_limited(response, ERROR_BODY_LIMIT))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    let (codes, mut message) = parse_envelope(&body, scrub);
    if message.is_empty() {
        // A HEAD has no body; a refused token still says why in its challenge.
        if let Some(reason) = response_challenge_error(&headers) {
            message = sanitize(&scrub(reason));
        }
    }
    Error::Status {
        method,
        url,
        status,
        codes,
        message,
        retry_after,
    }
}

fn response_challenge_error(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let value = headers.get(reqwest::header::WWW_AUTHENTICATE)?.to_str().ok()?;
    super::challenge::challenge_error(value)
}

/// The codes and messages of an OCI error envelope, or a one-line excerpt of another body,
/// with `scrub` applied before anything is cut (a secret cut in two would escape it).
pub(crate) fn parse_envelope(
    body: &[u8],
    scrub: &(dyn Fn(String) -> String + Sync),
) -> (Vec<OciErrorCode>, String) {
    if let Ok(envelope) = serde_json::from_slice::<OciEnvelope>(body) {
        let messages: Vec<String> = envelope
            .errors
            .iter()
            .map(|e| e.message.clone())
            .filter(|m| !m.is_empty())
            .collect();
        let codes = envelope.errors.into_iter().map(|e| e.code).collect();
        return (codes, sanitize(&scrub(messages.join("; "))));
    }
    let text = scrub(String::from_utf8_lossy(body).into_owned());
    (Vec::new(), excerpt(text.as_bytes()))
}

/// The first line of a body, for messages (see [`sanitize`]).
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    sanitize(text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or(""))
}

/// A server's words made fit for one line of a log: control characters (newlines, escape
/// sequences) become spaces, and at most [`MESSAGE_LIMIT`] characters are kept.
pub(crate) fn sanitize(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MESSAGE_LIMIT)
        .collect();
    if text.chars().count() > MESSAGE_LIMIT {
        out.push('…');
    }
    out.trim().to_owned()
}

/// Why a whole body was not read.
#[derive(Debug)]
pub(crate) enum Partial {
    /// It is longer than the limit.
    TooLarge,
    /// The connection broke (or timed out) before its end.
    Broken(reqwest::Error),
}

/// Reads a whole body of at most `limit` bytes.
pub(crate) async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, Partial> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(Partial::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(Partial::Broken(e.without_url())),
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, codes: Vec<OciErrorCode>) -> Error {
        Error::Status {
            method: Method::GET,
            url: "http://r/v2/p/manifests/x".into(),
            status: StatusCode::from_u16(code).unwrap(),
            codes,
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn classifies_statuses() {
        assert!(status(429, vec![]).is_transient());
        assert!(status(503, vec![]).is_transient());
        assert!(status(500, vec![]).is_transient());
        assert!(!status(501, vec![]).is_transient());
        assert!(!status(404, vec![]).is_transient());
        assert!(!status(401, vec![]).is_transient());
        assert!(status(404, vec![]).is_not_found());
        assert!(status(400, vec![OciErrorCode::NameUnknown]).is_not_found());
        assert!(!status(401, vec![OciErrorCode::Unauthorized]).is_not_found());
    }

    #[test]
    fn envelope_codes_and_messages_reach_the_message() {
        let keep = |t: String| t;
        let (codes, msg) = parse_envelope(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
            &keep,
        );
        assert_eq!(codes, vec![OciErrorCode::ManifestUnknown]);
        let mut e = status(404, codes);
        if let Error::Status { message, .. } = &mut e {
            *message = msg;
        }
        assert_eq!(
            e.to_string(),
            "GET http://r/v2/p/manifests/x: 404 Not Found (MANIFEST_UNKNOWN: manifest unknown)"
        );
        assert_eq!(
            parse_envelope(b"\n  <html>oops</html>\nmore", &keep).1,
            "<html>oops</html>"
        );
    }

    #[test]
    fn secrets_are_scrubbed_before_the_message_is_cut_or_cleaned() {
        let secret = "hunter2-very-secret\tpassword";
        let scrub = |t: String| t.replace(secret, "<redacted>");
        // the secret straddles the cut at MESSAGE_LIMIT characters, and holds a tab
        let body = format!("{}bad password {secret} end", "a".repeat(MESSAGE_LIMIT - 20));
        let (_, message) = parse_envelope(body.as_bytes(), &scrub);
        assert!(!message.contains("hunter2"), "{message}");
        let envelope = serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": body}]});
        let (_, message) = parse_envelope(envelope.to_string().as_bytes(), &scrub);
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_mins(2);
        h.insert("retry-after", httpdate::fmt_http_date(later).parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_mins(2),
            "{d:?}"
        );
    }
}
