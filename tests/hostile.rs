//! Hostile registries, files and input (issue 13): each test drives the binaries against a
//! fake server (other "hosts" on 127.0.0.2 and up) or crafted files and checks that the
//! README's promise holds: the right digest or a clear error, no secret shown, bounded
//! memory, time and output.

mod support;

use std::path::Path;

use serde_json::json;
use support::archive::{oci_archive, oci_layout_dir};
use support::bin;
use support::fake::{FakeServer, Reply};
use support::image::{sha512, tar_with_file, Image, OCI_INDEX, OCI_MANIFEST};

/// `bytes` through `gzip -1`: the test's own deflate is slow on large input in a debug build.
fn gzip_quickly(bytes: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("gzip")
        .args(["-1", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// The peak resident set a binary may reach in the tests where memory is the point: well
/// above what `in` and `out` take on small images (about 20 MiB), well below what reading
/// the hostile input whole takes.
const PEAK_LIMIT: u64 = 64 * 1024 * 1024;

fn check(source: serde_json::Value) -> bin::Output {
    bin::run("check", &json!({ "source": source }), &[])
}

/// A manifest whose body ends with the connection (no `Content-Length`) is only taken when
/// it is a whole manifest: half of one is retried, never hashed into a version.
#[test]
fn a_manifest_cut_short_without_a_length_is_never_a_version() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let half = manifest[..manifest.len() / 2].to_vec();
    let server = FakeServer::start(move |req, nth| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v2/") => Reply::status(200),
        ("HEAD", _) => Reply::status(200),
        ("GET", "/v2/app/manifests/latest") if nth == 0 => {
            let mut raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n".to_vec();
            raw.extend_from_slice(&half);
            Reply::Raw(raw)
        }
        ("GET", "/v2/app/manifests/latest") => Reply::status(200)
            .with_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .with_body(manifest),
        _ => Reply::status(404),
    });
    let out = check(json!({"repository": format!("{}/app", server.host)}));
    assert_eq!(
        out.one_json_line("check"),
        json!([{"tag": "latest", "digest": support::image::sha256(manifest)}]),
        "{}",
        out.stderr
    );
    assert_eq!(server.count("GET", "/v2/app/manifests/latest"), 2, "retried once");
}

/// A registry serving `manifests` (reference → media type and bytes) and the blobs of
/// `images`, whatever digests they are asked for by.
fn serving(manifests: Vec<(String, &'static str, Vec<u8>)>, images: &[&Image]) -> FakeServer {
    let blobs: Vec<(String, Vec<u8>)> = images
        .iter()
        .flat_map(|i| std::iter::once(&i.config).chain(&i.layers))
        .map(|b| (format!("/v2/app/blobs/{}", b.digest), b.bytes.clone()))
        .collect();
    FakeServer::start(move |req, _| {
        if req.path == "/v2/" {
            return Reply::status(200);
        }
        for (reference, media_type, bytes) in &manifests {
            if req.path == format!("/v2/app/manifests/{reference}") {
                return Reply::status(200)
                    .with_header("Content-Type", media_type)
                    .with_body(bytes);
            }
        }
        for (path, bytes) in &blobs {
            if &req.path == path {
                return Reply::status(200).with_body(bytes);
            }
        }
        Reply::status(404)
    })
}

fn get(server: &FakeServer, digest: &str) -> (bin::Output, tempfile::TempDir) {
    let dest = tempfile::tempdir().unwrap();
    let out = bin::run(
        "in",
        &json!({"source": {"repository": format!("{}/app", server.host)}, "version": {"digest": digest}}),
        &[dest.path().to_str().unwrap()],
    );
    (out, dest)
}

/// A version pinned by sha512 is verified with sha512: the registry cannot serve another
/// manifest for it.
#[test]
fn a_version_pinned_by_sha512_is_verified() {
    let real = Image::with_file("real", OCI_MANIFEST);
    let evil = Image::with_file("evil", OCI_MANIFEST);
    let pin = sha512(&real.manifest);
    let server = serving(
        vec![(pin.clone(), OCI_MANIFEST, evil.manifest.clone())],
        &[&real, &evil],
    );
    let (out, dest) = get(&server, &pin);
    let line = out.error_line();
    assert!(
        line.contains(&sha512(&evil.manifest)) && line.contains("not the one asked for"),
        "{line}"
    );
    assert!(!dest.path().join("rootfs/hello.txt").exists());

    let server = serving(vec![(pin.clone(), OCI_MANIFEST, real.manifest.clone())], &[&real]);
    let (out, dest) = get(&server, &pin);
    assert_eq!(out.one_json_line("in")["version"], json!({"digest": pin}));
    assert_eq!(
        std::fs::read(dest.path().join("rootfs/hello.txt")).unwrap(),
        b"real"
    );
}

/// An index pinned by sha256 whose child is listed by sha512: the child is verified with
/// sha512, so it cannot be swapped.
#[test]
fn an_index_child_listed_by_sha512_is_verified_with_sha512() {
    let real = Image::with_file("real", OCI_MANIFEST);
    let evil = Image::with_file("evil", OCI_MANIFEST);
    let child = sha512(&real.manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "size": real.manifest.len(), "digest": child,
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    let pin = support::image::sha256(&index);
    let server = serving(
        vec![
            (pin.clone(), OCI_INDEX, index.clone()),
            (child.clone(), OCI_MANIFEST, evil.manifest.clone()),
        ],
        &[&real, &evil],
    );
    let (out, dest) = get(&server, &pin);
    let line = out.error_line();
    assert!(line.contains(&sha512(&evil.manifest)), "{line}");
    assert!(!dest.path().join("rootfs/hello.txt").exists());

    let server = serving(
        vec![
            (pin.clone(), OCI_INDEX, index),
            (child, OCI_MANIFEST, real.manifest.clone()),
        ],
        &[&real],
    );
    let (out, dest) = get(&server, &pin);
    assert_eq!(out.one_json_line("in")["version"], json!({"digest": pin}));
    assert_eq!(
        std::fs::read(dest.path().join("rootfs/hello.txt")).unwrap(),
        b"real"
    );
}

/// A server that records every request and answers none usefully: `out` must fail before
/// it is asked anything.
fn untouched() -> FakeServer {
    FakeServer::start(|_, _| Reply::status(500))
}

fn push(server: &FakeServer, params: serde_json::Value, src: &Path) -> bin::Output {
    bin::run(
        "out",
        &json!({"source": {"repository": format!("{}/app", server.host)}, "params": params}),
        &[src.to_str().unwrap()],
    )
}

/// `out` reads nothing outside its sources directory: not by `..`, not by an absolute
/// path, not through a symlink (to a file, or a directory on the way), not through names
/// inside a `docker save` directory or an OCI layout. Each is refused with the path named,
/// before any request.
#[test]
fn out_reads_nothing_outside_its_sources_directory() {
    let work = tempfile::tempdir().unwrap();
    let (src, outside) = (work.path().join("src"), work.path().join("outside"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let image = Image::with_file("secret", OCI_MANIFEST);
    oci_archive(&[(&image, "amd64")], &outside.join("image.tar"));
    oci_archive(&[(&image, "amd64")], &src.join("good.tar"));
    std::fs::write(outside.join("tags"), "stolen\n").unwrap();
    let link = |target: &Path, name: &str| std::os::unix::fs::symlink(target, src.join(name)).unwrap();
    link(&outside.join("image.tar"), "abs.tar");
    link(Path::new("../outside/image.tar"), "up.tar");
    link(&outside, "dir");
    link(&outside.join("tags"), "tags-link");

    // a docker-save directory whose manifest.json names files outside
    let save = src.join("save");
    std::fs::create_dir_all(&save).unwrap();
    std::fs::write(outside.join("config.json"), &image.config.bytes).unwrap();
    std::fs::write(outside.join("layer.tar"), tar_with_file("x", b"x")).unwrap();
    std::fs::write(
        save.join("manifest.json"),
        serde_json::to_vec(
            &json!([{"Config": "../../outside/config.json", "RepoTags": ["app:latest"],
                                     "Layers": ["../../outside/layer.tar"]}]),
        )
        .unwrap(),
    )
    .unwrap();
    // an OCI layout whose blob is a symlink to a copy outside
    let layout = src.join("layout");
    oci_layout_dir(&[(&image, "amd64")], &layout);
    let blob = layout.join(format!("blobs/sha256/{}", &image.layers[0].digest[7..]));
    std::fs::rename(&blob, outside.join("blob")).unwrap();
    std::os::unix::fs::symlink(outside.join("blob"), &blob).unwrap();

    let server = untouched();
    let cases = [
        (json!({"image": "../outside/image.tar"}), "../outside/image.tar"),
        (
            json!({"image": format!("{}", outside.join("image.tar").display())}),
            "image.tar",
        ),
        (json!({"image": "abs.tar"}), "abs.tar"),
        (json!({"image": "up.tar"}), "up.tar"),
        (json!({"image": "dir/image.tar"}), "dir/image.tar"),
        (json!({"image": "dir/*.tar"}), "dir/image.tar"),
        (json!({"image": "save"}), "../../outside/config.json"),
        (json!({"image": "layout"}), "blobs/sha256/"),
        (
            json!({"image": "good.tar", "additional_tags": "../outside/tags"}),
            "../outside/tags",
        ),
        (
            json!({"image": "good.tar", "additional_tags": "/etc/hostname"}),
            "/etc/hostname",
        ),
        (
            json!({"image": "good.tar", "additional_tags": "tags-link"}),
            "tags-link",
        ),
    ];
    for (params, named) in cases {
        let line = push(&server, params.clone(), &src).error_line();
        assert!(
            line.contains(named) && (line.contains("outside") || line.contains("inside")),
            "{params}: {line}"
        );
        assert!(!line.contains("stolen"), "{line}");
    }
    assert!(
        server.requests().is_empty(),
        "out asked the registry: {:?}",
        server.requests()
    );
}

/// `in` writes only into an empty destination: a planted symlink (or any older file) is
/// refused before anything is written through it.
#[test]
fn in_refuses_a_destination_that_is_not_empty() {
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(work.path().join("victim"), "keep").unwrap();
    std::os::unix::fs::symlink(work.path().join("victim"), dest.join("digest")).unwrap();
    let server = untouched();
    let digest = support::image::sha256(b"x");
    let out = bin::run(
        "in",
        &json!({"source": {"repository": format!("{}/app", server.host)}, "version": {"digest": digest},
                "params": {"skip_download": true}}),
        &[dest.to_str().unwrap()],
    );
    let line = out.error_line();
    assert!(line.contains("not empty") && line.contains("digest"), "{line}");
    assert_eq!(
        std::fs::read_to_string(work.path().join("victim")).unwrap(),
        "keep"
    );
    assert!(server.requests().is_empty());
}

/// stdin holds one JSON request and nothing after it; a scheme or credentials written in
/// `repository` get a message that says so, and the credentials are never echoed.
#[test]
fn requests_are_one_document_and_repositories_hold_no_scheme_or_credentials() {
    let server = untouched();
    let repo = format!("{}/app", server.host);
    let source = json!({"repository": repo}).to_string();
    for input in [
        format!(r#"{{"source":{source}}} xyz"#),
        format!(r#"{{"source":{source}}}{{"source":{source}}}"#),
    ] {
        let out = bin::run_with_timeout("check", &input, &[], std::time::Duration::from_secs(30));
        let line = out.error_line();
        assert!(line.contains("more follows the JSON object"), "{input}: {line}");
    }
    let line = check(json!({"repository": format!("http://{repo}")})).error_line();
    assert!(
        line.contains("scheme (http://)") && !line.contains("tag"),
        "{line}"
    );
    for repository in [
        format!("u:hunter2secret@{repo}"),
        "u:hunter2secret@app".to_owned(),
    ] {
        let line = check(json!({"repository": repository})).error_line();
        assert!(line.contains("must not hold credentials"), "{line}");
        assert!(!line.contains("hunter2secret"), "{line}");
    }
    assert!(server.requests().is_empty());
}

fn digest_server(digest: String) -> impl Fn(&support::fake::Request, usize) -> Reply + Send + Sync + 'static {
    move |req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v2/") => Reply::status(200),
        ("HEAD", "/v2/app/manifests/latest") => Reply::status(200)
            .with_header("Docker-Content-Digest", &digest)
            .with_header("Content-Type", OCI_MANIFEST),
        _ => Reply::status(404),
    }
}

/// A registry that comes back a second after the step started (a restart: connections
/// refused until then) is waited for within the retry budget.
#[test]
fn a_registry_back_after_a_restart_is_waited_for() {
    let port = support::registry::free_port();
    let address = format!("127.0.0.1:{port}");
    let digest = support::image::sha256(b"restarted");
    let waiting = {
        let address = address.clone();
        std::thread::spawn(move || check(json!({"repository": format!("{address}/app")})))
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let server = FakeServer::start_at(&address, digest_server(digest.clone()));
    let out = waiting.join().unwrap();
    assert_eq!(
        out.one_json_line("check"),
        json!([{"tag": "latest", "digest": digest}]),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("no server answers at"), "{}", out.stderr);
    assert_eq!(server.count("HEAD", "/v2/app/manifests/latest"), 1);
}

/// `Retry-After: 0` does not turn the backoff off.
#[test]
fn a_zero_retry_after_keeps_the_backoff() {
    let server = FakeServer::start(|req, _| match req.path.as_str() {
        "/v2/" => Reply::status(200),
        _ => Reply::status(503).with_header("Retry-After", "0"),
    });
    let start = std::time::Instant::now();
    let line = check(json!({"repository": format!("{}/app", server.host)})).error_line();
    assert!(line.contains("503") && line.contains("gave up"), "{line}");
    let made = server.count("HEAD", "/v2/app/manifests/latest");
    let seconds = start.elapsed().as_secs_f64();
    // the backoff's first delays are 125-250 ms, growing: a few dozen at most, not hundreds
    assert!((5..=30).contains(&made), "{made} requests in {seconds:.1} s");
}

/// A plain-HTTP registry that accepts connections and never answers: the message says that
/// neither scheme got an answer, not that HTTPS failed.
#[test]
fn a_silent_server_is_reported_as_silent_on_both_schemes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming().take(8) {
            open.push(stream);
        }
        open
    });
    let line = bin::run_with_timeout(
        "check",
        &json!({"source": {"repository": format!("{host}/app")}}).to_string(),
        &[],
        std::time::Duration::from_secs(90),
    )
    .error_line();
    assert!(
        line.contains(&format!(
            "no server answers at {host}: plain HTTP: timed out; HTTPS: timed out"
        )),
        "{line}"
    );
    drop(held);
}

/// A trickling server (a byte every 2 s: headers or body) cannot hold a step: the step's
/// deadline stops it (shortened here through REGISTRY_IMAGE_STEP_DEADLINE, which can only
/// shorten it), and a trickled blob is cut by the minimum rate.
#[test]
fn a_trickle_cannot_hold_a_step() {
    let server = FakeServer::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v2/") => Reply::status(200),
        _ => Reply::Trickle(
            b"HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:0000\r\n".repeat(100),
            std::time::Duration::from_secs(2),
        ),
    });
    let start = std::time::Instant::now();
    let out = bin::run_with_env(
        "check",
        &json!({"source": {"repository": format!("{}/app", server.host)}}).to_string(),
        &[],
        std::time::Duration::from_secs(60),
        &[("REGISTRY_IMAGE_STEP_DEADLINE", "8")],
    );
    let line = out.error_line();
    assert!(line.contains("check did not finish within 8s"), "{line}");
    assert!(start.elapsed() < std::time::Duration::from_secs(15));
}

/// A blob that trickles in (a byte a second) is cut at the minimum rate and resumed; the
/// step's deadline ends the whole.
#[test]
fn a_trickled_blob_is_cut_at_the_minimum_rate() {
    // some kilobytes that gzip cannot shrink, so the blob outlasts a rate window
    let noise: String = (0..4000u32)
        .map(|i| char::from(b'!' + (i.wrapping_mul(2_654_435_761) >> 26) as u8))
        .collect();
    let image = Image::with_file(&noise, OCI_MANIFEST);
    let (manifest, config) = (image.manifest.clone(), image.config.clone());
    let layer = image.layers[0].clone();
    let server = FakeServer::start(move |req, _| {
        let path = req.path.as_str();
        if path == "/v2/" {
            Reply::status(200)
        } else if path.starts_with("/v2/app/manifests/") {
            Reply::status(200)
                .with_header("Content-Type", OCI_MANIFEST)
                .with_body(&manifest)
        } else if path == format!("/v2/app/blobs/{}", config.digest) {
            Reply::status(200).with_body(&config.bytes)
        } else if path == format!("/v2/app/blobs/{}", layer.digest) {
            let mut raw =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", layer.bytes.len()).into_bytes();
            raw.extend_from_slice(&layer.bytes);
            Reply::Trickle(raw, std::time::Duration::from_millis(100))
        } else {
            Reply::status(404)
        }
    });
    let dest = tempfile::tempdir().unwrap();
    let out = bin::run_with_env(
        "in",
        &json!({"source": {"repository": format!("{}/app", server.host)}, "version": {"digest": image.digest()}})
            .to_string(),
        &[dest.path().join("d").to_str().unwrap()],
        std::time::Duration::from_secs(120),
        &[("REGISTRY_IMAGE_STEP_DEADLINE", "45")],
    );
    let line = out.error_line();
    assert!(line.contains("in did not finish within 45s"), "{line}");
    assert!(out.stderr.contains("arrived too slowly"), "{}", out.stderr);
}

/// Progress output grows with the layer count, not its square: 600 tiny layers print
/// about one final line each (before: every redraw rewrote every bar, 21 MB for 500).
#[test]
fn progress_output_is_linear_in_the_layer_count() {
    const LAYERS: usize = 600;
    let reg = support::registry::Registry::plain();
    let layers: Vec<(Vec<u8>, Vec<u8>)> = (0..LAYERS)
        .map(|i| {
            let tar = tar_with_file(&format!("f{i}"), i.to_string().as_bytes());
            (support::image::gzip(&tar), tar)
        })
        .collect();
    let image = Image::from_layers(layers, OCI_MANIFEST, "amd64");
    let digest = reg.push("many", "latest", &image);
    let dest = tempfile::tempdir().unwrap();
    let out = bin::run(
        "in",
        &json!({"source": {"repository": reg.repo("many")}, "version": {"digest": digest}}),
        &[dest.path().join("d").to_str().unwrap()],
    );
    out.one_json_line("in");
    assert!(dest.path().join(format!("d/rootfs/f{}", LAYERS - 1)).exists());
    let lines = out.stderr.lines().count();
    // a final line per layer, and a few redraws of the running ones
    assert!(out.stderr.matches("layer ").count() >= LAYERS, "{lines} lines");
    assert!(
        out.stderr.len() < LAYERS * 200,
        "{} bytes of stderr in {lines} lines",
        out.stderr.len()
    );
}

/// Writes an OCI layout directory of `blobs` whose `index.json` points at `root` (an index).
fn layout_of(dir: &Path, blobs: &[Vec<u8>], root: &[u8]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for blob in blobs.iter().chain(std::iter::once(&root.to_vec())) {
        let digest = support::image::sha256(blob);
        std::fs::write(dir.join("blobs/sha256").join(&digest[7..]), blob).unwrap();
    }
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_INDEX,
        "digest": support::image::sha256(root), "size": root.len()}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// An index over `children` (media type and bytes), each listed `times` times.
fn index_of(children: &[(&str, &[u8])], times: usize) -> Vec<u8> {
    let one: Vec<serde_json::Value> = children
        .iter()
        .map(|(t, b)| {
            json!({"mediaType": t, "digest": support::image::sha256(b), "size": b.len(),
                             "platform": {"architecture": "amd64", "os": "linux"}})
        })
        .collect();
    let listed: Vec<serde_json::Value> = (0..times).flat_map(|_| one.clone()).collect();
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed})).unwrap()
}

/// An index listing a child index a thousand times, which lists one manifest a thousand
/// times, is one manifest, one child index and one root: three PUTs, not a million.
/// Nesting beyond the depth limit and more distinct manifests than the count limit are
/// refused before any request.
#[test]
fn index_expansion_is_deduplicated_and_bounded() {
    let reg = support::registry::Registry::plain();
    let image = Image::with_file("leaf", OCI_MANIFEST);
    let mut blobs = vec![
        image.manifest.clone(),
        image.config.bytes.clone(),
        image.layers[0].bytes.clone(),
    ];
    let inner = index_of(&[(OCI_MANIFEST, &image.manifest)], 1000);
    let outer = index_of(&[(OCI_INDEX, &inner)], 1000);
    blobs.push(inner.clone());
    let work = tempfile::tempdir().unwrap();
    layout_of(&work.path().join("wide"), &blobs, &outer);
    let start = std::time::Instant::now();
    let (out, peak) = bin::run_measured(
        "out",
        &json!({"source": {"repository": reg.repo("wide")}, "params": {"image": "wide"}}),
        &[work.path().to_str().unwrap()],
    );
    assert_eq!(
        out.one_json_line("out")["version"]["digest"],
        json!(support::image::sha256(&outer))
    );
    assert!(peak < PEAK_LIMIT, "a 1000×1000 index took {peak} bytes");
    let puts = reg
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT /v2/wide/manifests/"))
        .count();
    assert_eq!(puts, 3, "in {:?}", start.elapsed());

    // six indexes deep
    let mut chain = vec![
        image.manifest.clone(),
        image.config.bytes.clone(),
        image.layers[0].bytes.clone(),
    ];
    let mut top = index_of(&[(OCI_MANIFEST, &image.manifest)], 1);
    for _ in 0..6 {
        chain.push(top.clone());
        top = index_of(&[(OCI_INDEX, &top)], 1);
    }
    layout_of(&work.path().join("deep"), &chain, &top);
    // 1,001 distinct manifests (the same image config and layer, distinct annotations)
    let mut many = vec![image.config.bytes.clone(), image.layers[0].bytes.clone()];
    let mut listed = Vec::new();
    for i in 0..1001 {
        let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
        manifest["annotations"] = json!({"n": i.to_string()});
        let bytes = serde_json::to_vec(&manifest).unwrap();
        many.push(bytes.clone());
        listed.push(bytes);
    }
    let children: Vec<(&str, &[u8])> = listed.iter().map(|b| (OCI_MANIFEST, b.as_slice())).collect();
    layout_of(&work.path().join("many"), &many, &index_of(&children, 1));
    let before = reg.requests().len();
    for (dir, needle) in [
        ("deep", "nests indexes more than 4 deep"),
        ("many", "more than 1000 distinct manifests"),
    ] {
        let out = bin::run(
            "out",
            &json!({"source": {"repository": reg.repo(dir)}, "params": {"image": dir}}),
            &[work.path().to_str().unwrap()],
        );
        let line = out.error_line();
        assert!(line.contains(needle), "{dir}: {line}");
    }
    assert_eq!(reg.requests().len(), before, "refused before any request");
}

/// A server that echoes the password in every form servers write it (raw, percent-encoded,
/// JSON-escaped, base64, the Basic header) never gets it shown: not in the retry warnings,
/// not in the error, not with debug on.
#[test]
fn echoed_secrets_are_redacted_in_every_form() {
    use base64::Engine as _;
    let password = "p@ss w/rd+hunter2%é";
    let b64 = base64::engine::general_purpose::STANDARD;
    let forms = [
        password.to_owned(),
        "p%40ss%20w%2Frd%2Bhunter2%25%C3%A9".to_owned(),
        "p%40ss+w%2frd%2bhunter2%25%c3%a9".to_owned(),
        "p@ss w/rd+hunter2%\\u00e9".to_owned(),
        b64.encode(password),
        b64.encode(format!("user:{password}")),
    ];
    let body = forms.join(" | ");
    // HEAD succeeds without a digest, so check asks with GET, whose 503 has a body
    let server = FakeServer::start(
        move |req, _| match (req.header("authorization"), req.method.as_str()) {
            (None, _) => Reply::status(401).with_header("WWW-Authenticate", r#"Basic realm="r""#),
            (Some(_), "HEAD") => Reply::status(200),
            (Some(auth), _) => Reply::status(503).with_body(format!("{auth} | {body}").as_bytes()),
        },
    );
    for debug in [false, true] {
        let out = bin::run_with_env(
            "check",
            &json!({"source": {"repository": format!("{}/app", server.host), "username": "user",
                              "password": password, "debug": debug}})
            .to_string(),
            &[],
            std::time::Duration::from_secs(90),
            &[("REGISTRY_IMAGE_STEP_DEADLINE", "6")],
        );
        assert!(!out.success);
        assert!(
            out.stderr.contains("503") && out.stderr.contains("<redacted>"),
            "{}",
            out.stderr
        );
        for form in &forms {
            assert!(
                !out.stderr.contains(form.as_str()),
                "{form} shown:\n{}",
                out.stderr
            );
        }
        assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    }
}

/// A refusal says what was refused: the password (Basic), a token issued to good
/// credentials that lack access, or an anonymous token.
#[test]
fn a_refusal_says_what_was_refused() {
    use support::registry::{Auth, Registry, USER};
    let reg = Registry::start(Auth::Basic, false);
    let line =
        check(json!({"repository": reg.repo("app"), "username": USER, "password": "wrong"})).error_line();
    assert!(
        line.contains("401")
            && line.contains("refused the credentials from source.username and source.password"),
        "{line}"
    );

    let server = FakeServer::start(|req, _| {
        let host = req.header("host").unwrap_or_default().to_owned();
        match (req.path.as_str(), req.header("authorization")) {
            (p, _) if p.starts_with("/token") => {
                Reply::status(200).with_body(br#"{"token":"granted-but-useless"}"#)
            }
            _ => Reply::status(401).with_header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{host}/token",service="fake""#),
            ),
        }
    });
    let repo = format!("{}/app", server.host);
    let line = check(json!({"repository": repo, "username": "u", "password": "good-password"})).error_line();
    assert!(
        line.contains("refused the token its realm issued for repository:app:pull to the credentials from source.username and source.password"),
        "{line}"
    );
    assert!(
        !line.contains("granted-but-useless") && !line.contains("good-password"),
        "{line}"
    );
    let line = check(json!({"repository": repo})).error_line();
    assert!(line.contains("refused the anonymous token"), "{line}");
}

/// A layer whose PAX header, GNU long name or long link claims 512 MiB is refused at its
/// header, before any of it is read into memory; so is a gzip name that never ends.
#[test]
fn oversized_tar_metadata_and_endless_gzip_names_are_refused() {
    // metadata, and a gzip name that never ends, longer than the peak allowed
    let beyond_the_peak = PEAK_LIMIT as usize + 8 * 1024 * 1024;
    let reg = support::registry::Registry::plain();
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    for kind in [
        tar::EntryType::XHeader,
        tar::EntryType::GNULongName,
        tar::EntryType::GNULongLink,
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(512 * 1024 * 1024);
        h.set_cksum();
        let mut tar = h.as_bytes().to_vec();
        // more of it than the peak allowed, so reading it whole would show
        tar.extend(std::iter::repeat_n(b'a', beyond_the_peak));
        cases.push((gzip_quickly(&tar), "(the limit is 1048576)"));
    }
    // gzip with FNAME set and a name of 200 KiB without its NUL
    let mut endless = vec![0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 3];
    endless.extend(std::iter::repeat_n(b'n', beyond_the_peak));
    cases.push((endless, "gzip header's name or comment runs past 65536 bytes"));
    for (i, (blob, needle)) in cases.into_iter().enumerate() {
        let image = Image::from_layers(vec![(blob, tar_with_file("x", b"x"))], OCI_MANIFEST, "amd64");
        let digest = reg.push(&format!("meta{i}"), "latest", &image);
        let dest = tempfile::tempdir().unwrap();
        let (out, peak) = bin::run_measured(
            "in",
            &json!({"source": {"repository": reg.repo(&format!("meta{i}"))}, "version": {"digest": digest}}),
            &[dest.path().join("d").to_str().unwrap()],
        );
        let line = out.error_line();
        assert!(line.contains(needle), "{i}: {line}");
        assert!(peak < PEAK_LIMIT, "{i}: peak resident set {peak} bytes");
    }
}

/// A PAX header whose binary value holds a newline that, split there as the tar crate and
/// other line-splitting readers do, reads as a `path` record: two readers would unpack the
/// member under two names, so `in` refuses the layer.
#[test]
fn a_pax_header_read_two_ways_is_refused() {
    let reg = support::registry::Registry::plain();
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("SCHILY.xattr.user.x", &b"a\n12 path=zzz"[..])])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "real-name", &b"data"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let image = Image::from_layers(vec![(support::image::gzip(&tar), tar)], OCI_MANIFEST, "amd64");
    let digest = reg.push("two-ways", "latest", &image);
    let dest = tempfile::tempdir().unwrap();
    let out = bin::run(
        "in",
        &json!({"source": {"repository": reg.repo("two-ways")}, "version": {"digest": digest}}),
        &[dest.path().join("d").to_str().unwrap()],
    );
    let line = out.error_line();
    assert!(line.contains("forges a path record"), "{line}");
    assert!(!dest.path().join("d/rootfs/zzz").exists() && !dest.path().join("d/rootfs/real-name").exists());
}

/// A token response whose body ends with the connection inside its JSON is asked for again,
/// like a manifest cut short; not reported as a token server that answers wrongly.
#[test]
fn a_token_cut_short_is_fetched_again() {
    let token_gets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gets = token_gets.clone();
    let server = support::fake::token_registry(move || {
        if gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"token\":\"to".to_vec())
        } else {
            Reply::status(200).with_body(br#"{"token":"tok"}"#)
        }
    });
    let out = check(json!({"repository": format!("{}/app", server.host)}));
    assert_eq!(
        out.one_json_line("check"),
        json!([{"tag": "latest", "digest": support::image::sha256(b"m")}])
    );
    assert_eq!(
        token_gets.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "asked again once"
    );
}
