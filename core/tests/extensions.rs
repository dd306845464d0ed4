//! The extension chain, proven with two (and three) stacked toy extensions:
//! negotiation order, RSV conflicts, undeclared RSV bits, the decode budget,
//! and end-to-end traffic over an in-memory pipe.

use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use test_support::{Toy, ToyExt, ToyFactory, client_frame, drain_output, duplex_pair};
use weft_core::ext::{
    ExtensionFactory, Negotiated, NegotiationError, SendHints, client_accept, client_offers,
    format_extensions, parse_extensions, server_negotiate,
};
use weft_core::{
    ClientBuilder, Config, Connection, Message, OpCode, ProtocolError, Role, Rsv, ServerBuilder,
    Session,
};

fn server_factories(toys: &[ToyFactory]) -> Vec<Arc<dyn ExtensionFactory>> {
    toys.iter()
        .map(|t| Arc::new(t.clone()) as Arc<dyn ExtensionFactory>)
        .collect()
}

fn client_factories(toys: &[ToyFactory]) -> Vec<Arc<dyn ExtensionFactory>> {
    toys.iter()
        .map(|t| Arc::new(t.clone()) as Arc<dyn ExtensionFactory>)
        .collect()
}

fn negotiated(toys: &[Toy]) -> Negotiated {
    let mut n = Negotiated::none();
    for t in toys {
        n.push(
            weft_core::ext::ExtensionHeader::new(t.name()),
            ToyExt::new(*t).negotiated(),
        )
        .unwrap();
    }
    n
}

fn connection(role: Role, toys: &[Toy], config: &Config) -> Connection {
    Connection::new(
        Session::with_extensions(role, config, negotiated(toys)),
        config,
    )
}

#[test]
fn encode_in_negotiated_order_decode_in_reverse() {
    // x-xor (per-message) then x-tag (per-frame): the wire payload is the
    // XORed text followed by the untouched tag byte; RSV2 | RSV3 on the frame.
    let cfg = Config::default();
    let mut s = connection(Role::Server, &[Toy::Xor, Toy::Tag], &cfg);
    s.session_mut()
        .send(
            OpCode::Text,
            Bytes::from_static(b"ab"),
            &SendHints::default(),
        )
        .unwrap();
    let wire = drain_output(&mut s);
    assert_eq!(
        wire,
        [0x81 | 0x20 | 0x10, 3, b'a' ^ 0x5A, b'b' ^ 0x5A, 0xEE]
    );
    let mut c = connection(Role::Client, &[Toy::Xor, Toy::Tag], &cfg);
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(c.handle_read(&mut buf).unwrap(), Some(Message::text("ab")));
}

#[test]
fn per_frame_stage_runs_after_fragmentation() {
    let cfg = Config::default().send_frame_size(2);
    let mut s = connection(Role::Server, &[Toy::Xor, Toy::Tag], &cfg);
    s.session_mut()
        .send(
            OpCode::Binary,
            Bytes::from_static(b"abcd"),
            &SendHints::default(),
        )
        .unwrap();
    let wire = drain_output(&mut s);
    // Two frames, each tagged (RSV3); RSV2 only on the first.
    assert_eq!(
        wire,
        [
            0x02 | 0x20 | 0x10,
            3,
            b'a' ^ 0x5A,
            b'b' ^ 0x5A,
            0xEE,
            0x80 | 0x10,
            3,
            b'c' ^ 0x5A,
            b'd' ^ 0x5A,
            0xEE
        ]
    );
    let mut c = connection(Role::Client, &[Toy::Xor, Toy::Tag], &cfg);
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(
        c.handle_read(&mut buf).unwrap(),
        Some(Message::binary(&b"abcd"[..]))
    );
}

#[test]
fn control_frames_bypass_extensions() {
    let cfg = Config::default();
    let ext = ToyExt::new(Toy::Tag);
    let counter = ext.decoded.clone();
    let mut n = Negotiated::none();
    n.push(
        weft_core::ext::ExtensionHeader::new("x-tag"),
        ext.negotiated(),
    )
    .unwrap();
    let mut s = Connection::new(Session::with_extensions(Role::Server, &cfg, n), &cfg);
    let mut buf = BytesMut::from(&client_frame(0x89, b"hi")[..]);
    assert_eq!(
        s.handle_read(&mut buf).unwrap(),
        Some(Message::Ping(Bytes::from_static(b"hi")))
    );
    assert_eq!(counter.load(Ordering::Relaxed), 0);
    // The Pong goes out untagged.
    assert_eq!(drain_output(&mut s), [0x8a, 2, b'h', b'i']);
    // RSV3 on a control frame is refused even though x-tag owns RSV3.
    let mut buf = BytesMut::from(&client_frame(0x89 | 0x10, b"")[..]);
    assert_eq!(
        s.handle_read(&mut buf),
        Err(ProtocolError::ReservedBits(Rsv::RSV3))
    );
}

#[test]
fn undeclared_rsv_bits_are_rejected() {
    let cfg = Config::default();
    let mut s = connection(Role::Server, &[Toy::Xor], &cfg);
    // RSV2 is x-xor's; RSV1 belongs to nobody.
    let mut buf = BytesMut::from(&client_frame(0x81 | 0x40, b"x")[..]);
    assert_eq!(
        s.handle_read(&mut buf),
        Err(ProtocolError::ReservedBits(Rsv::RSV1))
    );
    assert_eq!(drain_output(&mut s), [0x88, 2, 0x03, 0xea]);
    // A declared bit the decoder does not consume is rejected too: x-xor on
    // a continuation frame fails inside the extension with 1002.
    let mut s = connection(Role::Server, &[Toy::Xor], &cfg);
    let mut v = client_frame(0x01, b"a");
    v.extend(client_frame(0x80 | 0x20, b"b"));
    let mut buf = BytesMut::from(&v[..]);
    let e = s.handle_read(&mut buf).unwrap_err();
    assert_eq!(e.close_code().as_u16(), 1002);
}

#[test]
fn decode_budget_is_enforced_at_the_limit_and_one_past() {
    // x-double writes two bytes per wire byte: 5 wire bytes = 10 decoded.
    let cfg = Config::default().max_message_size(10);
    let mut s = connection(Role::Server, &[Toy::Double], &cfg);
    let mut buf = BytesMut::from(&client_frame(0x82 | 0x40, b"abcde")[..]);
    assert_eq!(
        s.handle_read(&mut buf).unwrap(),
        Some(Message::binary(&b"aabbccddee"[..]))
    );

    let mut s = connection(Role::Server, &[Toy::Double], &cfg);
    let mut v = client_frame(0x02 | 0x40, b"abc");
    v.extend(client_frame(0x80, b"ab")); // 6 + 4 = 10: fine
    let mut buf = BytesMut::from(&v[..]);
    assert_eq!(s.handle_read(&mut buf).unwrap().map(|m| m.len()), Some(10));

    let mut s = connection(Role::Server, &[Toy::Double], &cfg);
    let mut v = client_frame(0x02 | 0x40, b"abc");
    v.extend(client_frame(0x80, b"abc")); // 6 + 6 = 12: over
    let mut buf = BytesMut::from(&v[..]);
    let e = s.handle_read(&mut buf).unwrap_err();
    assert_eq!(e.close_code().as_u16(), 1009);
    assert_eq!(drain_output(&mut s), [0x88, 2, 0x03, 0xf1]);
}

#[test]
fn rsv_conflicts_are_refused() {
    // Client side: a response naming two extensions that claim the same bit.
    let a = ToyFactory::new(Toy::Xor);
    let b = ToyFactory::with_rsv(Toy::Tag, Rsv::RSV2);
    let resp = parse_extensions(["x-xor, x-tag"]).unwrap();
    let err = client_accept(&client_factories(&[a.clone(), b.clone()]), &resp).unwrap_err();
    assert!(matches!(err, NegotiationError::RsvConflict { bits, .. } if bits == Rsv::RSV2));
    // Server side: the conflicting second extension is declined, the first kept.
    let offers = parse_extensions(["x-xor, x-tag"]).unwrap();
    let n = server_negotiate(&server_factories(&[a, b]), &offers).unwrap();
    assert_eq!(format_extensions(n.headers()), "x-xor");
    // Negotiated::push refuses directly as well.
    let mut n = negotiated(&[Toy::Xor]);
    let mut clash = ToyExt::new(Toy::Double);
    clash.rsv = Rsv::RSV2;
    assert!(
        n.push(
            weft_core::ext::ExtensionHeader::new("x-double"),
            clash.negotiated()
        )
        .is_err()
    );
}

#[test]
fn per_message_after_per_frame_is_refused() {
    let resp = parse_extensions(["x-tag, x-xor"]).unwrap();
    let f = client_factories(&[ToyFactory::new(Toy::Xor), ToyFactory::new(Toy::Tag)]);
    let err = client_accept(&f, &resp).unwrap_err();
    assert!(matches!(err, NegotiationError::Order { .. }), "{err}");
}

#[test]
fn client_refuses_unoffered_and_duplicate_extensions() {
    let f = client_factories(&[ToyFactory::new(Toy::Xor)]);
    let err = client_accept(&f, &parse_extensions(["x-tag"]).unwrap()).unwrap_err();
    assert_eq!(err, NegotiationError::NotOffered("x-tag".into()));
    let err = client_accept(&f, &parse_extensions(["x-xor, x-xor"]).unwrap()).unwrap_err();
    assert_eq!(err, NegotiationError::Duplicate("x-xor".into()));
    let err = client_accept(&f, &parse_extensions(["x-xor; p=1"]).unwrap()).unwrap_err();
    assert!(matches!(err, NegotiationError::Rejected { .. }));
}

#[test]
fn server_takes_offers_in_client_order_and_skips_declined_ones() {
    let f = server_factories(&[ToyFactory::new(Toy::Tag), ToyFactory::new(Toy::Xor)]);
    // Two offers of x-xor: the first declined, the second accepted; x-xor
    // comes first in the response because the client listed it first.
    let offers = parse_extensions(["x-xor; decline", "x-xor, x-tag, x-unknown"]).unwrap();
    let n = server_negotiate(&f, &offers).unwrap();
    assert_eq!(format_extensions(n.headers()), "x-xor, x-tag");
    let names: Vec<&str> = n.extensions().iter().map(|e| e.name()).collect();
    assert_eq!(names, ["x-xor", "x-tag"]);
    assert!(n.extensions()[0].params::<ToyExt>().is_some());
    // Offers from all client factories, in order.
    let offers = client_offers(&client_factories(&[
        ToyFactory::new(Toy::Xor),
        ToyFactory::new(Toy::Tag),
    ]));
    assert_eq!(format_extensions(&offers), "x-xor, x-tag");
}

#[tokio::test]
async fn stacked_extensions_end_to_end() {
    let client = ClientBuilder::new()
        .extension(ToyFactory::new(Toy::Xor))
        .extension(ToyFactory::new(Toy::Tag))
        .config(Config::default().send_frame_size(7));
    let server = ServerBuilder::new()
        .extension(ToyFactory::new(Toy::Tag))
        .extension(ToyFactory::new(Toy::Xor))
        .config(Config::default().send_frame_size(5));
    let (mut c, mut s) = duplex_pair(client, server).await;
    assert_eq!(format_extensions(c.extensions()), "x-xor, x-tag");
    assert_eq!(format_extensions(s.extensions()), "x-xor, x-tag");
    for text in [
        "",
        "short",
        "a much longer message that is cut into many frames ✓",
    ] {
        c.send(Message::text(text)).await.unwrap();
        let got = s.recv().await.unwrap().unwrap();
        assert_eq!(got, Message::text(text));
        s.send(got).await.unwrap();
        assert_eq!(c.recv().await.unwrap().unwrap(), Message::text(text));
    }
    // A message sent with compress=false skips x-xor but still gets tagged.
    c.feed_with(Message::binary(&b"plain"[..]), SendHints::uncompressed())
        .await
        .unwrap();
    c.flush().await.unwrap();
    assert_eq!(
        s.recv().await.unwrap().unwrap(),
        Message::binary(&b"plain"[..])
    );
}

#[tokio::test]
async fn idle_connections_tell_extensions_once() {
    let ext = ToyFactory::new(Toy::Xor);
    let idled = ext.0.idled.clone();
    let limits = Config::default().release_idle_after(Some(std::time::Duration::from_millis(40)));
    let (mut c, mut s) = duplex_pair(
        ClientBuilder::new().extension(ToyFactory::new(Toy::Xor)),
        ServerBuilder::new().extension(ext).config(limits),
    )
    .await;
    c.send(Message::text("busy")).await.unwrap();
    assert_eq!(s.recv().await.unwrap().unwrap(), Message::text("busy"));
    // While the server waits for input, its idle timer fires: encoder and
    // decoder are each told once, not again and again.
    let r = tokio::time::timeout(std::time::Duration::from_millis(300), s.recv()).await;
    assert!(r.is_err());
    assert_eq!(idled.load(Ordering::Relaxed), 2);
    // Traffic resumes normally and re-arms the timer.
    c.send(Message::text("again")).await.unwrap();
    assert_eq!(s.recv().await.unwrap().unwrap(), Message::text("again"));
    let _ = tokio::time::timeout(std::time::Duration::from_millis(300), s.recv()).await;
    assert_eq!(idled.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn shared_and_boxed_factories_negotiate_like_the_factory_itself() {
    // One Arc'd factory handed to two servers, and a Box<dyn> chosen at run
    // time on the client: both forward every method, so the same extensions
    // are agreed and the traffic is transformed the same way.
    let shared: Arc<dyn ExtensionFactory> = Arc::new(ToyFactory::new(Toy::Xor));
    for _ in 0..2 {
        let boxed: Box<dyn ExtensionFactory> = Box::new(ToyFactory::new(Toy::Xor));
        let client = ClientBuilder::new().extension(boxed);
        let server = ServerBuilder::new().extension(Arc::clone(&shared));
        let (mut c, mut s) = duplex_pair(client, server).await;
        assert_eq!(format_extensions(c.extensions()), "x-xor");
        assert_eq!(format_extensions(s.extensions()), "x-xor");
        c.send(Message::text("through the shared factory"))
            .await
            .unwrap();
        assert_eq!(
            s.recv().await.unwrap().unwrap(),
            Message::text("through the shared factory")
        );
    }
    // The servers are gone: only the test still holds the factory.
    assert_eq!(Arc::strong_count(&shared), 1);
    assert_eq!(shared.offers(), ToyFactory::new(Toy::Xor).offers());
}
