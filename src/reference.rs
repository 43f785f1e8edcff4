//! Image references: which registry, which repository, which tag or digest.
//!
//! Follows the grammar of distribution's `reference` package, as `docker pull` reads it:
//! the first path segment is a registry host when it contains `.` or `:` or is `localhost`;
//! otherwise the image is on Docker Hub (`index.docker.io`), where a one-segment name gets the
//! implicit `library/` namespace.

use std::fmt;

use crate::digest::Digest;

/// The registry host Docker Hub is reached at.
pub const DOCKER_HUB: &str = "index.docker.io";

/// The tag used when the source names none.
pub const DEFAULT_TAG: &str = "latest";

/// Why a repository or tag is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The repository string is empty.
    #[error("repository is empty")]
    Empty,
    /// The repository starts with a URL scheme.
    #[error("repository must not start with a scheme ({scheme}://): write host[:port]/path; plain HTTP is used for loopback registries, or with source.insecure")]
    Scheme {
        /// The scheme written.
        scheme: String,
    },
    /// The repository's host part carries `user[:password]@` (not shown: it is a secret).
    #[error("repository must not hold credentials (user:password@ before the host): set source.username and source.password")]
    Userinfo,
    /// The repository carries a `:tag` or `@digest` suffix.
    #[error("repository {repository:?} must not include a tag or digest; set source.tag instead")]
    TagInRepository {
        /// The rejected text.
        repository: String,
    },
    /// A registry host that is not `host[:port]`.
    #[error("registry host {host:?} is not a valid host[:port]")]
    BadHost {
        /// The rejected host.
        host: String,
    },
    /// A path segment outside the allowed characters.
    #[error("repository path component {component:?} of {repository:?} must be lowercase letters, digits and single '.', '_', '__' or '-' separators")]
    BadComponent {
        /// The whole repository.
        repository: String,
        /// The offending component.
        component: String,
    },
    /// A repository name over 255 characters.
    #[error("repository name {repository:?} is longer than 255 characters")]
    TooLong {
        /// The rejected text.
        repository: String,
    },
    /// A tag outside `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error(
        "tag {tag:?} is not valid: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    BadTag {
        /// The rejected tag.
        tag: String,
    },
}

/// Whether `text` looks like `user[:password]@host/…` (or `user:password@name`): an `@`
/// in the part before the first `/`, not a digest suffix such as `app@sha256:…`.
fn has_userinfo(text: &str) -> bool {
    let (first, has_path) = match text.split_once('/') {
        Some((first, _)) => (first, true),
        None => (text, false),
    };
    first
        .split_once('@')
        .is_some_and(|(user, _)| has_path || user.contains(':'))
}

/// A repository on a registry, e.g. `index.docker.io` + `library/busybox`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    registry: String,
    path: String,
}

impl Repository {
    /// Parses a repository as written in `source.repository`.
    ///
    /// # Errors
    /// When the text is empty, carries a tag or digest, or breaks the name grammar.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if let Some((scheme, _)) = text.split_once("://") {
            let scheme = if scheme.len() <= 10 && scheme.chars().all(|c| c.is_ascii_alphabetic()) {
                scheme
            } else {
                "…"
            };
            return Err(ReferenceError::Scheme {
                scheme: scheme.to_owned(),
            });
        }
        if has_userinfo(text) {
            return Err(ReferenceError::Userinfo);
        }
        let (first, rest) = match text.split_once('/') {
            Some((first, rest)) if is_host(first) => (Some(first), rest),
            _ => (None, text),
        };
        if rest.contains('@') || rest.contains(':') {
            return Err(ReferenceError::TagInRepository {
                repository: text.into(),
            });
        }
        let registry = match first {
            None | Some("docker.io" | DOCKER_HUB) => DOCKER_HUB.to_owned(),
            Some(host) => {
                validate_host(host)?;
                host.to_owned()
            }
        };
        let path = if registry == DOCKER_HUB && !rest.contains('/') {
            format!("library/{rest}")
        } else {
            rest.to_owned()
        };
        if path.len() > 255 {
            return Err(ReferenceError::TooLong {
                repository: text.into(),
            });
        }
        for component in path.split('/') {
            if !is_path_component(component) {
                return Err(ReferenceError::BadComponent {
                    repository: text.into(),
                    component: component.into(),
                });
            }
        }
        Ok(Self { registry, path })
    }

    /// Whether `text` (as in `source.repository`) names its registry host.
    #[must_use]
    pub fn names_host(text: &str) -> bool {
        text.split_once('/').is_some_and(|(first, _)| is_host(first))
    }

    /// Parses `text` as a repository on `registry` when it names no host itself (ECR's
    /// repositories: `app` is `<account>.dkr.ecr.<region>.amazonaws.com/app`, without
    /// Docker Hub's `library/`).
    ///
    /// # Errors
    /// As [`Repository::parse`], and when `registry` is not `host[:port]`.
    pub fn parse_on(text: &str, registry: &str) -> Result<Self, ReferenceError> {
        if Self::names_host(text) || text.contains("://") || has_userinfo(text) {
            return Self::parse(text);
        }
        validate_host(registry)?;
        Self::parse(&format!("{registry}/{text}"))
    }

    /// The same repository path on another registry (a mirror).
    ///
    /// # Errors
    /// When `registry` is not `host[:port]`.
    pub fn on(&self, registry: &str) -> Result<Self, ReferenceError> {
        validate_host(registry)?;
        Ok(Self {
            registry: registry.to_owned(),
            path: self.path.clone(),
        })
    }

    /// The registry host, `host[:port]`.
    #[must_use]
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path on that registry, e.g. `library/busybox`.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// A validated tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag(String);

impl Tag {
    /// Parses and validates a tag.
    ///
    /// # Errors
    /// When the tag breaks `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut chars = text.chars();
        let ok = text.len() <= 128
            && chars.next().is_some_and(word)
            && chars.all(|c| word(c) || c == '.' || c == '-');
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(ReferenceError::BadTag { tag: text.into() })
        }
    }

    /// The tag text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest request names: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A mutable tag.
    Tag(Tag),
    /// An immutable digest.
    Digest(Digest),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => f.write_str(t.as_str()),
            Self::Digest(d) => f.write_str(d.as_str()),
        }
    }
}

/// Formats `repository:tag` or `repository@digest` for messages.
#[must_use]
pub fn describe(repository: &Repository, target: &Target) -> String {
    match target {
        Target::Tag(t) => format!("{repository}:{t}"),
        Target::Digest(d) => format!("{repository}@{d}"),
    }
}

fn is_host(segment: &str) -> bool {
    segment.contains('.') || segment.contains(':') || segment == "localhost"
}

fn split_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        // [ipv6]:port
        return match rest.split_once(']') {
            Some((ip, tail)) => (&host[..ip.len() + 2], tail.strip_prefix(':')),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

/// Checks that `host` is `host[:port]` (a name, IPv4 or `[IPv6]`).
///
/// # Errors
/// When it is not.
pub fn validate_host(host: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::BadHost { host: host.into() };
    let (name, port) = split_port(host);
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
    }
    if let Some(ip) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return ip.parse::<std::net::Ipv6Addr>().map(|_| ()).map_err(|_| bad());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || !name.split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let dashes = sep.bytes().all(|b| b == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (String, String) {
        let r = Repository::parse(s).unwrap();
        (r.registry().into(), r.path().into())
    }

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(parts("busybox"), (DOCKER_HUB.into(), "library/busybox".into()));
        assert_eq!(
            parts("concourse/test"),
            (DOCKER_HUB.into(), "concourse/test".into())
        );
        assert_eq!(
            parts("docker.io/busybox"),
            (DOCKER_HUB.into(), "library/busybox".into())
        );
        assert_eq!(parts("index.docker.io/a/b"), (DOCKER_HUB.into(), "a/b".into()));
    }

    #[test]
    fn host_prefixes() {
        assert_eq!(parts("localhost/app"), ("localhost".into(), "app".into()));
        assert_eq!(
            parts("localhost:5000/a/b"),
            ("localhost:5000".into(), "a/b".into())
        );
        assert_eq!(
            parts("127.0.0.1:5000/app"),
            ("127.0.0.1:5000".into(), "app".into())
        );
        assert_eq!(parts("ghcr.io/org/app"), ("ghcr.io".into(), "org/app".into()));
        assert_eq!(parts("[::1]:5000/app"), ("[::1]:5000".into(), "app".into()));
        // a first segment without '.', ':' or localhost is a namespace, not a host
        assert_eq!(parts("myhost/app"), (DOCKER_HUB.into(), "myhost/app".into()));
    }

    #[test]
    fn rejects_bad_repositories() {
        assert_eq!(Repository::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Repository::parse("busybox:1.0"),
            Err(ReferenceError::TagInRepository { .. })
        ));
        assert!(matches!(
            Repository::parse("localhost:5000/a:b"),
            Err(ReferenceError::TagInRepository { .. })
        ));
        assert!(matches!(
            Repository::parse("a@sha256:00"),
            Err(ReferenceError::TagInRepository { .. })
        ));
        assert!(matches!(
            Repository::parse("Busybox"),
            Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            Repository::parse("a//b"),
            Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            Repository::parse("a/-b"),
            Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            Repository::parse("a/b..c"),
            Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            Repository::parse("exa_mple.com:5000/a"),
            Err(ReferenceError::BadHost { .. })
        ));
        assert!(matches!(
            Repository::parse("example.com:50x/a"),
            Err(ReferenceError::BadHost { .. })
        ));
        assert!(Repository::parse("a/b__c/d-e/f.g/h---i").is_ok());
    }

    #[test]
    fn schemes_and_credentials_are_refused_without_echo() {
        for text in ["http://127.0.0.1:5000/app", "https://r.example/app"] {
            let e = Repository::parse(text).unwrap_err();
            assert!(matches!(e, ReferenceError::Scheme { .. }), "{text}: {e}");
            assert!(!e.to_string().contains("5000") && !e.to_string().contains("r.example"));
        }
        for text in [
            "u:hunter2secret@127.0.0.1:5000/app",
            "u:hunter2secret@app",
            "hunter2secret@r.example/a",
        ] {
            for e in [
                Repository::parse(text).unwrap_err(),
                Repository::parse_on(text, "1.dkr.ecr.us-east-1.amazonaws.com").unwrap_err(),
            ] {
                assert!(matches!(e, ReferenceError::Userinfo), "{text}: {e}");
                assert!(!e.to_string().contains("hunter2secret"));
            }
        }
    }

    #[test]
    fn tags() {
        for t in ["latest", "1.0", "v1.2.3-rc.1", "_x", "A"] {
            assert_eq!(Tag::parse(t).unwrap().as_str(), t);
        }
        for t in ["", ".x", "-x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(Tag::parse(t).is_err(), "{t}");
        }
    }
}
