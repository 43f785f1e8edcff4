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
use crate::reference::Repository;
use crate::registry::{self, Client, Scope};
use crate::retry::Backoff;
use crate::source::{Source, SourceError};
use crate::transport::{self, Options};

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
}

/// Opens the source's repository for `scope`.
///
/// # Errors
/// An invalid source, credentials that cannot be resolved, or a transport that cannot be
/// set up (a `ca_certs` entry that is not PEM).
pub async fn connect(source: &Source, scope: Scope, backoff: Backoff) -> Result<Remote, Error> {
    source.validate()?;
    let repository = source.repository()?;
    let options = options(source, backoff);
    let host = endpoint(&repository);
    let identity = auth::resolve(source, repository.registry());
    let origin = Client::new(repository, &host, identity, scope, &options).map_err(setting)?;
    if source.registry_mirror.is_some() && scope == Scope::Pull {
        tracing::warn!("source.registry_mirror is not used by this version yet; asking the origin registry");
    }
    Ok(Remote::new(origin, None))
}

/// Transport options of the source's registry.
fn options(source: &Source, backoff: Backoff) -> Options {
    Options {
        ca_certs: source.ca_certs.clone(),
        client_cert: None,
        insecure: source.insecure,
        backoff,
    }
}

/// Where to dial a repository's registry.
fn endpoint(repository: &Repository) -> String {
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
