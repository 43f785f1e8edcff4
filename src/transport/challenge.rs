//! `WWW-Authenticate` challenges: what a server's 401 asks for.
//!
//! Follows RFC 9110 §11.6.1 through the `http-auth` parser and the distribution token spec
//! (docs/spec/auth/token.md): `Basic realm=…`, or `Bearer realm=…,service=…,scope=…`.

/// What a server's 401 asked for.
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
}
