//! Helpers shared by weft's tests: toy extensions for the chain, and
//! connected client/server pairs over in-memory pipes and loopback sockets.
#![allow(missing_docs)]

use bytes::BytesMut;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use weft_core::ext::{
    Extension, ExtensionError, ExtensionFactory, ExtensionHeader, FrameDecoder, FrameEncoder,
    MessageDecoder, MessageEncoder, NegotiationError, SendHints,
};
use weft_core::{ClientBuilder, Rsv, ServerBuilder, WebSocket};

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
}

/// A toy extension's settings; `rsv` can be overridden to provoke conflicts.
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

    /// The negotiated extension, with these settings attached.
    pub fn negotiated(&self) -> Extension {
        let coder = ToyCoder(self.clone());
        match self.toy {
            Toy::Tag => Extension::per_frame(self.rsv, coder.clone(), coder),
            _ => Extension::per_message(self.rsv, coder.clone(), coder),
        }
        .with_params(self.clone())
    }
}

#[derive(Clone)]
struct ToyCoder(ToyExt);

impl ToyCoder {
    fn idle(&mut self) {
        self.0.idled.fetch_add(1, Ordering::Relaxed);
    }
}

impl MessageEncoder for ToyCoder {
    fn encode(&mut self, input: &[u8], _: bool, out: &mut BytesMut) -> Result<(), ExtensionError> {
        match self.0.toy {
            Toy::Xor => out.extend(input.iter().map(|x| x ^ 0x5A)),
            _ => out.extend_from_slice(input),
        }
        Ok(())
    }
    fn idle(&mut self) {
        ToyCoder::idle(self);
    }
}

impl MessageDecoder for ToyCoder {
    fn decode(
        &mut self,
        input: &[u8],
        _: bool,
        budget: usize,
        out: &mut BytesMut,
    ) -> Result<(), ExtensionError> {
        self.0.decoded.fetch_add(1, Ordering::Relaxed);
        if self.0.toy == Toy::Xor {
            out.extend(input.iter().map(|x| x ^ 0x5A));
            return Ok(());
        }
        if input.len() * 2 > budget {
            return Err(ExtensionError::too_big("doubled payload over budget"));
        }
        out.reserve(input.len() * 2);
        for b in input {
            out.extend_from_slice(&[*b, *b]);
        }
        Ok(())
    }
    fn idle(&mut self) {
        ToyCoder::idle(self);
    }
}

impl FrameEncoder for ToyCoder {
    fn encode(
        &mut self,
        input: &[u8],
        _: &SendHints,
        out: &mut BytesMut,
    ) -> Result<bool, ExtensionError> {
        out.extend_from_slice(input);
        out.extend_from_slice(&[0xEE]);
        Ok(true)
    }
    fn idle(&mut self) {
        ToyCoder::idle(self);
    }
}

impl FrameDecoder for ToyCoder {
    fn decode(
        &mut self,
        marked: bool,
        input: &[u8],
        _: usize,
        out: &mut BytesMut,
    ) -> Result<bool, ExtensionError> {
        self.0.decoded.fetch_add(1, Ordering::Relaxed);
        if !marked {
            return Err(ExtensionError::protocol("untagged frame"));
        }
        match input.split_last() {
            Some((0xEE, rest)) => out.extend_from_slice(rest),
            _ => return Err(ExtensionError::invalid_data("bad tag")),
        }
        Ok(true)
    }
    fn idle(&mut self) {
        ToyCoder::idle(self);
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

impl ExtensionFactory for ToyFactory {
    fn name(&self) -> &str {
        self.0.toy.name()
    }
    fn offers(&self) -> Vec<ExtensionHeader> {
        vec![ExtensionHeader::new(self.0.toy.name())]
    }
    fn accept(
        &self,
        response: &ExtensionHeader,
        _accepted: &[Extension],
    ) -> Result<Extension, NegotiationError> {
        if !response.params.is_empty() {
            return Err(NegotiationError::rejected(
                self.0.toy.name(),
                "unexpected parameters",
            ));
        }
        Ok(self.0.negotiated())
    }
    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        _accepted: &[Extension],
    ) -> Result<Option<(ExtensionHeader, Extension)>, NegotiationError> {
        if offer.get("decline").is_some() {
            return Ok(None);
        }
        Ok(Some((
            ExtensionHeader::new(self.0.toy.name()),
            self.0.negotiated(),
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
    WebSocket<weft_core::MaybeTlsStream>,
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
    weft_core::Connection::new(
        weft_core::Session::with_extensions(role, limits, negotiated),
        limits,
    )
}

mod counting;
pub mod faults;
mod proc_status;
mod rng;
pub use counting::{ByteCounts, CountingStream};
pub use faults::{FaultLog, FaultStream, Faults};
pub use proc_status::{ProcStatus, proc_status};
pub use rng::{Rng, RngCore, SeededRng, rng};
