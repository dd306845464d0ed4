//! The codec against PROTOCOL.md's examples, round-trip properties, and
//! bad input.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// The specification: its examples are the test vectors.
const SPEC: &str = include_str!("../../PROTOCOL.md");

/// One fenced block of PROTOCOL.md with an `mbws-example` or `mbws-bad`
/// info string: its name and its `key: value` entries (continuation lines
/// are indented).
#[derive(Debug)]
struct Block {
    kind: String,
    name: String,
    entries: BTreeMap<String, String>,
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = SPEC.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut words = info.split_whitespace();
        let kind = words.next().unwrap_or("");
        if kind != "mbws-example" && kind != "mbws-bad" {
            // Skip to the end of any other block.
            if !info.is_empty() {
                for l in lines.by_ref() {
                    if l.starts_with("```") {
                        break;
                    }
                }
            }
            continue;
        }
        let name = words.next().expect("block has a name").to_owned();
        let mut entries = BTreeMap::new();
        let mut key: Option<String> = None;
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            if l.starts_with(' ') {
                let k = key.as_ref().expect("continuation after a key");
                let v: &mut String = entries.get_mut(k).unwrap();
                v.push(' ');
                v.push_str(l.trim());
            } else if let Some((k, v)) = l.split_once(':') {
                entries.insert(k.to_owned(), v.trim().to_owned());
                key = Some(k.to_owned());
            }
        }
        out.push(Block {
            kind: kind.to_owned(),
            name,
            entries,
        });
    }
    out
}

/// The byte notation of PROTOCOL.md: hex bytes and quoted runs (with `\n`,
/// `\\`, `\"` escapes), a run optionally repeated with `*N`.
fn bytes_of(notation: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = notation.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {}
            '"' => {
                let mut run = Vec::new();
                loop {
                    match chars.next().expect("unterminated string") {
                        '"' => break,
                        '\\' => match chars.next().expect("escape") {
                            'n' => run.push(b'\n'),
                            '\\' => run.push(b'\\'),
                            '"' => run.push(b'"'),
                            e => panic!("unknown escape \\{e}"),
                        },
                        c => {
                            let mut buf = [0; 4];
                            run.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
                let mut times = 1;
                if chars.peek() == Some(&'*') {
                    chars.next();
                    let mut n = String::new();
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        n.push(*d);
                        chars.next();
                    }
                    times = n.parse().expect("repeat count");
                }
                for _ in 0..times {
                    out.extend_from_slice(&run);
                }
            }
            h => {
                let l = chars.next().expect("two hex digits");
                let byte = u8::from_str_radix(&format!("{h}{l}"), 16).expect("hex byte");
                out.push(byte);
            }
        }
    }
    out
}

fn dest(s: &str) -> Destination {
    Destination::new(s).unwrap()
}
fn mid(s: &str) -> MessageId {
    MessageId::new(s).unwrap()
}
fn sub(s: &str) -> SubscriptionId {
    SubscriptionId::new(s).unwrap()
}

/// What each example of PROTOCOL.md must decode to.
fn expected() -> BTreeMap<&'static str, Frame> {
    let text_plain = Headers::new().with("content-type", "text/plain").unwrap();
    BTreeMap::from([
        (
            "send",
            Frame::Send(SendFrame {
                destination: dest("/queue/orders"),
                message_id: mid("m-1"),
                headers: text_plain.clone(),
                body: Bytes::from_static(b"hello"),
            }),
        ),
        (
            "send-bytes",
            Frame::Send(SendFrame {
                destination: dest("/topic/prices.eu"),
                message_id: mid("p-42"),
                headers: Headers::new(),
                body: Bytes::from_static(&[0x00, 0xff, 0x10]),
            }),
        ),
        ("receipt", Frame::Receipt(Receipt::Message(mid("m-1")))),
        (
            "receipt-subscription",
            Frame::Receipt(Receipt::Subscription(sub("s1"))),
        ),
        (
            "subscribe",
            Frame::Subscribe(SubscribeFrame {
                subscription: sub("s1"),
                destination: dest("/queue/orders"),
                ack: AckMode::Client,
                credit: 2,
            }),
        ),
        (
            "message",
            Frame::Message(MessageFrame {
                subscription: sub("s1"),
                delivery_id: 1,
                destination: dest("/queue/orders"),
                message_id: mid("m-1"),
                redelivered: false,
                headers: text_plain,
                body: Bytes::from_static(b"hello"),
            }),
        ),
        (
            "message-redelivered",
            Frame::Message(MessageFrame {
                subscription: sub("s1"),
                delivery_id: 3,
                destination: dest("/queue/orders"),
                message_id: mid("m-1"),
                redelivered: true,
                headers: Headers::new(),
                body: Bytes::from_static(b"hello"),
            }),
        ),
        ("ack", Frame::Ack { delivery_id: 1 }),
        ("nack", Frame::Nack { delivery_id: 3 }),
        (
            "credit",
            Frame::Credit {
                subscription: sub("s1"),
                credit: 16,
            },
        ),
        (
            "unsubscribe",
            Frame::Unsubscribe {
                subscription: sub("s1"),
            },
        ),
        (
            "error",
            Frame::Error(ErrorFrame {
                code: ErrorCode::UNKNOWN_DELIVERY,
                message: "unknown delivery id 9".into(),
                message_id: None,
                delivery_id: Some(9),
                subscription: None,
            }),
        ),
    ])
}

fn limits() -> Limits {
    Limits::default()
}

#[test]
fn every_protocol_example_decodes_and_encodes_in_both_forms() {
    let expected = expected();
    let examples: Vec<_> = blocks()
        .into_iter()
        .filter(|b| b.kind == "mbws-example")
        .collect();
    let names: Vec<&str> = examples.iter().map(|b| b.name.as_str()).collect();
    let mut want: Vec<&str> = expected.keys().copied().collect();
    let mut got = names.clone();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "PROTOCOL.md examples and this test's frames differ"
    );
    let mut ops = std::collections::HashSet::new();
    for b in &examples {
        let frame = &expected[b.name.as_str()];
        ops.insert(frame.operation());
        let binary = bytes_of(
            b.entries
                .get("binary")
                .expect("every example has a binary form"),
        );
        assert_eq!(
            decode_binary(Bytes::from(binary.clone()), &limits()).as_ref(),
            Ok(frame),
            "{}: binary form",
            b.name
        );
        let enc = encode(frame, Form::Binary, &limits()).unwrap();
        assert_eq!(
            enc,
            Message::Binary(binary.into()),
            "{}: binary encoding",
            b.name
        );
        match b.entries.get("text") {
            Some(t) => {
                let text = String::from_utf8(bytes_of(t)).unwrap();
                let msg = Message::text(text.clone());
                assert_eq!(
                    decode(&msg, &limits()).as_ref(),
                    Ok(frame),
                    "{}: text",
                    b.name
                );
                let enc = encode(frame, Form::Text, &limits()).unwrap();
                assert_eq!(enc, Message::text(text), "{}: text encoding", b.name);
            }
            None => assert_eq!(
                encode(frame, Form::Text, &limits()),
                Err(FrameError::TextBodyNotUtf8),
                "{}: binary-only examples have bodies that are not UTF-8",
                b.name
            ),
        }
    }
    assert_eq!(ops.len(), 9, "every operation has an example");
}

#[test]
fn every_bad_example_fails_with_its_code() {
    let bad: Vec<_> = blocks()
        .into_iter()
        .filter(|b| b.kind == "mbws-bad")
        .collect();
    assert!(bad.len() >= 20, "{} bad examples", bad.len());
    for b in bad {
        let code: u16 = b.entries["code"].parse().unwrap();
        let msg = match (b.entries.get("text"), b.entries.get("binary")) {
            (Some(t), None) => Message::text(String::from_utf8(bytes_of(t)).unwrap()),
            (None, Some(h)) => Message::binary(bytes_of(h)),
            _ => panic!("{}: exactly one of text and binary", b.name),
        };
        let result = match b.entries.get("direction").map(String::as_str) {
            Some("to-broker") => {
                assert!(decode(&msg, &limits()).is_ok(), "{}: valid frame", b.name);
                decode_from_client(&msg, &limits())
            }
            None => decode(&msg, &limits()),
            Some(d) => panic!("unknown direction {d}"),
        };
        let err = result.expect_err(&b.name);
        assert_eq!(err.code().as_u16(), code, "{}: {err}", b.name);
        // The error names itself, and a text form survives being re-read
        // from raw bytes (the same check without the WebSocket's UTF-8).
        assert!(!err.to_string().is_empty());
        if let (Message::Text(t), None) = (&msg, b.entries.get("direction")) {
            assert_eq!(
                decode_text(t.as_bytes().clone(), &limits()).unwrap_err(),
                err
            );
        }
    }
}

#[test]
fn text_header_not_utf8_from_raw_bytes() {
    let raw = Bytes::from_static(b"UNSUBSCRIBE\nsubscription: s\xc3\x28\n\n");
    assert_eq!(decode_text(raw, &limits()), Err(FrameError::InvalidUtf8));
    assert_eq!(FrameError::InvalidUtf8.code(), ErrorCode::INVALID_UTF8);
}

#[test]
fn body_limit_is_exact() {
    let small = Limits { max_body: 4 };
    let at = Message::text("SEND\ndestination: /queue/a\nmessage-id: m\n\nabcd");
    let over = Message::text("SEND\ndestination: /queue/a\nmessage-id: m\n\nabcde");
    assert!(decode(&at, &small).is_ok());
    assert_eq!(
        decode(&over, &small),
        Err(FrameError::BodyTooLarge { len: 5, max: 4 })
    );
    let f = decode(&over, &limits()).unwrap();
    assert_eq!(
        encode(&f, Form::Binary, &small),
        Err(FrameError::BodyTooLarge { len: 5, max: 4 })
    );
}

#[test]
fn header_limits_are_exact() {
    let value = |n: usize| {
        format!(
            "SEND\ndestination: /queue/a\nmessage-id: m\nx-v: {}\n\n",
            "v".repeat(n)
        )
    };
    assert!(decode(&Message::text(value(1024)), &limits()).is_ok());
    assert_eq!(
        decode(&Message::text(value(1025)), &limits())
            .unwrap_err()
            .code(),
        ErrorCode::HEADER_TOO_LARGE
    );
    let name = |n: usize| format!("UNSUBSCRIBE\nsubscription: s\n{}: v\n\n", "n".repeat(n));
    // 64 bytes is a valid name (the frame then fails for the unexpected
    // header), 65 is over the limit.
    assert_eq!(
        decode(&Message::text(name(64)), &limits())
            .unwrap_err()
            .code(),
        ErrorCode::INVALID_HEADER
    );
    assert_eq!(
        decode(&Message::text(name(65)), &limits())
            .unwrap_err()
            .code(),
        ErrorCode::HEADER_TOO_LARGE
    );
    // 24 application headers pass, 25 do not; 33 fields in all do not.
    let app = |n: usize| {
        let mut s = String::from("SEND\ndestination: /queue/a\nmessage-id: m\n");
        for i in 0..n {
            s.push_str(&format!("x-{i}: v\n"));
        }
        s.push('\n');
        Message::text(s)
    };
    assert!(decode(&app(24), &limits()).is_ok());
    assert_eq!(
        decode(&app(25), &limits()).unwrap_err(),
        FrameError::TooManyHeaders {
            count: 25,
            limit: 24
        }
    );
    assert_eq!(
        decode(&app(31), &limits()).unwrap_err().code(),
        ErrorCode::HEADER_TOO_LARGE
    );
    assert!(matches!(
        decode(&app(31), &limits()).unwrap_err(),
        FrameError::TooManyHeaders {
            count: 33,
            limit: 32
        }
    ));
}

#[test]
fn destinations() {
    for ok in [
        "/queue/a",
        "/topic/a.b-c_D9",
        "/queue/a/b/c",
        &format!("/queue/{}", "x".repeat(200)),
    ] {
        let d = Destination::new(ok).unwrap();
        assert_eq!(d.as_str(), ok);
    }
    assert_eq!(dest("/queue/x").kind(), DestinationKind::Queue);
    assert_eq!(dest("/topic/x/y").kind(), DestinationKind::Topic);
    assert_eq!(dest("/topic/x/y").name(), "x/y");
    for bad in [
        "",
        "/queue",
        "/queue/",
        "queue/a",
        "/Queue/a",
        "/queue//a",
        "/queue/a/",
        "/queue/a b",
        "/queue/é",
        "/inbox/a",
        &format!("/queue/{}", "x".repeat(201)),
    ] {
        let e = Destination::new(bad).unwrap_err();
        assert_eq!(e.code(), ErrorCode::INVALID_DESTINATION, "{bad:?}");
    }
}

#[test]
fn references_survive_a_bad_frame() {
    // A SEND to an invalid destination still names its message id.
    let msg = Message::text("SEND\nmessage-id: m-7\ndestination: /nowhere\n\n");
    assert_eq!(
        decode(&msg, &limits()).unwrap_err().code(),
        ErrorCode::INVALID_DESTINATION
    );
    assert_eq!(references(&msg).message_id, Some(mid("m-7")));
    // The fields before a broken one are still read, in both forms.
    let msg = Message::text("ACK\ndelivery-id: 12\nbroken line\n\n");
    assert_eq!(references(&msg).delivery_id, Some(12));
    let msg = Message::binary(bytes_of(
        r#"03 02 0c "subscription" 00 02 "s9" 01 "X" 00 00"#,
    ));
    assert_eq!(
        decode(&msg, &limits()).unwrap_err().code(),
        ErrorCode::MALFORMED
    );
    assert_eq!(references(&msg).subscription, Some(sub("s9")));
    assert_eq!(
        references(&Message::Ping(Bytes::new())),
        References::default()
    );
}

#[test]
fn misc_rejections() {
    let cases: &[(&str, u16)] = &[
        ("", 100),
        ("SEND", 100),
        ("send\n\n", 101),
        ("RECEIPT\n\n", 102),
        ("RECEIPT\nmessage-id: m\nsubscription: s\n\n", 104),
        ("SUBSCRIBE\nsubscription: s\ndestination: /queue/a\n\n", 102),
        (
            "SUBSCRIBE\nsubscription: s\ndestination: /queue/a\ncredit: 4294967296\n\n",
            104,
        ),
        ("CREDIT\nsubscription: s\ncredit: 0\n\n", 104),
        ("CREDIT\nsubscription: bad id\ncredit: 1\n\n", 104),
        ("ACK\ndelivery-id: 18446744073709551616\n\n", 104),
        ("ACK\ndelivery-id: +1\n\n", 104),
        ("ACK\nDelivery-Id: 1\n\n", 100),
        ("ACK\n: 1\n\n", 100),
        ("ACK\ndelivery-id:1\n\n", 100),
        ("ACK\ndelivery-id: 1\r\n\n", 104),
        ("ERROR\ncode: 42\n\n", 104),
        ("ERROR\nmessage: x\n\n", 102),
        ("SEND\ndestination: /queue/a\nmessage-id: a b\n\n", 104),
        (
            "SEND\ndestination: /queue/a\nmessage-id: m\nx-a: 1\nx-a: 2\n\n",
            103,
        ),
        (
            "MESSAGE\nsubscription: s\ndelivery-id: 1\ndestination: /queue/a\nmessage-id: m\nredelivered: yes\n\n",
            104,
        ),
    ];
    for (text, code) in cases {
        let err = decode(&Message::text(*text), &limits()).unwrap_err();
        assert_eq!(err.code().as_u16(), *code, "{text:?}: {err}");
    }
    let binary: &[(&[u8], u16)] = &[
        (b"", 100),
        (b"\x06", 100),
        (b"\x00\x00", 101),
        (b"\x06\x01\x00", 100),
        (b"\x06\x01\x0bdelivery-id", 100),
        (b"\x06\x01\x0bdelivery-id\x04\x01", 105),
        (b"\x06\x01\x02\xff\xfe\x00\x00", 107),
        (b"\x06\x00", 102),
        (b"\x04\x01\x0csubscription\x00\x02s1extra", 100),
    ];
    for (bytes, code) in binary {
        let err = decode(&Message::binary(bytes.to_vec()), &limits()).unwrap_err();
        assert_eq!(err.code().as_u16(), *code, "{bytes:?}: {err}");
    }
    assert_eq!(
        decode(&Message::Close(None), &limits()).unwrap_err().code(),
        ErrorCode::MALFORMED
    );
}

#[test]
fn error_frames_are_cleaned_on_encode() {
    let e = Frame::Error(ErrorFrame {
        code: ErrorCode::INTERNAL,
        message: format!("line1\nline2{}", "x".repeat(2000)),
        message_id: None,
        delivery_id: None,
        subscription: Some(sub("s")),
    });
    for form in [Form::Text, Form::Binary] {
        let msg = encode(&e, form, &limits()).unwrap();
        let Frame::Error(back) = decode(&msg, &limits()).unwrap() else {
            panic!()
        };
        assert!(back.message.starts_with("line1 line2x"));
        assert_eq!(back.message.len(), MAX_VALUE_LEN);
        assert_eq!(back.subscription, Some(sub("s")));
    }
    assert_eq!(ErrorCode::QUEUE_FULL.to_string(), "300 (queue-full)");
    assert_eq!(ErrorCode::new(999).unwrap().name(), None);
    assert_eq!(ErrorCode::new(99), None);
    assert_eq!(Profile::from_token("mbws.weft"), Some(Profile::Full));
    assert_eq!(Profile::Light.token(), "mblws.weft");
    assert_eq!(Profile::from_token("MBWS.huawei.com"), None);
}

// ------------------------------------------------------------- properties

fn arb_destination() -> impl Strategy<Value = Destination> {
    (
        prop::bool::ANY,
        prop::collection::vec("[A-Za-z0-9_.-]{1,12}", 1..4),
    )
        .prop_map(|(queue, segs)| {
            let kind = if queue { "/queue/" } else { "/topic/" };
            Destination::new(&format!("{kind}{}", segs.join("/"))).unwrap()
        })
}

fn arb_message_id() -> impl Strategy<Value = MessageId> {
    "[!-~]{1,40}".prop_map(|s| MessageId::new(&s).unwrap())
}

fn arb_subscription() -> impl Strategy<Value = SubscriptionId> {
    "[A-Za-z0-9_.-]{1,20}".prop_map(|s| SubscriptionId::new(&s).unwrap())
}

fn arb_value() -> impl Strategy<Value = String> {
    // Any characters but the forbidden controls, including spaces at either
    // end, tabs, colons and non-ASCII.
    "[^\\x00-\\x08\\x0a-\\x1f\\x7f]{0,40}"
}

fn arb_headers() -> impl Strategy<Value = Headers> {
    prop::collection::vec(("x-[a-z0-9-]{0,10}", arb_value()), 0..6).prop_map(|items| {
        let mut h = Headers::new();
        for (n, v) in items {
            let _ = h.insert(n, v); // duplicates are skipped
        }
        h
    })
}

fn arb_body() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        ".{0,64}".prop_map(Bytes::from),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
    ]
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            arb_destination(),
            arb_message_id(),
            arb_headers(),
            arb_body()
        )
            .prop_map(
                |(destination, message_id, headers, body)| Frame::Send(SendFrame {
                    destination,
                    message_id,
                    headers,
                    body
                })
            ),
        arb_message_id().prop_map(|m| Frame::Receipt(Receipt::Message(m))),
        arb_subscription().prop_map(|s| Frame::Receipt(Receipt::Subscription(s))),
        (
            arb_subscription(),
            arb_destination(),
            prop::bool::ANY,
            any::<u32>()
        )
            .prop_map(|(subscription, destination, client, credit)| {
                Frame::Subscribe(SubscribeFrame {
                    subscription,
                    destination,
                    ack: if client {
                        AckMode::Client
                    } else {
                        AckMode::Auto
                    },
                    credit,
                })
            }),
        arb_subscription().prop_map(|subscription| Frame::Unsubscribe { subscription }),
        (
            arb_subscription(),
            any::<u64>(),
            arb_destination(),
            arb_message_id(),
            prop::bool::ANY,
            arb_headers(),
            arb_body()
        )
            .prop_map(
                |(
                    subscription,
                    delivery_id,
                    destination,
                    message_id,
                    redelivered,
                    headers,
                    body,
                )| {
                    Frame::Message(MessageFrame {
                        subscription,
                        delivery_id,
                        destination,
                        message_id,
                        redelivered,
                        headers,
                        body,
                    })
                }
            ),
        any::<u64>().prop_map(|delivery_id| Frame::Ack { delivery_id }),
        any::<u64>().prop_map(|delivery_id| Frame::Nack { delivery_id }),
        (arb_subscription(), 1..=u32::MAX).prop_map(|(subscription, credit)| Frame::Credit {
            subscription,
            credit
        }),
        (
            100u16..=999,
            arb_value(),
            prop::option::of(arb_message_id()),
            prop::option::of(any::<u64>()),
            prop::option::of(arb_subscription())
        )
            .prop_map(|(code, message, message_id, delivery_id, subscription)| {
                Frame::Error(ErrorFrame {
                    code: ErrorCode::new(code).unwrap(),
                    message,
                    message_id,
                    delivery_id,
                    subscription,
                })
            }),
    ]
}

proptest! {
    #[test]
    fn binary_round_trip(frame in arb_frame()) {
        let msg = encode(&frame, Form::Binary, &limits()).unwrap();
        prop_assert_eq!(decode(&msg, &limits()), Ok(frame));
    }

    #[test]
    fn text_round_trip(frame in arb_frame()) {
        match encode(&frame, Form::Text, &limits()) {
            Ok(msg) => prop_assert_eq!(decode(&msg, &limits()), Ok(frame)),
            Err(e) => {
                prop_assert_eq!(e, FrameError::TextBodyNotUtf8);
                let body = match &frame {
                    Frame::Send(s) => &s.body,
                    Frame::Message(m) => &m.body,
                    _ => unreachable!(),
                };
                prop_assert!(std::str::from_utf8(body).is_err());
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&Message::binary(bytes.clone()), &limits());
        let _ = decode_text(Bytes::from(bytes.clone()), &limits());
        let _ = references(&Message::binary(bytes));
    }

    #[test]
    fn mutated_frames_never_panic(frame in arb_frame(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        for form in [Form::Binary, Form::Text] {
            let Ok(msg) = encode(&frame, form, &limits()) else { continue };
            let mut raw = match &msg {
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                _ => unreachable!(),
            };
            let i = at.index(raw.len());
            raw[i] = byte;
            let _ = decode_binary(Bytes::from(raw.clone()), &limits());
            let _ = decode_text(Bytes::from(raw.clone()), &limits());
            raw.truncate(i);
            let _ = decode_binary(Bytes::from(raw.clone()), &limits());
            let _ = decode_text(Bytes::from(raw), &limits());
        }
    }
}
