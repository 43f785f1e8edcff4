//! ECR through the binaries: `moto_server` plays STS and ECR on 127.0.0.1, and a local
//! registry plays the ECR registry, whose Basic user is `AWS` with the password moto's
//! `GetAuthorizationToken` hands out (`<account>-auth-token`, the account of the caller).
//! moto's request recorder shows which calls were made, with which role ARNs, and with
//! which keys they were signed. No test lets the SDK reach anything but loopback: the
//! binaries run with instance metadata off, no AWS config files, and every endpoint at moto.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::archive::oci_archive;
use support::bin::{self, Output};
use support::image::{Image, OCI_MANIFEST};
use support::layer::{gzip, Layer};
use support::moto::{Call, Moto};
use support::registry::{Auth, Registry};

/// A static key id moto maps to its default account, 123456789012.
const STATIC_KEY: &str = "AKIAREGISTRYIMAGE001";
const STATIC_SECRET: &str = "static+secret/KEY-do-not-leak-0123456789";
const SESSION_TOKEN: &str = "session-token-do-not-leak-ABCDEF0123";
const DEFAULT_ACCOUNT: &str = "123456789012";
const ROLE_1: &str = "arn:aws:iam::111111111111:role/first";
const ROLE_2: &str = "arn:aws:iam::222222222222:role/second";
const SESSION_NAME: &str = "concourse-registry-image-resource";

/// A registry that accepts what moto's ECR gives `account`.
fn ecr_registry(account: &str) -> Registry {
    Registry::start_as(Auth::Basic, false, "AWS", &format!("{account}-auth-token"))
}

fn run(moto: &Moto, name: &str, request: &Value, args: &[&str], env: &[(&str, &str)]) -> Output {
    let endpoints = moto.endpoints();
    let mut all: Vec<(&str, &str)> = endpoints.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(env);
    bin::run_with_env(name, &request.to_string(), args, Duration::from_secs(120), &all)
}

/// Fails if any secret of the test, or any the registry or moto knows, shows in `out`.
fn assert_no_secrets(out: &Output, reg: &Registry, moto_secrets: &[&str]) {
    let all = format!("{}{}", out.stdout, out.stderr);
    for secret in [STATIC_SECRET, SESSION_TOKEN, reg.password.as_str()]
        .iter()
        .chain(moto_secrets)
    {
        assert!(
            !all.contains(secret),
            "output shows the secret {secret:?}:\n{all}"
        );
    }
}

/// `source` plus the ECR fields of the test.
fn source(reg: &Registry, ecr: Value) -> Value {
    let mut source = json!({"repository": reg.repo("team/app"), "aws_region": "us-east-1", "debug": true});
    for (k, v) in ecr.as_object().unwrap() {
        source[k] = v.clone();
    }
    source
}

/// Pushes with `out`, checks with `check`, fetches with `in`, all through ECR, and
/// returns the recorded AWS calls.
fn round_trip(moto: &Moto, reg: &Registry, ecr: Value, env: &[(&str, &str)]) -> Vec<Call> {
    let work = tempfile::tempdir().unwrap();
    let mut layer = Layer::new();
    layer.file("hello.txt", b"through ECR", 0o644);
    let tar = layer.tar();
    let image = Image::from_layers(vec![(gzip(&tar), tar)], OCI_MANIFEST, "amd64");
    let digest = oci_archive(&[(&image, "latest")], &work.path().join("image.tar"));
    let source = source(reg, ecr);
    let src = work.path().to_str().unwrap();

    let out = run(
        moto,
        "out",
        &json!({"source": source, "params": {"image": "image.tar"}}),
        &[src],
        env,
    );
    let pushed = out.one_json_line("out");
    assert_eq!(pushed["version"]["digest"], digest.as_str(), "{}", out.stderr);
    assert_no_secrets(&out, reg, &[]);

    let out = run(moto, "check", &json!({"source": source}), &[], env);
    assert_eq!(
        out.one_json_line("check"),
        json!([{"tag": "latest", "digest": digest}]),
        "{}",
        out.stderr
    );
    assert_no_secrets(&out, reg, &[]);

    let dest = work.path().join("in");
    let out = run(
        moto,
        "in",
        &json!({"source": source, "version": {"digest": digest}}),
        &[dest.to_str().unwrap()],
        env,
    );
    out.one_json_line("in");
    assert_eq!(
        std::fs::read_to_string(dest.join("rootfs/hello.txt")).unwrap(),
        "through ECR"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("repository")).unwrap(),
        reg.repo("team/app")
    );
    assert_no_secrets(&out, reg, &[]);
    let calls = moto.calls();
    let tokens = calls
        .iter()
        .filter(|c| c.action == "ecr:GetAuthorizationToken")
        .count();
    assert_eq!(tokens, 3, "one ECR login per binary: {calls:?}");
    calls
}

fn ecr_calls(calls: &[Call]) -> Vec<&Call> {
    calls
        .iter()
        .filter(|c| c.action == "ecr:GetAuthorizationToken")
        .collect()
}

fn assume_calls(calls: &[Call]) -> Vec<&Call> {
    calls.iter().filter(|c| c.action == "sts:AssumeRole").collect()
}

#[test]
fn static_keys() {
    let moto = Moto::start();
    let reg = ecr_registry(DEFAULT_ACCOUNT);
    let calls = round_trip(
        &moto,
        &reg,
        json!({"aws_access_key_id": STATIC_KEY, "aws_secret_access_key": STATIC_SECRET}),
        &[],
    );
    assert!(assume_calls(&calls).is_empty(), "{calls:?}");
    for call in ecr_calls(&calls) {
        assert_eq!(call.access_key, STATIC_KEY);
        assert_eq!(call.session_token, None);
    }
}

#[test]
fn static_keys_with_a_session_token() {
    let moto = Moto::start();
    let reg = ecr_registry(DEFAULT_ACCOUNT);
    let calls = round_trip(
        &moto,
        &reg,
        json!({"aws_access_key_id": STATIC_KEY, "aws_secret_access_key": STATIC_SECRET,
               "aws_session_token": SESSION_TOKEN}),
        &[],
    );
    for call in ecr_calls(&calls) {
        assert_eq!(call.access_key, STATIC_KEY);
        assert_eq!(call.session_token.as_deref(), Some(SESSION_TOKEN));
    }
}

#[test]
fn the_default_chain_reads_the_environment() {
    let moto = Moto::start();
    let reg = ecr_registry(DEFAULT_ACCOUNT);
    let calls = round_trip(
        &moto,
        &reg,
        json!({}),
        &[
            ("AWS_ACCESS_KEY_ID", STATIC_KEY),
            ("AWS_SECRET_ACCESS_KEY", STATIC_SECRET),
        ],
    );
    for call in ecr_calls(&calls) {
        assert_eq!(call.access_key, STATIC_KEY);
    }
}

#[test]
fn the_default_chain_reads_container_credentials() {
    use support::fake::{FakeServer, Reply};
    // what ECS and EKS Pod Identity serve; the SDK takes a loopback full URI
    let metadata = FakeServer::start(|req, _| {
        match req.path.as_str() {
        "/credentials" => Reply::status(200).with_body(
            br#"{"AccessKeyId":"AKIACONTAINERKEY0001","SecretAccessKey":"container-secret-do-not-leak","Token":"container-token-do-not-leak","Expiration":"2099-01-01T00:00:00Z"}"#,
        ),
        _ => Reply::status(404),
    }
    });
    let moto = Moto::start();
    let reg = ecr_registry(DEFAULT_ACCOUNT);
    let uri = format!("http://{}/credentials", metadata.host);
    let calls = round_trip(
        &moto,
        &reg,
        json!({}),
        &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)],
    );
    for call in ecr_calls(&calls) {
        assert_eq!(call.access_key, "AKIACONTAINERKEY0001");
        assert_eq!(call.session_token.as_deref(), Some("container-token-do-not-leak"));
    }
    assert!(
        metadata.count("GET", "/credentials") >= 3,
        "fetched by every binary"
    );
}

#[test]
fn one_role_is_assumed_and_its_keys_sign_the_ecr_call() {
    let moto = Moto::start();
    // moto's token names the caller's account: only the role's keys get this password
    let reg = ecr_registry("111111111111");
    let calls = round_trip(
        &moto,
        &reg,
        json!({"aws_access_key_id": STATIC_KEY, "aws_secret_access_key": STATIC_SECRET, "aws_role_arn": ROLE_1}),
        &[],
    );
    let assumed = assume_calls(&calls);
    assert_eq!(assumed.len(), 3, "{calls:?}");
    for call in &assumed {
        assert_eq!(call.field("RoleArn"), Some(ROLE_1));
        assert_eq!(call.field("RoleSessionName"), Some(SESSION_NAME));
        assert_eq!(call.access_key, STATIC_KEY);
    }
    for call in ecr_calls(&calls) {
        assert_ne!(call.access_key, STATIC_KEY);
        let caller = moto.caller_of(&call.access_key);
        assert!(
            caller.contains(":assumed-role/first/"),
            "ECR call signed by {caller}"
        );
    }
}

#[test]
fn a_role_chain_is_assumed_in_order() {
    let moto = Moto::start();
    let reg = ecr_registry("222222222222");
    let calls = round_trip(
        &moto,
        &reg,
        json!({"aws_access_key_id": STATIC_KEY, "aws_secret_access_key": STATIC_SECRET,
               "aws_role_arns": [ROLE_1, ROLE_2]}),
        &[],
    );
    let assumed = assume_calls(&calls);
    assert_eq!(assumed.len(), 6, "two per binary: {calls:?}");
    for pair in assumed.chunks(2) {
        assert_eq!(pair[0].field("RoleArn"), Some(ROLE_1));
        assert_eq!(pair[0].access_key, STATIC_KEY);
        assert_eq!(pair[1].field("RoleArn"), Some(ROLE_2));
        let signer = moto.caller_of(&pair[1].access_key);
        assert!(
            signer.contains(":assumed-role/first/"),
            "second AssumeRole signed by {signer}"
        );
    }
    for call in ecr_calls(&calls) {
        let caller = moto.caller_of(&call.access_key);
        assert!(
            caller.contains(":assumed-role/second/"),
            "ECR call signed by {caller}"
        );
    }
}

/// Runs `check` expecting failure; returns the error line after checking that nothing
/// secret shows.
fn check_fails(moto: &Moto, reg: &Registry, ecr: Value, env: &[(&str, &str)]) -> String {
    let out = run(moto, "check", &json!({"source": source(reg, ecr)}), &[], env);
    assert_no_secrets(&out, reg, &[]);
    let line = out.error_line();
    assert!(line.starts_with("error: "), "{line}");
    line
}

#[test]
fn wrong_or_missing_settings_name_the_setting() {
    let moto = Moto::start();
    let reg = ecr_registry(DEFAULT_ACCOUNT);
    let with_keys = |more: Value| {
        let mut ecr = json!({"aws_access_key_id": STATIC_KEY, "aws_secret_access_key": STATIC_SECRET});
        for (k, v) in more.as_object().unwrap() {
            ecr[k] = v.clone();
        }
        ecr
    };
    let mut no_region = source(&reg, with_keys(json!({})));
    no_region.as_object_mut().unwrap().remove("aws_region");
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            no_region,
            vec!["source.aws_access_key_id is set but source.aws_region is not"],
        ),
        (
            source(&reg, json!({"aws_access_key_id": STATIC_KEY})),
            vec!["source.aws_secret_access_key"],
        ),
        (
            source(&reg, json!({"aws_secret_access_key": STATIC_SECRET})),
            vec!["source.aws_access_key_id"],
        ),
        (
            source(
                &reg,
                with_keys(json!({"aws_role_arn": ROLE_1, "aws_role_arns": [ROLE_2]})),
            ),
            vec!["source.aws_role_arn and source.aws_role_arns"],
        ),
        (
            source(&reg, with_keys(json!({"aws_role_arns": [ROLE_1, "first"]}))),
            vec!["source.aws_role_arns[1]", "role ARN"],
        ),
        (
            source(&reg, with_keys(json!({"aws_region": "US East"}))),
            vec!["source.aws_region", "US East"],
        ),
        (
            source(&reg, with_keys(json!({"aws_account_id": "12345"}))),
            vec!["source.aws_account_id"],
        ),
        (
            source(&reg, with_keys(json!({"username": "AWS", "password": "x"}))),
            vec!["source.username and source.aws_region"],
        ),
    ];
    for (src, wanted) in cases {
        let out = run(&moto, "check", &json!({"source": src}), &[], &[]);
        assert_no_secrets(&out, &reg, &[]);
        let line = out.error_line();
        for w in wanted {
            assert!(line.contains(w), "{src}: {line:?} lacks {w:?}");
        }
    }
    assert!(
        moto.calls().is_empty(),
        "settings are checked before any AWS call"
    );
}

#[test]
fn failures_name_the_step_and_its_cause() {
    let moto = Moto::start();
    let reg = ecr_registry(DEFAULT_ACCOUNT);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    // no credentials anywhere: the default chain finds none
    let line = check_fails(&moto, &reg, json!({}), &[]);
    assert!(
        line.contains("ECR: load AWS credentials for region us-east-1"),
        "{line}"
    );
    assert!(line.contains("no credentials"), "{line}");

    let keys = json!({"aws_access_key_id": STATIC_KEY, "aws_secret_access_key": STATIC_SECRET, "aws_role_arn": ROLE_1});
    let line = check_fails(&moto, &reg, keys.clone(), &[("AWS_ENDPOINT_URL_STS", &closed)]);
    assert!(line.contains(&format!("ECR: STS AssumeRole {ROLE_1}")), "{line}");
    assert!(line.to_lowercase().contains("connect"), "{line}");

    let line = check_fails(&moto, &reg, keys, &[("AWS_ENDPOINT_URL_ECR", &closed)]);
    assert!(line.contains("ECR: GetAuthorizationToken in us-east-1"), "{line}");

    // ECR answers, but the registry refuses the password (another account's)
    let other = ecr_registry("999999999999");
    let out = run(
        &moto,
        "check",
        &json!({"source": source(&other, json!({"aws_access_key_id": STATIC_KEY, "aws_secret_access_key": STATIC_SECRET}))}),
        &[],
        &[],
    );
    assert_no_secrets(&out, &other, &[]);
    let line = out.error_line();
    assert!(line.contains("401") && line.contains(&other.host), "{line}");
}
