//! Helpers shared by weft's tests: toy extensions for the chain, and
//! connected client/server pairs over in-memory pipes and loopback sockets.
#![allow(missing_docs)]

use bytes::{Bytes, BytesMut};
use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use weft_core::ext::{
    Acceptance, ClientExtensionFactory, Extension, ExtensionDecoder, ExtensionEncoder,
    ExtensionError, ExtensionHeader, Granularity, NegotiationError, SendHints,
    ServerExtensionFactory,
};
use weft_core::{ClientBuilder, Frame, OpCode, Rsv, ServerBuilder, WebSocket};

/// Which toy extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toy {
    /// `x-xor`: per-message, XORs every payload byte with 0x5A, owns RSV2
    /// (set on the first frame of a transformed message).
    Xor,
    /// `x-tag`: per-frame, appends one byte (0xEE) to every data frame, owns RSV3.
    Tag,
    /// `x-double`: per-message, the wire carries every byte once and the
    /// decoder writes it twice (a 2x "decompressor"), owns RSV1.
    Double,
}

impl Toy {
    pub fn name(self) -> &'static str {
        match self {
            Toy::Xor => "x-xor",
            Toy::Tag => "x-tag",
            Toy::Double => "x-double",
        }
    }
    pub fn rsv(self) -> Rsv {
        match self {
            Toy::Xor => Rsv::RSV2,
            Toy::Tag => Rsv::RSV3,
            Toy::Double => Rsv::RSV1,
        }
    }
    fn granularity(self) -> Granularity {
        match self {
            Toy::Tag => Granularity::PerFrame,
            _ => Granularity::PerMessage,
        }
    }
}

/// A toy extension; `rsv` can be overridden to provoke conflicts.
#[derive(Debug, Clone)]
pub struct ToyExt {
    pub toy: Toy,
    pub rsv: Rsv,
    /// Counts frames the decoder saw (shared with the test).
    pub decoded: Arc<AtomicUsize>,
    /// Counts `idle` calls on either half (shared with the test).
    pub idled: Arc<AtomicUsize>,
}

impl ToyExt {
    pub fn new(toy: Toy) -> Self {
        ToyExt {
            toy,
            rsv: toy.rsv(),
            decoded: Arc::default(),
            idled: Arc::default(),
        }
    }
}

struct ToyEnc(Toy, Rsv, bool, Arc<AtomicUsize>);
struct ToyDec(Toy, Rsv, bool, Arc<AtomicUsize>, Arc<AtomicUsize>);

impl Extension for ToyExt {
    fn name(&self) -> &str {
        self.toy.name()
    }
    fn rsv(&self) -> Rsv {
        self.rsv
    }
    fn granularity(&self) -> Granularity {
        self.toy.granularity()
    }
    fn split(self: Box<Self>) -> (Box<dyn ExtensionEncoder>, Box<dyn ExtensionDecoder>) {
        (
            Box::new(ToyEnc(self.toy, self.rsv, false, self.idled.clone())),
            Box::new(ToyDec(self.toy, self.rsv, false, self.decoded, self.idled)),
        )
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn xor(b: &[u8]) -> Bytes {
    b.iter().map(|x| x ^ 0x5A).collect::<Vec<u8>>().into()
}

impl ExtensionEncoder for ToyEnc {
    fn encode(&mut self, frame: &mut Frame, hints: &SendHints) -> Result<(), ExtensionError> {
        match self.0 {
            Toy::Xor | Toy::Double => {
                if frame.opcode != OpCode::Continuation {
                    self.2 = hints.compress;
                    if self.2 {
                        frame.rsv |= self.1;
                    }
                }
                if self.2 && self.0 == Toy::Xor {
                    frame.payload = xor(&frame.payload);
                }
            }
            Toy::Tag => {
                let mut b = BytesMut::from(&frame.payload[..]);
                b.extend_from_slice(&[0xEE]);
                frame.payload = b.freeze();
                frame.rsv |= self.1;
            }
        }
        Ok(())
    }

    fn idle(&mut self) {
        self.3.fetch_add(1, Ordering::Relaxed);
    }
}

impl ExtensionDecoder for ToyDec {
    fn decode(&mut self, frame: &mut Frame, budget: usize) -> Result<(), ExtensionError> {
        self.3.fetch_add(1, Ordering::Relaxed);
        match self.0 {
            Toy::Xor | Toy::Double => {
                if frame.opcode != OpCode::Continuation {
                    self.2 = frame.rsv.contains(self.1);
                } else if frame.rsv.contains(self.1) {
                    return Err(ExtensionError::protocol("bit set on a continuation frame"));
                }
                frame.rsv.remove(self.1);
                if !self.2 {
                    return Ok(());
                }
                if self.0 == Toy::Xor {
                    frame.payload = xor(&frame.payload);
                } else {
                    if frame.payload.len() * 2 > budget {
                        return Err(ExtensionError::too_big("doubled payload over budget"));
                    }
                    let mut out = Vec::with_capacity(frame.payload.len() * 2);
                    for b in frame.payload.iter() {
                        out.extend_from_slice(&[*b, *b]);
                    }
                    frame.payload = out.into();
                }
            }
            Toy::Tag => {
                if !frame.rsv.contains(self.1) {
                    return Err(ExtensionError::protocol("untagged frame"));
                }
                frame.rsv.remove(self.1);
                match frame.payload.last() {
                    Some(0xEE) => frame.payload.truncate(frame.payload.len() - 1),
                    _ => return Err(ExtensionError::invalid_data("bad tag")),
                }
            }
        }
        Ok(())
    }

    fn idle(&mut self) {
        self.4.fetch_add(1, Ordering::Relaxed);
    }
}

/// Factory for both roles; accepts any offer of its name.
#[derive(Debug, Clone)]
pub struct ToyFactory(pub ToyExt);

impl ToyFactory {
    pub fn new(toy: Toy) -> Self {
        ToyFactory(ToyExt::new(toy))
    }
    pub fn with_rsv(toy: Toy, rsv: Rsv) -> Self {
        let mut e = ToyExt::new(toy);
        e.rsv = rsv;
        ToyFactory(e)
    }
}

impl ClientExtensionFactory for ToyFactory {
    fn name(&self) -> &str {
        self.0.toy.name()
    }
    fn offers(&self) -> Vec<ExtensionHeader> {
        vec![ExtensionHeader::new(self.0.toy.name())]
    }
    fn accept(
        &self,
        response: &ExtensionHeader,
        _accepted: &[Box<dyn Extension>],
    ) -> Result<Box<dyn Extension>, NegotiationError> {
        if !response.params.is_empty() {
            return Err(NegotiationError::rejected(
                self.0.toy.name(),
                "unexpected parameters",
            ));
        }
        Ok(Box::new(self.0.clone()))
    }
}

impl ServerExtensionFactory for ToyFactory {
    fn name(&self) -> &str {
        self.0.toy.name()
    }
    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        _accepted: &[Box<dyn Extension>],
    ) -> Result<Option<Acceptance>, NegotiationError> {
        if offer.get("decline").is_some() {
            return Ok(None);
        }
        Ok(Some((
            ExtensionHeader::new(self.0.toy.name()),
            Box::new(self.0.clone()),
        )))
    }
}

/// A client and a server connected over an in-memory pipe.
pub async fn duplex_pair(
    client: ClientBuilder,
    server: ServerBuilder,
) -> (
    WebSocket<tokio::io::DuplexStream>,
    WebSocket<tokio::io::DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let srv = tokio::spawn(async move { server.accept(b).await });
    let (c, _) = client
        .connect_on(a, "ws://localhost/test")
        .await
        .expect("client handshake");
    let s = srv.await.expect("server task").expect("server handshake");
    (c, s)
}

/// A client and a server connected over TCP on 127.0.0.1.
pub async fn tcp_pair(
    client: ClientBuilder,
    server: ServerBuilder,
) -> (
    WebSocket<tokio::net::TcpStream>,
    WebSocket<tokio::net::TcpStream>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let srv = tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        server.accept(s).await
    });
    let (c, _) = client
        .connect(&format!("ws://{addr}/test"))
        .await
        .expect("client handshake");
    let s = srv.await.expect("server task").expect("server handshake");
    (c, s)
}

/// Masks `payload` into a complete client frame (for hand-built bad input).
pub fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![b0];
    match payload.len() {
        n if n <= 125 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Everything a sans-I/O connection wants to send, as bytes.
pub fn drain_output(c: &mut weft_core::Connection) -> Vec<u8> {
    let mut out = weft_core::proto::WriteBuffer::new();
    c.poll_transmit(&mut out);
    let mut slices = [std::io::IoSlice::new(&[]); 64];
    let n = out.chunks(&mut slices);
    slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
}

/// Feeds `bytes` to a sans-I/O connection; every message, or the first error.
pub fn read_messages(
    c: &mut weft_core::Connection,
    bytes: &[u8],
) -> Result<Vec<weft_core::Message>, weft_core::ProtocolError> {
    let mut buf = BytesMut::from(bytes);
    let mut msgs = Vec::new();
    while let Some(m) = c.handle_read(&mut buf)? {
        msgs.push(m);
    }
    Ok(msgs)
}

/// A sans-I/O connection running the extensions that `negotiated` holds.
pub fn connection_with(
    role: weft_core::Role,
    negotiated: weft_core::ext::Negotiated,
    limits: &weft_core::Config,
) -> weft_core::Connection {
    let (enc, dec) = negotiated.into_chains();
    weft_core::Connection::new(
        weft_core::Session::with_extensions(role, limits, enc, dec),
        limits,
    )
}

mod proc_status;
mod rng;
pub use proc_status::{ProcStatus, proc_status};
pub use rng::{Rng, RngCore, SeededRng, rng};
