//! The tokio layer: [`WebSocket`] drives a [`Connection`] over any
//! `AsyncRead + AsyncWrite` transport.
//!
//! There is no background task: the connection makes progress when it is
//! polled, through [`WebSocket::recv`] / the `Stream` impl (which also writes
//! queued output, including Pong and Close replies, before it waits for
//! input) and through `send` / the `Sink` impl. Received messages are not
//! buffered beyond the bytes already read.
//!
//! Writes are batched: `feed` (or `Sink::start_send`) only queues; the bytes
//! go out on `flush`, on `send`, when the queue passes
//! [`Config::write_buffer_size`] (backpressure: `feed` then waits), or when
//! `recv` is about to wait for input. An echo loop of `recv` + `feed`
//! therefore answers a burst of pipelined messages with one vectored write.

mod client;
mod head;
mod ops;
mod prefixed;
mod prepared;
mod server;
mod split;
mod stream;
mod wake;

pub use client::{ClientBuilder, connect};
pub use ops::{PUBLISH_EVERY, ServerStats, Shutdown, Stats};
pub use server::{PendingUpgrade, RequestHook, ServerBuilder, accept};
pub use split::{WebSocketReader, WebSocketWriter};
pub use stream::MaybeTlsStream;

use crate::error::Error;
use crate::ext::{ExtensionHeader, Negotiated, SendHints};
use crate::proto::{
    CloseCode, CloseFrame, CloseState, Config, Connection, Message, OpCode, ReadStrategy, Role,
    Session, WriteBuffer,
};
use bytes::{Bytes, BytesMut};
use ops::{ServerLink, ShutdownSignal};
use std::future::poll_fn;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use wake::WakeSlots;

/// Smallest read size the adaptive size shrinks to.
const MIN_READ: usize = 2048;
/// Reads into an empty buffer of at most this size go through the stack:
/// an idle connection holds no read buffer at all, and a busy one allocates
/// exactly what arrived (see [`WebSocket::poll_fill`]).
const SCRATCH: usize = 8 << 10;
/// Largest read the adaptive size grows to.
const MAX_READ: usize = 64 << 10;
/// Most slices per vectored write.
const MAX_IOVECS: usize = 64;
/// Room beyond a large frame's remaining bytes reserved for the read that
/// completes it: that read then comes back short of what was offered, which
/// tells the reader the socket is drained (tokio clears readiness on a short
/// read) without another `recv`.
const READ_SLACK: usize = 2048;
/// Largest frame buffer kept for reuse (see [`FrameBufs`]).
const MAX_KEPT_FRAME_BUF: usize = 4 << 20;
/// Frame buffers kept for reuse per connection.
const KEPT_FRAME_BUFS: usize = 2;
/// Reads without a large frame after which kept frame buffers are freed.
const KEEP_FRAME_BUFS_FOR: u32 = 64;

/// Largest lone frame (header and payload; see [`WriteBuffer`]) joined on the
/// stack and written with a plain write; larger ones use a vectored write.
const LONE_COPY: usize = 4096 + 14;

enum Phase {
    Open,
    /// The closing handshake is complete: flush, then close the transport
    /// (servers at once; clients after the server closed or a timeout).
    Closing,
    /// The connection failed: flush the Close, close the transport, then
    /// report the error.
    Failing(Option<Error>),
    Done,
}

/// A WebSocket connection over the transport `S`.
///
/// Use [`recv`](Self::recv), [`send`](Self::send), [`feed`](Self::feed),
/// [`flush`](Self::flush) and [`close`](Self::close), or the
/// `futures::Stream` + `futures::Sink` impls. [`split`](Self::split) gives a
/// reader and a writer for two tasks.
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    read_buf: BytesMut,
    /// Adaptive read size: doubles while reads fill it, halves when they
    /// come back much smaller (busy pipelined connections read in large
    /// chunks, idle ones keep a small buffer).
    read_size: usize,
    /// Buffers of earlier large frames, reused for the next ones.
    frame_bufs: FrameBufs,
    write_buf: WriteBuffer,
    needs_flush: bool,
    phase: Phase,
    eof: bool,
    write_high_water: usize,
    close_timeout: Duration,
    keepalive: Option<Duration>,
    keepalive_at: Option<Instant>,
    /// Idle release of extension state: the delay, when to check next, and
    /// whether there was traffic since the last check (so busy connections
    /// do not read the clock per message).
    idle_after: Option<Duration>,
    idle_at: Option<Instant>,
    active: bool,
    finish_by: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    /// Set by [`split`](WebSocket::split): both halves poll the transport
    /// with one waker that wakes both tasks. Unsplit, the caller's waker is
    /// used directly.
    split: Option<(Arc<WakeSlots>, Waker)>,
    protocol: Option<String>,
    extensions: Vec<ExtensionHeader>,
    /// Traffic counters: plain fields, bumped on the data path.
    stats: Stats,
    /// When a keepalive Ping is unanswered: the Pong is due by then.
    pong_due: Option<Instant>,
    keepalive_timeout: Duration,
    /// The close code this end sent, for the close event.
    sent_close: Option<CloseCode>,
    opened: Instant,
    /// The server's shared state (stats, shutdown, connection limit), if
    /// any is attached.
    link: Option<Box<ServerLink>>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.conn)
            .field("protocol", &self.protocol)
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a transport on which the opening handshake is already done
    /// (for example an upgraded hyper connection).
    ///
    /// `leftover` holds bytes read past the handshake, if any.
    pub fn from_parts(
        io: S,
        role: Role,
        extensions: Negotiated,
        protocol: Option<String>,
        config: &Config,
        leftover: BytesMut,
    ) -> Self {
        let headers = extensions.headers().to_vec();
        let leftover_len = leftover.len() as u64;
        tracing::debug!(
            role = ?role,
            protocol = protocol.as_deref().unwrap_or(""),
            extensions = %headers.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", "),
            "websocket open: negotiated"
        );
        let has_extensions = !headers.is_empty();
        let session = Session::with_extensions(role, config, extensions);
        let mut conn = Connection::new(session, config);
        // Small reads land in exact-size buffers (see `poll_fill`).
        conn.set_read_strategy(ReadStrategy::ExactSmallReads { max: SCRATCH });
        let now = Instant::now();
        WebSocket {
            io,
            conn,
            read_buf: leftover,
            read_size: MIN_READ,
            frame_bufs: FrameBufs::default(),
            write_buf: WriteBuffer::new(),
            needs_flush: false,
            phase: Phase::Open,
            eof: false,
            write_high_water: config.write_buffer_size.max(1),
            close_timeout: config.close_timeout,
            keepalive: config.keepalive_interval,
            keepalive_at: config.keepalive_interval.map(|d| now + d),
            idle_after: if has_extensions {
                config.release_idle_after
            } else {
                None
            },
            idle_at: None,
            active: false,
            finish_by: None,
            timer: None,
            split: None,
            protocol,
            extensions: headers,
            stats: Stats {
                wire_bytes_received: leftover_len,
                ..Stats::default()
            },
            pong_due: None,
            keepalive_timeout: config.keepalive_timeout,
            sent_close: None,
            opened: now,
            link: None,
        }
    }

    /// This connection's traffic so far (see [`Stats`]): data messages and
    /// their payload bytes each way, and the bytes on the wire each way.
    /// Plain counters, so this is cheap to call at any time.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Adds this connection's traffic to `stats` from now on (every
    /// [`PUBLISH_EVERY`] messages each way and when it is dropped) and
    /// counts it there as open. Servers attach theirs with
    /// [`ServerBuilder::stats`] instead; this is for connections made
    /// otherwise (clients, custom accept paths). Replaces a previous one.
    pub fn report_stats_to(&mut self, stats: &ServerStats) {
        self.link
            .get_or_insert_with(Default::default)
            .set_stats(stats.clone());
        let now = self.stats;
        if let Some(l) = &mut self.link {
            l.publish(&now);
        }
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The negotiated extensions, as the server's response listed them.
    pub fn extensions(&self) -> &[ExtensionHeader] {
        &self.extensions
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.conn.session().role()
    }

    /// The closing handshake state.
    pub fn close_state(&self) -> CloseState {
        self.conn.session().state()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Bytes queued for sending.
    pub fn buffered_amount(&self) -> usize {
        self.write_buf.len()
    }

    /// Receives the next message; `None` once the connection is closed.
    ///
    /// Pings are answered automatically (and reported); when a Close arrives
    /// it is answered, reported, and the next call returns `None` after the
    /// transport is closed.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Sends a message and flushes.
    pub async fn send(&mut self, msg: Message) -> Result<(), Error> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Queues a message without flushing (waits only if the write buffer is
    /// over its high-water mark).
    pub async fn feed(&mut self, msg: Message) -> Result<(), Error> {
        self.feed_with(msg, SendHints::default()).await
    }

    /// Like [`feed`](Self::feed) with hints for the extensions (for example
    /// `SendHints::uncompressed()` to send one message uncompressed).
    pub async fn feed_with(&mut self, msg: Message, hints: SendHints) -> Result<(), Error> {
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        self.queue(msg, &hints)
    }

    /// Queues one fragment of a streamed message (see
    /// [`Session::send_fragment`]): the first with `OpCode::Text` or
    /// `OpCode::Binary`, the rest with `OpCode::Continuation`, the last with
    /// `fin`. Control messages may be sent in between; data messages may not.
    pub async fn feed_fragment(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        fin: bool,
    ) -> Result<(), Error> {
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        self.queue_fragment(opcode, payload, fin)
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

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Starts the closing handshake with `code` and `reason`, then waits
    /// (discarding incoming data) until the peer answers and the transport is
    /// closed, or the close timeout passes.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.conn.session().state() == CloseState::Open {
            self.queue(
                Message::Close(Some(CloseFrame::new(code, reason))),
                &SendHints::default(),
            )?;
        }
        // A peer that stopped reading must not hold close() forever: the
        // close timeout bounds the write of the Close as it bounds the wait
        // for the peer's answer.
        let limit = self.close_timeout;
        match tokio::time::timeout(limit, self.flush()).await {
            Ok(r) => r.or_else(ignore_closed)?,
            Err(_) => {
                self.phase = Phase::Done;
                let queued = self.write_buf.len();
                self.write_buf.advance(queued);
                return Err(Error::CloseTimeout(limit));
            }
        }
        while let Some(r) = self.recv().await {
            match r {
                Ok(_) => {}
                Err(Error::AbnormalClosure) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Splits into a reader and a writer that can live in two tasks.
    pub fn split(self) -> (WebSocketReader<S>, WebSocketWriter<S>) {
        split::split(self)
    }

    fn queue_fragment(&mut self, opcode: OpCode, payload: Bytes, fin: bool) -> Result<(), Error> {
        let len = payload.len() as u64;
        self.conn
            .session_mut()
            .send_fragment(opcode, payload, fin, &SendHints::default())?;
        self.conn.poll_transmit(&mut self.write_buf);
        self.count_sent(len, fin);
        Ok(())
    }

    /// Counts payload accepted for sending (a whole message when `end`).
    #[inline]
    fn count_sent(&mut self, len: u64, end: bool) {
        self.stats.payload_bytes_sent += len;
        if end {
            self.stats.messages_sent += 1;
            if self.stats.messages_sent.is_multiple_of(ops::PUBLISH_EVERY) {
                self.publish();
            }
        }
    }

    /// Publishes the counters to the server's stats, if attached.
    fn publish(&mut self) {
        let now = self.stats;
        if let Some(l) = &mut self.link {
            l.publish(&now);
        }
    }

    /// Acts on the server's shutdown, if one is attached: queues the 1001
    /// Close once it is triggered, fails at once once it aborts.
    #[inline]
    fn check_link(&mut self, cx: &Context<'_>) -> Result<(), Error> {
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        match link.poll_shutdown(cx.waker()) {
            ShutdownSignal::Running => Ok(()),
            ShutdownSignal::Close => {
                self.close_for_shutdown();
                Ok(())
            }
            ShutdownSignal::Abort => {
                self.phase = Phase::Done;
                Err(Error::ShutdownAborted)
            }
        }
    }

    #[cold]
    fn close_for_shutdown(&mut self) {
        if matches!(self.phase, Phase::Open) && self.close_state() == CloseState::Open {
            // Behind everything queued: nothing accepted is lost.
            let frame = CloseFrame::new(CloseCode::GOING_AWAY, "server shutting down");
            if self
                .conn
                .session_mut()
                .close(Some(frame), Instant::now())
                .is_ok()
            {
                self.sent_close = Some(CloseCode::GOING_AWAY);
                self.conn.poll_transmit(&mut self.write_buf);
            }
        }
    }

    fn queue(&mut self, msg: Message, hints: &SendHints) -> Result<(), Error> {
        if !matches!(self.phase, Phase::Open) {
            return Err(Error::Closed);
        }
        self.mark_active();
        let out = &mut self.write_buf;
        match msg {
            // Data goes straight into the write buffer when nothing is
            // queued before it (see `Connection::send_message`).
            Message::Text(t) => {
                let len = t.len() as u64;
                self.conn
                    .send_message(OpCode::Text, t.into_bytes(), hints, out)?;
                self.count_sent(len, true);
                return Ok(());
            }
            Message::Binary(b) => {
                let len = b.len() as u64;
                self.conn.send_message(OpCode::Binary, b, hints, out)?;
                self.count_sent(len, true);
                return Ok(());
            }
            Message::Ping(b) => self.conn.session_mut().ping(b)?,
            Message::Pong(b) => self.conn.session_mut().pong(b)?,
            Message::Close(f) => {
                let code = f.as_ref().map_or(CloseCode::NO_STATUS, |f| f.code);
                self.conn.session_mut().close(f, Instant::now())?;
                self.sent_close = Some(code);
            }
        }
        self.conn.poll_transmit(out);
        Ok(())
    }

    /// Split halves poll the transport with the combined waker.
    fn shared_waker(&self, cx: &Context<'_>, read: bool) -> Option<Waker> {
        let (slots, waker) = self.split.as_ref()?;
        if read {
            slots.register_read(cx.waker());
        } else {
            slots.register_write(cx.waker());
        }
        Some(waker.clone())
    }

    fn poll_ready_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Some(w) = self.shared_waker(cx, false) {
            return self.poll_ready_with(&mut Context::from_waker(&w));
        }
        self.poll_ready_with(cx)
    }

    fn poll_ready_with(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.check_link(cx)?;
        if !matches!(self.phase, Phase::Open) {
            return Poll::Ready(Err(Error::Closed));
        }
        if self.write_buf.len() >= self.write_high_water {
            ready!(self.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Some(w) = self.shared_waker(cx, false) {
            return self.poll_flush_with(&mut Context::from_waker(&w));
        }
        self.poll_flush_with(cx)
    }

    fn poll_flush_with(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if !matches!(self.phase, Phase::Done) {
            self.check_link(cx)?;
        }
        self.conn.poll_transmit(&mut self.write_buf);
        if matches!(self.phase, Phase::Done) && !self.write_buf.is_empty() {
            return Poll::Ready(Err(Error::Closed));
        }
        ready!(self.poll_write_out(cx))?;
        Poll::Ready(Ok(()))
    }

    /// Writes the write buffer out and flushes the transport.
    #[inline]
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.write_buf.is_empty() && !self.needs_flush {
            return Poll::Ready(Ok(()));
        }
        self.poll_write_out_slow(cx)
    }

    fn poll_write_out_slow(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.write_buf.is_empty() {
            let written = if let Some(run) = self.write_buf.contiguous() {
                ready!(Pin::new(&mut self.io).poll_write(cx, run))?
            } else if self.write_buf.is_lone() {
                if self.write_buf.len() <= LONE_COPY {
                    // Join header and payload on the stack: one plain write.
                    // A socket's vectored write is `writev`, which goes
                    // through the VFS layer and costs the kernel more than
                    // the `send` of a plain write; a transport without
                    // vectored writes (TLS) would send the header alone.
                    let mut joined = [MaybeUninit::<u8>::uninit(); LONE_COPY];
                    let run = self.write_buf.copy_front(&mut joined);
                    ready!(Pin::new(&mut self.io).poll_write(cx, run))?
                } else if self.io.is_write_vectored() {
                    let mut slices = [IoSlice::new(&[]); 2];
                    let n = self.write_buf.chunks(&mut slices);
                    ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]))?
                } else {
                    let mut slices = [IoSlice::new(&[]); 1];
                    self.write_buf.chunks(&mut slices);
                    ready!(Pin::new(&mut self.io).poll_write(cx, &slices[0]))?
                }
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = self.write_buf.chunks(&mut slices);
                if self.io.is_write_vectored() {
                    ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]))?
                } else {
                    ready!(Pin::new(&mut self.io).poll_write(cx, &slices[0]))?
                }
            };
            if written == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.write_buf.advance(written);
            self.stats.wire_bytes_sent += written as u64;
            self.needs_flush = true;
        }
        if self.needs_flush {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.needs_flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads more bytes into the read buffer; `Ok(0)` is end of stream.
    ///
    /// Memory: while reads are small (the adaptive size and the buffer are
    /// at most [`SCRATCH`]) and nothing is buffered, the buffer is given up
    /// and the read goes into a stack buffer first, then exactly the bytes
    /// that arrived are copied into a fresh allocation (which a message
    /// that fills it takes over without another copy). So a connection
    /// waiting for its peer holds no read buffer, and one that received a
    /// small message does not keep a buffer sized for it. A connection
    /// receiving a stream of pipelined messages reads straight into a heap
    /// buffer that adapts between 2 and 64 KiB and is reused from message
    /// to message (freed once the read size has shrunk well below it).
    ///
    /// A frame larger than [`SCRATCH`] gets room for all of its remaining
    /// bytes (plus [`READ_SLACK`]) at once, so its payload is read in
    /// place and split off without a copy. That room comes from the
    /// connection's [`FrameBufs`] when the payload of an earlier large frame
    /// has been dropped: a connection echoing 1 MiB messages reads every
    /// message into one of the same one or two buffers instead of
    /// allocating (and page-faulting in) a fresh megabyte per message.
    /// The read right after a large frame goes straight into such a kept
    /// buffer if it is free (the next message is likely large too), so a
    /// large frame's first bytes are not copied through the stack.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let hint = self.conn.read_hint();
        let want = if hint > SCRATCH {
            // Room for the rest of the frame is what counts; a new buffer
            // also gets room for the adaptive read size.
            let want = hint + READ_SLACK;
            self.frame_bufs.idle_reads = 0;
            if self.read_buf.capacity() - self.read_buf.len() < want {
                self.frame_bufs
                    .room(&mut self.read_buf, want.max(self.read_size));
            }
            want
        } else {
            self.frame_bufs.note_small_read();
            hint.max(self.read_size)
        };
        if self.read_buf.is_empty()
            && self.read_buf.capacity() > 4 * self.read_size
            && !self.frame_bufs.is_whole(&self.read_buf)
        {
            // Give back what a large message or a burst left behind.
            self.read_buf = BytesMut::new();
        }
        if self.read_buf.is_empty() && self.read_buf.capacity() > SCRATCH {
            // What is left of a buffer whose front went out as payloads:
            // once they are dropped, reading from the buffer's start again
            // costs nothing (it is empty) and leaves room for a frame as
            // large as the last read. Reading on into the tail instead would
            // leave a frame that does not fit to be moved to the front (a
            // copy of all of it; every 64 KiB echo was one).
            let _ = self.read_buf.try_reclaim(self.read_buf.capacity() + 1);
        }
        let mut small = self.read_buf.capacity() <= SCRATCH && want <= SCRATCH;
        if small && self.read_buf.is_empty() {
            // Right after a large frame the next one is likely large too
            // (echoes, file chunks): read it straight into a kept buffer
            // that is free again instead of through the stack, which saves
            // copying its first bytes twice (into an exact allocation, then
            // into the frame buffer) and that allocation. The rest of the
            // old buffer goes first, so that the kept one can be free.
            self.read_buf = BytesMut::new();
            if let Some(whole) = self.frame_bufs.free_after_large() {
                self.read_buf = whole;
                small = false;
            }
        }
        let (n, offered) = if self.read_buf.is_empty() && small {
            let mut scratch = [MaybeUninit::<u8>::uninit(); SCRATCH];
            let mut rb = ReadBuf::uninit(&mut scratch);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
            // `read_buf` is empty with no capacity here: one exact allocation.
            self.read_buf = BytesMut::from(rb.filled());
            (rb.filled().len(), SCRATCH)
        } else {
            if self.read_buf.capacity() - self.read_buf.len() < want {
                self.read_buf.reserve(want);
            }
            let spare = self.read_buf.spare_capacity_mut();
            let offered = spare.len();
            let mut rb = ReadBuf::uninit(spare);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            // SAFETY: `poll_read` initialized the first `n` bytes of the spare
            // capacity (ReadBuf tracks exactly what was filled).
            unsafe { self.read_buf.set_len(self.read_buf.len() + n) };
            (n, offered)
        };
        if n > SCRATCH {
            // Large frames are arriving whole in one read: the kept
            // buffers are in use.
            self.frame_bufs.idle_reads = 0;
        }
        if n == offered {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        } else if n < self.read_size / 8 {
            self.read_size = (self.read_size / 2).max(MIN_READ);
        }
        self.stats.wire_bytes_received += n as u64;
        if n > 0 {
            if let Some(d) = self.keepalive {
                self.keepalive_at = Some(Instant::now() + d);
            }
            self.mark_active();
        }
        Poll::Ready(Ok(n))
    }

    /// Notes traffic for the idle release timer.
    fn mark_active(&mut self) {
        if let Some(d) = self.idle_after {
            self.active = true;
            if self.idle_at.is_none() {
                self.idle_at = Some(Instant::now() + d);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, None) => a,
                (None, b) => b,
            }
        }
        let a = earlier(self.conn.session().poll_timeout(), self.keepalive_at);
        let a = earlier(a, self.pong_due);
        earlier(a, earlier(self.finish_by, self.idle_at))
    }

    /// Polls the single timer; returns true if a deadline passed (state may
    /// have changed).
    #[inline]
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> bool {
        if self.timer.is_none()
            && self.keepalive_at.is_none()
            && self.idle_at.is_none()
            && self.finish_by.is_none()
            && self.conn.session().poll_timeout().is_none()
        {
            // No deadline and no timer: the usual case of an open connection.
            return false;
        }
        self.poll_timers_slow(cx)
    }

    // Kept out of line: inlined, its frame (six saved registers and the
    // timer's locals) was paid by every `poll_timers` call, twice per echo.
    #[cold]
    #[inline(never)]
    fn poll_timers_slow(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.next_deadline() else {
            if self.timer.is_some() {
                self.timer = None;
            }
            return false;
        };
        let at = tokio::time::Instant::from_std(deadline);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        let now = Instant::now();
        self.conn.session_mut().handle_timeout(now);
        if let (Some(at), Some(d)) = (self.idle_at, self.idle_after)
            && now >= at
        {
            if std::mem::take(&mut self.active) {
                self.idle_at = Some(now + d);
            } else {
                self.idle_at = None;
                self.conn.session_mut().idle();
            }
        }
        if let (Some(at), Some(d)) = (self.keepalive_at, self.keepalive)
            && now >= at
        {
            self.keepalive_at = Some(now + d);
            if self.conn.session().state() == CloseState::Open {
                let _ = self.conn.session_mut().ping(Bytes::new());
                self.conn.poll_transmit(&mut self.write_buf);
                if self.pong_due.is_none() {
                    self.pong_due = Some(now + self.keepalive_timeout);
                }
            }
        }
        if let Some(due) = self.pong_due
            && now >= due
            && matches!(self.phase, Phase::Open)
        {
            self.pong_due = None;
            tracing::info!(
                timeout = ?self.keepalive_timeout,
                "keepalive: no Pong in time, closing with 1011"
            );
            let frame = CloseFrame::new(CloseCode::INTERNAL_ERROR, "keepalive timeout");
            if self.conn.session_mut().close(Some(frame), now).is_ok() {
                self.sent_close = Some(CloseCode::INTERNAL_ERROR);
            }
            self.conn.poll_transmit(&mut self.write_buf);
            self.enter(Phase::Failing(Some(Error::KeepaliveTimeout(
                self.keepalive_timeout,
            ))));
        }
        true
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        if let Some(w) = self.shared_waker(cx, true) {
            return self.poll_recv_with(&mut Context::from_waker(&w));
        }
        self.poll_recv_with(cx)
    }

    fn poll_recv_with(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        loop {
            if !matches!(self.phase, Phase::Done)
                && let Err(e) = self.check_link(cx)
            {
                return Poll::Ready(Some(Err(e)));
            }
            match &mut self.phase {
                Phase::Done => return Poll::Ready(None),
                Phase::Closing | Phase::Failing(_) => {
                    ready!(self.poll_finish(cx));
                    return match std::mem::replace(&mut self.phase, Phase::Done) {
                        Phase::Failing(Some(e)) => Poll::Ready(Some(Err(e))),
                        _ => Poll::Ready(None),
                    };
                }
                Phase::Open => {}
            }
            // An empty buffer holds no frame (and `handle_read` would only
            // say so): skip straight to writing and reading.
            let parsed = if self.read_buf.is_empty() {
                Ok(None)
            } else {
                self.conn.handle_read(&mut self.read_buf)
            };
            match parsed {
                Ok(Some(msg)) => {
                    match &msg {
                        Message::Text(_) | Message::Binary(_) => {
                            self.stats.messages_received += 1;
                            self.stats.payload_bytes_received += msg.len() as u64;
                            if self
                                .stats
                                .messages_received
                                .is_multiple_of(ops::PUBLISH_EVERY)
                            {
                                self.publish();
                            }
                        }
                        Message::Pong(_) => self.pong_due = None,
                        _ => {}
                    }
                    // Only protocol replies (a Pong) are written at once; data
                    // the application fed waits until input runs dry, so a
                    // burst of requests is answered with one write.
                    let replies = self.conn.poll_transmit(&mut self.write_buf);
                    if self.conn.session().is_finished() {
                        self.enter(Phase::Closing);
                    } else if replies && let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                        self.enter(Phase::Failing(Some(e.into())));
                    }
                    return Poll::Ready(Some(Ok(msg)));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::info!(
                        error = %e,
                        close_code = e.close_code().as_u16(),
                        "websocket protocol error: failing the connection"
                    );
                    self.sent_close = Some(e.close_code());
                    self.conn.poll_transmit(&mut self.write_buf);
                    self.enter(Phase::Failing(Some(e.into())));
                    continue;
                }
            }
            if self.conn.session().is_finished() {
                self.enter(Phase::Closing);
                continue;
            }
            self.conn.poll_transmit(&mut self.write_buf);
            if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                self.enter(Phase::Failing(Some(e.into())));
                continue;
            }
            if self.poll_timers(cx) {
                continue;
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => {
                    self.eof = true;
                    self.phase = Phase::Done;
                    return Poll::Ready(Some(Err(Error::AbnormalClosure)));
                }
                Ok(_) => continue,
                Err(e) => {
                    self.phase = Phase::Done;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.finish_by = Some(Instant::now() + self.close_timeout);
        self.phase = phase;
    }

    /// Flushes, waits for the server's end of stream on a client after a
    /// clean close, and shuts the transport down; bounded by the close timeout.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.finish_by.is_some_and(|d| Instant::now() >= d) {
                return Poll::Ready(());
            }
            let timer_fired = self.poll_timers(cx);
            if timer_fired {
                continue;
            }
            match self.poll_write_out(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
            }
            let clean = matches!(self.phase, Phase::Closing);
            if clean && self.role() == Role::Client && !self.eof {
                // RFC 6455 §7.1.1: the client waits for the server to close TCP.
                self.read_buf.clear();
                match ready!(self.poll_fill(cx)) {
                    Ok(0) | Err(_) => self.eof = true,
                    Ok(_) => {
                        self.read_buf.clear();
                        continue;
                    }
                }
            }
            let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
            self.timer = None;
            return Poll::Ready(());
        }
    }
}

impl<S> Drop for WebSocket<S> {
    /// Publishes the final counters to the server's stats and emits the
    /// close event (at DEBUG).
    fn drop(&mut self) {
        let stats = self.stats;
        if let Some(l) = &mut self.link {
            l.publish(&stats);
        }
        let session = self.conn.session();
        let (peer_code, peer_reason) = match session.peer_close() {
            Some(Some(f)) => (Some(f.code.as_u16()), f.reason.as_str()),
            Some(None) => (Some(CloseCode::NO_STATUS.as_u16()), ""),
            None => (None, ""),
        };
        tracing::debug!(
            state = ?session.state(),
            sent_code = self.sent_close.map(|c| c.as_u16()),
            peer_code,
            peer_reason,
            duration_ms = self.opened.elapsed().as_millis() as u64,
            messages_sent = stats.messages_sent,
            messages_received = stats.messages_received,
            wire_bytes_sent = stats.wire_bytes_sent,
            wire_bytes_received = stats.wire_bytes_received,
            "websocket closed"
        );
    }
}

/// Buffers of earlier large frames, kept so the next large frame is read
/// into memory that is already mapped (see [`WebSocket::poll_fill`]).
///
/// Each entry is an empty handle at the end of a buffer whose front was
/// split off as a payload: while the application holds that payload the
/// buffer is shared and stays untouched; once every payload cut from it is
/// dropped, [`BytesMut::try_reclaim`] gets the whole buffer back without an
/// allocation. At most [`KEPT_FRAME_BUFS`] buffers of at most
/// [`MAX_KEPT_FRAME_BUF`] bytes are kept (two, so that a connection with two
/// large messages in flight, one being echoed while the next arrives,
/// alternates between them), and they are freed after
/// [`KEEP_FRAME_BUFS_FOR`] reads without a large frame, so a connection
/// that stopped receiving large messages goes back to holding no read
/// buffer. An idle connection that never received a large frame holds none.
#[derive(Debug, Default)]
struct FrameBufs {
    /// Boxed, and only once a large frame arrived: a connection that never
    /// receives one pays a pointer for this.
    kept: Option<Box<[Option<Kept>; KEPT_FRAME_BUFS]>>,
    /// Where the next new buffer is kept (the older one is replaced).
    next: usize,
    /// Reads since the last large frame.
    idle_reads: u32,
}

/// One kept buffer: a handle on it and where it lies (to tell whether the
/// read buffer is inside it).
#[derive(Debug)]
struct Kept {
    handle: BytesMut,
    start: usize,
    cap: usize,
}

impl Kept {
    /// Keeps `buf`'s allocation, of which `buf` is all (just allocated).
    fn new(buf: &mut BytesMut) -> Kept {
        let (start, cap) = (buf.as_ptr() as usize, buf.capacity());
        Kept {
            handle: buf.split_off(cap),
            start,
            cap,
        }
    }

    fn holds(&self, buf: &BytesMut) -> bool {
        (self.start..=self.start + self.cap).contains(&(buf.as_ptr() as usize))
    }
}

impl FrameBufs {
    /// Makes `buf` (holding the start of a large frame) able to take
    /// `additional` more bytes: in place if its own buffer is free again,
    /// else in a kept buffer whose payloads are gone, else in a new buffer
    /// that is kept for later frames (if not too large).
    fn room(&mut self, buf: &mut BytesMut, additional: usize) {
        let len = buf.len();
        let kept = self.kept.get_or_insert_with(Default::default);
        if let Some(slot) = kept
            .iter_mut()
            .find(|k| k.as_ref().is_some_and(|k| k.holds(buf)))
        {
            // `buf` is the rest of a kept buffer: let go of the kept handle
            // so `buf` can be the only one left, then take a new one.
            let Kept { start, cap, .. } = slot.take().expect("found above");
            let reclaimed = buf.try_reclaim(additional);
            let c = buf.capacity();
            *slot = Some(Kept {
                handle: buf.split_off(c),
                start,
                cap,
            });
            if reclaimed {
                return;
            }
        }
        for slot in kept.iter_mut() {
            if let Some(kept) = slot
                && !kept.holds(buf)
                && kept.handle.try_reclaim(len + additional)
            {
                // The kept buffer is free and now whole again: move the
                // frame's first bytes (a header and what came with it) over
                // and keep a new handle on it.
                let mut whole = std::mem::take(&mut kept.handle);
                whole.extend_from_slice(buf);
                *buf = whole;
                let c = buf.capacity();
                kept.handle = buf.split_off(c);
                return;
            }
        }
        if buf.try_reclaim(additional) {
            return;
        }
        let mut fresh = BytesMut::with_capacity(len + additional);
        fresh.extend_from_slice(buf);
        *buf = fresh;
        if buf.capacity() <= MAX_KEPT_FRAME_BUF {
            kept[self.next] = Some(Kept::new(buf));
            self.next = (self.next + 1) % KEPT_FRAME_BUFS;
        }
    }

    /// A kept buffer, whole and empty, if the last read was for a large
    /// frame and no payload still uses that buffer. It stays kept: the
    /// returned buffer is the only other handle on it.
    fn free_after_large(&mut self) -> Option<BytesMut> {
        if self.idle_reads > 1 {
            return None;
        }
        let kept = self.kept.as_mut()?;
        for k in kept.iter_mut().flatten() {
            if k.handle.try_reclaim(k.cap) {
                let mut whole = std::mem::take(&mut k.handle);
                k.handle = whole.split_off(whole.capacity());
                return Some(whole);
            }
        }
        None
    }

    /// Whether `buf` is a whole kept buffer (as [`FrameBufs::free_after_large`]
    /// lends it), not just a part of one.
    fn is_whole(&self, buf: &BytesMut) -> bool {
        self.kept.as_ref().is_some_and(|kept| {
            kept.iter()
                .flatten()
                .any(|k| k.start == buf.as_ptr() as usize && k.cap == buf.capacity())
        })
    }

    /// Counts a read without a large frame; frees the kept buffers after
    /// [`KEEP_FRAME_BUFS_FOR`] of them.
    #[inline]
    fn note_small_read(&mut self) {
        if self.idle_reads < KEEP_FRAME_BUFS_FOR {
            self.idle_reads += 1;
            if self.idle_reads == KEEP_FRAME_BUFS_FOR {
                self.kept = None;
            }
        }
    }
}

fn ignore_closed(e: Error) -> Result<(), Error> {
    match e {
        Error::Closed => Ok(()),
        e => Err(e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures_core::Stream for WebSocket<S> {
    type Item = Result<Message, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures_sink::Sink<Message> for WebSocket<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_ready_inner(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().queue(item, &SendHints::default())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_flush_inner(cx)
    }
    /// Sends a Close (1000) if none was sent, flushes, and then drives the
    /// connection until the closing handshake ends (incoming data is dropped).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.conn.session().state() == CloseState::Open && matches!(this.phase, Phase::Open) {
            this.queue(
                Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))),
                &SendHints::default(),
            )?;
        }
        ready!(this.poll_flush_inner(cx)).or_else(ignore_closed)?;
        loop {
            match ready!(this.poll_recv(cx)) {
                None | Some(Err(Error::AbnormalClosure)) => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(e)),
                Some(Ok(_)) => {}
            }
        }
    }
}
