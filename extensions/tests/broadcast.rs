//! Compress-once broadcast with permessage-deflate: prepared messages decode
//! on clients with and without context takeover, interleaved with ordinary
//! messages; one compression per group; slow and vanishing subscribers;
//! shutdown with 1001.

use std::sync::Arc;
use std::time::Duration;
use test_support::{duplex_pair, tcp_pair};
use tokio::time::timeout;
use weft_core::broadcast::{BroadcastConfig, SlowPolicy};
use weft_core::{
    Broadcast, BroadcastEncoding, ClientBuilder, CloseCode, Config, Message, PreparedMessage,
    ServerBuilder,
};
use weft_extensions::{PerMessageDeflate, WindowBits};

const T: Duration = Duration::from_secs(20);

fn server() -> ServerBuilder {
    ServerBuilder::new().extension(PerMessageDeflate::new())
}

/// Text that compresses well and repeats across messages, so a compressor
/// that kept its context would emit back-references into earlier messages.
fn chatty(i: usize) -> String {
    let mut s = String::new();
    for k in 0..20 {
        s.push_str(&format!(
            "{{\"user\":\"user-{}\",\"seq\":{},\"text\":\"the quick brown fox jumps over the lazy dog\"}}",
            k % 3,
            i
        ));
    }
    s
}

async fn recv_text<S>(ws: &mut weft_core::WebSocket<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match timeout(T, ws.recv()).await.expect("recv in time") {
        Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

#[tokio::test]
async fn prepared_decodes_with_and_without_takeover_interleaved() {
    // Three clients: context takeover (the default), server_no_context_takeover
    // requested, and no compression at all.
    let (mut c_take, mut s_take) = duplex_pair(
        ClientBuilder::new().extension(PerMessageDeflate::new()),
        server(),
    )
    .await;
    let (mut c_nct, mut s_nct) = duplex_pair(
        ClientBuilder::new().extension(PerMessageDeflate::new().server_no_context_takeover(true)),
        server(),
    )
    .await;
    let (mut c_plain, mut s_plain) = duplex_pair(ClientBuilder::new(), server()).await;
    assert!(matches!(
        s_take.broadcast_encoding(),
        BroadcastEncoding::Shared { .. }
    ));
    assert!(matches!(
        s_plain.broadcast_encoding(),
        BroadcastEncoding::Plain
    ));
    // Takeover or not, the compressor parameters match: one group.
    assert_eq!(
        s_take.broadcast_encoding().key(),
        s_nct.broadcast_encoding().key()
    );

    let hub = Broadcast::default();
    let mut subs = [
        hub.subscribe(&s_take),
        hub.subscribe(&s_nct),
        hub.subscribe(&s_plain),
    ];
    assert_eq!(hub.groups(), 2);
    let key = s_take.broadcast_encoding().key().unwrap().to_owned();
    let mut expected_wire = 0;

    for round in 0..6 {
        // An ordinary per-connection message (compressed with the
        // connection's own context), then a broadcast one, then another
        // ordinary one that repeats both.
        for ws in [&mut s_take, &mut s_nct, &mut s_plain] {
            ws.send(Message::text(chatty(round))).await.unwrap();
        }
        let report = hub
            .send(PreparedMessage::text(chatty(100 + round)))
            .unwrap();
        assert_eq!(report.delivered, 3);
        assert_eq!(report.groups, 2);
        assert_eq!(report.compressions, 1, "compressed once for both clients");
        let mut sent = Vec::new();
        for (sub, ws) in subs.iter_mut().zip([&mut s_take, &mut s_nct, &mut s_plain]) {
            let m = sub.recv().await.unwrap();
            ws.send_prepared(&m).await.unwrap();
            sent.push(m);
        }
        assert!(
            sent.iter().all(|m| Arc::ptr_eq(m, &sent[0])),
            "one prepared message for all"
        );
        let compressed = sent[0].encoded_len(&key).unwrap();
        assert!(
            compressed < sent[0].payload().len() / 3,
            "{compressed} bytes for {}",
            sent[0].payload().len()
        );
        assert_eq!(sent[0].compressions(), 1);
        let header = |n: usize| if n < 126 { 2 } else { 4 };
        let plain = sent[0].payload().len();
        expected_wire += 2 * (compressed + header(compressed)) + plain + header(plain);
        for ws in [&mut s_take, &mut s_nct, &mut s_plain] {
            ws.send(Message::text(chatty(round) + &chatty(100 + round)))
                .await
                .unwrap();
        }
        for c in [&mut c_take, &mut c_nct, &mut c_plain] {
            assert_eq!(recv_text(c).await, chatty(round));
            assert_eq!(recv_text(c).await, chatty(100 + round));
            assert_eq!(recv_text(c).await, chatty(round) + &chatty(100 + round));
        }
    }
    let stats = hub.stats();
    assert_eq!(stats.compressions, 6);
    assert_eq!(stats.deliveries, 18);
    let plain = chatty(100).len();
    assert_eq!(stats.payload_bytes, 18 * plain as u64);
    assert_eq!(stats.uncompressed_wire_bytes, 18 * (plain as u64 + 4));
    assert_eq!(stats.wire_bytes, expected_wire as u64);
    assert!(stats.compression_saved() > 0.3);
}

#[tokio::test]
async fn one_compression_per_parameter_group() {
    let mut pairs = Vec::new();
    // Two clients asking for a 10-bit server window, two with the default
    // (13 bits), one without compression: three groups, two compressing.
    for bits in [Some(10), Some(10), None, None] {
        let mut pmd = PerMessageDeflate::new();
        if let Some(b) = bits {
            pmd = pmd.server_max_window_bits(WindowBits::new(b).unwrap());
        }
        pairs.push(duplex_pair(ClientBuilder::new().extension(pmd), server()).await);
    }
    pairs.push(duplex_pair(ClientBuilder::new(), server()).await);
    let hub = Broadcast::default();
    let mut subs: Vec<_> = pairs.iter().map(|(_, s)| hub.subscribe(s)).collect();
    assert_eq!(hub.groups(), 3);
    for i in 0..5 {
        let r = hub.send(PreparedMessage::text(chatty(i))).unwrap();
        assert_eq!((r.groups, r.compressions, r.delivered), (3, 2, 5));
    }
    for i in 0..5 {
        for (sub, (c, s)) in subs.iter_mut().zip(pairs.iter_mut()) {
            let m = sub.recv().await.unwrap();
            s.send_prepared(&m).await.unwrap();
            assert_eq!(m.compressions(), 2, "delivery compressed nothing again");
            assert_eq!(recv_text(c).await, chatty(i));
        }
    }
    // A group that lost its members is no longer prepared for.
    drop(subs.drain(..2));
    assert_eq!(hub.groups(), 2);
    let r = hub.send(PreparedMessage::text(chatty(9))).unwrap();
    assert_eq!((r.groups, r.compressions, r.delivered), (2, 1, 3));
}

#[tokio::test]
async fn drop_oldest_keeps_the_queue_at_its_limit() {
    let (_c, s) = duplex_pair(ClientBuilder::new(), server()).await;
    let (_c2, s2) = duplex_pair(ClientBuilder::new(), server()).await;
    let hub = Broadcast::new(
        BroadcastConfig::new()
            .queue_limit(8)
            .slow(SlowPolicy::DropOldest),
    );
    let slow = hub.subscribe(&s);
    let mut fast = hub.subscribe(&s2);
    for i in 0..8 {
        let r = hub.send(PreparedMessage::text(format!("m{i}"))).unwrap();
        assert_eq!(r.dropped, 0, "at the limit, nothing dropped");
        assert_eq!(
            fast.recv().await.unwrap().payload(),
            format!("m{i}").as_bytes()
        );
    }
    assert_eq!(slow.queued(), 8);
    // One past the limit: the oldest goes.
    for i in 8..100 {
        let r = hub.send(PreparedMessage::text(format!("m{i}"))).unwrap();
        assert_eq!((r.dropped, r.delivered), (1, 2));
        assert_eq!(
            fast.recv().await.unwrap().payload(),
            format!("m{i}").as_bytes()
        );
        assert_eq!(slow.queued(), 8);
    }
    let mut slow = slow;
    assert_eq!(slow.recv().await.unwrap().payload(), &b"m92"[..]);
    assert_eq!(hub.stats().dropped, 92);
}

/// Spawns a server task running `sub` over `ws`, returning its result.
fn run<S>(
    hub: &Broadcast,
    mut ws: weft_core::WebSocket<S>,
) -> tokio::task::JoinHandle<Result<(), weft_core::Error>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut sub = hub.subscribe(&ws);
    let hub2 = hub.clone();
    tokio::spawn(async move {
        sub.run(&mut ws, |m| {
            if let Some(p) = PreparedMessage::from_message(m) {
                hub2.send(p).unwrap();
            }
        })
        .await
    })
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_disconnected_others_keep_receiving() {
    let config = Config::default().write_buffer_size(64 << 10);
    let hub = Broadcast::new(
        BroadcastConfig::new()
            .queue_limit(16)
            .slow(SlowPolicy::Disconnect(CloseCode::TRY_AGAIN_LATER)),
    );
    // Without compression: incompressible data fills the socket sooner,
    // and the queue limit does not depend on the encoding.
    let (mut slow_client, slow_server) = tcp_pair(
        ClientBuilder::new(),
        ServerBuilder::new().config(config.clone()),
    )
    .await;
    let slow_task = run(&hub, slow_server);
    let mut readers = Vec::new();
    const N: usize = 400;
    for _ in 0..3 {
        let (mut c, s) = tcp_pair(
            ClientBuilder::new(),
            ServerBuilder::new().config(config.clone()),
        )
        .await;
        readers.push(run(&hub, s));
        readers.push(tokio::spawn(async move {
            for i in 0..N {
                match timeout(T, c.recv()).await.expect("in time") {
                    Some(Ok(Message::Binary(b))) => {
                        assert_eq!(b.len(), 32 << 10);
                        assert_eq!(b[0], i as u8);
                    }
                    other => panic!("message {i}: {other:?}"),
                }
            }
            c.close(CloseCode::NORMAL, "").await.unwrap();
            Ok(())
        }));
    }
    let mut disconnected_at = None;
    for i in 0..N {
        let mut data = vec![0u8; 32 << 10];
        data[0] = i as u8;
        let r = hub.send(PreparedMessage::binary(data)).unwrap();
        if r.disconnected > 0 {
            assert_eq!(r.disconnected, 1);
            disconnected_at.get_or_insert(i);
        }
        // Pace the sender so the readers keep up (they run on this runtime).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // 12.5 MiB sent: more than a loopback socket, the 64 KiB write buffer
    // and 16 queued messages hold.
    let at = disconnected_at.expect("the slow subscriber was disconnected");
    assert!(at >= 16, "not before its queue was full ({at})");
    assert_eq!(hub.stats().disconnected, 1);
    for r in readers {
        timeout(T, r).await.unwrap().unwrap().unwrap();
    }
    // The slow client, reading at last, finds the data it was sent before
    // the limit, then the Close with 1013.
    let end = timeout(T, async {
        loop {
            match slow_client.recv().await {
                Some(Ok(Message::Close(f))) => break f,
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(end.unwrap().code, CloseCode::TRY_AGAIN_LATER);
    timeout(T, slow_task).await.unwrap().unwrap().unwrap();
    assert_eq!(hub.subscribers(), 0);
}

#[tokio::test]
async fn a_client_that_vanishes_mid_broadcast_leaves_the_others_unaffected() {
    let hub = Broadcast::default();
    let (gone, gone_server) = tcp_pair(
        ClientBuilder::new().extension(PerMessageDeflate::new()),
        server(),
    )
    .await;
    let gone_task = run(&hub, gone_server);
    let (mut c, s) = tcp_pair(
        ClientBuilder::new().extension(PerMessageDeflate::new()),
        server(),
    )
    .await;
    let task = run(&hub, s);
    let mut gone = Some(gone);
    for i in 0..50 {
        if i == 20 {
            // Dropped without a Close: the socket just goes away.
            gone.take();
        }
        hub.send(PreparedMessage::text(chatty(i))).unwrap();
        assert_eq!(recv_text(&mut c).await, chatty(i));
    }
    // The vanished client's task ends with an error and leaves the hub.
    assert!(timeout(T, gone_task).await.unwrap().unwrap().is_err());
    assert_eq!(hub.subscribers(), 1);
    // A message from the remaining client is broadcast (to itself).
    c.send(Message::text("hello")).await.unwrap();
    assert_eq!(recv_text(&mut c).await, "hello");
    assert_eq!(hub.shutdown(), 1);
    match timeout(T, c.recv()).await.unwrap() {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::GOING_AWAY),
        other => panic!("{other:?}"),
    }
    timeout(T, task).await.unwrap().unwrap().unwrap();
    timeout(T, hub.wait_empty()).await.unwrap();
}

#[tokio::test]
async fn shutdown_flushes_queued_messages_before_1001() {
    let hub = Broadcast::default();
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (c, s) = tcp_pair(
            ClientBuilder::new().extension(PerMessageDeflate::new()),
            server(),
        )
        .await;
        tasks.push(run(&hub, s));
        clients.push(c);
    }
    for i in 0..10 {
        hub.send(PreparedMessage::text(chatty(i))).unwrap();
    }
    assert_eq!(hub.shutdown(), 3);
    let r = hub.send(PreparedMessage::text("late")).unwrap();
    assert_eq!(r.delivered, 0, "nothing after shutdown");
    for c in &mut clients {
        for i in 0..10 {
            assert_eq!(recv_text(c).await, chatty(i));
        }
        match timeout(T, c.recv()).await.unwrap() {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::GOING_AWAY),
            other => panic!("{other:?}"),
        }
        assert!(timeout(T, c.recv()).await.unwrap().is_none());
    }
    for t in tasks {
        timeout(T, t).await.unwrap().unwrap().unwrap();
    }
    timeout(T, hub.wait_empty()).await.unwrap();
    // Subscribing to a closed hub ends at once with its Close.
    let (_c, s) = duplex_pair(ClientBuilder::new(), server()).await;
    let mut late = hub.subscribe(&s);
    assert_eq!(late.recv().await.unwrap_err().code, CloseCode::GOING_AWAY);
}

#[tokio::test]
async fn queue_limit_exactly_and_one_past_with_an_unsendable_policy_code() {
    let (mut c, s) = duplex_pair(ClientBuilder::new(), server()).await;
    // 1006 may not be sent: the subscriber is closed with 1008 instead.
    let hub = Broadcast::new(
        BroadcastConfig::new()
            .queue_limit(2)
            .slow(SlowPolicy::Disconnect(CloseCode::ABNORMAL)),
    );
    let task = run(&hub, s);
    // Nothing runs the subscriber until this test yields: two fit, the
    // third is one past the limit.
    let r1 = hub.send(PreparedMessage::text("one")).unwrap();
    let r2 = hub.send(PreparedMessage::text("two")).unwrap();
    assert_eq!((r1.disconnected, r2.disconnected), (0, 0));
    let r3 = hub.send(PreparedMessage::text("three")).unwrap();
    assert_eq!((r3.disconnected, r3.delivered), (1, 0));
    match timeout(T, c.recv()).await.unwrap() {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::POLICY_VIOLATION),
        other => panic!("{other:?}"),
    }
    timeout(T, task).await.unwrap().unwrap().unwrap();
    assert_eq!(hub.stats().disconnected, 1);
}
