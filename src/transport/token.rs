//! Bearer tokens: asking a challenge's realm for a token scoped to what a request needs.
//!
//! Follows the distribution token spec (docs/spec/auth/token.md and oauth.md): `GET
//! realm?scope=…&service=…`, presenting Basic credentials when there are some; or, with
//! an `OAuth2` refresh token (a docker config's `identitytoken`), `POST realm` with
//! `grant_type=refresh_token`. The answer's `token` (or `access_token`) and `expires_in`
//! are read from a body of at most [`TOKEN_LIMIT`] bytes. The realm's redirects are not
//! followed, so credentials go to the realm and nowhere else.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::error::{parse_envelope, read_limited, retry_after, sanitize, Error, Partial};
use crate::credentials::Credentials;
use crate::secret::Secret;

/// The spec's default lifetime when the server names none.
const DEFAULT_EXPIRES_IN: u64 = 60;

/// Largest token response read (a JWT is a few KiB).
pub const TOKEN_LIMIT: usize = 256 * 1024;

/// How long a token request may take, its answer included.
pub const SMALL_BODY_TIMEOUT: Duration = Duration::from_mins(1);

/// Longest a token is used for, whatever `expires_in` says.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_hours(1);

/// `client_id` sent with `OAuth2` requests, as the spec asks.
const CLIENT_ID: &str = "registry-image-resource";

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) value: Secret,
    pub(crate) expires_at: Instant,
}

impl Token {
    pub(crate) fn is_fresh(&self) -> bool {
        Instant::now() < self.expires_at
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    access_token: Option<Secret>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Where to ask, and what for.
pub(crate) struct Request<'a> {
    /// The host the token is for, for messages.
    pub(crate) host: &'a str,
    /// The challenge's realm.
    pub(crate) realm: &'a str,
    /// The challenge's service.
    pub(crate) service: Option<&'a str>,
    /// e.g. `repository:library/busybox:pull`.
    pub(crate) scope: &'a str,
    /// Where the credentials came from, for messages.
    pub(crate) origin: &'a str,
}

/// Asks the realm for a token for `request.scope`, following the realm's redirects only
/// within its own scheme, host and port. `scrub` takes secrets out of the realm's words.
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    request: &Request<'_>,
    credentials: &Credentials,
    scrub: &(dyn Fn(String) -> String + Sync),
) -> Result<Token, Error> {
    let Request {
        host,
        realm,
        service,
        scope,
        origin,
    } = *request;
    let mut query = vec![("scope", scope)];
    if let Some(service) = service {
        query.push(("service", service));
    }
    let refresh_form = |token: &Secret| -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", token.expose().to_owned()),
            ("client_id", CLIENT_ID.to_owned()),
            ("scope", scope.to_owned()),
        ];
        if let Some(service) = service {
            form.push(("service", service.to_owned()));
        }
        form
    };
    match credentials {
        Credentials::Basic { username, .. } => {
            tracing::debug!("fetching token from {realm} for {scope} as user {username:?}");
        }
        Credentials::Anonymous => tracing::debug!("fetching anonymous token from {realm} for {scope}"),
        Credentials::RefreshToken { .. } => {
            tracing::debug!("exchanging a refresh token at {realm} for {scope}");
        }
    }
    let transport = |source| unreachable_realm(request, source);
    let started = Instant::now();
    let response = send(http, request, credentials, &query, &refresh_form).await?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = retry_after(response.headers());
        let body = read_limited(response, super::error::ERROR_BODY_LIMIT)
            .await
            .unwrap_or_default();
        let (_, message) = parse_envelope(&body, scrub);
        return Err(Error::Token {
            host: host.to_owned(),
            realm: realm.to_owned(),
            status,
            message: token_error_message(&body).map_or(message, |m| sanitize(&scrub(m))),
            retry_after,
            origin: origin.to_owned(),
        });
    }
    let body_error = |reason: &str| Error::TokenBody {
        realm: realm.to_owned(),
        source: serde::de::Error::custom(reason),
    };
    let body = match read_limited(response, TOKEN_LIMIT).await {
        Ok(body) => body,
        Err(Partial::TooLarge) => return Err(body_error("token response is larger than the limit")),
        Err(Partial::Broken(e)) => return Err(transport(e)),
    };
    // serde's messages quote what they refuse, which could be the token itself: keep
    // only where the body went wrong
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
        if e.is_eof() {
            // a body that ended inside the JSON: a connection closed early, asked again
            return Error::DocumentCut {
                url: realm.to_owned(),
                received: body.len(),
            };
        }
        body_error(&format!(
            "the body is not the expected JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let value = match parsed.token.or(parsed.access_token) {
        Some(v) if !v.is_empty() => v,
        _ => return Err(body_error("it has neither `token` nor `access_token`")),
    };
    let lifetime =
        Duration::from_secs(parsed.expires_in.unwrap_or(DEFAULT_EXPIRES_IN).max(1)).min(MAX_TOKEN_LIFETIME);
    // Renew a little early so a token never expires between our check and the request.
    let usable = lifetime * 9 / 10;
    tracing::debug!("got token from {realm}, valid for {lifetime:?}");
    Ok(Token {
        value,
        expires_at: started + usable,
    })
}

/// The realm could not be reached (or its answer read); the URL, which holds the query,
/// is left out of reqwest's message.
fn unreachable_realm(request: &Request<'_>, source: reqwest::Error) -> Error {
    Error::TokenTransport {
        host: request.host.to_owned(),
        realm: request.realm.to_owned(),
        source: source.without_url(),
    }
}

/// Sends the token request, following the realm's redirects within its own host only (or
/// from HTTP to HTTPS on the same host), where the credentials may go again.
async fn send(
    http: &reqwest::Client,
    request: &Request<'_>,
    credentials: &Credentials,
    query: &[(&str, &str)],
    refresh_form: &(dyn Fn(&Secret) -> Vec<(&'static str, String)> + Sync),
) -> Result<reqwest::Response, Error> {
    let (host, realm) = (request.host, request.realm);
    let mut url = realm.to_owned();
    for _ in 0..=super::MAX_REDIRECTS {
        let builder = match credentials {
            Credentials::Basic { username, password } => http
                .get(&url)
                .query(query)
                .basic_auth(username, Some(password.expose())),
            Credentials::Anonymous => http.get(&url).query(query),
            Credentials::RefreshToken { token } => http.post(&url).form(&refresh_form(token)),
        };
        let response = builder
            .timeout(SMALL_BODY_TIMEOUT)
            .send()
            .await
            .map_err(|source| unreachable_realm(request, source))?;
        let status = response.status();
        if !status.is_redirection() {
            return Ok(response);
        }
        let here = response.url().clone();
        let next = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| here.join(l).ok());
        // a POST stays a POST only through 307 and 308
        let keeps_method =
            matches!(status.as_u16(), 307 | 308) || !matches!(credentials, Credentials::RefreshToken { .. });
        let same_host = next.as_ref().is_some_and(|n| {
            n.origin() == here.origin()
                || (here.scheme() == "http" && n.scheme() == "https" && n.host_str() == here.host_str())
        });
        match next {
            Some(next) if same_host && keeps_method => url = next.to_string(),
            other => {
                return Err(Error::TokenRedirect {
                    host: host.to_owned(),
                    realm: realm.to_owned(),
                    status,
                    location: other
                        .map(|u| u.origin().ascii_serialization())
                        .unwrap_or_default(),
                })
            }
        }
    }
    Err(Error::Redirects {
        url: realm.to_owned(),
    })
}

/// Docker Hub style `{"details": "..."}` bodies, and `OAuth2`'s `error_description`.
fn token_error_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        details: Option<String>,
        #[serde(default)]
        error_description: Option<String>,
        #[serde(default)]
        error: Option<String>,
    }
    let d = serde_json::from_slice::<Body>(body).ok()?;
    d.details.or(d.error_description).or(d.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses() {
        let r: TokenResponse = serde_json::from_str(r#"{"access_token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(r.access_token.unwrap().expose(), "abc");
        assert_eq!(r.expires_in, Some(300));
        assert_eq!(
            token_error_message(br#"{"details":"incorrect username or password"}"#).unwrap(),
            "incorrect username or password"
        );
        assert_eq!(
            token_error_message(br#"{"error":"invalid_grant","error_description":"refresh token expired"}"#)
                .unwrap(),
            "refresh token expired"
        );
    }
}
