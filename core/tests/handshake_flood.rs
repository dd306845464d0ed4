//! A handshake header of 1 MiB sent as fast as possible (the shape of
//! CVE-2023-43669): the server stops reading once the head exceeds
//! `max_handshake_size` (it reads at most one byte past it), answers 431,
//! and so never does work beyond the limit however large the header is, for
//! any read size; `core/src/io/head.rs` checks that the head is parsed a
//! logarithmic number of times, not once per read. (The time per KiB
//! is measured by `cargo run -p weft-benches --release --bin
//! handshake_flood`, not here.)

use std::time::Duration;
use test_support::{FaultStream, Faults};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_core::handshake::HandshakeError;
use weft_core::{Config, Error, ServerBuilder};

async fn flood(max_read: usize, limit: usize) {
    let (mut client, server_end) = tokio::io::duplex(1 << 16);
    let server_end = FaultStream::new(
        server_end,
        Faults {
            max_read,
            ..Faults::default()
        },
    );
    let log = server_end.log();
    let server = ServerBuilder::new().config(Config::default().max_handshake_size(limit));
    let srv = tokio::spawn(async move { server.accept(server_end).await });
    let writer = tokio::spawn(async move {
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        head.resize(head.len() + (1 << 20), b'a');
        // The server stops reading: the write fails or stalls, both fine.
        let _ = tokio::time::timeout(Duration::from_secs(5), client.write_all(&head)).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
        answer
    });
    let r = tokio::time::timeout(Duration::from_secs(10), srv)
        .await
        .expect("the server gave up in time")
        .unwrap();
    assert!(
        matches!(r, Err(Error::Handshake(HandshakeError::TooLarge(n))) if n == limit),
        "{r:?}"
    );
    let read = log.lock().unwrap().read;
    // Reads are capped at the limit plus one byte: enough to know the head
    // is too large, nothing more.
    assert!(
        read <= limit + 1,
        "read {read} bytes of a 1 MiB header with a {limit}-byte limit"
    );
    let answer = writer.await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(40)])
    );
}

#[tokio::test]
async fn one_mib_header_is_refused_at_the_limit() {
    for max_read in [0, 1, 7, 1000] {
        flood(max_read, 16 << 10).await;
    }
    // A smaller limit bounds the reading just the same.
    flood(0, 1 << 10).await;
}
