//! A reader and a writer over one [`WebSocket`], for two tasks.
//!
//! Both halves share the connection behind a mutex that is held only for the
//! duration of one poll, never across an await. Pong and Close replies queued
//! by the reader are written by whichever half polls next; the transport is
//! polled with a waker that wakes both tasks (see `wake.rs`), so neither can
//! miss its wakeup.

use super::WebSocket;
use crate::error::Error;
use crate::ext::SendHints;
use crate::proto::{CloseCode, CloseFrame, Message, OpCode};
use bytes::Bytes;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

type Shared<S> = Arc<Mutex<WebSocket<S>>>;

fn lock<S>(s: &Shared<S>) -> MutexGuard<'_, WebSocket<S>> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The receiving half of a split [`WebSocket`].
#[derive(Debug)]
pub struct WebSocketReader<S> {
    shared: Shared<S>,
}

/// The sending half of a split [`WebSocket`].
#[derive(Debug)]
pub struct WebSocketWriter<S> {
    shared: Shared<S>,
}

pub(super) fn split<S>(mut ws: WebSocket<S>) -> (WebSocketReader<S>, WebSocketWriter<S>) {
    let slots = Arc::new(super::wake::WakeSlots::default());
    let waker = super::wake::combined(&slots);
    ws.split = Some((slots, waker));
    let shared = Arc::new(Mutex::new(ws));
    (
        WebSocketReader {
            shared: shared.clone(),
        },
        WebSocketWriter { shared },
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketReader<S> {
    /// Receives the next message (see [`WebSocket::recv`]).
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| lock(&self.shared).poll_recv(cx)).await
    }

    /// The connection's traffic so far (see [`WebSocket::stats`]; both
    /// halves report the same connection).
    pub fn stats(&self) -> super::Stats {
        lock(&self.shared).stats()
    }

    /// Puts the halves back together; fails if they came from different sockets.
    pub fn reunite(
        self,
        writer: WebSocketWriter<S>,
    ) -> Result<WebSocket<S>, (Self, WebSocketWriter<S>)> {
        if !Arc::ptr_eq(&self.shared, &writer.shared) {
            return Err((self, writer));
        }
        drop(writer);
        match Arc::try_unwrap(self.shared) {
            Ok(m) => {
                let mut ws = m.into_inner().unwrap_or_else(|e| e.into_inner());
                ws.split = None;
                Ok(ws)
            }
            Err(_) => unreachable!("both halves were given back"),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketWriter<S> {
    /// Sends a message and flushes.
    pub async fn send(&mut self, msg: Message) -> Result<(), Error> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// The connection's traffic so far (see [`WebSocket::stats`]).
    pub fn stats(&self) -> super::Stats {
        lock(&self.shared).stats()
    }

    /// Queues a message (waits only for backpressure).
    pub async fn feed(&mut self, msg: Message) -> Result<(), Error> {
        self.feed_with(msg, SendHints::default()).await
    }

    /// Like [`feed`](Self::feed) with hints for the extensions (see
    /// [`WebSocket::feed_with`]).
    pub async fn feed_with(&mut self, msg: Message, hints: SendHints) -> Result<(), Error> {
        self.when_ready(|ws| ws.queue(msg, &hints)).await
    }

    /// Queues one fragment of a streamed message (see
    /// [`WebSocket::feed_fragment`]).
    pub async fn feed_fragment(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        fin: bool,
    ) -> Result<(), Error> {
        self.when_ready(|ws| ws.queue_fragment(opcode, payload, fin))
            .await
    }

    /// [`feed_fragment`](Self::feed_fragment), then flush.
    pub async fn send_fragment(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        fin: bool,
    ) -> Result<(), Error> {
        self.feed_fragment(opcode, payload, fin).await?;
        self.flush().await
    }

    /// Waits for room in the write buffer (backpressure), then runs `queue`
    /// under the same lock.
    async fn when_ready(
        &mut self,
        queue: impl FnOnce(&mut WebSocket<S>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut queue = Some(queue);
        poll_fn(|cx| {
            let mut ws = lock(&self.shared);
            match ws.poll_ready_inner(cx) {
                Poll::Ready(Ok(())) => {
                    let queue = queue.take().expect("polled again after completion");
                    Poll::Ready(queue(&mut ws))
                }
                other => other,
            }
        })
        .await
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| lock(&self.shared).poll_flush_inner(cx)).await
    }

    /// Sends a Close and flushes; the reader sees the peer's answer and
    /// finishes the closing handshake.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.send(Message::Close(Some(CloseFrame::new(code, reason))))
            .await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures_core::Stream for WebSocketReader<S> {
    type Item = Result<Message, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        lock(&self.shared).poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures_sink::Sink<Message> for WebSocketWriter<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        lock(&self.shared).poll_ready_inner(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        lock(&self.shared).queue(item, &SendHints::default())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        lock(&self.shared).poll_flush_inner(cx)
    }
    /// Sends a Close (1000) if none was sent and flushes. The reader half
    /// completes the closing handshake.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut ws = lock(&self.shared);
        if ws.close_state() == crate::CloseState::Open {
            ws.queue(
                Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))),
                &SendHints::default(),
            )?;
        }
        ws.poll_flush_inner(cx)
    }
}
