//! The axum extractor on a real axum server on 127.0.0.1, with weft's
//! client: permessage-deflate by default (`weft_extensions::axum`), none
//! with weft-core's defaults, settings from an `Extension` layer, and
//! invalid upgrades answered 400/426 before the handler runs.

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use weft_core::{ClientBuilder, Message, ServerBuilder};
use weft_extensions::PerMessageDeflate;

const T: Duration = Duration::from_secs(20);

async fn echo<S>(mut ws: weft_core::WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = ws.recv().await {
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

async fn deflate_default(upgrade: weft_extensions::axum::WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(echo)
}

async fn core_default(upgrade: weft_core::axum::WebSocketUpgrade) -> Response {
    assert_eq!(upgrade.requested_protocols(), ["chat"]);
    upgrade.on_upgrade(echo)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn app() -> Router {
    let layered = Router::new()
        .route(
            "/ws-layer",
            get(|u: weft_core::axum::WebSocketUpgrade| async move { u.on_upgrade(echo) }),
        )
        .layer(axum::Extension(
            ServerBuilder::new()
                .extension(PerMessageDeflate::new())
                .protocols(&["chat"]),
        ));
    Router::new()
        .route("/ws", get(deflate_default))
        .route("/ws-any", axum::routing::any(deflate_default))
        .route("/ws-core", get(core_default))
        .merge(layered)
}

#[tokio::test]
async fn axum_route_negotiates_permessage_deflate_by_default() {
    let addr = serve(app()).await;
    let client = ClientBuilder::new().extension(PerMessageDeflate::new());
    let (mut ws, response) = timeout(T, client.connect(&format!("ws://{addr}/ws")))
        .await
        .unwrap()
        .unwrap();
    let ext = response
        .headers()
        .get("sec-websocket-extensions")
        .expect("the server answered the offer")
        .to_str()
        .unwrap();
    assert!(ext.starts_with("permessage-deflate"), "{ext}");
    assert_eq!(ws.extensions().len(), 1);
    assert_eq!(ws.extensions()[0].name, "permessage-deflate");
    let big = "compress me ".repeat(5000);
    for _ in 0..3 {
        ws.send(Message::text(big.clone())).await.unwrap();
        match timeout(T, ws.recv()).await.unwrap() {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), big),
            other => panic!("{other:?}"),
        }
    }
    ws.close(weft_core::CloseCode::NORMAL, "").await.unwrap();
}

#[tokio::test]
async fn core_defaults_and_extension_layer() {
    let addr = serve(app()).await;
    let client = ClientBuilder::new()
        .extension(PerMessageDeflate::new())
        .protocol("chat");
    // weft-core's own defaults: no extension, no subprotocol.
    let (mut ws, response) = client
        .connect(&format!("ws://{addr}/ws-core"))
        .await
        .unwrap();
    assert!(response.headers().get("sec-websocket-extensions").is_none());
    assert!(ws.extensions().is_empty());
    ws.send(Message::text("plain")).await.unwrap();
    assert!(matches!(ws.recv().await, Some(Ok(Message::Text(t))) if t.as_str() == "plain"));
    // The builder in the Extension layer: compression and a subprotocol.
    let (mut ws, _) = client
        .connect(&format!("ws://{addr}/ws-layer"))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("chat"));
    assert_eq!(ws.extensions()[0].name, "permessage-deflate");
    ws.send(Message::binary(vec![7u8; 100_000])).await.unwrap();
    assert!(matches!(ws.recv().await, Some(Ok(Message::Binary(b))) if b == vec![7u8; 100_000]));
}

/// Sends a raw request head and returns the status line and the head.
async fn raw(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let text = timeout(T, async {
        loop {
            let n = s.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if n == 0 || text.contains("\r\n\r\n") {
                return text;
            }
        }
    })
    .await
    .unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn invalid_upgrades_get_400_or_426_before_the_handler() {
    let addr = serve(app()).await;
    let ok_headers = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    // A plain GET to the WebSocket route.
    let (status, text) = raw(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.to_lowercase().contains("upgrade"), "{text}");
    // Wrong version: 426 naming the version we speak.
    let (status, text) = raw(
        addr,
        &format!("GET /ws HTTP/1.1\r\nHost: x\r\n{ok_headers}Sec-WebSocket-Version: 8\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 426, "{text}");
    assert!(
        text.to_lowercase().contains("sec-websocket-version: 13"),
        "{text}"
    );
    // No key.
    let (status, text) = raw(
        addr,
        "GET /ws-core HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Sec-WebSocket-Key"), "{text}");
    // A valid request gets 101 with the negotiated extension.
    let (status, text) = raw(
        addr,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\n{ok_headers}Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 101, "{text}");
    assert!(
        text.to_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{text}"
    );
    assert!(text.contains("permessage-deflate"), "{text}");
}

#[tokio::test]
async fn a_request_without_hyper_upgrade_support_gets_426() {
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    use weft_core::axum::{WebSocketUpgrade, WebSocketUpgradeRejection};
    let request = http::Request::builder()
        .uri("/ws")
        .header("host", "x")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    // A valid upgrade, but no hyper OnUpgrade in the extensions (not served
    // by hyper with upgrades enabled).
    let (mut parts, ()) = request.into_parts();
    let err = <WebSocketUpgrade as FromRequestParts<()>>::from_request_parts(&mut parts, &())
        .await
        .unwrap_err();
    assert!(matches!(err, WebSocketUpgradeRejection::NotUpgradable));
    let response = err.into_response();
    assert_eq!(response.status(), http::StatusCode::UPGRADE_REQUIRED);
    // An HTTP/2 CONNECT without `:protocol websocket` (RFC 8441 §4): 400.
    let (mut parts, ()) = http::Request::builder()
        .method("CONNECT")
        .version(http::Version::HTTP_2)
        .uri("/ws")
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap()
        .into_parts();
    let err = <WebSocketUpgrade as FromRequestParts<()>>::from_request_parts(&mut parts, &())
        .await
        .unwrap_err();
    let response = err.into_response();
    assert_eq!(response.status(), http::StatusCode::BAD_REQUEST);
    // An HTTP/1.1 POST: 405, Allow: GET.
    let (mut parts, ()) = http::Request::builder()
        .method("POST")
        .uri("/ws")
        .header("host", "x")
        .body(())
        .unwrap()
        .into_parts();
    let err = <WebSocketUpgrade as FromRequestParts<()>>::from_request_parts(&mut parts, &())
        .await
        .unwrap_err();
    let response = err.into_response();
    assert_eq!(response.status(), http::StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET");
}

/// RFC 8441: a WebSocket over an HTTP/2 extended CONNECT, with
/// permessage-deflate, through hyper's HTTP/2 client.
#[tokio::test]
async fn http2_extended_connect_runs_a_compressed_websocket() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::sync::Arc;
    use weft_core::ext::{ExtensionFactory, client_accept, parse_extensions};
    let addr = serve(app()).await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let connect = |path: &str, with_protocol: bool| {
        let mut req = http::Request::builder()
            .method("CONNECT")
            .uri(format!("http://{addr}{path}"))
            .header("sec-websocket-version", "13")
            .header("sec-websocket-extensions", "permessage-deflate")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        if with_protocol {
            req.extensions_mut()
                .insert(hyper::ext::Protocol::from_static("websocket"));
        }
        req
    };
    // A plain CONNECT (no :protocol, so no path either) is not a WebSocket.
    let response = send.send_request(connect("/ws-any", false)).await.unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    let response = timeout(T, send.send_request(connect("/ws-any", true)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200, "RFC 8441 §5: 200, not 101");
    assert!(response.headers().get("sec-websocket-accept").is_none());
    let answer: Vec<&str> = response
        .headers()
        .get_all("sec-websocket-extensions")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(answer[0].starts_with("permessage-deflate"), "{answer:?}");
    let factories: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(PerMessageDeflate::new())];
    let negotiated = client_accept(&factories, &parse_extensions(answer).unwrap()).unwrap();
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    let mut ws = weft_core::WebSocket::from_parts(
        TokioIo::new(upgraded),
        weft_core::Role::Client,
        negotiated,
        None,
        &weft_core::Config::default(),
        bytes::BytesMut::new(),
    );
    let big = "over http/2 ".repeat(4000);
    for _ in 0..3 {
        ws.send(Message::text(big.clone())).await.unwrap();
        match timeout(T, ws.recv()).await.unwrap() {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), big),
            other => panic!("{other:?}"),
        }
    }
    ws.close(weft_core::CloseCode::NORMAL, "").await.unwrap();
}

/// Plain hyper 1.x, as examples/hyper_server.rs does it: hyper parses HTTP,
/// `ServerBuilder::upgrade` validates and negotiates, `hyper::upgrade::on`
/// hands over the connection.
#[tokio::test]
async fn plain_hyper_server_with_weft_upgrade() {
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;
    use std::sync::Arc;
    use weft_core::handshake::server::error_response;
    let server = Arc::new(ServerBuilder::new().extension(PerMessageDeflate::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let server = server.clone();
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let server = server.clone();
                    async move {
                        let (response, pending) = match server.upgrade(&req) {
                            Ok(r) => r,
                            Err(e) => {
                                return Ok::<_, std::convert::Infallible>(
                                    error_response(&e).map(Full::from),
                                );
                            }
                        };
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let upgraded = on.await.unwrap();
                            echo(pending.into_websocket(TokioIo::new(upgraded))).await;
                        });
                        Ok(response.map(|()| Full::new(bytes::Bytes::new())))
                    }
                },
            );
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    let (mut ws, _) = ClientBuilder::new()
        .extension(PerMessageDeflate::new())
        .connect(&format!("ws://{addr}/any"))
        .await
        .unwrap();
    assert_eq!(ws.extensions()[0].name, "permessage-deflate");
    let big = "hyper ".repeat(10_000);
    ws.send(Message::text(big.clone())).await.unwrap();
    assert!(
        matches!(timeout(T, ws.recv()).await.unwrap(), Some(Ok(Message::Text(t))) if t.as_str() == big)
    );
    let (status, text) = raw(
        addr,
        "GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n\r\n",
    )
    .await;
    assert_eq!(status, 426, "{text}");
}
