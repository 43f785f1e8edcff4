//! `in`: fetch the version's image into the destination directory.
//!
//! manifest by digest (verified) → the platform's child if it is an index → config →
//! layers, each streamed from the registry through digest verification and decompression
//! into the rootfs (`format: rootfs`) or into `image.tar` (`format: oci`) → the files
//! Concourse reads (`digest`, `tag`, `repository`, `metadata.json`).

mod layout;

use std::path::Path;
use std::sync::Arc;

use crate::connect::{connect, Remote};
use crate::digest::{Digest, Hashing};
use crate::error::{Error, LayerError, Result};
use crate::fetch;
use crate::manifest::{Descriptor, Document, ImageConfig, Manifest, Platform};
use crate::metadata::{write_file, write_labels, write_run_metadata, RunMetadata};
use crate::progress::{human, Bar, Board};
use crate::reference::{describe, Repository, Target};
use crate::registry::Scope;
use crate::retry::Backoff;
use crate::rootfs::{LayerStats, Rootfs, Turn};
use crate::source::{InRequest, MetadataField, Source, StepResponse};
use crate::tarball::{ImageEntry, TarballWriter};

/// Layers read at once for `rootfs`: the one whose turn it is and two written ahead. With
/// two, B (20k files) took 0.90 s against 0.81 s here, the last layers' files then being
/// created on one thread while the other core idled; C was the same either way.
const LAYERS_READ_AT_ONCE: usize = 3;

/// Blobs downloading at once for `image.tar`: the one being written and the next.
const BLOBS_IN_FLIGHT: usize = 2;

/// How `in` delivers the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Unpacked into `rootfs/`.
    Rootfs,
    /// `image.tar`.
    Oci,
    /// `oci/`, an OCI image layout of the whole version (every platform of an index).
    OciLayout,
}

/// Runs `in` for `request` into `dest`.
///
/// # Errors
/// An invalid request, a registry failure, a layer that does not verify or unpack.
pub async fn run(request: InRequest, dest: &Path, backoff: Backoff) -> Result<StepResponse> {
    let source = &request.source;
    source.validate()?;
    let format = match request.params.format.as_deref() {
        None | Some("rootfs") => Format::Rootfs,
        Some("oci") => Format::Oci,
        Some("oci-layout") => Format::OciLayout,
        Some(other) => {
            return Err(Error::UnknownFormat {
                format: other.to_owned(),
            })
        }
    };
    let platform = request.platform();
    let version = request.version.clone();
    let tag = match &version.tag {
        Some(t) if !t.is_empty() => t.clone(),
        _ => source.tag()?.to_string(),
    };
    std::fs::create_dir_all(dest).map_err(|source| Error::Write {
        path: dest.to_owned(),
        source,
    })?;
    refuse_non_empty(dest)?;
    let client = Arc::new(connect(source, Scope::Pull, backoff).await?);
    // ECR decides the host of a repository that names none; the files name it, as
    // upstream's do.
    let repository = ecr_name(source, &client);
    let write = |name: &str, content: &[u8]| {
        write_file(dest, name, content).map_err(|source| Error::Write {
            path: dest.join(name),
            source,
        })
    };
    let mut metadata = vec![
        MetadataField {
            name: "repository".into(),
            value: repository.clone(),
        },
        MetadataField {
            name: "tag".into(),
            value: tag.clone(),
        },
    ];
    // the platform's image and config are needed for a rootfs or image.tar, and for the
    // regexes' metadata; otherwise (skip_download, oci-layout) only the version's manifest
    let regexes = [&source.label_regex, &source.annotation_regex]
        .iter()
        .any(|r| r.as_deref().is_some_and(|r| !r.is_empty()));
    let wants_image = regexes || (!request.params.skip_download && format != Format::OciLayout);
    let image = if wants_image {
        Some(Image::resolve(&client, &version.digest, &platform).await?)
    } else {
        if request.params.skip_download {
            // the version must exist, as upstream checks
            fetch_verified(&client, &version.digest).await?;
        }
        None
    };
    if let Some(image) = &image {
        metadata.extend(image_metadata(source, image)?);
    }
    write("digest", version.digest.as_str().as_bytes())?;
    write("tag", tag.as_bytes())?;
    write("repository", repository.as_bytes())?;
    let response = StepResponse {
        version: version.clone(),
        metadata,
    };
    if request.params.skip_download {
        return Ok(response);
    }
    let draw = !source.debug;
    deliver(
        &client,
        format,
        image.as_ref(),
        &version.digest,
        dest,
        &repository,
        &tag,
        draw,
    )
    .await?;
    Ok(response)
}

/// Writes the image in `format` into `dest`: `rootfs/` with `metadata.json` and
/// `labels.json`, `image.tar` with `labels.json`, or `oci/`.
#[allow(clippy::too_many_arguments)]
async fn deliver(
    client: &Arc<Remote>,
    format: Format,
    image: Option<&Image>,
    digest: &Digest,
    dest: &Path,
    repository: &str,
    tag: &str,
    draw: bool,
) -> Result<()> {
    let written_error = |name: &str| {
        let path = dest.join(name);
        move |source| Error::Write { path, source }
    };
    match (format, image) {
        (Format::Rootfs, Some(image)) => {
            let rootfs =
                Arc::new(Rootfs::create(&dest.join("rootfs")).map_err(|e| Error::Rootfs(Box::new(e)))?);
            let _staging = StagingRemoved(rootfs.clone());
            apply_layers(client, image, rootfs, draw).await?;
            write_run_metadata(dest, &RunMetadata::from_config(&image.config))
                .map_err(written_error("metadata.json"))?;
            write_labels(dest, &image.config.labels()).map_err(written_error("labels.json"))
        }
        (Format::Oci, Some(image)) => {
            let path = dest.join("image.tar");
            let repo_tag = format!("{repository}:{tag}");
            let written = write_tarball(client, image, &path, &repo_tag, tag, draw).await;
            if written.is_err() {
                let _ = std::fs::remove_file(&path);
            }
            written?;
            write_labels(dest, &image.config.labels()).map_err(written_error("labels.json"))
        }
        _ => {
            let path = dest.join("oci");
            let written = layout::write_layout(client, digest, &path, tag, draw).await;
            if written.is_err() {
                let _ = std::fs::remove_dir_all(&path);
            }
            written
        }
    }
}

/// The metadata `label_regex` and `annotation_regex` ask for: matching config labels, then
/// matching manifest annotations, each sorted by key.
fn image_metadata(source: &Source, image: &Image) -> Result<Vec<MetadataField>> {
    let mut fields = Vec::new();
    let annotations = image.manifest.annotations.clone().unwrap_or_default();
    for (field, pattern, values) in [
        ("label_regex", &source.label_regex, image.config.labels()),
        ("annotation_regex", &source.annotation_regex, annotations),
    ] {
        let Some(pattern) = pattern.as_deref().filter(|p| !p.is_empty()) else {
            continue;
        };
        let regex = crate::source::compile_regex(field, pattern)?;
        fields.extend(
            values
                .into_iter()
                .filter(|(key, _)| regex.is_match(key))
                .map(|(name, value)| MetadataField { name, value }),
        );
    }
    Ok(fields)
}

/// The manifest `digest` names, fetched and verified (it must exist).
async fn fetch_verified(client: &Remote, digest: &Digest) -> Result<Vec<u8>> {
    let target = Target::Digest(digest.clone());
    let (bytes, _) = client
        .fetch_manifest(&target)
        .await
        .map_err(|source| Error::Fetch {
            image: describe(client.repository(), &target),
            source,
        })?;
    Ok(bytes)
}

/// `in` writes only into an empty directory (what Concourse gives it), so no file it writes
/// can meet a planted symlink or an older run's files.
fn refuse_non_empty(dest: &Path) -> Result<()> {
    let error = |source| Error::Write {
        path: dest.to_owned(),
        source,
    };
    if let Some(entry) = std::fs::read_dir(dest).map_err(error)?.next() {
        return Err(Error::DestinationNotEmpty {
            path: dest.to_owned(),
            entry: entry.map_err(error)?.file_name().to_string_lossy().into_owned(),
        });
    }
    Ok(())
}

/// `source.repository` as written, except that an ECR repository without a host gets the
/// host ECR decided.
fn ecr_name(source: &Source, remote: &Remote) -> String {
    let written = &source.repository;
    if source.aws_region.is_some() && !Repository::names_host(written) {
        remote.repository().to_string()
    } else {
        written.clone()
    }
}

fn short(digest: &Digest) -> String {
    digest.as_str().chars().take(19).collect()
}

/// The single-platform image a version names.
struct Image {
    digest: Digest,
    manifest_bytes: Vec<u8>,
    descriptor: Descriptor,
    manifest: Manifest,
    config_bytes: Vec<u8>,
    config: ImageConfig,
}

impl Image {
    async fn resolve(client: &Remote, digest: &Digest, platform: &Platform) -> Result<Self> {
        let bytes = fetch_verified(client, digest).await?;
        let manifest_error = |source| Error::Manifest {
            image: describe(client.repository(), &Target::Digest(digest.clone())),
            source,
        };
        let (bytes, digest, media_type, manifest) = match Document::parse(&bytes).map_err(manifest_error)? {
            Document::Manifest(m) => {
                let media_type = m
                    .media_type
                    .clone()
                    .unwrap_or_else(|| crate::manifest::OCI_MANIFEST.to_owned());
                (bytes, digest.clone(), media_type, m)
            }
            Document::Index(index) => {
                let child = index.select(platform).map_err(manifest_error)?.clone();
                tracing::info!("{platform} image of the index: {}", child.digest);
                let target = Target::Digest(child.digest.clone());
                let bytes = fetch_verified(client, &child.digest).await?;
                let child_error = |source| Error::Manifest {
                    image: describe(client.repository(), &target),
                    source,
                };
                match Document::parse(&bytes).map_err(child_error)? {
                    Document::Manifest(m) => (bytes, child.digest.clone(), child.media_type.clone(), m),
                    Document::Index(_) => {
                        return Err(Error::NestedIndex {
                            image: describe(client.repository(), &target),
                        })
                    }
                }
            }
        };
        let config_target = Target::Digest(manifest.config.digest.clone());
        let config_bytes = client
            .fetch_blob(&manifest.config.digest)
            .await
            .map_err(|source| Error::Fetch {
                image: describe(client.repository(), &config_target),
                source,
            })?;
        let config = serde_json::from_slice(&config_bytes).map_err(|source| Error::Config {
            digest: manifest.config.digest.clone(),
            source,
        })?;
        let descriptor = Descriptor {
            media_type,
            digest: digest.clone(),
            size: bytes.len() as u64,
            platform: None,
            annotations: None,
        };
        Ok(Self {
            digest,
            manifest_bytes: bytes,
            descriptor,
            manifest,
            config_bytes,
            config,
        })
    }
}

/// The progress bars of an image's layers, on one board.
fn layer_bars(layers: &[Descriptor], draw: bool) -> Vec<Arc<Bar>> {
    let board = Board::new(draw);
    let count = layers.len();
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| Arc::new(board.bar(format!("layer {}/{count} {}", i + 1, short(&l.digest)), l.size)))
        .collect()
}

/// Pipelines started ahead of the blob being consumed, at most [`BLOBS_IN_FLIGHT`].
struct Ahead<T> {
    started: std::collections::VecDeque<T>,
    next: usize,
    count: usize,
}

impl<T> Ahead<T> {
    fn new(count: usize) -> Self {
        Self {
            started: std::collections::VecDeque::new(),
            next: 0,
            count,
        }
    }

    /// The next blob's pipeline, after starting those that may run ahead of it.
    fn take(&mut self, mut start: impl FnMut(usize) -> T) -> T {
        while self.next < self.count && self.started.len() < BLOBS_IN_FLIGHT {
            self.started.push_back(start(self.next));
            self.next += 1;
        }
        self.started.pop_front().expect("take is called once per layer")
    }
}

/// Names layer `index` (0-based) of `image` in an error.
fn layer_error(client: &Remote, image: &Image, index: usize, source: LayerError) -> Error {
    Error::Layer {
        image: describe(client.repository(), &Target::Digest(image.digest.clone())),
        index: index + 1,
        count: image.manifest.layers.len(),
        digest: image.manifest.layers[index].digest.clone(),
        source: Box::new(source),
    }
}

/// Removes the staging directory when dropped, however `run` ends: with an error, or
/// dropped at the deadline. Layers still running hold the `Rootfs` (the process exits
/// without waiting for them), so its own removal on drop may never come; they are
/// abandoned first, so they stop writing ahead.
struct StagingRemoved(Arc<Rootfs>);

impl Drop for StagingRemoved {
    fn drop(&mut self) {
        self.0.abandon();
        if let Err(e) = self.0.remove_staging() {
            tracing::warn!("could not remove the staging directory: {e}");
        }
    }
}

/// Withdraws the turn it holds when dropped, unless it was given (a panic included).
struct WithdrawnUnlessGiven(Arc<Turn>);

impl Drop for WithdrawnUnlessGiven {
    fn drop(&mut self) {
        self.0.withdraw();
    }
}

/// A layer being unpacked: its consumer (on a blocking thread) and its download.
struct Unpacking {
    index: usize,
    consumer: tokio::task::JoinHandle<std::result::Result<LayerStats, LayerError>>,
    tasks: fetch::Tasks,
}

/// Unpacks every layer in order. Several layers are read at once: the one whose turn it
/// is, and the next ones, whose files are written ahead until their turn comes (see
/// `Rootfs`), so both cores inflate and create files.
async fn apply_layers(client: &Arc<Remote>, image: &Image, rootfs: Arc<Rootfs>, draw: bool) -> Result<()> {
    let applied = unpack_in_turns(client, image, &rootfs, draw).await;
    if applied.is_err() {
        rootfs.abandon();
    }
    applied
}

async fn unpack_in_turns(
    client: &Arc<Remote>,
    image: &Image,
    rootfs: &Arc<Rootfs>,
    draw: bool,
) -> Result<()> {
    let layers = &image.manifest.layers;
    let bars = layer_bars(layers, draw);
    let mut turn = Arc::new(Turn::given());
    let mut below: std::collections::VecDeque<Unpacking> = std::collections::VecDeque::new();
    for (i, layer) in layers.iter().enumerate() {
        let (mut reader, tasks) = fetch::start(client, layer, bars[i].clone()).split();
        let next_turn = Arc::new(Turn::waiting());
        // however the consumer ends (or if it never runs), the next layer must not wait forever
        let next = WithdrawnUnlessGiven(next_turn.clone());
        let (rootfs, this_turn) = (rootfs.clone(), std::mem::replace(&mut turn, next_turn));
        let consumer = tokio::task::spawn_blocking(move || {
            let applied = rootfs.apply_layer_in_turn(&mut reader, &this_turn);
            if applied.is_ok() {
                next.0.give();
            }
            drop(next);
            let stats = applied.map_err(|e| LayerError::Unpack(Box::new(e)))?;
            // what follows the tar's end (padding) still has to pass the digest check
            std::io::copy(&mut reader, &mut std::io::sink()).map_err(LayerError::Read)?;
            Ok(stats)
        });
        let current = Unpacking {
            index: i,
            consumer,
            tasks,
        };
        below.push_back(current);
        if below.len() >= LAYERS_READ_AT_ONCE {
            let done = below.pop_front().expect("not empty");
            finish_layer(client, image, done, &bars).await?;
        }
    }
    for done in below {
        finish_layer(client, image, done, &bars).await?;
    }
    Ok(())
}

/// Waits for a layer's consumer and download, and reports the first real cause of a
/// failure.
async fn finish_layer(client: &Remote, image: &Image, layer: Unpacking, bars: &[Arc<Bar>]) -> Result<()> {
    let Unpacking {
        index,
        consumer,
        tasks,
    } = layer;
    let applied = consumer
        .await
        .map_err(|e| LayerError::Read(std::io::Error::other(e)))
        .and_then(|r| r);
    let refused = matches!(&applied, Err(LayerError::Unpack(e)) if matches!(**e, crate::rootfs::Error::Hostile { .. } | crate::rootfs::Error::NoOpenat2));
    let result = if refused {
        applied
    } else {
        tasks.finish(applied).await
    };
    let stats = result.map_err(|source| layer_error(client, image, index, source))?;
    if stats.early > 0 {
        tracing::debug!(
            "layer {}: {} of {} entries read before its turn, their files written ahead",
            index + 1,
            stats.early,
            stats.entries
        );
    }
    let size = image.manifest.layers[index].size;
    bars[index].finish(size, &format!("{} entries", stats.entries));
    Ok(())
}

/// Streams each of `blobs` from the registry through its digest and size check into
/// `sink` (with `write`, on a blocking thread that owns the sink), the next downloading
/// while one is written; `failed` names blob `i` in an error. Returns the sink.
async fn stream_blobs<S: Send + 'static>(
    client: &Arc<Remote>,
    blobs: &[Descriptor],
    draw: bool,
    mut sink: S,
    write: fn(&mut S, &Digest, u64, &mut dyn std::io::Read) -> std::io::Result<()>,
    failed: impl Fn(usize, LayerError) -> Error,
) -> Result<S> {
    let bars = layer_bars(blobs, draw);
    // The next blob downloads while the current one is written; each is hashed on the
    // writing thread, since receiving is the busier side here.
    let mut ahead = Ahead::new(blobs.len());
    for (i, blob) in blobs.iter().enumerate() {
        let (mut reader, download) =
            ahead.take(|n| fetch::download(client, &blobs[n], bars[n].clone(), false));
        let (digest, size) = (blob.digest.clone(), blob.size);
        let written = tokio::task::spawn_blocking(move || {
            let mut hashing = Hashing::new(&mut reader, size, digest.algorithm());
            write(&mut sink, &digest, size, &mut hashing).map_err(LayerError::Read)?;
            hashing.verify(&digest).map_err(LayerError::Verify)?;
            Ok(sink)
        })
        .await
        .map_err(|e| LayerError::Read(std::io::Error::other(e)))
        .and_then(|r| r);
        // the download's verdict (integrity) first, then the writer's
        download
            .await
            .map_err(|e| failed(i, LayerError::Read(std::io::Error::other(e))))?
            .map_err(|e| failed(i, e))?;
        sink = written.map_err(|e| failed(i, e))?;
        bars[i].finish(blob.size, &human(blob.size));
    }
    Ok(sink)
}

/// Writes `image.tar`: each blob streams from the registry through verification into the
/// archive, on a blocking thread that owns the file.
async fn write_tarball(
    client: &Arc<Remote>,
    image: &Image,
    path: &Path,
    repo_tag: &str,
    tag: &str,
    draw: bool,
) -> Result<()> {
    let write_error = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::create(path).map_err(write_error)?;
    let mut writer =
        TarballWriter::new(std::io::BufWriter::with_capacity(1 << 20, file)).map_err(write_error)?;
    let config = &image.manifest.config;
    for (digest, bytes) in [
        (&image.digest, &image.manifest_bytes),
        (&config.digest, &image.config_bytes),
    ] {
        writer
            .add_blob(digest, bytes.len() as u64, &bytes[..])
            .map_err(write_error)?;
    }
    let layers = &image.manifest.layers;
    let writer = stream_blobs(
        client,
        layers,
        draw,
        writer,
        |w, digest, size, content| w.add_blob(digest, size, content),
        |i, source| layer_error(client, image, i, source),
    )
    .await?;
    let entry = ImageEntry {
        manifest: &image.descriptor,
        config: &config.digest,
        layers: image.manifest.layers.iter().map(|l| &l.digest).collect(),
        repo_tag,
        tag,
    };
    let mut out = writer.finish(&entry).map_err(write_error)?;
    std::io::Write::flush(&mut out).map_err(write_error)?;
    // No fsync: Concourse reads the file right after, from the page cache, and a crash
    // fails the step anyway. Syncing 1 GB costs a second.
    out.into_inner()
        .map(drop)
        .map_err(|e| write_error(e.into_error()))
}
