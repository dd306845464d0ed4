//! WebSocket extensions for weft, built on `weft-core`'s public extension API.
//!
//! Planned here: permessage-deflate (RFC 7692) and per-frame deflate
//! (`deflate-frame` / `x-webkit-deflate-frame`). Nothing is exported yet.
