//! Compression: ratio and throughput of weft's deflate extensions in memory,
//! and resident memory per connection on loopback.
//!
//! ```text
//! cargo run --release -p weft-benches --bin compression -- [--quick] [--conns N]
//!     [--only ratio|memory] [--presets default,fast,max_compression,low_memory,pooled_nct,per_frame,off]
//! ```
//!
//! **(a) Ratio and throughput, sans-I/O.** For every preset
//! (permessage-deflate `new()`, `fast()`, `max_compression()`,
//! `low_memory()`, `pooled_no_context_takeover()`; `PerFrameDeflate::new()`;
//! and no compression) a client and a server factory negotiate exactly as a
//! handshake would (offers formatted into a `Sec-WebSocket-Extensions` value,
//! parsed, `server_negotiate`, the answer formatted, parsed, `client_accept`),
//! and the two chains drive two `weft_core::Connection`s. Messages go client
//! to server: `Session::send`, `poll_transmit` into a `WriteBuffer`, its bytes
//! copied into the server's read buffer, `handle_read`; every decoded message
//! is compared with the original (any mismatch fails the run). Payloads:
//! generated JSON chat batches (text), generated English-like prose (text),
//! random bytes (binary); 1 KiB and 64 KiB messages, each message distinct,
//! up to 8 MiB or 1 s of payload per cell, best of 3 runs (`--quick`: 2 MiB,
//! 0.3 s, 1 run). One connection is busy, so with the default pooled
//! strategy it always gets its own warm context back; the "default, cold"
//! row takes the pool away, so every message primes a fresh context with
//! the saved window: the cost a message pays when more connections are busy
//! at once than the pool keeps contexts for.
//!
//! The ceiling is raw flate2 (`Compress`/`Decompress`, zlib-rs backend, raw
//! deflate via `new_with_window_bits`) with the window, level and context
//! takeover the client's compressor actually negotiated, each message
//! compressed with a sync flush into a reused buffer and inflated with a
//! persistent context into a reused buffer, then compared. Without context
//! takeover (pooled preset) the ceiling resets both contexts after every
//! message, which is the best a no-context-takeover stream can do.
//!
//! Reported: wire ratio (wire bytes incl. frame headers and mask keys /
//! payload bytes), deflate ratio (frame payload bytes / payload bytes),
//! throughput (payload MiB/s, compress + decompress together on one thread),
//! and weft against the ceiling (compressed size ratio, speed ratio).
//!
//! **(b) Memory per connection.** For each preset the binary re-executes
//! itself with `--serve PRESET`: a weft `ServerBuilder` echo server with that
//! extension (default `Config`, so idle release after 1 s) on a tokio
//! multi-thread runtime on 127.0.0.1:0. The parent (weft clients offering
//! permessage-deflate without `server_no_context_takeover` and with a
//! valueless `client_max_window_bits`, pooled and hibernating on the client
//! side; per-frame deflate for the per-frame preset):
//!
//! 1. runs 50 warm-up connections (handshake + one echo), closes them, waits
//!    300 ms, asks the child to `malloc_trim(0)` (so freed warm-up contexts
//!    are not reused invisibly), and reads the child's `VmRSS`;
//! 2. opens `--conns` connections (default 10,000; `--quick` 1,000), 200 at a
//!    time, checking the negotiated extension;
//! 3. sends one 2 KiB JSON text message (`--message-size`) on every
//!    connection (all at once)
//!    and checks each echo; reads `VmRSS` and `VmHWM` ("after traffic");
//! 4. waits 3 s (idle release fires 1 to 2 s after the last traffic) and
//!    reads `VmRSS` ("idle"); then asks for `malloc_trim(0)` and reads it
//!    again ("idle + trim": memory freed but kept by the allocator).
//!
//! Per-connection figures are `(RSS − RSS before) / conns`. Kernel socket
//! buffers are not part of RSS.
//!
//! Every measurement is also printed as one JSON line.

use bytes::{Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures_util::StreamExt;
use serde::Serialize;
use std::io::IoSlice;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::{Rng, RngCore, SeededRng};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use weft_benches::{raise_fd_limit, rounded, whole};
use weft_core::ext::{
    ExtensionFactory, Negotiated, SendHints, client_accept, client_offers, format_extensions,
    parse_extensions, server_negotiate,
};
use weft_core::proto::WriteBuffer;
use weft_core::{
    ClientBuilder, Config, Connection, FrameHeader, HeaderParse, Message, OpCode, Role,
    ServerBuilder, Session, WebSocket,
};
use weft_extensions::{
    ContextPool, MemoryStrategy, PerFrameDeflate, PerFrameDeflateExt, PerMessageDeflate,
    PerMessageDeflateExt, WindowBits,
};

// ---------------------------------------------------------------------------
// Presets
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preset {
    Default,
    Fast,
    Max,
    LowMemory,
    PooledNct,
    PerFrame,
    Off,
}

impl Preset {
    const ALL: [Preset; 7] = [
        Preset::Default,
        Preset::Fast,
        Preset::Max,
        Preset::LowMemory,
        Preset::PooledNct,
        Preset::PerFrame,
        Preset::Off,
    ];

    fn name(self) -> &'static str {
        match self {
            Preset::Default => "default",
            Preset::Fast => "fast",
            Preset::Max => "max_compression",
            Preset::LowMemory => "low_memory",
            Preset::PooledNct => "pooled_nct",
            Preset::PerFrame => "per_frame",
            Preset::Off => "off",
        }
    }

    fn parse(s: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The permessage-deflate configuration, for the permessage presets.
    fn pmd(self) -> Option<PerMessageDeflate> {
        match self {
            Preset::Default => Some(PerMessageDeflate::new()),
            Preset::Fast => Some(PerMessageDeflate::fast()),
            Preset::Max => Some(PerMessageDeflate::max_compression()),
            Preset::LowMemory => Some(PerMessageDeflate::low_memory()),
            Preset::PooledNct => Some(PerMessageDeflate::pooled_no_context_takeover()),
            Preset::PerFrame | Preset::Off => None,
        }
    }

    /// Compression level of the preset (for the ceiling).
    fn level(self) -> u32 {
        match self {
            Preset::PerFrame => u32::from(PerFrameDeflate::new().level),
            p => p.pmd().map_or(0, |c| u32::from(c.level)),
        }
    }

    /// The same configuration on both ends (part a); `cold` takes the
    /// context pool away, so every message starts a fresh context primed
    /// with the saved window (what a message pays when its connection's
    /// context went to another connection, plus an allocation).
    fn factories(
        self,
        cold: bool,
    ) -> Option<(Arc<dyn ExtensionFactory>, Arc<dyn ExtensionFactory>)> {
        match self {
            Preset::Off => None,
            Preset::PerFrame => Some((
                Arc::new(PerFrameDeflate::new()),
                Arc::new(PerFrameDeflate::new()),
            )),
            p => {
                let make = || {
                    let mut c = p.pmd().expect("permessage preset");
                    if cold {
                        c.pool = None;
                    }
                    c
                };
                Some((Arc::new(make()), Arc::new(make())))
            }
        }
    }

    /// The echo server of part (b).
    fn server_builder(self) -> ServerBuilder {
        let b = ServerBuilder::new();
        match self {
            Preset::Off => b,
            Preset::PerFrame => b.extension(PerFrameDeflate::new()),
            p => b.extension(p.pmd().expect("permessage preset")),
        }
    }

    /// The clients of part (b): they accept whatever the server's preset
    /// answers, never ask the server to drop its context, and keep little
    /// state themselves (pooled compressors, reset per message, hibernating
    /// decompressors).
    fn client_builder(self, pool: &Arc<ContextPool>) -> ClientBuilder {
        let b = ClientBuilder::new();
        match self {
            Preset::Off => b,
            Preset::PerFrame => b.extension(PerFrameDeflate {
                no_context_takeover: true,
                memory: MemoryStrategy::Hibernate,
                pool: Some(pool.clone()),
                ..PerFrameDeflate::new()
            }),
            _ => b.extension(PerMessageDeflate {
                server_max_window_bits: WindowBits::MAX,
                client_max_window_bits: WindowBits::MAX,
                server_no_context_takeover: false,
                client_no_context_takeover: true,
                memory: MemoryStrategy::Hibernate,
                pool: Some(pool.clone()),
                ..PerMessageDeflate::new()
            }),
        }
    }

    /// The extension token the server must answer with.
    fn token(self) -> Option<&'static str> {
        match self {
            Preset::Off => None,
            Preset::PerFrame => Some(weft_extensions::DEFLATE_FRAME),
            _ => Some("permessage-deflate"),
        }
    }

    /// Target bytes per connection after traffic, where one is set.
    fn target(self) -> Option<u64> {
        match self {
            Preset::Default => Some(40 << 10),
            Preset::PooledNct => Some(8 << 10),
            Preset::Off => Some(6 << 10),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Payload generation
// ---------------------------------------------------------------------------

/// Zipf-like index below `n`: low indices much more often.
fn skewed_index(rng: &mut SeededRng, n: usize) -> usize {
    ((rng.random::<f64>().powf(2.4) * n as f64) as usize).min(n - 1)
}

/// A Zipf-like pick from `list` (most frequent first).
fn skewed<'a>(rng: &mut SeededRng, list: &[&'a str]) -> &'a str {
    list[skewed_index(rng, list.len())]
}

/// Common English words, most frequent first, then a tail of rarer ones.
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on",
    "are", "with", "as", "I", "his", "they", "be", "at", "one", "have", "this", "from", "or",
    "had", "by", "not", "but", "what", "some", "we", "can", "out", "other", "were", "all", "there",
    "when", "up", "use", "your", "how", "said", "an", "each", "she", "which", "do", "their",
    "time", "if", "will", "way", "about", "many", "then", "them", "would", "like", "so", "these",
    "her", "long", "make", "thing", "see", "him", "two", "has", "look", "more", "day", "could",
    "go", "come", "did", "number", "sound", "no", "most", "people", "my", "over", "know", "water",
    "than", "call", "first", "who", "may", "down", "side", "been", "now", "find", "any", "new",
    "work", "part", "take", "get", "place", "made", "live", "where", "after", "back", "little",
    "only", "round", "man", "year", "came", "show", "every", "good", "me", "give", "our", "under",
    "name", "very", "through", "just", "form", "sentence", "great", "think", "say", "help", "low",
    "line", "differ", "turn", "cause", "much", "mean", "before", "move", "right", "boy", "old",
    "too", "same", "tell", "does", "set", "three", "want", "air", "well", "also", "play", "small",
    "end", "put", "home", "read", "hand", "port", "large", "spell", "add", "even", "land", "here",
    "must", "big", "high", "such", "follow", "act", "why", "ask", "men", "change", "went", "light",
    "kind", "off", "need", "house", "picture", "try", "us", "again", "animal", "point", "mother",
    "world", "near", "build", "self", "earth", "father", "head", "stand", "own", "page", "should",
    "country", "found", "answer", "school", "grow", "study", "still", "learn", "plant", "cover",
    "food", "sun", "four", "between", "state", "keep", "eye", "never", "last", "let", "thought",
    "city", "tree", "cross", "farm", "hard", "start", "might", "story", "saw", "far", "sea",
    "draw", "left", "late", "run", "while", "press", "close", "night", "real", "life", "few",
    "north", "open", "seem", "together", "next", "white", "children", "begin", "got", "walk",
    "example", "ease", "paper", "group", "always", "music", "those", "both", "mark", "often",
    "letter", "until", "mile", "river", "car", "feet", "care", "second", "book", "carry", "took",
    "science", "eat", "room", "friend", "began", "idea", "fish", "mountain", "stop", "once",
    "base", "hear", "horse", "cut", "sure", "watch", "colour", "face", "wood", "main", "enough",
    "plain", "girl", "usual", "young", "ready", "above", "ever", "red", "list", "though", "feel",
    "talk", "bird", "soon", "body", "dog", "family", "direct", "pose", "leave", "song", "measure",
    "door", "product", "black", "short", "numeral", "class", "wind", "question", "happen",
    "complete", "ship", "area", "half", "rock", "order", "fire", "south", "problem", "piece",
    "told", "knew", "pass", "since", "top", "whole", "king", "space", "heard", "best", "hour",
    "better", "true", "during", "hundred", "five", "remember", "step", "early", "hold", "west",
    "ground", "interest", "reach", "fast", "verb", "sing", "listen", "six", "table", "travel",
    "less", "morning", "ten", "simple", "several", "vowel", "toward", "war", "lay", "against",
    "pattern", "slow", "centre", "love", "person", "money", "serve", "appear", "road", "map",
    "rain", "rule", "govern", "pull", "cold", "notice", "voice", "unit", "power", "town", "fine",
    "certain", "fly", "fall", "lead", "cry", "dark", "machine", "note", "wait", "plan", "figure",
    "star", "box", "noun", "field", "rest", "correct", "able", "pound", "done", "beauty", "drive",
    "stood", "contain", "front", "teach", "week", "final", "gave", "green", "quick", "develop",
    "ocean", "warm", "free", "minute", "strong", "special", "mind", "behind", "clear", "tail",
    "produce", "fact", "street", "inch", "multiply", "nothing", "course", "stay", "wheel", "full",
    "force", "blue", "object", "decide", "surface", "deep", "moon", "island", "foot", "system",
    "busy", "test", "record", "boat", "common", "gold", "possible", "plane", "instead", "dry",
    "wonder", "laugh", "thousand", "ago", "ran", "check", "game", "shape", "equate", "miss",
    "brought", "heat", "snow", "tire", "bring", "yes", "distant", "fill", "east", "paint",
    "language", "among", "harbour", "lantern", "meadow", "orchard", "parliament", "quarrel",
    "railway", "shepherd", "telegraph", "umbrella", "velvet", "whistle", "yesterday", "zealous",
    "anchor", "bargain", "cathedral", "dormitory", "embassy", "furnace", "glacier", "hammock",
    "inventory", "jasmine", "kettle", "lighthouse",
];

#[rustfmt::skip]
const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yusuf", "zoe",
    "amara", "bruno", "chen", "dmitri", "elif", "farah", "goran", "hana", "ines", "jonas", "kenji",
    "lena", "mateo", "noor", "oskar", "priya", "quinn", "rosa", "sami", "tariq", "ursula", "vera",
    "wei", "ximena", "yara", "zeno",
];

const ROOMS: &[&str] = &[
    "#general",
    "#random",
    "#engineering",
    "#release-planning",
    "#support",
    "#design",
    "#ops-alerts",
    "#music",
    "#books",
    "#off-topic",
];

/// Appends one sentence of `min..max` words.
fn sentence(rng: &mut SeededRng, out: &mut String, min: usize, max: usize) {
    let n = min + rng.random_range(0..max - min + 1);
    for i in 0..n {
        let w = skewed(rng, WORDS);
        if i == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                out.extend(f.to_uppercase());
                out.push_str(c.as_str());
            }
        } else {
            out.push(' ');
            if rng.random_bool(0.02) {
                let name = NAMES[rng.random_range(0..NAMES.len())];
                let mut c = name.chars();
                if let Some(f) = c.next() {
                    out.extend(f.to_uppercase());
                    out.push_str(c.as_str());
                }
            } else if rng.random_bool(0.01) {
                out.push_str(&(1700 + rng.random_range(0..325u32)).to_string());
            } else {
                out.push_str(w);
            }
        }
        if i + 1 < n && rng.random_bool(0.08) {
            out.push(',');
        }
    }
    out.push(match rng.random_range(0..20) {
        0 | 1 => '?',
        2 => '!',
        _ => '.',
    });
}

/// An endless English-like document, cut into messages of exactly `size`.
struct Prose {
    rng: SeededRng,
    buf: String,
    /// Sentences left in the current paragraph.
    left: usize,
}

impl Prose {
    fn new(seed: u64) -> Self {
        Prose {
            rng: test_support::rng(seed),
            buf: String::new(),
            left: 4,
        }
    }

    fn take(&mut self, size: usize) -> Bytes {
        while self.buf.len() < size {
            if !self.buf.is_empty() {
                self.left -= 1;
                if self.left == 0 {
                    self.left = 3 + self.rng.random_range(0..5usize);
                    self.buf.push_str("\n\n");
                } else {
                    self.buf.push(' ');
                }
            }
            sentence(&mut self.rng, &mut self.buf, 5, 22);
        }
        let rest = self.buf.split_off(size);
        Bytes::from(std::mem::replace(&mut self.buf, rest).into_bytes())
    }
}

/// A stream of chat events, serialized as JSON arrays of exactly `size` bytes.
struct Chat {
    rng: SeededRng,
    id: u64,
    ts: u64,
}

/// One chat event of [`Chat`], as JSON.
#[derive(Serialize)]
struct ChatEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u64,
    user: String,
    room: &'a str,
    ts: u64,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<u64>,
    /// One name, serialized as a one-element array.
    #[serde(skip_serializing_if = "Option::is_none")]
    mentions: Option<[&'a str; 1]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    edited: bool,
}

impl Chat {
    fn new(seed: u64) -> Self {
        Chat {
            rng: test_support::rng(seed),
            id: 48_211_907,
            ts: 1_718_000_000_000,
        }
    }

    /// One event, with `extra` more text bytes than its random text.
    fn event(&mut self, extra: usize) -> String {
        let rng = &mut self.rng;
        self.id += 1 + rng.random_range(0..3u64);
        self.ts += 200 + rng.random_range(0..40_000u64);
        let user = format!(
            "{}_{}",
            NAMES[rng.random_range(0..NAMES.len())],
            rng.random_range(0..100u32)
        );
        let room = ROOMS[skewed_index(rng, ROOMS.len())];
        let mut text = String::new();
        let sentences = 1 + usize::from(rng.random_bool(0.3));
        for i in 0..sentences {
            if i > 0 {
                text.push(' ');
            }
            sentence(rng, &mut text, 2, 16);
        }
        if extra > 0 {
            let want = text.len() + extra;
            while text.len() < want {
                text.push(' ');
                text.push_str(skewed(rng, WORDS));
            }
            text.truncate(want);
        }
        let event = ChatEvent {
            kind: "message",
            id: self.id,
            user,
            room,
            ts: self.ts,
            text,
            reply_to: rng
                .random_bool(0.3)
                .then(|| self.id - 1 - rng.random_range(0..50u64)),
            mentions: rng
                .random_bool(0.15)
                .then(|| [NAMES[rng.random_range(0..NAMES.len())]]),
            edited: rng.random_bool(0.05),
        };
        serde_json::to_string(&event).expect("a chat event serializes")
    }

    fn take(&mut self, size: usize) -> Bytes {
        let mut events: Vec<String> = Vec::new();
        let mut len = 2; // "[" and "]"
        loop {
            let e = self.event(0);
            let add = e.len() + usize::from(!events.is_empty());
            if len + add > size {
                break;
            }
            len += add;
            events.push(e);
        }
        // Fill the gap exactly by lengthening the last event's text.
        let gap = size - len;
        if gap > 0 {
            match events.last_mut() {
                Some(last) => {
                    // Rewrite the last event with `gap` more bytes of text:
                    // insert words before the text's closing quote.
                    let t = last.find("\"text\":\"").expect("text field") + 8;
                    let at = t + last[t..].find('"').expect("closing quote");
                    let mut words = String::new();
                    while words.len() < gap {
                        words.push(' ');
                        words.push_str(skewed(&mut self.rng, WORDS));
                    }
                    words.truncate(gap);
                    last.insert_str(at, &words);
                }
                None => events.push(" ".repeat(gap)),
            }
        }
        let mut out = String::with_capacity(size);
        out.push('[');
        out.push_str(&events.join(","));
        out.push(']');
        debug_assert_eq!(out.len(), size);
        Bytes::from(out.into_bytes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    English,
    Random,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Json, Kind::English, Kind::Random];

    fn name(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::English => "english",
            Kind::Random => "random",
        }
    }

    fn opcode(self) -> OpCode {
        match self {
            Kind::Random => OpCode::Binary,
            _ => OpCode::Text,
        }
    }

    /// `count` distinct messages of `size` bytes.
    fn messages(self, size: usize, count: usize) -> Vec<Bytes> {
        let seed = 0x5eed ^ size as u64;
        match self {
            Kind::Json => {
                let mut g = Chat::new(seed);
                (0..count).map(|_| g.take(size)).collect()
            }
            Kind::English => {
                let mut g = Prose::new(seed);
                (0..count).map(|_| g.take(size)).collect()
            }
            Kind::Random => {
                let mut rng = test_support::rng(seed);
                (0..count)
                    .map(|_| {
                        let mut v = vec![0; size];
                        rng.fill_bytes(&mut v);
                        Bytes::from(v)
                    })
                    .collect()
            }
        }
    }
}

// ---------------------------------------------------------------------------
// (a) Ratio and throughput, in memory
// ---------------------------------------------------------------------------

/// What the client's compressor negotiated (for the ceiling).
#[derive(Debug, Clone, Copy)]
struct Agreed {
    window: u8,
    takeover: bool,
}

/// A sans-I/O client/server pair after a simulated handshake.
struct Pair {
    client: Connection,
    server: Connection,
    agreed: Option<Agreed>,
}

fn negotiate(preset: Preset, cold: bool, config: &Config) -> Result<Pair, String> {
    let (client_neg, server_neg) = match preset.factories(cold) {
        None => (Negotiated::none(), Negotiated::none()),
        Some((cf, sf)) => {
            // Header text both ways, as on the wire.
            let offer_value = format_extensions(&client_offers(std::slice::from_ref(&cf)));
            let offers = parse_extensions([offer_value.as_str()]).map_err(|e| e.to_string())?;
            let server_neg = server_negotiate(&[sf], &offers).map_err(|e| e.to_string())?;
            let answer_value = format_extensions(server_neg.headers());
            let answer = parse_extensions([answer_value.as_str()]).map_err(|e| e.to_string())?;
            let client_neg = client_accept(&[cf], &answer).map_err(|e| e.to_string())?;
            if client_neg.extensions().len() != 1 {
                return Err(format!(
                    "{}: offer {offer_value:?} answered with {answer_value:?}",
                    preset.name()
                ));
            }
            (client_neg, server_neg)
        }
    };
    let agreed = client_neg.extensions().first().map(|e| {
        if let Some(p) = e.params::<PerMessageDeflateExt>() {
            Agreed {
                window: p.compress_window().get(),
                takeover: p.compress_takeover(),
            }
        } else {
            let p = e
                .params::<PerFrameDeflateExt>()
                .expect("a deflate extension");
            Agreed {
                window: p.compress_window().get(),
                takeover: p.compress_takeover(),
            }
        }
    });
    let session = |role, neg: Negotiated| {
        Connection::new(Session::with_extensions(role, config, neg), config)
    };
    Ok(Pair {
        client: session(Role::Client, client_neg),
        server: session(Role::Server, server_neg),
        agreed,
    })
}

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    messages: usize,
    payload: u64,
    wire: u64,
    /// Frame payload bytes (compressed data, no headers).
    compressed: u64,
    secs: f64,
    mismatches: u64,
}

impl Run {
    fn mib_s(&self) -> f64 {
        self.payload as f64 / (1 << 20) as f64 / self.secs.max(1e-9)
    }
}

/// Sends `msgs` client → server through weft until done or `budget` passes;
/// `cold`: see [`Preset::factories`].
fn run_weft(
    preset: Preset,
    cold: bool,
    opcode: OpCode,
    msgs: &[Bytes],
    budget: Duration,
) -> Result<(Run, Option<Agreed>), String> {
    let config = Config::default();
    let Pair {
        mut client,
        mut server,
        agreed,
    } = negotiate(preset, cold, &config)?;
    let hints = SendHints::default();
    let mut wb = WriteBuffer::new();
    let mut rbuf = BytesMut::with_capacity(1 << 16);
    let mut run = Run::default();
    let start = Instant::now();
    for m in msgs {
        client
            .session_mut()
            .send(opcode, m.clone(), &hints)
            .map_err(|e| format!("send: {e}"))?;
        client.poll_transmit(&mut wb);
        // The "socket": copy the client's output into the server's buffer.
        while !wb.is_empty() {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = wb.chunks(&mut slices);
            let mut moved = 0;
            for s in &slices[..n] {
                rbuf.extend_from_slice(s);
                moved += s.len();
            }
            wb.advance(moved);
        }
        run.wire += rbuf.len() as u64;
        let mut at = 0;
        while at < rbuf.len() {
            match FrameHeader::parse(&rbuf[at..]).map_err(|e| e.to_string())? {
                HeaderParse::Complete(h, n) => {
                    run.compressed += h.payload_len;
                    at += n + h.payload_len as usize;
                }
                HeaderParse::Incomplete(_) => return Err("truncated frame".into()),
            }
        }
        let got = server
            .handle_read(&mut rbuf)
            .map_err(|e| format!("server: {e}"))?;
        let same = match (&got, opcode) {
            (Some(Message::Text(t)), OpCode::Text) => t.as_bytes() == m,
            (Some(Message::Binary(b)), OpCode::Binary) => b == m,
            _ => false,
        };
        if !same || !rbuf.is_empty() {
            run.mismatches += 1;
        }
        run.messages += 1;
        run.payload += m.len() as u64;
        if start.elapsed() > budget {
            break;
        }
    }
    run.secs = start.elapsed().as_secs_f64();
    Ok((run, agreed))
}

/// The same messages through raw flate2 with persistent contexts.
fn run_ceiling(agreed: Agreed, level: u32, msgs: &[Bytes]) -> Run {
    let mut c = Compress::new_with_window_bits(Compression::new(level), false, agreed.window);
    let mut d = Decompress::new_with_window_bits(false, agreed.window);
    let max = msgs.iter().map(Bytes::len).max().unwrap_or(0);
    let mut cbuf: Vec<u8> = Vec::with_capacity(max + max / 1024 + 64);
    let mut dbuf: Vec<u8> = Vec::with_capacity(max + 64);
    let mut run = Run::default();
    let start = Instant::now();
    for m in msgs {
        cbuf.clear();
        let mut input: &[u8] = m;
        loop {
            if cbuf.capacity() - cbuf.len() < 64 {
                cbuf.reserve(cbuf.capacity().max(4096));
            }
            let before = c.total_in();
            c.compress_vec(input, &mut cbuf, FlushCompress::Sync)
                .expect("compress");
            input = &input[(c.total_in() - before) as usize..];
            if input.is_empty() && cbuf.len() < cbuf.capacity() {
                break;
            }
        }
        // What would go in the frame: the sync trailer is stripped.
        run.compressed += cbuf.len().saturating_sub(4) as u64;
        dbuf.clear();
        let mut input: &[u8] = &cbuf;
        loop {
            if dbuf.capacity() - dbuf.len() < 64 {
                dbuf.reserve(dbuf.capacity().max(4096));
            }
            let before = d.total_in();
            d.decompress_vec(input, &mut dbuf, FlushDecompress::Sync)
                .expect("decompress");
            input = &input[(d.total_in() - before) as usize..];
            if input.is_empty() && dbuf.len() < dbuf.capacity() {
                break;
            }
        }
        if dbuf[..] != m[..] {
            run.mismatches += 1;
        }
        if !agreed.takeover {
            c.reset();
            d.reset(false);
        }
        run.messages += 1;
        run.payload += m.len() as u64;
    }
    run.secs = start.elapsed().as_secs_f64();
    run
}

struct Cell {
    label: &'static str,
    preset: Preset,
    kind: Kind,
    size: usize,
    weft: Run,
    ceiling: Option<(Agreed, Run)>,
}

fn ratio_bench(quick: bool, presets: &[Preset]) -> Result<Vec<Cell>, String> {
    let (cell_bytes, budget, repeats) = if quick {
        (2usize << 20, Duration::from_millis(300), 1)
    } else {
        (8usize << 20, Duration::from_secs(1), 3)
    };
    // Each preset, plus the default preset with cold contexts (see
    // `Preset::factories`).
    let mut variants: Vec<(&'static str, Preset, bool)> = Vec::new();
    for &p in presets {
        variants.push((p.name(), p, false));
        if p == Preset::Default {
            variants.push(("default, cold", p, true));
        }
    }
    let mut cells = Vec::new();
    for kind in Kind::ALL {
        for size in [1usize << 10, 64 << 10] {
            let msgs = kind.messages(size, cell_bytes / size);
            for (label, preset, cold) in variants.iter().copied() {
                let mut best: Option<(Run, Option<Agreed>)> = None;
                for _ in 0..repeats {
                    let (r, agreed) = run_weft(preset, cold, kind.opcode(), &msgs, budget)?;
                    if r.mismatches > 0 {
                        return Err(format!(
                            "{label} {} {size}: {} of {} messages decoded differently",
                            kind.name(),
                            r.mismatches,
                            r.messages
                        ));
                    }
                    if best.as_ref().is_none_or(|b| r.mib_s() > b.0.mib_s()) {
                        best = Some((r, agreed));
                    }
                }
                let (weft, agreed) = best.expect("at least one run");
                let ceiling = agreed.map(|a| {
                    let used = &msgs[..weft.messages];
                    let mut best: Option<Run> = None;
                    for _ in 0..repeats {
                        let r = run_ceiling(a, preset.level(), used);
                        if best.is_none_or(|b| r.mib_s() > b.mib_s()) {
                            best = Some(r);
                        }
                    }
                    (a, best.expect("at least one run"))
                });
                if let Some((_, c)) = &ceiling
                    && c.mismatches > 0
                {
                    return Err(format!(
                        "ceiling {label} {} {size}: {} mismatches",
                        kind.name(),
                        c.mismatches
                    ));
                }
                let cell = Cell {
                    label,
                    preset,
                    kind,
                    size,
                    weft,
                    ceiling,
                };
                println!("{}", cell_json(&cell));
                cells.push(cell);
            }
        }
    }
    Ok(cells)
}

/// A ratio cell as one JSON line.
#[derive(Serialize)]
struct CellJson<'a> {
    bench: &'static str,
    preset: &'a str,
    payload: &'static str,
    size: usize,
    messages: usize,
    payload_bytes: u64,
    wire_bytes: u64,
    compressed_bytes: u64,
    wire_ratio: f64,
    deflate_ratio: f64,
    weft_mib_s: f64,
    #[serde(flatten)]
    ceiling: Option<CeilingJson>,
}

/// The ceiling's part of [`CellJson`].
#[derive(Serialize)]
struct CeilingJson {
    window_bits: u8,
    takeover: bool,
    level: u32,
    ceiling_bytes: u64,
    ceiling_ratio: f64,
    ceiling_mib_s: f64,
    size_vs_ceiling: f64,
    speed_vs_ceiling: f64,
}

fn cell_json(c: &Cell) -> String {
    let w = &c.weft;
    let p = w.payload as f64;
    let line = CellJson {
        bench: "ratio",
        preset: c.label,
        payload: c.kind.name(),
        size: c.size,
        messages: w.messages,
        payload_bytes: w.payload,
        wire_bytes: w.wire,
        compressed_bytes: w.compressed,
        wire_ratio: rounded(w.wire as f64 / p, 4),
        deflate_ratio: rounded(w.compressed as f64 / p, 4),
        weft_mib_s: rounded(w.mib_s(), 1),
        ceiling: c.ceiling.as_ref().map(|(a, r)| CeilingJson {
            window_bits: a.window,
            takeover: a.takeover,
            level: c.preset.level(),
            ceiling_bytes: r.compressed,
            ceiling_ratio: rounded(r.compressed as f64 / p, 4),
            ceiling_mib_s: rounded(r.mib_s(), 1),
            size_vs_ceiling: rounded(w.compressed as f64 / r.compressed.max(1) as f64, 4),
            speed_vs_ceiling: rounded(w.mib_s() / r.mib_s(), 3),
        }),
    };
    serde_json::to_string(&line).expect("a ratio cell serializes")
}

fn print_ratio_table(cells: &[Cell]) {
    println!();
    println!("### (a) Ratio and throughput, in memory (client → server, one thread)");
    println!();
    println!(
        "| payload | size | preset | w/lvl/takeover | msgs | wire ratio | deflate ratio | weft MiB/s | ceiling ratio | ceiling MiB/s | size vs ceiling | speed vs ceiling |"
    );
    println!("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in cells {
        let w = &c.weft;
        let p = w.payload as f64;
        let (params, cr, cm, sv, pv) = match &c.ceiling {
            Some((a, r)) => (
                format!(
                    "{}/{}/{}",
                    a.window,
                    c.preset.level(),
                    if a.takeover { "yes" } else { "no" }
                ),
                format!("{:.3}", r.compressed as f64 / p),
                format!("{:.1}", r.mib_s()),
                format!("{:.3}", w.compressed as f64 / r.compressed.max(1) as f64),
                format!("{:.2}x", w.mib_s() / r.mib_s()),
            ),
            None => ("—".into(), "—".into(), "—".into(), "—".into(), "—".into()),
        };
        println!(
            "| {} | {} KiB | {} | {params} | {} | {:.3} | {:.3} | {:.1} | {cr} | {cm} | {sv} | {pv} |",
            c.kind.name(),
            c.size >> 10,
            c.label,
            w.messages,
            w.wire as f64 / p,
            w.compressed as f64 / p,
            w.mib_s(),
        );
    }
}

// ---------------------------------------------------------------------------
// (b) Memory per connection
// ---------------------------------------------------------------------------

const WARMUP_CONNS: usize = 50;
const CONNECT_CONCURRENCY: usize = 200;
/// Default size of the message each connection echoes in part (b).
const MESSAGE_SIZE: usize = 2048;
/// A `--serve` child exits after this long whatever happens.
const SERVE_MAX: Duration = Duration::from_secs(900);
const CHILD_REPLY_TIMEOUT: Duration = Duration::from_secs(20);
const OPEN_TIMEOUT: Duration = Duration::from_secs(180);
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);
const IDLE_WAIT: Duration = Duration::from_secs(3);
const SLOW_CONNECT: Duration = Duration::from_millis(900);
const LISTEN_BACKLOG: u32 = 4096;

/// Gives free heap pages back to the kernel (glibc); no-op elsewhere.
fn malloc_trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the allocator's
    // own free lists under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `--serve PRESET`: echo server; prints `PORT n`; answers `TRIM` lines on
/// stdin with `OK` after `malloc_trim(0)`; exits when stdin closes.
fn serve(preset: Preset) -> ! {
    raise_fd_limit();
    std::thread::spawn(|| {
        std::thread::sleep(SERVE_MAX);
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // `TcpListener::bind` listens with a backlog of 128, which a burst of
    // 200 concurrent connects overflows (the dropped SYNs come back 1 s later).
    let listener = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(([127, 0, 0, 1], 0).into())?;
            socket.listen(LISTEN_BACKLOG)
        })
        .expect("listen on 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    let builder = Arc::new(preset.server_builder());
    rt.spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let builder = builder.clone();
            tokio::spawn(async move {
                if let Ok(ws) = builder.accept(stream).await {
                    weft_benches::servers::weft_echo(ws).await;
                }
            });
        }
    });
    println!("PORT {port}");
    let mut line = String::new();
    let stdin = std::io::stdin();
    loop {
        line.clear();
        match stdin.read_line(&mut line) {
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(_) if line.trim() == "TRIM" => {
                malloc_trim();
                println!("OK");
            }
            Ok(_) => println!("?"),
        }
    }
}

/// The `--serve` child and its pipes.
struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    pid: u32,
    port: u16,
}

impl Server {
    async fn spawn(preset: Preset) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["--serve", preset.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawn server: {e}"))?;
        let pid = child.id().ok_or("server has no pid")?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let mut s = Server {
            child,
            stdin,
            stdout,
            pid,
            port: 0,
        };
        let line = s.line().await?;
        s.port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("unexpected server output {line:?}"))?;
        Ok(s)
    }

    async fn line(&mut self) -> Result<String, String> {
        match tokio::time::timeout(CHILD_REPLY_TIMEOUT, self.stdout.next_line()).await {
            Ok(Ok(Some(l))) => Ok(l),
            Ok(Ok(None)) => Err("server exited".into()),
            Ok(Err(e)) => Err(format!("server stdout: {e}")),
            Err(_) => Err("server did not answer".into()),
        }
    }

    async fn trim(&mut self) -> Result<(), String> {
        self.stdin
            .write_all(b"TRIM\n")
            .await
            .map_err(|e| format!("server stdin: {e}"))?;
        self.stdin.flush().await.map_err(|e| e.to_string())?;
        match self.line().await?.as_str() {
            "OK" => Ok(()),
            other => Err(format!("unexpected server reply {other:?}")),
        }
    }

    /// (`VmRSS`, `VmHWM`) in bytes.
    fn memory(&self) -> Result<(u64, u64), String> {
        let status = test_support::proc_status(self.pid).map_err(|e| e.to_string())?;
        Ok((status.vm_rss, status.vm_hwm))
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

type Ws = WebSocket<weft_core::MaybeTlsStream>;

/// Opens `n` connections, `CONNECT_CONCURRENCY` at a time; also returns how
/// many took longer than [`SLOW_CONNECT`] (a dropped SYN is retried after 1 s).
async fn open(client: &ClientBuilder, url: &str, n: usize) -> Result<(Vec<Ws>, usize), String> {
    let results: Vec<Result<(Ws, Duration), String>> = futures_util::stream::iter(0..n)
        .map(|_| async move {
            let t = Instant::now();
            client
                .connect(url)
                .await
                .map(|(ws, _)| (ws, t.elapsed()))
                .map_err(|e| e.to_string())
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let mut conns = Vec::with_capacity(n);
    let mut slow = 0;
    for r in results {
        let (ws, took) = r?;
        slow += usize::from(took >= SLOW_CONNECT);
        conns.push(ws);
    }
    Ok((conns, slow))
}

/// One message each way on every connection, all at once; returns the
/// connections and how many echoes failed.
async fn exchange_all(conns: Vec<Ws>, msgs: &Arc<Vec<String>>) -> (Vec<Ws>, usize) {
    let mut set = tokio::task::JoinSet::new();
    for (i, mut ws) in conns.into_iter().enumerate() {
        let msgs = msgs.clone();
        set.spawn(async move {
            let msg = &msgs[i % msgs.len()];
            let ok = async {
                ws.send(Message::text(msg.as_str())).await.ok()?;
                match ws.recv().await {
                    Some(Ok(Message::Text(t))) => Some(t.as_str() == msg),
                    _ => Some(false),
                }
            };
            let ok = matches!(
                tokio::time::timeout(EXCHANGE_TIMEOUT, ok).await,
                Ok(Some(true))
            );
            (ws, ok)
        });
    }
    let mut back = Vec::with_capacity(set.len());
    let mut failed = 0;
    while let Some(r) = set.join_next().await {
        match r {
            Ok((ws, ok)) => {
                failed += usize::from(!ok);
                back.push(ws);
            }
            Err(_) => failed += 1,
        }
    }
    (back, failed)
}

#[derive(Debug, Clone, Copy)]
struct Mem {
    preset: Preset,
    conns: usize,
    message_size: usize,
    before: u64,
    after: u64,
    peak: u64,
    idle: u64,
    trimmed: u64,
    open_secs: f64,
    slow_connects: usize,
    exchange_secs: f64,
}

impl Mem {
    fn per_conn(&self, rss: u64) -> f64 {
        (rss as f64 - self.before as f64) / self.conns as f64
    }
}

async fn measure(preset: Preset, conns: usize, message_size: usize) -> Result<Mem, String> {
    let mut server = Server::spawn(preset).await?;
    let url = format!("ws://127.0.0.1:{}/", server.port);
    let pool = Arc::new(ContextPool::new(64));
    let client = preset.client_builder(&pool);
    let msgs: Arc<Vec<String>> = Arc::new(
        Kind::Json
            .messages(message_size, 64)
            .into_iter()
            .map(|b| String::from_utf8(b.to_vec()).expect("ASCII JSON"))
            .collect(),
    );

    // 1. Warm-up, then the baseline.
    let (warm, _) = tokio::time::timeout(OPEN_TIMEOUT, open(&client, &url, WARMUP_CONNS))
        .await
        .map_err(|_| "warm-up timed out".to_string())??;
    let (warm, failed) = exchange_all(warm, &msgs).await;
    if failed > 0 {
        return Err(format!("warm-up: {failed} echoes failed"));
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.trim().await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (before, _) = server.memory()?;

    // 2. Open every connection.
    let t = Instant::now();
    let (open_all, slow_connects) = tokio::time::timeout(OPEN_TIMEOUT, open(&client, &url, conns))
        .await
        .map_err(|_| format!("opening {conns} connections timed out"))??;
    let open_secs = t.elapsed().as_secs_f64();
    for ws in &open_all {
        let names: Vec<&str> = ws.extensions().iter().map(|h| h.name.as_str()).collect();
        let ok = match preset.token() {
            None => names.is_empty(),
            Some(t) => names == [t],
        };
        if !ok {
            return Err(format!("negotiated {names:?}"));
        }
    }

    // 3. One compressed message each way.
    let t = Instant::now();
    let (all, failed) = tokio::time::timeout(EXCHANGE_TIMEOUT * 2, exchange_all(open_all, &msgs))
        .await
        .map_err(|_| "echo phase timed out".to_string())?;
    let exchange_secs = t.elapsed().as_secs_f64();
    let (after, peak) = server.memory()?;
    if failed > 0 {
        return Err(format!("{failed} of {conns} echoes failed"));
    }

    // 4. Idle release, then what the allocator kept.
    tokio::time::sleep(IDLE_WAIT).await;
    let (idle, _) = server.memory()?;
    server.trim().await?;
    let (trimmed, _) = server.memory()?;

    server.stop().await;
    drop(all);
    Ok(Mem {
        preset,
        conns,
        message_size,
        before,
        after,
        peak,
        idle,
        trimmed,
        open_secs,
        slow_connects,
        exchange_secs,
    })
}

/// A memory measurement as one JSON line.
#[derive(Serialize)]
struct MemJson {
    bench: &'static str,
    preset: &'static str,
    conns: usize,
    message_bytes: usize,
    rss_before: u64,
    rss_after: u64,
    hwm_after: u64,
    rss_idle: u64,
    rss_idle_trimmed: u64,
    bytes_per_conn: Option<i64>,
    peak_bytes_per_conn: Option<i64>,
    idle_bytes_per_conn: Option<i64>,
    idle_trimmed_bytes_per_conn: Option<i64>,
    target_bytes_per_conn: Option<u64>,
    open_secs: f64,
    slow_connects: usize,
    exchange_secs: f64,
}

fn mem_json(m: &Mem) -> String {
    let line = MemJson {
        bench: "memory",
        preset: m.preset.name(),
        conns: m.conns,
        message_bytes: m.message_size,
        rss_before: m.before,
        rss_after: m.after,
        hwm_after: m.peak,
        rss_idle: m.idle,
        rss_idle_trimmed: m.trimmed,
        bytes_per_conn: whole(m.per_conn(m.after)),
        peak_bytes_per_conn: whole(m.per_conn(m.peak)),
        idle_bytes_per_conn: whole(m.per_conn(m.idle)),
        idle_trimmed_bytes_per_conn: whole(m.per_conn(m.trimmed)),
        target_bytes_per_conn: m.preset.target(),
        open_secs: rounded(m.open_secs, 2),
        slow_connects: m.slow_connects,
        exchange_secs: rounded(m.exchange_secs, 2),
    };
    serde_json::to_string(&line).expect("a memory measurement serializes")
}

fn print_mem_table(rows: &[Mem]) {
    let size = rows.first().map_or(MESSAGE_SIZE, |m| m.message_size);
    let kib = |b: f64| format!("{:.1}", b / 1024.0);
    println!();
    println!(
        "### (b) Server RSS per connection after one {} B compressible message each way",
        size
    );
    println!();
    println!(
        "| preset | conns | RSS before (MiB) | after traffic (KiB/conn) | peak (KiB/conn) | after {} s idle (KiB/conn) | idle + malloc_trim (KiB/conn) | target (KiB/conn, after traffic) | echo phase (s) |",
        IDLE_WAIT.as_secs()
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|---:|");
    for m in rows {
        let target = match m.preset.target() {
            None => "—".to_owned(),
            Some(t) => {
                let t = t as f64;
                let verdict = if m.per_conn(m.after) <= t {
                    "met"
                } else if m.per_conn(m.idle) <= t {
                    "met once idle"
                } else if m.per_conn(m.trimmed) <= t {
                    "missed; met only after idle + malloc_trim"
                } else {
                    "missed"
                };
                format!("≤ {} ({verdict})", t / 1024.0)
            }
        };
        println!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {target} | {:.2} |",
            m.preset.name(),
            m.conns,
            m.before as f64 / (1 << 20) as f64,
            kib(m.per_conn(m.after)),
            kib(m.per_conn(m.peak)),
            kib(m.per_conn(m.idle)),
            kib(m.per_conn(m.trimmed)),
            m.exchange_secs,
        );
    }
}

fn memory_bench(conns: usize, size: usize, presets: &[Preset]) -> Result<Vec<Mem>, String> {
    let limit = raise_fd_limit();
    if (limit as usize) < conns + WARMUP_CONNS + 64 {
        return Err(format!(
            "RLIMIT_NOFILE is {limit}: too low for {conns} connections"
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for &preset in presets {
        eprintln!("memory: {} ...", preset.name());
        let m = rt.block_on(measure(preset, conns, size))?;
        println!("{}", mem_json(&m));
        rows.push(m);
        // Let the kernel finish closing the sockets.
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------

/// Compression: ratio and throughput of weft's deflate extensions in
/// memory against raw flate2, and server memory per connection with each
/// preset on loopback.
#[derive(Debug, Parser)]
#[command(name = "compression")]
struct Args {
    /// Smaller runs: 2 MiB and 0.3 s per ratio cell, one repeat, 1,000
    /// connections.
    #[arg(long)]
    quick: bool,
    /// Connections of the memory part [default: 10000, or 1000 with --quick].
    #[arg(long, value_name = "N")]
    conns: Option<usize>,
    /// Run one part only.
    #[arg(long, value_enum)]
    only: Option<Part>,
    /// Presets to run [default: all]: default, fast, max_compression,
    /// low_memory, pooled_nct, per_frame, off.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = preset_arg)]
    presets: Vec<Preset>,
    /// Size of the message each connection echoes in the memory part, in
    /// bytes (at least 16).
    #[arg(long, value_name = "BYTES", default_value_t = MESSAGE_SIZE)]
    message_size: usize,
    /// Internal: run as the memory part's echo server child with this preset.
    #[arg(long, value_name = "PRESET", value_parser = preset_arg)]
    serve: Option<Preset>,
}

/// `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// (a) ratio and throughput, in memory.
    Ratio,
    /// (b) memory per connection.
    Memory,
}

/// A preset by its name.
fn preset_arg(s: &str) -> Result<Preset, String> {
    Preset::parse(s.trim()).ok_or_else(|| {
        let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

fn main() {
    let args = Args::parse();
    if let Some(preset) = args.serve {
        serve(preset);
    }
    let quick = args.quick;
    let conns = args.conns.unwrap_or(if quick { 1000 } else { 10_000 });
    let presets: Vec<Preset> = if args.presets.is_empty() {
        Preset::ALL.to_vec()
    } else {
        args.presets.clone()
    };
    let message_size = args.message_size.max(16);
    let (ratio, memory) = match args.only {
        None => (true, true),
        Some(Part::Ratio) => (true, false),
        Some(Part::Memory) => (false, true),
    };

    let cells = if ratio {
        match ratio_bench(quick, &presets) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ratio: {e}");
                std::process::exit(1);
            }
        }
    } else {
        Vec::new()
    };
    let mem = if memory {
        match memory_bench(conns, message_size, &presets) {
            Ok(m) => m,
            Err(e) => {
                if !cells.is_empty() {
                    print_ratio_table(&cells);
                }
                eprintln!("memory: {e}");
                std::process::exit(1);
            }
        }
    } else {
        Vec::new()
    };
    if !cells.is_empty() {
        print_ratio_table(&cells);
    }
    if !mem.is_empty() {
        print_mem_table(&mem);
    }
}
