//! Property tests (proptest) of the compression extensions on the wire
//! path: a message streamed in fragments cut anywhere, compressed by
//! permessage-deflate (or frame by frame by deflate-frame) with Pings
//! interleaved, sent by one end and read by the other in reads of any
//! sizes, arrives as the same message, in both directions, for any
//! negotiated parameters; and context takeover holds across messages.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use std::sync::Arc;
use test_support::{connection_with, drain_output};
use weft_core::ext::{
    ExtensionFactory, SendHints, client_accept, client_offers, format_extensions, parse_extensions,
    server_negotiate,
};
use weft_core::{Config, Message, OpCode, Role};
use weft_extensions::{PerFrameDeflate, PerMessageDeflate, WindowBits};

fn factory(per_frame: bool, bits: u8, nct: bool) -> Arc<dyn ExtensionFactory> {
    let w = WindowBits::new(bits).unwrap();
    match per_frame {
        true => Arc::new(
            PerFrameDeflate::new()
                .window_bits(w)
                .no_context_takeover(nct),
        ),
        false => Arc::new(
            PerMessageDeflate::new()
                .server_max_window_bits(w)
                .client_max_window_bits(w)
                .server_no_context_takeover(nct)
                .client_no_context_takeover(nct),
        ),
    }
}

/// (client, server) connections that negotiated `f` through printed and
/// parsed headers, as a handshake does.
fn pair(f: Arc<dyn ExtensionFactory>) -> (weft_core::Connection, weft_core::Connection) {
    let fs = vec![f];
    let offers = parse_extensions([format_extensions(&client_offers(&fs)).as_str()]).unwrap();
    let server = server_negotiate(&fs, &offers).unwrap();
    let answer = parse_extensions([format_extensions(server.headers()).as_str()]).unwrap();
    let client = client_accept(&fs, &answer).unwrap();
    assert_eq!(client.headers().len(), 1);
    let cfg = Config::default();
    (
        connection_with(Role::Client, client, &cfg),
        connection_with(Role::Server, server, &cfg),
    )
}

fn pieces(data: &[u8], raw: &[prop::sample::Index]) -> Vec<Vec<u8>> {
    let mut c: Vec<usize> = raw.iter().map(|i| i.index(data.len() + 1)).collect();
    c.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for k in c {
        out.push(data[at..k].to_vec());
        at = k;
    }
    out.push(data[at..].to_vec());
    out
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Compressible: repeated words.
        prop::collection::vec(
            prop::sample::select(vec!["hello ", "world ", "weft ", "\u{e9}t\u{e9} "]),
            0..400
        )
        .prop_map(|w| w.concat().into_bytes()),
        // Incompressible ASCII.
        prop::collection::vec(0x20u8..0x7f, 0..2000),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn compressed_fragments_with_pings_reassemble(
        per_frame in any::<bool>(),
        bits in 8u8..=15,
        nct in any::<bool>(),
        from_client in any::<bool>(),
        messages in prop::collection::vec(
            (payload(), prop::collection::vec(any::<prop::sample::Index>(), 0..6), any::<bool>()),
            1..4,
        ),
        ping_after in prop::collection::vec(any::<bool>(), 0..8),
        read_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let (client, server) = pair(factory(per_frame, bits, nct));
        let (mut tx, mut rx) = match from_client {
            true => (client, server),
            false => (server, client),
        };
        let hints = SendHints::default();
        let mut expect = Vec::new();
        let mut wire = Vec::new();
        let mut p = 0;
        for (data, cuts, text) in &messages {
            let parts = pieces(data, cuts);
            let n = parts.len();
            // A Ping after the last fragment arrives after the message.
            let mut after = Vec::new();
            for (k, part) in parts.into_iter().enumerate() {
                let op = match (k, text) {
                    (0, true) => OpCode::Text,
                    (0, false) => OpCode::Binary,
                    _ => OpCode::Continuation,
                };
                tx.session_mut().send_fragment(op, Bytes::from(part), k + 1 == n, &hints).unwrap();
                if ping_after.get(p).copied().unwrap_or(false) {
                    tx.session_mut().ping(Bytes::from(vec![p as u8; p % 7])).unwrap();
                    let ping = Message::Ping(Bytes::from(vec![p as u8; p % 7]));
                    match k + 1 == n {
                        true => after.push(ping),
                        false => expect.push(ping),
                    }
                }
                p += 1;
                wire.extend(drain_output(&mut tx));
            }
            expect.push(match text {
                // Text fragments may cut a code point; the whole is valid.
                true => Message::text(String::from_utf8(data.clone()).unwrap()),
                false => Message::binary(data.clone()),
            });
            expect.append(&mut after);
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in pieces(&wire, &read_cuts) {
            buf.extend_from_slice(&piece);
            while let Some(m) = rx.handle_read(&mut buf).unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got, expect);
    }
}
