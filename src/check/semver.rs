//! Semver mode: every tag that is a semantic version under the source's rules, oldest to
//! newest, each with its digest.
//!
//! 1. The tags are listed, a page per request; those that are versions under the rules
//!    (variant, constraint, pre-releases) are the candidates. Nothing else is asked yet.
//! 2. A cursor whose tag still names the cursor's digest is kept, and only newer
//!    candidates are resolved; otherwise all are. Digests come from HEAD requests,
//!    [`DIGESTS_AT_ONCE`](super::DIGESTS_AT_ONCE) at a time.
//! 3. Tags naming the same digest are one version: a release beats a pre-release, then
//!    the tag that spells more (`3.2.1` over `3.2`), then the first met (the cursor, then
//!    the registry's order).
//! 4. The bare tag (`latest`, or the variant) is a version only when no tag is: in a
//!    repository with versions it never appears, whatever its digest. The Go resource
//!    appends it whenever its digest is no version's, so a `latest` pushed a moment
//!    before its version tag, or re-pointed before a rebuilt version tag, became the
//!    newest "version" (its issues #316 and #351). With a constraint it never appears.

use std::cmp::Ordering;

use super::{digests_of, list_tags, resolve};
use crate::connect::Remote;
use crate::digest::Digest;
use crate::error::Result;
use crate::semver::{Rules, Version as Semver};
use crate::source::{CheckResponse, Version};

/// A candidate whose digest is known.
#[derive(Debug, Clone)]
struct Found {
    tag: String,
    version: Semver,
    digest: Digest,
}

pub(super) async fn check(client: &Remote, rules: &Rules, cursor: Option<&Version>) -> Result<CheckResponse> {
    let tags = list_tags(client).await?;
    let candidates: Vec<(&String, Semver)> = tags
        .iter()
        .filter_map(|tag| rules.version_of(tag).map(|v| (tag, v)))
        .collect();
    let mut found = Vec::new();
    let mut newer_than = None;
    let mut asked = 0;
    if let Some((tag, version, digest)) = cursor.and_then(|c| {
        let tag = c.tag.as_deref()?;
        let (_, version) = candidates.iter().find(|(t, _)| *t == tag)?;
        Some((tag, version, &c.digest))
    }) {
        asked += 1;
        match resolve(client, tag).await? {
            Some(now) if now == *digest => {
                newer_than = Some(version.clone());
                found.push(Found {
                    tag: tag.to_owned(),
                    version: version.clone(),
                    digest: now,
                });
            }
            now => tracing::info!(
                "cursor {tag} now names {}, not {digest}: every version is listed",
                now.map_or_else(|| "nothing".to_owned(), |d| d.to_string())
            ),
        }
    }
    let cursor_tag = found.first().map(|f| f.tag.clone());
    let needed: Vec<&(&String, Semver)> = candidates
        .iter()
        .filter(|(tag, version)| {
            Some(tag.as_str()) != cursor_tag.as_deref()
                && newer_than
                    .as_ref()
                    .is_none_or(|cursor| version.precedence(cursor) == Ordering::Greater)
        })
        .collect();
    let names: Vec<String> = needed.iter().map(|(tag, _)| (*tag).clone()).collect();
    asked += names.len();
    for ((tag, version), digest) in needed.iter().zip(digests_of(client, &names).await?) {
        if let Some(digest) = digest {
            found.push(Found {
                tag: (*tag).clone(),
                version: version.clone(),
                digest,
            });
        }
    }
    let mut versions = choose(found);
    if versions.is_empty() && rules.constraint.is_none() && tags.iter().any(|t| t == rules.bare()) {
        asked += 1;
        if let Some(digest) = resolve(client, rules.bare()).await? {
            versions.push(Version {
                tag: Some(rules.bare().to_owned()),
                digest,
            });
        }
    }
    tracing::info!(
        "{} tags listed, {} of them versions under the source's rules; {asked} digests asked for; {} versions",
        tags.len(),
        candidates.len(),
        versions.len()
    );
    Ok(versions)
}

/// One version per digest, oldest first (see the module's rule 3).
fn choose(found: Vec<Found>) -> Vec<Version> {
    let mut kept: Vec<Found> = Vec::new();
    for candidate in found {
        match kept.iter_mut().find(|k| k.digest == candidate.digest) {
            Some(existing) if better(&candidate, existing) => *existing = candidate,
            Some(_) => {}
            None => kept.push(candidate),
        }
    }
    // stable: versions of equal precedence (`1.2` and `1.2.0`) keep the order they were met in
    kept.sort_by(|a, b| a.version.precedence(&b.version));
    kept.into_iter()
        .map(|f| Version {
            tag: Some(f.tag),
            digest: f.digest,
        })
        .collect()
}

/// Whether `candidate` should stand for a digest instead of `existing`.
fn better(candidate: &Found, existing: &Found) -> bool {
    match (
        candidate.version.is_prerelease(),
        existing.version.is_prerelease(),
    ) {
        (false, true) => true,
        (true, false) => false,
        _ => dots(&candidate.tag) > dots(&existing.tag),
    }
}

fn dots(tag: &str) -> usize {
    tag.matches('.').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(tag: &str, digest: u8) -> Found {
        Found {
            tag: tag.to_owned(),
            version: Semver::parse(tag).unwrap(),
            digest: Digest::sha256(&[digest]),
        }
    }

    fn tags(versions: &[Version]) -> Vec<&str> {
        versions.iter().map(|v| v.tag.as_deref().unwrap()).collect()
    }

    #[test]
    fn one_version_per_digest_the_most_spelled_release() {
        let chosen = choose(vec![
            found("1", 1),
            found("2", 2),
            found("2.1", 2),
            found("3", 3),
            found("3.2", 3),
            found("3.2.1", 3),
            found("3.1", 4),
            found("3.1.0", 4),
            found("3.0", 5),
            found("3.0.0", 5),
        ]);
        assert_eq!(tags(&chosen), ["1", "2.1", "3.0.0", "3.1.0", "3.2.1"]);
        let chosen = choose(vec![
            found("1.0.0-rc.1", 2),
            found("1.0.0-rc1", 2),
            found("1.0.0", 2),
            found("1.0.0-rc", 2),
        ]);
        assert_eq!(tags(&chosen), ["1.0.0"]);
        // equal spelling: the first met stays
        let chosen = choose(vec![found("1.0.1", 7), found("1.0.2", 7)]);
        assert_eq!(tags(&chosen), ["1.0.1"]);
    }
}
