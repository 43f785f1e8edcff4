//! The Notary building blocks against a real `notary-server` and the real `notary` CLI:
//! the TUF chain of a repository the CLI initialised verifies (and a tampered one does
//! not), and a targets role we sign with the CLI's own key is what `notary list` shows.
//! Signing through `out` is tested in tests/trust.rs.

mod support;

use registry_image::notary::key::SigningKey;
use registry_image::notary::tuf::{self, Repository, Served, TufError};
use registry_image::secret::Secret;
use support::notary::{Notary, PASSPHRASE};

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn served(notary: &Notary, gun: &str) -> Served {
    Served {
        root: notary.metadata(gun, "root"),
        timestamp: notary.metadata(gun, "timestamp"),
        snapshot: notary.metadata(gun, "snapshot"),
        targets: notary.metadata(gun, "targets"),
        delegations: Vec::new(),
    }
}

fn publish(notary: &Notary, gun: &str, role: &str, bytes: Vec<u8>) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ca = reqwest::Certificate::from_pem(notary.ca_pem.as_bytes()).unwrap();
        let http = reqwest::Client::builder().tls_certs_merge([ca]).build().unwrap();
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(role.to_owned())
            .mime_str("application/octet-stream")
            .unwrap();
        let form = reqwest::multipart::Form::new().part("files", part);
        let r = http
            .post(format!("{}/v2/{gun}/_trust/tuf/", notary.url))
            .multipart(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    })
}

#[test]
fn the_chain_of_a_real_repository_verifies_and_a_tampered_one_does_not() {
    let notary = Notary::start();
    let gun = "127.0.0.1:5000/team/app";
    let trust = notary.trust_dir("owner");
    notary.init(&trust, gun);
    let good = served(&notary, gun);
    let repo = Repository::verify(&good, now()).unwrap();
    assert!(repo.targets.version().unwrap() >= 1);

    // a byte of targets changed: its hash no longer matches the snapshot
    let mut changed = served(&notary, gun);
    let at = changed
        .targets
        .windows(9)
        .position(|w| w == b"\"version\"")
        .unwrap();
    changed.targets[at + 10] = b'7';
    let err = Repository::verify(&changed, now()).unwrap_err();
    assert!(matches!(err, TufError::Mismatch { .. }), "{err}");

    // root without its signatures
    let mut unsigned = served(&notary, gun);
    let mut root: serde_json::Value = serde_json::from_slice(&unsigned.root).unwrap();
    root["signatures"] = serde_json::json!([]);
    unsigned.root = serde_json::to_vec(&root).unwrap();
    let err = Repository::verify(&unsigned, now()).unwrap_err();
    assert!(matches!(err, TufError::Signatures { valid: 0, .. }), "{err}");

    // everything expired by then
    let err = Repository::verify(&good, now() + 20 * 365 * 86_400).unwrap_err();
    assert!(matches!(err, TufError::Expired { .. }), "{err}");
}

#[test]
fn a_target_we_sign_is_what_notary_list_shows() {
    let notary = Notary::start();
    let gun = "127.0.0.1:5000/team/signed";
    let trust = notary.trust_dir("owner");
    let (pem, id) = notary.init(&trust, gun);
    let key = SigningKey::from_pem(&Secret::new(pem), Some(&Secret::new(PASSPHRASE))).unwrap();
    assert_eq!(key.key_id(), id, "our id of the CLI's targets key");

    for (round, manifest) in [
        br#"{"schemaVersion":2,"one":1}"#.as_slice(),
        br#"{"schemaVersion":2,"two":22}"#.as_slice(),
    ]
    .into_iter()
    .enumerate()
    {
        let repo = Repository::verify(&served(&notary, gun), now()).unwrap();
        assert!(repo.keyids_of("targets").contains(&id));
        let bytes = tuf::sign_target(
            "targets",
            Some(&repo.targets),
            &["v1"],
            manifest,
            &key,
            &id,
            now(),
        )
        .unwrap();
        let (status, body) = publish(&notary, gun, "targets", bytes);
        assert_eq!(status, 200, "round {round}: {body}");
        let listed = notary.list(gun);
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(manifest));
        assert_eq!(
            listed,
            vec![("v1".to_owned(), sha, manifest.len() as u64, "targets".to_owned())],
            "round {round}"
        );
        let after = Repository::verify(&served(&notary, gun), now()).unwrap();
        assert_eq!(
            after.targets.version().unwrap(),
            repo.targets.version().unwrap() + 1,
            "round {round}"
        );
    }
}
