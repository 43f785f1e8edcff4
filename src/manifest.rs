//! Manifest media types (OCI image spec and Docker schema 2).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_lists_all_four_types() {
        for t in [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST] {
            assert!(MANIFEST_ACCEPT.contains(t), "{t}");
        }
    }
}
