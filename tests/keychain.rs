//! The docker config keychain through the binaries: when the source has no credentials,
//! `$DOCKER_CONFIG/config.json` gives them: `auths` entries, credential helpers named in
//! `credHelpers` or `credsStore` (small scripts on `PATH` here), and identity tokens.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use support::bin::{self, Output};
use support::image::{Image, DOCKER_MANIFEST};
use support::registry::{Auth, Registry, PASSWORD, USER};

/// A docker config directory holding `config`, and a directory for helper scripts.
struct Keychain {
    dir: tempfile::TempDir,
}

impl Keychain {
    fn new(config: &Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("docker")).unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("docker/config.json"), config.to_string()).unwrap();
        Self { dir }
    }

    /// Adds `docker-credential-<name>`, a shell script with `body`; it saves its stdin in
    /// `<name>.stdin` first.
    fn helper(&self, name: &str, body: &str) {
        let path = self
            .dir
            .path()
            .join("bin")
            .join(format!("docker-credential-{name}"));
        let saved = self.dir.path().join(format!("{name}.stdin"));
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = get ] || {{ echo \"unexpected $1\" >&2; exit 3; }}\ncat > '{}'\n{body}\n",
            saved.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// What helper `name` read on stdin.
    fn stdin_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.stdin"))).unwrap_or_default()
    }

    fn check(&self, source: &Value) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let config = self.dir.path().join("docker");
        bin::run_with_env(
            "check",
            &json!({"source": source}).to_string(),
            &[],
            Duration::from_secs(60),
            &[("PATH", &path), ("DOCKER_CONFIG", config.to_str().unwrap())],
        )
    }
}

fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

fn assert_found(out: &Output, digest: &str) {
    assert_eq!(
        out.one_json_line("check"),
        json!([{"tag": "latest", "digest": digest}]),
        "{}",
        out.stderr
    );
}

fn assert_quiet(out: &Output) {
    let all = format!("{}{}", out.stdout, out.stderr);
    for secret in [PASSWORD, &basic(USER, PASSWORD), "testuser-refresh"] {
        assert!(!all.contains(secret), "output shows {secret:?}:\n{all}");
    }
}

fn pushed(auth: Auth) -> (Registry, String) {
    let reg = Registry::start(auth, false);
    let digest = reg.push("app", "latest", &Image::with_file("keychain", DOCKER_MANIFEST));
    (reg, digest)
}

#[test]
fn auths_entries_give_basic_credentials() {
    for auth in [Auth::Basic, Auth::Token] {
        let (reg, digest) = pushed(auth);
        // docker writes the host, or a URL with a scheme; both name the same registry
        for key in [reg.host.clone(), format!("http://{}/v2/", reg.host)] {
            let keychain = Keychain::new(&json!({"auths": {
                key: {"auth": basic(USER, PASSWORD)},
                "other.example:5000": {"auth": basic("someone", "else")},
            }}));
            let out = keychain.check(&json!({"repository": reg.repo("app"), "debug": true}));
            assert_found(&out, &digest);
            assert_quiet(&out);
            assert!(out.stderr.contains("config.json auths"), "{}", out.stderr);
        }
        // the source's own credentials win over the config's
        let keychain = Keychain::new(&json!({"auths": {reg.host.clone(): {"auth": basic(USER, "wrong")}}}));
        let out =
            keychain.check(&json!({"repository": reg.repo("app"), "username": USER, "password": PASSWORD}));
        assert_found(&out, &digest);
    }
}

#[test]
fn an_identity_token_is_exchanged_at_the_realm() {
    let reg = Registry::start_as(Auth::Token, false, "testuser", "testpassword");
    let digest = reg.push("app", "latest", &Image::with_file("identity", DOCKER_MANIFEST));
    let keychain =
        Keychain::new(&json!({"auths": {reg.host.clone(): {"identitytoken": "testuser-refresh-token"}}}));
    let out = keychain.check(&json!({"repository": reg.repo("app"), "debug": true}));
    assert_found(&out, &digest);
    assert_quiet(&out);
    assert_eq!(
        reg.refresh_grants(),
        1,
        "one token, granted for the refresh token"
    );
    // an unknown refresh token is refused by the realm, and the message says whose it was
    let keychain = Keychain::new(&json!({"auths": {reg.host.clone(): {"identitytoken": "stale"}}}));
    let line = keychain
        .check(&json!({"repository": reg.repo("app")}))
        .error_line();
    assert!(
        line.contains("fetch token") && line.contains("401") && line.contains("config.json auths"),
        "{line}"
    );
}

#[test]
fn cred_helpers_receive_the_host_on_stdin() {
    let (reg, digest) = pushed(Auth::Basic);
    let keychain = Keychain::new(&json!({
        "auths": {reg.host.clone(): {"auth": basic(USER, "not used when a helper is named")}},
        "credHelpers": {reg.host.clone(): "test"},
    }));
    keychain.helper(
        "test",
        &format!(
            r#"printf '{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASSWORD}"}}' "$(cat '{}')""#,
            keychain.dir.path().join("test.stdin").display()
        ),
    );
    let out = keychain.check(&json!({"repository": reg.repo("app"), "debug": true}));
    assert_found(&out, &digest);
    assert_quiet(&out);
    assert_eq!(keychain.stdin_of("test"), reg.host);
    assert!(out.stderr.contains("docker-credential-test"), "{}", out.stderr);
}

#[test]
fn creds_store_serves_every_host_and_may_have_nothing() {
    let (reg, digest) = pushed(Auth::Basic);
    let keychain = Keychain::new(&json!({"credsStore": "store"}));
    keychain.helper(
        "store",
        &format!(r#"printf '{{"ServerURL":"x","Username":"{USER}","Secret":"{PASSWORD}"}}'"#),
    );
    assert_found(&keychain.check(&json!({"repository": reg.repo("app")})), &digest);
    assert_eq!(keychain.stdin_of("store"), reg.host);

    // "credentials not found" is the protocol's "nothing for this host", not a failure
    keychain.helper("store", "echo 'credentials not found in native keychain'; exit 1");
    let out = keychain.check(&json!({"repository": reg.repo("app")}));
    let line = out.error_line();
    assert!(
        line.contains("requires authentication") && line.contains("no docker config has credentials"),
        "{line}"
    );
}

#[test]
fn a_broken_or_missing_helper_fails_naming_it() {
    let (reg, _) = pushed(Auth::Basic);
    let keychain = Keychain::new(&json!({"credHelpers": {reg.host.clone(): "broken"}}));
    keychain.helper("broken", "echo 'cannot reach the vault' >&2; exit 2");
    let out = keychain.check(&json!({"repository": reg.repo("app")}));
    let line = out.error_line();
    assert!(
        line.contains("credential helper docker-credential-broken")
            && line.contains(&reg.host)
            && line.contains("cannot reach the vault"),
        "{line}"
    );

    keychain.helper("broken", "echo 'not json'");
    let line = keychain
        .check(&json!({"repository": reg.repo("app")}))
        .error_line();
    assert!(
        line.contains("docker-credential-broken") && line.contains("JSON"),
        "{line}"
    );

    let keychain = Keychain::new(&json!({"credHelpers": {reg.host.clone(): "absent"}}));
    let line = keychain
        .check(&json!({"repository": reg.repo("app")}))
        .error_line();
    assert!(
        line.contains("docker-credential-absent") && line.contains("not found on PATH"),
        "{line}"
    );
}

#[test]
fn a_missing_or_unreadable_config_is_no_error() {
    let reg = Registry::plain();
    let digest = reg.push("app", "latest", &Image::with_file("public", DOCKER_MANIFEST));
    for config in [None, Some("not json {"), Some("")] {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = config {
            std::fs::write(dir.path().join("config.json"), text).unwrap();
        }
        let out = bin::run_with_env(
            "check",
            &json!({"source": {"repository": reg.repo("app")}}).to_string(),
            &[],
            Duration::from_secs(60),
            &[("DOCKER_CONFIG", dir.path().to_str().unwrap())],
        );
        assert_found(&out, &digest);
    }
    // without DOCKER_CONFIG, ~/.docker/config.json is read
    let home = tempfile::tempdir().unwrap();
    let (basic_reg, digest) = pushed(Auth::Basic);
    std::fs::create_dir(home.path().join(".docker")).unwrap();
    std::fs::write(
        home.path().join(".docker/config.json"),
        json!({"auths": {basic_reg.host.clone(): {"auth": basic(USER, PASSWORD)}}}).to_string(),
    )
    .unwrap();
    let out = run_without_docker_config(&basic_reg, home.path());
    assert_found(&out, &digest);
}

fn run_without_docker_config(reg: &Registry, home: &Path) -> Output {
    bin::run_with_env(
        "check",
        &json!({"source": {"repository": reg.repo("app")}}).to_string(),
        &[],
        Duration::from_secs(60),
        &[("HOME", home.to_str().unwrap()), ("DOCKER_CONFIG", "")],
    )
}
