//! Two multiplexers joined in memory: channel lifecycle, quotas larger and
//! smaller than messages, fairness, per-channel permessage-deflate, and every
//! fault with its drop code.

use bytes::Bytes;
use std::sync::Arc;
use weft_core::ext::{ExtensionFactory, SendHints};
use weft_core::handshake::ServerOptions;
use weft_core::{CloseCode, CloseFrame, Message};
use weft_extensions::PerMessageDeflate;
use weft_mux::wire::{Block, ChannelId, DropChannel, FlowControl, NewChannelSlot};
use weft_mux::{
    ChannelEnd, DeltaBase, DropCode, FallbackRule, Multiplexer, MuxConfig, MuxError, MuxEvent,
};

fn physical_request() -> http::Request<()> {
    http::Request::builder()
        .uri("/")
        .header("host", "example")
        .header("origin", "http://o")
        .body(())
        .unwrap()
}

fn pair(config: MuxConfig) -> (Multiplexer, Multiplexer) {
    let client = Multiplexer::client(config.clone(), "example");
    let server = Multiplexer::server(config.clone(), &physical_request(), config.implicit_quota);
    (client, server)
}

/// Moves physical messages both ways until both sides are quiet; returns
/// how many moved.
fn pump(a: &mut Multiplexer, b: &mut Multiplexer) -> usize {
    let mut moved = 0;
    loop {
        let mut any = false;
        while let Some(m) = a.poll_transmit() {
            b.handle_message(Message::Binary(m));
            any = true;
            moved += 1;
        }
        while let Some(m) = b.poll_transmit() {
            a.handle_message(Message::Binary(m));
            any = true;
            moved += 1;
        }
        if !any {
            return moved;
        }
    }
}

fn events(m: &mut Multiplexer) -> Vec<MuxEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn ch(n: u32) -> ChannelId {
    ChannelId::new(n).unwrap()
}

/// Opens a channel from `c` and accepts it on `s` with `options`.
fn open(
    c: &mut Multiplexer,
    s: &mut Multiplexer,
    ext: Vec<Arc<dyn ExtensionFactory>>,
    options: &ServerOptions,
) -> ChannelId {
    let id = c.open_channel("/chat", &[], &[], ext).unwrap();
    pump(c, s);
    let req = events(s).into_iter().find_map(|e| match e {
        MuxEvent::ChannelRequested { channel, request } => Some((channel, request)),
        _ => None,
    });
    let (channel, request) = req.expect("a request");
    assert_eq!((channel, request.uri().path()), (id, "/chat"));
    s.accept_channel(channel, options).unwrap();
    pump(c, s);
    assert!(
        events(c)
            .iter()
            .any(|e| matches!(e, MuxEvent::ChannelOpened { channel, .. } if *channel == id))
    );
    id
}

fn drain(m: &mut Multiplexer, id: ChannelId) -> Vec<Message> {
    std::iter::from_fn(|| m.take_message(id)).collect()
}

#[test]
fn implicit_channel_and_start_up_blocks() {
    let (mut c, mut s) = pair(MuxConfig::default());
    // Server start-up: FlowControl(1, 256 KiB) and NewChannelSlot(64, 256 KiB).
    let first = s.poll_transmit().unwrap();
    assert_eq!(
        &first[..],
        &[
            0x00, 0x40, 0x01, 0x7f, 0, 0, 0, 0, 0, 4, 0, 0, 0x80, 0x40, 0x7f, 0, 0, 0, 0, 0, 4, 0,
            0
        ]
    );
    c.handle_message(Message::Binary(first));
    assert_eq!(c.slots(), 64);
    c.send(ch(1), Message::text("Hello"), &SendHints::default())
        .unwrap();
    let m = c.poll_transmit().unwrap();
    assert_eq!(&m[..], &[0x01, 0x81, b'H', b'e', b'l', b'l', b'o']);
    s.handle_message(Message::Binary(m));
    assert_eq!(drain(&mut s, ch(1)), vec![Message::text("Hello")]);
    // 6 bytes of quota used: 5 payload + 1 for the message start.
    assert_eq!(c.send_quota(ch(1)), Some((256 << 10) - 6));
}

#[test]
fn messages_larger_than_the_quota_arrive_whole() {
    let cfg = MuxConfig::default()
        .receive_window(4096)
        .slot_quota(4096)
        .implicit_quota(4096)
        .max_inner_frame(1000);
    let (mut c, mut s) = pair(cfg);
    pump(&mut c, &mut s);
    let id = open(&mut c, &mut s, vec![], &ServerOptions::default());
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    c.send(id, Message::binary(big.clone()), &SendHints::default())
        .unwrap();
    s.send(id, Message::text("from server"), &SendHints::default())
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..10_000 {
        if pump(&mut c, &mut s) == 0 {
            break;
        }
        got.extend(drain(&mut s, id));
    }
    got.extend(drain(&mut s, id));
    assert_eq!(got, vec![Message::binary(big)]);
    assert_eq!(drain(&mut c, id), vec![Message::text("from server")]);
}

#[test]
fn a_streaming_channel_does_not_starve_others() {
    let cfg = MuxConfig::default().max_inner_frame(4096);
    let (mut c, mut s) = pair(cfg);
    pump(&mut c, &mut s);
    let a = open(&mut c, &mut s, vec![], &ServerOptions::default());
    let b = open(&mut c, &mut s, vec![], &ServerOptions::default());
    c.send(
        a,
        Message::binary(vec![0u8; 1 << 20]),
        &SendHints::default(),
    )
    .unwrap();
    c.send(b, Message::text("small"), &SendHints::default())
        .unwrap();
    // The small message leaves within the first two inner frames.
    let mut position = None;
    for i in 0..4 {
        let m = c.poll_transmit().unwrap();
        if m[0] == b.get() as u8 {
            position = Some(i);
        }
        s.handle_message(Message::Binary(m));
    }
    assert!(position.is_some_and(|p| p <= 1), "{position:?}");
    assert_eq!(drain(&mut s, b), vec![Message::text("small")]);
}

#[test]
fn permessage_deflate_per_channel() {
    let (mut c, mut s) = pair(MuxConfig::default());
    pump(&mut c, &mut s);
    let options = ServerOptions::default().extension(rfc());
    let ext: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(rfc())];
    let id = c.open_channel("/z", &[], &[], ext).unwrap();
    pump(&mut c, &mut s);
    let _ = events(&mut s);
    s.accept_channel(id, &options).unwrap();
    pump(&mut c, &mut s);
    let opened = events(&mut c);
    assert!(
        opened.iter().any(
            |e| matches!(e, MuxEvent::ChannelOpened { extensions, .. } if extensions.len() == 1)
        )
    );
    let text = "compress me, compress me, compress me ".repeat(100);
    c.send(id, Message::text(text.as_str()), &SendHints::default())
        .unwrap();
    let m = c.poll_transmit().unwrap();
    assert_eq!(m[1] & 0x40, 0x40, "inner RSV1 set");
    assert!(m.len() < text.len() / 4);
    s.handle_message(Message::Binary(m));
    assert_eq!(drain(&mut s, id), vec![Message::text(text.as_str())]);
    // Channel 1 has no compression.
    c.send(ch(1), Message::text(text.as_str()), &SendHints::default())
        .unwrap();
    let m = c.poll_transmit().unwrap();
    assert_eq!(m[1] & 0x40, 0);
}

#[test]
fn logical_close_handshake_and_drop() {
    let (mut c, mut s) = pair(MuxConfig::default());
    pump(&mut c, &mut s);
    let id = open(&mut c, &mut s, vec![], &ServerOptions::default());
    c.send(
        id,
        Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "bye"))),
        &SendHints::default(),
    )
    .unwrap();
    pump(&mut c, &mut s);
    assert_eq!(
        drain(&mut s, id),
        vec![Message::Close(Some(CloseFrame::new(
            CloseCode::NORMAL,
            "bye"
        )))]
    );
    pump(&mut c, &mut s);
    assert!(events(&mut s).iter().any(|e| matches!(
        e,
        MuxEvent::ChannelClosed {
            end: ChannelEnd::Closed(_),
            ..
        }
    )));
    let _ = drain(&mut c, id);
    assert!(
        events(&mut c)
            .iter()
            .any(|e| matches!(e, MuxEvent::ChannelClosed { .. }))
    );
    assert!(!c.is_open(id) && !s.is_open(id));
    // Channel 1 is untouched.
    assert!(c.is_open(ch(1)) && s.is_open(ch(1)));

    // DropChannel is acknowledged with 3008.
    let id = open(&mut c, &mut s, vec![], &ServerOptions::default());
    c.drop_channel(id, DropCode::NORMAL);
    let m = c.poll_transmit().unwrap();
    s.handle_message(Message::Binary(m));
    assert!(!s.is_open(id));
    let ack = s.poll_transmit().unwrap();
    assert_eq!(&ack[..], &[0x00, 0x60, id.get() as u8, 0x02, 0x0b, 0xc0]);
}

#[test]
fn rejected_channel() {
    let (mut c, mut s) = pair(MuxConfig::default());
    pump(&mut c, &mut s);
    let id = c.open_channel("/nope", &[], &[], vec![]).unwrap();
    pump(&mut c, &mut s);
    let _ = events(&mut s);
    s.reject_channel(id, http::StatusCode::NOT_FOUND).unwrap();
    pump(&mut c, &mut s);
    assert!(
        events(&mut c)
            .iter()
            .any(|e| matches!(e, MuxEvent::ChannelRejected { status, .. } if *status == 404))
    );
    assert!(matches!(
        c.send(id, Message::text("x"), &SendHints::default()),
        Err(MuxError::UnknownChannel(_))
    ));
}

/// Feeds `payload` to a fresh server (after start-up) and returns the drop
/// code it failed with.
fn server_failure(payload: &[u8]) -> Option<DropCode> {
    let (mut c, mut s) = pair(MuxConfig::default());
    pump(&mut c, &mut s);
    s.handle_message(Message::Binary(Bytes::copy_from_slice(payload)));
    let failed = events(&mut s).into_iter().find_map(|e| match e {
        MuxEvent::Failed(code) => Some(code),
        _ => None,
    });
    if let Some(code) = failed {
        // DropChannel(0, code) goes out first.
        let m = s.poll_transmit().unwrap();
        assert_eq!(&m[..3], &[0x00, 0x60, 0x00]);
        assert_eq!(u16::from_be_bytes([m[4], m[5]]), code.0);
    }
    failed
}

#[test]
fn physical_faults_and_their_codes() {
    assert_eq!(server_failure(&[0x80]), Some(DropCode(2002)));
    assert_eq!(server_failure(&[0x80, 0x05, 0x81]), Some(DropCode(2002)));
    assert_eq!(server_failure(&[0x01]), Some(DropCode(2003)));
    assert_eq!(server_failure(&[0x00, 0xa0]), Some(DropCode(2004)));
    assert_eq!(
        server_failure(&[0x00, 0x60, 0x00, 0x01, 0x00]),
        Some(DropCode(2005))
    );
    assert_eq!(
        server_failure(&[0x00, 0x44, 0x01, 0x01]),
        Some(DropCode(2005))
    );
    // Wrong-role blocks at a server: AddChannelResponse, NewChannelSlot.
    assert_eq!(
        server_failure(&[0x00, 0x20, 0x02, 0x00]),
        Some(DropCode(2005))
    );
    assert_eq!(
        server_failure(&[0x00, 0x80, 0x01, 0x01]),
        Some(DropCode(2005))
    );
    // AddChannelRequest for channel 0 or 1 (already open).
    assert_eq!(
        server_failure(&[0x00, 0x00, 0x00, 0x00]),
        Some(DropCode(2006))
    );
    assert_eq!(
        server_failure(&[0x00, 0x00, 0x01, 0x00]),
        Some(DropCode(2006))
    );
    assert_eq!(
        server_failure(&[0x00, 0x02, 0x02, 0x00]),
        Some(DropCode(2010))
    );
    // Text messages.
    let (mut c, mut s) = pair(MuxConfig::default());
    pump(&mut c, &mut s);
    s.handle_message(Message::text("no"));
    assert!(
        events(&mut s)
            .iter()
            .any(|e| matches!(e, MuxEvent::Failed(DropCode(2001))))
    );
    // Wrong role at a client: AddChannelRequest.
    let mut c = Multiplexer::client(MuxConfig::default(), "h");
    c.handle_message(Message::Binary(Bytes::from_static(&[
        0x00, 0x00, 0x02, 0x00,
    ])));
    assert!(
        events(&mut c)
            .iter()
            .any(|e| matches!(e, MuxEvent::Failed(DropCode(2005))))
    );
    // Frames for unknown channels are ignored.
    assert_eq!(server_failure(&[0x09, 0x81, b'x']), None);
}

#[test]
fn slot_violation_drops_only_that_channel() {
    let (mut c, mut s) = pair(MuxConfig::default().slots(1));
    pump(&mut c, &mut s);
    let first = c.open_channel("/a", &[], &[], vec![]).unwrap();
    assert!(matches!(
        c.open_channel("/b", &[], &[], vec![]),
        Err(MuxError::NoSlot)
    ));
    pump(&mut c, &mut s);
    let _ = events(&mut s);
    // A client ignoring the slot count: a request for channel 9.
    let mut msg = vec![0x00];
    Block::AddChannelRequest(weft_mux::wire::AddChannelRequest {
        channel: ch(9),
        encoding: weft_mux::wire::Encoding::Identity,
        handshake: Bytes::from_static(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
    })
    .encode(&mut msg);
    s.handle_message(Message::Binary(msg.into()));
    let m = s.poll_transmit().unwrap();
    assert_eq!(&m[..], &[0x00, 0x60, 0x09, 0x02, 0x07, 0xd7]);
    assert!(s.failure().is_none());
    s.accept_channel(first, &ServerOptions::default()).unwrap();
}

#[test]
fn quota_violation_and_overflow_drop_the_channel() {
    let (mut c, mut s) = pair(MuxConfig::default().receive_window(10));
    pump(&mut c, &mut s);
    // 20 bytes on channel 1 where 10 were granted (client quota ignored).
    let mut m = vec![0x01, 0x82];
    m.extend_from_slice(&[0u8; 19]);
    s.handle_message(Message::Binary(m.into()));
    assert!(events(&mut s).iter().any(|e| matches!(
        e,
        MuxEvent::ChannelClosed {
            end: ChannelEnd::Dropped(DropCode(3005)),
            ..
        }
    )));
    assert!(s.failure().is_none());

    let (mut c, mut s) = pair(MuxConfig::default());
    pump(&mut c, &mut s);
    let mut msg = vec![0x00];
    Block::FlowControl(FlowControl {
        channel: ch(1),
        quota: (1 << 63) - 1,
    })
    .encode(&mut msg);
    s.handle_message(Message::Binary(msg.into()));
    assert!(events(&mut s).iter().any(|e| matches!(
        e,
        MuxEvent::ChannelClosed {
            end: ChannelEnd::Dropped(DropCode(3006)),
            ..
        }
    )));
}

#[test]
fn bad_fragmentation_drops_only_that_channel() {
    let (mut c, mut s) = pair(MuxConfig::default());
    pump(&mut c, &mut s);
    let other = open(&mut c, &mut s, vec![], &ServerOptions::default());
    // Continuation without a message on channel 1.
    s.handle_message(Message::Binary(Bytes::from_static(&[0x01, 0x80, b'x'])));
    assert!(events(&mut s).iter().any(|e| matches!(
        e,
        MuxEvent::ChannelClosed {
            end: ChannelEnd::Dropped(DropCode(3009)),
            ..
        }
    )));
    assert!(!s.is_open(ch(1)) && s.is_open(other));
}

#[test]
fn fragmented_inner_control_frame_is_reassembled() {
    let (mut c, mut s) = pair(MuxConfig::default());
    pump(&mut c, &mut s);
    for m in [
        &[0x01, 0x01, b'a'][..],
        &[0x01, 0x09, b'p'],
        &[0x01, 0x00, b'q'],
        &[0x01, 0x80, b'c', b'd'],
        &[0x01, 0x80, b'b'],
    ] {
        s.handle_message(Message::Binary(Bytes::copy_from_slice(m)));
    }
    let got = drain(&mut s, ch(1));
    assert_eq!(
        got,
        vec![
            Message::Ping(Bytes::from_static(b"pqcd")),
            Message::text("ab")
        ]
    );
    // The Pong goes out whole.
    let pong = std::iter::from_fn(|| s.poll_transmit())
        .find(|m| m[0] == 1)
        .unwrap();
    assert_eq!(&pong[..], &[0x01, 0x8a, b'p', b'q', b'c', b'd']);
}

#[test]
fn malformed_encapsulated_request_is_refused_with_400() {
    let (mut c, mut s) = pair(MuxConfig::default());
    pump(&mut c, &mut s);
    let mut msg = vec![0x00];
    Block::AddChannelRequest(weft_mux::wire::AddChannelRequest {
        channel: ch(2),
        encoding: weft_mux::wire::Encoding::Identity,
        handshake: Bytes::from_static(b"not http"),
    })
    .encode(&mut msg);
    s.handle_message(Message::Binary(msg.into()));
    let m = s.poll_transmit().unwrap();
    assert_eq!(&m[..3], &[0x00, 0x30, 0x02]);
    assert!(String::from_utf8_lossy(&m).contains("400"));
}

#[test]
fn fallback_flag_both_readings() {
    let slot = |slots, quota| {
        let mut msg = vec![0x00];
        Block::NewChannelSlot(NewChannelSlot {
            slots,
            quota,
            fallback: true,
        })
        .encode(&mut msg);
        Message::Binary(msg.into())
    };
    let mut c = Multiplexer::client(MuxConfig::default(), "h");
    c.handle_message(slot(0, 0));
    assert!(c.failure().is_none());
    assert_eq!(c.slots(), 0);
    c.handle_message(slot(1, 1));
    assert_eq!(c.failure(), Some(DropCode(2005)));
    let cfg = MuxConfig::default().fallback_rule(FallbackRule::NonZeroGrant);
    let mut c = Multiplexer::client(cfg.clone(), "h");
    c.handle_message(slot(2, 100));
    assert_eq!((c.failure(), c.slots()), (None, 2));
    let mut c = Multiplexer::client(cfg, "h");
    c.handle_message(slot(0, 0));
    assert_eq!(c.failure(), Some(DropCode(2005)));
}

#[test]
fn slot_overflow() {
    let mut c = Multiplexer::client(MuxConfig::default().max_slots(100), "h");
    let mut msg = vec![0x00];
    Block::NewChannelSlot(NewChannelSlot {
        slots: 101,
        quota: 1,
        fallback: false,
    })
    .encode(&mut msg);
    c.handle_message(Message::Binary(msg.into()));
    assert_eq!(c.failure(), Some(DropCode(2008)));
}

#[test]
fn delta_base_both_readings() {
    for rule in [DeltaBase::FollowIdentity, DeltaBase::Physical] {
        let (mut c, mut s) = pair(MuxConfig::default().delta_base(rule));
        pump(&mut c, &mut s);
        let requests = [
            (
                2u32,
                weft_mux::wire::Encoding::Identity,
                &b"GET /a HTTP/1.1\r\nHost: h\r\nCookie: new\r\n\r\n"[..],
            ),
            (
                3,
                weft_mux::wire::Encoding::Delta,
                b"GET /b HTTP/1.1\r\n\r\n",
            ),
        ];
        let mut seen = Vec::new();
        for (id, enc, text) in requests {
            let mut msg = vec![0x00];
            Block::AddChannelRequest(weft_mux::wire::AddChannelRequest {
                channel: ch(id),
                encoding: enc,
                handshake: Bytes::from_static(text),
            })
            .encode(&mut msg);
            s.handle_message(Message::Binary(msg.into()));
            for e in events(&mut s) {
                if let MuxEvent::ChannelRequested { request, .. } = e {
                    seen.push(
                        request
                            .headers()
                            .get("cookie")
                            .map(|v| v.to_str().unwrap().to_owned()),
                    );
                }
            }
        }
        let base_origin_kept = match rule {
            DeltaBase::FollowIdentity => Some("new".to_owned()),
            DeltaBase::Physical => None,
        };
        assert_eq!(
            seen,
            vec![Some("new".to_owned()), base_origin_kept],
            "{rule:?}"
        );
    }
}

#[test]
fn flow_control_waits_for_other_output_until_half_the_window_is_used() {
    let cfg = MuxConfig::default()
        .receive_window(4096)
        .implicit_quota(4096);
    let (mut c, mut s) = pair(cfg);
    pump(&mut c, &mut s);
    assert_eq!(c.send_quota(ch(1)), Some(4096));
    let send = |c: &mut Multiplexer, s: &mut Multiplexer, len: usize| {
        c.send(
            ch(1),
            Message::binary(vec![7u8; len]),
            &SendHints::default(),
        )
        .unwrap();
        let m = c.poll_transmit().unwrap();
        s.handle_message(Message::Binary(m));
        assert_eq!(drain(s, ch(1)).len(), 1);
    };
    // 1500 of 4096 (a quarter to a half): deferred, nothing to send now...
    send(&mut c, &mut s, 1499);
    assert!(!s.has_output());
    // ...but the next transmission carries it.
    let fc = s.poll_transmit().expect("the deferred FlowControl");
    let mut expected = vec![0x00];
    Block::FlowControl(FlowControl {
        channel: ch(1),
        quota: 1500,
    })
    .encode(&mut expected);
    assert_eq!(&fc[..], &expected[..]);
    assert!(s.poll_transmit().is_none());
    c.handle_message(Message::Binary(fc));
    assert_eq!(c.send_quota(ch(1)), Some(4096));
    // Past half the window it is due at once.
    send(&mut c, &mut s, 2100);
    assert!(s.has_output());
    pump(&mut c, &mut s);
    assert_eq!(c.send_quota(ch(1)), Some(4096));
    // Below a quarter nothing is returned yet.
    send(&mut c, &mut s, 99);
    assert!(!s.has_output());
    assert!(s.poll_transmit().is_none());
    assert_eq!(c.send_quota(ch(1)), Some(4096 - 100));
}

#[test]
fn peer_ignoring_quota_cannot_grow_memory() {
    // The client never reads; the server keeps sending. Buffered data stays
    // bounded by the per-channel limit plus one window.
    let cfg = MuxConfig::default()
        .receive_window(8192)
        .implicit_quota(8192)
        .max_buffered_per_channel(32 << 10);
    let (mut c, mut s) = pair(cfg);
    pump(&mut c, &mut s);
    for _ in 0..200 {
        let _ = s.send(
            ch(1),
            Message::binary(vec![1u8; 4096]),
            &SendHints::default(),
        );
    }
    pump(&mut c, &mut s);
    let buffered: usize = drain(&mut c, ch(1)).iter().map(Message::len).sum();
    assert!(buffered <= (32 << 10) + 8192 + 4096, "{buffered}");
    // Reading resumes the flow.
    let before = buffered;
    pump(&mut c, &mut s);
    let more: usize = drain(&mut c, ch(1)).iter().map(Message::len).sum();
    assert!(more > 0 && before > 0);
}

#[test]
fn drop_channel_zero_from_peer_fails_everything() {
    let (mut c, mut s) = pair(MuxConfig::default());
    pump(&mut c, &mut s);
    let mut msg = vec![0x00];
    Block::DropChannel(DropChannel {
        channel: ChannelId::CONTROL,
        reason: Some((DropCode(2000), "bye".into())),
    })
    .encode(&mut msg);
    c.handle_message(Message::Binary(msg.into()));
    assert_eq!(c.failure(), Some(DropCode(2000)));
    assert!(matches!(
        c.send(ch(1), Message::text("x"), &SendHints::default()),
        Err(MuxError::Failed(_))
    ));
}

#[test]
fn random_physical_messages_never_panic() {
    // Seeded: random and mutated messages into both roles.
    let mut rng = test_support::rng(0x9e37_79b9_7f4a_7c15);
    let mut next = move || test_support::RngCore::next_u64(&mut rng);
    let seeds: [&[u8]; 6] = [
        &[0x00, 0x00, 0x02, 0x1c],
        &[0x00, 0x40, 0x01, 0x7e, 0x20, 0x00],
        &[0x01, 0x81, b'H', b'i'],
        &[0x00, 0x60, 0x01, 0x00],
        &[0x00, 0x80, 0x40, 0x7e, 0x20, 0x00],
        &[0x00, 0x20, 0x02, 0x04, b'H', b'T', b'T', b'P'],
    ];
    for round in 0..3000 {
        let (mut c, mut s) = pair(MuxConfig::default());
        pump(&mut c, &mut s);
        for _ in 0..4 {
            let mut m = seeds[(next() % seeds.len() as u64) as usize].to_vec();
            for _ in 0..(next() % 4) {
                let i = (next() as usize) % (m.len() + 1);
                if i < m.len() {
                    m[i] = next() as u8;
                } else {
                    m.push(next() as u8);
                }
            }
            let target = if round % 2 == 0 { &mut s } else { &mut c };
            target.handle_message(Message::Binary(Bytes::from(m)));
            while target.poll_transmit().is_some() {}
            let _ = events(target);
        }
    }
}

/// permessage-deflate with the RFC's default 32 KiB windows (the crate's
/// default preset uses 8 KiB windows), so answers and vectors are the RFC's.
fn rfc() -> PerMessageDeflate {
    PerMessageDeflate::new()
        .server_max_window_bits(weft_extensions::WindowBits::MAX)
        .client_max_window_bits(weft_extensions::WindowBits::MAX)
}

/// Opens a channel from `c` with `headers` and `protocols` and has `s`
/// accept it with `options`; returns the server's answer.
fn request_with(
    c: &mut Multiplexer,
    s: &mut Multiplexer,
    headers: &[(&str, &str)],
    protocols: &[&str],
    options: &ServerOptions,
) -> (ChannelId, Result<weft_mux::ChannelAccepted, MuxError>) {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let protocols: Vec<String> = protocols.iter().map(|p| p.to_string()).collect();
    let id = c
        .open_channel("/chat", &headers, &protocols, vec![])
        .unwrap();
    pump(c, s);
    assert!(
        events(s)
            .iter()
            .any(|e| matches!(e, MuxEvent::ChannelRequested { channel, .. } if *channel == id))
    );
    (id, s.accept_channel(id, options))
}

#[test]
fn malformed_offers_drop_the_channel_with_2009() {
    for (name, value) in [
        ("Sec-WebSocket-Extensions", "permessage-deflate;;"),
        ("Sec-WebSocket-Extensions", "x; a=\"unterminated"),
        ("Sec-WebSocket-Protocol", "two words"),
    ] {
        let (mut c, mut s) = pair(MuxConfig::default());
        pump(&mut c, &mut s);
        let options = ServerOptions::default().extension(rfc());
        let (id, r) = request_with(&mut c, &mut s, &[(name, value)], &[], &options);
        assert!(matches!(r, Err(MuxError::Handshake(_))), "{value}: {r:?}");
        // DropChannel(id, 2009) on the control channel, nothing else.
        let m = s.poll_transmit().unwrap();
        assert_eq!(
            &m[..],
            &[0x00, 0x60, id.get() as u8, 0x02, 0x07, 0xd9],
            "{value}"
        );
        assert!(!s.is_open(id) && s.failure().is_none());
        c.handle_message(Message::Binary(m));
        assert!(
            events(&mut c).iter().any(|e| matches!(
                e,
                MuxEvent::ChannelClosed {
                    channel,
                    end: ChannelEnd::DroppedByPeer(Some((DropCode(2009), _))),
                } if *channel == id
            )),
            "{value}"
        );
        // Only that channel: channel 1 and new channels still work.
        assert!(c.is_open(ch(1)) && s.is_open(ch(1)));
        pump(&mut c, &mut s);
        open(&mut c, &mut s, vec![], &ServerOptions::default());
    }
}

#[test]
fn the_origin_check_applies_to_logical_channels() {
    let (mut c, mut s) = pair(MuxConfig::default());
    pump(&mut c, &mut s);
    let options = ServerOptions::default().origin_check(|o| o == Some("http://o"));
    // The request's own Origin is checked, not the physical one.
    let (id, r) = request_with(
        &mut c,
        &mut s,
        &[("Origin", "http://evil.example")],
        &[],
        &options,
    );
    assert!(
        matches!(
            r,
            Err(MuxError::Handshake(weft_core::handshake::HandshakeError::OriginRejected(Some(ref o)))) if o == "http://evil.example"
        ),
        "{r:?}"
    );
    pump(&mut c, &mut s);
    assert!(events(&mut c).iter().any(|e| matches!(
        e,
        MuxEvent::ChannelRejected { channel, status } if *channel == id && *status == 403
    )));
    assert!(!c.is_open(id) && !s.is_open(id));
    // The allowed origin opens.
    let (id, r) = request_with(&mut c, &mut s, &[("Origin", "http://o")], &[], &options);
    r.unwrap();
    pump(&mut c, &mut s);
    assert!(c.is_open(id) && s.is_open(id));
    // No Origin at all is what the check says about `None`: refused here.
    let (_, r) = request_with(&mut c, &mut s, &[], &[], &options);
    assert!(matches!(r, Err(MuxError::Handshake(_))), "{r:?}");
}

#[test]
fn subprotocol_selection_matches_the_plain_server() {
    let options = ServerOptions::default().protocols(&["b", "c"]);
    for offer in [&["a", "c", "b"][..], &["b", "c"], &["a"], &[]] {
        let (mut c, mut s) = pair(MuxConfig::default());
        pump(&mut c, &mut s);
        let (id, r) = request_with(&mut c, &mut s, &[], offer, &options);
        let channel = r.unwrap().protocol;
        pump(&mut c, &mut s);
        let opened = events(&mut c).into_iter().find_map(|e| match e {
            MuxEvent::ChannelOpened {
                channel, protocol, ..
            } if channel == id => Some(protocol),
            _ => None,
        });
        // The plain server, same options, same offer.
        let mut plain = http::Request::get("/chat")
            .header("host", "example")
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13");
        if !offer.is_empty() {
            plain = plain.header("sec-websocket-protocol", offer.join(", "));
        }
        let plain =
            weft_core::handshake::server::accept_request(&plain.body(()).unwrap(), &options)
                .unwrap()
                .protocol;
        assert_eq!(channel, plain, "{offer:?}");
        assert_eq!(opened, Some(plain.clone()), "{offer:?}");
        if offer == ["a", "c", "b"] {
            // The client's order decides, as in the plain server.
            assert_eq!(plain.as_deref(), Some("c"));
        }
    }
}

#[test]
fn response_headers_apply_to_logical_channels() {
    let (mut c, mut s) = pair(MuxConfig::default());
    pump(&mut c, &mut s);
    // The callback sees the logical request (path /chat), not the physical one.
    let options = ServerOptions::default().response_headers(|req, headers| {
        headers.insert(
            "x-channel-path",
            http::HeaderValue::from_str(req.uri().path()).unwrap(),
        );
    });
    let (id, r) = request_with(&mut c, &mut s, &[], &[], &options);
    r.unwrap();
    let m = s.poll_transmit().expect("an AddChannelResponse");
    let text = String::from_utf8_lossy(&m);
    assert!(
        text.contains("x-channel-path: /chat\r\n"),
        "AddChannelResponse: {text:?}"
    );
    c.handle_message(Message::Binary(m));
    pump(&mut c, &mut s);
    assert!(c.is_open(id) && s.is_open(id));
    // Without the callback the response carries no extra header.
    let (_, r) = request_with(&mut c, &mut s, &[], &[], &ServerOptions::default());
    r.unwrap();
    let m = s.poll_transmit().expect("an AddChannelResponse");
    assert!(!String::from_utf8_lossy(&m).contains("x-channel-path"));
}

#[test]
fn transmit_parts_share_the_payload_and_join_to_poll_transmit() {
    let config = MuxConfig::default().max_inner_frame(100 << 10);
    let (mut c, mut s) = pair(config.clone());
    pump(&mut c, &mut s);
    let id = open(&mut c, &mut s, Vec::new(), &ServerOptions::default());
    pump(&mut c, &mut s);
    let body = Bytes::from((0..70_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    let at = body.as_ptr();
    s.send(id, Message::Binary(body.clone()), &SendHints::default())
        .unwrap();
    // Deferred control blocks may go first.
    let t = loop {
        let t = s.poll_transmit_parts().expect("a frame");
        if t.prefix() != [0] {
            break t;
        }
        let joined = [t.prefix(), &t.payload[..]].concat();
        c.handle_message(Message::Binary(Bytes::from(joined)));
    };
    // Channel ID, then FIN + opcode 2: the inner header of a whole binary
    // message, in front of the channel's own payload, shared, not copied.
    let mut head = Vec::new();
    id_bytes(id, &mut head);
    head.push(0x82);
    assert_eq!(t.prefix(), &head[..]);
    assert_eq!(t.payload.as_ptr(), at, "the payload is not copied");
    assert_eq!(t.len(), head.len() + body.len());
    // The joined message is what poll_transmit would have sent: the peer
    // reads the message.
    let joined = [t.prefix(), &t.payload[..]].concat();
    c.handle_message(Message::Binary(Bytes::from(joined)));
    assert_eq!(c.take_message(id), Some(Message::Binary(body)));
    // Control blocks come out as the control channel's ID and the blocks.
    let (_, mut s2) = pair(config);
    let t = s2.poll_transmit_parts().expect("start-up control blocks");
    assert_eq!(t.prefix(), &[0]);
    assert!(!t.payload.is_empty());
}

fn id_bytes(id: ChannelId, out: &mut Vec<u8>) {
    id.encode(out);
}
