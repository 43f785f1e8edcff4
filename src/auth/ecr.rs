//! ECR: from AWS credentials to registry credentials and the registry's host.
//!
//! 1. AWS credentials: `aws_access_key_id` + `aws_secret_access_key` (+ `aws_session_token`),
//!    else the SDK's default chain (environment, profile files, web identity, container and
//!    instance metadata).
//! 2. `aws_role_arn`, or each of `aws_role_arns` in order: STS `AssumeRole` with the
//!    credentials so far, as session [`SESSION_NAME`].
//! 3. ECR `GetAuthorizationToken`: base64 of `AWS:<password>`, and the proxy endpoint.
//!
//! The SDK's own endpoint settings apply (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_ECR`,
//! `AWS_ENDPOINT_URL_STS`), and every call is bounded by the timeouts below. Messages are
//! the SDK errors' `Display` chains, never their `Debug` (which can hold response bodies),
//! with every AWS secret known here scrubbed out in case a server echoed one back.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::config::{Credentials as AwsCredentials, ProvideCredentials, SharedCredentialsProvider};
use base64::Engine as _;

use super::Error;
use crate::secret::Secret;
use crate::source::Source;

/// The `RoleSessionName` of every `AssumeRole`: what `CloudTrail` shows as the caller.
pub const SESSION_NAME: &str = "concourse-registry-image-resource";
/// Connecting to an AWS endpoint.
pub const AWS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One attempt at an AWS call.
pub const AWS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// One AWS call, all attempts and back-off included.
pub const AWS_OPERATION_TIMEOUT: Duration = Duration::from_secs(40);
/// Attempts at one AWS call (the SDK's standard retry mode).
pub const AWS_MAX_ATTEMPTS: u32 = 3;

/// What ECR gave: the password for user `AWS`, and its registry host.
pub struct Login {
    /// The registry password.
    pub password: Secret,
    /// `proxyEndpoint`'s host.
    pub proxy_host: String,
}

/// An SDK failure as one line, with `secrets` scrubbed out.
fn describe(error: &(dyn std::error::Error + 'static), secrets: &[String]) -> String {
    // some SDK messages are lists over several lines ("Attempted:\n  Environment: …")
    let fold = |e: &dyn std::error::Error| {
        let mut line = String::new();
        for part in e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !line.is_empty() {
                line.push_str(if line.ends_with(':') { " " } else { "; " });
            }
            line.push_str(part);
        }
        line
    };
    let mut text = fold(error);
    let mut cause = error.source();
    while let Some(e) = cause {
        let more = fold(e);
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret.as_str(), "<redacted>");
    }
    text
}

/// Logs in to ECR in `region` as the source says.
///
/// # Errors
/// Each step names itself: loading credentials, `AssumeRole` (with the role ARN),
/// `GetAuthorizationToken` (with the region), a token that does not decode.
pub async fn login(source: &Source, region: &str) -> Result<Login, Error> {
    let mut secrets: Vec<String> = [&source.aws_secret_access_key, &source.aws_session_token]
        .into_iter()
        .flatten()
        .map(|s| s.expose().to_owned())
        .collect();
    let mut config = base_config(source, region).await;
    let provider = config
        .credentials_provider()
        .ok_or_else(|| Error::AwsCredentials {
            region: region.to_owned(),
            cause: "the SDK has no credential provider".to_owned(),
        })?;
    let first = provider
        .provide_credentials()
        .await
        .map_err(|e| Error::AwsCredentials {
            region: region.to_owned(),
            cause: describe(&e, &secrets),
        })?;
    secrets.extend(secrets_of(&first));
    tracing::debug!(
        "AWS credentials for {region}: access key {}",
        first.access_key_id()
    );
    for arn in source.aws_roles() {
        let assumed = AssumeRoleProvider::builder(&arn)
            .session_name(SESSION_NAME)
            .configure(&config)
            .build()
            .await
            .provide_credentials()
            .await
            .map_err(|e| Error::AssumeRole {
                arn: arn.clone(),
                cause: describe(&e, &secrets),
            })?;
        secrets.extend(secrets_of(&assumed));
        tracing::debug!("assumed {arn}: access key {}", assumed.access_key_id());
        config = config
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(assumed))
            .build();
    }
    let failed = |cause: String| Error::AuthorizationToken {
        region: region.to_owned(),
        cause,
    };
    let answer = aws_sdk_ecr::Client::new(&config)
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| failed(describe(&e, &secrets)))?;
    let data = answer
        .authorization_data()
        .first()
        .ok_or_else(|| failed("the answer holds no authorizationData".to_owned()))?;
    let token = data
        .authorization_token()
        .ok_or_else(|| failed("the answer holds no authorizationToken".to_owned()))?;
    let password = decode_token(token)
        .ok_or_else(|| failed("authorizationToken is not base64 of AWS:<password>".to_owned()))?;
    let proxy_host = data.proxy_endpoint().map(endpoint_host).unwrap_or_default();
    Ok(Login { password, proxy_host })
}

/// The SDK's configuration: region, timeouts, retries, and static credentials if given.
async fn base_config(source: &Source, region: &str) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(AWS_CONNECT_TIMEOUT)
        .operation_attempt_timeout(AWS_ATTEMPT_TIMEOUT)
        .operation_timeout(AWS_OPERATION_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(AWS_MAX_ATTEMPTS));
    if let (Some(id), Some(secret)) = (&source.aws_access_key_id, &source.aws_secret_access_key) {
        if !id.is_empty() && !secret.is_empty() {
            loader = loader.credentials_provider(AwsCredentials::new(
                id,
                secret.expose(),
                source
                    .aws_session_token
                    .as_ref()
                    .filter(|t| !t.is_empty())
                    .map(|t| t.expose().to_owned()),
                None,
                "source.aws_access_key_id",
            ));
        }
    }
    loader.load().await
}

fn secrets_of(credentials: &AwsCredentials) -> Vec<String> {
    let mut found = vec![credentials.secret_access_key().to_owned()];
    found.extend(credentials.session_token().map(str::to_owned));
    found
}

/// The password in base64 `AWS:<password>`.
fn decode_token(token: &str) -> Option<Secret> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    (user == "AWS" && !password.is_empty()).then(|| Secret::new(password))
}

/// `https://host[:port][/…]` → `host[:port]`.
fn endpoint_host(endpoint: &str) -> String {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .unwrap_or(endpoint);
    rest.split('/').next().unwrap_or_default().to_owned()
}

/// The host of an account's ECR registry in `region`.
#[must_use]
pub fn account_host(account: &str, region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_endpoints() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:pa55:word");
        assert_eq!(decode_token(&token).unwrap().expose(), "pa55:word");
        let wrong_user = base64::engine::general_purpose::STANDARD.encode("bob:pw");
        assert!(decode_token(&wrong_user).is_none());
        assert!(decode_token("not base64!").is_none());
        assert_eq!(
            endpoint_host("https://123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(endpoint_host("https://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(
            account_host("123456789012", "eu-west-1"),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            account_host("123456789012", "cn-north-1"),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let e = std::io::Error::other("denied for key wJalrXUtnFEMI and token FQoGZXIv");
        let line = describe(&e, &["wJalrXUtnFEMI".into(), "FQoGZXIv".into()]);
        assert_eq!(line, "denied for key <redacted> and token <redacted>");
    }
}
