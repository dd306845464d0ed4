//! # weft-mux
//!
//! Many logical WebSocket connections over one physical WebSocket: the HyBi
//! multiplexing extension `mux`, in the wire format of
//! draft-ietf-hybi-websocket-multiplexing -05 to -08 ("variant B" of our
//! spec digest, `docs/specs/mux.md`, as pywebsocket and Jetty 9 implement it).
//!
//! [`MuxVariant::A`] selects the older google-mux-03 generation (token
//! `x-google-mux`) instead. It is **reconstructed from the earliest public
//! evidence** (pywebsocket at draft-ietf-hybi-websocket-multiplexing-01) and
//! could not be checked against the -03 text, which was not obtainable; see
//! [`wire::variant_a`] for what it does and what it refuses.
//!
//! ## Architecture
//!
//! - [`wire`]: channel IDs, numbers, the inner frame header and one module
//!   per control block, each with its byte vectors.
//! - [`handshake`]: encapsulated opening handshakes, identity and delta.
//! - [`Multiplexer`]: the sans-I/O core. A logical channel is a full
//!   [`weft_core::Session`] (messages, fragmentation, ping/pong, closing
//!   handshake, UTF-8, limits, its own extensions such as
//!   permessage-deflate); the multiplexer only carries its frames, adds
//!   the control channel, per-direction quotas and new-channel slots, and
//!   schedules output fairly.
//! - [`negotiate`]: the `mux` extension factory for the physical handshake.
//!
//! ## Data path
//!
//! Receiving: physical binary message → channel ID and inner header →
//! quota check → the channel's session (`handle_frame`, extensions decode
//! there) → message in the channel's inbox → the application reads it,
//! which (past the buffer limit) replenishes the peer's quota. Sending: the
//! channel's session produces frames (extensions encode there) → the
//! scheduler cuts them to the quota and the inner frame limit → one physical
//! binary message each, handed out as its inner header plus a slice of the
//! frame ([`Multiplexer::poll_transmit_parts`]) so the tokio driver writes
//! the payload without copying it (a client copies once, while masking).

pub mod config;
pub mod handshake;
#[cfg(feature = "tokio")]
mod io;
mod mux;
pub mod negotiate;
pub mod wire;

pub use config::{FallbackRule, MuxConfig, MuxVariant};
pub use handshake::DeltaBase;
pub use mux::{ChannelAccepted, ChannelEnd, Multiplexer, MuxError, MuxEvent, Transmit};
pub use negotiate::{GoogleMuxFactory, MuxFactory, MuxNegotiated, UnlessMux};
pub use wire::{ChannelId, DropCode};

#[cfg(feature = "tokio")]
pub use io::{Accepted, Channel, IncomingChannel, MuxClient, MuxServer, MuxServerBuilder};

/// The README's Rust blocks, compiled (and, unless marked `no_run`, run)
/// as doctests of this crate, which depends on the other two, so the README
/// cannot fall behind the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
