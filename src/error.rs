//! The library's error type. Each variant names what it concerns (field, image, registry);
//! causes hang off `source()`, and the binaries print the whole chain on one line.

use crate::reference::ReferenceError;

/// Anything `check`, `in` or `out` can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// stdin is not a valid request.
    #[error("invalid {step} request on stdin")]
    Request {
        /// `check`, `in` or `out`.
        step: &'static str,
        /// Where in the JSON, and what is wrong there.
        #[source]
        source: serde_path_to_error::Error<serde_json::Error>,
    },
    /// stdin could not be read (or is not UTF-8).
    #[error("read {step} request from stdin")]
    Stdin {
        /// `check`, `in` or `out`.
        step: &'static str,
        /// The read failure.
        #[source]
        source: std::io::Error,
    },
    /// The step ran past its deadline.
    #[error("{step} did not finish within {limit:?}, its deadline; stopped")]
    Deadline {
        /// `check`, `in` or `out`.
        step: &'static str,
        /// The deadline.
        limit: std::time::Duration,
    },
    /// stdin holds more than one JSON document.
    #[error("invalid {step} request on stdin: more follows the JSON object (stdin must hold exactly one)")]
    TrailingInput {
        /// `check`, `in` or `out`.
        step: &'static str,
        /// Where.
        #[source]
        source: serde_json::Error,
    },
    /// stdin was empty.
    #[error("invalid {step} request on stdin: stdin is empty, expected a JSON object")]
    EmptyRequest {
        /// `check`, `in` or `out`.
        step: &'static str,
    },
    /// The source is not valid.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// The source could not be turned into a client.
    #[error(transparent)]
    Connect(#[from] crate::connect::Error),
    /// A registry exchange failed while checking an image.
    #[error("check {image}")]
    Check {
        /// `registry/repository:tag`.
        image: String,
        /// The registry failure.
        #[source]
        source: crate::connect::RemoteError,
    },
    /// `params.format` is not one we write.
    #[error("unknown format {format:?}: params.format must be \"rootfs\", \"oci\" or \"oci-layout\"")]
    UnknownFormat {
        /// The format asked for.
        format: String,
    },
    /// A file in the destination could not be written.
    #[error("write {path}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The rootfs directory could not be prepared.
    #[error(transparent)]
    Rootfs(Box<crate::rootfs::Error>),
    /// A manifest or config could not be fetched.
    #[error("fetch {image}")]
    Fetch {
        /// `registry/repository@digest`.
        image: String,
        /// The registry failure.
        #[source]
        source: crate::connect::RemoteError,
    },
    /// A manifest that is not usable.
    #[error("manifest of {image}")]
    Manifest {
        /// `registry/repository@digest`.
        image: String,
        /// What is wrong with it.
        #[source]
        source: crate::manifest::ManifestError,
    },
    /// An index reaching more manifests, or nesting deeper, than a layout may hold.
    #[error("{image} {what}, more than an oci-layout is written for")]
    LayoutTooLarge {
        /// `registry/repository@digest` of the version.
        image: String,
        /// Which bound it passes.
        what: String,
    },
    /// An index whose chosen child is itself an index.
    #[error("{image} is an index inside an index, which is not supported")]
    NestedIndex {
        /// `registry/repository@digest` of the inner index.
        image: String,
    },
    /// An image config that is not JSON of the expected shape.
    #[error("image config {digest} is not valid")]
    Config {
        /// The config's digest.
        digest: crate::digest::Digest,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
    /// A layer could not be fetched, verified or unpacked.
    #[error("layer {index}/{count} {digest} of {image}")]
    Layer {
        /// `registry/repository@digest` of the image.
        image: String,
        /// 1-based position.
        index: usize,
        /// Number of layers.
        count: usize,
        /// The layer's digest.
        digest: crate::digest::Digest,
        /// What went wrong.
        #[source]
        source: Box<LayerError>,
    },
    /// `params.image` matches nothing.
    #[error("no files match glob '{pattern}'")]
    NoMatch {
        /// The glob.
        pattern: String,
    },
    /// `params.image` matches several files.
    #[error("too many files match glob '{pattern}': {matches}")]
    SeveralMatches {
        /// The glob.
        pattern: String,
        /// The matches, comma-separated.
        matches: String,
    },
    /// `params.image` is not a valid glob.
    #[error("invalid glob '{pattern}': {reason}")]
    Glob {
        /// The glob.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// `in`'s destination already has files.
    #[error("destination {path} is not empty (it has {entry:?}): in writes into an empty directory, as Concourse gives it")]
    DestinationNotEmpty {
        /// The destination.
        path: std::path::PathBuf,
        /// One of its entries.
        entry: String,
    },
    /// A match of `params.image` leads outside the sources directory.
    #[error("params.image")]
    ImagePath(#[source] crate::confine::ConfineError),
    /// The sources directory cannot be opened.
    #[error("sources directory")]
    Sources(#[source] crate::confine::ConfineError),
    /// The `additional_tags` file cannot be read (beneath the sources directory).
    #[error("params.additional_tags")]
    TagsFile(#[source] crate::confine::ConfineError),
    /// A tag in the `additional_tags` file is not valid.
    #[error("additional_tags file {path}")]
    AdditionalTag {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with the tag.
        #[source]
        source: ReferenceError,
    },
    /// `params.version` is not a semantic version a tag can hold.
    #[error("params.version {version:?} {reason}")]
    InvalidVersion {
        /// The version given.
        version: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The tag a version makes is not a valid tag.
    #[error("params.version {version:?} makes the tag {tag:?}, which is not a valid tag")]
    VersionTag {
        /// The version given.
        version: String,
        /// The tag it made.
        tag: String,
        /// What is wrong with it.
        #[source]
        source: ReferenceError,
    },
    /// A prefixed additional tag is not a valid tag.
    #[error("params.tag_prefix {prefix:?} makes {tag:?}, which is not a valid tag")]
    PrefixedTag {
        /// The prefix.
        prefix: String,
        /// The tag it made.
        tag: String,
        /// What is wrong with it.
        #[source]
        source: ReferenceError,
    },
    /// `params.tag_prefix` with no additional tags to put it on.
    #[error("params.tag_prefix is set but there are no additional tags to prefix: it applies only to the tags of params.additional_tags")]
    TagPrefixWithoutTags,
    /// No tag to push.
    #[error("nothing to push: source.variant is set, so `latest` is not implied; give params.version (pushed as <version>-{variant}) or params.additional_tags")]
    NothingToPush {
        /// The source's variant.
        variant: String,
    },
    /// The tags deciding `bump_aliases` could not be listed.
    #[error("list the tags of {repository} to decide which aliases to move")]
    Aliases {
        /// `registry/repository`.
        repository: String,
        /// The registry failure.
        #[source]
        source: crate::registry::Error,
    },
    /// The image file cannot be pushed.
    #[error(transparent)]
    Archive(Box<crate::archive::ArchiveError>),
    /// Pushing failed.
    #[error("push to {repository}")]
    Push {
        /// `registry/repository`.
        repository: String,
        /// The registry failure.
        #[source]
        source: crate::registry::Error,
    },
    /// Content trust cannot sign the tags, found before anything was pushed.
    #[error("content trust: cannot sign {tags} in {gun} on {server}, so nothing was pushed")]
    TrustNotReady {
        /// The tags, space-separated.
        tags: String,
        /// The GUN.
        gun: String,
        /// The notary server.
        server: String,
        /// Why.
        #[source]
        source: Box<crate::notary::trust::Error>,
    },
    /// The image was pushed, and signing it failed.
    #[error("pushed {image} ({digest}) but did not sign it")]
    Unsigned {
        /// `registry/repository:tags`.
        image: String,
        /// The pushed digest.
        digest: String,
        /// The GUN.
        gun: String,
        /// The notary server.
        server: String,
        /// Why.
        #[source]
        source: Box<crate::notary::trust::Error>,
    },
    /// A registry client could not be set up.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    /// Writing the response failed.
    #[error("write response to stdout")]
    Output(#[source] std::io::Error),
    /// The async runtime could not start.
    #[error("start async runtime")]
    Runtime(#[source] std::io::Error),
}

/// Why a layer did not arrive whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The download failed (after retries).
    #[error("download")]
    Download(#[source] crate::connect::RemoteError),
    /// The bytes are not the blob the manifest names.
    #[error(transparent)]
    Verify(crate::digest::VerifyError),
    /// The stream could not be read or inflated.
    #[error("read layer")]
    Read(#[source] std::io::Error),
    /// An entry could not be unpacked, or was refused.
    #[error(transparent)]
    Unpack(Box<crate::rootfs::Error>),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
