//! The files `in` writes besides the image: `digest`, `tag`, `repository` and, for a rootfs,
//! `metadata.json` (what Concourse needs to run a task in the image: env and user).

use std::io;
use std::path::Path;

use serde::Serialize;

use crate::manifest::ImageConfig;

/// `metadata.json`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RunMetadata {
    /// `KEY=value` pairs.
    pub env: Option<Vec<String>>,
    /// `user[:group]`, empty for root.
    pub user: String,
    /// Default arguments.
    pub cmd: Option<Vec<String>>,
    /// Entrypoint.
    pub entrypoint: Option<Vec<String>>,
}

impl RunMetadata {
    /// From an image config.
    #[must_use]
    pub fn from_config(config: &ImageConfig) -> Self {
        let c = config.config.clone().unwrap_or_default();
        Self {
            env: c.env,
            user: c.user.unwrap_or_default(),
            cmd: c.cmd,
            entrypoint: c.entrypoint,
        }
    }
}

/// Writes `name` in `dir` with `content`, atomically: a new temporary file (never one that
/// is there already, nor through a symlink), then renamed over `name`.
///
/// # Errors
/// When the file cannot be written.
pub fn write_file(dir: &Path, name: &str, content: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
        .mode(0o644)
        .open(&tmp)?;
    file.write_all(content)?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name))
}

/// Writes `metadata.json`.
///
/// # Errors
/// When the file cannot be written.
pub fn write_run_metadata(dir: &Path, metadata: &RunMetadata) -> io::Result<()> {
    let mut json = serde_json::to_vec(metadata).map_err(io::Error::other)?;
    json.push(b'\n');
    write_file(dir, "metadata.json", &json)
}

/// Writes `labels.json`: the config's labels as one JSON object, keys sorted, `{}` when
/// there are none.
pub fn write_labels(dir: &Path, labels: &std::collections::BTreeMap<String, String>) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(labels)?;
    bytes.push(b'\n');
    write_file(dir, "labels.json", &bytes)
}
