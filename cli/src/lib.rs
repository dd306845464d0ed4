//! # weft-cli
//!
//! The `weft` command-line tool (binary in `src/main.rs`), as a library so
//! its parts are tested directly:
//!
//! - `weft report` answers, for the user's own traffic, which compression
//!   settings to negotiate: [`corpus`] reads the messages (JSON Lines, plain
//!   lines or a directory), [`settings`] lists the grid and the rows for
//!   common peers' defaults, [`replay`] sends every message through the real
//!   weft extension chain (sans-I/O connections, negotiated as in a
//!   handshake) measuring wire bytes, time and, with the counting allocator
//!   of [`alloc`], memory per connection; [`report`] marks the Pareto
//!   front, recommends a setting under constraints and writes the table,
//!   JSON and CSV; [`svg`] and [`html`] draw the chart and page.
//! - `weft capture` ([`capture`]) is a recording proxy that writes the
//!   corpus format.
//! - `weft connect` and `weft serve` ([`client`], [`serve`]) are a small
//!   client and server in the manner of websocat.
//!
//! ## Data path of a report
//!
//! corpus file → [`corpus::read`] (bounded: a line or file past
//! `--max-message` is never held whole) → for each setting:
//! [`replay::measure`] (negotiate → `Connection::send_message` → bytes
//! moved to the peer's read buffer and counted → `Connection::handle_read`
//! → compare) → [`report::run`] (front, recommendation) → outputs.

pub mod alloc;
pub mod capture;
pub mod client;
pub mod corpus;
pub mod html;
pub mod replay;
pub mod report;
pub mod serve;
pub mod settings;
pub mod svg;

/// `cli/README.md`'s Rust blocks, compiled as doctests, so the builder code
/// it shows cannot fall behind the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
