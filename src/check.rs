//! `check`: the current digest of the source tag, with Concourse's cursor semantics.
//!
//! - tag missing → `[]`
//! - no cursor, or cursor equal to the current digest → `[current]`
//! - cursor different and still in the registry → `[cursor, current]`
//! - cursor different and gone → `[current]`

use crate::connect::connect;
use crate::error::{Error, Result};
use crate::reference::{describe, Target};
use crate::registry::Scope;
use crate::retry::Backoff;
use crate::source::{CheckRequest, CheckResponse, Version};

/// Runs `check` for `request`, retrying transient failures under `backoff`.
///
/// # Errors
/// An invalid source, or a registry failure other than "tag not found".
pub async fn run(request: CheckRequest, backoff: Backoff) -> Result<CheckResponse> {
    let source = &request.source;
    let client = connect(source, Scope::Pull, backoff).await?;
    let tag = source.tag()?;
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
