//! A scripted HTTP/1.1 server for the faults a real registry cannot be made to produce:
//! missing headers, 429/503 sequences, connections cut mid-answer. Everything else is
//! tested against the real registry.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A request as the fake server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What to answer.
pub enum Reply {
    /// Status, headers, body.
    Http(u16, Vec<(String, String)>, Vec<u8>),
    /// Close the connection without answering.
    Hangup,
    /// 200 with a `Content-Length` of the first value, but only these bytes, then close.
    Truncated(usize, Vec<u8>),
    /// These bytes as they are (status line, headers and all), then close: a body that
    /// ends with the connection, or anything malformed.
    Raw(Vec<u8>),
    /// These bytes one at a time, each after `every`, then close: a trickling server.
    Trickle(Vec<u8>, std::time::Duration),
}

impl Reply {
    pub fn status(code: u16) -> Self {
        Self::Http(code, Vec::new(), Vec::new())
    }

    pub fn with_header(self, name: &str, value: &str) -> Self {
        match self {
            Self::Http(code, mut headers, body) => {
                headers.push((name.to_owned(), value.to_owned()));
                Self::Http(code, headers, body)
            }
            other => other,
        }
    }

    pub fn with_body(self, body: &[u8]) -> Self {
        match self {
            Self::Http(code, headers, _) => Self::Http(code, headers, body.to_vec()),
            other => other,
        }
    }
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// A running fake server; it stops serving when dropped (its thread ends with the test).
pub struct FakeServer {
    pub host: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeServer {
    /// Serves `handler(request, index of this request among those with the same method and path)`.
    pub fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1", handler)
    }

    /// The same on another loopback address (`127.0.0.2`: a second "host").
    pub fn start_on(ip: &str, handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_at(&format!("{ip}:0"), handler)
    }

    /// The same at `address` (`127.0.0.1:<port>`: a port reserved earlier).
    pub fn start_at(
        address: &str,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind(address).unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let handler = handler.clone();
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, &*handler, &seen));
            }
        });
        Self { host, requests }
    }

    /// All requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests to a path (method included), e.g. `HEAD /v2/app/manifests/latest`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut line = String::new();
        // A TLS ClientHello (our client probing HTTPS first) is not a request line: hang up.
        if reader.read_line(&mut line).unwrap_or(0) == 0 || !line.ends_with("HTTP/1.1\r\n") {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request {
            method,
            path,
            headers,
        };
        let nth = {
            let mut seen = seen.lock().unwrap();
            let nth = seen
                .iter()
                .filter(|r| r.method == request.method && r.path == request.path)
                .count();
            seen.push(request.clone());
            nth
        };
        match handler(&request, nth) {
            Reply::Hangup => return,
            Reply::Raw(bytes) => {
                let _ = stream.write_all(&bytes);
                let _ = stream.flush();
                return;
            }
            Reply::Trickle(bytes, every) => {
                for byte in bytes {
                    std::thread::sleep(every);
                    if stream.write_all(&[byte]).and_then(|()| stream.flush()).is_err() {
                        return;
                    }
                }
                return;
            }
            Reply::Truncated(length, prefix) => {
                let head = format!("HTTP/1.1 200 Fake\r\nContent-Length: {length}\r\n\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&prefix);
                let _ = stream.flush();
                return;
            }
            Reply::Http(code, headers, body) => {
                let mut head = format!("HTTP/1.1 {code} Fake\r\n");
                let has_length = headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
                for (k, v) in &headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                if !has_length {
                    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                head.push_str("\r\n");
                let mut out = head.into_bytes();
                if request.method != "HEAD" {
                    out.extend_from_slice(&body);
                }
                if stream.write_all(&out).is_err() {
                    return;
                }
            }
        }
    }
}

/// A registry on 127.0.0.1 whose token realm is `token` (the reply for `GET /token`): a
/// request carrying `Bearer tok` gets 200 with the digest of `m`, anything else the
/// challenge.
pub fn token_registry(token: impl Fn() -> Reply + Send + Sync + 'static) -> FakeServer {
    FakeServer::start(move |req, _| {
        let realm = format!(
            r#"Bearer realm="http://{}/token",service="fake""#,
            req.header("host").unwrap_or_default()
        );
        match req.path.as_str() {
            p if p.starts_with("/token") => token(),
            "/v2/" => Reply::status(401).with_header("WWW-Authenticate", &realm),
            _ if req.header("authorization") == Some("Bearer tok") => {
                Reply::status(200).with_header("Docker-Content-Digest", &super::image::sha256(b"m"))
            }
            _ => Reply::status(401).with_header("WWW-Authenticate", &realm),
        }
    })
}
