//! Random and mutated input into every parser of the core: frames (both
//! roles, with and without extensions), handshake requests and responses,
//! and extension headers. Nothing may panic, and a connection that fails
//! must answer with exactly one Close frame. Deterministic (seeded), bounded.

use bytes::BytesMut;
use test_support::{Rng, SeededRng, Toy, ToyExt, client_frame, connection_with, drain_output};
use weft_core::ext::{ExtensionHeader, Negotiated, parse_extensions};
use weft_core::handshake::server::{accept_request, parse_request};
use weft_core::handshake::{ClientHandshake, ClientOptions, ServerOptions, Target};
use weft_core::{Config, Role};

/// Valid frames to mutate.
fn corpus() -> Vec<Vec<u8>> {
    vec![
        client_frame(0x81, "héllo".as_bytes()),
        client_frame(0x01, b"frag"),
        client_frame(0x80, b"ment"),
        client_frame(0x82, &[0u8; 300]),
        client_frame(0x89, b"ping"),
        client_frame(0x88, &[0x03, 0xe8, b'o', b'k']),
        client_frame(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
    ]
}

fn mutate(rng: &mut SeededRng, mut v: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.random_range(0..4) {
        match rng.random_range(0..4) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = rng.random::<u8>();
            }
            2 => v.truncate(rng.random_range(0..v.len() + 1)),
            _ => {
                let n = rng.random_range(0..16);
                v.extend((0..n).map(|_| rng.random::<u8>()));
            }
        }
    }
    v
}

fn run_connection(role: Role, negotiated: Negotiated, input: &[u8], chunk: usize) {
    let limits = Config::default()
        .max_message_size(1 << 16)
        .max_frame_size(1 << 16);
    let mut c = connection_with(role, negotiated, &limits);
    let mut buf = BytesMut::new();
    let mut failed = false;
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match c.handle_read(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
    }
    let out = drain_output(&mut c);
    if failed {
        // Exactly one Close frame (possibly after Pongs) and nothing more.
        let closes = count_closes(&out, role);
        assert_eq!(closes, 1, "{input:02x?}");
    }
}

/// Counts Close frames in our own output (masked when we are a client).
fn count_closes(mut out: &[u8], role: Role) -> usize {
    let mut closes = 0;
    while out.len() >= 2 {
        let op = out[0] & 0x0f;
        let masked = out[1] & 0x80 != 0;
        assert_eq!(masked, role == Role::Client);
        let (len, hdr) = match out[1] & 0x7f {
            126 => (u16::from_be_bytes([out[2], out[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(out[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let total = hdr + if masked { 4 } else { 0 } + len;
        if op == 8 {
            closes += 1;
        }
        out = &out[total.min(out.len())..];
    }
    closes
}

fn toys(list: &[Toy]) -> Negotiated {
    let mut n = Negotiated::none();
    for t in list {
        n.push(ExtensionHeader::new(t.name()), ToyExt::new(*t).negotiated())
            .unwrap();
    }
    n
}

#[test]
fn mutated_frames_never_panic() {
    let mut rng = test_support::rng(0x5eed_1234_abcd_0001);
    let corpus = corpus();
    for round in 0..4000 {
        let mut input = Vec::new();
        for _ in 0..1 + rng.random_range(0..4) {
            let base = corpus[rng.random_range(0..corpus.len())].clone();
            input.extend(if rng.random_range(0..3) == 0 {
                base
            } else {
                mutate(&mut rng, base)
            });
        }
        let chunk = 1 + rng.random_range(0..32);
        let exts = match round % 3 {
            0 => toys(&[]),
            1 => toys(&[Toy::Xor, Toy::Tag]),
            _ => toys(&[Toy::Double]),
        };
        run_connection(Role::Server, exts, &input, chunk);
        run_connection(Role::Client, toys(&[]), &input, chunk);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = test_support::rng(0x0bad_cafe_f00d_0002);
    for _ in 0..3000 {
        let n = rng.random_range(0..200);
        let input = (0..n).map(|_| rng.random::<u8>()).collect::<Vec<u8>>();
        run_connection(
            Role::Server,
            toys(&[Toy::Xor]),
            &input,
            1 + rng.random_range(0..64),
        );
        run_connection(Role::Client, toys(&[]), &input, 1 + rng.random_range(0..64));
    }
}

const REQUEST: &[u8] =
    b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Extensions: x; p=1, y; q=\"2\"\r\n\r\n";

#[test]
fn mutated_handshakes_never_panic() {
    let mut rng = test_support::rng(0xfeed_beef_0000_0003);
    let options = ServerOptions::default().protocols(&["b"]);
    let target = Target::parse("ws://h/chat").unwrap();
    let (client, _) = ClientHandshake::new(&target, ClientOptions::default()).unwrap();
    for _ in 0..5000 {
        let input = mutate(&mut rng, REQUEST.to_vec());
        if let Ok(Some((req, n))) = parse_request(&input, 4096, 32) {
            assert!(n <= input.len());
            let _ = accept_request(&req, &options);
        }
        let _ = client.handle_response(&input, 4096, 32);
        if let Ok(s) = std::str::from_utf8(&input) {
            let _ = parse_extensions([s]);
        }
    }
}
