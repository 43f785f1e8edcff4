//! Credentials: *which* identity to present to a registry, resolved from the source.
//!
//! Auth resolves; the registry transport applies (the challenge and token dance lives in
//! `registry::token`). Secrets stay wrapped in [`Secret`], so `Debug` never shows them.

use crate::secret::Secret;
use crate::source::Source;

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
}

impl Credentials {
    /// The registry credentials named by `source.username`/`source.password`.
    ///
    /// Both must be non-empty to count; `Source::validate` has already refused one without
    /// the other.
    #[must_use]
    pub fn resolve(source: &Source) -> Self {
        match (&source.username, &source.password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Self::Basic {
                username: u.clone(),
                password: p.clone(),
            },
            _ => Self::Anonymous,
        }
    }
}

/// The access a token is requested for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `check` and `in`.
    Pull,
    /// `out`: some registries (GCR) refuse a push with a pull-only token.
    Push,
}

impl Scope {
    /// The actions part of a token scope, `repository:<name>:<actions>`.
    #[must_use]
    pub fn actions(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push,pull",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_needs_both_halves() {
        let s: Source = serde_json::from_str(r#"{"repository":"a","username":"u","password":"p"}"#).unwrap();
        let c = Credentials::resolve(&s);
        assert!(matches!(&c, Credentials::Basic { username, .. } if username == "u"));
        assert!(format!("{c:?}").contains("<redacted>"));
        let s: Source = serde_json::from_str(r#"{"repository":"a"}"#).unwrap();
        assert_eq!(Credentials::resolve(&s), Credentials::Anonymous);
    }

    #[test]
    fn scope_actions() {
        assert_eq!(Scope::Pull.actions(), "pull");
        assert_eq!(Scope::Push.actions(), "push,pull");
    }
}
