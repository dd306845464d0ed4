//! `broker_bench`: messages per second and end-to-end latency through
//! weft-broker running as separate processes, driven by this process as
//! the load client.
//!
//! ```text
//! cargo run --release -p weft-benches --bin broker_bench              # both backends
//! cargo run --release -p weft-benches --bin broker_bench -- --backends memory --secs 2
//! ```
//!
//! For each backend it starts the shipped `weft-broker` binary (`--broker
//! PATH`; by default the one next to this bench in cargo's target
//! directory, built with `cargo build --release -p weft-broker` first when
//! it is missing; the Redis phases also start `redis-server` on a free
//! port) and runs, for `--secs` each:
//!
//! 1. **throughput**: `--producers` producers (each a `Client` with
//!    `--window` SENDs in flight, each awaiting its RECEIPT) and
//!    `--consumers` consumers (`ack: client`, credit `--credit`, every
//!    delivery acknowledged) on one queue; 256-byte bodies by default.
//!    Memory: one node. Redis: two nodes, producers and consumers spread
//!    over both.
//! 2. **latency**: the same clients paced to half of the throughput just
//!    measured; latency is from the producer's `send` call to the
//!    consumer's receipt of the MESSAGE (same process, one clock).
//!
//! For Redis it also runs `redis-benchmark` with pipelined XADD of the same
//! body size on the same Redis in the same run, and reports the broker's
//! throughput as a ratio of it, and the Redis commands of the throughput
//! phase per message (`INFO commandstats` through `redis-cli`: calls and
//! microseconds of each command per delivered message). Every phase reports
//! the CPU time per message of the broker nodes, of redis-server and of
//! this process (the load client), read from `/proc`. Output: one JSON line per phase, then a
//! summary line. Every phase is bounded by `--secs` plus a drain of at most
//! 5 s.

use clap::Parser;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weft_broker::{Client, SubscribeOptions};

/// Throughput and latency of weft-broker (memory and Redis backends).
#[derive(Debug, Parser)]
#[command(name = "broker_bench")]
struct Args {
    /// Backends to measure, comma separated: memory, redis.
    #[arg(long, value_delimiter = ',', default_value = "memory,redis")]
    backends: Vec<String>,
    /// Seconds per phase.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Producer connections.
    #[arg(long, default_value_t = 10)]
    producers: usize,
    /// Consumer connections.
    #[arg(long, default_value_t = 10)]
    consumers: usize,
    /// SENDs in flight per producer.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Credit window of each consumer.
    #[arg(long, default_value_t = 256)]
    credit: u32,
    /// Body size in bytes (at least 8: the send time travels in it).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// The weft-broker binary [default: `weft-broker` next to this bench,
    /// built first when missing].
    #[arg(long, value_name = "PATH")]
    broker: Option<String>,
    /// Extra arguments for every weft-broker node, space separated (for
    /// example `--dedupe-window 0` to see what deduplication costs).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    broker_args: String,
}

/// The weft-broker binary next to this one (same cargo profile directory),
/// built with cargo when it is not there yet.
fn default_broker() -> String {
    let exe = std::env::current_exe().expect("the bench's own path");
    let dir = exe.parent().expect("a directory");
    let bin = dir.join(format!("weft-broker{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let release = dir.file_name().is_some_and(|d| d == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("broker_bench: building weft-broker ({})", bin.display());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "weft-broker",
            "--bin",
            "weft-broker",
        ]);
        if release {
            cmd.arg("--release");
        }
        let ok = cmd.status().is_ok_and(|s| s.success());
        assert!(
            ok && bin.exists(),
            "cannot build {}; pass --broker PATH",
            bin.display()
        );
    }
    bin.to_string_lossy().into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_tcp(port: u16, what: &str) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not start on port {port}");
}

/// CPU seconds (user + system) a process has used so far, from
/// `/proc/PID/stat` (Linux; `None` elsewhere). On a shared machine this is
/// steadier than wall-clock rates: it is what each message costs.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn cpu_of(pids: &[u32]) -> Option<f64> {
    pids.iter().map(|p| cpu_secs(*p)).sum()
}

/// `INFO commandstats` of the Redis on `port`, through `redis-cli`:
/// command name to (calls, microseconds). Scripts count twice: as
/// `evalsha` (with the commands inside included in its time) and as the
/// commands they call.
fn redis_commandstats(port: u16) -> Option<std::collections::BTreeMap<String, (u64, u64)>> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "commandstats"])
        .output()
        .ok()?;
    let mut m = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // cmdstat_xadd:calls=123,usec=456,usec_per_call=3.7,...
        let Some((name, rest)) = line
            .trim()
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |k: &str| -> Option<u64> {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))?
                .parse()
                .ok()
        };
        m.insert(name.to_owned(), (field("calls")?, field("usec")?));
    }
    Some(m)
}

/// Per-message Redis commands of a phase: for each command, calls and
/// microseconds per message delivered, from two `redis_commandstats`.
fn commands_per_msg(
    before: &Option<std::collections::BTreeMap<String, (u64, u64)>>,
    after: &Option<std::collections::BTreeMap<String, (u64, u64)>>,
    messages: u64,
) -> serde_json::Value {
    let (Some(b), Some(a)) = (before, after) else {
        return serde_json::Value::Null;
    };
    let mut o = serde_json::Map::new();
    for (name, (calls, usec)) in a {
        let (c0, u0) = b.get(name).copied().unwrap_or((0, 0));
        if *calls > c0 && messages > 0 {
            let per = |x: u64| ((x as f64 / messages as f64) * 1000.0).round() / 1000.0;
            o.insert(
                name.clone(),
                serde_json::json!({"calls": per(calls - c0), "usec": per(usec - u0)}),
            );
        }
    }
    serde_json::Value::Object(o)
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(bin: &str, backend: &str, extra: &str) -> (Proc, String) {
    let port = free_port();
    let child = Command::new(bin)
        .args(extra.split_whitespace())
        .args(["--addr", &format!("127.0.0.1:{port}"), "--backend", backend])
        .args(["--max-queue", "1000000", "--redis-prefix", "weft-bench"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let p = Proc(child);
    wait_tcp(port, "weft-broker");
    (p, format!("ws://127.0.0.1:{port}/"))
}

fn start_redis() -> (Proc, u16) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs (apt-get install redis-server)");
    let p = Proc(child);
    wait_tcp(port, "redis-server");
    (p, port)
}

/// `redis-benchmark` pipelined XADD of a `size`-byte field, `n` requests:
/// requests/s.
fn redis_benchmark_xadd(port: u16, size: usize, clients: usize, n: u64) -> Option<f64> {
    let body = "x".repeat(size);
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-n",
            &n.to_string(),
            "-P",
            "16",
            "-c",
            &clients.to_string(),
            "--csv",
        ])
        .args([
            "XADD",
            "weft-bench-xadd",
            "MAXLEN",
            "~",
            "100000",
            "*",
            "b",
            &body,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps",...  then  "XADD ...","123456.78",...
    let line = text.lines().nth(1)?;
    let fields: Vec<&str> = line.split("\",\"").collect();
    fields.get(1)?.trim_matches('"').parse().ok()
}

#[derive(Debug)]
struct Phase {
    sent: u64,
    received: u64,
    secs: f64,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    /// CPU microseconds per message of the broker processes and of
    /// redis-server (when there is one).
    broker_cpu_us: Option<f64>,
    redis_cpu_us: Option<f64>,
    /// The same for this process, the load client.
    client_cpu_us: Option<f64>,
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    f64::from(sorted[i])
}

/// One phase: producers on `produce` URLs, consumers on `consume` URLs
/// (round robin), for `secs`; `rate` paces the producers (total
/// messages/s).
async fn phase(
    args: &Args,
    produce: &[String],
    consume: &[String],
    rate: Option<f64>,
    brokers: &[u32],
    redis: &[u32],
) -> Phase {
    let cpu0 = (cpu_of(brokers), cpu_of(redis));
    let client0 = cpu_secs(std::process::id());
    let queue = format!("/queue/bench.{:08x}", rand_u32());
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let mut consumers = Vec::new();
    for i in 0..args.consumers {
        let c = Client::connect(&consume[i % consume.len()])
            .await
            .expect("consumer connects");
        let mut s = c
            .subscribe(&queue, SubscribeOptions::client_ack(args.credit))
            .await
            .expect("subscribe");
        let received = received.clone();
        let stop = stop.clone();
        let sent = sent.clone();
        consumers.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::new();
            let mut last = Instant::now();
            loop {
                match tokio::time::timeout(Duration::from_millis(100), s.next()).await {
                    Ok(Some(d)) => {
                        let t = u64::from_le_bytes(d.body[..8].try_into().expect("8 bytes"));
                        let now = base.elapsed().as_nanos() as u64;
                        lat.push((now.saturating_sub(t) / 1000).min(u64::from(u32::MAX)) as u32);
                        let _ = s.ack(&d);
                        received.fetch_add(1, Ordering::Relaxed);
                        last = Instant::now();
                    }
                    Ok(None) => break,
                    Err(_) => {}
                }
                if stop.load(Ordering::Relaxed)
                    && (received.load(Ordering::Relaxed) >= sent.load(Ordering::Relaxed)
                        || last.elapsed() > Duration::from_secs(5))
                {
                    break;
                }
            }
            (lat, last)
        }));
    }
    let deadline = base + Duration::from_secs_f64(args.secs);
    let lanes = args.producers * args.window;
    let lane_interval = rate.map(|r| Duration::from_secs_f64(lanes as f64 / r));
    let mut producers = Vec::new();
    for p in 0..args.producers {
        let client = Client::connect(&produce[p % produce.len()])
            .await
            .expect("producer connects");
        for lane in 0..args.window {
            let client = client.clone();
            let queue = queue.clone();
            let sent = sent.clone();
            let size = args.size;
            // Spread the paced lanes over one interval.
            let offset = lane_interval
                .map(|i| i.mul_f64((p * args.window + lane) as f64 / lanes as f64))
                .unwrap_or_default();
            producers.push(tokio::spawn(async move {
                let mut next = Instant::now() + offset;
                let mut body = vec![b'x'; size];
                while Instant::now() < deadline {
                    if let Some(i) = lane_interval {
                        tokio::time::sleep_until(next.into()).await;
                        next += i;
                    }
                    let t = base.elapsed().as_nanos() as u64;
                    body[..8].copy_from_slice(&t.to_le_bytes());
                    if client.send(&queue, body.clone()).await.is_err() {
                        break;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    for p in producers {
        let _ = p.await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut end = base;
    for c in consumers {
        if let Ok((l, last)) = c.await {
            lat.extend(l);
            end = end.max(last);
        }
    }
    lat.sort_unstable();
    let secs = end.duration_since(base).as_secs_f64();
    let received = received.load(Ordering::Relaxed);
    let per_msg = |before: Option<f64>, pids: &[u32]| -> Option<f64> {
        let spent = cpu_of(pids)? - before?;
        (received > 0 && !pids.is_empty())
            .then(|| (spent * 1e6 / received as f64 * 10.0).round() / 10.0)
    };
    Phase {
        client_cpu_us: per_msg(client0, &[std::process::id()]),
        broker_cpu_us: per_msg(cpu0.0, brokers),
        redis_cpu_us: per_msg(cpu0.1, redis),
        sent: sent.load(Ordering::Relaxed),
        received,
        secs,
        per_sec: received as f64 / secs,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
    }
}

fn rand_u32() -> u32 {
    rand::random()
}

fn report(backend: &str, name: &str, p: &Phase, extra: serde_json::Value) {
    let mut v = serde_json::json!({
        "backend": backend,
        "phase": name,
        "sent": p.sent,
        "received": p.received,
        "secs": (p.secs * 1000.0).round() / 1000.0,
        "msgs_per_sec": p.per_sec.round(),
        "latency_p50_us": p.p50_us,
        "latency_p99_us": p.p99_us,
        "broker_cpu_us_per_msg": p.broker_cpu_us,
        "redis_cpu_us_per_msg": p.redis_cpu_us,
        "client_cpu_us_per_msg": p.client_cpu_us,
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    println!("{v}");
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(args.size >= 8, "--size must be at least 8");
    let broker = args.broker.clone().unwrap_or_else(default_broker);
    let mut summary = serde_json::Map::new();
    for backend in &args.backends {
        match backend.as_str() {
            "memory" => {
                let (node, url) = start_broker(&broker, "memory", &args.broker_args);
                let urls = [url];
                let pids = [node.0.id()];
                let t = phase(&args, &urls, &urls, None, &pids, &[]).await;
                report("memory", "throughput", &t, serde_json::json!({}));
                let l = phase(&args, &urls, &urls, Some(t.per_sec / 2.0), &pids, &[]).await;
                report("memory", "latency_at_half_load", &l, serde_json::json!({}));
                summary.insert(
                    "memory_msgs_per_sec".into(),
                    serde_json::json!(t.per_sec.round()),
                );
                summary.insert(
                    "memory_target_100k_met".into(),
                    serde_json::json!(t.per_sec >= 100_000.0),
                );
                summary.insert(
                    "memory_half_load_p99_us".into(),
                    serde_json::json!(l.p99_us),
                );
                summary.insert(
                    "memory_broker_cpu_us_per_msg".into(),
                    serde_json::json!(t.broker_cpu_us),
                );
                summary.insert(
                    "memory_client_cpu_us_per_msg".into(),
                    serde_json::json!(t.client_cpu_us),
                );
            }
            "redis" => {
                let (redis, port) = start_redis();
                let url = format!("redis://127.0.0.1:{port}");
                let (a, ua) = start_broker(&broker, &url, &args.broker_args);
                let (b, ub) = start_broker(&broker, &url, &args.broker_args);
                let urls = [ua, ub];
                let (brokers, rpids) = ([a.0.id(), b.0.id()], [redis.0.id()]);
                let n = 200_000u64;
                let r0 = cpu_of(&rpids);
                let peer = redis_benchmark_xadd(port, args.size, args.producers, n);
                let xadd_cpu_us = cpu_of(&rpids)
                    .zip(r0)
                    .map(|(b, a)| ((b - a) * 1e6 / n as f64 * 100.0).round() / 100.0);
                let stats0 = redis_commandstats(port);
                let t = phase(&args, &urls, &urls, None, &brokers, &rpids).await;
                let stats1 = redis_commandstats(port);
                let ratio = peer.map(|x| t.per_sec / x);
                report(
                    "redis",
                    "throughput",
                    &t,
                    serde_json::json!({
                        "nodes": 2,
                        "redis_benchmark_xadd_per_sec": peer.map(f64::round),
                        "ratio_to_redis_benchmark": ratio.map(|r| (r * 1000.0).round() / 1000.0),
                        "redis_cpu_us_per_xadd": xadd_cpu_us,
                        "redis_commands_per_msg": commands_per_msg(&stats0, &stats1, t.received),
                    }),
                );
                let l = phase(&args, &urls, &urls, Some(t.per_sec / 2.0), &brokers, &rpids).await;
                report(
                    "redis",
                    "latency_at_half_load",
                    &l,
                    serde_json::json!({"nodes": 2}),
                );
                summary.insert(
                    "redis_msgs_per_sec".into(),
                    serde_json::json!(t.per_sec.round()),
                );
                summary.insert(
                    "redis_benchmark_xadd_per_sec".into(),
                    serde_json::json!(peer.map(f64::round)),
                );
                summary.insert(
                    "redis_ratio_to_xadd".into(),
                    serde_json::json!(ratio.map(|r| (r * 1000.0).round() / 1000.0)),
                );
                summary.insert(
                    "redis_target_0.5x_met".into(),
                    serde_json::json!(ratio.map(|r| r >= 0.5)),
                );
                summary.insert("redis_half_load_p99_us".into(), serde_json::json!(l.p99_us));
                summary.insert(
                    "redis_cpu_us_per_msg".into(),
                    serde_json::json!(t.redis_cpu_us),
                );
                summary.insert(
                    "redis_cpu_us_per_xadd".into(),
                    serde_json::json!(xadd_cpu_us),
                );
                summary.insert(
                    "redis_broker_cpu_us_per_msg".into(),
                    serde_json::json!(t.broker_cpu_us),
                );
                summary.insert(
                    "redis_client_cpu_us_per_msg".into(),
                    serde_json::json!(t.client_cpu_us),
                );
            }
            other => eprintln!("broker_bench: unknown backend {other:?} (memory, redis)"),
        }
    }
    summary.insert("summary".into(), serde_json::json!(true));
    println!("{}", serde_json::Value::Object(summary));
}
