//! Content trust through `out`, against a real `notary-server` and judged by the real
//! `notary` CLI: every pushed tag is signed (into `targets`, or into the delegations
//! that list the key), `notary list` from a fresh trust directory trusts the digests
//! pushed, and every way signing can fail is an exit 1 with one line naming it, nothing
//! pushed when it is known before the push, "pushed but did not sign" when it is not,
//! and never a secret in the output.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::archive::oci_archive;
use support::bin::{self, Output};
use support::image::{Image, OCI_MANIFEST};
use support::notary::{Notary, Setup, PASSPHRASE};
use support::registry::{Auth, Registry};

fn push(source: &Value, params: Value, src: &Path) -> Output {
    bin::run(
        "out",
        &json!({"source": source, "params": params}),
        &[src.to_str().unwrap()],
    )
}

/// An image file `name` in `dir` whose one layer says `marker`.
fn image_file(dir: &Path, name: &str, marker: &str) -> String {
    let img = Image::with_file(marker, OCI_MANIFEST);
    oci_archive(&[(&img, "amd64")], &dir.join(name))
}

/// The tags the registry has for `repo` (none when it does not know the repository).
fn registry_tags(reg: &Registry, repo: &str) -> Vec<String> {
    let url = format!("http://{}/v2/{repo}/tags/list", reg.host);
    let out = std::process::Command::new("curl")
        .args(["-s", &url])
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    body["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// (tag, digest as `sha256:…`, role) of `notary list`, sorted.
fn trusted(notary: &Notary, gun: &str) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = notary
        .list(gun)
        .into_iter()
        .map(|(tag, sha, _, role)| (tag, format!("sha256:{sha}"), role))
        .collect();
    rows.sort();
    rows
}

fn rows(tags: &[&str], digest: &str, role: &str) -> Vec<(String, String, String)> {
    let mut rows: Vec<_> = tags
        .iter()
        .map(|t| ((*t).to_owned(), digest.to_owned(), role.to_owned()))
        .collect();
    rows.sort();
    rows
}

/// Fails when anything secret shows up in what `out` printed.
fn assert_no_secrets(out: &Output, secrets: &[&str]) {
    for secret in secrets {
        let body: String = secret
            .lines()
            .filter(|l| !l.starts_with("-----") && !l.contains(':') && l.len() > 20)
            .collect();
        for needle in [*secret, body.as_str()] {
            if needle.len() >= 8 {
                assert!(
                    !out.stdout.contains(needle) && !out.stderr.contains(needle),
                    "a secret was printed:\n{}{}",
                    out.stdout,
                    out.stderr
                );
            }
        }
    }
}

fn trust_source(reg: &Registry, notary: &Notary, repo: &str, key: &str, key_id: &str) -> Value {
    json!({
        "repository": reg.repo(repo),
        "tag": "stable",
        "ca_certs": [notary.ca_pem],
        "content_trust": {
            "server": notary.url,
            "repository_key_id": key_id,
            "repository_key": key,
            "repository_passphrase": PASSPHRASE,
        },
    })
}

#[test]
fn out_signs_every_tag_and_a_fresh_notary_client_trusts_the_digests_pushed() {
    let reg = Registry::start(Auth::None, false);
    let notary = Notary::start();
    let gun = format!("{}/team/app", reg.host);
    let (key, id) = notary.init(&notary.trust_dir("owner"), &gun);
    let src = notary.scratch("src");
    std::fs::write(src.join("tags"), "v1 v1.0\n").unwrap();
    let source = trust_source(&reg, &notary, "team/app", &key, &id);

    let first = image_file(&src, "image.tar", "first");
    let out = push(
        &source,
        json!({"image": "image.tar", "additional_tags": "tags"}),
        &src,
    );
    let response = out.one_json_line("out");
    assert_eq!(response["version"]["digest"], first.as_str());
    assert_eq!(
        trusted(&notary, &gun),
        rows(&["stable", "v1", "v1.0"], &first, "targets")
    );
    assert!(out.stderr.contains("signed stable v1 v1.0"), "{}", out.stderr);
    assert_no_secrets(&out, &[PASSPHRASE, &key]);

    // a new image under the same tags: every signature moves to it
    let second = image_file(&src, "image.tar", "second");
    assert_ne!(first, second);
    let mut source = source;
    source["debug"] = json!(true);
    let out = push(
        &source,
        json!({"image": "image.tar", "additional_tags": "tags"}),
        &src,
    );
    out.one_json_line("out");
    assert_eq!(
        trusted(&notary, &gun),
        rows(&["stable", "v1", "v1.0"], &second, "targets")
    );
    assert_no_secrets(&out, &[PASSPHRASE, &key]);
}

/// A P-256 key and a self-signed certificate for it, as `docker trust key generate`
/// makes: returns the certificate's path and the key as PEM (PKCS#8, encrypted with
/// PBKDF2-HMAC-SHA256 and AES-128 when `encrypted`).
fn delegation_key(dir: &Path, name: &str, encrypted: bool) -> (std::path::PathBuf, String) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = format!("{name}.key");
    let cert = format!("{name}.crt");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &cert,
        "-days",
        "365",
        "-subj",
        &format!("/CN={name}"),
    ]);
    let pem = if encrypted {
        let enc = format!("{name}.enc.key");
        run(&[
            "pkcs8",
            "-topk8",
            "-in",
            &key,
            "-out",
            &enc,
            "-v2",
            "aes-128-cbc",
            "-v2prf",
            "hmacWithSHA256",
            "-passout",
            &format!("pass:{PASSPHRASE}"),
        ]);
        std::fs::read_to_string(dir.join(enc)).unwrap()
    } else {
        std::fs::read_to_string(dir.join(key)).unwrap()
    };
    (dir.join(cert), pem)
}

/// Our canonical id of an unencrypted key.
fn canonical_id(pem: &str) -> String {
    registry_image::notary::key::SigningKey::from_pem(
        &registry_image::secret::Secret::new(pem.to_owned()),
        None,
    )
    .unwrap()
    .key_id()
}

/// The key ids `notary delegation list` shows for `role`.
fn delegation_ids(notary: &Notary, trust: &Path, gun: &str, role: &str) -> Vec<String> {
    let out = notary.cli(trust, &["delegation", "list", gun]);
    out.lines()
        .filter(|l| l.split_whitespace().next() == Some(role))
        .flat_map(|l| {
            l.split(|c: char| !c.is_ascii_hexdigit())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|w| w.len() == 64)
        .collect()
}

#[test]
fn a_signer_key_signs_into_every_delegation_that_lists_it_and_allows_the_tag() {
    let reg = Registry::start(Auth::None, false);
    let notary = Notary::start();
    let gun = format!("{}/team/delegated", reg.host);
    let owner = notary.trust_dir("owner");
    notary.init(&owner, &gun);
    let keys = notary.scratch("keys");
    let (cert, key) = delegation_key(&keys, "ci", true);
    let cert = cert.to_str().unwrap();
    notary.cli(
        &owner,
        &[
            "delegation",
            "add",
            "-p",
            &gun,
            "targets/releases",
            cert,
            "--all-paths",
        ],
    );
    notary.cli(
        &owner,
        &[
            "delegation",
            "add",
            "-p",
            &gun,
            "targets/nightly",
            cert,
            "--paths",
            "nightly-",
        ],
    );
    // `notary delegation list` shows the key's canonical id; the metadata lists the key
    // as a certificate, under that certificate's id: either names the key
    let canonical = delegation_ids(&notary, &owner, &gun, "targets/releases");
    assert_eq!(canonical.len(), 1, "{canonical:?}");
    let targets: Value = serde_json::from_slice(&notary.metadata(&gun, "targets")).unwrap();
    let x509_id = targets["signed"]["delegations"]["roles"][0]["keyids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(canonical[0], x509_id);
    let src = notary.scratch("src");
    let digest = image_file(&src, "image.tar", "delegated");
    std::fs::write(src.join("tags"), "nightly-5").unwrap();
    let mut source = trust_source(&reg, &notary, "team/delegated", &key, &x509_id);
    source["tag"] = json!("v2");
    let out = push(
        &source,
        json!({"image": "image.tar", "additional_tags": "tags"}),
        &src,
    );
    out.one_json_line("out");
    let mut expected = rows(&["v2", "nightly-5"], &digest, "targets/releases");
    expected.extend(rows(&["nightly-5"], &digest, "targets/nightly"));
    expected.sort();
    // notary list shows one row per tag, from the first role that has it; the nightly
    // role's own entries are checked through its metadata
    let listed = trusted(&notary, &gun);
    for row in &listed {
        assert!(expected.contains(row), "{row:?} not in {expected:?}");
    }
    assert_eq!(listed.len(), 2, "{listed:?}");
    let nightly: Value = serde_json::from_slice(&notary.metadata(&gun, "targets/nightly")).unwrap();
    let targets = nightly["signed"]["targets"].as_object().unwrap();
    assert_eq!(targets.keys().collect::<Vec<_>>(), vec!["nightly-5"], "{nightly}");

    // the same key by its canonical id (the one its file would be named by) also works
    source["content_trust"]["repository_key_id"] = json!(canonical[0]);
    let out = push(&source, json!({"image": "image.tar"}), &src);
    out.one_json_line("out");

    // a key only the nightly delegation lists (unencrypted PKCS#8) signs its tags there,
    // and a tag its paths do not allow is refused before the push
    let (night_cert, night_key) = delegation_key(&keys, "night", false);
    notary.cli(
        &owner,
        &[
            "delegation",
            "add",
            "-p",
            &gun,
            "targets/nightly",
            night_cert.to_str().unwrap(),
        ],
    );
    let night_id = canonical_id(&night_key);
    let listed = notary.cli(&owner, &["delegation", "list", &gun]);
    assert!(listed.contains(&night_id), "{listed}");
    let mut night = trust_source(&reg, &notary, "team/delegated", &night_key, &night_id);
    night["content_trust"]
        .as_object_mut()
        .unwrap()
        .remove("repository_passphrase");
    night["tag"] = json!("nightly-6");
    let out = push(&night, json!({"image": "image.tar"}), &src);
    out.one_json_line("out");
    let nightly: Value = serde_json::from_slice(&notary.metadata(&gun, "targets/nightly")).unwrap();
    let mut signed: Vec<&String> = nightly["signed"]["targets"].as_object().unwrap().keys().collect();
    signed.sort();
    assert_eq!(signed, vec!["nightly-5", "nightly-6"], "{nightly}");
    let releases: Value = serde_json::from_slice(&notary.metadata(&gun, "targets/releases")).unwrap();
    assert!(
        releases["signed"]["targets"].get("nightly-6").is_none(),
        "{releases}"
    );

    night["tag"] = json!("weekly-1");
    image_file(&src, "other.tar", "not allowed");
    let out = push(&night, json!({"image": "other.tar"}), &src);
    let line = out.error_line();
    assert!(
        line.contains("may not sign tag weekly-1")
            && line.contains("targets/nightly")
            && line.contains("nothing was pushed"),
        "{line}"
    );
    assert!(!registry_tags(&reg, "team/delegated").contains(&"weekly-1".to_owned()));
}

#[test]
fn signing_that_cannot_work_fails_before_the_push_naming_the_problem() {
    let reg = Registry::start(Auth::None, false);
    let notary = Notary::start();
    let owner = notary.trust_dir("owner");
    let app = format!("{}/team/app", reg.host);
    let (key, id) = notary.init(&owner, &app);
    // a repository whose snapshot key stays with the client
    let client_snapshot = format!("{}/team/client-snapshot", reg.host);
    notary.cli(&owner, &["init", &client_snapshot, "-p"]);
    let (other_key, other_id) = notary.init(&notary.trust_dir("other"), &format!("{}/team/other", reg.host));
    let src = notary.scratch("src");
    image_file(&src, "image.tar", "refused");
    let plain_key = {
        let keys = notary.scratch("keys");
        delegation_key(&keys, "plain", false).1
    };

    let base = |repo: &str| trust_source(&reg, &notary, repo, &key, &id);
    let with = |repo: &str, field: &str, value: Value| {
        let mut s = base(repo);
        s["content_trust"][field] = value;
        s
    };
    let mut no_ca = base("team/app");
    no_ca.as_object_mut().unwrap().remove("ca_certs");
    let mut other = base("team/other-repo");
    other["content_trust"]["repository_key"] = json!(other_key);
    other["content_trust"]["repository_key_id"] = json!(other_id);
    other["repository"] = json!(reg.repo("team/app"));
    let wrong_id = "0".repeat(64);
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "uninitialised",
            base("team/new"),
            vec![
                "has no trust data".into(),
                format!("notary -s {} init {}/team/new -p", notary.url, reg.host),
                "nothing was pushed".into(),
            ],
        ),
        (
            "client snapshot",
            base("team/client-snapshot"),
            vec!["does not sign the snapshots".into(), "key rotate".into()],
        ),
        (
            "wrong key id",
            with("team/app", "repository_key_id", json!(wrong_id)),
            vec![
                format!("repository_key_id {wrong_id} is not the id"),
                format!("its id is {id}"),
            ],
        ),
        (
            "wrong passphrase",
            with("team/app", "repository_passphrase", json!("not the passphrase")),
            vec!["repository_key".into(), "wrong passphrase".into()],
        ),
        (
            "no passphrase",
            {
                let mut s = base("team/app");
                s["content_trust"]
                    .as_object_mut()
                    .unwrap()
                    .remove("repository_passphrase");
                s
            },
            vec!["no passphrase".into()],
        ),
        (
            "another repository's key",
            other,
            vec![
                "may not sign the targets".into(),
                "the key's PEM says it is for".into(),
            ],
        ),
        (
            "a key nobody listed",
            {
                let mut s = base("team/app");
                s["content_trust"]["repository_key"] = json!(plain_key);
                let id = canonical_id(&plain_key);
                s["content_trust"]["repository_key_id"] = json!(id);
                s
            },
            vec!["may not sign the targets".into()],
        ),
        ("untrusted server certificate", no_ca, vec!["certificate".into()]),
        (
            "plain http server",
            with(
                "team/app",
                "server",
                json!(notary.url.replace("https://", "http://")),
            ),
            vec!["content_trust.server".into(), "https://".into()],
        ),
        (
            "half a client certificate",
            with("team/app", "tls_cert", json!("-----BEGIN CERTIFICATE-----")),
            vec!["content_trust.tls_cert is set but source.content_trust.tls_key is empty".into()],
        ),
    ];
    for (name, source, needles) in cases {
        let repo = source["repository"]
            .as_str()
            .unwrap()
            .split_once('/')
            .unwrap()
            .1
            .to_owned();
        let out = push(&source, json!({"image": "image.tar"}), &src);
        let line = out.error_line();
        eprintln!("{name}: {line}");
        for needle in &needles {
            assert!(line.contains(needle.as_str()), "{name}: {needle:?} not in {line}");
        }
        assert_no_secrets(&out, &[PASSPHRASE, &key, &other_key, &plain_key]);
        assert_eq!(registry_tags(&reg, &repo), Vec::<String>::new(), "{name}: pushed");
    }
    assert_eq!(trusted(&notary, &app), vec![], "nothing was signed");
}

#[test]
fn a_server_behind_mutual_tls_and_token_auth_signs_with_the_trust_credentials() {
    let reg = Registry::start(Auth::None, false);
    let (user, password) = ("signer", "signer secret password");
    let notary = Notary::start_with(Setup {
        mutual_tls: true,
        token_user: Some((user.to_owned(), password.to_owned())),
    });
    let gun = format!("{}/team/guarded", reg.host);
    let (key, id) = notary.init(&notary.trust_dir("owner"), &gun);
    let (cert, client_key) = notary.client_cert();
    let src = notary.scratch("src");
    let digest = image_file(&src, "image.tar", "guarded");
    let mut source = trust_source(&reg, &notary, "team/guarded", &key, &id);
    source["content_trust"]["tls_cert"] = json!(cert);
    source["content_trust"]["tls_key"] = json!(client_key);
    source["content_trust"]["username"] = json!(user);
    source["content_trust"]["password"] = json!(password);

    // without the client certificate the server will not talk
    let mut no_cert = source.clone();
    for field in ["tls_cert", "tls_key"] {
        no_cert["content_trust"].as_object_mut().unwrap().remove(field);
    }
    let out = push(&no_cert, json!({"image": "image.tar"}), &src);
    let line = out.error_line();
    assert!(line.contains("nothing was pushed"), "{line}");
    assert!(registry_tags(&reg, "team/guarded").is_empty());

    // a wrong password: the token service's refusal, without the password
    let mut wrong = source.clone();
    wrong["content_trust"]["password"] = json!("a wrong password");
    let out = push(&wrong, json!({"image": "image.tar"}), &src);
    let line = out.error_line();
    assert!(
        line.contains("nothing was pushed") && line.contains("401"),
        "{line}"
    );
    assert_no_secrets(&out, &["a wrong password", &client_key, &key]);

    let out = push(&source, json!({"image": "image.tar"}), &src);
    out.one_json_line("out");
    assert_no_secrets(&out, &[password, &client_key, &key, PASSPHRASE]);
    assert!(
        notary
            .token_log()
            .contains(&format!("scope repository:{gun}:push,pull")),
        "{}",
        notary.token_log()
    );
    // the CLI through the same TLS and auth trusts the digest
    let fresh = notary.scratch("fresh");
    let listed = notary.cli(&fresh, &["list", &gun]);
    assert!(listed.contains(digest.trim_start_matches("sha256:")), "{listed}");

    // without content_trust credentials, the source's are used
    let mut fallback = source.clone();
    for field in ["username", "password"] {
        fallback["content_trust"].as_object_mut().unwrap().remove(field);
    }
    fallback["username"] = json!(user);
    fallback["password"] = json!(password);
    std::fs::write(src.join("tags"), "fallback").unwrap();
    let out = push(
        &fallback,
        json!({"image": "image.tar", "additional_tags": "tags"}),
        &src,
    );
    out.one_json_line("out");
    let listed = notary.cli(&fresh, &["list", &gun]);
    assert!(listed.lines().any(|l| l.starts_with("fallback ")), "{listed}");

    // a pull-only token cannot read the server's snapshot key: refused before the push
    let mut pull_only = source.clone();
    pull_only["content_trust"]["scopes"] = json!("pull");
    std::fs::write(src.join("tags"), "pull-only").unwrap();
    let out = push(
        &pull_only,
        json!({"image": "image.tar", "additional_tags": "tags"}),
        &src,
    );
    let line = out.error_line();
    assert!(
        line.contains("nothing was pushed") && line.contains("401"),
        "{line}"
    );
    assert!(!registry_tags(&reg, "team/guarded").contains(&"pull-only".to_owned()));
    assert!(
        notary
            .token_log()
            .contains(&format!("scope repository:{gun}:pull\n")),
        "{}",
        notary.token_log()
    );
}

#[test]
fn a_publish_refused_after_the_push_fails_out_saying_the_image_is_unsigned() {
    let reg = Registry::start(Auth::None, false);
    let notary = Notary::start();
    let gun = format!("{}/team/raced", reg.host);
    let (key, id) = notary.init(&notary.trust_dir("owner"), &gun);
    let front = notary.refusing_front();
    let src = notary.scratch("src");
    let digest = image_file(&src, "image.tar", "raced");
    let mut source = trust_source(&reg, &notary, "team/raced", &key, &id);
    source["content_trust"]["server"] = json!(front.url);
    let out = push(&source, json!({"image": "image.tar"}), &src);
    let line = out.error_line();
    assert!(
        line.contains(&format!(
            "pushed {}:stable ({digest}) but did not sign it",
            reg.repo("team/raced")
        )) && line.contains("refused the new trust data")
            && line.contains("INVALID_UPDATE"),
        "{line}"
    );
    assert!(
        out.stderr
            .contains("reading it again and signing anew (attempt 5 of 5)"),
        "{}",
        out.stderr
    );
    assert_eq!(registry_tags(&reg, "team/raced"), vec!["stable".to_owned()]);
    assert_eq!(trusted(&notary, &gun), vec![]);
    assert_no_secrets(&out, &[PASSPHRASE, &key]);
}

#[test]
fn a_docker_hub_repository_is_signed_under_its_docker_io_gun() {
    // the local registry stands in for Docker Hub (debug builds only); the repository's
    // name, and so its GUN, stay Docker Hub's
    let reg = Registry::start(Auth::None, false);
    let notary = Notary::start();
    let gun = "docker.io/team/hub";
    let (key, id) = notary.init(&notary.trust_dir("owner"), gun);
    let src = notary.scratch("src");
    let digest = image_file(&src, "image.tar", "hub");
    let mut source = trust_source(&reg, &notary, "team/hub", &key, &id);
    source["repository"] = json!("team/hub");
    let out = bin::run_with_env(
        "out",
        &json!({"source": source, "params": {"image": "image.tar"}}).to_string(),
        &[src.to_str().unwrap()],
        std::time::Duration::from_secs(120),
        &[("REGISTRY_IMAGE_DOCKER_HUB_ENDPOINT", reg.host.as_str())],
    );
    out.one_json_line("out");
    assert_eq!(trusted(&notary, gun), rows(&["stable"], &digest, "targets"));
    assert_eq!(registry_tags(&reg, "team/hub"), vec!["stable".to_owned()]);
}

#[test]
fn pushes_racing_for_one_repository_all_end_up_signed() {
    // each out reads the trust data, pushes, then publishes: a writer whose publish went
    // stale in between reads it again and signs anew
    let reg = Registry::start(Auth::None, false);
    let notary = Notary::start();
    let gun = format!("{}/team/busy", reg.host);
    let (key, id) = notary.init(&notary.trust_dir("owner"), &gun);
    let writers: Vec<(String, std::path::PathBuf, String)> = (0..4)
        .map(|i| {
            let src = notary.scratch(&format!("src-{i}"));
            let digest = image_file(&src, "image.tar", &format!("writer {i}"));
            (format!("w{i}"), src, digest)
        })
        .collect();
    let outs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = writers
            .iter()
            .map(|(tag, src, _)| {
                let mut source = trust_source(&reg, &notary, "team/busy", &key, &id);
                source["tag"] = json!(tag);
                scope.spawn(move || push(&source, json!({"image": "image.tar"}), src))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outs {
        out.one_json_line("out");
    }
    let mut expected: Vec<(String, String, String)> = writers
        .iter()
        .map(|(tag, _, digest)| (tag.clone(), digest.clone(), "targets".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(trusted(&notary, &gun), expected);
}

#[test]
fn a_tag_the_targets_key_signed_for_another_digest_is_refused_before_a_delegation_push() {
    // notary list (and notary's own look-ups) read targets before the delegations: a
    // signature only in targets/releases would stay hidden behind the old one
    let reg = Registry::start(Auth::None, false);
    let notary = Notary::start();
    let gun = format!("{}/team/shadow", reg.host);
    let owner = notary.trust_dir("owner");
    notary.init(&owner, &gun);
    let keys = notary.scratch("keys");
    let old = keys.join("old.bin");
    std::fs::write(&old, "an old image").unwrap();
    notary.cli(&owner, &["add", "-p", &gun, "stable", old.to_str().unwrap()]);
    let (cert, key) = delegation_key(&keys, "ci", false);
    notary.cli(
        &owner,
        &[
            "delegation",
            "add",
            "-p",
            &gun,
            "targets/releases",
            cert.to_str().unwrap(),
            "--all-paths",
        ],
    );
    let src = notary.scratch("src");
    image_file(&src, "image.tar", "new");
    let mut source = trust_source(&reg, &notary, "team/shadow", &key, &canonical_id(&key));
    source["content_trust"]
        .as_object_mut()
        .unwrap()
        .remove("repository_passphrase");
    let before = trusted(&notary, &gun);
    let out = push(&source, json!({"image": "image.tar"}), &src);
    let line = out.error_line();
    assert!(
        line.contains("tag stable of")
            && line.contains("also signed in targets")
            && line.contains("nothing was pushed"),
        "{line}"
    );
    assert!(
        line.contains(&format!("notary -s {} remove {gun} stable -p", notary.url)),
        "{line}"
    );
    assert!(registry_tags(&reg, "team/shadow").is_empty());
    assert_eq!(trusted(&notary, &gun), before);

    // once the owner removes it, the delegation's signature is what notary list shows
    notary.cli(&owner, &["remove", "-p", &gun, "stable"]);
    let out = push(&source, json!({"image": "image.tar"}), &src);
    let digest = out.one_json_line("out")["version"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        trusted(&notary, &gun),
        rows(&["stable"], &digest, "targets/releases")
    );
}
