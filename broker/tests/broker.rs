//! The broker over real loopback sockets: the client library against the
//! server, and raw frames where the client library would not send them.
//! Every wait is bounded (see `within` and `recv`).

use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_broker::frame::{self, ErrorFrame, Frame, Limits, Receipt};
use weft_broker::{
    AckMode, Client, ClientOptions, Delivery, ErrorCode, Form, MemoryConfig, Profile, Server,
    ServerConfig, SubscribeOptions, Subscription,
};
use weft_core::{ClientBuilder, Message, WebSocket};

const LIMIT: Duration = Duration::from_secs(10);

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test step timed out")
}

struct Broker {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Broker {
    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

async fn start(config: ServerConfig) -> Broker {
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(server.run_until(async {
        let _ = rx.await;
    }));
    Broker {
        addr,
        stop: Some(stop),
        task,
    }
}

async fn broker() -> Broker {
    start(ServerConfig::default()).await
}

async fn recv(sub: &mut Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("no delivery within 5 s")
        .expect("subscription open")
}

/// Nothing arrives within `ms` milliseconds.
async fn quiet(sub: &mut Subscription, ms: u64) {
    if let Ok(d) = tokio::time::timeout(Duration::from_millis(ms), sub.next()).await {
        panic!("unexpected delivery {d:?}");
    }
}

fn body_str(d: &Delivery) -> &str {
    std::str::from_utf8(&d.body).unwrap()
}

#[tokio::test]
async fn queue_consumers_compete_each_message_once() {
    let b = broker().await;
    within(async {
        let c1 = Client::connect(&b.url()).await.unwrap();
        let c2 = Client::connect(&b.url()).await.unwrap();
        let mut s1 = c1
            .subscribe("/queue/work", SubscribeOptions::client_ack(8))
            .await
            .unwrap();
        let mut s2 = c2
            .subscribe("/queue/work", SubscribeOptions::client_ack(8))
            .await
            .unwrap();
        let p = Client::connect(&b.url()).await.unwrap();
        let n = 100;
        let mut sent = HashSet::new();
        for i in 0..n {
            sent.insert(p.send("/queue/work", format!("job {i}")).await.unwrap());
        }
        let mut got: HashMap<String, usize> = HashMap::new();
        let (mut n1, mut n2) = (0, 0);
        while n1 + n2 < n {
            tokio::select! {
                d = recv(&mut s1) => { s1.ack(&d).unwrap(); n1 += 1; *got.entry(d.message_id.to_string()).or_default() += 1; }
                d = recv(&mut s2) => { s2.ack(&d).unwrap(); n2 += 1; *got.entry(d.message_id.to_string()).or_default() += 1; }
            }
        }
        assert_eq!(got.len(), n);
        assert!(got.values().all(|&c| c == 1), "a message arrived twice");
        assert!(sent.iter().all(|id| got.contains_key(id.as_str())));
        assert!(n1 > 0 && n2 > 0, "both consumers took part: {n1} / {n2}");
        quiet(&mut s1, 100).await;
        quiet(&mut s2, 100).await;
    })
    .await;
}

#[tokio::test]
async fn topic_fans_out_to_every_subscription() {
    let b = broker().await;
    within(async {
        let mut subs = Vec::new();
        for _ in 0..3 {
            let c = Client::connect(&b.url()).await.unwrap();
            subs.push(
                c.subscribe("/topic/news", SubscribeOptions::auto_ack(4))
                    .await
                    .unwrap(),
            );
        }
        let p = Client::connect(&b.url()).await.unwrap();
        for i in 0..20 {
            p.send("/topic/news", format!("n{i}")).await.unwrap();
        }
        for s in &mut subs {
            // A window of 4 that the stream replenishes as it is read.
            for i in 0..20 {
                let d = recv(s).await;
                assert_eq!(body_str(&d), format!("n{i}"));
                assert!(!d.redelivered);
            }
        }
    })
    .await;
}

#[tokio::test]
async fn unacked_deliveries_are_redelivered_after_a_disconnect() {
    let b = broker().await;
    within(async {
        let p = Client::connect(&b.url()).await.unwrap();
        let first = Client::connect(&b.url()).await.unwrap();
        let mut s = first
            .subscribe("/queue/orders", SubscribeOptions::client_ack(3))
            .await
            .unwrap();
        for i in 0..5 {
            p.send("/queue/orders", format!("o{i}")).await.unwrap();
        }
        let taken: Vec<Delivery> = vec![recv(&mut s).await, recv(&mut s).await, recv(&mut s).await];
        assert_eq!(
            taken.iter().map(body_str).collect::<Vec<_>>(),
            ["o0", "o1", "o2"]
        );
        // Acks one, then goes away without acking the other two.
        s.ack(&taken[0]).unwrap();
        let d = recv(&mut s).await;
        assert_eq!(body_str(&d), "o3");
        first.close().await;
        drop(s);

        let second = Client::connect(&b.url()).await.unwrap();
        let mut s = second
            .subscribe("/queue/orders", SubscribeOptions::client_ack(10))
            .await
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..4 {
            let d = recv(&mut s).await;
            got.push((body_str(&d).to_owned(), d.redelivered));
            s.ack(&d).unwrap();
        }
        assert_eq!(
            got,
            [
                ("o1".to_owned(), true),
                ("o2".to_owned(), true),
                ("o3".to_owned(), true),
                ("o4".to_owned(), false),
            ]
        );
        quiet(&mut s, 150).await;
    })
    .await;
}

#[tokio::test]
async fn an_aborted_consumer_connection_redelivers_too() {
    let b = broker().await;
    within(async {
        let p = Client::connect(&b.url()).await.unwrap();
        // A raw connection that takes a delivery and is dropped on the floor
        // (no closing handshake).
        let mut ws = raw(&b, frame::PROTOCOL).await;
        let r = request(
            &mut ws,
            "SUBSCRIBE\nsubscription: a\ndestination: /queue/q\nack: client\ncredit: 1\n\n",
        )
        .await;
        assert!(
            matches!(r, Frame::Receipt(Receipt::Subscription(_))),
            "{r:?}"
        );
        let id = p.send("/queue/q", "only").await.unwrap();
        let Frame::Message(m) = next_frame(&mut ws).await else {
            panic!("expected MESSAGE")
        };
        assert_eq!(m.message_id, id);
        drop(ws);
        let c = Client::connect(&b.url()).await.unwrap();
        let mut s = c
            .subscribe("/queue/q", SubscribeOptions::client_ack(1))
            .await
            .unwrap();
        let d = recv(&mut s).await;
        assert_eq!((d.message_id.clone(), d.redelivered), (id, true));
    })
    .await;
}

#[tokio::test]
async fn nack_redelivers_with_a_new_delivery_id() {
    let b = broker().await;
    within(async {
        let c = Client::connect(&b.url()).await.unwrap();
        let mut s = c
            .subscribe("/queue/retry", SubscribeOptions::client_ack(1))
            .await
            .unwrap();
        let id = c.send("/queue/retry", "try me").await.unwrap();
        c.send("/queue/retry", "after").await.unwrap();
        let d1 = recv(&mut s).await;
        assert!(!d1.redelivered);
        s.nack(&d1).unwrap();
        let d2 = recv(&mut s).await;
        assert_eq!(d2.message_id, id);
        assert!(d2.redelivered);
        assert_ne!(d2.delivery_id, d1.delivery_id);
        s.ack(&d2).unwrap();
        assert_eq!(body_str(&recv(&mut s).await), "after");
    })
    .await;
}

#[tokio::test]
async fn credit_window_is_respected() {
    let b = broker().await;
    within(async {
        let c = Client::connect(&b.url()).await.unwrap();
        let mut s = c
            .subscribe("/queue/slow", SubscribeOptions::client_ack(2))
            .await
            .unwrap();
        for i in 0..6 {
            c.send("/queue/slow", format!("m{i}")).await.unwrap();
        }
        let d0 = recv(&mut s).await;
        let d1 = recv(&mut s).await;
        quiet(&mut s, 200).await; // exactly 2 until it acks
        s.ack(&d0).unwrap();
        let d2 = recv(&mut s).await;
        assert_eq!(body_str(&d2), "m2");
        quiet(&mut s, 150).await; // one ack, one more
        // CREDIT widens the window.
        s.add_credit(2).unwrap();
        assert_eq!(body_str(&recv(&mut s).await), "m3");
        assert_eq!(body_str(&recv(&mut s).await), "m4");
        quiet(&mut s, 150).await;
        s.ack(&d1).unwrap();
        assert_eq!(body_str(&recv(&mut s).await), "m5");

        // ack: auto with no credit gets nothing until CREDIT.
        let mut paused = c
            .subscribe("/topic/t", SubscribeOptions::auto_ack(0))
            .await
            .unwrap();
        for i in 0..3 {
            c.send("/topic/t", format!("t{i}")).await.unwrap();
        }
        quiet(&mut paused, 150).await;
        paused.add_credit(2).unwrap();
        assert_eq!(body_str(&recv(&mut paused).await), "t0");
        assert_eq!(body_str(&recv(&mut paused).await), "t1");
        quiet(&mut paused, 150).await;
    })
    .await;
}

#[tokio::test]
async fn per_producer_order_is_kept() {
    let b = broker().await;
    within(async {
        let consumer = Client::connect(&b.url()).await.unwrap();
        let mut s = consumer
            .subscribe("/queue/ordered", SubscribeOptions::client_ack(32))
            .await
            .unwrap();
        let n = 300;
        let mut producers = Vec::new();
        for p in 0..3 {
            let c = Client::connect(&b.url()).await.unwrap();
            producers.push(tokio::spawn(async move {
                // Pipelined: many SENDs in flight at once. Each task numbers
                // its message right before `send` queues it, with no await
                // in between (and this runtime has one thread), so the
                // numbers are the order of the frames on the connection.
                let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let mut pending = Vec::new();
                for _ in 0..n {
                    let (c, next) = (c.clone(), next.clone());
                    pending.push(tokio::spawn(async move {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        c.send("/queue/ordered", format!("{p} {i}")).await
                    }));
                    if pending.len() % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                for t in pending {
                    t.await.unwrap().unwrap();
                }
            }));
        }
        let mut last = [None::<usize>; 3];
        for _ in 0..3 * n {
            let d = recv(&mut s).await;
            s.ack(&d).unwrap();
            let (p, i) = body_str(&d).split_once(' ').unwrap();
            let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
            assert!(
                last[p].is_none_or(|l| l < i),
                "producer {p}: {i} after {:?}",
                last[p]
            );
            last[p] = Some(i);
        }
        for t in producers {
            t.await.unwrap();
        }
        assert_eq!(last, [Some(n - 1); 3]);
    })
    .await;
}

#[tokio::test]
async fn duplicate_sends_are_stored_once() {
    let b = broker().await;
    within(async {
        let c = Client::connect(&b.url()).await.unwrap();
        let f = frame::SendFrame {
            destination: "/queue/d".parse().unwrap(),
            message_id: c.next_message_id(),
            headers: weft_broker::Headers::new().with("x-try", "1").unwrap(),
            body: Bytes::from_static(b"once"),
        };
        c.send_frame(f.clone()).await.unwrap();
        c.send_frame(f.clone()).await.unwrap(); // a retry: acknowledged again
        c.send("/queue/d", "next").await.unwrap();
        let mut s = c
            .subscribe("/queue/d", SubscribeOptions::client_ack(10))
            .await
            .unwrap();
        let d = recv(&mut s).await;
        assert_eq!((d.message_id.clone(), body_str(&d)), (f.message_id, "once"));
        assert_eq!(d.headers.get("x-try"), Some("1"));
        assert_eq!(body_str(&recv(&mut s).await), "next");
        quiet(&mut s, 150).await;
    })
    .await;
}

#[tokio::test]
async fn light_profile_has_no_acks() {
    let b = broker().await;
    within(async {
        // The client library: send returns without a RECEIPT, deliveries work.
        let light = ClientOptions {
            profile: Profile::Light,
            form: Form::Text,
            ..ClientOptions::default()
        };
        let c = Client::connect_with(&b.url(), light).await.unwrap();
        assert_eq!(c.profile(), Profile::Light);
        let mut s = c
            .subscribe("/topic/telemetry", SubscribeOptions::auto_ack(8))
            .await
            .unwrap();
        for i in 0..10 {
            c.send("/topic/telemetry", format!("{i}")).await.unwrap();
        }
        for i in 0..10 {
            assert_eq!(body_str(&recv(&mut s).await), i.to_string());
        }
        let e = c
            .subscribe("/queue/x", SubscribeOptions::client_ack(1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NOT_IN_PROFILE));

        // Raw: a SEND gets no RECEIPT (the next frame is the answer to the
        // ACK after it), ACK and NACK are refused.
        let mut ws = raw(&b, frame::PROTOCOL_LIGHT).await;
        ws.send(Message::text(
            "SEND\ndestination: /queue/l\nmessage-id: m-1\n\nx",
        ))
        .await
        .unwrap();
        let r = request(&mut ws, "ACK\ndelivery-id: 1\n\n").await;
        assert_eq!(error_code(&r), ErrorCode::NOT_IN_PROFILE);
        let r = request(&mut ws, "NACK\ndelivery-id: 1\n\n").await;
        assert_eq!(error_code(&r), ErrorCode::NOT_IN_PROFILE);
        // The SEND was stored all the same.
        let r = request(
            &mut ws,
            "SUBSCRIBE\nsubscription: s\ndestination: /queue/l\ncredit: 1\n\n",
        )
        .await;
        assert!(matches!(r, Frame::Receipt(Receipt::Subscription(_))));
        let Frame::Message(m) = next_frame(&mut ws).await else {
            panic!()
        };
        assert_eq!(m.message_id.as_str(), "m-1");
    })
    .await;
}

#[tokio::test]
async fn ack_of_an_unknown_or_foreign_delivery_is_an_error() {
    let b = broker().await;
    within(async {
        let owner = Client::connect(&b.url()).await.unwrap();
        let mut s = owner
            .subscribe("/queue/own", SubscribeOptions::client_ack(1))
            .await
            .unwrap();
        owner.send("/queue/own", "mine").await.unwrap();
        let d = recv(&mut s).await;

        // Another connection acks the owner's delivery: it owns no such id.
        let other = Client::connect(&b.url()).await.unwrap();
        other.ack(&d).unwrap();
        let e = next_error(&other).await;
        assert_eq!(
            (e.code, e.delivery_id),
            (ErrorCode::UNKNOWN_DELIVERY, Some(d.delivery_id))
        );

        // Unknown id on the owner's connection; the double ack too.
        let mut fake = d.clone();
        fake.delivery_id = 777;
        owner.ack(&fake).unwrap();
        let e = next_error(&owner).await;
        assert_eq!(
            (e.code, e.delivery_id),
            (ErrorCode::UNKNOWN_DELIVERY, Some(777))
        );
        owner.ack(&d).unwrap();
        owner.ack(&d).unwrap();
        let e = next_error(&owner).await;
        assert_eq!(e.code, ErrorCode::UNKNOWN_DELIVERY);
        // The real ack went through: the message is not redelivered.
        owner.close().await;
        let c = Client::connect(&b.url()).await.unwrap();
        let mut s = c
            .subscribe("/queue/own", SubscribeOptions::client_ack(1))
            .await
            .unwrap();
        quiet(&mut s, 150).await;
    })
    .await;
}

#[tokio::test]
async fn credit_overflow_is_an_error() {
    let b = start(ServerConfig {
        memory: MemoryConfig {
            max_credit: 8,
            ..MemoryConfig::default()
        },
        ..ServerConfig::default()
    })
    .await;
    within(async {
        let c = Client::connect(&b.url()).await.unwrap();
        let e = c
            .subscribe("/queue/c", SubscribeOptions::client_ack(9))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::CREDIT_OVERFLOW));
        let s = c
            .subscribe("/queue/c", SubscribeOptions::client_ack(5))
            .await
            .unwrap();
        s.add_credit(3).unwrap(); // exactly at the limit
        s.add_credit(1).unwrap(); // one over
        let e = next_error(&c).await;
        assert_eq!(
            (e.code, e.subscription.as_ref()),
            (ErrorCode::CREDIT_OVERFLOW, Some(s.id()))
        );
        // Also from u32 arithmetic's edge.
        s.add_credit(u32::MAX).unwrap();
        assert_eq!(next_error(&c).await.code, ErrorCode::CREDIT_OVERFLOW);
    })
    .await;
}

#[tokio::test]
async fn queue_limit_refuses_sends() {
    let b = start(ServerConfig {
        memory: MemoryConfig {
            max_queue: 3,
            ..MemoryConfig::default()
        },
        ..ServerConfig::default()
    })
    .await;
    within(async {
        let c = Client::connect(&b.url()).await.unwrap();
        for i in 0..3 {
            c.send("/queue/full", format!("{i}")).await.unwrap();
        }
        let e = c.send("/queue/full", "3").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::QUEUE_FULL));
        // Draining makes room again.
        let mut s = c
            .subscribe("/queue/full", SubscribeOptions::auto_ack(10))
            .await
            .unwrap();
        for _ in 0..3 {
            recv(&mut s).await;
        }
        c.send("/queue/full", "4").await.unwrap();
        assert_eq!(body_str(&recv(&mut s).await), "4");
    })
    .await;
}

#[tokio::test]
async fn handshake_without_our_token_is_refused() {
    let b = broker().await;
    within(async {
        // A plain weft client offering another subprotocol, and none.
        for builder in [ClientBuilder::new().protocol("chat"), ClientBuilder::new()] {
            let err = builder.connect(&b.url()).await.unwrap_err();
            match err {
                weft_core::Error::Handshake(weft_core::handshake::HandshakeError::Status(s)) => {
                    assert_eq!(s, 400)
                }
                e => panic!("expected HTTP 400, got {e}"),
            }
        }
        // The registered MBWS names are not ours.
        let err = ClientBuilder::new()
            .protocol("MBWS.huawei.com")
            .connect(&b.url())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("400"), "{err}");
        // On the wire: 400 with the explanation.
        let mut tcp = TcpStream::connect(b.addr).await.unwrap();
        tcp.write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8(response).unwrap();
        assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
        assert!(
            response.ends_with(weft_broker::server::REFUSAL_BODY),
            "{response}"
        );
        // Both tokens are spoken; the client's first choice wins.
        let (ws, _) = ClientBuilder::new()
            .protocol("chat")
            .protocol(frame::PROTOCOL_LIGHT)
            .protocol(frame::PROTOCOL)
            .connect(&b.url())
            .await
            .unwrap();
        assert_eq!(ws.protocol(), Some(frame::PROTOCOL_LIGHT));
        // The client library refuses a server that accepts without the token
        // (a plain WebSocket server that is not a broker).
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_addr = plain.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = plain.accept().await.unwrap();
            let mut ws = weft_core::accept(tcp).await.unwrap();
            while let Some(Ok(_)) = ws.recv().await {}
        });
        let e = Client::connect(&format!("ws://{plain_addr}/"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, weft_broker::Error::NoProtocol("mbws.weft")),
            "{e}"
        );
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_connection_stays_open() {
    let b = start(ServerConfig {
        max_body: 16,
        ..ServerConfig::default()
    })
    .await;
    within(async {
        let mut ws = raw(&b, frame::PROTOCOL).await;
        let cases: &[(&str, ErrorCode)] = &[
            ("PUBLISH\n\n", ErrorCode::UNKNOWN_OPERATION),
            (
                "SEND\ndestination: /queue/a\n\nbody",
                ErrorCode::MISSING_HEADER,
            ),
            (
                "ACK\ndelivery-id: 1\ndelivery-id: 1\n\n",
                ErrorCode::DUPLICATE_HEADER,
            ),
            ("RECEIPT\nmessage-id: m\n\n", ErrorCode::UNKNOWN_OPERATION),
            (
                "CREDIT\nsubscription: nope\ncredit: 1\n\n",
                ErrorCode::UNKNOWN_SUBSCRIPTION,
            ),
            (
                "UNSUBSCRIBE\nsubscription: nope\n\n",
                ErrorCode::UNKNOWN_SUBSCRIPTION,
            ),
        ];
        for (text, code) in cases {
            let r = request(&mut ws, text).await;
            assert_eq!(error_code(&r), *code, "{text:?}: {r:?}");
        }
        let long_value = format!(
            "SEND\ndestination: /queue/a\nmessage-id: m-2\nx-big: {}\n\n",
            "v".repeat(1025)
        );
        let r = request(&mut ws, &long_value).await;
        assert_eq!(error_code(&r), ErrorCode::HEADER_TOO_LARGE);
        // Over this server's 16-byte body limit; the ERROR names the SEND.
        let r = request(
            &mut ws,
            "SEND\ndestination: /queue/a\nmessage-id: m-3\n\n01234567890123456",
        )
        .await;
        let Frame::Error(e) = &r else { panic!("{r:?}") };
        assert_eq!(
            (e.code, e.message_id.as_ref().map(|m| m.as_str())),
            (ErrorCode::BODY_TOO_LARGE, Some("m-3"))
        );
        let r = request(&mut ws, "SEND\ndestination: /queue/\nmessage-id: m-4\n\n").await;
        let Frame::Error(e) = &r else { panic!("{r:?}") };
        assert_eq!(
            (e.code, e.message_id.as_ref().map(|m| m.as_str())),
            (ErrorCode::INVALID_DESTINATION, Some("m-4"))
        );
        // Binary form: a header value that is not UTF-8; the reply is binary.
        ws.send(Message::binary(
            &b"\x04\x01\x0csubscription\x00\x02\xc3\x28"[..],
        ))
        .await
        .unwrap();
        let reply = next_message(&mut ws).await;
        assert!(matches!(reply, Message::Binary(_)));
        let r = frame::decode(&reply, &Limits::default()).unwrap();
        assert_eq!(error_code(&r), ErrorCode::INVALID_UTF8);
        // Still open and working.
        let r = request(
            &mut ws,
            "SEND\ndestination: /queue/a\nmessage-id: ok\n\nfine",
        )
        .await;
        assert_eq!(r, Frame::Receipt(Receipt::Message("ok".parse().unwrap())));

        // The client library checks destinations and sizes before sending.
        let c = Client::connect_with(
            &b.url(),
            ClientOptions {
                max_body: 1 << 20,
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap();
        let e = c.send("/nowhere", "x").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::INVALID_DESTINATION));
        let e = c.send("/queue/a", vec![0u8; 17]).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BODY_TOO_LARGE));
        // A body that is not UTF-8 reaches a text-form subscriber in binary.
        let text = Client::connect_with(
            &b.url(),
            ClientOptions {
                form: Form::Text,
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap();
        let mut s = text
            .subscribe("/queue/bin", SubscribeOptions::default())
            .await
            .unwrap();
        c.send("/queue/bin", vec![0xffu8, 0x00]).await.unwrap();
        assert_eq!(&recv(&mut s).await.body[..], &[0xff, 0x00]);
        assert_eq!(s.id().as_str(), "s1");
        let _ = AckMode::Auto;
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_connections_with_going_away() {
    let mut b = broker().await;
    within(async {
        let c = Client::connect(&b.url()).await.unwrap();
        let mut s = c
            .subscribe("/queue/s", SubscribeOptions::default())
            .await
            .unwrap();
        let mut ws = raw(&b, frame::PROTOCOL).await;
        b.stop.take().unwrap().send(()).unwrap();
        assert!(s.next().await.is_none(), "the stream ends");
        let mut close = None;
        while let Some(Ok(m)) = ws.recv().await {
            if let Message::Close(f) = m {
                close = f;
            }
        }
        assert_eq!(
            close.map(|f| f.code),
            Some(weft_core::CloseCode::GOING_AWAY)
        );
        (&mut b.task).await.unwrap().unwrap();
        assert!(
            Client::connect(&b.url()).await.is_err(),
            "no longer listening"
        );
        assert!(matches!(
            c.send("/queue/s", "x").await,
            Err(weft_broker::Error::Closed)
        ));
    })
    .await;
}

#[test]
fn binary_help_exits_zero() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft-broker"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--addr") && help.contains("--max-queue") && help.contains("--backend"),
        "{help}"
    );
    // A backend it does not know is a usage error, Redis that is not there
    // a failure; neither starts serving.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft-broker"))
        .args(["--addr", "127.0.0.1:0", "--backend", "postgres://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--backend must be"));
    // No threads at all is a usage error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft-broker"))
        .args(["--addr", "127.0.0.1:0", "--threads", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft-broker"))
        .args(["--addr", "127.0.0.1:0", "--backend"])
        .arg(format!("redis://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach Redis"));
}

#[cfg(unix)]
#[tokio::test]
async fn binary_serves_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft-broker"))
        // One thread (the current-thread runtime): serving and signals work
        // there too; scripts/broker.sh runs the default multi-thread one.
        .args([
            "--addr",
            "127.0.0.1:0",
            "--shutdown-grace",
            "2",
            "--threads",
            "1",
        ])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let line = within(lines.next_line()).await.unwrap().unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    within(async {
        let c = Client::connect(&url).await.unwrap();
        let mut s = c
            .subscribe("/queue/bin", SubscribeOptions::default())
            .await
            .unwrap();
        c.send("/queue/bin", "hi").await.unwrap();
        assert_eq!(body_str(&recv(&mut s).await), "hi");
        let pid = child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(s.next().await.is_none());
        let status = child.wait().await.unwrap();
        assert!(status.success(), "{status}");
    })
    .await;
}

#[tokio::test]
async fn a_consumer_that_never_acks_is_redelivered_to_another_after_the_idle_time() {
    let idle = Duration::from_millis(300);
    let b = start(ServerConfig {
        memory: MemoryConfig {
            redeliver_after: Some(idle),
            ..MemoryConfig::default()
        },
        ..ServerConfig::default()
    })
    .await;
    within(async {
        let lazy = Client::connect(&b.url()).await.unwrap();
        let mut sl = lazy
            .subscribe("/queue/q", SubscribeOptions::client_ack(1))
            .await
            .unwrap();
        let p = Client::connect(&b.url()).await.unwrap();
        // The idle time counts from the delivery, after this.
        let t0 = std::time::Instant::now();
        let id = p.send("/queue/q", "m").await.unwrap();
        let d = recv(&mut sl).await;
        let worker = Client::connect(&b.url()).await.unwrap();
        let mut sw = worker
            .subscribe("/queue/q", SubscribeOptions::client_ack(4))
            .await
            .unwrap();
        // Nothing for the worker until well into the idle time.
        let until = (t0 + idle * 2 / 3).saturating_duration_since(std::time::Instant::now());
        quiet(&mut sw, until.as_millis() as u64).await;
        let r = recv(&mut sw).await;
        assert!(t0.elapsed() >= idle, "{:?}", t0.elapsed());
        assert_eq!((r.message_id.clone(), r.redelivered), (id, true));
        sw.ack(&r).unwrap();
        // The lazy consumer's window stays used: the next message goes to
        // the worker; a late ACK returns the lazy one's credit, no ERROR.
        p.send("/queue/q", "next").await.unwrap();
        assert_eq!(body_str(&recv(&mut sw).await), "next");
        quiet(&mut sl, 50).await;
        sl.ack(&d).unwrap();
        p.send("/queue/q", "third").await.unwrap();
        let t = tokio::select! {
            d = recv(&mut sl) => d,
            d = recv(&mut sw) => d,
        };
        assert_eq!(body_str(&t), "third");
        let none = tokio::time::timeout(Duration::from_millis(100), lazy.next_error()).await;
        assert!(none.is_err(), "late ACK answered with {none:?}");
    })
    .await;
}

/// A raw WebSocket client that completes the handshake and then neither
/// reads nor writes: the broker pings it and drops it after the timeout.
#[tokio::test]
async fn keepalive_drops_a_silent_peer_and_keeps_a_live_one() {
    let keepalive = weft_broker::Keepalive {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(150),
    };
    let b = start(ServerConfig {
        keepalive: Some(keepalive),
        ..ServerConfig::default()
    })
    .await;
    within(async {
        let mut tcp = TcpStream::connect(b.addr).await.unwrap();
        tcp.write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Protocol: mbws.weft\r\n\r\n",
        )
        .await
        .unwrap();
        let t0 = std::time::Instant::now();
        // Read everything until the broker closes the TCP connection.
        let mut bytes = Vec::new();
        tcp.read_to_end(&mut bytes).await.unwrap();
        let elapsed = t0.elapsed();
        let text = String::from_utf8_lossy(&bytes);
        let end = text.find("\r\n\r\n").expect("101 response") + 4;
        assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
        let frames = &bytes[end..];
        // First a Ping (FIN + opcode 9, unmasked), later a Close.
        assert_eq!(frames.first(), Some(&0x89), "{frames:02x?}");
        assert!(frames.contains(&0x88), "no Close frame: {frames:02x?}");
        assert!(
            elapsed >= keepalive.interval + keepalive.timeout,
            "dropped too early: {elapsed:?}"
        );

        // A client library connection answers the Pings (weft replies to
        // them while it reads) and lives through many intervals.
        let c = Client::connect(&b.url()).await.unwrap();
        let mut s = c
            .subscribe("/queue/alive", SubscribeOptions::client_ack(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        c.send("/queue/alive", "still here").await.unwrap();
        assert_eq!(body_str(&recv(&mut s).await), "still here");
    })
    .await;
}

// ------------------------------------------------------------------ raw

async fn raw(b: &Broker, token: &str) -> WebSocket<weft_core::MaybeTlsStream> {
    let (ws, _) = ClientBuilder::new()
        .protocol(token)
        .connect(&b.url())
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some(token));
    ws
}

async fn next_message(ws: &mut WebSocket<weft_core::MaybeTlsStream>) -> Message {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.recv())
            .await
            .expect("no frame within 5 s")
            .expect("open")
            .expect("no error");
        if m.is_data() {
            return m;
        }
    }
}

async fn next_frame(ws: &mut WebSocket<weft_core::MaybeTlsStream>) -> Frame {
    frame::decode(&next_message(ws).await, &Limits::default())
        .expect("the broker sends valid frames")
}

/// Sends a text frame and returns the broker's answer.
async fn request(ws: &mut WebSocket<weft_core::MaybeTlsStream>, text: &str) -> Frame {
    ws.send(Message::text(text)).await.unwrap();
    next_frame(ws).await
}

fn error_code(f: &Frame) -> ErrorCode {
    match f {
        Frame::Error(ErrorFrame { code, .. }) => *code,
        f => panic!("expected ERROR, got {f:?}"),
    }
}

async fn next_error(c: &Client) -> ErrorFrame {
    tokio::time::timeout(Duration::from_secs(5), c.next_error())
        .await
        .expect("no ERROR within 5 s")
        .expect("connection open")
}
