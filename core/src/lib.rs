//! # weft-core
//!
//! An RFC 6455 WebSocket implementation whose centre is a pluggable
//! extension chain. It is built in layers:
//!
//! ```text
//! application      Message / Stream + Sink / send(), recv(), close()
//!    |
//! io (tokio)       WebSocket<S>: one poll-driven object per connection      [feature "tokio"]
//!    |  bytes in / bytes out
//! proto            Connection = frame codec + Session
//!    |-- Session:  messages, fragmentation, control frames, closing handshake, UTF-8, limits
//!    |-- codec:    header parse/encode, masking, RSV checks
//!    |-- ext:      negotiated extensions; encode in order, decode in reverse
//! handshake        request/response bytes, accept key, negotiation           (sans-I/O)
//! ```
//!
//! The protocol core ([`proto`], [`handshake`], [`ext`]) never touches a
//! socket, a task or a clock; it builds with `--no-default-features`.
//!
//! ## Data path of a received message
//!
//! socket → read buffer (large reads land there directly; small reads on a
//! connection that was waiting go through a stack buffer and are copied into
//! an allocation of exactly their size, so waiting connections hold no read
//! buffer; a frame larger than that stack buffer gets room for all of it at
//! once, in the buffer of an earlier large frame whose payload was dropped
//! when there is one, so a connection receiving 1 MiB messages reuses one or
//! two buffers instead of allocating and page-faulting a new megabyte per
//! message) → [`FrameHeader::parse`] (or
//! "need more") → mask, RSV and limit checks → unmask in place → payload split
//! off as `Bytes` → the extension decoders ([`ext`]) in reverse with the message budget →
//! RSV-consumed check → control frames answered inside the [`Session`], data
//! frames assembled → UTF-8 check for text → [`Message`] to the application.
//!
//! Sending runs the other way: per-message extensions, fragmentation into
//! frames of at most [`Config::send_frame_size`], per-frame extensions, then
//! the header is encoded on the stack and the payload queued without copying
//! (servers) or masked into the write buffer (clients), and written with
//! vectored writes. A server frame queued on an empty write buffer (every
//! reply of a request/response connection) is held as an inline header plus
//! its payload by reference, so it costs no allocation; a second frame
//! joins it into one contiguous buffer, so pipelined small replies still go
//! out in one write. A drained write buffer is freed.
//!
//! ## Extensions
//!
//! See [`ext`]: factories negotiate; a negotiated [`ext::Extension`] owns
//! RSV bits and one coder per direction, per message
//! ([`ext::MessageEncoder`]) or per frame ([`ext::FrameEncoder`]); the chain
//! keeps the RSV rules and lends the coders reusable output buffers.
//! A [`Session`] works on [`Frame`]s, not on a socket, so a multiplexing
//! extension can run one session per logical channel over its own transport.
//!
//! ## Running a server (tokio)
//!
//! [`ServerBuilder`] carries the server-wide state its connections share
//! (see `io::ops` in the source): [`ServerBuilder::max_connections`] (503
//! before the upgrade past the limit), [`ServerBuilder::stats`] with a
//! [`ServerStats`] (every connection's [`Stats`] summed: messages, payload
//! and wire bytes each way, so `stats.compression_saved_sent()` is the
//! server's saving), and [`ServerBuilder::shutdown`] with a [`Shutdown`]
//! (`drain(grace)`: 1001 to every connection after its queued messages, 503
//! to new upgrades, abort at the deadline). Keepalive is
//! [`Config::keepalive_interval`] with [`Config::keepalive_timeout`] for the
//! Pong (off by default). A connection counts its [`Stats`] in plain fields
//! and touches the shared atomics only every [`PUBLISH_EVERY`] messages each
//! way and when it closes.
//!
//! `tracing` events (target `weft_core::io...`): DEBUG when a connection
//! opens (role, subprotocol, extensions), for each upgrade request and each
//! client connect, and when it is dropped (`sent_code`: the Close this end
//! started, if any; `peer_code` / `peer_reason`: the peer's; duration,
//! counters); INFO for protocol errors (error and close
//! code), keepalive timeouts, refused upgrades (503) and aborted shutdowns.
//!
//! ## Broadcast
//!
//! A [`PreparedMessage`] is encoded at most once per distinct
//! [`BroadcastEncoding`] (the plain frame, or one per-message extension's
//! context-free [`ext::SharedEncoder`]: permessage-deflate groups
//! connections by window bits, level and memLevel) and the same `Bytes` go
//! to every connection of a group; a connection that sends one drops its
//! own compression context ([`ext::MessageEncoder::shared_sent`]) so later
//! messages stay decodable. `Broadcast` (feature `tokio`) fans messages
//! out to bounded per-subscriber queues with a `SlowPolicy`; see
//! [`prepared`] and `broadcast`. With feature `axum`, `weft_core::axum` has an
//! extractor running weft's handshake over hyper's upgrade.
//!
//! ## Quick start (tokio)
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn demo() -> Result<(), weft_core::Error> {
//! use weft_core::Message;
//! let (mut ws, _response) = weft_core::connect("ws://127.0.0.1:9001/").await?;
//! ws.send(Message::text("hello")).await?;
//! if let Some(Ok(Message::Text(t))) = ws.recv().await {
//!     println!("echo: {t}");
//! }
//! ws.close(weft_core::CloseCode::NORMAL, "bye").await?;
//! # Ok(()) }
//! ```

pub mod error;
pub mod ext;
pub mod handshake;
pub mod prepared;
pub mod proto;

#[cfg(feature = "tokio")]
pub mod broadcast;

#[cfg(feature = "axum")]
pub mod axum;

#[cfg(feature = "tokio")]
pub mod io;

pub use error::Error;

pub use proto::{
    CloseCode, CloseFrame, CloseState, Config, Connection, Frame, FrameHeader, HeaderParse,
    Message, OpCode, ProtocolError, Role, Rsv, SendError, Session, Utf8Bytes,
};
/// The TLS crate behind `wss://` in [`ClientBuilder::connect`] (feature
/// `rustls`), re-exported so servers build their acceptors with the same
/// version.
#[cfg(feature = "rustls")]
pub use tokio_rustls;

#[cfg(feature = "tokio")]
pub use io::{
    ClientBuilder, MaybeTlsStream, PUBLISH_EVERY, ServerBuilder, ServerStats, Shutdown, Stats,
    WebSocket, WebSocketReader, WebSocketWriter, accept, connect,
};

pub use handshake::IntoClientRequest;
pub use prepared::{BroadcastEncoding, PreparedMessage};

#[cfg(feature = "tokio")]
pub use broadcast::{Broadcast, BroadcastConfig, SlowPolicy, Subscription};
