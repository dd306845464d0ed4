//! The tokio API: [`MuxClient`], [`MuxServerBuilder`] and [`Channel`].
//!
//! One driver task per physical connection owns the physical
//! [`WebSocket`], reading and writing it in the same task, and the
//! [`Multiplexer`] lives behind a mutex shared with the channel handles.
//! Each turn of the driver reads what has arrived, hands it to the
//! multiplexer, takes its output and queues it on the WebSocket, all in one
//! critical section, and wakes the channels the events concern once the
//! lock is released (wake-ups decided under the lock are collected and done
//! after it, so a woken task on another worker does not run into the lock).
//! A [`Channel`] is a handle (an `Arc` and an ID): `send` queues into the
//! channel's session and wakes the driver only if it sleeps (the driver
//! leaves its waker in the state when it runs out of work; the first sender
//! after that takes it, so a burst of sends costs one wake-up); `recv`
//! takes from the channel's inbox. Nothing per channel lives in the driver,
//! so an idle channel costs only its session and bookkeeping.
//!
//! This replaced a reader task and a writer task handing work to each
//! other: on a multi-thread runtime an echo then went reader → channel →
//! writer across two workers, with a futex wake-up for nearly every
//! message (`mux_bench --threads 2`, one channel, 1 KiB: 1.1 futex calls
//! per echoed message before, about 0.001 after).
//!
//! Sending copies no payload on a server: the multiplexer hands out each
//! physical message as its inner header and a slice of the channel's frame
//! ([`Multiplexer::poll_transmit_parts`]), which the driver queues with
//! [`WebSocket::start_send_binary_prefixed`]: large payloads are written by
//! reference with a vectored write. A client copies each payload once, into
//! its write buffer, masking it there (RFC 6455 masks every client frame,
//! and the channel's `Bytes` may be shared by the application, so they are
//! not masked in place).
//!
//! Large transfers are kept cache-sized: a turn reads at most 64 KiB of
//! large messages (or 256 messages) before the channel tasks run, takes
//! output from the multiplexer 64 KiB at a time and writes it before taking
//! more, and `TCP_NOTSENT_LOWAT` ([`MuxConfig::notsent_lowat`]) keeps the
//! kernel from queueing megabytes ahead of the scheduler.

mod variant_a;

use crate::MuxConfig;
use crate::config::MuxVariant;
use crate::mux::{ChannelAccepted, ChannelEnd, Multiplexer, MuxError, MuxEvent, Transmit};
use crate::negotiate::{GoogleMuxFactory, MuxFactory, UnlessMux, is_variant_b_token};
use crate::wire::{ChannelId, DropCode};
use futures_core::Stream;
use futures_sink::Sink;
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use weft_core::ext::{ExtensionFactory, SendHints, parse_extensions};
use weft_core::handshake::{HandshakeError, IntoClientRequest, ServerOptions, Target};
use weft_core::{ClientBuilder, CloseCode, CloseFrame, Message, ServerBuilder, WebSocket};

/// The outcome of an AddChannelRequest and the task waiting for it.
type OpenSlot = (Option<Result<OpenInfo, MuxError>>, Option<Waker>);

struct State {
    mux: Multiplexer,
    readers: HashMap<u32, Waker>,
    writers: Vec<Waker>,
    opened: HashMap<u32, OpenSlot>,
    incoming: VecDeque<(ChannelId, http::Request<()>)>,
    accept_waker: Option<Waker>,
    ended: HashMap<u32, ChannelEnd>,
    closed: bool,
    close_requested: bool,
    physical_closed: bool,
    /// The driver task, while it waits for work (see [`State::kick`]).
    driver: Option<Waker>,
    /// Tasks to wake once the lock is released (see [`Locked`]).
    wake: Vec<Waker>,
}

#[derive(Debug, Clone)]
struct OpenInfo {
    protocol: Option<String>,
    extensions: Vec<weft_core::ext::ExtensionHeader>,
}

struct Shared {
    state: Mutex<State>,
    max_pending: usize,
    channel_options: ServerOptions,
    /// The subprotocol of the physical handshake, which is channel 1's.
    implicit_protocol: Option<String>,
}

impl Shared {
    fn lock(&self) -> Locked<'_> {
        Locked(Some(self.state.lock().unwrap_or_else(|e| e.into_inner())))
    }
}

/// The locked state. Wake-ups decided while it is held are collected in
/// [`State::wake`] and done when it is released, so a woken task on
/// another worker thread does not run straight into the lock it is
/// waiting for.
struct Locked<'a>(Option<MutexGuard<'a, State>>);

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.0.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.0.as_mut().expect("held until dropped")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let Some(mut st) = self.0.take() else {
            return;
        };
        if st.wake.is_empty() {
            return;
        }
        let wake = std::mem::take(&mut st.wake);
        drop(st);
        for w in wake {
            w.wake();
        }
    }
}

impl State {
    /// Wakes the driver if it waits for work: called by whatever queued
    /// output or changed what the driver must do. Only the first call after
    /// the driver went to sleep wakes it (the others find no waker), so a
    /// burst of sends costs one wake-up.
    fn kick(&mut self) {
        if let Some(w) = self.driver.take() {
            self.wake.push(w);
        }
    }

    /// Hands the multiplexer's events to whoever waits for them.
    fn dispatch(&mut self) {
        while let Some(ev) = self.mux.poll_event() {
            match ev {
                MuxEvent::Readable(ch) => {
                    if let Some(w) = self.readers.remove(&ch.get()) {
                        self.wake.push(w);
                    }
                }
                MuxEvent::ChannelClosed { channel, end } => {
                    if let Some(w) = self.readers.remove(&channel.get()) {
                        self.wake.push(w);
                    }
                    if let Some((slot, w)) = self.opened.get_mut(&channel.get()) {
                        // Ended while opening: dropped by the server (2009
                        // for a malformed request) or a physical failure.
                        slot.get_or_insert(Err(MuxError::ChannelEnded(end.clone())));
                        if let Some(w) = w.take() {
                            self.wake.push(w);
                        }
                    }
                    self.ended.insert(channel.get(), end);
                }
                MuxEvent::ChannelOpened {
                    channel,
                    protocol,
                    extensions,
                } => {
                    self.resolve_open(
                        channel,
                        Ok(OpenInfo {
                            protocol,
                            extensions,
                        }),
                    );
                }
                MuxEvent::ChannelRejected { channel, status } => {
                    self.resolve_open(channel, Err(MuxError::Rejected(status)))
                }
                MuxEvent::ChannelRequested { channel, request } => {
                    self.incoming.push_back((channel, request));
                    if let Some(w) = self.accept_waker.take() {
                        self.wake.push(w);
                    }
                }
                MuxEvent::Failed(_) => self.shut(),
            }
        }
    }

    fn resolve_open(&mut self, channel: ChannelId, result: Result<OpenInfo, MuxError>) {
        if let Some((slot, w)) = self.opened.get_mut(&channel.get()) {
            *slot = Some(result);
            if let Some(w) = w.take() {
                self.wake.push(w);
            }
        }
    }

    fn shut(&mut self) {
        self.closed = true;
        self.wake.extend(self.readers.drain().map(|(_, w)| w));
        self.wake.append(&mut self.writers);
        for (_, (_, w)) in self.opened.iter_mut() {
            if let Some(w) = w.take() {
                self.wake.push(w);
            }
        }
        if let Some(w) = self.accept_waker.take() {
            self.wake.push(w);
        }
        self.kick();
    }
}

/// Bytes of physical messages the driver takes from the multiplexer in one
/// turn before writing them out (one 64 KiB message, or many small ones per
/// write).
const WRITE_BATCH: usize = 64 << 10;

/// Bytes of large physical messages the driver reads in one turn before it
/// hands them to the multiplexer and lets other tasks run.
const READ_BATCH: usize = 64 << 10;

/// Physical messages below this size do not count towards [`READ_BATCH`]:
/// they are cheap to hold, and handling a run of them before the channels
/// run is what batches their replies (yielding among them cost 20% at 10
/// channels echoing 1 KiB messages).
const YIELD_MIN_MESSAGE: usize = 4 << 10;

/// Most physical messages read in one turn, however small.
const READ_MAX_MESSAGES: usize = 256;

/// References to [`Shared`] the driver itself holds: when no other is left,
/// every handle is gone.
const DRIVER_REFS: usize = 1;

/// Why the driver's loop ended.
enum Exit {
    /// The peer closed, the connection failed or an I/O error happened:
    /// finish the physical closing handshake, if any.
    PeerGone,
    /// We close the physical connection with this code.
    Close(CloseCode),
}

/// The driver's buffers, kept across turns so a turn allocates nothing.
struct Turn {
    inbox: Vec<Message>,
    out: Vec<Transmit>,
    wake: Vec<Waker>,
    tick: tokio::time::Interval,
}

/// Runs a physical connection until it closes or fails.
///
/// One task owns the physical [`WebSocket`] and both directions: each turn
/// it reads what has arrived (up to [`READ_BATCH`]), hands it to the
/// multiplexer, takes output (up to [`WRITE_BATCH`]) and queues it, all in
/// one critical section, then wakes the channels the turn concerns once the
/// lock is released. A read that would block never stops writing and a
/// blocked write never stops reading, since neither is awaited: the turn
/// polls both (two drivers each waiting for the other to read cannot
/// deadlock). With one task per connection instead of a reader and a
/// writer handing work to each other, an echo on a multi-thread runtime
/// goes driver → channel task → driver on one worker (tokio runs a task
/// woken by the running one next, on the same thread), without the futex
/// wake-ups and lock contention of three tasks on two workers.
///
/// Channel tasks wake the driver through [`State::kick`]: the driver leaves
/// its waker in the state when it finds nothing more to do, and only the
/// first sender after that takes it.
async fn drive<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    shared: Arc<Shared>,
    mut ws: WebSocket<S>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = Turn {
        inbox: Vec::new(),
        out: Vec::new(),
        wake: Vec::new(),
        tick,
    };
    let exit = loop {
        match poll_fn(|cx| drive_turn(&shared, &mut ws, &mut turn, cx)).await {
            Step::Exit(exit) => break exit,
            // `yield_now` defers the wake-up until the runtime has polled
            // for I/O, unlike waking ourselves (see `Step::Yield`).
            Step::Yield => tokio::task::yield_now().await,
        }
    };
    match exit {
        Exit::PeerGone => {
            shared.lock().shut();
            // Finish the physical closing handshake (bounded by its close
            // timeout, and here by 10 s whatever the transport does).
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while ws.recv().await.is_some() {}
            })
            .await;
        }
        Exit::Close(code) => {
            let _ = ws.close(code, "").await;
            shared.lock().shut();
        }
    }
}

/// What a driver turn asks for next.
enum Step {
    /// The connection ended.
    Exit(Exit),
    /// The write batch was full with more output waiting: run again after
    /// the other tasks and the I/O poll (`tokio::task::yield_now`). With
    /// deep backlogs (100 and 1,000 channels echoing 64 KiB messages)
    /// this measured steadier and up to twice as fast as waking ourselves,
    /// which the driver does when only the read budget ran out (deferring
    /// there too made 10 channels about a third slower).
    Yield,
}

/// One turn of the driver (see [`drive`]): ready when the connection ends
/// or when it should yield.
fn drive_turn<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    ws: &mut WebSocket<S>,
    turn: &mut Turn,
    cx: &mut Context<'_>,
) -> Poll<Step> {
    // Read what has arrived, without holding the lock over the reads.
    let mut large = 0;
    let mut peer_gone = false;
    let mut read_more = false;
    loop {
        match Pin::new(&mut *ws).poll_next(cx) {
            Poll::Ready(Some(Ok(Message::Close(_)) | Err(_)) | None) => {
                peer_gone = true;
                break;
            }
            Poll::Ready(Some(Ok(m))) => {
                if m.len() >= YIELD_MIN_MESSAGE {
                    large += m.len();
                }
                turn.inbox.push(m);
                if large >= READ_BATCH || turn.inbox.len() >= READ_MAX_MESSAGES {
                    // Let the channels take what was read while it is
                    // still in the CPU cache, instead of reading megabytes
                    // ahead of them (a busy socket never runs dry).
                    read_more = true;
                    break;
                }
            }
            Poll::Pending => break,
        }
    }
    let timeout = turn.tick.poll_tick(cx).is_ready();
    let room = match Pin::new(&mut *ws).poll_ready(cx) {
        Poll::Ready(Ok(())) => true,
        Poll::Ready(Err(_)) => return Poll::Ready(Step::Exit(Exit::PeerGone)),
        Poll::Pending => false,
    };
    let (more_output, failed, close) = {
        let mut st = shared.lock();
        for m in turn.inbox.drain(..) {
            st.mux.handle_message(m);
        }
        if timeout {
            st.mux.handle_timeout(Instant::now());
        }
        // Output is taken in batches of about WRITE_BATCH bytes and written
        // before the next batch is taken, so the memory in flight stays
        // bounded however much the channels have queued.
        if room {
            let mut batch = 0;
            while batch < WRITE_BATCH {
                let Some(t) = st.mux.poll_transmit_parts() else {
                    break;
                };
                batch += t.len();
                turn.out.push(t);
            }
            if batch > 0 {
                let State { writers, wake, .. } = &mut *st;
                wake.append(writers);
            }
        }
        st.dispatch();
        let more_output = room && st.mux.has_output();
        let failed = st.mux.failure();
        // Every handle (client, server, channels) dropped: nobody can use
        // the connection any more, so close it rather than keep its socket
        // and task forever.
        let close = st.close_requested || Arc::strong_count(shared) <= DRIVER_REFS;
        if peer_gone {
            st.physical_closed = true;
            st.shut();
        }
        if !read_more && !more_output {
            // Nothing left for this turn: sleep until a channel kicks us,
            // the socket or the tick wakes us.
            if !st.driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.driver = Some(cx.waker().clone());
            }
        }
        std::mem::swap(&mut st.wake, &mut turn.wake);
        (more_output, failed, close)
    };
    for w in turn.wake.drain(..) {
        w.wake();
    }
    for mut t in turn.out.drain(..) {
        let payload = std::mem::take(&mut t.payload);
        if ws.start_send_binary_prefixed(t.prefix(), payload).is_err() {
            return Poll::Ready(Step::Exit(Exit::PeerGone));
        }
    }
    if let Poll::Ready(Err(_)) = Pin::new(&mut *ws).poll_flush(cx) {
        return Poll::Ready(Step::Exit(Exit::PeerGone));
    }
    if peer_gone {
        return Poll::Ready(Step::Exit(Exit::PeerGone));
    }
    if failed.is_some() || close {
        // A failed physical connection closes with 1011 (docs/specs/mux.md §4.8).
        let code = if failed.is_some() {
            CloseCode::INTERNAL_ERROR
        } else {
            CloseCode::NORMAL
        };
        return Poll::Ready(Step::Exit(Exit::Close(code)));
    }
    if more_output {
        // Output left (the write batch is full): the channels and the I/O
        // poll run, then the next turn writes on.
        return Poll::Ready(Step::Yield);
    }
    if read_more {
        // Input left (the read budget ran out): the channels run, then the
        // next turn reads on where this one stopped.
        cx.waker().wake_by_ref();
    }
    Poll::Pending
}

/// A logical channel: a WebSocket carried inside the physical one.
///
/// Use [`recv`](Self::recv), [`send`](Self::send) and
/// [`close`](Self::close), or the `futures::Stream` + `futures::Sink`
/// impls; every call reports [`MuxError`].
///
/// Dropping the handle leaves the channel open; call [`close`](Self::close)
/// (closing handshake) or [`drop_channel`](Self::drop_channel). Once every
/// handle of a connection is dropped (its `MuxClient` or `MuxServer`, every
/// `Channel` and `IncomingChannel`), the physical connection is closed
/// (1000) within a quarter of a second.
pub struct Channel {
    shared: Arc<Shared>,
    id: ChannelId,
    protocol: Option<String>,
    extensions: Vec<weft_core::ext::ExtensionHeader>,
    /// `Sink::poll_close` queued its Close.
    closing: bool,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Channel {
    fn new(
        shared: Arc<Shared>,
        id: ChannelId,
        protocol: Option<String>,
        extensions: Vec<weft_core::ext::ExtensionHeader>,
    ) -> Self {
        Channel {
            shared,
            id,
            protocol,
            extensions,
            closing: false,
        }
    }

    /// The channel ID.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The subprotocol agreed for this channel.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The channel's extensions, as its handshake answered them.
    pub fn extensions(&self) -> &[weft_core::ext::ExtensionHeader] {
        &self.extensions
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, MuxError>>> {
        let mut st = self.shared.lock();
        if let Some(m) = st.mux.take_message(self.id) {
            // Reading may free quota to return or end the channel; the
            // driver is only woken when that left something to send.
            st.dispatch();
            if st.mux.has_output() {
                st.kick();
            }
            return Poll::Ready(Some(Ok(m)));
        }
        if st.closed || !st.mux.is_open(self.id) {
            return Poll::Ready(None);
        }
        st.readers.insert(self.id.get(), cx.waker().clone());
        Poll::Pending
    }

    /// Receives the next message; `None` once the channel ended (see
    /// [`end`](Self::end) for how).
    pub async fn recv(&mut self) -> Option<Result<Message, MuxError>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The locked state once the channel may queue more: fails if the
    /// physical connection is gone, waits (registering `cx`) while the
    /// channel has its buffer limit queued.
    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<Result<Locked<'_>, MuxError>> {
        let mut st = self.shared.lock();
        if let Some(code) = st.mux.failure() {
            return Poll::Ready(Err(MuxError::Failed(code)));
        }
        if st.closed {
            return Poll::Ready(Err(MuxError::Failed(DropCode::PHYSICAL_FAILED)));
        }
        if st.mux.pending_bytes(self.id) >= self.shared.max_pending {
            st.writers.push(cx.waker().clone());
            st.kick();
            return Poll::Pending;
        }
        Poll::Ready(Ok(st))
    }

    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        msg: &mut Option<Message>,
        hints: &SendHints,
    ) -> Poll<Result<(), MuxError>> {
        let mut st = ready!(self.poll_room(cx))?;
        let r = st.mux.send(self.id, msg.take().expect("sent once"), hints);
        st.kick();
        Poll::Ready(r)
    }

    /// Waits until the multiplexer has handed everything queued on this
    /// channel to the physical connection (the channel's send quota can
    /// hold that up).
    fn poll_flush_channel(&self, cx: &mut Context<'_>) -> Poll<Result<(), MuxError>> {
        let mut st = self.shared.lock();
        if let Some(code) = st.mux.failure() {
            return Poll::Ready(Err(MuxError::Failed(code)));
        }
        if st.mux.pending_bytes(self.id) == 0 {
            return Poll::Ready(Ok(()));
        }
        if st.closed {
            return Poll::Ready(Err(MuxError::Failed(DropCode::PHYSICAL_FAILED)));
        }
        st.writers.push(cx.waker().clone());
        st.kick();
        Poll::Pending
    }

    /// Queues a message (waits while the channel has more than its buffer
    /// limit queued).
    pub async fn send(&mut self, msg: Message) -> Result<(), MuxError> {
        self.send_with(msg, SendHints::default()).await
    }

    /// [`send`](Self::send) with extension hints.
    pub async fn send_with(&mut self, msg: Message, hints: SendHints) -> Result<(), MuxError> {
        let mut msg = Some(msg);
        poll_fn(|cx| self.poll_send(cx, &mut msg, &hints)).await
    }

    /// Starts the channel's closing handshake and waits until it ends
    /// (incoming messages are discarded).
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), MuxError> {
        self.send(Message::Close(Some(CloseFrame::new(code, reason))))
            .await?;
        self.closing = true;
        while self.recv().await.is_some() {}
        Ok(())
    }

    /// Drops the channel at once (DropChannel), without a closing handshake.
    pub fn drop_channel(&self, code: DropCode) {
        let mut st = self.shared.lock();
        st.mux.drop_channel(self.id, code);
        st.kick();
    }

    /// How the channel ended, once it has.
    pub fn end(&self) -> Option<ChannelEnd> {
        self.shared.lock().ended.get(&self.id.get()).cloned()
    }
}

impl Stream for Channel {
    type Item = Result<Message, MuxError>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_recv(cx)
    }
}

impl Sink<Message> for Channel {
    type Error = MuxError;
    /// Ready while the channel has less than its buffer limit queued.
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), MuxError>> {
        // Ready: the lock is released at once.
        drop(ready!(self.poll_room(cx))?);
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), MuxError> {
        let mut st = self.shared.lock();
        let r = st.mux.send(self.id, item, &SendHints::default());
        st.kick();
        r
    }
    /// Waits until everything queued on the channel was handed to the
    /// physical connection.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), MuxError>> {
        self.poll_flush_channel(cx)
    }
    /// Sends a Close (1000) unless one was sent, then drives the channel
    /// until its closing handshake ends (incoming messages are dropped).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), MuxError>> {
        let this = self.get_mut();
        if !this.closing {
            {
                let mut st = ready!(this.poll_room(cx))?;
                let close = Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")));
                match st.mux.send(this.id, close, &SendHints::default()) {
                    // Already closing, or already gone: nothing to send.
                    Ok(()) | Err(MuxError::Send(_) | MuxError::UnknownChannel(_)) => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                st.kick();
            }
            this.closing = true;
        }
        ready!(this.poll_flush_channel(cx))?;
        while ready!(this.poll_recv(cx)).is_some() {}
        Poll::Ready(Ok(()))
    }
}

/// The client side of a multiplexed connection.
#[derive(Clone)]
pub struct MuxClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MuxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxClient").finish_non_exhaustive()
    }
}

impl MuxClient {
    /// Connects to a `ws://` or `wss://` URL (or a request with custom
    /// headers, see [`IntoClientRequest`]) offering `mux`, and starts the
    /// driver task. Fails if the server does not accept mux. The request's
    /// `Host` (by default the URL's authority) goes into the encapsulated
    /// requests of new channels.
    ///
    /// With [`MuxVariant::A`] in `config` it offers `x-google-mux` instead
    /// and runs variant A's own frame-level driver; `ws://` only there
    /// (connect TLS yourself and use [`MuxClient::connect_on`]).
    pub async fn connect(
        request: impl IntoClientRequest,
        config: MuxConfig,
    ) -> Result<MuxClient, MuxError> {
        if config.variant == MuxVariant::A {
            return variant_a::connect(request, config).await;
        }
        let physical = |e: HandshakeError| MuxError::WebSocket(e.into());
        let request = request.into_client_request().map_err(physical)?;
        let host = match request.headers().get(http::header::HOST) {
            Some(h) => h
                .to_str()
                .map_err(|_| physical(HandshakeError::InvalidRequest("Host is not ASCII".into())))?
                .to_owned(),
            None => Target::from_uri(request.uri()).map_err(physical)?.authority,
        };
        let builder = ClientBuilder::new()
            .extension(MuxFactory {
                quota: config.implicit_quota,
            })
            .config(config.channel.clone());
        let (ws, _) = builder.connect(request).await?;
        // A tuning, not a requirement: the connection works without it.
        let _ = tune_tcp(ws.get_ref().tcp_stream(), &config);
        Self::start(ws, &host, config)
    }

    /// Starts multiplexing over an already negotiated physical connection
    /// (variant B only: a [`WebSocket`] carries messages, and variant A
    /// needs the physical frames; use [`MuxClient::connect_on`] for it).
    pub fn start<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        ws: WebSocket<S>,
        host: &str,
        config: MuxConfig,
    ) -> Result<MuxClient, MuxError> {
        if config.variant == MuxVariant::A {
            return Err(MuxError::WebSocket(
                HandshakeError::InvalidRequest(
                    "variant A cannot run over a WebSocket; use MuxClient::connect_on".into(),
                )
                .into(),
            ));
        }
        if !ws.extensions().iter().any(|e| is_variant_b_token(&e.name)) {
            return Err(MuxError::WebSocket(
                HandshakeError::InvalidResponse("the server did not accept mux".into()).into(),
            ));
        }
        let max_pending = config.max_buffered_per_channel;
        let implicit_protocol = ws.protocol().map(str::to_owned);
        let mux = Multiplexer::client(config, host);
        let shared = Arc::new(Shared {
            state: Mutex::new(new_state(mux)),
            max_pending,
            channel_options: ServerOptions::default(),
            implicit_protocol,
        });
        tokio::spawn(drive(shared.clone(), ws));
        Ok(MuxClient { shared })
    }

    /// The implicitly opened channel 1 (the physical handshake's resource
    /// and subprotocol).
    pub fn implicit_channel(&self) -> Channel {
        Channel::new(
            self.shared.clone(),
            ChannelId::IMPLICIT,
            self.shared.implicit_protocol.clone(),
            Vec::new(),
        )
    }

    /// Opens a logical channel to `path` with extra request headers and
    /// per-channel extension factories. Waits for a slot if the server has
    /// granted none yet (up to 10 s), then for the server's answer.
    pub async fn open_channel(
        &self,
        path: &str,
        headers: &[(String, String)],
        extensions: Vec<Arc<dyn ExtensionFactory>>,
    ) -> Result<Channel, MuxError> {
        self.open_channel_with_protocols(path, headers, &[], extensions)
            .await
    }

    /// [`open_channel`](Self::open_channel) offering `protocols` (most
    /// preferred first); the channel's [`protocol`](Channel::protocol) is
    /// the server's choice.
    pub async fn open_channel_with_protocols(
        &self,
        path: &str,
        headers: &[(String, String)],
        protocols: &[String],
        extensions: Vec<Arc<dyn ExtensionFactory>>,
    ) -> Result<Channel, MuxError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let id = loop {
            let r = {
                // Register for the answer in the same critical section that
                // queues the request, so the answer cannot come first.
                let mut st = self.shared.lock();
                let r = st
                    .mux
                    .open_channel(path, headers, protocols, extensions.clone());
                if let Ok(id) = r {
                    st.opened.insert(id.get(), (None, None));
                    st.kick();
                }
                r
            };
            match r {
                Ok(id) => break id,
                Err(MuxError::NoSlot) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let result = poll_fn(|cx| {
            let mut st = self.shared.lock();
            let closed = st.closed;
            let entry = st.opened.get_mut(&id.get()).expect("inserted above");
            if let Some(r) = entry.0.take() {
                st.opened.remove(&id.get());
                return Poll::Ready(Some(r));
            }
            if closed {
                st.opened.remove(&id.get());
                return Poll::Ready(None);
            }
            entry.1 = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        match result {
            Some(Ok(info)) => Ok(Channel::new(
                self.shared.clone(),
                id,
                info.protocol,
                info.extensions,
            )),
            Some(Err(e)) => Err(e),
            None => Err(MuxError::Failed(DropCode::PHYSICAL_FAILED)),
        }
    }

    /// Open logical channels.
    pub fn channel_count(&self) -> usize {
        self.shared.lock().mux.channel_count()
    }

    /// Closes the physical connection (every channel ends).
    pub fn close(&self) {
        let mut st = self.shared.lock();
        st.close_requested = true;
        st.kick();
    }
}

/// Applies the socket settings of `config` ([`MuxConfig::notsent_lowat`])
/// to the TCP stream of a physical connection. Does nothing on systems
/// without `TCP_NOTSENT_LOWAT`.
fn tune_tcp(stream: &tokio::net::TcpStream, config: &MuxConfig) -> std::io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(lowat) = config.notsent_lowat {
        socket2::SockRef::from(stream).set_tcp_notsent_lowat(lowat)?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (stream, config);
    Ok(())
}

fn new_state(mux: Multiplexer) -> State {
    State {
        mux,
        readers: HashMap::new(),
        writers: Vec::new(),
        opened: HashMap::new(),
        incoming: VecDeque::new(),
        accept_waker: None,
        ended: HashMap::new(),
        closed: false,
        close_requested: false,
        physical_closed: false,
        driver: None,
        wake: Vec::new(),
    }
}

/// A server that accepts mux connections and plain WebSocket clients alike.
#[derive(Clone)]
pub struct MuxServerBuilder {
    physical: ServerBuilder,
    config: MuxConfig,
    channel_options: ServerOptions,
}

impl std::fmt::Debug for MuxServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxServerBuilder").finish_non_exhaustive()
    }
}

/// What [`MuxServerBuilder::accept`] produced.
// Returned once per connection and matched at once: boxing the WebSocket
// would cost every plain client an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Accepted<S> {
    /// A client that did not ask for mux: an ordinary WebSocket.
    Plain(WebSocket<S>),
    /// A multiplexed connection: take its channels from [`MuxServer::next_channel`].
    Mux(MuxServer),
}

impl MuxServerBuilder {
    /// Serves `mux` with `config` on top of `physical`, the settings for the
    /// physical connection and for plain (non-mux) clients: its limits,
    /// request hook and extensions are kept, except that its extensions are
    /// never combined with mux on one connection (see [`UnlessMux`]).
    ///
    /// `channel_options` says what each logical channel may negotiate: its
    /// extensions, and its subprotocol selector and Origin check where it
    /// sets them. Where it does not, the logical channels get `physical`'s:
    /// a channel's encapsulated request is held to the same Origin policy
    /// and chooses its subprotocol as the plain server would (both decided
    /// by the core's
    /// [`negotiate_request`](weft_core::handshake::server::negotiate_request)).
    ///
    /// `config.variant` decides the mux token served: `mux` (B) or
    /// `x-google-mux` (A); the other is declined, so its clients connect
    /// without mux and refuse the connection. A variant A server runs the
    /// physical handshake itself (it needs the raw stream afterwards): it
    /// applies `physical`'s handshake options, limits, handshake timeout and
    /// extensions, but not its connection limit, stats, shutdown or
    /// `on_request` hook, and its connections have no keepalive.
    pub fn new(
        physical: ServerBuilder,
        config: MuxConfig,
        mut channel_options: ServerOptions,
    ) -> Self {
        let physical_options = physical.handshake_options();
        if channel_options.protocol.is_none() {
            channel_options.protocol = physical_options.protocol.clone();
        }
        if channel_options.origin.is_none() {
            channel_options.origin = physical_options.origin.clone();
        }
        let mut options = physical_options.clone();
        let plain = std::mem::take(&mut options.extensions);
        match config.variant {
            MuxVariant::A => options.extensions.push(Arc::new(GoogleMuxFactory)),
            MuxVariant::B => options.extensions.push(Arc::new(MuxFactory { quota: 0 })),
        }
        for f in plain {
            options.extensions.push(Arc::new(UnlessMux(f)));
        }
        MuxServerBuilder {
            physical: physical.options(options),
            config,
            channel_options,
        }
    }

    /// Applies the socket settings of the mux configuration
    /// ([`MuxConfig::notsent_lowat`]) to an accepted TCP stream; call it
    /// before [`accept`](Self::accept). Plain WebSocket clients served on the
    /// stream are not hurt by it (their data in flight is one message, far
    /// below the limit). [`MuxClient::connect`] does the same on its side.
    pub fn tune_tcp(&self, stream: &tokio::net::TcpStream) -> std::io::Result<()> {
        tune_tcp(stream, &self.config)
    }

    /// Accepts a connection: a plain WebSocket, or a mux connection whose
    /// driver task is started.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        &self,
        stream: S,
    ) -> Result<Accepted<S>, MuxError> {
        if self.config.variant == MuxVariant::A {
            return variant_a::accept(self, stream).await;
        }
        let (ws, request) = self.physical.accept_with_request(stream).await?;
        if !ws.extensions().iter().any(|e| is_variant_b_token(&e.name)) {
            return Ok(Accepted::Plain(ws));
        }
        let quota = request
            .headers()
            .get_all("sec-websocket-extensions")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| parse_extensions([v]).ok())
            .flatten()
            .find(|e| is_variant_b_token(&e.name))
            .and_then(|e| {
                e.get("quota")
                    .and_then(|p| p.value.as_deref()?.parse().ok())
            })
            .unwrap_or(0);
        let max_pending = self.config.max_buffered_per_channel;
        let implicit_protocol = ws.protocol().map(str::to_owned);
        let mux = Multiplexer::server(self.config.clone(), &request, quota);
        let mut state = new_state(mux);
        state.incoming.push_back((ChannelId::IMPLICIT, request));
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            max_pending,
            channel_options: self.channel_options.clone(),
            implicit_protocol,
        });
        tokio::spawn(drive(shared.clone(), ws));
        Ok(Accepted::Mux(MuxServer { shared }))
    }
}

/// The server side of a multiplexed connection.
pub struct MuxServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MuxServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxServer").finish_non_exhaustive()
    }
}

/// A channel a client asked for; accept or reject it.
pub struct IncomingChannel {
    shared: Arc<Shared>,
    id: ChannelId,
    request: http::Request<()>,
}

impl std::fmt::Debug for IncomingChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingChannel")
            .field("id", &self.id)
            .field("path", &self.request.uri().path())
            .finish()
    }
}

impl IncomingChannel {
    /// The channel ID (1 for the implicit channel).
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The encapsulated request (for channel 1: the physical request).
    pub fn request(&self) -> &http::Request<()> {
        &self.request
    }

    /// Accepts the channel with the builder's channel options (see
    /// [`MuxServerBuilder::new`] and [`Multiplexer::accept_channel`]):
    /// fails with [`MuxError::Handshake`], the client being told, when the
    /// Origin check refuses the request or its offers are malformed.
    /// Channel 1 was decided by the physical handshake and has its
    /// subprotocol.
    pub fn accept(self) -> Result<Channel, MuxError> {
        let accepted = if self.id == ChannelId::IMPLICIT {
            Ok(ChannelAccepted {
                protocol: self.shared.implicit_protocol.clone(),
                extensions: Vec::new(),
            })
        } else {
            let options = &self.shared.channel_options;
            let mut st = self.shared.lock();
            let r = st.mux.accept_channel(self.id, options);
            // The answer (or the refusal) is queued: wake the driver.
            st.kick();
            r
        };
        let accepted = accepted?;
        Ok(Channel::new(
            self.shared.clone(),
            self.id,
            accepted.protocol,
            accepted.extensions,
        ))
    }

    /// Refuses the channel with an HTTP status (channel 1 is dropped instead).
    pub fn reject(self, status: http::StatusCode) -> Result<(), MuxError> {
        let mut st = self.shared.lock();
        if self.id == ChannelId::IMPLICIT {
            st.mux
                .drop_channel(self.id, DropCode(4000 + status.as_u16().min(999)));
        } else {
            st.mux.reject_channel(self.id, status)?;
        }
        st.kick();
        Ok(())
    }
}

impl MuxServer {
    /// The next channel a client asked for (the implicit channel 1 first);
    /// `None` once the physical connection ended.
    pub async fn next_channel(&mut self) -> Option<IncomingChannel> {
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            if let Some((id, request)) = st.incoming.pop_front() {
                return Poll::Ready(Some(IncomingChannel {
                    shared: self.shared.clone(),
                    id,
                    request,
                }));
            }
            if st.closed {
                return Poll::Ready(None);
            }
            st.accept_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Channels currently open.
    pub fn channel_count(&self) -> usize {
        self.shared.lock().mux.channel_count()
    }

    /// Closes the physical connection.
    pub fn close(&self) {
        let mut st = self.shared.lock();
        st.close_requested = true;
        st.kick();
    }
}
