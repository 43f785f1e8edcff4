//! `moto_server` (PyPI `moto[server]`): STS and ECR emulated on a free 127.0.0.1 port, with
//! its request recorder on, so tests can see which calls were made and how they were
//! signed. Dropping a `Moto` kills exactly the process it started.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use super::registry::require;

pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

/// One recorded AWS call.
#[derive(Debug, Clone)]
pub struct Call {
    /// `sts:AssumeRole`, `ecr:GetAuthorizationToken`, …
    pub action: String,
    /// The access key id the request was signed with.
    pub access_key: String,
    /// `X-Amz-Security-Token`, if any.
    pub session_token: Option<String>,
    /// Form fields of a query-protocol body (STS).
    pub form: Vec<(String, String)>,
}

impl Call {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        assert!(
            child.try_wait().unwrap().is_none(),
            "moto_server exited:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto_server did not answer on {port}");
}

/// A blocking HTTP exchange with moto, by hand (the tests' reqwest is async).
fn http(url: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let host = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn form_fields(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

impl Moto {
    pub fn start() -> Self {
        require("moto_server");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log_path = dir.path().join("moto.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "True")
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_for(port, &mut child, &log_path);
        let moto = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        let (status, _) = http(&moto.url, "POST", "/moto-api/recorder/reset-recording", &[], "");
        assert_eq!(status, 200, "reset moto's recording");
        moto
    }

    /// The endpoint variables that point the SDK's STS and ECR clients at this moto (the
    /// service-specific ones only, so a missing one would show).
    pub fn endpoints(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_STS", self.url.clone()),
            ("AWS_ENDPOINT_URL_ECR", self.url.clone()),
        ]
    }

    /// Every STS and ECR call recorded so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        let (status, body) = http(&self.url, "GET", "/moto-api/recorder/download-recording", &[], "");
        assert_eq!(status, 200, "download moto's recording");
        body.lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|entry| {
                let headers = entry["headers"].as_object()?.clone();
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .and_then(|(_, v)| v.as_str())
                        .map(str::to_owned)
                };
                let authorization = header("Authorization")?;
                let access_key = authorization
                    .split("Credential=")
                    .nth(1)?
                    .split('/')
                    .next()?
                    .to_owned();
                let raw = entry["body"].as_str().unwrap_or_default();
                let body = if entry["body_encoded"].as_bool() == Some(true) {
                    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(raw).ok()?).ok()?
                } else {
                    raw.to_owned()
                };
                let form = form_fields(&body);
                let action = match header("X-Amz-Target") {
                    Some(target) => format!("ecr:{}", target.rsplit('.').next().unwrap_or_default()),
                    None => format!(
                        "sts:{}",
                        form.iter()
                            .find(|(k, _)| k == "Action")
                            .map_or("", |(_, v)| v.as_str())
                    ),
                };
                Some(Call {
                    action,
                    access_key,
                    session_token: header("X-Amz-Security-Token"),
                    form,
                })
            })
            .collect()
    }

    /// The ARN moto says the access key `key` belongs to (STS GetCallerIdentity; moto does
    /// not check signatures, so naming the key is enough).
    pub fn caller_of(&self, key: &str) -> String {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00"
        );
        let (status, body) = http(
            &self.url,
            "POST",
            "/",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "Action=GetCallerIdentity&Version=2011-06-15",
        );
        assert_eq!(status, 200, "GetCallerIdentity: {body}");
        body.split("<Arn>")
            .nth(1)
            .and_then(|rest| rest.split("</Arn>").next())
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
