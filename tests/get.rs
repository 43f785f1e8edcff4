//! Black-box tests of the `in` binary: layers built in code, pushed to a real registry,
//! fetched with `in`, and compared with what `skopeo copy` + `umoci unpack` produce.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::bin::{self, Output};
use support::fake::{FakeServer, Reply};
use support::image::{self, Image, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use support::layer::{gzip, zstd, Layer, MTIME_1991};
use support::registry::{Auth, Registry, PASSWORD, USER};
use support::tree;

fn fetch(repo: &str, digest: &str, params: Value, dest: &Path) -> Output {
    bin::run(
        "in",
        &json!({"source": {"repository": repo}, "version": {"digest": digest}, "params": params}),
        &[dest.to_str().unwrap()],
    )
}

fn ok(out: &Output) -> Value {
    out.one_json_line("in")
}

/// Fetches with `in` and with skopeo + umoci, and returns the differences.
fn differences_from_umoci(reg: &Registry, name: &str, digest: &str) -> Vec<String> {
    differences_between(reg, name, digest, digest)
}

/// `in` of `ours` against umoci of `theirs` (the same layers, compressed for umoci).
fn differences_between(reg: &Registry, name: &str, ours: &str, theirs: &str) -> Vec<String> {
    let work = tempfile::tempdir().unwrap();
    ok(&fetch(&reg.repo(name), ours, json!({}), &work.path().join("in")));
    differences_in(reg, name, &work.path().join("in/rootfs"), theirs, work.path())
}

/// Our unpacked `rootfs` against umoci's unpack of `theirs` into `work/umoci`.
fn differences_in(reg: &Registry, name: &str, rootfs: &Path, theirs: &str, work: &Path) -> Vec<String> {
    let theirs = reg.umoci_unpack(name, theirs, &work.join("umoci"));
    let ours = tree::snapshot(rootfs);
    let mut theirs = tree::snapshot(&theirs);
    // Where umoci departs, deliberately: umoci restores a directory's times after each
    // entry written into it, but not after an opaque marker of its *parent* hid its lower
    // content, so `o/sub` keeps the time of unpacking. We keep every directory's own times
    // unless its own entry changes them. Everything else about the node must agree.
    if let (Some(o), Some(t)) = (ours.get("o/sub"), theirs.get_mut("o/sub")) {
        if t.mtime == -1 && o.kind == "dir" {
            t.mtime = o.mtime;
        }
    }
    tree::diff(&ours, &theirs)
}

/// Three layers: gzip, then gzip or zstd, then a plain tar without end-of-archive blocks.
/// `padding` more small files in the first layer make it slow to write.
fn semantics_image(zstd_layer: bool, padding: usize) -> Image {
    let mut l1 = Layer::new();
    for i in 0..padding {
        l1.file(&format!("padding/{}/{i}", i % 50), b"pad", 0o644);
    }
    l1.dir("a", 0o755)
        .file("a/x", b"x", 0o644)
        .file("a/y", b"y", 0o644);
    l1.dir("d", 0o755)
        .file("d/f", b"f", 0o644)
        .file("top", b"top", 0o644);
    l1.dir("o", 0o755)
        .file("o/lower1", b"lower", 0o644)
        .dir("o/sub", 0o755)
        .file("o/sub/lower2", b"lower", 0o644);
    l1.dir("hl", 0o755)
        .file("hl/orig", b"hardlinked", 0o644)
        .hardlink("hl/link", "hl/orig");
    l1.file("base", b"base target", 0o640);
    l1.dir("sym", 0o755)
        .file("sym/a", b"symlinked\n", 0o644)
        .symlink("sym/b", "a");
    l1.dir("df", 0o755)
        .file("df/child", b"c", 0o644)
        .file("fd", b"file", 0o644);
    l1.dir("perms", 0o755)
        .file_owned("perms/0603", b"mode 0603", 0o603, 0, 0, MTIME_1991);
    l1.file("perms/setuid", b"#!/bin/sh\n", 0o4755)
        .dir("perms/sticky", 0o1777)
        .dir("perms/setgid", 0o2755);
    l1.dir("own", 0o755)
        .file_owned("own/user", b"owned", 0o600, 1000, 1000, MTIME_1991)
        .dir_owned("own/dir", 0o750, 1000, 0);
    l1.dir("links", 0o755)
        .symlink("links/abs", "/bin/sh")
        .symlink("links/dangling", "/does/not/exist")
        .symlink("links/rel", "../top");
    l1.fifo("fifo");
    let mut l2 = Layer::new();
    l2.whiteout("a/x").whiteout("top").whiteout("d");
    // same-layer entries before and after the opaque marker both survive it
    l2.file("o/new1", b"new", 0o644)
        .file("o/sub/new2", b"new", 0o644)
        .opaque("o")
        .file("o/new3", b"new", 0o644);
    l2.whiteout("hl/orig");
    l2.hardlink("cross", "base");
    l2.file("sym/b", b"replaced\n", 0o644);
    l2.file("df", b"now a file", 0o644)
        .dir("fd", 0o755)
        .file("fd/child", b"now a dir", 0o644);
    let mut l3 = Layer::new();
    let long = format!("long/{}/file", "x".repeat(150));
    let pax = format!("pax/{}", "p".repeat(120));
    l3.dir("long", 0o755)
        .file(&long, b"long name", 0o644)
        .hardlink("long-link", &long)
        .symlink("long-sym", &long);
    l3.dir("pax", 0o755).pax_file(&pax, b"pax name");
    let (t1, t2, t3) = (l1.tar(), l2.tar(), l3.tar_without_end());
    let second = if zstd_layer { zstd(&t2) } else { gzip(&t2) };
    Image::from_layers(
        vec![(gzip(&t1), t1), (second, t2), (t3.clone(), t3)],
        OCI_MANIFEST,
        "amd64",
    )
}

#[test]
fn rootfs_matches_umoci_unpack() {
    let reg = Registry::plain();
    let digest = reg.push("sem", "gzip", &semantics_image(false, 0));
    let diffs = differences_from_umoci(&reg, "sem", &digest);
    assert!(diffs.is_empty(), "in and umoci disagree:\n{}", diffs.join("\n"));
    // umoci 0.4.7 cannot read zstd layers: compare our zstd unpack with its gzip one
    let zstd_digest = reg.push("sem", "zstd", &semantics_image(true, 0));
    let diffs = differences_between(&reg, "sem", &zstd_digest, &digest);
    assert!(
        diffs.is_empty(),
        "in (zstd) and umoci (gzip) disagree:\n{}",
        diffs.join("\n")
    );
    let digest = zstd_digest;

    // and the cases themselves, so agreement is not agreement on something wrong
    let work = tempfile::tempdir().unwrap();
    ok(&fetch(&reg.repo("sem"), &digest, json!({}), work.path()));
    let t = tree::snapshot(&work.path().join("rootfs"));
    let has = |p: &str| t.contains_key(p);
    assert!(
        !has("a/x") && has("a/y") && !has("top") && !has("d") && !has("d/f"),
        "whiteouts"
    );
    assert!(
        !has("o/lower1") && !has("o/sub/lower2"),
        "opaque hides lower content"
    );
    assert!(
        has("o/new1") && has("o/sub/new2") && has("o/new3"),
        "opaque keeps its own layer's entries"
    );
    assert_eq!(
        (t["hl/link"].kind, t["hl/link"].hardlink_group.as_str()),
        ("file", ""),
        "orphaned hardlink is a plain file"
    );
    assert_eq!(t["cross"].hardlink_group, "base", "cross-layer hardlink");
    assert_eq!((t["sym/b"].kind, t["sym/b"].size), ("file", 9));
    assert_eq!(
        std::fs::read(work.path().join("rootfs/sym/a")).unwrap(),
        b"symlinked\n"
    );
    assert_eq!(
        (t["df"].kind, t["fd"].kind, t["fd/child"].kind),
        ("file", "dir", "file")
    );
    assert_eq!(
        (t["perms/0603"].mode, t["perms/0603"].mtime),
        (0o603, MTIME_1991 as i64)
    );
    assert_eq!(
        (
            t["perms/setuid"].mode,
            t["perms/sticky"].mode,
            t["perms/setgid"].mode
        ),
        (0o4755, 0o1777, 0o2755)
    );
    assert_eq!(
        (t["own/user"].uid, t["own/user"].gid, t["own/dir"].uid),
        (1000, 1000, 1000)
    );
    assert_eq!(
        (t["links/abs"].link.as_str(), t["links/dangling"].link.as_str()),
        ("/bin/sh", "/does/not/exist")
    );
    assert_eq!(t["fifo"].kind, "fifo");
    let long = format!("long/{}/file", "x".repeat(150));
    assert_eq!(
        t["long-link"].hardlink_group, t[&long].hardlink_group,
        "hardlink to a long name"
    );
    assert!(!t[&long].hardlink_group.is_empty());
    assert_eq!(t["long-sym"].link, long);
    assert!(has(&format!("pax/{}", "p".repeat(120))));
}

#[test]
fn layers_read_while_a_lower_one_is_written_unpack_as_umoci_does() {
    let reg = Registry::plain();
    // 5,000 files keep the first layer busy while the next is read
    let digest = reg.push("ahead", "v1", &semantics_image(false, 5000));
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("in");
    let out = bin::run(
        "in",
        &json!({"source": {"repository": reg.repo("ahead"), "debug": true}, "version": {"digest": digest}}),
        &[dest.to_str().unwrap()],
    );
    ok(&out);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("layer 2: ") && l.contains("read before its turn")),
        "layer 2 was read while layer 1 was written:\n{}",
        out.stderr
    );
    let mut left: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "digest",
            "labels.json",
            "metadata.json",
            "repository",
            "rootfs",
            "tag"
        ],
        "the staging directory is gone"
    );
    let diffs = differences_in(&reg, "ahead", &dest.join("rootfs"), &digest, work.path());
    assert!(diffs.is_empty(), "in and umoci disagree:\n{}", diffs.join("\n"));
}

#[test]
fn index_picks_amd64_by_default_and_the_asked_platform_otherwise() {
    let reg = Registry::plain();
    let layer = |arch: &str| {
        let mut l = Layer::new();
        l.file("arch", arch.as_bytes(), 0o644);
        let t = l.tar();
        (gzip(&t), t)
    };
    let arm = Image::from_layers(vec![layer("arm64")], OCI_MANIFEST, "arm64");
    let amd = Image::from_layers(vec![layer("amd64")], OCI_MANIFEST, "amd64");
    let digest = reg.push_index("multi", "latest", &[(&arm, "arm64"), (&amd, "amd64")], OCI_INDEX);
    let diffs = differences_from_umoci(&reg, "multi", &digest);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    for (params, source_platform, want) in [
        (json!({}), None, "amd64"),
        (json!({"platform": {"architecture": "arm64"}}), None, "arm64"),
        (
            json!({"platform": {"architecture": "arm64/v8", "os": "linux"}}),
            None,
            "arm64",
        ),
        (json!({}), Some(json!({"architecture": "arm64"})), "arm64"),
        (
            json!({"platform": {"architecture": "amd64"}}),
            Some(json!({"architecture": "arm64"})),
            "amd64",
        ),
    ] {
        let work = tempfile::tempdir().unwrap();
        let mut source = json!({"repository": reg.repo("multi")});
        if let Some(p) = source_platform {
            source["platform"] = p;
        }
        let out = bin::run(
            "in",
            &json!({"source": source, "version": {"digest": digest}, "params": params}),
            &[work.path().to_str().unwrap()],
        );
        ok(&out);
        assert_eq!(
            std::fs::read_to_string(work.path().join("rootfs/arch")).unwrap(),
            want,
            "{params}"
        );
        assert_eq!(
            std::fs::read_to_string(work.path().join("digest")).unwrap(),
            digest,
            "digest file is the version's"
        );
    }
    let work = tempfile::tempdir().unwrap();
    let line = fetch(
        &reg.repo("multi"),
        &digest,
        json!({"platform": {"architecture": "s390x"}}),
        work.path(),
    )
    .error_line();
    assert!(
        line.contains("linux/s390x") && line.contains("linux/arm64, linux/amd64"),
        "{line}"
    );
}

#[test]
fn chroot_runs_a_static_busybox_from_the_rootfs() {
    support::registry::require("busybox");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    let bytes = std::fs::read(busybox).unwrap();
    let mut l = Layer::new();
    l.dir("bin", 0o755)
        .file("bin/busybox", &bytes, 0o755)
        .symlink("bin/sh", "busybox");
    let t = l.tar();
    let img = Image::from_layers(vec![(gzip(&t), t)], DOCKER_MANIFEST, "amd64");
    let reg = Registry::plain();
    let digest = reg.push("busybox", "latest", &img);
    let work = tempfile::tempdir().unwrap();
    ok(&fetch(&reg.repo("busybox"), &digest, json!({}), work.path()));
    let out = std::process::Command::new("chroot")
        .arg(work.path().join("rootfs"))
        .args(["/bin/busybox", "sh", "-c", "echo chrooted"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "chrooted\n");
}

#[test]
fn hostile_layers_are_refused_and_nothing_outside_changes() {
    let reg = Registry::plain();
    type MakeLayer = Box<dyn Fn(&Path) -> Layer>;
    let cases: Vec<(&str, MakeLayer)> = vec![
        (
            "dotdot",
            Box::new(|_| {
                let mut l = Layer::new();
                l.file("../../sentinel", b"pwned", 0o644);
                l
            }),
        ),
        (
            "absolute",
            Box::new(|outside| {
                let mut l = Layer::new();
                l.file(&format!("{}/sentinel", outside.display()), b"pwned", 0o644);
                l
            }),
        ),
        (
            "symlink-parent",
            Box::new(|_| {
                let mut l = Layer::new();
                l.symlink("up", "../../..")
                    .file("up/outside/sentinel", b"pwned", 0o644);
                l
            }),
        ),
        (
            "hardlink-dotdot",
            Box::new(|_| {
                let mut l = Layer::new();
                l.hardlink("h", "../../outside/sentinel");
                l
            }),
        ),
        (
            "hardlink-through-symlink",
            Box::new(|_| {
                let mut l = Layer::new();
                l.symlink("up", "../..").hardlink("h", "up/outside/sentinel");
                l
            }),
        ),
        (
            "whiteout-dotdot",
            Box::new(|_| {
                let mut l = Layer::new();
                l.file("../../outside/.wh.sentinel", b"", 0o644);
                l
            }),
        ),
        (
            "whiteout-through-symlink",
            Box::new(|_| {
                let mut l = Layer::new();
                l.symlink("up", "../..").whiteout("up/outside/sentinel");
                l
            }),
        ),
        (
            "opaque-through-symlink",
            Box::new(|_| {
                let mut l = Layer::new();
                l.symlink("up", "../../outside").opaque("up");
                l
            }),
        ),
    ];
    // the same layers again after a base layer slow to write, so they are read ahead
    let mut base = Layer::new();
    for i in 0..1000 {
        base.file(&format!("padding/{}/{i}", i % 50), b"", 0o644);
    }
    let base = base.tar();
    let base_gz = gzip(&base);
    for (name, make) in cases {
        for ahead in [false, true] {
            let work = tempfile::tempdir().unwrap();
            let outside = work.path().join("outside");
            std::fs::create_dir(&outside).unwrap();
            std::fs::write(outside.join("sentinel"), b"original").unwrap();
            let dest = work.path().join("dest");
            let t = make(&outside).tar();
            let mut layers = vec![(gzip(&t), t)];
            if ahead {
                layers.insert(0, (base_gz.clone(), base.clone()));
            }
            let img = Image::from_layers(layers, OCI_MANIFEST, "amd64");
            let digest = reg.push(name, if ahead { "ahead" } else { "alone" }, &img);
            let line = fetch(&reg.repo(name), &digest, json!({}), &dest).error_line();
            let case = format!("{name} (read ahead: {ahead})");
            assert!(line.contains("refusing entry"), "{case}: {line}");
            assert_eq!(
                std::fs::read(outside.join("sentinel")).unwrap(),
                b"original",
                "{case} touched the sentinel"
            );
            assert_eq!(
                std::fs::read_dir(&outside).unwrap().count(),
                1,
                "{case} wrote next to the sentinel"
            );
            if ahead {
                assert!(line.contains("layer 2/2"), "{case}: {line}");
                assert!(
                    !dest.join(".rootfs.staging").exists(),
                    "{case} left its staging directory"
                );
            }
        }
    }
}

#[test]
fn absolute_symlinks_in_parents_resolve_inside_the_rootfs() {
    // `var/run -> /run` is in every Debian image: writing through it is legitimate, and
    // lands in the rootfs's /run, never the host's.
    let reg = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let mut l1 = Layer::new();
    l1.dir("run", 0o755)
        .dir("var", 0o755)
        .symlink("var/run", "/run")
        .symlink("escape", &outside.display().to_string());
    let mut l2 = Layer::new();
    l2.file("var/run/app.pid", b"42", 0o644)
        .file("escape/sentinel", b"inside", 0o644);
    let (t1, t2) = (l1.tar(), l2.tar());
    let img = Image::from_layers(vec![(gzip(&t1), t1), (gzip(&t2), t2)], OCI_MANIFEST, "amd64");
    let digest = reg.push("abs", "latest", &img);
    ok(&fetch(
        &reg.repo("abs"),
        &digest,
        json!({}),
        &work.path().join("dest"),
    ));
    let rootfs = work.path().join("dest/rootfs");
    let listing = tree::snapshot(&rootfs);
    assert_eq!(
        std::fs::read(rootfs.join("run/app.pid")).ok(),
        Some(b"42".to_vec()),
        "{listing:#?}"
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    let inside = rootfs.join(outside.strip_prefix("/").unwrap()).join("sentinel");
    assert_eq!(
        std::fs::read(&inside).ok(),
        Some(b"inside".to_vec()),
        "{}: {listing:#?}",
        inside.display()
    );
}

#[test]
fn corrupted_blob_in_registry_storage_fails_naming_the_digest() {
    let reg = Registry::plain();
    let mut l = Layer::new();
    l.file("big", &vec![7u8; 200_000], 0o644);
    let t = l.tar();
    let img = Image::from_layers(vec![(gzip(&t), t)], OCI_MANIFEST, "amd64");
    let digest = reg.push("corrupt", "latest", &img);
    let layer = &img.layers[0].digest;
    let path = reg.blob_file(layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    for params in [json!({}), json!({"format": "oci"})] {
        let work = tempfile::tempdir().unwrap();
        let line = fetch(&reg.repo("corrupt"), &digest, params.clone(), work.path()).error_line();
        assert!(
            line.contains(layer.as_str()) && line.contains("corrupt"),
            "{params}: {line}"
        );
        assert!(
            !work.path().join("image.tar").exists(),
            "no partial image.tar is left behind"
        );
    }
}

#[test]
fn oci_format_writes_an_image_tar_skopeo_reads_both_ways() {
    support::registry::require("skopeo");
    let reg = Registry::plain();
    for media_type in [OCI_MANIFEST, DOCKER_MANIFEST] {
        let img = semantics_image_for(media_type);
        let digest = reg.push("tarball", "v1", &img);
        let work = tempfile::tempdir().unwrap();
        let out = bin::run(
            "in",
            &json!({"source": {"repository": reg.repo("tarball")}, "version": {"tag": "v1", "digest": digest}, "params": {"format": "oci"}}),
            &[work.path().to_str().unwrap()],
        );
        ok(&out);
        assert!(!work.path().join("rootfs").exists());
        let tar = work.path().join("image.tar");
        let inspect = |transport: &str| -> Value {
            let out = std::process::Command::new("skopeo")
                .args(["inspect", "--raw"])
                .arg(format!("{transport}:{}", tar.display()))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "skopeo inspect {transport}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let oci = inspect("oci-archive");
        assert_eq!(oci["config"]["digest"], img.config.digest, "oci-archive config");
        assert_eq!(image::sha256(&serde_json::to_vec(&oci).unwrap()).len(), 71);
        let docker = inspect("docker-archive");
        assert_eq!(
            docker["config"]["digest"], img.config.digest,
            "docker-archive config"
        );
        // the OCI view holds the registry's manifest bytes: same digest
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", tar.display()))
            .output()
            .unwrap();
        assert_eq!(
            image::sha256(&out.stdout),
            digest,
            "{media_type}: manifest bytes preserved"
        );
        let listing = tar_listing(&tar);
        for blob in std::iter::once(&img.config).chain(&img.layers) {
            assert!(
                listing.contains(&format!("blobs/sha256/{}", &blob.digest[7..])),
                "{listing:?}"
            );
        }
        let manifest: Value = serde_json::from_slice(&tar_file(&tar, "manifest.json")).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], format!("{}:v1", reg.repo("tarball")));
    }
}

fn semantics_image_for(media_type: &'static str) -> Image {
    let mut l = Layer::new();
    l.file("hello", b"hello", 0o644);
    let t = l.tar();
    let mut l2 = Layer::new();
    l2.file("second", b"two", 0o644);
    let t2 = l2.tar();
    Image::from_layers(vec![(gzip(&t), t), (gzip(&t2), t2)], media_type, "amd64")
}

fn tar_listing(path: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

fn tar_file(path: &Path, name: &str) -> Vec<u8> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            return v;
        }
    }
    panic!("{name} not in {}", path.display());
}

#[test]
fn version_files_metadata_json_and_response() {
    let reg = Registry::start(Auth::Token, false);
    let mut l = Layer::new();
    l.file("etc/hostname", b"box", 0o644);
    let t = l.tar();
    let runtime = json!({"Env": ["PATH=/bin", "GREETING=hello world"], "User": "1000:1000", "Cmd": ["-c", "echo hi"], "Entrypoint": ["/bin/sh"]});
    let img = Image::from_layers_with_config(vec![(gzip(&t), t)], OCI_MANIFEST, "amd64", runtime);
    let digest = reg.push("private/app", "stable", &img);
    let work = tempfile::tempdir().unwrap();
    let source = json!({"repository": reg.repo("private/app"), "tag": "stable", "username": USER, "password": PASSWORD});
    let out = bin::run(
        "in",
        &json!({"source": source, "version": {"digest": digest}}),
        &[work.path().to_str().unwrap()],
    );
    let response = ok(&out);
    assert_eq!(
        response,
        json!({"version": {"digest": digest}, "metadata": [
            {"name": "repository", "value": reg.repo("private/app")}, {"name": "tag", "value": "stable"}]})
    );
    let read = |n: &str| std::fs::read_to_string(work.path().join(n)).unwrap();
    assert_eq!(
        (read("digest"), read("tag"), read("repository")),
        (digest.clone(), "stable".into(), reg.repo("private/app"))
    );
    let metadata: Value = serde_json::from_str(&read("metadata.json")).unwrap();
    assert_eq!(
        metadata,
        json!({"env": ["PATH=/bin", "GREETING=hello world"], "user": "1000:1000", "cmd": ["-c", "echo hi"], "entrypoint": ["/bin/sh"]})
    );
    assert_eq!(read("rootfs/etc/hostname"), "box");
    assert!(
        out.stderr.contains("layer 1/1"),
        "a progress bar per layer: {}",
        out.stderr
    );
    // the version's own tag wins over the source's
    let work = tempfile::tempdir().unwrap();
    let out = bin::run(
        "in",
        &json!({"source": source, "version": {"tag": "v9", "digest": digest}}),
        &[work.path().to_str().unwrap()],
    );
    assert_eq!(ok(&out)["metadata"][1]["value"], "v9");
    assert_eq!(std::fs::read_to_string(work.path().join("tag")).unwrap(), "v9");
}

#[test]
fn bad_invocations() {
    let digest = image::sha256(b"x");
    let request = json!({"source": {"repository": "a"}, "version": {"digest": digest}}).to_string();
    let out = bin::run_with_timeout("in", &request, &[], std::time::Duration::from_secs(30));
    assert!(out.error_line().contains("destination path not specified"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap();
    for (input, needle) in [
        (
            json!({"source": {"repository": "a"}, "version": {"digest": digest}, "params": {"format": "tgz"}}),
            "params.format must be",
        ),
        (
            json!({"source": {"repository": "a"}, "version": {"digest": digest}, "params": {"fromat": "oci"}}),
            "unknown field `fromat`",
        ),
        (json!({"source": {"repository": "a"}}), "missing field `version`"),
        (
            json!({"source": {"repository": "a"}, "version": {"digest": digest}, "params": {"platform": {"arch": "arm64"}}}),
            "params.platform",
        ),
    ] {
        let line = bin::run("in", &input, &[dir]).error_line();
        assert!(line.contains(needle), "{input}: {line}");
    }
}

/// A fake registry serving `img` as `app`; `layer(request, nth)` answers the requests for
/// its (only) layer blob.
fn fake_registry(
    img: &Image,
    layer: impl Fn(&support::fake::Request, usize) -> Reply + Send + Sync + 'static,
) -> FakeServer {
    let (manifest, config) = (img.manifest.clone(), img.config.clone());
    let manifest_path = format!("/v2/app/manifests/{}", img.digest());
    let config_path = format!("/v2/app/blobs/{}", config.digest);
    let layer_path = format!("/v2/app/blobs/{}", img.layers[0].digest);
    FakeServer::start(move |req, nth| match req.path.as_str() {
        "/v2/" => Reply::status(200),
        p if p == manifest_path => Reply::status(200)
            .with_header("Content-Type", OCI_MANIFEST)
            .with_body(&manifest),
        p if p == config_path => Reply::status(200).with_body(&config.bytes),
        p if p == layer_path => layer(req, nth),
        _ => Reply::status(404),
    })
}

#[test]
fn a_connection_cut_mid_layer_resumes_where_it_stopped() {
    let mut l = Layer::new();
    l.file(
        "data",
        &(0..300_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>(),
        0o644,
    );
    let t = l.tar();
    let img = Image::from_layers(vec![(gzip(&t), t)], OCI_MANIFEST, "amd64");
    let digest = img.digest();
    let layer = img.layers[0].clone();
    let layer_path = format!("/v2/app/blobs/{}", layer.digest);
    let cut = layer.bytes.len() / 3;
    let server = fake_registry(&img, move |req, nth| {
        if nth == 0 {
            return Reply::Truncated(layer.bytes.len(), layer.bytes[..cut].to_vec());
        }
        let from: usize = req
            .header("range")
            .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
            .unwrap_or(0);
        Reply::status(206)
            .with_header(
                "Content-Range",
                &format!("bytes {from}-{}/{}", layer.bytes.len() - 1, layer.bytes.len()),
            )
            .with_body(&layer.bytes[from..])
    });
    let work = tempfile::tempdir().unwrap();
    ok(&fetch(
        &format!("{}/app", server.host),
        &digest,
        json!({"format": "rootfs"}),
        work.path(),
    ));
    assert_eq!(
        std::fs::read(work.path().join("rootfs/data")).unwrap().len(),
        300_000
    );
    let gets: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == layer_path)
        .collect();
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[1].header("range"), Some(format!("bytes={cut}-").as_str()));
}

#[test]
fn devices_are_created_as_root_and_skipped_otherwise() {
    let reg = Registry::plain();
    let mut l = Layer::new();
    l.dir("dev", 0o755)
        .char_device("dev/null", 1, 3)
        .file_owned("owned", b"x", 0o644, 1000, 1000, MTIME_1991);
    let t = l.tar();
    let img = Image::from_layers(vec![(gzip(&t), t)], OCI_MANIFEST, "amd64");
    let digest = reg.push("dev", "latest", &img);

    let work = tempfile::tempdir().unwrap();
    ok(&fetch(&reg.repo("dev"), &digest, json!({}), work.path()));
    let md = std::fs::symlink_metadata(work.path().join("rootfs/dev/null")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));

    // the same as an unprivileged user: no device, no chown, and a debug line saying so
    support::registry::require("setpriv");
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let request =
        json!({"source": {"repository": reg.repo("dev"), "debug": true}, "version": {"digest": digest}});
    let mut child = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            bin::path("in"),
        ])
        .arg(work.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!work.path().join("rootfs/dev/null").exists());
    assert!(stderr.contains("skipping device node dev/null"), "{stderr}");
    assert_eq!(
        std::fs::metadata(work.path().join("rootfs/owned")).unwrap().uid(),
        65534
    );
}

#[test]
fn a_layer_that_keeps_failing_ends_in_a_clear_error() {
    let mut l = Layer::new();
    l.file("data", &[1u8; 100_000], 0o644);
    let t = l.tar();
    let img = Image::from_layers(vec![(gzip(&t), t)], OCI_MANIFEST, "amd64");
    let digest = img.digest();
    let layer_digest = img.layers[0].digest.clone();
    let size = img.layers[0].bytes.len();
    let server = fake_registry(&img, move |_, _| Reply::Truncated(size, Vec::new()));
    let work = tempfile::tempdir().unwrap();
    let line = fetch(&format!("{}/app", server.host), &digest, json!({}), work.path()).error_line();
    assert!(
        line.contains(&layer_digest) && line.contains("gave up after"),
        "{line}"
    );
}

#[test]
fn blob_redirects_to_another_host_are_followed_without_credentials() {
    let mut l = Layer::new();
    l.file("data", b"from the storage host", 0o644);
    let t = l.tar();
    let img = Image::from_layers(vec![(gzip(&t), t)], OCI_MANIFEST, "amd64");
    let digest = img.digest();
    let blob = img.layers[0].bytes.clone();
    let storage = FakeServer::start(move |req, _| {
        if req.path == "/storage/layer" {
            Reply::status(200).with_body(&blob)
        } else {
            Reply::status(404)
        }
    });
    let storage_url = format!("http://{}/storage/layer", storage.host);
    let registry = fake_registry(&img, move |_, _| {
        Reply::status(307).with_header("Location", &storage_url)
    });
    let work = tempfile::tempdir().unwrap();
    ok(&fetch(
        &format!("{}/app", registry.host),
        &digest,
        json!({}),
        work.path(),
    ));
    assert_eq!(
        std::fs::read(work.path().join("rootfs/data")).unwrap(),
        b"from the storage host"
    );
    assert_eq!(storage.count("GET", "/storage/layer"), 1);
    assert!(storage
        .requests()
        .iter()
        .all(|r| r.header("authorization").is_none()));
}
