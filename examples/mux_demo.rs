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

use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use weft_core::handshake::ServerOptions;
use weft_core::{Message, ServerBuilder};
use weft_examples::Args;
use weft_mux::{Accepted, MuxClient, MuxConfig, MuxServerBuilder};

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::from_env();
    let channels: usize = args.parsed("--channels", 1000);
    let messages: usize = args.parsed("--messages", 20);
    let size: usize = args.parsed("--size", 1024);

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
