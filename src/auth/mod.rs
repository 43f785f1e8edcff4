//! Resolving credentials: which identity to present to a registry host, from the source.
//!
//! Auth resolves; the transport applies (the challenge and token dance). This is part of
//! the connection seam, the one place below the steps that knows the source's field
//! names, and it names them in its messages.
//!
//! In order: the source's `username`/`password` (or the mirror's own); with `aws_region`,
//! ECR (`ecr`); otherwise the docker config keychain (`keychain`); otherwise nobody.

pub mod ecr;
pub mod keychain;

use crate::credentials::Credentials;
use crate::secret::Secret;
use crate::transport::Identity;

/// Why credentials could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No AWS credentials, from the source or the SDK's default chain.
    #[error("ECR: load AWS credentials for region {region} (from source.aws_access_key_id and source.aws_secret_access_key, else the AWS default chain): {cause}")]
    AwsCredentials {
        /// `source.aws_region`.
        region: String,
        /// The SDK's explanation, scrubbed of secrets.
        cause: String,
    },
    /// STS refused or failed to assume a role.
    #[error("ECR: STS AssumeRole {arn}: {cause}")]
    AssumeRole {
        /// The role.
        arn: String,
        /// The SDK's explanation, scrubbed of secrets.
        cause: String,
    },
    /// ECR refused or failed to give a token.
    #[error("ECR: GetAuthorizationToken in {region}: {cause}")]
    AuthorizationToken {
        /// `source.aws_region`.
        region: String,
        /// The SDK's explanation, scrubbed of secrets.
        cause: String,
    },
    /// ECR gave no registry host and the source names none.
    #[error("ECR: GetAuthorizationToken in {region} gave no proxyEndpoint; set source.aws_account_id or put the registry host in source.repository")]
    NoEcrHost {
        /// `source.aws_region`.
        region: String,
    },
    /// A credential helper that cannot be run or fails.
    #[error("credential helper {helper} for {host}: {reason}")]
    Helper {
        /// `docker-credential-<name>`.
        helper: String,
        /// The registry host asked about.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// A docker config entry that cannot be used.
    #[error("docker config {path}, entry for {host}: {reason}")]
    DockerConfig {
        /// The config file.
        path: String,
        /// The registry host.
        host: String,
        /// What is wrong.
        reason: String,
    },
}

/// The identity for `host` given `username`/`password` fields (named `fields` in
/// messages, e.g. `source.username and source.password`), else the docker config's, else
/// nobody.
///
/// # Errors
/// A credential helper that fails.
pub async fn resolve(
    username: Option<&str>,
    password: Option<&Secret>,
    fields: &str,
    host: &str,
) -> Result<Identity, Error> {
    let credentials = Credentials::basic(username, password);
    if !credentials.is_anonymous() {
        return Ok(Identity {
            credentials,
            origin: fields.to_owned(),
        });
    }
    if let Some(found) = keychain::find(host).await? {
        tracing::debug!("credentials for {host} from {}", found.origin);
        return Ok(Identity {
            credentials: found.credentials,
            origin: found.origin,
        });
    }
    Ok(Identity::anonymous(format!(
        "{fields} are not set and no docker config has credentials for {host}"
    )))
}

/// The identity ECR gave.
#[must_use]
pub fn ecr_identity(login: ecr::Login, region: &str) -> Identity {
    Identity {
        credentials: Credentials::Basic {
            username: "AWS".to_owned(),
            password: login.password,
        },
        origin: format!("ECR GetAuthorizationToken in {region}"),
    }
}
