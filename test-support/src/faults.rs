//! A fault-injecting transport for tests: [`FaultStream`] wraps any
//! `AsyncRead + AsyncWrite` and, as its [`Faults`] say, returns short reads
//! and writes, storms of `Pending` (each with an immediate wake, as a
//! spuriously ready socket does), an I/O error (`ConnectionReset`,
//! `BrokenPipe`, ...) after a given number of bytes, a write that never
//! completes (`Pending` without a wake), and a half-close (EOF on the read
//! side after a given number of bytes).
//!
//! Every byte the inner stream accepted is recorded ([`FaultStream::log`]),
//! so a test can check that nothing reported as sent was not written.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::rng::{Rng, SeededRng, rng};

/// What goes wrong, and when. The default injects nothing.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Reads return at most this many bytes (0: no limit). Each read's
    /// length is drawn from `1..=max_read`, so every short length occurs.
    pub max_read: usize,
    /// Writes accept at most this many bytes (0: no limit), drawn likewise.
    pub max_write: usize,
    /// Out of 256 polls, this many return `Pending` (with a wake) first.
    pub pending_per_256: u8,
    /// After this many bytes were read, reads fail with this error.
    pub read_error_after: Option<(usize, io::ErrorKind)>,
    /// After this many bytes were written, writes fail with this error.
    pub write_error_after: Option<(usize, io::ErrorKind)>,
    /// After this many bytes were written, writes (and flushes) stay
    /// `Pending` forever without a wake: a peer that stopped reading.
    pub write_stall_after: Option<usize>,
    /// After this many bytes were read, reads see EOF: the peer shut its
    /// write side down (half-close).
    pub read_eof_after: Option<usize>,
    /// Seed of the draws.
    pub seed: u64,
}

/// Counters and the write log of a [`FaultStream`], shared with the test.
#[derive(Debug, Default)]
pub struct FaultLog {
    /// Every byte the inner stream accepted, in order.
    pub written: Vec<u8>,
    /// Bytes handed to the reader.
    pub read: usize,
    /// `Pending` results injected.
    pub pendings: usize,
    /// Errors injected.
    pub errors: usize,
}

/// See the module docs.
#[derive(Debug)]
pub struct FaultStream<S> {
    inner: S,
    faults: Faults,
    rng: SeededRng,
    log: Arc<Mutex<FaultLog>>,
    written: usize,
}

impl<S> FaultStream<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, faults: Faults) -> Self {
        FaultStream {
            inner,
            rng: rng(faults.seed),
            faults,
            log: Arc::new(Mutex::new(FaultLog::default())),
            written: 0,
        }
    }

    /// The shared log (keep a clone before the stream moves into a
    /// WebSocket).
    pub fn log(&self) -> Arc<Mutex<FaultLog>> {
        self.log.clone()
    }

    fn storm(&mut self, cx: &mut Context<'_>) -> bool {
        if self.faults.pending_per_256 > 0 && self.rng.random::<u8>() < self.faults.pending_per_256
        {
            self.log.lock().expect("log").pendings += 1;
            cx.waker().wake_by_ref();
            return true;
        }
        false
    }

    fn error(&self, kind: io::ErrorKind) -> io::Error {
        self.log.lock().expect("log").errors += 1;
        io::Error::new(kind, "injected fault")
    }

    fn stalled(&self) -> bool {
        self.faults
            .write_stall_after
            .is_some_and(|n| self.written >= n)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FaultStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.storm(cx) {
            return Poll::Pending;
        }
        let read = this.log.lock().expect("log").read;
        if let Some((n, kind)) = this.faults.read_error_after
            && read >= n
        {
            return Poll::Ready(Err(this.error(kind)));
        }
        let mut limit = buf.remaining();
        if let Some(n) = this.faults.read_eof_after {
            if read >= n {
                return Poll::Ready(Ok(()));
            }
            limit = limit.min(n - read);
        }
        if let Some((n, _)) = this.faults.read_error_after {
            limit = limit.min(n - read);
        }
        if this.faults.max_read > 0 {
            limit = limit.min(this.rng.random_range(1..=this.faults.max_read));
        }
        let mut sub = ReadBuf::new(buf.initialize_unfilled_to(limit));
        match Pin::new(&mut this.inner).poll_read(cx, &mut sub) {
            Poll::Ready(Ok(())) => {
                let n = sub.filled().len();
                buf.advance(n);
                this.log.lock().expect("log").read += n;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FaultStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.stalled() {
            return Poll::Pending;
        }
        if this.storm(cx) {
            return Poll::Pending;
        }
        if let Some((n, kind)) = this.faults.write_error_after
            && this.written >= n
        {
            return Poll::Ready(Err(this.error(kind)));
        }
        let mut limit = data.len();
        if let Some((n, _)) = this.faults.write_error_after {
            limit = limit.min(n - this.written);
        }
        if let Some(n) = this.faults.write_stall_after {
            limit = limit.min(n - this.written);
        }
        if this.faults.max_write > 0 && limit > 0 {
            limit = limit.min(this.rng.random_range(1..=this.faults.max_write));
        }
        match Pin::new(&mut this.inner).poll_write(cx, &data[..limit]) {
            Poll::Ready(Ok(n)) => {
                this.written += n;
                this.log
                    .lock()
                    .expect("log")
                    .written
                    .extend_from_slice(&data[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.stalled() {
            return Poll::Pending;
        }
        if this.storm(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.stalled() {
            return Poll::Pending;
        }
        if this.storm(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn short_reads_and_writes_of_every_length_keep_the_bytes() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let faults = Faults {
            max_read: 7,
            max_write: 5,
            pending_per_256: 64,
            seed: 3,
            ..Faults::default()
        };
        let mut w = FaultStream::new(a, faults.clone());
        let mut r = FaultStream::new(b, faults);
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let wlog = w.log();
        let send = data.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&send).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        let mut lens = std::collections::HashSet::new();
        loop {
            let mut buf = [0u8; 64];
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            lens.insert(n);
            got.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, data);
        assert_eq!(wlog.lock().unwrap().written, data);
        assert_eq!(lens.len(), 7, "every read length 1..=7 occurred: {lens:?}");
        assert!(wlog.lock().unwrap().pendings > 0);
    }

    #[tokio::test]
    async fn errors_stalls_and_eof_come_after_their_byte_counts() {
        let (a, _b) = tokio::io::duplex(1 << 16);
        let mut w = FaultStream::new(
            a,
            Faults {
                write_error_after: Some((10, io::ErrorKind::BrokenPipe)),
                ..Faults::default()
            },
        );
        let e = w.write_all(&[0u8; 20]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(w.log().lock().unwrap().written.len(), 10);

        let (a, _b) = tokio::io::duplex(1 << 16);
        let mut w = FaultStream::new(
            a,
            Faults {
                write_stall_after: Some(4),
                ..Faults::default()
            },
        );
        let r = tokio::time::timeout(std::time::Duration::from_millis(50), w.write_all(&[0u8; 8]))
            .await;
        assert!(r.is_err(), "the write never completes");
        assert_eq!(w.log().lock().unwrap().written.len(), 4);

        let (mut a, b) = tokio::io::duplex(1 << 16);
        a.write_all(&[1u8; 30]).await.unwrap();
        let mut r = FaultStream::new(
            b,
            Faults {
                read_eof_after: Some(12),
                ..Faults::default()
            },
        );
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), 12);
    }
}
