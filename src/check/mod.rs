//! `check`: the versions of what the source tracks, with Concourse's cursor semantics.
//!
//! One tag (`source.tag`, default `latest`):
//! - tag missing → `[]`
//! - no cursor, or cursor equal to the current digest → `[current]`
//! - cursor different and still in the registry → `[cursor, current]`
//! - cursor different and gone → `[current]`
//!
//! Semver tags (`tag` left out, a semver option given): see [`semver`]. Tags a regex
//! matches (`tag_regex`): see [`regex`].

mod regex;
mod semver;

use futures_util::{StreamExt, TryStreamExt};

use crate::connect::{connect, Remote, RemoteError};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::{describe, Tag, Target};
use crate::registry::Scope;
use crate::retry::Backoff;
use crate::source::{CheckRequest, CheckResponse, Source, Tracking, Version};

/// Tags whose digests are asked for at once (HEAD requests) in semver and regex mode.
pub const DIGESTS_AT_ONCE: usize = 8;

/// Runs `check` for `request`, retrying transient failures under `backoff`.
///
/// # Errors
/// An invalid source, or a registry failure other than "tag not found".
pub async fn run(request: CheckRequest, backoff: Backoff) -> Result<CheckResponse> {
    let source = &request.source;
    let tracking = source.tracking()?;
    if source.created_at_sort == Some(true) && !matches!(tracking, Tracking::Regex { .. }) {
        tracing::warn!("source.created_at_sort is set without source.tag_regex, so it is ignored");
    }
    let client = connect(source, Scope::Pull, backoff).await?;
    match tracking {
        Tracking::Tag(tag) => one_tag(&client, source, tag, request.version).await,
        Tracking::Semver(rules) => semver::check(&client, &rules, request.version.as_ref()).await,
        Tracking::Regex { regex, by_created } => {
            let ignored = source.semver_options();
            if !ignored.is_empty() {
                tracing::warn!(
                    "source.tag_regex is set, so {} {} ignored, as in the Go resource",
                    ignored.join(", "),
                    if ignored.len() == 1 { "is" } else { "are" }
                );
            }
            regex::check(&client, &regex, by_created.then(|| request_platform(source))).await
        }
    }
}

/// The platform whose image's `created` time orders an index in regex mode.
fn request_platform(source: &Source) -> crate::manifest::Platform {
    let p = source.platform.clone().unwrap_or_default();
    crate::manifest::Platform::from_parts(p.os.as_deref(), p.architecture.as_deref(), p.variant.as_deref())
}

async fn one_tag(
    client: &Remote,
    source: &Source,
    tag: Tag,
    cursor: Option<Version>,
) -> Result<CheckResponse> {
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
        if source.tag.as_deref().is_none_or(str::is_empty) {
            tracing::info!(
                "source.tag is left out, so `latest` is tracked; to track semver tags instead, \
                 also give one of variant, semver_constraint, pre_releases (false will do) or \
                 pre_release_prefixes; to track the tags a regex matches, give tag_regex"
            );
        }
        return Ok(Vec::new());
    };
    let version = |digest| Version {
        tag: Some(tag.to_string()),
        digest,
    };
    let Some(cursor) = cursor.filter(|v| v.digest != current) else {
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

/// Every tag of the repository; a repository the registry does not know has none.
async fn list_tags(client: &Remote) -> Result<Vec<String>> {
    match client.list_tags().await {
        Ok(tags) => Ok(tags),
        Err(e) if e.is_not_found() => {
            tracing::info!("repository {} not found", client.repository());
            Ok(Vec::new())
        }
        Err(source) => Err(Error::Check {
            image: format!("tags of {}", client.repository()),
            source,
        }),
    }
}

/// The digest of each tag (`None` where the registry no longer knows it), in the order
/// given, at most [`DIGESTS_AT_ONCE`] asked at a time.
async fn digests_of(client: &Remote, tags: &[String]) -> Result<Vec<Option<Digest>>> {
    futures_util::stream::iter(tags)
        .map(|tag| resolve(client, tag))
        .buffered(DIGESTS_AT_ONCE)
        .try_collect()
        .await
}

/// The digest a listed tag names now.
async fn resolve(client: &Remote, tag: &str) -> Result<Option<Digest>> {
    // a listed name that is not a tag cannot be asked for, nor pinned by a pipeline
    let Ok(parsed) = Tag::parse(tag) else {
        tracing::debug!("skipping listed tag {tag:?}: not a valid tag");
        return Ok(None);
    };
    let target = Target::Tag(parsed);
    client
        .resolve_digest(&target)
        .await
        .map_err(|source: RemoteError| Error::Check {
            image: describe(client.repository(), &target),
            source,
        })
}
