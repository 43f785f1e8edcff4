//! What can be known about a source without the network: `Source::validate`, the mode
//! `check` runs in (`Source::tracking`), and the checks of each group of fields.

use super::{Result, Source, SourceError, Tracking, REGEX_SIZE_LIMIT};
use crate::reference::{Repository, Tag, DEFAULT_TAG};
use crate::secret::Secret;

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
/// [`REGEX_SIZE_LIMIT`](super::REGEX_SIZE_LIMIT).
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
pub(super) fn check_credential_pair(
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
pub(super) fn check_pair(
    has_first: bool,
    has_second: bool,
    first: &'static str,
    second: &'static str,
) -> Result<()> {
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
