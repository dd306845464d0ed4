//! Variant A under the tokio API: weft client and server over an
//! in-memory pipe and over a 127.0.0.1 socket, variant A and B endpoints
//! refusing each other at negotiation, plain clients of a variant A server,
//! and a hand-written peer checking the physical bytes of a failure
//! (DropChannel(0) then Close 1011) and of a protocol error (Close 1002).

use bytes::{Bytes, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use weft_core::handshake::ServerOptions;
use weft_core::proto::mask::apply_mask;
use weft_core::proto::{FrameHeader, HeaderParse, MAX_HEADER_LEN};
use weft_core::{ClientBuilder, CloseCode, Message, OpCode, Rsv, ServerBuilder};
use weft_mux::{
    Accepted, ChannelEnd, MuxClient, MuxConfig, MuxError, MuxServerBuilder, MuxVariant,
};

const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within {LIMIT:?}"))
}

fn config() -> MuxConfig {
    // Small inner frames, so large messages are cut into physical fragments
    // that interleave with other channels'.
    MuxConfig::default()
        .variant(MuxVariant::A)
        .max_inner_frame(4096)
}

fn server(config: MuxConfig) -> MuxServerBuilder {
    MuxServerBuilder::new(ServerBuilder::new(), config, ServerOptions::default())
}

/// Serves one connection: every channel echoes its data messages; a plain
/// client is echoed too.
async fn echo(
    builder: MuxServerBuilder,
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
) {
    match builder.accept(stream).await {
        Ok(Accepted::Mux(mut mux)) => {
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
        }
        Ok(Accepted::Plain(mut ws)) => {
            while let Some(Ok(m)) = ws.recv().await {
                if m.is_data() && ws.send(m).await.is_err() {
                    break;
                }
            }
        }
        Err(_) => {}
    }
}

fn payload(ch: usize, i: usize) -> Vec<u8> {
    (0..[0, 1, 4095, 4097, 70_000, 200_000][(ch + i) % 6])
        .map(|k| (k * 31 + ch * 7 + i) as u8)
        .collect()
}

/// Opens `channels` channels besides channel 1 and echoes `rounds`
/// messages of several sizes on each, all at once.
async fn exercise(client: &MuxClient, channels: usize, rounds: usize) {
    let mut implicit = client.implicit_channel();
    implicit.send(Message::text("héllo on 1")).await.unwrap();
    assert_eq!(
        implicit.recv().await.unwrap().unwrap(),
        Message::text("héllo on 1")
    );
    let mut tasks = Vec::new();
    for c in 0..channels {
        let mut ch = client
            .open_channel(&format!("/c{c}"), &[], vec![])
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            for i in 0..rounds {
                let msg = if i % 2 == 0 {
                    Message::binary(payload(c, i))
                } else {
                    Message::text("é".repeat(payload(c, i).len() / 2))
                };
                ch.send(msg.clone()).await.unwrap();
                assert_eq!(
                    ch.recv().await.unwrap().unwrap(),
                    msg,
                    "channel {c} round {i}"
                );
            }
            ch.close(CloseCode::NORMAL, "done").await.unwrap();
            assert!(
                matches!(ch.end(), Some(ChannelEnd::Closed(_))),
                "{:?}",
                ch.end()
            );
        }));
    }
    for t in tasks {
        bounded("channel echo", t).await.unwrap();
    }
    assert_eq!(client.channel_count(), 1);
}

#[tokio::test]
async fn variant_a_tokio_over_an_in_memory_pipe() {
    let (a, b) = tokio::io::duplex(1 << 14);
    tokio::spawn(echo(server(config()), b));
    let client = bounded(
        "connect",
        MuxClient::connect_on(a, "ws://localhost/mux", config()),
    )
    .await
    .unwrap();
    bounded("echo", exercise(&client, 8, 6)).await;
    client.close();
}

#[tokio::test]
async fn variant_a_tokio_over_a_loopback_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let builder = server(config());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = builder.tune_tcp(&tcp);
            tokio::spawn(echo(builder.clone(), tcp));
        }
    });
    let client = bounded(
        "connect",
        MuxClient::connect(format!("ws://{addr}/mux"), config()),
    )
    .await
    .unwrap();
    bounded("echo", exercise(&client, 20, 4)).await;
    // Closing the physical connection ends the implicit channel.
    let mut implicit = client.implicit_channel();
    client.close();
    assert!(bounded("end", implicit.recv()).await.is_none());
}

async fn refused(client_variant: MuxVariant, server_variant: MuxVariant) {
    let (a, b) = tokio::io::duplex(1 << 14);
    let builder = server(MuxConfig::default().variant(server_variant));
    let served = tokio::spawn(async move {
        match builder.accept(b).await {
            Ok(Accepted::Plain(ws)) => Some(ws.extensions().to_vec()),
            _ => None,
        }
    });
    let r = bounded(
        "connect",
        MuxClient::connect_on(
            a,
            "ws://localhost/mux",
            MuxConfig::default().variant(client_variant),
        ),
    )
    .await;
    let Err(MuxError::WebSocket(e)) = r else {
        panic!("{client_variant:?} client accepted by a {server_variant:?} server");
    };
    assert!(e.to_string().contains("mux"), "{e}");
    // The server saw a plain client: no mux, no extension at all.
    assert_eq!(bounded("accept", served).await.unwrap(), Some(vec![]));
}

#[tokio::test]
async fn variant_a_client_is_refused_by_a_variant_b_server() {
    refused(MuxVariant::A, MuxVariant::B).await;
}

#[tokio::test]
async fn variant_b_client_is_refused_by_a_variant_a_server() {
    refused(MuxVariant::B, MuxVariant::A).await;
}

#[tokio::test]
async fn variant_a_server_still_serves_plain_clients() {
    let (a, b) = tokio::io::duplex(1 << 14);
    tokio::spawn(echo(server(config()), b));
    let (mut ws, _) = bounded(
        "connect",
        ClientBuilder::new().connect_on(a, "ws://localhost/plain"),
    )
    .await
    .unwrap();
    ws.send(Message::text("plain")).await.unwrap();
    assert_eq!(
        bounded("echo", ws.recv()).await.unwrap().unwrap(),
        Message::text("plain")
    );
}

#[tokio::test]
async fn variant_a_start_over_a_websocket_is_refused() {
    let (a, b) = tokio::io::duplex(1 << 14);
    tokio::spawn(echo(server(MuxConfig::default()), b));
    let (ws, _) = ClientBuilder::new()
        .extension(weft_mux::MuxFactory { quota: 0 })
        .connect_on(a, "ws://localhost/mux")
        .await
        .unwrap();
    assert!(matches!(
        MuxClient::start(ws, "localhost", config()),
        Err(MuxError::WebSocket(_))
    ));
}

/// A hand-written variant A client: the handshake, masked frames out,
/// frames in.
struct RawPeer {
    io: DuplexStream,
    buf: BytesMut,
}

impl RawPeer {
    async fn connect() -> RawPeer {
        RawPeer::connect_to(server(config())).await
    }

    async fn connect_to(builder: MuxServerBuilder) -> RawPeer {
        let (a, b) = tokio::io::duplex(1 << 14);
        tokio::spawn(echo(builder, b));
        let mut io = a;
        io.write_all(
            b"GET /mux HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: x-google-mux\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = BytesMut::new();
        let end = loop {
            bounded("response", io.read_buf(&mut buf)).await.unwrap();
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8(buf.split_to(end).to_vec()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-extensions: x-google-mux"),
            "{head}"
        );
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        RawPeer { io, buf }
    }

    async fn send(&mut self, opcode: OpCode, payload: &[u8], masked: bool) {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = FrameHeader {
            fin: true,
            rsv: Rsv::empty(),
            opcode,
            mask: masked.then_some(key),
            payload_len: payload.len() as u64,
        }
        .encode(&mut head);
        let mut body = payload.to_vec();
        if masked {
            apply_mask(&mut body, key);
        }
        self.io.write_all(&head[..n]).await.unwrap();
        self.io.write_all(&body).await.unwrap();
    }

    async fn recv(&mut self) -> Option<(OpCode, Bytes)> {
        loop {
            if let HeaderParse::Complete(h, n) = FrameHeader::parse(&self.buf).unwrap() {
                assert!(h.mask.is_none(), "a server frame is masked");
                let total = n + h.payload_len as usize;
                if self.buf.len() >= total {
                    let mut f = self.buf.split_to(total);
                    return Some((h.opcode, f.split_off(n).freeze()));
                }
            }
            if bounded("frame", self.io.read_buf(&mut self.buf))
                .await
                .unwrap()
                == 0
            {
                return None;
            }
        }
    }
}

#[tokio::test]
async fn variant_a_physical_failure_on_the_wire() {
    let mut peer = RawPeer::connect().await;
    // Channel 1 echoes a logical text frame: the §3.3 `81 06 01 'Hello'`.
    peer.send(OpCode::Text, b"\x01Hello", true).await;
    assert_eq!(
        peer.recv().await.unwrap(),
        (OpCode::Text, Bytes::from_static(b"\x01Hello"))
    );
    // A physical Ping is a physical Ping: answered, not taken for mux data.
    peer.send(OpCode::Ping, b"p", true).await;
    assert_eq!(
        peer.recv().await.unwrap(),
        (OpCode::Pong, Bytes::from_static(b"p"))
    );
    // FlowControl (opcode 2) is not variant A: DropChannel(0, M=1, "2004"),
    // then Close 1011.
    peer.send(OpCode::Binary, &[0x00, 0x01, 0x40, 0x00], true)
        .await;
    assert_eq!(
        peer.recv().await.unwrap(),
        (OpCode::Binary, Bytes::from_static(b"\x00\x00\x70\x042004"))
    );
    assert_eq!(
        peer.recv().await.unwrap(),
        (OpCode::Close, Bytes::from_static(&[0x03, 0xf3]))
    );
}

#[tokio::test]
async fn variant_a_unmasked_client_frame_closes_with_1002() {
    let mut peer = RawPeer::connect().await;
    peer.send(OpCode::Text, b"\x01Hello", false).await;
    assert_eq!(
        peer.recv().await.unwrap(),
        (OpCode::Close, Bytes::from_static(&[0x03, 0xea]))
    );
    assert_eq!(peer.recv().await, None);
}

#[tokio::test]
async fn variant_a_frame_size_limit_closes_with_1009() {
    let physical = ServerBuilder::new().config(weft_core::Config::default().max_frame_size(1000));
    let builder = MuxServerBuilder::new(physical, config(), ServerOptions::default());
    let mut peer = RawPeer::connect_to(builder).await;
    // At the limit the frame is taken (and echoed); one past it is refused.
    let mut at = vec![b'a'; 1000];
    at[0] = 0x01;
    peer.send(OpCode::Binary, &at, true).await;
    assert_eq!(
        peer.recv().await.unwrap(),
        (OpCode::Binary, Bytes::from(at.clone()))
    );
    at.push(b'b');
    peer.send(OpCode::Binary, &at, true).await;
    assert_eq!(
        peer.recv().await.unwrap(),
        (OpCode::Close, Bytes::from_static(&[0x03, 0xf1]))
    );
    assert_eq!(peer.recv().await, None);
}

/// A variant A request of exactly `size` bytes (padded with a header).
fn request_of(size: usize) -> Vec<u8> {
    let head = "GET /mux HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: x-google-mux\r\nX-Pad: ";
    let pad = size - head.len() - 4;
    format!("{head}{}\r\n\r\n", "a".repeat(pad)).into_bytes()
}

/// Sends `request` to a variant A server and returns the status line of
/// its answer and what `accept` returned.
async fn answer(builder: MuxServerBuilder, request: Vec<u8>, stall: bool) -> (String, bool) {
    let (mut a, b) = tokio::io::duplex(1 << 16);
    let accepted = tokio::spawn(async move { builder.accept(b).await.is_ok() });
    if stall {
        a.write_all(&request[..request.len() / 2]).await.unwrap();
    } else {
        a.write_all(&request).await.unwrap();
    }
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 1024];
        let n = bounded("answer", a.read(&mut chunk)).await.unwrap();
        buf.extend_from_slice(&chunk[..n]);
        if n == 0 || buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text.lines().next().unwrap_or("").to_owned();
    (status, bounded("accept", accepted).await.unwrap())
}

#[tokio::test]
async fn variant_a_handshake_size_limit_at_and_past_it() {
    let max = weft_core::Config::default().max_handshake_size;
    let (status, ok) = answer(server(config()), request_of(max), false).await;
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert!(ok);
    let (status, ok) = answer(server(config()), request_of(max + 1), false).await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    assert!(!ok);
}

#[tokio::test]
async fn variant_a_handshake_timeout_answers_408() {
    let physical = ServerBuilder::new()
        .config(weft_core::Config::default().handshake_timeout(Duration::from_millis(200)));
    let builder = MuxServerBuilder::new(physical, config(), ServerOptions::default());
    let started = std::time::Instant::now();
    let (status, ok) = answer(builder, request_of(300), true).await;
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(!ok);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn variant_a_connect_refuses_wss() {
    let r = MuxClient::connect("wss://127.0.0.1:1/", config()).await;
    let Err(MuxError::WebSocket(e)) = r else {
        panic!("wss accepted");
    };
    assert!(e.to_string().contains("connect_on"), "{e}");
}

async fn pair() -> (MuxClient, weft_mux::MuxServer) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let builder = server(config());
    let srv = tokio::spawn(async move { builder.accept(b).await });
    let client = MuxClient::connect_on(a, "ws://localhost/mux", config())
        .await
        .unwrap();
    let Ok(Accepted::Mux(server)) = srv.await.unwrap() else {
        panic!("mux accepted");
    };
    (client, server)
}

#[tokio::test]
async fn variant_a_dropping_every_handle_closes_the_connection() {
    // The client's handles.
    let (client, mut server) = pair().await;
    let _implicit = server.next_channel().await.unwrap().accept().unwrap();
    drop(client);
    let end = tokio::time::timeout(Duration::from_secs(5), server.next_channel()).await;
    assert!(
        matches!(end, Ok(None)),
        "the server's connection stayed open"
    );
    // The server's handles.
    let (client, server) = pair().await;
    let mut implicit = client.implicit_channel();
    drop(server);
    let end = tokio::time::timeout(Duration::from_secs(5), implicit.recv()).await;
    assert!(
        matches!(end, Ok(None | Some(Err(_)))),
        "the client's channel did not end: {end:?}"
    );
}

#[tokio::test]
async fn variant_a_drop_channel_and_rejection_through_the_tokio_api() {
    let (client, mut server) = pair().await;
    let serve = tokio::spawn(async move {
        // Channel 1, then /yes (accepted, then dropped), then /no (rejected).
        let _one = server.next_channel().await.unwrap().accept().unwrap();
        let yes = server.next_channel().await.unwrap();
        assert_eq!(yes.request().uri().path(), "/yes");
        let yes = yes.accept().unwrap();
        let no = server.next_channel().await.unwrap();
        assert_eq!(no.request().uri().path(), "/no");
        no.reject(http::StatusCode::NOT_FOUND).unwrap();
        yes.drop_channel(weft_mux::DropCode(3000));
        server
    });
    let mut yes = client.open_channel("/yes", &[], vec![]).await.unwrap();
    let no = client.open_channel("/no", &[], vec![]).await;
    assert!(
        matches!(no, Err(MuxError::Rejected(s)) if s == 404),
        "{no:?}"
    );
    assert!(bounded("drop", yes.recv()).await.is_none());
    assert!(
        matches!(
            yes.end(),
            Some(ChannelEnd::DroppedByPeer(Some((
                weft_mux::DropCode(3000),
                _
            ))))
        ),
        "{:?}",
        yes.end()
    );
    let _server = bounded("serve", serve).await.unwrap();
}
