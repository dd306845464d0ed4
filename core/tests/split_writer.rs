//! The split writer sends what the unsplit `WebSocket` can: messages with
//! extension hints (`feed_with`) and streamed messages fragment by fragment
//! (`feed_fragment` / `send_fragment`). Two endpoints over in-memory pipes;
//! where the wire bytes matter, the peer is a raw client.

use bytes::Bytes;
use std::time::Duration;
use test_support::{Toy, ToyFactory, duplex_pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use weft_core::ext::SendHints;
use weft_core::proto::SendError;
use weft_core::{ClientBuilder, Error, Message, OpCode, ServerBuilder};

const T: Duration = Duration::from_secs(10);

/// A server `WebSocket` and the raw client end of its pipe, after a
/// handshake offering `extensions`.
async fn raw_client(
    server: ServerBuilder,
    extensions: &str,
) -> (weft_core::WebSocket<DuplexStream>, DuplexStream) {
    let (mut raw, b) = tokio::io::duplex(1 << 16);
    let srv = tokio::spawn(async move { server.accept(b).await });
    let mut request = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        .to_owned();
    if !extensions.is_empty() {
        request.push_str(&format!("Sec-WebSocket-Extensions: {extensions}\r\n"));
    }
    request.push_str("\r\n");
    raw.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(raw.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    (srv.await.unwrap().unwrap(), raw)
}

async fn read_exact(raw: &mut DuplexStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    tokio::time::timeout(T, raw.read_exact(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn feed_with_passes_hints_to_the_extensions() {
    let server = ServerBuilder::new().extension(ToyFactory::new(Toy::Xor));
    let (ws, mut raw) = raw_client(server, "x-xor").await;
    let (_reader, mut writer) = ws.split();
    // Default hints: x-xor transforms the message and sets RSV2.
    writer
        .feed_with(Message::binary(&b"ab"[..]), SendHints::default())
        .await
        .unwrap();
    writer.flush().await.unwrap();
    assert_eq!(
        read_exact(&mut raw, 4).await,
        [0xa2, 0x02, b'a' ^ 0x5a, b'b' ^ 0x5a]
    );
    // compress = false: sent as is.
    writer
        .feed_with(Message::binary(&b"ab"[..]), SendHints::uncompressed())
        .await
        .unwrap();
    writer.flush().await.unwrap();
    assert_eq!(read_exact(&mut raw, 4).await, [0x82, 0x02, b'a', b'b']);
}

#[tokio::test]
async fn split_writer_streams_fragments_on_the_wire() {
    let (ws, mut raw) = raw_client(ServerBuilder::new(), "").await;
    let (_reader, mut writer) = ws.split();
    writer
        .feed_fragment(OpCode::Text, Bytes::from_static(b"hel"), false)
        .await
        .unwrap();
    // Control frames may interleave with a streamed message...
    writer
        .feed(Message::Ping(Bytes::from_static(b"p")))
        .await
        .unwrap();
    // ...data messages may not.
    let err = writer.feed(Message::text("x")).await.unwrap_err();
    assert!(
        matches!(err, Error::Send(SendError::FragmentOrder)),
        "{err:?}"
    );
    writer
        .send_fragment(OpCode::Continuation, Bytes::from_static(b"lo"), true)
        .await
        .unwrap();
    assert_eq!(
        read_exact(&mut raw, 12).await,
        [
            0x01, 0x03, b'h', b'e', b'l', // Text, no FIN
            0x89, 0x01, b'p', // Ping
            0x80, 0x02, b'l', b'o', // Continuation, FIN
        ]
    );
    // The message is complete: a new one may start.
    writer.send(Message::text("x")).await.unwrap();
    assert_eq!(read_exact(&mut raw, 3).await, [0x81, 0x01, b'x']);
}

#[tokio::test]
async fn split_halves_stream_a_message_to_a_weft_peer() {
    let (mut c, s) = duplex_pair(ClientBuilder::new(), ServerBuilder::new()).await;
    let (mut reader, mut writer) = s.split();
    let streamer = tokio::spawn(async move {
        writer
            .send_fragment(OpCode::Binary, Bytes::from_static(b"one "), false)
            .await
            .unwrap();
        writer
            .send_fragment(OpCode::Continuation, Bytes::from_static(b"two "), false)
            .await
            .unwrap();
        writer
            .send_fragment(OpCode::Continuation, Bytes::from_static(b"three"), true)
            .await
            .unwrap();
        writer
    });
    let got = tokio::time::timeout(T, c.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::binary(&b"one two three"[..]));
    let _writer = streamer.await.unwrap();
    // The reader half still works while the writer streamed.
    c.send(Message::text("back")).await.unwrap();
    assert_eq!(reader.recv().await.unwrap().unwrap(), Message::text("back"));
}

#[tokio::test]
async fn unsplit_send_fragment_flushes() {
    let (mut c, mut s) = duplex_pair(ClientBuilder::new(), ServerBuilder::new()).await;
    s.send_fragment(OpCode::Text, Bytes::from_static(b"a"), false)
        .await
        .unwrap();
    s.send_fragment(OpCode::Continuation, Bytes::from_static(b"b"), true)
        .await
        .unwrap();
    let got = tokio::time::timeout(T, c.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text("ab"));
}
