//! The tokio layer over real loopback sockets (and in-memory pipes where the
//! test needs a small buffer): echo, split halves in two tasks, closing,
//! timeouts, backpressure, and bad input answered with the right HTTP status
//! or close code.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use test_support::{client_frame, duplex_pair, tcp_pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_core::handshake::HandshakeError;
use weft_core::{ClientBuilder, CloseCode, Config, Error, Message, ProtocolError, ServerBuilder};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn echo_over_loopback() {
    let (mut c, mut s) = tcp_pair(ClientBuilder::new(), ServerBuilder::new()).await;
    let server = tokio::spawn(async move {
        while let Some(Ok(m)) = s.recv().await {
            if m.is_data() {
                s.feed(m).await.unwrap();
            }
        }
    });
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let msgs = vec![
        Message::text(""),
        Message::text("héllo"),
        Message::binary(vec![1u8; 125]),
        Message::binary(vec![2u8; 126]),
        Message::binary(vec![3u8; 65536]),
        Message::binary(big),
    ];
    for m in &msgs {
        c.feed(m.clone()).await.unwrap();
    }
    c.flush().await.unwrap();
    for m in &msgs {
        assert_eq!(
            &tokio::time::timeout(T, c.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
            m
        );
    }
    c.close(CloseCode::NORMAL, "done").await.unwrap();
    tokio::time::timeout(T, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn messages_around_the_read_buffer_boundaries_echo_intact() {
    // Sizes straddling the 8 KiB stack read and exact-fit payload take-over
    // (header included), a large frame between small ones (the reader
    // switching buffers), one at a time so every read starts empty.
    let (mut c, mut s) = tcp_pair(ClientBuilder::new(), ServerBuilder::new()).await;
    let server = tokio::spawn(async move {
        while let Some(Ok(m)) = s.recv().await {
            if m.is_data() {
                s.send(m).await.unwrap();
            }
        }
    });
    for (i, len) in [
        8184usize, 8185, 8186, 8187, 8188, 8192, 8193, 0, 200_000, 16, 8188, 70_000, 8187, 1,
    ]
    .into_iter()
    .enumerate()
    {
        let m = Message::binary((0..len).map(|j| (j * 7 + i) as u8).collect::<Vec<u8>>());
        c.send(m.clone()).await.unwrap();
        let got = tokio::time::timeout(T, c.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, m, "message {i} of {len} bytes");
    }
    c.close(CloseCode::NORMAL, "done").await.unwrap();
    tokio::time::timeout(T, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn stream_and_sink() {
    let (mut c, s) = tcp_pair(ClientBuilder::new(), ServerBuilder::new()).await;
    let server = tokio::spawn(async move {
        let (mut sink, mut stream) = s.split_sink_stream();
        while let Some(Ok(m)) = stream.next().await {
            if m.is_data() {
                sink.send(m).await.unwrap();
            }
        }
    });
    c.send(Message::text("via sink")).await.unwrap();
    assert_eq!(c.next().await.unwrap().unwrap(), Message::text("via sink"));
    SinkExt::close(&mut c).await.unwrap();
    tokio::time::timeout(T, server).await.unwrap().unwrap();
}

/// `futures::StreamExt::split` over the Stream + Sink impls.
trait SplitSinkStream: Sized {
    fn split_sink_stream(
        self,
    ) -> (
        futures_util::stream::SplitSink<Self, Message>,
        futures_util::stream::SplitStream<Self>,
    );
}
impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> SplitSinkStream
    for weft_core::WebSocket<S>
{
    fn split_sink_stream(
        self,
    ) -> (
        futures_util::stream::SplitSink<Self, Message>,
        futures_util::stream::SplitStream<Self>,
    ) {
        StreamExt::split(self)
    }
}

#[tokio::test]
async fn split_halves_in_two_tasks() {
    let (c, mut s) = tcp_pair(ClientBuilder::new(), ServerBuilder::new()).await;
    let (mut reader, mut writer) = c.split();
    let n = 200;
    let writer_task = tokio::spawn(async move {
        for i in 0..n {
            writer.send(Message::text(format!("m{i}"))).await.unwrap();
        }
        writer
    });
    // The server pings while echoing; the reader task answers the pings.
    let server = tokio::spawn(async move {
        let mut pongs = 0;
        let mut echoed = 0;
        while let Some(Ok(m)) = s.recv().await {
            match m {
                Message::Pong(_) => pongs += 1,
                m if m.is_data() => {
                    echoed += 1;
                    s.feed(m).await.unwrap();
                    if echoed % 50 == 0 {
                        s.feed(Message::Ping(Bytes::from_static(b"p")))
                            .await
                            .unwrap();
                    }
                }
                _ => {}
            }
        }
        pongs
    });
    let mut pings = 0;
    let mut next = 0;
    // All echoes, and all four pings (the last follows the last echo).
    while next < n || pings < 4 {
        match tokio::time::timeout(T, reader.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Ping(_) => pings += 1,
            m => {
                assert_eq!(m, Message::text(format!("m{next}")));
                next += 1;
            }
        }
    }
    let mut writer = writer_task.await.unwrap();
    writer.close(CloseCode::NORMAL, "").await.unwrap();
    while let Some(r) = tokio::time::timeout(T, reader.recv()).await.unwrap() {
        assert!(r.is_ok(), "{r:?}");
    }
    let pongs = tokio::time::timeout(T, server).await.unwrap().unwrap();
    assert_eq!(pongs, 4);
    assert!(reader.reunite(writer).is_ok());
}

#[tokio::test]
async fn close_from_server_reaches_client() {
    let (mut c, mut s) = tcp_pair(ClientBuilder::new(), ServerBuilder::new()).await;
    let server = tokio::spawn(async move { s.close(CloseCode::GOING_AWAY, "restart").await });
    let m = tokio::time::timeout(T, c.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        m,
        Message::Close(Some(weft_core::CloseFrame::new(
            CloseCode::GOING_AWAY,
            "restart"
        )))
    );
    assert!(tokio::time::timeout(T, c.recv()).await.unwrap().is_none());
    tokio::time::timeout(T, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        c.send(Message::text("late")).await,
        Err(Error::Closed)
    ));
}

/// A listener plus a raw TCP client for hand-made input.
async fn raw_server(
    server: ServerBuilder,
) -> (
    TcpStream,
    tokio::task::JoinHandle<Result<weft_core::WebSocket<TcpStream>, Error>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        server.accept(s).await
    });
    (TcpStream::connect(addr).await.unwrap(), task)
}

async fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

const GOOD: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[tokio::test]
async fn bad_handshakes_get_http_errors() {
    let cases = [
        (GOOD.replace("GET", "PUT"), "405"),
        (GOOD.replace("HTTP/1.1", "HTTP/1.0"), "400"),
        (GOOD.replace("Upgrade: websocket\r\n", ""), "400"),
        (
            GOOD.replace("Connection: Upgrade", "Connection: close"),
            "400",
        ),
        (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "AAAA"), "400"),
        (GOOD.replace("Version: 13", "Version: 12"), "426"),
        (
            GOOD.replace(
                "\r\n\r\n",
                &format!("\r\nX-Big: {}\r\n\r\n", "b".repeat(20000)),
            ),
            "431",
        ),
        ("\x16\x03\x01 binary junk\r\n\r\n".to_owned(), "400"),
    ];
    for (req, status) in cases {
        let (mut raw, task) = raw_server(ServerBuilder::new()).await;
        raw.write_all(req.as_bytes()).await.unwrap();
        let resp = String::from_utf8_lossy(&read_to_end(&mut raw).await).into_owned();
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status}")),
            "{status}: {resp}"
        );
        if status == "426" {
            assert!(resp.contains("sec-websocket-version: 13"));
        }
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Handshake(_)), "{err}");
    }
}

#[tokio::test]
async fn handshake_size_limit_at_and_past() {
    let limit = GOOD.len();
    for (max, ok) in [(limit, true), (limit - 1, false)] {
        let server = ServerBuilder::new().config(Config::default().max_handshake_size(max));
        let (mut raw, task) = raw_server(server).await;
        raw.write_all(GOOD.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        raw.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, if ok { b"HTTP/1.1 101" } else { b"HTTP/1.1 431" });
        assert_eq!(task.await.unwrap().is_ok(), ok);
    }
}

#[tokio::test]
async fn stalled_handshake_times_out() {
    let server = ServerBuilder::new()
        .config(Config::default().handshake_timeout(Duration::from_millis(200)));
    let (mut raw, task) = raw_server(server).await;
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let err = tokio::time::timeout(T, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, Error::Handshake(HandshakeError::Timeout)),
        "{err}"
    );
    let resp = read_to_end(&mut raw).await;
    assert!(resp.is_empty() || resp.starts_with(b"HTTP/1.1 408"));
}

#[tokio::test]
async fn client_handshake_timeout_and_bad_status() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(s);
    });
    let client = ClientBuilder::new()
        .config(Config::default().handshake_timeout(Duration::from_millis(200)));
    let err = client.connect(&format!("ws://{addr}/")).await.unwrap_err();
    assert!(
        matches!(err, Error::Handshake(HandshakeError::Timeout)),
        "{err}"
    );
    silent.abort();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        s.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
    });
    let err = ClientBuilder::new()
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Handshake(HandshakeError::Status(s)) if s == 403),
        "{err}"
    );
}

/// Handshakes on a raw socket, sends `frames`, and returns what the server
/// wrote after its 101 response (until it closed the connection) and the
/// server's error.
async fn send_raw_frames(frames: &[u8], config: Config) -> (Vec<u8>, Error) {
    let (mut raw, task) = raw_server(ServerBuilder::new().config(config)).await;
    raw.write_all(GOOD.as_bytes()).await.unwrap();
    let mut ws = task.await.unwrap().unwrap();
    raw.write_all(frames).await.unwrap();
    let err = loop {
        match tokio::time::timeout(T, ws.recv()).await.unwrap() {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("no error"),
        }
    };
    let out = read_to_end(&mut raw).await;
    let body = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (out[body..].to_vec(), err)
}

#[tokio::test]
async fn bad_frames_over_a_socket_get_close_codes_and_the_socket_closes() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![0x81, 0x02, b'h', b'i'], 1002), // unmasked
        (client_frame(0xe1, b"x"), 1002),     // RSV bits
        (client_frame(0x8f, b""), 1002),      // reserved opcode
        (client_frame(0x81, b"\xff"), 1007),  // bad UTF-8
        (client_frame(0x88, &[0x03]), 1002),  // 1-byte close
        (client_frame(0x88, &1005u16.to_be_bytes()), 1002),
        (client_frame(0x82, &[0u8; 2000]), 1009), // over max_message_size (1000)
    ];
    for (frames, code) in cases {
        let (out, err) = send_raw_frames(&frames, Config::default().max_message_size(1000)).await;
        assert_eq!(
            out,
            [0x88, 0x02, (code >> 8) as u8, code as u8],
            "code {code}"
        );
        match err {
            Error::Protocol(p) => assert_eq!(p.close_code().as_u16(), code),
            other => panic!("{other}"),
        }
    }
}

#[tokio::test]
async fn abrupt_disconnect_is_abnormal_closure() {
    let (mut raw, task) = raw_server(ServerBuilder::new()).await;
    raw.write_all(GOOD.as_bytes()).await.unwrap();
    let mut ws = task.await.unwrap().unwrap();
    raw.write_all(&client_frame(0x81, b"hi")).await.unwrap();
    // Read the 101 first: closing a socket with unread input sends a reset.
    let mut head = vec![0u8; 129];
    raw.read_exact(&mut head).await.unwrap();
    assert!(
        head.ends_with(b"\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    drop(raw);
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hi"));
    assert!(matches!(ws.recv().await, Some(Err(Error::AbnormalClosure))));
    assert!(ws.recv().await.is_none());
}

#[tokio::test]
async fn close_times_out_when_the_peer_never_answers() {
    let (mut raw, task) = raw_server(
        ServerBuilder::new().config(Config::default().close_timeout(Duration::from_millis(300))),
    )
    .await;
    raw.write_all(GOOD.as_bytes()).await.unwrap();
    let mut ws = task.await.unwrap().unwrap();
    let started = std::time::Instant::now();
    tokio::time::timeout(T, ws.close(CloseCode::NORMAL, ""))
        .await
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
    drop(raw);
}

#[tokio::test]
async fn write_buffer_applies_backpressure() {
    // 4 KiB pipe, 64 KiB high-water mark, and a client that never reads.
    let server = ServerBuilder::new().config(Config::default().write_buffer_size(64 << 10));
    let (_c, mut s) = duplex_pair(ClientBuilder::new(), server).await;
    let mut fed = 0usize;
    let msg = Message::binary(vec![0u8; 16 << 10]);
    let r = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            s.feed(msg.clone()).await.unwrap();
            fed += 1;
        }
    })
    .await;
    assert!(r.is_err(), "feed never waited");
    // Bounded: at most the high-water mark plus one message plus the pipe.
    assert!(
        s.buffered_amount() <= (64 << 10) + (16 << 10) + 16,
        "{}",
        s.buffered_amount()
    );
    assert!(fed < 10, "{fed} messages accepted");
}

#[tokio::test]
async fn keepalive_pings_an_idle_peer() {
    let server = ServerBuilder::new()
        .config(Config::default().keepalive_interval(Some(Duration::from_millis(100))));
    let (mut c, mut s) = tcp_pair(ClientBuilder::new(), server).await;
    let srv = tokio::spawn(async move {
        let mut pongs = 0;
        while let Some(Ok(m)) = s.recv().await {
            if matches!(m, Message::Pong(_)) {
                pongs += 1;
                if pongs == 2 {
                    s.close(CloseCode::NORMAL, "").await.unwrap();
                    break;
                }
            }
        }
        pongs
    });
    let mut pings = 0;
    while let Some(Ok(m)) = tokio::time::timeout(T, c.recv()).await.unwrap() {
        if matches!(m, Message::Ping(_)) {
            pings += 1;
        }
    }
    assert!(pings >= 2);
    assert_eq!(tokio::time::timeout(T, srv).await.unwrap().unwrap(), 2);
}

#[tokio::test]
async fn message_limit_over_socket_reports_1009_to_the_sender() {
    let server = ServerBuilder::new().config(Config::default().max_message_size(1000));
    let (mut c, mut s) = tcp_pair(ClientBuilder::new(), server).await;
    let srv = tokio::spawn(async move {
        let mut last = None;
        while let Some(r) = s.recv().await {
            last = Some(r);
        }
        last
    });
    c.send(Message::binary(vec![0u8; 1000])).await.unwrap();
    c.send(Message::binary(vec![0u8; 1001])).await.unwrap();
    let close = loop {
        match tokio::time::timeout(T, c.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Close(f) => break f,
            _ => continue,
        }
    };
    assert_eq!(close.unwrap().code, CloseCode::MESSAGE_TOO_BIG);
    let last = tokio::time::timeout(T, srv)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            last,
            Err(Error::Protocol(ProtocolError::MessageTooLarge {
                max: 1000
            }))
        ),
        "{last:?}"
    );
}

#[tokio::test]
async fn upgrade_from_a_parsed_request() {
    // What a hyper/axum handler does: validate the parsed request, send the
    // 101 itself, then hand the upgraded transport over.
    let req = http::Request::builder()
        .uri("/chat")
        .header("host", "localhost")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "chat")
        .body(())
        .unwrap();
    let (resp, pending) = ServerBuilder::new()
        .protocols(&["chat"])
        .upgrade(&req)
        .unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
    let (a, b) = tokio::io::duplex(1 << 16);
    let mut ws = pending.into_websocket(b);
    let mut client = weft_core::WebSocket::from_parts(
        a,
        weft_core::Role::Client,
        Default::default(),
        None,
        &Config::default(),
        Default::default(),
    );
    client.send(Message::text("upgraded")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("upgraded"));
    assert_eq!(ws.protocol(), Some("chat"));
}

/// Counts write calls on a transport.
struct CountingIo<S> {
    inner: S,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountingIo<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountingIo<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_with_one_write() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut server = weft_core::WebSocket::from_parts(
        CountingIo {
            inner: b,
            writes: writes.clone(),
        },
        weft_core::Role::Server,
        Default::default(),
        None,
        &Config::default(),
        Default::default(),
    );
    let mut client = weft_core::WebSocket::from_parts(
        a,
        weft_core::Role::Client,
        Default::default(),
        None,
        &Config::default(),
        Default::default(),
    );
    for i in 0..16 {
        client.feed(Message::text(format!("m{i}"))).await.unwrap();
    }
    client.flush().await.unwrap();
    // Let all 16 frames sit in the server's transport before it reads.
    tokio::task::yield_now().await;
    for _ in 0..16 {
        let m = server.recv().await.unwrap().unwrap();
        server.feed(m).await.unwrap();
    }
    let before = writes.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(before, 0, "nothing written while input was pending");
    let next = tokio::time::timeout(Duration::from_millis(50), server.recv()).await;
    assert!(next.is_err(), "no more input");
    assert_eq!(
        writes.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one write for 16 echoes"
    );
    for i in 0..16 {
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text(format!("m{i}"))
        );
    }
}

/// Receives `n` binary messages on `s`, keeping every `keep`-th payload
/// alive (the rest are dropped at once), and returns the payloads' start
/// addresses and the kept payloads.
async fn recv_payloads<S>(
    s: &mut weft_core::WebSocket<S>,
    n: usize,
    keep: usize,
) -> (Vec<usize>, Vec<Bytes>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut addrs = Vec::new();
    let mut kept = Vec::new();
    for i in 0..n {
        let m = tokio::time::timeout(T, s.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Binary(b) = m else {
            panic!("expected binary, got {m:?}")
        };
        addrs.push(b.as_ptr() as usize);
        if keep != 0 && i % keep == 0 {
            kept.push(b);
        }
    }
    (addrs, kept)
}

#[tokio::test]
async fn large_payloads_kept_by_the_application_are_never_overwritten() {
    // Pipelined large messages (several per read), with every other payload
    // held while later ones are read: a held payload's buffer is not reused,
    // and every payload keeps its bytes.
    let (mut c, mut s) = tcp_pair(ClientBuilder::new(), ServerBuilder::new()).await;
    let sizes = [
        9000usize,
        70_000,
        1 << 20,
        20_000,
        (1 << 20) + 7,
        65_536,
        300_000,
        1 << 20,
    ];
    let msgs: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| (0..n).map(|i| (i * 7 + k * 13) as u8).collect())
        .collect();
    let expect = msgs.clone();
    let client = tokio::spawn(async move {
        for round in 0..3 {
            for m in &msgs {
                c.feed(Message::binary(m.clone())).await.unwrap();
            }
            c.flush().await.unwrap();
            let _ = round;
        }
        c
    });
    let (_, kept) = recv_payloads(&mut s, 3 * sizes.len(), 2).await;
    // Kept: messages 0, 2, 4, ... of the 24 (every other one).
    for (j, b) in kept.iter().enumerate() {
        let i = (2 * j) % sizes.len();
        assert_eq!(&b[..], &expect[i][..], "kept payload {j} (message {i})");
    }
    let mut c = client.await.unwrap();
    c.close(CloseCode::NORMAL, "").await.ok();
}
