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

use clap::Parser;
use std::time::Duration;
use tokio::net::TcpListener;
use weft_core::{Config, Message, ServerBuilder};
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
}

fn server(args: &Args) -> ServerBuilder {
    let config = Config::default()
        .max_message_size(args.max_message)
        .max_frame_size(args.max_frame)
        .handshake_timeout(Duration::from_secs(10));
    // permessage-deflate is preferred over per-frame deflate whatever the
    // client lists first: it is the standard, and compresses better.
    let mut builder = ServerBuilder::new()
        .config(config)
        .prefer_server_extension_order();
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

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.addr).await?;
    let server = server(&args);
    println!(
        "echo_server listening on ws://{} (open http://{0}/ in a browser)",
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
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let mux = mux.clone();
        tokio::spawn(async move {
            match mux {
                Some(mux) => {
                    // TCP_NOTSENT_LOWAT keeps large mux transfers cache-sized.
                    let _ = mux.tune_tcp(&stream);
                    match mux.accept(stream).await {
                        Ok(Accepted::Plain(ws)) => echo(ws).await,
                        Ok(Accepted::Mux(conn)) => echo_channels(conn).await,
                        Err(_) => {}
                    }
                }
                None => {
                    if let Ok(ws) = server.accept(stream).await {
                        echo(ws).await;
                    }
                }
            }
        });
    }
}

/// Echoes every data message of a plain connection.
async fn echo(mut ws: weft_core::WebSocket<tokio::net::TcpStream>) {
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
