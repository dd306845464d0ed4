//! The extension API: negotiation factories, negotiated extensions, and the
//! chain that runs them over frames.
//!
//! # What an extension author writes
//!
//! - One [`ExtensionFactory`]: it declares the extension's token once and
//!   negotiates in either role. On the client it builds the
//!   offers for the `Sec-WebSocket-Extensions` request header and later
//!   validates the server's answer ([`accept`](ExtensionFactory::accept));
//!   on the server it looks at one offer and accepts it (returning the
//!   response element and the negotiated extension), declines it
//!   (`Ok(None)`, the next offer is tried) or fails the handshake (`Err`).
//!   A factory that only makes sense in one role leaves the other role's
//!   methods at their defaults. Factories see the extensions accepted so
//!   far, so they can refuse duplicates or combinations that do not work
//!   together.
//! - The coders, one per direction, so a split reader and writer never
//!   share state. Their traits also fix the extension's [`Granularity`]: a
//!   per-message extension implements [`MessageEncoder`] and
//!   [`MessageDecoder`], a per-frame one [`FrameEncoder`] and
//!   [`FrameDecoder`]. A factory hands them over, with the RSV bits they
//!   own, as an [`Extension`] ([`Extension::per_message`] or
//!   [`Extension::per_frame`]), optionally
//!   with the negotiated parameters attached for the application to read
//!   back ([`Extension::with_params`], [`Extension::params`]).
//!
//! The negotiated extension is a struct rather than a trait object: an
//! author has nothing to implement for it, and reading the parameters back
//! is a typed downcast of what the factory attached, with no `as_any`
//! boilerplate.
//!
//! # What the chain does for them
//!
//! The [`Session`](crate::Session) owns one chain per direction. It runs the
//! outgoing coders in negotiated order and the incoming ones in reverse, and
//! it keeps the RSV rules, so coders only transform bytes:
//!
//! - **Per-message** (RFC 7692 §6): when a message starts, the encoder's
//!   [`begin`](MessageEncoder::begin) decides whether it is transformed; if
//!   so the chain sets the extension's RSV bits on the first frame and feeds
//!   every piece of the message to [`encode`](MessageEncoder::encode). On
//!   receipt, the bits on a message's first frame say whether
//!   [`decode`](MessageDecoder::decode) runs for its frames; the bits on a
//!   continuation frame fail the connection (1002). The bits are cleared
//!   before the payload goes on. An extension that owns no RSV bit
//!   transforms every message.
//! - **Per-frame**: every data frame goes through
//!   [`FrameEncoder::encode`], which answers whether it transformed the
//!   frame (the chain then sets the bits); every incoming data frame goes
//!   through [`FrameDecoder::decode`], which is told whether the frame
//!   carried the bits.
//! - **Output buffers are reused.** Coders write into a `BytesMut` the
//!   chain owns and hands them empty; the chain splits the written bytes off
//!   as the frame's new payload and keeps the rest of the allocation for the
//!   next call (it is freed when the connection goes idle). Once the
//!   previous payload has been written and dropped, the next message reuses
//!   the same memory without allocating.
//!
//! # Granularity and where the core fragments
//!
//! A per-message extension sees a message before the core cuts it into
//! frames (or each fragment the application streams, in order); a per-frame
//! extension sees every frame after fragmentation. Negotiation therefore
//! refuses a per-message extension that comes after a per-frame one in the
//! negotiated order: it would re-cut frames whose boundaries the per-frame
//! extension relies on.
//!
//! Control frames never reach a coder.
//!
//! # RSV bits
//!
//! Each negotiated extension declares its bits; two declaring the
//! same bit fail negotiation. The frame reader rejects any bit no extension
//! declared before it reads the payload (1002); the chain clears the
//! declared bits as it decodes, so no bit survives decoding.
//!
//! # Budgets
//!
//! Decoders receive the room left in the message-size limit and must not
//! produce more: return [`ExtensionError::too_big`] instead (1009). This is
//! the decompression-bomb defence; the session checks the decoded size
//! against the limit once more before it assembles the message.
//!
//! # Multiplexing and other transports
//!
//! An extension that replaces the frame stream (mux) negotiates like any
//! other with an [`Extension::passthrough`] (no RSV bits, no transform) and
//! its parameters attached; it then runs one [`Session`](crate::Session) per
//! logical channel over its own transport, since a session consumes and
//! produces [`Frame`](crate::Frame)s and never touches bytes on a socket.

mod chain;
mod header;
mod negotiate;

pub(crate) use chain::{DecoderChain, EncoderChain};
pub use header::{
    ExtensionHeader, ExtensionParam, HeaderSyntaxError, format_extensions, is_token,
    parse_extensions,
};
pub use negotiate::{
    Negotiated, NegotiationError, Preference, client_accept, client_offers, server_negotiate,
    server_negotiate_with,
};

use crate::proto::{CloseCode, OpCode, ProtocolError, Rsv};
use bytes::BytesMut;
use std::any::Any;
use std::sync::Arc;

/// Whether an extension transforms whole messages or single frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// Runs before the core fragments an outgoing message, and on every frame
    /// of an incoming message as one stream (permessage-deflate).
    PerMessage,
    /// Runs on every frame on its own, after fragmentation (per-frame deflate).
    /// Frame boundaries must survive end to end.
    PerFrame,
}

/// Hints from the application for one outgoing message.
///
/// Built with [`SendHints::new`] (everything at its default) and the
/// setters; more hints may be added, so the fields cannot be listed in a
/// struct literal outside this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendHints {
    /// `false` asks transforming extensions (compression) to leave this message
    /// as it is. Extensions that must transform every message may ignore it.
    /// Default `true`.
    pub compress: bool,
}

impl Default for SendHints {
    fn default() -> Self {
        SendHints { compress: true }
    }
}

impl SendHints {
    /// The default hints: transform (compress) as negotiated.
    pub const fn new() -> Self {
        SendHints { compress: true }
    }

    /// Hints that ask extensions to send the message as it is (no
    /// compression).
    pub const fn uncompressed() -> Self {
        SendHints { compress: false }
    }

    /// Sets [`compress`](Self::compress).
    pub const fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }
}

/// Failure inside an extension's encoder or decoder, with the close code to
/// fail the connection with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExtensionError {
    /// Close code (1002 for protocol misuse, 1007 for bad data, 1009 for a
    /// budget overrun, 1011 for internal failures).
    pub code: CloseCode,
    /// Human-readable description.
    pub message: String,
}

impl ExtensionError {
    /// The peer misused the extension's framing rules (1002).
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::with_code(CloseCode::PROTOCOL_ERROR, message)
    }
    /// The payload could not be decoded (1007).
    pub fn invalid_data(message: impl Into<String>) -> Self {
        Self::with_code(CloseCode::INVALID_PAYLOAD, message)
    }
    /// Decoding would exceed the message budget (1009).
    pub fn too_big(message: impl Into<String>) -> Self {
        Self::with_code(CloseCode::MESSAGE_TOO_BIG, message)
    }
    /// A local failure (1011).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::with_code(CloseCode::INTERNAL_ERROR, message)
    }

    fn with_code(code: CloseCode, message: impl Into<String>) -> Self {
        ExtensionError {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn into_protocol(self, extension: &str) -> ProtocolError {
        ProtocolError::Extension {
            extension: extension.to_owned(),
            code: self.code,
            message: self.message,
        }
    }
}

/// The outgoing half of a per-message extension.
///
/// The chain calls [`begin`](Self::begin) once per message, then
/// [`encode`](Self::encode) for every piece of a message it began with
/// `true`: once with `fin = true` when the application sends a whole
/// message, or once per fragment, in order, when it streams one.
pub trait MessageEncoder: Send + 'static {
    /// A message starts: `true` transforms it (the chain sets the
    /// extension's RSV bits on its first frame), `false` sends it as it is.
    /// `first` is the whole message when `fin` is true, else its first
    /// streamed fragment. Default: the application's
    /// [`SendHints::compress`]. Ignored for extensions that own no RSV bit,
    /// whose peer cannot tell: those transform every message.
    fn begin(&mut self, opcode: OpCode, first: &[u8], fin: bool, hints: &SendHints) -> bool {
        let _ = (opcode, first, fin);
        hints.compress
    }

    /// Transforms one piece of the message, writing the result into the
    /// empty `out`. `fin` marks the message's last piece.
    fn encode(&mut self, input: &[u8], fin: bool, out: &mut BytesMut)
    -> Result<(), ExtensionError>;

    /// The connection has been idle for
    /// [`Config::release_idle_after`](crate::Config::release_idle_after):
    /// free whatever can be rebuilt (compression contexts). Default: nothing.
    fn idle(&mut self) {}

    /// Broadcast: the context-free encoding of whole messages this
    /// connection's peer accepts, shared by every connection whose
    /// [`SharedEncoder::key`] is equal (see
    /// [`PreparedMessage`](crate::PreparedMessage)). Default `None`:
    /// prepared messages are encoded by this connection's own encoder.
    fn shared(&self) -> Option<Arc<dyn SharedEncoder>> {
        None
    }

    /// Broadcast: a message encoded by [`shared`](Self::shared)'s encoder
    /// (with its RSV bits set) was sent on this connection in place of one
    /// of ours. An encoder that carries context across messages must drop
    /// it now: the peer's decoder has seen that message, our context has
    /// not, so later back-references would decode wrongly. Default: nothing.
    fn shared_sent(&mut self) {}
}

/// A context-free encoder of whole messages, shared by the connections of
/// one broadcast group (see [`MessageEncoder::shared`] and
/// [`PreparedMessage`](crate::PreparedMessage)).
///
/// Its output must be acceptable to every connection whose encoder returns
/// a `SharedEncoder` with an equal [`key`](Self::key), whatever that
/// connection sent before: so it may not refer to earlier messages.
pub trait SharedEncoder: Send + Sync + 'static {
    /// Identifies the output: two encoders with equal keys produce
    /// interchangeable bytes. Include the extension token and every
    /// parameter that changes the bytes (window, level...).
    fn key(&self) -> &str;

    /// Encodes the whole message `payload` into the empty `out` and returns
    /// `true` (the frame carries the extension's RSV bits), or returns
    /// `false` to send it as it is.
    fn encode(
        &self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<bool, ExtensionError>;
}

/// The incoming half of a per-message extension.
pub trait MessageDecoder: Send + 'static {
    /// Transforms one frame's payload of a message whose first frame
    /// carried this extension's RSV bits (messages without them never reach
    /// the decoder), writing the result into the empty `out`. `fin` marks
    /// the message's last frame. The output must not exceed `budget` bytes
    /// (the room left in the message-size limit): return
    /// [`ExtensionError::too_big`] instead of producing more.
    fn decode(
        &mut self,
        input: &[u8],
        fin: bool,
        budget: usize,
        out: &mut BytesMut,
    ) -> Result<(), ExtensionError>;

    /// The connection has been idle: free whatever can be rebuilt. Default:
    /// nothing.
    fn idle(&mut self) {}
}

/// The outgoing half of a per-frame extension.
pub trait FrameEncoder: Send + 'static {
    /// Transforms one outgoing data frame's payload into the empty `out` and
    /// returns `true` (the chain sets the extension's RSV bits on the
    /// frame), or returns `false` to send the frame as it is.
    fn encode(
        &mut self,
        input: &[u8],
        hints: &SendHints,
        out: &mut BytesMut,
    ) -> Result<bool, ExtensionError>;

    /// The connection has been idle: free whatever can be rebuilt. Default:
    /// nothing.
    fn idle(&mut self) {}
}

/// The incoming half of a per-frame extension.
pub trait FrameDecoder: Send + 'static {
    /// Looks at one incoming data frame; `marked` says whether it carried
    /// the extension's RSV bits (already cleared by the chain). Returns
    /// `true` after writing the decoded payload into the empty `out`, or
    /// `false` to keep the payload as it is. The output must not exceed
    /// `budget` bytes (see [`MessageDecoder::decode`]).
    fn decode(
        &mut self,
        marked: bool,
        input: &[u8],
        budget: usize,
        out: &mut BytesMut,
    ) -> Result<bool, ExtensionError>;

    /// The connection has been idle: free whatever can be rebuilt. Default:
    /// nothing.
    fn idle(&mut self) {}
}

/// The coders of a negotiated extension.
pub(crate) enum Coders {
    PerMessage(Box<dyn MessageEncoder>, Box<dyn MessageDecoder>),
    PerFrame(Box<dyn FrameEncoder>, Box<dyn FrameDecoder>),
    Passthrough,
}

/// A negotiated extension: its RSV bits and coders (which fix its
/// [`Granularity`]), its token, and the parameters its factory attached.
///
/// Factories build it with [`per_message`](Self::per_message),
/// [`per_frame`](Self::per_frame) or [`passthrough`](Self::passthrough);
/// the negotiation code fills in the token as the response element names
/// it.
pub struct Extension {
    name: String,
    rsv: Rsv,
    coders: Coders,
    params: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extension")
            .field("name", &self.name)
            .field("rsv", &self.rsv)
            .field("granularity", &self.granularity())
            .finish_non_exhaustive()
    }
}

impl Extension {
    /// A per-message extension owning the RSV bits `rsv` (see
    /// [`MessageEncoder`]).
    pub fn per_message(
        rsv: Rsv,
        encoder: impl MessageEncoder,
        decoder: impl MessageDecoder,
    ) -> Self {
        Self::from_coders(
            rsv,
            Coders::PerMessage(Box::new(encoder), Box::new(decoder)),
        )
    }

    /// A per-frame extension owning the RSV bits `rsv` (see
    /// [`FrameEncoder`]).
    pub fn per_frame(rsv: Rsv, encoder: impl FrameEncoder, decoder: impl FrameDecoder) -> Self {
        Self::from_coders(rsv, Coders::PerFrame(Box::new(encoder), Box::new(decoder)))
    }

    /// An extension that owns no RSV bit and transforms no frame, such as a
    /// multiplexer that takes the frame stream over. It counts as
    /// per-message for ordering.
    pub fn passthrough() -> Self {
        Self::from_coders(Rsv::empty(), Coders::Passthrough)
    }

    fn from_coders(rsv: Rsv, coders: Coders) -> Self {
        Extension {
            name: String::new(),
            rsv,
            coders,
            params: None,
        }
    }

    /// Attaches the negotiated parameters, for the application (or another
    /// factory) to read back with [`params`](Self::params).
    pub fn with_params<T: Any + Send + Sync>(mut self, params: T) -> Self {
        self.params = Some(Arc::new(params));
        self
    }

    /// The parameters attached with [`with_params`](Self::with_params), if
    /// they are a `T`.
    pub fn params<T: Any>(&self) -> Option<&T> {
        self.params.as_deref()?.downcast_ref()
    }

    /// The extension token as negotiated (e.g. `permessage-deflate`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The RSV bits this extension owns on this connection.
    pub fn rsv(&self) -> Rsv {
        self.rsv
    }

    /// Per-message or per-frame.
    pub fn granularity(&self) -> Granularity {
        match self.coders {
            Coders::PerFrame(..) => Granularity::PerFrame,
            Coders::PerMessage(..) | Coders::Passthrough => Granularity::PerMessage,
        }
    }

    /// Takes the token from the response element that established it.
    pub(crate) fn named(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }
}

/// Negotiates one extension, in either role.
///
/// [`name`](Self::name) declares the token once (the negotiated
/// [`Extension`] declares the RSV bits and, through its coders, the
/// granularity); the client methods ([`offers`](Self::offers), [`accept`](Self::accept))
/// and the server method ([`negotiate`](Self::negotiate)) default to "not
/// in this role".
pub trait ExtensionFactory: Send + Sync + 'static {
    /// The extension token (e.g. `permessage-deflate`). A client matches the
    /// server's answer against it; a server answers offers with this token
    /// or one of its [`aliases`](Self::aliases), ASCII case-insensitively.
    fn name(&self) -> &str;

    /// Other tokens a server answers to (e.g. `x-webkit-deflate-frame` for
    /// `deflate-frame`). Default: none.
    fn aliases(&self) -> &[&str] {
        &[]
    }

    /// Client: the offers to send, most preferred first. Several offers of
    /// one extension are allowed (RFC 7692 §5). Default: none (the
    /// extension is not offered).
    fn offers(&self) -> Vec<ExtensionHeader> {
        Vec::new()
    }

    /// Client: validates the server's response element and builds the
    /// extension. `accepted` holds the extensions accepted before this one
    /// in the response. An `Err` fails the connection. Default: refuses.
    fn accept(
        &self,
        response: &ExtensionHeader,
        accepted: &[Extension],
    ) -> Result<Extension, NegotiationError> {
        let _ = (response, accepted);
        Err(NegotiationError::rejected(
            self.name(),
            "not supported in the client role",
        ))
    }

    /// Server: looks at one offer. `Ok(Some((response, extension)))`
    /// accepts it, `Ok(None)` declines it (the next offer is tried), `Err`
    /// fails the handshake. `accepted` holds the extensions accepted so
    /// far, in order. Default: declines.
    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        accepted: &[Extension],
    ) -> Result<Option<Acceptance>, NegotiationError> {
        let _ = (offer, accepted);
        Ok(None)
    }
}

/// `ExtensionFactory` for a smart pointer to a factory, forwarding every
/// method: `Arc<F>` lets one factory (or a `dyn ExtensionFactory` chosen at
/// run time) be handed to several builders
/// (`builder.extension(Arc::clone(&factory))`), `Box<F>` takes one picked
/// from configuration.
macro_rules! forward_factory {
    ($($ptr:ident)::+) => {
        impl<F: ExtensionFactory + ?Sized> ExtensionFactory for $($ptr)::+<F> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn aliases(&self) -> &[&str] {
                (**self).aliases()
            }
            fn offers(&self) -> Vec<ExtensionHeader> {
                (**self).offers()
            }
            fn accept(
                &self,
                response: &ExtensionHeader,
                accepted: &[Extension],
            ) -> Result<Extension, NegotiationError> {
                (**self).accept(response, accepted)
            }
            fn negotiate(
                &self,
                offer: &ExtensionHeader,
                accepted: &[Extension],
            ) -> Result<Option<Acceptance>, NegotiationError> {
                (**self).negotiate(offer, accepted)
            }
        }
    };
}

forward_factory!(std::sync::Arc);
forward_factory!(Box);

/// A server's acceptance of one offer: the response element for the
/// `Sec-WebSocket-Extensions` header and the negotiated extension.
pub type Acceptance = (ExtensionHeader, Extension);

/// True if `factory` answers offers named `token` on a server.
pub(crate) fn handles(factory: &dyn ExtensionFactory, token: &str) -> bool {
    token.eq_ignore_ascii_case(factory.name())
        || factory
            .aliases()
            .iter()
            .any(|a| token.eq_ignore_ascii_case(a))
}
