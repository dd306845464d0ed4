//! # weft-extensions
//!
//! WebSocket extensions for weft, built only on `weft-core`'s public
//! extension API ([`weft_core::ext`]):
//!
//! - [`PerMessageDeflate`]: permessage-deflate (RFC 7692), both roles, all
//!   four parameters, window bits 8 to 15, context takeover, lazily
//!   allocated and optionally pooled contexts.
//! - [`PerFrameDeflate`]: per-frame deflate under both deployed names,
//!   `deflate-frame` and `x-webkit-deflate-frame`.
//!
//! Both compression extensions share one DEFLATE codec ([`deflate`]).
//! With feature `axum`, `axum::WebSocketUpgrade` is weft-core's axum
//! extractor with permessage-deflate by default.
//!
//! ## Data path
//!
//! Sending: the core hands the whole message (or each streamed fragment) to
//! the per-message encoder, which compresses it with a sync flush, strips the
//! trailing `00 00 ff ff` at the end of the message and sets RSV1 on the first
//! frame; the core then cuts the result into frames. Receiving: each frame of
//! a compressed message is inflated as it arrives (the trailer is appended
//! after the last one) into a buffer that may not grow past the remaining
//! message budget, so a decompression bomb fails with 1009 while memory stays
//! bounded.
//!
//! ## Memory
//!
//! zlib state is allocated on the first compressed message. By default it
//! goes back after every message to a [`ContextPool`] shared by the
//! connections of one configuration, and a connection keeps only the bytes
//! its windows have seen; its own context comes back warm unless another
//! connection needed it (then it is reset and primed with the saved window,
//! so context takeover holds either way). See [`MemoryStrategy`] for the
//! other strategies and [`PerMessageDeflate`]'s presets for measured
//! figures.

#[cfg(feature = "axum")]
pub mod axum;
pub mod deflate;
mod perframe;
mod permessage;

pub use deflate::{ContextPool, Release, WindowBits};
pub use perframe::{DEFLATE_FRAME, PerFrameDeflate, PerFrameDeflateExt, X_WEBKIT_DEFLATE_FRAME};
pub use permessage::{
    DEFAULT_POOL_CONTEXTS, MemoryStrategy, PerMessageDeflate, PerMessageDeflateExt, SharedDeflate,
};
