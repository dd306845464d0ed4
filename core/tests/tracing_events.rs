//! The `tracing` events of the tokio layer, caught by a small recording
//! subscriber: open with the negotiated subprotocol, close with the codes
//! and counters, and a protocol error with its close code.

use std::sync::{Arc, Mutex};
use test_support::{client_frame, duplex_pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use weft_core::{ClientBuilder, CloseCode, Message, ServerBuilder};

/// Every event as "LEVEL message field=value ...".
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.push_str(&format!(" {value:?}"));
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        *m.level() <= Level::DEBUG
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut line = Line(e.metadata().level().to_string());
        e.record(&mut line);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Recorder {
    fn find(&self, needle: &[&str]) -> String {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        lines
            .iter()
            .find(|l| needle.iter().all(|n| l.contains(n)))
            .cloned()
            .unwrap_or_else(|| panic!("no event with {needle:?} in {lines:#?}"))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn open_and_close_events_carry_negotiation_and_codes() {
    let rec = Recorder::default();
    let _guard = tracing::subscriber::set_default(rec.clone());
    let (mut c, mut s) = duplex_pair(
        ClientBuilder::new().protocol("chat"),
        ServerBuilder::new().protocols(&["chat"]),
    )
    .await;
    rec.find(&["DEBUG", "websocket upgrade request", "path=\"/test\""]);
    rec.find(&["DEBUG", "websocket connect", "ws://localhost/test"]);
    rec.find(&[
        "websocket open: negotiated",
        "role=Server",
        "protocol=\"chat\"",
    ]);
    c.send(Message::text("hello")).await.unwrap();
    assert!(matches!(s.recv().await, Some(Ok(Message::Text(_)))));
    let server = tokio::spawn(async move { while s.recv().await.is_some() {} });
    c.close(CloseCode::GOING_AWAY, "bye").await.unwrap();
    server.await.unwrap();
    // The server's connection: it received 1001 "bye" and one message.
    let closed = rec.find(&["websocket closed", "peer_code=1001"]);
    assert!(closed.contains("peer_reason=\"bye\""), "{closed}");
    assert!(closed.contains("messages_received=1"), "{closed}");
    assert!(closed.contains("duration_ms="), "{closed}");
    drop(c);
    let client_closed = rec.find(&["websocket closed", "sent_code=1001"]);
    assert!(client_closed.contains("messages_sent=1"), "{client_closed}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_protocol_error_is_reported_with_its_close_code() {
    let rec = Recorder::default();
    let _guard = tracing::subscriber::set_default(rec.clone());
    let (mut peer, b) = tokio::io::duplex(4096);
    let mut server = weft_core::WebSocket::from_parts(
        b,
        weft_core::Role::Server,
        weft_core::ext::Negotiated::none(),
        None,
        &weft_core::Config::default(),
        Default::default(),
    );
    // A text frame that is not UTF-8: 1007.
    peer.write_all(&client_frame(0x81, &[0xff, 0xfe]))
        .await
        .unwrap();
    assert!(matches!(server.recv().await, Some(Err(_))));
    let mut buf = [0u8; 16];
    let n = peer.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..4.min(n)], &[0x88, 0x02, 0x03, 0xef]);
    rec.find(&["INFO", "websocket protocol error", "close_code=1007"]);
}
