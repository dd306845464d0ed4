//! Running a server: per-connection [`Stats`], the server-wide
//! [`ServerStats`], graceful [`Shutdown`] and the connection limit of
//! [`ServerBuilder::max_connections`](super::ServerBuilder::max_connections).
//!
//! Costs on the data path: a [`WebSocket`](super::WebSocket) counts its
//! [`Stats`] in plain `u64` fields (no atomics); a connection accepted by a
//! [`ServerBuilder`](super::ServerBuilder) with server-wide state attached
//! (stats, shutdown or limit) holds one boxed `ServerLink` to it, which it
//! touches with atomics only every [`PUBLISH_EVERY`] data messages each way,
//! when it waits for its peer with a new waker (for shutdown) and when it
//! closes.

use std::collections::HashMap;
use std::ops::{Add, AddAssign};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;
use tokio::sync::Notify;

/// Connections publish their counters into their [`ServerStats`] every this
/// many data messages sent (and, separately, received), and when they close.
pub const PUBLISH_EVERY: u64 = 64;

/// Traffic counters of one connection (from [`WebSocket::stats`]), or sums
/// of them (they add up: `+` and `+=`, and [`ServerStats::snapshot`]).
///
/// * `messages_*` count data messages (Text and Binary; a fragmented one
///   once), not Ping, Pong or Close.
/// * `payload_bytes_*` count the application's bytes of those messages:
///   what was handed to `send`/`feed` (accepted for sending) and what
///   `recv` returned, before compression and after decompression.
/// * `wire_bytes_*` count every byte written to and read from the transport
///   after the opening handshake: frame headers, masks, control frames and
///   compressed payloads. With TLS it is the bytes given to TLS (plaintext).
///
/// So `1 - wire / payload` is what compression saved, net of framing; see
/// [`compression_saved_sent`](Self::compression_saved_sent).
///
/// [`WebSocket::stats`]: super::WebSocket::stats
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Data messages accepted for sending.
    pub messages_sent: u64,
    /// Data messages received.
    pub messages_received: u64,
    /// Payload bytes of the data messages accepted for sending.
    pub payload_bytes_sent: u64,
    /// Payload bytes of the data messages received (after decompression).
    pub payload_bytes_received: u64,
    /// Bytes written to the transport.
    pub wire_bytes_sent: u64,
    /// Bytes read from the transport.
    pub wire_bytes_received: u64,
}

fn saved(payload: u64, wire: u64) -> f64 {
    if payload == 0 {
        return 0.0;
    }
    1.0 - wire as f64 / payload as f64
}

impl Stats {
    /// The fraction of the payload bytes sent that compression saved on the
    /// wire: `1 - wire_bytes_sent / payload_bytes_sent`; 0.0 when nothing
    /// was sent. Framing is counted on the wire, so an uncompressed
    /// connection shows a small negative figure (about -2 / payload size
    /// per message), and bytes accepted but not yet written count as saved
    /// until they go out.
    pub fn compression_saved_sent(&self) -> f64 {
        saved(self.payload_bytes_sent, self.wire_bytes_sent)
    }

    /// The same for the receiving direction:
    /// `1 - wire_bytes_received / payload_bytes_received`; 0.0 when nothing
    /// was received.
    pub fn compression_saved_received(&self) -> f64 {
        saved(self.payload_bytes_received, self.wire_bytes_received)
    }

    /// Counter by counter `self - earlier` (saturating), for deltas.
    fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            messages_sent: self.messages_sent.saturating_sub(earlier.messages_sent),
            messages_received: self
                .messages_received
                .saturating_sub(earlier.messages_received),
            payload_bytes_sent: self
                .payload_bytes_sent
                .saturating_sub(earlier.payload_bytes_sent),
            payload_bytes_received: self
                .payload_bytes_received
                .saturating_sub(earlier.payload_bytes_received),
            wire_bytes_sent: self.wire_bytes_sent.saturating_sub(earlier.wire_bytes_sent),
            wire_bytes_received: self
                .wire_bytes_received
                .saturating_sub(earlier.wire_bytes_received),
        }
    }
}

impl AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.messages_sent += o.messages_sent;
        self.messages_received += o.messages_received;
        self.payload_bytes_sent += o.payload_bytes_sent;
        self.payload_bytes_received += o.payload_bytes_received;
        self.wire_bytes_sent += o.wire_bytes_sent;
        self.wire_bytes_received += o.wire_bytes_received;
    }
}

impl Add for Stats {
    type Output = Stats;
    fn add(mut self, o: Stats) -> Stats {
        self += o;
        self
    }
}

impl std::iter::Sum for Stats {
    fn sum<I: Iterator<Item = Stats>>(iter: I) -> Stats {
        iter.fold(Stats::default(), Add::add)
    }
}

#[derive(Debug, Default)]
struct StatsInner {
    counters: [AtomicU64; 6],
    accepted: AtomicU64,
    open: AtomicU64,
    rejected: AtomicU64,
}

/// Server-wide traffic: the [`Stats`] of every connection accepted by the
/// [`ServerBuilder`](super::ServerBuilder)s it is attached to
/// ([`ServerBuilder::stats`](super::ServerBuilder::stats)), summed, plus
/// connection counts. A cheap clone of one shared set of atomics.
///
/// Connections publish into it when they close (or are dropped) and every
/// [`PUBLISH_EVERY`] data messages each way meanwhile, so a
/// [`snapshot`](Self::snapshot) is exact for closed connections and lags
/// open ones by fewer than that many messages (and the bytes since).
///
/// ```
/// let stats = weft_core::ServerStats::new();
/// let server = weft_core::ServerBuilder::new().stats(&stats);
/// # drop(server);
/// // ... later, from any task:
/// println!("compression saved {:.1} %", 100.0 * stats.compression_saved_sent());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ServerStats {
    inner: Arc<StatsInner>,
}

impl ServerStats {
    /// Zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sums so far.
    pub fn snapshot(&self) -> Stats {
        let c = &self.inner.counters;
        let g = |i: usize| c[i].load(Ordering::Relaxed);
        Stats {
            messages_sent: g(0),
            messages_received: g(1),
            payload_bytes_sent: g(2),
            payload_bytes_received: g(3),
            wire_bytes_sent: g(4),
            wire_bytes_received: g(5),
        }
    }

    /// [`Stats::compression_saved_sent`] of the [`snapshot`](Self::snapshot):
    /// the fraction of bytes sent that compression saved, server-wide.
    pub fn compression_saved_sent(&self) -> f64 {
        self.snapshot().compression_saved_sent()
    }

    /// [`Stats::compression_saved_received`] of the
    /// [`snapshot`](Self::snapshot).
    pub fn compression_saved_received(&self) -> f64 {
        self.snapshot().compression_saved_received()
    }

    /// WebSocket connections accepted so far.
    pub fn accepted_connections(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// WebSocket connections open now (accepted and not yet dropped).
    pub fn open_connections(&self) -> u64 {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Upgrade requests refused with 503: over the connection limit or
    /// during shutdown.
    pub fn rejected_connections(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    fn add(&self, d: &Stats) {
        let c = &self.inner.counters;
        for (i, v) in [
            d.messages_sent,
            d.messages_received,
            d.payload_bytes_sent,
            d.payload_bytes_received,
            d.wire_bytes_sent,
            d.wire_bytes_received,
        ]
        .into_iter()
        .enumerate()
        {
            if v != 0 {
                c[i].fetch_add(v, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn note_rejected(&self) {
        self.inner.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

const RUNNING: u8 = 0;
const CLOSING: u8 = 1;
const ABORTED: u8 = 2;

#[derive(Debug, Default)]
struct Registry {
    next: u64,
    wakers: HashMap<u64, Option<Waker>>,
}

#[derive(Debug, Default)]
struct ShutdownInner {
    state: AtomicU8,
    registry: Mutex<Registry>,
    /// Woken when the last registered connection goes away.
    drained: Notify,
    /// Woken on [`Shutdown::trigger`].
    triggered: Notify,
}

/// Graceful shutdown for the connections of one or more
/// [`ServerBuilder`](super::ServerBuilder)s (attach with
/// [`ServerBuilder::shutdown`](super::ServerBuilder::shutdown)). A cheap
/// clone of one shared state.
///
/// [`trigger`](Self::trigger) (or [`drain`](Self::drain), which triggers
/// and then waits):
/// * every open connection queues a Close with 1001 (going away) *behind*
///   everything already queued, so every message accepted for sending
///   (`feed`/`send` returned `Ok`) goes out before the Close; messages
///   offered after it are refused with an error, never dropped silently.
///   The connection then finishes the closing handshake as usual (its
///   `recv` returns `None`), bounded by [`Config::close_timeout`];
/// * new upgrade requests are answered with 503.
///
/// The Close is queued by the connection itself the next time it is
/// polled: connections are woken for this, and a task that is waiting in
/// `recv`, `feed`, `send` or `flush` (or on the split halves) reacts at
/// once. Note the close is not a "lost" message: a task that keeps feeding
/// sees [`Error::Closed`](crate::Error::Closed) or a send error.
///
/// [`drain`](Self::drain) then waits until every attached connection is
/// dropped, or until its grace period ends; then it *aborts* the rest:
/// their next poll returns [`Error::ShutdownAborted`](crate::Error::ShutdownAborted)
/// without flushing, so a peer that stopped reading cannot hold the server.
///
/// ```no_run
/// # async fn demo(listener: tokio::net::TcpListener) {
/// use std::time::Duration;
/// let shutdown = weft_core::Shutdown::new();
/// let server = weft_core::ServerBuilder::new().shutdown(&shutdown);
/// loop {
///     tokio::select! {
///         accepted = listener.accept() => {
///             let Ok((tcp, _)) = accepted else { continue };
///             let server = server.clone();
///             tokio::spawn(async move {
///                 let Ok(mut ws) = server.accept(tcp).await else { return };
///                 while let Some(Ok(m)) = ws.recv().await {
///                     if m.is_data() && ws.send(m).await.is_err() { break }
///                 }
///             });
///         }
///         _ = tokio::signal::ctrl_c() => break,
///     }
/// }
/// let aborted = shutdown.drain(Duration::from_secs(10)).await;
/// println!("{aborted} connections did not close in time");
/// # }
/// ```
///
/// [`Config::close_timeout`]: crate::Config::close_timeout
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

impl Shutdown {
    /// A shutdown handle not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown: every attached connection closes with 1001 after
    /// its queued messages, new upgrades get 503. Idempotent.
    pub fn trigger(&self) {
        self.set_state(CLOSING);
        self.inner.triggered.notify_waiters();
    }

    /// True once [`trigger`](Self::trigger) (or [`drain`](Self::drain)) was
    /// called.
    pub fn is_triggered(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) != RUNNING
    }

    /// Completes once the shutdown is triggered (for an accept loop's
    /// `select!`).
    pub async fn triggered(&self) {
        loop {
            let notified = self.inner.triggered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }

    /// Attached connections still open (not yet dropped).
    pub fn open_connections(&self) -> usize {
        self.lock().wakers.len()
    }

    /// Triggers the shutdown, waits up to `grace` for every attached
    /// connection to close and be dropped, then aborts the ones left
    /// (woken, their next poll fails at once) and returns how many that
    /// was (0: everything closed cleanly in time).
    pub async fn drain(&self, grace: Duration) -> usize {
        self.trigger();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.inner.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open_connections() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let left = self.open_connections();
        if left > 0 {
            tracing::info!(
                connections = left,
                "shutdown grace period over: aborting connections"
            );
        }
        self.set_state(ABORTED);
        left
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: u8) {
        if self.inner.state.fetch_max(state, Ordering::AcqRel) >= state {
            return;
        }
        // Wake every connection; the wakers stay registered (a connection
        // that keeps its waker need not register again).
        let wakers: Vec<Waker> = self.lock().wakers.values().flatten().cloned().collect();
        for w in wakers {
            w.wake();
        }
    }

    fn register(&self) -> u64 {
        let mut r = self.lock();
        let id = r.next;
        r.next += 1;
        r.wakers.insert(id, None);
        id
    }
}

/// The server-wide limit on open connections
/// ([`ServerBuilder::max_connections`](super::ServerBuilder::max_connections)).
#[derive(Debug)]
pub(crate) struct Limit {
    max: usize,
    open: AtomicUsize,
}

impl Limit {
    pub(crate) fn new(max: usize) -> Arc<Limit> {
        Arc::new(Limit {
            max,
            open: AtomicUsize::new(0),
        })
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// A slot, if fewer than `max` are taken.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit(self.clone()))
    }
}

/// One slot of a [`Limit`], given back on drop.
#[derive(Debug)]
pub(crate) struct Permit(Arc<Limit>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the server's shared state is told of one connection.
#[derive(Debug)]
pub(crate) enum ShutdownSignal {
    Running,
    Close,
    Abort,
}

/// A connection's tie to its server's shared state (boxed in the
/// `WebSocket`, `None` for connections without any).
#[derive(Debug, Default)]
pub(crate) struct ServerLink {
    stats: Option<ServerStats>,
    published: Stats,
    shutdown: Option<(Shutdown, u64)>,
    /// The waker last registered with the shutdown (registration is skipped
    /// while the connection is polled with the same one).
    waker: Option<Waker>,
    close_sent: bool,
    _permit: Option<Permit>,
}

impl ServerLink {
    pub(crate) fn new(
        stats: Option<ServerStats>,
        shutdown: Option<Shutdown>,
        permit: Option<Permit>,
    ) -> Option<Box<ServerLink>> {
        if stats.is_none() && shutdown.is_none() && permit.is_none() {
            return None;
        }
        if let Some(s) = &stats {
            s.inner.accepted.fetch_add(1, Ordering::Relaxed);
            s.inner.open.fetch_add(1, Ordering::Relaxed);
        }
        let shutdown = shutdown.map(|s| {
            let id = s.register();
            (s, id)
        });
        Some(Box::new(ServerLink {
            stats,
            published: Stats::default(),
            shutdown,
            waker: None,
            close_sent: false,
            _permit: permit,
        }))
    }

    /// Adds what changed since the last call to the server's stats.
    pub(crate) fn publish(&mut self, now: &Stats) {
        if let Some(s) = &self.stats {
            s.add(&now.since(&self.published));
            self.published = *now;
        }
    }

    pub(crate) fn set_stats(&mut self, stats: ServerStats) {
        stats.inner.accepted.fetch_add(1, Ordering::Relaxed);
        stats.inner.open.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = self.stats.replace(stats) {
            old.inner.open.fetch_sub(1, Ordering::Relaxed);
        }
        self.published = Stats::default();
    }

    /// The shutdown state, registering `waker` to hear of a change first.
    #[inline]
    pub(crate) fn poll_shutdown(&mut self, waker: &Waker) -> ShutdownSignal {
        let Some((s, id)) = &self.shutdown else {
            return ShutdownSignal::Running;
        };
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.waker = Some(waker.clone());
            if let Some(slot) = s.lock().wakers.get_mut(id) {
                *slot = Some(waker.clone());
            }
        }
        match s.inner.state.load(Ordering::Acquire) {
            RUNNING => ShutdownSignal::Running,
            CLOSING if !self.close_sent => {
                self.close_sent = true;
                ShutdownSignal::Close
            }
            CLOSING => ShutdownSignal::Running,
            _ => ShutdownSignal::Abort,
        }
    }
}

impl Drop for ServerLink {
    fn drop(&mut self) {
        if let Some(s) = &self.stats {
            s.inner.open.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some((s, id)) = &self.shutdown {
            let empty = {
                let mut r = s.lock();
                r.wakers.remove(id);
                r.wakers.is_empty()
            };
            if empty {
                s.inner.drained.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_add_and_savings() {
        let a = Stats {
            messages_sent: 1,
            messages_received: 2,
            payload_bytes_sent: 1000,
            payload_bytes_received: 0,
            wire_bytes_sent: 250,
            wire_bytes_received: 7,
        };
        let mut b = a;
        b += a;
        assert_eq!(b.messages_received, 4);
        assert_eq!((a + a), b);
        assert_eq!([a, a].into_iter().sum::<Stats>(), b);
        assert!((a.compression_saved_sent() - 0.75).abs() < 1e-12);
        assert_eq!(a.compression_saved_received(), 0.0);
        assert_eq!(b.since(&a), a);
    }

    #[test]
    fn limit_admits_exactly_max() {
        let l = Limit::new(2);
        let p1 = l.try_acquire().unwrap();
        let _p2 = l.try_acquire().unwrap();
        assert!(l.try_acquire().is_none());
        drop(p1);
        assert!(l.try_acquire().is_some());
        assert!(Limit::new(0).try_acquire().is_none());
    }
}
