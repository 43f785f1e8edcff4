//! Manifests, indexes and image configs (OCI image spec, Docker schema 2), and the choice of
//! an index's child for a platform.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE as DOCKER_MANIFEST_LIST, IMAGE_MANIFEST_MEDIA_TYPE as DOCKER_MANIFEST,
    OCI_IMAGE_INDEX_MEDIA_TYPE as OCI_INDEX, OCI_IMAGE_MEDIA_TYPE as OCI_MANIFEST,
};

/// `Accept` for manifest requests: every single-image and multi-image type we understand.
/// Schema 1 is left out on purpose: a registry that can only offer it answers 404 or
/// converts, and we could not use it anyway.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    #[serde(default)]
    pub media_type: String,
    /// Digest of the target.
    pub digest: Digest,
    /// Size of the target in bytes.
    pub size: u64,
    /// Platform, for an index's children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations, such as an OCI layout's `org.opencontainers.image.ref.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// An OS/architecture pair, with an optional CPU variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// e.g. `v8` for arm64, `v7` for arm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

impl Platform {
    /// The platform this binary was built for: `linux/amd64` for the released binaries.
    #[must_use]
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Builds a platform from optional parts, splitting `arm64/v8`-style architectures and
    /// filling what is missing from [`Platform::host`].
    #[must_use]
    pub fn from_parts(os: Option<&str>, architecture: Option<&str>, variant: Option<&str>) -> Self {
        let host = Self::host();
        let (arch, split_variant) = match architecture {
            Some(a) => match a.split_once('/') {
                Some((a, v)) => (a.to_owned(), Some(v.to_owned())),
                None => (a.to_owned(), None),
            },
            None => (host.architecture, None),
        };
        Self {
            os: os.map_or(host.os, str::to_owned),
            architecture: arch,
            variant: variant.map(str::to_owned).or(split_variant),
        }
    }

    /// Whether an index child offered as `offered` serves a request for `self`.
    /// arm64 without a variant is v8, as the image spec says.
    fn accepts(&self, offered: &Self) -> bool {
        let normal = |p: &Self| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_owned()),
            (_, v) => v.map(str::to_owned),
        };
        self.os == offered.os
            && self.architecture == offered.architecture
            && (self.variant.is_none() || normal(self) == normal(offered))
    }
}

/// A single-image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Media type, when the manifest states it.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// Layers, base first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Media type, when the index states it.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The children.
    pub manifests: Vec<Descriptor>,
}

/// What a manifest document turned out to be.
#[derive(Debug, Clone)]
pub enum Document {
    /// One image.
    Manifest(Manifest),
    /// Several images.
    Index(Index),
}

/// Why a manifest document cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not JSON of a known shape.
    #[error("manifest is neither an image manifest nor an index")]
    Parse(#[source] serde_json::Error),
    /// An index with no child for the platform.
    #[error("no image for platform {wanted} in the index (it has: {offered})")]
    NoPlatform {
        /// The platform asked for.
        wanted: Platform,
        /// The platforms on offer, comma-separated.
        offered: String,
    },
}

impl Document {
    /// Parses manifest bytes, telling manifests and indexes apart by their fields (the
    /// `mediaType` field is optional in OCI documents).
    ///
    /// # Errors
    /// When the bytes are neither.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            manifests: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(ManifestError::Parse)?;
        if probe.manifests.is_some() {
            serde_json::from_slice(bytes)
                .map(Self::Index)
                .map_err(ManifestError::Parse)
        } else {
            serde_json::from_slice(bytes)
                .map(Self::Manifest)
                .map_err(ManifestError::Parse)
        }
    }
}

impl Index {
    /// The first child serving `wanted`. A child without a platform counts as `linux/amd64`.
    ///
    /// # Errors
    /// When no child matches; the message lists what the index offers.
    pub fn select(&self, wanted: &Platform) -> Result<&Descriptor, ManifestError> {
        let default = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let platform_of = |d: &Descriptor| d.platform.clone().unwrap_or_else(|| default.clone());
        self.manifests
            .iter()
            .find(|d| wanted.accepts(&platform_of(d)))
            .ok_or_else(|| {
                let offered: Vec<String> = self
                    .manifests
                    .iter()
                    .map(|d| platform_of(d).to_string())
                    .collect();
                ManifestError::NoPlatform {
                    wanted: wanted.clone(),
                    offered: offered.join(", "),
                }
            })
    }
}

/// The parts of an image config that the steps use.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    /// The runtime config.
    #[serde(default)]
    pub config: Option<RuntimeConfig>,
    /// When the image was built, RFC 3339.
    #[serde(default)]
    pub created: Option<String>,
}

impl ImageConfig {
    /// The config's labels (none when it has none).
    #[must_use]
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        self.config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default()
    }
}

/// `config` of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeConfig {
    /// `KEY=value` pairs.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// `user[:group]`.
    #[serde(default)]
    pub user: Option<String>,
    /// Default arguments.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Labels (read leniently: a value that is not a string is left out, a `null` is
    /// empty, as Go reads it; anything but an object is no labels).
    #[serde(default, deserialize_with = "lenient_labels")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

fn lenient_labels<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<std::collections::BTreeMap<String, String>>, D::Error> {
    let serde_json::Value::Object(map) = serde_json::Value::deserialize(deserializer)? else {
        return Ok(None);
    };
    Ok(Some(
        map.into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Null => Some((k, String::new())),
                _ => None,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_lists_all_four_types() {
        for t in [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST] {
            assert!(MANIFEST_ACCEPT.contains(t), "{t}");
        }
    }

    fn index() -> Index {
        let child = |arch: &str, variant: Option<&str>, n: u8| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::sha256(&[n]),
            size: 1,
            platform: Some(Platform {
                os: "linux".into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
            annotations: None,
        };
        Index {
            media_type: None,
            manifests: vec![
                child("arm64", None, 1),
                child("arm", Some("v6"), 2),
                child("arm", Some("v7"), 3),
                child("amd64", None, 4),
            ],
        }
    }

    #[test]
    fn selects_by_platform_and_variant() {
        let idx = index();
        let pick = |p: Platform| idx.select(&p).map(|d| d.digest.clone());
        assert_eq!(
            pick(Platform::from_parts(None, Some("amd64"), None)).unwrap(),
            Digest::sha256(&[4])
        );
        assert_eq!(
            pick(Platform::from_parts(None, Some("arm64/v8"), None)).unwrap(),
            Digest::sha256(&[1])
        );
        assert_eq!(
            pick(Platform::from_parts(None, Some("arm"), Some("v7"))).unwrap(),
            Digest::sha256(&[3])
        );
        assert_eq!(
            pick(Platform::from_parts(None, Some("arm/v7"), None)).unwrap(),
            Digest::sha256(&[3])
        );
        let err = pick(Platform::from_parts(Some("windows"), Some("amd64"), None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no image for platform windows/amd64 in the index (it has: linux/arm64, linux/arm/v6, linux/arm/v7, linux/amd64)"
        );
    }

    #[test]
    fn labels_are_read_leniently() {
        let config: ImageConfig =
            serde_json::from_str(r#"{"config":{"Labels":{"a":"1","b":null,"c":2}}}"#).unwrap();
        assert_eq!(
            config.labels(),
            std::collections::BTreeMap::from([
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), String::new())
            ])
        );
        let config: ImageConfig = serde_json::from_str(r#"{"config":{"Labels":[1]}}"#).unwrap();
        assert!(config.labels().is_empty());
    }

    #[test]
    fn tells_manifests_from_indexes() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        assert!(matches!(Document::parse(m).unwrap(), Document::Manifest(_)));
        assert!(matches!(
            Document::parse(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            Document::Index(_)
        ));
        assert!(Document::parse(b"{}").is_err());
    }
}
