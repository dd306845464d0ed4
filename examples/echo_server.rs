//! An echo server: every text and binary message is sent back, on every path.
//!
//! ```text
//! cargo run --release --example echo_server -- --addr 127.0.0.1:9001
//! ```
//!
//! A plain HTTP `GET /` returns a small page whose JavaScript connects back
//! and echoes, so a browser can try it. Messages up to 64 MiB are accepted
//! (the Autobahn 9.x cases send 16 MiB).
//!
//! Clients offering `mux` get multiplexed connections (unless `--no-mux`):
//! every logical channel is accepted and echoes, with permessage-deflate
//! available per channel.
//! Per-frame deflate (`deflate-frame`, `x-webkit-deflate-frame`) offers are
//! accepted unless `--no-deflate-frame` is given (`--frame-param
//! max_window_bits=N` and `--frame-param no_context_takeover` request those
//! of clients); when a client offers both, permessage-deflate wins.
//! permessage-deflate offers are accepted unless `--no-deflate` is given;
//! `--param name[=value]` sets its parameters (`server_max_window_bits=10`,
//! `client_no_context_takeover`, ...), `--deflate-level N` its level and
//! `--deflate-memory keep|idle|hibernate` its memory strategy (default
//! hibernate).
//!
//! Operations:
//! * `--tls-cert FILE --tls-key FILE` (PEM: the certificate chain, and a
//!   PKCS#8, PKCS#1 or SEC1 private key) serve `wss://` through
//!   tokio-rustls instead of `ws://`.
//! * `--threads N`: the runtime. Default 1, a current-thread runtime: one
//!   core serves every connection with no cross-thread handoffs (the
//!   fastest setup for an echo, which does little work per message); `N >
//!   1` runs a multi-thread runtime with N workers, `0` one worker per CPU.
//! * `--max-connections N` answers upgrades past N open connections with
//!   503; `--keepalive SECS` pings idle clients and closes with 1011 those
//!   that do not answer within the same time.
//! * SIGTERM or ctrl-c shut down gracefully: the listener closes, every
//!   connection gets a 1001 Close after what it had queued, and the server
//!   waits up to `--shutdown-grace SECS` (default 10) for them, then exits
//!   and prints the traffic and compression totals.
//!
//! Logging: with `RUST_LOG` set (e.g. `RUST_LOG=weft_core=debug`, or
//! `info` for protocol errors and keepalive timeouts only), weft's
//! `tracing` events (connection opened and negotiated, closed with codes,
//! reason, duration and traffic, protocol errors) go to stderr through
//! tracing-subscriber's `EnvFilter`; without it no subscriber is installed
//! and the events cost next to nothing.
//!
//! Socket tuning: a mux connection gets `TCP_NOTSENT_LOWAT` (16 KiB, from
//! `MuxConfig`) once mux is negotiated; plain WebSocket connections keep the
//! system's default (no limit on unsent data), as every peer server does.
//! Before, every accepted socket was tuned before the handshake, and a
//! black-box run saw plain clients slower with it (1 x 1 MiB: 518 vs 788
//! messages/s with `--no-mux`). `--tune-all` brings the old behaviour back
//! for such comparisons.

use clap::Parser;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use weft_core::tokio_rustls::{TlsAcceptor, rustls};
use weft_core::{Config, Message, ServerBuilder, ServerStats, Shutdown};
use weft_examples::{DeflateArgs, deflate_from_args, perframe_from_args};
use weft_mux::{Accepted, MuxConfig, MuxServerBuilder};

const PAGE: &str = include_str!("echo_page.html");

/// An echo server: every text and binary message is sent back, on every
/// path; `GET /` serves a page that echoes from a browser.
#[derive(Debug, Parser)]
#[command(name = "echo_server")]
struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9001")]
    addr: String,
    /// Largest message accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    max_message: usize,
    /// Largest frame accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    max_frame: usize,
    /// Decline permessage-deflate offers.
    #[arg(long)]
    no_deflate: bool,
    /// Decline per-frame deflate offers (deflate-frame, x-webkit-deflate-frame).
    #[arg(long)]
    no_deflate_frame: bool,
    /// A per-frame deflate request made of clients (max_window_bits=N,
    /// no_context_takeover); repeatable.
    #[arg(long = "frame-param", value_name = "NAME[=VALUE]")]
    frame_params: Vec<String>,
    /// Serve plain WebSocket clients only: decline `mux` offers.
    #[arg(long)]
    no_mux: bool,
    #[command(flatten)]
    deflate: DeflateArgs,
    /// Serve wss:// with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Runtime worker threads: 1 is a current-thread runtime, N > 1 a
    /// multi-thread runtime with N workers, 0 one worker per CPU.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// Most WebSocket connections open at once; more are answered with 503
    /// [default: no limit].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Ping clients idle for this many seconds and close (1011) those that
    /// do not answer within as long [default: off].
    #[arg(long, value_name = "SECS")]
    keepalive: Option<u64>,
    /// Apply the mux socket tuning (TCP_NOTSENT_LOWAT 16 KiB) to every
    /// accepted socket before the handshake, plain clients included, as
    /// echo_server did before; for measurements (ignored with --no-mux).
    #[arg(long)]
    tune_all: bool,
    /// On SIGTERM or ctrl-c, how long connections get to close, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    shutdown_grace: u64,
}

fn server(args: &Args, stats: &ServerStats, shutdown: &Shutdown) -> ServerBuilder {
    let mut config = Config::default()
        .max_message_size(args.max_message)
        .max_frame_size(args.max_frame)
        .handshake_timeout(Duration::from_secs(10));
    if let Some(secs) = args.keepalive {
        let d = Duration::from_secs(secs.max(1));
        config = config.keepalive_interval(Some(d)).keepalive_timeout(d);
    }
    // permessage-deflate is preferred over per-frame deflate whatever the
    // client lists first: it is the standard, and compresses better.
    let mut builder = ServerBuilder::new()
        .config(config)
        .prefer_server_extension_order()
        .stats(stats)
        .shutdown(shutdown);
    if let Some(n) = args.max_connections {
        builder = builder.max_connections(n);
    }
    if !args.no_deflate {
        builder = builder.extension(deflate_from_args(&args.deflate));
    }
    if !args.no_deflate_frame {
        builder = builder.extension(perframe_from_args(
            &args.frame_params,
            args.deflate.deflate_level,
            "deflate-frame",
        ));
    }
    builder.on_request(|req| {
        let upgrade = req.headers().get("upgrade").is_some();
        if upgrade {
            return None;
        }
        let (status, body) = match req.uri().path() {
            "/" => (200, PAGE.to_owned()),
            _ => (404, "not found\n".to_owned()),
        };
        Some(
            http::Response::builder()
                .status(status)
                .header(
                    "content-type",
                    if status == 200 {
                        "text/html; charset=utf-8"
                    } else {
                        "text/plain"
                    },
                )
                .header("connection", "close")
                .body(body)
                .expect("valid response"),
        )
    })
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        // RUST_LOG as an EnvFilter; a bad directive is reported, not fatal.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|e| {
            eprintln!("echo_server: RUST_LOG: {e}; logging warnings only");
            tracing_subscriber::EnvFilter::new("warn")
        });
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let runtime = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if n > 1 {
                b.worker_threads(n);
            }
            b.enable_all().build()?
        }
    };
    runtime.block_on(serve(args))
}

/// A TLS acceptor from PEM files; exits with a message on bad input.
fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("echo_server: {what}: {e}");
        std::process::exit(2)
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap_or_else(|e| fail(&format!("--tls-cert {}", cert.display()), &e))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| fail(&format!("--tls-cert {}", cert.display()), &e));
    if chain.is_empty() {
        fail(
            &format!("--tls-cert {}", cert.display()),
            &"no certificate found",
        );
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .unwrap_or_else(|e| fail(&format!("--tls-key {}", key.display()), &e));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| fail("TLS", &e))
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap_or_else(|e| fail("--tls-cert/--tls-key", &e));
    // The WebSocket handshake is HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(&args.addr).await?;
    let stats = ServerStats::new();
    let shutdown = Shutdown::new();
    let server = server(&args, &stats, &shutdown);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(tls_acceptor(c, k)),
        _ => None,
    };
    let (ws_scheme, http_scheme) = if tls.is_some() {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    println!(
        "echo_server listening on {ws_scheme}://{} (open {http_scheme}://{0}/ in a browser)",
        listener.local_addr()?
    );
    // Mux on top: plain clients keep everything above; mux clients get a
    // logical channel per request, each with its own permessage-deflate.
    let mux = (!args.no_mux).then(|| {
        let mut channel_options = weft_core::handshake::ServerOptions::default();
        if !args.no_deflate {
            channel_options = channel_options.extension(deflate_from_args(&args.deflate));
        }
        MuxServerBuilder::new(server.clone(), MuxConfig::default(), channel_options)
    });
    let stop = weft_examples::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let mux = mux.clone();
        let tls = tls.clone();
        let tune_all = args.tune_all;
        tokio::spawn(async move {
            if tune_all && let Some(mux) = &mux {
                let _ = mux.tune_tcp(&stream);
            }
            // A second handle on the socket, for tuning it once mux is
            // negotiated (options belong to the socket, not the handle; the
            // handle keeps the socket alive while it is tuned).
            let tuner = mux
                .as_ref()
                .and_then(|_| stream.as_fd().try_clone_to_owned().ok());
            match tls {
                Some(tls) => {
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    serve_connection(stream, server, mux, tuner).await;
                }
                None => serve_connection(stream, server, mux, tuner).await,
            }
        });
    }
    drop(listener);
    let grace = Duration::from_secs(args.shutdown_grace);
    println!(
        "echo_server: shutting down, {} connections get up to {grace:?} to close",
        shutdown.open_connections()
    );
    let aborted = shutdown.drain(grace).await;
    let total = stats.snapshot();
    println!(
        "echo_server: stopped ({aborted} connections aborted); {} connections served, \
         {} messages in / {} out, compression saved {:.1} % sent, {:.1} % received",
        stats.accepted_connections(),
        total.messages_received,
        total.messages_sent,
        100.0 * total.compression_saved_sent(),
        100.0 * total.compression_saved_received(),
    );
    Ok(())
}

/// Runs the WebSocket handshake on `stream` and echoes: plain, or every
/// channel of a mux connection.
async fn serve_connection<S>(
    stream: S,
    server: ServerBuilder,
    mux: Option<MuxServerBuilder>,
    tuner: Option<OwnedFd>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match mux {
        Some(mux) => match mux.accept(stream).await {
            Ok(Accepted::Plain(ws)) => echo(ws).await,
            Ok(Accepted::Mux(conn)) => {
                if let Some(fd) = tuner {
                    // TCP_NOTSENT_LOWAT keeps large mux transfers
                    // cache-sized; only mux connections need it.
                    let tcp = TcpStream::from_std(std::net::TcpStream::from(fd));
                    if let Ok(tcp) = tcp {
                        let _ = mux.tune_tcp(&tcp);
                        // Deregisters only this handle; the connection's
                        // own stays registered.
                        drop(tcp);
                    }
                }
                echo_channels(conn).await
            }
            Err(_) => {}
        },
        None => {
            if let Ok(ws) = server.accept(stream).await {
                echo(ws).await;
            }
        }
    }
}

/// Echoes every data message of a plain connection.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: weft_core::WebSocket<S>) {
    // feed() queues without flushing; recv() flushes before it waits, so a
    // burst of pipelined messages is echoed with one write.
    while let Some(msg) = ws.recv().await {
        match msg {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.feed(m).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

/// Accepts every logical channel of a mux connection and echoes on each.
async fn echo_channels(mut conn: weft_mux::MuxServer) {
    while let Some(incoming) = conn.next_channel().await {
        let Ok(mut ch) = incoming.accept() else {
            continue;
        };
        tokio::spawn(async move {
            while let Some(Ok(m)) = ch.recv().await {
                if m.is_data() && ch.send(m).await.is_err() {
                    break;
                }
            }
        });
    }
}
