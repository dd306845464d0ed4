//! A broadcast chat on axum: every text message a client sends goes to
//! every connected client, compressed once per group of connections with
//! equal permessage-deflate parameters (see `weft_core::broadcast`).
//!
//! ```text
//! cargo run --release --example axum_broadcast -- --addr 127.0.0.1:3000
//! ```
//!
//! `GET /` serves a page whose JavaScript joins and shows the messages;
//! `/ws` is the WebSocket, upgraded by `weft_extensions::axum::WebSocketUpgrade`
//! (permessage-deflate by default). Every `--stats-every` seconds, and on
//! shutdown, it prints what compression saved on the broadcast traffic
//! (from the hub's counters: payload bytes given vs frame bytes queued) and
//! the connections' own totals both ways (`weft_core::ServerStats`: every
//! connection's `Stats` summed, control frames and headers included).
//! On ctrl-c or SIGTERM every subscriber gets what was already queued and
//! then Close 1001; the server waits up to `--shutdown-timeout` seconds for
//! them, then exits.

use axum::Router;
use axum::response::{Html, Response};
use axum::routing::get;
use clap::{Parser, ValueEnum};
use std::time::Duration;
use weft_core::broadcast::{BroadcastConfig, SlowPolicy};
use weft_core::{Broadcast, CloseCode, Message, PreparedMessage, ServerStats};
use weft_extensions::axum::WebSocketUpgrade;

const PAGE: &str = include_str!("axum_broadcast.html");

/// What to do with a client that does not keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Slow {
    /// Close it with 1013 (try again later).
    Disconnect,
    /// Drop its oldest queued message.
    DropOldest,
}

/// A broadcast chat on axum with compress-once permessage-deflate.
#[derive(Debug, Parser)]
#[command(name = "axum_broadcast")]
struct Args {
    /// Address to listen on (port 0 picks one; the chosen address is printed).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:3000")]
    addr: String,
    /// Messages queued per client before the slow-client policy applies.
    #[arg(long, value_name = "N", default_value_t = 256)]
    queue_limit: usize,
    /// The slow-client policy.
    #[arg(long, value_enum, default_value_t = Slow::Disconnect)]
    slow: Slow,
    /// Seconds between statistics lines (0: only on shutdown).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    stats_every: u64,
    /// Seconds to wait for clients to close on shutdown.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    shutdown_timeout: u64,
}

fn print_stats(hub: &Broadcast, conns: &ServerStats) {
    let c = conns.snapshot();
    println!(
        "connections: {} open, {} in all; sent {} messages, payload {} B, wire {} B \
         (saved {:.1}%); received {} messages, payload {} B, wire {} B (saved {:.1}%)",
        conns.open_connections(),
        conns.accepted_connections(),
        c.messages_sent,
        c.payload_bytes_sent,
        c.wire_bytes_sent,
        100.0 * c.compression_saved_sent(),
        c.messages_received,
        c.payload_bytes_received,
        c.wire_bytes_received,
        100.0 * c.compression_saved_received(),
    );
    let s = hub.stats();
    println!(
        "stats: {} subscribers, {} messages, {} deliveries, {} compressions, \
         payload {} B, wire {} B (uncompressed {} B), compression saved {:.1}%",
        hub.subscribers(),
        s.messages,
        s.deliveries,
        s.compressions,
        s.payload_bytes,
        s.wire_bytes,
        s.uncompressed_wire_bytes,
        100.0 * s.compression_saved()
    );
}

async fn ws(upgrade: WebSocketUpgrade, hub: Broadcast, conns: ServerStats) -> Response {
    upgrade.on_upgrade(move |mut ws| async move {
        ws.report_stats_to(&conns);
        let mut sub = hub.subscribe(&ws);
        let sender = hub.clone();
        let result = sub
            .run(&mut ws, |msg| {
                // Text is broadcast; binary messages are ignored.
                if let Message::Text(t) = msg
                    && let Err(e) = sender.send(PreparedMessage::text(t))
                {
                    eprintln!("broadcast failed: {e}");
                }
            })
            .await;
        if let Err(e) = result {
            eprintln!("client ended: {e}");
        }
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let slow = match args.slow {
        Slow::Disconnect => SlowPolicy::Disconnect(CloseCode::TRY_AGAIN_LATER),
        Slow::DropOldest => SlowPolicy::DropOldest,
    };
    let hub = Broadcast::new(
        BroadcastConfig::new()
            .queue_limit(args.queue_limit)
            .slow(slow),
    );
    let conns = ServerStats::new();
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/ws",
            get({
                let hub = hub.clone();
                let conns = conns.clone();
                move |upgrade: WebSocketUpgrade| ws(upgrade, hub.clone(), conns.clone())
            }),
        );
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    let addr = listener.local_addr()?;
    println!("axum_broadcast listening on http://{addr} (WebSocket: ws://{addr}/ws)");

    if args.stats_every > 0 {
        let hub = hub.clone();
        let conns = conns.clone();
        let every = Duration::from_secs(args.stats_every);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                print_stats(&hub, &conns);
            }
        });
    }

    let closing = hub.clone();
    let wait = Duration::from_secs(args.shutdown_timeout);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            weft_examples::shutdown_signal().await;
            let n = closing.shutdown();
            println!("shutting down: closing {n} subscribers with 1001");
            if tokio::time::timeout(wait, closing.wait_empty())
                .await
                .is_err()
            {
                println!(
                    "{} subscribers still open after {}s",
                    closing.subscribers(),
                    wait.as_secs()
                );
            }
        })
        .await?;
    print_stats(&hub, &conns);
    Ok(())
}
