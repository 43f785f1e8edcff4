//! Black-box tests of the `check` binary against real registries, plus a fake server for
//! faults a real registry cannot produce.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::bin::{self, Output};
use support::fake::{FakeServer, Reply};
use support::image::{self, Image, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use support::registry::{Auth, Registry, PASSWORD, USER};

fn check(input: &Value) -> Output {
    bin::run("check", input, &[])
}

fn versions(out: &Output) -> Vec<(String, String)> {
    out.one_json_line("check")
        .as_array()
        .expect("check prints a JSON array")
        .iter()
        .map(|v| {
            assert_eq!(
                v.as_object().unwrap().len(),
                2,
                "a version has exactly tag and digest: {v}"
            );
            (
                v["tag"].as_str().unwrap().to_owned(),
                v["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn v(tag: &str, digest: &str) -> (String, String) {
    (tag.to_owned(), digest.to_owned())
}

#[test]
fn current_digest_of_tag_without_cursor() {
    let reg = Registry::plain();
    let digest = reg.push("app", "latest", &Image::with_file("one", DOCKER_MANIFEST));
    let out = check(&json!({"source": {"repository": reg.repo("app")}}));
    assert_eq!(versions(&out), vec![v("latest", &digest)]);
    assert_eq!(
        out.stdout.trim(),
        format!(r#"[{{"tag":"latest","digest":"{digest}"}}]"#)
    );
}

#[test]
fn localhost_names_reach_a_plain_http_registry() {
    let reg = Registry::plain();
    let digest = reg.push("app", "latest", &Image::with_file("local", DOCKER_MANIFEST));
    let port = reg.host.rsplit(':').next().unwrap();
    let out = check(&json!({"source": {"repository": format!("localhost:{port}/app")}}));
    assert_eq!(versions(&out), vec![v("latest", &digest)]);
}

#[test]
fn cursor_cases() {
    let reg = Registry::plain();
    let old = reg.push("app", "stable", &Image::with_file("old", OCI_MANIFEST));
    let new = reg.push("app", "stable", &Image::with_file("new", OCI_MANIFEST));
    let gone = reg.push("app", "other", &Image::with_file("gone", OCI_MANIFEST));
    reg.delete("app", &gone);
    let never = image::sha256(b"never pushed");
    let source = json!({"repository": reg.repo("app"), "tag": "stable"});

    // cursor equal to the current digest
    let out = check(&json!({"source": source, "version": {"digest": new}}));
    assert_eq!(versions(&out), vec![v("stable", &new)]);
    // cursor older but still present, given with and without its tag
    let out = check(&json!({"source": source, "version": {"digest": old}}));
    assert_eq!(versions(&out), vec![v("stable", &old), v("stable", &new)]);
    let out = check(&json!({"source": source, "version": {"tag": "stable", "digest": old}}));
    assert_eq!(versions(&out), vec![v("stable", &old), v("stable", &new)]);
    // cursor deleted from the registry, or never there
    let out = check(&json!({"source": source, "version": {"digest": gone}}));
    assert_eq!(versions(&out), vec![v("stable", &new)]);
    let out = check(&json!({"source": source, "version": {"digest": never}}));
    assert_eq!(versions(&out), vec![v("stable", &new)]);
    // explicit null version is "no cursor"
    let out = check(&json!({"source": source, "version": null}));
    assert_eq!(versions(&out), vec![v("stable", &new)]);
}

#[test]
fn missing_tag_or_repository_gives_no_versions() {
    let reg = Registry::plain();
    let digest = reg.push("app", "latest", &Image::with_file("x", DOCKER_MANIFEST));
    for (repo, tag) in [("app", "nope"), ("no-such-repo", "latest")] {
        let out = check(&json!({"source": {"repository": reg.repo(repo), "tag": tag}}));
        assert_eq!(versions(&out), vec![], "{repo}:{tag}");
        assert_eq!(out.stdout.trim(), "[]");
        let out = check(
            &json!({"source": {"repository": reg.repo(repo), "tag": tag}, "version": {"digest": digest}}),
        );
        assert_eq!(versions(&out), vec![], "{repo}:{tag} with a cursor");
    }
}

#[test]
fn numeric_tags_keep_their_text() {
    let reg = Registry::plain();
    let d42 = reg.push("app", "42", &Image::with_file("42", DOCKER_MANIFEST));
    let d110 = reg.push("app", "1.10", &Image::with_file("1.10", DOCKER_MANIFEST));
    let out = bin::run_with_timeout(
        "check",
        &format!(r#"{{"source":{{"repository":"{}","tag":42}}}}"#, reg.repo("app")),
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(versions(&out), vec![v("42", &d42)]);
    let out = bin::run_with_timeout(
        "check",
        &format!(
            r#"{{"source":{{"repository":"{}","tag":1.10}}}}"#,
            reg.repo("app")
        ),
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(versions(&out), vec![v("1.10", &d110)]);
}

#[test]
fn every_manifest_media_type_resolves_to_its_own_digest() {
    let reg = Registry::plain();
    let amd = Image::with_file("amd64", OCI_MANIFEST);
    let arm = Image::with_file("arm64", OCI_MANIFEST);
    let docker_amd = Image::with_file("amd64", DOCKER_MANIFEST);
    let docker_arm = Image::with_file("arm64", DOCKER_MANIFEST);
    let cases = [
        ("oci-manifest", reg.push("app", "oci-manifest", &amd)),
        ("docker-manifest", reg.push("app", "docker-manifest", &docker_amd)),
        (
            "oci-index",
            reg.push_index("app", "oci-index", &[(&arm, "arm64"), (&amd, "amd64")], OCI_INDEX),
        ),
        (
            "docker-list",
            reg.push_index(
                "app",
                "docker-list",
                &[(&docker_amd, "amd64"), (&docker_arm, "arm64")],
                DOCKER_LIST,
            ),
        ),
    ];
    for (tag, digest) in cases {
        let out = check(&json!({"source": {"repository": reg.repo("app"), "tag": tag}}));
        assert_eq!(versions(&out), vec![v(tag, &digest)], "{tag}");
    }
}

#[test]
fn bad_requests_fail_with_one_clear_line() {
    let cases: Vec<(String, Vec<&str>)> = vec![
        (r#"{"source":{"repository":"a","tga":"x"}}"#.into(), vec!["source", "unknown field `tga`", "`repository`", "`tag`", "`ca_certs`", "`insecure`"]),
        (r#"{"source":{"repository":"a"},"params":{}}"#.into(), vec!["unknown field `params`", "`source`", "`version`"]),
        (r#"{"source":{"repository":"a","registry_mirror":{"hots":"m"}}}"#.into(), vec!["source.registry_mirror", "unknown field `hots`", "`host`"]),
        (r#"{"source":{"repository":"a"},"version":{"digest":"sha256:1","x":1}}"#.into(), vec!["version"]),
        (r#"{"source":{"repository":"a"},"version":{"digest":"deadbeef"}}"#.into(), vec!["version.digest", "deadbeef"]),
        (r#"{"source":{"repository":"a""#.into(), vec!["invalid check request", "EOF"]),
        ("not json".into(), vec!["invalid check request", "expected"]),
        ("".into(), vec!["stdin is empty"]),
        (r#"{"source":{}}"#.into(), vec!["source", "missing field `repository`"]),
        (r#"{"source":{"repository":"Upper/Case"}}"#.into(), vec!["source.repository", "Upper/Case"]),
        (r#"{"source":{"repository":"busybox:1.36"}}"#.into(), vec!["source.repository", "source.tag"]),
        (r#"{"source":{"repository":"a","tag":"bad/tag"}}"#.into(), vec!["source.tag", "bad/tag"]),
        (r#"{"source":{"repository":"a","tag":true}}"#.into(), vec!["source.tag", "string or a number"]),
        (r#"{"source":{"repository":"a","username":"u"}}"#.into(), vec!["source.username is set but source.password is empty"]),
        (r#"{"source":{"repository":"a","aws_region":"us-east-1"}}"#.into(), vec!["ECR: load AWS credentials", "source.aws_access_key_id", "no credentials"]),
        (r#"{"source":{"repository":"a","aws_role_arn":"arn:aws:iam::1:role/x"}}"#.into(), vec!["source.aws_role_arn is set but source.aws_region is not"]),
        (r#"{"source":{"repository":"a","registry_mirror":{"host":"no such host"}}}"#.into(), vec!["source.registry_mirror.host", "no such host"]),
        (r#"{"source":{"repository":"127.0.0.1:9/a","ca_certs":["nope"]}}"#.into(), vec!["source.ca_certs[0]", "PEM"]),
        (r#"{"source":{"repository":"127.0.0.1:9/a","ca_certs":["-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"]}}"#.into(), vec!["source.ca_certs[0]", "PEM"]),
    ];
    for (input, needles) in cases {
        let out = bin::run_with_timeout("check", &input, &[], Duration::from_secs(30));
        let line = out.error_line();
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "one line on stderr for {input}: {}",
            out.stderr
        );
        assert!(line.starts_with("error: "), "{line}");
        for needle in needles {
            assert!(line.contains(needle), "{input}: {line:?} lacks {needle:?}");
        }
    }
}

#[test]
fn basic_auth() {
    let reg = Registry::start(Auth::Basic, false);
    let digest = reg.push("private/app", "latest", &Image::with_file("b", DOCKER_MANIFEST));
    let repo = reg.repo("private/app");

    let out = check(&json!({"source": {"repository": repo, "username": USER, "password": PASSWORD}}));
    assert_eq!(versions(&out), vec![v("latest", &digest)]);

    let out = check(&json!({"source": {"repository": repo, "username": USER, "password": "wrong"}}));
    let line = out.error_line();
    assert!(line.contains("401") && line.contains(&repo), "{line}");

    let out = check(&json!({"source": {"repository": repo}}));
    let line = out.error_line();
    assert!(
        line.contains("requires authentication") && line.contains("source.username"),
        "{line}"
    );
}

#[test]
fn token_auth() {
    let reg = Registry::start(Auth::Token, false);
    let old = reg.push("team/app", "latest", &Image::with_file("t1", OCI_MANIFEST));
    let new = reg.push("team/app", "latest", &Image::with_file("t2", OCI_MANIFEST));
    let repo = reg.repo("team/app");
    let source = json!({"repository": repo, "username": USER, "password": PASSWORD});

    let before = reg.token_requests();
    let out = check(&json!({"source": source, "version": {"digest": old}}));
    assert_eq!(versions(&out), vec![v("latest", &old), v("latest", &new)]);
    assert_eq!(
        reg.token_requests() - before,
        1,
        "one token serves both HEADs of a check"
    );

    let out = check(&json!({"source": {"repository": repo, "username": USER, "password": "wrong"}}));
    let line = out.error_line();
    assert!(
        line.contains("fetch token") && line.contains("401") && line.contains("invalid username or password"),
        "{line}"
    );

    // anonymous: the token server grants nothing, so the registry refuses
    let out = check(&json!({"source": {"repository": repo}}));
    let line = out.error_line();
    assert!(
        line.contains("401") && line.contains("insufficient_scope"),
        "{line}"
    );
}

#[test]
fn tls_with_and_without_ca_certs() {
    let reg = Registry::start(Auth::None, true);
    let digest = reg.push("app", "latest", &Image::with_file("tls", DOCKER_MANIFEST));
    let ca = reg.ca_pem.clone().unwrap();

    let out = check(&json!({"source": {"repository": reg.repo("app"), "ca_certs": [ca]}}));
    assert_eq!(versions(&out), vec![v("latest", &digest)]);

    let out = check(&json!({"source": {"repository": reg.repo("app")}}));
    let line = out.error_line();
    assert!(
        line.contains(&format!("https://{}", reg.host)) && line.contains("certificate"),
        "{line}"
    );
}

#[test]
fn missing_digest_header_falls_back_to_get() {
    let body = br#"{"fake":"manifest"}"#;
    let server = FakeServer::start(move |req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v2/") => Reply::status(200),
        ("HEAD", "/v2/app/manifests/latest") => {
            Reply::status(200).with_header("Content-Type", DOCKER_MANIFEST)
        }
        ("GET", "/v2/app/manifests/latest") => Reply::status(200)
            .with_header("Content-Type", DOCKER_MANIFEST)
            .with_body(body),
        _ => Reply::status(404),
    });
    let out = check(&json!({"source": {"repository": format!("{}/app", server.host)}}));
    assert_eq!(versions(&out), vec![v("latest", &image::sha256(body))]);
    assert_eq!(server.count("HEAD", "/v2/app/manifests/latest"), 1);
    assert_eq!(server.count("GET", "/v2/app/manifests/latest"), 1);
    let head = server
        .requests()
        .into_iter()
        .find(|r| r.method == "HEAD")
        .unwrap();
    let accept = head.header("accept").unwrap();
    for t in [DOCKER_MANIFEST, OCI_MANIFEST, DOCKER_LIST, OCI_INDEX] {
        assert!(accept.contains(t), "Accept lacks {t}: {accept}");
    }
}

fn manifest_server(
    failures: impl Fn(usize) -> Option<Reply> + Send + Sync + 'static,
) -> (FakeServer, String) {
    let digest = image::sha256(b"some manifest");
    let d = digest.clone();
    let server = FakeServer::start(move |req, nth| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v2/") => Reply::status(200),
        ("HEAD", "/v2/app/manifests/latest") => {
            failures(nth).unwrap_or_else(|| Reply::status(200).with_header("Docker-Content-Digest", &d))
        }
        _ => Reply::status(404),
    });
    (server, digest)
}

#[test]
fn rate_limit_then_success_honours_retry_after() {
    let (server, digest) = manifest_server(|nth| {
        (nth < 2).then(|| {
            Reply::status(429)
                .with_header("Retry-After", "1")
                .with_body(br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#)
        })
    });
    let started = Instant::now();
    let out = check(&json!({"source": {"repository": format!("{}/app", server.host)}}));
    assert_eq!(versions(&out), vec![v("latest", &digest)]);
    assert_eq!(server.count("HEAD", "/v2/app/manifests/latest"), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 was honoured twice"
    );
    assert!(
        out.stderr.contains("429") && out.stderr.contains("retrying"),
        "{}",
        out.stderr
    );
}

#[test]
fn connection_cut_then_success() {
    let (server, digest) = manifest_server(|nth| (nth == 0).then_some(Reply::Hangup));
    let out = check(&json!({"source": {"repository": format!("{}/app", server.host)}}));
    assert_eq!(versions(&out), vec![v("latest", &digest)]);
    assert_eq!(server.count("HEAD", "/v2/app/manifests/latest"), 2);
}

#[test]
fn unavailable_until_the_retry_budget_is_spent() {
    let (server, _) = manifest_server(|_| Some(Reply::status(503).with_body(b"upstream down")));
    let started = Instant::now();
    let out = check(&json!({"source": {"repository": format!("{}/app", server.host)}}));
    let line = out.error_line();
    let elapsed = started.elapsed();
    assert!(
        line.contains("gave up after") && line.contains("503") && line.contains("/v2/app/manifests/latest"),
        "{line}"
    );
    let attempts = server.count("HEAD", "/v2/app/manifests/latest");
    assert!(attempts >= 5, "retried {attempts} times");
    // the default budget is 20 s of waiting; it must end, and not much later
    assert!(
        elapsed >= Duration::from_secs(10) && elapsed < Duration::from_secs(40),
        "{elapsed:?}"
    );
}

#[test]
fn retry_after_beyond_the_budget_fails_at_once() {
    let (server, _) = manifest_server(|_| Some(Reply::status(429).with_header("Retry-After", "3600")));
    let out = check(&json!({"source": {"repository": format!("{}/app", server.host)}}));
    let line = out.error_line();
    assert!(
        line.contains("3600s") && line.contains("Retry-After") && line.contains("429"),
        "{line}"
    );
    assert_eq!(server.count("HEAD", "/v2/app/manifests/latest"), 1);
}

#[test]
fn the_library_takes_the_retry_policy_as_a_value() {
    use registry_image::{check, source::CheckRequest, Backoff};
    let (server, _) = manifest_server(|_| Some(Reply::status(503)));
    let request: CheckRequest =
        serde_json::from_value(json!({"source": {"repository": format!("{}/app", server.host)}})).unwrap();
    let fast = Backoff {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(20),
        max_elapsed: Duration::from_millis(300),
    };
    let started = Instant::now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(check::run(request, fast)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(format!("{:#}", anyhow::Error::from(err)).contains("503"));
    assert!(server.count("HEAD", "/v2/app/manifests/latest") >= 3);
}

#[test]
fn debug_logs_never_show_secrets() {
    use base64::Engine as _;
    let basic_header = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let wrong_header = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:wrong-pw-123"));
    for auth in [Auth::Basic, Auth::Token] {
        let reg = Registry::start(auth, false);
        reg.push("app", "latest", &Image::with_file("secret", DOCKER_MANIFEST));
        for password in [PASSWORD, "wrong-pw-123"] {
            let out = check(&json!({"source": {
                "repository": reg.repo("app"), "username": USER, "password": password, "debug": true,
            }}));
            assert_eq!(out.success, password == PASSWORD, "{auth:?}: {}", out.stderr);
            assert!(out.stderr.contains("DEBUG"), "debug logs are on: {}", out.stderr);
            let all = format!("{}{}", out.stdout, out.stderr);
            for secret in [password, PASSWORD, &basic_header, &wrong_header] {
                assert!(!all.contains(secret), "{auth:?} leaked {secret:?}:\n{all}");
            }
            for token in reg.issued_tokens() {
                assert!(!all.contains(&token), "{auth:?} leaked a token");
                let signature = token.rsplit('.').next().unwrap();
                assert!(!all.contains(signature), "{auth:?} leaked a token signature");
            }
        }
        if auth == Auth::Token {
            assert!(
                !reg.issued_tokens().is_empty(),
                "the token test saw tokens issued"
            );
        }
    }
}
