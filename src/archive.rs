//! Images on disk, as `out` finds them: a `docker save` tar, an OCI archive (an OCI image
//! layout in a tar) or an OCI image layout directory.
//!
//! Nothing is extracted: a tar is indexed once (name → offset and size) and every blob is
//! later read in place with a seek. What comes out is a push plan: the blobs, each with
//! where its bytes are, and the manifests in the order they must be pushed. For OCI input
//! the manifest bytes are pushed as they are, so digests survive; a `docker save` tar gets a
//! Docker schema 2 manifest built from its config and layers, and layers stored uncompressed
//! are gzip-compressed on the way out (deterministically, so a second push finds them).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::compression::Compression;
use crate::confine::{ConfineError, Dir, Entry, Slice};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::manifest::{Descriptor, Document, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

/// gzip level for layers compressed on the way out: fast, and fixed so output is repeatable.
pub const GZIP_LEVEL: u32 = 1;

/// The largest JSON document read from an image file (`index.json`, `manifest.json`, a
/// manifest, a `docker save` config): real ones are kilobytes.
pub const DOCUMENT_LIMIT: u64 = 16 * 1024 * 1024;

/// The most distinct manifests (indexes included) one push may hold, each pushed once
/// however often indexes list it.
pub const MAX_MANIFESTS: usize = 1000;

/// The deepest nesting of indexes below the root (an index of indexes is 1).
pub const MAX_INDEX_DEPTH: usize = 4;

/// Bytes of a file opened beneath the sources directory, at an offset.
#[derive(Debug, Clone)]
pub struct Location {
    /// The file, open.
    pub file: Arc<File>,
    /// Its path, for messages.
    pub path: PathBuf,
    /// Where the bytes start.
    pub offset: u64,
    /// How many there are.
    pub size: u64,
}

impl Location {
    /// A reader of the bytes, and of nothing else (read with `pread` from the file opened
    /// when it was found, so nothing is resolved again).
    #[must_use]
    pub fn open(&self) -> Slice {
        Slice::new(self.file.clone(), self.offset, self.size)
    }
}

/// Where a blob's bytes come from.
#[derive(Debug, Clone)]
pub enum BlobData {
    /// Pushed exactly as stored.
    Stored(Location),
    /// An uncompressed layer, gzip'd while it is pushed.
    Gzip(Location),
    /// Small bytes built in memory (a generated config).
    Bytes(Vec<u8>),
}

/// A blob to push.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Its digest as pushed.
    pub digest: Digest,
    /// Its size as pushed.
    pub size: u64,
    /// Its bytes.
    pub data: BlobData,
}

/// A manifest or index to push.
#[derive(Debug, Clone)]
pub struct ManifestToPush {
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// Its media type, for `Content-Type`.
    pub media_type: String,
    /// sha256 of the bytes.
    pub digest: Digest,
}

/// Everything to push for one image or index.
#[derive(Debug, Clone)]
pub struct PushPlan {
    /// Every blob, each once.
    pub blobs: Vec<Blob>,
    /// Child manifests of an index, pushed by digest before the root.
    pub children: Vec<ManifestToPush>,
    /// The manifest or index the tags point at.
    pub root: ManifestToPush,
}

/// Why an image file cannot be pushed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A path leads outside the sources directory, or cannot be opened beneath it.
    #[error(transparent)]
    Confine(#[from] ConfineError),
    /// Reading failed.
    #[error("read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Neither a docker-save tar nor an OCI layout.
    #[error("{path} is neither a `docker save` tar (manifest.json) nor an OCI image layout (oci-layout, index.json)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A file the format requires is missing.
    #[error("{path} has no {name}")]
    Missing {
        /// The archive.
        path: PathBuf,
        /// The missing member.
        name: String,
    },
    /// A JSON document of the archive does not parse.
    #[error("{name} in {path} is not valid")]
    Json {
        /// The archive.
        path: PathBuf,
        /// The member.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The archive holds several images, and none is named after the tag.
    #[error("{path} holds {count} images ({what}) and none is named {tag:?}; out pushes one")]
    SeveralImages {
        /// The archive.
        path: PathBuf,
        /// How many.
        count: usize,
        /// Which file lists them.
        what: &'static str,
        /// The source tag looked for.
        tag: String,
    },
    /// A blob does not match its descriptor.
    #[error("blob {digest} in {path} does not match its descriptor (digest or size)")]
    BadBlob {
        /// The archive.
        path: PathBuf,
        /// The descriptor's digest.
        digest: Digest,
    },
    /// More distinct manifests than [`MAX_MANIFESTS`].
    #[error("{path} holds more than {limit} distinct manifests")]
    TooManyManifests {
        /// The archive.
        path: PathBuf,
        /// The limit.
        limit: usize,
    },
    /// Indexes nested deeper than [`MAX_INDEX_DEPTH`].
    #[error("{path} nests indexes more than {limit} deep")]
    TooDeep {
        /// The archive.
        path: PathBuf,
        /// The limit.
        limit: usize,
    },
    /// A JSON document larger than [`DOCUMENT_LIMIT`].
    #[error("{name} in {path} is larger than {limit} bytes")]
    TooLarge {
        /// The archive.
        path: PathBuf,
        /// The member.
        name: String,
        /// The limit.
        limit: u64,
    },
    /// A manifest that is neither a manifest nor an index.
    #[error("manifest {digest} in {path}")]
    Manifest {
        /// The archive.
        path: PathBuf,
        /// Its digest.
        digest: Digest,
        /// What is wrong.
        #[source]
        source: crate::manifest::ManifestError,
    },
}

/// The files of an image, by name: tar members, or files beneath a layout directory.
struct Files {
    root: PathBuf,
    /// tar member name → location.
    members: Option<HashMap<String, Location>>,
    /// The layout directory, where names are paths beneath it.
    dir: Option<Dir>,
}

impl Files {
    fn tar(file: &Arc<File>, path: &Path) -> io::Result<Self> {
        let mut archive = tar::Archive::new(&**file);
        let mut members = HashMap::new();
        let mut links = Vec::new();
        for entry in archive.entries_with_seek()? {
            let entry = entry?;
            let name = normalize(&entry.path()?.to_string_lossy());
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                if let Some(target) = entry.link_name()? {
                    let target = target.to_string_lossy().into_owned();
                    // symlinks are relative to their directory, hardlinks to the archive root
                    let resolved = if kind.is_symlink() && !target.starts_with('/') {
                        normalize(
                            &Path::new(&name)
                                .parent()
                                .unwrap_or(Path::new(""))
                                .join(&target)
                                .to_string_lossy(),
                        )
                    } else {
                        normalize(&target)
                    };
                    links.push((name, resolved));
                }
                continue;
            }
            if kind.is_file() {
                members.insert(
                    name,
                    Location {
                        file: file.clone(),
                        path: path.to_owned(),
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    },
                );
            }
        }
        for (name, target) in links {
            if let Some(loc) = members.get(&target).cloned() {
                members.insert(name, loc);
            }
        }
        Ok(Self {
            root: path.to_owned(),
            members: Some(members),
            dir: None,
        })
    }

    fn dir(dir: Dir) -> Self {
        Self {
            root: dir.path().to_owned(),
            members: None,
            dir: Some(dir),
        }
    }

    /// Where `name` is, `None` when it is missing or not a file. In a directory, a name
    /// that leads outside it is an error.
    fn locate(&self, name: &str) -> Result<Option<Location>, ArchiveError> {
        let Some(dir) = &self.dir else {
            let members = self.members.as_ref();
            return Ok(members.and_then(|m| m.get(&normalize(name)).cloned()));
        };
        match dir.entry(Path::new(name)) {
            Ok(Entry::File(file, size)) => Ok(Some(Location {
                file,
                path: dir.shown(Path::new(name)),
                offset: 0,
                size,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Where `name` is; a missing member is an error naming it.
    fn require(&self, name: &str) -> Result<Location, ArchiveError> {
        self.locate(name)?.ok_or_else(|| ArchiveError::Missing {
            path: self.root.clone(),
            name: name.to_owned(),
        })
    }

    /// The whole bytes at `loc` (small members: JSON documents, manifests), at most
    /// [`DOCUMENT_LIMIT`]; `name` names it in the error.
    fn read(&self, loc: &Location, name: &str) -> Result<Vec<u8>, ArchiveError> {
        if loc.size > DOCUMENT_LIMIT {
            return Err(ArchiveError::TooLarge {
                path: self.root.clone(),
                name: name.to_owned(),
                limit: DOCUMENT_LIMIT,
            });
        }
        let mut bytes = Vec::new();
        loc.open()
            .read_to_end(&mut bytes)
            .map_err(|source| self.read_error(source))?;
        Ok(bytes)
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        self.read(&self.require(name)?, name)
    }

    fn read_error(&self, source: io::Error) -> ArchiveError {
        ArchiveError::Read {
            path: self.root.clone(),
            source,
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, ArchiveError> {
        let bytes = self.read_small(name)?;
        serde_json::from_slice(&bytes).map_err(|source| ArchiveError::Json {
            path: self.root.clone(),
            name: name.to_owned(),
            source,
        })
    }
}

/// `./a//b` → `a/b`
fn normalize(name: &str) -> String {
    name.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Reads the image at `rel` beneath `src` (a tar file or a layout directory) into a push
/// plan. Every file it reads is opened beneath `src` (a layout's files beneath the layout).
/// An OCI layout that lists several images is narrowed to the one whose
/// `org.opencontainers.image.ref.name` is `tag`.
///
/// # Errors
/// A path that leads outside `src`, an unreadable or unknown format, missing members,
/// blobs that do not match.
pub fn read_image(src: &Dir, rel: &Path, tag: &str) -> Result<PushPlan, ArchiveError> {
    let path = src.shown(rel);
    let read_error = |source| ArchiveError::Read {
        path: path.clone(),
        source,
    };
    let files = match src.entry(rel)? {
        Entry::Dir(dir) => Files::dir(dir),
        Entry::File(file, _) => Files::tar(&file, &path).map_err(read_error)?,
        Entry::Other => {
            return Err(read_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither a file nor a directory",
            )))
        }
    };
    let has = |name: &str| files.locate(name).map(|l| l.is_some());
    if has("oci-layout")? && has("index.json")? {
        read_oci(&files, tag)
    } else if has("manifest.json")? {
        read_docker(&files)
    } else {
        Err(ArchiveError::UnknownFormat { path })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutIndex {
    #[serde(default)]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

/// The file of a layout `in` wrote for a single manifest, naming it.
const SINGLE_IMAGE_DIGEST: &str = "single-image-digest";

/// The file of a layout `in` wrote for an index, naming `index.json`'s own digest: the
/// layout is the index, even with one entry (which another tool's layout would mean as
/// "this image").
const INDEX_DIGEST: &str = "index-digest";

fn blob_name(digest: &Digest) -> String {
    let (algorithm, hex) = digest
        .as_str()
        .split_once(':')
        .unwrap_or(("sha256", digest.hex()));
    format!("blobs/{algorithm}/{hex}")
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What a layout's push is rooted at, chosen from `index.json`:
/// - `single-image-digest` (as `in` writes it for one manifest): the image it names;
/// - `index-digest` (as `in` writes it for an index) naming `index.json`'s own digest:
///   `index.json` itself, byte for byte;
/// - one entry: it (an image, or an index such as `BuildKit`'s, wrapped in `index.json`);
/// - several entries, each named (`org.opencontainers.image.ref.name`): the one named `tag`;
/// - otherwise (an index of platforms, as `in` writes a multi-platform version, or a Docker
///   manifest list): `index.json` itself, byte for byte, so its digest is kept.
fn layout_root(files: &Files, tag: &str) -> Result<ManifestToPush, ArchiveError> {
    let bytes = files.read_small("index.json")?;
    let index: LayoutIndex = serde_json::from_slice(&bytes).map_err(|source| ArchiveError::Json {
        path: files.root.clone(),
        name: "index.json".to_owned(),
        source,
    })?;
    if files.locate(SINGLE_IMAGE_DIGEST)?.is_some() {
        let text = files.read_small(SINGLE_IMAGE_DIGEST)?;
        let text = String::from_utf8_lossy(&text);
        let Ok(wanted) = text.trim().parse::<Digest>() else {
            return Err(ArchiveError::Missing {
                path: files.root.clone(),
                name: format!(
                    "digest in {SINGLE_IMAGE_DIGEST} (it holds {:?})",
                    text.chars().take(80).collect::<String>()
                ),
            });
        };
        return match index.manifests.iter().find(|d| d.digest == wanted) {
            Some(d) => read_manifest(files, d),
            None => Err(ArchiveError::Missing {
                path: files.root.clone(),
                name: format!("entry in index.json for {wanted}, which {SINGLE_IMAGE_DIGEST} names"),
            }),
        };
    }
    let name = |d: &Descriptor| d.annotations.as_ref().and_then(|a| a.get(REF_NAME)).cloned();
    let whole = || ManifestToPush {
        digest: Digest::sha256(&bytes),
        media_type: index.media_type.clone().unwrap_or_else(|| OCI_INDEX.to_owned()),
        bytes: bytes.clone(),
    };
    if index.media_type.as_deref() == Some(crate::manifest::DOCKER_MANIFEST_LIST) {
        return Ok(whole());
    }
    if files.locate(INDEX_DIGEST)?.is_some() {
        let named = files.read_small(INDEX_DIGEST)?;
        let own = Digest::sha256(&bytes);
        if String::from_utf8_lossy(&named).trim() == own.as_str() {
            return Ok(whole());
        }
        tracing::warn!("{INDEX_DIGEST} does not name index.json ({own}): ignored");
    }
    match index.manifests.as_slice() {
        [only] => read_manifest(files, only),
        several if several.iter().all(|d| name(d).is_some()) => {
            let root = several
                .iter()
                .find(|d| name(d).as_deref() == Some(tag))
                .ok_or_else(|| ArchiveError::SeveralImages {
                    path: files.root.clone(),
                    count: several.len(),
                    what: "index.json",
                    tag: tag.to_owned(),
                })?;
            read_manifest(files, root)
        }
        _ => Ok(whole()),
    }
}

fn read_oci(files: &Files, tag: &str) -> Result<PushPlan, ArchiveError> {
    let root = layout_root(files, tag)?;
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    let mut seen_blobs = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::from([root.digest.clone()]);
    // Depth first, children before their index, each manifest once: an explicit stack of
    // (index, its children, the next one to visit).
    let mut stack = Vec::new();
    let mut visit =
        |manifest: &ManifestToPush, blobs: &mut Vec<Blob>| -> Result<Option<Vec<Descriptor>>, ArchiveError> {
            let parsed = Document::parse(&manifest.bytes).map_err(|source| ArchiveError::Manifest {
                path: files.root.clone(),
                digest: manifest.digest.clone(),
                source,
            })?;
            match parsed {
                Document::Manifest(m) => {
                    for d in std::iter::once(&m.config).chain(&m.layers) {
                        if seen_blobs.insert(d.digest.clone()) {
                            blobs.push(Blob {
                                digest: d.digest.clone(),
                                size: d.size,
                                data: BlobData::Stored(locate_blob(files, d)?),
                            });
                        }
                    }
                    Ok(None)
                }
                Document::Index(i) => Ok(Some(i.manifests)),
            }
        };
    if let Some(list) = visit(&root, &mut blobs)? {
        stack.push((None, list, 0));
    }
    while let Some((_, list, next)) = stack.last_mut() {
        let Some(child) = list.get(*next).cloned() else {
            if let Some((Some(done), _, _)) = stack.pop() {
                children.push(done);
            }
            continue;
        };
        *next += 1;
        if !seen.insert(child.digest.clone()) {
            continue;
        }
        if seen.len() > MAX_MANIFESTS {
            return Err(ArchiveError::TooManyManifests {
                path: files.root.clone(),
                limit: MAX_MANIFESTS,
            });
        }
        let child = read_manifest(files, &child)?;
        match visit(&child, &mut blobs)? {
            None => children.push(child),
            Some(list) => {
                if stack.len() > MAX_INDEX_DEPTH {
                    return Err(ArchiveError::TooDeep {
                        path: files.root.clone(),
                        limit: MAX_INDEX_DEPTH,
                    });
                }
                stack.push((Some(child), list, 0));
            }
        }
    }
    Ok(PushPlan {
        blobs,
        children,
        root,
    })
}

/// Where a descriptor's blob is, checking its size (digests of large blobs are checked by
/// the registry when they are pushed, and by us when small enough to read here).
fn locate_blob(files: &Files, d: &Descriptor) -> Result<Location, ArchiveError> {
    let loc = files.require(&blob_name(&d.digest))?;
    if loc.size != d.size {
        return Err(ArchiveError::BadBlob {
            path: files.root.clone(),
            digest: d.digest.clone(),
        });
    }
    Ok(loc)
}

fn read_manifest(files: &Files, d: &Descriptor) -> Result<ManifestToPush, ArchiveError> {
    let bytes = files.read(&locate_blob(files, d)?, &blob_name(&d.digest))?;
    if !d.digest.matches(&bytes) {
        return Err(ArchiveError::BadBlob {
            path: files.root.clone(),
            digest: d.digest.clone(),
        });
    }
    let media_type = if d.media_type.is_empty() {
        // mediaType is optional in a descriptor; the document itself may say
        match Document::parse(&bytes) {
            Ok(Document::Index(_)) => OCI_INDEX.to_owned(),
            _ => OCI_MANIFEST.to_owned(),
        }
    } else {
        d.media_type.clone()
    };
    Ok(ManifestToPush {
        bytes,
        media_type,
        digest: d.digest.clone(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DockerManifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: DockerDescriptor<'a>,
    layers: Vec<DockerDescriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DockerDescriptor<'a> {
    media_type: &'a str,
    size: u64,
    digest: &'a Digest,
}

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

fn read_docker(files: &Files) -> Result<PushPlan, ArchiveError> {
    let entries: Vec<DockerEntry> = files.json("manifest.json")?;
    let [entry] = entries.as_slice() else {
        return Err(ArchiveError::SeveralImages {
            path: files.root.clone(),
            count: entries.len(),
            what: "manifest.json",
            tag: String::new(),
        });
    };
    let config = files.read_small(&entry.config)?;
    let config_blob = Blob {
        digest: Digest::sha256(&config),
        size: config.len() as u64,
        data: BlobData::Bytes(config),
    };
    let mut layers = Vec::new();
    for name in &entry.layers {
        let loc = files.require(name)?;
        let (blob, media_type) = prepare_layer(loc).map_err(|source| files.read_error(source))?;
        layers.push((blob, media_type));
    }
    let manifest = DockerManifest {
        schema_version: 2,
        media_type: DOCKER_MANIFEST,
        config: DockerDescriptor {
            media_type: DOCKER_CONFIG,
            size: config_blob.size,
            digest: &config_blob.digest,
        },
        layers: layers
            .iter()
            .map(|(b, t)| DockerDescriptor {
                media_type: t,
                size: b.size,
                digest: &b.digest,
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&manifest).expect("manifests serialize");
    let root = ManifestToPush {
        digest: Digest::sha256(&bytes),
        bytes,
        media_type: DOCKER_MANIFEST.to_owned(),
    };
    let mut blobs = vec![config_blob];
    for (b, _) in layers {
        if !blobs.iter().any(|x| x.digest == b.digest) {
            blobs.push(b);
        }
    }
    Ok(PushPlan {
        blobs,
        children: Vec::new(),
        root,
    })
}

/// Hashes a stored layer, or gzips an uncompressed one to learn its digest and size.
fn prepare_layer(loc: Location) -> io::Result<(Blob, &'static str)> {
    let mut head = [0u8; 4];
    let n = loc.open().read(&mut head)?;
    let kind = Compression::sniff(&head[..n]);
    let mut sink = HashingWriter::default();
    if kind == Compression::None {
        let mut gz = flate2::write::GzEncoder::new(&mut sink, flate2::Compression::new(GZIP_LEVEL));
        io::copy(&mut loc.open(), &mut gz)?;
        gz.finish()?;
        let (digest, size) = sink.finish();
        return Ok((
            Blob {
                digest,
                size,
                data: BlobData::Gzip(loc),
            },
            DOCKER_LAYER_GZIP,
        ));
    }
    io::copy(&mut loc.open(), &mut sink)?;
    let (digest, size) = sink.finish();
    let media_type = if kind == Compression::Zstd {
        DOCKER_LAYER_ZSTD
    } else {
        DOCKER_LAYER_GZIP
    };
    Ok((
        Blob {
            digest,
            size,
            data: BlobData::Stored(loc),
        },
        media_type,
    ))
}

/// sha256 and length of what is written to it.
struct HashingWriter {
    hasher: Hasher,
    size: u64,
}

impl Default for HashingWriter {
    fn default() -> Self {
        Self {
            hasher: Algorithm::Sha256.hasher(),
            size: 0,
        }
    }
}

impl HashingWriter {
    fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.size)
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// gzip of a location's bytes at [`GZIP_LEVEL`], written to `out`: the same bytes
/// [`read_image`] hashed.
///
/// # Errors
/// Reading or writing fails.
pub fn gzip_into(loc: &Location, out: impl Write) -> io::Result<()> {
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
    io::copy(&mut loc.open(), &mut gz)?;
    gz.finish()?.flush()
}
