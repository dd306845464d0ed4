//! The weft-broker server (placeholder until the server lands).
fn main() {}
