//! Echo throughput in interleaved rounds: the cells of the `echo` bench
//! (`benches/echo.rs`), measured so that a slow stretch of the machine hits
//! every implementation alike.
//!
//! criterion measures one implementation after the other, a few seconds
//! each, so on a shared VM whose speed drifts by 10-30% over seconds (seen
//! on the 2-vCPU machines of this project: the raw TCP echo itself moved
//! that much between runs) a single run's ratio between two implementations
//! says as much about when each was measured as about the implementation.
//! Here every cell runs `--rounds` rounds; a round measures every
//! implementation once, for `--ms` milliseconds each, in an order rotated
//! from round to round. The fastest peer is the one with the highest median;
//! the ratio of weft to it is taken within each round (the measurements of
//! one round are seconds apart) and the table gives its median over the
//! rounds, with the lowest and highest, a distribution-free 95% confidence
//! interval of that median (sign-test order statistics; needs 6 rounds or
//! more) and a verdict: `faster` or `slower` when the interval lies wholly
//! above or below 1.00, `tie` when it spans 1.00. A peer other than the best
//! one that weft is `slower` than is listed below the cell.
//!
//! Each measurement uses connections opened (handshake, one checked echo,
//! warm-up) for it alone: with 64 KiB and 1 MiB messages a loopback
//! connection on these VMs settles into one of two speeds about 2x apart
//! and keeps it (seen in one run: weft and fastwebsockets at ~0.9k
//! messages/s, tokio-websockets and the raw TCP echo at ~1.9k, every round,
//! on connections kept for the whole cell; in the run before, weft was at
//! 1.8k). Connections kept across rounds would carry that draw into every
//! round.
//!
//! Servers, client, pinning and load shapes are those of `benches/echo.rs`
//! (`weft_benches::servers`, `weft_benches::client`): `c1` is one
//! connection with one message in flight, client and server pinned to one
//! CPU; `c64` is 64 connections with 16 messages in flight each (2 for
//! 1 MiB). Only 127.0.0.1; every measurement is bounded in messages and
//! time.
//!
//! ```text
//! cargo run --release -p weft-benches --bin echo_rounds                 # all cells, 7 rounds: ~2 min
//! cargo run --release -p weft-benches --bin echo_rounds -- --cells c1/16B,c64/1MiB --rounds 9 --ms 500
//! ```
//!
//! ## Black box: servers in separate processes
//!
//! In-process, client and servers share one runtime setup and one
//! process. To measure a shipped server binary as its users run it (its
//! own process, its own runtime, pinned with `taskset`), start the servers
//! yourself and name them with `--external NAME=HOST:PORT`; the first is
//! the one compared with the others (a `raw-tcp-echo` entry is the
//! baseline, not a peer). `--serve IMPL --addr HOST:PORT` runs one of this
//! bench's servers (`weft`, the peers, or `raw-tcp-echo`) alone on a
//! current-thread runtime, so peers can be separate processes too.
//! `scripts/echo_blackbox.sh` does all of it for `examples/echo_server`:
//!
//! ```text
//! taskset -c 1 target/release/examples/echo_server --addr 127.0.0.1:9001 &
//! taskset -c 1 target/release/echo_rounds --serve fastwebsockets --addr 127.0.0.1:9002 &
//! taskset -c 0 target/release/echo_rounds --external echo_server=127.0.0.1:9001 \
//!     --external fastwebsockets=127.0.0.1:9002 --rounds 5
//! ```
//!
//! A name `FIRST-SUFFIX` (e.g. `echo_server-w12`) is a variant of the first
//! server (other parameters): measured and shown, but no peer.
//!
//! ## Compressing servers: `--deflate`
//!
//! With `--deflate` the client offers permessage-deflate (which every server
//! must accept) and sends a JSON text message (`weft_benches::json`)
//! compressed once per connection for the client window the server
//! answered; echoes are inflated and compared at connect, then counted
//! without inflating (see `weft_benches::client`). So each server runs with
//! its own defaults and does all of the deflate work. `--serve yawc` runs
//! yawc's server with its default permessage-deflate (plus UTF-8 checks).
//! `scripts/echo_blackbox.sh --deflate` runs echo_server against Python
//! websockets, Node ws and yawc this way, each in its own process.

use clap::Parser;
use clap::builder::RangedU64ValueParser;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft_benches::client::{DEFLATE_OFFER, EchoConn, masked_frame, payload, run_all};
use weft_benches::servers::{BASELINE, Impl, serve, serve_raw_tcp, start_all};
use weft_benches::{ECHO_MODES, ECHO_SIZES, EchoMode};

/// Bound on one batch of messages (a hung server fails the run).
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Echo throughput in interleaved rounds: every cell of the echo bench,
/// each implementation measured once per round in a rotated order, with
/// weft's ratio to the best peer and its 95% confidence interval.
#[derive(Debug, Parser)]
#[command(name = "echo_rounds")]
struct Options {
    /// Rounds per cell.
    #[arg(long, value_name = "N", default_value_t = 7, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    rounds: usize,
    /// Milliseconds each implementation is measured for, per round.
    #[arg(long, value_name = "MS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    ms: u64,
    /// Cells to run, e.g. c1/16B,c64/1KiB (a mode alone, c1 or c64, runs
    /// all its sizes) [default: all].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    cells: Option<Vec<String>>,
    /// Print every measurement, with minor page faults per echoed message.
    #[arg(short, long)]
    verbose: bool,
    /// Measure running servers instead of in-process ones, NAME=HOST:PORT
    /// (repeatable, comma-separated): the first is compared with the rest;
    /// a NAME of raw-tcp-echo is the baseline, and FIRST-SUFFIX a variant
    /// of the first (both measured, neither a peer).
    #[arg(long, value_name = "NAME=ADDR", value_delimiter = ',')]
    external: Vec<String>,
    /// Instead of measuring, serve IMPL (weft, tokio-tungstenite,
    /// fastwebsockets, tokio-websockets or raw-tcp-echo) on --addr with a
    /// current-thread runtime until killed.
    #[arg(long, value_name = "IMPL", requires = "addr")]
    serve: Option<String>,
    /// The address for --serve.
    #[arg(long, value_name = "HOST:PORT", requires = "serve")]
    addr: Option<SocketAddr>,
    /// permessage-deflate: offer it (the server must accept), send a JSON
    /// text message compressed once per connection, count the echoes
    /// (see `weft_benches::client`). With --external only: the servers run
    /// with their own defaults.
    #[arg(long, requires = "external")]
    deflate: bool,
}

/// `--serve`: one implementation's echo server, alone in this process.
fn serve_alone(name: &str, addr: SocketAddr) -> ! {
    let imp = Impl::parse(name);
    if imp.is_none() && name != BASELINE && name != "yawc" {
        eprintln!("echo_rounds: --serve {name}: unknown implementation");
        std::process::exit(2);
    }
    weft_benches::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        println!(
            "echo_rounds: serving {name} on {}",
            listener.local_addr().expect("addr")
        );
        match imp {
            Some(imp) => serve(imp, listener).await,
            None if name == "yawc" => {
                weft_benches::servers::serve_yawc(listener, yawc_defaults()).await
            }
            None => serve_raw_tcp(listener).await,
        }
    });
    unreachable!("the servers run forever")
}

/// yawc's permessage-deflate as `DeflateOptions::default()` gives it (RFC
/// 7692 windows, level 6, context takeover both ways, every message
/// compressed), plus UTF-8 checks on text, which RFC 6455 requires and the
/// other servers do (yawc leaves them off by default).
fn yawc_defaults() -> yawc::Options {
    yawc::Options::default()
        .with_compression_level(yawc::CompressionLevel::default())
        .with_utf8()
}

/// Whether an `--external` entry named `name` is a peer of the first one,
/// `first`: the raw TCP baseline is not, and neither is a variant of the
/// first (named `FIRST-...`, e.g. `echo_server-w12` for echo_server with
/// other parameters), which is measured and shown but not compared with.
fn is_peer_name(first: &str, name: &str) -> bool {
    name != BASELINE
        && !name
            .strip_prefix(first)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// `--external` entries as (name, address); exits on a malformed one.
fn external_servers(list: &[String]) -> Vec<(&'static str, SocketAddr)> {
    let servers: Vec<_> = list
        .iter()
        .map(|e| {
            let parsed = e
                .split_once('=')
                .and_then(|(n, a)| Some((n, a.parse::<SocketAddr>().ok()?)));
            let Some((name, addr)) = parsed else {
                eprintln!("echo_rounds: --external {e}: expected NAME=HOST:PORT");
                std::process::exit(2);
            };
            let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
            (name, addr)
        })
        .collect();
    if servers
        .iter()
        .skip(1)
        .all(|(n, _)| !is_peer_name(servers[0].0, n))
    {
        eprintln!("echo_rounds: --external needs the server to compare and at least one peer");
        std::process::exit(2);
    }
    servers
}

/// One implementation's connections for one measurement of a cell.
struct Runner {
    name: &'static str,
    conns: Vec<EchoConn>,
    /// With --deflate: this server's compressed frame and burst (the
    /// client window is the server's choice).
    own: Option<(Vec<u8>, Vec<u8>)>,
    /// Messages per connection in one batch, sized so a batch takes about
    /// 20 ms (so the time check below is cheap and a measurement ends close
    /// to `--ms`).
    batch: u64,
}

struct Cell<'a> {
    mode: EchoMode,
    size: usize,
    frame: &'a [u8],
    burst: &'a [u8],
    window: u64,
    deflate: bool,
}

impl Runner {
    async fn open(
        name: &'static str,
        addr: SocketAddr,
        cell: &Cell<'_>,
        body: &[u8],
        show_answer: bool,
    ) -> Runner {
        let mut conns = Vec::with_capacity(cell.mode.conns);
        let mut own = None;
        for _ in 0..cell.mode.conns {
            let conn = if cell.deflate {
                let (conn, frame, answer) = EchoConn::connect_deflate(addr, body)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: connect and check: {e}"));
                if own.is_none() {
                    if show_answer {
                        println!(
                            "{name}: offered `{DEFLATE_OFFER}`, answered `{answer}`; \
                             a {} B message is a {} B frame",
                            body.len(),
                            frame.len()
                        );
                    }
                    let burst = frame.repeat(cell.window as usize);
                    own = Some((frame, burst));
                }
                conn
            } else {
                EchoConn::connect_checked(addr, name == BASELINE, cell.frame, body)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: connect and check: {e}"))
            };
            conns.push(conn);
        }
        let mut r = Runner {
            name,
            conns,
            own,
            batch: 1,
        };
        // Warm up and size the batch: grow it until one takes 20 ms.
        loop {
            let t = r.batch_once(cell).await;
            if t >= Duration::from_millis(20) || r.batch >= 1 << 20 {
                break;
            }
            r.batch *= 2;
        }
        r
    }

    async fn batch_once(&mut self, cell: &Cell<'_>) -> Duration {
        let (frame, burst) = match &self.own {
            Some((f, b)) => (f.as_slice(), b.as_slice()),
            None => (cell.frame, cell.burst),
        };
        run_all(
            &mut self.conns,
            burst,
            frame.len(),
            cell.size,
            cell.window,
            self.batch,
            BATCH_TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("{}: echo run: {e}", self.name))
    }

    /// Messages per second (all connections) over about `ms` milliseconds,
    /// and how many messages that was.
    async fn measure(&mut self, cell: &Cell<'_>, ms: u64) -> (f64, u64) {
        let budget = Duration::from_millis(ms);
        let start = Instant::now();
        let mut busy = Duration::ZERO;
        let mut messages = 0u64;
        while start.elapsed() < budget {
            busy += self.batch_once(cell).await;
            messages += self.batch * self.conns.len() as u64;
        }
        (messages as f64 / busy.as_secs_f64(), messages)
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A distribution-free 95% confidence interval for the median of the
/// values in `sorted` (ascending): the order statistics `x(k)` and
/// `x(n+1-k)` with the largest `k` for which `P(B < k) <= 2.5%`, where
/// `B ~ Binomial(n, 1/2)` counts the values below the true median. It
/// assumes only that the rounds are independent draws of one distribution
/// (the rotated order is what makes them so). `None` below 6 values, where
/// even the range covers the median with less than 95% probability.
fn median_ci95(sorted: &[f64]) -> Option<(f64, f64)> {
    let n = sorted.len();
    // P(B <= j) for B ~ Binomial(n, 1/2), summed term by term.
    let mut term = 0.5f64.powi(n as i32); // P(B = 0)
    let mut below = 0.0; // P(B < k)
    let mut k = 0;
    while k < n / 2 {
        if below + term > 0.025 {
            break;
        }
        below += term;
        term *= (n - k) as f64 / (k + 1) as f64;
        k += 1;
    }
    (k >= 1).then(|| (sorted[k - 1], sorted[n - k]))
}

/// What the interval says about weft against the peer: `faster` or
/// `slower` when it lies wholly above or below 1.00, `tie` when it spans it
/// (the two are equal within what the machine resolves).
fn verdict(ci: Option<(f64, f64)>) -> &'static str {
    match ci {
        Some((lo, _)) if lo > 1.0 => "faster",
        Some((_, hi)) if hi < 1.0 => "slower",
        Some(_) => "tie",
        None => "n/a (< 6 rounds)",
    }
}

fn rate(msgs: f64) -> String {
    if msgs >= 1e6 {
        format!("{:.2} M/s", msgs / 1e6)
    } else if msgs >= 1e3 {
        format!("{:.1} k/s", msgs / 1e3)
    } else {
        format!("{msgs:.0} /s")
    }
}

fn main() {
    let o = Options::parse();
    if let (Some(name), Some(addr)) = (&o.serve, o.addr) {
        serve_alone(name, addr);
    }
    let external = (!o.external.is_empty()).then(|| external_servers(&o.external));
    let host = weft_benches::BenchHost::new();
    let client_rt = &host.client_rt;

    println!(
        "echo_rounds: {} rounds of {} ms per implementation and cell; messages/s, median over rounds",
        o.rounds, o.ms
    );
    let mut header = false;
    for mode in ECHO_MODES {
        let cells: Vec<_> = ECHO_SIZES
            .into_iter()
            .filter(|(_, n)| {
                o.cells.as_ref().is_none_or(|c| {
                    c.iter()
                        .any(|c| c == &format!("{}/{n}", mode.name) || c == mode.name)
                })
            })
            .collect();
        if cells.is_empty() {
            continue;
        }
        // External servers run in their own processes, pinned by whoever
        // started them; the client here is not pinned then.
        let server_rt = match external {
            None => Some(host.server_runtime(mode.conns)),
            Some(_) => None,
        };
        let servers = match (&external, &server_rt) {
            (Some(list), _) => list.clone(),
            (None, Some(rt)) => start_all(rt),
            (None, None) => unreachable!("a runtime for in-process servers"),
        };
        if !header {
            let names: Vec<&str> = servers.iter().map(|(n, _)| *n).collect();
            println!(
                "\n| cell | {} | {} / best peer: median (low-high) | 95% CI of the median | verdict | best peer |",
                names.join(" | "),
                names[0]
            );
            println!("|{}", " --- |".repeat(names.len() + 5));
            header = true;
        }
        for (size, size_name) in cells {
            let body = if o.deflate {
                weft_benches::json::json_payload(size).into_bytes()
            } else {
                payload(size)
            };
            let frame = masked_frame(&body);
            let window = (mode.window)(size);
            let burst = frame.repeat(window as usize);
            let cell = Cell {
                mode,
                size,
                frame: &frame,
                burst: &burst,
                window,
                deflate: o.deflate,
            };
            let rates = client_rt.block_on(async {
                let n = servers.len();
                let mut rates = vec![Vec::with_capacity(o.rounds); n];
                for round in 0..o.rounds {
                    for k in 0..n {
                        let i = (round + k) % n;
                        let (name, addr) = servers[i];
                        // New connections every round: large-message cells
                        // are bimodal per connection (see the module docs).
                        let mut runner =
                            Runner::open(name, addr, &cell, &body, round == 0).await;
                        let faults = weft_benches::usage().minor_faults;
                        let (r, messages) = runner.measure(&cell, o.ms).await;
                        if o.verbose {
                            // Page faults of the whole process (client and
                            // server) per echoed message: the client is the
                            // same for every implementation.
                            let faults = weft_benches::usage().minor_faults - faults;
                            let per_msg = faults as f64 / messages.max(1) as f64;
                            eprintln!(
                                "{}/{} round {round} {name}: {} ({per_msg:.2} minor faults/message)",
                                cell.mode.name,
                                cell.size,
                                rate(r)
                            );
                        }
                        rates[i].push(r);
                    }
                }
                rates
            });
            // The best peer is the one with the highest median (weft is
            // first; the raw TCP baseline is no peer); the ratio to it is
            // taken round by round. Comparing weft with the best of the peers'
            // values in each round instead would favour the peers: the
            // largest of three noisy values is biased upwards.
            let n = rates.len();
            let medians: Vec<f64> = rates.iter().map(|r| median(&mut r.clone())).collect();
            let is_peer = |i: usize| i > 0 && is_peer_name(servers[0].0, servers[i].0);
            let best = (0..n)
                .filter(|&i| is_peer(i))
                .max_by(|&a, &b| medians[a].total_cmp(&medians[b]))
                .expect("at least one peer");
            let mut sorted: Vec<f64> = rates[0]
                .iter()
                .zip(&rates[best])
                .map(|(w, p)| w / p)
                .collect();
            let mid = median(&mut sorted);
            let ci = median_ci95(&sorted);
            let cols: Vec<String> = medians.iter().map(|&m| rate(m)).collect();
            let ci_text = ci.map_or("-".to_owned(), |(lo, hi)| format!("{lo:.2}-{hi:.2}"));
            println!(
                "| {}/{size_name} | {} | {mid:.2} ({:.2}-{:.2}) | {ci_text} | {} | {} |",
                mode.name,
                cols.join(" | "),
                sorted[0],
                sorted[sorted.len() - 1],
                verdict(ci),
                servers[best].0,
            );
            // The best peer is chosen by median throughput; a peer that
            // beats weft round by round without having the best median
            // must not go unseen.
            for (i, (name, _)) in servers.iter().enumerate() {
                if !is_peer(i) {
                    continue;
                }
                let mut r: Vec<f64> = rates[0].iter().zip(&rates[i]).map(|(w, p)| w / p).collect();
                r.sort_by(f64::total_cmp);
                if i != best && verdict(median_ci95(&r)) == "slower" {
                    println!(
                        "|   also slower than {name}: median {:.2} |",
                        median(&mut r)
                    );
                }
            }
        }
        if let Some(rt) = server_rt {
            rt.shutdown_timeout(Duration::from_secs(1));
            host.end_cells();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binomial(n, 1/2) CDF by exact integer counting, for checking.
    fn cdf(n: u32, j: u32) -> f64 {
        let mut c = 1u128; // C(n, 0)
        let mut sum = 0u128;
        for i in 0..=j {
            sum += c;
            c = c * u128::from(n - i) / u128::from(i + 1);
        }
        sum as f64 / 2f64.powi(n as i32)
    }

    #[test]
    fn ci_uses_the_textbook_order_statistics() {
        // k for n values: the largest k with P(B <= k-1) <= 2.5%
        // (tables of the sign test: n=6 -> 1, n=9 -> 2, n=15 -> 4, n=21 -> 6).
        for (n, k) in [(6usize, 1usize), (9, 2), (15, 4), (21, 6), (25, 8)] {
            let v: Vec<f64> = (1..=n).map(|i| i as f64).collect();
            let (lo, hi) = median_ci95(&v).unwrap();
            assert_eq!((lo, hi), (k as f64, (n + 1 - k) as f64), "n={n}");
            // And against the exact CDF: k qualifies, k+1 does not.
            assert!(cdf(n as u32, k as u32 - 1) <= 0.025, "n={n}");
            assert!(cdf(n as u32, k as u32) > 0.025, "n={n}");
        }
    }

    #[test]
    fn variants_and_the_baseline_are_no_peers() {
        assert!(is_peer_name("echo_server", "yawc"));
        assert!(is_peer_name("echo_server", "echo_serverx"));
        assert!(!is_peer_name("echo_server", "echo_server-w12"));
        assert!(!is_peer_name("echo_server", BASELINE));
    }

    #[test]
    fn too_few_rounds_give_no_interval() {
        assert_eq!(median_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]), None);
        assert_eq!(verdict(None), "n/a (< 6 rounds)");
    }

    #[test]
    fn verdict_needs_the_whole_interval_on_one_side() {
        assert_eq!(verdict(Some((1.01, 1.3))), "faster");
        assert_eq!(verdict(Some((0.7, 0.99))), "slower");
        assert_eq!(verdict(Some((0.9, 1.1))), "tie");
        assert_eq!(verdict(Some((1.0, 1.2))), "tie");
    }
}
