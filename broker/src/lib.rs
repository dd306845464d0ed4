//! weft-broker (work in progress).
pub mod frame;
