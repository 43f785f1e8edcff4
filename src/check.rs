//! `check`: the current digest of the source tag, with Concourse's cursor semantics.
//!
//! - tag missing → `[]`
//! - no cursor, or cursor equal to the current digest → `[current]`
//! - cursor different and still in the registry → `[cursor, current]`
//! - cursor different and gone → `[current]`

use crate::auth::{Credentials, Scope};
use crate::error::{Error, Result};
use crate::reference::{describe, Target};
use crate::registry::{Client, Options};
use crate::retry::Backoff;
use crate::source::{CheckRequest, CheckResponse, Source, Version};

/// Runs `check` for `request`, retrying transient failures under `backoff`.
///
/// # Errors
/// An invalid source, or a registry failure other than "tag not found".
pub async fn run(request: CheckRequest, backoff: Backoff) -> Result<CheckResponse> {
    let source = &request.source;
    source.validate()?;
    if source.registry_mirror.is_some() {
        tracing::warn!(
            "source.registry_mirror is not used by this version yet; checking the origin registry"
        );
    }
    let repository = source.repository()?;
    let tag = source.tag()?;
    let client = Client::new(
        repository,
        Credentials::resolve(source),
        Scope::Pull,
        &options(source, backoff),
    )?;
    let current_target = Target::Tag(tag.clone());
    let failed = |target: &Target| {
        let image = describe(client.repository(), target);
        move |source| Error::Check { image, source }
    };
    let Some(current) = client
        .resolve_digest(&current_target)
        .await
        .map_err(failed(&current_target))?
    else {
        tracing::info!("tag {} not found", describe(client.repository(), &current_target));
        return Ok(Vec::new());
    };
    let version = |digest| Version {
        tag: Some(tag.to_string()),
        digest,
    };
    let Some(cursor) = request.version.filter(|v| v.digest != current) else {
        return Ok(vec![version(current)]);
    };
    let cursor_target = Target::Digest(cursor.digest.clone());
    let still_there = client
        .resolve_digest(&cursor_target)
        .await
        .map_err(failed(&cursor_target))?
        .is_some();
    Ok(if still_there {
        vec![version(cursor.digest), version(current)]
    } else {
        vec![version(current)]
    })
}

/// Transport options of the source's registry.
pub(crate) fn options(source: &Source, backoff: Backoff) -> Options {
    Options {
        ca_certs: source.ca_certs.clone(),
        insecure: source.insecure,
        backoff,
    }
}
