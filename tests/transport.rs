//! Where credentials go, through the binaries: never to a host a redirect led to, never
//! to a realm such a host names, never over plain HTTP to an HTTPS registry's realm. A
//! second "host" is another loopback address (127.0.0.2). And the transport's other
//! promises, through the library: tags listed page by page, a client certificate.

mod support;

use std::time::Duration;

use serde_json::json;
use support::bin;
use support::fake::{self, FakeServer, Reply};
use support::image::{self, Image, DOCKER_MANIFEST};
use support::registry::{Auth, Registry, PASSWORD, USER};

fn check(source: serde_json::Value) -> bin::Output {
    bin::run("check", &json!({ "source": source }), &[])
}

/// A registry on 127.0.0.1 that wants Basic credentials and then redirects the manifest
/// to `elsewhere` (on 127.0.0.2).
fn redirecting_registry(elsewhere: String) -> FakeServer {
    FakeServer::start(move |req, _| {
        let authorized = req.header("authorization").is_some();
        match (req.method.as_str(), req.path.as_str(), authorized) {
            ("GET", "/v2/", _) | (_, _, false) => {
                Reply::status(401).with_header("WWW-Authenticate", r#"Basic realm="test""#)
            }
            ("HEAD", "/v2/app/manifests/latest", true) => {
                Reply::status(307).with_header("Location", &format!("http://{elsewhere}/storage/manifest"))
            }
            _ => Reply::status(404),
        }
    })
}

#[test]
fn credentials_never_follow_a_redirect_to_another_host() {
    let digest = image::sha256(b"stored elsewhere");
    let d = digest.clone();
    let storage = FakeServer::start_on("127.0.0.2", move |req, _| match req.path.as_str() {
        "/storage/manifest" => Reply::status(200).with_header("Docker-Content-Digest", &d),
        _ => Reply::status(404),
    });
    let registry = redirecting_registry(storage.host.clone());
    let out = check(
        json!({"repository": format!("{}/app", registry.host), "username": USER, "password": PASSWORD}),
    );
    assert_eq!(
        out.one_json_line("check"),
        json!([{"tag": "latest", "digest": digest}]),
        "{}",
        out.stderr
    );
    let at_storage = storage.requests();
    assert!(!at_storage.is_empty(), "the redirect was followed");
    for request in &at_storage {
        assert_eq!(
            request.header("authorization"),
            None,
            "credentials went to the redirect target: {request:?}"
        );
    }
    assert!(
        registry
            .requests()
            .iter()
            .any(|r| r.header("authorization").is_some()),
        "the registry itself got them"
    );
}

#[test]
fn a_challenge_from_a_redirect_target_is_not_answered() {
    let storage = FakeServer::start_on("127.0.0.2", move |req, _| match req.path.as_str() {
        "/token" => Reply::status(200).with_body(br#"{"token":"stolen"}"#),
        _ => {
            let realm = format!(
                r#"Bearer realm="http://{}/token",service="evil""#,
                req.header("host").unwrap_or_default()
            );
            Reply::status(401).with_header("WWW-Authenticate", &realm)
        }
    });
    let registry = redirecting_registry(storage.host.clone());
    let out = check(
        json!({"repository": format!("{}/app", registry.host), "username": USER, "password": PASSWORD}),
    );
    let line = out.error_line();
    assert!(line.contains("401") && line.contains(&storage.host), "{line}");
    assert_eq!(
        storage.count("GET", "/token"),
        0,
        "the redirect target's realm was asked for a token"
    );
    for request in storage.requests() {
        assert_eq!(request.header("authorization"), None, "{request:?}");
    }
}

#[test]
fn an_https_registry_with_a_plain_http_realm_gets_no_credentials() {
    let reg = Registry::start(Auth::Token, true);
    let ca = reg.ca_pem.clone().unwrap();
    let out = check(
        json!({"repository": reg.repo("app"), "username": USER, "password": PASSWORD, "ca_certs": [ca]}),
    );
    let line = out.error_line();
    assert!(
        line.contains("plain HTTP") && line.contains("refusing to send credentials"),
        "{line}"
    );
    assert_eq!(reg.token_requests(), 0, "nothing went to the plain-HTTP realm");
    // anonymous requests risk nothing there: the realm is asked, and refuses access
    let out = check(json!({"repository": reg.repo("app"), "ca_certs": [ca]}));
    assert!(out.error_line().contains("401"));
    assert_eq!(reg.token_requests(), 1);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn fast() -> registry_image::Backoff {
    registry_image::Backoff {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(20),
        max_elapsed: Duration::from_millis(200),
    }
}

async fn remote(source: serde_json::Value) -> registry_image::connect::Remote {
    let source = serde_json::from_value(source).unwrap();
    registry_image::connect::connect(&source, registry_image::registry::Scope::Pull, fast())
        .await
        .unwrap()
}

#[test]
fn tags_are_listed_page_by_page() {
    for auth in [Auth::None, Auth::Token] {
        let reg = Registry::start(auth, false);
        let img = Image::with_file("tagged", DOCKER_MANIFEST);
        let mut pushed: Vec<String> = ["1.0.0", "1.1.0", "2.0.0", "latest", "rc"]
            .map(String::from)
            .to_vec();
        for tag in &pushed {
            reg.push("app", tag, &img);
        }
        let source = json!({"repository": reg.repo("app"), "username": USER, "password": PASSWORD});
        let tags = runtime().block_on(async { remote(source).await.origin().list_tags_by(2).await.unwrap() });
        let mut sorted = tags.clone();
        sorted.sort();
        pushed.sort();
        assert_eq!(sorted, pushed, "{auth:?}");
    }
    // distribution 2.8 ignores `n` for tags, so the pages come from a fake one, which
    // links them as distribution 3, Harbor and Docker Hub do (relative `Link`s)
    let server = FakeServer::start(|req, _| {
        let page = |tags: &str, next: Option<&str>| {
            let reply =
                Reply::status(200).with_body(format!(r#"{{"name":"app","tags":[{tags}]}}"#).as_bytes());
            match next {
                Some(last) => reply.with_header(
                    "Link",
                    &format!(r#"</v2/app/tags/list?last={last}&n=2>; rel="next""#),
                ),
                None => reply,
            }
        };
        match req.path.as_str() {
            "/v2/" => Reply::status(200),
            "/v2/app/tags/list?n=2" => page(r#""a","b""#, Some("b")),
            "/v2/app/tags/list?last=b&n=2" => page(r#""c","d""#, Some("d")),
            "/v2/app/tags/list?last=d&n=2" => page(r#""e""#, None),
            _ => Reply::status(404),
        }
    });
    let tags = runtime().block_on(async {
        remote(json!({"repository": format!("{}/app", server.host)}))
            .await
            .origin()
            .list_tags_by(2)
            .await
            .unwrap()
    });
    assert_eq!(tags, ["a", "b", "c", "d", "e"]);
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/v2/app/tags/list"))
            .count(),
        3
    );
}

#[test]
fn a_next_page_on_another_host_is_refused() {
    let server = FakeServer::start(|req, _| match req.path.as_str() {
        "/v2/" => Reply::status(200),
        p if p.starts_with("/v2/app/tags/list") => Reply::status(200)
            .with_header(
                "Link",
                r#"<http://127.0.0.2:9/v2/app/tags/list?last=a&n=2>; rel="next""#,
            )
            .with_body(br#"{"name":"app","tags":["a"]}"#),
        _ => Reply::status(404),
    });
    let error = runtime().block_on(async {
        remote(json!({"repository": format!("{}/app", server.host)}))
            .await
            .origin()
            .list_tags_by(2)
            .await
            .unwrap_err()
    });
    assert!(
        error.to_string().contains("links its next page to another host"),
        "{error}"
    );
}

#[test]
fn a_client_certificate_opens_a_mutual_tls_registry() {
    use registry_image::transport::{ClientCert, Identity, Options, Transport};
    let (reg, cert, key) = Registry::start_mutual_tls();
    let ping = |client_cert: Option<ClientCert>| {
        let options = Options {
            ca_certs: vec![reg.ca_pem.clone().unwrap()],
            client_cert,
            insecure: false,
            https_only: false,
            backoff: fast(),
        };
        let transport = Transport::new(&reg.host, Identity::anonymous("none"), &options).unwrap();
        runtime().block_on(async {
            transport
                .request(reqwest::Method::GET, "/v2/", "*/*", "")
                .await
                .map(|r| r.status())
        })
    };
    let with = ping(Some(ClientCert {
        cert,
        key: registry_image::secret::Secret::new(key),
    }));
    assert_eq!(with.unwrap().as_u16(), 200);
    let without = ping(None).unwrap_err();
    assert!(
        format!("{:#}", anyhow::Error::from(without))
            .to_lowercase()
            .contains("certificate"),
        "TLS refused without the certificate"
    );
}

#[test]
fn hostile_token_answers_fail_cleanly() {
    // a lifetime no clock can hold
    let server = fake::token_registry(|| {
        Reply::status(200).with_body(br#"{"token":"tok","expires_in":18446744073709551615}"#)
    });
    let out = check(json!({"repository": format!("{}/app", server.host)}));
    assert_eq!(
        out.one_json_line("check")[0]["digest"],
        image::sha256(b"m").as_str(),
        "{}",
        out.stderr
    );

    // a realm that echoes the credentials it refuses
    let echo = format!(r#"{{"details":"bad credentials {USER}:{PASSWORD}"}}"#);
    let server = fake::token_registry(move || Reply::status(401).with_body(echo.as_bytes()));
    let out = check(
        json!({"repository": format!("{}/app", server.host), "username": USER, "password": PASSWORD, "debug": true}),
    );
    let line = out.error_line();
    assert!(
        line.contains("fetch token") && line.contains("<redacted>"),
        "{line}"
    );
    assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);

    // a token that is not a string is refused without being quoted
    let server = fake::token_registry(|| Reply::status(200).with_body(br#"{"token":987654321}"#));
    let line = check(json!({"repository": format!("{}/app", server.host)})).error_line();
    assert!(
        line.contains("not usable") && !line.contains("987654321"),
        "{line}"
    );

    // a message over several lines, with escape sequences, stays one clean line
    let server = fake::token_registry(|| {
        Reply::status(403).with_body(b"{\"details\":\"no\\n\\u001b[31mway\\r\\nreally\"}")
    });
    let out = check(json!({"repository": format!("{}/app", server.host)}));
    let line = out.error_line();
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        !line.contains('\u{1b}') && line.contains("no") && line.contains("way"),
        "{line:?}"
    );
}

#[test]
fn a_huge_retry_after_fails_at_once_without_a_panic() {
    let server = FakeServer::start(|req, nth| match req.path.as_str() {
        "/v2/" => Reply::status(200),
        _ if nth == 0 => Reply::status(503).with_header("Retry-After", "1"),
        _ => Reply::status(503).with_header("Retry-After", "18446744073709551615"),
    });
    let line = check(json!({"repository": format!("{}/app", server.host)})).error_line();
    assert!(line.contains("Retry-After") && line.contains("503"), "{line}");
}

#[test]
fn a_manifest_cut_short_is_not_taken_whole() {
    // no digest header, so check hashes the body; the body breaks off every time
    let server = FakeServer::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v2/") => Reply::status(200),
        ("HEAD", _) => Reply::status(200),
        ("GET", "/v2/app/manifests/latest") => Reply::Truncated(1000, b"{\"schemaVer".to_vec()),
        _ => Reply::status(404),
    });
    let out = check(json!({"repository": format!("{}/app", server.host)}));
    let line = out.error_line();
    assert!(
        line.contains("gave up after") && line.contains("/v2/app/manifests/latest"),
        "{line}"
    );
    assert!(server.count("GET", "/v2/app/manifests/latest") > 1, "retried");
}

#[test]
fn signed_urls_of_other_hosts_are_not_shown() {
    let storage = FakeServer::start_on("127.0.0.2", |_, _| Reply::status(403).with_body(b"expired"));
    let target = format!(
        "http://{}/blob?X-Amz-Security-Token=SESSIONSECRET123&X-Amz-Signature=abc",
        storage.host
    );
    let registry = FakeServer::start(move |req, _| match req.path.as_str() {
        "/v2/" => Reply::status(200),
        _ => Reply::status(307).with_header("Location", &target),
    });
    let out = check(json!({"repository": format!("{}/app", registry.host), "debug": true}));
    let line = out.error_line();
    assert!(
        line.contains("403") && line.contains(&format!("http://{}/blob", storage.host)),
        "{line}"
    );
    assert!(!out.stderr.contains("SESSIONSECRET123"), "{}", out.stderr);
}
