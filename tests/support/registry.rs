//! Real registries for tests: Debian's `docker-registry` (distribution 2.8) on a free
//! 127.0.0.1 port with temporary storage, plain, with htpasswd Basic auth, with TLS from a
//! generated CA, or with Bearer tokens from `token_server.py`. Dropping a `Registry` kills
//! exactly the processes it started and removes its files.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::image::Image;

pub const USER: &str = "concourse";
pub const PASSWORD: &str = "s3cret pa55word";

/// How the registry authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic,
    Token,
}

pub struct Registry {
    /// `127.0.0.1:PORT`
    pub host: String,
    pub auth: Auth,
    /// PEM of the CA that signed the server certificate, for TLS registries.
    pub ca_pem: Option<String>,
    /// The user and password it accepts (Basic and Token registries).
    pub user: String,
    pub password: String,
    dir: tempfile::TempDir,
    children: Vec<Child>,
    token_realm: Option<String>,
}

/// Fails the test with a hint when a tool the suite needs is missing.
pub fn require(tool: &str) {
    let found =
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    assert!(
        found,
        "`{tool}` is not installed: run scripts/test, which installs the test dependencies"
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, child: &mut Child, log: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "no answer on port {port}; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    require("openssl");
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A CA and a server certificate for 127.0.0.1/localhost, in `dir`.
pub fn make_certs(dir: &Path) {
    let mut ca = vec!["req", "-x509"];
    ca.extend(EC_KEY);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=registry-image test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    issue(
        dir,
        "server",
        "/CN=localhost",
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    );
}

/// A client certificate signed by the CA in `dir` (`client.crt`, `client.key`, PKCS#8).
fn make_client_cert(dir: &Path) {
    issue(
        dir,
        "client",
        "/CN=registry-image test client",
        "extendedKeyUsage=clientAuth\n",
    );
}

/// `<name>.key` and `<name>.crt` for `subject`, signed by the CA in `dir`, with the
/// extensions `usage` besides the end-entity basics.
pub fn issue(dir: &Path, name: &str, subject: &str, usage: &str) {
    let (key, csr, ext, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
        format!("{name}.crt"),
    );
    let mut request = vec!["req"];
    request.extend(EC_KEY);
    request.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &request);
    std::fs::write(
        dir.join(&ext),
        format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{usage}"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
}

fn htpasswd_line(user: &str, password: &str) -> String {
    require("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned() + "\n"
}

pub fn python() -> String {
    for candidate in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import cryptography"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate.to_owned();
        }
    }
    panic!("no python3 with the `cryptography` module: run scripts/test, which installs it");
}

impl Registry {
    pub fn plain() -> Self {
        Self::start(Auth::None, false)
    }

    pub fn start(auth: Auth, tls: bool) -> Self {
        Self::start_as(auth, tls, USER, PASSWORD)
    }

    /// A TLS registry that demands a client certificate signed by its CA; returns it with
    /// the PEM certificate and key of such a client.
    pub fn start_mutual_tls() -> (Self, String, String) {
        Self::start_full(Auth::None, true, true, USER, PASSWORD)
    }

    /// A registry whose one user is `user` with `password`.
    pub fn start_as(auth: Auth, tls: bool, user: &str, password: &str) -> Self {
        Self::start_full(auth, tls, false, user, password).0
    }

    fn start_full(
        auth: Auth,
        tls: bool,
        client_auth: bool,
        user: &str,
        password: &str,
    ) -> (Self, String, String) {
        require("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let mut children = Vec::new();
        let mut auth_yaml = String::new();
        let mut token_realm = None;
        match auth {
            Auth::None => {}
            Auth::Basic => {
                std::fs::write(dir.path().join("htpasswd"), htpasswd_line(user, password)).unwrap();
                auth_yaml = format!(
                    "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                );
            }
            Auth::Token => {
                let (child, realm) = start_token_server(dir.path(), user, password, "test-registry", false);
                children.push(child);
                auth_yaml = format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: {}\n",
                    dir.path().join("signer.crt").display()
                );
                token_realm = Some(realm);
            }
        }
        let mut tls_yaml = String::new();
        let mut ca_pem = None;
        let mut client = (String::new(), String::new());
        if tls {
            make_certs(dir.path());
            tls_yaml = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display()
            );
            if client_auth {
                make_client_cert(dir.path());
                tls_yaml.push_str(&format!(
                    "    clientcas:\n      - {}\n",
                    dir.path().join("ca.crt").display()
                ));
                client = (
                    std::fs::read_to_string(dir.path().join("client.crt")).unwrap(),
                    std::fs::read_to_string(dir.path().join("client.key")).unwrap(),
                );
            }
            ca_pem = Some(std::fs::read_to_string(dir.path().join("ca.crt")).unwrap());
        }
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: not-a-secret\n{tls_yaml}{auth_yaml}",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            if wait_for_port(port, &mut child, &log_path) {
                children.push(child);
                let registry = Self {
                    host: format!("127.0.0.1:{port}"),
                    auth,
                    ca_pem,
                    user: user.to_owned(),
                    password: password.to_owned(),
                    dir,
                    children,
                    token_realm,
                };
                return (registry, client.0, client.1);
            }
            // port taken between our probe and the registry's bind: try another
        }
        panic!(
            "docker-registry did not start; log:\n{}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    pub fn scheme(&self) -> &'static str {
        if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `host/repo`, as a source's `repository`.
    pub fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.host)
    }

    /// Every token the token server issued (empty for other registries).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.token_log()
            .lines()
            .filter_map(|l| l.strip_prefix("token "))
            .map(str::to_owned)
            .collect()
    }

    /// How many token requests the token server answered (granted or not).
    pub fn token_requests(&self) -> usize {
        self.token_log()
            .lines()
            .filter(|l| l.starts_with("request "))
            .count()
    }

    /// How many tokens were granted for an `OAuth2` refresh token.
    pub fn refresh_grants(&self) -> usize {
        self.token_log()
            .lines()
            .filter(|l| l.starts_with("request refresh ") && !l.ends_with("anonymous"))
            .count()
    }

    fn token_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tokens.log")).unwrap_or_default()
    }

    /// Unpacks `name@digest` with the reference tools, `skopeo copy` then `umoci unpack` (as
    /// root, without `--rootless`), into `dir`; returns the rootfs path.
    pub fn umoci_unpack(&self, name: &str, digest: &str, dir: &Path) -> PathBuf {
        require("skopeo");
        require("umoci");
        let layout = dir.join("layout");
        std::fs::create_dir_all(dir).unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let mut copy = Command::new("skopeo");
        copy.args(["copy", "-q", "--src-tls-verify=false"]);
        if let Some(pem) = &self.ca_pem {
            let certs = dir.join("certs");
            std::fs::create_dir_all(&certs).unwrap();
            std::fs::write(certs.join("ca.crt"), pem).unwrap();
            copy.arg("--src-cert-dir").arg(&certs);
        }
        if self.auth != Auth::None {
            copy.args(["--src-creds", &format!("{}:{}", self.user, self.password)]);
        }
        run(copy
            .arg(format!("docker://{}/{name}@{digest}", self.host))
            .arg(format!("oci:{}:image", layout.display())));
        let bundle = dir.join("bundle");
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:image", layout.display()))
            .arg(&bundle));
        bundle.join("rootfs")
    }

    /// The file holding blob `digest` in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir.path().join(format!(
            "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }

    /// The requests its access log shows under `/v2/`, as `METHOD /v2/…` strings.
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|line| {
                let start = line.find('"')? + 1;
                let request = &line[start..];
                let request = &request[..request.find(" HTTP/")?];
                request.contains(" /v2/").then(|| request.to_owned())
            })
            .collect()
    }

    /// The registry's own log (access log included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes `image` as `name:tag` and returns its manifest digest.
    pub fn push(&self, name: &str, tag: &str, image: &Image) -> String {
        block_on(async {
            let pusher = Pusher::new(self, name).await;
            for blob in std::iter::once(&image.config).chain(&image.layers) {
                pusher.blob(&blob.bytes, &blob.digest).await;
            }
            pusher.manifest(tag, &image.manifest, image.media_type).await;
        });
        image.digest()
    }

    /// Pushes the children and then an index over them as `name:tag`; returns the index digest.
    pub fn push_index(
        &self,
        name: &str,
        tag: &str,
        children: &[(&Image, &str)],
        media_type: &'static str,
    ) -> String {
        for (child, _) in children {
            self.push(name, &child.digest(), child);
        }
        let index = super::image::index(children, media_type);
        block_on(async {
            Pusher::new(self, name)
                .await
                .manifest(tag, &index, media_type)
                .await
        });
        super::image::sha256(&index)
    }

    /// The tags of `name`, in the order the registry lists them.
    pub fn list_tags(&self, name: &str) -> Vec<String> {
        block_on(async {
            let p = Pusher::new(self, name).await;
            let url = format!("{}/v2/{name}/tags/list?n=10000", p.base);
            let r = p.authorize(p.http.get(&url)).send().await.unwrap();
            let body: serde_json::Value = r.json().await.unwrap();
            body["tags"]
                .as_array()
                .map(|tags| tags.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        })
    }

    /// The digest `name:tag` names, or `None` when there is no such tag.
    pub fn digest_of(&self, name: &str, tag: &str) -> Option<String> {
        block_on(async {
            let p = Pusher::new(self, name).await;
            let url = format!("{}/v2/{name}/manifests/{tag}", p.base);
            let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
            let r = p
                .authorize(p.http.get(&url))
                .header("accept", accept)
                .send()
                .await
                .unwrap();
            if r.status().as_u16() == 404 {
                return None;
            }
            assert!(r.status().is_success(), "GET {url}: {}", r.status());
            Some(super::image::sha256(&r.bytes().await.unwrap()))
        })
    }

    /// Deletes the manifest `digest` of `name`.
    pub fn delete(&self, name: &str, digest: &str) {
        block_on(async {
            let p = Pusher::new(self, name).await;
            let url = format!("{}/v2/{name}/manifests/{digest}", p.base);
            let r = p.authorize(p.http.delete(&url)).send().await.unwrap();
            assert_eq!(
                r.status().as_u16(),
                202,
                "DELETE {url}: {}",
                r.text().await.unwrap()
            );
        });
    }
}

/// Runs `work` to its end on a runtime of its own (the tests themselves are synchronous).
fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

impl Drop for Registry {
    fn drop(&mut self) {
        for child in &mut self.children {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// Starts `token_server.py` in `dir` for `service` with one user, over TLS with
/// `server.crt`/`server.key` of `dir` (see [`make_certs`]) when `tls`; returns it and its
/// realm. It signs with `signer.crt` of `dir` and logs to `tokens.log` there.
pub fn start_token_server(
    dir: &Path,
    user: &str,
    password: &str,
    service: &str,
    tls: bool,
) -> (Child, String) {
    let python = python();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "signer.key",
            "-out",
            "signer.crt",
            "-days",
            "2",
            "-subj",
            "/CN=test token signer",
        ],
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/token_server.py");
    let port_file = dir.join("token.port");
    let log = std::fs::File::create(dir.join("token-server.log")).unwrap();
    let mut child = Command::new(python)
        .arg(script)
        .arg(&port_file)
        .args(["signer.key", "signer.crt", "test-issuer", service, "tokens.log"])
        .arg(format!("{user}:{password}"))
        .envs(if tls {
            vec![("TOKEN_TLS_CERT", "server.crt"), ("TOKEN_TLS_KEY", "server.key")]
        } else {
            Vec::new()
        })
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !port_file.exists() {
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            child.kill().ok();
            panic!(
                "token server did not start:\n{}",
                std::fs::read_to_string(dir.join("token-server.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = std::fs::read_to_string(&port_file).unwrap();
    let scheme = if tls { "https" } else { "http" };
    (child, format!("{scheme}://127.0.0.1:{port}/token"))
}

/// Pushes with whatever credentials the registry wants.
struct Pusher {
    http: reqwest::Client,
    base: String,
    name: String,
    basic: bool,
    token: Option<String>,
    user: String,
    password: String,
}

impl Pusher {
    async fn new(registry: &Registry, name: &str) -> Self {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = &registry.ca_pem {
            builder = builder.tls_certs_merge([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()]);
        }
        let http = builder.build().unwrap();
        let mut token = None;
        if let Some(realm) = &registry.token_realm {
            let r = http
                .get(realm)
                .query(&[
                    ("service", "test-registry"),
                    ("scope", &format!("repository:{name}:*")),
                ])
                .basic_auth(&registry.user, Some(&registry.password))
                .send()
                .await
                .unwrap();
            let body: serde_json::Value = r.json().await.unwrap();
            token = Some(body["token"].as_str().unwrap().to_owned());
        }
        Self {
            http,
            base: format!("{}://{}", registry.scheme(), registry.host),
            name: name.to_owned(),
            basic: registry.auth == Auth::Basic,
            token,
            user: registry.user.clone(),
            password: registry.password.clone(),
        }
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.token, self.basic) {
            (Some(t), _) => request.bearer_auth(t),
            (None, true) => request.basic_auth(&self.user, Some(&self.password)),
            _ => request,
        }
    }

    async fn blob(&self, bytes: &[u8], digest: &str) {
        let url = format!("{}/v2/{}/blobs/uploads/", self.base, self.name);
        let r = self.authorize(self.http.post(&url)).send().await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            202,
            "POST {url}: {}",
            r.text().await.unwrap()
        );
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let r = self
            .authorize(self.http.put(&put))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "PUT blob: {}", r.text().await.unwrap());
    }

    async fn manifest(&self, reference: &str, bytes: &[u8], media_type: &str) {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.name);
        let r = self
            .authorize(self.http.put(&url))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "PUT {url}: {}", r.text().await.unwrap());
    }
}
