//! A broadcast hub: one message, compressed once per group, to every
//! subscriber, with a bounded queue per subscriber.
//!
//! ```text
//! Broadcast::send(msg) ──> PreparedMessage (encoded once per group, see crate::prepared)
//!        │  Arc clone into each subscriber's queue (at most queue_limit)
//!        ▼
//! Subscription (one per connection) ──run──> WebSocket::feed_prepared
//!                                               same Bytes for the whole group
//! ```
//!
//! [`Broadcast::send`] never waits: it encodes the message once for each
//! group that has subscribers (a group is one [`BroadcastEncoding`] key:
//! permessage-deflate with equal window bits, level and memLevel, or the
//! plain frame), then puts an `Arc` of it into every subscriber's queue. A
//! connection task drives each [`Subscription`] with
//! [`run`](Subscription::run), which moves queued messages into the
//! connection's write buffer while it is below
//! [`Config::write_buffer_size`](crate::Config::write_buffer_size), reads
//! the peer's messages and hands them to the application.
//!
//! # Slow subscribers
//!
//! A subscriber whose queue holds [`BroadcastConfig::queue_limit`] messages
//! when another one arrives is handled by [`SlowPolicy`], chosen by the
//! application:
//!
//! - [`Disconnect(code)`](SlowPolicy::Disconnect) (the default, with 1013
//!   "try again later"): its queue is dropped at once and the connection is
//!   closed with `code` (the Close goes out behind what is already in the
//!   write buffer, and the close timeout bounds the wait for a peer that
//!   reads nothing).
//! - [`DropOldest`](SlowPolicy::DropOldest): the oldest queued message is
//!   dropped; the subscriber stays, missing messages.
//!
//! Either way a subscriber holds at most `queue_limit` messages (shared,
//! by reference, with every other subscriber) plus its write buffer, so
//! memory stays bounded whatever the peers do, and [`Broadcast::send`]
//! costs the same however slow one subscriber is.
//!
//! # Shutdown
//!
//! [`Broadcast::close`] (for example with [`CloseCode::GOING_AWAY`], 1001:
//! [`Broadcast::shutdown`]) lets every subscriber send what is already
//! queued, then the Close; later sends reach nobody.
//!
//! # Counters
//!
//! [`Broadcast::stats`] counts what was queued: deliveries, the payload
//! bytes the application gave, the frame bytes (header and encoded
//! payload) they became and the frame bytes they would have taken
//! uncompressed, so `compression_saved()` is the share of bytes
//! compression took off the wire for broadcast traffic.

use crate::error::Error;
use crate::io::WebSocket;
use crate::prepared::{BroadcastEncoding, PreparedMessage};
use crate::proto::{CloseCode, CloseFrame, Message};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite};

/// What happens to a subscriber whose queue is full (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowPolicy {
    /// Drop its queue and close the connection with this code (1008 policy
    /// violation or 1013 try again later are the usual choices).
    Disconnect(CloseCode),
    /// Drop the oldest queued message to make room.
    DropOldest,
}

/// Hub settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastConfig {
    /// Messages one subscriber may have queued (not yet in its write
    /// buffer). Default 256; at least 1.
    pub queue_limit: usize,
    /// What happens to a subscriber over the limit. Default
    /// `Disconnect(1013)`.
    pub slow: SlowPolicy,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        BroadcastConfig {
            queue_limit: 256,
            slow: SlowPolicy::Disconnect(CloseCode::TRY_AGAIN_LATER),
        }
    }
}

impl BroadcastConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`queue_limit`](Self::queue_limit) (0 is taken as 1).
    pub fn queue_limit(mut self, messages: usize) -> Self {
        self.queue_limit = messages.max(1);
        self
    }

    /// Sets the [`SlowPolicy`].
    pub fn slow(mut self, policy: SlowPolicy) -> Self {
        self.slow = policy;
        self
    }
}

/// What one [`Broadcast::send`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Subscribers the message was queued for.
    pub delivered: usize,
    /// Subscribers that lost their oldest queued message to make room
    /// ([`SlowPolicy::DropOldest`]).
    pub dropped: usize,
    /// Subscribers disconnected as too slow ([`SlowPolicy::Disconnect`]).
    pub disconnected: usize,
    /// Times the message was compressed: one per group whose extension
    /// transformed it.
    pub compressions: usize,
    /// Groups (distinct encodings) it was prepared for.
    pub groups: usize,
}

/// Totals since the hub was made (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastStats {
    /// Messages sent through the hub.
    pub messages: u64,
    /// Messages queued for subscribers, summed.
    pub deliveries: u64,
    /// Compressions, summed over messages.
    pub compressions: u64,
    /// Payload bytes as the application gave them, per delivery.
    pub payload_bytes: u64,
    /// Frame bytes (header and encoded payload) per delivery; for
    /// subscribers encoding per connection, the uncompressed frame.
    pub wire_bytes: u64,
    /// The frame bytes the same deliveries would have taken uncompressed
    /// (header and payload as given).
    pub uncompressed_wire_bytes: u64,
    /// Messages dropped from queues by [`SlowPolicy::DropOldest`].
    pub dropped: u64,
    /// Subscribers disconnected by [`SlowPolicy::Disconnect`].
    pub disconnected: u64,
}

impl BroadcastStats {
    /// Share of wire bytes compression saved on broadcast traffic: `1 -
    /// wire_bytes / uncompressed_wire_bytes` (0 before any delivery;
    /// negative when compressing tiny messages made them larger).
    pub fn compression_saved(&self) -> f64 {
        if self.uncompressed_wire_bytes == 0 {
            return 0.0;
        }
        1.0 - self.wire_bytes as f64 / self.uncompressed_wire_bytes as f64
    }
}

#[derive(Default)]
struct Counters {
    messages: AtomicU64,
    deliveries: AtomicU64,
    compressions: AtomicU64,
    payload_bytes: AtomicU64,
    wire_bytes: AtomicU64,
    uncompressed_wire_bytes: AtomicU64,
    dropped: AtomicU64,
    disconnected: AtomicU64,
}

struct Queue {
    items: VecDeque<Arc<PreparedMessage>>,
    /// Set when the subscriber is to close: after `items` when the hub
    /// closed, at once (items dropped) when it was too slow.
    end: Option<CloseFrame>,
    waker: Option<Waker>,
    /// The consumer wants a wakeup for new items (it has write room).
    wants_items: bool,
}

struct Slot {
    queue: Mutex<Queue>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Group {
    key: Box<str>,
    encoding: BroadcastEncoding,
    members: usize,
}

struct State {
    /// Each subscriber's queue and group (an index into `groups`; `None`
    /// for per-connection encoding).
    /// Indexed by subscription id; sends visit subscribers in this order
    /// (roughly the order they joined, which keeps their memory access
    /// close to allocation order). Freed ids are reused.
    subs: Vec<Option<(Arc<Slot>, Option<usize>)>>,
    free: Vec<usize>,
    /// Groups by index; an entry without members is reused for the next
    /// new key, so there are never more entries than groups at one time.
    groups: Vec<Group>,
    closed: Option<CloseFrame>,
}

struct Hub {
    config: BroadcastConfig,
    state: Mutex<State>,
    counters: Counters,
    live: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// A broadcast hub (see the module docs). Cheap to clone: clones share
/// the hub.
#[derive(Clone)]
pub struct Broadcast {
    hub: Arc<Hub>,
}

impl std::fmt::Debug for Broadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("config", &self.hub.config)
            .field("subscribers", &self.subscribers())
            .finish_non_exhaustive()
    }
}

impl Default for Broadcast {
    fn default() -> Self {
        Self::new(BroadcastConfig::default())
    }
}

/// Frame header size for a server frame of `len` payload bytes (RFC 6455
/// §5.2: 7-bit, 16-bit or 64-bit length).
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

impl Broadcast {
    /// A hub with `config`.
    pub fn new(config: BroadcastConfig) -> Self {
        let config = BroadcastConfig {
            queue_limit: config.queue_limit.max(1),
            ..config
        };
        Broadcast {
            hub: Arc::new(Hub {
                config,
                state: Mutex::new(State {
                    subs: Vec::new(),
                    free: Vec::new(),
                    groups: Vec::new(),
                    closed: None,
                }),
                counters: Counters::default(),
                live: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &BroadcastConfig {
        &self.hub.config
    }

    /// Subscribes a connection, in the group of its
    /// [`broadcast_encoding`](WebSocket::broadcast_encoding). Drive the
    /// result with [`Subscription::run`]. On a closed hub the subscription
    /// ends at once with the hub's Close.
    pub fn subscribe<S: AsyncRead + AsyncWrite + Unpin>(&self, ws: &WebSocket<S>) -> Subscription {
        self.subscribe_encoding(ws.broadcast_encoding())
    }

    /// Subscribes with an explicit encoding (for connections driven by
    /// other code; see [`Subscription::recv`]).
    pub fn subscribe_encoding(&self, encoding: BroadcastEncoding) -> Subscription {
        let mut st = lock(&self.hub.state);
        let mut id = NOT_LISTED;
        let slot = Arc::new(Slot {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                end: st.closed.clone(),
                waker: None,
                wants_items: false,
            }),
        });
        self.hub.live.fetch_add(1, Ordering::Relaxed);
        if st.closed.is_none() {
            let group = encoding.key().map(|key| {
                let groups = &mut st.groups;
                let at = match groups.iter().position(|g| g.members > 0 && &*g.key == key) {
                    Some(i) => i,
                    None => {
                        let fresh = Group {
                            key: key.into(),
                            encoding: encoding.clone(),
                            members: 0,
                        };
                        match groups.iter().position(|g| g.members == 0) {
                            Some(i) => {
                                groups[i] = fresh;
                                i
                            }
                            None => {
                                groups.push(fresh);
                                groups.len() - 1
                            }
                        }
                    }
                };
                groups[at].members += 1;
                at
            });
            let entry = Some((slot.clone(), group));
            id = match st.free.pop() {
                Some(i) => {
                    st.subs[i] = entry;
                    i
                }
                None => {
                    st.subs.push(entry);
                    st.subs.len() - 1
                }
            };
        }
        Subscription {
            hub: self.hub.clone(),
            id,
            slot,
            encoding,
        }
    }

    /// Queues `msg` for every subscriber, encoding it once per group; never
    /// waits (see [`SlowPolicy`] for full queues). An encoding failure
    /// (an extension error) queues nothing and is returned.
    pub fn send(&self, msg: PreparedMessage) -> Result<SendReport, crate::ext::ExtensionError> {
        let msg = Arc::new(msg);
        let mut report = SendReport::default();
        // Compress outside the lock, so subscribing and leaving (from other
        // threads) never wait for a compression; below, the encodings are
        // found already made (a group formed meanwhile is encoded there).
        let encodings: Vec<BroadcastEncoding> = {
            let st = lock(&self.hub.state);
            if st.closed.is_some() {
                return Ok(report);
            }
            st.groups
                .iter()
                .filter(|g| g.members > 0)
                .map(|g| g.encoding.clone())
                .collect()
        };
        for e in &encodings {
            msg.encoded(e)?;
        }
        let mut st = lock(&self.hub.state);
        if st.closed.is_some() {
            return Ok(report);
        }
        let plain = msg.payload().len();
        // Wire size of one delivery, per group (by index).
        let mut wire = vec![0usize; st.groups.len()];
        for (g, w) in st
            .groups
            .iter()
            .zip(&mut wire)
            .filter(|(g, _)| g.members > 0)
        {
            report.groups += 1;
            let len = match msg.encoded(&g.encoding)? {
                Some((_, p)) => p.len(),
                None => plain,
            };
            *w = len + header_len(len);
        }
        let plain_wire = plain + header_len(plain);
        report.compressions = msg.compressions();
        let limit = self.hub.config.queue_limit;
        let mut gone = Vec::new();
        let (mut payload_bytes, mut wire_bytes) = (0u64, 0u64);
        for (id, (slot, group)) in st
            .subs
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.as_ref()?)))
        {
            let mut q = lock(&slot.queue);
            if q.end.is_some() {
                continue;
            }
            if q.items.len() >= limit {
                match self.hub.config.slow {
                    SlowPolicy::DropOldest => {
                        q.items.pop_front();
                        report.dropped += 1;
                    }
                    SlowPolicy::Disconnect(code) => {
                        q.items = VecDeque::new();
                        q.end = Some(CloseFrame::new(code, "subscriber too slow"));
                        if let Some(w) = q.waker.take() {
                            w.wake();
                        }
                        report.disconnected += 1;
                        gone.push(id);
                        continue;
                    }
                }
            }
            q.items.push_back(msg.clone());
            report.delivered += 1;
            payload_bytes += plain as u64;
            wire_bytes += group.map_or(plain_wire, |g| wire[g]) as u64;
            if q.wants_items
                && let Some(w) = q.waker.take()
            {
                w.wake();
            }
        }
        for id in gone {
            remove(&mut st, id, None);
        }
        drop(st);
        let c = &self.hub.counters;
        c.messages.fetch_add(1, Ordering::Relaxed);
        c.deliveries
            .fetch_add(report.delivered as u64, Ordering::Relaxed);
        c.compressions
            .fetch_add(report.compressions as u64, Ordering::Relaxed);
        c.payload_bytes.fetch_add(payload_bytes, Ordering::Relaxed);
        c.wire_bytes.fetch_add(wire_bytes, Ordering::Relaxed);
        c.uncompressed_wire_bytes.fetch_add(
            report.delivered as u64 * (plain + header_len(plain)) as u64,
            Ordering::Relaxed,
        );
        c.dropped
            .fetch_add(report.dropped as u64, Ordering::Relaxed);
        c.disconnected
            .fetch_add(report.disconnected as u64, Ordering::Relaxed);
        Ok(report)
    }

    /// Ends every subscription with `frame` after what is already queued;
    /// later sends and subscriptions reach nobody. Returns the number of
    /// subscribers told.
    pub fn close(&self, frame: CloseFrame) -> usize {
        let mut st = lock(&self.hub.state);
        if st.closed.is_none() {
            st.closed = Some(frame.clone());
        }
        let subs = std::mem::take(&mut st.subs);
        st.free.clear();
        st.groups.clear();
        drop(st);
        let subs: Vec<_> = subs.into_iter().flatten().collect();
        let n = subs.len();
        for (slot, _) in subs {
            let mut q = lock(&slot.queue);
            if q.end.is_none() {
                q.end = Some(frame.clone());
            }
            if let Some(w) = q.waker.take() {
                w.wake();
            }
        }
        n
    }

    /// [`close`](Self::close) with 1001 (going away), for server shutdown.
    pub fn shutdown(&self) -> usize {
        self.close(CloseFrame::new(
            CloseCode::GOING_AWAY,
            "server shutting down",
        ))
    }

    /// Subscriptions alive (not yet dropped), including those closing.
    pub fn subscribers(&self) -> usize {
        self.hub.live.load(Ordering::Relaxed)
    }

    /// Distinct encodings among current subscribers.
    pub fn groups(&self) -> usize {
        lock(&self.hub.state)
            .groups
            .iter()
            .filter(|g| g.members > 0)
            .count()
    }

    /// Waits until every subscription has been dropped (after
    /// [`close`](Self::close), as their connections finish). Bound it with
    /// a timeout.
    pub async fn wait_empty(&self) {
        loop {
            let notified = self.hub.idle.notified();
            if self.subscribers() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The totals so far.
    pub fn stats(&self) -> BroadcastStats {
        let c = &self.hub.counters;
        BroadcastStats {
            messages: c.messages.load(Ordering::Relaxed),
            deliveries: c.deliveries.load(Ordering::Relaxed),
            compressions: c.compressions.load(Ordering::Relaxed),
            payload_bytes: c.payload_bytes.load(Ordering::Relaxed),
            wire_bytes: c.wire_bytes.load(Ordering::Relaxed),
            uncompressed_wire_bytes: c.uncompressed_wire_bytes.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            disconnected: c.disconnected.load(Ordering::Relaxed),
        }
    }
}

/// The id of a subscription that was never listed (made on a closed hub).
const NOT_LISTED: usize = usize::MAX;

/// Unlists subscriber `id`; with `slot`, only if the entry is still that
/// subscription's (its id may have been reused after the hub dropped it).
fn remove(st: &mut State, id: usize, slot: Option<&Arc<Slot>>) {
    let Some(entry) = st.subs.get_mut(id) else {
        return;
    };
    if slot.is_some_and(|s| !entry.as_ref().is_some_and(|(e, _)| Arc::ptr_eq(e, s))) {
        return;
    }
    let Some((_, group)) = entry.take() else {
        return;
    };
    st.free.push(id);
    if let Some(g) = group.and_then(|g| st.groups.get_mut(g)) {
        g.members -= 1;
    }
}

/// One subscriber of a [`Broadcast`]: its queue. Dropping it leaves the
/// hub.
pub struct Subscription {
    hub: Arc<Hub>,
    id: usize,
    slot: Arc<Slot>,
    encoding: BroadcastEncoding,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("encoding", &self.encoding)
            .field("queued", &self.queued())
            .finish()
    }
}

impl Subscription {
    /// The encoding (group) this subscription was made with.
    pub fn encoding(&self) -> &BroadcastEncoding {
        &self.encoding
    }

    /// Messages waiting in the queue.
    pub fn queued(&self) -> usize {
        lock(&self.slot.queue).items.len()
    }

    /// The next queued message, or the Close to end the connection with
    /// once the hub closed (after the queue is drained) or found this
    /// subscriber too slow. For connections not driven by
    /// [`run`](Self::run).
    pub async fn recv(&mut self) -> Result<Arc<PreparedMessage>, CloseFrame> {
        poll_fn(|cx| self.poll_next(cx, true)).await
    }

    /// Like [`recv`](Self::recv); with `want_item` false only the end is
    /// reported (the waker is still registered for it).
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        want_item: bool,
    ) -> Poll<Result<Arc<PreparedMessage>, CloseFrame>> {
        let mut q = lock(&self.slot.queue);
        if want_item && let Some(m) = q.items.pop_front() {
            return Poll::Ready(Ok(m));
        }
        if q.items.is_empty()
            && let Some(f) = &q.end
        {
            return Poll::Ready(Err(f.clone()));
        }
        q.wants_items = want_item;
        if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            q.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Drives `ws` as this subscriber until the connection ends: queued
    /// broadcast messages go out (while the write buffer is below its
    /// high-water mark, so a peer that stops reading fills its queue, not
    /// memory), data messages from the peer go to `on_message` (which may
    /// [`send`](Broadcast::send) to the hub), Pings are answered. When the
    /// hub closes or drops this subscriber, the Close is sent and the
    /// closing handshake finished (bounded by the close timeout).
    ///
    /// Returns `Ok` when the connection closed, the I/O or protocol error
    /// otherwise (a peer that vanished is
    /// [`Error::AbnormalClosure`] or an I/O
    /// error).
    pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        ws: &mut WebSocket<S>,
        mut on_message: impl FnMut(Message),
    ) -> Result<(), Error> {
        let mut closing = false;
        poll_fn(|cx| ws.poll_subscription(cx, self, &mut closing, &mut on_message)).await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        remove(&mut lock(&self.hub.state), self.id, Some(&self.slot));
        if self.hub.live.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.hub.idle.notify_waiters();
        }
    }
}
