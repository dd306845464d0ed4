//! Fault injection on the transport (test_support::FaultStream) under the
//! tokio layer, both roles: short reads and writes of every length,
//! `Pending` storms, `ConnectionReset` / `BrokenPipe` in the middle of a
//! frame, a write that never completes, and a half-close.
//!
//! Every case checks: no panic; every task ends within a bounded time; the
//! application gets a typed error (never a hang or a silent success);
//! whatever `send` reported as sent is in the bytes the transport really
//! accepted (parsed back with a sans-I/O connection of the other role).

use bytes::{Bytes, BytesMut};
use std::io::ErrorKind;
use std::time::Duration;
use test_support::{FaultStream, Faults};
use tokio::io::DuplexStream;
use weft_core::{
    ClientBuilder, CloseCode, Config, Connection, Error, Message, Role, ServerBuilder, Session,
    WebSocket,
};

/// Bound on every task of these tests.
const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within {LIMIT:?}"))
}

fn config() -> Config {
    Config::default()
        .close_timeout(Duration::from_millis(300))
        .max_message_size(1 << 20)
}

/// A client and a server over a pipe, the client's end (or the server's)
/// wrapped in `faults`. Returns the pair and the faulty end's log.
async fn pair(
    faults: Faults,
    fault_on_client: bool,
) -> (
    WebSocket<FaultStream<DuplexStream>>,
    WebSocket<FaultStream<DuplexStream>>,
    std::sync::Arc<std::sync::Mutex<test_support::FaultLog>>,
) {
    let (a, b) = tokio::io::duplex(1 << 12);
    let (fa, fb) = match fault_on_client {
        true => (faults, Faults::default()),
        false => (Faults::default(), faults),
    };
    let a = FaultStream::new(a, fa);
    let b = FaultStream::new(b, fb);
    let log = if fault_on_client { a.log() } else { b.log() };
    let server = ServerBuilder::new().config(config());
    let srv = tokio::spawn(async move { server.accept(b).await });
    let (c, _) = ClientBuilder::new()
        .config(config())
        .connect_on(a, "ws://localhost/faults")
        .await
        .expect("client handshake");
    let s = srv.await.unwrap().expect("server handshake");
    (c, s, log)
}

fn payload(i: usize) -> Vec<u8> {
    (0..(i * 997) % 70_000)
        .map(|k| (k * 31 + i) as u8)
        .collect()
}

/// Short reads and writes of every length and Pending storms on either
/// end: every message of both directions arrives intact and in order.
#[tokio::test]
async fn short_io_and_pending_storms_deliver_everything() {
    for seed in 0..6u64 {
        for fault_on_client in [true, false] {
            let faults = Faults {
                max_read: 1 + seed as usize * 3,
                max_write: 1 + seed as usize * 5,
                pending_per_256: 100,
                seed,
                ..Faults::default()
            };
            let (mut c, mut s, _) = bounded("handshake", pair(faults, fault_on_client)).await;
            let n = 12;
            let server = tokio::spawn(async move {
                for i in 0..n {
                    match s.recv().await {
                        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], &payload(i)[..]),
                        other => panic!("server got {other:?}"),
                    }
                    s.send(Message::text(format!("ack {i} ✓"))).await.unwrap();
                }
                assert!(matches!(s.recv().await, Some(Ok(Message::Close(_)))));
                assert!(s.recv().await.is_none());
            });
            bounded("client", async {
                for i in 0..n {
                    c.send(Message::binary(payload(i))).await.unwrap();
                    match c.recv().await {
                        Some(Ok(Message::Text(t))) => assert_eq!(t, format!("ack {i} ✓").as_str()),
                        other => panic!("client got {other:?}"),
                    }
                }
                c.close(CloseCode::NORMAL, "done").await.unwrap();
            })
            .await;
            bounded("server", server).await.unwrap();
        }
    }
}

/// The messages a server-role connection reads from the bytes a client
/// wrote after its handshake (to check what was really sent).
fn sent_by_client(written: &[u8]) -> Vec<Message> {
    let at = written
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("handshake written")
        + 4;
    let cfg = Config::default();
    let mut conn = Connection::new(Session::new(Role::Server, &cfg), &cfg);
    let mut buf = BytesMut::from(&written[at..]);
    let mut out = Vec::new();
    while let Ok(Some(m)) = conn.handle_read(&mut buf) {
        out.push(m);
    }
    out
}

/// ConnectionReset / BrokenPipe on the client's writes after every few
/// hundred bytes (mostly in the middle of a frame): `send` fails with a
/// typed I/O error, never panics or hangs, and every message it reported
/// as sent is complete in the bytes the transport accepted. The server
/// sees the connection end with an error or an abnormal closure.
#[tokio::test]
async fn write_errors_mid_frame_fail_send_and_nothing_unsent_is_reported() {
    for (k, kind) in [ErrorKind::ConnectionReset, ErrorKind::BrokenPipe]
        .into_iter()
        .cycle()
        .take(12)
        .enumerate()
    {
        let after = 600 + k * 2_345;
        let faults = Faults {
            write_error_after: Some((after, kind)),
            max_write: 700,
            seed: k as u64,
            ..Faults::default()
        };
        let (mut c, mut s, log) = bounded("handshake", pair(faults, true)).await;
        let server = tokio::spawn(async move {
            let mut got = 0;
            loop {
                match s.recv().await {
                    Some(Ok(_)) => got += 1,
                    // The pipe is intact; the client drops it after its
                    // error, mid-frame: an abnormal closure.
                    Some(Err(Error::AbnormalClosure | Error::Io(_))) | None => return got,
                    Some(Err(e)) => panic!("server: {e:?}"),
                }
            }
        });
        let mut reported = Vec::new();
        let failed = bounded("client", async {
            for i in 1..40 {
                let p = payload(i);
                match c.send(Message::binary(p.clone())).await {
                    Ok(()) => reported.push(p),
                    Err(Error::Io(e)) => {
                        assert_eq!(e.kind(), kind);
                        return true;
                    }
                    Err(e) => panic!("client: unexpected {e:?}"),
                }
            }
            false
        })
        .await;
        assert!(failed, "the injected error reached the application");
        // Later commands fail too, without hanging.
        let again = bounded("send after failure", c.send(Message::text("late"))).await;
        assert!(again.is_err(), "{again:?}");
        drop(c);
        let got = bounded("server", server).await.unwrap();
        let written = log.lock().unwrap().written.clone();
        assert!(written.len() <= after);
        let on_wire = sent_by_client(&written);
        assert!(
            on_wire.len() >= reported.len(),
            "{} reported sent, {} on the wire",
            reported.len(),
            on_wire.len()
        );
        for (m, p) in on_wire.iter().zip(&reported) {
            assert!(matches!(m, Message::Binary(b) if b[..] == p[..]));
        }
        assert_eq!(got, on_wire.len(), "the server read what was written");
    }
}

/// A reset on the server's reads in the middle of a frame: `recv` returns
/// a typed I/O error, and the server's later calls end at once.
#[tokio::test]
async fn read_reset_mid_frame_is_an_io_error() {
    for after in [400usize, 1_000, 5_000, 20_000] {
        let faults = Faults {
            read_error_after: Some((after, ErrorKind::ConnectionReset)),
            max_read: 333,
            ..Faults::default()
        };
        let (mut c, mut s, _) = bounded("handshake", pair(faults, false)).await;
        let client = tokio::spawn(async move {
            for i in 1..30 {
                if c.send(Message::binary(payload(i))).await.is_err() {
                    break;
                }
            }
            c
        });
        let err = bounded("server", async {
            loop {
                match s.recv().await {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return e,
                    None => panic!("clean end instead of the injected reset"),
                }
            }
        })
        .await;
        assert!(
            matches!(&err, Error::Io(e) if e.kind() == ErrorKind::ConnectionReset),
            "{err:?}"
        );
        let next = bounded("recv after failure", s.recv()).await;
        assert!(!matches!(next, Some(Ok(_))), "{next:?}");
        drop(s);
        let _ = bounded("client", client).await.unwrap();
    }
}

/// Half-close in the middle of a frame: the server's reads see EOF. It
/// reports an abnormal closure (1006), not a message and not a hang.
#[tokio::test]
async fn half_close_mid_frame_is_an_abnormal_closure() {
    for after in [400usize, 1_234, 9_999] {
        let faults = Faults {
            read_eof_after: Some(after),
            ..Faults::default()
        };
        let (mut c, mut s, _) = bounded("handshake", pair(faults, false)).await;
        let client = tokio::spawn(async move {
            for i in 1..20 {
                if c.send(Message::binary(payload(i))).await.is_err() {
                    break;
                }
            }
            c
        });
        let end = bounded("server", async {
            loop {
                match s.recv().await {
                    Some(Ok(Message::Binary(_))) => {}
                    other => return other,
                }
            }
        })
        .await;
        assert!(matches!(end, Some(Err(Error::AbnormalClosure))), "{end:?}");
        drop(s);
        let _ = bounded("client", client).await.unwrap();
    }
}

/// A peer that stops reading: the client's writes never complete. `send`
/// waits (back-pressure), and `close` gives up within the close timeout
/// instead of waiting forever, with `Error::CloseTimeout` (it used to await
/// the flush before any timeout was armed).
#[tokio::test]
async fn a_write_that_never_completes_is_bounded_by_close() {
    let faults = Faults {
        write_stall_after: Some(500),
        ..Faults::default()
    };
    let (mut c, _s, log) = bounded("handshake", pair(faults, true)).await;
    let big = Bytes::from(vec![7u8; 100_000]);
    let r = tokio::time::timeout(Duration::from_millis(200), c.send(Message::binary(big))).await;
    assert!(r.is_err(), "send of an unwritable message completed: {r:?}");
    assert!(log.lock().unwrap().written.len() <= 500);
    let closed =
        tokio::time::timeout(Duration::from_secs(10), c.close(CloseCode::NORMAL, "")).await;
    match closed {
        Ok(Err(Error::CloseTimeout(_))) => {}
        other => panic!("close on a stalled write: {other:?}"),
    }
}
