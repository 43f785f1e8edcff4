//! The connection seam: the one way from a `Source` to a registry.
//!
//! [`connect`] turns a source and a scope into a ready [`Remote`]: the repository (after
//! ECR has said which host it is on), the endpoint to dial, the identity to present
//! (`auth`: the source's user name and password, ECR, or a docker config), the transport
//! options (`ca_certs`, `insecure`, the retry policy) and, for pulls of Docker Hub
//! repositories, the mirror to ask first. The steps call nothing else to reach a
//! registry; below this module nothing knows Concourse's field names.

mod remote;

pub use self::remote::{Remote, RemoteError};
use crate::auth;
use crate::notary::{self, trust::Signer};
use crate::reference::{Repository, DOCKER_HUB};
use crate::registry::{self, Client, Scope};
use crate::retry::Backoff;
use crate::source::{ContentTrust, RegistryMirror, Source, SourceError};
use crate::transport::{self, ClientCert, Identity, Options};

/// Why a source could not be turned into a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source is not valid.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A source setting the transport cannot use (`source.ca_certs[0]`).
    #[error("{field}")]
    Setting {
        /// The field, e.g. `source.ca_certs[0]`.
        field: String,
        /// What is wrong with it.
        #[source]
        source: transport::Error,
    },
    /// The client could not be set up.
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// Credentials could not be resolved.
    #[error(transparent)]
    Auth(#[from] auth::Error),
    /// `content_trust.repository_key` cannot be used.
    #[error("source.content_trust.repository_key")]
    TrustKey(#[source] notary::key::KeyError),
}

/// Environment variable naming the host to dial for Docker Hub repositories instead of
/// `index.docker.io`, read by debug builds only. It exists for the test suite, which stands
/// a local registry in for Docker Hub to test the mirror's fallback; the repository's name,
/// its files and its credentials stay Docker Hub's.
pub const DOCKER_HUB_ENDPOINT_VAR: &str = "REGISTRY_IMAGE_DOCKER_HUB_ENDPOINT";

/// The most a mirror's failures are retried before the origin is asked: a sick mirror
/// should cost seconds, not the whole retry budget, for every blob.
pub const MIRROR_RETRY_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the source's repository for `scope`: ECR first if `aws_region` is set; for pulls
/// of Docker Hub repositories, the mirror too.
///
/// # Errors
/// An invalid source, credentials that cannot be resolved (ECR, a credential helper), or
/// a transport that cannot be set up (a `ca_certs` entry that is not PEM).
pub async fn connect(source: &Source, scope: Scope, backoff: Backoff) -> Result<Remote, Error> {
    source.validate()?;
    let options = options(source, backoff);
    let (repository, identity) = if let Some(region) = &source.aws_region {
        ecr_repository(source, region).await?
    } else {
        let repository = source.repository()?;
        let identity = auth::resolve(
            source.username.as_deref(),
            source.password.as_ref(),
            "source.username and source.password",
            repository.registry(),
        )
        .await?;
        (repository, identity)
    };
    let mirror = match (&source.registry_mirror, scope) {
        (Some(mirror), Scope::Pull) if repository.registry() == DOCKER_HUB && !source.uses_ecr() => {
            // a mirror that cannot even be set up (its credential helper fails) is skipped
            // like one that fails later; a malformed registry_mirror.host was refused by
            // validation already
            match mirror_client(mirror, &repository, &options).await {
                Ok(client) => Some(client),
                Err(e) => {
                    tracing::warn!(
                        "not using mirror {}: {}; asking the origin",
                        mirror.host,
                        remote::chain(&e)
                    );
                    None
                }
            }
        }
        (Some(_), Scope::Pull) => {
            tracing::debug!(
                "{} is not on Docker Hub: source.registry_mirror is not used",
                repository.registry()
            );
            None
        }
        _ => None,
    };
    let host = endpoint(&repository);
    let origin = Client::new(repository, &host, identity, scope, &options).map_err(setting)?;
    Ok(Remote::new(origin, mirror))
}

/// The Docker Hub notary server, for Docker Hub repositories without `content_trust.server`.
pub const DOCKER_HUB_NOTARY: &str = "notary.docker.io";

/// The signer `source.content_trust` asks for, for `repository` (as [`connect`] resolved
/// it): the key read and decrypted, the server (`content_trust.server`, else Docker Hub's
/// for Hub repositories, else the registry's own host), the GUN (`docker.io/<path>` on
/// Docker Hub, else `<registry host>/<path>`), and the credentials for its token service
/// (`content_trust.username`/`password`, else the source's, else the docker config's for
/// the notary host).
///
/// # Errors
/// A key that cannot be read or decrypted, credentials that cannot be resolved, or a CA or
/// client certificate that does not parse.
pub async fn notary(
    source: &Source,
    trust: &ContentTrust,
    repository: &Repository,
    backoff: Backoff,
) -> Result<Signer, Error> {
    let key = notary::key::SigningKey::from_pem(&trust.repository_key, trust.repository_passphrase.as_ref())
        .map_err(Error::TrustKey)?;
    let (host, gun) = notary_endpoint(trust, repository)?;
    let own = trust.username.as_deref().is_some_and(|u| !u.is_empty());
    let identity = if own {
        auth::resolve(
            trust.username.as_deref(),
            trust.password.as_ref(),
            "source.content_trust.username and password",
            &host,
        )
        .await?
    } else {
        auth::resolve(
            source.username.as_deref(),
            source.password.as_ref(),
            "source.username and source.password",
            &host,
        )
        .await?
    };
    let client_cert = match (&trust.tls_cert, &trust.tls_key) {
        (Some(cert), Some(key)) if !cert.trim().is_empty() && !key.is_empty() => Some(ClientCert {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let options = Options {
        client_cert,
        https_only: true,
        ..options(source, backoff)
    };
    let client = notary::client::Client::new(&host, &gun, &trust.actions()?, identity, &options).map_err(
        |source| match source {
            transport::Error::CaCert { index, .. } | transport::Error::NoCaCert { index } => Error::Setting {
                field: format!("source.ca_certs[{index}]"),
                source,
            },
            source => Error::Setting {
                field: "source.content_trust.tls_cert and tls_key".to_owned(),
                source,
            },
        },
    )?;
    tracing::debug!("signing as key {} in {gun} on https://{host}", key.key_id());
    Ok(Signer::new(client, key, &trust.repository_key_id))
}

/// The notary server's `host[:port]` and the GUN for `repository`.
fn notary_endpoint(trust: &ContentTrust, repository: &Repository) -> Result<(String, String), SourceError> {
    let on_hub = repository.registry() == DOCKER_HUB;
    let host = match trust.server_host()? {
        Some(host) => host,
        None if on_hub => DOCKER_HUB_NOTARY.to_owned(),
        None => repository.registry().to_owned(),
    };
    let gun = if on_hub {
        format!("docker.io/{}", repository.path())
    } else {
        format!("{}/{}", repository.registry(), repository.path())
    };
    Ok((host, gun))
}

/// ECR's login, and the repository on the host it decides: `source.repository`'s own
/// host, else `aws_account_id`'s registry, else the token's proxy endpoint.
async fn ecr_repository(source: &Source, region: &str) -> Result<(Repository, Identity), Error> {
    if source.aws_ecr_registry_id.is_some() {
        tracing::warn!("source.aws_ecr_registry_id is deprecated and ignored: ECR's token is valid for every registry the credentials may use");
    }
    let login = auth::ecr::login(source, region).await?;
    let host = match &source.aws_account_id {
        _ if Repository::names_host(&source.repository) => String::new(),
        Some(account) => auth::ecr::account_host(account, region),
        None if login.proxy_host.is_empty() => {
            return Err(auth::Error::NoEcrHost {
                region: region.to_owned(),
            }
            .into())
        }
        None => login.proxy_host.clone(),
    };
    let repository = if host.is_empty() {
        source.repository()?
    } else {
        Repository::parse_on(&source.repository, &host).map_err(|source| SourceError::Reference {
            field: "repository",
            source,
        })?
    };
    tracing::debug!("ECR repository {repository}");
    Ok((repository, auth::ecr_identity(login, region)))
}

/// The mirror's client for `repository` (a Docker Hub one): the same path on the
/// mirror's host, with the mirror's own credentials (else the docker config's for it).
async fn mirror_client(
    mirror: &RegistryMirror,
    repository: &Repository,
    options: &Options,
) -> Result<Client, Error> {
    let (host, plain) = mirror.endpoint()?;
    let on_mirror = repository.on(&host).map_err(|source| SourceError::Reference {
        field: "registry_mirror.host",
        source,
    })?;
    let identity = auth::resolve(
        mirror.username.as_deref(),
        mirror.password.as_ref(),
        "source.registry_mirror.username and password",
        &host,
    )
    .await?;
    let options = Options {
        insecure: options.insecure || plain,
        backoff: Backoff {
            max_elapsed: options.backoff.max_elapsed.min(MIRROR_RETRY_BUDGET),
            ..options.backoff
        },
        ..options.clone()
    };
    tracing::debug!("asking mirror {host} first for {repository}");
    Client::new(on_mirror, &host, identity, Scope::Pull, &options).map_err(setting)
}

/// Transport options of the source's registry.
fn options(source: &Source, backoff: Backoff) -> Options {
    Options {
        ca_certs: source.ca_certs.clone(),
        client_cert: None,
        insecure: source.insecure,
        https_only: false,
        backoff,
    }
}

/// Where to dial a repository's registry: its host, except that Docker Hub may be stood
/// in for (see [`DOCKER_HUB_ENDPOINT_VAR`]).
fn endpoint(repository: &Repository) -> String {
    if repository.registry() == DOCKER_HUB {
        if let Some(host) = std::env::var(DOCKER_HUB_ENDPOINT_VAR)
            .ok()
            .filter(|h| !h.is_empty())
        {
            return host;
        }
    }
    repository.registry().to_owned()
}

/// Names the source field behind a transport setup failure.
fn setting(error: registry::Error) -> Error {
    match error {
        registry::Error::Http(
            source @ (transport::Error::CaCert { index, .. } | transport::Error::NoCaCert { index }),
        ) => Error::Setting {
            field: format!("source.ca_certs[{index}]"),
            source,
        },
        other => Error::Registry(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(server: Option<&str>) -> ContentTrust {
        serde_json::from_value(serde_json::json!({
            "server": server,
            "repository_key_id": "ab",
            "repository_key": "k",
        }))
        .unwrap()
    }

    #[test]
    fn notary_server_and_gun() {
        let cases = [
            ("busybox", None, "notary.docker.io", "docker.io/library/busybox"),
            (
                "docker.io/team/app",
                None,
                "notary.docker.io",
                "docker.io/team/app",
            ),
            (
                "index.docker.io/team/app",
                Some("https://notary.example:4443/"),
                "notary.example:4443",
                "docker.io/team/app",
            ),
            (
                "registry.example.com/team/app",
                None,
                "registry.example.com",
                "registry.example.com/team/app",
            ),
            (
                "127.0.0.1:5000/app",
                Some("https://127.0.0.1:4443"),
                "127.0.0.1:4443",
                "127.0.0.1:5000/app",
            ),
        ];
        for (repository, server, host, gun) in cases {
            let repo = Repository::parse(repository).unwrap();
            assert_eq!(
                notary_endpoint(&trust(server), &repo).unwrap(),
                (host.to_owned(), gun.to_owned()),
                "{repository}"
            );
        }
        for bad in [
            "http://notary.example",
            "notary.example",
            "https://notary.example/path",
            "https://",
        ] {
            let repo = Repository::parse("busybox").unwrap();
            assert!(notary_endpoint(&trust(Some(bad)), &repo).is_err(), "{bad}");
        }
    }
}
