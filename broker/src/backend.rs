//! The backend abstraction: what a server connection needs from the place
//! messages are kept, over the embedded [memory](crate::memory) backend or
//! [Redis](crate::redis).
//!
//! [`Backend`] is an enum rather than a trait object. There are two
//! backends, both in this crate; their operations are `async` (Redis) or
//! plain calls under a mutex (memory), and an enum lets the memory path
//! stay synchronous inside — no boxed futures, no allocation per frame —
//! while the connection task sees one async API, [`Session`]. A third
//! backend is one more variant and one more arm per method.
//!
//! Each accepted connection opens a [`Session`] with [`Backend::open`] and
//! gives it a wakeup channel; the session calls the backend for every
//! frame, and the connection task drains [`Session::take_outbox`] whenever
//! it is woken. Both backends share the data types of
//! [`memory`](crate::memory) ([`Delivery`], [`Refusal`], [`SendOutcome`]).

use crate::frame::{Form, SendFrame, SubscribeFrame, SubscriptionId};
use crate::memory::{ConnId, Delivery, MemoryBroker, MemoryConfig, Refusal, SendOutcome};
pub use crate::redis::Completion;
use crate::redis::{RedisBroker, RedisConfig, RedisSession};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Where a server keeps its messages.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Embedded, in this process (the default): nothing to set up, nothing
    /// survives the process.
    Memory(MemoryBroker),
    /// Redis Streams, shared by every node that uses the same Redis and key
    /// prefix: survives the death of a node.
    Redis(RedisBroker),
}

impl Backend {
    /// A fresh memory backend.
    pub fn memory(config: MemoryConfig) -> Backend {
        Backend::Memory(MemoryBroker::new(config))
    }

    /// Connects to Redis at `url` (`redis://HOST:PORT`).
    pub async fn redis(url: &str, config: RedisConfig) -> Result<Backend, ::redis::RedisError> {
        Ok(Backend::Redis(RedisBroker::connect(url, config).await?))
    }

    /// `"memory"` or `"redis"`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// How long an unacknowledged delivery waits before it is redelivered
    /// (`None`: never, only on NACK or disconnect).
    pub fn redeliver_after(&self) -> Option<Duration> {
        match self {
            Backend::Memory(m) => m.lock().config().redeliver_after,
            Backend::Redis(r) => Some(r.config().redeliver_after),
        }
    }

    /// Opens the backend side of one connection. `wake` gets a message (if
    /// it has room) whenever the session's outbox gains a delivery.
    pub fn open(&self, wake: mpsc::Sender<()>) -> Session {
        match self {
            Backend::Memory(m) => {
                let id = m.lock().connect(wake);
                Session::Memory {
                    broker: m.clone(),
                    id,
                }
            }
            Backend::Redis(r) => Session::Redis(r.open(wake)),
        }
    }
}

/// The backend side of one connection: every client operation, answered
/// with the [`Refusal`] to turn into an ERROR frame.
#[derive(Debug)]
pub enum Session {
    /// On the memory backend.
    Memory {
        /// The shared state.
        broker: MemoryBroker,
        /// This connection in it.
        id: ConnId,
    },
    /// On the Redis backend.
    Redis(RedisSession),
}

impl Session {
    /// Stores a SEND: `Some` outcome when it is settled now (memory; the
    /// RECEIPT may go out), `None` when it was queued and its outcome will
    /// come from [`next_completion`](Self::next_completion) (Redis).
    pub async fn send(&mut self, f: SendFrame) -> Option<Result<SendOutcome, Refusal>> {
        match self {
            Session::Memory { broker, id } => Some(broker.lock().send(*id, f)),
            Session::Redis(r) => {
                r.send(f).await;
                None
            }
        }
    }

    /// The next outcome of a deferred write (a SEND, or a failed ACK or
    /// NACK). Pending forever on the memory backend, which defers nothing.
    pub async fn next_completion(&mut self) -> Completion {
        match self {
            Session::Memory { .. } => std::future::pending().await,
            Session::Redis(r) => match r.next_completion().await {
                Some(c) => c,
                None => std::future::pending().await,
            },
        }
    }

    /// Opens a subscription; its deliveries travel in `form`.
    pub async fn subscribe(&mut self, f: SubscribeFrame, form: Form) -> Result<(), Refusal> {
        match self {
            Session::Memory { broker, id } => broker.lock().subscribe(*id, f, form),
            Session::Redis(r) => r.subscribe(f, form).await,
        }
    }

    /// Closes a subscription; its unsettled queue messages are redelivered.
    pub async fn unsubscribe(&mut self, sub: &SubscriptionId) -> Result<(), Refusal> {
        match self {
            Session::Memory { broker, id } => broker.lock().unsubscribe(*id, sub),
            Session::Redis(r) => r.unsubscribe(sub).await,
        }
    }

    /// Adds credit to a subscription.
    pub fn credit(&mut self, sub: &SubscriptionId, credit: u32) -> Result<(), Refusal> {
        match self {
            Session::Memory { broker, id } => broker.lock().credit(*id, sub, credit),
            Session::Redis(r) => r.credit(sub, credit),
        }
    }

    /// A deferred outcome that is already there, without waiting.
    pub fn try_completion(&mut self) -> Option<Completion> {
        match self {
            Session::Memory { .. } => None,
            Session::Redis(r) => r.try_completion(),
        }
    }

    /// Settles a delivery. An unknown delivery id is refused now; a
    /// backend failure may come later as [`Completion::Settle`].
    pub async fn ack(&mut self, delivery_id: u64) -> Result<(), Refusal> {
        match self {
            Session::Memory { broker, id } => broker.lock().ack(*id, delivery_id),
            Session::Redis(r) => r.ack(delivery_id).await,
        }
    }

    /// Puts a delivery back for redelivery (failures as for
    /// [`ack`](Self::ack)).
    pub async fn nack(&mut self, delivery_id: u64) -> Result<(), Refusal> {
        match self {
            Session::Memory { broker, id } => broker.lock().nack(*id, delivery_id),
            Session::Redis(r) => r.nack(delivery_id).await,
        }
    }

    /// Takes back deliveries unacknowledged for the backend's idle time at
    /// `now`; returns how many.
    pub fn redeliver_idle(&mut self, now: Instant) -> usize {
        match self {
            Session::Memory { broker, id } => broker.lock().redeliver_idle(*id, now),
            Session::Redis(r) => r.redeliver_idle(now),
        }
    }

    /// The deliveries waiting to be written, in order.
    pub fn take_outbox(&mut self) -> Vec<Delivery> {
        match self {
            Session::Memory { broker, id } => broker.lock().take_outbox(*id),
            Session::Redis(r) => r.take_outbox(),
        }
    }

    /// Ends the session: its subscriptions close, their unsettled queue
    /// messages are redelivered.
    pub async fn close(self) {
        match self {
            Session::Memory { broker, id } => broker.lock().disconnect(id),
            Session::Redis(r) => r.close().await,
        }
    }
}
