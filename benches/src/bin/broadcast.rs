//! Broadcast CPU per delivery: compress-once against compressing per
//! connection and against uncompressed broadcasts (weft and
//! tokio-tungstenite), in one run.
//!
//! ```text
//! cargo run --release -p weft-benches --bin broadcast -- --json
//! cargo run --release -p weft-benches --bin broadcast -- --quick --json
//! ```
//!
//! The server (this process, one current-thread runtime) accepts
//! `--subscribers` loopback connections from a client process (this binary
//! again, `--client-role`, so the client's CPU is not counted), then sends
//! `--messages` JSON messages of `--message-bytes` bytes, one at a time:
//! each message goes to every subscriber and the next one leaves when the
//! client reports that every connection received it. CPU per delivery is
//! the server's `getrusage` user+system time over the sends divided by
//! subscribers x messages. Modes, each on fresh connections and a fresh
//! listening port:
//!
//! - `compress_once`: weft with permessage-deflate (defaults), the
//!   `weft_core::Broadcast` hub: one compression per message per group.
//! - `per_connection`: weft with permessage-deflate, each connection task
//!   compressing the message itself with its own context (a
//!   `tokio::sync::broadcast` channel fans the message out).
//! - `uncompressed`: weft without extensions, the hub.
//! - `tungstenite`: tokio-tungstenite (no compression), a
//!   `tokio::sync::broadcast` channel and one task per connection that only
//!   writes: its best case, and the figure the ratios use.
//! - `tungstenite_reading`: the same, but the task also reads its
//!   connection (split into sink and stream, `select!` over both), as a
//!   server must for Pings and Close and as weft's `Subscription::run` does.
//!
//! Every connection task writes what is queued with one flush, in all
//! modes. `per_connection` only writes (no reads), which if anything
//! flatters compressing per connection. The client reads raw frames (no inflate: its CPU is not measured)
//! and counts complete data messages.
//!
//! The process raises its own `RLIMIT_NOFILE` soft limit to the hard limit;
//! 10,000 subscribers need a hard limit above 10,000 (`ulimit -Hn`).
//! Bounded: every round waits at most `--round-timeout` seconds.

use bytes::Bytes;
use clap::Parser;
use futures_util::SinkExt;
use serde_json::json;
use std::cell::RefCell;
use std::process::Stdio;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use weft_benches::{raise_fd_limit, rounded, usage};
use weft_core::{Broadcast, BroadcastConfig, Message, PreparedMessage, ServerBuilder, Utf8Bytes};
use weft_extensions::PerMessageDeflate;

/// Broadcast CPU per delivery, compress-once vs per connection vs
/// uncompressed (weft and tokio-tungstenite).
#[derive(Debug, Parser)]
#[command(name = "broadcast")]
struct Args {
    /// Subscribers (loopback connections) [default: 10000, 200 with --quick].
    #[arg(long)]
    subscribers: Option<usize>,
    /// Messages broadcast per mode [default: 30, 20 with --quick].
    #[arg(long)]
    messages: Option<usize>,
    /// Size of each JSON message in bytes.
    #[arg(long, default_value_t = 1024)]
    message_bytes: usize,
    /// CI-size run: 200 subscribers, 20 messages.
    #[arg(long)]
    quick: bool,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
    /// Seconds one round (one message to every subscriber) may take.
    #[arg(long, default_value_t = 60)]
    round_timeout: u64,
    /// Run only these modes (compress_once, per_connection, uncompressed,
    /// tungstenite; repeatable); the JSON has null for the others.
    #[arg(long, value_name = "MODE")]
    only: Vec<String>,
    /// Internal: run as the client process.
    #[arg(long, hide = true)]
    client_role: bool,
    /// Internal (client role): the server's port.
    #[arg(long, hide = true)]
    port: Option<u16>,
    /// Internal (client role): offer permessage-deflate.
    #[arg(long, hide = true)]
    offer_deflate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    CompressOnce,
    PerConnection,
    Uncompressed,
    Tungstenite,
    TungsteniteReading,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::CompressOnce => "compress_once",
            Mode::PerConnection => "per_connection",
            Mode::Uncompressed => "uncompressed",
            Mode::Tungstenite => "tungstenite",
            Mode::TungsteniteReading => "tungstenite_reading",
        }
    }
    fn deflate(self) -> bool {
        matches!(self, Mode::CompressOnce | Mode::PerConnection)
    }
}

/// One mode's result.
#[derive(Debug, Default)]
struct Outcome {
    ns_per_delivery: f64,
    compressions_per_message: f64,
    wire_bytes_per_delivery: f64,
    wall_s: f64,
}

/// A JSON message of exactly `len` bytes (for `len` >= 64), varied per
/// `seq` like real chat traffic: a few keys, words from a small vocabulary.
fn message(seq: usize, len: usize) -> String {
    const WORDS: [&str; 16] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
    ];
    let mut x = (seq as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    let mut s = format!(
        "{{\"seq\":{seq},\"user\":\"user-{}\",\"room\":\"lobby\",\"ts\":{},\"text\":\"",
        next() % 1000,
        1_700_000_000_000u64 + seq as u64 * 997
    );
    let tail = "\"}";
    while s.len() + tail.len() < len {
        let w = WORDS[next() % WORDS.len()];
        s.push_str(w);
        s.push(' ');
    }
    s.truncate(len.saturating_sub(tail.len()));
    s.push_str(tail);
    s
}

fn main() {
    let args = Args::parse();
    raise_fd_limit();
    if args.client_role {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        let local = tokio::task::LocalSet::new();
        if let Err(e) = rt.block_on(local.run_until(client(&args))) {
            eprintln!("broadcast client: {e}");
            std::process::exit(1);
        }
        return;
    }
    let subscribers = args
        .subscribers
        .unwrap_or(if args.quick { 200 } else { 10_000 });
    let messages = args.messages.unwrap_or(if args.quick { 20 } else { 30 });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("server runtime");
    let modes = [
        Mode::CompressOnce,
        Mode::PerConnection,
        Mode::Uncompressed,
        Mode::Tungstenite,
        Mode::TungsteniteReading,
    ];
    let mut results = Vec::new();
    for mode in modes {
        if !args.only.is_empty() && !args.only.iter().any(|m| m == mode.name()) {
            continue;
        }
        match rt.block_on(run_mode(mode, subscribers, messages, &args)) {
            Ok(o) => {
                if !args.json {
                    eprintln!(
                        "{:>15}: {:>8.0} ns/delivery, {:.2} compressions/message, \
                         {:.0} wire B/delivery, {:.1} s",
                        mode.name(),
                        o.ns_per_delivery,
                        o.compressions_per_message,
                        o.wire_bytes_per_delivery,
                        o.wall_s
                    );
                }
                results.push((mode, o));
            }
            Err(e) => {
                eprintln!("broadcast: mode {}: {e}", mode.name());
                std::process::exit(1);
            }
        }
    }
    let get = |m: Mode| results.iter().find(|(k, _)| *k == m).map(|(_, o)| o);
    let ns = |m: Mode| get(m).map(|o| o.ns_per_delivery);
    let ratio = |a: Mode, b: Mode| Some(rounded(ns(a)? / ns(b)?, 3));
    let once = get(Mode::CompressOnce);
    let out = json!({
        "bench": "broadcast",
        "subscribers": subscribers,
        "messages": messages,
        "message_bytes": args.message_bytes,
        "compressions_per_message": once.map(|o| rounded(o.compressions_per_message, 3)),
        "ns_per_delivery_compress_once": ns(Mode::CompressOnce).map(|x| rounded(x, 1)),
        "ns_per_delivery_per_connection": ns(Mode::PerConnection).map(|x| rounded(x, 1)),
        "ns_per_delivery_uncompressed": ns(Mode::Uncompressed).map(|x| rounded(x, 1)),
        "ns_per_delivery_tungstenite": ns(Mode::Tungstenite).map(|x| rounded(x, 1)),
        "ns_per_delivery_tungstenite_reading":
            ns(Mode::TungsteniteReading).map(|x| rounded(x, 1)),
        "compress_once_vs_uncompressed": ratio(Mode::CompressOnce, Mode::Uncompressed),
        "compress_once_vs_tungstenite": ratio(Mode::CompressOnce, Mode::Tungstenite),
        "per_connection_vs_compress_once": ratio(Mode::PerConnection, Mode::CompressOnce),
        "wire_bytes_per_delivery_compressed": once.map(|o| rounded(o.wire_bytes_per_delivery, 1)),
        "wire_bytes_per_delivery_uncompressed":
            get(Mode::Uncompressed).map(|o| rounded(o.wire_bytes_per_delivery, 1)),
    });
    if args.json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    }
}

/// The client process for one mode: `subscribers` connections, then one
/// line `K` on stdout when every connection has received K messages.
async fn client(args: &Args) -> std::io::Result<()> {
    let port = args.port.expect("--port");
    let n = args.subscribers.expect("--subscribers");
    let messages = args.messages.expect("--messages");
    let counts = Rc::new(RefCell::new(vec![0usize; messages + 1]));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let mut streams = Vec::with_capacity(n);
    // Connect in batches: the listen backlog is finite.
    for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
        let mut batch = Vec::new();
        for _ in chunk {
            batch.push(tokio::task::spawn_local(handshake(
                port,
                args.offer_deflate,
            )));
        }
        for b in batch {
            streams.push(b.await.expect("handshake task")?);
        }
    }
    let mut stdout = tokio::io::stdout();
    stdout.write_all(b"ready\n").await?;
    stdout.flush().await?;
    for (stream, leftover) in streams {
        let counts = counts.clone();
        let tx = tx.clone();
        tokio::task::spawn_local(async move {
            let _ = read_frames(stream, leftover, n, &counts, &tx).await;
        });
    }
    drop(tx);
    // Report each message once every connection has it; stop when the
    // server closes our stdin (or all connections ended).
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            k = rx.recv() => match k {
                Some(k) => {
                    stdout.write_all(format!("{k}\n").as_bytes()).await?;
                    stdout.flush().await?;
                }
                None => return Ok(()),
            },
            r = stdin.read(&mut sink) => {
                if matches!(r, Ok(0) | Err(_)) {
                    return Ok(());
                }
            }
        }
    }
}

async fn handshake(port: u16, deflate: bool) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    let ext = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    let req = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(std::io::Error::other(format!(
                    "handshake refused: {}",
                    String::from_utf8_lossy(&buf[..end])
                )));
            }
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            if deflate != head.contains("permessage-deflate") {
                return Err(std::io::Error::other("permessage-deflate not as expected"));
            }
            return Ok((s, buf.split_off(end + 4)));
        }
    }
}

/// Reads server frames, counting complete data messages; message `k`
/// done on all `n` connections is sent on `tx`.
async fn read_frames(
    mut s: TcpStream,
    mut buf: Vec<u8>,
    n: usize,
    counts: &RefCell<Vec<usize>>,
    tx: &tokio::sync::mpsc::UnboundedSender<usize>,
) -> std::io::Result<()> {
    let mut received = 0usize;
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        // Parse every complete frame in `buf`.
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            if rest.len() < 2 {
                break;
            }
            let (fin, opcode) = (rest[0] & 0x80 != 0, rest[0] & 0x0f);
            let (len, hdr) = match rest[1] & 0x7f {
                126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                127 if rest.len() >= 10 => (
                    u64::from_be_bytes(rest[2..10].try_into().expect("8 bytes")) as usize,
                    10,
                ),
                126 | 127 => break,
                l => (l as usize, 2),
            };
            if rest.len() < hdr + len {
                break;
            }
            at += hdr + len;
            if opcode == 8 {
                return Ok(());
            }
            if fin && matches!(opcode, 0..=2) {
                received += 1;
                let mut c = counts.borrow_mut();
                if received < c.len() {
                    c[received] += 1;
                    if c[received] == n {
                        let _ = tx.send(received);
                    }
                }
            }
        }
        buf.drain(..at);
        let got = s.read(&mut chunk).await?;
        if got == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..got]);
    }
}

async fn run_mode(
    mode: Mode,
    subscribers: usize,
    messages: usize,
    args: &Args,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let listener: TcpListener = socket.listen(4096)?;
    let port = listener.local_addr()?.port();
    let mut child: Child = Command::new(std::env::current_exe()?)
        .args([
            "--client-role",
            "--port",
            &port.to_string(),
            "--subscribers",
            &subscribers.to_string(),
            "--messages",
            &messages.to_string(),
        ])
        .args(mode.deflate().then_some("--offer-deflate"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();

    let hub = Broadcast::new(BroadcastConfig::new().queue_limit(messages + 8));
    let (chan, _) = tokio::sync::broadcast::channel::<Bytes>(messages + 8);
    let weft = if mode == Mode::CompressOnce || mode == Mode::PerConnection {
        ServerBuilder::new().extension(PerMessageDeflate::new())
    } else {
        ServerBuilder::new()
    };
    let local = tokio::task::LocalSet::new();
    let deadline = Duration::from_secs(args.round_timeout);
    let result = local
        .run_until(async {
            // Accept every subscriber before measuring.
            let mut accepted = 0;
            let mut ready = false;
            while accepted < subscribers || !ready {
                tokio::select! {
                    a = listener.accept(), if accepted < subscribers => {
                        let (stream, _) = a?;
                        stream.set_nodelay(true)?;
                        accepted += 1;
                        spawn_connection(mode, stream, &weft, &hub, &chan);
                    }
                    l = tokio::time::timeout(deadline, lines.next_line()), if !ready => {
                        match l?? {
                            Some(l) if l == "ready" => ready = true,
                            other => return Err(format!("client said {other:?}").into()),
                        }
                    }
                }
            }
            // Every connection's handshake is done on the client side; let
            // the server tasks finish theirs and subscribe.
            let settle = Instant::now() + deadline;
            let channel = matches!(
                mode,
                Mode::PerConnection | Mode::Tungstenite | Mode::TungsteniteReading
            );
            while !channel && hub.subscribers() < subscribers {
                if Instant::now() > settle {
                    return Err("subscribers did not all join".into());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            while channel && chan.receiver_count() < subscribers {
                if Instant::now() > settle {
                    return Err("subscribers did not all join".into());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let texts: Vec<String> = (0..messages)
                .map(|i| message(i, args.message_bytes))
                .collect();
            let start_cpu = usage().cpu;
            let start = Instant::now();
            for (k, text) in texts.into_iter().enumerate() {
                match mode {
                    Mode::CompressOnce | Mode::Uncompressed => {
                        let r = hub.send(PreparedMessage::text(text))?;
                        if r.delivered != subscribers {
                            return Err(format!("delivered to {}", r.delivered).into());
                        }
                    }
                    Mode::PerConnection | Mode::Tungstenite | Mode::TungsteniteReading => {
                        chan.send(Bytes::from(text))?;
                    }
                }
                match tokio::time::timeout(deadline, lines.next_line()).await?? {
                    Some(l) if l == (k + 1).to_string() => {}
                    other => return Err(format!("round {k}: client said {other:?}").into()),
                }
            }
            let cpu = usage().cpu - start_cpu;
            let wall = start.elapsed();
            let deliveries = (subscribers * messages) as f64;
            let stats = hub.stats();
            let (compressions, wire) = match mode {
                Mode::CompressOnce | Mode::Uncompressed => (
                    stats.compressions as f64 / messages as f64,
                    stats.wire_bytes as f64 / deliveries,
                ),
                _ => (f64::NAN, f64::NAN),
            };
            Ok(Outcome {
                ns_per_delivery: cpu.as_nanos() as f64 / deliveries,
                compressions_per_message: compressions,
                wire_bytes_per_delivery: wire,
                wall_s: wall.as_secs_f64(),
            })
        })
        .await;
    // The server side closes first (its TIME_WAIT, not the client's
    // ephemeral ports), then the client is told to go.
    drop(local);
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    result
}

fn spawn_connection(
    mode: Mode,
    stream: TcpStream,
    weft: &ServerBuilder,
    hub: &Broadcast,
    chan: &tokio::sync::broadcast::Sender<Bytes>,
) {
    match mode {
        Mode::CompressOnce | Mode::Uncompressed => {
            let (weft, hub) = (weft.clone(), hub.clone());
            tokio::task::spawn_local(async move {
                let Ok(mut ws) = weft.accept(stream).await else {
                    return;
                };
                let mut sub = hub.subscribe(&ws);
                let _ = sub.run(&mut ws, |_| {}).await;
            });
        }
        Mode::PerConnection => {
            let weft = weft.clone();
            // Subscribe before the handshake completes, so the count of
            // receivers says when everyone is in.
            let mut rx = chan.subscribe();
            tokio::task::spawn_local(async move {
                let Ok(mut ws) = weft.accept(stream).await else {
                    return;
                };
                while let Ok(b) = rx.recv().await {
                    let text = Utf8Bytes::try_from_bytes(b).expect("text");
                    if ws.feed(Message::Text(text)).await.is_err() {
                        return;
                    }
                    while let Ok(b) = rx.try_recv() {
                        let text = Utf8Bytes::try_from_bytes(b).expect("text");
                        if ws.feed(Message::Text(text)).await.is_err() {
                            return;
                        }
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
        Mode::Tungstenite => {
            let mut rx = chan.subscribe();
            tokio::task::spawn_local(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                use tokio_tungstenite::tungstenite::Message as TMessage;
                let text = |b: Bytes| {
                    TMessage::Text(
                        tokio_tungstenite::tungstenite::Utf8Bytes::try_from(b).expect("text"),
                    )
                };
                while let Ok(b) = rx.recv().await {
                    if ws.feed(text(b)).await.is_err() {
                        return;
                    }
                    while let Ok(b) = rx.try_recv() {
                        if ws.feed(text(b)).await.is_err() {
                            return;
                        }
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
        Mode::TungsteniteReading => {
            let mut rx = chan.subscribe();
            tokio::task::spawn_local(async move {
                use futures_util::StreamExt;
                use tokio_tungstenite::tungstenite::Message as TMessage;
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let text = |b: Bytes| {
                    TMessage::Text(
                        tokio_tungstenite::tungstenite::Utf8Bytes::try_from(b).expect("text"),
                    )
                };
                // Like weft's Subscription::run, the connection is read too
                // (Pings, Close): the usual split into a sink and a stream.
                let (mut sink, mut incoming) = ws.split();
                loop {
                    tokio::select! {
                        m = incoming.next() => match m {
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                        b = rx.recv() => {
                            let Ok(b) = b else { return };
                            if sink.feed(text(b)).await.is_err() {
                                return;
                            }
                            while let Ok(b) = rx.try_recv() {
                                if sink.feed(text(b)).await.is_err() {
                                    return;
                                }
                            }
                            if sink.flush().await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    }
}
