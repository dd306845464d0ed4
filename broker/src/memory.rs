//! The memory backend: destinations, subscriptions, credit and
//! acknowledgements in one in-process state machine.
//!
//! [`Core`] is plain data with methods: no socket, task or clock. The server
//! keeps one behind a mutex ([`MemoryBroker`]); every connection calls it
//! for each frame it reads and takes its deliveries out of its *outbox*.
//! A connection's outbox only ever holds deliveries its credit allowed, so
//! its size is bounded by the subscriptions' credit windows.
//!
//! ```text
//!  SEND ──> Core::send ──> Destination (queue: ready list, topic: each
//!                          subscription's backlog), dedupe window
//!                            │ dispatch: round robin over subscriptions
//!                            │ with credit > 0 (queue), every
//!                            │ subscription with credit (topic)
//!                            v
//!           Conn::outbox (Delivery) ──wake──> connection task ──> MESSAGE
//!           Conn::unacked (ack: client) <── ACK / NACK / disconnect
//! ```

use crate::frame::{
    AckMode, Destination, DestinationKind, ErrorCode, Form, Headers, MessageId, SendFrame,
    SubscribeFrame, SubscriptionId,
};
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Limits of the memory backend (PROTOCOL.md §4 and §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Messages waiting at one destination (a queue's undelivered messages,
    /// or each topic subscription's backlog) before SENDs are refused with
    /// 300. Default 10,000.
    pub max_queue: usize,
    /// Largest credit window (credit plus unacknowledged deliveries) of one
    /// subscription; more is refused with 203. Default 1024.
    pub max_credit: u32,
    /// Message ids remembered per destination to drop duplicate SENDs.
    /// Default 65,536; 0 turns deduplication off.
    pub dedupe_window: usize,
    /// Most destinations the broker creates; a SEND or SUBSCRIBE that would
    /// create one more is refused with 300. Default 10,000.
    pub max_destinations: usize,
    /// How long an `ack: client` delivery may stay unacknowledged before it
    /// is taken back and redelivered (to another consumer of a queue, when
    /// one has credit), as if its consumer had NACKed it. The delivery
    /// keeps counting against its subscription's credit window until the
    /// consumer ACKs or NACKs it (late, which returns the credit and
    /// settles nothing), so a consumer that never acks receives at most one
    /// window of messages, each redelivered to others after this time.
    /// Default 30 s; `None` turns it off.
    pub redeliver_after: Option<Duration>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_queue: 10_000,
            max_credit: 1024,
            dedupe_window: 65_536,
            max_destinations: 10_000,
            redeliver_after: Some(Duration::from_secs(30)),
        }
    }
}

/// A refused request: the ERROR code and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The ERROR code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// A message as stored: what a SEND carried.
#[derive(Debug)]
pub struct Stored {
    /// Where it was sent.
    pub destination: Destination,
    /// The producer's id.
    pub message_id: MessageId,
    /// Application headers.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// A stored message waiting for (re)delivery.
#[derive(Debug, Clone)]
struct Pending {
    msg: Arc<Stored>,
    redelivered: bool,
}

/// One delivery, ready for a connection to write as MESSAGE.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The subscription it goes to.
    pub subscription: SubscriptionId,
    /// Its delivery id on the connection.
    pub delivery_id: u64,
    /// The message.
    pub message: Arc<Stored>,
    /// Delivered before and not acknowledged.
    pub redelivered: bool,
    /// The form of the SUBSCRIBE that opened the subscription.
    pub form: Form,
}

/// What a stored SEND turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Stored (and possibly already delivered).
    Stored,
    /// Seen before within the deduplication window: not stored again.
    Duplicate,
}

/// A connection's id in the [`Core`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

type SubKey = (ConnId, SubscriptionId);

/// Recently stored message ids of one destination.
#[derive(Debug, Default)]
struct Dedupe {
    set: HashSet<MessageId>,
    order: VecDeque<MessageId>,
}

impl Dedupe {
    fn contains(&self, id: &MessageId) -> bool {
        self.set.contains(id)
    }

    fn remember(&mut self, id: MessageId, window: usize) {
        if window == 0 {
            return;
        }
        while self.order.len() >= window {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.clone());
        self.order.push_back(id);
    }
}

#[derive(Debug)]
struct Dest {
    kind: DestinationKind,
    /// Queues: messages not yet delivered. Topics: unused (each
    /// subscription has its own backlog).
    ready: VecDeque<Pending>,
    subs: Vec<SubKey>,
    /// Round-robin position in `subs` (queues).
    next: usize,
    dedupe: Dedupe,
}

#[derive(Debug)]
struct Sub {
    destination: Destination,
    ack: AckMode,
    credit: u32,
    unacked: u32,
    /// Topics: messages for this subscription not yet delivered.
    backlog: VecDeque<Pending>,
    form: Form,
}

#[derive(Debug)]
struct Conn {
    subs: HashMap<SubscriptionId, Sub>,
    /// `ack: client` deliveries not yet settled, with when they were
    /// assigned.
    unacked: HashMap<u64, (SubscriptionId, Pending, Instant)>,
    /// `ack: client` deliveries taken back after the idle time and not yet
    /// ACKed or NACKed by their consumer: they still hold a credit each
    /// (at most `max_credit` per subscription).
    expired: HashMap<u64, SubscriptionId>,
    next_delivery: u64,
    outbox: Vec<Delivery>,
    wake: mpsc::Sender<()>,
}

impl Conn {
    fn deliver(&mut self, key_sub: &SubscriptionId, p: Pending) {
        let sub = self.subs.get_mut(key_sub).expect("subscription exists");
        debug_assert!(sub.credit > 0);
        sub.credit -= 1;
        self.next_delivery += 1;
        let delivery_id = self.next_delivery;
        if sub.ack == AckMode::Client {
            sub.unacked += 1;
            self.unacked
                .insert(delivery_id, (key_sub.clone(), p.clone(), Instant::now()));
        }
        self.outbox.push(Delivery {
            subscription: key_sub.clone(),
            delivery_id,
            message: p.msg,
            redelivered: p.redelivered,
            form: sub.form,
        });
        // A full channel already holds a wakeup.
        let _ = self.wake.try_send(());
    }
}

/// The broker's state. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Core {
    config: MemoryConfig,
    dests: HashMap<Destination, Dest>,
    conns: HashMap<ConnId, Conn>,
    next_conn: u64,
}

impl Core {
    /// An empty broker.
    pub fn new(config: MemoryConfig) -> Core {
        Core {
            config,
            ..Core::default()
        }
    }

    /// Registers a connection. `wake` gets a message (if it has room)
    /// whenever the connection's outbox gains a delivery.
    pub fn connect(&mut self, wake: mpsc::Sender<()>) -> ConnId {
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        self.conns.insert(
            id,
            Conn {
                subs: HashMap::new(),
                unacked: HashMap::new(),
                expired: HashMap::new(),
                next_delivery: 0,
                outbox: Vec::new(),
                wake,
            },
        );
        id
    }

    /// The deliveries waiting to be written on `conn`, in order.
    pub fn take_outbox(&mut self, conn: ConnId) -> Vec<Delivery> {
        self.conns
            .get_mut(&conn)
            .map(|c| std::mem::take(&mut c.outbox))
            .unwrap_or_default()
    }

    fn dest(&mut self, d: &Destination) -> Result<&mut Dest, Refusal> {
        if !self.dests.contains_key(d) {
            if self.dests.len() >= self.config.max_destinations {
                return Err(Refusal::new(
                    ErrorCode::QUEUE_FULL,
                    format!(
                        "the broker holds its limit of {} destinations",
                        self.config.max_destinations
                    ),
                ));
            }
            self.dests.insert(
                d.clone(),
                Dest {
                    kind: d.kind(),
                    ready: VecDeque::new(),
                    subs: Vec::new(),
                    next: 0,
                    dedupe: Dedupe::default(),
                },
            );
        }
        Ok(self.dests.get_mut(d).expect("just inserted"))
    }

    /// Stores a SEND and delivers it to subscriptions with credit.
    pub fn send(&mut self, _from: ConnId, f: SendFrame) -> Result<SendOutcome, Refusal> {
        let max_queue = self.config.max_queue;
        let window = self.config.dedupe_window;
        let dest = self.dest(&f.destination)?;
        if dest.dedupe.contains(&f.message_id) {
            return Ok(SendOutcome::Duplicate);
        }
        let pending = Pending {
            msg: Arc::new(Stored {
                destination: f.destination.clone(),
                message_id: f.message_id.clone(),
                headers: f.headers,
                body: f.body,
            }),
            redelivered: false,
        };
        match dest.kind {
            DestinationKind::Queue => {
                if dest.ready.len() >= max_queue {
                    return Err(Refusal::new(
                        ErrorCode::QUEUE_FULL,
                        format!("{} holds its limit of {max_queue} messages", f.destination),
                    ));
                }
                dest.dedupe.remember(f.message_id, window);
                dest.ready.push_back(pending);
                self.dispatch_queue(&f.destination);
            }
            DestinationKind::Topic => {
                let subs = dest.subs.clone();
                for (conn, sub) in &subs {
                    let backlog = self.conns[conn].subs[sub].backlog.len();
                    if backlog >= max_queue {
                        return Err(Refusal::new(
                            ErrorCode::QUEUE_FULL,
                            format!(
                                "a subscription of {} holds its limit of {max_queue} messages",
                                f.destination
                            ),
                        ));
                    }
                }
                self.dests
                    .get_mut(&f.destination)
                    .expect("exists")
                    .dedupe
                    .remember(f.message_id, window);
                for (conn, sub) in &subs {
                    let c = self.conns.get_mut(conn).expect("subscriber exists");
                    c.subs
                        .get_mut(sub)
                        .expect("subscription exists")
                        .backlog
                        .push_back(pending.clone());
                    dispatch_topic_sub(c, sub);
                }
            }
        }
        Ok(SendOutcome::Stored)
    }

    /// Hands a queue's ready messages to its subscriptions with credit,
    /// round robin.
    fn dispatch_queue(&mut self, d: &Destination) {
        let Some(dest) = self.dests.get_mut(d) else {
            return;
        };
        let n = dest.subs.len();
        if n == 0 {
            return;
        }
        'messages: while !dest.ready.is_empty() {
            for step in 0..n {
                let i = (dest.next + step) % n;
                let (conn, sub) = &dest.subs[i];
                let c = self.conns.get_mut(conn).expect("consumer exists");
                if c.subs[sub].credit > 0 {
                    let p = dest.ready.pop_front().expect("not empty");
                    c.deliver(sub, p);
                    dest.next = (i + 1) % n;
                    continue 'messages;
                }
            }
            break; // nobody has credit
        }
    }

    fn dispatch(&mut self, conn: ConnId, sub: &SubscriptionId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(s) = c.subs.get(sub) else {
            return;
        };
        match s.destination.kind() {
            DestinationKind::Queue => {
                let d = s.destination.clone();
                self.dispatch_queue(&d);
            }
            DestinationKind::Topic => dispatch_topic_sub(c, sub),
        }
    }

    /// Opens a subscription (the caller has checked the profile).
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        f: SubscribeFrame,
        form: Form,
    ) -> Result<(), Refusal> {
        let max = self.config.max_credit;
        let c = self.conns.get(&conn).expect("connected");
        if c.subs.contains_key(&f.subscription) {
            return Err(Refusal::new(
                ErrorCode::DUPLICATE_SUBSCRIPTION,
                format!("subscription {} is already open", f.subscription),
            ));
        }
        if f.credit > max {
            return Err(credit_overflow(f.credit.into(), max));
        }
        self.dest(&f.destination)?
            .subs
            .push((conn, f.subscription.clone()));
        let c = self.conns.get_mut(&conn).expect("connected");
        c.subs.insert(
            f.subscription.clone(),
            Sub {
                destination: f.destination,
                ack: f.ack,
                credit: f.credit,
                unacked: 0,
                backlog: VecDeque::new(),
                form,
            },
        );
        self.dispatch(conn, &f.subscription);
        Ok(())
    }

    /// Adds credit to a subscription.
    pub fn credit(
        &mut self,
        conn: ConnId,
        sub: &SubscriptionId,
        credit: u32,
    ) -> Result<(), Refusal> {
        let max = self.config.max_credit;
        let c = self.conns.get_mut(&conn).expect("connected");
        let s = c
            .subs
            .get_mut(sub)
            .ok_or_else(|| unknown_subscription(sub))?;
        let window = u64::from(s.credit) + u64::from(s.unacked) + u64::from(credit);
        if window > u64::from(max) {
            return Err(credit_overflow(window, max));
        }
        s.credit += credit;
        self.dispatch(conn, sub);
        Ok(())
    }

    /// Returns the credit of a delivery taken back after the idle time
    /// (see [`MemoryConfig::redeliver_after`]); true if it was one.
    fn settle_expired(&mut self, conn: ConnId, delivery_id: u64) -> bool {
        let c = self.conns.get_mut(&conn).expect("connected");
        let Some(sub) = c.expired.remove(&delivery_id) else {
            return false;
        };
        if let Some(s) = c.subs.get_mut(&sub) {
            s.unacked -= 1;
            s.credit += 1;
            self.dispatch(conn, &sub);
        }
        true
    }

    /// Settles an `ack: client` delivery and returns its credit.
    pub fn ack(&mut self, conn: ConnId, delivery_id: u64) -> Result<(), Refusal> {
        if self.settle_expired(conn, delivery_id) {
            return Ok(());
        }
        let (sub, _) = self.settle(conn, delivery_id)?;
        self.dispatch(conn, &sub);
        Ok(())
    }

    /// Puts an `ack: client` delivery back for redelivery and returns its
    /// credit.
    pub fn nack(&mut self, conn: ConnId, delivery_id: u64) -> Result<(), Refusal> {
        if self.settle_expired(conn, delivery_id) {
            return Ok(());
        }
        let (sub, p) = self.settle(conn, delivery_id)?;
        self.put_back(conn, &sub, p);
        self.dispatch(conn, &sub);
        Ok(())
    }

    /// Puts a delivery of `sub` back at the front, marked redelivered.
    fn put_back(&mut self, conn: ConnId, sub: &SubscriptionId, mut p: Pending) {
        p.redelivered = true;
        let c = self.conns.get_mut(&conn).expect("connected");
        let s = c
            .subs
            .get_mut(sub)
            .expect("unacked deliveries have a subscription");
        match s.destination.kind() {
            DestinationKind::Queue => {
                let d = s.destination.clone();
                self.dests
                    .get_mut(&d)
                    .expect("subscribed destination exists")
                    .ready
                    .push_front(p);
            }
            DestinationKind::Topic => s.backlog.push_front(p),
        }
    }

    /// Takes back the `ack: client` deliveries of `conn` that have waited
    /// for an ACK for at least [`MemoryConfig::redeliver_after`] at `now`
    /// and redelivers them (see there). Returns how many it took back.
    /// The server calls it on a timer; the clock is tokio's, so tests can
    /// pause and advance it.
    pub fn redeliver_idle(&mut self, conn: ConnId, now: Instant) -> usize {
        let Some(idle) = self.config.redeliver_after else {
            return 0;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return 0;
        };
        let mut due: Vec<u64> = c
            .unacked
            .iter()
            .filter(|(_, (_, _, at))| now.saturating_duration_since(*at) >= idle)
            .map(|(id, _)| *id)
            .collect();
        due.sort_unstable();
        // Oldest first at the front: put the newest back first.
        let mut subs = Vec::new();
        for id in due.iter().rev() {
            let c = self.conns.get_mut(&conn).expect("connected");
            let (sub, p, _) = c.unacked.remove(id).expect("listed");
            c.expired.insert(*id, sub.clone());
            self.put_back(conn, &sub, p);
            subs.push(sub);
        }
        subs.dedup();
        for sub in subs {
            self.dispatch(conn, &sub);
        }
        due.len()
    }

    fn settle(
        &mut self,
        conn: ConnId,
        delivery_id: u64,
    ) -> Result<(SubscriptionId, Pending), Refusal> {
        let c = self.conns.get_mut(&conn).expect("connected");
        let (sub, p, _) = c.unacked.remove(&delivery_id).ok_or_else(|| {
            Refusal::new(
                ErrorCode::UNKNOWN_DELIVERY,
                format!(
                    "delivery {delivery_id} is not an unacknowledged delivery of this connection"
                ),
            )
        })?;
        let s = c
            .subs
            .get_mut(&sub)
            .expect("unacked deliveries have a subscription");
        s.unacked -= 1;
        s.credit += 1;
        Ok((sub, p))
    }

    /// Closes a subscription: its undelivered and unacknowledged messages go
    /// back to the queue (topics: they are dropped).
    pub fn unsubscribe(&mut self, conn: ConnId, sub: &SubscriptionId) -> Result<(), Refusal> {
        let c = self.conns.get_mut(&conn).expect("connected");
        if !c.subs.contains_key(sub) {
            return Err(unknown_subscription(sub));
        }
        self.close_subs(conn, |s| s == sub);
        Ok(())
    }

    /// Forgets a connection: all its subscriptions are closed as by
    /// [`unsubscribe`](Self::unsubscribe).
    pub fn disconnect(&mut self, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.close_subs(conn, |_| true);
            self.conns.remove(&conn);
        }
    }

    fn close_subs(&mut self, conn: ConnId, which: impl Fn(&SubscriptionId) -> bool) {
        let c = self.conns.get_mut(&conn).expect("connected");
        // Deliveries still in the outbox were never written: they go back
        // as they were. Unacknowledged ones that were written go back as
        // redelivered.
        let mut back: Vec<(u64, SubscriptionId, Pending)> = Vec::new();
        let mut unsent = HashSet::new();
        let outbox = std::mem::take(&mut c.outbox);
        for d in outbox {
            if which(&d.subscription) {
                unsent.insert(d.delivery_id);
                c.unacked.remove(&d.delivery_id);
                back.push((
                    d.delivery_id,
                    d.subscription,
                    Pending {
                        msg: d.message,
                        redelivered: d.redelivered,
                    },
                ));
            } else {
                c.outbox.push(d);
            }
        }
        let ids: Vec<u64> = c
            .unacked
            .iter()
            .filter(|(_, (s, _, _))| which(s))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let (s, mut p, _) = c.unacked.remove(&id).expect("listed");
            p.redelivered = true;
            back.push((id, s, p));
        }
        back.sort_by_key(|(id, _, _)| *id);
        c.expired.retain(|_, s| !which(s));
        let closing: Vec<SubscriptionId> = c.subs.keys().filter(|s| which(s)).cloned().collect();
        let mut touched = Vec::new();
        for s in &closing {
            let sub = c.subs.remove(s).expect("listed");
            let d = self
                .dests
                .get_mut(&sub.destination)
                .expect("subscribed destination exists");
            d.subs.retain(|(cn, sn)| !(*cn == conn && sn == s));
            d.next = 0;
            if d.kind == DestinationKind::Queue {
                // Oldest first at the front: push the newest first.
                for (_, _, p) in back.iter().rev().filter(|(_, bs, _)| bs == s) {
                    d.ready.push_front(p.clone());
                }
                touched.push(sub.destination);
            }
        }
        for d in touched {
            self.dispatch_queue(&d);
        }
    }

    /// The limits.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// Messages waiting at a queue (not yet delivered), for tests and stats.
    pub fn queue_len(&self, d: &Destination) -> usize {
        self.dests.get(d).map_or(0, |d| d.ready.len())
    }

    /// Deliveries of `conn` waiting for an ACK.
    pub fn unacked_len(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.unacked.len())
    }
}

fn dispatch_topic_sub(c: &mut Conn, sub: &SubscriptionId) {
    loop {
        let s = c.subs.get_mut(sub).expect("subscription exists");
        if s.credit == 0 {
            return;
        }
        let Some(p) = s.backlog.pop_front() else {
            return;
        };
        c.deliver(sub, p);
    }
}

fn unknown_subscription(sub: &SubscriptionId) -> Refusal {
    Refusal::new(
        ErrorCode::UNKNOWN_SUBSCRIPTION,
        format!("subscription {sub} is not open on this connection"),
    )
}

fn credit_overflow(window: u64, max: u32) -> Refusal {
    Refusal::new(
        ErrorCode::CREDIT_OVERFLOW,
        format!("a credit window of {window} exceeds the broker's maximum of {max}"),
    )
}

/// A [`Core`] shared by the server's connections.
#[derive(Debug, Clone, Default)]
pub struct MemoryBroker {
    core: Arc<Mutex<Core>>,
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new(config: MemoryConfig) -> MemoryBroker {
        MemoryBroker {
            core: Arc::new(Mutex::new(Core::new(config))),
        }
    }

    /// Locks the state for one operation (never held across an await).
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> Core {
        Core::new(MemoryConfig {
            max_queue: 3,
            max_credit: 10,
            dedupe_window: 2,
            max_destinations: 4,
            redeliver_after: Some(Duration::from_millis(100)),
        })
    }

    fn conn(c: &mut Core) -> (ConnId, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel(1);
        (c.connect(tx), rx)
    }

    fn send(c: &mut Core, from: ConnId, d: &str, id: &str) -> Result<SendOutcome, Refusal> {
        c.send(
            from,
            SendFrame {
                destination: Destination::new(d).unwrap(),
                message_id: MessageId::new(id).unwrap(),
                headers: Headers::new(),
                body: Bytes::from(id.to_owned()),
            },
        )
    }

    fn subscribe(
        c: &mut Core,
        conn: ConnId,
        s: &str,
        d: &str,
        ack: AckMode,
        credit: u32,
    ) -> Result<(), Refusal> {
        c.subscribe(
            conn,
            SubscribeFrame {
                subscription: SubscriptionId::new(s).unwrap(),
                destination: Destination::new(d).unwrap(),
                ack,
                credit,
            },
            Form::Binary,
        )
    }

    fn ids(out: &[Delivery]) -> Vec<&str> {
        out.iter().map(|d| d.message.message_id.as_str()).collect()
    }

    #[test]
    fn queue_round_robin_and_credit() {
        let mut c = core();
        let (p, _) = conn(&mut c);
        let (a, mut wa) = conn(&mut c);
        let (b, _) = conn(&mut c);
        subscribe(&mut c, a, "s", "/queue/q", AckMode::Client, 1).unwrap();
        subscribe(&mut c, b, "s", "/queue/q", AckMode::Client, 1).unwrap();
        for id in ["1", "2", "3"] {
            assert_eq!(send(&mut c, p, "/queue/q", id), Ok(SendOutcome::Stored));
        }
        assert!(wa.try_recv().is_ok());
        let da = c.take_outbox(a);
        let db = c.take_outbox(b);
        assert_eq!((ids(&da), ids(&db)), (vec!["1"], vec!["2"]));
        assert_eq!(c.queue_len(&Destination::new("/queue/q").unwrap()), 1);
        // Acking returns the credit: the third message follows.
        c.ack(b, db[0].delivery_id).unwrap();
        assert_eq!(ids(&c.take_outbox(b)), vec!["3"]);
        // A second ack of the same id, and an id never delivered, are refused.
        assert_eq!(
            c.ack(b, db[0].delivery_id).unwrap_err().code,
            ErrorCode::UNKNOWN_DELIVERY
        );
        assert_eq!(c.ack(b, 99).unwrap_err().code, ErrorCode::UNKNOWN_DELIVERY);
        // Auto-mode deliveries cannot be acked.
        let (d, _) = conn(&mut c);
        subscribe(&mut c, d, "s", "/queue/r", AckMode::Auto, 1).unwrap();
        send(&mut c, p, "/queue/r", "r1").unwrap();
        let dd = c.take_outbox(d);
        assert_eq!(
            c.ack(d, dd[0].delivery_id).unwrap_err().code,
            ErrorCode::UNKNOWN_DELIVERY
        );
        assert_eq!(da[0].delivery_id, 1);
    }

    #[test]
    fn queue_limit_refuses_and_dedupe_acks_again() {
        let mut c = core();
        let (p, _) = conn(&mut c);
        for id in ["1", "2", "3"] {
            send(&mut c, p, "/queue/q", id).unwrap();
        }
        assert_eq!(
            send(&mut c, p, "/queue/q", "4").unwrap_err().code,
            ErrorCode::QUEUE_FULL
        );
        // "3" is within the window of 2: a duplicate, even when full.
        assert_eq!(send(&mut c, p, "/queue/q", "3"), Ok(SendOutcome::Duplicate));
        assert_eq!(c.queue_len(&Destination::new("/queue/q").unwrap()), 3);
    }

    #[test]
    fn disconnect_redelivers_in_order() {
        let mut c = core();
        let (p, _) = conn(&mut c);
        let (a, _) = conn(&mut c);
        subscribe(&mut c, a, "s", "/queue/q", AckMode::Client, 2).unwrap();
        for id in ["1", "2", "3"] {
            send(&mut c, p, "/queue/q", id).unwrap();
        }
        let first = c.take_outbox(a);
        assert_eq!(ids(&first), vec!["1", "2"]);
        c.disconnect(a);
        let (b, _) = conn(&mut c);
        subscribe(&mut c, b, "s", "/queue/q", AckMode::Client, 10).unwrap();
        let out = c.take_outbox(b);
        assert_eq!(ids(&out), vec!["1", "2", "3"]);
        assert_eq!(
            out.iter().map(|d| d.redelivered).collect::<Vec<_>>(),
            vec![true, true, false]
        );
    }

    #[test]
    fn unwritten_deliveries_go_back_unmarked() {
        let mut c = core();
        let (p, _) = conn(&mut c);
        let (a, _) = conn(&mut c);
        subscribe(&mut c, a, "s", "/queue/q", AckMode::Auto, 5).unwrap();
        send(&mut c, p, "/queue/q", "1").unwrap();
        // Never taken from the outbox: not lost, not marked.
        c.unsubscribe(a, &SubscriptionId::new("s").unwrap())
            .unwrap();
        assert_eq!(c.queue_len(&Destination::new("/queue/q").unwrap()), 1);
        let (b, _) = conn(&mut c);
        subscribe(&mut c, b, "t", "/queue/q", AckMode::Auto, 5).unwrap();
        let out = c.take_outbox(b);
        assert_eq!((ids(&out), out[0].redelivered), (vec!["1"], false));
    }

    #[test]
    fn topic_fan_out_nack_and_limits() {
        let mut c = core();
        let (p, _) = conn(&mut c);
        let (a, _) = conn(&mut c);
        let (b, _) = conn(&mut c);
        subscribe(&mut c, a, "s", "/topic/t", AckMode::Client, 10).unwrap();
        subscribe(&mut c, b, "s", "/topic/t", AckMode::Auto, 0).unwrap();
        send(&mut c, p, "/topic/t", "1").unwrap();
        let da = c.take_outbox(a);
        assert_eq!(ids(&da), vec!["1"]);
        assert!(c.take_outbox(b).is_empty(), "no credit, no delivery");
        c.nack(a, da[0].delivery_id).unwrap();
        let again = c.take_outbox(a);
        assert_eq!((ids(&again), again[0].redelivered), (vec!["1"], true));
        // b's backlog fills to 3; the fourth SEND is refused for everyone.
        send(&mut c, p, "/topic/t", "2").unwrap();
        send(&mut c, p, "/topic/t", "3").unwrap();
        assert_eq!(
            send(&mut c, p, "/topic/t", "4").unwrap_err().code,
            ErrorCode::QUEUE_FULL
        );
        c.credit(b, &SubscriptionId::new("s").unwrap(), 2).unwrap();
        assert_eq!(ids(&c.take_outbox(b)), vec!["1", "2"]);
    }

    #[test]
    fn credit_and_subscription_errors() {
        let mut c = core();
        let (a, _) = conn(&mut c);
        let s = SubscriptionId::new("s").unwrap();
        assert_eq!(
            subscribe(&mut c, a, "s", "/queue/q", AckMode::Client, 11)
                .unwrap_err()
                .code,
            ErrorCode::CREDIT_OVERFLOW
        );
        subscribe(&mut c, a, "s", "/queue/q", AckMode::Client, 10).unwrap();
        assert_eq!(
            subscribe(&mut c, a, "s", "/queue/r", AckMode::Client, 1)
                .unwrap_err()
                .code,
            ErrorCode::DUPLICATE_SUBSCRIPTION
        );
        assert_eq!(
            c.credit(a, &s, 1).unwrap_err().code,
            ErrorCode::CREDIT_OVERFLOW
        );
        let other = SubscriptionId::new("nope").unwrap();
        assert_eq!(
            c.credit(a, &other, 1).unwrap_err().code,
            ErrorCode::UNKNOWN_SUBSCRIPTION
        );
        assert_eq!(
            c.unsubscribe(a, &other).unwrap_err().code,
            ErrorCode::UNKNOWN_SUBSCRIPTION
        );
        // Destination limit: q and three more make 4 (the refused SUBSCRIBE
        // to r created nothing), the fifth is refused.
        for d in ["/queue/x1", "/queue/x2", "/queue/x3"] {
            let _ = send(&mut c, a, d, "m");
        }
        assert_eq!(
            send(&mut c, a, "/queue/x9", "m").unwrap_err().code,
            ErrorCode::QUEUE_FULL
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_deliveries_go_to_another_consumer_at_the_limit() {
        let mut c = core();
        let (p, _) = conn(&mut c);
        let (a, _) = conn(&mut c);
        let (b, _) = conn(&mut c);
        subscribe(&mut c, a, "s", "/queue/q", AckMode::Client, 1).unwrap();
        send(&mut c, p, "/queue/q", "1").unwrap();
        send(&mut c, p, "/queue/q", "2").unwrap();
        let da = c.take_outbox(a);
        assert_eq!(ids(&da), vec!["1"]);
        subscribe(&mut c, b, "s", "/queue/q", AckMode::Client, 1).unwrap();
        assert_eq!(ids(&c.take_outbox(b)), vec!["2"]);
        // One millisecond before the limit: nothing moves.
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_eq!(c.redeliver_idle(a, Instant::now()), 0);
        assert_eq!(c.unacked_len(a), 1);
        // At the limit: taken back; b has no credit yet, so it waits.
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(c.redeliver_idle(a, Instant::now()), 1);
        assert_eq!(c.unacked_len(a), 0);
        assert!(c.take_outbox(a).is_empty(), "a's window is still used");
        assert_eq!(c.queue_len(&Destination::new("/queue/q").unwrap()), 1);
        // b acks its message: the credit it gets back takes the expired one.
        c.ack(b, 1).unwrap();
        let again = c.take_outbox(b);
        assert_eq!((ids(&again), again[0].redelivered), (vec!["1"], true));
        // a's late ACK settles nothing but returns its credit (no error);
        // a second one is unknown.
        c.ack(a, da[0].delivery_id).unwrap();
        assert_eq!(
            c.ack(a, da[0].delivery_id).unwrap_err().code,
            ErrorCode::UNKNOWN_DELIVERY
        );
        send(&mut c, p, "/queue/q", "3").unwrap();
        assert_eq!(ids(&c.take_outbox(a)), vec!["3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_consumer_that_never_acks_holds_one_window() {
        let mut c = core();
        let (p, _) = conn(&mut c);
        let (a, _) = conn(&mut c);
        subscribe(&mut c, a, "s", "/queue/q", AckMode::Client, 2).unwrap();
        for id in ["1", "2", "3"] {
            send(&mut c, p, "/queue/q", id).unwrap();
        }
        assert_eq!(ids(&c.take_outbox(a)), vec!["1", "2"]);
        for _ in 0..5 {
            tokio::time::advance(Duration::from_millis(100)).await;
            c.redeliver_idle(a, Instant::now());
            assert!(c.take_outbox(a).is_empty());
        }
        // Nothing is lost and a holds nothing: all three wait in order.
        assert_eq!(c.unacked_len(a), 0);
        c.disconnect(a);
        let (b, _) = conn(&mut c);
        subscribe(&mut c, b, "s", "/queue/q", AckMode::Client, 5).unwrap();
        let out = c.take_outbox(b);
        assert_eq!(ids(&out), vec!["1", "2", "3"]);
        assert_eq!(
            out.iter().map(|d| d.redelivered).collect::<Vec<_>>(),
            vec![true, true, false]
        );
    }
}
