//! Per-frame deflate: `deflate-frame` (draft-tyoshino-hybi-websocket-
//! perframe-deflate-05/-06) and its WebKit alias `x-webkit-deflate-frame`.
//!
//! Every data frame (text, binary or continuation) is compressed on its own
//! with a sync flush, its trailing `00 00 ff ff` stripped, and marked with
//! RSV1; control frames never are; a frame may also go uncompressed. The
//! receiver appends the trailer to each RSV1 frame and inflates it with a
//! persistent inflater.
//!
//! Negotiation (docs/specs/perframe-deflate.md §2): a parameter constrains the compressor of the
//! endpoint that *receives* it. In an offer, `max_window_bits=N` and
//! `no_context_takeover` bind the server's compressor; in the response, the
//! client's. Servers answer with the name the client used. Unknown offer
//! parameters are ignored (as the draft author's pywebsocket does); invalid
//! values, valued `no_context_takeover` and repeated parameters make the
//! server decline the offer. A client fails on any unknown parameter or
//! invalid value in the answer (as WebKit does).
//!
//! Both this and permessage-deflate own RSV1, so they can never be active
//! together: negotiation declines the second. A client offering both gets
//! the one the server prefers when the server uses
//! `ServerBuilder::prefer_server_extension_order`, and the client's first
//! choice otherwise.

use crate::MemoryStrategy;
use crate::deflate::{
    Compressor, ContextPool, Decompressor, DeflateParams, Release, WindowBits, finish_message,
};
use bytes::BytesMut;
use std::sync::Arc;
use weft_core::Rsv;
use weft_core::ext::{
    Acceptance, Extension, ExtensionError, ExtensionFactory, ExtensionHeader, FrameDecoder,
    FrameEncoder, NegotiationError, SendHints,
};

/// The draft's extension token.
pub const DEFLATE_FRAME: &str = "deflate-frame";
/// WebKit's vendor-prefixed token for the same extension.
pub const X_WEBKIT_DEFLATE_FRAME: &str = "x-webkit-deflate-frame";

const MAX_WINDOW_BITS: &str = "max_window_bits";
const NO_CONTEXT_TAKEOVER: &str = "no_context_takeover";

/// Per-frame deflate configuration, used as a client or a server factory.
///
/// | field | as a server | as a client |
/// |---|---|---|
/// | `name` | ignored: both names are answered, with the name offered | the token offered |
/// | `request_max_window_bits` | sent as `max_window_bits`: limits the client's compressor | offered: limits the server's compressor |
/// | `request_no_context_takeover` | sent: the client resets per frame | offered: the server resets per frame |
/// | `window_bits` | our compressor's window (at most what the offer allows) | our compressor's window (at most what the answer allows) |
#[derive(Debug, Clone)]
pub struct PerFrameDeflate {
    /// The token a client offers. Default `deflate-frame`.
    pub name: &'static str,
    /// Compression level, 0 to 9. Default 6.
    pub level: u8,
    /// zlib memLevel, 1 to 9. Default 8.
    pub mem_level: u8,
    /// Our compressor's window. Default 15.
    pub window_bits: WindowBits,
    /// A window limit to impose on the peer's compressor. Default none.
    pub request_max_window_bits: Option<WindowBits>,
    /// Ask the peer to reset its compressor after every frame. Default false.
    pub request_no_context_takeover: bool,
    /// Also reset our own compressor after every frame. Default false.
    pub no_context_takeover: bool,
    /// Frames with fewer payload bytes go uncompressed (empty frames always
    /// do). Default 1.
    pub threshold: usize,
    /// What is kept between frames. Default [`MemoryStrategy::Hibernate`]
    /// with a pool (see [`MemoryStrategy`]).
    pub memory: MemoryStrategy,
    /// Contexts shared by the connections this configuration serves.
    /// Default: a pool of [`crate::DEFAULT_POOL_CONTEXTS`] of each kind.
    pub pool: Option<Arc<ContextPool>>,
}

impl Default for PerFrameDeflate {
    fn default() -> Self {
        PerFrameDeflate {
            name: DEFLATE_FRAME,
            level: 6,
            mem_level: 8,
            window_bits: WindowBits::MAX,
            request_max_window_bits: None,
            request_no_context_takeover: false,
            no_context_takeover: false,
            threshold: 1,
            memory: MemoryStrategy::Hibernate,
            pool: Some(Arc::new(ContextPool::new(crate::DEFAULT_POOL_CONTEXTS))),
        }
    }
}

impl PerFrameDeflate {
    /// `deflate-frame` with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// The WebKit-prefixed `x-webkit-deflate-frame` (client role).
    pub fn webkit() -> Self {
        PerFrameDeflate {
            name: X_WEBKIT_DEFLATE_FRAME,
            ..Self::default()
        }
    }

    /// Sets the compression level (0 to 9).
    pub fn level(mut self, level: u8) -> Self {
        self.level = level.min(9);
        self
    }

    /// Sets `max_window_bits` to request of the peer.
    pub fn request_max_window_bits(mut self, bits: WindowBits) -> Self {
        self.request_max_window_bits = Some(bits);
        self
    }

    /// Requests `no_context_takeover` of the peer.
    pub fn request_no_context_takeover(mut self, on: bool) -> Self {
        self.request_no_context_takeover = on;
        self
    }

    /// Resets our own compressor after every frame.
    pub fn no_context_takeover(mut self, on: bool) -> Self {
        self.no_context_takeover = on;
        self
    }

    /// Sets our compressor's window.
    pub fn window_bits(mut self, bits: WindowBits) -> Self {
        self.window_bits = bits;
        self
    }

    /// Sets the size threshold below which frames go uncompressed.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    fn element(&self, name: &str) -> ExtensionHeader {
        let mut h = ExtensionHeader::new(name);
        if let Some(bits) = self.request_max_window_bits {
            h = h.param(MAX_WINDOW_BITS, Some(bits.to_string()));
        }
        if self.request_no_context_takeover {
            h = h.param(NO_CONTEXT_TAKEOVER, None::<String>);
        }
        h
    }

    fn build(
        &self,
        name: &str,
        limit: Option<WindowBits>,
        peer_forbids_takeover: bool,
    ) -> PerFrameDeflateExt {
        PerFrameDeflateExt {
            name: if name.eq_ignore_ascii_case(X_WEBKIT_DEFLATE_FRAME) {
                X_WEBKIT_DEFLATE_FRAME
            } else {
                DEFLATE_FRAME
            },
            compress: DeflateParams {
                level: self.level,
                mem_level: self.mem_level,
                window: limit.map_or(self.window_bits, |l| l.min(self.window_bits)),
            },
            compress_takeover: !(peer_forbids_takeover || self.no_context_takeover),
            decompress_window: self.request_max_window_bits.unwrap_or(WindowBits::MAX),
            peer_takeover: !self.request_no_context_takeover,
            threshold: self.threshold.max(1),
            release: self.memory.release(),
            pool: self.pool.clone(),
        }
    }
}

/// Parsed `max_window_bits` / `no_context_takeover`.
struct Params {
    max_window_bits: Option<WindowBits>,
    no_context_takeover: bool,
}

fn parse_params(h: &ExtensionHeader, ignore_unknown: bool) -> Result<Params, String> {
    let mut p = Params {
        max_window_bits: None,
        no_context_takeover: false,
    };
    let mut seen: Vec<&str> = Vec::new();
    for param in &h.params {
        let name = param.name.as_str();
        let known = matches!(name, MAX_WINDOW_BITS | NO_CONTEXT_TAKEOVER);
        if !known {
            if ignore_unknown {
                continue;
            }
            return Err(format!("unknown parameter {name}"));
        }
        if seen.contains(&name) {
            return Err(format!("parameter {name} repeated"));
        }
        seen.push(name);
        match (name, param.value.as_deref()) {
            (MAX_WINDOW_BITS, v) => {
                p.max_window_bits = Some(
                    v.and_then(WindowBits::parse)
                        .ok_or_else(|| format!("invalid {name} value {v:?}"))?,
                )
            }
            (_, None) => p.no_context_takeover = true,
            (_, Some(_)) => return Err(format!("{name} takes no value")),
        }
    }
    Ok(p)
}

impl ExtensionFactory for PerFrameDeflate {
    /// The configured name; a server also answers to the other one (see
    /// [`aliases`](Self::aliases)) and replies with the name the client
    /// used.
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[&str] {
        if self.name == X_WEBKIT_DEFLATE_FRAME {
            &[DEFLATE_FRAME]
        } else {
            &[X_WEBKIT_DEFLATE_FRAME]
        }
    }

    fn offers(&self) -> Vec<ExtensionHeader> {
        vec![self.element(self.name)]
    }

    fn accept(
        &self,
        response: &ExtensionHeader,
        _accepted: &[Extension],
    ) -> Result<Extension, NegotiationError> {
        let p = parse_params(response, false)
            .map_err(|why| NegotiationError::rejected(self.name, why))?;
        Ok(self
            .build(&response.name, p.max_window_bits, p.no_context_takeover)
            .into_extension())
    }

    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        _accepted: &[Extension],
    ) -> Result<Option<Acceptance>, NegotiationError> {
        let Ok(p) = parse_params(offer, true) else {
            return Ok(None);
        };
        let ext = self.build(&offer.name, p.max_window_bits, p.no_context_takeover);
        Ok(Some((self.element(ext.name), ext.into_extension())))
    }
}

/// A negotiated per-frame deflate, from this endpoint's point of view.
#[derive(Debug, Clone)]
pub struct PerFrameDeflateExt {
    name: &'static str,
    compress: DeflateParams,
    compress_takeover: bool,
    decompress_window: WindowBits,
    peer_takeover: bool,
    threshold: usize,
    release: Release,
    pool: Option<Arc<ContextPool>>,
}

impl PerFrameDeflateExt {
    /// Our compressor's window.
    pub fn compress_window(&self) -> WindowBits {
        self.compress.window
    }
    /// True if our compressor keeps its window from frame to frame.
    pub fn compress_takeover(&self) -> bool {
        self.compress_takeover
    }
}

impl PerFrameDeflateExt {
    /// The coders, with these parameters attached for the application.
    fn into_extension(self) -> Extension {
        let encoder = Encoder {
            compressor: Compressor::new(self.compress, self.pool.clone(), self.release),
            takeover: self.compress_takeover,
            threshold: self.threshold,
        };
        let decoder = Decoder {
            decompressor: Decompressor::new(
                self.decompress_window,
                self.pool.clone(),
                self.release,
            ),
            takeover: self.peer_takeover,
        };
        // RSV1 marks a compressed frame, each on its own
        // (draft-tyoshino-hybi-websocket-perframe-deflate-06, framing).
        Extension::per_frame(Rsv::RSV1, encoder, decoder).with_params(self)
    }
}

struct Encoder {
    compressor: Compressor,
    takeover: bool,
    threshold: usize,
}

impl FrameEncoder for Encoder {
    fn encode(
        &mut self,
        input: &[u8],
        hints: &SendHints,
        out: &mut BytesMut,
    ) -> Result<bool, ExtensionError> {
        if !hints.compress || input.len() < self.threshold {
            return Ok(false);
        }
        self.compressor.compress(input, out)?;
        self.compressor.end_message(self.takeover);
        finish_message(out);
        Ok(true)
    }

    fn idle(&mut self) {
        self.compressor.idle();
    }
}

struct Decoder {
    decompressor: Decompressor,
    takeover: bool,
}

impl FrameDecoder for Decoder {
    fn decode(
        &mut self,
        marked: bool,
        input: &[u8],
        budget: usize,
        out: &mut BytesMut,
    ) -> Result<bool, ExtensionError> {
        if !marked {
            return Ok(false);
        }
        self.decompressor.decompress(input, true, budget, out)?;
        self.decompressor.end_message(self.takeover);
        Ok(true)
    }

    fn idle(&mut self) {
        self.decompressor.idle();
    }
}
