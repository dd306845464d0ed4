//! The Redis backend: destinations on Redis Streams, so several broker
//! nodes share them and a node can die without losing what it acknowledged.
//!
//! ```text
//!  SEND ──> the node's writer task (one per node, fed by every connection)
//!           takes all writes waiting (up to 512, 1 MiB of bodies) as one
//!           batch, one pipeline, one round trip:
//!    EVALSHA send-script, once for the batch's SENDs, per destination:
//!           destination known, or room under max_destinations?
//!           SMISMEMBER the batch's ids in {prefix}:dedupe:<destination>
//!           queue: XLEN once, then per message: full? else XADD
//!             {prefix}:q:/queue/NAME * id <message-id> h <headers> b <body>
//!           topic: trim what every live subscription has read, XADD the
//!             rest while the furthest-behind one has room (see below)
//!           SADD + RPUSH the new ids once, LPOP + SREM what left the window
//!    XACK + XDEL, once per stream for all the batch's ACKs
//!    XCLAIM per NACK
//!           ──> RECEIPT  (the message is in Redis before the producer hears of it)
//!           While one batch is in Redis the next one gathers (group commit).
//!           A connection has at most max_in_flight writes queued before it
//!           stops reading frames.
//!
//!  queue subscription = one consumer of the group `{group}` on the stream,
//!  named node-connection-subscription; one reader task per subscription,
//!  on its own Redis connection (it blocks):
//!     loop: wait for credit
//!           XAUTOCLAIM ... min-idle redeliver_after COUNT 32  (redelivered: true;
//!             one reader of the node per stream every poll, not every one)
//!           XREADGROUP GROUP {group} <consumer> COUNT credit BLOCK poll ... >
//!           ──> outbox ──wake──> connection task ──> MESSAGE
//!  ACK   ──> XACK + XDEL (the stream only holds unsettled messages);
//!           ack: auto deliveries are settled so when the connection takes
//!           them from its outbox
//!  NACK, UNSUBSCRIBE, disconnect ──> XCLAIM to the consumer `returned`
//!           with an idle time past the limit (UNSUBSCRIBE: all of the
//!           consumer's entries and DELCONSUMER, in one script): the next
//!           XAUTOCLAIM of any consumer on any node takes them
//!  kill -9 of a node ──> its consumers' pending entries age; after
//!           redeliver_after another node's XAUTOCLAIM takes them; the
//!           empty consumers are deleted later (forget_consumers_after)
//!
//!  topic subscription: registered (one script, atomic with reading the
//!  stream's last id) in {prefix}:tpos:<topic> (its read position) and
//!  {prefix}:tlive:<topic> (when Redis last heard from it); its reader
//!  XREADs from that position and records how far it has read in the same
//!  round trip as its next XREAD (and every redeliver_after / 4 while it
//!  has no credit). A SEND trims the entries every live subscription has
//!  read and is refused with 300 when the furthest-behind one already has
//!  max_queue entries it has not read: never trimmed away unread, as the
//!  memory backend refuses rather than drops. A subscription not heard
//!  from for redeliver_after (its node killed) is forgotten by the next
//!  SEND; with no live subscription a topic SEND stores nothing.
//! ```
//!
//! Differences from the memory backend (PROTOCOL.md §5):
//! - deduplication (the last `dedupe_window` ids per destination, as in
//!   memory) is shared by all nodes; ids pushed out of the window by the
//!   batch they arrive in still count as seen within that batch;
//! - a queue's `max_queue` counts its unsettled messages (waiting *and*
//!   delivered but not acknowledged), since both live in the stream;
//! - `max_destinations` counts the destinations of every node on the key
//!   prefix (the set `{prefix}:destinations`);
//! - a topic's `max_queue` counts the entries its furthest-behind live
//!   subscription has not read (memory: each subscription's backlog);
//!   messages a subscription has read sit in its node, up to its credit
//!   window, and end with that node (topics are not durable in either
//!   backend);
//! - a Redis failure answers requests with ERROR 501 (unavailable) and
//!   readers retry until Redis is back; nothing acknowledged is lost while
//!   Redis keeps its data.

use crate::frame::{
    AckMode, Destination, DestinationKind, ErrorCode, Form, Headers, MessageId, SendFrame,
    SubscribeFrame, SubscriptionId,
};
use crate::memory::{Delivery, Refusal, SendOutcome, Stored};
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Settings of the Redis backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Prefix of every key the broker creates (default `weft`). Nodes that
    /// share destinations share the prefix.
    pub key_prefix: String,
    /// The consumer group of queues (default `weft`).
    pub group: String,
    /// Unsettled messages of one queue (waiting or unacknowledged) before
    /// SENDs are refused with 300; for a topic, the messages its
    /// furthest-behind live subscription has not read (past it SENDs are
    /// refused too: never trimmed away unread). Default 10,000.
    pub max_queue: usize,
    /// Largest credit window of one subscription (default 1024).
    pub max_credit: u32,
    /// Message ids remembered per destination to drop duplicate SENDs, for
    /// every node (default 65,536; 0 turns deduplication off). Redis holds
    /// at most this many ids per destination, in a set and a list.
    pub dedupe_window: usize,
    /// How long a delivered message may stay unacknowledged before another
    /// consumer (on any node) takes it over: the `min-idle-time` of
    /// XAUTOCLAIM. This is also how long the messages of a killed node's
    /// consumers wait before they are redelivered, and how long a topic
    /// subscription may go unheard (its node killed or cut off from Redis)
    /// before SENDs stop keeping the topic's messages for it. Default 30 s.
    pub redeliver_after: Duration,
    /// How long one blocking read waits before the reader looks for idle
    /// messages to take over again (default 100 ms).
    pub poll: Duration,
    /// Consumers of a queue's group that hold no pending message and have
    /// been idle this long by Redis's count are deleted when a subscription
    /// to the queue opens, so the consumers of killed nodes (once their
    /// messages were taken over) do not pile up. Deleting an empty consumer
    /// loses nothing: a live one (Redis 7.0 does not count an empty
    /// blocking read as activity) is recreated by its next read. Default
    /// 60 s.
    pub forget_consumers_after: Duration,
    /// Writes (SENDs, ACKs, NACKs) one connection may have queued for
    /// Redis and not yet answered; past it the connection stops reading
    /// frames until Redis catches up, so a fast producer is held back by
    /// TCP instead of growing the broker's memory. Default 1024.
    pub max_in_flight: usize,
    /// Most destinations of the key prefix, counted across every node in
    /// the set `{prefix}:destinations` (default 10,000, as in memory). A
    /// SEND or SUBSCRIBE that would create one more is refused with 300.
    /// Destinations are never removed by the broker (as in memory); an
    /// operator frees one by deleting its keys and its member of that set.
    pub max_destinations: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            key_prefix: "weft".to_owned(),
            group: "weft".to_owned(),
            max_queue: 10_000,
            max_credit: 1024,
            dedupe_window: 65_536,
            redeliver_after: Duration::from_secs(30),
            poll: Duration::from_millis(100),
            forget_consumers_after: Duration::from_secs(60),
            max_in_flight: 1024,
            max_destinations: 10_000,
        }
    }
}

/// The consumer that returned (NACKed, unsubscribed) entries are parked on
/// until some consumer's XAUTOCLAIM takes them.
const RETURNED: &str = "returned";

/// Entries taken per XREADGROUP, XREAD or XPENDING page.
const PAGE: usize = 256;

/// Entries taken per XAUTOCLAIM.
const CLAIM_PAGE: usize = 32;

/// The SEND script, for a whole batch of SENDs (from every connection of
/// a node) in one call, grouped by destination.
///
/// KEYS[1] is the set of destinations; then five keys per destination:
/// its stream, dedupe set, dedupe order list, and (topics) the hash of its
/// live subscriptions' read positions and the sorted set of when each was
/// last heard from. ARGV: dedupe window, max_queue, max_destinations, the
/// topic subscription timeout (ms), the number of destinations; then per
/// destination its name, `q` or `t`, the number of messages n, and n
/// triples (message id, headers, body) in the order they arrived.
///
/// Returns one code per message, in that order: 1 stored, 0 duplicate, -1
/// queue full (for a topic: a live subscription's backlog is full), -2
/// over max_destinations.
///
/// Per destination it costs a fixed handful of commands (destination
/// check, SMISMEMBER, XLEN or the topic trim, SADD, RPUSH, LPOP, SREM) and
/// one XADD per message, where one script call per message cost all of
/// them per message. The dedupe window is updated once per batch: an id
/// that the same batch pushes out of the window still counts as seen
/// within the batch (stricter than one at a time, never looser).
const SEND_SCRIPT: &str = r"
local win = tonumber(ARGV[1])
local maxq = tonumber(ARGV[2])
local maxd = tonumber(ARGV[3])
local timeout = tonumber(ARGV[4])
local ngroups = tonumber(ARGV[5])
local out = {}
local a = 6
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
for g = 0, ngroups - 1 do
  local k = 1 + g * 5
  local stream, dedupe, order, tpos, tlive = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local dest, kind, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local first = a + 3
  a = first + 3 * n
  local known = redis.call('SISMEMBER', KEYS[1], dest) == 1
  if not known and redis.call('SCARD', KEYS[1]) >= maxd then
    for i = 1, n do out[#out + 1] = -2 end
  else
    if not known then redis.call('SADD', KEYS[1], dest) end
    local seen = {}
    if win > 0 then
      local ids = {}
      for i = 0, n - 1 do ids[#ids + 1] = ARGV[first + 3 * i] end
      local m = redis.call('SMISMEMBER', dedupe, unpack(ids))
      for i, v in ipairs(m) do if v == 1 then seen[ids[i]] = true end end
    end
    local len = 0
    local store = true
    if kind == 'q' then
      len = redis.call('XLEN', stream)
    else
      -- Topic: forget subscriptions not heard from within the timeout,
      -- trim what every live one has read, count what the furthest
      -- behind has not. No live subscription: nobody is owed the message.
      local t = redis.call('TIME')
      local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      for _, s in ipairs(redis.call('ZRANGEBYSCORE', tlive, '-inf', now - timeout)) do
        redis.call('HDEL', tpos, s)
        redis.call('ZREM', tlive, s)
      end
      local min_ms, min_seq = nil, nil
      for _, p in ipairs(redis.call('HVALS', tpos)) do
        local ms, seq = parse(p)
        if ms and (min_ms == nil or ms < min_ms or (ms == min_ms and seq < min_seq)) then
          min_ms, min_seq = ms, seq
        end
      end
      if min_ms == nil then
        store = false
        if redis.call('XLEN', stream) > 0 then redis.call('XTRIM', stream, 'MAXLEN', 0) end
      else
        redis.call('XTRIM', stream, 'MINID', string.format('%d-%d', min_ms, min_seq + 1))
        len = redis.call('XLEN', stream)
      end
    end
    local added = {}
    for i = 0, n - 1 do
      local id = ARGV[first + 3 * i]
      if seen[id] then
        out[#out + 1] = 0
      elseif maxq > 0 and len >= maxq then
        out[#out + 1] = -1
      else
        if store then
          redis.call('XADD', stream, '*', 'id', id, 'h', ARGV[first + 3 * i + 1], 'b', ARGV[first + 3 * i + 2])
          len = len + 1
        end
        if win > 0 then
          seen[id] = true
          added[#added + 1] = id
        end
        out[#out + 1] = 1
      end
    end
    if #added > 0 then
      redis.call('SADD', dedupe, unpack(added))
      local l = redis.call('RPUSH', order, unpack(added))
      if l > win then
        redis.call('SREM', dedupe, unpack(redis.call('LPOP', order, l - win)))
      end
    end
  end
end
return out
";

/// KEYS[1] destinations, KEYS[2] stream, KEYS[3] positions, KEYS[4]
/// liveness; ARGV[1] destination, ARGV[2] max_destinations, ARGV[3] the
/// subscription's name: registers a topic subscription at the stream's
/// last entry, atomically (no SEND can trim past it in between). Returns
/// the id it starts after, or -2 over max_destinations.
const TOPIC_SUBSCRIBE_SCRIPT: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -2 end
  redis.call('SADD', KEYS[1], ARGV[1])
end
local last = '0-0'
local e = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #e > 0 then last = e[1][1] end
local t = redis.call('TIME')
redis.call('HSET', KEYS[3], ARGV[3], last)
redis.call('ZADD', KEYS[4], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[3])
return last
";

/// KEYS[1] positions, KEYS[2] liveness; ARGV[1] subscription, ARGV[2] the
/// last id it read: records a topic subscription's progress and that it
/// is alive.
const TOPIC_TOUCH_SCRIPT: &str = r"
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
return 1
";

/// KEYS[1] destinations; ARGV[1] destination, ARGV[2] max_destinations:
/// 1 if the destination exists or was created, -2 over the limit.
const CLAIM_DESTINATION_SCRIPT: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -2 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
";

/// A Redis write queued by a session for the node's writer task.
enum Op {
    /// A SEND for the script.
    Send(SendFrame),
    /// XACK + XDEL of a delivery's entry.
    Settle {
        key: String,
        entry: String,
        delivery_id: u64,
        /// Report a failure (an ACK; not an `ack: auto` delivery, which
        /// the client never settles).
        report: bool,
    },
    /// Parks a NACKed delivery's entry for redelivery.
    Return {
        key: String,
        entry: String,
        delivery_id: u64,
    },
    /// Answered once every write queued before it is done (a closing
    /// session waits for its ACKs before it returns its entries).
    Flush(oneshot::Sender<()>),
}

impl Op {
    /// The bytes it adds to a batch, roughly (bodies dominate).
    fn bytes(&self) -> usize {
        match self {
            Op::Send(f) => f.body.len() + 64,
            _ => 64,
        }
    }
}

/// One queued write: what, where its outcome goes, and the session's
/// in-flight permit it holds until then.
struct Job {
    op: Op,
    done: mpsc::UnboundedSender<Completion>,
    _permit: Option<OwnedSemaphorePermit>,
}

/// The result of a write a session deferred to the writer task.
#[derive(Debug)]
pub enum Completion {
    /// A SEND is stored (or refused): its RECEIPT or ERROR can go out.
    Send(MessageId, Result<SendOutcome, Refusal>),
    /// The ACK or NACK of this delivery id failed in Redis (the message
    /// stays pending and is redelivered after the idle time).
    Settle(u64, Refusal),
}

/// Most writes in one pipeline.
const BATCH: usize = 512;

/// Bodies in one pipeline before the writer stops adding to it (a batch
/// always takes at least one write).
const BATCH_BYTES: usize = 1 << 20;

/// What the writer task needs. Not [`Shared`]: the task ends when the
/// last session and broker handle (which hold the sender) are gone.
struct WriterCtx {
    conn: ConnectionManager,
    config: RedisConfig,
    send: redis::Script,
}

/// Shared by the sessions of one node.
struct Shared {
    client: redis::Client,
    conn: ConnectionManager,
    config: RedisConfig,
    node: String,
    next_conn: AtomicU64,
    /// The writer task's queue.
    jobs: mpsc::UnboundedSender<Job>,
    return_all: redis::Script,
    forget: redis::Script,
    topic_subscribe: redis::Script,
    touch: redis::Script,
    claim_destination: redis::Script,
    /// Per queue stream: when a reader of this node last ran XAUTOCLAIM
    /// (`None`: its page was full, claim again at once), and the cursor.
    claims: Mutex<Claims>,
}

type Claims = HashMap<String, (Option<Instant>, String)>;

fn lock_claims(m: &Mutex<Claims>) -> MutexGuard<'_, Claims> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The keys of one destination.
struct Keys {
    stream: String,
    dedupe: String,
    order: String,
    /// Topics: read position of each live subscription (a hash).
    positions: String,
    /// Topics: when each subscription was last heard from (a sorted set,
    /// Redis time in ms).
    live: String,
}

impl Keys {
    fn new(prefix: &str, d: &Destination) -> Keys {
        Keys {
            stream: stream_key(prefix, d),
            dedupe: format!("{prefix}:dedupe:{d}"),
            order: format!("{prefix}:dedupe-order:{d}"),
            positions: format!("{prefix}:tpos:{d}"),
            live: format!("{prefix}:tlive:{d}"),
        }
    }
}

/// The set of every destination of the prefix (for `max_destinations`).
fn destinations_key(prefix: &str) -> String {
    format!("{prefix}:destinations")
}

fn too_many_destinations(max: usize) -> Refusal {
    Refusal {
        code: ErrorCode::QUEUE_FULL,
        message: format!("the broker holds its limit of {max} destinations"),
    }
}

/// A Redis backend: a cheap-to-clone handle shared by the server's
/// connections. See the [module docs](self).
#[derive(Clone)]
pub struct RedisBroker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("node", &self.shared.node)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: RedisError) -> Refusal {
    Refusal {
        code: ErrorCode::UNAVAILABLE,
        message: format!("the Redis backend failed: {e}"),
    }
}

async fn manager(
    client: &redis::Client,
    response_timeout: Duration,
) -> Result<ConnectionManager, RedisError> {
    ConnectionManager::new_with_config(
        client.clone(),
        ConnectionManagerConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500)),
    )
    .await
}

impl RedisBroker {
    /// Connects to `url` (`redis://HOST:PORT[/DB]`). Fails if Redis cannot
    /// be reached now; later failures are answered per request (501).
    pub async fn connect(url: &str, config: RedisConfig) -> Result<RedisBroker, RedisError> {
        // Nagle's algorithm would hold back pipelined requests and the
        // small replies behind them; the broker wants them on the wire now.
        use redis::IntoConnectionInfo;
        let info = url
            .into_connection_info()?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)?;
        let mut conn = manager(&client, Duration::from_secs(5)).await?;
        let send = redis::Script::new(SEND_SCRIPT);
        send.load_async(&mut conn).await?;
        // The writer shares the node's multiplexed connection: its traffic
        // also finds (and repairs) a connection broken by a Redis restart
        // before a SUBSCRIBE needs it.
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(
            WriterCtx {
                conn: conn.clone(),
                config: config.clone(),
                send,
            },
            jobs_rx,
        ));
        Ok(RedisBroker {
            shared: Arc::new(Shared {
                client,
                conn,
                config,
                node: format!("{:016x}", rand::random::<u64>()),
                next_conn: AtomicU64::new(1),
                jobs,
                return_all: redis::Script::new(RETURN_ALL_SCRIPT),
                forget: redis::Script::new(FORGET_SCRIPT),
                topic_subscribe: redis::Script::new(TOPIC_SUBSCRIBE_SCRIPT),
                touch: redis::Script::new(TOPIC_TOUCH_SCRIPT),
                claim_destination: redis::Script::new(CLAIM_DESTINATION_SCRIPT),
                claims: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// This node's random name (the first part of its consumer names).
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// The settings.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// Opens the backend side of one connection. `wake` gets a message
    /// (if it has room) whenever the connection's outbox gains a delivery.
    pub fn open(&self, wake: mpsc::Sender<()>) -> RedisSession {
        let n = self.shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let (done_tx, done) = mpsc::unbounded_channel();
        RedisSession {
            done_tx,
            permits: Arc::new(Semaphore::new(self.shared.config.max_in_flight.max(1))),
            done,
            shared: self.shared.clone(),
            name: format!("{}-{n}", self.shared.node),
            state: Arc::new(Mutex::new(State {
                subs: HashMap::new(),
                unacked: HashMap::new(),
                expired: HashMap::new(),
                auto: HashMap::new(),
                next_delivery: 0,
                outbox: Vec::new(),
                wake,
            })),
            readers: HashMap::new(),
        }
    }
}

fn stream_key(prefix: &str, d: &Destination) -> String {
    let kind = match d.kind() {
        DestinationKind::Queue => "q",
        DestinationKind::Topic => "t",
    };
    format!("{prefix}:{kind}:{d}")
}

/// An unsettled `ack: client` delivery.
struct Unacked {
    sub: SubscriptionId,
    /// The stream entry (queues; topics settle locally).
    entry: Option<String>,
    message: Arc<Stored>,
    at: Instant,
}

struct SubState {
    destination: Destination,
    key: String,
    consumer: String,
    ack: AckMode,
    credit: u32,
    unacked: u32,
    form: Form,
    /// Topics: NACKed or expired messages to deliver again first.
    backlog: VecDeque<Arc<Stored>>,
    notify: Arc<Notify>,
}

struct State {
    subs: HashMap<SubscriptionId, SubState>,
    unacked: HashMap<u64, Unacked>,
    /// Deliveries taken back after the idle time that still hold a credit
    /// until their consumer ACKs or NACKs them (as in the memory backend).
    expired: HashMap<u64, SubscriptionId>,
    /// `ack: auto` queue deliveries still in the outbox: their entries are
    /// settled when the connection takes them (so, as in the memory
    /// backend, those never handed to the connection go back).
    auto: HashMap<u64, (SubscriptionId, String)>,
    next_delivery: u64,
    outbox: Vec<Delivery>,
    wake: mpsc::Sender<()>,
}

impl State {
    /// Records one delivery of `sub` (credit already checked); returns the
    /// entry to settle at once for `ack: auto` queues.
    fn deliver(
        &mut self,
        sub: &SubscriptionId,
        message: Arc<Stored>,
        entry: Option<String>,
        redelivered: bool,
    ) {
        let Some(s) = self.subs.get_mut(sub) else {
            return;
        };
        s.credit -= 1;
        self.next_delivery += 1;
        let delivery_id = self.next_delivery;
        if s.ack == AckMode::Client {
            s.unacked += 1;
            self.unacked.insert(
                delivery_id,
                Unacked {
                    sub: sub.clone(),
                    entry,
                    message: message.clone(),
                    at: Instant::now(),
                },
            );
        } else if let Some(entry) = entry {
            self.auto.insert(delivery_id, (sub.clone(), entry));
        }
        self.outbox.push(Delivery {
            subscription: sub.clone(),
            delivery_id,
            message,
            redelivered,
            form: s.form,
        });
        let _ = self.wake.try_send(());
    }
}

/// The backend side of one connection on the Redis backend.
///
/// Writes (SEND, and the XACK / XCLAIM of ACK and NACK) go to the node's
/// writer task in order, which batches them with those of the node's other
/// connections (see the [module docs](self)), so many SENDs cost one Redis round trip
/// and one script call, not one each; their results come back as
/// [`Completion`]s. Order is kept: one writer, one connection, batches in
/// sequence.
pub struct RedisSession {
    /// Where the writer sends this session's outcomes.
    done_tx: mpsc::UnboundedSender<Completion>,
    /// One per queued write until the writer has sent it to Redis and
    /// back. The connection task drains the completions after every frame
    /// it handles, so they are bounded by this too.
    permits: Arc<Semaphore>,
    done: mpsc::UnboundedReceiver<Completion>,
    shared: Arc<Shared>,
    name: String,
    state: Arc<Mutex<State>>,
    readers: HashMap<SubscriptionId, JoinHandle<()>>,
}

impl std::fmt::Debug for RedisSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSession")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn encode_headers(h: &Headers) -> String {
    let pairs: Vec<(&str, &str)> = h.iter().collect();
    serde_json::to_string(&pairs).expect("strings serialize")
}

fn decode_headers(s: &[u8]) -> Headers {
    let mut h = Headers::new();
    if let Ok(pairs) = serde_json::from_slice::<Vec<(String, String)>>(s) {
        for (n, v) in pairs {
            // Stored by a broker that validated them; skip anything else.
            let _ = h.insert(n, v);
        }
    }
    h
}

fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// One stream entry `[id, [field, value, ...]]` as a stored message;
/// `None` for an entry deleted meanwhile (XAUTOCLAIM reports those as nil
/// fields) or one that is not ours.
fn parse_entry(v: &Value, destination: &Destination) -> Option<(String, Arc<Stored>)> {
    let e = array(v);
    let id = String::from_utf8(bulk(e.first()?)?.to_vec()).ok()?;
    let fields = array(e.get(1)?);
    let (mut mid, mut headers, mut body) = (None, Headers::new(), Bytes::new());
    for pair in fields.chunks(2) {
        let [k, v] = pair else { continue };
        let v = bulk(v)?;
        match bulk(k)? {
            b"id" => mid = MessageId::new(std::str::from_utf8(v).ok()?).ok(),
            b"h" => headers = decode_headers(v),
            b"b" => body = Bytes::copy_from_slice(v),
            _ => {}
        }
    }
    Some((
        id,
        Arc::new(Stored {
            destination: destination.clone(),
            message_id: mid?,
            headers,
            body,
        }),
    ))
}

/// The entries of an XREAD / XREADGROUP reply (one stream).
fn parse_read(v: &Value, destination: &Destination) -> Vec<(String, Arc<Stored>)> {
    let mut out = Vec::new();
    let streams: Vec<&Value> = match v {
        Value::Map(m) => m.iter().map(|(_, v)| v).collect(),
        Value::Array(a) => a.iter().filter_map(|s| array(s).get(1)).collect(),
        _ => Vec::new(),
    };
    for entries in streams {
        for e in array(entries) {
            if let Some(x) = parse_entry(e, destination) {
                out.push(x);
            }
        }
    }
    out
}

impl RedisSession {
    fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    fn conn(&self) -> ConnectionManager {
        self.shared.conn.clone()
    }

    async fn queue(&self, op: Op) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.submit(op, Some(permit));
    }

    fn submit(&self, op: Op, permit: Option<OwnedSemaphorePermit>) {
        // The writer only ends when every session and handle is gone.
        let _ = self.shared.jobs.send(Job {
            op,
            done: self.done_tx.clone(),
            _permit: permit,
        });
    }

    /// Queues a SEND for the writer (waiting while `max_in_flight` writes
    /// are queued); its outcome comes back as a [`Completion::Send`] from
    /// [`next_completion`](Self::next_completion).
    pub async fn send(&mut self, f: SendFrame) {
        self.queue(Op::Send(f)).await;
    }

    /// A finished write that is already there.
    pub fn try_completion(&mut self) -> Option<Completion> {
        self.done.try_recv().ok()
    }

    /// The next finished write (never ends while the session is open).
    pub async fn next_completion(&mut self) -> Option<Completion> {
        self.done.recv().await
    }

    /// Opens a subscription and starts its reader.
    pub async fn subscribe(&mut self, f: SubscribeFrame, form: Form) -> Result<(), Refusal> {
        let max = self.config().max_credit;
        if lock(&self.state).subs.contains_key(&f.subscription) {
            return Err(Refusal {
                code: ErrorCode::DUPLICATE_SUBSCRIPTION,
                message: format!("subscription {} is already open", f.subscription),
            });
        }
        if f.credit > max {
            return Err(credit_overflow(f.credit.into(), max));
        }
        let key = stream_key(&self.config().key_prefix, &f.destination);
        let mut conn = self.conn();
        // Where a reader starts: queues read the group from the beginning
        // of what is unsettled; topics from the last entry now.
        let consumer = format!("{}-{}", self.name, f.subscription);
        let dests = destinations_key(&self.config().key_prefix);
        let max_dest = self.config().max_destinations;
        let start = match f.destination.kind() {
            DestinationKind::Queue => {
                let ok: i64 = self
                    .shared
                    .claim_destination
                    .key(&dests)
                    .arg(f.destination.as_str())
                    .arg(max_dest)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                if ok == -2 {
                    return Err(too_many_destinations(max_dest));
                }
                let r: Result<Value, RedisError> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&key)
                    .arg(&self.config().group)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut conn)
                    .await;
                match r {
                    Ok(_) => {}
                    Err(e) if e.code() == Some("BUSYGROUP") => {}
                    Err(e) => return Err(unavailable(e)),
                }
                forget_idle_consumers(
                    &self.shared.forget,
                    &mut conn,
                    &key,
                    &self.config().group,
                    self.config().forget_consumers_after,
                )
                .await
                .map_err(unavailable)?;
                ">".to_owned()
            }
            DestinationKind::Topic => {
                // Registered at the stream's end in one script: from now
                // on no SEND trims what this subscription has not read.
                let k = Keys::new(&self.config().key_prefix, &f.destination);
                let v: Value = self
                    .shared
                    .topic_subscribe
                    .key(&dests)
                    .key(&key)
                    .key(&k.positions)
                    .key(&k.live)
                    .arg(f.destination.as_str())
                    .arg(max_dest)
                    .arg(&consumer)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                match v {
                    Value::Int(-2) => return Err(too_many_destinations(max_dest)),
                    v => bulk(&v)
                        .and_then(|b| String::from_utf8(b.to_vec()).ok())
                        .unwrap_or_else(|| "0-0".to_owned()),
                }
            }
        };
        let reader_conn = manager(
            &self.shared.client,
            self.config().poll + Duration::from_secs(2),
        )
        .await
        .map_err(unavailable)?;
        let notify = Arc::new(Notify::new());
        lock(&self.state).subs.insert(
            f.subscription.clone(),
            SubState {
                destination: f.destination.clone(),
                key: key.clone(),
                consumer: consumer.clone(),
                ack: f.ack,
                credit: f.credit,
                unacked: 0,
                form,
                backlog: VecDeque::new(),
                notify: notify.clone(),
            },
        );
        let reader = Reader {
            shared: self.shared.clone(),
            state: self.state.clone(),
            conn: reader_conn,
            sub: f.subscription.clone(),
            destination: f.destination,
            key,
            consumer,
            notify,
            last: start,
            touched: None,
        };
        self.readers
            .insert(f.subscription, tokio::spawn(reader.run()));
        Ok(())
    }

    /// Adds credit to a subscription.
    pub fn credit(&mut self, sub: &SubscriptionId, credit: u32) -> Result<(), Refusal> {
        let max = self.config().max_credit;
        let mut st = lock(&self.state);
        let s = st
            .subs
            .get_mut(sub)
            .ok_or_else(|| unknown_subscription(sub))?;
        let window = u64::from(s.credit) + u64::from(s.unacked) + u64::from(credit);
        if window > u64::from(max) {
            return Err(credit_overflow(window, max));
        }
        s.credit += credit;
        s.notify.notify_one();
        Ok(())
    }

    /// Takes an unsettled delivery out of the books and returns its credit;
    /// `Ok(None)` for an expired one (credit returned, nothing to settle).
    fn settle(&mut self, delivery_id: u64) -> Result<Option<Unacked>, Refusal> {
        let mut st = lock(&self.state);
        if let Some(sub) = st.expired.remove(&delivery_id) {
            if let Some(s) = st.subs.get_mut(&sub) {
                s.unacked -= 1;
                s.credit += 1;
                s.notify.notify_one();
            }
            return Ok(None);
        }
        let u = st.unacked.remove(&delivery_id).ok_or_else(|| Refusal {
            code: ErrorCode::UNKNOWN_DELIVERY,
            message: format!(
                "delivery {delivery_id} is not an unacknowledged delivery of this connection"
            ),
        })?;
        if let Some(s) = st.subs.get_mut(&u.sub) {
            s.unacked -= 1;
            s.credit += 1;
            s.notify.notify_one();
        }
        Ok(Some(u))
    }

    /// Settles an `ack: client` delivery: the writer does XACK and XDEL of
    /// its entry (a failure comes back as [`Completion::Settle`]).
    pub async fn ack(&mut self, delivery_id: u64) -> Result<(), Refusal> {
        let Some(u) = self.settle(delivery_id)? else {
            return Ok(());
        };
        if let Some(entry) = u.entry {
            let key = stream_key(&self.config().key_prefix, &u.message.destination);
            self.queue(Op::Settle {
                key,
                entry,
                delivery_id,
                report: true,
            })
            .await;
        }
        Ok(())
    }

    /// Puts an `ack: client` delivery back: queues park the entry for any
    /// consumer's XAUTOCLAIM; topics redeliver it to the same subscription.
    pub async fn nack(&mut self, delivery_id: u64) -> Result<(), Refusal> {
        let Some(u) = self.settle(delivery_id)? else {
            return Ok(());
        };
        match u.entry {
            Some(entry) => {
                let key = stream_key(&self.config().key_prefix, &u.message.destination);
                self.queue(Op::Return {
                    key,
                    entry,
                    delivery_id,
                })
                .await;
            }
            None => {
                let mut st = lock(&self.state);
                if let Some(s) = st.subs.get_mut(&u.sub) {
                    s.backlog.push_front(u.message);
                    s.notify.notify_one();
                }
            }
        }
        Ok(())
    }

    /// Takes back the deliveries unacknowledged for `redeliver_after`: in
    /// Redis they are already claimable by others (XAUTOCLAIM); here they
    /// leave the books, keeping their credit until a late ACK or NACK.
    /// Topics put them back in the subscription's backlog.
    pub fn redeliver_idle(&mut self, now: Instant) -> usize {
        let idle = self.config().redeliver_after;
        let mut st = lock(&self.state);
        let mut due: Vec<u64> = st
            .unacked
            .iter()
            .filter(|(_, u)| now.saturating_duration_since(u.at) >= idle)
            .map(|(id, _)| *id)
            .collect();
        due.sort_unstable();
        for id in due.iter().rev() {
            let u = st.unacked.remove(id).expect("listed");
            st.expired.insert(*id, u.sub.clone());
            if u.entry.is_none()
                && let Some(s) = st.subs.get_mut(&u.sub)
            {
                s.backlog.push_front(u.message);
            }
        }
        due.len()
    }

    /// The deliveries waiting to be written, in order.
    pub fn take_outbox(&mut self) -> Vec<Delivery> {
        let mut st = lock(&self.state);
        let out = std::mem::take(&mut st.outbox);
        // ack: auto queue deliveries count as delivered now: settle them
        // (without a permit: they are bounded by the credit windows).
        if !st.auto.is_empty() {
            for d in &out {
                if let Some((_, entry)) = st.auto.remove(&d.delivery_id) {
                    let key = stream_key(&self.shared.config.key_prefix, &d.message.destination);
                    let op = Op::Settle {
                        key,
                        entry,
                        delivery_id: d.delivery_id,
                        report: false,
                    };
                    self.submit(op, None);
                }
            }
        }
        out
    }

    /// Closes a subscription: its reader stops, its unsettled queue
    /// entries are returned for redelivery, its consumer is deleted.
    pub async fn unsubscribe(&mut self, sub: &SubscriptionId) -> Result<(), Refusal> {
        if !lock(&self.state).subs.contains_key(sub) {
            return Err(unknown_subscription(sub));
        }
        self.close_sub(sub).await.map_err(unavailable)
    }

    async fn close_sub(&mut self, sub: &SubscriptionId) -> Result<(), RedisError> {
        if let Some(reader) = self.readers.remove(sub) {
            reader.abort();
            let _ = reader.await;
        }
        let s = {
            let mut st = lock(&self.state);
            st.unacked.retain(|_, u| &u.sub != sub);
            st.expired.retain(|_, s| s != sub);
            st.auto.retain(|_, (s, _)| s != sub);
            st.outbox.retain(|d| &d.subscription != sub);
            st.subs.remove(sub)
        };
        let Some(s) = s else { return Ok(()) };
        if s.destination.kind() == DestinationKind::Topic {
            // No longer holds the topic's trimming back.
            let k = Keys::new(&self.config().key_prefix, &s.destination);
            let _: Value = redis::pipe()
                .cmd("HDEL")
                .arg(&k.positions)
                .arg(&s.consumer)
                .ignore()
                .cmd("ZREM")
                .arg(&k.live)
                .arg(&s.consumer)
                .ignore()
                .query_async(&mut self.conn())
                .await?;
            return Ok(());
        }
        // Everything this consumer holds in Redis (delivered, in the
        // outbox, or read but not yet booked when the reader stopped) goes
        // back, and the consumer, now empty, is deleted: in one script, so
        // no read can slip in between.
        let c = self.config().clone();
        let _: i64 = self
            .shared
            .return_all
            .key(&s.key)
            .arg(&c.group)
            .arg(&s.consumer)
            .arg(RETURNED)
            .arg(returned_idle(c.redeliver_after))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Ends the session: every subscription is closed as by
    /// [`unsubscribe`](Self::unsubscribe). If Redis is unreachable the
    /// consumers' entries stay pending and are taken over after
    /// `redeliver_after`, as for a killed node.
    pub async fn close(mut self) {
        // Let the queued writes finish first (ACKs before the returns).
        let (tx, rx) = oneshot::channel();
        self.submit(Op::Flush(tx), None);
        let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        let subs: Vec<SubscriptionId> = lock(&self.state).subs.keys().cloned().collect();
        for s in subs {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.close_sub(&s)).await;
        }
    }
}

impl Drop for RedisSession {
    fn drop(&mut self) {
        for r in self.readers.values() {
            r.abort();
        }
    }
}

/// The node's writer task: takes the queued writes of every connection in
/// the order they were queued, as many as are waiting (up to [`BATCH`]
/// writes or [`BATCH_BYTES`] of bodies), and sends each batch as one
/// pipeline: one SEND script call for all its SENDs, one XACK and one XDEL
/// per stream for all its ACKs, one XCLAIM per NACK.
///
/// Batches are sent one at a time, so while one is in Redis the next one
/// gathers (group commit): under light load a SEND goes alone at once,
/// under heavy load batches grow and Redis does less work per message.
/// Before taking a batch the writer yields once to the scheduler, so
/// connections that were ready to run queue their writes too (a linger of
/// one scheduling round, never a timer).
///
/// Order: one task, one Redis connection, batches in sequence, and the
/// script stores a destination's messages in the order they were queued,
/// so one connection's SENDs to one destination are stored in order.
async fn writer(mut w: WriterCtx, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
    while let Some(job) = jobs.recv().await {
        let mut bytes = job.op.bytes();
        batch.push(job);
        tokio::task::yield_now().await;
        while batch.len() < BATCH && bytes < BATCH_BYTES {
            match jobs.try_recv() {
                Ok(job) => {
                    bytes += job.op.bytes();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let mut result = write_batch(&w, &batch).await;
        if let Err(e) = &result
            && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        {
            // Redis restarted without the script: load it and retry. SENDs
            // of the batch that were stored are dropped as duplicates.
            let _ = w.send.load_async(&mut w.conn).await;
            result = write_batch(&w, &batch).await;
        }
        let c = &w.config;
        match result {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for job in batch.drain(..) {
                    match job.op {
                        Op::Send(f) => {
                            let r = match outcomes.next() {
                                Some(1) => Ok(SendOutcome::Stored),
                                Some(0) => Ok(SendOutcome::Duplicate),
                                Some(-1) => Err(Refusal {
                                    code: ErrorCode::QUEUE_FULL,
                                    message: match f.destination.kind() {
                                        DestinationKind::Queue => format!(
                                            "{} holds its limit of {} unsettled messages",
                                            f.destination, c.max_queue
                                        ),
                                        DestinationKind::Topic => format!(
                                            "a subscription of {} has its limit of {} \
                                             messages not yet received",
                                            f.destination, c.max_queue
                                        ),
                                    },
                                }),
                                Some(-2) => Err(too_many_destinations(c.max_destinations)),
                                _ => Err(Refusal {
                                    code: ErrorCode::INTERNAL,
                                    message: "Redis returned no result for the SEND".to_owned(),
                                }),
                            };
                            let _ = job.done.send(Completion::Send(f.message_id, r));
                        }
                        Op::Flush(tx) => {
                            let _ = tx.send(());
                        }
                        Op::Settle { .. } | Op::Return { .. } => {}
                    }
                }
            }
            Err(e) => {
                for job in batch.drain(..) {
                    let r = unavailable(e.clone());
                    let c = match job.op {
                        Op::Send(f) => Completion::Send(f.message_id, Err(r)),
                        Op::Settle { report: false, .. } => continue,
                        Op::Settle { delivery_id, .. } | Op::Return { delivery_id, .. } => {
                            Completion::Settle(delivery_id, r)
                        }
                        Op::Flush(tx) => {
                            let _ = tx.send(());
                            continue;
                        }
                    };
                    let _ = job.done.send(c);
                }
            }
        }
    }
}

/// One pipeline for a batch; the SEND script's codes, one per SEND in the
/// order of the batch.
async fn write_batch(w: &WriterCtx, batch: &[Job]) -> Result<Vec<i64>, RedisError> {
    let c = &w.config;
    let idle = returned_idle(c.redeliver_after);
    let mut pipe = redis::pipe();
    // The batch's SENDs by destination, in order of first appearance, each
    // with the positions of its SENDs in the batch.
    let mut groups: Vec<(&Destination, Vec<usize>)> = Vec::new();
    let mut settles: Vec<(&String, Vec<&String>)> = Vec::new();
    let mut sends = 0;
    for job in batch {
        match &job.op {
            Op::Send(f) => {
                match groups.iter_mut().find(|(d, _)| **d == f.destination) {
                    Some((_, v)) => v.push(sends),
                    None => groups.push((&f.destination, vec![sends])),
                }
                sends += 1;
            }
            Op::Settle { key, entry, .. } => {
                // One XACK and one XDEL per stream for the whole batch.
                match settles.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, ids)) => ids.push(entry),
                    None => settles.push((key, vec![entry])),
                }
            }
            Op::Return { key, entry, .. } => {
                pipe.cmd("XCLAIM")
                    .arg(key)
                    .arg(&c.group)
                    .arg(RETURNED)
                    .arg(0)
                    .arg(entry)
                    .arg("IDLE")
                    .arg(idle)
                    .arg("JUSTID")
                    .ignore();
            }
            Op::Flush(_) => {}
        }
    }
    if sends > 0 {
        let frames: Vec<&SendFrame> = batch
            .iter()
            .filter_map(|j| match &j.op {
                Op::Send(f) => Some(f),
                _ => None,
            })
            .collect();
        let cmd = pipe.cmd("EVALSHA");
        cmd.arg(w.send.get_hash())
            .arg(1 + 5 * groups.len())
            .arg(destinations_key(&c.key_prefix));
        for (d, _) in &groups {
            let k = Keys::new(&c.key_prefix, d);
            cmd.arg(k.stream)
                .arg(k.dedupe)
                .arg(k.order)
                .arg(k.positions)
                .arg(k.live);
        }
        cmd.arg(c.dedupe_window)
            .arg(c.max_queue)
            .arg(c.max_destinations)
            .arg(c.redeliver_after.as_millis() as u64)
            .arg(groups.len());
        for (d, members) in &groups {
            let kind = match d.kind() {
                DestinationKind::Queue => "q",
                DestinationKind::Topic => "t",
            };
            cmd.arg(d.as_str()).arg(kind).arg(members.len());
            for &i in members {
                let f = frames[i];
                cmd.arg(f.message_id.as_str())
                    .arg(encode_headers(&f.headers))
                    .arg(f.body.as_ref());
            }
        }
    }
    for (key, ids) in settles {
        pipe.cmd("XACK")
            .arg(key)
            .arg(&c.group)
            .arg(&ids)
            .ignore()
            .cmd("XDEL")
            .arg(key)
            .arg(&ids)
            .ignore();
    }
    if sends == 0 {
        // Only ignored commands (or none): the reply is empty.
        if !pipe.is_empty() {
            let _: Value = pipe.query_async(&mut w.conn.clone()).await?;
        }
        return Ok(Vec::new());
    }
    // The script's codes come grouped by destination: put them back in
    // the batch's order.
    let (grouped,): (Vec<i64>,) = pipe.query_async(&mut w.conn.clone()).await?;
    let mut codes = vec![i64::MIN; sends];
    let mut it = grouped.into_iter();
    for (_, members) in &groups {
        for &i in members {
            codes[i] = it.next().unwrap_or(i64::MIN);
        }
    }
    Ok(codes)
}

/// The idle time given to returned entries: past the limit, so the next
/// XAUTOCLAIM takes them.
fn returned_idle(redeliver_after: Duration) -> u64 {
    redeliver_after.as_millis() as u64 + 86_400_000
}

/// Deletes the group's consumers with no pending entry that have been idle
/// for `older_than` (see [`RedisConfig::forget_consumers_after`]). A script,
/// so the check and the deletion are atomic: a consumer cannot read an
/// entry between them (deleting it then would drop that entry from the
/// group's pending list, and it would never be redelivered).
async fn forget_idle_consumers(
    script: &redis::Script,
    conn: &mut ConnectionManager,
    key: &str,
    group: &str,
    older_than: Duration,
) -> Result<(), RedisError> {
    let _: i64 = script
        .key(key)
        .arg(group)
        .arg(older_than.as_millis() as u64)
        .invoke_async(conn)
        .await?;
    Ok(())
}

/// KEYS[1] stream, ARGV[1] group, ARGV[2] consumer, ARGV[3] the consumer
/// to park entries on, ARGV[4] their idle time: moves all of the
/// consumer's pending entries (bounded rounds) and deletes it.
const RETURN_ALL_SCRIPT: &str = r"
local n = 0
for round = 1, 64 do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 256, ARGV[2])
  if #p == 0 then break end
  local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0}
  for _, e in ipairs(p) do args[#args + 1] = e[1] end
  args[#args + 1] = 'IDLE'
  args[#args + 1] = ARGV[4]
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
  n = n + #p
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return n
";

/// KEYS[1] stream, ARGV[1] group, ARGV[2] idle limit (ms): deletes the
/// empty idle consumers, returns how many.
const FORGET_SCRIPT: &str = r"
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['pending'] == 0 and f['idle'] >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    n = n + 1
  end
end
return n
";

async fn settle_entries(
    conn: &mut ConnectionManager,
    key: &str,
    group: &str,
    ids: &[String],
) -> Result<(), RedisError> {
    let _: Value = redis::pipe()
        .cmd("XACK")
        .arg(key)
        .arg(group)
        .arg(ids)
        .ignore()
        .cmd("XDEL")
        .arg(key)
        .arg(ids)
        .ignore()
        .query_async(conn)
        .await?;
    Ok(())
}

/// The reader task of one subscription.
struct Reader {
    shared: Arc<Shared>,
    state: Arc<Mutex<State>>,
    conn: ConnectionManager,
    sub: SubscriptionId,
    destination: Destination,
    key: String,
    consumer: String,
    notify: Arc<Notify>,
    /// Topics: the last id read. Queues: `>`.
    last: String,
    /// Topics: when the read position was last recorded in Redis, and
    /// which one.
    touched: Option<(Instant, String)>,
}

impl Reader {
    /// The credit now, after delivering from the backlog; `None` once the
    /// subscription is gone.
    fn credit(&self) -> Option<u32> {
        let mut st = lock(&self.state);
        let st = &mut *st;
        loop {
            let s = st.subs.get_mut(&self.sub)?;
            if s.credit == 0 {
                return Some(0);
            }
            let Some(m) = s.backlog.pop_front() else {
                return Some(s.credit);
            };
            st.deliver(&self.sub, m, None, true);
        }
    }

    async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let credit = match self.credit() {
                None => return,
                Some(0) => {
                    // A topic subscription out of credit still tells Redis
                    // it is alive (and how far it has read), or SENDs
                    // would take it for gone and trim what it is owed.
                    if self.destination.kind() == DestinationKind::Topic && self.touch_due() {
                        let r = self.touch().await;
                        self.reload_if_needed(&r).await;
                    }
                    // Woken by CREDIT, ACK, NACK; the timeout rechecks.
                    let _ =
                        tokio::time::timeout(self.shared.config.poll, self.notify.notified()).await;
                    continue;
                }
                Some(n) => n,
            };
            let r = match self.destination.kind() {
                DestinationKind::Queue => self.read_queue(credit).await,
                DestinationKind::Topic => self.read_topic(credit).await,
            };
            self.reload_if_needed(&r).await;
            match r {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(_) => {
                    // Redis is away: retry, more slowly, until it is back.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    fn book(&self, entries: Vec<(String, Arc<Stored>)>, redelivered: bool) {
        let mut st = lock(&self.state);
        for (id, m) in entries {
            let entry = (self.destination.kind() == DestinationKind::Queue).then_some(id);
            st.deliver(&self.sub, m, entry, redelivered);
        }
    }

    async fn read_queue(&mut self, credit: u32) -> Result<(), RedisError> {
        let shared = self.shared.clone();
        let c = &shared.config;
        let want = (credit as usize).min(PAGE);
        // XAUTOCLAIM every `poll` (or a quarter of the idle time if that is
        // shorter), not before every read: it is a round trip.
        let every = c.poll.min(c.redeliver_after / 4);
        // A small page: XAUTOCLAIM scans up to ten times its COUNT of the
        // group's pending entries, which a busy queue has thousands of; a
        // full page runs the next one at once.
        let page = want.min(CLAIM_PAGE);
        // One reader per stream and node claims per period: XAUTOCLAIM
        // costs Redis the same for each, and one finds them all.
        let cursor = {
            let mut claims = lock_claims(&shared.claims);
            let e = claims
                .entry(self.key.clone())
                .or_insert_with(|| (None, "0-0".to_owned()));
            if e.0.is_none_or(|t| t.elapsed() >= every) {
                e.0 = Some(Instant::now());
                Some(e.1.clone())
            } else {
                None
            }
        };
        let n = match cursor {
            Some(cursor) => {
                let (n, next) = self.claim(page, &cursor).await?;
                let mut claims = lock_claims(&shared.claims);
                if let Some(e) = claims.get_mut(&self.key) {
                    e.1 = next;
                    if n >= page {
                        // A full page: the next reader claims at once.
                        e.0 = None;
                    }
                }
                n
            }
            None => 0,
        };
        if n >= page {
            return Ok(());
        }
        let v: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&c.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(want - n)
            .arg("BLOCK")
            .arg(c.poll.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(">")
            .query_async(&mut self.conn)
            .await?;
        let fresh = parse_read(&v, &self.destination);
        self.book(fresh, false);
        Ok(())
    }

    /// Takes over up to `want` entries idle past the limit, scanning from
    /// `cursor`; how many, and where the next scan starts.
    async fn claim(&mut self, want: usize, cursor: &str) -> Result<(usize, String), RedisError> {
        let c = &self.shared.config;
        // First take over messages idle past the limit (dead consumers,
        // consumers that never ack, NACKed or returned entries).
        let v: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.key)
            .arg(&c.group)
            .arg(&self.consumer)
            .arg(c.redeliver_after.as_millis() as u64)
            .arg(cursor)
            .arg("COUNT")
            .arg(want)
            .query_async(&mut self.conn)
            .await?;
        let parts = array(&v);
        let next = parts
            .first()
            .and_then(bulk)
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .unwrap_or_else(|| "0-0".to_owned());
        let mut claimed = Vec::new();
        let mut gone = Vec::new();
        for e in parts.get(1).map(array).unwrap_or(&[]) {
            match parse_entry(e, &self.destination) {
                Some(x) => claimed.push(x),
                None => {
                    if let Some(id) = array(e).first().and_then(bulk) {
                        gone.push(String::from_utf8_lossy(id).into_owned());
                    }
                }
            }
        }
        // Entries deleted meanwhile were settled by someone: drop them
        // from the group's books too.
        if !gone.is_empty() {
            settle_entries(&mut self.conn, &self.key, &c.group, &gone).await?;
        }
        let n = claimed.len();
        self.book(claimed, true);
        Ok((n, next))
    }

    /// True when the topic position should be recorded again: it moved,
    /// or a quarter of the liveness timeout passed.
    fn touch_due(&self) -> bool {
        let every = self.shared.config.redeliver_after / 4;
        self.touched
            .as_ref()
            .is_none_or(|(at, pos)| *pos != self.last || at.elapsed() >= every)
    }

    /// Adds the topic position record to `pipe`.
    fn add_touch(&self, pipe: &mut redis::Pipeline) {
        let k = Keys::new(&self.shared.config.key_prefix, &self.destination);
        pipe.cmd("EVALSHA")
            .arg(self.shared.touch.get_hash())
            .arg(2)
            .arg(k.positions)
            .arg(k.live)
            .arg(&self.consumer)
            .arg(&self.last)
            .ignore();
    }

    async fn touch(&mut self) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        self.add_touch(&mut pipe);
        let _: Value = pipe.query_async(&mut self.conn).await?;
        self.touched = Some((Instant::now(), self.last.clone()));
        Ok(())
    }

    /// Loads the scripts again after a NOSCRIPT (Redis restarted).
    async fn reload_if_needed(&mut self, r: &Result<(), RedisError>) {
        if let Err(e) = r
            && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        {
            let _ = self.shared.touch.load_async(&mut self.conn).await;
        }
    }

    /// Reads a topic; the position read so far is recorded in the same
    /// round trip (see [`RedisConfig::redeliver_after`] for the liveness).
    async fn read_topic(&mut self, credit: u32) -> Result<(), RedisError> {
        let c = &self.shared.config;
        let mut pipe = redis::pipe();
        let touching = self.touch_due();
        if touching {
            self.add_touch(&mut pipe);
        }
        pipe.cmd("XREAD")
            .arg("COUNT")
            .arg((credit as usize).min(PAGE))
            .arg("BLOCK")
            .arg(c.poll.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(&self.last);
        let (v,): (Value,) = pipe.query_async(&mut self.conn).await?;
        if touching {
            self.touched = Some((Instant::now(), self.last.clone()));
        }
        let entries = parse_read(&v, &self.destination);
        if let Some((id, _)) = entries.last() {
            self.last = id.clone();
        }
        self.book(entries, false);
        Ok(())
    }
}

fn unknown_subscription(sub: &SubscriptionId) -> Refusal {
    Refusal {
        code: ErrorCode::UNKNOWN_SUBSCRIPTION,
        message: format!("subscription {sub} is not open on this connection"),
    }
}

fn credit_overflow(window: u64, max: u32) -> Refusal {
    Refusal {
        code: ErrorCode::CREDIT_OVERFLOW,
        message: format!("a credit window of {window} exceeds the broker's maximum of {max}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        Value::Array(vec![
            b(id),
            Value::Array(fields.iter().flat_map(|(k, v)| [b(k), b(v)]).collect()),
        ])
    }

    #[test]
    fn entries_parse_with_headers_and_skip_what_is_not_ours() {
        let d = Destination::new("/queue/q").unwrap();
        let h = Headers::new().with("content-type", "text/plain").unwrap();
        let e = entry(
            "1-0",
            &[("id", "m-1"), ("h", &encode_headers(&h)), ("b", "hello")],
        );
        let (id, m) = parse_entry(&e, &d).unwrap();
        assert_eq!(id, "1-0");
        assert_eq!(m.message_id.as_str(), "m-1");
        assert_eq!(m.headers.get("content-type"), Some("text/plain"));
        assert_eq!(&m.body[..], b"hello");
        // A deleted entry (nil fields), one without a valid id, and a
        // garbled header list (dropped, the message kept).
        assert!(parse_entry(&Value::Array(vec![b("2-0"), Value::Nil]), &d).is_none());
        assert!(parse_entry(&entry("3-0", &[("b", "x")]), &d).is_none());
        assert!(parse_entry(&entry("4-0", &[("id", "bad id"), ("b", "x")]), &d).is_none());
        let (_, m) = parse_entry(&entry("5-0", &[("id", "m-5"), ("h", "{nope")]), &d).unwrap();
        assert!(m.headers.is_empty());
    }

    #[test]
    fn read_replies_parse_in_both_resp_versions() {
        let d = Destination::new("/topic/t").unwrap();
        let entries = Value::Array(vec![
            entry("1-0", &[("id", "a"), ("b", "1")]),
            entry("2-0", &[("id", "b"), ("b", "2")]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![b("k"), entries.clone()])]);
        let resp3 = Value::Map(vec![(b("k"), entries)]);
        for v in [resp2, resp3] {
            let got: Vec<String> = parse_read(&v, &d).into_iter().map(|(id, _)| id).collect();
            assert_eq!(got, ["1-0", "2-0"]);
        }
        // A timed-out blocking read.
        assert!(parse_read(&Value::Nil, &d).is_empty());
    }

    #[test]
    fn stream_keys_keep_queues_and_topics_apart() {
        let q = Destination::new("/queue/a").unwrap();
        let t = Destination::new("/topic/a").unwrap();
        assert_eq!(stream_key("weft", &q), "weft:q:/queue/a");
        assert_eq!(stream_key("weft", &t), "weft:t:/topic/a");
    }
}
