//! The extension API: negotiation factories, negotiated extensions, and the
//! chain that runs them over frames.
//!
//! # Roles of the types
//!
//! - A **factory** ([`ClientExtensionFactory`], [`ServerExtensionFactory`]) holds
//!   configuration. On the client it builds the offers for the
//!   `Sec-WebSocket-Extensions` request header and later validates the server's
//!   answer; on the server it looks at one offer and accepts it (returning the
//!   response element and the negotiated extension), declines it (`Ok(None)`,
//!   the next offer is tried) or fails the handshake (`Err`). Factories see the
//!   extensions accepted so far, so they can refuse duplicates or combinations
//!   that do not work together.
//! - A negotiated [`Extension`] declares the RSV bits it owns and its
//!   [`Granularity`], then splits into an [`ExtensionEncoder`] and an
//!   [`ExtensionDecoder`], so a split reader and writer never share state.
//! - The [`EncoderChain`] / [`DecoderChain`] run the negotiated extensions in
//!   order: outgoing frames in negotiated order, incoming ones in reverse.
//!
//! # Granularity and where the core fragments
//!
//! A per-message extension (permessage-deflate) sees a message before the
//! core cuts it into frames (or each fragment the application streams, in
//! order); a per-frame extension (per-frame deflate) sees every frame after
//! fragmentation. Negotiation therefore refuses a per-message extension that
//! comes after a per-frame one in the negotiated order: it would re-cut
//! frames whose boundaries the per-frame extension relies on.
//!
//! Control frames never reach an encoder or decoder.
//!
//! # RSV bits
//!
//! Each negotiated extension declares its bits; two extensions declaring the
//! same bit fail negotiation. The frame reader rejects any bit no extension
//! declared before it reads the payload (1002), and any bit still set after
//! the decoders ran is a protocol error as well: a decoder must clear the
//! bits it consumed.
//!
//! # Multiplexing and other transports
//!
//! An extension that replaces the frame stream (mux) negotiates like any other
//! (its [`Extension`] may have no RSV bits and do nothing to frames); it then
//! runs one [`Session`](crate::Session) per logical channel over its own
//! transport, since a session consumes and produces [`Frame`]s and never
//! touches bytes on a socket.

mod chain;
mod header;
mod negotiate;

pub use chain::{DecoderChain, EncoderChain};
pub use header::{
    ExtensionHeader, ExtensionParam, HeaderSyntaxError, format_extensions, is_token,
    parse_extensions, parse_extensions_into,
};
pub use negotiate::{
    Negotiated, NegotiationError, Preference, client_accept, client_offers, server_negotiate,
    server_negotiate_with,
};

use crate::proto::{CloseCode, Frame, ProtocolError, Rsv};
use std::any::Any;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendHints {
    /// `false` asks transforming extensions (compression) to leave this message
    /// as it is. Extensions that must transform every message may ignore it.
    pub compress: bool,
}

impl Default for SendHints {
    fn default() -> Self {
        SendHints { compress: true }
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
        ExtensionError {
            code: CloseCode::PROTOCOL_ERROR,
            message: message.into(),
        }
    }
    /// The payload could not be decoded (1007).
    pub fn invalid_data(message: impl Into<String>) -> Self {
        ExtensionError {
            code: CloseCode::INVALID_PAYLOAD,
            message: message.into(),
        }
    }
    /// Decoding would exceed the message budget (1009).
    pub fn too_big(message: impl Into<String>) -> Self {
        ExtensionError {
            code: CloseCode::MESSAGE_TOO_BIG,
            message: message.into(),
        }
    }
    /// A local failure (1011).
    pub fn internal(message: impl Into<String>) -> Self {
        ExtensionError {
            code: CloseCode::INTERNAL_ERROR,
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

/// A negotiated extension, before it is split into its two directions.
pub trait Extension: Send + 'static {
    /// The extension token as negotiated (e.g. `permessage-deflate`).
    fn name(&self) -> &str;
    /// The RSV bits this extension owns on this connection.
    fn rsv(&self) -> Rsv;
    /// Per-message or per-frame.
    fn granularity(&self) -> Granularity;
    /// Splits into the outgoing and incoming halves.
    fn split(self: Box<Self>) -> (Box<dyn ExtensionEncoder>, Box<dyn ExtensionDecoder>);
    /// Access to the concrete type, for applications and transports that need
    /// the negotiated parameters (e.g. a mux reading its quota).
    fn as_any(&self) -> &dyn Any;
}

/// The outgoing half of an extension.
pub trait ExtensionEncoder: Send + 'static {
    /// Transforms one outgoing data frame in place (payload and RSV bits).
    ///
    /// A per-message encoder is called once per message with `fin = true`
    /// when the application sends a whole message, or once per fragment in
    /// order when it streams one (the first with a data opcode, the rest
    /// [`OpCode::Continuation`](crate::OpCode::Continuation)).
    fn encode(&mut self, frame: &mut Frame, hints: &SendHints) -> Result<(), ExtensionError>;

    /// The connection has been idle for
    /// [`Config::release_idle_after`](crate::Config::release_idle_after):
    /// free whatever can be rebuilt (compression contexts). Default: nothing.
    fn idle(&mut self) {}
}

/// The incoming half of an extension.
pub trait ExtensionDecoder: Send + 'static {
    /// Transforms one incoming data frame in place, clearing the RSV bits it
    /// consumed. The decoded payload must not exceed `budget` bytes (the
    /// room left in the message-size limit); return
    /// [`ExtensionError::too_big`] instead of producing more. This is the
    /// decompression-bomb defence.
    fn decode(&mut self, frame: &mut Frame, budget: usize) -> Result<(), ExtensionError>;

    /// The connection has been idle: free whatever can be rebuilt. Default:
    /// nothing.
    fn idle(&mut self) {}
}

/// Builds client offers and validates the server's answer for one extension.
pub trait ClientExtensionFactory: Send + Sync + 'static {
    /// The extension token this factory offers and accepts.
    fn name(&self) -> &str;
    /// Offers to send, most preferred first. Several offers of one extension
    /// are allowed (RFC 7692 §5).
    fn offers(&self) -> Vec<ExtensionHeader>;
    /// Validates the server's response element and builds the extension.
    /// `accepted` holds the extensions accepted before this one in the
    /// response. An `Err` fails the connection.
    fn accept(
        &self,
        response: &ExtensionHeader,
        accepted: &[Box<dyn Extension>],
    ) -> Result<Box<dyn Extension>, NegotiationError>;
}

/// Decides on client offers for one extension on the server.
pub trait ServerExtensionFactory: Send + Sync + 'static {
    /// The main extension token this factory handles.
    fn name(&self) -> &str;
    /// True if this factory answers offers with this token (default: the
    /// token equals [`name`](Self::name), ASCII case-insensitively). A
    /// factory may answer to several names, e.g. `deflate-frame` and
    /// `x-webkit-deflate-frame`.
    fn handles(&self, token: &str) -> bool {
        token.eq_ignore_ascii_case(self.name())
    }
    /// Looks at one offer. `Ok(Some((response, ext)))` accepts it,
    /// `Ok(None)` declines it (the next offer is tried), `Err` fails the
    /// handshake. `accepted` holds the extensions accepted so far, in order.
    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        accepted: &[Box<dyn Extension>],
    ) -> Result<Option<Acceptance>, NegotiationError>;
}

/// A server's acceptance of one offer: the response element for the
/// `Sec-WebSocket-Extensions` header and the negotiated extension.
pub type Acceptance = (ExtensionHeader, Box<dyn Extension>);
