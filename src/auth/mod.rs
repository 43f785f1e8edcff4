//! Resolving credentials: which identity to present to a registry host, from the source.
//!
//! Auth resolves; the transport applies (the challenge and token dance). This is part of
//! the connection seam, the one place below the steps that knows the source's field names,
//! and it names them in its messages.

use crate::credentials::Credentials;
use crate::source::Source;
use crate::transport::Identity;

/// The identity to present to `host` for `source`: its `username`/`password`, or nobody.
///
#[must_use]
pub fn resolve(source: &Source, _host: &str) -> Identity {
    let credentials = Credentials::basic(source.username.as_deref(), source.password.as_ref());
    if credentials.is_anonymous() {
        return Identity::anonymous("source.username and source.password are not set");
    }
    Identity {
        credentials,
        origin: "source.username and source.password".to_owned(),
    }
}
