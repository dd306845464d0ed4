//! The broker server: accepts WebSocket connections that negotiate
//! `mbws.weft` or `mblws.weft` and runs one task per connection over a
//! [`Backend`] (memory by default, or Redis).
//!
//! Each connection task waits on five things at once: the next WebSocket
//! message, a wakeup from the backend (deliveries in its outbox), the
//! outcome of a deferred write (Redis: a SEND stored, so its RECEIPT can
//! go out), a timer (keepalive and idle redelivery) and the server's
//! shutdown signal.
//!
//! Keepalive is the broker's own: weft-core answers Pings but does not send
//! them, so the connection task sends a Ping after
//! [`Keepalive::interval`] without hearing from the peer, and closes the
//! connection if nothing (a Pong or any other frame) arrives within
//! [`Keepalive::timeout`] after it. A dead peer's subscriptions are then
//! closed and their unacknowledged messages redelivered.

use crate::backend::{Backend, Completion, Session};
use crate::frame::{
    self, AckMode, ErrorCode, ErrorFrame, Form, Frame, Limits, MessageFrame, Profile, Receipt,
    References,
};
use crate::memory::{Delivery, MemoryConfig, Refusal, SendOutcome};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use weft_core::{CloseCode, Message, ServerBuilder, WebSocket};
use weft_mux::{Accepted, Channel, MuxConfig, MuxServer, MuxServerBuilder};

use crate::frame::{Destination, DestinationKind};
use crate::link::{self, LinkConfig, LinkStatus};
use std::sync::Arc;

/// The body of the HTTP 400 answer to a request that offers neither token.
pub const REFUSAL_BODY: &str = "weft-broker speaks the WebSocket subprotocols mbws.weft and \
     mblws.weft: offer one of them in Sec-WebSocket-Protocol\n";

/// How WebSocket messages beyond the body limit are sized: the largest
/// header the protocol allows (32 fields of 64 + 1024 bytes) fits in it.
const HEADER_ALLOWANCE: usize = 64 << 10;

/// Server keepalive: Ping an idle peer, drop one that stops answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence from the peer after which the broker sends a Ping
    /// (default 20 s).
    pub interval: Duration,
    /// How long after that Ping the broker waits for any frame before it
    /// closes the connection (default 20 s).
    pub timeout: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(20),
            timeout: Duration::from_secs(20),
        }
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The memory backend's limits (used by [`Server::bind`]; a backend
    /// given to [`Server::bind_with`] has its own).
    pub memory: MemoryConfig,
    /// Keepalive (default on, see [`Keepalive`]); `None` turns it off.
    pub keepalive: Option<Keepalive>,
    /// Largest body accepted in a SEND (default 1 MiB). WebSocket messages
    /// over this plus 64 KiB are refused by the WebSocket layer with 1009.
    pub max_body: usize,
    /// How long a graceful shutdown waits for connections to finish their
    /// closing handshakes (default 5 s).
    pub shutdown_grace: Duration,
    /// Accept multiplexed connections (weft-mux, the `mux` extension) next
    /// to plain ones, each logical channel an ordinary `mbws.weft` session:
    /// what [broker links](crate::link) from other nodes use. Default on
    /// (`MuxConfig::default()`); `None` serves plain WebSockets only, and a
    /// node linking to this one is refused (its handshake succeeds
    /// without mux and the link reports it).
    pub mux: Option<MuxConfig>,
    /// Links to other nodes (see [`crate::link`]): for each, one
    /// multiplexed connection carrying this node's messages for the linked
    /// destinations. Started by [`Server::run_until`]. Default none.
    pub links: Vec<LinkConfig>,
    /// This node's name in links: sent to the nodes it links to and put in
    /// the `weft-forwarded` header of the messages it forwards; 1 to 64
    /// bytes of `A-Z a-z 0-9 _ . -`. Default: a random 64-bit hex string.
    pub node_id: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            memory: MemoryConfig::default(),
            keepalive: Some(Keepalive::default()),
            max_body: frame::DEFAULT_MAX_BODY,
            shutdown_grace: Duration::from_secs(5),
            mux: Some(MuxConfig::default()),
            links: Vec::new(),
            node_id: format!("{:016x}", rand::random::<u64>()),
        }
    }
}

/// True if a request offers a subprotocol the broker speaks.
fn offers_our_protocol(request: &http::Request<()>) -> bool {
    request
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| Profile::from_token(p.trim()).is_some())
}

fn refusal_response() -> http::Response<String> {
    http::Response::builder()
        .status(http::StatusCode::BAD_REQUEST)
        .header(http::header::CONNECTION, "close")
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(REFUSAL_BODY.to_owned())
        .expect("static response parts are valid")
}

/// The weft server settings the broker uses: both tokens, the refusal hook,
/// and message limits derived from `config`.
pub fn websocket_builder(config: &ServerConfig) -> ServerBuilder {
    let max = config.max_body.saturating_add(HEADER_ALLOWANCE);
    ServerBuilder::new()
        .protocols(&[frame::PROTOCOL, frame::PROTOCOL_LIGHT])
        .on_request(|req| {
            if offers_our_protocol(req) {
                None
            } else {
                Some(refusal_response())
            }
        })
        .config(
            weft_core::Config::default()
                .max_message_size(max)
                .max_frame_size(max),
        )
}

/// A bound broker server. See the [crate docs](crate) for an example.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    backend: Backend,
    ws: ServerBuilder,
    mux: Option<MuxServerBuilder>,
    config: ServerConfig,
    links: Vec<Arc<LinkStatus>>,
}

impl Server {
    /// Binds `addr` with a fresh memory backend (limits from
    /// [`ServerConfig::memory`]).
    pub async fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> std::io::Result<Server> {
        let backend = Backend::memory(config.memory.clone());
        Server::bind_with(addr, config, backend).await
    }

    /// Binds `addr` over `backend` (for example [`Backend::redis`]).
    /// Fails with `InvalidInput` if a link in `config` cannot run (see
    /// [`link::check`]) or the node id cannot name a node
    /// ([`link::valid_node_id`]).
    pub async fn bind_with(
        addr: impl ToSocketAddrs,
        config: ServerConfig,
        backend: Backend,
    ) -> std::io::Result<Server> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        for l in &config.links {
            link::check(l, &backend).map_err(invalid)?;
        }
        if !config.links.is_empty() && !link::valid_node_id(&config.node_id) {
            return Err(invalid(format!(
                "node id {:?} must be 1 to 64 bytes of A-Z a-z 0-9 _ . -",
                config.node_id
            )));
        }
        let listener = TcpListener::bind(addr).await?;
        let ws = websocket_builder(&config);
        let mux = config.mux.clone().map(|m| {
            MuxServerBuilder::new(
                ws.clone(),
                m,
                weft_core::handshake::server::ServerOptions::default(),
            )
        });
        let links = config
            .links
            .iter()
            .map(|l| Arc::new(LinkStatus::new(&l.url)))
            .collect();
        Ok(Server {
            listener,
            backend,
            ws,
            mux,
            config,
            links,
        })
    }

    /// The state of each of [`ServerConfig::links`], in that order (live:
    /// the handles keep counting while the server runs).
    pub fn link_status(&self) -> Vec<Arc<LinkStatus>> {
        self.links.clone()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The backend, shared with the connections.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Serves until the task is dropped.
    pub async fn run(self) -> std::io::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `shutdown` completes, then stops accepting, closes every
    /// connection with 1001 (going away) and waits up to
    /// [`ServerConfig::shutdown_grace`] for them to finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (l, status) in self.config.links.iter().zip(&self.links) {
            tasks.spawn(link::run(
                l.clone(),
                self.config.node_id.clone(),
                self.backend.clone(),
                status.clone(),
                stop_rx.clone(),
            ));
        }
        let linked_out: Arc<Vec<Destination>> = Arc::new(
            self.config
                .links
                .iter()
                .flat_map(|l| l.destinations.iter().cloned())
                .collect(),
        );
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (stream, _) = match accepted {
                        Ok(a) => a,
                        // Out of file descriptors and the like: back off
                        // briefly rather than spin or stop serving.
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let ws = self.ws.clone();
                    let mux = self.mux.clone();
                    let backend = self.backend.clone();
                    let settings = ConnectionSettings {
                        limits: Limits { max_body: self.config.max_body },
                        keepalive: self.config.keepalive,
                    };
                    let stop = stop_rx.clone();
                    let linked_out = linked_out.clone();
                    tasks.spawn(async move {
                        match mux {
                            None => {
                                if let Ok(ws) = ws.accept(stream).await {
                                    serve_connection(ws, &backend, settings, stop).await;
                                }
                            }
                            Some(mux) => {
                                let _ = mux.tune_tcp(&stream);
                                match mux.accept(stream).await {
                                    Ok(Accepted::Plain(ws)) => {
                                        serve_connection(ws, &backend, settings, stop).await;
                                    }
                                    Ok(Accepted::Mux(m)) => {
                                        serve_mux(m, backend, settings, stop, linked_out).await;
                                    }
                                    Err(_) => {}
                                }
                            }
                        }
                    });
                }
                // Reap finished connections so the set stays small.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(self.listener);
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        Ok(())
    }
}

/// Per-connection settings of [`serve_connection`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionSettings {
    /// Frame limits.
    pub limits: Limits,
    /// Keepalive, if any.
    pub keepalive: Option<Keepalive>,
}

/// How often the connection's timer runs: often enough for the keepalive
/// and for idle redelivery to act within a quarter of their periods.
fn tick_period(keepalive: Option<Keepalive>, redeliver_after: Option<Duration>) -> Duration {
    let mut p = Duration::from_secs(1);
    if let Some(k) = keepalive {
        p = p.min(k.interval.min(k.timeout) / 4);
    }
    if let Some(r) = redeliver_after {
        p = p.min(r / 4);
    }
    p.max(Duration::from_millis(5))
}

/// Runs one accepted connection to its end: reads frames and answers them,
/// writes deliveries as the backend assigns them, keeps the connection
/// alive. On return the backend has closed the connection's session (its
/// unacknowledged deliveries are redelivered).
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocket<S>,
    backend: &Backend,
    settings: ConnectionSettings,
    stop: watch::Receiver<bool>,
) {
    serve(ws, backend, settings, stop).await;
}

/// [`serve_connection`] for one logical channel of a multiplexed
/// connection (a broker link's, or any mux client's): the same session.
pub async fn serve_channel(
    channel: Channel,
    backend: &Backend,
    settings: ConnectionSettings,
    stop: watch::Receiver<bool>,
) {
    serve(channel, backend, settings, stop).await;
}

/// Serves a multiplexed connection: every logical channel that offers
/// `mbws.weft` or `mblws.weft` becomes a session of its own (a channel
/// offering neither is refused with HTTP 400, like a plain request). A
/// channel a broker link opens for a queue this node itself links out is
/// refused with 409 (Conflict): a queue links in one direction only (see
/// PROTOCOL.md, "Broker links").
async fn serve_mux(
    mut mux: MuxServer,
    backend: Backend,
    settings: ConnectionSettings,
    mut stop: watch::Receiver<bool>,
    linked_out: Arc<Vec<Destination>>,
) {
    let mut channels = JoinSet::new();
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break; // each channel task closes its channel
                }
            }
            incoming = mux.next_channel() => {
                let Some(incoming) = incoming else { break };
                let request = incoming.request();
                if !offers_our_protocol(request) {
                    let _ = incoming.reject(http::StatusCode::BAD_REQUEST);
                    continue;
                }
                let linked_both_ways = request
                    .headers()
                    .get(link::DESTINATION_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| Destination::new(v).ok())
                    .is_some_and(|d| d.kind() == DestinationKind::Queue && linked_out.contains(&d));
                if linked_both_ways {
                    let _ = incoming.reject(http::StatusCode::CONFLICT);
                    continue;
                }
                if let Ok(channel) = incoming.accept() {
                    let backend = backend.clone();
                    let stop = stop.clone();
                    channels.spawn(async move {
                        serve_channel(channel, &backend, settings, stop).await;
                    });
                }
            }
            Some(_) = channels.join_next(), if !channels.is_empty() => {}
        }
    }
    while channels.join_next().await.is_some() {}
    mux.close();
}

/// What [`serve`] needs from a connection: a plain WebSocket or a mux
/// channel. Errors only end the connection, so they carry nothing.
trait Transport {
    fn protocol(&self) -> Option<&str>;
    /// Cancel-safe: `serve` selects on it.
    async fn recv(&mut self) -> Option<Result<Message, Gone>>;
    /// Queues a message (a WebSocket writes it at its next flush).
    async fn feed(&mut self, msg: Message) -> Result<(), Gone>;
    /// Queues a message and writes it out.
    async fn send(&mut self, msg: Message) -> Result<(), Gone>;
    async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Gone>;
}

/// The connection failed or ended.
struct Gone;

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for WebSocket<S> {
    fn protocol(&self) -> Option<&str> {
        WebSocket::protocol(self)
    }
    async fn recv(&mut self) -> Option<Result<Message, Gone>> {
        WebSocket::recv(self).await.map(|r| r.map_err(|_| Gone))
    }
    async fn feed(&mut self, msg: Message) -> Result<(), Gone> {
        WebSocket::feed(self, msg).await.map_err(|_| Gone)
    }
    async fn send(&mut self, msg: Message) -> Result<(), Gone> {
        WebSocket::send(self, msg).await.map_err(|_| Gone)
    }
    async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Gone> {
        WebSocket::close(self, code, reason).await.map_err(|_| Gone)
    }
}

impl Transport for Channel {
    fn protocol(&self) -> Option<&str> {
        Channel::protocol(self)
    }
    async fn recv(&mut self) -> Option<Result<Message, Gone>> {
        Channel::recv(self).await.map(|r| r.map_err(|_| Gone))
    }
    async fn feed(&mut self, msg: Message) -> Result<(), Gone> {
        // The mux driver writes queued messages by itself.
        Channel::send(self, msg).await.map_err(|_| Gone)
    }
    async fn send(&mut self, msg: Message) -> Result<(), Gone> {
        Channel::send(self, msg).await.map_err(|_| Gone)
    }
    async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Gone> {
        Channel::close(self, code, reason).await.map_err(|_| Gone)
    }
}

async fn serve<T: Transport>(
    mut ws: T,
    backend: &Backend,
    settings: ConnectionSettings,
    mut stop: watch::Receiver<bool>,
) {
    let Some(profile) = ws.protocol().and_then(Profile::from_token) else {
        // Only reachable through a ServerBuilder without the broker's hook.
        let _ = ws
            .close(CloseCode::PROTOCOL_ERROR, "no mbws.weft subprotocol")
            .await;
        return;
    };
    let (wake_tx, mut wake) = mpsc::channel(1);
    let mut conn = Connection {
        session: backend.open(wake_tx),
        profile,
        limits: settings.limits,
        form: Form::Binary,
    };
    let mut tick =
        tokio::time::interval(tick_period(settings.keepalive, backend.redeliver_after()));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let result: Result<(), Gone> = async {
        loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        ws.close(CloseCode::GOING_AWAY, "broker shutting down").await?;
                        return Ok(());
                    }
                }
                _ = wake.recv() => conn.write_deliveries(&mut ws).await?,
                done = conn.session.next_completion() => {
                    let reply = conn.completed(done);
                    if let Some(reply) = reply {
                        ws.feed(reply).await?;
                    }
                    // Keep writing finished SENDs before the next read.
                    while let Some(reply) = conn.try_completion() {
                        ws.feed(reply).await?;
                    }
                    conn.write_deliveries(&mut ws).await?;
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if conn.session.redeliver_idle(now) > 0 {
                        conn.write_deliveries(&mut ws).await?;
                    }
                    if let Some(k) = settings.keepalive {
                        if let Some(sent) = ping_sent {
                            if now.duration_since(sent) >= k.timeout {
                                // The peer is gone or stuck: do not wait
                                // on a closing handshake it will not do.
                                let _ = tokio::time::timeout(
                                    Duration::from_millis(100),
                                    ws.close(CloseCode::GOING_AWAY, "keepalive timeout"),
                                )
                                .await;
                                return Ok(());
                            }
                        } else if now.duration_since(last_heard) >= k.interval {
                            ws.send(Message::Ping(bytes::Bytes::from_static(b"weft-broker")))
                                .await?;
                            ping_sent = Some(now);
                        }
                    }
                }
                msg = ws.recv() => {
                    last_heard = Instant::now();
                    ping_sent = None;
                    match msg {
                        None => return Ok(()),
                        Some(Err(e)) => return Err(e),
                        Some(Ok(msg)) if msg.is_data() => {
                            if let Some(reply) = conn.handle(&msg).await {
                                ws.feed(reply).await?;
                            }
                            // Deferred outcomes that finished meanwhile
                            // (this also bounds how many wait).
                            while let Some(reply) = conn.try_completion() {
                                ws.feed(reply).await?;
                            }
                            // Frames often free credit for this connection
                            // (ACK, CREDIT, SUBSCRIBE): write what it allowed
                            // after the reply.
                            conn.write_deliveries(&mut ws).await?;
                        }
                        Some(Ok(_)) => {}
                    }
                }
            }
        }
    }
    .await;
    let _ = result;
    conn.session.close().await;
}

struct Connection {
    session: Session,
    profile: Profile,
    limits: Limits,
    /// The form of the frame being handled (replies use it too).
    form: Form,
}

impl Connection {
    /// Queues the connection's pending deliveries (the next `recv` flushes).
    async fn write_deliveries<T: Transport>(&mut self, ws: &mut T) -> Result<(), Gone> {
        let out = self.session.take_outbox();
        for d in out {
            ws.feed(encode_delivery(d)).await?;
        }
        Ok(())
    }

    /// The reply to a deferred write's outcome, encoded.
    fn completed(&self, c: Completion) -> Option<Message> {
        let frame = match c {
            Completion::Send(id, Ok(_)) => {
                if self.profile == Profile::Light {
                    return None;
                }
                Frame::Receipt(Receipt::Message(id))
            }
            Completion::Send(id, Err(r)) => refused(
                r,
                References {
                    message_id: Some(id),
                    ..References::default()
                },
            ),
            Completion::Settle(delivery_id, r) => refused(
                r,
                References {
                    delivery_id: Some(delivery_id),
                    ..References::default()
                },
            ),
        };
        // Replies use the form of the last frame read.
        Some(frame::encode(&frame, self.form, &self.limits).expect("replies have no body"))
    }

    /// A deferred outcome that is already there, without waiting.
    fn try_completion(&mut self) -> Option<Message> {
        while let Some(c) = self.session.try_completion() {
            if let Some(m) = self.completed(c) {
                return Some(m);
            }
        }
        None
    }

    /// Handles one frame; returns the reply to send, if any.
    async fn handle(&mut self, msg: &Message) -> Option<Message> {
        let form = match msg {
            Message::Text(_) => Form::Text,
            _ => Form::Binary,
        };
        self.form = form;
        let reply = match frame::decode_from_client(msg, &self.limits) {
            Err(e) => Some(error(e.code(), &e.to_string(), frame::references(msg))),
            Ok(f) => self.dispatch(f).await,
        }?;
        Some(frame::encode(&reply, form, &self.limits).expect("replies have no body"))
    }

    async fn dispatch(&mut self, f: Frame) -> Option<Frame> {
        let light = self.profile == Profile::Light;
        let session = &mut self.session;
        match f {
            Frame::Send(s) => {
                let refs = References {
                    message_id: Some(s.message_id.clone()),
                    ..References::default()
                };
                let receipt = Frame::Receipt(Receipt::Message(s.message_id.clone()));
                match session.send(s).await {
                    None => None, // the RECEIPT follows as a Completion
                    Some(Ok(SendOutcome::Stored | SendOutcome::Duplicate)) if light => None,
                    Some(Ok(_)) => Some(receipt),
                    Some(Err(r)) => Some(refused(r, refs)),
                }
            }
            Frame::Subscribe(s) => {
                let refs = References {
                    subscription: Some(s.subscription.clone()),
                    ..References::default()
                };
                if light && s.ack == AckMode::Client {
                    return Some(not_in_profile("ack: client", refs));
                }
                let receipt = Frame::Receipt(Receipt::Subscription(s.subscription.clone()));
                // Deliveries travel in the form of their SUBSCRIBE.
                match session.subscribe(s, self.form).await {
                    Ok(()) => Some(receipt),
                    Err(r) => Some(refused(r, refs)),
                }
            }
            Frame::Unsubscribe { subscription } => {
                let refs = References {
                    subscription: Some(subscription.clone()),
                    ..References::default()
                };
                match session.unsubscribe(&subscription).await {
                    Ok(()) => Some(Frame::Receipt(Receipt::Subscription(subscription))),
                    Err(r) => Some(refused(r, refs)),
                }
            }
            Frame::Ack { delivery_id } | Frame::Nack { delivery_id } => {
                let refs = References {
                    delivery_id: Some(delivery_id),
                    ..References::default()
                };
                if light {
                    return Some(not_in_profile("ACK and NACK", refs));
                }
                let r = if matches!(f, Frame::Ack { .. }) {
                    session.ack(delivery_id).await
                } else {
                    session.nack(delivery_id).await
                };
                r.err().map(|r| refused(r, refs))
            }
            Frame::Credit {
                subscription,
                credit,
            } => {
                let refs = References {
                    subscription: Some(subscription.clone()),
                    ..References::default()
                };
                session
                    .credit(&subscription, credit)
                    .err()
                    .map(|r| refused(r, refs))
            }
            // `decode_from_client` refuses the broker's own operations.
            Frame::Receipt(_) | Frame::Message(_) | Frame::Error(_) => Some(error(
                ErrorCode::UNKNOWN_OPERATION,
                "not a client operation",
                References::default(),
            )),
        }
    }
}

fn encode_delivery(d: Delivery) -> Message {
    let form = d.form;
    let frame = Frame::Message(MessageFrame {
        subscription: d.subscription,
        delivery_id: d.delivery_id,
        destination: d.message.destination.clone(),
        message_id: d.message.message_id.clone(),
        redelivered: d.redelivered,
        headers: d.message.headers.clone(),
        body: d.message.body.clone(),
    });
    // The body was accepted under the same limit, so only the text
    // form can fail (a body that is not UTF-8): send it as binary.
    let no_limit = Limits {
        max_body: usize::MAX,
    };
    frame::encode(&frame, form, &no_limit)
        .or_else(|_| frame::encode(&frame, Form::Binary, &no_limit))
        .expect("the binary form encodes every frame")
}

fn error(code: ErrorCode, message: &str, refs: References) -> Frame {
    Frame::Error(ErrorFrame::new(code, message, refs))
}

fn refused(r: Refusal, refs: References) -> Frame {
    error(r.code, &r.message, refs)
}

fn not_in_profile(what: &str, refs: References) -> Frame {
    error(
        ErrorCode::NOT_IN_PROFILE,
        &format!("{what}: not available in the light profile (mblws.weft)"),
        refs,
    )
}
