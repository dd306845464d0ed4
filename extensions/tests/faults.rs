//! Fault injection (test_support::FaultStream) under permessage-deflate
//! and per-frame deflate, both roles: short reads and writes of every
//! length with `Pending` storms deliver every compressed message intact
//! (the inflater sees frames cut anywhere); a reset in the middle of a
//! compressed frame fails the reader with a typed I/O error; a half-close
//! mid-frame is an abnormal closure. Every task ends within a bound.

use std::io::ErrorKind;
use std::time::Duration;
use test_support::{FaultStream, Faults, Rng};
use tokio::io::DuplexStream;
use weft_core::{ClientBuilder, CloseCode, Config, Error, Message, ServerBuilder, WebSocket};
use weft_extensions::{PerFrameDeflate, PerMessageDeflate};

const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within {LIMIT:?}"))
}

#[derive(Clone, Copy, Debug)]
enum Ext {
    PerMessage,
    PerFrame,
}

type Ws = WebSocket<FaultStream<DuplexStream>>;

async fn pair(ext: Ext, client_faults: Faults, server_faults: Faults) -> (Ws, Ws) {
    let (a, b) = tokio::io::duplex(1 << 12);
    let cfg = Config::default().close_timeout(Duration::from_millis(300));
    let (client, server) = match ext {
        Ext::PerMessage => (
            ClientBuilder::new().extension(PerMessageDeflate::new()),
            ServerBuilder::new().extension(PerMessageDeflate::new()),
        ),
        Ext::PerFrame => (
            ClientBuilder::new().extension(PerFrameDeflate::new()),
            ServerBuilder::new().extension(PerFrameDeflate::new()),
        ),
    };
    let server = server.config(cfg.clone());
    let b = FaultStream::new(b, server_faults);
    let srv = tokio::spawn(async move { server.accept(b).await });
    let (c, _) = client
        .config(cfg)
        .connect_on(FaultStream::new(a, client_faults), "ws://localhost/faults")
        .await
        .expect("client handshake");
    let s = srv.await.unwrap().expect("server handshake");
    assert_eq!(c.extensions().len(), 1, "{ext:?} negotiated");
    (c, s)
}

/// Compressible, and different per message (so context takeover matters).
fn text(i: usize) -> String {
    (0..(i * 1_777) % 50_000)
        .map(|k| char::from(b'a' + ((k / 7 + i) % 26) as u8))
        .collect()
}

#[tokio::test]
async fn short_io_and_pending_storms_deliver_every_compressed_message() {
    for ext in [Ext::PerMessage, Ext::PerFrame] {
        for seed in 0..4u64 {
            let f = |s| Faults {
                max_read: 1 + seed as usize * 4,
                max_write: 1 + seed as usize * 6,
                pending_per_256: 90,
                seed: s,
                ..Faults::default()
            };
            let (mut c, mut s) = bounded("handshake", pair(ext, f(seed), f(seed + 100))).await;
            let server = tokio::spawn(async move {
                while let Some(m) = s.recv().await {
                    match m.expect("server recv") {
                        m @ Message::Text(_) => s.send(m).await.unwrap(),
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
            });
            bounded("client", async {
                for i in 0..10 {
                    c.send(Message::text(text(i))).await.unwrap();
                    match c.recv().await {
                        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text(i)),
                        other => panic!("{ext:?}: client got {other:?}"),
                    }
                }
                c.close(CloseCode::NORMAL, "").await.unwrap();
            })
            .await;
            bounded("server", server).await.unwrap();
        }
    }
}

#[tokio::test]
async fn reset_or_half_close_mid_compressed_frame_is_a_typed_error() {
    for ext in [Ext::PerMessage, Ext::PerFrame] {
        for (after, eof) in [
            (500usize, false),
            (3_000, true),
            (9_000, false),
            (700, true),
        ] {
            let faults = Faults {
                read_error_after: (!eof).then_some((after, ErrorKind::ConnectionReset)),
                read_eof_after: eof.then_some(after),
                max_read: 401,
                ..Faults::default()
            };
            let (mut c, mut s) = bounded("handshake", pair(ext, Faults::default(), faults)).await;
            let client = tokio::spawn(async move {
                let mut rng = test_support::rng(after as u64);
                // Random letters: about 4.7 bits a byte after deflate, so
                // the compressed frames are long and the fault lands inside
                // one. Bounded: the fault comes after `after` bytes.
                for _ in 0..1_000 {
                    let noisy: String = (0..4_000)
                        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                        .collect();
                    if c.send(Message::text(noisy)).await.is_err() {
                        break;
                    }
                }
                c
            });
            let end = bounded("server", async {
                loop {
                    match s.recv().await {
                        Some(Ok(Message::Text(_))) => {}
                        other => return other,
                    }
                }
            })
            .await;
            match eof {
                true => assert!(matches!(end, Some(Err(Error::AbnormalClosure))), "{end:?}"),
                false => assert!(
                    matches!(&end, Some(Err(Error::Io(e))) if e.kind() == ErrorKind::ConnectionReset),
                    "{end:?}"
                ),
            }
            drop(s);
            let _ = bounded("client", client).await.unwrap();
        }
    }
}
