//! The core's broadcast hooks with a toy extension that is not ours: a
//! per-message XOR whose shared encoder XORs without state. A prepared
//! message is encoded once, fragmented by `send_frame_size` with the RSV bit
//! on the first frame only, tells the connection's own encoder
//! (`shared_sent`), and decodes on the peer; connections without an
//! extension get the plain payload by reference; an extension without a
//! shared encoder gets per-connection encoding.

use bytes::BytesMut;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use test_support::duplex_pair;
use weft_core::ext::{
    Acceptance, Extension, ExtensionError, ExtensionFactory, ExtensionHeader, MessageDecoder,
    MessageEncoder, NegotiationError, SharedEncoder,
};
use weft_core::{
    BroadcastEncoding, ClientBuilder, Config, Message, OpCode, PreparedMessage, Rsv, ServerBuilder,
};

const KEY: u8 = 0x5a;

#[derive(Clone, Default)]
struct Counters {
    shared_encodes: Arc<AtomicUsize>,
    shared_sent: Arc<AtomicUsize>,
}

/// `x-xor`; `shared` says whether the encoder offers a shared encoder.
#[derive(Clone, Default)]
struct Xor {
    shared: bool,
    counters: Counters,
}

struct Shared(Counters);
impl SharedEncoder for Shared {
    fn key(&self) -> &str {
        "x-xor"
    }
    fn encode(&self, _: OpCode, p: &[u8], out: &mut BytesMut) -> Result<bool, ExtensionError> {
        self.0.shared_encodes.fetch_add(1, Ordering::Relaxed);
        out.extend(p.iter().map(|b| b ^ KEY));
        Ok(true)
    }
}

struct Coder(Xor);
impl MessageEncoder for Coder {
    fn encode(&mut self, i: &[u8], _: bool, out: &mut BytesMut) -> Result<(), ExtensionError> {
        out.extend(i.iter().map(|b| b ^ KEY));
        Ok(())
    }
    fn shared(&self) -> Option<Arc<dyn SharedEncoder>> {
        self.0
            .shared
            .then(|| Arc::new(Shared(self.0.counters.clone())) as Arc<dyn SharedEncoder>)
    }
    fn shared_sent(&mut self) {
        self.0.counters.shared_sent.fetch_add(1, Ordering::Relaxed);
    }
}
impl MessageDecoder for Coder {
    fn decode(
        &mut self,
        i: &[u8],
        _: bool,
        budget: usize,
        out: &mut BytesMut,
    ) -> Result<(), ExtensionError> {
        if i.len() > budget {
            return Err(ExtensionError::too_big("over budget"));
        }
        out.extend(i.iter().map(|b| b ^ KEY));
        Ok(())
    }
}

impl ExtensionFactory for Xor {
    fn name(&self) -> &str {
        "x-xor"
    }
    fn offers(&self) -> Vec<ExtensionHeader> {
        vec![ExtensionHeader::new("x-xor")]
    }
    fn accept(&self, _: &ExtensionHeader, _: &[Extension]) -> Result<Extension, NegotiationError> {
        Ok(Extension::per_message(
            Rsv::RSV2,
            Coder(self.clone()),
            Coder(self.clone()),
        ))
    }
    fn negotiate(
        &self,
        _: &ExtensionHeader,
        _: &[Extension],
    ) -> Result<Option<Acceptance>, NegotiationError> {
        Ok(Some((
            ExtensionHeader::new("x-xor"),
            Extension::per_message(Rsv::RSV2, Coder(self.clone()), Coder(self.clone())),
        )))
    }
}

#[tokio::test]
async fn prepared_messages_through_a_toy_extension() {
    let server_xor = Xor {
        shared: true,
        ..Xor::default()
    };
    let counters = server_xor.counters.clone();
    // Frames of at most 4 bytes: a prepared message is fragmented too.
    let server = || {
        ServerBuilder::new()
            .extension(server_xor.clone())
            .config(Config::default().send_frame_size(4))
    };
    let (mut c1, mut s1) =
        duplex_pair(ClientBuilder::new().extension(Xor::default()), server()).await;
    let (mut c2, mut s2) =
        duplex_pair(ClientBuilder::new().extension(Xor::default()), server()).await;
    let (mut c3, mut s3) = duplex_pair(ClientBuilder::new(), server()).await;
    assert_eq!(s1.broadcast_encoding().key(), Some("x-xor"));
    assert!(matches!(s3.broadcast_encoding(), BroadcastEncoding::Plain));

    let m = PreparedMessage::text("hello, everyone");
    for s in [&mut s1, &mut s2, &mut s3] {
        s.send_prepared(&m).await.unwrap();
    }
    assert_eq!(
        counters.shared_encodes.load(Ordering::Relaxed),
        1,
        "encoded once"
    );
    assert_eq!(m.compressions(), 1);
    assert_eq!(
        counters.shared_sent.load(Ordering::Relaxed),
        2,
        "both encoders told"
    );
    for c in [&mut c1, &mut c2, &mut c3] {
        match c.recv().await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "hello, everyone"),
            other => panic!("{other:?}"),
        }
    }
    // Ordinary messages still go through the connection's own encoder.
    s1.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert!(matches!(c1.recv().await, Some(Ok(Message::Binary(b))) if b == vec![1u8, 2, 3]));
    // A prepared message counts in Stats like any message sent, each side.
    let (sent, got) = (s3.stats(), c3.stats());
    assert_eq!((sent.messages_sent, sent.payload_bytes_sent), (1, 15));
    assert_eq!((got.messages_received, got.payload_bytes_received), (1, 15));
    assert_eq!(sent.wire_bytes_sent, got.wire_bytes_received);
    let sent = s1.stats();
    assert_eq!((sent.messages_sent, sent.payload_bytes_sent), (2, 18));
}

#[tokio::test]
async fn an_extension_without_a_shared_encoder_encodes_per_connection() {
    let xor = Xor::default();
    let counters = xor.counters.clone();
    let (mut c, mut s) = duplex_pair(
        ClientBuilder::new().extension(Xor::default()),
        ServerBuilder::new().extension(xor),
    )
    .await;
    assert!(matches!(
        s.broadcast_encoding(),
        BroadcastEncoding::PerConnection
    ));
    assert_eq!(s.broadcast_encoding().key(), None);
    let m = PreparedMessage::binary(vec![9u8; 100]);
    s.send_prepared(&m).await.unwrap();
    assert_eq!(m.compressions(), 0);
    assert_eq!(counters.shared_sent.load(Ordering::Relaxed), 0);
    assert!(matches!(c.recv().await, Some(Ok(Message::Binary(b))) if b == vec![9u8; 100]));
}
