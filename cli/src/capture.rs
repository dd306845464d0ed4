//! Placeholder.

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {}

/// Runs it.
pub fn main(_args: CaptureArgs) -> Result<(), String> {
    Err("not built yet".into())
}
