//! Credentials: *which* identity to present to a registry.
//!
//! Resolving them (the source's user name and password, ECR, a docker config) is the
//! connection seam's business (`auth`, `connect`); presenting them is the transport's
//! (the challenge and token dance). Secrets stay wrapped in [`Secret`], so `Debug` never
//! shows them.

use crate::secret::Secret;

/// What to present when a registry asks who we are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Nobody: public images.
    Anonymous,
    /// A user name and password, sent as HTTP Basic or exchanged for a bearer token.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// An `OAuth2` refresh token (a docker config's `identitytoken`), exchanged at the token
    /// realm for an access token; useless against a Basic challenge.
    RefreshToken {
        /// The refresh token.
        token: Secret,
    },
}

impl Credentials {
    /// `username`/`password` when both are non-empty, else [`Credentials::Anonymous`].
    #[must_use]
    pub fn basic(username: Option<&str>, password: Option<&Secret>) -> Self {
        match (username, password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Self::Basic {
                username: u.to_owned(),
                password: p.clone(),
            },
            _ => Self::Anonymous,
        }
    }

    /// Whether there is anything to present.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        *self == Self::Anonymous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_needs_both_halves() {
        let c = Credentials::basic(Some("u"), Some(&Secret::new("p")));
        assert!(matches!(&c, Credentials::Basic { username, .. } if username == "u"));
        assert!(format!("{c:?}").contains("<redacted>"));
        assert_eq!(Credentials::basic(Some("u"), None), Credentials::Anonymous);
        assert_eq!(
            Credentials::basic(Some(""), Some(&Secret::new("p"))),
            Credentials::Anonymous
        );
        let token = Credentials::RefreshToken {
            token: Secret::new("refresh-me"),
        };
        assert!(!format!("{token:?}").contains("refresh-me"));
    }
}
