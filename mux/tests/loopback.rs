//! The tokio API over real loopback sockets: a mux server that echoes on
//! every channel, a mux client with many channels, per-channel
//! permessage-deflate, and a plain client on the same server.

use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use weft_core::ext::ExtensionFactory;
use weft_core::handshake::ServerOptions;
use weft_core::{CloseCode, Message};
use weft_extensions::PerMessageDeflate;
use weft_mux::{Accepted, ChannelEnd, DropCode, MuxClient, MuxConfig, MuxError, MuxServerBuilder};

const T: Duration = Duration::from_secs(20);

/// Starts an echo server; returns its address.
async fn echo_server(config: MuxConfig) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plain = weft_core::ServerBuilder::new().extension(rfc());
    let channel_options = ServerOptions::default().extension(rfc());
    let server = MuxServerBuilder::new(plain, config, channel_options);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let server = server.clone();
            server.tune_tcp(&stream).unwrap();
            tokio::spawn(async move {
                match server.accept(stream).await {
                    Ok(Accepted::Plain(mut ws)) => {
                        while let Some(Ok(m)) = ws.recv().await {
                            if m.is_data() && ws.send(m).await.is_err() {
                                break;
                            }
                        }
                    }
                    Ok(Accepted::Mux(mut mux)) => {
                        while let Some(incoming) = mux.next_channel().await {
                            if incoming.request().uri().path() == "/reject" {
                                let _ = incoming.reject(http::StatusCode::NOT_FOUND);
                                continue;
                            }
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
                    Err(_) => {}
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn many_channels_echo_interleaved() {
    let config = MuxConfig::default()
        .receive_window(16 << 10)
        .slot_quota(16 << 10)
        .implicit_quota(16 << 10);
    let addr = echo_server(config.clone()).await;
    let client = MuxClient::connect(&format!("ws://{addr}/"), config)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for k in 0..20 {
        let ch = tokio::time::timeout(T, client.open_channel(&format!("/c{k}"), &[], vec![]))
            .await
            .unwrap()
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut ch = ch;
            for i in 0..10usize {
                // Sizes up to 100 KB: several times the 16 KiB quota.
                let size = (i * 7919 + k * 131) % 100_000;
                let msg = if i % 2 == 0 {
                    Message::binary(vec![(k + i) as u8; size])
                } else {
                    Message::text("ü".repeat(size / 2))
                };
                ch.send(msg.clone()).await.unwrap();
                let echo = tokio::time::timeout(T, ch.recv())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                assert_eq!(echo, msg, "channel {k} message {i}");
            }
            ch.close(CloseCode::NORMAL, "").await.unwrap();
        }));
    }
    for t in tasks {
        tokio::time::timeout(T, t).await.unwrap().unwrap();
    }
    // Channel 1 still works.
    let mut one = client.implicit_channel();
    one.send(Message::text("on channel 1")).await.unwrap();
    assert_eq!(
        tokio::time::timeout(T, one.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        Message::text("on channel 1")
    );
    client.close();
}

#[tokio::test]
async fn per_channel_deflate_reject_and_drop() {
    let addr = echo_server(MuxConfig::default()).await;
    let client = MuxClient::connect(&format!("ws://{addr}/"), MuxConfig::default())
        .await
        .unwrap();
    let deflate: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(rfc())];
    let mut z = client.open_channel("/z", &[], deflate).await.unwrap();
    assert_eq!(
        weft_core::ext::format_extensions(z.extensions()),
        "permessage-deflate"
    );
    let text = "compressible ".repeat(10_000);
    z.send(Message::text(text.as_str())).await.unwrap();
    assert_eq!(
        tokio::time::timeout(T, z.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        Message::text(text.as_str())
    );

    let err = client
        .open_channel("/reject", &[], vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(err, weft_mux::MuxError::Rejected(s) if s == 404),
        "{err}"
    );

    let mut d = client.open_channel("/d", &[], vec![]).await.unwrap();
    d.drop_channel(DropCode::NORMAL);
    assert!(tokio::time::timeout(T, d.recv()).await.unwrap().is_none());
    // Others are unaffected.
    z.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        tokio::time::timeout(T, z.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        Message::text("still here")
    );
    client.close();
}

#[tokio::test]
async fn plain_clients_still_work_with_compression() {
    let addr = echo_server(MuxConfig::default()).await;
    let (mut ws, _) = weft_core::ClientBuilder::new()
        .extension(rfc())
        .connect(&format!("ws://{addr}/plain"))
        .await
        .unwrap();
    assert_eq!(
        weft_core::ext::format_extensions(ws.extensions()),
        "permessage-deflate"
    );
    ws.send(Message::text("plain")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("plain"));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

#[tokio::test]
async fn a_client_asking_for_mux_and_compression_gets_only_mux() {
    let addr = echo_server(MuxConfig::default()).await;
    let (ws, _) = weft_core::ClientBuilder::new()
        .extension(weft_mux::MuxFactory { quota: 1000 })
        .extension(rfc())
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(weft_core::ext::format_extensions(ws.extensions()), "mux");
}

/// permessage-deflate with the RFC's default 32 KiB windows (the crate's
/// default preset uses 8 KiB windows), so answers and vectors are the RFC's.
fn rfc() -> PerMessageDeflate {
    PerMessageDeflate::new()
        .server_max_window_bits(weft_extensions::WindowBits::MAX)
        .client_max_window_bits(weft_extensions::WindowBits::MAX)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn tune_tcp_sets_notsent_lowat() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let lowat = |s: &tokio::net::TcpStream| socket2::SockRef::from(s).tcp_notsent_lowat().unwrap();
    let untouched = lowat(&stream);
    let server = |n| {
        MuxServerBuilder::new(
            weft_core::ServerBuilder::new(),
            MuxConfig::default().notsent_lowat(n),
            ServerOptions::default(),
        )
    };
    server(None).tune_tcp(&stream).unwrap();
    assert_eq!(lowat(&stream), untouched);
    server(Some(20_000)).tune_tcp(&stream).unwrap();
    assert_eq!(lowat(&stream), 20_000);
}

/// A mux server whose plain builder sets the policy: an Origin check that
/// refuses `http://evil.example`, and the subprotocols `chat` and `v2`;
/// its channel options set only extensions. Each channel first sends its
/// subprotocol as the server side sees it, then echoes.
async fn policy_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plain = weft_core::ServerBuilder::new()
        .origin_check(|o| o != Some("http://evil.example"))
        .protocols(&["chat", "v2"]);
    let server = MuxServerBuilder::new(
        plain,
        MuxConfig::default(),
        ServerOptions::default().extension(rfc()),
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let server = server.clone();
            tokio::spawn(async move {
                let Ok(Accepted::Mux(mut mux)) = server.accept(stream).await else {
                    return;
                };
                while let Some(incoming) = mux.next_channel().await {
                    let Ok(mut ch) = incoming.accept() else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let seen = format!("{:?}", ch.protocol());
                        if ch.send(Message::text(seen)).await.is_err() {
                            return;
                        }
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
    addr
}

#[tokio::test]
async fn the_plain_servers_policy_applies_to_logical_channels() {
    let addr = policy_server().await;
    let client = MuxClient::connect(format!("ws://{addr}/"), MuxConfig::default())
        .await
        .unwrap();
    // Origin refused by the plain builder's check: 403.
    let evil = [("Origin".to_owned(), "http://evil.example".to_owned())];
    let err = client.open_channel("/a", &evil, vec![]).await.unwrap_err();
    assert!(matches!(err, MuxError::Rejected(s) if s == 403), "{err}");
    // Subprotocols chosen as the plain server chooses them.
    let offer = ["x".to_owned(), "v2".to_owned(), "chat".to_owned()];
    let mut ch = client
        .open_channel_with_protocols("/b", &[], &offer, vec![])
        .await
        .unwrap();
    assert_eq!(ch.protocol(), Some("v2"));
    let seen = tokio::time::timeout(T, ch.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen, Message::text("Some(\"v2\")"));
    // A malformed extension offer: the channel is dropped with 2009.
    let bad = [(
        "Sec-WebSocket-Extensions".to_owned(),
        "permessage-deflate;;".to_owned(),
    )];
    let err = client.open_channel("/c", &bad, vec![]).await.unwrap_err();
    assert!(
        matches!(
            err,
            MuxError::ChannelEnded(ChannelEnd::DroppedByPeer(Some((DropCode(2009), _))))
        ),
        "{err}"
    );
    // The other channels are unaffected.
    ch.send(Message::text("still")).await.unwrap();
    assert_eq!(
        tokio::time::timeout(T, ch.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        Message::text("still")
    );
    client.close();
}

#[tokio::test]
async fn a_plain_client_gets_the_same_subprotocol() {
    let addr = policy_server().await;
    let (ws, _) = weft_core::ClientBuilder::new()
        .protocol("x")
        .protocol("v2")
        .protocol("chat")
        .connect(format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("v2"));
    // The physical handshake's subprotocol is channel 1's, on both ends.
    let request = http::Request::get(format!("ws://{addr}/"))
        .header("sec-websocket-protocol", "chat")
        .body(())
        .unwrap();
    let client = MuxClient::connect(request, MuxConfig::default())
        .await
        .unwrap();
    let mut one = client.implicit_channel();
    assert_eq!(one.protocol(), Some("chat"));
    let seen = tokio::time::timeout(T, one.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen, Message::text("Some(\"chat\")"));
    client.close();
}

#[tokio::test]
async fn channels_are_sinks_and_streams_with_one_error_type() {
    use futures_util::{SinkExt, StreamExt};
    let addr = echo_server(MuxConfig::default()).await;
    let client = MuxClient::connect(format!("ws://{addr}/"), MuxConfig::default())
        .await
        .unwrap();
    let mut ch = client.open_channel("/sink", &[], vec![]).await.unwrap();
    let msgs: Vec<Message> = (0..5)
        .map(|i| Message::binary(vec![i as u8; 1000 * i]))
        .collect();
    for m in &msgs {
        SinkExt::feed(&mut ch, m.clone()).await.unwrap();
    }
    SinkExt::flush(&mut ch).await.unwrap();
    for m in &msgs {
        let got: Result<Message, MuxError> =
            tokio::time::timeout(T, ch.next()).await.unwrap().unwrap();
        assert_eq!(&got.unwrap(), m);
    }
    // `send` and `recv` report the same type.
    fn same_error<T>(_: &Result<(), T>, _: &Option<Result<Message, T>>) {}
    let sent = ch.send(Message::text("x")).await;
    let received = tokio::time::timeout(T, ch.recv()).await.unwrap();
    same_error(&sent, &received);
    assert_eq!(received.unwrap().unwrap(), Message::text("x"));
    // Sink::close runs the closing handshake to its end.
    tokio::time::timeout(T, SinkExt::close(&mut ch))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(ch.end(), Some(ChannelEnd::Closed(_))),
        "{:?}",
        ch.end()
    );
    assert!(ch.next().await.is_none());
    // After the physical connection closed, the sink reports it.
    let mut one = client.implicit_channel();
    client.close();
    let r = tokio::time::timeout(T, async {
        loop {
            if let Err(e) = SinkExt::send(&mut one, Message::text("late")).await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert!(matches!(r, MuxError::Failed(_)), "{r}");
}

/// Offers pywebsocket's token, `mux_DO_NOT_USE`, and accepts the answer.
struct PywebsocketToken;

impl ExtensionFactory for PywebsocketToken {
    fn name(&self) -> &str {
        weft_mux::negotiate::MUX_DO_NOT_USE
    }
    fn offers(&self) -> Vec<weft_core::ext::ExtensionHeader> {
        vec![weft_core::ext::ExtensionHeader::new(self.name())]
    }
    fn accept(
        &self,
        _: &weft_core::ext::ExtensionHeader,
        _: &[weft_core::ext::Extension],
    ) -> Result<weft_core::ext::Extension, weft_core::ext::NegotiationError> {
        Ok(weft_core::ext::Extension::passthrough())
    }
}

#[tokio::test]
async fn pywebsockets_token_is_variant_b_answered_as_offered() {
    // docs/specs/mux.md §11.1: pywebsocket negotiates only `mux_DO_NOT_USE`.
    let config = MuxConfig::default();
    let addr = echo_server(config.clone()).await;
    let (ws, _) = weft_core::ClientBuilder::new()
        .extension(PywebsocketToken)
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(
        weft_core::ext::format_extensions(ws.extensions()),
        "mux_DO_NOT_USE"
    );
    let client = MuxClient::start(ws, &addr.to_string(), config).unwrap();
    let mut ch = tokio::time::timeout(T, client.open_channel("/py", &[], vec![]))
        .await
        .unwrap()
        .unwrap();
    ch.send(Message::text("over mux_DO_NOT_USE")).await.unwrap();
    assert_eq!(
        tokio::time::timeout(T, ch.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        Message::text("over mux_DO_NOT_USE")
    );
    client.close();
}
