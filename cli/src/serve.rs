//! `weft serve`: a small WebSocket server.
//!
//! `--echo` (the default) sends every data message back to its sender.
//! `--broadcast` sends every data message to every *other* connected client:
//! a simple fan-out, each client with a bounded queue (`--queue`, 256
//! messages by default); a client whose queue is full is disconnected
//! (its TCP connection dropped: its writer may be stuck on a full socket)
//! rather than letting memory grow. (A compress-once broadcast API in weft-core may replace the
//! per-client compression here later.) `--mux` also accepts weft-mux
//! connections, whose logical channels are served the same way (echo).
//! Extensions: permessage-deflate with weft's defaults unless `--extension`
//! says otherwise. The listening address is printed on stderr; Ctrl-C stops.

use crate::client::{ExtensionArgs, build_extensions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use weft_core::{CloseCode, Config, Message, ServerBuilder};

/// `weft serve` arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks one, printed on stderr).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9001")]
    pub addr: String,
    /// Echo every message back (the default).
    #[arg(long, conflicts_with = "broadcast")]
    pub echo: bool,
    /// Send every message to all other connected clients.
    #[arg(long)]
    pub broadcast: bool,
    /// Also accept weft-mux connections (echo on every channel).
    #[arg(long, conflicts_with = "broadcast")]
    pub mux: bool,
    /// Subprotocols to accept (the first the client offers that is listed).
    #[arg(long = "protocol", value_name = "NAME")]
    pub protocols: Vec<String>,
    /// Largest message accepted, bytes.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = crate::report::parse_size)]
    pub max_message: u64,
    /// --broadcast: messages queued per client before it is disconnected
    /// as too slow.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue: u32,
    /// Extension to negotiate (default permessage-deflate; `none` for none).
    #[command(flatten)]
    pub ext: ExtensionArgs,
}

/// Each broadcast client's queue, and how to tell it it was dropped.
type Clients = Arc<Mutex<HashMap<u64, (mpsc::Sender<Message>, Arc<tokio::sync::Notify>)>>>;

/// Runs `weft serve`.
pub fn main(args: ServeArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run(args))
}

async fn run(args: ServeArgs) -> Result<(), String> {
    let max = usize::try_from(args.max_message).unwrap_or(usize::MAX);
    let config = Config::default()
        .max_message_size(max)
        .max_frame_size(max.max(1 << 20));
    let protocols: Vec<&str> = args.protocols.iter().map(String::as_str).collect();
    let mut builder = ServerBuilder::new().config(config).protocols(&protocols);
    for f in build_extensions(&args.ext)? {
        builder = builder.extension(f);
    }
    let listener = TcpListener::bind(&args.addr)
        .await
        .map_err(|e| format!("--addr {}: {e}", args.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mode = if args.broadcast { "broadcast" } else { "echo" };
    eprintln!(
        "weft serve: listening on {addr} ({mode}{})",
        if args.mux { ", mux" } else { "" }
    );
    let mux = args.mux.then(|| {
        weft_mux::MuxServerBuilder::new(
            builder.clone(),
            weft_mux::MuxConfig::default(),
            weft_core::handshake::ServerOptions::default(),
        )
    });
    let clients: Clients = Arc::default();
    let mut next_id = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("weft serve: accept: {e}");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        if let Some(mux) = &mux {
            let mux = mux.clone();
            tokio::spawn(async move {
                match mux.accept(tcp).await {
                    Ok(weft_mux::Accepted::Plain(ws)) => echo(ws).await,
                    Ok(weft_mux::Accepted::Mux(mut conn)) => {
                        while let Some(incoming) = conn.next_channel().await {
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
                    Err(e) => eprintln!("weft serve: handshake: {e}"),
                }
            });
            continue;
        }
        let builder = builder.clone();
        let clients = clients.clone();
        let broadcast = args.broadcast;
        let queue = args.queue as usize;
        tokio::spawn(async move {
            let ws = match builder.accept(tcp).await {
                Ok(ws) => ws,
                Err(e) => {
                    eprintln!("weft serve: handshake: {e}");
                    return;
                }
            };
            if broadcast {
                fan_out(id, ws, clients, queue).await;
            } else {
                echo(ws).await;
            }
        });
    }
}

async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut ws: weft_core::WebSocket<S>,
) {
    while let Some(Ok(m)) = ws.recv().await {
        if m.is_data() && ws.send(m).await.is_err() {
            break;
        }
    }
}

async fn fan_out(
    id: u64,
    ws: weft_core::WebSocket<tokio::net::TcpStream>,
    clients: Clients,
    queue: usize,
) {
    let (tx, mut rx) = mpsc::channel::<Message>(queue);
    let kicked = Arc::new(tokio::sync::Notify::new());
    clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, (tx, kicked.clone()));
    let (mut reader, mut writer) = ws.split();
    let mut write = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if writer.send(m).await.is_err() {
                return;
            }
        }
        let _ = writer.close(CloseCode::NORMAL, "").await;
    });
    loop {
        let m = tokio::select! {
            m = reader.recv() => m,
            _ = kicked.notified() => {
                // Too slow: its writer may be stuck on a full socket, so the
                // connection is dropped rather than closed politely.
                write.abort();
                return;
            }
            _ = &mut write => break,
        };
        let Some(Ok(m)) = m else { break };
        if !m.is_data() {
            continue;
        }
        let mut slow = Vec::new();
        {
            let map = clients.lock().unwrap_or_else(|e| e.into_inner());
            for (&other, (q, _)) in map.iter() {
                if other != id && q.try_send(m.clone()).is_err() {
                    slow.push(other);
                }
            }
        }
        if !slow.is_empty() {
            let mut map = clients.lock().unwrap_or_else(|e| e.into_inner());
            for s in slow {
                if let Some((_, k)) = map.remove(&s) {
                    k.notify_one();
                    eprintln!("weft serve: client {s} too slow (queue full): disconnected");
                }
            }
        }
    }
    clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    if !write.is_finished() {
        let _ = write.await;
    }
}
