//! Notary v1 (Docker Content Trust): repository keys (`key`), canonical JSON
//! (`canonical`) and the TUF metadata chain (`tuf`). The client that publishes over the
//! transport comes next (issue 11); until then `content_trust` is refused by validation.

pub mod canonical;
pub mod key;
pub mod tuf;
