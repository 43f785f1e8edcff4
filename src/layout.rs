//! `in`'s `oci-layout` format: an OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/<algorithm>/<hex>`), written blob by blob from readers.
//!
//! For an index version, `index.json` is the registry's index byte for byte, so its sha256
//! is the version's digest (which `index-digest` names); for a single manifest, `index.json` is a one-entry index over
//! it and `single-image-digest` names it. `out` reads both back and pushes the same digest.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::manifest::{Descriptor, OCI_INDEX};

/// The file naming the one image of a layout that wraps a single manifest.
pub const SINGLE_IMAGE_DIGEST: &str = "single-image-digest";

/// The file naming the digest of `index.json` itself, in a layout of an index.
pub const INDEX_DIGEST: &str = "index-digest";

/// A layout directory being written.
#[derive(Debug)]
pub struct LayoutWriter {
    dir: PathBuf,
}

impl LayoutWriter {
    /// Creates `dir` (which must not exist) with its `oci-layout` file.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn create(dir: &Path) -> io::Result<Self> {
        fs::create_dir(dir)?;
        fs::create_dir(dir.join("blobs"))?;
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(Self { dir: dir.to_owned() })
    }

    /// Where blob `digest` goes.
    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let algorithm = digest.as_str().split_once(':').map_or("sha256", |(a, _)| a);
        self.dir.join("blobs").join(algorithm).join(digest.hex())
    }

    /// Whether blob `digest` is written already (indexes may share children and layers).
    #[must_use]
    pub fn has(&self, digest: &Digest) -> bool {
        self.blob_path(digest).exists()
    }

    /// Writes blob `digest` from `content` (which the caller verifies); a blob already
    /// there is left as it is.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn add_blob(&self, digest: &Digest, content: impl Read) -> io::Result<()> {
        let path = self.blob_path(digest);
        if path.exists() {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut out = BufWriter::with_capacity(1 << 20, File::create_new(&path)?);
        io::copy(&mut { content }, &mut out)?;
        out.flush()
    }

    /// Writes `index.json` as the registry's index bytes, and `index-digest` naming them,
    /// so that `out` pushes `index.json` itself even when it has one entry.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn finish_index(&self, index: &[u8], digest: &Digest) -> io::Result<()> {
        fs::write(self.dir.join("index.json"), index)?;
        fs::write(self.dir.join(INDEX_DIGEST), digest.as_str())
    }

    /// Writes a one-entry `index.json` over `manifest` (named `tag` in it) and
    /// `single-image-digest`.
    ///
    /// # Errors
    /// When they cannot be written.
    pub fn finish_single(&self, manifest: &Descriptor, tag: &str) -> io::Result<()> {
        let mut entry = manifest.clone();
        entry.platform = None;
        entry.annotations = Some(std::collections::BTreeMap::from([(
            "org.opencontainers.image.ref.name".to_owned(),
            tag.to_owned(),
        )]));
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [entry],
        });
        fs::write(self.dir.join("index.json"), serde_json::to_vec(&index)?)?;
        fs::write(self.dir.join(SINGLE_IMAGE_DIGEST), manifest.digest.as_str())
    }
}
