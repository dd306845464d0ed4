//! `WebSocket::feed_binary_prefixed`: a prefix and a shared payload sent as
//! one binary message, both roles, over an in-memory pipe.

use bytes::Bytes;
use weft_core::{Config, Error, Message, Role, WebSocket};

fn pair() -> (
    WebSocket<tokio::io::DuplexStream>,
    WebSocket<tokio::io::DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let ws = |io, role| {
        WebSocket::from_parts(
            io,
            role,
            Default::default(),
            None,
            &Config::default(),
            Default::default(),
        )
    };
    (ws(a, Role::Client), ws(b, Role::Server))
}

#[tokio::test]
async fn prefixed_messages_arrive_joined_in_both_directions() {
    let (mut client, mut server) = pair();
    for len in [0usize, 10, 5_000, 200_000] {
        let body: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
        let joined = Message::binary([&[0x05, 0x82][..], &body].concat());
        // Server to client: large payloads go out by reference. The pipe is
        // smaller than the message, so read while writing.
        let payload = Bytes::from(body.clone());
        let (sent, got) = tokio::join!(
            async {
                server.feed_binary_prefixed(&[0x05, 0x82], payload).await?;
                server.flush().await
            },
            client.recv()
        );
        sent.unwrap();
        assert_eq!(got.unwrap().unwrap(), joined, "server -> client, {len}");
        // Client to server: masked on the way, the caller's bytes untouched.
        let payload = Bytes::from(body.clone());
        let (sent, got) = tokio::join!(
            async {
                client
                    .feed_binary_prefixed(&[0x05, 0x82], payload.clone())
                    .await?;
                client.flush().await?;
                Ok::<_, Error>(payload)
            },
            server.recv()
        );
        assert_eq!(&sent.unwrap()[..], &body[..], "payload unchanged");
        assert_eq!(got.unwrap().unwrap(), joined, "client -> server, {len}");
    }
    // After the closing handshake started, refused like any send.
    let (closed, _) = tokio::join!(server.close(weft_core::CloseCode::NORMAL, ""), async {
        while client.recv().await.is_some() {}
    });
    closed.unwrap();
    assert!(matches!(
        server.start_send_binary_prefixed(b"x", Bytes::new()),
        Err(Error::Closed)
    ));
}
