//! What a server answers: extra 101 headers chosen by a callback that sees
//! the request (handshake headers cannot be overridden), and plain HTTP
//! answers from `on_request`. Over loopback sockets, with a raw HTTP client
//! and with weft's client.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_core::handshake::HandshakeError;
use weft_core::{ClientBuilder, Error, Message, ServerBuilder};

const T: Duration = Duration::from_secs(10);

const REQUEST: &str = "GET /app HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\nCookie: user=ann\r\n\r\n";

/// A server that sets a cookie naming the request's path and user, tries
/// to override every header the handshake owns, and answers `/page` with a
/// plain HTTP page and `/private` with 401 from `on_request`.
fn server() -> ServerBuilder {
    ServerBuilder::new()
        .protocols(&["chat"])
        .on_request(|request| match request.uri().path() {
            "/page" => Some(
                http::Response::builder()
                    .header("content-type", "text/html")
                    .body("<h1>hello page</h1>".to_owned())
                    .unwrap(),
            ),
            "/private" => Some(
                http::Response::builder()
                    .status(401)
                    .header("www-authenticate", "Bearer")
                    .body(String::new())
                    .unwrap(),
            ),
            _ => None,
        })
        .response_headers(|request, headers| {
            let user = request
                .headers()
                .get("cookie")
                .and_then(|c| c.to_str().ok())
                .unwrap_or("none");
            let cookie = format!("seen={}|{user}; HttpOnly", request.uri().path());
            headers.insert("set-cookie", cookie.parse().unwrap());
            headers.append("set-cookie", "second=2".parse().unwrap());
            headers.insert("server", "weft-test".parse().unwrap());
            for owned in [
                "upgrade",
                "connection",
                "sec-websocket-accept",
                "sec-websocket-protocol",
                "sec-websocket-extensions",
                "content-length",
            ] {
                headers.insert(owned, "bogus".parse().unwrap());
            }
        })
}

/// Serves `server` on loopback for `n` connections, echoing on each.
async fn serve(server: ServerBuilder, n: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..n {
            let (s, _) = listener.accept().await.unwrap();
            let server = server.clone();
            tokio::spawn(async move {
                if let Ok(mut ws) = server.accept(s).await {
                    while let Some(Ok(m)) = ws.recv().await {
                        if m.is_data() && ws.send(m).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Sends `request` raw and reads the response head (or everything up to
/// the end of stream).
async fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(T, async {
        while !out.windows(4).any(|w| w == b"\r\n\r\n") || out.starts_with(b"HTTP/1.1 200") {
            let n = raw.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap();
    String::from_utf8(out).unwrap()
}

fn header_lines<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

#[tokio::test]
async fn extra_101_headers_over_a_raw_socket() {
    let addr = serve(server(), 1).await;
    let head = raw_exchange(addr, REQUEST).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(
        header_lines(&head, "set-cookie"),
        ["seen=/app|user=ann; HttpOnly", "second=2"]
    );
    assert_eq!(header_lines(&head, "server"), ["weft-test"]);
    // The handshake's own headers are ours, once each.
    assert_eq!(header_lines(&head, "upgrade"), ["websocket"]);
    assert_eq!(header_lines(&head, "connection"), ["Upgrade"]);
    assert_eq!(
        header_lines(&head, "sec-websocket-accept"),
        ["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]
    );
    assert!(header_lines(&head, "sec-websocket-protocol").is_empty());
    assert!(header_lines(&head, "sec-websocket-extensions").is_empty());
    assert!(header_lines(&head, "content-length").is_empty());
}

#[tokio::test]
async fn extra_101_headers_reach_weft_clients() {
    let addr = serve(server(), 1).await;
    let (mut ws, response) = ClientBuilder::new()
        .protocol("chat")
        .header("cookie", "user=bob")
        .connect(format!("ws://{addr}/room"))
        .await
        .unwrap();
    let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["seen=/room|user=bob; HttpOnly", "second=2"]);
    assert_eq!(response.headers()["server"], "weft-test");
    // The callback's bogus protocol did not replace the negotiated one.
    assert_eq!(ws.protocol(), Some("chat"));
    ws.send(Message::text("still a WebSocket")).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("still a WebSocket")
    );
}

#[tokio::test]
async fn on_request_still_answers_with_plain_http() {
    let addr = serve(server(), 2).await;
    // A browser asking for a page: no upgrade headers at all.
    let page = raw_exchange(addr, "GET /page HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.ends_with("<h1>hello page</h1>"), "{page}");
    assert!(header_lines(&page, "set-cookie").is_empty(), "{page}");
    // A WebSocket client refused by the hook sees the status.
    let err = ClientBuilder::new()
        .connect(format!("ws://{addr}/private"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Handshake(HandshakeError::Status(s)) if s == 401),
        "{err}"
    );
}

#[test]
fn upgrade_responses_carry_the_extra_headers() {
    let request = http::Request::get("/hyper")
        .header("host", "localhost")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        // Any body type: the callback sees the head.
        .body(vec![1u8, 2, 3])
        .unwrap();
    let (response, _pending) = server().upgrade(&request).unwrap();
    assert_eq!(
        response.headers()["set-cookie"],
        "seen=/hyper|none; HttpOnly"
    );
    assert_eq!(
        response.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}
