//! Connects to an echo server, sends messages of varied sizes and kinds,
//! verifies every echo, and prints one JSON line.
//!
//! ```text
//! cargo run --release --example echo_check -- --url ws://127.0.0.1:9001 --messages 50
//! ```
//!
//! `--mux-channels K` opens K logical channels over one mux connection
//! instead and checks echoes on all of them at once.
//!
//! Options: `--extension permessage-deflate` offers compression, `--param
//! k[=v]` sets its parameters (RFC 7692 names, e.g. `client_max_window_bits=9`,
//! `server_no_context_takeover`). `--extension deflate-frame` or
//! `--extension x-webkit-deflate-frame` offers per-frame deflate instead, with
//! `--param max_window_bits=N` and `--param no_context_takeover`. Exits non-zero on any failure; with an
//! extension requested, also when the server did not accept it.

use bytes::Bytes;
use clap::Parser;
use serde::Serialize;
use std::time::Duration;
use test_support::RngCore;
use weft_core::{ClientBuilder, CloseCode, Config, Message, OpCode};
use weft_examples::DeflateArgs;

/// Connects to an echo server, sends messages of varied sizes and kinds,
/// verifies every echo and prints one JSON line; exits non-zero on any
/// failure (with an extension requested, also when the server did not
/// accept it).
#[derive(Debug, Parser)]
#[command(name = "echo_check")]
struct Args {
    /// The echo server.
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// Messages to send (per channel with --mux-channels) [default: 50, or
    /// 20 with --mux-channels].
    #[arg(long, value_name = "N")]
    messages: Option<usize>,
    /// Open K logical channels over one mux connection instead, and check
    /// echoes on all of them at once.
    #[arg(long, value_name = "K")]
    mux_channels: Option<usize>,
    /// Offer this extension; --param then sets its parameters
    /// (permessage-deflate: RFC 7692 names; per-frame deflate:
    /// max_window_bits=N, no_context_takeover).
    #[arg(long, value_name = "NAME", value_parser = ["permessage-deflate", "deflate-frame", "x-webkit-deflate-frame"])]
    extension: Option<String>,
    #[command(flatten)]
    deflate: DeflateArgs,
}

/// The one JSON line printed at the end.
#[derive(Serialize)]
struct Verdict {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    negotiated: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    messages: usize,
}

/// The i-th test message: sizes cycle from 0 B to 1 MiB, text (with multi-byte
/// UTF-8) and binary alternate, and every fourth message is sent in fragments.
/// Every ninth message is a random 3000-byte block repeated 20 times, so a
/// compressor that uses more window than it agreed to is caught by the peer.
fn message(i: usize) -> (Message, bool) {
    const SIZES: [usize; 8] = [0, 1, 125, 126, 1000, 65535, 65536, 1 << 20];
    let size = SIZES[i % SIZES.len()];
    let fragmented = i % 4 == 3;
    if i % 9 == 8 {
        let mut block = vec![0u8; 3000];
        test_support::rng(i as u64).fill_bytes(&mut block);
        return (Message::binary(block.repeat(20)), fragmented);
    }
    let msg = if i.is_multiple_of(2) {
        let unit = "weft ✓ κόσμε 𝄞 ";
        let mut s = unit.repeat(size / unit.len() + 1);
        let mut end = size.min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        Message::text(s)
    } else {
        Message::binary((0..size).map(|b| (b * 7 + i) as u8).collect::<Vec<u8>>())
    };
    (msg, fragmented)
}

fn payload(m: &Message) -> (OpCode, Bytes) {
    match m {
        Message::Text(t) => (OpCode::Text, t.as_bytes().clone()),
        Message::Binary(b) => (OpCode::Binary, b.clone()),
        _ => unreachable!(),
    }
}

/// `--mux-channels K`: K logical channels over one connection, each sending
/// its messages concurrently (so inner frames of all channels interleave,
/// several messages larger than the initial quota), every fourth channel
/// dropped at the end instead of closed.
async fn run_mux(args: &Args, url: &str, channels: usize) -> Result<(String, usize), String> {
    const SIZES: [usize; 7] = [0, 1, 125, 1000, 65535, 70_000, 200_000];
    let count = args.messages.unwrap_or(20);
    let client = weft_mux::MuxClient::connect(url, weft_mux::MuxConfig::default())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut tasks = Vec::new();
    for k in 0..channels {
        let mut ch = client
            .open_channel(&format!("/mux/{k}"), &[], Vec::new())
            .await
            .map_err(|e| format!("open channel {k}: {e}"))?;
        tasks.push(tokio::spawn(async move {
            for i in 0..count {
                let size = SIZES[(i + k) % SIZES.len()];
                let msg = if (i + k).is_multiple_of(2) {
                    Message::text("ü✓".repeat(size / 5))
                } else {
                    Message::binary(vec![(i * 31 + k) as u8; size])
                };
                ch.send(msg.clone())
                    .await
                    .map_err(|e| format!("channel {k} send {i}: {e}"))?;
                match ch.recv().await {
                    Some(Ok(echo)) if echo == msg => {}
                    other => {
                        return Err(format!(
                            "channel {k} message {i}: bad echo {:?}",
                            other.map(|r| r.map(|m| m.len()))
                        ));
                    }
                }
            }
            if k % 4 == 3 {
                ch.drop_channel(weft_mux::DropCode::NORMAL);
            } else {
                ch.close(CloseCode::NORMAL, "done")
                    .await
                    .map_err(|e| format!("channel {k} close: {e}"))?;
            }
            Ok::<usize, String>(count)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| e.to_string())??;
    }
    client.close();
    Ok((format!("mux; channels={channels}"), total))
}

async fn run(args: &Args) -> Result<(String, usize), String> {
    if let Some(k) = args.mux_channels {
        return run_mux(args, &args.url, k).await;
    }
    let count = args.messages.unwrap_or(50);
    let mut client = ClientBuilder::new().config(Config::default().max_message_size(64 << 20));
    match args.extension.as_deref() {
        None => {}
        Some("permessage-deflate") => {
            client = client.extension(weft_examples::deflate_from_args(&args.deflate))
        }
        Some(name @ ("deflate-frame" | "x-webkit-deflate-frame")) => {
            client = client.extension(weft_examples::perframe_from_args(
                &args.deflate.params,
                args.deflate.deflate_level,
                name,
            ))
        }
        Some(other) => return Err(format!("unknown extension {other:?}")),
    }
    let (mut ws, _) = client
        .connect(&args.url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let negotiated = weft_core::ext::format_extensions(ws.extensions());
    if let Some(ext) = &args.extension
        && !ws.extensions().iter().any(|e| &e.name == ext)
    {
        return Err(format!(
            "{ext} was not negotiated (server answered {negotiated:?})"
        ));
    }
    for i in 0..count {
        let (msg, fragmented) = message(i);
        if fragmented {
            let (op, data) = payload(&msg);
            let third = data.len() / 3;
            ws.feed_fragment(op, data.slice(..third), false)
                .await
                .map_err(|e| e.to_string())?;
            ws.feed_fragment(OpCode::Continuation, data.slice(third..2 * third), false)
                .await
                .map_err(|e| e.to_string())?;
            ws.feed_fragment(OpCode::Continuation, data.slice(2 * third..), true)
                .await
                .map_err(|e| e.to_string())?;
            ws.flush().await.map_err(|e| e.to_string())?;
        } else {
            ws.send(msg.clone())
                .await
                .map_err(|e| format!("send {i}: {e}"))?;
        }
        loop {
            match ws.recv().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(echo)) if echo == msg => break,
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!(
                        "message {i}: the server closed the connection ({frame:?})"
                    ));
                }
                Some(Ok(other)) => {
                    return Err(format!("message {i}: wrong echo ({} bytes)", other.len()));
                }
                Some(Err(e)) => return Err(format!("message {i}: {e}")),
                None => return Err(format!("message {i}: connection closed")),
            }
        }
    }
    ws.close(CloseCode::NORMAL, "done")
        .await
        .map_err(|e| format!("close: {e}"))?;
    Ok((negotiated, count))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let result = tokio::time::timeout(Duration::from_secs(120), run(&args))
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
    let ok = result.is_ok();
    let verdict = match result {
        Ok((negotiated, n)) => Verdict {
            ok: true,
            negotiated: Some(negotiated),
            error: None,
            messages: n,
        },
        Err(e) => Verdict {
            ok: false,
            negotiated: None,
            error: Some(e),
            messages: 0,
        },
    };
    println!(
        "{}",
        serde_json::to_string(&verdict).expect("the verdict serializes")
    );
    if !ok {
        std::process::exit(1);
    }
}
