//! Regex mode: every tag `tag_regex` matches (anywhere in the tag: anchor it with `^…$`)
//! that still names a manifest, as the Go resource does it: no cursor, no one-per-digest.
//!
//! Order: the registry's tag order; with `created_at_sort`, the image config's `created`
//! time, **oldest first** (newest last, where Concourse wants the newest). The Go
//! resource's README says "descending" but its code sorts this way; we follow the code.
//! Images without a readable `created` come first, in the registry's order. For an index
//! the time is that of the image for the source's platform.

use futures_util::{StreamExt, TryStreamExt};

use super::{digests_of, list_tags, DIGESTS_AT_ONCE};
use crate::connect::Remote;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{Document, ImageConfig, Platform};
use crate::reference::{describe, Tag, Target};
use crate::source::{CheckResponse, Version};

pub(super) async fn check(
    client: &Remote,
    regex: &regex::Regex,
    by_created: Option<Platform>,
) -> Result<CheckResponse> {
    let tags = list_tags(client).await?;
    let matching: Vec<String> = tags
        .iter()
        .filter(|t| regex.is_match(t) && Tag::parse(t).is_ok())
        .cloned()
        .collect();
    tracing::info!(
        "{} tags listed, {} match source.tag_regex",
        tags.len(),
        matching.len()
    );
    let Some(platform) = by_created else {
        let digests = digests_of(client, &matching).await?;
        return Ok(matching
            .into_iter()
            .zip(digests)
            .filter_map(|(tag, digest)| {
                Some(Version {
                    tag: Some(tag),
                    digest: digest?,
                })
            })
            .collect());
    };
    let dated: Vec<Option<(Digest, Option<i128>)>> = futures_util::stream::iter(&matching)
        .map(|tag| created(client, tag, &platform))
        .buffered(DIGESTS_AT_ONCE)
        .try_collect()
        .await?;
    let mut versions: Vec<(Option<i128>, Version)> = matching
        .into_iter()
        .zip(dated)
        .filter_map(|(tag, found)| {
            let (digest, time) = found?;
            Some((
                time,
                Version {
                    tag: Some(tag),
                    digest,
                },
            ))
        })
        .collect();
    // stable, and `None` sorts first
    versions.sort_by_key(|(time, _)| *time);
    Ok(versions.into_iter().map(|(_, v)| v).collect())
}

/// The digest `tag` names and its image's `created` time; `None` when the tag is gone.
async fn created(client: &Remote, tag: &str, platform: &Platform) -> Result<Option<(Digest, Option<i128>)>> {
    let Ok(parsed) = Tag::parse(tag) else {
        return Ok(None);
    };
    let target = Target::Tag(parsed);
    let failed = |target: &Target| {
        let image = describe(client.repository(), target);
        move |source| Error::Check { image, source }
    };
    let (bytes, digest) = match client.fetch_manifest(&target).await {
        Ok(found) => found,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(failed(&target)(e)),
    };
    let image = describe(client.repository(), &target);
    let unreadable = |why: &dyn std::fmt::Display| {
        tracing::warn!("{image}: {why}; its creation time is unknown, so it sorts first");
        Ok(Some((digest.clone(), None)))
    };
    let manifest = match Document::parse(&bytes) {
        Ok(Document::Manifest(m)) => m,
        Ok(Document::Index(index)) => {
            let child = match index.select(platform) {
                Ok(child) => Target::Digest(child.digest.clone()),
                Err(e) => return unreadable(&e),
            };
            let (bytes, _) = client.fetch_manifest(&child).await.map_err(failed(&child))?;
            match Document::parse(&bytes) {
                Ok(Document::Manifest(m)) => m,
                Ok(Document::Index(_)) => return unreadable(&"its image is an index inside an index"),
                Err(e) => return unreadable(&e),
            }
        }
        Err(e) => return unreadable(&e),
    };
    let config_target = Target::Digest(manifest.config.digest.clone());
    let config = client
        .fetch_blob(&manifest.config.digest)
        .await
        .map_err(failed(&config_target))?;
    let time = serde_json::from_slice::<ImageConfig>(&config)
        .ok()
        .and_then(|c| c.created)
        .and_then(|c| crate::time::parse_nanos(&c))
        .map(|(secs, nanos)| i128::from(secs) * 1_000_000_000 + i128::from(nanos));
    if time.is_none() {
        return unreadable(&"its config has no RFC 3339 `created` time");
    }
    Ok(Some((digest, time)))
}
