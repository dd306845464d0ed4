//! `weft-broker`: the broker server with the memory backend.
//!
//! ```text
//! cargo run --release -p weft-broker -- --addr 127.0.0.1:9100
//! ```
//!
//! Stops gracefully on ctrl-c (and SIGTERM): stops accepting, closes every
//! connection with 1001, waits for the closing handshakes.

use clap::Parser;
use std::time::Duration;
use weft_broker::{MemoryConfig, Server, ServerConfig};

/// A message broker over WebSocket (subprotocols mbws.weft and mblws.weft;
/// see broker/PROTOCOL.md), with the embedded memory backend.
#[derive(Debug, Parser)]
#[command(name = "weft-broker", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    addr: String,
    /// Messages waiting per destination (a queue's undelivered messages, or
    /// each topic subscription's backlog) before SENDs are refused (300).
    #[arg(long, default_value_t = MemoryConfig::default().max_queue)]
    max_queue: usize,
    /// Largest credit window of one subscription.
    #[arg(long, default_value_t = MemoryConfig::default().max_credit)]
    max_credit: u32,
    /// Message ids remembered per destination to drop duplicate SENDs (0: off).
    #[arg(long, default_value_t = MemoryConfig::default().dedupe_window)]
    dedupe_window: usize,
    /// Most destinations.
    #[arg(long, default_value_t = MemoryConfig::default().max_destinations)]
    max_destinations: usize,
    /// Largest message body, in bytes.
    #[arg(long, default_value_t = weft_broker::frame::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Seconds a shutdown waits for connections to close.
    #[arg(long, default_value_t = 5)]
    shutdown_grace: u64,
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config = ServerConfig {
        memory: MemoryConfig {
            max_queue: args.max_queue,
            max_credit: args.max_credit,
            dedupe_window: args.dedupe_window,
            max_destinations: args.max_destinations,
        },
        max_body: args.max_body,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
    };
    let server = match Server::bind(&args.addr, config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weft-broker: cannot listen on {}: {e}", args.addr);
            return std::process::ExitCode::FAILURE;
        }
    };
    match server.local_addr() {
        Ok(a) => eprintln!(
            "weft-broker: listening on ws://{a}/ (memory backend; subprotocols mbws.weft, mblws.weft)"
        ),
        Err(e) => eprintln!("weft-broker: listening ({e})"),
    }
    let result = server
        .run_until(async {
            shutdown_signal().await;
            eprintln!("weft-broker: shutting down");
        })
        .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-broker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
