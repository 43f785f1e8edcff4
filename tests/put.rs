//! Black-box tests of the `out` binary: image files made in code, pushed to a real
//! registry, checked with skopeo, umoci and our own `in`.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::archive::{docker_save, oci_archive, oci_layout_dir};
use support::bin::{self, Output};
use support::image::{Image, OCI_MANIFEST};
use support::layer::{gzip, Layer};
use support::registry::{require, Auth, Registry, PASSWORD, USER};
use support::tree;

fn push(source: Value, params: Value, src: &Path) -> Output {
    bin::run(
        "out",
        &json!({"source": source, "params": params}),
        &[src.to_str().unwrap()],
    )
}

fn ok(out: &Output) -> Value {
    out.one_json_line("out")
}

/// The digest skopeo sees for `repo:tag`.
fn remote_digest(reg: &Registry, repo: &str, tag: &str) -> String {
    require("skopeo");
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &format!("{USER}:{PASSWORD}"),
        ])
        .arg(format!("docker://{}/{repo}:{tag}", reg.host))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {repo}:{tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    support::image::sha256(&out.stdout)
}

fn layers() -> Vec<Vec<u8>> {
    let mut l1 = Layer::new();
    l1.dir("etc", 0o755)
        .file("etc/os-release", b"ID=test\n", 0o644)
        .symlink("etc/link", "os-release");
    let mut l2 = Layer::new();
    l2.dir("app", 0o755)
        .file("app/run.sh", b"#!/bin/sh\necho hi\n", 0o755)
        .whiteout("etc/link");
    vec![l1.tar(), l2.tar()]
}

fn image() -> Image {
    Image::from_layers(
        layers().into_iter().map(|t| (gzip(&t), t)).collect(),
        OCI_MANIFEST,
        "amd64",
    )
}

fn expected_files(rootfs: &Path) {
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/os-release")).unwrap(),
        "ID=test\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/run.sh")).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
    assert!(!rootfs.join("etc/link").exists());
}

/// `in` and `skopeo copy` + `umoci unpack` of what was pushed agree, and hold the files.
fn assert_round_trip(reg: &Registry, repo: &str, digest: &str) {
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("in");
    let out = bin::run(
        "in",
        &json!({"source": {"repository": reg.repo(repo), "username": USER, "password": PASSWORD}, "version": {"digest": digest}}),
        &[dest.to_str().unwrap()],
    );
    assert!(out.success, "{}", out.stderr);
    expected_files(&dest.join("rootfs"));
    let theirs = reg.umoci_unpack(repo, digest, &work.path().join("umoci"));
    expected_files(&theirs);
    let diffs = tree::diff(&tree::snapshot(&dest.join("rootfs")), &tree::snapshot(&theirs));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn oci_archive_and_layout_keep_their_digest() {
    let reg = Registry::start(Auth::Basic, false);
    let work = tempfile::tempdir().unwrap();
    let img = image();
    let archive_digest = oci_archive(&[(&img, "amd64")], &work.path().join("image.tar"));
    assert_eq!(archive_digest, img.digest());
    oci_layout_dir(&[(&img, "amd64")], &work.path().join("layout"));
    let source = |repo: &str| json!({"repository": reg.repo(repo), "username": USER, "password": PASSWORD, "tag": "v1"});
    for (repo, param) in [("from-archive", "image.tar"), ("from-layout", "layout")] {
        let response = ok(&push(source(repo), json!({"image": param}), work.path()));
        assert_eq!(
            response,
            json!({"version": {"tag": "v1", "digest": archive_digest}, "metadata": [
                {"name": "repository", "value": reg.repo(repo)}, {"name": "tags", "value": "v1"}]})
        );
        assert_eq!(remote_digest(&reg, repo, "v1"), archive_digest, "{repo}");
        assert_round_trip(&reg, repo, &archive_digest);
    }
}

#[test]
fn docker_save_tars_with_compressed_and_plain_layers() {
    let reg = Registry::start(Auth::Basic, false);
    let work = tempfile::tempdir().unwrap();
    let img = image();
    let plain = layers();
    docker_save(
        &img.config.bytes,
        &img.layers.iter().map(|l| l.bytes.clone()).collect::<Vec<_>>(),
        "x:1",
        &work.path().join("gz.tar"),
    );
    docker_save(&img.config.bytes, &plain, "x:1", &work.path().join("plain.tar"));
    let source = |repo: &str| json!({"repository": reg.repo(repo), "username": USER, "password": PASSWORD});
    let mut digests = Vec::new();
    for (repo, file) in [("docker-gz", "gz.tar"), ("docker-plain", "plain.tar")] {
        let response = ok(&push(source(repo), json!({"image": file}), work.path()));
        let digest = response["version"]["digest"].as_str().unwrap().to_owned();
        assert_eq!(response["version"]["tag"], "latest");
        assert_eq!(remote_digest(&reg, repo, "latest"), digest, "{repo}");
        assert_round_trip(&reg, repo, &digest);
        digests.push(digest);
    }
    // compressing is deterministic: pushing the plain tar again makes the same digest
    let again = ok(&push(
        source("docker-plain"),
        json!({"image": "plain.tar"}),
        work.path(),
    ));
    assert_eq!(again["version"]["digest"], digests[1]);
}

#[test]
fn additional_tags_and_repushing_uploads_nothing() {
    let reg = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let img = image();
    let digest = oci_archive(&[(&img, "amd64")], &work.path().join("image.tar"));
    std::fs::create_dir(work.path().join("tags")).unwrap();
    std::fs::write(
        work.path().join("tags/list"),
        "  1.0.0\n1.0\t\t1\n\n   stable   latest\n",
    )
    .unwrap();
    let source = json!({"repository": reg.repo("app")});
    let response = ok(&push(
        source.clone(),
        json!({"image": "image.tar", "additional_tags": "tags/list"}),
        work.path(),
    ));
    assert_eq!(response["metadata"][1]["value"], "latest 1.0.0 1.0 1 stable");
    assert_eq!(response["version"], json!({"tag": "latest", "digest": digest}));
    for tag in ["latest", "1.0.0", "1.0", "1", "stable"] {
        assert_eq!(remote_digest(&reg, "app", tag), digest, "{tag}");
    }
    let uploads = |log: &str| log.matches("\"POST /v2/app/blobs/uploads/").count();
    let before = uploads(&reg.log());
    assert_eq!(
        before,
        img.layers.len() + 1,
        "first push uploads config and layers once each"
    );
    ok(&push(
        source,
        json!({"image": "image.tar", "additional_tags": "tags/list"}),
        work.path(),
    ));
    assert_eq!(uploads(&reg.log()), before, "a second push uploads no blob");
}

#[test]
fn multi_platform_index_keeps_its_digest_and_in_fetches_each_platform() {
    let reg = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let arch_image = |arch: &str| {
        let mut l = Layer::new();
        l.file("arch", arch.as_bytes(), 0o644);
        let t = l.tar();
        Image::from_layers(vec![(gzip(&t), t)], OCI_MANIFEST, arch)
    };
    let (amd, arm) = (arch_image("amd64"), arch_image("arm64"));
    let digest = oci_archive(
        &[(&arm, "arm64"), (&amd, "amd64")],
        &work.path().join("multi.tar"),
    );
    let response = ok(&push(
        json!({"repository": reg.repo("multi")}),
        json!({"image": "multi.tar"}),
        work.path(),
    ));
    assert_eq!(response["version"]["digest"], digest);
    assert_eq!(remote_digest(&reg, "multi", "latest"), digest);
    for arch in ["amd64", "arm64"] {
        let dest = work.path().join(arch);
        let out = bin::run(
            "in",
            &json!({"source": {"repository": reg.repo("multi")}, "version": {"digest": digest}, "params": {"platform": {"architecture": arch}}}),
            &[dest.to_str().unwrap()],
        );
        assert!(out.success, "{}", out.stderr);
        assert_eq!(std::fs::read_to_string(dest.join("rootfs/arch")).unwrap(), arch);
    }
}

#[test]
fn errors_before_anything_is_pushed() {
    let reg = Registry::start(Auth::Token, false);
    let work = tempfile::tempdir().unwrap();
    let img = image();
    oci_archive(&[(&img, "amd64")], &work.path().join("image-a.tar"));
    oci_archive(&[(&img, "amd64")], &work.path().join("image-b.tar"));
    std::fs::write(work.path().join("bad-tags"), "good also:bad\n").unwrap();
    let source = json!({"repository": reg.repo("app"), "username": USER, "password": PASSWORD});
    let cases = [
        (
            source.clone(),
            json!({"image": "nothing-*.tar"}),
            "no files match glob 'nothing-*.tar'",
        ),
        (
            source.clone(),
            json!({"image": "image-?.tar"}),
            "too many files match glob 'image-?.tar': image-a.tar, image-b.tar",
        ),
        (
            source.clone(),
            json!({"image": "image-a.tar", "additional_tags": "bad-tags"}),
            "\"also:bad\"",
        ),
        (
            source.clone(),
            json!({"image": "image-a.tar", "additional_tags": "missing"}),
            "params.additional_tags: ",
        ),
        (
            json!({"repository": reg.repo("app"), "username": USER, "password": "wrong"}),
            json!({"image": "image-a.tar"}),
            "401",
        ),
        (source.clone(), json!({"image": "image-[ab"}), "invalid glob"),
        (
            json!({"repository": reg.repo("app"), "username": USER, "password": PASSWORD,
                   "content_trust": {"repository_key_id": "abc", "repository_key": "not a key", "repository_passphrase": "p"}}),
            json!({"image": "image-a.tar"}),
            "source.content_trust.repository_key: the key is not PEM",
        ),
    ];
    for (source, params, needle) in cases {
        let line = push(source, params.clone(), work.path()).error_line();
        assert!(line.contains(needle), "{params}: {line}");
    }
    // nothing reached the registry: the repository has no tags
    let out = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            "--creds",
            &format!("{USER}:{PASSWORD}"),
        ])
        .arg(format!("docker://{}", reg.repo("app")))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() || !stdout.contains("latest"), "{stdout}");
    let line = bin::run_with_timeout(
        "out",
        &json!({"source": {"repository": "a"}, "params": {"image": "x"}}).to_string(),
        &[],
        std::time::Duration::from_secs(30),
    )
    .error_line();
    assert!(line.contains("sources path not specified"), "{line}");
}

#[test]
fn a_registry_refusing_a_body_on_put_gets_patch_then_put() {
    use std::sync::{Arc, Mutex};
    use support::fake::{FakeServer, Reply};
    let work = tempfile::tempdir().unwrap();
    let img = image();
    let digest = oci_archive(&[(&img, "amd64")], &work.path().join("image.tar"));
    let received: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    let manifest_digest = digest.clone();
    let server = FakeServer::start(move |req, _| {
        let path = req.path.as_str();
        let accepted = |location: &str| Reply::status(202).with_header("Location", location);
        let reply = match req.method.as_str() {
            "GET" if path == "/v2/" => Reply::status(200),
            "HEAD" => Reply::status(404),
            "POST" if path == "/v2/app/blobs/uploads/" => accepted("/upload/session"),
            // a body on the closing PUT is refused; the empty PUT after a PATCH is fine
            "PUT" if path.starts_with("/upload/session?") => Reply::status(405),
            "PATCH" if path == "/upload/session" => accepted("/upload/patched"),
            "PUT" if path.starts_with("/upload/patched?digest=") => Reply::status(201),
            "PUT" if path == "/v2/app/manifests/latest" => {
                Reply::status(201).with_header("Docker-Content-Digest", &manifest_digest)
            }
            _ => Reply::status(400),
        };
        seen.lock()
            .unwrap()
            .push(format!("{} {}", req.method, path.split('?').next().unwrap()));
        reply
    });
    let response = ok(&push(
        json!({"repository": format!("{}/app", server.host)}),
        json!({"image": "image.tar"}),
        work.path(),
    ));
    assert_eq!(response["version"]["digest"], digest);
    let received = received.lock().unwrap();
    let count = |what: &str| received.iter().filter(|r| r.as_str() == what).count();
    let blobs = img.layers.len() + 1;
    assert_eq!(count("PATCH /upload/session"), blobs, "{received:?}");
    assert_eq!(count("PUT /upload/patched"), blobs, "{received:?}");
    assert_eq!(count("PUT /v2/app/manifests/latest"), 1);
}
