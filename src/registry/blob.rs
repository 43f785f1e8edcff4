//! Blobs: small ones fetched whole and verified, layers streamed into a synchronous reader.
//!
//! A layer download runs on the async runtime and hands its chunks through a bounded
//! channel to a blocking thread that hashes, decompresses and unpacks them, so network and
//! CPU work overlap while memory stays at a few chunks. A connection that breaks mid-blob is
//! resumed with a `Range` request from the byte it stopped at (or, when the registry ignores
//! `Range`, by skipping what was already delivered), so the reader sees one continuous
//! stream and never a restart in the middle of a tar.

use std::io::{self, BufRead, Read};

use bytes::{Buf as _, Bytes};
use reqwest::Method;
use tokio::sync::mpsc;

use super::{Client, Error};
use crate::digest::Digest;
use crate::transport;

/// Largest config blob we accept whole (real ones are a few KiB).
const CONFIG_LIMIT: usize = 16 * 1024 * 1024;

/// Chunks in flight between a download and its reader. hyper's chunks grow to a few
/// hundred KiB on a fast connection, so this bounds a layer's download buffer to a few MiB.
pub const CHANNEL_DEPTH: usize = 16;

/// A blob download is judged over windows of this much time spent waiting for the network
/// (time the reader makes it wait does not count).
pub const BLOB_RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

/// The slowest a blob may arrive, in bytes per second over a [`BLOB_RATE_WINDOW`]: below
/// it, the attempt ends and the download resumes (a trickling server cannot hold a step
/// for ever, as the per-read timeout alone would let it).
pub const MIN_BLOB_RATE: u64 = 1024;

/// Bytes received over the time spent waiting for them, judged each [`BLOB_RATE_WINDOW`].
#[derive(Default)]
struct RateWindow {
    waited: std::time::Duration,
    bytes: u64,
}

impl RateWindow {
    /// Counts `bytes` that took `waited` to arrive. When a window is full and it held fewer
    /// than [`MIN_BLOB_RATE`] a second, the window's bytes and time; otherwise a new window
    /// starts.
    fn observe(
        &mut self,
        waited: std::time::Duration,
        bytes: usize,
    ) -> Result<(), (u64, std::time::Duration)> {
        self.waited += waited;
        self.bytes += bytes as u64;
        if self.waited < BLOB_RATE_WINDOW {
            return Ok(());
        }
        let window = std::mem::take(self);
        if window.bytes < MIN_BLOB_RATE.saturating_mul(window.waited.as_secs()) {
            return Err((window.bytes, window.waited));
        }
        Ok(())
    }
}

/// A blocking reader over the chunks a download sends. As a `BufRead` it hands out the
/// chunks themselves, so the inflater reads the HTTP body without another copy.
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    /// A channel pair: give the sender to [`Client::stream_blob`], read from the reader.
    #[must_use]
    pub fn channel() -> (mpsc::Sender<Bytes>, Self) {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        (
            tx,
            Self {
                rx,
                current: Bytes::new(),
            },
        )
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => break,
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, amount: usize) {
        self.current.advance(amount.min(self.current.len()));
    }
}

enum Ended {
    Complete,
    ReaderGone,
}

impl Client {
    /// A small blob (an image config), whole and verified.
    ///
    /// # Errors
    /// Registry failures, a blob over 16 MiB, or content that does not match `digest`.
    pub async fn fetch_blob(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let path = format!("blobs/{digest}");
        let (url, body) = self
            .get_whole(&path, "*/*", CONFIG_LIMIT, |url, limit| Error::BlobTooLarge {
                url,
                limit,
            })
            .await?;
        if !digest.matches(&body) {
            return Err(Error::BlobDigest {
                url,
                found: digest.of_same_kind(&body).to_string(),
            });
        }
        Ok(body)
    }

    /// Streams the blob `digest` of `size` bytes into `sink` from byte `delivered` on,
    /// resuming after transient failures (a body that ends early is one), and calls
    /// `observe` with each chunk and the bytes delivered so far, which `delivered` counts
    /// (also when this fails, so another registry can go on from there). Never delivers
    /// more than `size` bytes. Stops quietly when the reader hangs up (it has failed, and
    /// will say why).
    ///
    /// Returns the bytes delivered, or `None` when the reader hung up first.
    ///
    /// # Errors
    /// Registry failures, or transient ones past the retry budget.
    pub async fn stream_blob(
        &self,
        digest: &Digest,
        size: u64,
        delivered: &mut u64,
        sink: &mpsc::Sender<Bytes>,
        observe: &(dyn Fn(&[u8], u64) + Sync),
    ) -> Result<Option<u64>, Error> {
        let path = format!("blobs/{digest}");
        let mut attempts = self.transport.backoff().attempts();
        loop {
            if *delivered == size && size > 0 {
                return Ok(Some(*delivered));
            }
            let before = *delivered;
            match self.stream_from(&path, size, delivered, sink, observe).await {
                Ok(Ended::Complete) => return Ok(Some(*delivered)),
                Ok(Ended::ReaderGone) => return Ok(None),
                Err(e) => {
                    if *delivered > before {
                        attempts.reset();
                    }
                    attempts.wait_after(e).await?;
                    tracing::debug!("resuming {digest} at byte {delivered}");
                }
            }
        }
    }

    async fn stream_from(
        &self,
        path: &str,
        size: u64,
        delivered: &mut u64,
        sink: &mpsc::Sender<Bytes>,
        observe: &(dyn Fn(&[u8], u64) + Sync),
    ) -> Result<Ended, Error> {
        let range = (*delivered > 0).then_some(*delivered);
        let mut response = self.attempt(&Method::GET, path, "*/*", range).await?;
        let url = self.transport.shown(response.url().as_str());
        // 206: the registry resumed, from where we asked or it is not what we asked for;
        // 200: it sent everything again, skip what we have.
        let mut skip = if response.status() == reqwest::StatusCode::PARTIAL_CONTENT {
            let starts = response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if starts != Some(*delivered) {
                return Err(Error::BlobRange {
                    url,
                    from: *delivered,
                });
            }
            0
        } else {
            *delivered
        };
        let mut rate = RateWindow::default();
        loop {
            let started = std::time::Instant::now();
            let chunk = tokio::time::timeout(BLOB_RATE_WINDOW, response.chunk()).await;
            let waited = started.elapsed();
            let chunk = match chunk {
                Ok(chunk) => chunk.map_err(|source| transport::Error::Transport {
                    method: Method::GET,
                    url: url.clone(),
                    source: source.without_url(),
                })?,
                // nothing for a whole window: judged below as an empty chunk
                Err(_) => Some(Bytes::new()),
            };
            if let Err((bytes, waited)) = rate.observe(waited, chunk.as_ref().map_or(0, Bytes::len)) {
                return Err(Error::BlobStalled { url, bytes, waited });
            }
            if chunk.as_ref().is_some_and(Bytes::is_empty) {
                continue;
            }
            let Some(mut chunk) = chunk else {
                if *delivered < size {
                    return Err(Error::BlobCut {
                        url,
                        delivered: *delivered,
                        size,
                    });
                }
                return Ok(Ended::Complete);
            };
            if skip > 0 {
                let n = usize::try_from(skip).unwrap_or(usize::MAX).min(chunk.len());
                let _ = chunk.split_to(n);
                skip -= n as u64;
                if chunk.is_empty() {
                    continue;
                }
            }
            if *delivered + chunk.len() as u64 > size {
                return Err(Error::BlobTooLong { url, size });
            }
            *delivered += chunk.len() as u64;
            observe(&chunk, *delivered);
            if sink.send(chunk).await.is_err() {
                return Ok(Ended::ReaderGone);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_window_below_the_minimum_rate_stalls() {
        let second = Duration::from_secs(1);
        let mut slow = RateWindow::default();
        for _ in 0..29 {
            assert!(
                slow.observe(second, 100).is_ok(),
                "judged only when the window is full"
            );
        }
        assert_eq!(slow.observe(second, 100), Err((3_000, BLOB_RATE_WINDOW)));
        let mut enough = RateWindow::default();
        assert!(enough.observe(BLOB_RATE_WINDOW, 30 * 1024).is_ok());
        // a new window starts after each judgement
        assert_eq!(enough.observe(BLOB_RATE_WINDOW, 0), Err((0, BLOB_RATE_WINDOW)));
    }
}
