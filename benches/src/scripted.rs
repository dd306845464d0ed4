//! An in-memory stand-in for a ping-pong client, for measuring a server's
//! own CPU work per echoed message without the kernel or the loopback.
//!
//! [`ScriptedPeer`] is an `AsyncRead + AsyncWrite` that plays a client
//! sending one masked frame, waiting for its echo, and sending the next, the
//! way the `c1` cells of the echo bench do over TCP:
//!
//! - a read gets the next frame only once the echo of the previous one has
//!   been written in full; before that it returns `Pending`, and the write
//!   that completes the echo wakes the reader;
//! - once an echo is complete, the first read returns `Pending` and wakes the
//!   task at once, as a socket read returns `EAGAIN` and epoll reports the
//!   next frame: so every message costs the server one trip through the
//!   runtime, as over a socket;
//! - every echo is compared with the expected server frame, so a server that
//!   echoes wrongly fails the run instead of looking fast.
//!
//! After the last message, reads return end of stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A scripted client; see the module docs.
pub struct ScriptedPeer {
    /// The masked frame sent for every message.
    frame: Vec<u8>,
    /// The unmasked server frame the echo must be.
    expected: Vec<u8>,
    /// Messages not yet sent.
    remaining: u64,
    /// Bytes of the current frame already read by the server.
    sent: usize,
    /// Echo bytes received for the current message.
    echo: Vec<u8>,
    /// The next read must return `Pending` once (the "EAGAIN").
    yield_next: bool,
    /// A reader waiting for the echo to complete.
    reader: Option<Waker>,
    /// Echoes received and checked.
    echoed: u64,
    /// The first mismatch, if any.
    error: Option<String>,
}

impl ScriptedPeer {
    /// A peer that sends `messages` binary messages of `payload`.
    pub fn new(payload: &[u8], messages: u64) -> ScriptedPeer {
        ScriptedPeer {
            frame: crate::client::masked_frame(payload),
            expected: server_frame(payload),
            remaining: messages,
            sent: 0,
            echo: Vec::with_capacity(payload.len() + 10),
            yield_next: false,
            reader: None,
            echoed: 0,
            error: None,
        }
    }

    /// Echoes received and verified so far.
    pub fn echoed(&self) -> u64 {
        self.echoed
    }

    /// The first wrong echo, if there was one.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether the current frame is fully read and its echo still owed.
    fn awaiting_echo(&self) -> bool {
        self.sent == self.frame.len()
    }
}

/// An unmasked, final binary frame carrying `payload` (what a server sends).
fn server_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x82);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

impl AsyncRead for ScriptedPeer {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.awaiting_echo() {
            this.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if this.sent == 0 {
            if this.remaining == 0 {
                return Poll::Ready(Ok(()));
            }
            if std::mem::take(&mut this.yield_next) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        let n = buf.remaining().min(this.frame.len() - this.sent);
        buf.put_slice(&this.frame[this.sent..this.sent + n]);
        this.sent += n;
        if this.awaiting_echo() {
            this.remaining -= 1;
        }
        Poll::Ready(Ok(()))
    }
}

impl ScriptedPeer {
    fn take(&mut self, data: &[u8]) -> usize {
        // The server may only answer what it has read.
        if !self.awaiting_echo() || self.error.is_some() {
            self.error
                .get_or_insert_with(|| "wrote before reading".into());
            return data.len();
        }
        let n = data.len().min(self.expected.len() - self.echo.len());
        self.echo.extend_from_slice(&data[..n]);
        if self.echo.len() == self.expected.len() {
            if self.echo != self.expected {
                self.error = Some(format!("echo {} differs", self.echoed));
            }
            self.echo.clear();
            self.echoed += 1;
            self.sent = 0;
            self.yield_next = true;
            if let Some(w) = self.reader.take() {
                w.wake();
            }
        }
        if n < data.len() {
            // Bytes past the echo: a frame nobody asked for.
            self.error.get_or_insert_with(|| "unexpected bytes".into());
        }
        data.len()
    }
}

impl AsyncWrite for ScriptedPeer {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(self.get_mut().take(data)))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        Poll::Ready(Ok(bufs.iter().map(|b| this.take(b)).sum()))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
