//! Regression (found by the soak bench): a mux connection whose every
//! handle was dropped without a close kept its socket and its driver tasks
//! forever, on both ends, because the driver holds the connection's state
//! itself. Now dropping the last handle closes the physical connection; a
//! handle still held (a channel) keeps it working.

use std::time::Duration;
use weft_core::handshake::ServerOptions;
use weft_core::{ClientBuilder, Message, ServerBuilder};
use weft_mux::{Accepted, MuxClient, MuxConfig, MuxFactory, MuxServer, MuxServerBuilder};

async fn pair() -> (MuxClient, MuxServer) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = MuxServerBuilder::new(
        ServerBuilder::new(),
        MuxConfig::default(),
        ServerOptions::default(),
    );
    let srv = tokio::spawn(async move { server.accept(b).await });
    let (ws, _) = ClientBuilder::new()
        .extension(MuxFactory { quota: 1 << 16 })
        .connect_on(a, "ws://localhost/mux")
        .await
        .unwrap();
    let client = MuxClient::start(ws, "localhost", MuxConfig::default()).unwrap();
    let Ok(Accepted::Mux(server)) = srv.await.unwrap() else {
        panic!("mux accepted");
    };
    (client, server)
}

const BOUND: Duration = Duration::from_secs(5);

#[tokio::test]
async fn dropping_every_client_handle_closes_the_connection() {
    let (client, mut server) = pair().await;
    let ch = client.open_channel("/x", &[], Vec::new());
    let accept = async {
        // Channel 1, then the opened one.
        let mut n = 0;
        while n < 2 {
            let incoming = server.next_channel().await.expect("a channel");
            let _ = incoming.accept().unwrap();
            n += 1;
        }
    };
    let (ch, ()) = tokio::join!(ch, accept);
    let ch = ch.unwrap();
    drop(ch);
    drop(client);
    let end = tokio::time::timeout(BOUND, server.next_channel()).await;
    assert!(
        matches!(end, Ok(None)),
        "the server's connection is still open after the client dropped every handle"
    );
}

#[tokio::test]
async fn dropping_every_server_handle_closes_the_connection() {
    let (client, server) = pair().await;
    let mut implicit = client.implicit_channel();
    drop(server);
    let end = tokio::time::timeout(BOUND, implicit.recv()).await;
    assert!(
        matches!(end, Ok(None | Some(Err(_)))),
        "the client's channel did not end: {end:?}"
    );
}

#[tokio::test]
async fn a_held_channel_keeps_the_connection() {
    let (client, mut server) = pair().await;
    let mut implicit = client.implicit_channel();
    drop(client);
    let mut far = server.next_channel().await.unwrap().accept().unwrap();
    drop(server);
    // Both ends still hold a channel: it works past the driver's check.
    tokio::time::sleep(Duration::from_millis(600)).await;
    implicit.send(Message::text("still here")).await.unwrap();
    let got = tokio::time::timeout(BOUND, far.recv()).await.unwrap();
    assert!(matches!(got, Some(Ok(Message::Text(t))) if t == "still here"));
}
