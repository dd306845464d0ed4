//! axum with permessage-deflate by default (feature `axum`).
//!
//! [`WebSocketUpgrade`] is `weft_core::axum::WebSocketUpgrade` whose
//! defaults ([`Deflate`]) accept permessage-deflate at
//! [`PerMessageDeflate::new`]'s settings, so a handler taking it compresses
//! without any configuration. A `weft_core::ServerBuilder` added to the
//! router with `axum::Extension` still replaces these defaults (see
//! `weft_core::axum`).
//!
//! ```no_run
//! use weft_extensions::axum::WebSocketUpgrade;
//!
//! async fn ws(upgrade: WebSocketUpgrade) -> axum::response::Response {
//!     upgrade.on_upgrade(|mut ws| async move {
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if msg.is_data() && ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//! let app: axum::Router = axum::Router::new().route("/ws", axum::routing::get(ws));
//! ```

use crate::PerMessageDeflate;
use std::sync::OnceLock;
use weft_core::ServerBuilder;
use weft_core::axum::ServerDefaults;

/// Defaults with permessage-deflate ([`PerMessageDeflate::new`]); one
/// builder, so one context pool, for the whole process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deflate;

impl ServerDefaults for Deflate {
    fn server() -> &'static ServerBuilder {
        static SERVER: OnceLock<ServerBuilder> = OnceLock::new();
        SERVER.get_or_init(|| ServerBuilder::new().extension(PerMessageDeflate::new()))
    }
}

/// The axum extractor with permessage-deflate by default.
pub type WebSocketUpgrade = weft_core::axum::WebSocketUpgrade<Deflate>;
