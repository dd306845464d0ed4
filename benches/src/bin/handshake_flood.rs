//! How long a server spends on one huge handshake head (the failure of
//! CVE-2023-43669: a long header burned minutes of CPU).
//!
//! ```text
//! cargo run --release -p weft-benches --bin handshake_flood [-- --reps 5]
//! ```
//!
//! Two measurements, one JSON line per case:
//!
//! - `"case":"parse"`: `handshake::server::parse_request` on a complete
//!   head of `kib` KiB (the limit raised above it): `ns_per_kib` should be
//!   flat in `kib` (linear time).
//! - `"case":"accept"`: `ServerBuilder::accept` on an in-memory pipe fed a
//!   1 MiB header as fast as possible in reads of at most `read` bytes,
//!   with the limit `limit`: the time until the server refuses (431),
//!   how many bytes it read, and `ns_per_kib_read`. With the default 16 KiB
//!   limit the work is bounded by the limit whatever the header's size; the
//!   head is re-parsed after every read, so the cost per KiB grows with
//!   the number of reads (`read` 1 is the worst case).
//!
//! Bounded: every case runs `--reps` times on one thread, loopback-free.

use clap::Parser;
use serde::Serialize;
use std::time::{Duration, Instant};
use test_support::{FaultStream, Faults};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_core::handshake::server::parse_request;
use weft_core::{Config, ServerBuilder};

#[derive(Parser)]
struct Args {
    /// Repetitions per case (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

#[derive(Serialize)]
struct Line {
    case: &'static str,
    kib: usize,
    read: usize,
    limit: usize,
    bytes_read: usize,
    median_us: f64,
    ns_per_kib: f64,
}

fn head(kib: usize, complete: bool) -> Vec<u8> {
    let mut h = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    h.resize(h.len() + kib * 1024, b'a');
    if complete {
        h.extend_from_slice(b"\r\n\r\n");
    }
    h
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn accept_once(read: usize, limit: usize) -> (Duration, usize) {
    let (mut client, server_end) = tokio::io::duplex(1 << 16);
    let server_end = FaultStream::new(
        server_end,
        Faults {
            max_read: read,
            ..Faults::default()
        },
    );
    let log = server_end.log();
    let server = ServerBuilder::new().config(Config::default().max_handshake_size(limit));
    let data = head(1024, false);
    let writer = tokio::spawn(async move {
        let _ = client.write_all(&data).await;
        let mut sink = Vec::new();
        let _ = client.read_to_end(&mut sink).await;
    });
    let t = Instant::now();
    let r = server.accept(server_end).await;
    let took = t.elapsed();
    assert!(r.is_err(), "a 1 MiB header was accepted");
    writer.abort();
    let bytes = log.lock().unwrap().read;
    (took, bytes)
}

fn main() {
    let args = Args::parse();
    let reps = args.reps.max(1);
    for kib in [1usize, 4, 16, 64, 256, 1024] {
        let h = head(kib, true);
        let times = (0..reps)
            .map(|_| {
                let t = Instant::now();
                let r = parse_request(&h, h.len() + 1024, 64).expect("parses");
                assert!(r.is_some());
                t.elapsed()
            })
            .collect();
        let m = median(times);
        let line = Line {
            case: "parse",
            kib,
            read: h.len(),
            limit: h.len() + 1024,
            bytes_read: h.len(),
            median_us: m.as_secs_f64() * 1e6,
            ns_per_kib: m.as_nanos() as f64 / kib as f64,
        };
        println!("{}", serde_json::to_string(&line).unwrap());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for limit in [16usize << 10, 1 << 20] {
        for read in [65536usize, 1024, 16, 1] {
            if limit == 1 << 20 && read < 16 {
                // Quadratic re-parsing of a 1 MiB head a byte at a time takes
                // minutes: the reason for a small limit. Measured at 16.
                continue;
            }
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..reps {
                let (t, b) = rt.block_on(accept_once(read, limit));
                times.push(t);
                bytes = b;
            }
            let m = median(times);
            let line = Line {
                case: "accept",
                kib: 1024,
                read,
                limit,
                bytes_read: bytes,
                median_us: m.as_secs_f64() * 1e6,
                ns_per_kib: m.as_nanos() as f64 / (bytes as f64 / 1024.0),
            };
            println!("{}", serde_json::to_string(&line).unwrap());
        }
    }
}
