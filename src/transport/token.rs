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

use super::error::{parse_envelope, read_limited, retry_after, Error};
use crate::credentials::Credentials;
use crate::secret::Secret;

/// The spec's default lifetime when the server names none.
const DEFAULT_EXPIRES_IN: u64 = 60;

/// Largest token response read (a JWT is a few KiB).
pub const TOKEN_LIMIT: usize = 256 * 1024;

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

/// Asks the realm for a token for `request.scope`.
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    request: &Request<'_>,
    credentials: &Credentials,
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
    let builder = match credentials {
        Credentials::Basic { username, password } => {
            tracing::debug!("fetching token from {realm} for {scope} as user {username:?}");
            http.get(realm)
                .query(&query)
                .basic_auth(username, Some(password.expose()))
        }
        Credentials::Anonymous => {
            tracing::debug!("fetching anonymous token from {realm} for {scope}");
            http.get(realm).query(&query)
        }
        Credentials::RefreshToken { token } => {
            tracing::debug!("exchanging a refresh token at {realm} for {scope}");
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", token.expose()),
                ("client_id", CLIENT_ID),
                ("scope", scope),
            ];
            if let Some(service) = service {
                form.push(("service", service));
            }
            http.post(realm).form(&form)
        }
    };
    let started = Instant::now();
    let transport = |source| Error::TokenTransport {
        host: host.to_owned(),
        realm: realm.to_owned(),
        source,
    };
    let response = builder.send().await.map_err(transport)?;
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        return Err(Error::TokenRedirect {
            host: host.to_owned(),
            realm: realm.to_owned(),
            status,
            location,
        });
    }
    if !status.is_success() {
        let retry_after = retry_after(response.headers());
        let body = read_limited(response, super::error::ERROR_BODY_LIMIT)
            .await
            .unwrap_or_default();
        let (_, message) = parse_envelope(&body);
        return Err(Error::Token {
            host: host.to_owned(),
            realm: realm.to_owned(),
            status,
            message: token_error_message(&body).unwrap_or(message),
            retry_after,
            origin: origin.to_owned(),
        });
    }
    let body_error = |reason: &str| Error::TokenBody {
        realm: realm.to_owned(),
        source: serde::de::Error::custom(reason),
    };
    let body = read_limited(response, TOKEN_LIMIT)
        .await
        .ok_or_else(|| body_error("token response is larger than the limit"))?;
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|source| Error::TokenBody {
        realm: realm.to_owned(),
        source,
    })?;
    let value = match parsed.token.or(parsed.access_token) {
        Some(v) if !v.is_empty() => v,
        _ => return Err(body_error("empty or missing token")),
    };
    let lifetime = parsed.expires_in.unwrap_or(DEFAULT_EXPIRES_IN).max(1);
    // Renew a little early so a token never expires between our check and the request.
    let usable = Duration::from_secs(lifetime) * 9 / 10;
    tracing::debug!("got token from {realm}, valid for {lifetime}s");
    Ok(Token {
        value,
        expires_at: started + usable,
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
