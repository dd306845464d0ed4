//! `weft-broker`: the broker server, on the memory backend or Redis.
//!
//! ```text
//! cargo run --release -p weft-broker -- --addr 127.0.0.1:9100
//! cargo run --release -p weft-broker -- --addr 127.0.0.1:9101 --backend redis://127.0.0.1:6379
//! # a second memory node forwarding two destinations to the first:
//! cargo run --release -p weft-broker -- --addr 127.0.0.1:9102 \
//!     --link ws://127.0.0.1:9100/ --link-destinations queue/a,topic/b
//! ```
//!
//! Stops gracefully on ctrl-c (and SIGTERM): stops accepting, closes every
//! connection with 1001, waits for the closing handshakes.

use clap::Parser;
use std::time::Duration;
use weft_broker::{
    Backend, Keepalive, LinkConfig, MemoryConfig, RedisConfig, Server, ServerConfig,
};

/// A message broker over WebSocket (subprotocols mbws.weft and mblws.weft;
/// see broker/PROTOCOL.md), with the embedded memory backend or Redis.
#[derive(Debug, Parser)]
#[command(name = "weft-broker", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    addr: String,
    /// `memory` (embedded, the default) or `redis://HOST:PORT[/DB]` (Redis
    /// Streams, shared by every node on the same Redis and key prefix).
    #[arg(long, default_value = "memory")]
    backend: String,
    /// Redis: prefix of the broker's keys.
    #[arg(long, default_value_t = RedisConfig::default().key_prefix)]
    redis_prefix: String,
    /// Milliseconds an `ack: client` delivery may stay unacknowledged
    /// before it is redelivered to another consumer (memory: 0 turns it
    /// off). On Redis this is also how long a killed node's deliveries wait.
    #[arg(long, default_value_t = 30_000)]
    redeliver_after_ms: u64,
    /// Seconds of silence from a client before the broker pings it (0: no
    /// keepalive).
    #[arg(long, default_value_t = 20)]
    keepalive_interval: u64,
    /// Seconds the broker waits for an answer to its ping before it drops
    /// the connection.
    #[arg(long, default_value_t = 20)]
    keepalive_timeout: u64,
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
    /// Most destinations (Redis: of the key prefix, across all nodes).
    #[arg(long, default_value_t = MemoryConfig::default().max_destinations)]
    max_destinations: usize,
    /// Largest message body, in bytes.
    #[arg(long, default_value_t = weft_broker::frame::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Seconds a shutdown waits for connections to close.
    #[arg(long, default_value_t = 5)]
    shutdown_grace: u64,
    /// Runtime worker threads [default: one per CPU]. 1 runs everything on
    /// the main thread (tokio's current-thread runtime), which saves the
    /// cross-thread wakeups when the node shares few cores with Redis and
    /// other nodes.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Link to another node (`ws://HOST:PORT/`): forward this node's
    /// messages for `--link-destinations` to it over one multiplexed
    /// WebSocket (memory backend only; see PROTOCOL.md, "Broker links").
    #[arg(long, requires = "link_destinations")]
    link: Option<String>,
    /// The destinations to link, comma-separated (`queue/a,topic/b`; the
    /// leading `/` is optional).
    #[arg(long, value_delimiter = ',', requires = "link", value_parser = parse_destination)]
    link_destinations: Vec<weft_broker::Destination>,
    /// Messages in flight per linked destination (at most --max-credit).
    #[arg(long, default_value_t = 64)]
    link_window: u32,
    /// This node's name in links [default: random].
    #[arg(long)]
    node_id: Option<String>,
    /// Serve plain WebSockets only: refuse multiplexed connections (and so
    /// links from other nodes).
    #[arg(long)]
    no_mux: bool,
}

fn parse_destination(s: &str) -> Result<weft_broker::Destination, String> {
    let s = s.trim();
    let full = if s.starts_with('/') {
        s.to_owned()
    } else {
        format!("/{s}")
    };
    weft_broker::Destination::new(&full).map_err(|e| e.to_string())
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

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.into())
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    match runtime {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => {
            eprintln!("weft-broker: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::process::ExitCode {
    let redeliver = Duration::from_millis(args.redeliver_after_ms);
    let config = ServerConfig {
        memory: MemoryConfig {
            max_queue: args.max_queue,
            max_credit: args.max_credit,
            dedupe_window: args.dedupe_window,
            max_destinations: args.max_destinations,
            redeliver_after: (!redeliver.is_zero()).then_some(redeliver),
        },
        keepalive: (args.keepalive_interval > 0).then(|| Keepalive {
            interval: Duration::from_secs(args.keepalive_interval),
            timeout: Duration::from_secs(args.keepalive_timeout.max(1)),
        }),
        max_body: args.max_body,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        mux: (!args.no_mux).then(weft_mux::MuxConfig::default),
        links: match &args.link {
            Some(url) => vec![LinkConfig {
                window: args.link_window,
                log_to_stderr: true,
                ..LinkConfig::new(url.clone(), args.link_destinations.clone())
            }],
            None => Vec::new(),
        },
        node_id: args
            .node_id
            .clone()
            .unwrap_or_else(|| ServerConfig::default().node_id),
    };
    let backend = if args.backend == "memory" {
        Backend::memory(config.memory.clone())
    } else if args.backend.starts_with("redis://") {
        let rc = RedisConfig {
            key_prefix: args.redis_prefix.clone(),
            max_queue: args.max_queue,
            max_credit: args.max_credit,
            dedupe_window: args.dedupe_window,
            max_destinations: args.max_destinations,
            redeliver_after: if redeliver.is_zero() {
                RedisConfig::default().redeliver_after
            } else {
                redeliver
            },
            ..RedisConfig::default()
        };
        match Backend::redis(&args.backend, rc).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("weft-broker: cannot reach Redis at {}: {e}", args.backend);
                return std::process::ExitCode::FAILURE;
            }
        }
    } else {
        eprintln!(
            "weft-broker: --backend must be `memory` or `redis://HOST:PORT`, not {:?}",
            args.backend
        );
        return std::process::ExitCode::from(2);
    };
    let backend_name = backend.name();
    let server = match Server::bind_with(&args.addr, config, backend).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("weft-broker: {e}");
            return std::process::ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("weft-broker: cannot listen on {}: {e}", args.addr);
            return std::process::ExitCode::FAILURE;
        }
    };
    match server.local_addr() {
        Ok(a) => eprintln!(
            "weft-broker: listening on ws://{a}/ ({backend_name} backend; subprotocols mbws.weft, mblws.weft)"
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
