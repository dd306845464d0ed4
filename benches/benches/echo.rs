//! Echo throughput: weft against tokio-tungstenite, fastwebsockets and
//! tokio-websockets, in one run.
//!
//! Each implementation runs an echo server (see `weft_benches::servers`) on
//! 127.0.0.1:0 in a tokio multi-thread runtime (default worker count). The
//! same hand-written raw client (`weft_benches::client`) drives every server
//! from a current-thread runtime on the bench's main thread.
//!
//! Cells (criterion group `<mode>/<size>`, one benchmark per implementation):
//! - `c1`: 1 connection, one message in flight (send, wait for the echo,
//!   repeat); one iteration = 1 message.
//! - `c64`: 64 connections, pipelined: up to 16 messages in flight per
//!   connection (2 for 1 MiB); one iteration = 1 message per connection
//!   (64 messages).
//!
//! The `c1` groups run with the client thread and the server's worker
//! threads pinned to one CPU (set `WEFT_BENCH_NO_PIN=1` to run them
//! unpinned). On the 2-vCPU VM these numbers were taken on, a wake-up across
//! CPUs costs ~30 µs, so an unpinned ping-pong measured 6 µs or 70 µs per
//! round trip depending on where the scheduler happened to put the threads,
//! whatever the server. Pinned, a round trip is the client's, the kernel's
//! and the server's work per message, in series. The `c64` groups are not
//! pinned: there the server's workers use both CPUs.
//!
//! Each group also has a `raw-tcp-echo` row: not a WebSocket server but a
//! plain read/write echo of the raw bytes after a hand-made handshake, as the
//! ceiling of what this client and the loopback allow.
//!
//! Throughput is payload bytes echoed (one direction).
//!
//! ```text
//! cargo bench -p weft-benches --bench echo            # everything (~5 min)
//! cargo bench -p weft-benches --bench echo -- c64/1KiB # one group
//! ```

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::runtime::Runtime;
use weft_benches::client::{EchoConn, masked_frame, payload, run_all};
use weft_benches::servers::{BASELINE, start_all};
use weft_benches::{ECHO_MODES as MODES, ECHO_SIZES as SIZES, EchoMode as Mode};

/// Upper bound for one measured batch (guards against a hung server).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn main() {
    let host = weft_benches::BenchHost::new();
    let client_rt = &host.client_rt;

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    for mode in MODES {
        // c1: client thread and server workers on one CPU (see module docs).
        let server_rt = host.server_runtime(mode.conns);
        let servers = start_all(&server_rt);

        for (size, size_name) in SIZES {
            let mut group = c.benchmark_group(format!("{}/{size_name}", mode.name));
            group.sampling_mode(SamplingMode::Flat);
            group.throughput(Throughput::Bytes((size * mode.conns) as u64));
            for &(name, addr) in &servers {
                bench_cell(&mut group, client_rt, name, addr, mode, size);
            }
            group.finish();
        }
        server_rt.shutdown_timeout(Duration::from_secs(1));
        host.end_cells();
    }
    c.final_summary();
}

fn bench_cell(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &'static str,
    addr: SocketAddr,
    mode: Mode,
    size: usize,
) {
    let body = payload(size);
    let frame = masked_frame(&body);
    let window = (mode.window)(size);
    let burst = frame.repeat(window as usize);

    // Opened on first use (so a filtered-out cell opens nothing), checked
    // once, and kept for all samples of the cell; closed when the cell ends.
    let mut conns: Vec<EchoConn> = Vec::new();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                while conns.len() < mode.conns {
                    let conn = EchoConn::connect_checked(addr, name == BASELINE, &frame, &body)
                        .await
                        .unwrap_or_else(|e| panic!("{name}: connect and check: {e}"));
                    conns.push(conn);
                }
                run_all(
                    &mut conns,
                    &burst,
                    frame.len(),
                    size,
                    window,
                    iters,
                    RUN_TIMEOUT,
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: echo run: {e}"))
            })
        })
    });
    drop(conns);
}
