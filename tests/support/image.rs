//! Test images built in code: a config, gzip'd tar layers and a manifest, byte for byte
//! what a registry stores.

use std::io::Write;

use flate2::write::GzEncoder;
use sha2::{Digest as _, Sha256};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn sha512(bytes: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(bytes)))
}

/// A blob with its digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(bytes: Vec<u8>) -> Self {
        let digest = sha256(&bytes);
        Self { bytes, digest }
    }
}

/// A single-platform image.
#[derive(Clone, Debug)]
pub struct Image {
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Vec<u8>,
    pub media_type: &'static str,
}

impl Image {
    /// A one-layer image holding `/hello.txt` with `content`; distinct content gives a
    /// distinct digest.
    pub fn with_file(content: &str, media_type: &'static str) -> Self {
        let tar = tar_with_file("hello.txt", content.as_bytes());
        Self::from_layers(vec![(gzip(&tar), tar)], media_type, "amd64")
    }

    /// An image of the given layers, each as (blob bytes, uncompressed tar).
    pub fn from_layers(layers: Vec<(Vec<u8>, Vec<u8>)>, media_type: &'static str, arch: &str) -> Self {
        Self::from_layers_with_config(
            layers,
            media_type,
            arch,
            serde_json::json!({"Env": ["PATH=/usr/bin:/bin"]}),
        )
    }

    /// The same with a given runtime `config` section.
    pub fn from_layers_with_config(
        layers: Vec<(Vec<u8>, Vec<u8>)>,
        media_type: &'static str,
        arch: &str,
        runtime: serde_json::Value,
    ) -> Self {
        Self::from_layers_with_document(layers, media_type, arch, runtime, serde_json::json!({}))
    }

    /// A one-layer image holding `/hello.txt` with `content`, whose config has `fields`
    /// besides the usual ones (`created`, say).
    pub fn with_config_fields(content: &str, fields: serde_json::Value) -> Self {
        let tar = tar_with_file("hello.txt", content.as_bytes());
        Self::from_layers_with_document(
            vec![(gzip(&tar), tar)],
            OCI_MANIFEST,
            "amd64",
            serde_json::json!({"Env": ["PATH=/usr/bin:/bin"]}),
            fields,
        )
    }

    /// The same with a given runtime `config` section and more top-level config `fields`.
    pub fn from_layers_with_document(
        layers: Vec<(Vec<u8>, Vec<u8>)>,
        media_type: &'static str,
        arch: &str,
        runtime: serde_json::Value,
        fields: serde_json::Value,
    ) -> Self {
        let diff_ids: Vec<String> = layers.iter().map(|(_, tar)| sha256(tar)).collect();
        let layers: Vec<Blob> = layers.into_iter().map(|(blob, _)| Blob::new(blob)).collect();
        let mut document = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        for (key, value) in fields.as_object().expect("fields is an object") {
            document[key] = value.clone();
        }
        let config = Blob::new(serde_json::to_vec(&document).unwrap());
        let (config_type, layer_type) = if media_type == DOCKER_MANIFEST {
            (
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        } else {
            (
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        };
        let manifest = serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "size": config.bytes.len(), "digest": config.digest},
            "layers": layers.iter().map(|l| serde_json::json!({
                "mediaType": layer_media_type(layer_type, &l.bytes), "size": l.bytes.len(), "digest": l.digest,
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        Self {
            config,
            layers,
            manifest,
            media_type,
        }
    }

    pub fn digest(&self) -> String {
        sha256(&self.manifest)
    }
}

/// An index (or Docker manifest list) over `children`, each with its architecture.
pub fn index(children: &[(&Image, &str)], media_type: &'static str) -> Vec<u8> {
    serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": children.iter().map(|(img, arch)| serde_json::json!({
            "mediaType": img.media_type,
            "size": img.manifest.len(),
            "digest": img.digest(),
            "platform": {"architecture": arch, "os": "linux"},
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// The gzip media type for gzip blobs, else its `+zstd` or plain-tar sibling.
fn layer_media_type(gzip_type: &str, blob: &[u8]) -> String {
    let base = gzip_type.trim_end_matches("+gzip").trim_end_matches(".gzip");
    let sep = if gzip_type.ends_with("+gzip") { "+" } else { "." };
    if blob.starts_with(&[0x1f, 0x8b]) {
        gzip_type.to_owned()
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        format!("{base}{sep}zstd")
    } else {
        base.to_owned()
    }
}

pub fn tar_with_file(path: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, content).unwrap();
    builder.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}
