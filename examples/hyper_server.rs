//! A WebSocket echo server on plain hyper 1.x: hyper parses HTTP, weft
//! validates and negotiates the upgrade (permessage-deflate), then runs the
//! WebSocket over the connection `hyper::upgrade::on` hands back, wrapped in
//! `hyper_util::rt::TokioIo`.
//!
//! ```text
//! cargo run --release --example hyper_server -- --addr 127.0.0.1:9002
//! ```
//!
//! Every path upgrades; a request that is not a valid WebSocket upgrade is
//! answered with weft's own error response (400, 405 or 426), except a plain
//! `GET /` without `Upgrade`, which gets a short text page. This example
//! serves HTTP/1.1; `weft_core::axum` also serves WebSockets over HTTP/2
//! (RFC 8441 extended CONNECT).

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use weft_core::ServerBuilder;
use weft_core::handshake::server::error_response;
use weft_extensions::PerMessageDeflate;

/// A WebSocket echo server on hyper 1.x.
#[derive(Debug, Parser)]
#[command(name = "hyper_server")]
struct Args {
    /// Address to listen on (port 0 picks one; the chosen address is printed).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9002")]
    addr: String,
}

async fn handle(
    server: Arc<ServerBuilder>,
    mut request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/" && !request.headers().contains_key(hyper::header::UPGRADE) {
        return Ok(Response::new(Full::from(
            "weft hyper_server: connect a WebSocket client to any path\n",
        )));
    }
    let (response, pending) = match server.upgrade(&request) {
        Ok(accepted) => accepted,
        Err(e) => return Ok(error_response(&e).map(Full::from)),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                eprintln!("upgrade failed: {e}");
                return;
            }
        };
        let mut ws = pending.into_websocket(TokioIo::new(upgraded));
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    Ok(response.map(|()| Full::new(Bytes::new())))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let server = Arc::new(ServerBuilder::new().extension(PerMessageDeflate::new()));
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    println!("hyper_server listening on ws://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(server.clone(), req));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}
