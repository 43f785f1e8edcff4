//! Layer pipelines for `in`: download → sha256 and length check → inflate, each layer on
//! its own threads, handing tar bytes to whoever consumes them (the rootfs writer).
//!
//! Three stages overlap: the download and the sha256 of what arrives run on the async
//! runtime, the inflater on one blocking thread, the consumer on another, joined by bounded
//! channels. The caller runs several layers' pipelines at once (`get`), so both cores stay
//! busy; every channel is bounded, so memory does not grow with layer size.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::compression::decompress;
use crate::connect::Remote;
use crate::error::LayerError;
use crate::manifest::Descriptor;
use crate::progress::Bar;
use crate::registry::ChannelReader;

/// Inflated bytes per chunk handed to the consumer.
const CHUNK: usize = 256 * 1024;
/// Chunk buffers per layer (2 MiB), allocated once and passed back and forth: allocating
/// a fresh 256 KiB buffer per chunk costs an mmap, a munmap and 64 page faults each with
/// musl's allocator, which showed up as seconds of system time on a 1.4 GB image.
const BUFFERS: usize = 8;

/// A filled chunk: the buffer and how much of it holds data.
type Filled = io::Result<(Vec<u8>, usize)>;

/// The tar bytes of a layer, as they are inflated.
pub struct TarReader {
    rx: Receiver<Filled>,
    recycle: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    len: usize,
    pos: usize,
}

impl Read for TarReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.len {
            match self.rx.recv() {
                Ok(Ok((chunk, len))) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    if used.capacity() > 0 {
                        let _ = self.recycle.try_send(used);
                    }
                    self.len = len;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.len - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A layer on its way: read the tar from `reader`, then [`Tasks::finish`].
pub struct Layer {
    /// The layer's tar stream.
    pub reader: TarReader,
    tasks: Tasks,
}

/// The download and inflate tasks of a layer.
pub struct Tasks {
    download: JoinHandle<Result<(), LayerError>>,
    inflate: JoinHandle<Result<(), LayerError>>,
}

/// Starts downloading and inflating `layer`.
#[must_use]
pub fn start(client: &Arc<Remote>, layer: &Descriptor, bar: Arc<Bar>) -> Layer {
    let (compressed, download) = download(client, layer, bar, true);
    let (out, rx) = sync_channel(BUFFERS);
    let (recycle, free) = sync_channel(BUFFERS);
    for _ in 0..BUFFERS {
        // the channel holds exactly BUFFERS, so this never fails
        let _ = recycle.try_send(vec![0u8; CHUNK]);
    }
    let inflate = tokio::task::spawn_blocking(move || inflate(compressed, &free, &out));
    let reader = TarReader {
        rx,
        recycle,
        current: Vec::new(),
        len: 0,
        pos: 0,
    };
    Layer {
        reader,
        tasks: Tasks { download, inflate },
    }
}

/// Starts downloading a blob: its bytes come out of the reader as they arrive. With
/// `verify`, the task hashes them as they are received and ends with the verdict on their
/// size and sha256 (or quietly, when the reader stopped first: the reader's side reports
/// why); without, the reader must verify them (see [`crate::digest::Hashing`]), which puts
/// the hashing on the reading thread.
#[must_use]
pub fn download(
    client: &Arc<Remote>,
    blob: &Descriptor,
    bar: Arc<Bar>,
    verify: bool,
) -> (ChannelReader, JoinHandle<Result<(), LayerError>>) {
    let (tx, reader) = ChannelReader::channel();
    let client = client.clone();
    let (digest, size) = (blob.digest.clone(), blob.size);
    let task = tokio::spawn(async move {
        let hasher = std::sync::Mutex::new(digest.algorithm().hasher());
        let observe = |chunk: &[u8], done| {
            if verify {
                if let Ok(mut h) = hasher.lock() {
                    h.update(chunk);
                }
            }
            bar.update(done);
        };
        let delivered = client
            .stream_blob(&digest, size, tx, &observe)
            .await
            .map_err(LayerError::Download)?;
        match delivered {
            Some(delivered) if verify => {
                let hasher = hasher
                    .into_inner()
                    .map_err(|_| LayerError::Read(io::Error::other("hasher poisoned")))?;
                crate::digest::verify(&digest, size, delivered, hasher).map_err(LayerError::Verify)
            }
            _ => Ok(()),
        }
    });
    (reader, task)
}

/// Inflates `compressed` into `out`. After a decode failure the rest of the blob is still
/// read, so the download finishes hashing it: a corrupt blob usually breaks the inflater
/// before its end arrives, and the digest is the real cause to report.
fn inflate(
    mut compressed: ChannelReader,
    free: &Receiver<Vec<u8>>,
    out: &SyncSender<Filled>,
) -> Result<(), LayerError> {
    match decompress(&mut compressed).and_then(|(_, mut decoder)| pump(&mut decoder, free, out)) {
        Ok(_) => Ok(()), // finished, or the consumer hung up and reports why
        Err(e) => {
            let _ = out.send(Err(io::Error::other("layer stream failed")));
            let _ = io::copy(&mut compressed, &mut io::sink());
            Err(LayerError::Read(e))
        }
    }
}

/// Copies `decoder` into `out` in pooled chunks; `Ok(true)` when the consumer hung up.
fn pump(decoder: &mut dyn Read, free: &Receiver<Vec<u8>>, out: &SyncSender<Filled>) -> io::Result<bool> {
    loop {
        let Ok(mut chunk) = free.recv() else {
            return Ok(true);
        };
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
        if out.send(Ok((chunk, filled))).is_err() {
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
        self.download
            .await
            .map_err(|e| LayerError::Read(io::Error::other(e)))??;
        let inflated = self
            .inflate
            .await
            .map_err(|e| LayerError::Read(io::Error::other(e)))?;
        match (inflated, consumed) {
            // a broken stream explains the consumer's failure better than the consumer does
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(v)) => Ok(v),
        }
    }
}
