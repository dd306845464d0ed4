//! Soak: `--conns` connections (10,000 by default) open at the same time
//! against one weft server, opening and closing continuously for a set
//! time, with mixed traffic: plain WebSockets, permessage-deflate, and mux
//! connections with several channels; every `--vanish-every`-th client
//! disappears without a closing handshake (its TCP connection is just
//! dropped, half of them with an RST).
//!
//! ```text
//! cargo run --release -p weft-benches --bin soak -- --conns 10000 --seconds 300
//! ```
//!
//! The server (`MuxServerBuilder` over a `ServerBuilder` with
//! permessage-deflate, echoing on every connection and channel) runs in a
//! child process of this binary (`--serve`). A round has `--conns` slots;
//! each slot runs `--lives` clients one after the other. The first client
//! of every slot connects (at most `--open-concurrency` handshakes at a
//! time), exchanges messages and then holds its connection until every
//! slot's first client is open: at that moment all `--conns` connections
//! are open at once, and the parent samples the server under that load
//! (`peak_*` fields). Then they exchange again and close or vanish while
//! the slots' next clients open, exchange and close: connections open and
//! close continuously. After every round the parent samples the child's RSS
//! (`/proc/<pid>/status`), open file descriptors (`/proc/<pid>/fd`), live
//! tokio tasks and live heap bytes (asked over the child's stdin; the
//! binary's global allocator counts the bytes allocated and not freed),
//! then asks the child to `malloc_trim(0)` and reads the RSS again.
//!
//! One JSON line per round, then a summary line with the checks:
//! `peak_all_open` (every round had all `--conns` connections open at
//! once), `rss_within_10pct` (final RSS against the RSS after the first
//! round, both after `malloc_trim`), `fds_back`, `tasks_back` (against the
//! idle baseline) and `errors` (other than the injected disappearances;
//! must be 0). Why after `malloc_trim`: glibc keeps freed pages in its
//! arenas, so the raw RSS after a round of 10,000 connections depends on
//! how the last round's frees were spread over the arenas, not on what the
//! server still holds; `rss_raw_*` and `heap_*` (the live heap, which a
//! leak would make grow) are reported next to it, and `heap_within_10pct`
//! is informational.
//!
//! Resources: both processes raise `RLIMIT_NOFILE` to its hard limit (the
//! run needs `--conns` plus a few hundred descriptors in each). The
//! clients spread over `--source-addrs` loopback source addresses
//! (127.0.0.1, 127.0.0.2, ...; all of 127/8 is loopback on Linux) with
//! `IP_BIND_ADDRESS_NO_PORT`, so that the ephemeral ports of one source
//! address (about 28,000) are never the limit, TIME_WAIT included.
//!
//! Bounded: `--seconds` of rounds (a round that is running finishes, and
//! every step of a client has a 30 s timeout, the hold `--hold-timeout`);
//! loopback only.

use clap::Parser;
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use weft_core::handshake::ServerOptions;
use weft_core::{ClientBuilder, CloseCode, Message, ServerBuilder, WebSocket};
use weft_extensions::PerMessageDeflate;
use weft_mux::{Accepted, Channel, MuxClient, MuxConfig, MuxFactory, MuxServerBuilder};

/// `System` with a count of live heap bytes (what the server child still
/// holds, independent of the allocator's caching).
struct CountingAlloc;

static HEAP_LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counter is
// only bookkeeping.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP_LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP_LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        HEAP_LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, size) };
        if !p.is_null() {
            HEAP_LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            HEAP_LIVE.fetch_add(size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// Connections open at the same time in every round (slots).
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Clients each slot runs one after the other per round (the first
    /// holds until all slots are open).
    #[arg(long, default_value_t = 2)]
    lives: usize,
    /// Run rounds for this long.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Handshakes (with their first exchange) in progress at a time.
    #[arg(long, default_value_t = 256)]
    open_concurrency: usize,
    /// Every n-th client vanishes without a close (0: none).
    #[arg(long, default_value_t = 10)]
    vanish_every: usize,
    /// Loopback source addresses the clients bind to (127.0.0.1 up).
    #[arg(long, default_value_t = 4)]
    source_addrs: u8,
    /// Longest wait, in seconds, for all slots to be open at once.
    #[arg(long, default_value_t = 120)]
    hold_timeout: u64,
    /// Internal: run as the server child.
    #[arg(long)]
    serve: bool,
}

#[derive(Serialize)]
struct Round {
    round: usize,
    conns: usize,
    clients: usize,
    secs: f64,
    /// Seconds until every slot's first client was open.
    open_secs: f64,
    errors: usize,
    vanished: usize,
    /// Client connections open at the sampling moment (all slots' first
    /// clients that connected).
    peak_open: usize,
    peak_server_fds: usize,
    peak_server_tasks: usize,
    peak_server_rss_bytes: u64,
    peak_server_heap_bytes: u64,
    /// RSS after the round, then after `malloc_trim(0)`.
    rss_raw_bytes: u64,
    rss_bytes: u64,
    heap_bytes: u64,
    fds: usize,
    tasks: usize,
}

#[derive(Serialize)]
struct Summary {
    summary: bool,
    rounds: usize,
    conns_at_once: usize,
    clients_total: usize,
    peak_all_open: bool,
    errors: usize,
    vanished: usize,
    rss_baseline_bytes: u64,
    rss_after_first_round_bytes: u64,
    rss_final_bytes: u64,
    rss_within_10pct: bool,
    rss_raw_after_first_round_bytes: u64,
    rss_raw_final_bytes: u64,
    rss_raw_within_10pct: bool,
    heap_baseline_bytes: u64,
    heap_after_first_round_bytes: u64,
    heap_final_bytes: u64,
    heap_within_10pct: bool,
    fds_baseline: usize,
    fds_final: usize,
    fds_back: bool,
    tasks_baseline: usize,
    tasks_final: usize,
    tasks_back: bool,
}

fn serve() -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    println!("PORT {}", listener.local_addr().unwrap().port());
    let plain = ServerBuilder::new().extension(PerMessageDeflate::new());
    let channels = ServerOptions::default().extension(PerMessageDeflate::new());
    let server = MuxServerBuilder::new(plain, MuxConfig::default(), channels);
    rt.spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let server = server.clone();
            tokio::spawn(async move {
                match server.accept(s).await {
                    Ok(Accepted::Plain(ws)) => weft_benches::servers::weft_echo(ws).await,
                    Ok(Accepted::Mux(mut mux)) => {
                        while let Some(incoming) = mux.next_channel().await {
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
                    Err(_) => {}
                }
            });
        }
    });
    // Commands on stdin: `stats` prints the live tasks and heap bytes,
    // `trim` runs malloc_trim(0) and answers; EOF ends the child.
    let handle = rt.handle().clone();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        match line.as_deref() {
            Ok("stats") => {
                println!(
                    "TASKS {} {}",
                    handle.metrics().num_alive_tasks(),
                    HEAP_LIVE.load(Ordering::Relaxed)
                );
                let _ = std::io::stdout().flush();
            }
            Ok("trim") => {
                // SAFETY: malloc_trim takes no pointers; it only returns
                // the allocator's free pages to the kernel.
                unsafe {
                    libc::malloc_trim(0);
                }
                println!("TRIMMED");
                let _ = std::io::stdout().flush();
            }
            _ => break,
        }
    }
    std::process::exit(0)
}

fn message(i: usize, k: usize) -> Message {
    match (i + k) % 2 {
        0 => Message::text("soak ".repeat(1 + (i * 7 + k) % 200)),
        _ => Message::binary(vec![(i + k) as u8; 1 + (i * 13 + k) % 3000]),
    }
}

/// An open client: a WebSocket (plain or permessage-deflate), or a mux
/// connection with its channels.
enum Open {
    Ws(Box<WebSocket<TcpStream>>),
    Mux(MuxClient, Vec<Channel>),
}

/// A TCP connection to `addr` from `src` (port chosen at connect time).
async fn tcp(addr: SocketAddr, src: IpAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value that outlives the call.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    sock.bind(SocketAddr::new(src, 0))?;
    let s = sock.connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Client `i` connects (kind `i % 3`) and exchanges its first messages.
async fn open(addr: SocketAddr, src: IpAddr, i: usize) -> Result<Open, String> {
    let url = format!("ws://{addr}/soak");
    let stream = tcp(addr, src).await.map_err(|e| format!("connect: {e}"))?;
    let mut open = match i % 3 {
        0 | 1 => {
            let builder = match i % 3 {
                0 => ClientBuilder::new(),
                _ => ClientBuilder::new().extension(PerMessageDeflate::new()),
            };
            let (ws, _) = builder
                .connect_on(stream, url.as_str())
                .await
                .map_err(|e| e.to_string())?;
            Open::Ws(Box::new(ws))
        }
        _ => {
            let config = MuxConfig::default();
            let (ws, _) = ClientBuilder::new()
                .extension(MuxFactory {
                    quota: config.implicit_quota,
                })
                .config(config.channel.clone())
                .connect_on(stream, url.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let mux = MuxClient::start(ws, &addr.to_string(), config).map_err(|e| e.to_string())?;
            let mut chans = vec![mux.implicit_channel()];
            for _ in 0..2 {
                chans.push(
                    mux.open_channel("/ch", &[], vec![Arc::new(PerMessageDeflate::new())])
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            Open::Mux(mux, chans)
        }
    };
    exchange(&mut open, i, 0).await?;
    Ok(open)
}

/// Sends message `(i, k)` (and `k + 1` on the next channel...) and checks
/// the echo.
async fn exchange(open: &mut Open, i: usize, k: usize) -> Result<(), String> {
    match open {
        Open::Ws(ws) => {
            for k in k..k + 2 {
                let m = message(i, k);
                ws.send(m.clone()).await.map_err(|e| e.to_string())?;
                match ws.recv().await {
                    Some(Ok(r)) if r == m => {}
                    other => return Err(format!("echo: {other:?}")),
                }
            }
        }
        Open::Mux(_, chans) => {
            for (c, ch) in chans.iter_mut().enumerate() {
                let m = message(i, k + c);
                ch.send(m.clone()).await.map_err(|e| e.to_string())?;
                match ch.recv().await {
                    Some(Ok(r)) if r == m => {}
                    other => return Err(format!("mux echo: {other:?}")),
                }
            }
        }
    }
    Ok(())
}

/// Closes the client, or drops it without a close when `vanish` (odd `i`:
/// with an RST, SO_LINGER 0); `Ok(true)` when it vanished.
async fn finish(open: Open, i: usize, vanish: bool) -> Result<bool, String> {
    match open {
        Open::Ws(mut ws) => {
            if vanish {
                if i % 2 == 1 {
                    let _ = ws.get_ref().set_zero_linger();
                }
                drop(ws);
                return Ok(true);
            }
            ws.close(CloseCode::NORMAL, "")
                .await
                .map_err(|e| e.to_string())?;
        }
        Open::Mux(mux, chans) => {
            if vanish {
                drop(chans);
                drop(mux);
                return Ok(true);
            }
            for mut ch in chans {
                let _ = ch.close(CloseCode::NORMAL, "").await;
            }
            mux.close();
        }
    }
    Ok(false)
}

/// What the clients of a round counted.
#[derive(Default)]
struct Counts {
    opened: AtomicUsize,
    failed_first: AtomicUsize,
    errors: AtomicUsize,
    vanished: AtomicUsize,
}

impl Counts {
    fn error(&self, who: usize, e: &str) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("client {who}: {e}");
        }
    }
}

const STEP: Duration = Duration::from_secs(30);

/// One slot of a round: `lives` clients one after the other; the first
/// holds its connection until `go`.
async fn slot(
    args: Arc<Args>,
    addr: SocketAddr,
    slot: usize,
    gate: Arc<Semaphore>,
    counts: Arc<Counts>,
    mut go: watch::Receiver<bool>,
) {
    let src = IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (slot % args.source_addrs.max(1) as usize) as u8,
    ));
    for life in 0..args.lives {
        let i = slot * args.lives + life;
        let vanish = args.vanish_every > 0 && i % args.vanish_every == args.vanish_every - 1;
        let permit = gate.acquire().await.expect("gate");
        let r = tokio::time::timeout(STEP, open(addr, src, i)).await;
        drop(permit);
        let mut c = match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                counts.error(i, &e);
                if life == 0 {
                    counts.failed_first.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            Err(_) => {
                counts.error(i, "open timed out");
                if life == 0 {
                    counts.failed_first.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
        };
        if life == 0 {
            counts.opened.fetch_add(1, Ordering::Relaxed);
            let hold = Duration::from_secs(args.hold_timeout);
            let _ = tokio::time::timeout(hold, go.wait_for(|go| *go)).await;
        }
        let r = tokio::time::timeout(STEP, async {
            exchange(&mut c, i, 2).await?;
            finish(c, i, vanish).await
        })
        .await;
        match r {
            Ok(Ok(true)) => {
                counts.vanished.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => counts.error(i, &e),
            Err(_) => counts.error(i, "exchange/close timed out"),
        }
    }
}

struct Child {
    pid: u32,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Child {
    /// Live tasks and live heap bytes of the child.
    fn stats(&mut self) -> (usize, u64) {
        writeln!(self.stdin, "stats").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let mut it = line.trim().strip_prefix("TASKS ").unwrap().split(' ');
        let tasks = it.next().unwrap().parse().unwrap();
        let heap = it.next().unwrap().parse().unwrap();
        (tasks, heap)
    }
    /// RSS after `malloc_trim(0)` in the child.
    fn trimmed_rss(&mut self) -> u64 {
        writeln!(self.stdin, "trim").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "TRIMMED");
        self.rss()
    }
    fn rss(&self) -> u64 {
        test_support::proc_status(self.pid)
            .map(|s| s.vm_rss)
            .unwrap_or(0)
    }
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn main() {
    let args = Arc::new(Args::parse());
    let fd_limit = weft_benches::raise_fd_limit() as usize;
    if args.serve {
        serve();
    }
    if fd_limit < args.conns + 512 {
        eprintln!(
            "RLIMIT_NOFILE is {fd_limit}: too low for --conns {} (needs {} in each process)",
            args.conns,
            args.conns + 512
        );
        std::process::exit(1);
    }
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("server child");
    let mut child = Child {
        pid: proc.id(),
        stdin: proc.stdin.take().unwrap(),
        stdout: BufReader::new(proc.stdout.take().unwrap()),
    };
    let mut line = String::new();
    child.stdout.read_line(&mut line).unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let settle = || std::thread::sleep(Duration::from_millis(1500));
    settle();
    let (tasks0, heap0) = child.stats();
    let (rss0, fds0) = (child.trimmed_rss(), child.fds());
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut round = 0;
    let (mut total_errors, mut total_vanished) = (0, 0);
    let mut all_open = true;
    let (mut first_rss, mut first_raw, mut first_heap) = (0, 0, 0);
    let mut last = (rss0, fds0, tasks0, rss0, heap0);
    while round == 0 || Instant::now() < end {
        let t = Instant::now();
        let counts = Arc::new(Counts::default());
        let (go_tx, go_rx) = watch::channel(false);
        let (open_secs, peak) = rt.block_on(async {
            let gate = Arc::new(Semaphore::new(args.open_concurrency.max(1)));
            let mut tasks = Vec::with_capacity(args.conns);
            for s in 0..args.conns {
                tasks.push(tokio::spawn(slot(
                    args.clone(),
                    addr,
                    s,
                    gate.clone(),
                    counts.clone(),
                    go_rx.clone(),
                )));
            }
            // Wait until every slot's first client is open (or failed).
            let hold_end = Instant::now() + Duration::from_secs(args.hold_timeout);
            while counts.opened.load(Ordering::Relaxed)
                + counts.failed_first.load(Ordering::Relaxed)
                < args.conns
                && Instant::now() < hold_end
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let open_secs = t.elapsed().as_secs_f64();
            let (peak_tasks, peak_heap) = child.stats();
            let peak = (
                counts.opened.load(Ordering::Relaxed),
                child.fds(),
                peak_tasks,
                child.rss(),
                peak_heap,
            );
            let _ = go_tx.send(true);
            for t in tasks {
                let _ = t.await;
            }
            (open_secs, peak)
        });
        let secs = t.elapsed().as_secs_f64();
        settle();
        let rss_raw = child.rss();
        let (tasks, heap) = child.stats();
        let r = Round {
            round,
            conns: args.conns,
            clients: args.conns * args.lives,
            secs,
            open_secs,
            errors: counts.errors.load(Ordering::Relaxed),
            vanished: counts.vanished.load(Ordering::Relaxed),
            peak_open: peak.0,
            peak_server_fds: peak.1,
            peak_server_tasks: peak.2,
            peak_server_rss_bytes: peak.3,
            peak_server_heap_bytes: peak.4,
            rss_raw_bytes: rss_raw,
            rss_bytes: child.trimmed_rss(),
            heap_bytes: heap,
            fds: child.fds(),
            tasks,
        };
        total_errors += r.errors;
        total_vanished += r.vanished;
        all_open &= r.peak_open == args.conns && r.peak_server_fds >= fds0 + args.conns;
        if round == 0 {
            (first_rss, first_raw, first_heap) = (r.rss_bytes, r.rss_raw_bytes, r.heap_bytes);
        }
        last = (r.rss_bytes, r.fds, r.tasks, r.rss_raw_bytes, r.heap_bytes);
        println!("{}", serde_json::to_string(&r).unwrap());
        round += 1;
    }
    let s = Summary {
        summary: true,
        rounds: round,
        conns_at_once: args.conns,
        clients_total: round * args.conns * args.lives,
        peak_all_open: all_open,
        errors: total_errors,
        vanished: total_vanished,
        rss_baseline_bytes: rss0,
        rss_after_first_round_bytes: first_rss,
        rss_final_bytes: last.0,
        rss_within_10pct: (last.0 as f64) <= first_rss as f64 * 1.10,
        rss_raw_after_first_round_bytes: first_raw,
        rss_raw_final_bytes: last.3,
        rss_raw_within_10pct: (last.3 as f64) <= first_raw as f64 * 1.10,
        heap_baseline_bytes: heap0,
        heap_after_first_round_bytes: first_heap,
        heap_final_bytes: last.4,
        heap_within_10pct: (last.4 as f64) <= first_heap as f64 * 1.10,
        fds_baseline: fds0,
        fds_final: last.1,
        fds_back: last.1 <= fds0,
        tasks_baseline: tasks0,
        tasks_final: last.2,
        tasks_back: last.2 <= tasks0,
    };
    println!("{}", serde_json::to_string(&s).unwrap());
    drop(child.stdin);
    let _ = proc.wait();
    let ok = s.errors == 0 && s.peak_all_open && s.rss_within_10pct && s.fds_back && s.tasks_back;
    std::process::exit(if ok { 0 } else { 1 });
}
