//! WebSocket multiplexing for weft: many logical WebSocket connections over one
//! physical connection (the HyBi `mux` draft, variant B of our spec digest).
//!
//! Nothing is exported yet; the core's session layer already runs over any
//! frame transport, which is what this crate will build on.
