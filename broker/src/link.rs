//! Broker links: one node forwards its messages for some destinations to
//! another node over **one** multiplexed WebSocket (weft-mux), one logical
//! channel per linked destination, each channel an ordinary `mbws.weft`
//! session (PROTOCOL.md, "Broker links").
//!
//! A link needs no frame of its own. On the linking node (A) each linked
//! destination gets a *forwarder*: a local session of A's backend with one
//! `ack: client` subscription to the destination, whose credit is the
//! link's [`window`](LinkConfig::window). Each local delivery is sent on
//! the destination's channel as a SEND with the message's own id; the
//! other node (B) stores it and answers RECEIPT, and only then does the
//! forwarder ACK the local delivery, which releases A's copy and returns
//! the credit. So:
//!
//! - a producer's SEND is acknowledged by A once A stored it, as always;
//!   A keeps the message until B has stored it (at least once across the
//!   link: when the link drops, A's unacknowledged deliveries go back to
//!   its queue, marked redelivered, and are sent again after the
//!   reconnection; B's deduplication window drops the copies it has seen,
//!   a restarted memory node B stores them again: duplicates, never loss);
//! - at most `window` messages per destination are in flight, so the link
//!   holds at most that many on A's side and B's answers (RECEIPT or
//!   ERROR, a few dozen bytes each) can never fill the channel; a full
//!   destination on B refuses with 300, the forwarder resends after a
//!   back-off, A's queue fills and A's producers are refused with 300 in
//!   turn: memory stays bounded on both nodes;
//! - messages travel in the order A delivers them (FIFO, redeliveries
//!   first) on one channel, which B handles in order.
//!
//! ```text
//! node A                                            node B
//!  producer --SEND--> A's queue /queue/a             (any listener, mux accepted)
//!                      | deliveries (credit = window)
//!                      v
//!  forwarder /queue/a --SEND (same message id, weft-forwarded: A)--> channel 3 --> B's /queue/a --> consumers
//!      ^ ACK local      <------------------------- RECEIPT ---------
//!  forwarder /topic/b --SEND-----------------------------------------> channel 5 --> B's /topic/b
//!  (channel 1, the physical handshake's, is unused; one TCP connection)
//! ```
//!
//! The supervisor ([`run`]) connects with [`MuxClient::connect`], opens the
//! channels, runs the forwarders, and when anything fails (the connection,
//! a channel, a refusal) ends them all (their sessions close, so their
//! deliveries go back to A's queue), waits with exponential back-off
//! ([`LinkConfig::backoff_min`] to [`LinkConfig::backoff_max`]) and
//! connects again. [`LinkStatus`] counts what happened and keeps the last
//! error.
//!
//! Loops: a message crosses at most one link. Forwarded SENDs carry the
//! header `weft-forwarded` (the forwarding node's id); a forwarder ACKs
//! topic messages that carry it without sending them on (its subscription
//! got its own copy, nobody else loses anything), so two nodes may link a
//! topic to each other. A queue is linked in one direction only: a node
//! refuses (HTTP 409 on the channel's handshake) a link channel for a queue
//! it links out itself. Longer cycles of queue links are not detected: do
//! not configure them.
//!
//! Only the memory backend links: nodes on one Redis share its
//! destinations already and need no link ([`check`] refuses Redis).

use crate::backend::{Backend, Session};
use crate::frame::{
    self, AckMode, Destination, DestinationKind, Form, Frame, Limits, MessageId, Receipt,
    SendFrame, SubscribeFrame, SubscriptionId,
};
use crate::memory::Delivery;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use weft_core::{CloseCode, IntoClientRequest, Message};
use weft_mux::{Channel, MuxClient, MuxConfig};

/// The header forwarded SENDs carry: the forwarding node's id.
pub const FORWARDED_HEADER: &str = "weft-forwarded";
/// Request header of a link's physical handshake and of each of its
/// channels: the linking node's id.
pub const LINK_HEADER: &str = "weft-link";
/// Request header of a link channel: the destination it carries.
pub const DESTINATION_HEADER: &str = "weft-link-destination";

/// One link: where to, which destinations, how.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The other node, `ws://HOST:PORT/` (its listener accepts mux).
    pub url: String,
    /// The destinations whose messages this node forwards there (at least
    /// one). Queues: the link is one more competing consumer of the local
    /// queue, so with no local consumer every message goes to the other
    /// node. Topics: the link is one more subscription, so local
    /// subscribers get every message and the other node's too.
    pub destinations: Vec<Destination>,
    /// Messages in flight per destination: sent and not yet answered by
    /// the other node (the local subscription's credit; at least 1, at most
    /// the backend's `max_credit`). Default 64.
    pub window: u32,
    /// First wait before reconnecting, and before resending a message the
    /// other node refused for now (300, 5xx). Default 100 ms.
    pub backoff_min: Duration,
    /// Longest such wait (the back-off doubles up to it). Default 5 s.
    pub backoff_max: Duration,
    /// Silence on a channel after which the forwarder pings the other
    /// node; the link is dropped if nothing arrives for as long again.
    /// Default 20 s.
    pub keepalive: Duration,
    /// The multiplexed connection's settings.
    pub mux: MuxConfig,
    /// Also print every failure and reconnection to stderr (the binary
    /// does; [`LinkStatus`] has them either way). Default false.
    pub log_to_stderr: bool,
}

impl LinkConfig {
    /// A link to `url` for `destinations`, with default settings.
    pub fn new(url: impl Into<String>, destinations: Vec<Destination>) -> LinkConfig {
        LinkConfig {
            url: url.into(),
            destinations,
            window: 64,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            keepalive: Duration::from_secs(20),
            mux: MuxConfig::default(),
            log_to_stderr: false,
        }
    }
}

/// True if `id` can name a node in links: 1 to 64 bytes of
/// `A-Z a-z 0-9 _ . -` (it travels in a request header and in the
/// `weft-forwarded` header).
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Why a link configuration cannot run on `backend`: a Redis backend, no
/// destinations, a window of 0 or over the backend's `max_credit`, a
/// back-off of 0 or with `backoff_min > backoff_max`, a keepalive of 0, or
/// a URL that is not one.
pub fn check(config: &LinkConfig, backend: &Backend) -> Result<(), String> {
    let max_credit = match backend {
        Backend::Memory(m) => m.lock().config().max_credit,
        Backend::Redis(_) => {
            return Err(format!(
                "link to {}: Redis nodes share their destinations through Redis and need no \
                 link; links run on the memory backend only",
                config.url
            ));
        }
    };
    if config.destinations.is_empty() {
        return Err(format!("link to {}: no destinations to link", config.url));
    }
    if config.window == 0 || config.window > max_credit {
        return Err(format!(
            "link to {}: window {} must be 1..={max_credit} (the backend's max_credit)",
            config.url, config.window
        ));
    }
    if config.backoff_min.is_zero() || config.backoff_max < config.backoff_min {
        return Err(format!(
            "link to {}: backoff_min must be above 0 and at most backoff_max",
            config.url
        ));
    }
    if config.keepalive.is_zero() {
        return Err(format!("link to {}: keepalive must be above 0", config.url));
    }
    config
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("link to {}: {e}", config.url))?;
    Ok(())
}

/// What a link did so far; shared with its task (see
/// [`Server::link_status`](crate::Server::link_status)).
#[derive(Debug)]
pub struct LinkStatus {
    url: String,
    connected: AtomicBool,
    connects: AtomicU64,
    failures: AtomicU64,
    forwarded: AtomicU64,
    resent: AtomicU64,
    dropped: AtomicU64,
    skipped: AtomicU64,
    in_flight: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl LinkStatus {
    /// A fresh status for a link to `url`.
    pub fn new(url: &str) -> LinkStatus {
        LinkStatus {
            url: url.to_owned(),
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// The other node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// Connected, with every channel open.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    /// Times the link connected and opened all its channels.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }
    /// Times connecting failed or an established link dropped.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
    /// Messages the other node acknowledged (RECEIPT), so released here.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
    /// Sends repeated after the other node refused them for now (300 or
    /// 5xx). Resends after a reconnection are not counted here: they are
    /// redeliveries of the local queue.
    pub fn resent(&self) -> u64 {
        self.resent.load(Ordering::Relaxed)
    }
    /// Messages given up: refused by the other node as invalid (1xx or 2xx,
    /// such as a body over its limit), or topic messages whose 24
    /// application headers leave no room for the `weft-forwarded` mark.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Topic messages not sent on because another link forwarded them here.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
    /// Messages sent and not yet answered, over all destinations (at most
    /// `destinations x window`).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
    /// The last failure, for people.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("not poisoned").clone()
    }

    fn fail(&self, error: &str, log: bool) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().expect("not poisoned") = Some(error.to_owned());
        if log {
            eprintln!("weft-broker: link to {}: {error}", self.url);
        }
    }
}

/// Runs a link until `stop` turns true: connects, forwards, reconnects.
/// See the [module docs](self).
pub async fn run(
    config: LinkConfig,
    node_id: String,
    backend: Backend,
    status: Arc<LinkStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = config.backoff_min;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        match connect_and_forward(&config, &node_id, &backend, &status, &mut stop).await {
            Ok(()) => return, // stopped
            Err(e) => {
                status.connected.store(false, Ordering::Relaxed);
                // A link that ran for a while starts its back-off afresh.
                if started.elapsed() >= config.backoff_max {
                    backoff = config.backoff_min;
                }
                status.fail(
                    &format!("{e}; retrying in {} ms", backoff.as_millis()),
                    config.log_to_stderr,
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {}
        }
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

/// One connection's life: `Ok` when stopped, `Err` when it failed.
async fn connect_and_forward(
    config: &LinkConfig,
    node_id: &str,
    backend: &Backend,
    status: &Arc<LinkStatus>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let header = |v: &str| http::HeaderValue::from_str(v).map_err(|e| e.to_string());
    let headers = request.headers_mut();
    // The physical handshake offers mbws.weft too, so a broker's
    // subprotocol check lets it through (channel 1 stays unused).
    headers.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        header(frame::PROTOCOL)?,
    );
    headers.insert(LINK_HEADER, header(node_id)?);
    let mux = MuxClient::connect(request, config.mux.clone())
        .await
        .map_err(|e| match e {
            weft_mux::MuxError::WebSocket(weft_core::Error::Handshake(
                weft_core::handshake::HandshakeError::InvalidResponse(m),
            )) if m.contains("mux") => format!(
                "the other node does not accept multiplexed connections ({m}); it must be a \
                 weft-broker with mux on"
            ),
            e => format!("cannot connect: {e}"),
        })?;
    let result = async {
        let mut channels = Vec::new();
        for d in &config.destinations {
            let ch = mux
                .open_channel_with_protocols(
                    "/",
                    &[
                        (LINK_HEADER.to_owned(), node_id.to_owned()),
                        (DESTINATION_HEADER.to_owned(), d.as_str().to_owned()),
                    ],
                    &[frame::PROTOCOL.to_owned()],
                    Vec::new(),
                )
                .await
                .map_err(|e| match e {
                    weft_mux::MuxError::Rejected(http::StatusCode::CONFLICT) => format!(
                        "the other node refused the channel for {} with 409: it links that \
                         queue to this node itself (a queue links in one direction only)",
                        d.as_str()
                    ),
                    e => format!("cannot open the channel for {}: {e}", d.as_str()),
                })?;
            if ch.protocol() != Some(frame::PROTOCOL) {
                return Err(format!(
                    "the other node did not select the subprotocol {} on the channel for {} \
                     (it selected {:?}): not a weft-broker",
                    frame::PROTOCOL,
                    d.as_str(),
                    ch.protocol()
                ));
            }
            channels.push((d.clone(), ch));
        }
        // Subscribe locally before the link counts as connected, so what
        // is sent to a linked topic from then on is forwarded.
        let mut sessions = Vec::new();
        for (d, _) in &channels {
            let (wake_tx, wake) = mpsc::channel(1);
            let mut session = backend.open(wake_tx);
            let r = session
                .subscribe(
                    SubscribeFrame {
                        subscription: SubscriptionId::new("link").expect("valid id"),
                        destination: d.clone(),
                        ack: AckMode::Client,
                        credit: config.window,
                    },
                    Form::Binary,
                )
                .await;
            if let Err(r) = r {
                session.close().await;
                for (s, _) in sessions {
                    Session::close(s).await;
                }
                return Err(format!(
                    "{}: the local subscription was refused: {}",
                    d.as_str(),
                    r.message
                ));
            }
            sessions.push((session, wake));
        }
        status.connected.store(true, Ordering::Relaxed);
        status.connects.fetch_add(1, Ordering::Relaxed);
        if config.log_to_stderr {
            eprintln!(
                "weft-broker: link to {}: connected, {} channel(s)",
                config.url,
                channels.len()
            );
        }
        let (down_tx, down_rx) = watch::channel(false);
        let mut forwarders = JoinSet::new();
        for ((d, ch), (session, wake)) in channels.into_iter().zip(sessions) {
            let fwd = Forwarder {
                destination: d,
                channel: ch,
                node_id: node_id.to_owned(),
                status: status.clone(),
                config: config.clone(),
                in_flight: HashMap::new(),
                count: 0,
                retry: VecDeque::new(),
                retry_delay: config.backoff_min,
            };
            forwarders.spawn(fwd.run(session, wake, down_rx.clone()));
        }
        let outcome = tokio::select! {
            _ = stop.changed() => Ok(()),
            Some(r) = forwarders.join_next() => Err(match r {
                Ok(Err(e)) => e,
                Ok(Ok(())) => "a forwarder ended".to_owned(),
                Err(e) => format!("a forwarder failed: {e}"),
            }),
        };
        // Every forwarder closes its local session, which puts its
        // unacknowledged deliveries back in the local queue.
        let _ = down_tx.send(true);
        while forwarders.join_next().await.is_some() {}
        outcome
    }
    .await;
    mux.close();
    result
}

/// One linked destination on one connection.
struct Forwarder {
    destination: Destination,
    channel: Channel,
    node_id: String,
    status: Arc<LinkStatus>,
    config: LinkConfig,
    /// Sent, not answered: local delivery ids by message id, in order.
    in_flight: HashMap<MessageId, VecDeque<Delivery>>,
    /// Entries in `in_flight` and `retry`.
    count: u64,
    /// Refused for now: resend at the deadline, in order.
    retry: VecDeque<(Instant, Delivery)>,
    retry_delay: Duration,
}

impl Forwarder {
    async fn run(
        mut self,
        mut session: Session,
        wake: mpsc::Receiver<()>,
        down: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let r = self.forward(&mut session, wake, down).await;
        session.close().await;
        self.status
            .in_flight
            .fetch_sub(self.count, Ordering::Relaxed);
        if r.is_ok() {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                self.channel.close(CloseCode::GOING_AWAY, "link stopping"),
            )
            .await;
        }
        r.map_err(|e| format!("{}: {e}", self.destination.as_str()))
    }

    async fn forward(
        &mut self,
        session: &mut Session,
        mut wake: mpsc::Receiver<()>,
        mut down: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let keepalive = self.config.keepalive;
        let mut last_heard = Instant::now();
        let mut pinged = false;
        loop {
            let next_retry = self.retry.front().map(|(t, _)| *t);
            let check_at = last_heard + keepalive * if pinged { 2 } else { 1 };
            tokio::select! {
                _ = down.changed() => return Ok(()),
                _ = wake.recv() => {
                    for d in session.take_outbox() {
                        self.send(session, d).await?;
                    }
                }
                msg = self.channel.recv() => {
                    last_heard = Instant::now();
                    pinged = false;
                    match msg {
                        None => {
                            return Err(match self.channel.end() {
                                Some(end) => format!("the channel ended ({end:?})"),
                                None => "the channel ended".to_owned(),
                            });
                        }
                        Some(Err(e)) => return Err(format!("the channel failed: {e}")),
                        Some(Ok(m)) if m.is_data() => self.answer(session, &m).await?,
                        Some(Ok(_)) => {}
                    }
                }
                _ = tokio::time::sleep_until(next_retry.unwrap_or(check_at)), if next_retry.is_some() => {
                    let now = Instant::now();
                    while self.retry.front().is_some_and(|(t, _)| *t <= now) {
                        let (_, d) = self.retry.pop_front().expect("checked");
                        self.count -= 1;
                        self.status.in_flight.fetch_sub(1, Ordering::Relaxed);
                        self.status.resent.fetch_add(1, Ordering::Relaxed);
                        self.send(session, d).await?;
                    }
                }
                _ = tokio::time::sleep_until(check_at) => {
                    if pinged {
                        return Err(format!(
                            "nothing heard from the other node for {} s",
                            (keepalive * 2).as_secs()
                        ));
                    }
                    self.channel
                        .send(Message::Ping(bytes::Bytes::from_static(b"weft-link")))
                        .await
                        .map_err(|e| format!("the channel failed: {e}"))?;
                    pinged = true;
                }
            }
        }
    }

    /// Sends one local delivery to the other node (or settles it here).
    async fn send(&mut self, session: &mut Session, d: Delivery) -> Result<(), String> {
        let m = &d.message;
        let topic = m.destination.kind() == DestinationKind::Topic;
        if topic && m.headers.get(FORWARDED_HEADER).is_some() {
            // Another link brought it here: it travels one hop only.
            let _ = session.ack(d.delivery_id).await;
            self.status.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut headers = m.headers.clone();
        if headers.get(FORWARDED_HEADER).is_none()
            && headers
                .insert(FORWARDED_HEADER, self.node_id.clone())
                .is_err()
            && topic
        {
            // Unmarked, it could come back over a link the other way.
            let _ = session.ack(d.delivery_id).await;
            self.drop_message(
                &d,
                "its 24 application headers leave no room for weft-forwarded",
            );
            return Ok(());
        }
        let f = Frame::Send(SendFrame {
            destination: m.destination.clone(),
            message_id: m.message_id.clone(),
            headers,
            body: m.body.clone(),
        });
        let no_limit = Limits {
            max_body: usize::MAX,
        };
        let msg = frame::encode(&f, Form::Binary, &no_limit).expect("binary encodes every frame");
        // `send` waits while the channel's buffer is full: bounded like the
        // keepalive, so a network that stopped moving is noticed here too.
        // (Cancelling it is safe: the message is queued whole or not at
        // all, and the delivery goes back to the queue with the session.)
        let limit = self.config.keepalive * 2;
        match tokio::time::timeout(limit, self.channel.send(msg)).await {
            Ok(r) => r.map_err(|e| format!("the channel failed: {e}"))?,
            Err(_) => {
                return Err(format!(
                    "the other node took nothing for {} s",
                    limit.as_secs()
                ));
            }
        }
        self.in_flight
            .entry(m.message_id.clone())
            .or_default()
            .push_back(d);
        self.count += 1;
        self.status.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn take(&mut self, id: &MessageId) -> Option<Delivery> {
        let q = self.in_flight.get_mut(id)?;
        let d = q.pop_front();
        if q.is_empty() {
            self.in_flight.remove(id);
        }
        d
    }

    fn drop_message(&self, d: &Delivery, why: &str) {
        self.status.dropped.fetch_add(1, Ordering::Relaxed);
        let e = format!(
            "{}: message {} dropped: {why}",
            self.destination.as_str(),
            d.message.message_id.as_str()
        );
        *self.status.last_error.lock().expect("not poisoned") = Some(e.clone());
        if self.config.log_to_stderr {
            eprintln!("weft-broker: link to {}: {e}", self.status.url);
        }
    }

    /// Handles the other node's answer to a SEND.
    async fn answer(&mut self, session: &mut Session, m: &Message) -> Result<(), String> {
        let f = frame::decode(
            m,
            &Limits {
                max_body: usize::MAX,
            },
        )
        .map_err(|e| format!("the other node sent a frame this node cannot decode: {e}"))?;
        match f {
            Frame::Receipt(Receipt::Message(id)) => {
                if let Some(d) = self.take(&id) {
                    self.count -= 1;
                    self.status.in_flight.fetch_sub(1, Ordering::Relaxed);
                    self.status.forwarded.fetch_add(1, Ordering::Relaxed);
                    self.retry_delay = self.config.backoff_min;
                    // Stored there: release the local copy.
                    let _ = session.ack(d.delivery_id).await;
                }
            }
            Frame::Error(e) => {
                let Some(d) = e.message_id.as_ref().and_then(|id| self.take(id)) else {
                    return Err(format!(
                        "the other node sent ERROR {} ({})",
                        e.code.as_u16(),
                        e.message
                    ));
                };
                let class = e.code.as_u16() / 100;
                if class == 3 || class == 5 {
                    // Full or failing for now: try again later, in order.
                    let at = Instant::now() + self.retry_delay;
                    self.retry_delay = (self.retry_delay * 2).min(self.config.backoff_max);
                    self.retry.push_back((at, d));
                } else {
                    self.count -= 1;
                    self.status.in_flight.fetch_sub(1, Ordering::Relaxed);
                    self.drop_message(
                        &d,
                        &format!(
                            "the other node refused it with ERROR {} ({})",
                            e.code.as_u16(),
                            e.message
                        ),
                    );
                    let _ = session.ack(d.delivery_id).await;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
