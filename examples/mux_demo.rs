//! Opens 1,000 logical channels over one WebSocket and reports throughput
//! and memory.
//!
//! ```text
//! cargo run --release --example mux_demo -- [--channels 1000] [--messages 20] [--size 1024]
//! ```
//!
//! An in-process mux echo server listens on 127.0.0.1; one client opens the
//! channels, every channel sends its messages concurrently and checks each
//! echo. Memory is the process's resident set (server and client together)
//! before and after the channels are open.

use clap::Parser;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use weft_core::handshake::ServerOptions;
use weft_core::{Message, ServerBuilder};
use weft_mux::{Accepted, MuxClient, MuxConfig, MuxServerBuilder};

/// Opens many logical channels over one WebSocket to an in-process mux echo
/// server and reports throughput and memory.
#[derive(Debug, Parser)]
#[command(name = "mux_demo")]
struct Args {
    /// Logical channels to open.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    channels: usize,
    /// Messages each channel sends (one at a time, each echo checked).
    #[arg(long, value_name = "N", default_value_t = 20)]
    messages: usize,
    /// Size of every message, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    size: usize,
}

/// This process's resident memory in KiB, if `/proc` can tell.
fn rss_kib() -> Option<u64> {
    test_support::proc_status(std::process::id())
        .ok()
        .map(|s| s.vm_rss / 1024)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args {
        channels,
        messages,
        size,
    } = Args::parse();

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = MuxServerBuilder::new(
        ServerBuilder::new(),
        MuxConfig::default(),
        ServerOptions::default(),
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                let _ = server.tune_tcp(&stream);
                let Ok(Accepted::Mux(mut conn)) = server.accept(stream).await else {
                    return;
                };
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
            });
        }
    });

    let before = rss_kib();
    let client = MuxClient::connect(&format!("ws://{addr}/"), MuxConfig::default()).await?;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(channels);
    for k in 0..channels {
        handles.push(
            client
                .open_channel(&format!("/demo/{k}"), &[], Vec::new())
                .await?,
        );
    }
    let opened_in = started.elapsed();
    let after_open = rss_kib();

    let payload = Message::binary(vec![7u8; size]);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(channels);
    for mut ch in handles {
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..messages {
                ch.send(payload.clone()).await.map_err(|e| e.to_string())?;
                match ch.recv().await {
                    Some(Ok(m)) if m == payload => {}
                    other => {
                        return Err(format!(
                            "bad echo on {:?}: {:?}",
                            ch.id(),
                            other.map(|r| r.map(|m| m.len()))
                        ));
                    }
                }
            }
            Ok::<_, String>(ch)
        }));
    }
    let mut open = Vec::with_capacity(channels);
    for t in tasks {
        open.push(
            tokio::time::timeout(Duration::from_secs(120), t)
                .await??
                .map_err(std::io::Error::other)?,
        );
    }
    let elapsed = started.elapsed();
    let total = channels * messages;
    println!("{channels} channels opened in {opened_in:.2?} over one connection");
    println!(
        "{total} echoes of {size} B in {elapsed:.2?}: {:.0} messages/s, {:.1} MiB/s each way",
        total as f64 / elapsed.as_secs_f64(),
        (total * size) as f64 / elapsed.as_secs_f64() / (1 << 20) as f64
    );
    if let (Some(b), Some(a)) = (before, after_open) {
        println!(
            "resident memory: {b} KiB before, {a} KiB with {channels} open channels (client and server): {:.2} KiB per channel",
            a.saturating_sub(b) as f64 / channels as f64
        );
    }
    drop(open);
    client.close();
    Ok(())
}
