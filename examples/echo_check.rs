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
use std::time::Duration;
use weft_core::{ClientBuilder, CloseCode, Config, Message, OpCode};
use weft_examples::Args;

/// The i-th test message: sizes cycle from 0 B to 1 MiB, text (with multi-byte
/// UTF-8) and binary alternate, and every fourth message is sent in fragments.
/// Every ninth message is a random 3000-byte block repeated 20 times, so a
/// compressor that uses more window than it agreed to is caught by the peer.
fn message(i: usize) -> (Message, bool) {
    const SIZES: [usize; 8] = [0, 1, 125, 126, 1000, 65535, 65536, 1 << 20];
    let size = SIZES[i % SIZES.len()];
    let fragmented = i % 4 == 3;
    if i % 9 == 8 {
        let mut x = i as u32 | 1;
        let block: Vec<u8> = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
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
    let count: usize = args.parsed("--messages", 20);
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
    if let Some(k) = args.value("--mux-channels") {
        let k: usize = k.parse().map_err(|_| format!("bad --mux-channels {k}"))?;
        let url = args.value("--url").unwrap_or("ws://127.0.0.1:9001/");
        return run_mux(args, url, k).await;
    }
    let url = args.value("--url").unwrap_or("ws://127.0.0.1:9001/");
    let count: usize = args.parsed("--messages", 50);
    let mut client = ClientBuilder::new().config(Config::default().max_message_size(64 << 20));
    match args.value("--extension") {
        None => {}
        Some("permessage-deflate") => {
            client = client.extension(weft_examples::deflate_from_args(args))
        }
        Some(name @ ("deflate-frame" | "x-webkit-deflate-frame")) => {
            client = client.extension(weft_examples::perframe_from_args(args, name))
        }
        Some(other) => return Err(format!("unknown extension {other:?}")),
    }
    let (mut ws, _) = client
        .connect(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let negotiated = weft_core::ext::format_extensions(ws.extensions());
    if let Some(ext) = args.value("--extension")
        && !ws.extensions().iter().any(|e| e.name == ext)
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
    let args = Args::from_env();
    let result = tokio::time::timeout(Duration::from_secs(120), run(&args))
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
    match result {
        Ok((negotiated, n)) => {
            println!("{{\"ok\":true,\"negotiated\":\"{negotiated}\",\"messages\":{n}}}");
        }
        Err(e) => {
            println!("{{\"ok\":false,\"error\":{:?},\"messages\":0}}", e);
            std::process::exit(1);
        }
    }
}
