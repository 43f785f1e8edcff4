//! `format: oci-layout`: the whole version as an OCI image layout in `oci/`.

use std::path::Path;
use std::sync::Arc;

use super::{fetch_verified, stream_blobs};
use crate::archive::{MAX_INDEX_DEPTH, MAX_MANIFESTS};
use crate::connect::Remote;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout::LayoutWriter;
use crate::manifest::{Descriptor, Document, Manifest, OCI_MANIFEST};
use crate::reference::{describe, Target};

/// Writes the `oci/` layout of the version `digest`: every manifest it reaches (each
/// platform of an index, nested indexes, attestations), fetched by digest and verified,
/// then every config and layer, streamed through verification into its blob file.
pub(super) async fn write_layout(
    client: &Arc<Remote>,
    digest: &Digest,
    path: &Path,
    tag: &str,
    draw: bool,
) -> Result<()> {
    let write_error = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let layout = Arc::new(LayoutWriter::create(path).map_err(write_error)?);
    let root = fetch_verified(client, digest).await?;
    let parse = |bytes: &[u8], digest: &Digest| {
        Document::parse(bytes).map_err(|source| Error::Manifest {
            image: describe(client.repository(), &Target::Digest(digest.clone())),
            source,
        })
    };
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut seen = std::collections::HashSet::from([digest.clone()]);
    let add_image =
        |m: &Manifest, blobs: &mut Vec<Descriptor>, seen: &mut std::collections::HashSet<Digest>| {
            for d in std::iter::once(&m.config).chain(&m.layers) {
                if seen.insert(d.digest.clone()) {
                    blobs.push(d.clone());
                }
            }
        };
    let single = match parse(&root, digest)? {
        Document::Manifest(m) => {
            add_image(&m, &mut blobs, &mut seen);
            Some(Descriptor {
                media_type: m.media_type.clone().unwrap_or_else(|| OCI_MANIFEST.to_owned()),
                digest: digest.clone(),
                size: root.len() as u64,
                platform: None,
                annotations: None,
            })
        }
        Document::Index(index) => {
            let mut pending: Vec<(Descriptor, usize)> = index.manifests.into_iter().map(|d| (d, 1)).collect();
            let mut manifests = 1;
            while let Some((child, depth)) = pending.pop() {
                if !seen.insert(child.digest.clone()) {
                    continue;
                }
                manifests += 1;
                if manifests > MAX_MANIFESTS || depth > MAX_INDEX_DEPTH {
                    return Err(Error::LayoutTooLarge {
                        image: describe(client.repository(), &Target::Digest(digest.clone())),
                        what: if depth > MAX_INDEX_DEPTH {
                            format!("nests indexes more than {MAX_INDEX_DEPTH} deep")
                        } else {
                            format!("reaches more than {MAX_MANIFESTS} manifests")
                        },
                    });
                }
                let bytes = fetch_verified(client, &child.digest).await?;
                match parse(&bytes, &child.digest)? {
                    Document::Manifest(m) => add_image(&m, &mut blobs, &mut seen),
                    Document::Index(inner) => {
                        pending.extend(inner.manifests.into_iter().map(|d| (d, depth + 1)));
                    }
                }
                layout.add_blob(&child.digest, &bytes[..]).map_err(write_error)?;
            }
            None
        }
    };
    layout.add_blob(digest, &root[..]).map_err(write_error)?;
    let count = blobs.len();
    let layout = stream_blobs(
        client,
        &blobs,
        draw,
        layout,
        |layout, digest, _, content| layout.add_blob(digest, content),
        |i, source| Error::Layer {
            image: describe(client.repository(), &Target::Digest(digest.clone())),
            index: i + 1,
            count,
            digest: blobs[i].digest.clone(),
            source: Box::new(source),
        },
    )
    .await?;
    match single {
        Some(manifest) => layout.finish_single(&manifest, tag),
        None => layout.finish_index(&root, digest),
    }
    .map_err(write_error)
}
