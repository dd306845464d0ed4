//! What `connect` accepts (`IntoClientRequest`): URLs in several types and
//! whole `http::Request`s whose headers reach the server; the headers the
//! handshake owns are refused with `InvalidRequest`, never `InvalidUrl`.
//! Two endpoints over in-memory pipes.

use std::time::Duration;
use tokio::io::AsyncReadExt;
use weft_core::handshake::HandshakeError;
use weft_core::{ClientBuilder, Error, IntoClientRequest, Message, ServerBuilder};

const T: Duration = Duration::from_secs(10);

/// Connects `client` to a server over a pipe with `request`; returns the
/// request the server saw and the subprotocols both ends agreed on.
async fn handshake(
    client: ClientBuilder,
    server: ServerBuilder,
    request: impl IntoClientRequest,
) -> (http::Request<()>, Option<String>, Option<String>) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let srv = tokio::spawn(async move { server.accept_with_request(b).await });
    let (mut c, _) = tokio::time::timeout(T, client.connect_on(a, request))
        .await
        .unwrap()
        .expect("client handshake");
    let (mut s, seen) = srv.await.unwrap().expect("server handshake");
    // The connection works.
    c.send(Message::text("ping")).await.unwrap();
    assert_eq!(s.recv().await.unwrap().unwrap(), Message::text("ping"));
    (
        seen,
        c.protocol().map(str::to_owned),
        s.protocol().map(str::to_owned),
    )
}

/// The error `connect_on` gives for `request`, and what reached the server
/// side of the pipe (nothing is sent for a refused request).
async fn refused(client: ClientBuilder, request: impl IntoClientRequest) -> (Error, Vec<u8>) {
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let err = client.connect_on(a, request).await.unwrap_err();
    let mut sent = Vec::new();
    b.read_to_end(&mut sent).await.unwrap();
    (err, sent)
}

#[tokio::test]
async fn every_url_type_connects() {
    let url = "ws://localhost:9001/path?q=1";
    let owned = url.to_owned();
    let uri: http::Uri = url.parse().unwrap();
    let mut seen = Vec::new();
    seen.push(
        handshake(ClientBuilder::new(), ServerBuilder::new(), url)
            .await
            .0,
    );
    seen.push(
        handshake(ClientBuilder::new(), ServerBuilder::new(), &owned)
            .await
            .0,
    );
    seen.push(
        handshake(ClientBuilder::new(), ServerBuilder::new(), owned.clone())
            .await
            .0,
    );
    seen.push(
        handshake(ClientBuilder::new(), ServerBuilder::new(), &uri)
            .await
            .0,
    );
    seen.push(
        handshake(ClientBuilder::new(), ServerBuilder::new(), uri.clone())
            .await
            .0,
    );
    let request = http::Request::get(uri).body(()).unwrap();
    seen.push(
        handshake(ClientBuilder::new(), ServerBuilder::new(), request)
            .await
            .0,
    );
    for r in seen {
        assert_eq!(r.uri(), "/path?q=1");
        assert_eq!(r.headers()["host"], "localhost:9001");
    }
}

#[tokio::test]
async fn custom_request_headers_reach_the_server() {
    let request = http::Request::get("ws://localhost/chat")
        .header("Authorization", "Bearer secret")
        .header("Cookie", "a=1")
        .header("Cookie", "b=2")
        .header("Origin", "http://app.example")
        .header("Sec-WebSocket-Protocol", "v2, v1")
        .body(())
        .unwrap();
    let server = ServerBuilder::new()
        .protocols(&["v1"])
        .origin_check(|o| o == Some("http://app.example"));
    let client = ClientBuilder::new().header("X-Builder", "yes");
    let (seen, client_protocol, server_protocol) = handshake(client, server, request).await;
    let h = seen.headers();
    assert_eq!(h["authorization"], "Bearer secret");
    let cookies: Vec<_> = h.get_all("cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(h["x-builder"], "yes");
    assert_eq!(h["sec-websocket-protocol"], "v2, v1");
    // Our headers are there once each, whatever the request held.
    assert_eq!(h.get_all("sec-websocket-key").iter().count(), 1);
    assert_eq!(h["upgrade"], "websocket");
    // The request's Sec-WebSocket-Protocol is the offer: the server's choice
    // is accepted by the client.
    assert_eq!(client_protocol.as_deref(), Some("v1"));
    assert_eq!(server_protocol.as_deref(), Some("v1"));
}

#[tokio::test]
async fn a_host_header_replaces_the_authority() {
    let request = http::Request::get("ws://127.0.0.1:1234/")
        .header("host", "virtual.example")
        .body(())
        .unwrap();
    let (seen, ..) = handshake(ClientBuilder::new(), ServerBuilder::new(), request).await;
    assert_eq!(seen.headers().get_all("host").iter().count(), 1);
    assert_eq!(seen.headers()["host"], "virtual.example");
}

#[tokio::test]
async fn headers_the_handshake_owns_are_refused() {
    for (name, value) in [
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
    ] {
        let request = http::Request::get("ws://localhost/")
            .header(name, value)
            .body(())
            .unwrap();
        let (err, sent) = refused(ClientBuilder::new(), request).await;
        match &err {
            Error::Handshake(HandshakeError::InvalidRequest(why)) => {
                assert!(why.contains(&name.to_ascii_lowercase()), "{why}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(sent.is_empty(), "{name}: nothing is sent");
        // The same rule for headers added on the builder.
        let (err, _) = refused(ClientBuilder::new().header(name, value), "ws://localhost/").await;
        assert!(
            matches!(err, Error::Handshake(HandshakeError::InvalidRequest(_))),
            "{name}: {err:?}"
        );
    }
}

#[tokio::test]
async fn request_problems_are_not_url_problems() {
    let invalid_request =
        |e: &Error| matches!(e, Error::Handshake(HandshakeError::InvalidRequest(_)));
    let (e, _) = refused(ClientBuilder::new().protocol("two words"), "ws://h/").await;
    assert!(invalid_request(&e), "{e:?}");
    let (e, _) = refused(ClientBuilder::new().header("bad name", "x"), "ws://h/").await;
    assert!(invalid_request(&e), "{e:?}");
    let (e, _) = refused(
        ClientBuilder::new().header("x-ok", "line\r\nbreak"),
        "ws://h/",
    )
    .await;
    assert!(invalid_request(&e), "{e:?}");
    let post = http::Request::post("ws://h/").body(()).unwrap();
    let (e, _) = refused(ClientBuilder::new(), post).await;
    assert!(invalid_request(&e), "{e:?}");
    let bad_protocol = http::Request::get("ws://h/")
        .header("sec-websocket-protocol", "a b")
        .body(())
        .unwrap();
    let (e, _) = refused(ClientBuilder::new(), bad_protocol).await;
    assert!(invalid_request(&e), "{e:?}");
    // URL problems stay InvalidUrl.
    for url in ["ws://h/#frag", "http://h/", "not a url", "ws://user@h/"] {
        let (e, _) = refused(ClientBuilder::new(), url).await;
        assert!(
            matches!(e, Error::Handshake(HandshakeError::InvalidUrl(_))),
            "{url}: {e:?}"
        );
    }
}

#[cfg(not(feature = "rustls"))]
#[tokio::test]
async fn wss_without_the_rustls_feature_says_so() {
    let e = ClientBuilder::new()
        .connect("wss://127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Handshake(HandshakeError::TlsNotEnabled(_))),
        "{e:?}"
    );
    assert!(e.to_string().contains("rustls"), "{e}");
}

#[tokio::test]
async fn builder_headers_follow_the_same_rules() {
    let client = ClientBuilder::new()
        .protocol("v3")
        .header("Sec-WebSocket-Protocol", "v1")
        .header("Host", "named.example");
    let server = ServerBuilder::new().protocols(&["v1"]);
    let (seen, client_protocol, _) = handshake(client, server, "ws://127.0.0.1/").await;
    assert_eq!(seen.headers()["sec-websocket-protocol"], "v3, v1");
    assert_eq!(seen.headers().get_all("host").iter().count(), 1);
    assert_eq!(seen.headers()["host"], "named.example");
    // The header's subprotocol is an offer the client accepts back.
    assert_eq!(client_protocol.as_deref(), Some("v1"));
}
