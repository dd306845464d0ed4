//! Variant A (the reconstructed google-mux-03 generation) between two
//! multiplexers joined in memory, frame by frame: channel lifecycle with
//! full encapsulated handshakes, fragments of several channels interleaved
//! at the physical level, logical control frames in
//! EncapsulatedControlFrame blocks, the buffer limits that replace flow
//! control, every fault with its drop code, and variant A and B endpoints
//! failing on each other's bytes instead of misreading them.

use bytes::Bytes;
use weft_core::ext::SendHints;
use weft_core::handshake::ServerOptions;
use weft_core::{CloseCode, CloseFrame, Frame, Message, OpCode, Rsv};
use weft_mux::wire::variant_a::{BlockA, DropChannelA, PhysicalA, decode_physical_a};
use weft_mux::wire::{AddChannelRequest, ChannelId, Encoding};
use weft_mux::{ChannelEnd, DropCode, Multiplexer, MuxConfig, MuxError, MuxEvent, MuxVariant};

fn config() -> MuxConfig {
    MuxConfig::default().variant(MuxVariant::A)
}

fn physical_request() -> http::Request<()> {
    http::Request::builder()
        .uri("/")
        .header("host", "example")
        .body(())
        .unwrap()
}

fn pair(config: MuxConfig) -> (Multiplexer, Multiplexer) {
    let client = Multiplexer::client(config.clone(), "example");
    let server = Multiplexer::server(config, &physical_request(), 0);
    (client, server)
}

/// Moves physical frames both ways until both sides are quiet; returns
/// every frame moved, in order, with the side that sent it ('c' or 's').
fn pump(c: &mut Multiplexer, s: &mut Multiplexer) -> Vec<(char, Frame)> {
    let mut moved = Vec::new();
    loop {
        let mut any = false;
        while let Some(f) = c.poll_transmit_frame() {
            s.handle_frame(f.clone());
            moved.push(('c', f));
            any = true;
        }
        while let Some(f) = s.poll_transmit_frame() {
            c.handle_frame(f.clone());
            moved.push(('s', f));
            any = true;
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

fn drain(m: &mut Multiplexer, id: ChannelId) -> Vec<Message> {
    std::iter::from_fn(|| m.take_message(id)).collect()
}

fn blocks(f: &Frame) -> Vec<BlockA> {
    match decode_physical_a(f.fin, f.rsv, f.opcode, &f.payload, true).unwrap() {
        PhysicalA::Control(b) => b,
        other => panic!("not a control frame: {other:?}"),
    }
}

fn send(m: &mut Multiplexer, id: ChannelId, msg: Message) {
    m.send(id, msg, &SendHints::default()).unwrap();
}

/// Opens a channel from `c` and accepts it on `s`.
fn open(c: &mut Multiplexer, s: &mut Multiplexer) -> ChannelId {
    let id = c.open_channel("/chat", &[], &[], vec![]).unwrap();
    pump(c, s);
    let channel = events(s)
        .into_iter()
        .find_map(|e| match e {
            MuxEvent::ChannelRequested { channel, .. } => Some(channel),
            _ => None,
        })
        .expect("a request");
    s.accept_channel(channel, &ServerOptions::default())
        .unwrap();
    pump(c, s);
    assert!(
        events(c)
            .iter()
            .any(|e| matches!(e, MuxEvent::ChannelOpened { channel, .. } if *channel == id))
    );
    id
}

#[test]
fn variant_a_starts_silent_and_carries_channel_1_in_frames_of_its_own() {
    let (mut c, mut s) = pair(config());
    // No FlowControl, no NewChannelSlot: variant A has neither.
    assert!(s.poll_transmit_frame().is_none());
    assert!(c.poll_transmit_frame().is_none());
    send(&mut s, ch(1), Message::text("Hello"));
    let f = s.poll_transmit_frame().unwrap();
    // The §3.3 frame `81 06 01 48 65 6c 6c 6f`: the logical opcode is the physical one.
    assert_eq!(
        (f.fin, f.opcode, &f.payload[..]),
        (true, OpCode::Text, &b"\x01Hello"[..])
    );
    c.handle_frame(f);
    send(&mut c, ch(1), Message::binary(vec![7u8; 3]));
    pump(&mut c, &mut s);
    assert_eq!(drain(&mut c, ch(1)), vec![Message::text("Hello")]);
    assert_eq!(drain(&mut s, ch(1)), vec![Message::binary(vec![7u8; 3])]);
}

#[test]
fn variant_a_opens_channels_with_full_handshakes() {
    let (mut c, mut s) = pair(config());
    let id = c.open_channel("/chat", &[], &[], vec![]).unwrap();
    let f = c.poll_transmit_frame().unwrap();
    assert!(c.poll_transmit_frame().is_none());
    // One AddChannelRequest and no FlowControl after it.
    let [BlockA::AddChannelRequest(req)] = &blocks(&f)[..] else {
        panic!("{:?}", blocks(&f));
    };
    assert_eq!((req.channel, req.encoding), (id, Encoding::Identity));
    let text = String::from_utf8(req.handshake.to_vec()).unwrap();
    assert!(text.starts_with("GET /chat HTTP/1.1\r\n"), "{text}");
    for h in [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: ",
        "Sec-WebSocket-Version: 13",
        "Host: example",
    ] {
        assert!(text.contains(h), "{h} missing in {text}");
    }
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap()
        .to_owned();
    s.handle_frame(f);
    let [MuxEvent::ChannelRequested { channel, request }] = &events(&mut s)[..] else {
        panic!("no request");
    };
    assert_eq!((*channel, request.uri().path()), (id, "/chat"));
    s.accept_channel(id, &ServerOptions::default()).unwrap();
    let f = s.poll_transmit_frame().unwrap();
    let [BlockA::AddChannelResponse(resp)] = &blocks(&f)[..] else {
        panic!("{:?}", blocks(&f));
    };
    assert!(!resp.rejected);
    let text = String::from_utf8(resp.handshake.to_vec()).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    let accept = weft_core::handshake::accept_key(&key);
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{text}");
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{text}");
    assert!(text.contains(&format!(": {accept}\r\n")), "{text}");
    assert!(lower.contains("sec-websocket-accept: "), "{text}");
    c.handle_frame(f);
    assert!(
        events(&mut c)
            .iter()
            .any(|e| matches!(e, MuxEvent::ChannelOpened { .. }))
    );
    send(&mut c, id, Message::text("on channel 2"));
    pump(&mut c, &mut s);
    assert_eq!(drain(&mut s, id), vec![Message::text("on channel 2")]);
    // No quota, no slots: many channels open without a grant.
    for _ in 0..100 {
        open(&mut c, &mut s);
    }
    assert_eq!(s.channel_count(), 102);
}

#[test]
fn variant_a_response_with_a_wrong_accept_drops_the_channel() {
    let (mut c, mut s) = pair(config());
    let id = c.open_channel("/chat", &[], &[], vec![]).unwrap();
    let _ = c.poll_transmit_frame().unwrap();
    let mut payload = vec![0];
    BlockA::AddChannelResponse(weft_mux::wire::AddChannelResponse {
        channel: id,
        rejected: false,
        encoding: Encoding::Identity,
        handshake: Bytes::from_static(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
        ),
    })
    .encode(&mut payload);
    c.handle_frame(Frame::new(OpCode::Binary, payload));
    assert!(events(&mut c).iter().any(|e| matches!(
        e,
        MuxEvent::ChannelClosed { channel, end: ChannelEnd::Dropped(DropCode(3000)) } if *channel == id
    )));
    let f = c.poll_transmit_frame().unwrap();
    assert!(matches!(
        &blocks(&f)[..],
        [BlockA::DropChannel(DropChannelA {
            mux_error: false,
            ..
        })]
    ));
    drop(s.poll_transmit_frame());
}

#[test]
fn variant_a_fragments_of_channels_interleave_at_the_physical_level() {
    let (mut c, mut s) = pair(config().max_inner_frame(1000));
    let a = open(&mut c, &mut s);
    let b = open(&mut c, &mut s);
    let big =
        |seed: u8| -> Vec<u8> { (0..5000u32).map(|i| (i as u8).wrapping_mul(seed)).collect() };
    send(&mut c, a, Message::binary(big(3)));
    send(&mut c, b, Message::binary(big(5)));
    send(&mut c, ch(1), Message::text("x".repeat(2500)));
    let frames = pump(&mut c, &mut s);
    let data: Vec<(u8, bool, OpCode)> = frames
        .iter()
        .filter(|(side, f)| *side == 'c' && f.payload[0] != 0)
        .map(|(_, f)| (f.payload[0], f.fin, f.opcode))
        .collect();
    // Round robin: the first frame of each channel, then their continuations.
    assert_eq!(
        &data[..6],
        &[
            (a.get() as u8, false, OpCode::Binary),
            (b.get() as u8, false, OpCode::Binary),
            (1, false, OpCode::Text),
            (a.get() as u8, false, OpCode::Continuation),
            (b.get() as u8, false, OpCode::Continuation),
            (1, false, OpCode::Continuation),
        ]
    );
    assert_eq!(data.len(), 5 + 5 + 3);
    assert_eq!(data.iter().filter(|d| d.1).count(), 3);
    assert!(frames.iter().all(|(_, f)| f.payload.len() <= 1001));
    assert_eq!(drain(&mut s, a), vec![Message::binary(big(3))]);
    assert_eq!(drain(&mut s, b), vec![Message::binary(big(5))]);
    assert_eq!(drain(&mut s, ch(1)), vec![Message::text("x".repeat(2500))]);
}

#[test]
fn variant_a_logical_control_frames_travel_in_encapsulated_control_frames() {
    let (mut c, mut s) = pair(config());
    let id = open(&mut c, &mut s);
    send(&mut c, id, Message::Ping(Bytes::from_static(b"p1")));
    let f = c.poll_transmit_frame().unwrap();
    assert_eq!((f.opcode, f.fin), (OpCode::Binary, true));
    // `00` (control channel), channel, `80`, the inner Ping `89 02 'p1'`.
    assert_eq!(
        &f.payload[..],
        &[0x00, id.get() as u8, 0x80, 0x89, 0x02, b'p', b'1']
    );
    s.handle_frame(f);
    assert_eq!(
        drain(&mut s, id),
        vec![Message::Ping(Bytes::from_static(b"p1"))]
    );
    let pong = s.poll_transmit_frame().unwrap();
    assert_eq!(
        &pong.payload[..],
        &[0x00, id.get() as u8, 0x80, 0x8a, 0x02, b'p', b'1']
    );
    c.handle_frame(pong);
    // The closing handshake of one channel leaves the others open.
    send(
        &mut c,
        id,
        Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "bye"))),
    );
    let f = c.poll_transmit_frame().unwrap();
    assert_eq!(
        &f.payload[..],
        &[
            0x00,
            id.get() as u8,
            0x80,
            0x88,
            0x05,
            0x03,
            0xe8,
            b'b',
            b'y',
            b'e'
        ]
    );
    s.handle_frame(f);
    pump(&mut c, &mut s);
    let _ = drain(&mut s, id);
    let _ = drain(&mut c, id);
    pump(&mut c, &mut s);
    for m in [&mut c, &mut s] {
        assert!(events(m).iter().any(|e| matches!(
            e,
            MuxEvent::ChannelClosed { channel, end: ChannelEnd::Closed(_) } if *channel == id
        )));
        assert!(!m.is_open(id) && m.is_open(ch(1)));
    }
}

#[test]
fn variant_a_drop_channel_is_not_acknowledged() {
    let (mut c, mut s) = pair(config());
    let id = open(&mut c, &mut s);
    c.drop_channel(id, DropCode::NORMAL);
    let f = c.poll_transmit_frame().unwrap();
    // DropChannel, M = 0, reason "1000" (weft's convention).
    assert_eq!(
        &f.payload[..],
        &[0x00, id.get() as u8, 0x60, 0x04, b'1', b'0', b'0', b'0']
    );
    s.handle_frame(f);
    assert!(events(&mut s).iter().any(|e| matches!(
        e,
        MuxEvent::ChannelClosed {
            end: ChannelEnd::DroppedByPeer(Some((DropCode(1000), _))),
            ..
        }
    )));
    assert!(s.poll_transmit_frame().is_none());
    assert!(!s.is_open(id));
}

/// Feeds one physical frame to a fresh server and returns the drop code it
/// failed with, after checking it sent DropChannel(0, M = 1, "<code>").
fn server_failure(fin: bool, rsv: Rsv, opcode: OpCode, payload: &[u8]) -> Option<u16> {
    let (mut c, mut s) = pair(config());
    pump(&mut c, &mut s);
    s.handle_frame(Frame {
        fin,
        rsv,
        opcode,
        payload: Bytes::copy_from_slice(payload),
    });
    let code = events(&mut s).into_iter().find_map(|e| match e {
        MuxEvent::Failed(code) => Some(code.0),
        _ => None,
    })?;
    let f = s.poll_transmit_frame().unwrap();
    let mut want = vec![0x00, 0x00, 0x70, 0x04];
    want.extend_from_slice(code.to_string().as_bytes());
    assert_eq!(&f.payload[..], &want[..]);
    assert!(s.poll_transmit_frame().is_none());
    assert!(!s.is_open(ch(1)));
    Some(code)
}

fn bin(payload: &[u8]) -> Option<u16> {
    server_failure(true, Rsv::empty(), OpCode::Binary, payload)
}

fn request_block(channel: u32) -> Vec<u8> {
    let mut p = vec![0];
    BlockA::AddChannelRequest(AddChannelRequest {
        channel: ch(channel),
        encoding: Encoding::Identity,
        handshake: Bytes::from_static(b"GET /x HTTP/1.1\r\nHost: example\r\n\r\n"),
    })
    .encode(&mut p);
    p
}

#[test]
fn variant_a_physical_faults_and_their_codes() {
    // Channel IDs.
    assert_eq!(bin(&[]), Some(2002));
    assert_eq!(bin(&[0x80]), Some(2002));
    assert_eq!(bin(&[0xc0, 0x40]), Some(2002));
    assert_eq!(bin(&[0x80, 0x05, b'x']), Some(2002));
    // Encapsulation.
    assert_eq!(
        server_failure(true, Rsv::RSV1, OpCode::Binary, &[0x01, b'x']),
        Some(2001)
    );
    assert_eq!(
        server_failure(true, Rsv::empty(), OpCode::Text, &[0x00]),
        Some(2001)
    );
    assert_eq!(
        server_failure(false, Rsv::empty(), OpCode::Binary, &[0x00]),
        Some(2001)
    );
    assert_eq!(
        server_failure(true, Rsv::empty(), OpCode::Continuation, &[0x00]),
        Some(2001)
    );
    // Unknown and unsupported opcodes (2: FlowControl is not in variant A).
    for op in [2u8, 5, 6, 7] {
        assert_eq!(bin(&[0x00, 0x01, op << 5, 0x00]), Some(2004), "opcode {op}");
    }
    // Blocks cut short or malformed.
    assert_eq!(bin(&[0x00, 0x01]), Some(2005));
    assert_eq!(bin(&[0x00, 0x01, 0x01, 0x00]), Some(2005));
    assert_eq!(bin(&[0x00, 0x01, 0x00, 0x09, b'G']), Some(2005));
    assert_eq!(bin(&[0x00, 0x01, 0x03, 0xff, 0xff, 0xff, 0xff]), Some(2005));
    assert_eq!(bin(&[0x00, 0x80]), Some(2005));
    assert_eq!(bin(&[0x00, 0x01, 0x10, 0x00]), Some(2005));
    assert_eq!(bin(&[0x00, 0x01, 0x61, 0x00, 0x00, 0x07]), Some(2005));
    assert_eq!(bin(&[0x00, 0x01, 0x80, 0x08, 0x00]), Some(2005));
    assert_eq!(bin(&[0x00, 0x01, 0x80, 0x82, 0x00]), Some(2005));
    // Encodings: delta is not implemented in variant A.
    assert_eq!(bin(&[0x00, 0x02, 0x04, 0x00]), Some(2010));
    assert_eq!(bin(&[0x00, 0x02, 0x08, 0x00]), Some(2010));
    // Roles: a server never receives AddChannelResponse.
    assert_eq!(bin(&[0x00, 0x02, 0x20, 0x00]), Some(2005));
    // Channel 0 and an open channel cannot be added.
    assert_eq!(bin(&request_block(0)), Some(2006));
    assert_eq!(bin(&request_block(1)), Some(2006));
    // Well-formed input does not fail.
    assert_eq!(bin(&request_block(2)), None);
    assert_eq!(bin(&[0x05]), None); // an empty frame for an unknown channel: ignored
    // A client never receives AddChannelRequest.
    let (mut c, _) = pair(config());
    c.handle_frame(Frame::new(OpCode::Binary, request_block(2)));
    assert!(matches!(c.failure(), Some(DropCode(2005))));
}

#[test]
fn variant_a_bad_fragmentation_and_bad_utf8_drop_only_that_channel() {
    let (mut c, mut s) = pair(config());
    let other = open(&mut c, &mut s);
    // A continuation with no message started.
    s.handle_frame(Frame::new(OpCode::Continuation, vec![0x01, b'x']));
    assert!(events(&mut s).iter().any(|e| matches!(
        e,
        MuxEvent::ChannelClosed { channel, end: ChannelEnd::Dropped(DropCode(3009)) } if *channel == ch(1)
    )));
    let f = s.poll_transmit_frame().unwrap();
    assert_eq!(
        &f.payload[..],
        &[0x00, 0x01, 0x60, 0x04, b'3', b'0', b'0', b'9']
    );
    assert!(!s.is_open(ch(1)) && s.is_open(other) && s.failure().is_none());
    // Invalid UTF-8 in a logical text frame: that channel's session closes
    // it with 1007 (in an EncapsulatedControlFrame).
    s.handle_frame(Frame::new(OpCode::Text, vec![other.get() as u8, 0xff]));
    let f = s.poll_transmit_frame().unwrap();
    assert_eq!(&f.payload[..4], &[0x00, other.get() as u8, 0x80, 0x88]);
    assert_eq!(u16::from_be_bytes([f.payload[5], f.payload[6]]), 1007);
    assert!(s.failure().is_none());
}

#[test]
fn variant_a_unread_data_past_the_limits_drops_the_channel() {
    let (mut c, mut s) = pair(config().max_buffered_per_channel(1000));
    // At the limit: kept.
    send(&mut c, ch(1), Message::binary(vec![1u8; 1000]));
    pump(&mut c, &mut s);
    assert!(s.is_open(ch(1)));
    // One byte past it: dropped with 3000, its unread data discarded.
    send(&mut c, ch(1), Message::binary(vec![2u8; 1]));
    let f = c.poll_transmit_frame().unwrap();
    s.handle_frame(f);
    assert!(!s.is_open(ch(1)));
    assert!(events(&mut s).iter().any(|e| matches!(
        e,
        MuxEvent::ChannelClosed {
            end: ChannelEnd::Dropped(DropCode(3000)),
            ..
        }
    )));
    let f = s.poll_transmit_frame().unwrap();
    assert_eq!(
        blocks(&f),
        vec![BlockA::DropChannel(DropChannelA {
            channel: ch(1),
            mux_error: false,
            reason: Bytes::from_static(b"3000 receive buffer limit"),
        })]
    );
    assert!(s.take_message(ch(1)).is_none());
    // Reading keeps a channel under the limit.
    let (mut c, mut s) = pair(config().max_buffered_per_channel(1000));
    for _ in 0..50 {
        send(&mut c, ch(1), Message::binary(vec![3u8; 600]));
        pump(&mut c, &mut s);
        assert_eq!(drain(&mut s, ch(1)).len(), 1);
    }
    assert!(s.is_open(ch(1)));
    // The total limit over all channels.
    let (mut c, mut s) = pair(config().max_buffered_total(1500));
    let other = open(&mut c, &mut s);
    send(&mut c, ch(1), Message::binary(vec![4u8; 1000]));
    send(&mut c, other, Message::binary(vec![5u8; 501]));
    pump(&mut c, &mut s);
    assert!(s.is_open(ch(1)) && !s.is_open(other));
}

#[test]
fn variant_a_channel_limit_refuses_with_503() {
    let (mut c, mut s) = pair(config().max_channels(2));
    let _ = open(&mut c, &mut s);
    assert!(matches!(
        c.open_channel("/x", &[], &[], vec![]),
        Err(MuxError::TooManyChannels)
    ));
    // A peer that ignores the limit is refused by the server.
    s.handle_frame(Frame::new(OpCode::Binary, request_block(9)));
    let f = s.poll_transmit_frame().unwrap();
    let [BlockA::AddChannelResponse(resp)] = &blocks(&f)[..] else {
        panic!("{:?}", blocks(&f));
    };
    assert!(resp.rejected && resp.handshake.starts_with(b"HTTP/1.1 503"));
    assert_eq!(s.channel_count(), 2);
}

#[test]
fn variant_a_and_b_endpoints_fail_on_each_others_bytes() {
    let b_config = MuxConfig::default();
    // A variant B server's first message (FlowControl + NewChannelSlot)
    // fails a variant A client: 2005, before any data.
    let mut b_server = Multiplexer::server(b_config.clone(), &physical_request(), 1024);
    let mut a_client = Multiplexer::client(config(), "example");
    a_client.handle_frame(b_server.poll_transmit_frame().unwrap());
    assert_eq!(a_client.failure(), Some(DropCode(2005)));
    // A variant A client's AddChannelRequest fails a variant B server: its
    // opcode byte reads as encoding 2 (2010).
    let mut a_client = Multiplexer::client(config(), "example");
    let mut b_server = Multiplexer::server(b_config.clone(), &physical_request(), 1024);
    a_client.open_channel("/x", &[], &[], vec![]).unwrap();
    b_server.handle_frame(a_client.poll_transmit_frame().unwrap());
    assert_eq!(b_server.failure(), Some(DropCode(2010)));
    // A variant A server's logical text frame fails a variant B client (2001).
    let mut a_server = Multiplexer::server(config(), &physical_request(), 0);
    let mut b_client = Multiplexer::client(b_config.clone(), "example");
    send(&mut a_server, ch(1), Message::text("Hello"));
    b_client.handle_frame(a_server.poll_transmit_frame().unwrap());
    assert_eq!(b_client.failure(), Some(DropCode(2001)));
    // A variant B client's DropChannel fails a variant A server (2005).
    let mut b_client = Multiplexer::client(b_config, "example");
    let mut a_server = Multiplexer::server(config(), &physical_request(), 0);
    b_client.drop_channel(ch(1), DropCode::NORMAL);
    a_server.handle_frame(b_client.poll_transmit_frame().unwrap());
    assert_eq!(a_server.failure(), Some(DropCode(2005)));
}

#[test]
fn variant_a_random_frames_never_panic() {
    let mut rng = test_support::rng(0x5eed_a11a);
    let mut next = move || test_support::RngCore::next_u64(&mut rng);
    let seeds: [&[u8]; 6] = [
        &[0x00, 0x01, 0x1c, 0x02, b'H', b'i'],
        &[0x00, 0x02, 0x21, 0x00, 0x02, b'o', b'k'],
        &[0x00, 0x01, 0x80, 0x89, 0x01, b'p'],
        &[0x00, 0x01, 0x70, 0x01, b'e'],
        &[0x01, b'H', b'i'],
        &[0x82, 0x05, 0xc0, 0x40, 0x00, b'x'],
    ];
    let opcodes = [OpCode::Binary, OpCode::Text, OpCode::Continuation];
    for round in 0..3000 {
        let (mut c, mut s) = pair(config());
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
            let r = next();
            let frame = Frame {
                fin: r & 1 == 0,
                rsv: if r & 0x30 == 0x30 {
                    Rsv::RSV1
                } else {
                    Rsv::empty()
                },
                opcode: opcodes[(r >> 8) as usize % 3],
                payload: Bytes::from(m),
            };
            let target = if round % 2 == 0 { &mut s } else { &mut c };
            target.handle_frame(frame);
            while target.poll_transmit_frame().is_some() {}
            let _ = events(target);
        }
    }
}

#[test]
fn variant_a_control_frame_between_fragments_of_a_message() {
    let (_, mut s) = pair(config());
    let mut ecf_ping = vec![0x00];
    BlockA::EncapsulatedControlFrame(weft_mux::wire::variant_a::EncapsulatedControlFrame {
        channel: ch(1),
        opcode: OpCode::Ping,
        payload: Bytes::from_static(b"mid"),
    })
    .encode(&mut ecf_ping);
    for f in [
        Frame {
            fin: false,
            rsv: Rsv::empty(),
            opcode: OpCode::Text,
            payload: Bytes::from_static(b"\x01ab"),
        },
        Frame::new(OpCode::Binary, ecf_ping),
        Frame {
            fin: true,
            rsv: Rsv::empty(),
            opcode: OpCode::Continuation,
            payload: Bytes::from_static(b"\x01cd"),
        },
    ] {
        s.handle_frame(f);
    }
    assert_eq!(
        drain(&mut s, ch(1)),
        vec![
            Message::Ping(Bytes::from_static(b"mid")),
            Message::text("abcd")
        ]
    );
    assert!(s.failure().is_none());
}

#[test]
fn variant_b_frames_must_be_whole_messages() {
    // The frame API of a variant B multiplexer cannot be fed physical
    // fragments (they would be read as separate messages): 2001.
    let mut b = Multiplexer::server(MuxConfig::default(), &physical_request(), 0);
    b.handle_frame(Frame {
        fin: false,
        rsv: Rsv::empty(),
        opcode: OpCode::Binary,
        payload: Bytes::from_static(b"\x01\x81a"),
    });
    assert_eq!(b.failure(), Some(DropCode(2001)));
}
