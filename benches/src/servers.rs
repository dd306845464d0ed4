//! One echo server per implementation, each in its crate's own idiom for
//! throughput. All of them echo text and binary messages, accept on a
//! `TcpListener`, set `TCP_NODELAY` on accepted sockets, and run one tokio
//! task per connection.
//!
//! | impl | echo loop |
//! | --- | --- |
//! | weft | `recv()` + `feed()`; `recv` flushes queued echoes only when it is about to wait for input (examples/echo_server.rs) |
//! | tokio-tungstenite | `split()` + `try_filter(text or binary)` + `forward(sink)`, the crate's echo idiom; `Forward` feeds while the stream is ready and flushes when it is pending |
//! | fastwebsockets | `FragmentCollector` + `read_frame()` / `write_frame()` (the crate's echo idiom; every `write_frame` is one write). Handshake done by hand (no hyper), then `WebSocket::after_handshake` |
//! | tokio-websockets | `next()` + `SinkExt::feed()`; the stream tries to flush queued frames before it reads the next frame |

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// weft-core.
    Weft,
    /// tokio-tungstenite.
    Tungstenite,
    /// fastwebsockets.
    FastWebSockets,
    /// tokio-websockets.
    TokioWebSockets,
}

impl Impl {
    /// Every implementation, weft first.
    pub const ALL: [Impl; 4] = [
        Impl::Weft,
        Impl::Tungstenite,
        Impl::FastWebSockets,
        Impl::TokioWebSockets,
    ];

    /// The crate name.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Weft => "weft",
            Impl::Tungstenite => "tokio-tungstenite",
            Impl::FastWebSockets => "fastwebsockets",
            Impl::TokioWebSockets => "tokio-websockets",
        }
    }

    /// Parses a crate name (as printed by [`name`](Self::name)).
    pub fn parse(s: &str) -> Option<Impl> {
        Impl::ALL.into_iter().find(|i| i.name() == s)
    }
}

/// Accepts connections on `listener` forever and echoes on each with `imp`.
/// Must run inside a tokio runtime (the bench uses a multi-thread one).
pub async fn serve(imp: Impl, listener: TcpListener) {
    let weft_server = weft_core::ServerBuilder::new().config(weft_core::Config::default());
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of fds or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match imp {
            Impl::Weft => {
                let server = weft_server.clone();
                tokio::spawn(async move { echo_weft(&server, stream).await });
            }
            Impl::Tungstenite => {
                tokio::spawn(echo_tungstenite(stream));
            }
            Impl::FastWebSockets => {
                tokio::spawn(echo_fastwebsockets(stream));
            }
            Impl::TokioWebSockets => {
                tokio::spawn(echo_tokio_websockets(stream));
            }
        }
    }
}

/// weft: the batching loop from examples/echo_server.rs.
async fn echo_weft(server: &weft_core::ServerBuilder, stream: TcpStream) {
    if let Ok(ws) = server.accept(stream).await {
        weft_echo(ws).await;
    }
}

/// The weft echo loop every bench uses (as examples/echo_server.rs): `recv`
/// then `feed`, so queued echoes are written when input runs dry.
pub async fn weft_echo<S>(mut ws: weft_core::WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use weft_core::Message;
    while let Some(msg) = ws.recv().await {
        match msg {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.feed(m).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

/// tokio-tungstenite: `accept_async`, then [`tungstenite_echo`].
async fn echo_tungstenite(stream: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    tungstenite_echo(ws).await;
}

/// The tokio-tungstenite echo loop (after the handshake).
pub async fn tungstenite_echo<S>(ws: tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{StreamExt, TryStreamExt, future};
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}

/// fastwebsockets: the crate's echo idiom over a
/// `FragmentCollector` (whole messages, auto pong and close).
async fn echo_fastwebsockets(mut stream: TcpStream) {
    if manual_server_handshake(&mut stream).await.is_err() {
        return;
    }
    fastwebsockets_echo(stream).await;
}

/// The fastwebsockets echo loop on a stream whose handshake is done.
pub async fn fastwebsockets_echo<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use fastwebsockets::{FragmentCollector, OpCode, Role, WebSocket};
    let mut ws = FragmentCollector::new(WebSocket::after_handshake(stream, Role::Server));
    loop {
        let Ok(frame) = ws.read_frame().await else {
            break;
        };
        let echo = match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => true,
            _ => false,
        };
        if echo && ws.write_frame(frame).await.is_err() {
            break;
        }
    }
}

/// tokio-websockets: `next()` + `feed()`; queued frames are flushed by the
/// stream itself before it reads.
async fn echo_tokio_websockets(stream: TcpStream) {
    let Ok((_request, ws)) = tokio_websockets::ServerBuilder::new().accept(stream).await else {
        return;
    };
    tokio_websockets_echo(ws).await;
}

/// The tokio-websockets echo loop (after the handshake).
pub async fn tokio_websockets_echo<S>(mut ws: tokio_websockets::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.feed(msg).await.is_err() {
            break;
        }
    }
    let _ = ws.flush().await;
}

/// Baseline, not a WebSocket implementation: after a hand-made handshake,
/// echoes the raw bytes (still masked) back with one read and one write per
/// chunk. It shows what the bench client and the loopback can do at most.
pub async fn serve_raw_tcp(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            if manual_server_handshake(&mut stream).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

/// A minimal server handshake for fastwebsockets (whose own one needs
/// hyper): reads the request head, answers 101 with the accept key
/// (RFC 6455 §4.2.2).
/// The bench client sends nothing before the 101, so no bytes are left over.
async fn manual_server_handshake(stream: &mut TcpStream) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_len = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 << 10 {
            return Err(Error::other("request head too large"));
        }
    };
    if buf.len() != head_len {
        return Err(Error::other("bytes after the request head"));
    }
    let head = std::str::from_utf8(&buf[..head_len]).map_err(Error::other)?;
    let key = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, v)| v.trim())
        .ok_or_else(|| Error::other("no Sec-WebSocket-Key"))?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        weft_core::handshake::accept_key(key)
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await
}

/// Name of the raw TCP echo baseline ([`serve_raw_tcp`]) in bench output.
pub const BASELINE: &str = "raw-tcp-echo";

/// Starts an echo server for every implementation, then the raw TCP
/// baseline, each on its own 127.0.0.1 port, on `rt`; returns their names
/// (weft first, [`BASELINE`] last) and addresses.
pub fn start_all(rt: &tokio::runtime::Runtime) -> Vec<(&'static str, std::net::SocketAddr)> {
    let bind = || {
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        (listener, addr)
    };
    let mut servers: Vec<_> = Impl::ALL
        .into_iter()
        .map(|imp| {
            let (listener, addr) = bind();
            rt.spawn(serve(imp, listener));
            (imp.name(), addr)
        })
        .collect();
    let (listener, addr) = bind();
    rt.spawn(serve_raw_tcp(listener));
    servers.push((BASELINE, addr));
    servers
}

/// yawc's echo server idiom: hyper `http1` with upgrades, one task per
/// WebSocket (run `unconstrained`), `next()` + `send()`; `options` as given.
/// Runs until the listener fails.
pub async fn serve_yawc(listener: TcpListener, options: yawc::Options) {
    use bytes::Bytes;
    use futures_util::{SinkExt, StreamExt};
    use http_body_util::Empty;
    use hyper::body::Incoming;
    use hyper::{Request, Response};

    async fn upgrade(
        mut req: Request<Incoming>,
        options: yawc::Options,
    ) -> yawc::Result<Response<Empty<Bytes>>> {
        let (response, fut) = yawc::WebSocket::upgrade_with_options(&mut req, options)?;
        tokio::spawn(tokio::task::unconstrained(async move {
            let Ok(mut ws) = fut.await else {
                return;
            };
            while let Some(frame) = ws.next().await {
                if matches!(frame.opcode(), yawc::OpCode::Text | yawc::OpCode::Binary)
                    && ws.send(frame).await.is_err()
                {
                    break;
                }
            }
        }));
        Ok(response)
    }

    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            // Out of fds or similar: back off instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let options = options.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(
                    io,
                    hyper::service::service_fn(move |req| upgrade(req, options.clone())),
                )
                .with_upgrades()
                .await;
        });
    }
}
