//! Image files as build tools leave them: OCI archives and layouts (BuildKit, skopeo,
//! `docker save` ≥ 25) and classic `docker save` tars.

use std::path::Path;

use super::image::{index, sha256, Image, OCI_INDEX};

fn add(b: &mut tar::Builder<std::fs::File>, name: &str, bytes: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, bytes).unwrap();
}

/// The files of an OCI layout holding `images` (under an index when there are several).
/// Returns (name, bytes) pairs and the digest `index.json` points at.
fn layout_files(images: &[(&Image, &str)], tag: &str) -> (Vec<(String, Vec<u8>)>, String) {
    let mut files = vec![(
        "oci-layout".to_owned(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )];
    let blob = |bytes: &[u8]| (format!("blobs/sha256/{}", &sha256(bytes)[7..]), bytes.to_vec());
    for (img, _) in images {
        files.push(blob(&img.manifest));
        files.push(blob(&img.config.bytes));
        for l in &img.layers {
            files.push(blob(&l.bytes));
        }
    }
    let (root_bytes, root_type) = if images.len() == 1 {
        (images[0].0.manifest.clone(), images[0].0.media_type)
    } else {
        let idx = index(images, OCI_INDEX);
        files.push(blob(&idx));
        (idx, OCI_INDEX)
    };
    let digest = sha256(&root_bytes);
    let index_json = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": root_type, "digest": digest, "size": root_bytes.len(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    });
    files.push(("index.json".into(), serde_json::to_vec(&index_json).unwrap()));
    (files, digest)
}

/// Writes an OCI archive; returns the digest of what `index.json` names.
pub fn oci_archive(images: &[(&Image, &str)], path: &Path) -> String {
    let (files, digest) = layout_files(images, "latest");
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in files {
        add(&mut b, &name, &bytes);
    }
    b.finish().unwrap();
    digest
}

/// Writes an OCI layout directory; returns the digest of what `index.json` names.
pub fn oci_layout_dir(images: &[(&Image, &str)], dir: &Path) -> String {
    let (files, digest) = layout_files(images, "latest");
    for (name, bytes) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    digest
}

/// Writes a classic `docker save` tar: `manifest.json`, the config, and each layer as
/// given (compressed or plain tars).
pub fn docker_save(config: &[u8], layers: &[Vec<u8>], repo_tag: &str, path: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let config_name = format!("{}.json", &sha256(config)[7..]);
    add(&mut b, &config_name, config);
    let mut names = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let name = format!("layer{i}/layer.tar");
        add(&mut b, &name, layer);
        names.push(name);
    }
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": [repo_tag], "Layers": names}]);
    add(&mut b, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    b.finish().unwrap();
}
