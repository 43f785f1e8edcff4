//! `registry_mirror` through the binaries, with two local registries: one is the mirror,
//! the other stands in for Docker Hub (the binaries dial it for `index.docker.io` through
//! `REGISTRY_IMAGE_DOCKER_HUB_ENDPOINT`; names, files and credentials stay Docker Hub's).
//! The registries' access logs show who was asked what.

mod support;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::archive::oci_archive;
use support::bin::{self, Output};
use support::image::{Image, OCI_MANIFEST};
use support::layer::{gzip, Layer};
use support::registry::Registry;

/// Runs `name` with Docker Hub played by `hub` (a `host:port`).
fn run(name: &str, request: &Value, args: &[&str], hub: &str) -> Output {
    bin::run_with_env(
        name,
        &request.to_string(),
        args,
        Duration::from_secs(120),
        &[("REGISTRY_IMAGE_DOCKER_HUB_ENDPOINT", hub)],
    )
}

fn image(text: &str) -> Image {
    let mut layer = Layer::new();
    layer.file("hello.txt", text.as_bytes(), 0o644);
    let tar = layer.tar();
    Image::from_layers(vec![(gzip(&tar), tar)], OCI_MANIFEST, "amd64")
}

fn source(repository: &str, mirror: &str) -> Value {
    json!({"repository": repository, "registry_mirror": {"host": mirror}, "debug": true})
}

fn fetch(source: &Value, digest: &str, params: Value, dest: &Path, hub: &str) -> Output {
    run(
        "in",
        &json!({"source": source, "version": {"digest": digest}, "params": params}),
        &[dest.to_str().unwrap()],
        hub,
    )
}

/// `RepoTags` of the `manifest.json` inside an `image.tar`.
fn repo_tags(image_tar: &Path) -> Value {
    let mut archive = tar::Archive::new(std::fs::File::open(image_tar).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("manifest.json") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            let manifest: Value = serde_json::from_str(&text).unwrap();
            return manifest[0]["RepoTags"].clone();
        }
    }
    panic!("no manifest.json in {}", image_tar.display());
}

fn touching(reg: &Registry, path: &str) -> Vec<String> {
    reg.requests().into_iter().filter(|r| r.contains(path)).collect()
}

#[test]
fn a_mirror_hit_serves_everything_under_the_implicit_library_namespace() {
    let (hub, mirror) = (Registry::plain(), Registry::plain());
    let digest = mirror.push("library/busybox", "latest", &image("from the mirror"));
    let src = source("busybox", &mirror.host);

    let out = run("check", &json!({"source": src}), &[], &hub.host);
    assert_eq!(
        out.one_json_line("check"),
        json!([{"tag": "latest", "digest": digest}]),
        "{}",
        out.stderr
    );
    assert!(
        mirror
            .requests()
            .contains(&"HEAD /v2/library/busybox/manifests/latest".to_owned()),
        "{:?}",
        mirror.requests()
    );

    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("rootfs-dest");
    fetch(&src, &digest, json!({}), &dest, &hub.host).one_json_line("in");
    assert_eq!(
        std::fs::read_to_string(dest.join("rootfs/hello.txt")).unwrap(),
        "from the mirror"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("repository")).unwrap(),
        "busybox"
    );

    let dest = work.path().join("oci-dest");
    fetch(&src, &digest, json!({"format": "oci"}), &dest, &hub.host).one_json_line("in");
    assert_eq!(
        repo_tags(&dest.join("image.tar")),
        json!(["busybox:latest"]),
        "the origin's name"
    );
    assert!(
        touching(&hub, "/library/busybox/").is_empty(),
        "{:?}",
        hub.requests()
    );

    // an explicit docker.io host is Docker Hub too
    let out = run(
        "check",
        &json!({"source": source("docker.io/library/busybox", &mirror.host)}),
        &[],
        &hub.host,
    );
    assert_eq!(
        out.one_json_line("check"),
        json!([{"tag": "latest", "digest": digest}])
    );
    assert!(
        touching(&hub, "/library/busybox/").is_empty(),
        "{:?}",
        hub.requests()
    );
}

#[test]
fn a_mirror_miss_falls_back_to_the_origin() {
    let (hub, mirror) = (Registry::plain(), Registry::plain());
    let digest = hub.push("library/busybox", "1.36", &image("from the origin"));
    let src = json!({"repository": "busybox", "tag": "1.36", "registry_mirror": {"host": mirror.host}});

    let out = run("check", &json!({"source": src}), &[], &hub.host);
    assert_eq!(
        out.one_json_line("check"),
        json!([{"tag": "1.36", "digest": digest}]),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("from mirror {}: not found", mirror.host)),
        "{}",
        out.stderr
    );
    assert!(!touching(&mirror, "/library/busybox/manifests/1.36").is_empty());

    let work = tempfile::tempdir().unwrap();
    let out = fetch(&src, &digest, json!({}), work.path(), &hub.host);
    out.one_json_line("in");
    assert_eq!(
        std::fs::read_to_string(work.path().join("rootfs/hello.txt")).unwrap(),
        "from the origin"
    );
    assert!(!touching(&mirror, &format!("/library/busybox/manifests/{digest}")).is_empty());
}

#[test]
fn a_blob_the_mirror_lacks_comes_from_the_origin() {
    let (hub, mirror) = (Registry::plain(), Registry::plain());
    let img = image("half and half");
    let digest = hub.push("library/app", "latest", &img);
    mirror.push("library/app", "latest", &img);
    // the mirror lost the layer (a pull-through cache that evicted it)
    let layer = &img.layers[0].digest;
    std::fs::remove_file(mirror.blob_file(layer)).unwrap();

    let work = tempfile::tempdir().unwrap();
    let out = fetch(
        &source("app", &mirror.host),
        &digest,
        json!({}),
        work.path(),
        &hub.host,
    );
    out.one_json_line("in");
    assert_eq!(
        std::fs::read_to_string(work.path().join("rootfs/hello.txt")).unwrap(),
        "half and half"
    );
    assert!(
        out.stderr
            .contains(&format!("blob {layer} from mirror {}", mirror.host)),
        "{}",
        out.stderr
    );
    let manifest_from_hub = touching(&hub, &format!("/library/app/manifests/{digest}"));
    assert!(
        manifest_from_hub.is_empty(),
        "the manifest came from the mirror: {manifest_from_hub:?}"
    );
    assert!(
        !touching(&hub, &format!("/library/app/blobs/{layer}")).is_empty(),
        "{:?}",
        hub.requests()
    );
}

#[test]
fn failures_at_both_name_both() {
    let closed = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (mirror, hub) = (closed(), closed());
    let out = run("check", &json!({"source": source("busybox", &mirror)}), &[], &hub);
    let line = out.error_line();
    assert!(
        line.contains(&format!("mirror {mirror}:"))
            && line.contains("then origin index.docker.io")
            && line.contains(&hub),
        "{line}"
    );

    // the mirror misses, the origin fails: both said
    let empty_mirror = Registry::plain();
    let out = run(
        "check",
        &json!({"source": source("busybox", &empty_mirror.host)}),
        &[],
        &hub,
    );
    let line = out.error_line();
    assert!(
        line.contains(&format!("mirror {}: not found; then origin", empty_mirror.host)),
        "{line}"
    );
}

#[test]
fn other_hosts_and_pushes_never_touch_the_mirror() {
    let (hub, mirror, other) = (Registry::plain(), Registry::plain(), Registry::plain());
    let digest = other.push("library/busybox", "latest", &image("elsewhere"));
    let src = source(&other.repo("library/busybox"), &mirror.host);
    let out = run("check", &json!({"source": src}), &[], &hub.host);
    assert_eq!(
        out.one_json_line("check"),
        json!([{"tag": "latest", "digest": digest}])
    );
    let work = tempfile::tempdir().unwrap();
    fetch(&src, &digest, json!({}), &work.path().join("in"), &hub.host).one_json_line("in");

    // out pushes to the origin, also for a Docker Hub repository
    let archive = work.path().join("image.tar");
    let pushed = oci_archive(&[(&image("pushed"), "latest")], &archive);
    let out = run(
        "out",
        &json!({"source": source("busybox", &mirror.host), "params": {"image": "image.tar"}}),
        &[work.path().to_str().unwrap()],
        &hub.host,
    );
    assert_eq!(out.one_json_line("out")["version"]["digest"], pushed.as_str());
    assert!(!touching(&hub, "/library/busybox/manifests/latest").is_empty());
    assert!(
        mirror.requests().is_empty(),
        "the mirror was asked: {:?}",
        mirror.requests()
    );
}

#[test]
fn a_mirror_that_breaks_off_mid_blob_is_resumed_from_the_origin() {
    use support::fake::{FakeServer, Reply};
    let hub = Registry::plain();
    let mut layer = Layer::new();
    // incompressible, so the layer blob is large enough to cut in the middle
    let noise: Vec<u8> = (0u32..200_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    layer.file("noise.bin", &noise, 0o644);
    let tar = layer.tar();
    let img = Image::from_layers(vec![(gzip(&tar), tar)], OCI_MANIFEST, "amd64");
    let digest = hub.push("library/app", "latest", &img);
    let blobs: Vec<(String, Vec<u8>)> = std::iter::once(&img.config)
        .chain(&img.layers)
        .map(|b| (b.digest.clone(), b.bytes.clone()))
        .collect();
    let layer_size = img.layers[0].bytes.len();
    // the mirror has no manifests, and every blob it sends stops half-way
    let mirror = FakeServer::start(move |req, _| {
        if req.path == "/v2/" {
            return Reply::status(200);
        }
        for (d, bytes) in &blobs {
            if req.path == format!("/v2/library/app/blobs/{d}") {
                return Reply::Truncated(bytes.len(), bytes[..bytes.len() / 2].to_vec());
            }
        }
        Reply::status(404)
    });
    let work = tempfile::tempdir().unwrap();
    let out = fetch(
        &source("app", &mirror.host),
        &digest,
        json!({}),
        work.path(),
        &hub.host,
    );
    out.one_json_line("in");
    assert_eq!(
        std::fs::read(work.path().join("rootfs/noise.bin")).unwrap(),
        noise
    );
    let resumed = format!("from byte {}", layer_size / 2);
    assert!(
        out.stderr.contains(&resumed),
        "{resumed:?} not in:\n{}",
        out.stderr
    );
    assert!(
        mirror.count("GET", &format!("/v2/library/app/blobs/{}", img.layers[0].digest)) > 1,
        "the mirror was retried first"
    );
}

/// Upstream's "uses mirror and ignores failing repository": in semver mode the tags and
/// their digests come from the mirror, and Docker Hub (here: nothing listening) is never
/// needed. A mirror listing no tags is not believed: the origin is asked.
#[test]
fn semver_tags_come_from_the_mirror_first() {
    let mirror = Registry::plain();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let mut expected = Vec::new();
    for tag in ["1.0.0", "1.2.1", "2.0.0"] {
        let digest = mirror.push("library/test-image", tag, &image(tag));
        expected.push(json!({"tag": tag, "digest": digest}));
    }
    let src =
        json!({"repository": "test-image", "registry_mirror": {"host": mirror.host}, "pre_releases": false});
    let out = run("check", &json!({"source": src}), &[], &closed);
    assert_eq!(out.one_json_line("check"), json!(expected), "{}", out.stderr);

    let hub = Registry::plain();
    let from_hub = hub.push("library/other", "3.0.0", &image("hub"));
    let src = json!({"repository": "other", "registry_mirror": {"host": mirror.host}, "pre_releases": false});
    let out = run("check", &json!({"source": src}), &[], &hub.host);
    assert_eq!(
        out.one_json_line("check"),
        json!([{"tag": "3.0.0", "digest": from_hub}]),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("tag list from mirror"), "{}", out.stderr);
}
