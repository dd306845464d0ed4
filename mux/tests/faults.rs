//! Fault injection (test_support::FaultStream) under the mux tokio API:
//! short reads and writes of every length with `Pending` storms carry
//! every channel's messages intact; a reset of the physical connection in
//! the middle of a frame ends every channel with a typed error or end of
//! stream, within a bound, on both sides.

use std::io::ErrorKind;
use std::time::Duration;
use test_support::{FaultStream, Faults};
use weft_core::handshake::ServerOptions;
use weft_core::{ClientBuilder, Message, ServerBuilder};
use weft_mux::{Accepted, MuxClient, MuxConfig, MuxFactory, MuxServerBuilder};

const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within {LIMIT:?}"))
}

/// A mux client over a faulty pipe to an echo mux server.
async fn client(client_faults: Faults, server_faults: Faults) -> MuxClient {
    let (a, b) = tokio::io::duplex(1 << 12);
    let server = MuxServerBuilder::new(
        ServerBuilder::new(),
        MuxConfig::default(),
        ServerOptions::default(),
    );
    let b = FaultStream::new(b, server_faults);
    tokio::spawn(async move {
        let Ok(Accepted::Mux(mut mux)) = server.accept(b).await else {
            panic!("mux accept");
        };
        // The implicit channel 1 comes first, then the opened ones.
        while let Some(incoming) = mux.next_channel().await {
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
    let (ws, _) = ClientBuilder::new()
        .extension(MuxFactory { quota: 1 << 16 })
        .connect_on(FaultStream::new(a, client_faults), "ws://localhost/mux")
        .await
        .expect("physical handshake");
    MuxClient::start(ws, "localhost", MuxConfig::default()).expect("mux negotiated")
}

fn payload(ch: usize, i: usize) -> Vec<u8> {
    (0..(ch * 4_001 + i * 997) % 40_000)
        .map(|k| (k + ch * 7 + i) as u8)
        .collect()
}

#[tokio::test]
async fn short_io_and_pending_storms_carry_every_channel() {
    for seed in 0..3u64 {
        let f = |s| Faults {
            max_read: 1 + seed as usize * 7,
            max_write: 1 + seed as usize * 9,
            pending_per_256: 80,
            seed: s,
            ..Faults::default()
        };
        let mux = bounded("connect", client(f(seed), f(seed + 50))).await;
        let mut tasks = Vec::new();
        for ch in 0..4usize {
            let mut channel = match ch {
                0 => mux.implicit_channel(),
                _ => bounded("open", mux.open_channel("/echo", &[], Vec::new()))
                    .await
                    .expect("open channel"),
            };
            tasks.push(tokio::spawn(async move {
                for i in 0..6 {
                    channel.send(Message::binary(payload(ch, i))).await.unwrap();
                    match channel.recv().await {
                        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], &payload(ch, i)[..]),
                        other => panic!("channel {ch}: {other:?}"),
                    }
                }
            }));
        }
        for t in tasks {
            bounded("channel", t).await.unwrap();
        }
        mux.close();
    }
}

#[tokio::test]
async fn reset_mid_frame_ends_every_channel() {
    for (after, kind) in [
        (2_000usize, ErrorKind::ConnectionReset),
        (30_000, ErrorKind::BrokenPipe),
    ] {
        let faults = Faults {
            write_error_after: Some((after, kind)),
            max_write: 999,
            ..Faults::default()
        };
        let mux = bounded("connect", client(faults, Faults::default())).await;
        let mut tasks = Vec::new();
        for ch in 0..3usize {
            let mut channel = match ch {
                0 => mux.implicit_channel(),
                _ => match bounded("open", mux.open_channel("/echo", &[], Vec::new())).await {
                    Ok(c) => c,
                    Err(_) => continue,
                },
            };
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    if channel.send(Message::binary(payload(ch, i))).await.is_err() {
                        return;
                    }
                    match channel.recv().await {
                        Some(Ok(_)) => {}
                        // A typed error or the end of the channel.
                        Some(Err(_)) | None => return,
                    }
                }
                panic!("channel {ch}: 50 round trips through a transport that fails");
            }));
        }
        for t in tasks {
            bounded("channel after the reset", t).await.unwrap();
        }
    }
}
