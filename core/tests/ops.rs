//! Running a server: traffic stats against the bytes that really crossed
//! the transport, keepalive with its Pong timeout, the connection limit at
//! and past its value, and graceful shutdown (a 64 MiB message in flight
//! is delivered whole before the 1001 Close; a peer that never reads is
//! aborted at the deadline).

use bytes::Bytes;
use std::time::{Duration, Instant};
use test_support::{CountingStream, client_frame, tcp_pair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use weft_core::ext::Negotiated;
use weft_core::handshake::HandshakeError;
use weft_core::{
    ClientBuilder, CloseCode, Config, Error, Message, OpCode, Role, ServerBuilder, ServerStats,
    Shutdown, Stats, WebSocket,
};

const T: Duration = Duration::from_secs(30);

fn ws<S: AsyncRead + AsyncWrite + Unpin>(io: S, role: Role, config: &Config) -> WebSocket<S> {
    WebSocket::from_parts(
        io,
        role,
        Negotiated::none(),
        None,
        config,
        Default::default(),
    )
}

#[tokio::test]
async fn stats_equal_the_bytes_that_crossed_the_pipe() {
    let (a, b) = tokio::io::duplex(4096);
    // Counts the bytes that really pass through the server's end.
    let counted = CountingStream::new(b);
    let counts = counted.counts();
    // Small frames for the client, so one message goes as several frames.
    let config = Config::default().send_frame_size(1000);
    let mut client = ws(a, Role::Client, &config);
    let mut server = ws(counted, Role::Server, &Config::default());
    let server_task = tokio::spawn(async move {
        while let Some(Ok(m)) = server.recv().await {
            if m.is_data() {
                server.feed(m).await.unwrap();
            }
        }
        server.stats()
    });
    let sizes = [0usize, 5, 125, 126, 4000, 70_000, 200_000];
    let mut payload = 0u64;
    for &n in &sizes {
        client.send(Message::binary(vec![7u8; n])).await.unwrap();
        payload += n as u64;
    }
    client
        .send(Message::Ping(Bytes::from_static(b"hi")))
        .await
        .unwrap();
    client
        .send_fragment(OpCode::Text, Bytes::from_static(b"frag"), false)
        .await
        .unwrap();
    client
        .send_fragment(OpCode::Continuation, Bytes::from_static(b"ment"), true)
        .await
        .unwrap();
    payload += 8;
    let mut echoed = 0u64;
    let mut got = 0;
    while got < sizes.len() + 1 {
        match tokio::time::timeout(T, client.recv()).await.unwrap() {
            Some(Ok(m)) if m.is_data() => {
                echoed += m.len() as u64;
                got += 1;
            }
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(echoed, payload);
    client.close(CloseCode::NORMAL, "done").await.unwrap();
    let c = client.stats();
    let s = server_task.await.unwrap();
    // Messages and payload, both ends.
    let n = sizes.len() as u64 + 1;
    assert_eq!(
        (c.messages_sent, c.payload_bytes_sent),
        (n, payload),
        "{c:?}"
    );
    assert_eq!(
        (s.messages_received, s.payload_bytes_received),
        (n, payload)
    );
    assert_eq!((s.messages_sent, s.payload_bytes_sent), (n, payload));
    assert_eq!(
        (c.messages_received, c.payload_bytes_received),
        (n, payload)
    );
    // The wire: what the server counted is what went through its end of
    // the pipe, and what the client counted the other way round.
    assert_eq!(s.wire_bytes_received, counts.read());
    assert_eq!(s.wire_bytes_sent, counts.written());
    assert_eq!(c.wire_bytes_sent, s.wire_bytes_received);
    assert_eq!(c.wire_bytes_received, s.wire_bytes_sent);
    // Framing only: the wire is a little more than the payload (8 bytes of
    // header and mask per frame of at most 1000, Ping, Close), so "saved"
    // is slightly negative.
    assert!(
        c.wire_bytes_sent > payload && c.wire_bytes_sent < payload + payload / 100 + 200,
        "{c:?}"
    );
    assert!(c.compression_saved_sent() < 0.0 && c.compression_saved_sent() > -0.01);
}

#[tokio::test]
async fn server_stats_sum_every_connection() {
    let stats = ServerStats::new();
    let server = ServerBuilder::new().stats(&stats);
    let mut per_conn = Stats::default();
    for i in 0..3u64 {
        let (mut c, mut s) = tcp_pair(ClientBuilder::new(), server.clone()).await;
        assert_eq!(stats.open_connections(), 1);
        let t = tokio::spawn(async move {
            while let Some(Ok(m)) = s.recv().await {
                if m.is_data() {
                    s.feed(m).await.unwrap();
                }
            }
            s.stats()
        });
        // More than PUBLISH_EVERY messages, so open connections publish too.
        for k in 0..(weft_core::PUBLISH_EVERY + i) {
            c.send(Message::text(format!("message {k}"))).await.unwrap();
            assert!(matches!(c.recv().await, Some(Ok(Message::Text(_)))));
        }
        if i == 0 {
            // Published at 64 messages each way while still open.
            assert!(stats.snapshot().messages_received >= weft_core::PUBLISH_EVERY);
        }
        c.close(CloseCode::NORMAL, "").await.unwrap();
        per_conn += t.await.unwrap();
    }
    assert_eq!(stats.snapshot(), per_conn);
    assert_eq!(stats.accepted_connections(), 3);
    assert_eq!(stats.open_connections(), 0);
    assert_eq!(per_conn.messages_received, 3 * weft_core::PUBLISH_EVERY + 3);
}

/// A server connection over a pipe whose other end is driven by hand.
fn keepalive_server(
    interval: Duration,
    timeout: Duration,
) -> (WebSocket<DuplexStream>, DuplexStream) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let config = Config::default()
        .keepalive_interval(Some(interval))
        .keepalive_timeout(timeout);
    (ws(b, Role::Server, &config), a)
}

/// Answers every Ping (an empty one, `89 00`) with a masked Pong after
/// `delay`; returns everything read.
async fn ponging_peer(mut peer: DuplexStream, delay: Option<Duration>, run: Duration) -> Vec<u8> {
    let mut seen = Vec::new();
    let end = tokio::time::Instant::now() + run;
    let mut buf = [0u8; 1024];
    loop {
        let n = match tokio::time::timeout_at(end, peer.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!("{e}"),
        };
        seen.extend_from_slice(&buf[..n]);
        let pings = buf[..n].windows(2).filter(|w| w == &[0x89, 0x00]).count();
        if let Some(d) = delay {
            for _ in 0..pings {
                tokio::time::sleep(d).await;
                let _ = peer.write_all(&client_frame(0x8A, b"")).await;
            }
        }
    }
    seen
}

#[tokio::test]
async fn pong_timeout_fires_when_the_peer_stops_answering() {
    let (mut server, peer) =
        keepalive_server(Duration::from_millis(100), Duration::from_millis(400));
    let peer = tokio::spawn(ponging_peer(peer, None, Duration::from_secs(5)));
    let start = Instant::now();
    let r = tokio::time::timeout(T, server.recv()).await.unwrap();
    let elapsed = start.elapsed();
    assert!(
        matches!(r, Some(Err(Error::KeepaliveTimeout(d))) if d == Duration::from_millis(400)),
        "{r:?}"
    );
    // The Ping at 100 ms, the Pong due 400 ms later.
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(server.recv().await.is_none());
    drop(server);
    let seen = peer.await.unwrap();
    // A Ping, then a Close with 1011 (0x03f3).
    assert_eq!(&seen[..2], &[0x89, 0x00]);
    let close = seen.iter().position(|&b| b == 0x88).expect("a Close frame");
    assert_eq!(&seen[close + 2..close + 4], &[0x03, 0xf3], "{seen:02x?}");
}

#[tokio::test]
async fn pong_timeout_is_met_or_missed_at_its_limit() {
    // Answers that come well inside the timeout keep the connection up,
    // Ping after Ping; answers later than the timeout do not.
    for (delay, fires) in [
        (Duration::from_millis(100), false),
        (Duration::from_millis(700), true),
    ] {
        let (mut server, peer) =
            keepalive_server(Duration::from_millis(100), Duration::from_millis(400));
        let run = Duration::from_millis(1500);
        let peer = tokio::spawn(ponging_peer(
            peer,
            Some(delay),
            run + Duration::from_millis(500),
        ));
        let mut pongs = 0;
        let outcome = tokio::time::timeout(run, async {
            loop {
                match server.recv().await {
                    Some(Ok(Message::Pong(_))) => pongs += 1,
                    Some(Ok(m)) => panic!("{m:?}"),
                    Some(Err(e)) => return e,
                    None => panic!("closed"),
                }
            }
        })
        .await;
        match (fires, outcome) {
            (false, Err(_)) => assert!(pongs >= 3, "{pongs} pongs"),
            (true, Ok(Error::KeepaliveTimeout(_))) => assert_eq!(pongs, 0),
            (f, o) => panic!("delay {delay:?}: expected fires={f}, got {o:?}"),
        }
        drop(server);
        peer.await.unwrap();
    }
}

#[tokio::test]
async fn keepalive_is_off_by_default() {
    assert_eq!(Config::default().keepalive_interval, None);
    let (a, b) = tokio::io::duplex(1024);
    let mut server = ws(b, Role::Server, &Config::default());
    let peer = tokio::spawn(ponging_peer(a, None, Duration::from_millis(600)));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), server.recv())
            .await
            .is_err()
    );
    drop(server);
    assert!(peer.await.unwrap().is_empty());
}

/// An echo server on 127.0.0.1 for `builder`; every accept error is sent
/// on the channel.
async fn serve(builder: ServerBuilder) -> (String, tokio::sync::mpsc::UnboundedReceiver<Error>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let builder = builder.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match builder.accept(tcp).await {
                    Ok(mut ws) => {
                        while let Some(Ok(m)) = ws.recv().await {
                            if m.is_data() && ws.send(m).await.is_err() {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(e);
                    }
                }
            });
        }
    });
    (url, rx)
}

fn status_of(r: Result<impl std::fmt::Debug, Error>) -> u16 {
    match r {
        Err(Error::Handshake(HandshakeError::Status(s))) => s.as_u16(),
        other => panic!("expected an HTTP status, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_limit_admits_exactly_n_then_503() {
    let stats = ServerStats::new();
    let (url, mut errors) = serve(ServerBuilder::new().max_connections(3).stats(&stats)).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let (mut c, _) = weft_core::connect(&url).await.expect("within the limit");
        c.send(Message::text("x")).await.unwrap();
        assert!(matches!(c.recv().await, Some(Ok(Message::Text(_)))));
        open.push(c);
    }
    // The fourth is one too many: 503 before the upgrade.
    assert_eq!(status_of(weft_core::connect(&url).await), 503);
    match tokio::time::timeout(T, errors.recv())
        .await
        .unwrap()
        .unwrap()
    {
        Error::Handshake(HandshakeError::Rejected(r)) => {
            assert_eq!(r.status(), 503);
            assert!(r.body().contains("limit of 3"), "{}", r.body());
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(stats.rejected_connections(), 1);
    // One closes: its slot is free again once the server dropped it.
    open.pop()
        .unwrap()
        .close(CloseCode::NORMAL, "")
        .await
        .unwrap();
    let deadline = Instant::now() + T;
    while stats.open_connections() != 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut c, _) = weft_core::connect(&url).await.expect("a slot was freed");
    c.send(Message::text("y")).await.unwrap();
    assert!(matches!(c.recv().await, Some(Ok(Message::Text(_)))));
    assert_eq!(status_of(weft_core::connect(&url).await), 503);
    assert_eq!(stats.accepted_connections(), 4);
}

#[tokio::test]
async fn limit_applies_to_upgrade_too() {
    let builder = ServerBuilder::new().max_connections(1);
    let request = http::Request::builder()
        .uri("/")
        .header("host", "x")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    let (_, pending) = builder.upgrade(&request).unwrap();
    match builder.upgrade(&request) {
        Err(HandshakeError::Rejected(r)) => assert_eq!(r.status(), 503),
        other => panic!("{other:?}"),
    }
    drop(pending);
    assert!(builder.upgrade(&request).is_ok());
}

#[tokio::test]
async fn shutdown_delivers_a_64_mib_message_in_flight_then_closes_1001() {
    let shutdown = Shutdown::new();
    let server = ServerBuilder::new().shutdown(&shutdown);
    let (mut client, mut ws) = tcp_pair(ClientBuilder::new(), server.clone()).await;
    let big = Bytes::from(
        (0..64usize << 20)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let sent = big.clone();
    let (queued_tx, queued_rx) = tokio::sync::oneshot::channel();
    let server_task = tokio::spawn(async move {
        ws.feed(Message::Binary(sent)).await.unwrap();
        queued_tx.send(()).unwrap();
        // recv writes the message out, then acts on the shutdown.
        while let Some(r) = ws.recv().await {
            r.unwrap();
        }
        // Offered after the Close: refused, not lost.
        ws.feed(Message::text("late")).await.is_err()
    });
    queued_rx.await.unwrap();
    // The client does not read yet, so the server is stuck mid-message
    // when the shutdown starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(shutdown.open_connections(), 1);
    let drain = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.drain(T).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(shutdown.is_triggered());
    // New upgrades are refused meanwhile.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        server.accept(tcp).await.map(|_| ())
    });
    assert_eq!(
        status_of(weft_core::connect(&format!("ws://{addr}/")).await),
        503
    );
    assert!(refused.await.unwrap().is_err());

    match tokio::time::timeout(T, client.recv()).await.unwrap() {
        Some(Ok(Message::Binary(b))) => assert!(b == big, "the message arrived changed"),
        other => panic!("{other:?}"),
    }
    match tokio::time::timeout(T, client.recv()).await.unwrap() {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!(f.code, CloseCode::GOING_AWAY);
        }
        other => panic!("{other:?}"),
    }
    assert!(client.recv().await.is_none());
    assert!(
        server_task.await.unwrap(),
        "a message fed after the Close was accepted"
    );
    assert_eq!(drain.await.unwrap(), 0);
    assert_eq!(shutdown.open_connections(), 0);
}

#[tokio::test]
async fn shutdown_aborts_a_peer_that_never_reads_at_the_deadline() {
    let shutdown = Shutdown::new();
    let (client, mut ws) = tcp_pair(
        ClientBuilder::new(),
        ServerBuilder::new().shutdown(&shutdown),
    )
    .await;
    let server_task = tokio::spawn(async move {
        ws.feed(Message::binary(vec![1u8; 16 << 20])).await.unwrap();
        let r = ws.recv().await;
        (r, ws.recv().await.is_none())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    assert_eq!(shutdown.drain(Duration::from_millis(300)).await, 1);
    assert!(start.elapsed() >= Duration::from_millis(300));
    let (r, then_none) = tokio::time::timeout(T, server_task).await.unwrap().unwrap();
    assert!(matches!(r, Some(Err(Error::ShutdownAborted))), "{r:?}");
    assert!(then_none);
    assert_eq!(shutdown.open_connections(), 0);
    drop(client);
}

#[tokio::test]
async fn shutdown_reaches_idle_connections_and_split_halves() {
    let shutdown = Shutdown::new();
    let server = ServerBuilder::new().shutdown(&shutdown);
    let (mut c1, s1) = tcp_pair(ClientBuilder::new(), server.clone()).await;
    let (mut c2, s2) = tcp_pair(ClientBuilder::new(), server).await;
    // One waits in recv, one is split and waits in the reader.
    let t1 = tokio::spawn(async move {
        let mut s1 = s1;
        while let Some(r) = s1.recv().await {
            r.unwrap();
        }
    });
    let t2 = tokio::spawn(async move {
        let (mut r, w) = s2.split();
        while let Some(m) = r.recv().await {
            m.unwrap();
        }
        drop(w);
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(shutdown.open_connections(), 2);
    let drain = tokio::spawn(async move { shutdown.drain(T).await });
    for c in [&mut c1, &mut c2] {
        match tokio::time::timeout(T, c.recv()).await.unwrap() {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::GOING_AWAY),
            other => panic!("{other:?}"),
        }
        assert!(c.recv().await.is_none());
    }
    t1.await.unwrap();
    t2.await.unwrap();
    assert_eq!(drain.await.unwrap(), 0);
}
