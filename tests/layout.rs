//! `in` with `format: oci-layout` (and `out` pushing the layout back with the same digest),
//! `labels.json`, `label_regex`/`annotation_regex` metadata and `skip_download`, through
//! the binaries against a real registry, with `skopeo` reading what `in` wrote.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::bin::{self, Output};
use support::image::{self, Image, OCI_INDEX, OCI_MANIFEST};
use support::layer::{gzip, Layer};
use support::registry::{require, Registry};

fn get(source: &Value, version: &Value, params: &Value, dest: &Path) -> Output {
    bin::run(
        "in",
        &json!({"source": source, "version": version, "params": params}),
        &[dest.to_str().unwrap()],
    )
}

fn put(source: &Value, params: &Value, src: &Path) -> Output {
    bin::run(
        "out",
        &json!({"source": source, "params": params}),
        &[src.to_str().unwrap()],
    )
}

/// An image for `arch` whose config carries `labels` and whose manifest `annotations`.
fn labelled(content: &str, arch: &str, labels: Value, annotations: Option<Value>) -> Image {
    let mut layer = Layer::new();
    layer.file("hello.txt", content.as_bytes(), 0o644);
    let tar = layer.tar();
    let mut img = Image::from_layers_with_config(
        vec![(gzip(&tar), tar)],
        OCI_MANIFEST,
        arch,
        json!({"Env": ["PATH=/bin"], "Labels": labels}),
    );
    if let Some(annotations) = annotations {
        let mut manifest: Value = serde_json::from_slice(&img.manifest).unwrap();
        manifest["annotations"] = annotations;
        img.manifest = serde_json::to_vec(&manifest).unwrap();
    }
    img
}

fn skopeo_inspect(reference: &str) -> Value {
    require("skopeo");
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", reference])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Upstream's I11: the layout of an index holds every platform, `index.json` is the
/// registry's index byte for byte, and `out` pushes it to another repository with the
/// same digest.
#[test]
fn an_index_round_trips_through_oci_layout_with_its_digest() {
    let reg = Registry::plain();
    let amd = labelled("amd", "amd64", json!({}), None);
    let arm = labelled("arm", "arm64", json!({}), None);
    let digest = reg.push_index("multi", "v1", &[(&amd, "amd64"), (&arm, "arm64")], OCI_INDEX);
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("get");
    let source = json!({"repository": reg.repo("multi")});
    let out = get(
        &source,
        &json!({"tag": "v1", "digest": digest}),
        &json!({"format": "oci-layout"}),
        &dest,
    );
    out.one_json_line("in");
    assert_eq!(files(&dest), ["digest", "oci", "repository", "tag"]);
    let oci = dest.join("oci");
    assert_eq!(
        files(&oci),
        ["blobs", "index-digest", "index.json", "oci-layout"],
        "no single-image-digest"
    );
    assert_eq!(std::fs::read_to_string(oci.join("index-digest")).unwrap(), digest);
    let index = std::fs::read(oci.join("index.json")).unwrap();
    assert_eq!(
        image::sha256(&index),
        digest,
        "index.json is the registry's index"
    );
    for blob in [&amd, &arm]
        .iter()
        .flat_map(|i| [i.digest(), i.config.digest.clone(), i.layers[0].digest.clone()])
    {
        assert!(oci.join("blobs/sha256").join(&blob[7..]).is_file(), "{blob}");
    }
    // skopeo 1.9 cannot pick an image of an unnamed index layout ("more than one image in
    // oci, choose an image"), so it reads each platform through a copy of the layout whose
    // index.json names it: the blobs are the ones `in` wrote.
    for (img, arch) in [(&amd, "amd64"), (&arm, "arm64")] {
        let copy = work.path().join(format!("named-{arch}"));
        std::fs::create_dir(&copy).unwrap();
        std::os::unix::fs::symlink(oci.join("blobs"), copy.join("blobs")).unwrap();
        std::fs::copy(oci.join("oci-layout"), copy.join("oci-layout")).unwrap();
        let entry = json!({"mediaType": OCI_MANIFEST, "digest": img.digest(), "size": img.manifest.len(),
                           "annotations": {"org.opencontainers.image.ref.name": arch}});
        std::fs::write(
            copy.join("index.json"),
            json!({"schemaVersion": 2, "manifests": [entry]}).to_string(),
        )
        .unwrap();
        let manifest = skopeo_inspect(&format!("oci:{}:{arch}", copy.display()));
        assert_eq!(manifest["config"]["digest"], img.config.digest.as_str(), "{arch}");
    }

    let out = put(
        &json!({"repository": reg.repo("mirrored"), "tag": "v1"}),
        &json!({"image": "get/oci"}),
        work.path(),
    );
    let response = out.one_json_line("out");
    assert_eq!(response["version"]["digest"], digest.as_str(), "{}", out.stderr);
    assert_eq!(reg.digest_of("mirrored", "v1").as_deref(), Some(digest.as_str()));
    assert_eq!(
        reg.digest_of("mirrored", &amd.digest()).as_deref(),
        Some(amd.digest().as_str())
    );
}

/// A one-platform index stays an index: `index.json` is the index, pushed as itself.
#[test]
fn a_one_platform_index_round_trips_as_an_index() {
    let reg = Registry::plain();
    let only = labelled("only", "amd64", json!({}), None);
    let digest = reg.push_index("one", "v1", &[(&only, "amd64")], OCI_INDEX);
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("get");
    let source = json!({"repository": reg.repo("one")});
    get(
        &source,
        &json!({"digest": digest}),
        &json!({"format": "oci-layout"}),
        &dest,
    )
    .one_json_line("in");
    let out = put(
        &json!({"repository": reg.repo("one-again")}),
        &json!({"image": "get/oci"}),
        work.path(),
    );
    assert_eq!(
        out.one_json_line("out")["version"]["digest"],
        digest.as_str(),
        "{}",
        out.stderr
    );
}

/// Upstream's O8: a single manifest is wrapped in a one-entry index and named by
/// `single-image-digest`; `out` pushes the image itself back.
#[test]
fn a_single_manifest_round_trips_through_oci_layout() {
    let reg = Registry::plain();
    let img = labelled("single", "amd64", json!({"a": "b"}), None);
    let digest = reg.push("single", "v2", &img);
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("get");
    let source = json!({"repository": reg.repo("single")});
    get(
        &source,
        &json!({"tag": "v2", "digest": digest}),
        &json!({"format": "oci-layout"}),
        &dest,
    )
    .one_json_line("in");
    let oci = dest.join("oci");
    assert_eq!(
        files(&oci),
        ["blobs", "index.json", "oci-layout", "single-image-digest"]
    );
    assert_eq!(
        std::fs::read_to_string(oci.join("single-image-digest")).unwrap(),
        digest
    );
    let manifest = skopeo_inspect(&format!("oci:{}:v2", oci.display()));
    assert_eq!(manifest["config"]["digest"], img.config.digest.as_str());
    let out = put(
        &json!({"repository": reg.repo("single-again")}),
        &json!({"image": "get/oci"}),
        work.path(),
    );
    assert_eq!(
        out.one_json_line("out")["version"]["digest"],
        digest.as_str(),
        "{}",
        out.stderr
    );
    assert_eq!(
        reg.digest_of("single-again", "latest").as_deref(),
        Some(digest.as_str())
    );
}

/// Upstream's I22 and labels.json: `{}` without labels; the regexes' matches, labels then
/// annotations, each sorted by key.
#[test]
fn labels_and_annotations_become_files_and_metadata() {
    let reg = Registry::plain();
    let plain = labelled("plain", "amd64", json!(null), None);
    let plain_digest = reg.push("labels", "plain", &plain);
    let img = labelled(
        "rich",
        "amd64",
        json!({"org.example.b": "2", "org.example.a": "1", "other": "x"}),
        Some(json!({"org.opencontainers.image.source": "https://example.com/repo", "skipped": "y"})),
    );
    let digest = reg.push("labels", "rich", &img);
    let source = json!({"repository": reg.repo("labels")});
    let work = tempfile::tempdir().unwrap();
    for (format, name) in [("rootfs", "r"), ("oci", "o")] {
        let dest = work.path().join(format!("{name}-plain"));
        let out = get(
            &source,
            &json!({"digest": plain_digest}),
            &json!({"format": format}),
            &dest,
        );
        let response = out.one_json_line("in");
        assert_eq!(
            std::fs::read_to_string(dest.join("labels.json")).unwrap(),
            "{}\n",
            "{format}"
        );
        assert_eq!(
            response["metadata"].as_array().unwrap().len(),
            2,
            "repository and tag only: {response}"
        );
        let dest = work.path().join(format!("{name}-rich"));
        get(
            &source,
            &json!({"digest": digest}),
            &json!({"format": format}),
            &dest,
        )
        .one_json_line("in");
        assert_eq!(
            std::fs::read_to_string(dest.join("labels.json")).unwrap(),
            "{\"org.example.a\":\"1\",\"org.example.b\":\"2\",\"other\":\"x\"}\n",
            "{format}"
        );
    }
    let regex_source = json!({
        "repository": reg.repo("labels"),
        "label_regex": "^org\\.example\\.",
        "annotation_regex": "opencontainers",
    });
    let expected = json!([
        {"name": "repository", "value": reg.repo("labels")},
        {"name": "tag", "value": "rich"},
        {"name": "org.example.a", "value": "1"},
        {"name": "org.example.b", "value": "2"},
        {"name": "org.opencontainers.image.source", "value": "https://example.com/repo"},
    ]);
    for (params, name) in [
        (json!({}), "regex-rootfs"),
        (json!({"format": "oci-layout"}), "regex-layout"),
        (json!({"skip_download": true}), "regex-skip"),
    ] {
        let dest = work.path().join(name);
        let out = get(
            &regex_source,
            &json!({"tag": "rich", "digest": digest}),
            &params,
            &dest,
        );
        assert_eq!(out.one_json_line("in")["metadata"], expected, "{name}");
    }
    // skip_download: the version files only, no layers
    assert_eq!(
        files(&work.path().join("regex-skip")),
        ["digest", "repository", "tag"]
    );
}

/// `skip_download` fetches the manifest, so a version that is not there fails the step.
#[test]
fn skip_download_fetches_the_manifest() {
    let reg = Registry::plain();
    let img = labelled("here", "amd64", json!({}), None);
    let digest = reg.push("skip", "latest", &img);
    let work = tempfile::tempdir().unwrap();
    let source = json!({"repository": reg.repo("skip")});
    let dest = work.path().join("here");
    get(
        &source,
        &json!({"digest": digest}),
        &json!({"skip_download": true}),
        &dest,
    )
    .one_json_line("in");
    assert_eq!(files(&dest), ["digest", "repository", "tag"]);
    let gone = image::sha256(b"never pushed");
    let line = get(
        &source,
        &json!({"digest": gone}),
        &json!({"skip_download": true}),
        &work.path().join("gone"),
    )
    .error_line();
    assert!(line.contains(&gone) && line.contains("404"), "{line}");
}
