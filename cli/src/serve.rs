//! Placeholder.

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

/// Runs it.
pub fn main(_args: ServeArgs) -> Result<(), String> {
    Err("not built yet".into())
}
