//! Debian's `notary-server` for tests: HTTPS on a free 127.0.0.1 port with a certificate
//! from a throw-away CA, in-memory storage, and its own key service (`trust_service: local`,
//! so it holds the timestamp and snapshot keys, ed25519, as Docker's and Harbor's servers
//! did). The `notary` CLI is driven against it with a trust directory and passphrases of the
//! test's own. Dropping a `Notary` kills exactly the process it started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine as _;

use super::registry::{free_port, issue, make_certs, python, require, start_token_server, wait_for_port};

/// Passphrases the CLI is given for every role.
pub const PASSPHRASE: &str = "notary test passphrase";

pub struct Notary {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: String,
    setup: Setup,
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

/// How the server is set up besides TLS.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Demand a client certificate signed by the test CA.
    pub mutual_tls: bool,
    /// Docker token auth from `token_server.py` (over HTTPS) with this one user.
    pub token_user: Option<(String, String)>,
}

impl Notary {
    pub fn start() -> Self {
        Self::start_with(Setup::default())
    }

    pub fn start_with(setup: Setup) -> Self {
        require("notary-server");
        require("notary");
        let dir = tempfile::tempdir().unwrap();
        make_certs(dir.path());
        let mut children = Vec::new();
        let mut auth = serde_json::Value::Null;
        if let Some((user, password)) = &setup.token_user {
            let (child, realm) = start_token_server(dir.path(), user, password, "notary-test", true);
            children.push(child);
            auth = serde_json::json!({
                "type": "token",
                "options": {
                    "realm": realm,
                    "service": "notary-test",
                    "issuer": "test-issuer",
                    "rootcertbundle": dir.path().join("signer.crt"),
                    "autoredirect": false,
                },
            });
        }
        if setup.mutual_tls {
            issue(
                dir.path(),
                "client",
                "/CN=notary test client",
                "extendedKeyUsage=clientAuth\n",
            );
        }
        for _ in 0..5 {
            let port = free_port();
            let mut server = serde_json::json!({
                "http_addr": format!("127.0.0.1:{port}"),
                "tls_cert_file": dir.path().join("server.crt"),
                "tls_key_file": dir.path().join("server.key"),
            });
            if setup.mutual_tls {
                server["client_ca_file"] = serde_json::json!(dir.path().join("ca.crt"));
            }
            let mut config = serde_json::json!({
                "server": server,
                "trust_service": {"type": "local"},
                "storage": {"backend": "memory"},
                "logging": {"level": "info"},
            });
            if !auth.is_null() {
                config["auth"] = auth.clone();
            }
            let config_path = dir.path().join("server-config.json");
            std::fs::write(&config_path, config.to_string()).unwrap();
            let log_path = dir.path().join("server.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new("notary-server")
                .arg("-config")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            if wait_for_port(port, &mut child, &log_path) {
                let ca_pem = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
                children.push(child);
                return Self {
                    url: format!("https://127.0.0.1:{port}"),
                    ca_pem,
                    setup,
                    dir,
                    children,
                };
            }
        }
        for child in &mut children {
            child.kill().ok();
            child.wait().ok();
        }
        panic!("notary-server did not start");
    }

    /// A trust directory of the CLI's (created on first use).
    pub fn trust_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("trust").join(name)
    }

    /// Runs the `notary` CLI with trust directory `trust`; returns stdout, panicking with
    /// stderr when it fails.
    pub fn cli(&self, trust: &Path, args: &[&str]) -> String {
        let out = self.cli_output(trust, args);
        assert!(
            out.status.success(),
            "notary {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The same, returning whatever happened.
    pub fn cli_output(&self, trust: &Path, args: &[&str]) -> std::process::Output {
        let mut command = Command::new("notary");
        command
            .arg("-s")
            .arg(&self.url)
            .arg("--tlscacert")
            .arg(self.dir.path().join("ca.crt"));
        if self.setup.mutual_tls {
            command
                .arg("--tlscert")
                .arg(self.dir.path().join("client.crt"))
                .arg("--tlskey")
                .arg(self.dir.path().join("client.key"));
        }
        if let Some((user, password)) = &self.setup.token_user {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            command.env("NOTARY_AUTH", auth);
        }
        command
            .arg("-d")
            .arg(trust)
            .args(args)
            .env("NOTARY_ROOT_PASSPHRASE", PASSPHRASE)
            .env("NOTARY_TARGETS_PASSPHRASE", PASSPHRASE)
            .env("NOTARY_SNAPSHOT_PASSPHRASE", PASSPHRASE)
            .env("NOTARY_DELEGATION_PASSPHRASE", PASSPHRASE)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Initialises `gun` as `docker trust` does: root and targets keys in `trust`, the
    /// snapshot key handed to the server. Returns the targets key's PEM and its id.
    pub fn init(&self, trust: &Path, gun: &str) -> (String, String) {
        self.cli(trust, &["init", gun, "-p"]);
        self.cli(trust, &["key", "rotate", gun, "snapshot", "-r"]);
        self.key_of(trust, gun, "targets")
    }

    /// The PEM and id of the key for `role` of `gun` in `trust`.
    pub fn key_of(&self, trust: &Path, gun: &str, role: &str) -> (String, String) {
        for entry in std::fs::read_dir(trust.join("private")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if text.lines().any(|l| l == format!("role: {role}"))
                && text.lines().any(|l| l == format!("gun: {gun}"))
            {
                let id = path.file_stem().unwrap().to_string_lossy().into_owned();
                return (text, id);
            }
        }
        panic!("no {role} key for {gun} in {}", trust.display());
    }

    /// `notary list` from a fresh trust directory: (tag, sha256 hex, length, role) rows.
    pub fn list(&self, gun: &str) -> Vec<(String, String, u64, String)> {
        let fresh = tempfile::tempdir().unwrap();
        let out = self.cli(fresh.path(), &["list", gun]);
        out.lines()
            .skip(2)
            .filter_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() < 4 {
                    return None;
                }
                Some((
                    cols[0].to_owned(),
                    cols[1].to_owned(),
                    cols[2].parse().ok()?,
                    cols[3].to_owned(),
                ))
            })
            .collect()
    }

    /// The server's current metadata of `role` for `gun`, raw.
    pub fn metadata(&self, gun: &str, role: &str) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap();
            let http = reqwest::Client::builder().tls_certs_merge([ca]).build().unwrap();
            let url = format!("{}/v2/{gun}/_trust/tuf/{role}.json", self.url);
            let r = http.get(&url).send().await.unwrap();
            assert!(r.status().is_success(), "GET {url}: {}", r.status());
            r.bytes().await.unwrap().to_vec()
        })
    }

    /// The client certificate and key a `mutual_tls` server accepts.
    pub fn client_cert(&self) -> (String, String) {
        assert!(
            self.setup.mutual_tls,
            "only a mutual-TLS notary has a client certificate"
        );
        (
            std::fs::read_to_string(self.dir.path().join("client.crt")).unwrap(),
            std::fs::read_to_string(self.dir.path().join("client.key")).unwrap(),
        )
    }

    /// The token server's log (`scope …`, `request …`, `token …` lines).
    pub fn token_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tokens.log")).unwrap_or_default()
    }

    /// A scratch directory of the test's, removed with the server.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }
}

/// `notary_front.py` before a notary: every request passed through, every publish
/// refused. Dropping it kills exactly the process it started.
pub struct RefusingFront {
    /// `https://127.0.0.1:PORT`, with the notary's certificate.
    pub url: String,
    child: Child,
}

impl Notary {
    /// A front that refuses this server's publishes.
    pub fn refusing_front(&self) -> RefusingFront {
        let dir = self.dir.path();
        let port_file = dir.join(format!("front-{}.port", free_port()));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/notary_front.py");
        let log = std::fs::File::create(dir.join("front.log")).unwrap();
        let mut child = Command::new(python())
            .arg(script)
            .arg(&port_file)
            .arg(dir.join("server.crt"))
            .arg(dir.join("server.key"))
            .arg(self.url.trim_start_matches("https://"))
            .arg(dir.join("ca.crt"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !port_file.exists() {
            if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
                child.kill().ok();
                child.wait().ok();
                panic!(
                    "notary_front.py did not start: {}",
                    std::fs::read_to_string(dir.join("front.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let port = std::fs::read_to_string(&port_file).unwrap();
        RefusingFront {
            url: format!("https://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for RefusingFront {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for Notary {
    fn drop(&mut self) {
        for child in &mut self.children {
            child.kill().ok();
            child.wait().ok();
        }
    }
}
