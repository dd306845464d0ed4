//! Sans-I/O tests of the connection and session: RFC 6455 vectors, bad
//! input with its close code, fragmentation, control frames, the closing
//! handshake and limits (at the limit and one past it).

use bytes::{BufMut, Bytes, BytesMut};
use std::time::{Duration, Instant};
use test_support::{client_frame, drain_output};
use weft_core::ext::SendHints;
use weft_core::{
    CloseCode, CloseFrame, CloseState, Config, Connection, Frame, Message, OpCode, ProtocolError,
    Role, Rsv, SendError, Session,
};

fn conn(role: Role, config: &Config) -> Connection {
    Connection::new(Session::new(role, config), config)
}

fn server() -> Connection {
    conn(Role::Server, &Config::default())
}

fn client() -> Connection {
    conn(Role::Client, &Config::default())
}

/// Feeds bytes; returns every message and the first error.
fn feed(c: &mut Connection, bytes: &[u8]) -> (Vec<Message>, Option<ProtocolError>) {
    let mut buf = BytesMut::from(bytes);
    let mut msgs = Vec::new();
    loop {
        match c.handle_read(&mut buf) {
            Ok(Some(m)) => msgs.push(m),
            Ok(None) => return (msgs, None),
            Err(e) => return (msgs, Some(e)),
        }
    }
}

/// Asserts that `bytes` fail a server connection with `code`, and that the
/// server answers with exactly one unmasked Close frame carrying that code.
fn assert_fails(bytes: &[u8], code: u16) -> ProtocolError {
    let mut s = server();
    let (_, err) = feed(&mut s, bytes);
    let err = err.unwrap_or_else(|| panic!("no error for {bytes:02x?}"));
    assert_eq!(err.close_code().as_u16(), code, "{err}");
    let out = drain_output(&mut s);
    assert_eq!(
        &out[..2],
        &[0x88, 0x02],
        "close frame expected, got {out:02x?}"
    );
    assert_eq!(u16::from_be_bytes([out[2], out[3]]), code);
    assert_eq!(out.len(), 4);
    // Nothing more is processed after failing.
    let (msgs, err2) = feed(&mut s, &client_frame(0x81, b"late"));
    assert!(msgs.is_empty() && err2.is_none());
    assert_eq!(s.session().state(), CloseState::Failed);
    err
}

#[test]
fn rfc_5_7_client_vectors() {
    let mut c = client();
    let (m, e) = feed(&mut c, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!((m, e), (vec![Message::text("Hello")], None));
    let (m, _) = feed(
        &mut c,
        &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f],
    );
    assert_eq!(m, vec![Message::text("Hello")]);
    let mut v = vec![0x82, 0x7e, 0x01, 0x00];
    v.extend((0..256).map(|i| i as u8));
    let (m, _) = feed(&mut c, &v);
    assert_eq!(
        m,
        vec![Message::binary(
            (0..256).map(|i| i as u8).collect::<Vec<u8>>()
        )]
    );
    let mut v = vec![0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
    v.extend(std::iter::repeat_n(9u8, 65536));
    let (m, _) = feed(&mut c, &v);
    assert_eq!(m[0].len(), 65536);
    // Unmasked Ping "Hello": answered with a masked Pong with the same body.
    let (m, _) = feed(&mut c, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(m, vec![Message::Ping(Bytes::from_static(b"Hello"))]);
    let out = drain_output(&mut c);
    assert_eq!(&out[..2], &[0x8a, 0x85]);
    let key = [out[2], out[3], out[4], out[5]];
    let body: Vec<u8> = out[6..]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect();
    assert_eq!(body, b"Hello");
}

#[test]
fn rfc_5_7_server_vectors() {
    let mut s = server();
    let (m, _) = feed(
        &mut s,
        &[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ],
    );
    assert_eq!(m, vec![Message::text("Hello")]);
    // The Pong vector of §5.7 is accepted as an unsolicited Pong and not answered.
    let (m, _) = feed(
        &mut s,
        &[
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ],
    );
    assert_eq!(m, vec![Message::Pong(Bytes::from_static(b"Hello"))]);
    assert!(drain_output(&mut s).is_empty());
    // An all-zero masking key is still a key.
    let (m, _) = feed(
        &mut s,
        &[0x81, 0x85, 0, 0, 0, 0, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
    );
    assert_eq!(m, vec![Message::text("Hello")]);
    s.session_mut()
        .send(
            OpCode::Text,
            Bytes::from_static(b"Hello"),
            &SendHints::default(),
        )
        .unwrap();
    assert_eq!(
        drain_output(&mut s),
        [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
}

#[test]
fn client_frames_are_masked_with_fresh_keys() {
    let mut c = client();
    c.session_mut()
        .send(
            OpCode::Text,
            Bytes::from_static(b"Hello"),
            &SendHints::default(),
        )
        .unwrap();
    c.session_mut()
        .send(
            OpCode::Text,
            Bytes::from_static(b"Hello"),
            &SendHints::default(),
        )
        .unwrap();
    let out = drain_output(&mut c);
    assert_eq!(out.len(), 22);
    assert_eq!(&out[..2], &[0x81, 0x85]);
    assert_ne!(out[2..6], out[13..17], "two frames with the same key");
    // The server side decodes them.
    let mut s = server();
    let (m, e) = feed(&mut s, &out);
    assert_eq!((m.len(), e), (2, None));
}

#[test]
fn bad_frames_fail_with_the_right_code() {
    // Unmasked frame at a server.
    assert_fails(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], 1002);
    // RSV bits without an extension.
    assert_eq!(
        assert_fails(&client_frame(0xc1, b"Hello"), 1002),
        ProtocolError::ReservedBits(Rsv::RSV1)
    );
    assert_fails(&client_frame(0xa1, b"x"), 1002);
    assert_fails(&client_frame(0x91, b"x"), 1002);
    assert_fails(&client_frame(0xc9, b""), 1002); // RSV on a control frame
    // Reserved opcodes.
    for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        assert_fails(&client_frame(0x80 | op, b""), 1002);
    }
    // Fragmented and oversized control frames.
    assert_fails(&client_frame(0x09, b""), 1002);
    assert_fails(&client_frame(0x89, &[0u8; 126]), 1002);
    // Continuation without a start; a new message inside a fragmented one.
    assert_fails(&client_frame(0x80, b"x"), 1002);
    let mut v = client_frame(0x01, b"a");
    v.extend(client_frame(0x81, b"b"));
    assert_fails(&v, 1002);
    // Non-minimal length and a 64-bit length with the top bit set.
    assert_fails(&[0x81, 0xfe, 0x00, 0x05, 1, 2, 3, 4, 1, 2, 3, 4, 5], 1002);
    assert_fails(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], 1002);
    // Close with a 1-byte payload; invalid close codes.
    assert_fails(&client_frame(0x88, &[0x03]), 1002);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert_fails(&client_frame(0x88, &code.to_be_bytes()), 1002);
    }
    // Invalid UTF-8 in text and in a close reason.
    assert_fails(
        &client_frame(
            0x81,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
        ),
        1007,
    );
    let mut reason = 1000u16.to_be_bytes().to_vec();
    reason.extend_from_slice(b"\xff");
    assert_fails(&client_frame(0x88, &reason), 1007);
}

#[test]
fn client_rejects_masked_frames() {
    let mut c = client();
    let (_, err) = feed(&mut c, &client_frame(0x81, b"x"));
    assert_eq!(err, Some(ProtocolError::MaskedFrame));
    let out = drain_output(&mut c);
    assert_eq!(out[0], 0x88);
    assert_eq!(out[1], 0x82, "client close frames are masked");
}

#[test]
fn utf8_fails_fast_before_fin() {
    let mut s = server();
    // First fragment is fine, second contains an impossible byte; no FIN yet.
    let mut v = client_frame(0x01, "κό".as_bytes());
    v.extend(client_frame(0x00, b"\xf5"));
    let (_, err) = feed(&mut s, &v);
    assert_eq!(err, Some(ProtocolError::InvalidUtf8));
    // A code point split across fragments is fine.
    let mut s = server();
    let euro = "€".as_bytes();
    let mut v = client_frame(0x01, &euro[..1]);
    v.extend(client_frame(0x00, &euro[1..2]));
    v.extend(client_frame(0x80, &euro[2..]));
    assert_eq!(feed(&mut s, &v), (vec![Message::text("€")], None));
    // Ending inside a code point fails.
    assert_fails(&client_frame(0x81, &euro[..2]), 1007);
}

#[test]
fn ping_between_fragments_is_answered_and_assembly_continues() {
    let mut s = server();
    let mut v = client_frame(0x01, b"Hel");
    v.extend(client_frame(0x89, b"p"));
    v.extend(client_frame(0x80, b"lo"));
    let (m, e) = feed(&mut s, &v);
    assert_eq!(e, None);
    assert_eq!(
        m,
        vec![
            Message::Ping(Bytes::from_static(b"p")),
            Message::text("Hello")
        ]
    );
    assert_eq!(drain_output(&mut s), [0x8a, 0x01, b'p']);
}

#[test]
fn close_handshake_initiated_by_peer() {
    let mut s = server();
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"bye");
    let (m, _) = feed(&mut s, &client_frame(0x88, &body));
    assert_eq!(
        m,
        vec![Message::Close(Some(CloseFrame::new(
            CloseCode::NORMAL,
            "bye"
        )))]
    );
    assert_eq!(drain_output(&mut s), [0x88, 0x02, 0x03, 0xe8]);
    assert!(s.session().is_finished());
    // No data after the Close; a Ping after the Close is not answered.
    assert_eq!(
        s.session_mut()
            .send(OpCode::Text, Bytes::new(), &SendHints::default()),
        Err(SendError::Closed)
    );
    assert_eq!(feed(&mut s, &client_frame(0x89, b"")), (vec![], None));
    assert!(drain_output(&mut s).is_empty());

    // An empty Close is reported as None (1005) and answered with an empty Close.
    let mut s = server();
    let (m, _) = feed(&mut s, &client_frame(0x88, b""));
    assert_eq!(m, vec![Message::Close(None)]);
    assert_eq!(drain_output(&mut s), [0x88, 0x00]);
}

#[test]
fn close_handshake_initiated_locally_and_timeout() {
    let cfg = Config::default().close_timeout(Duration::from_secs(2));
    let mut s = conn(Role::Server, &cfg);
    let t0 = Instant::now();
    s.session_mut()
        .close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "x")), t0)
        .unwrap();
    assert_eq!(drain_output(&mut s), [0x88, 0x03, 0x03, 0xe9, b'x']);
    assert_eq!(s.session().state(), CloseState::CloseSent);
    // No data after our Close, but incoming data is still processed.
    assert_eq!(
        s.session_mut()
            .send(OpCode::Binary, Bytes::new(), &SendHints::default()),
        Err(SendError::Closed)
    );
    let (m, _) = feed(&mut s, &client_frame(0x82, b"d"));
    assert_eq!(m, vec![Message::binary(&b"d"[..])]);
    assert_eq!(
        s.session().poll_timeout(),
        Some(t0 + Duration::from_secs(2))
    );
    s.session_mut()
        .handle_timeout(t0 + Duration::from_millis(1999));
    assert_eq!(s.session().state(), CloseState::CloseSent);
    s.session_mut().handle_timeout(t0 + Duration::from_secs(2));
    assert_eq!(s.session().state(), CloseState::Closed);

    // The peer's answer completes it without a reply.
    let mut s = server();
    s.session_mut().close(None, Instant::now()).unwrap();
    drain_output(&mut s);
    let (m, _) = feed(&mut s, &client_frame(0x88, &1000u16.to_be_bytes()));
    assert_eq!(m.len(), 1);
    assert!(drain_output(&mut s).is_empty());
    assert_eq!(s.session().state(), CloseState::Closed);
}

#[test]
fn unsendable_close_codes_are_refused() {
    for code in [1005u16, 1006, 1015, 999, 5000] {
        let mut s = server();
        let r = s
            .session_mut()
            .close(Some(CloseFrame::new(code.into(), "")), Instant::now());
        assert_eq!(r, Err(SendError::InvalidCloseCode(code)));
    }
    let mut s = server();
    assert_eq!(
        s.session_mut().ping(Bytes::from(vec![0u8; 126])),
        Err(SendError::ControlTooLong(126))
    );
    assert!(s.session_mut().ping(Bytes::from(vec![0u8; 125])).is_ok());
}

#[test]
fn fragmentation_on_send() {
    let cfg = Config::default().send_frame_size(4);
    let mut s = conn(Role::Server, &cfg);
    s.session_mut()
        .send(
            OpCode::Text,
            Bytes::from_static(b"abcdefghij"),
            &SendHints::default(),
        )
        .unwrap();
    assert_eq!(
        drain_output(&mut s),
        [
            0x01, 4, b'a', b'b', b'c', b'd', 0x00, 4, b'e', b'f', b'g', b'h', 0x80, 2, b'i', b'j'
        ]
    );
    // Streaming fragments, with misuse refused.
    let mut s = server();
    let h = SendHints::default();
    assert_eq!(
        s.session_mut()
            .send_fragment(OpCode::Continuation, Bytes::new(), true, &h),
        Err(SendError::FragmentOrder)
    );
    s.session_mut()
        .send_fragment(OpCode::Binary, Bytes::from_static(b"a"), false, &h)
        .unwrap();
    assert_eq!(
        s.session_mut().send(OpCode::Binary, Bytes::new(), &h),
        Err(SendError::FragmentOrder)
    );
    s.session_mut().ping(Bytes::new()).unwrap(); // control frames may interleave
    s.session_mut()
        .send_fragment(OpCode::Continuation, Bytes::from_static(b"b"), true, &h)
        .unwrap();
    assert_eq!(
        drain_output(&mut s),
        [0x02, 1, b'a', 0x89, 0, 0x80, 1, b'b']
    );
}

#[test]
fn frame_limit_at_and_past() {
    let cfg = Config::default().max_frame_size(100);
    let mut s = conn(Role::Server, &cfg);
    assert_eq!(feed(&mut s, &client_frame(0x82, &[1; 100])).0.len(), 1);
    let mut s = conn(Role::Server, &cfg);
    let (_, e) = feed(&mut s, &client_frame(0x82, &[1; 101]));
    assert_eq!(
        e,
        Some(ProtocolError::FrameTooLarge {
            size: 101,
            max: 100
        })
    );
    assert_eq!(e.unwrap().close_code(), CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn message_limit_at_and_past_across_fragments() {
    let cfg = Config::default().max_message_size(10);
    let mut s = conn(Role::Server, &cfg);
    let mut v = client_frame(0x02, &[1; 6]);
    v.extend(client_frame(0x80, &[2; 4]));
    assert_eq!(feed(&mut s, &v).0.len(), 1);
    let mut s = conn(Role::Server, &cfg);
    let mut v = client_frame(0x02, &[1; 6]);
    v.extend(client_frame(0x80, &[2; 5]));
    let (_, e) = feed(&mut s, &v);
    assert_eq!(e, Some(ProtocolError::MessageTooLarge { max: 10 }));
    assert_eq!(drain_output(&mut s), [0x88, 0x02, 0x03, 0xf1]);
}

#[test]
fn oversized_frame_is_refused_before_its_payload_arrives() {
    let cfg = Config::default().max_frame_size(1000);
    let mut s = conn(Role::Server, &cfg);
    // Only the header of a 2^40-byte frame: refused at once, nothing buffered.
    let mut v = vec![0x82, 0xff];
    v.extend_from_slice(&(1u64 << 40).to_be_bytes());
    v.extend_from_slice(&[1, 2, 3, 4]);
    let (_, e) = feed(&mut s, &v);
    assert!(matches!(e, Some(ProtocolError::FrameTooLarge { .. })));
}

#[test]
fn byte_at_a_time_input() {
    let mut s = server();
    let mut v = client_frame(0x01, "héllo ".as_bytes());
    v.extend(client_frame(0x89, b"ping"));
    v.extend(client_frame(0x80, "wörld".as_bytes()));
    let mut buf = BytesMut::new();
    let mut msgs = Vec::new();
    for b in v {
        buf.put_u8(b);
        while let Some(m) = s.handle_read(&mut buf).unwrap() {
            msgs.push(m);
        }
    }
    assert_eq!(
        msgs,
        vec![
            Message::Ping(Bytes::from_static(b"ping")),
            Message::text("héllo wörld")
        ]
    );
}

#[test]
fn session_runs_over_frames_without_a_socket() {
    // Two sessions joined frame to frame, as a multiplexer would join them.
    let cfg = Config::default();
    let mut a = Session::new(Role::Client, &cfg);
    let mut b = Session::new(Role::Server, &cfg);
    a.send(
        OpCode::Text,
        Bytes::from_static(b"over frames"),
        &SendHints::default(),
    )
    .unwrap();
    a.ping(Bytes::from_static(b"1")).unwrap();
    let mut got = Vec::new();
    while let Some(f) = a.poll_frame() {
        got.extend(b.handle_frame(f).unwrap());
    }
    assert_eq!(
        got,
        vec![
            Message::text("over frames"),
            Message::Ping(Bytes::from_static(b"1"))
        ]
    );
    let pong: Frame = b.poll_frame().unwrap();
    assert_eq!(
        a.handle_frame(pong).unwrap(),
        Some(Message::Pong(Bytes::from_static(b"1")))
    );
}

#[test]
fn invalid_utf8_fails_before_the_frame_is_complete() {
    // A 100-byte text frame whose first 20 bytes arrive with an invalid
    // sequence: the connection fails without waiting for the other 80.
    let mut payload = b"valid start ".to_vec();
    payload.extend_from_slice(b"\xce\xba\xed\xa0\x80"); // a surrogate
    payload.resize(100, b'x');
    let frame = client_frame(0x81, &payload);
    let mut s = server();
    let (_, err) = feed(&mut s, &frame[..8 + 20]);
    assert_eq!(err, Some(ProtocolError::InvalidUtf8));
    // Valid text arriving in pieces is delivered intact (each piece unmasked once).
    let text = "κόσμε ✓ ".repeat(20);
    let frame = client_frame(0x81, text.as_bytes());
    let mut s = server();
    let mut buf = BytesMut::new();
    let mut got = None;
    for piece in frame.chunks(7) {
        buf.extend_from_slice(piece);
        if let Some(m) = s.handle_read(&mut buf).unwrap() {
            got = Some(m);
        }
    }
    assert_eq!(got, Some(Message::text(text.as_str())));
}
