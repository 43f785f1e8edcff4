//! The registry auth handshake: `WWW-Authenticate` challenges and bearer tokens.
//!
//! Follows the distribution token spec (docs/spec/auth/token.md): a 401 carries
//! `Bearer realm=…,service=…`; the client asks the realm for a token scoped to
//! `repository:<name>:<actions>`, presenting Basic credentials when it has them, and reads
//! `token` (or the `OAuth2` name `access_token`) and `expires_in` from the JSON answer.
//! A `Basic` challenge means the credentials go on every request as they are.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::error::{parse_envelope, retry_after, Error};
use crate::auth::{Credentials, Scope};
use crate::secret::Secret;

/// What a registry's 401 asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Send user name and password with every request.
    Basic,
    /// Fetch a token from `realm`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter to pass back.
        service: Option<String>,
    },
}

impl Challenge {
    /// Reads the first Basic or Bearer challenge of a `WWW-Authenticate` value.
    pub(crate) fn parse(header: &str) -> Option<Self> {
        let challenges = http_auth::parse_challenges(header).ok()?;
        challenges.iter().find_map(|c| {
            let param = |name| param(c, name);
            if c.scheme.eq_ignore_ascii_case("basic") {
                Some(Self::Basic)
            } else if c.scheme.eq_ignore_ascii_case("bearer") {
                Some(Self::Bearer {
                    realm: param("realm")?,
                    service: param("service"),
                })
            } else {
                None
            }
        })
    }
}

/// A challenge parameter, by case-insensitive name, unescaped.
fn param(challenge: &http_auth::ChallengeRef<'_>, name: &str) -> Option<String> {
    challenge
        .params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_unescaped())
}

/// The `error` (and `error_description`) a challenge carries, e.g. `insufficient_scope`.
pub(crate) fn challenge_error(header: &str) -> Option<String> {
    let challenges = http_auth::parse_challenges(header).ok()?;
    challenges.iter().find_map(|c| {
        let param = |name| param(c, name);
        let error = param("error")?;
        Some(match param("error_description") {
            Some(d) => format!("{error}: {d}"),
            None => error,
        })
    })
}

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

/// The spec's default lifetime when the server names none.
const DEFAULT_EXPIRES_IN: u64 = 60;

/// Asks `realm` for a token for `repository` with `scope`'s actions.
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    registry: &str,
    realm: &str,
    service: Option<&str>,
    repository: &str,
    scope: Scope,
    credentials: &Credentials,
) -> Result<Token, Error> {
    let scope = format!("repository:{repository}:{}", scope.actions());
    let mut query = vec![("scope", scope.as_str())];
    if let Some(service) = service {
        query.push(("service", service));
    }
    let mut request = http.get(realm).query(&query);
    match credentials {
        Credentials::Basic { username, password } => {
            tracing::debug!("fetching token from {realm} for {scope} as user {username:?}");
            request = request.basic_auth(username, Some(password.expose()));
        }
        Credentials::Anonymous => tracing::debug!("fetching anonymous token from {realm} for {scope}"),
    }
    let started = Instant::now();
    let response = request.send().await.map_err(|source| Error::TokenTransport {
        registry: registry.to_owned(),
        realm: realm.to_owned(),
        source,
    })?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = retry_after(response.headers());
        let body = super::error::read_limited(response, 64 * 1024)
            .await
            .unwrap_or_default();
        let (_, message) = parse_envelope(&body);
        return Err(Error::Token {
            registry: registry.to_owned(),
            realm: realm.to_owned(),
            status,
            message: token_error_message(&body).unwrap_or(message),
            retry_after,
        });
    }
    let body = response.bytes().await.map_err(|source| Error::TokenTransport {
        registry: registry.to_owned(),
        realm: realm.to_owned(),
        source,
    })?;
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|source| Error::TokenBody {
        realm: realm.to_owned(),
        source,
    })?;
    let value = match parsed.token.or(parsed.access_token) {
        Some(v) if !v.is_empty() => v,
        _ => {
            let source = serde::de::Error::custom("empty or missing token");
            return Err(Error::TokenBody {
                realm: realm.to_owned(),
                source,
            });
        }
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

/// Docker Hub style `{"details": "..."}` bodies.
fn token_error_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Details {
        details: String,
    }
    serde_json::from_slice::<Details>(body).ok().map(|d| d.details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="registry""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse(r#"bearer realm="http://x/t""#),
            Some(Challenge::Bearer {
                realm: "http://x/t".into(),
                service: None
            })
        );
        assert_eq!(
            Challenge::parse(r#"Bearer service="x""#),
            None,
            "a bearer challenge needs a realm"
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(
            challenge_error(
                r#"Bearer realm="r",service="s",scope="repository:a:pull",error="insufficient_scope""#
            )
            .as_deref(),
            Some("insufficient_scope")
        );
    }

    #[test]
    fn token_responses() {
        let r: TokenResponse = serde_json::from_str(r#"{"access_token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(r.access_token.unwrap().expose(), "abc");
        assert_eq!(r.expires_in, Some(300));
        assert_eq!(
            token_error_message(br#"{"details":"incorrect username or password"}"#).unwrap(),
            "incorrect username or password"
        );
    }
}
