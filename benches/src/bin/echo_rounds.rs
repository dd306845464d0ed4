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
//! rounds, with the lowest and highest.
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

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft_benches::client::{EchoConn, masked_frame, payload, run_all};
use weft_benches::servers::{BASELINE, start_all};
use weft_benches::{ECHO_MODES, ECHO_SIZES, EchoMode};

/// Bound on one batch of messages (a hung server fails the run).
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

struct Options {
    rounds: usize,
    ms: u64,
    cells: Option<Vec<String>>,
    verbose: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Options {
        rounds: 7,
        ms: 300,
        cells: None,
        verbose: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| panic!("{a} needs a value"))
                .clone()
        };
        match a.as_str() {
            "--rounds" => o.rounds = value().parse().expect("--rounds N"),
            "--ms" => o.ms = value().parse().expect("--ms N"),
            "--cells" => o.cells = Some(value().split(',').map(str::to_owned).collect()),
            "--verbose" | "-v" => o.verbose = true,
            "--help" | "-h" => {
                println!(
                    "echo_rounds [--rounds 7] [--ms 300] [--cells c1/16B,c64/1KiB,...] [--verbose]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown option {other} (see --help)"),
        }
    }
    assert!(
        o.rounds >= 1 && o.ms >= 1,
        "--rounds and --ms must be positive"
    );
    o
}

/// One implementation's connections for one measurement of a cell.
struct Runner {
    name: &'static str,
    conns: Vec<EchoConn>,
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
}

impl Runner {
    async fn open(name: &'static str, addr: SocketAddr, cell: &Cell<'_>, body: &[u8]) -> Runner {
        let mut conns = Vec::with_capacity(cell.mode.conns);
        for _ in 0..cell.mode.conns {
            let conn = EchoConn::connect_checked(addr, name == BASELINE, cell.frame, body)
                .await
                .unwrap_or_else(|e| panic!("{name}: connect and check: {e}"));
            conns.push(conn);
        }
        let mut r = Runner {
            name,
            conns,
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
        run_all(
            &mut self.conns,
            cell.burst,
            cell.frame.len(),
            cell.size,
            cell.window,
            self.batch,
            BATCH_TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("{}: echo run: {e}", self.name))
    }

    /// Messages per second (all connections) over about `ms` milliseconds.
    async fn measure(&mut self, cell: &Cell<'_>, ms: u64) -> f64 {
        let budget = Duration::from_millis(ms);
        let start = Instant::now();
        let mut busy = Duration::ZERO;
        let mut messages = 0u64;
        while start.elapsed() < budget {
            busy += self.batch_once(cell).await;
            messages += self.batch * self.conns.len() as u64;
        }
        messages as f64 / busy.as_secs_f64()
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
    let o = options();
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
        let server_rt = host.server_runtime(mode.conns);
        let servers = start_all(&server_rt);
        if !header {
            let names: Vec<&str> = servers.iter().map(|(n, _)| *n).collect();
            println!(
                "\n| cell | {} | weft / best peer: median (low-high) |",
                names.join(" | ")
            );
            println!("|{}", " --- |".repeat(names.len() + 2));
            header = true;
        }
        for (size, size_name) in cells {
            let body = payload(size);
            let frame = masked_frame(&body);
            let window = (mode.window)(size);
            let burst = frame.repeat(window as usize);
            let cell = Cell {
                mode,
                size,
                frame: &frame,
                burst: &burst,
                window,
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
                        let mut runner = Runner::open(name, addr, &cell, &body).await;
                        let r = runner.measure(&cell, o.ms).await;
                        if o.verbose {
                            eprintln!(
                                "{}/{} round {round} {name}: {}",
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
            // first, the raw TCP baseline last); the ratio to it is taken
            // round by round. Comparing weft with the best of the peers'
            // values in each round instead would favour the peers: the
            // largest of three noisy values is biased upwards.
            let n = rates.len();
            let medians: Vec<f64> = rates.iter().map(|r| median(&mut r.clone())).collect();
            let best = (1..n - 1)
                .max_by(|&a, &b| medians[a].total_cmp(&medians[b]))
                .expect("at least one peer");
            let mut sorted: Vec<f64> = rates[0]
                .iter()
                .zip(&rates[best])
                .map(|(w, p)| w / p)
                .collect();
            let mid = median(&mut sorted);
            let cols: Vec<String> = medians.iter().map(|&m| rate(m)).collect();
            println!(
                "| {}/{size_name} | {} | {mid:.2} ({:.2}-{:.2}) vs {} |",
                mode.name,
                cols.join(" | "),
                sorted[0],
                sorted[sorted.len() - 1],
                servers[best].0,
            );
        }
        server_rt.shutdown_timeout(Duration::from_secs(1));
        host.end_cells();
    }
}
