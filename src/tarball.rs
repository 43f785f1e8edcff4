//! `image.tar`: one file that both `docker load` generations and skopeo read.
//!
//! It is a `docker save` archive (`manifest.json` naming the config and layers by path) and,
//! in the same tar, an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`). The
//! two share the blobs, as `docker save` itself has written since Docker 25, so nothing is
//! stored twice. Blobs are byte-identical to the registry's: layers stay compressed, and the
//! manifest is the registry's own bytes, so digests survive a round trip.

use std::io::{self, Read, Write};

use serde_json::json;

use crate::digest::Digest;
use crate::manifest::{Descriptor, OCI_INDEX};

/// Writes an `image.tar` entry by entry.
pub struct TarballWriter<W: Write> {
    builder: tar::Builder<W>,
}

/// What `manifest.json` and `index.json` describe.
pub struct ImageEntry<'a> {
    /// The image manifest as stored in `blobs/`.
    pub manifest: &'a Descriptor,
    /// The config digest.
    pub config: &'a Digest,
    /// The layer digests, base first.
    pub layers: Vec<&'a Digest>,
    /// `repository:tag`, for `docker load`.
    pub repo_tag: &'a str,
    /// The tag alone, for the OCI layout's `org.opencontainers.image.ref.name`.
    pub tag: &'a str,
}

/// `blobs/<algorithm>/<hex>`, as the image layout names blobs.
fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}", digest.as_str().replacen(':', "/", 1))
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

impl<W: Write> TarballWriter<W> {
    /// Starts the archive with the `oci-layout` marker and the `blobs/sha256/` directory.
    ///
    /// # Errors
    /// When writing fails.
    pub fn new(out: W) -> io::Result<Self> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        let mut dir = tar::Header::new_ustar();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        dir.set_mode(0o755);
        dir.set_mtime(0);
        builder.append_data(&mut dir.clone(), "blobs/", io::empty())?;
        builder.append_data(&mut dir, "blobs/sha256/", io::empty())?;
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        builder.append_data(&mut header(layout.len() as u64), "oci-layout", &layout[..])?;
        Ok(Self { builder })
    }

    /// Adds a blob of `size` bytes from `content`. The caller verifies the bytes.
    ///
    /// # Errors
    /// When reading or writing fails.
    pub fn add_blob(&mut self, digest: &Digest, size: u64, content: impl Read) -> io::Result<()> {
        self.builder
            .append_data(&mut header(size), blob_path(digest), content)
    }

    /// Writes `index.json` and `manifest.json` and ends the archive.
    ///
    /// # Errors
    /// When writing fails.
    pub fn finish(mut self, image: &ImageEntry<'_>) -> io::Result<W> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{
                "mediaType": image.manifest.media_type,
                "digest": image.manifest.digest,
                "size": image.manifest.size,
                "annotations": {
                    "org.opencontainers.image.ref.name": image.tag,
                    "io.containerd.image.name": image.repo_tag,
                },
            }],
        });
        let docker = json!([{
            "Config": blob_path(image.config),
            "RepoTags": [image.repo_tag],
            "Layers": image.layers.iter().map(|d| blob_path(d)).collect::<Vec<_>>(),
        }]);
        for (name, value) in [("index.json", index), ("manifest.json", docker)] {
            let bytes = serde_json::to_vec(&value).map_err(io::Error::other)?;
            self.builder
                .append_data(&mut header(bytes.len() as u64), name, &bytes[..])?;
        }
        self.builder.into_inner()
    }
}
