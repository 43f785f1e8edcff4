//! Concourse wire types: what `check`, `in` and `out` read on stdin and print on stdout.
//!
//! The types mirror the JSON field for field and reject unknown fields, like the Go
//! resource's `DisallowUnknownFields`; the request parser names the offending field and
//! lists the accepted ones. `Source::validate` runs once at the boundary.

use serde::{Deserialize, Deserializer, Serialize};

mod checks;

pub use self::checks::compile_regex;
use self::checks::{check_credential_pair, check_pair};
use crate::digest::Digest;
use crate::reference::{validate_host, ReferenceError, Tag};
use crate::secret::Secret;

/// What is wrong with a source, found without the network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A `source.repository` or `source.tag` that is not a valid reference.
    #[error("source.{field}")]
    Reference {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        #[source]
        source: ReferenceError,
    },
    /// One half of a user name/password pair.
    #[error("source.{present} is set but source.{missing} is empty")]
    IncompleteCredentials {
        /// The field that is set.
        present: &'static str,
        /// The field that is missing.
        missing: &'static str,
    },
    /// A source field this version cannot honour; refusing beats ignoring it.
    #[error("{feature} is not supported by this version of the resource")]
    Unsupported {
        /// What was asked for.
        feature: &'static str,
    },
    /// Two fields that exclude each other.
    #[error("source.{first} and source.{second} cannot both be set{hint}")]
    Conflict {
        /// One field.
        first: &'static str,
        /// The other.
        second: &'static str,
        /// What to do instead, with a leading separator.
        hint: &'static str,
    },
    /// An ECR field without `aws_region`, which is what turns ECR on.
    #[error("source.{field} is set but source.aws_region is not: ECR needs the registry's region")]
    NoRegion {
        /// The field given.
        field: &'static str,
    },
    /// A field of the Go resource this one does not implement.
    #[error("source.{field} is not implemented by this resource: {instead}")]
    NotImplemented {
        /// The field.
        field: &'static str,
        /// What to do instead.
        instead: &'static str,
    },
    /// A field that only means something with another one.
    #[error("source.{field} needs source.{needs}")]
    Needs {
        /// The field given.
        field: &'static str,
        /// The field it needs.
        needs: &'static str,
    },
    /// A regex field that does not compile.
    #[error("source.{field} {value:?} is not a regex in RE2 syntax: {reason}")]
    Regex {
        /// The field.
        field: &'static str,
        /// The pattern (its start).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A required field that is empty.
    #[error("source.{field} is empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A field whose value is not of the expected form.
    #[error("source.{field} {value:?} {expected}")]
    Malformed {
        /// The field, e.g. `aws_role_arns[1]`.
        field: String,
        /// The value as given (never a secret).
        value: String,
        /// What it should look like.
        expected: &'static str,
    },
}

type Result<T, E = SourceError> = std::result::Result<T, E>;

/// `source`: where the image lives and how to reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Repository, with an optional registry host prefix (Docker Hub by default).
    pub repository: String,
    /// Tag to track; a JSON number is taken as its text. Default `latest`.
    #[serde(default, deserialize_with = "deserialize_tag")]
    pub tag: Option<String>,
    /// Registry user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Registry password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// AWS access key id for ECR.
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    /// AWS secret access key for ECR.
    #[serde(default)]
    pub aws_secret_access_key: Option<Secret>,
    /// AWS session token for ECR.
    #[serde(default)]
    pub aws_session_token: Option<Secret>,
    /// AWS region of the ECR registry.
    #[serde(default)]
    pub aws_region: Option<String>,
    /// Role to assume before asking ECR for a token.
    #[serde(default)]
    pub aws_role_arn: Option<String>,
    /// Roles to assume in order, each with the previous one's credentials.
    #[serde(default)]
    pub aws_role_arns: Option<Vec<String>>,
    /// AWS account of the ECR registry: its host is `<id>.dkr.ecr.<region>.amazonaws.com`.
    #[serde(default)]
    pub aws_account_id: Option<String>,
    /// Deprecated (upstream too): ECR's token is valid for every registry the principal
    /// may use, so this is accepted and ignored, with a warning.
    #[serde(default)]
    pub aws_ecr_registry_id: Option<String>,
    /// Debug logs instead of progress bars.
    #[serde(default, deserialize_with = "null_as_default")]
    pub debug: bool,
    /// A pull-through mirror for Docker Hub repositories.
    #[serde(default)]
    pub registry_mirror: Option<RegistryMirror>,
    /// Docker Content Trust (Notary v1) signing for `out`.
    #[serde(default)]
    pub content_trust: Option<ContentTrust>,
    /// Extra PEM CA certificates to trust for the registry's TLS.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ca_certs: Vec<String>,
    /// Allow plain HTTP to this registry.
    #[serde(default, deserialize_with = "null_as_default")]
    pub insecure: bool,
    /// Which image of a multi-platform index `in` fetches.
    #[serde(default)]
    pub platform: Option<PlatformParam>,
    /// Semver mode: only `<semver>-<variant>` tags are versions, and `out` appends
    /// `-<variant>` to `params.version`.
    #[serde(default)]
    pub variant: Option<String>,
    /// Semver mode: only versions meeting this constraint (`~1.2.x`, `>= 1.2 < 3`).
    #[serde(default)]
    pub semver_constraint: Option<String>,
    /// Semver mode: also pre-releases starting `alpha`, `beta`, `rc` (and
    /// `pre_release_prefixes`). Given at all, even `false`, it turns semver mode on.
    #[serde(default)]
    pub pre_releases: Option<bool>,
    /// Semver mode: more pre-release prefixes than `alpha`, `beta`, `rc`.
    #[serde(default)]
    pub pre_release_prefixes: Option<Vec<String>>,
    /// Regex mode: every tag this regex (RE2 syntax, unanchored) matches is a version.
    #[serde(default)]
    pub tag_regex: Option<String>,
    /// Regex mode: versions ordered by their image's `created` time, oldest first.
    #[serde(default)]
    pub created_at_sort: Option<bool>,
    /// Config labels whose key matches become `in` metadata.
    #[serde(default)]
    pub label_regex: Option<String>,
    /// Manifest annotations whose key matches become `in` metadata.
    #[serde(default)]
    pub annotation_regex: Option<String>,
    /// Upstream's Azure managed-identity login: accepted, refused (not implemented).
    #[serde(default)]
    pub azure_acr: Option<bool>,
    /// Part of upstream's Azure login: refused.
    #[serde(default)]
    pub azure_client_id: Option<String>,
    /// Part of upstream's Azure login: refused.
    #[serde(default)]
    pub azure_tenant_id: Option<String>,
    /// Part of upstream's Azure login: refused.
    #[serde(default)]
    pub azure_environment: Option<String>,
}

/// The most a `tag_regex`, `label_regex` or `annotation_regex` may compile to (the
/// `regex` crate's own default is 10 MiB); matching is linear in the text either way.
pub const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

/// What `check` tracks.
#[derive(Debug, Clone)]
pub enum Tracking {
    /// One tag's digest (`source.tag`, or `latest`).
    Tag(Tag),
    /// Every tag that is a semantic version under these rules.
    Semver(crate::semver::Rules),
    /// Every tag the regex matches.
    Regex {
        /// `tag_regex`, compiled.
        regex: regex::Regex,
        /// `created_at_sort`.
        by_created: bool,
    },
}

/// `platform` in `source` or `params`: every part optional; `architecture` may carry a
/// variant (`arm64/v8`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformParam {
    /// e.g. `linux`.
    #[serde(default)]
    pub os: Option<String>,
    /// e.g. `arm64` or `arm64/v8`.
    #[serde(default)]
    pub architecture: Option<String>,
    /// e.g. `v7`.
    #[serde(default)]
    pub variant: Option<String>,
}

/// `source.registry_mirror`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryMirror {
    /// Mirror host, `host[:port]`.
    pub host: String,
    /// Mirror user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Mirror password.
    #[serde(default)]
    pub password: Option<Secret>,
}

impl RegistryMirror {
    /// `host` as `host[:port]`, and whether it asked for plain HTTP: the field may also be
    /// written as a URL, `https://host` or `http://host`, as docker's `registry-mirrors` are.
    ///
    /// # Errors
    /// When it is not a host.
    pub fn endpoint(&self) -> Result<(String, bool)> {
        let text = self.host.as_str();
        let (rest, plain) = match (text.strip_prefix("https://"), text.strip_prefix("http://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => (text, false),
        };
        let host = rest.trim_end_matches('/');
        validate_host(host).map_err(|source| SourceError::Reference {
            field: "registry_mirror.host",
            source,
        })?;
        Ok((host.to_owned(), plain))
    }
}

/// `source.content_trust`: sign every tag `out` pushes in a Notary server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentTrust {
    /// Notary server URL, `https://host[:port]`; default `https://notary.docker.io` for
    /// Docker Hub repositories, else `https://<registry host>`.
    #[serde(default)]
    pub server: Option<String>,
    /// ID of the repository (targets) or delegation key.
    pub repository_key_id: String,
    /// The PEM key, as the notary CLI or `docker trust` write it.
    pub repository_key: Secret,
    /// Passphrase of the key, when it is encrypted.
    #[serde(default)]
    pub repository_passphrase: Option<Secret>,
    /// Client TLS key for the notary server.
    #[serde(default)]
    pub tls_key: Option<Secret>,
    /// Client TLS certificate for the notary server.
    #[serde(default)]
    pub tls_cert: Option<String>,
    /// User name for the notary server's token service (default: the source's).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for the notary server's token service.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Token scope actions, comma-separated (default `push,pull`).
    #[serde(default)]
    pub scopes: Option<String>,
}

/// The token scope actions content trust asks for unless told otherwise.
pub const DEFAULT_TRUST_SCOPES: &str = "push,pull";

impl ContentTrust {
    /// The server's `host[:port]`, when one is given: `server` must be an `https://` URL
    /// with nothing after the host but `/`.
    ///
    /// # Errors
    /// When it is not.
    pub fn server_host(&self) -> Result<Option<String>> {
        let Some(text) = self.server.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let malformed = || SourceError::Malformed {
            field: "content_trust.server".to_owned(),
            value: text.to_owned(),
            expected: "is not an https:// URL of a notary server (https://host[:port])",
        };
        let host = text
            .strip_prefix("https://")
            .ok_or_else(malformed)?
            .trim_end_matches('/');
        validate_host(host).map_err(|_| malformed())?;
        Ok(Some(host.to_owned()))
    }

    /// The token scope actions: `scopes`, else `push,pull`.
    ///
    /// # Errors
    /// Actions that are not comma-separated words.
    pub fn actions(&self) -> Result<String> {
        let Some(text) = self.scopes.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(DEFAULT_TRUST_SCOPES.to_owned());
        };
        let ok = text
            .split(',')
            .all(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_lowercase() || c == '*'));
        if !ok {
            return Err(SourceError::Malformed {
                field: "content_trust.scopes".to_owned(),
                value: text.to_owned(),
                expected: "is not a comma-separated list of token actions such as push,pull",
            });
        }
        Ok(text.to_owned())
    }

    fn validate(&self) -> Result<()> {
        self.server_host()?;
        self.actions()?;
        let id = self.repository_key_id.trim();
        if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SourceError::Malformed {
                field: "content_trust.repository_key_id".to_owned(),
                value: id.chars().take(80).collect(),
                expected: "is not a key id (64 hex digits, the name of the key's file without .key)",
            });
        }
        if self.repository_key.is_empty() {
            return Err(SourceError::Empty {
                field: "content_trust.repository_key",
            });
        }
        check_credential_pair(
            self.username.as_deref(),
            self.password.as_ref(),
            "content_trust.username",
            "content_trust.password",
        )?;
        check_pair(
            self.tls_cert.as_deref().is_some_and(|c| !c.trim().is_empty()),
            self.tls_key.as_ref().is_some_and(|k| !k.is_empty()),
            "content_trust.tls_cert",
            "content_trust.tls_key",
        )
    }
}

/// A version as Concourse stores it. Input may omit `tag`; output always has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// The tag the digest was found under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The manifest (or index) digest.
    pub digest: Digest,
}

/// One `{"name","value"}` entry of a response's `metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataField {
    /// Field name.
    pub name: String,
    /// Field value.
    pub value: String,
}

/// stdin of `check`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The resource's source.
    pub source: Source,
    /// The cursor: the last version Concourse saw, if any.
    #[serde(default)]
    pub version: Option<Version>,
}

/// stdout of `check`: versions, oldest first.
pub type CheckResponse = Vec<Version>;

/// stdin of `in`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InRequest {
    /// The resource's source.
    pub source: Source,
    /// The version to fetch.
    pub version: Version,
    /// Step params.
    #[serde(default)]
    pub params: InParams,
}

/// `params` of a `get` step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InParams {
    /// `rootfs` (default), `oci` or `oci-layout`.
    #[serde(default)]
    pub format: Option<String>,
    /// Write only the version files; fetch no layers.
    #[serde(default, deserialize_with = "null_as_default")]
    pub skip_download: bool,
    /// Overrides `source.platform` (replaces it whole).
    #[serde(default)]
    pub platform: Option<PlatformParam>,
}

impl InRequest {
    /// The platform to fetch: `params.platform`, else `source.platform`, with missing parts
    /// taken from the platform this binary runs on.
    #[must_use]
    pub fn platform(&self) -> crate::manifest::Platform {
        let p = self
            .params
            .platform
            .as_ref()
            .or(self.source.platform.as_ref())
            .cloned()
            .unwrap_or_default();
        crate::manifest::Platform::from_parts(
            p.os.as_deref(),
            p.architecture.as_deref(),
            p.variant.as_deref(),
        )
    }
}

/// stdin of `out`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutRequest {
    /// The resource's source.
    pub source: Source,
    /// Step params.
    pub params: OutParams,
}

/// `params` of a `put` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutParams {
    /// Glob, relative to the sources directory, matching one image tarball.
    pub image: String,
    /// File with whitespace-separated extra tags.
    #[serde(default)]
    pub additional_tags: Option<String>,
    /// A semantic version to push as a tag (normalised, `-<variant>` appended).
    #[serde(default, deserialize_with = "deserialize_tag")]
    pub version: Option<String>,
    /// With `version`: also move `MAJOR.MINOR`, `MAJOR` and `latest` (or the variant
    /// forms), each when this version is the newest of its line.
    #[serde(default, deserialize_with = "null_as_default")]
    pub bump_aliases: bool,
    /// Prefix for every additional tag.
    #[serde(default)]
    pub tag_prefix: Option<String>,
}

/// stdout of `in` and `out`.
#[derive(Debug, Clone, Serialize)]
pub struct StepResponse {
    /// The version fetched or pushed.
    pub version: Version,
    /// Metadata shown in the Concourse UI.
    pub metadata: Vec<MetadataField>,
}

/// `null` as the type's default, as Go's decoder takes it (YAML's `debug:` with no value).
fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    deserializer: D,
) -> std::result::Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `tag` may be a JSON string or number; a number keeps its literal text (`1.10` stays
/// `"1.10"`, which is why `serde_json`'s `arbitrary_precision` is on).
fn deserialize_tag<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(serde::de::Error::custom(format!(
            "tag must be a string or a number, not {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(json: &str) -> Source {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn tag_accepts_strings_and_numbers_verbatim() {
        assert_eq!(
            source(r#"{"repository":"a","tag":"v1"}"#).tag.as_deref(),
            Some("v1")
        );
        assert_eq!(
            source(r#"{"repository":"a","tag":42}"#).tag.as_deref(),
            Some("42")
        );
        assert_eq!(
            source(r#"{"repository":"a","tag":1.10}"#).tag.as_deref(),
            Some("1.10")
        );
        assert_eq!(source(r#"{"repository":"a","tag":null}"#).tag, None);
        assert!(serde_json::from_str::<Source>(r#"{"repository":"a","tag":[1]}"#).is_err());
    }

    #[test]
    fn tag_defaults_to_latest() {
        assert_eq!(source(r#"{"repository":"a"}"#).tag().unwrap().as_str(), "latest");
        assert_eq!(
            source(r#"{"repository":"a","tag":""}"#).tag().unwrap().as_str(),
            "latest"
        );
    }

    #[test]
    fn null_means_the_default() {
        let s = source(r#"{"repository":"a","debug":null,"insecure":null,"ca_certs":null,"variant":null}"#);
        assert!(!s.debug && !s.insecure && s.ca_certs.is_empty() && s.variant.is_none());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<Source>(r#"{"repository":"a","tga":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `tga`"), "{err}");
        assert!(err.to_string().contains("`repository`"), "{err}");
    }

    #[test]
    fn half_credentials_are_rejected() {
        let s = source(r#"{"repository":"a","username":"u"}"#);
        assert!(matches!(
            s.validate(),
            Err(SourceError::IncompleteCredentials {
                missing: "password",
                ..
            })
        ));
        let s = source(r#"{"repository":"a","username":"u","password":"p"}"#);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn version_output_always_has_tag_when_set() {
        let d = Digest::sha256(b"x");
        let v = Version {
            tag: Some("latest".into()),
            digest: d.clone(),
        };
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            format!(r#"{{"tag":"latest","digest":"{d}"}}"#)
        );
        let parsed: Version = serde_json::from_str(&format!(r#"{{"digest":"{d}"}}"#)).unwrap();
        assert_eq!(parsed.tag, None);
    }
}
