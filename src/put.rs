//! `out`: push the image file that `params.image` names, under the source tag and the
//! additional tags.
//!
//! Everything that can be checked before touching the registry is: the glob, every tag, the
//! archive's format and blobs. Then blobs the registry lacks are uploaded (a few at a time),
//! each manifest is PUT only once all its blobs exist, an index's children go up by digest
//! before the index, and the root manifest is PUT once per tag. With `content_trust`,
//! the signing is made ready (trust data verified, roles chosen) before the push and the
//! tags are signed after it; a failure either way fails the step.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::archive::{gzip_into, read_image, Blob, BlobData, PushPlan};
use crate::confine::{ConfineError, Dir};
use crate::connect::{self, connect};
use crate::error::{Error, Result};
use crate::notary::trust::{self, Signer};
use crate::progress::{human, Bar, Board};
use crate::reference::Tag;
use crate::registry::{Client, Scope};
use crate::retry::Backoff;
use crate::semver::Version as Semver;
use crate::source::{MetadataField, OutRequest, StepResponse, Version};

/// Blob uploads in flight at once.
const PARALLEL_UPLOADS: usize = 4;

/// The largest `additional_tags` file read (thousands of tags).
pub const TAGS_FILE_LIMIT: u64 = 64 * 1024;

/// Runs `out` for `request`, with paths relative to `src`.
///
/// # Errors
/// An invalid request, a glob matching zero or several files, an unreadable image, a tag
/// that is not valid, a registry failure.
pub async fn run(request: OutRequest, src: &Path, backoff: Backoff) -> Result<StepResponse> {
    let source = &request.source;
    source.validate()?;
    let params = &request.params;
    let version = pushed_version(params.version.as_deref(), source.variant())?;
    let sources = Dir::open(src).map_err(Error::Sources)?;
    let additional = additional_tags(&sources, params)?;
    let mut tags = leading_tags(source, version.as_ref(), &additional)?;
    if params.bump_aliases && version.is_none() {
        tracing::warn!(
            "params.bump_aliases is set without params.version: there is no version to move aliases to"
        );
    }
    let image_path = match_one(src, &sources, &request.params.image)?;
    tracing::info!("reading {}", image_path.display());
    let rel = image_path.strip_prefix(src).unwrap_or(&image_path).to_owned();
    // the tag that names the image in a layout listing several: the first to be pushed
    let tag_hint = tags
        .first()
        .or(additional.first())
        .map(ToString::to_string)
        .unwrap_or_default();
    let plan = tokio::task::spawn_blocking(move || read_image(&sources, &rel, &tag_hint))
        .await
        .map_err(|e| Error::Write {
            path: image_path.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| Error::Archive(Box::new(source)))?;

    let remote = connect(source, Scope::Push, backoff).await?;
    let client = remote.origin();
    let repository = remote.repository();
    if let (Some((semver, _)), true) = (&version, params.bump_aliases) {
        tags.extend(aliases(client, semver, source.variant()).await?);
    }
    tags.extend(additional);
    dedupe(&mut tags);
    let tag_list: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    let trust = prepare_trust(source, repository, &tag_list, &plan.root.bytes, backoff).await?;
    let pushing = |source| Error::Push {
        repository: repository.to_string(),
        source,
    };
    push_blobs(client, &plan, !source.debug).await.map_err(pushing)?;
    for child in &plan.children {
        client
            .put_manifest(child.digest.as_str(), &child.media_type, &child.bytes)
            .await
            .map_err(pushing)?;
    }
    for tag in &tags {
        let digest = client
            .put_manifest(tag.as_str(), &plan.root.media_type, &plan.root.bytes)
            .await
            .map_err(pushing)?;
        tracing::info!("pushed {repository}:{tag} ({digest})");
    }
    if let Some((signer, signing)) = &trust {
        sign(
            signer,
            signing,
            &plan,
            &format!("{repository}:{}", tag_list.join(",")),
        )
        .await?;
    }
    Ok(StepResponse {
        version: Version {
            tag: Some(tags[0].to_string()),
            digest: plan.root.digest.clone(),
        },
        metadata: vec![
            MetadataField {
                name: "repository".into(),
                value: source.repository.clone(),
            },
            MetadataField {
                name: "tags".into(),
                value: tag_list.join(" "),
            },
        ],
    })
}

/// Content trust made ready before anything is pushed: a key, server or repository that
/// cannot sign these tags fails the step with nothing pushed.
async fn prepare_trust(
    source: &crate::source::Source,
    repository: &crate::reference::Repository,
    tags: &[&str],
    manifest: &[u8],
    backoff: Backoff,
) -> Result<Option<(Signer, trust::Plan)>> {
    let Some(settings) = &source.content_trust else {
        return Ok(None);
    };
    let signer = connect::notary(source, settings, repository, backoff).await?;
    let signing = signer
        .prepare(tags, manifest, now())
        .await
        .map_err(|e| Error::TrustNotReady {
            tags: tags.join(" "),
            gun: signer.gun().to_owned(),
            server: signer.server(),
            source: Box::new(e),
        })?;
    tracing::info!(
        "will sign {} in {} on {} as {}",
        tags.join(" "),
        signer.gun(),
        signer.server(),
        signing.roles().join(" and ")
    );
    Ok(Some((signer, signing)))
}

/// Signs the pushed root manifest of `plan` under the tags `signing` holds; `image`
/// names what was pushed, for the messages.
async fn sign(signer: &Signer, signing: &trust::Plan, plan: &PushPlan, image: &str) -> Result<()> {
    signer
        .publish(signing, &plan.root.bytes, now())
        .await
        .map_err(|e| Error::Unsigned {
            image: image.to_owned(),
            digest: plan.root.digest.to_string(),
            gun: signer.gun().to_owned(),
            server: signer.server(),
            source: Box::new(e),
        })?;
    tracing::info!(
        "signed {} in {} ({})",
        signing.tags().join(" "),
        signer.gun(),
        signing.roles().join(", ")
    );
    Ok(())
}

/// The one path `pattern` (a glob relative to `src`, which may not climb out of it) matches.
/// A match reached through a symlink that leads out of `src` is refused, whatever else
/// matches.
fn match_one(src: &Path, sources: &Dir, pattern: &str) -> Result<PathBuf> {
    let climbs = Path::new(pattern)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if climbs {
        return Err(Error::Glob {
            pattern: pattern.to_owned(),
            reason: "it must name files inside the sources directory: no absolute path, no `..`".to_owned(),
        });
    }
    let full = format!("{}/{pattern}", glob::Pattern::escape(&src.to_string_lossy()));
    let options = glob::MatchOptions {
        require_literal_separator: true,
        ..glob::MatchOptions::new()
    };
    let bad = |reason: String| Error::Glob {
        pattern: pattern.to_owned(),
        reason,
    };
    let matches: Vec<PathBuf> = glob::glob_with(&full, options)
        .map_err(|e| bad(e.to_string()))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    for found in &matches {
        let rel = found.strip_prefix(src).unwrap_or(found);
        if let Err(e @ ConfineError::Outside { .. }) = sources.entry(rel) {
            return Err(Error::ImagePath(e));
        }
    }
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::NoMatch {
            pattern: pattern.to_owned(),
        }),
        several => Err(Error::SeveralMatches {
            pattern: pattern.to_owned(),
            matches: several
                .iter()
                .map(|p| p.strip_prefix(src).unwrap_or(p).display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The tags pushed before the aliases and the additional tags: `source.tag` (default
/// `latest`, but none with a version or a variant), then the version's.
fn leading_tags(
    source: &crate::source::Source,
    version: Option<&(Semver, Tag)>,
    additional: &[Tag],
) -> Result<Vec<Tag>> {
    let mut tags = Vec::new();
    match (&source.tag, version) {
        (Some(tag), _) if !tag.is_empty() => tags.push(source.tag()?),
        // a version push moves `latest` only through bump_aliases
        (_, Some(_)) => {}
        // with a variant, `latest` is not this source's: only what is asked for is pushed
        _ => match source.variant() {
            Some(variant) if additional.is_empty() => {
                return Err(Error::NothingToPush {
                    variant: variant.to_owned(),
                })
            }
            Some(_) => {}
            None => tags.push(source.tag()?),
        },
    }
    if let Some((_, tag)) = version {
        tags.push(tag.clone());
    }
    Ok(tags)
}

/// `params.version` as pushed: normalised (`v1.2` → `1.2.0`), `-<variant>` appended.
fn pushed_version(version: Option<&str>, variant: Option<&str>) -> Result<Option<(Semver, Tag)>> {
    let Some(text) = version.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let invalid = |reason| Error::InvalidVersion {
        version: text.to_owned(),
        reason,
    };
    let semver = Semver::parse(text)
        .ok_or_else(|| invalid("is not a semantic version (like 1.2.3, v1.2 or 1.2.3-rc.1)"))?;
    if !semver.build.is_empty() {
        return Err(invalid("has build metadata (+…), which a tag cannot hold"));
    }
    let name = match variant {
        Some(variant) => format!("{semver}-{variant}"),
        None => semver.to_string(),
    };
    let tag = Tag::parse(&name).map_err(|source| Error::VersionTag {
        version: text.to_owned(),
        tag: name.clone(),
        source,
    })?;
    Ok(Some((semver, tag)))
}

/// The additional tags, with `tag_prefix` put on each.
fn additional_tags(sources: &Dir, params: &crate::source::OutParams) -> Result<Vec<Tag>> {
    let tags = match &params.additional_tags {
        Some(file) => read_tags(sources, file)?,
        None => Vec::new(),
    };
    let Some(prefix) = params.tag_prefix.as_deref().filter(|p| !p.is_empty()) else {
        return Ok(tags);
    };
    if tags.is_empty() {
        return Err(Error::TagPrefixWithoutTags);
    }
    tags.iter()
        .map(|t| {
            let name = format!("{prefix}{t}");
            Tag::parse(&name).map_err(|source| Error::PrefixedTag {
                prefix: prefix.to_owned(),
                tag: name.clone(),
                source,
            })
        })
        .collect()
}

/// The aliases a release `version` moves: `latest` (or the variant), `MAJOR` and
/// `MAJOR.MINOR` (with `-<variant>`), each only when no release of the repository (of the
/// same variant) is newer within that line. A pre-release moves none.
async fn aliases(client: &Client, version: &Semver, variant: Option<&str>) -> Result<Vec<Tag>> {
    if version.is_prerelease() {
        tracing::info!("{version} is a pre-release: no aliases are moved");
        return Ok(Vec::new());
    }
    let listed = match client.list_tags().await {
        Ok(tags) => tags,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(source) => {
            return Err(Error::Aliases {
                repository: client.repository().to_string(),
                source,
            })
        }
    };
    let (mut latest, mut major, mut minor) = (true, true, true);
    for remote in crate::semver::releases(&listed, variant) {
        if remote.precedence(version) == std::cmp::Ordering::Greater {
            latest = false;
        }
        if remote.major == version.major && remote.minor > version.minor {
            major = false;
        }
        if remote.major == version.major && remote.minor == version.minor && remote.patch > version.patch {
            minor = false;
            major = false;
        }
    }
    let suffix = variant.map(|v| format!("-{v}")).unwrap_or_default();
    let names = [
        (latest, variant.unwrap_or("latest").to_owned()),
        (major, format!("{}{suffix}", version.major)),
        (minor, format!("{}.{}{suffix}", version.major, version.minor)),
    ];
    tracing::info!(
        "aliases of {version}{suffix}: {}",
        names
            .iter()
            .map(|(moved, name)| format!(
                "{name} {}",
                if *moved {
                    "moves"
                } else {
                    "stays (a newer release has it)"
                }
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(names
        .into_iter()
        .filter(|(moved, _)| *moved)
        .filter_map(|(_, name)| Tag::parse(&name).ok())
        .collect())
}

/// Each tag once, in the order first given.
fn dedupe(tags: &mut Vec<Tag>) {
    let mut seen = std::collections::HashSet::new();
    tags.retain(|t| seen.insert(t.to_string()));
}

/// The whitespace-separated tags of `file` (beneath `sources`), each validated.
fn read_tags(sources: &Dir, file: &str) -> Result<Vec<Tag>> {
    let bytes = sources
        .read(Path::new(file), TAGS_FILE_LIMIT)
        .map_err(Error::TagsFile)?;
    let path = sources.shown(Path::new(file));
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::TagsFile(crate::confine::ConfineError::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
        })
    })?;
    text.split_whitespace()
        .map(|t| {
            Tag::parse(t).map_err(|source| Error::AdditionalTag {
                path: path.clone(),
                source,
            })
        })
        .collect()
}

/// Uploads the blobs the registry lacks, a few at a time.
async fn push_blobs(
    client: &Client,
    plan: &PushPlan,
    draw: bool,
) -> std::result::Result<(), crate::registry::Error> {
    // One request first, alone, so the token is fetched once rather than by every upload.
    let mut missing = Vec::new();
    let mut blobs = plan.blobs.iter();
    if let Some(first) = blobs.next() {
        if !client.blob_exists(&first.digest).await? {
            missing.push(first);
        }
    }
    let rest: Vec<&Blob> = futures_util::stream::iter(blobs)
        .map(|b| async move {
            client
                .blob_exists(&b.digest)
                .await
                .map(|exists| (!exists).then_some(b))
        })
        .buffered(PARALLEL_UPLOADS)
        .try_filter_map(|b| async move { Ok(b) })
        .try_collect()
        .await?;
    missing.extend(rest);
    let present = plan.blobs.len() - missing.len();
    if present > 0 {
        tracing::info!(
            "{present} of {} blobs already in {}",
            plan.blobs.len(),
            client.repository()
        );
    }
    let count = missing.len();
    let board = Board::new(draw);
    futures_util::stream::iter(missing.into_iter().enumerate())
        .map(|(i, blob)| {
            upload(
                client,
                blob,
                board.bar(format!("blob {}/{count} {}", i + 1, short(blob)), blob.size),
            )
        })
        .buffer_unordered(PARALLEL_UPLOADS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

fn short(blob: &Blob) -> String {
    blob.digest.as_str().chars().take(19).collect()
}

async fn upload(client: &Client, blob: &Blob, bar: Bar) -> std::result::Result<(), crate::registry::Error> {
    let bar = Arc::new(bar);
    let body = {
        let bar = bar.clone();
        let data = blob.data.clone();
        move || body_of(&data, bar.clone())
    };
    client.upload_blob(&blob.digest, blob.size, &body).await?;
    bar.finish(blob.size, &human(blob.size));
    Ok(())
}

/// A fresh request body for a blob, counting bytes into the progress bar.
fn body_of(data: &BlobData, bar: Arc<Bar>) -> reqwest::Body {
    let sent = Arc::new(AtomicU64::new(0));
    let count = move |chunk: &Bytes| {
        let done = sent.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
        bar.update(done);
    };
    match data {
        BlobData::Bytes(bytes) => {
            // a small in-memory body (a config) goes in one piece
            let body = Bytes::from(bytes.clone());
            count(&body);
            reqwest::Body::from(body)
        }
        BlobData::Stored(loc) => {
            let loc = loc.clone();
            let stream = reader_stream(move |tx| {
                let mut reader = loc.open();
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = reader.read(&mut buf)?;
                    if n == 0 || tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return Ok(());
                    }
                }
            });
            reqwest::Body::wrap_stream(stream.inspect_ok(count))
        }
        BlobData::Gzip(loc) => {
            let loc = loc.clone();
            let stream = reader_stream(move |tx| gzip_into(&loc, ChannelWriter { tx }));
            reqwest::Body::wrap_stream(stream.inspect_ok(count))
        }
    }
}

type Chunk = std::io::Result<Bytes>;

/// Runs `produce` on a blocking thread and streams what it sends.
fn reader_stream(
    produce: impl FnOnce(&tokio::sync::mpsc::Sender<Chunk>) -> std::io::Result<()> + Send + 'static,
) -> impl futures_util::Stream<Item = Chunk> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(8);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = produce(&tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// A `Write` that sends what it is given down a channel, in chunks.
struct ChannelWriter<'a> {
    tx: &'a tokio::sync::mpsc::Sender<Chunk>,
}

impl std::io::Write for ChannelWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload ended"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Seconds since the epoch, for the expiry of trust data.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
