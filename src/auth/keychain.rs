//! The docker config keychain: credentials for a registry host from `config.json`, as
//! `docker login` and credential helpers leave them.
//!
//! The file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. For a host, as
//! docker itself decides: a `credHelpers` entry runs that helper; else `credsStore` runs
//! the store's helper; else the `auths` entry (`identitytoken`, an `OAuth2` refresh token
//! for the registry's token realm, or `auth`, base64 `user:password`, or `username` and
//! `password`). Helpers follow the credential-helper protocol: `docker-credential-<name>
//! get`, the server on stdin, `{"ServerURL","Username","Secret"}` on stdout, and a user
//! name of `<token>` meaning the secret is an identity token.
//!
//! A missing or unreadable config gives no credentials and no error; a helper that fails
//! (or is not on `PATH`, or takes longer than [`HELPER_TIMEOUT`]) is an error naming it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Error;
use crate::credentials::Credentials;
use crate::reference::DOCKER_HUB;
use crate::secret::Secret;

/// Largest config file read.
pub const CONFIG_LIMIT: u64 = 1024 * 1024;
/// How long a credential helper may take.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest helper answer read.
pub const HELPER_OUTPUT_LIMIT: u64 = 64 * 1024;

/// The key docker uses for Docker Hub in `auths` and sends to helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<Secret>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    identitytoken: Option<Secret>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: Secret,
}

/// Credentials found for a host, and where.
pub struct Found {
    /// What to present.
    pub credentials: Credentials,
    /// e.g. `docker-credential-gcr` or `/root/.docker/config.json auths`.
    pub origin: String,
}

/// The config file's path.
fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// Reads the config, or `None` (logged at debug) when there is none to read.
fn read_config() -> Option<(PathBuf, Config)> {
    use std::io::Read as _;
    let path = config_path()?;
    let mut text = String::new();
    let read = std::fs::File::open(&path).and_then(|f| f.take(CONFIG_LIMIT).read_to_string(&mut text));
    if let Err(e) = read {
        tracing::debug!("no docker config at {}: {e}", path.display());
        return None;
    }
    match serde_json::from_str(&text) {
        Ok(config) => Some((path, config)),
        Err(e) => {
            tracing::warn!("ignoring docker config {}: {e}", path.display());
            None
        }
    }
}

/// `https://host/v1/`, `host`, `docker.io` … → the host as a repository names it.
fn normalize(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_owned(),
        _ => host,
    }
}

fn lookup<'a, T>(map: &'a HashMap<String, T>, host: &str) -> Option<&'a T> {
    let wanted = normalize(host);
    map.get(host)
        .or_else(|| map.iter().find(|(k, _)| normalize(k) == wanted).map(|(_, v)| v))
}

/// Credentials for `host` from the docker config, or `None`.
///
/// # Errors
/// A credential helper that cannot be run or fails.
pub async fn find(host: &str) -> Result<Option<Found>, Error> {
    let Some((path, config)) = read_config() else {
        return Ok(None);
    };
    let helper = lookup(&config.cred_helpers, host).or(config.creds_store.as_ref());
    if let Some(name) = helper.filter(|n| !n.is_empty()) {
        return run_helper(name, host).await;
    }
    let Some(entry) = lookup(&config.auths, host) else {
        return Ok(None);
    };
    let origin = format!("{} auths", path.display());
    let bad = |reason: &str| Error::DockerConfig {
        path: path.display().to_string(),
        host: host.to_owned(),
        reason: reason.to_owned(),
    };
    let credentials = if let Some(token) = entry.identitytoken.clone().filter(|t| !t.is_empty()) {
        Credentials::RefreshToken { token }
    } else if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.expose().trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("`auth` is not base64 of user:password"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad("`auth` is not base64 of user:password"))?;
        Credentials::basic(Some(user), Some(&Secret::new(password)))
    } else {
        Credentials::basic(entry.username.as_deref(), entry.password.as_ref())
    };
    Ok((!credentials.is_anonymous()).then_some(Found { credentials, origin }))
}

/// Runs `docker-credential-<name> get` for `host`.
async fn run_helper(name: &str, host: &str) -> Result<Option<Found>, Error> {
    let program = format!("docker-credential-{name}");
    let failed = |reason: String| Error::Helper {
        helper: program.clone(),
        host: host.to_owned(),
        reason,
    };
    if name.contains('/') || name.starts_with('.') {
        return Err(failed("the helper name must be a plain name".to_owned()));
    }
    let server = if normalize(host) == DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        host
    };
    tracing::debug!("asking {program} for the credentials of {server}");
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => failed("not found on PATH".to_owned()),
            _ => failed(format!("cannot start it: {e}")),
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let limit = HELPER_OUTPUT_LIMIT + 1;
    let talk = async {
        // a helper that exits without reading its input closes the pipe: not our failure
        let _ = stdin.write_all(server.as_bytes()).await;
        drop(stdin);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut stdout, mut stderr) = ((&mut stdout).take(limit), (&mut stderr).take(limit));
        let (read_out, read_err) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        read_out.and(read_err)?;
        Ok::<_, std::io::Error>((out, err))
    };
    let (out, err) = tokio::time::timeout(HELPER_TIMEOUT, talk)
        .await
        .map_err(|_| failed(format!("no answer within {HELPER_TIMEOUT:?}")))?
        .map_err(|e| failed(format!("talking to it: {e}")))?;
    if out.len() as u64 >= limit || err.len() as u64 >= limit {
        // kill_on_drop ends it
        return Err(failed(format!("its output is over {HELPER_OUTPUT_LIMIT} bytes")));
    }
    let status = tokio::time::timeout(HELPER_TIMEOUT, child.wait())
        .await
        .map_err(|_| failed(format!("it did not exit within {HELPER_TIMEOUT:?}")))?
        .map_err(|e| failed(format!("waiting for it: {e}")))?;
    if !status.success() {
        // docker's helpers say "credentials not found" on stdout; stdout may also hold
        // credentials, so it is shown only when it names none
        let said_out = first_line(&out).filter(|l| !l.to_ascii_lowercase().contains("secret"));
        let said = first_line(&err).or(said_out).unwrap_or_default();
        let not_found = [&out, &err].iter().any(|o| {
            String::from_utf8_lossy(o)
                .to_ascii_lowercase()
                .contains("credentials not found")
        });
        if not_found {
            tracing::debug!("{program} has no credentials for {server}");
            return Ok(None);
        }
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        };
        return Err(failed(format!("it exited with {status}{said}")));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out)
        .map_err(|e| failed(format!("its answer is not the helper protocol's JSON: {e}")))?;
    let credentials = if answer.username == "<token>" {
        Credentials::RefreshToken { token: answer.secret }
    } else {
        Credentials::basic(Some(&answer.username), Some(&answer.secret))
    };
    Ok((!credentials.is_anonymous()).then_some(Found {
        credentials,
        origin: program,
    }))
}

/// The first non-empty line of a helper's output, at most 200 characters.
fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_as_docker_matches_them() {
        let mut map = HashMap::new();
        map.insert("https://index.docker.io/v1/".to_owned(), 1);
        map.insert("https://ghcr.io".to_owned(), 2);
        map.insert("127.0.0.1:5000".to_owned(), 3);
        assert_eq!(lookup(&map, DOCKER_HUB), Some(&1));
        assert_eq!(lookup(&map, "ghcr.io"), Some(&2));
        assert_eq!(lookup(&map, "127.0.0.1:5000"), Some(&3));
        assert_eq!(lookup(&map, "127.0.0.1:5001"), None);
        assert_eq!(lookup(&map, "evil.io"), None);
        assert_eq!(normalize("docker.io"), DOCKER_HUB);
        assert_eq!(normalize("http://Quay.IO/v2/"), "quay.io");
    }
}
