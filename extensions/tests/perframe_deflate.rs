//! Per-frame deflate: the vectors and checklist of docs/specs/perframe-deflate.md, both names, and
//! its exclusion with permessage-deflate.

use bytes::Bytes;
use std::sync::Arc;
use test_support::{client_frame, connection_with, drain_output, duplex_pair, read_messages};
use weft_core::ext::{
    ExtensionFactory, Negotiated, NegotiationError, Preference, SendHints, client_accept,
    format_extensions, parse_extensions, server_negotiate, server_negotiate_with,
};
use weft_core::{ClientBuilder, Config, Connection, Message, OpCode, Role, ServerBuilder};
use weft_extensions::{PerFrameDeflate, PerFrameDeflateExt, PerMessageDeflate, WindowBits};

fn w(bits: u8) -> WindowBits {
    WindowBits::new(bits).unwrap()
}

fn answer(config: PerFrameDeflate, offer: &str) -> (String, Option<PerFrameDeflateExt>) {
    let f: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(config)];
    let n = server_negotiate(&f, &parse_extensions([offer]).unwrap()).unwrap();
    let ext = n
        .extensions()
        .first()
        .map(|e| e.params::<PerFrameDeflateExt>().unwrap().clone());
    (format_extensions(n.headers()), ext)
}

fn client(config: PerFrameDeflate, response: &str) -> Result<Negotiated, NegotiationError> {
    let f: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(config)];
    client_accept(&f, &parse_extensions([response]).unwrap())
}

#[test]
fn server_negotiation() {
    let d = PerFrameDeflate::new;
    // Both names, answered with the name offered.
    assert_eq!(answer(d(), "deflate-frame").0, "deflate-frame");
    assert_eq!(
        answer(d(), "x-webkit-deflate-frame").0,
        "x-webkit-deflate-frame"
    );
    // Offer parameters bind our compressor.
    let (h, e) = answer(
        d(),
        "deflate-frame; max_window_bits=10; no_context_takeover",
    );
    assert_eq!(h, "deflate-frame");
    let e = e.unwrap();
    assert_eq!((e.compress_window(), e.compress_takeover()), (w(10), false));
    let (_, e) = answer(d(), r#"x-webkit-deflate-frame; max_window_bits="9""#);
    assert_eq!(e.unwrap().compress_window(), w(9));
    // Our requests go into the response.
    let (h, _) = answer(
        d().request_max_window_bits(w(10))
            .request_no_context_takeover(true),
        "deflate-frame",
    );
    assert_eq!(h, "deflate-frame; max_window_bits=10; no_context_takeover");
    // Unknown parameters are ignored; invalid values decline the offer.
    assert_eq!(answer(d(), "deflate-frame; foo=bar").0, "deflate-frame");
    for bad in ["7", "16", "08", "foo"] {
        assert_eq!(
            answer(d(), &format!("deflate-frame; max_window_bits={bad}")).0,
            "",
            "{bad}"
        );
    }
    assert_eq!(answer(d(), "deflate-frame; no_context_takeover=1").0, "");
    assert_eq!(
        answer(d(), "deflate-frame; max_window_bits=9; max_window_bits=9").0,
        ""
    );
}

#[test]
fn client_negotiation() {
    assert_eq!(
        format_extensions(&PerFrameDeflate::webkit().offers()),
        "x-webkit-deflate-frame"
    );
    let offer = PerFrameDeflate::new()
        .request_max_window_bits(w(11))
        .request_no_context_takeover(true);
    assert_eq!(
        format_extensions(&offer.offers()),
        "deflate-frame; max_window_bits=11; no_context_takeover"
    );
    let n = client(
        PerFrameDeflate::webkit(),
        "x-webkit-deflate-frame; max_window_bits=10",
    )
    .unwrap();
    let e = n.extensions()[0].params::<PerFrameDeflateExt>().unwrap();
    assert_eq!((e.compress_window(), e.compress_takeover()), (w(10), true));
    let n = client(PerFrameDeflate::new(), "deflate-frame; no_context_takeover").unwrap();
    assert!(
        !n.extensions()[0]
            .params::<PerFrameDeflateExt>()
            .unwrap()
            .compress_takeover()
    );
    for bad in [
        "deflate-frame; foo",
        "deflate-frame; max_window_bits=16",
        "deflate-frame; max_window_bits",
        "deflate-frame; no_context_takeover=1",
        "deflate-frame, deflate-frame",
        "x-webkit-deflate-frame",
    ] {
        assert!(client(PerFrameDeflate::new(), bad).is_err(), "{bad}");
    }
}

#[test]
fn never_together_with_permessage_deflate() {
    let factories: Vec<Arc<dyn ExtensionFactory>> =
        vec![Arc::new(rfc()), Arc::new(PerFrameDeflate::new())];
    let offers = parse_extensions(["deflate-frame, permessage-deflate"]).unwrap();
    // The client's order by default, the server's when it prefers its own.
    let n = server_negotiate(&factories, &offers).unwrap();
    assert_eq!(format_extensions(n.headers()), "deflate-frame");
    let n = server_negotiate_with(&factories, &offers, Preference::Server).unwrap();
    assert_eq!(format_extensions(n.headers()), "permessage-deflate");
    // A client receiving both fails (RSV1 claimed twice).
    let f: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(rfc()), Arc::new(PerFrameDeflate::new())];
    let err = client_accept(
        &f,
        &parse_extensions(["permessage-deflate, deflate-frame"]).unwrap(),
    )
    .unwrap_err();
    assert!(matches!(err, NegotiationError::RsvConflict { .. }), "{err}");
}

fn conn(role: Role, config: PerFrameDeflate, element: &str) -> Connection {
    let n = match role {
        Role::Client => client(config, element).unwrap(),
        Role::Server => {
            let f: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(config)];
            server_negotiate(&f, &parse_extensions([element]).unwrap()).unwrap()
        }
    };
    connection_with(role, n, &Config::default())
}

#[test]
fn digest_vectors_decode() {
    let mut c = conn(Role::Client, PerFrameDeflate::new(), "deflate-frame");
    let hello = vec![Message::text("Hello")];
    let read = |c: &mut Connection, b: &[u8]| read_messages(c, b).unwrap();
    assert_eq!(
        read(
            &mut c,
            &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        ),
        hello
    );
    // Two compressed fragments with context takeover between them.
    assert_eq!(
        read(
            &mut c,
            &[
                0x41, 0x05, 0xf2, 0x48, 0xcd, 0x01, 0x00, 0xc0, 0x04, 0xca, 0xc9, 0x07, 0x00
            ]
        ),
        hello
    );
    // Compressed then plain fragment.
    let mut c2 = conn(Role::Client, PerFrameDeflate::new(), "deflate-frame");
    assert_eq!(
        read(
            &mut c2,
            &[
                0x41, 0x05, 0xf2, 0x48, 0xcd, 0x01, 0x00, 0x80, 0x02, 0x6c, 0x6f
            ]
        ),
        hello
    );
    // Context takeover from an earlier message; BFINAL; empty compressed frame.
    let mut c3 = conn(Role::Client, PerFrameDeflate::new(), "deflate-frame");
    assert_eq!(
        read(
            &mut c3,
            &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        ),
        hello
    );
    assert_eq!(
        read(&mut c3, &[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]),
        hello
    );
    assert_eq!(
        read(
            &mut c3,
            &[0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]
        ),
        hello
    );
    assert_eq!(
        read(
            &mut c3,
            &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        ),
        hello
    );
    assert_eq!(read(&mut c3, &[0xc1, 0x01, 0x00]), vec![Message::text("")]);
    // A masked client frame at a server.
    let mut s = conn(Role::Server, PerFrameDeflate::new(), "deflate-frame");
    assert_eq!(
        read(
            &mut s,
            &[
                0xc1, 0x87, 0x37, 0xfa, 0x21, 0x3d, 0xc5, 0xb2, 0xec, 0xf4, 0xfe, 0xfd, 0x21
            ]
        ),
        hello
    );
}

#[test]
fn encoder_compresses_each_frame() {
    let h = SendHints::default();
    let mut s = conn(Role::Server, PerFrameDeflate::new(), "deflate-frame");
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
    // Fragments: each frame compressed and flagged; empty frames plain; pings untouched.
    s.session_mut()
        .send_fragment(OpCode::Binary, Bytes::from_static(b"Hel"), false, &h)
        .unwrap();
    s.session_mut().ping(Bytes::from_static(b"p")).unwrap();
    s.session_mut()
        .send_fragment(OpCode::Continuation, Bytes::new(), false, &h)
        .unwrap();
    s.session_mut()
        .send_fragment(OpCode::Continuation, Bytes::from_static(b"lo"), true, &h)
        .unwrap();
    let out = drain_output(&mut s);
    assert_eq!(out[0], 0x42);
    let ping_at = 2 + out[1] as usize;
    assert_eq!(&out[ping_at..ping_at + 3], &[0x89, 0x01, b'p']);
    assert_eq!(&out[ping_at + 3..ping_at + 5], &[0x00, 0x00]);
    assert_eq!(out[ping_at + 5], 0xc0);
    let mut c = conn(Role::Client, PerFrameDeflate::new(), "deflate-frame");
    let mut all = vec![
        0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00,
        0x00,
    ];
    all.extend(&out);
    let msgs = read_messages(&mut c, &all).unwrap();
    assert_eq!(msgs.last().unwrap(), &Message::binary(&b"Hello"[..]));

    // no_context_takeover in the offer: the server resets after every frame.
    let mut s = conn(
        Role::Server,
        PerFrameDeflate::new(),
        "deflate-frame; no_context_takeover",
    );
    for _ in 0..2 {
        s.session_mut()
            .send(OpCode::Text, Bytes::from_static(b"Hello"), &h)
            .unwrap();
        assert_eq!(
            drain_output(&mut s),
            [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
    }
}

#[test]
fn bad_input() {
    let code = |bytes: Vec<u8>| {
        let mut s = conn(Role::Server, PerFrameDeflate::new(), "deflate-frame");
        let e = read_messages(&mut s, &bytes).unwrap_err();
        let out = drain_output(&mut s);
        assert_eq!(
            u16::from_be_bytes([out[2], out[3]]),
            e.close_code().as_u16()
        );
        e.close_code().as_u16()
    };
    assert_eq!(code(client_frame(0xc9, b"")), 1002); // compressed ping
    assert_eq!(code(client_frame(0xc1, &[0xff, 0xfe, 0xfd])), 1007); // corrupt
    assert_eq!(code(client_frame(0xa1, b"x")), 1002); // RSV2
    // Past the message limit while inflating.
    let limits = Config::default().max_message_size(1000);
    let f: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(PerFrameDeflate::new())];
    let n = server_negotiate(&f, &parse_extensions(["deflate-frame"]).unwrap()).unwrap();
    let mut s = connection_with(Role::Server, n, &limits);
    let mut enc = conn(Role::Client, PerFrameDeflate::new(), "deflate-frame");
    enc.session_mut()
        .send(
            OpCode::Binary,
            Bytes::from(vec![0u8; 1001]),
            &SendHints::default(),
        )
        .unwrap();
    let e = read_messages(&mut s, &drain_output(&mut enc)).unwrap_err();
    assert_eq!(e.close_code().as_u16(), 1009);
}

#[tokio::test]
async fn both_names_end_to_end() {
    for (client_cfg, expect) in [
        (PerFrameDeflate::new(), "deflate-frame"),
        (
            PerFrameDeflate::webkit().request_no_context_takeover(true),
            "x-webkit-deflate-frame; no_context_takeover",
        ),
        (
            PerFrameDeflate::new().request_max_window_bits(w(9)),
            "deflate-frame; max_window_bits=9",
        ),
    ] {
        let limits = Config::default().send_frame_size(3000);
        let server = ServerBuilder::new()
            .extension(rfc())
            .extension(PerFrameDeflate::new().request_max_window_bits(w(12)))
            .prefer_server_extension_order()
            .config(limits.clone());
        let (mut c, mut s) = duplex_pair(
            ClientBuilder::new().extension(client_cfg).config(limits),
            server,
        )
        .await;
        let got = format_extensions(c.extensions());
        assert!(got.starts_with(expect.split(';').next().unwrap()), "{got}");
        let srv = tokio::spawn(async move {
            while let Some(Ok(m)) = s.recv().await {
                if m.is_data() {
                    s.send(m).await.unwrap();
                }
            }
        });
        let text = "per-frame ✓ compression of repeated text ".repeat(400);
        for m in [
            Message::text(text.as_str()),
            Message::binary(vec![1u8; 50_000]),
            Message::text(""),
        ] {
            c.send(m.clone()).await.unwrap();
            assert_eq!(c.recv().await.unwrap().unwrap(), m);
        }
        c.close(weft_core::CloseCode::NORMAL, "").await.unwrap();
        srv.await.unwrap();
    }
}

/// permessage-deflate with the RFC's default 32 KiB windows (the crate's
/// default preset uses 8 KiB windows), so answers and vectors are the RFC's.
fn rfc() -> PerMessageDeflate {
    PerMessageDeflate::new()
        .server_max_window_bits(weft_extensions::WindowBits::MAX)
        .client_max_window_bits(weft_extensions::WindowBits::MAX)
}
