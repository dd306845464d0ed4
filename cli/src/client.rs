//! Placeholder.

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {}

/// Runs it.
pub fn main(_args: ConnectArgs) -> Result<(), String> {
    Err("not built yet".into())
}
