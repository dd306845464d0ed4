//! `weft capture`: a recording WebSocket proxy.
//!
//! Clients connect to `--listen`; for each, the proxy completes the client's
//! handshake (negotiating its own extensions: permessage-deflate by
//! default), opens a connection to `--upstream` (negotiating again, on that
//! side), and forwards every message both ways. Each complete message is
//! written to `--out` as one JSON Lines record (the corpus format of
//! [`crate::corpus`]: `"dir"` is `"sent"` for client to upstream and
//! `"received"` for upstream to client, `"t"` the time in seconds since the
//! Unix epoch, `"conn"` the session number) and flushed before it is
//! forwarded, so the file holds only whole lines at every moment: an
//! upstream that refuses the handshake or drops a connection mid-message
//! leaves no partial record (the client is closed with 1014, Bad Gateway).
//!
//! Ctrl-C (SIGINT) stops accepting, closes every session with 1001 (going
//! away) on both sides, waits at most 3 s for the closing handshakes,
//! flushes the file and exits 0. `--max-sessions N` exits the same way once
//! N sessions have ended.

use crate::client::{ExtensionArgs, build_extensions};
use crate::corpus::{Direction, Entry, json_line};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;
use weft_core::{ClientBuilder, CloseCode, Config, Message, ServerBuilder};

/// `weft capture` arguments.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Address to listen on (e.g. 127.0.0.1:9002; port 0 picks one, printed
    /// on stderr).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The server to forward to: ws://HOST:PORT/PATH.
    #[arg(long, value_name = "URL")]
    pub upstream: String,
    /// The corpus file to write (JSON Lines; truncated unless --append).
    #[arg(long, value_name = "FILE.jsonl")]
    pub out: PathBuf,
    /// Append to --out instead of truncating it.
    #[arg(long)]
    pub append: bool,
    /// Exit after this many client sessions have ended.
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<u64>,
    /// Subprotocols the proxy accepts from clients and offers upstream.
    #[arg(long = "protocol", value_name = "NAME")]
    pub protocols: Vec<String>,
    /// Largest message forwarded, bytes (a larger one fails that session
    /// with 1009).
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = crate::report::parse_size)]
    pub max_message: u64,
    /// Extensions negotiated on both sides (default permessage-deflate with
    /// weft's defaults; `--extension none` for none).
    #[command(flatten)]
    pub ext: ExtensionArgs,
}

/// The corpus file, written one whole line at a time.
struct Recorder {
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl Recorder {
    fn record(&self, conn: u64, dir: Direction, msg: &Message) -> std::io::Result<()> {
        let (text, payload) = match msg {
            Message::Text(t) => (true, t.as_bytes().clone()),
            Message::Binary(b) => (false, b.clone()),
            _ => return Ok(()),
        };
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| (d.as_micros() as f64) / 1e6);
        let mut line = json_line(
            &Entry {
                text,
                payload,
                dir: Some(dir),
                t: Some(t),
            },
            Some(conn),
        );
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(line.as_bytes())?;
        f.flush()
    }
}

/// Runs `weft capture`.
pub fn main(args: CaptureArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run(args))
}

async fn run(args: CaptureArgs) -> Result<(), String> {
    weft_core::handshake::client::Target::parse(&args.upstream)
        .map_err(|e| format!("--upstream {}: {e}", args.upstream))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(args.append)
        .truncate(!args.append)
        .open(&args.out)
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    let recorder = Arc::new(Recorder {
        file: Mutex::new(std::io::BufWriter::new(file)),
    });
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!(
        "weft capture: listening on {addr}, forwarding to {}, writing {}",
        args.upstream,
        args.out.display()
    );
    let max = usize::try_from(args.max_message).unwrap_or(usize::MAX);
    let config = Config::default()
        .max_message_size(max)
        .max_frame_size(max.max(1 << 20));
    let protocols: Vec<&str> = args.protocols.iter().map(String::as_str).collect();
    let mut server = ServerBuilder::new()
        .config(config.clone())
        .protocols(&protocols);
    let mut client = ClientBuilder::new().config(config);
    for f in build_extensions(&args.ext)? {
        server = server.extension(f.clone());
        client = client.extension(f);
    }
    for p in &args.protocols {
        client = client.protocol(p.clone());
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut sessions = tokio::task::JoinSet::new();
    let mut next_id = 0u64;
    let mut ended = 0u64;
    let upstream = Arc::new(args.upstream.clone());
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => {
                eprintln!("weft capture: stopping");
                break;
            }
            Some(()) = done_rx.recv() => {
                ended += 1;
                if args.max_sessions.is_some_and(|n| ended >= n) {
                    break;
                }
            }
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("weft capture: accept: {e}");
                        continue;
                    }
                };
                next_id += 1;
                let id = next_id;
                let (server, client) = (server.clone(), client.clone());
                let (recorder, upstream) = (recorder.clone(), upstream.clone());
                let (stop, done) = (stop_rx.clone(), done_tx.clone());
                sessions.spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    if let Err(e) = session(id, tcp, server, client, &upstream, recorder, stop).await {
                        eprintln!("weft capture: session {id} ({peer}): {e}");
                    }
                    let _ = done.send(());
                });
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    sessions.abort_all();
    let mut f = recorder.file.lock().unwrap_or_else(|e| e.into_inner());
    f.flush()
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    Ok(())
}

async fn session(
    id: u64,
    tcp: tokio::net::TcpStream,
    server: ServerBuilder,
    client: ClientBuilder,
    upstream: &str,
    recorder: Arc<Recorder>,
    stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut down = server
        .accept(tcp)
        .await
        .map_err(|e| format!("client handshake: {e}"))?;
    let up = match client.connect(upstream).await {
        Ok((up, _)) => up,
        Err(e) => {
            let reason = "upstream refused";
            let _ = down.close(CloseCode::BAD_GATEWAY, reason).await;
            return Err(format!("upstream {upstream}: {e}"));
        }
    };
    eprintln!(
        "weft capture: session {id}: client negotiated {:?}, upstream {:?}",
        down.extensions()
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        up.extensions()
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
    );
    let (dr, dw) = down.split();
    let (ur, uw) = up.split();
    let a = forward(id, Direction::Sent, dr, uw, recorder.clone(), stop.clone());
    let b = forward(id, Direction::Received, ur, dw, recorder, stop);
    let (ra, rb) = tokio::join!(a, b);
    ra.and(rb)
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Forwards messages from `from` to `to`, recording each with `dir`.
async fn forward<S, T>(
    id: u64,
    dir: Direction,
    mut from: weft_core::WebSocketReader<S>,
    mut to: weft_core::WebSocketWriter<T>,
    recorder: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let side = match dir {
        Direction::Sent => "client",
        Direction::Received => "upstream",
    };
    loop {
        let next = tokio::select! {
            m = from.recv() => m,
            _ = stopped(&mut stop) => {
                let _ = to.close(CloseCode::GOING_AWAY, "capture stopping").await;
                return Ok(());
            }
        };
        match next {
            Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                recorder
                    .record(id, dir, &msg)
                    .map_err(|e| format!("writing the corpus: {e}"))?;
                if let Err(e) = to.send(msg).await {
                    return Err(format!("forwarding a {} message: {e}", dir.name()));
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (f.code, f.reason))
                    .unwrap_or((CloseCode::NORMAL, String::new()));
                let code = if code.is_sendable() {
                    code
                } else {
                    CloseCode::NORMAL
                };
                let _ = to.close(code, &reason).await;
                return Ok(());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                // A dropped or broken side: nothing partial was recorded.
                let _ = to
                    .close(CloseCode::BAD_GATEWAY, &format!("{side} failed"))
                    .await;
                return Err(format!("{side}: {e}"));
            }
            None => {
                let _ = to
                    .close(CloseCode::BAD_GATEWAY, &format!("{side} went away"))
                    .await;
                return Ok(());
            }
        }
    }
}
