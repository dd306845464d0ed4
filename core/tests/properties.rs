//! Property tests (proptest) of the wire path:
//!
//! - any message cut into frames at any boundaries, with Ping/Pong frames
//!   interleaved anywhere, and the bytes delivered in reads of any sizes,
//!   reassembles to the same message, in both roles, with the control
//!   frames reported in wire order;
//! - text split anywhere (frames and reads, so code points are cut) is
//!   accepted exactly when `std::str::from_utf8` accepts the whole, and an
//!   invalid one fails with 1007;
//! - `format_extensions` and `parse_extensions` round-trip any list of
//!   extension elements (tokens, valueless, token and quoted values).

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use weft_core::ext::{ExtensionHeader, format_extensions, parse_extensions};
use weft_core::proto::mask::apply_mask;
use weft_core::{
    Config, Connection, FrameHeader, Message, OpCode, ProtocolError, Role, Rsv, Session,
};

fn wire_frame(fin: bool, opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut hdr = [0u8; 14];
    let n = FrameHeader {
        fin,
        rsv: Rsv::empty(),
        opcode,
        mask,
        payload_len: payload.len() as u64,
    }
    .encode(&mut hdr);
    let mut out = hdr[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key);
    }
    out
}

/// Sorted cut offsets in `0..=len` from arbitrary indexes.
fn cuts(raw: &[prop::sample::Index], len: usize) -> Vec<usize> {
    let mut c: Vec<usize> = raw.iter().map(|i| i.index(len + 1)).collect();
    c.sort_unstable();
    c
}

fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        out.push(&data[at..c]);
        at = c;
    }
    out.push(&data[at..]);
    out
}

/// Feeds `wire` to a connection of `role` in reads cut at `reads`; the
/// messages, and the error that ended them, if any.
fn receive(role: Role, wire: &[u8], reads: &[usize]) -> (Vec<Message>, Option<ProtocolError>) {
    let cfg = Config::default();
    let mut conn = Connection::new(Session::new(role, &cfg), &cfg);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for piece in pieces(wire, reads) {
        buf.extend_from_slice(piece);
        loop {
            match conn.handle_read(&mut buf) {
                Ok(Some(m)) => got.push(m),
                Ok(None) => break,
                Err(e) => return (got, Some(e)),
            }
        }
    }
    (got, None)
}

/// A message's frames with control frames interleaved: the wire bytes and
/// the messages a receiver must report, in order.
fn build(
    text: bool,
    payload: &[u8],
    frame_cuts: &[usize],
    controls: &[(prop::sample::Index, bool, Vec<u8>)],
    mask: Option<[u8; 4]>,
) -> (Vec<u8>, Vec<Message>) {
    let parts = pieces(payload, frame_cuts);
    // Control frames go before data frame `k` (k == parts.len(): after the
    // last one).
    let mut at: Vec<(usize, bool, &[u8])> = controls
        .iter()
        .map(|(i, ping, p)| (i.index(parts.len() + 1), *ping, &p[..]))
        .collect();
    at.sort_by_key(|c| c.0);
    let mut wire = Vec::new();
    let mut expect = Vec::new();
    let mut ci = 0;
    for (k, part) in parts.iter().enumerate() {
        while ci < at.len() && at[ci].0 == k {
            let (_, ping, p) = at[ci];
            let op = if ping { OpCode::Ping } else { OpCode::Pong };
            wire.extend(wire_frame(true, op, p, mask));
            let b = Bytes::copy_from_slice(p);
            expect.push(if ping {
                Message::Ping(b)
            } else {
                Message::Pong(b)
            });
            ci += 1;
        }
        let op = match (k, text) {
            (0, true) => OpCode::Text,
            (0, false) => OpCode::Binary,
            _ => OpCode::Continuation,
        };
        wire.extend(wire_frame(k + 1 == parts.len(), op, part, mask));
    }
    expect.push(match text {
        true => Message::text(String::from_utf8(payload.to_vec()).expect("valid text")),
        false => Message::binary(payload.to_vec()),
    });
    for &(_, ping, p) in &at[ci..] {
        let b = Bytes::copy_from_slice(p);
        let op = if ping { OpCode::Ping } else { OpCode::Pong };
        wire.extend(wire_frame(true, op, p, mask));
        expect.push(if ping {
            Message::Ping(b)
        } else {
            Message::Pong(b)
        });
    }
    (wire, expect)
}

fn control() -> impl Strategy<Value = (prop::sample::Index, bool, Vec<u8>)> {
    (
        any::<prop::sample::Index>(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..=125),
    )
}

fn almost_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        ".{0,60}".prop_map(String::into_bytes),
        (".{1,60}", any::<prop::sample::Index>(), any::<u8>()).prop_map(|(s, i, b)| {
            let mut v = s.into_bytes();
            let k = i.index(v.len());
            v[k] = b;
            v
        }),
        prop::collection::vec(any::<u8>(), 0..30),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn fragmented_messages_with_control_frames_reassemble(
        server in any::<bool>(),
        text in any::<bool>(),
        body in prop::collection::vec(any::<u8>(), 0..3000),
        s in ".{0,300}",
        frame_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        controls in prop::collection::vec(control(), 0..6),
        read_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        key in any::<[u8; 4]>(),
    ) {
        let payload = if text { s.into_bytes() } else { body };
        let (role, mask) = match server {
            true => (Role::Server, Some(key)),
            false => (Role::Client, None),
        };
        let fc = cuts(&frame_cuts, payload.len());
        let (wire, expect) = build(text, &payload, &fc, &controls, mask);
        let (got, err) = receive(role, &wire, &cuts(&read_cuts, wire.len()));
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, expect);
    }

    #[test]
    fn text_split_anywhere_is_accepted_iff_valid_utf8(
        server in any::<bool>(),
        bytes in almost_text(),
        frame_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        read_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        key in any::<[u8; 4]>(),
    ) {
        let (role, mask) = match server {
            true => (Role::Server, Some(key)),
            false => (Role::Client, None),
        };
        let parts = pieces(&bytes, &cuts(&frame_cuts, bytes.len()));
        let mut wire = Vec::new();
        for (k, p) in parts.iter().enumerate() {
            let op = if k == 0 { OpCode::Text } else { OpCode::Continuation };
            wire.extend(wire_frame(k + 1 == parts.len(), op, p, mask));
        }
        let (got, err) = receive(role, &wire, &cuts(&read_cuts, wire.len()));
        match std::str::from_utf8(&bytes) {
            Ok(s) => {
                prop_assert_eq!(err, None);
                prop_assert_eq!(got, vec![Message::text(s.to_owned())]);
            }
            Err(_) => {
                prop_assert!(got.is_empty());
                let e = err.expect("invalid text fails");
                prop_assert_eq!(&e, &ProtocolError::InvalidUtf8);
                prop_assert_eq!(e.close_code().as_u16(), 1007);
            }
        }
    }

    #[test]
    fn extension_headers_round_trip(
        list in prop::collection::vec(
            (
                "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}",
                prop::collection::vec(
                    (
                        "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}",
                        prop::option::of("[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,8}"),
                    ),
                    0..4,
                ),
            ),
            0..5,
        ),
        quoted_lines in any::<bool>(),
    ) {
        let headers: Vec<ExtensionHeader> = list
            .into_iter()
            .map(|(name, params)| {
                params
                    .into_iter()
                    .fold(ExtensionHeader::new(name), |h, (p, v)| h.param(p, v))
            })
            .collect();
        let printed = format_extensions(&headers);
        prop_assert_eq!(&parse_extensions([printed.as_str()]).unwrap(), &headers);
        // The same elements on one header line each parse to the same list
        // (RFC 6455 §9.1), and so do values written as quoted strings.
        let lines: Vec<String> = headers
            .iter()
            .map(|h| {
                let mut s = h.name.clone();
                for p in &h.params {
                    s.push_str("; ");
                    s.push_str(&p.name);
                    if let Some(v) = &p.value {
                        match quoted_lines {
                            true => s.push_str(&format!("=\"{v}\"")),
                            false => s.push_str(&format!("={v}")),
                        }
                    }
                }
                s
            })
            .collect();
        let parsed = parse_extensions(lines.iter().map(String::as_str)).unwrap();
        prop_assert_eq!(parsed, headers);
    }
}
