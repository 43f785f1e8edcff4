//! Concourse wire types: what `check`, `in` and `out` read on stdin and print on stdout.
//!
//! The types mirror the JSON field for field and reject unknown fields, like the Go
//! resource's `DisallowUnknownFields`; the request parser names the offending field and
//! lists the accepted ones. `Source::validate` runs once at the boundary.

use serde::{Deserialize, Deserializer, Serialize};

use crate::digest::Digest;
use crate::reference::{validate_host, ReferenceError, Repository, Tag, DEFAULT_TAG};
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

impl Source {
    /// Checks everything that can be checked without the network.
    ///
    /// # Errors
    /// A bad repository or tag, half-given credentials, a field this version cannot honour.
    pub fn validate(&self) -> Result<()> {
        self.repository()?;
        self.tag()?;
        check_credential_pair(
            self.username.as_deref(),
            self.password.as_ref(),
            "username",
            "password",
        )?;
        if let Some(m) = &self.registry_mirror {
            m.endpoint()?;
            check_credential_pair(
                m.username.as_deref(),
                m.password.as_ref(),
                "registry_mirror.username",
                "registry_mirror.password",
            )?;
        }
        self.validate_aws()?;
        if let Some(trust) = &self.content_trust {
            trust.validate()?;
        }
        self.tracking()?;
        for (field, pattern) in [
            ("label_regex", &self.label_regex),
            ("annotation_regex", &self.annotation_regex),
        ] {
            if let Some(pattern) = given(pattern.as_ref()) {
                compile_regex(field, pattern)?;
            }
        }
        self.refuse_azure()
    }

    /// Upstream's Azure managed-identity login needs the Azure instance metadata service;
    /// this resource does not speak it, and says so rather than ignoring the fields.
    fn refuse_azure(&self) -> Result<()> {
        let instead = "log in with source.username and source.password (an ACR token, or a service principal's id and secret)";
        if self.azure_acr == Some(true) {
            return Err(SourceError::NotImplemented {
                field: "azure_acr",
                instead,
            });
        }
        for (field, value) in [
            ("azure_client_id", &self.azure_client_id),
            ("azure_tenant_id", &self.azure_tenant_id),
            ("azure_environment", &self.azure_environment),
        ] {
            if given(value.as_ref()).is_some() {
                return Err(SourceError::NotImplemented { field, instead });
            }
        }
        Ok(())
    }

    /// The semver options given, by name: any of them (with no `tag`) turns semver mode on.
    #[must_use]
    pub fn semver_options(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if given(self.variant.as_ref()).is_some() {
            set.push("variant");
        }
        if given(self.semver_constraint.as_ref()).is_some() {
            set.push("semver_constraint");
        }
        if self.pre_releases.is_some() {
            set.push("pre_releases");
        }
        if self.pre_release_prefixes.is_some() {
            set.push("pre_release_prefixes");
        }
        set
    }

    /// The variant, when one is given.
    #[must_use]
    pub fn variant(&self) -> Option<&str> {
        given(self.variant.as_ref())
    }

    /// What `check` tracks: `tag` (default `latest`); or, with `tag` left out, every
    /// semver tag when a semver option is given, every matching tag with `tag_regex`.
    ///
    /// # Errors
    /// `tag` together with a semver option or `tag_regex`; a bad tag, variant,
    /// constraint, prefix or regex.
    pub fn tracking(&self) -> Result<Tracking> {
        // `out` appends it to versions whatever `check` tracks
        if let Some(v) = self.variant() {
            Tag::parse(v).map_err(|source| SourceError::Reference {
                field: "variant",
                source,
            })?;
        }
        let options = self.semver_options();
        let tag = given(self.tag.as_ref());
        let regex = given(self.tag_regex.as_ref());
        if tag.is_some() {
            if let Some(option) = options.first().copied().or(regex.map(|_| "tag_regex")) {
                return Err(SourceError::Conflict {
                    first: "tag",
                    second: option,
                    hint: ": source.tag tracks that one tag; leave it out to track semver tags (variant, semver_constraint, pre_releases, pre_release_prefixes) or the tags tag_regex matches",
                });
            }
        }
        if let Some(pattern) = regex {
            return Ok(Tracking::Regex {
                regex: compile_regex("tag_regex", pattern)?,
                by_created: self.created_at_sort == Some(true),
            });
        }
        if options.is_empty() {
            return Ok(Tracking::Tag(self.tag()?));
        }
        Ok(Tracking::Semver(self.semver_rules()?))
    }

    /// The semver options, checked.
    fn semver_rules(&self) -> Result<crate::semver::Rules> {
        let variant = self.variant().map(str::to_owned);
        let constraint = match given(self.semver_constraint.as_ref()) {
            Some(text) => Some(crate::semver::Constraint::parse(text).map_err(|e| {
                SourceError::Malformed {
                    field: "semver_constraint".to_owned(),
                    value: e.part,
                    expected: "is not a version constraint (write e.g. `~1.2`, `^1`, `>= 1.2, < 3` or `1.2.x || >= 4.2.3`)",
                }
            })?),
            None => None,
        };
        let prefixes = self.pre_release_prefixes.clone().unwrap_or_default();
        for (i, prefix) in prefixes.iter().enumerate() {
            if prefix.is_empty()
                || !prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(SourceError::Malformed {
                    field: format!("pre_release_prefixes[{i}]"),
                    value: prefix.chars().take(80).collect(),
                    expected:
                        "is not the start of a pre-release (letters, digits, `-` and `.`, like `build`)",
                });
            }
        }
        Ok(crate::semver::Rules {
            variant,
            constraint,
            pre_releases: self.pre_releases == Some(true),
            prefixes,
        })
    }

    /// Whether ECR is on: `aws_region` is set.
    #[must_use]
    pub fn uses_ecr(&self) -> bool {
        self.aws_region.is_some()
    }

    /// The roles to assume, in order: `aws_role_arn`, or `aws_role_arns`.
    #[must_use]
    pub fn aws_roles(&self) -> Vec<String> {
        match (&self.aws_role_arn, &self.aws_role_arns) {
            (Some(one), _) if !one.is_empty() => vec![one.clone()],
            (_, Some(many)) => many.clone(),
            _ => Vec::new(),
        }
    }

    /// The ECR fields: each needs `aws_region`, keys come in pairs, one way to give roles,
    /// and values of the right form.
    fn validate_aws(&self) -> Result<()> {
        let given = [
            ("aws_access_key_id", self.aws_access_key_id.is_some()),
            ("aws_secret_access_key", self.aws_secret_access_key.is_some()),
            ("aws_session_token", self.aws_session_token.is_some()),
            ("aws_role_arn", self.aws_role_arn.is_some()),
            ("aws_role_arns", self.aws_role_arns.is_some()),
            ("aws_account_id", self.aws_account_id.is_some()),
            ("aws_ecr_registry_id", self.aws_ecr_registry_id.is_some()),
        ];
        let Some(region) = &self.aws_region else {
            return match given.iter().find(|(_, set)| *set) {
                Some((field, _)) => Err(SourceError::NoRegion { field }),
                None => Ok(()),
            };
        };
        let malformed = |field: &str, value: &str, expected| SourceError::Malformed {
            field: field.to_owned(),
            value: value.to_owned(),
            expected,
        };
        let region_ok = !region.is_empty()
            && region.len() <= 32
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !region_ok {
            return Err(malformed(
                "aws_region",
                region,
                "is not an AWS region (like us-east-1)",
            ));
        }
        check_credential_pair(
            self.aws_access_key_id.as_deref(),
            self.aws_secret_access_key.as_ref(),
            "aws_access_key_id",
            "aws_secret_access_key",
        )?;
        let has_key = self.aws_access_key_id.as_deref().is_some_and(|k| !k.is_empty());
        if self.aws_session_token.as_ref().is_some_and(|t| !t.is_empty()) && !has_key {
            return Err(SourceError::IncompleteCredentials {
                present: "aws_session_token",
                missing: "aws_access_key_id",
            });
        }
        if self.aws_role_arn.is_some() && self.aws_role_arns.is_some() {
            return Err(SourceError::Conflict {
                first: "aws_role_arn",
                second: "aws_role_arns",
                hint: ": give one role in aws_role_arn, or the chain in aws_role_arns",
            });
        }
        if self.username.as_deref().is_some_and(|u| !u.is_empty()) {
            return Err(SourceError::Conflict {
                first: "username",
                second: "aws_region",
                hint: ": with aws_region the registry credentials come from ECR",
            });
        }
        let roles = match (&self.aws_role_arn, &self.aws_role_arns) {
            (Some(one), _) => vec![("aws_role_arn".to_owned(), one)],
            (_, Some(many)) => many
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("aws_role_arns[{i}]"), r))
                .collect(),
            _ => Vec::new(),
        };
        for (field, arn) in roles {
            let ok = arn.starts_with("arn:") && arn.split(':').nth(5).is_some_and(|r| r.starts_with("role/"));
            if !ok {
                return Err(malformed(
                    &field,
                    arn,
                    "is not a role ARN (arn:aws:iam::<account>:role/<name>)",
                ));
            }
        }
        if let Some(id) = &self.aws_account_id {
            if id.len() != 12 || !id.chars().all(|c| c.is_ascii_digit()) {
                return Err(malformed(
                    "aws_account_id",
                    id,
                    "is not a 12-digit AWS account id",
                ));
            }
        }
        Ok(())
    }

    /// The parsed repository.
    ///
    /// # Errors
    /// When `repository` breaks the reference grammar.
    pub fn repository(&self) -> Result<Repository> {
        Repository::parse(&self.repository).map_err(|source| SourceError::Reference {
            field: "repository",
            source,
        })
    }

    /// The tag to track: `tag`, or `latest` when absent or empty.
    ///
    /// # Errors
    /// When `tag` is not a valid tag.
    pub fn tag(&self) -> Result<Tag> {
        let text = self
            .tag
            .as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or(DEFAULT_TAG);
        Tag::parse(text).map_err(|source| SourceError::Reference { field: "tag", source })
    }
}

/// A string field that is given and not empty (Go's zero value means "not set").
fn given(field: Option<&String>) -> Option<&str> {
    field.map(String::as_str).filter(|s| !s.is_empty())
}

/// A regex of `field`, in RE2 syntax as the `regex` crate reads it, within
/// [`REGEX_SIZE_LIMIT`].
///
/// # Errors
/// When it does not compile.
pub fn compile_regex(field: &'static str, pattern: &str) -> Result<regex::Regex> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| SourceError::Regex {
            field,
            value: pattern.chars().take(80).collect(),
            reason: match e {
                regex::Error::CompiledTooBig(limit) => format!("it compiles to more than {limit} bytes"),
                // the syntax error's last line says what is wrong (the lines above draw it)
                other => other
                    .to_string()
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_owned(),
            },
        })
}

/// Both halves of a user name/password pair, or neither.
fn check_credential_pair(
    user: Option<&str>,
    password: Option<&Secret>,
    user_field: &'static str,
    password_field: &'static str,
) -> Result<()> {
    check_pair(
        user.is_some_and(|u| !u.is_empty()),
        password.is_some_and(|p| !p.is_empty()),
        user_field,
        password_field,
    )
}

/// Fails when only one of two fields that go together is given.
fn check_pair(has_first: bool, has_second: bool, first: &'static str, second: &'static str) -> Result<()> {
    match (has_first, has_second) {
        (true, false) => Err(SourceError::IncompleteCredentials {
            present: first,
            missing: second,
        }),
        (false, true) => Err(SourceError::IncompleteCredentials {
            present: second,
            missing: first,
        }),
        _ => Ok(()),
    }
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
