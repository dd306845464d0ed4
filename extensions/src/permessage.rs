//! permessage-deflate (RFC 7692).

use crate::deflate::{
    Compressor, ContextPool, Decompressor, DeflateParams, Release, WindowBits, finish_message,
};
use bytes::BytesMut;
use std::sync::{Arc, OnceLock};
use weft_core::ext::{
    Acceptance, Extension, ExtensionError, ExtensionFactory, ExtensionHeader, MessageDecoder,
    MessageEncoder, NegotiationError, SendHints, SharedEncoder,
};
use weft_core::{OpCode, Rsv};

const NAME: &str = "permessage-deflate";
const SERVER_NCT: &str = "server_no_context_takeover";
const CLIENT_NCT: &str = "client_no_context_takeover";
const SERVER_MWB: &str = "server_max_window_bits";
const CLIENT_MWB: &str = "client_max_window_bits";
/// The default window, 8 KiB: see [`PerMessageDeflate::new`].
const DEFAULT_WINDOW: WindowBits = match WindowBits::new(13) {
    Some(w) => w,
    None => panic!("13 is a valid window"),
};

/// Contexts of each kind the default [`PerMessageDeflate`] pool keeps.
pub const DEFAULT_POOL_CONTEXTS: usize = 64;

/// What a connection keeps between messages.
///
/// zlib state is large: a compressor is over 128 KiB whatever the window
/// (zlib-rs uses a fixed 64 Ki-entry hash table), a decompressor about 7 KiB
/// plus its window. Everything a context must carry to the next message,
/// though, is its window: the last `2^w` bytes. Giving the state up and
/// keeping only that (primed back as a preset dictionary when the next
/// message comes) is "hibernating"; the peer sees exactly the same stream.
///
/// Given-up contexts go to the [`ContextPool`] when there is one (the
/// default): a connection gets its own context back, still warm and without
/// priming, unless other connections needed it meanwhile. The pool keeps at
/// most its bound of contexts of each kind, so a server's zlib memory
/// follows how many connections are busy at once, not how many are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryStrategy {
    /// Keep zlib contexts once allocated (on the first compressed message):
    /// fast for any number of busy connections, largest (about 240 KiB per
    /// connection at the default settings).
    Keep,
    /// Keep contexts while the connection is busy; hibernate them once it has
    /// been idle for `weft_core::Config::release_idle_after` (1 s by
    /// default). Note that every connection busy at the same moment holds a
    /// full context, and the allocator may keep that memory after release.
    HibernateWhenIdle,
    /// Hibernate after every message. With the default pool of 64 contexts
    /// each way, up to 64 connections exchanging messages at the same time
    /// keep warm contexts (full speed), and between messages a connection
    /// holds only its windows. Beyond that, a message whose connection lost
    /// its context pays a reset and a preset dictionary (measured here at
    /// 13 bits: about 11 µs per message, so 1 KiB messages go at 0.65x of
    /// the warm speed; 64 KiB messages at 0.97x). Without a pool, every
    /// message pays that. The default.
    #[default]
    Hibernate,
}

impl MemoryStrategy {
    pub(crate) fn release(self) -> Release {
        match self {
            MemoryStrategy::Keep => Release::Never,
            MemoryStrategy::HibernateWhenIdle => Release::WhenIdle,
            MemoryStrategy::Hibernate => Release::EveryMessage,
        }
    }
}

/// permessage-deflate configuration, used as a client or a server factory.
///
/// Parameter names follow RFC 7692, so their meaning depends on the role:
///
/// | field | as a server | as a client |
/// |---|---|---|
/// | `server_max_window_bits` | our compressor's window; announced when below 15 or when the client asked | requested in the offer when below 15 |
/// | `client_max_window_bits` | asked of clients that support it (when below 15) | our compressor's window; offered (valueless when 15) |
/// | `server_no_context_takeover` | we reset per message; announced | requested in the offer |
/// | `client_no_context_takeover` | imposed on the client | offered, and we reset per message |
///
/// Offers the server cannot accept (unknown, repeated or invalid parameters)
/// are declined and the next offer is tried. The client fails the connection
/// on an answer RFC 7692 §7 does not allow.
///
/// Window bits 8: a compressor whose agreed window is 8 runs with 9 bits,
/// which zlib guarantees to decode with a 256-byte window (see
/// [`crate::deflate`]); decompression always uses at least 9 bits.
#[derive(Debug, Clone)]
pub struct PerMessageDeflate {
    /// Compression level, 0 to 9. Default 6.
    pub level: u8,
    /// zlib memLevel, 1 to 9 (pending buffer of `2^(mem+8)` bytes). Default 8.
    pub mem_level: u8,
    /// See the table above. Default 15.
    pub server_max_window_bits: WindowBits,
    /// See the table above. Default 15.
    pub client_max_window_bits: WindowBits,
    /// See the table above. Default false.
    pub server_no_context_takeover: bool,
    /// See the table above. Default false.
    pub client_no_context_takeover: bool,
    /// Messages shorter than this are sent uncompressed (RSV1 clear).
    /// Default 0: everything is compressed.
    pub threshold: usize,
    /// What is kept between messages. Default [`MemoryStrategy::Hibernate`].
    pub memory: MemoryStrategy,
    /// Contexts shared by the connections this configuration serves (used
    /// when contexts are given up: no context takeover, or hibernation).
    /// Default: a pool of [`DEFAULT_POOL_CONTEXTS`] of each kind, shared by
    /// clones of this value.
    pub pool: Option<Arc<ContextPool>>,
    /// Client role: further offers, sent after this one in preference order
    /// (see [`or_offer`](Self::or_offer)). Ignored by servers.
    pub fallbacks: Vec<PerMessageDeflate>,
    /// Client role: also offer, last, the same settings with the RFC's
    /// window sizes (32 KiB, no window request of the server, a valueless
    /// `client_max_window_bits`), so servers that cannot honour smaller
    /// windows still agree to compress. No-context-takeover requests are
    /// kept. Default true. Ignored by servers.
    pub rfc_fallback: bool,
}

impl Default for PerMessageDeflate {
    fn default() -> Self {
        PerMessageDeflate {
            level: 6,
            mem_level: 8,
            server_max_window_bits: DEFAULT_WINDOW,
            client_max_window_bits: DEFAULT_WINDOW,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            threshold: 0,
            memory: MemoryStrategy::Hibernate,
            pool: Some(Arc::new(ContextPool::new(DEFAULT_POOL_CONTEXTS))),
            fallbacks: Vec::new(),
            rfc_fallback: true,
        }
    }
}

impl PerMessageDeflate {
    /// The default: 8 KiB windows (13 bits) both ways, context takeover,
    /// level 6, contexts given back after every message to a pool of
    /// [`DEFAULT_POOL_CONTEXTS`] shared by the connections of this
    /// configuration ([`MemoryStrategy::Hibernate`]). Up to that many
    /// connections busy at once keep warm contexts and run at full speed;
    /// between messages a connection holds only what its windows have seen
    /// (at most 8 KiB each way). Measured on a server with 10,000
    /// connections after one 2 KiB message each way: about 8 KiB per
    /// connection, I/O buffers included, plus the pool itself, shared by
    /// every connection: at most 64 contexts each way, about 12 MiB once
    /// that many connections were busy at the same time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Best ratio: the RFC's 32 KiB windows, level 9, live contexts (about
    /// 340 KiB per server connection once both directions compressed).
    pub fn max_compression() -> Self {
        PerMessageDeflate {
            level: 9,
            server_max_window_bits: WindowBits::MAX,
            client_max_window_bits: WindowBits::MAX,
            memory: MemoryStrategy::Keep,
            ..Self::default()
        }
    }

    /// Fastest: level 1, 32 KiB windows, live contexts. Level 1 grows
    /// incompressible data by about 5.5% (level 6: 0.2%): pair it with a
    /// [`threshold`](Self::threshold) or per-message opt-out for such data.
    pub fn fast() -> Self {
        PerMessageDeflate {
            level: 1,
            server_max_window_bits: WindowBits::MAX,
            client_max_window_bits: WindowBits::MAX,
            memory: MemoryStrategy::Keep,
            ..Self::default()
        }
    }

    /// The default with 4 KiB windows (12 bits): a long-lived connection
    /// holds at most 8 KiB of windows between messages instead of 16 KiB,
    /// for a slightly lower ratio (about 5% larger output on JSON).
    pub fn low_memory() -> Self {
        PerMessageDeflate {
            server_max_window_bits: WindowBits::new(12).expect("valid"),
            client_max_window_bits: WindowBits::new(12).expect("valid"),
            memory: MemoryStrategy::Hibernate,
            ..Self::default()
        }
    }

    /// No context takeover either way, compressors shared through a pool:
    /// an idle connection holds no compression state at all.
    pub fn pooled_no_context_takeover() -> Self {
        PerMessageDeflate {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            memory: MemoryStrategy::Hibernate,
            ..Self::default()
        }
    }

    /// Client role: also offers `other`, less preferred than this (and than
    /// earlier fallbacks). The server's answer is accepted if it fits any
    /// of the offers, tried in order.
    pub fn or_offer(mut self, other: PerMessageDeflate) -> Self {
        self.fallbacks.push(other);
        self
    }

    /// Sets [`rfc_fallback`](Self::rfc_fallback): false offers exactly this
    /// configuration (and explicit [`or_offer`](Self::or_offer)s) only.
    pub fn rfc_fallback(mut self, on: bool) -> Self {
        self.rfc_fallback = on;
        self
    }

    /// Sets the compression level (0 to 9).
    pub fn level(mut self, level: u8) -> Self {
        self.level = level.min(9);
        self
    }

    /// Sets the size threshold below which messages go uncompressed.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Sets `server_max_window_bits`.
    pub fn server_max_window_bits(mut self, bits: WindowBits) -> Self {
        self.server_max_window_bits = bits;
        self
    }

    /// Sets `client_max_window_bits`.
    pub fn client_max_window_bits(mut self, bits: WindowBits) -> Self {
        self.client_max_window_bits = bits;
        self
    }

    /// Sets `server_no_context_takeover`.
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Sets `client_no_context_takeover`.
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Sets the memory strategy.
    pub fn memory(mut self, memory: MemoryStrategy) -> Self {
        self.memory = memory;
        self
    }

    fn build(&self, setup: Setup) -> PerMessageDeflateExt {
        PerMessageDeflateExt {
            compress: DeflateParams {
                level: self.level,
                mem_level: self.mem_level,
                window: setup.compress_window,
            },
            compress_takeover: setup.compress_takeover,
            decompress_window: setup.decompress_window,
            peer_takeover: setup.peer_takeover,
            threshold: self.threshold,
            release: self.memory.release(),
            pool: self.pool.clone(),
        }
    }
}

/// The agreed configuration, seen from one endpoint.
struct Setup {
    compress_window: WindowBits,
    compress_takeover: bool,
    decompress_window: WindowBits,
    peer_takeover: bool,
}

/// Parsed parameters of one element. `client_max_window_bits` is
/// `Some(None)` when present without a value.
#[derive(Default)]
struct Params {
    server_nct: bool,
    client_nct: bool,
    server_mwb: Option<WindowBits>,
    client_mwb: Option<Option<WindowBits>>,
}

/// Parses an element's parameters; `offer` allows a valueless
/// `client_max_window_bits`. Unknown, repeated or invalid parameters fail.
fn parse_params(h: &ExtensionHeader, offer: bool) -> Result<Params, String> {
    let mut p = Params::default();
    let mut seen: Vec<&str> = Vec::with_capacity(h.params.len());
    for param in &h.params {
        let name = param.name.as_str();
        if seen.contains(&name) {
            return Err(format!("parameter {name} repeated"));
        }
        seen.push(name);
        let value = param.value.as_deref();
        let bits = |v: Option<&str>| {
            v.and_then(WindowBits::parse)
                .ok_or_else(|| format!("invalid {name} value {v:?}"))
        };
        match name {
            SERVER_NCT | CLIENT_NCT if value.is_some() => {
                return Err(format!("{name} takes no value"));
            }
            SERVER_NCT => p.server_nct = true,
            CLIENT_NCT => p.client_nct = true,
            SERVER_MWB => p.server_mwb = Some(bits(value)?),
            CLIENT_MWB if value.is_none() && offer => p.client_mwb = Some(None),
            CLIENT_MWB => p.client_mwb = Some(Some(bits(value)?)),
            other => return Err(format!("unknown parameter {other}")),
        }
    }
    Ok(p)
}

impl ExtensionFactory for PerMessageDeflate {
    fn name(&self) -> &str {
        NAME
    }

    fn offers(&self) -> Vec<ExtensionHeader> {
        let mut all = vec![self.offer()];
        all.extend(self.fallbacks.iter().map(PerMessageDeflate::offer));
        if let Some(fb) = self.rfc_fallback_config() {
            let offer = fb.offer();
            if !all.contains(&offer) {
                all.push(offer);
            }
        }
        all
    }

    fn accept(
        &self,
        response: &ExtensionHeader,
        _accepted: &[Extension],
    ) -> Result<Extension, NegotiationError> {
        let first = self.accept_one(response);
        if first.is_ok() {
            return first;
        }
        self.fallbacks
            .iter()
            .cloned()
            .chain(self.rfc_fallback_config())
            .map(|f| f.accept_one(response))
            .find(Result::is_ok)
            .unwrap_or(first)
    }

    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        _accepted: &[Extension],
    ) -> Result<Option<Acceptance>, NegotiationError> {
        // RFC 7692 §7: an offer we cannot accept is declined, not an error.
        let Ok(p) = parse_params(offer, true) else {
            return Ok(None);
        };
        let mut response = ExtensionHeader::new(NAME);
        let server_nct = p.server_nct || self.server_no_context_takeover;
        if server_nct {
            response = response.param(SERVER_NCT, None::<String>);
        }
        if self.client_no_context_takeover {
            response = response.param(CLIENT_NCT, None::<String>);
        }
        let server_window = p
            .server_mwb
            .unwrap_or(WindowBits::MAX)
            .min(self.server_max_window_bits);
        if p.server_mwb.is_some() || server_window < WindowBits::MAX {
            response = response.param(SERVER_MWB, Some(server_window.to_string()));
        }
        // We can only limit the client's window if it said it supports that.
        let client_window = match p.client_mwb {
            Some(offered) => {
                let w = offered
                    .unwrap_or(WindowBits::MAX)
                    .min(self.client_max_window_bits);
                if offered.is_some() || w < WindowBits::MAX {
                    response = response.param(CLIENT_MWB, Some(w.to_string()));
                }
                w
            }
            None => WindowBits::MAX,
        };
        let ext = self.build(Setup {
            compress_window: server_window,
            compress_takeover: !server_nct,
            decompress_window: client_window,
            peer_takeover: !self.client_no_context_takeover,
        });
        Ok(Some((response, ext.into_extension())))
    }
}

impl PerMessageDeflate {
    /// The RFC-defaults offer appended after ours (see `rfc_fallback`).
    fn rfc_fallback_config(&self) -> Option<PerMessageDeflate> {
        self.rfc_fallback.then(|| PerMessageDeflate {
            // Only the window sizes are relaxed: a no-context-takeover
            // request may matter for security and is kept.
            server_max_window_bits: WindowBits::MAX,
            client_max_window_bits: WindowBits::MAX,
            fallbacks: Vec::new(),
            rfc_fallback: false,
            pool: self.pool.clone(),
            ..*self
        })
    }

    fn offer(&self) -> ExtensionHeader {
        let mut h = ExtensionHeader::new(NAME);
        if self.server_no_context_takeover {
            h = h.param(SERVER_NCT, None::<String>);
        }
        if self.client_no_context_takeover {
            h = h.param(CLIENT_NCT, None::<String>);
        }
        if self.server_max_window_bits < WindowBits::MAX {
            h = h.param(SERVER_MWB, Some(self.server_max_window_bits.to_string()));
        }
        // Always signal that we accept a client_max_window_bits answer.
        let client_bits = (self.client_max_window_bits < WindowBits::MAX)
            .then(|| self.client_max_window_bits.to_string());
        h.param(CLIENT_MWB, client_bits)
    }

    /// Validates the answer against this one offer (RFC 7692 §7).
    fn accept_one(&self, response: &ExtensionHeader) -> Result<Extension, NegotiationError> {
        let fail = |why: String| NegotiationError::rejected(NAME, why);
        let p = parse_params(response, false).map_err(fail)?;
        if self.server_no_context_takeover && !p.server_nct {
            return Err(fail(format!("requested {SERVER_NCT} is missing")));
        }
        if self.server_max_window_bits < WindowBits::MAX {
            match p.server_mwb {
                Some(m) if m <= self.server_max_window_bits => {}
                Some(m) => {
                    return Err(fail(format!(
                        "{SERVER_MWB}={m} exceeds the requested {}",
                        self.server_max_window_bits
                    )));
                }
                None => return Err(fail(format!("requested {SERVER_MWB} is missing"))),
            }
        }
        let client_window = match p.client_mwb {
            Some(Some(m)) if m <= self.client_max_window_bits => m,
            Some(Some(m)) => {
                return Err(fail(format!(
                    "{CLIENT_MWB}={m} exceeds the offered {}",
                    self.client_max_window_bits
                )));
            }
            Some(None) => unreachable!("parse_params refuses a valueless answer"),
            None => self.client_max_window_bits,
        };
        Ok(self
            .build(Setup {
                compress_window: client_window,
                compress_takeover: !(p.client_nct || self.client_no_context_takeover),
                decompress_window: p.server_mwb.unwrap_or(WindowBits::MAX),
                peer_takeover: !p.server_nct,
            })
            .into_extension())
    }
}

/// A negotiated permessage-deflate: the agreed parameters from this
/// endpoint's point of view.
#[derive(Debug, Clone)]
pub struct PerMessageDeflateExt {
    compress: DeflateParams,
    compress_takeover: bool,
    decompress_window: WindowBits,
    peer_takeover: bool,
    threshold: usize,
    release: Release,
    pool: Option<Arc<ContextPool>>,
}

impl PerMessageDeflateExt {
    /// Our compressor's window.
    pub fn compress_window(&self) -> WindowBits {
        self.compress.window
    }
    /// True if our compressor keeps its window across messages.
    pub fn compress_takeover(&self) -> bool {
        self.compress_takeover
    }
    /// The window our decompressor must support.
    pub fn decompress_window(&self) -> WindowBits {
        self.decompress_window
    }
    /// True if the peer may refer back to earlier messages.
    pub fn peer_takeover(&self) -> bool {
        self.peer_takeover
    }
}

impl PerMessageDeflateExt {
    /// The context-free encoder shared by every connection with the same
    /// compressor parameters (see [`SharedDeflate`]).
    pub fn shared_encoder(&self) -> SharedDeflate {
        SharedDeflate::new(self.compress, self.threshold, self.pool.clone())
    }

    /// The coders, with these parameters attached for the application.
    fn into_extension(self) -> Extension {
        let encoder = Encoder {
            compressor: Compressor::new(self.compress, self.pool.clone(), self.release),
            takeover: self.compress_takeover,
            threshold: self.threshold,
            shared: OnceLock::new(),
        };
        let decoder = Decoder {
            decompressor: Decompressor::new(
                self.decompress_window,
                self.pool.clone(),
                self.release,
            ),
            takeover: self.peer_takeover,
        };
        // RSV1 marks a compressed message (RFC 7692 §6).
        Extension::per_message(Rsv::RSV1, encoder, decoder).with_params(self)
    }
}

struct Encoder {
    compressor: Compressor,
    takeover: bool,
    threshold: usize,
    /// Made on the first broadcast only: most connections never need it,
    /// and a per-connection allocation made at negotiation time stays
    /// between the connection's large buffers for its whole life.
    shared: OnceLock<Arc<SharedDeflate>>,
}

/// permessage-deflate for broadcast: compresses a whole message without
/// context (a fresh DEFLATE stream, sync-flushed, trailer stripped), so the
/// same bytes decode on every connection that agreed on this compressor's
/// window, whether or not it negotiated `server_no_context_takeover`.
///
/// Its [`key`](SharedEncoder::key) names what changes the bytes: window
/// bits, level, memLevel and the size threshold. Connections with equal
/// keys form one broadcast group (see `weft_core::prepared`), compressed
/// once per message. The zlib context comes from the configuration's
/// [`ContextPool`] and goes back to it (reset) after each message; without
/// a pool one is allocated per message and group.
///
/// After a connection sends a message compressed here, its own encoder
/// drops its context (a compressor "MAY keep" its window, never must:
/// `docs/specs/permessage-deflate.md` §5, RFC 7692 §7.2.1; so it may drop it at any
/// time), because the peer's window now holds the broadcast message and
/// ours does not.
#[derive(Debug, Clone)]
pub struct SharedDeflate {
    key: String,
    params: DeflateParams,
    threshold: usize,
    pool: Option<Arc<ContextPool>>,
}

impl SharedDeflate {
    fn new(params: DeflateParams, threshold: usize, pool: Option<Arc<ContextPool>>) -> Self {
        SharedDeflate {
            key: format!(
                "{NAME}; window_bits={}; level={}; mem_level={}; threshold={threshold}",
                params.window, params.level, params.mem_level
            ),
            params,
            threshold,
            pool,
        }
    }

    /// The compressor's window.
    pub fn window(&self) -> WindowBits {
        self.params.window
    }

    /// The compression level.
    pub fn level(&self) -> u8 {
        self.params.level
    }
}

impl SharedEncoder for SharedDeflate {
    fn key(&self) -> &str {
        &self.key
    }

    fn encode(
        &self,
        _: OpCode,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<bool, ExtensionError> {
        if payload.len() < self.threshold {
            return Ok(false);
        }
        let mut c = Compressor::new(self.params, self.pool.clone(), Release::Never);
        c.compress(payload, out)?;
        finish_message(out);
        // No takeover: the context goes back to the pool reset (or is
        // freed when the compressor drops).
        c.end_message(false);
        Ok(true)
    }
}

impl MessageEncoder for Encoder {
    fn begin(&mut self, _: OpCode, first: &[u8], fin: bool, hints: &SendHints) -> bool {
        // Streamed messages (fin = false) are compressed regardless of size.
        hints.compress && !(fin && first.len() < self.threshold)
    }

    fn encode(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
    ) -> Result<(), ExtensionError> {
        self.compressor.compress(input, out)?;
        if fin {
            finish_message(out);
            self.compressor.end_message(self.takeover);
        }
        // Intermediate fragments keep their sync-flush trailer.
        Ok(())
    }

    fn idle(&mut self) {
        self.compressor.idle();
    }

    fn shared(&self) -> Option<Arc<dyn SharedEncoder>> {
        let shared = self.shared.get_or_init(|| {
            Arc::new(SharedDeflate::new(
                self.compressor.params(),
                self.threshold,
                self.compressor.pool().cloned(),
            ))
        });
        Some(shared.clone())
    }

    fn shared_sent(&mut self) {
        if self.takeover {
            self.compressor.forget();
        }
    }
}

struct Decoder {
    decompressor: Decompressor,
    takeover: bool,
}

impl MessageDecoder for Decoder {
    fn decode(
        &mut self,
        input: &[u8],
        fin: bool,
        budget: usize,
        out: &mut BytesMut,
    ) -> Result<(), ExtensionError> {
        self.decompressor.decompress(input, fin, budget, out)?;
        if fin {
            self.decompressor.end_message(self.takeover);
        }
        Ok(())
    }

    fn idle(&mut self) {
        self.decompressor.idle();
    }
}
