//! Layer pipelines for `in`: download → sha256 and length check → inflate, each layer on
//! its own threads, handing tar bytes to whoever consumes them (the rootfs writer).
//!
//! Three stages overlap: the download runs on the async runtime, the verifier-inflater on
//! one blocking thread, the consumer on another, joined by bounded channels. The caller
//! starts the next layer's pipeline while the current one is applied, so both cores stay
//! busy; every channel is bounded, so memory does not grow with layer size.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::compression::decompress;
use crate::digest::{DigestReader, VerifyOutcome};
use crate::error::LayerError;
use crate::manifest::Descriptor;
use crate::progress::Bar;
use crate::registry::{ChannelReader, Client};

/// Inflated bytes per chunk handed to the consumer.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between inflater and consumer (4 MiB per layer).
const DEPTH: usize = 16;

/// The tar bytes of a layer, as they are inflated.
pub struct TarReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for TarReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A layer on its way: read the tar from `reader`, then [`Layer::finish`].
pub struct Layer {
    /// The layer's tar stream.
    pub reader: TarReader,
    tasks: Tasks,
}

/// The download and inflate tasks of a layer.
pub struct Tasks {
    download: JoinHandle<Result<(), crate::registry::Error>>,
    inflate: JoinHandle<Result<(), LayerError>>,
}

/// Starts downloading and inflating `layer`.
#[must_use]
pub fn start(client: &Arc<Client>, layer: &Descriptor, bar: Arc<Bar>) -> Layer {
    let (tx, compressed) = ChannelReader::channel();
    let (out, rx) = sync_channel(DEPTH);
    let (digest, size) = (layer.digest.clone(), layer.size);
    let inflate =
        tokio::task::spawn_blocking(move || inflate(DigestReader::new(compressed, digest, size), &out));
    let client = client.clone();
    let digest = layer.digest.clone();
    let download = tokio::spawn(async move {
        let progress = move |done| bar.update(done);
        client.stream_blob(&digest, tx, &progress).await
    });
    Layer {
        reader: TarReader {
            rx,
            current: Vec::new(),
            pos: 0,
        },
        tasks: Tasks { download, inflate },
    }
}

/// Inflates `verified` into `out`. A decode failure is checked against the digest first:
/// a corrupt blob usually breaks the inflater before its end is hashed, and the digest is
/// the real cause to report.
fn inflate<R: Read>(
    mut verified: DigestReader<R>,
    out: &SyncSender<io::Result<Vec<u8>>>,
) -> Result<(), LayerError> {
    let pumped = decompress(&mut verified).and_then(|(_, mut decoder)| pump(&mut decoder, out));
    let consumer_gone = match pumped {
        Ok(gone) => gone,
        Err(e) => {
            let cause = match verified.verify() {
                Err(VerifyOutcome::Mismatch(m)) => LayerError::Verify(m),
                _ => LayerError::Read(e),
            };
            let _ = out.send(Err(io::Error::other("layer stream failed")));
            return Err(cause);
        }
    };
    if consumer_gone {
        return Ok(()); // the consumer failed, and reports why
    }
    match verified.verify() {
        Ok(()) => Ok(()),
        Err(outcome) => {
            let _ = out.send(Err(io::Error::other("layer does not verify")));
            Err(match outcome {
                VerifyOutcome::Mismatch(m) => LayerError::Verify(m),
                VerifyOutcome::Io(e) => LayerError::Read(e),
            })
        }
    }
}

/// Copies `decoder` into `out` in chunks; `Ok(true)` when the consumer hung up.
fn pump(decoder: &mut dyn Read, out: &SyncSender<io::Result<Vec<u8>>>) -> io::Result<bool> {
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match decoder.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(false);
        }
        chunk.truncate(filled);
        if out.send(Ok(chunk)).is_err() {
            return Ok(true);
        }
    }
}

impl Layer {
    /// Splits the reader from the tasks, so the reader can move to the consumer's thread.
    #[must_use]
    pub fn split(self) -> (TarReader, Tasks) {
        (self.reader, self.tasks)
    }
}

impl Tasks {
    /// Joins the tasks once the consumer is done with `consumed`, and returns the first real
    /// cause of a failure: the download, then the blob's integrity, then the consumer.
    pub async fn finish<T>(self, consumed: Result<T, LayerError>) -> Result<T, LayerError> {
        let downloaded = self
            .download
            .await
            .map_err(|e| LayerError::Read(io::Error::other(e)))?;
        downloaded.map_err(LayerError::Download)?;
        let inflated = self
            .inflate
            .await
            .map_err(|e| LayerError::Read(io::Error::other(e)))?;
        match (inflated, consumed) {
            (Err(e @ (LayerError::Verify(_) | LayerError::Read(_))), _) | (_, Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(e),
            (Ok(()), Ok(v)) => Ok(v),
        }
    }
}
