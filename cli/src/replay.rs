//! Replaying a corpus through the real weft extension chain.
//!
//! For one [`Setting`], a client and a server factory negotiate exactly as
//! a handshake would (the offer formatted into a `Sec-WebSocket-Extensions`
//! value and parsed, `server_negotiate`, the answer formatted and parsed,
//! `client_accept`, the approach of `benches/src/bin/compression.rs`), and
//! the negotiated chains drive sans-I/O [`weft_core::Connection`]s. Two
//! pipelines run side by side, one per direction: messages marked `"sent"`
//! go from a client connection to a server connection (masked frames, the
//! client's compressor), messages marked `"received"` from a server to a
//! client; messages without a direction take [`ReplayOptions::undirected`].
//! Each message, in corpus order, is sent with
//! `Connection::send_message` (the call the tokio layer makes), its bytes
//! moved like a socket would into the peer's read buffer (their length is
//! the wire size: frame headers, mask keys and payload), and read back with
//! `Connection::handle_read`; the decoded message must equal the original.
//!
//! **Time.** Compression time is the `send_message` call, decompression
//! time the `handle_read` call, each measured with `Instant` on this thread.
//!
//! **Memory.** Allocation is counted by [`crate::alloc::CountingAlloc`].
//! After the last message (and, for [`MemoryStrategy::HibernateWhenIdle`],
//! after telling both sessions they are idle) each connection is dropped
//! and the bytes its drop frees are what it held; then its end's factory
//! and context pool are dropped. Under [`MemoryStrategy::Keep`] a dropped
//! connection hands its live zlib contexts to the pool, so what the pool
//! frees counts as the connection's; under the hibernating strategies a
//! connection holds no context between messages and the pool's contexts
//! (shared by every connection of a configuration, at most 64 each way) are
//! reported apart ([`Measurement::pool_bytes`]). The sending connection's
//! figure less that of a connection without compression that carried the
//! same messages is the compressor's memory, the receiving connection's the
//! decompressor's: the memory an open, idle connection keeps between
//! messages under the chosen strategy. These are allocated bytes: memory a
//! buffer reserved but has not written yet counts, though the kernel only
//! makes it resident once touched (`tests/rss.rs` compares the two).

use crate::corpus::{Direction, Entry};
use crate::settings::Setting;
use bytes::BytesMut;
use std::io::IoSlice;
use std::time::Instant;
use weft_core::ext::{
    ExtensionFactory, Negotiated, SendHints, client_accept, client_offers, format_extensions,
    parse_extensions, server_negotiate,
};
use weft_core::proto::WriteBuffer;
use weft_core::{Config, Connection, Message, OpCode, Role, Session};
use weft_extensions::{MemoryStrategy, PerFrameDeflateExt, PerMessageDeflateExt};

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// What connections keep between messages. Default: weft's default,
    /// [`MemoryStrategy::Hibernate`].
    pub memory: MemoryStrategy,
    /// The direction of messages the corpus gives none. Default
    /// [`Direction::Received`] (server to client).
    pub undirected: Direction,
    /// Connection limits (raised by [`ReplayOptions::for_max_message`] so
    /// every corpus message fits).
    pub config: Config,
    /// Replays per setting; times are those of the fastest (byte counts
    /// and memory are the same every time). Default 1.
    pub repeat: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            memory: MemoryStrategy::Hibernate,
            undirected: Direction::Received,
            config: Config::default(),
            repeat: 1,
        }
    }
}

impl ReplayOptions {
    /// Raises the connection limits so a message of `max_message` bytes
    /// (and its compressed form) is accepted.
    pub fn for_max_message(mut self, max_message: usize) -> Self {
        let frame = max_message
            .saturating_add(max_message / 8)
            .saturating_add(1024);
        self.config = self
            .config
            .clone()
            .max_message_size(self.config.max_message_size.max(max_message))
            .max_frame_size(self.config.max_frame_size.max(frame));
        self
    }
}

/// What one setting did with the corpus.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurement {
    /// The server's answer, as the `Sec-WebSocket-Extensions` value
    /// (empty without compression).
    pub params: String,
    /// Messages replayed.
    pub messages: usize,
    /// Payload bytes of those messages.
    pub payload_bytes: u64,
    /// Bytes on the wire: frame headers, mask keys and frame payloads.
    pub wire_bytes: u64,
    /// Total compression (send) time, seconds.
    pub compress_secs: f64,
    /// Total decompression (receive) time, seconds.
    pub decompress_secs: f64,
    /// Median time per message, send and receive together, µs.
    pub p50_us: f64,
    /// 99th percentile of the same, µs.
    pub p99_us: f64,
    /// Bytes the sending connections held after the replay, compression
    /// state and everything else.
    pub sender_held: u64,
    /// Bytes the receiving connections held after the replay.
    pub receiver_held: u64,
    /// Compressor memory per connection: [`sender_held`](Self::sender_held)
    /// less the same figure without compression (summed over the
    /// directions the corpus uses).
    pub compressor_bytes: u64,
    /// Decompressor memory per connection, likewise.
    pub decompressor_bytes: u64,
    /// Bytes held by the context pools (shared by all connections of the
    /// configuration; at most 64 contexts each way).
    pub pool_bytes: u64,
}

impl Measurement {
    /// Wire bytes per payload byte (lower is better; 1.0 without
    /// compression plus header overhead). 1.0 for an empty corpus.
    pub fn ratio(&self) -> f64 {
        if self.payload_bytes == 0 {
            1.0
        } else {
            self.wire_bytes as f64 / self.payload_bytes as f64
        }
    }

    /// Payload MiB per second of compression time.
    pub fn compress_mib_s(&self) -> f64 {
        mib_s(self.payload_bytes, self.compress_secs)
    }

    /// Payload MiB per second of decompression time.
    pub fn decompress_mib_s(&self) -> f64 {
        mib_s(self.payload_bytes, self.decompress_secs)
    }

    /// Mean CPU time per message, send and receive together, µs.
    pub fn cpu_us_per_msg(&self) -> f64 {
        if self.messages == 0 {
            0.0
        } else {
            (self.compress_secs + self.decompress_secs) * 1e6 / self.messages as f64
        }
    }

    /// Compressor plus decompressor memory: what the connection holds for
    /// compression at its two ends together, for the traffic replayed (one
    /// direction: the sender's compressor and the receiver's decompressor;
    /// both directions: those of each direction).
    pub fn memory_per_conn_bytes(&self) -> u64 {
        self.compressor_bytes + self.decompressor_bytes
    }
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    if bytes == 0 || secs <= 0.0 {
        0.0
    } else {
        bytes as f64 / (1u64 << 20) as f64 / secs
    }
}

/// A replay failure (a negotiation that did not produce the setting, or a
/// message that did not come back intact: both are bugs to report).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ReplayError {
    /// The setting's name.
    pub setting: String,
    /// What went wrong.
    pub message: String,
}

/// The negotiated pair of a setting: client and server sessions' extension
/// chains and the server's answer.
struct Negotiation {
    client: Negotiated,
    server: Negotiated,
    answer: String,
}

fn negotiate(factories: FactoryPair) -> Result<Negotiation, String> {
    let Some((cf, sf)) = factories else {
        return Ok(Negotiation {
            client: Negotiated::none(),
            server: Negotiated::none(),
            answer: String::new(),
        });
    };
    let offer_value = format_extensions(&client_offers(std::slice::from_ref(&cf)));
    let offers = parse_extensions([offer_value.as_str()]).map_err(|e| e.to_string())?;
    let server = server_negotiate(&[sf], &offers).map_err(|e| e.to_string())?;
    let answer = format_extensions(server.headers());
    let parsed = parse_extensions([answer.as_str()]).map_err(|e| e.to_string())?;
    let client = client_accept(&[cf], &parsed).map_err(|e| e.to_string())?;
    if client.extensions().len() != 1 {
        return Err(format!("offer {offer_value:?} answered with {answer:?}"));
    }
    Ok(Negotiation {
        client,
        server,
        answer,
    })
}

/// The window and takeover a negotiated chain compresses with.
pub fn agreed(neg: &Negotiated) -> Option<(u8, bool)> {
    let e = neg.extensions().first()?;
    if let Some(p) = e.params::<PerMessageDeflateExt>() {
        return Some((p.compress_window().get(), p.compress_takeover()));
    }
    let p = e.params::<PerFrameDeflateExt>()?;
    Some((p.compress_window().get(), p.compress_takeover()))
}

/// Factories for the client and the server end, `None` for no compression.
pub type FactoryPair = Option<(
    std::sync::Arc<dyn ExtensionFactory>,
    std::sync::Arc<dyn ExtensionFactory>,
)>;

/// One direction of one connection: a sending and a receiving sans-I/O
/// connection and the "socket" between them.
pub struct Pipeline {
    sender: Connection,
    receiver: Connection,
    out: WriteBuffer,
    wire: BytesMut,
    answer: String,
}

/// What carrying one message took.
#[derive(Debug, Clone, Copy)]
pub struct Carried {
    /// Bytes on the wire.
    pub wire_bytes: u64,
    /// Time in `send_message`.
    pub compress: std::time::Duration,
    /// Time in `handle_read`.
    pub decompress: std::time::Duration,
}

impl Pipeline {
    /// Negotiates `factories` as a handshake would and builds the two
    /// connections: `Sent` makes the client the sender, `Received` the
    /// server. Factories may be shared by many pipelines (their context
    /// pools then are, as on a server).
    pub fn new(
        factories: FactoryPair,
        config: &Config,
        dir: Direction,
    ) -> Result<Pipeline, String> {
        let neg = negotiate(factories)?;
        let client = Connection::new(
            Session::with_extensions(Role::Client, config, neg.client),
            config,
        );
        let server = Connection::new(
            Session::with_extensions(Role::Server, config, neg.server),
            config,
        );
        let (sender, receiver) = match dir {
            Direction::Sent => (client, server),
            Direction::Received => (server, client),
        };
        Ok(Pipeline {
            sender,
            receiver,
            out: WriteBuffer::new(),
            wire: BytesMut::new(),
            answer: neg.answer,
        })
    }

    /// The server's `Sec-WebSocket-Extensions` answer.
    pub fn answer(&self) -> &str {
        &self.answer
    }

    /// Sends `e` through the sender, moves its bytes to the receiver and
    /// reads it back; fails unless the message comes back intact.
    pub fn carry(&mut self, e: &Entry) -> Result<Carried, String> {
        let opcode = if e.text { OpCode::Text } else { OpCode::Binary };
        let hints = SendHints::default();
        let t0 = Instant::now();
        self.sender
            .send_message(opcode, e.payload.clone(), &hints, &mut self.out)
            .map_err(|err| format!("send: {err}"))?;
        let t1 = Instant::now();
        // The "socket": the sender's output lands in the receiver's buffer.
        while !self.out.is_empty() {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = self.out.chunks(&mut slices);
            let mut moved = 0;
            for s in &slices[..n] {
                self.wire.extend_from_slice(s);
                moved += s.len();
            }
            self.out.advance(moved);
        }
        let wire_bytes = self.wire.len() as u64;
        let t2 = Instant::now();
        let got = self
            .receiver
            .handle_read(&mut self.wire)
            .map_err(|err| format!("receive: {err}"))?;
        let t3 = Instant::now();
        let same = match (&got, e.text) {
            (Some(Message::Text(t)), true) => t.as_bytes() == &e.payload,
            (Some(Message::Binary(b)), false) => *b == e.payload,
            _ => false,
        };
        if !same || !self.wire.is_empty() {
            return Err(format!(
                "a message did not come back intact ({} bytes, {})",
                e.payload.len(),
                if e.text { "text" } else { "binary" }
            ));
        }
        // Release the buffers between messages, as the tokio layer does
        // once its write buffer drains.
        self.wire = BytesMut::new();
        Ok(Carried {
            wire_bytes,
            compress: t1 - t0,
            decompress: t3 - t2,
        })
    }

    /// Tells both sessions they are idle (what the tokio layer does after
    /// `Config::release_idle_after`).
    pub fn idle(&mut self) {
        self.sender.session_mut().idle();
        self.receiver.session_mut().idle();
    }

    /// Bytes freed by dropping the sender and the receiver (what each held).
    pub fn held(self) -> (u64, u64) {
        let Pipeline {
            sender,
            receiver,
            out,
            wire,
            ..
        } = self;
        drop((out, wire));
        (
            crate::alloc::freed_by_drop(sender),
            crate::alloc::freed_by_drop(receiver),
        )
    }
}

/// Replays `entries` with `setting`. `baseline` is the no-compression
/// measurement of the same entries (for the compressor and decompressor
/// figures; `None` reports the connections' whole figures).
/// `progress` is called with the number of messages done since its last
/// call.
pub fn measure(
    setting: &Setting,
    entries: &[Entry],
    options: &ReplayOptions,
    baseline: Option<&Measurement>,
    progress: &mut dyn FnMut(u64),
) -> Result<Measurement, ReplayError> {
    let fail = |message: String| ReplayError {
        setting: setting.name.clone(),
        message,
    };
    let config = &options.config;
    let mut m = Measurement::default();
    let mut times: Vec<u32> = Vec::with_capacity(entries.len());

    // Promote the payloads to shared `Bytes` now, so the clones sent
    // below allocate nothing that outlives a message.
    for e in entries {
        drop(e.payload.clone());
    }
    // Each direction has its own factory pair, so each end has its own
    // pool, as two processes would.
    let mut pipes: Vec<(Pipeline, FactoryPair, u64, bool)> = Vec::with_capacity(2);
    for dir in [Direction::Sent, Direction::Received] {
        let before = crate::alloc::live_bytes();
        let f = setting.factories(options.memory);
        let factory_bytes = (crate::alloc::live_bytes() - before).max(0) as u64;
        let pipe = Pipeline::new(f.clone(), config, dir).map_err(fail)?;
        if m.params.is_empty() {
            m.params = pipe.answer.clone();
        }
        pipes.push((pipe, f, factory_bytes, false));
    }

    let mut pending = 0u64;
    for e in entries {
        let dir = e.dir.unwrap_or(options.undirected);
        let (pipe, _, _, used) = &mut pipes[usize::from(dir == Direction::Received)];
        *used = true;
        let c = pipe
            .carry(e)
            .map_err(|err| fail(format!("message {}: {err}", m.messages + 1)))?;
        m.wire_bytes += c.wire_bytes;
        m.compress_secs += c.compress.as_secs_f64();
        m.decompress_secs += c.decompress.as_secs_f64();
        times.push(u32::try_from((c.compress + c.decompress).as_nanos()).unwrap_or(u32::MAX));
        m.messages += 1;
        m.payload_bytes += e.payload.len() as u64;
        pending += 1;
        if pending == 256 {
            progress(pending);
            pending = 0;
        }
    }
    if pending > 0 {
        progress(pending);
    }
    times.sort_unstable();
    m.p50_us = percentile(&times, 50.0);
    m.p99_us = percentile(&times, 99.0);
    drop(times);

    // Memory: what each connection holds, by what its drop frees, then
    // what its end's factory (and pool) frees. Under `Keep` a dropped
    // connection hands its live contexts to the pool, so they are its
    // memory; under the hibernating strategies it holds none between
    // messages and the pool's contexts are the shared figure.
    let idle = matches!(options.memory, MemoryStrategy::HibernateWhenIdle);
    let keep = matches!(options.memory, MemoryStrategy::Keep);
    for (mut pipe, factories, factory_bytes, used) in pipes {
        if idle {
            pipe.idle();
        }
        let dir_sent = pipe.sender.session().role() == Role::Client;
        let (s, r) = pipe.held();
        let (sf, rf) = match factories {
            Some((client, server)) if dir_sent => {
                let c = crate::alloc::freed_by_drop(client);
                (c, crate::alloc::freed_by_drop(server))
            }
            Some((client, server)) => {
                let sv = crate::alloc::freed_by_drop(server);
                (sv, crate::alloc::freed_by_drop(client))
            }
            None => (0, 0),
        };
        let pools = (sf + rf).saturating_sub(factory_bytes);
        if !used {
            continue;
        }
        if keep {
            let half = factory_bytes / 2;
            m.sender_held += s + sf.saturating_sub(half);
            m.receiver_held += r + rf.saturating_sub(half);
        } else {
            m.sender_held += s;
            m.receiver_held += r;
            m.pool_bytes += pools;
        }
    }
    let (base_s, base_r) = baseline.map_or((0, 0), |b| (b.sender_held, b.receiver_held));
    m.compressor_bytes = m.sender_held.saturating_sub(base_s);
    m.decompressor_bytes = m.receiver_held.saturating_sub(base_r);
    Ok(m)
}

/// Nearest-rank percentile of sorted nanosecond times, in µs.
fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let t: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&t, 50.0), 50.0);
        assert_eq!(percentile(&t, 99.0), 99.0);
        assert_eq!(percentile(&[7000], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
