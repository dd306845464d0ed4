//! Slow clients against a weft server: `--trickle` clients that send the
//! opening handshake one byte every `--byte-interval-ms` and `--silent`
//! clients that open TCP and send nothing, while a well-behaved client
//! connects, handshakes and echoes one message `--probes` times.
//!
//! ```text
//! cargo run --release -p weft-benches --bin slowloris -- \
//!     --trickle 5000 --silent 5000 --handshake-timeout-ms 5000
//! ```
//!
//! The server (weft's `ServerBuilder` with the given handshake timeout, and
//! the bench echo loop) runs in a child process of this binary (`--serve`),
//! so its memory is measured alone. Reported as one JSON line:
//!
//! - `closed_by_timeout`: attackers the server closed, out of all, and the
//!   latest close after the timeout (`max_close_after_timeout_ms`); every
//!   attacker must be closed within the timeout plus a slack;
//! - `rss_per_pending_bytes`: the server's RSS growth with every attacker
//!   pending, per pending handshake;
//! - `probe_p50_ms` / `probe_p99_ms`: connect + handshake + echo of the
//!   well-behaved client during the attack (target: p99 under 50 ms).
//!
//! Bounded: the run ends after the handshake timeout plus 30 s at most;
//! loopback only.

use clap::Parser;
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_core::{ClientBuilder, Config, Message, ServerBuilder};

#[derive(Debug, Parser)]
#[command(name = "slowloris")]
struct Args {
    /// Clients sending the handshake one byte at a time.
    #[arg(long, default_value_t = 5000)]
    trickle: usize,
    /// Clients that connect and send nothing.
    #[arg(long, default_value_t = 5000)]
    silent: usize,
    /// Pause between the bytes of a trickling client.
    #[arg(long, default_value_t = 1000)]
    byte_interval_ms: u64,
    /// The server's handshake timeout.
    #[arg(long, default_value_t = 5000)]
    handshake_timeout_ms: u64,
    /// Well-behaved connections measured during the attack.
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// Internal: run as the server child.
    #[arg(long)]
    serve: bool,
}

#[derive(Serialize)]
struct Report {
    trickle: usize,
    silent: usize,
    handshake_timeout_ms: u64,
    opened: usize,
    closed_by_server: usize,
    /// Attackers that could not connect at all.
    connect_failed: usize,
    /// Attackers closed before the timeout (should be 0).
    closed_early: usize,
    max_close_after_timeout_ms: f64,
    rss_baseline_bytes: u64,
    rss_under_attack_bytes: u64,
    rss_per_pending_bytes: f64,
    probes: usize,
    probe_failures: usize,
    probe_p50_ms: f64,
    probe_p99_ms: f64,
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

fn serve(timeout: Duration) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    println!("PORT {}", listener.local_addr().unwrap().port());
    let server =
        Arc::new(ServerBuilder::new().config(Config::default().handshake_timeout(timeout)));
    rt.spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let server = server.clone();
            tokio::spawn(async move {
                if let Ok(ws) = server.accept(s).await {
                    weft_benches::servers::weft_echo(ws).await;
                }
            });
        }
    });
    // Exit when the parent closes stdin (or is gone), at most after 10 min.
    let mut line = String::new();
    rt.block_on(async {
        let stdin = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line));
        let _ = tokio::time::timeout(Duration::from_secs(600), stdin).await;
    });
    std::process::exit(0)
}

/// Connects (retrying briefly when the backlog is full).
async fn connect(addr: SocketAddr) -> Option<TcpStream> {
    for _ in 0..50 {
        if let Ok(s) = TcpStream::connect(addr).await {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// One attacker: returns when the server closed it, with the time since it
/// connected; `None` if the bench's own bound ran out first.
async fn attacker(
    addr: SocketAddr,
    trickle: bool,
    interval: Duration,
    bound: Duration,
) -> Result<Duration, &'static str> {
    let mut s = connect(addr).await.ok_or("connect")?;
    let t = Instant::now();
    let (mut r, mut w) = s.split();
    let read = async {
        let mut buf = [0u8; 512];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return t.elapsed(),
                Ok(_) => {}
            }
        }
    };
    let write = async {
        if trickle {
            for b in REQUEST {
                if w.write_all(std::slice::from_ref(b)).await.is_err() {
                    break;
                }
                tokio::time::sleep(interval).await;
            }
        }
        std::future::pending::<()>().await
    };
    tokio::time::timeout(bound, async {
        tokio::select! {
            d = read => d,
            _ = write => unreachable!(),
        }
    })
    .await
    .map_err(|_| "not closed")
}

async fn probe(addr: SocketAddr) -> Option<Duration> {
    let t = Instant::now();
    let (mut ws, _) = ClientBuilder::new()
        .connect(&format!("ws://{addr}/"))
        .await
        .ok()?;
    ws.send(Message::text("ping")).await.ok()?;
    match ws.recv().await {
        Some(Ok(Message::Text(t2))) if t2 == "ping" => {}
        _ => return None,
    }
    let d = t.elapsed();
    let _ = ws.close(weft_core::CloseCode::NORMAL, "").await;
    Some(d)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    let args = Args::parse();
    let timeout = Duration::from_millis(args.handshake_timeout_ms);
    let fd_limit = weft_benches::raise_fd_limit() as usize;
    if args.serve {
        serve(timeout);
    }
    let total = args.trickle + args.silent;
    if fd_limit < total + 256 {
        eprintln!("RLIMIT_NOFILE is {fd_limit}: too low for {total} clients");
        std::process::exit(1);
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--serve",
            "--handshake-timeout-ms",
            &args.handshake_timeout_ms.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("server child");
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let rss = || {
        test_support::proc_status(pid)
            .map(|s| s.vm_rss)
            .unwrap_or(0)
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(async {
        // Warm-up: a few good connections.
        for _ in 0..20 {
            let _ = probe(addr).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let baseline = rss();
        let bound = timeout + Duration::from_secs(30);
        let interval = Duration::from_millis(args.byte_interval_ms);
        let opened = Arc::new(AtomicUsize::new(0));
        let mut attackers = Vec::with_capacity(total);
        for i in 0..total {
            let opened = opened.clone();
            attackers.push(tokio::spawn(async move {
                opened.fetch_add(1, Ordering::Relaxed);
                attacker(addr, i < args.trickle, interval, bound).await
            }));
            if i % 100 == 99 {
                // Stay within the listen backlog.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // The server now holds (about) every attacker pending.
        tokio::time::sleep(timeout / 2).await;
        let under_attack = rss();
        let mut lat = Vec::new();
        let mut failures = 0;
        for _ in 0..args.probes {
            match tokio::time::timeout(Duration::from_secs(5), probe(addr)).await {
                Ok(Some(d)) => lat.push(d),
                _ => failures += 1,
            }
        }
        lat.sort();
        let mut closed = 0;
        let mut connect_failed = 0;
        let mut early = 0;
        let mut worst = Duration::ZERO;
        for a in attackers {
            let r = a.await.expect("attacker task");
            if r == Err("connect") {
                connect_failed += 1;
            }
            if let Ok(d) = r {
                closed += 1;
                // A little slack: connect and accept are not simultaneous.
                if d + Duration::from_millis(50) < timeout {
                    early += 1;
                }
                worst = worst.max(d);
            }
        }
        Report {
            trickle: args.trickle,
            silent: args.silent,
            handshake_timeout_ms: args.handshake_timeout_ms,
            opened: opened.load(Ordering::Relaxed),
            closed_by_server: closed,
            connect_failed,
            closed_early: early,
            max_close_after_timeout_ms: (worst.as_secs_f64() - timeout.as_secs_f64()) * 1e3,
            rss_baseline_bytes: baseline,
            rss_under_attack_bytes: under_attack,
            rss_per_pending_bytes: under_attack.saturating_sub(baseline) as f64
                / total.max(1) as f64,
            probes: args.probes,
            probe_failures: failures,
            probe_p50_ms: percentile(&lat, 0.5),
            probe_p99_ms: percentile(&lat, 0.99),
        }
    });
    drop(child.stdin.take());
    let _ = child.wait();
    println!("{}", serde_json::to_string(&report).unwrap());
    if report.closed_by_server != total || report.closed_early > 0 {
        std::process::exit(1);
    }
}
