//! Multiplexing benchmarks (weft-mux).
//!
//! ```text
//! cargo run --release -p weft-benches --bin mux_bench -- [--quick] [throughput] [memory] [fairness]
//! ```
//!
//! - **throughput**: K logical channels over one connection against K
//!   separate connections, K = 1, 10, 100, 1000, with 1 KiB and 64 KiB
//!   messages. Every channel (or connection) runs send-then-receive loops on
//!   its own task against an in-process echo server; the figures are echoed
//!   messages per second over all of them, per second of wall time and per
//!   second of this process's CPU time (steadier when other work shares the
//!   machine). The baseline is what a plain weft server does: its
//!   connections arrive on a listener of their own and are accepted with
//!   `ServerBuilder::accept` on a socket with `TCP_NODELAY` only, as
//!   `echo_server --no-mux` does; only the mux listener's sockets get
//!   `MuxServerBuilder::tune_tcp` (`TCP_NOTSENT_LOWAT`). Every run measures
//!   both runtime shapes (`--threads 1,2`, the default), each case with
//!   client and server on the same runtime; `throughput --json` prints only
//!   the JSON lines (`threads`, `k`, `size`, `ratio` = mux ÷ separate, ...).
//! - **memory**: resident memory per idle logical channel with 10,000
//!   channels open on one connection. The server runs in a child process
//!   (this binary re-executed with `--serve`), so only its memory is counted;
//!   measured once with the server holding the channel handles and once with
//!   an echo task per channel (what an application typically does).
//! - **fairness**: while one channel streams 100 MiB (1 MiB messages,
//!   echoed), another sends a 64-byte message every millisecond and times
//!   its echo: p50, p99 and maximum latency.
//!
//! Memory and fairness run on the first runtime shape of `--threads`
//! (1: a current-thread runtime; N > 1: a multi-thread one with N workers). `--sizes 1024,65536` and
//! `--ks 1,100` pick throughput cases. Loopback only; every loop is bounded
//! in count and time.

use clap::{Parser, ValueEnum};
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use weft_benches::whole;
use weft_core::handshake::ServerOptions;
use weft_core::{ClientBuilder, Message, ServerBuilder};
use weft_mux::{Accepted, Channel, MuxClient, MuxConfig, MuxServerBuilder};

fn config() -> MuxConfig {
    MuxConfig::default().max_channels(20_000)
}

/// Serves mux (and plain) clients on `listener`, tuned as a mux server
/// tunes its sockets; `hold` keeps channel handles instead of running an
/// echo task per channel.
async fn serve(listener: TcpListener, hold: bool) {
    let server = MuxServerBuilder::new(ServerBuilder::new(), config(), ServerOptions::default());
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        // TCP_NOTSENT_LOWAT, as a mux server should.
        let _ = server.tune_tcp(&stream);
        let server = server.clone();
        tokio::spawn(async move {
            match server.accept(stream).await {
                Ok(Accepted::Plain(mut ws)) => {
                    while let Some(Ok(m)) = ws.recv().await {
                        if m.is_data() && ws.feed(m).await.is_err() {
                            break;
                        }
                    }
                }
                Ok(Accepted::Mux(mut conn)) => {
                    let mut held: Vec<Channel> = Vec::new();
                    while let Some(incoming) = conn.next_channel().await {
                        let Ok(mut ch) = incoming.accept() else {
                            continue;
                        };
                        if hold {
                            held.push(ch);
                            continue;
                        }
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
}

/// Serves plain clients as a plain weft server does (`echo_server
/// --no-mux`): `TCP_NODELAY`, no mux socket tuning, `ServerBuilder::accept`.
async fn serve_plain(listener: TcpListener) {
    let server = ServerBuilder::new();
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            if let Ok(mut ws) = server.accept(stream).await {
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_data() && ws.feed(m).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
}

async fn bind_loopback() -> (TcpListener, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    (listener, addr)
}

/// The mux server's address.
async fn start_server() -> std::net::SocketAddr {
    let (listener, addr) = bind_loopback().await;
    tokio::spawn(serve(listener, false));
    addr
}

/// The plain (baseline) server's address.
async fn start_plain_server() -> std::net::SocketAddr {
    let (listener, addr) = bind_loopback().await;
    tokio::spawn(serve_plain(listener));
    addr
}

async fn open_channels(client: &MuxClient, k: usize) -> Vec<Channel> {
    let mut out = Vec::with_capacity(k);
    for batch in (0..k).collect::<Vec<_>>().chunks(200) {
        let opens = batch.iter().map(|i| {
            let client = client.clone();
            async move {
                client
                    .open_channel(&format!("/c{i}"), &[], Vec::new())
                    .await
            }
        });
        for ch in futures_util::future::join_all(opens).await {
            out.push(ch.expect("open channel"));
        }
    }
    out
}

/// Messages per second of wall time and per second of CPU time for `k`
/// channels (or connections) each echoing `per` messages of `size` bytes one
/// at a time.
async fn throughput(addr: std::net::SocketAddr, k: usize, size: usize, mux: bool) -> (f64, f64) {
    let total_budget: usize = if size >= 65536 { 4_000 } else { 40_000 };
    let per = (total_budget / k).max(2);
    let payload = Message::binary(vec![0x5au8; size]);
    let started;
    let cpu_started;
    let mut tasks = Vec::with_capacity(k);
    if mux {
        let client = MuxClient::connect(&format!("ws://{addr}/"), config())
            .await
            .expect("mux connect");
        let channels = open_channels(&client, k).await;
        started = Instant::now();
        cpu_started = weft_benches::usage().cpu;
        for mut ch in channels {
            let payload = payload.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..per {
                    ch.send(payload.clone()).await.expect("send");
                    check_echo(ch.recv().await, size);
                }
            }));
        }
        join_bounded(tasks).await;
        client.close();
    } else {
        let mut conns = Vec::with_capacity(k);
        for _ in 0..k {
            let (ws, _) = ClientBuilder::new()
                .connect(&format!("ws://{addr}/"))
                .await
                .expect("connect");
            conns.push(ws);
        }
        started = Instant::now();
        cpu_started = weft_benches::usage().cpu;
        for mut ws in conns {
            let payload = payload.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..per {
                    ws.send(payload.clone()).await.expect("send");
                    check_echo(ws.recv().await, size);
                }
            }));
        }
        join_bounded(tasks).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = (weft_benches::usage().cpu - cpu_started).as_secs_f64();
    ((k * per) as f64 / wall, (k * per) as f64 / cpu)
}

/// Panics unless an echo of `size` bytes came back.
fn check_echo<E: std::fmt::Debug>(got: Option<Result<Message, E>>, size: usize) {
    match got {
        Some(Ok(m)) if m.len() == size => {}
        other => panic!("bad echo: {:?}", other.map(|r| r.map(|m| m.len()))),
    }
}

/// Waits for every echo task, each within 120 s.
async fn join_bounded(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("bounded")
            .expect("task");
    }
}

/// Resident memory of `pid` in KiB; 0 if `/proc` cannot tell.
fn rss_kib(pid: u32) -> u64 {
    test_support::proc_status(pid).map_or(0, |s| s.vm_rss / 1024)
}

/// Child mode: serve on 127.0.0.1:0, print the port, exit when stdin closes.
fn serve_child(hold: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("addr").port());
        let _ = std::io::stdout().flush();
        tokio::spawn(serve(listener, hold));
        let _ = tokio::time::timeout(
            Duration::from_secs(600),
            tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
            }),
        )
        .await;
    });
}

async fn memory(channels: usize, hold: bool) -> (f64, u64, u64) {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .arg("--serve")
        .arg(if hold { "hold" } else { "tasks" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let mut port = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut port)
        .expect("port");
    let addr = format!("127.0.0.1:{}", port.trim());
    // Warm up: one mux connection with a few channels, then closed.
    {
        let c = MuxClient::connect(&format!("ws://{addr}/"), config())
            .await
            .expect("connect");
        let _w = open_channels(&c, 50).await;
        c.close();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let client = MuxClient::connect(&format!("ws://{addr}/"), config())
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(child.id());
    let held = open_channels(&client, channels).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(child.id());
    drop(held);
    client.close();
    drop(child.stdin.take());
    let _ = child.wait();
    (
        (after.saturating_sub(before)) as f64 * 1024.0 / channels as f64,
        before,
        after,
    )
}

async fn fairness(
    addr: std::net::SocketAddr,
    total_mib: usize,
) -> (Duration, Duration, Duration, usize) {
    let client = MuxClient::connect(&format!("ws://{addr}/"), config())
        .await
        .expect("connect");
    let mut bulk = client
        .open_channel("/bulk", &[], Vec::new())
        .await
        .expect("open");
    let mut probe = client
        .open_channel("/probe", &[], Vec::new())
        .await
        .expect("open");
    let big = Message::binary(vec![1u8; 1 << 20]);
    let streamer = tokio::spawn(async move {
        // Keep two messages in flight so the physical connection stays busy.
        let mut sent = 0;
        let mut received = 0;
        while received < total_mib {
            while sent < total_mib && sent - received < 2 {
                bulk.send(big.clone()).await.expect("send");
                sent += 1;
            }
            match bulk.recv().await {
                Some(Ok(m)) if m.len() == 1 << 20 => received += 1,
                other => panic!("bad bulk echo {:?}", other.map(|r| r.map(|m| m.len()))),
            }
        }
    });
    let mut latencies = Vec::new();
    let small = Message::binary(vec![2u8; 64]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !streamer.is_finished() && Instant::now() < deadline {
        let t = Instant::now();
        probe.send(small.clone()).await.expect("send");
        match probe.recv().await {
            Some(Ok(m)) if m.len() == 64 => latencies.push(t.elapsed()),
            other => panic!("bad probe echo {:?}", other.map(|r| r.map(|m| m.len()))),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::timeout(Duration::from_secs(60), streamer)
        .await
        .expect("bounded")
        .expect("streamer");
    client.close();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    (
        pct(0.5),
        pct(0.99),
        *latencies.last().expect("samples"),
        latencies.len(),
    )
}

/// Multiplexing benchmarks: K channels over one connection against K
/// connections, memory per idle channel, fairness under a bulk transfer.
#[derive(Debug, Parser)]
#[command(name = "mux_bench")]
struct Args {
    /// Sections to run [default: all three].
    #[arg(value_enum, value_name = "SECTION")]
    sections: Vec<Section>,
    /// Fewer and smaller cases (K up to 100, 2,000 channels, 20 MiB).
    #[arg(long)]
    quick: bool,
    /// Runtime shapes, each a worker-thread count: 1 runs client and server
    /// on one current-thread runtime, N > 1 on a multi-thread one with N
    /// workers. Throughput runs every shape; memory and fairness the first.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1,2"
    )]
    threads: Vec<usize>,
    /// Print only the JSON lines (one per case).
    #[arg(long)]
    json: bool,
    /// Message sizes of the throughput cases, in bytes [default: 1024,65536].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Channel (connection) counts of the throughput cases [default:
    /// 1,10,100,1000; 1,10,100 with --quick].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    ks: Vec<usize>,
    /// Run one side of the throughput cases only (for profiling).
    #[arg(long, value_enum)]
    side: Option<Side>,
    /// Internal: run as the memory section's server child, holding channel
    /// handles or running an echo task per channel.
    #[arg(long, value_enum, value_name = "MODE", num_args = 0..=1, default_missing_value = "tasks")]
    serve: Option<ServeMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    /// K channels over one connection against K connections.
    Throughput,
    /// Resident memory per idle logical channel.
    Memory,
    /// Echo latency of one channel while another streams.
    Fairness,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Side {
    /// K channels over one connection only.
    Mux,
    /// K separate connections only.
    Separate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServeMode {
    /// Keep every channel handle, no tasks.
    Hold,
    /// An echo task per channel.
    Tasks,
}

/// One throughput case, as a JSON line.
#[derive(Serialize)]
struct ThroughputLine {
    bench: &'static str,
    threads: usize,
    k: usize,
    size: usize,
    /// mux ÷ separate, messages per second of wall time.
    ratio: Option<f64>,
    /// mux ÷ separate, messages per second of CPU time.
    cpu_ratio: Option<f64>,
    mux: Option<i64>,
    separate: Option<i64>,
    mux_per_cpu_s: Option<i64>,
    separate_per_cpu_s: Option<i64>,
}

/// One memory measurement, as a JSON line.
#[derive(Serialize)]
struct MemoryLine {
    bench: &'static str,
    channels: usize,
    hold: bool,
    bytes_per_channel: Option<i64>,
}

/// The fairness measurement, as a JSON line.
#[derive(Serialize)]
struct FairnessLine {
    bench: &'static str,
    mib: usize,
    samples: usize,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

fn json(line: &impl Serialize) -> String {
    serde_json::to_string(line).expect("a measurement serializes")
}

/// A list option's positive values, or `None` to use the defaults.
fn positive(list: &[usize]) -> Option<Vec<usize>> {
    let list: Vec<usize> = list.iter().copied().filter(|&v| v > 0).collect();
    (!list.is_empty()).then_some(list)
}

fn main() {
    let args = Args::parse();
    if let Some(mode) = args.serve {
        return serve_child(mode == ServeMode::Hold);
    }
    raise_fd_limit();
    let quick = args.quick;
    let named = |s: Section| args.sections.is_empty() || args.sections.contains(&s);
    let [want_throughput, want_memory, want_fairness] =
        [Section::Throughput, Section::Memory, Section::Fairness].map(named);
    let ks = positive(&args.ks);
    let sizes = positive(&args.sizes);
    let run_mux = args.side != Some(Side::Separate);
    let run_separate = args.side != Some(Side::Mux);
    let shapes: Vec<usize> = if args.threads.is_empty() {
        vec![1, 2]
    } else {
        args.threads.iter().map(|&t| t.max(1)).collect()
    };
    let quiet = args.json;
    // Prose goes to stdout unless --json; JSON lines always do.
    let say = |text: String| {
        if !quiet {
            println!("{text}");
        }
    };
    if want_throughput {
        say(
            "## Throughput: K channels over one connection vs K connections (echoed messages/s)\n"
                .into(),
        );
        say("Per second of wall time, and per second of CPU time (client and server share this process; CPU time is steadier on a busy machine). Separate connections are served as a plain weft server serves them (no mux socket tuning).\n".into());
        say("| threads | K | size | mux | separate | mux / separate | mux / CPU-s | separate / CPU-s | CPU ratio |\n|---|---|---|---|---|---|---|---|---|".into());
        let default_ks: &[usize] = if quick {
            &[1, 10, 100]
        } else {
            &[1, 10, 100, 1000]
        };
        let ks = ks.clone().unwrap_or_else(|| default_ks.to_vec());
        let sizes = sizes.clone().unwrap_or_else(|| vec![1024, 65536]);
        for &threads in &shapes {
            runtime(threads).block_on(async {
                let mux_addr = start_server().await;
                let plain_addr = start_plain_server().await;
                let none = (f64::NAN, f64::NAN);
                for &size in &sizes {
                    for &k in &ks {
                        let (m, mc) = if run_mux { throughput(mux_addr, k, size, true).await } else { none };
                        let (s, sc) = if run_separate { throughput(plain_addr, k, size, false).await } else { none };
                        say(format!("| {threads} | {k} | {size} | {m:.0} | {s:.0} | {:.2} | {mc:.0} | {sc:.0} | {:.2} |", m / s, mc / sc));
                        let ratio = |a: f64, b: f64| {
                            let r = a / b;
                            r.is_finite().then(|| (r * 1000.0).round() / 1000.0)
                        };
                        let line = ThroughputLine {
                            bench: "mux_throughput",
                            threads,
                            k,
                            size,
                            ratio: ratio(m, s),
                            cpu_ratio: ratio(mc, sc),
                            mux: whole(m),
                            separate: whole(s),
                            mux_per_cpu_s: whole(mc),
                            separate_per_cpu_s: whole(sc),
                        };
                        println!("{}", json(&line));
                    }
                }
            });
        }
    }
    // One shape for the rest: on this 2-core VM a wake-up that crosses CPUs
    // costs tens of microseconds, which would measure the scheduler.
    runtime(shapes[0]).block_on(async move {
        if want_memory {
            let n = if quick { 2_000 } else { 10_000 };
            say(format!(
                "\n## Memory per idle logical channel ({n} channels, server process)\n"
            ));
            for hold in [true, false] {
                let (per, before, after) = memory(n, hold).await;
                let mode = if hold {
                    "channel handles held"
                } else {
                    "an echo task per channel"
                };
                say(format!(
                    "- {mode}: {:.0} bytes per channel (RSS {before} KiB -> {after} KiB)",
                    per
                ));
                let line = MemoryLine {
                    bench: "mux_memory",
                    channels: n,
                    hold,
                    bytes_per_channel: whole(per),
                };
                println!("{}", json(&line));
            }
        }
        if want_fairness {
            let addr = start_server().await;
            let mib = if quick { 20 } else { 100 };
            let (p50, p99, max, n) = fairness(addr, mib).await;
            say(format!(
                "\n## Fairness: 64 B echo latency while another channel streams {mib} MiB\n"
            ));
            say(format!(
                "- {n} samples: p50 {p50:.2?}, p99 {p99:.2?}, max {max:.2?}"
            ));
            let us = |d: Duration| d.as_micros() as u64;
            println!(
                "{}",
                json(&FairnessLine {
                    bench: "mux_fairness",
                    mib,
                    samples: n,
                    p50_us: us(p50),
                    p99_us: us(p99),
                    max_us: us(max),
                })
            );
        }
    });
}

/// A current-thread runtime for 1, a multi-thread one with `threads`
/// workers otherwise.
fn runtime(threads: usize) -> tokio::runtime::Runtime {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .expect("runtime")
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
