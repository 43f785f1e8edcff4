//! The resource as it ships: static binaries that run alone in an empty root with only a
//! CA bundle, and the resource image `scripts/build-resource-image` makes without Docker,
//! pushed with our `out`, fetched with our `in`, whose own `/opt/resource/check` then runs
//! inside the fetched rootfs (chroot, as root) against a local TLS registry: the resource
//! fetches and runs itself. Two builds give one digest.
//!
//! The binaries are `$REGISTRY_IMAGE_BIN_DIR`'s when set (scripts/test sets the release
//! build's), else the ones cargo built for these tests (debug, also static musl).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::bin;
use support::image::{Image, OCI_MANIFEST};
use support::registry::{Auth, Registry};

fn bin_dir() -> PathBuf {
    std::env::var_os("REGISTRY_IMAGE_BIN_DIR").map_or_else(
        || Path::new(bin::path("check")).parent().unwrap().to_owned(),
        PathBuf::from,
    )
}

/// Runs `/opt/resource/check` inside `root` with `chroot`, `request` on stdin.
fn check_in_chroot(root: &Path, request: &Value) -> (bool, String, String) {
    let mut child = Command::new("chroot")
        .arg(root)
        .arg("/opt/resource/check")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chroot (the suite runs as root)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A registry over TLS with a pushed image `app:latest`; returns it and the digest.
fn tls_registry_with_an_image() -> (Registry, String) {
    let reg = Registry::start(Auth::None, true);
    let image = Image::with_file("hello", OCI_MANIFEST);
    let digest = reg.push("app", "latest", &image);
    assert_eq!(digest, image.digest());
    (reg, digest)
}

#[test]
fn the_static_binaries_run_alone_in_an_empty_root_with_a_ca_bundle() {
    let (reg, digest) = tls_registry_with_an_image();
    support::registry::require("file");
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("opt/resource")).unwrap();
    std::fs::create_dir_all(root.path().join("etc/ssl/certs")).unwrap();
    for b in ["check", "in", "out"] {
        std::fs::copy(bin_dir().join(b), root.path().join("opt/resource").join(b)).unwrap();
        let out = Command::new("file").arg(bin_dir().join(b)).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("statically linked") || text.contains("static-pie linked"),
            "{text}"
        );
    }
    // the registry's CA is the only one the bundle holds: no ca_certs in the request
    std::fs::write(
        root.path().join("etc/ssl/certs/ca-certificates.crt"),
        reg.ca_pem.clone().unwrap(),
    )
    .unwrap();
    let (ok, stdout, stderr) =
        check_in_chroot(root.path(), &json!({"source": {"repository": reg.repo("app")}}));
    assert!(ok, "{stderr}");
    let versions: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(versions[0]["digest"], digest.as_str(), "{stdout}");

    // without the bundle the registry is not trusted: the roots really came from it
    std::fs::write(root.path().join("etc/ssl/certs/ca-certificates.crt"), "").unwrap();
    let (ok, _, stderr) = check_in_chroot(root.path(), &json!({"source": {"repository": reg.repo("app")}}));
    assert!(!ok && stderr.contains("certificate"), "{stderr}");
}

fn build(output: &Path, bundle: &Path, push: Option<(&str, &Value)>) -> (String, Option<Value>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-resource-image");
    let mut command = Command::new(script);
    command
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--ca-bundle")
        .arg(bundle)
        .arg("--output")
        .arg(output);
    if let Some((repository, source)) = push {
        command.args(["--push", repository, "--source", &source.to_string()]);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "build-resource-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    let digest = lines.next().unwrap().to_owned();
    let response = lines.next().map(|l| serde_json::from_str(l).unwrap());
    (digest, response)
}

#[test]
fn the_resource_image_fetches_and_runs_itself() {
    let (reg, app_digest) = tls_registry_with_an_image();
    let ca = reg.ca_pem.clone().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle.crt");
    std::fs::write(&bundle, &ca).unwrap();

    // reproducible: two builds, one digest, byte for byte
    let (first, _) = build(&work.path().join("one/image.tar"), &bundle, None);
    let (second, response) = build(
        &work.path().join("two/image.tar"),
        &bundle,
        Some((&reg.repo("resource"), &json!({"ca_certs": [ca]}))),
    );
    assert_eq!(first, second);
    assert_eq!(
        std::fs::read(work.path().join("one/image.tar")).unwrap(),
        std::fs::read(work.path().join("two/image.tar")).unwrap()
    );
    let response = response.expect("out's response");
    assert_eq!(response["version"]["digest"], first.as_str());

    // Concourse's get of the resource type: our in, as rootfs
    let dest = work.path().join("fetched");
    let out = bin::run(
        "in",
        &json!({"source": {"repository": reg.repo("resource"), "ca_certs": [ca]},
                "version": {"digest": first}}),
        &[dest.to_str().unwrap()],
    );
    out.one_json_line("in");
    let rootfs = dest.join("rootfs");
    assert!(rootfs.join("opt/resource/in").is_file() && rootfs.join("opt/resource/out").is_file());

    // and the fetched check runs there, trusting the registry through the image's bundle
    let (ok, stdout, stderr) = check_in_chroot(&rootfs, &json!({"source": {"repository": reg.repo("app")}}));
    assert!(ok, "{stderr}");
    let versions: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(versions[0]["digest"], app_digest.as_str());
    let (ok, stdout, _) = check_in_chroot(&rootfs, &json!({"source": {"repository": reg.repo("resource")}}));
    assert!(ok);
    let versions: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        versions[0]["digest"],
        first.as_str(),
        "the resource checks itself"
    );
}

#[test]
fn the_dockerfiles_build_and_test_what_this_suite_tests() {
    // Docker is not part of the suite; what the Dockerfiles run is: the locked release
    // build for the platform's musl target, the test command, and the binaries and CA
    // bundle where the tests above put them.
    for base in ["alpine", "ubuntu"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("dockerfiles/{base}/Dockerfile"));
        let text = std::fs::read_to_string(&path).unwrap();
        for needle in [
            "AS builder",
            "x86_64-unknown-linux-musl",
            "aarch64-unknown-linux-musl",
            "cargo build --release --locked --target \"$target\" --bins",
            "AS tests",
            "RUN scripts/test",
            "ca-certificates",
            "COPY --from=builder /assets/ /opt/resource/",
        ] {
            assert!(text.contains(needle), "{}: no {needle:?}", path.display());
        }
        let last_stage = text.lines().rfind(|l| l.starts_with("FROM ")).unwrap();
        assert!(
            last_stage.ends_with("AS resource"),
            "{base}: the default stage is {last_stage}"
        );
    }
}

#[test]
fn the_resource_image_can_be_built_on_a_base_image_fetched_by_in() {
    let reg = Registry::start(Auth::None, true);
    let mut layer = support::layer::Layer::new();
    layer.file("hello.txt", b"hello", 0o644);
    let tar = layer.tar();
    let app = Image::from_layers(vec![(support::layer::gzip(&tar), tar)], OCI_MANIFEST, "amd64");
    let app_digest = reg.push("app", "latest", &app);
    let ca = reg.ca_pem.clone().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle.crt");
    std::fs::write(&bundle, &ca).unwrap();
    // the base: the app image, as `in` writes it with format: oci
    let base = work.path().join("base");
    let out = bin::run(
        "in",
        &json!({"source": {"repository": reg.repo("app"), "ca_certs": [ca]},
                "version": {"digest": app_digest}, "params": {"format": "oci"}}),
        &[base.to_str().unwrap()],
    );
    out.one_json_line("in");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-resource-image");
    let output = work.path().join("out/image.tar");
    let run = Command::new(&script)
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--ca-bundle")
        .arg(&bundle)
        .arg("--base")
        .arg(base.join("image.tar"))
        .arg("--output")
        .arg(&output)
        .args(["--push", &format!("{}:on-base", reg.repo("resource")), "--source"])
        .arg(json!({"ca_certs": [ca]}).to_string())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let digest = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let dest = work.path().join("fetched");
    let out = bin::run(
        "in",
        &json!({"source": {"repository": reg.repo("resource"), "tag": "on-base", "ca_certs": [ca]},
                "version": {"digest": digest}}),
        &[dest.to_str().unwrap()],
    );
    out.one_json_line("in");
    // the base's file and the resource's binaries, one over the other
    assert_eq!(
        std::fs::read_to_string(dest.join("rootfs/hello.txt")).unwrap(),
        "hello"
    );
    let (ok, stdout, stderr) = check_in_chroot(
        &dest.join("rootfs"),
        &json!({"source": {"repository": reg.repo("app")}}),
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&app_digest), "{stdout}");
}
