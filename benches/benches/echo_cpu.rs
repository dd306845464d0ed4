//! Server CPU per echoed message, without the kernel: each implementation's
//! echo loop (the same loops as the `echo` bench, `weft_benches::servers`)
//! runs on a current-thread runtime against a scripted in-memory client
//! (`weft_benches::scripted::ScriptedPeer`) that sends one masked frame,
//! waits for its echo, checks it, and sends the next.
//!
//! Over loopback the `c1` cells of the `echo` bench are dominated by the
//! kernel (a round trip there is several microseconds, of which a library's
//! work is a few hundred nanoseconds), so differences between libraries are
//! close to the run-to-run noise. This bench shows the libraries' own part
//! alone: reading the bytes in, parsing and unmasking, handing the message
//! to the loop, framing the echo, writing it, and one trip through the
//! runtime per message as a socket read that would block causes.
//!
//! One iteration = one message echoed.
//!
//! ```text
//! cargo bench -p weft-benches --bench echo_cpu
//! ```

use criterion::{Criterion, Throughput};
use std::time::{Duration, Instant};
use weft_benches::client::payload;
use weft_benches::scripted::ScriptedPeer;
use weft_benches::servers::{self, Impl};

const SIZES: [(usize, &str); 3] = [(16, "16B"), (1 << 10, "1KiB"), (64 << 10, "64KiB")];

/// Runs `imp`'s echo loop against a peer sending `messages` messages;
/// returns the elapsed time. Panics if any echo was wrong or missing.
fn run(rt: &tokio::runtime::Runtime, imp: Impl, data: &[u8], messages: u64) -> Duration {
    let mut peer = ScriptedPeer::new(data, messages);
    let start = Instant::now();
    rt.block_on(async {
        let io = &mut peer;
        match imp {
            Impl::Weft => {
                let ws = weft_core::WebSocket::from_parts(
                    io,
                    weft_core::Role::Server,
                    Default::default(),
                    None,
                    &weft_core::Config::default(),
                    Default::default(),
                );
                servers::weft_echo(ws).await
            }
            Impl::Tungstenite => {
                let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    io,
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                servers::tungstenite_echo(ws).await
            }
            Impl::FastWebSockets => servers::fastwebsockets_echo(io).await,
            Impl::TokioWebSockets => {
                servers::tokio_websockets_echo(tokio_websockets::ServerBuilder::new().serve(io))
                    .await
            }
        }
    });
    let elapsed = start.elapsed();
    assert_eq!(peer.error(), None, "{}: wrong echo", imp.name());
    assert_eq!(peer.echoed(), messages, "{}: missing echoes", imp.name());
    elapsed
}

/// `WEFT_ECHO_CPU_ONCE=IMPL:SIZE:MESSAGES` runs one echo loop and exits
/// (for profilers such as `valgrind --tool=callgrind`).
const ONCE_ENV: &str = "WEFT_ECHO_CPU_ONCE";

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(spec) = std::env::var(ONCE_ENV) {
        let parts: Vec<&str> = spec.split(':').collect();
        let (Some(imp), Some(Ok(size)), Some(Ok(n))) = (
            parts.first().and_then(|s| Impl::parse(s)),
            parts.get(1).map(|s| s.parse::<usize>()),
            parts.get(2).map(|s| s.parse::<u64>()),
        ) else {
            panic!("{ONCE_ENV} must be IMPL:SIZE:MESSAGES, e.g. weft:16:100000");
        };
        let t = run(&rt, imp, &payload(size), n);
        println!("{}: {:?} per message", imp.name(), t / n as u32);
        return;
    }
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for (size, name) in SIZES {
        let data = payload(size);
        let mut group = c.benchmark_group(format!("echo_cpu/{name}"));
        group.throughput(Throughput::Bytes(size as u64));
        for imp in Impl::ALL {
            group.bench_function(imp.name(), |b| {
                b.iter_custom(|iters| run(&rt, imp, &data, iters))
            });
        }
        group.finish();
    }
    c.final_summary();
}
