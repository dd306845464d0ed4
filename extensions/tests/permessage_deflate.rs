//! permessage-deflate: negotiation tables for both roles, the RFC 7692 §7.2.3
//! vectors on the wire, bad input with its close code, the decompression
//! budget, and two endpoints talking over an in-memory pipe.

use bytes::Bytes;
use std::sync::Arc;
use test_support::{client_frame, drain_output, duplex_pair, read_messages};
use weft_core::ext::{
    ExtensionFactory, Negotiated, NegotiationError, SendHints, client_accept, format_extensions,
    parse_extensions, server_negotiate,
};
use weft_core::{
    ClientBuilder, Config, Connection, Message, OpCode, ProtocolError, Role, ServerBuilder, Session,
};
use weft_extensions::{MemoryStrategy, PerMessageDeflate, PerMessageDeflateExt, WindowBits};

fn server_answer(config: PerMessageDeflate, offer: &str) -> String {
    let f: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(config)];
    let n = server_negotiate(&f, &parse_extensions([offer]).unwrap()).unwrap();
    format_extensions(n.headers())
}

fn w(bits: u8) -> WindowBits {
    WindowBits::new(bits).unwrap()
}

#[test]
fn server_negotiation_table() {
    let d = rfc;
    let cases: Vec<(PerMessageDeflate, &str, &str)> = vec![
        (d(), "permessage-deflate", "permessage-deflate"),
        (
            d(),
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate",
        ),
        (
            d().client_max_window_bits(w(10)),
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=10",
        ),
        (
            d(),
            "permessage-deflate; client_max_window_bits=12",
            "permessage-deflate; client_max_window_bits=12",
        ),
        (
            d().client_max_window_bits(w(10)),
            "permessage-deflate; client_max_window_bits=12",
            "permessage-deflate; client_max_window_bits=10",
        ),
        // We can only limit the client's window if it said it supports that.
        (
            d().client_max_window_bits(w(10)),
            "permessage-deflate",
            "permessage-deflate",
        ),
        (
            d(),
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            d().server_no_context_takeover(true),
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            d().client_no_context_takeover(true),
            "permessage-deflate",
            "permessage-deflate; client_no_context_takeover",
        ),
        // The client's client_no_context_takeover is only a hint: not echoed.
        (
            d(),
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate",
        ),
        (
            d(),
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            d().server_max_window_bits(w(9)),
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=9",
        ),
        (
            d().server_max_window_bits(w(11)),
            "permessage-deflate",
            "permessage-deflate; server_max_window_bits=11",
        ),
        (
            d(),
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=8",
        ),
        (
            d(),
            r#"permessage-deflate; server_max_window_bits="10""#,
            "permessage-deflate; server_max_window_bits=10",
        ),
        // Invalid offers are declined and the next one is taken.
        (
            d(),
            "permessage-deflate; foo, permessage-deflate",
            "permessage-deflate",
        ),
        (
            d(),
            "permessage-deflate; server_max_window_bits, permessage-deflate",
            "permessage-deflate",
        ),
        (d(), "permessage-deflate; server_max_window_bits=16", ""),
        (d(), "permessage-deflate; server_max_window_bits=7", ""),
        (d(), "permessage-deflate; server_max_window_bits=08", ""),
        (d(), "permessage-deflate; server_max_window_bits=ten", ""),
        (d(), "permessage-deflate; client_max_window_bits=1.5", ""),
        (d(), "permessage-deflate; server_no_context_takeover=1", ""),
        (
            d(),
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "",
        ),
        (d(), "permessage-deflate; SERVER_NO_CONTEXT_TAKEOVER", ""),
        (
            d(),
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=10",
        ),
    ];
    for (config, offer, want) in cases {
        assert_eq!(server_answer(config, offer), want, "offer {offer:?}");
    }
}

fn client_result(
    config: PerMessageDeflate,
    response: &str,
) -> Result<Negotiated, NegotiationError> {
    let f: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(config)];
    client_accept(&f, &parse_extensions([response]).unwrap())
}

#[test]
fn client_offer_and_answer_validation() {
    let d = rfc;
    assert_eq!(
        format_extensions(&d().offers()),
        "permessage-deflate; client_max_window_bits"
    );
    let strict = d()
        .server_no_context_takeover(true)
        .server_max_window_bits(w(10))
        .client_max_window_bits(w(12))
        .rfc_fallback(false);
    assert_eq!(
        format_extensions(&strict.offers()),
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12"
    );
    let two = d().server_max_window_bits(w(10)).or_offer(d());
    assert_eq!(
        format_extensions(&two.offers()),
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits, permessage-deflate; client_max_window_bits"
    );
    // Fits the second offer.
    assert!(client_result(two, "permessage-deflate").is_ok());

    for ok in [
        "permessage-deflate",
        "permessage-deflate; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover",
        "permessage-deflate; client_max_window_bits=9",
        "permessage-deflate; server_max_window_bits=8",
    ] {
        assert!(client_result(d(), ok).is_ok(), "{ok}");
    }
    for bad in [
        "permessage-deflate; foo",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_max_window_bits=9; client_max_window_bits=9",
        "permessage-deflate; server_max_window_bits=16",
    ] {
        assert!(client_result(d(), bad).is_err(), "{bad}");
    }
    // Requested but missing or larger.
    assert!(
        client_result(
            strict_clone(),
            "permessage-deflate; server_max_window_bits=10"
        )
        .is_err()
    );
    assert!(
        client_result(
            strict_clone(),
            "permessage-deflate; server_no_context_takeover"
        )
        .is_err()
    );
    assert!(
        client_result(
            strict_clone(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11"
        )
        .is_err()
    );
    assert!(
        client_result(
            strict_clone(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9"
        )
        .is_ok()
    );
    assert!(client_result(strict_clone(), "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=13").is_err());
    // Two answers, or another RSV1 user beside it.
    assert!(matches!(
        client_result(d(), "permessage-deflate, permessage-deflate"),
        Err(NegotiationError::Duplicate(_))
    ));

    fn strict_clone() -> PerMessageDeflate {
        rfc()
            .server_no_context_takeover(true)
            .server_max_window_bits(w(10))
            .client_max_window_bits(w(12))
            .rfc_fallback(false)
    }

    // With the RFC fallback, window requests may be dropped by the server,
    // the no-context-takeover request may not.
    let relaxed = rfc()
        .server_no_context_takeover(true)
        .server_max_window_bits(w(10));
    assert!(
        client_result(
            relaxed.clone(),
            "permessage-deflate; server_no_context_takeover"
        )
        .is_ok()
    );
    assert!(client_result(relaxed, "permessage-deflate").is_err());
}

#[test]
fn default_preset_negotiates_8_kib_windows() {
    let f: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(PerMessageDeflate::new())];
    assert_eq!(
        format_extensions(&f[0].offers()),
        "permessage-deflate; server_max_window_bits=13; client_max_window_bits=13, \
         permessage-deflate; client_max_window_bits"
    );
    // A server that cannot honour 13 bits for its compressor (and says 15
    // for ours) still gets compression, through the RFC-defaults offer.
    assert!(
        client_accept(
            &f,
            &parse_extensions(["permessage-deflate; client_max_window_bits=15"]).unwrap()
        )
        .is_ok()
    );
    let answer = server_answer(
        PerMessageDeflate::new(),
        "permessage-deflate; client_max_window_bits",
    );
    assert_eq!(
        answer,
        "permessage-deflate; server_max_window_bits=13; client_max_window_bits=13"
    );
    let n = client_accept(&f, &parse_extensions([answer.as_str()]).unwrap()).unwrap();
    let e = n.extensions()[0].params::<PerMessageDeflateExt>().unwrap();
    assert_eq!((e.compress_window(), e.decompress_window()), (w(13), w(13)));
}

#[test]
fn agreed_parameters_from_each_side() {
    let n = client_result(rfc(), "permessage-deflate; server_no_context_takeover; client_max_window_bits=9; server_max_window_bits=8").unwrap();
    let e = n.extensions()[0].params::<PerMessageDeflateExt>().unwrap();
    assert_eq!((e.compress_window(), e.compress_takeover()), (w(9), true));
    assert_eq!((e.decompress_window(), e.peer_takeover()), (w(8), false));
}

/// A connection with permessage-deflate negotiated from `response`.
fn connection(
    role: Role,
    config: PerMessageDeflate,
    response: &str,
    limits: &Config,
) -> Connection {
    let n = match role {
        Role::Client => client_result(config, response).unwrap(),
        Role::Server => {
            let f: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(config)];
            server_negotiate(&f, &parse_extensions([response]).unwrap()).unwrap()
        }
    };
    assert_eq!(n.extensions().len(), 1);
    Connection::new(Session::with_extensions(role, limits, n), limits)
}

#[test]
fn rfc_vectors_on_the_wire() {
    let cfg = Config::default();
    let mut c = connection(Role::Client, rfc(), "permessage-deflate", &cfg);
    let hello = vec![Message::text("Hello")];
    assert_eq!(
        read_messages(
            &mut c,
            &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        )
        .unwrap(),
        hello
    );
    // Fragmented 3 + 4, RSV1 on the first frame only.
    assert_eq!(
        read_messages(
            &mut c,
            &[
                0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00
            ]
        )
        .unwrap(),
        hello
    );
    // A back-reference into the previous message (context takeover).
    assert_eq!(
        read_messages(&mut c, &[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
        hello
    );
    // Stored block, BFINAL block, two blocks, empty message, uncompressed message.
    assert_eq!(
        read_messages(
            &mut c,
            &[
                0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00
            ]
        )
        .unwrap(),
        hello
    );
    assert_eq!(
        read_messages(
            &mut c,
            &[
                0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07,
                0x00
            ]
        )
        .unwrap(),
        hello
    );
    assert_eq!(
        read_messages(&mut c, &[0xc1, 0x01, 0x00]).unwrap(),
        vec![Message::text("")]
    );
    assert_eq!(
        read_messages(&mut c, &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']).unwrap(),
        hello
    );
    assert_eq!(
        read_messages(
            &mut c,
            &[0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]
        )
        .unwrap(),
        hello
    );
    // Streamed: an unstripped intermediate fragment and an empty final one.
    assert_eq!(
        read_messages(
            &mut c,
            &[
                0x41, 0x0b, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff, 0x80,
                0x01, 0x00
            ]
        )
        .unwrap(),
        hello
    );
}

#[test]
fn server_encodes_the_rfc_vectors() {
    let cfg = Config::default();
    let mut s = connection(Role::Server, rfc(), "permessage-deflate", &cfg);
    let h = SendHints::default();
    s.session_mut()
        .send(OpCode::Text, Bytes::from_static(b"Hello"), &h)
        .unwrap();
    assert_eq!(
        drain_output(&mut s),
        [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
    );
    s.session_mut()
        .send(OpCode::Text, Bytes::from_static(b"Hello"), &h)
        .unwrap();
    assert_eq!(
        drain_output(&mut s),
        [0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]
    );
    // Opting out: RSV1 clear, the window untouched.
    s.session_mut()
        .send(
            OpCode::Text,
            Bytes::from_static(b"Hello"),
            &SendHints::uncompressed(),
        )
        .unwrap();
    assert_eq!(
        drain_output(&mut s),
        [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']
    );
    s.session_mut()
        .send(OpCode::Binary, Bytes::new(), &h)
        .unwrap();
    assert_eq!(drain_output(&mut s), [0xc2, 0x01, 0x00]);
    s.session_mut().ping(Bytes::from_static(b"p")).unwrap();
    assert_eq!(drain_output(&mut s), [0x89, 0x01, b'p']);

    // No context takeover: identical payloads for identical messages.
    let mut s = connection(
        Role::Server,
        rfc(),
        "permessage-deflate; server_no_context_takeover",
        &cfg,
    );
    for _ in 0..3 {
        s.session_mut()
            .send(OpCode::Text, Bytes::from_static(b"Hello"), &h)
            .unwrap();
        assert_eq!(
            drain_output(&mut s),
            [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
    }
    // Below the threshold: uncompressed.
    let mut s = connection(Role::Server, rfc().threshold(6), "permessage-deflate", &cfg);
    s.session_mut()
        .send(OpCode::Text, Bytes::from_static(b"Hello"), &h)
        .unwrap();
    assert_eq!(
        drain_output(&mut s),
        [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']
    );
    // Streamed fragments: sync-flushed pieces, stripped only at the end.
    let mut s = connection(Role::Server, rfc(), "permessage-deflate", &cfg);
    s.session_mut()
        .send_fragment(OpCode::Text, Bytes::from_static(b"Hel"), false, &h)
        .unwrap();
    s.session_mut()
        .send_fragment(OpCode::Continuation, Bytes::from_static(b"lo"), true, &h)
        .unwrap();
    assert_eq!(
        drain_output(&mut s),
        [
            0x41, 0x09, 0xf2, 0x48, 0xcd, 0x01, 0x00, 0x00, 0x00, 0xff, 0xff, 0x80, 0x04, 0xca,
            0xc9, 0x07, 0x00
        ]
    );
}

#[test]
fn bad_input_fails_with_the_right_code() {
    let cfg = Config::default();
    let server = || connection(Role::Server, rfc(), "permessage-deflate", &cfg);
    let code = |bytes: Vec<u8>| {
        let mut s = server();
        let e = read_messages(&mut s, &bytes).unwrap_err();
        let out = drain_output(&mut s);
        assert_eq!(&out[..2], &[0x88, 0x02]);
        assert_eq!(
            u16::from_be_bytes([out[2], out[3]]),
            e.close_code().as_u16()
        );
        e.close_code().as_u16()
    };
    // RSV1 on a continuation frame, on a control frame.
    let mut v = client_frame(0x41, &[0xf2, 0x48, 0xcd]);
    v.extend(client_frame(0xc0, &[0xc9, 0xc9, 0x07, 0x00]));
    assert_eq!(code(v), 1002);
    assert_eq!(code(client_frame(0xc9, b"")), 1002);
    // RSV2/RSV3 still belong to nobody.
    assert_eq!(code(client_frame(0xe1, &[0x00])), 1002);
    // Corrupt DEFLATE data.
    assert_eq!(code(client_frame(0xc1, &[0xff, 0xff, 0xff])), 1007);
    // Invalid UTF-8 after decompression (the wire bytes are valid DEFLATE).
    let mut c = connection(Role::Client, rfc(), "permessage-deflate", &cfg);
    c.session_mut()
        .send(
            OpCode::Text,
            Bytes::from_static(b"ok \xff"),
            &SendHints::default(),
        )
        .unwrap();
    let wire = drain_output(&mut c);
    assert_eq!(wire[0], 0xc1);
    let mut s = server();
    assert_eq!(
        read_messages(&mut s, &wire),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn decompression_budget_at_the_limit_and_one_past() {
    let data = vec![b'z'; 100_000];
    let mut enc = connection(
        Role::Client,
        rfc(),
        "permessage-deflate",
        &Config::default(),
    );
    enc.session_mut()
        .send(
            OpCode::Binary,
            Bytes::from(data.clone()),
            &SendHints::default(),
        )
        .unwrap();
    let wire = drain_output(&mut enc);
    assert!(wire.len() < 1000, "{}", wire.len());
    let at = Config::default().max_message_size(100_000);
    let mut s = connection(Role::Server, rfc(), "permessage-deflate", &at);
    assert_eq!(
        read_messages(&mut s, &wire).unwrap(),
        vec![Message::binary(data)]
    );
    let past = Config::default().max_message_size(99_999);
    let mut s = connection(Role::Server, rfc(), "permessage-deflate", &past);
    let e = read_messages(&mut s, &wire).unwrap_err();
    assert_eq!(e.close_code().as_u16(), 1009);
}

#[test]
fn a_one_gib_bomb_stops_at_the_limit() {
    // 1 GiB of zeros compresses to about 1 MiB; streamed in 64 fragments.
    let mut enc = connection(
        Role::Client,
        rfc(),
        "permessage-deflate",
        &Config::default(),
    );
    let chunk = Bytes::from(vec![0u8; 16 << 20]);
    let h = SendHints::default();
    let mut wire = Vec::new();
    for i in 0..64 {
        let op = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        enc.session_mut()
            .send_fragment(op, chunk.clone(), i == 63, &h)
            .unwrap();
        wire.extend(drain_output(&mut enc));
    }
    assert!(
        wire.len() < 2 << 20,
        "compressed bomb is {} bytes",
        wire.len()
    );
    let limits = Config::default().max_message_size(8 << 20);
    let mut s = connection(Role::Server, rfc(), "permessage-deflate", &limits);
    let e = read_messages(&mut s, &wire).unwrap_err();
    assert!(
        matches!(
            e,
            ProtocolError::Extension { .. } | ProtocolError::MessageTooLarge { .. }
        ),
        "{e}"
    );
    assert_eq!(e.close_code().as_u16(), 1009);
}

async fn echo_round_trip(
    client: PerMessageDeflate,
    server: PerMessageDeflate,
    expect: &str,
    frame_size: usize,
) {
    let limits = Config::default().send_frame_size(frame_size);
    let (mut c, mut s) = duplex_pair(
        ClientBuilder::new()
            .extension(client)
            .config(limits.clone()),
        ServerBuilder::new().extension(server).config(limits),
    )
    .await;
    assert_eq!(format_extensions(c.extensions()), expect);
    let srv = tokio::spawn(async move {
        while let Some(Ok(m)) = s.recv().await {
            if m.is_data() {
                s.send(m).await.unwrap();
            }
        }
    });
    let text = "weft ✓ compresses repeated text, repeated text, repeated text. ".repeat(500);
    let random: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let msgs = [
        Message::text(""),
        Message::text("Hello"),
        Message::text(text.as_str()),
        Message::binary(random),
        Message::text(text.as_str()),
        Message::binary(vec![7u8; 200_000]),
    ];
    for m in &msgs {
        c.send(m.clone()).await.unwrap();
        assert_eq!(&c.recv().await.unwrap().unwrap(), m, "{expect}");
    }
    c.close(weft_core::CloseCode::NORMAL, "").await.unwrap();
    srv.await.unwrap();
}

#[tokio::test]
async fn two_endpoints_with_each_parameter_combination() {
    let d = rfc;
    echo_round_trip(d(), d(), "permessage-deflate", 1 << 20).await;
    echo_round_trip(d(), d(), "permessage-deflate", 1000).await;
    echo_round_trip(
        d().server_max_window_bits(w(9))
            .client_max_window_bits(w(9)),
        d(),
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
        1 << 20,
    )
    .await;
    echo_round_trip(
        d(),
        d().server_max_window_bits(w(8))
            .client_max_window_bits(w(8)),
        "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
        4096,
    )
    .await;
    echo_round_trip(
        d().server_no_context_takeover(true),
        d().client_no_context_takeover(true),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        1 << 20,
    )
    .await;
    echo_round_trip(
        PerMessageDeflate::low_memory(),
        PerMessageDeflate::low_memory(),
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        1 << 20,
    )
    .await;
    echo_round_trip(
        PerMessageDeflate::pooled_no_context_takeover(),
        PerMessageDeflate::pooled_no_context_takeover().memory(MemoryStrategy::Keep),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=13; client_max_window_bits=13",
        1 << 20,
    )
    .await;
    echo_round_trip(d().level(0), d().level(9), "permessage-deflate", 1 << 20).await;
    // The default preset both ways, and the two live-context presets.
    echo_round_trip(
        PerMessageDeflate::new(),
        PerMessageDeflate::new(),
        "permessage-deflate; server_max_window_bits=13; client_max_window_bits=13",
        1 << 20,
    )
    .await;
    echo_round_trip(
        PerMessageDeflate::fast(),
        PerMessageDeflate::max_compression(),
        "permessage-deflate",
        1 << 20,
    )
    .await;
}

#[test]
fn random_compressed_payloads_never_panic() {
    let mut rng = test_support::rng(0x1234_5678_9abc_def1);
    let mut next = move || test_support::RngCore::next_u64(&mut rng);
    let cfg = Config::default().max_message_size(1 << 16);
    for _ in 0..2000 {
        let mut s = connection(Role::Server, rfc(), "permessage-deflate", &cfg);
        let mut input = Vec::new();
        for _ in 0..3 {
            let len = (next() % 40) as usize;
            let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let b0 = [0xc1u8, 0xc2, 0x41, 0x80, 0xc0, 0x81][(next() % 6) as usize];
            input.extend(client_frame(b0, &payload));
        }
        let _ = read_messages(&mut s, &input);
        let _ = drain_output(&mut s);
    }
}

/// permessage-deflate with the RFC's default 32 KiB windows (the crate's
/// default preset uses 8 KiB windows), so answers and vectors are the RFC's.
fn rfc() -> PerMessageDeflate {
    PerMessageDeflate::new()
        .server_max_window_bits(weft_extensions::WindowBits::MAX)
        .client_max_window_bits(weft_extensions::WindowBits::MAX)
}
