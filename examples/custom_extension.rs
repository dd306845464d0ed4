//! How a library author plugs a new extension into weft.
//!
//! Two toy extensions, stacked on one connection:
//!
//! - `x-caesar` (per-message, owns RSV2): adds `shift` to every payload byte.
//!   The client offers `x-caesar; shift=3`; the server accepts any shift from
//!   1 to 255 and echoes it. It marks transformed messages with RSV2 on their
//!   first frame, so a message sent with `SendHints { compress: false }`
//!   travels untouched.
//! - `x-frame-crc` (per-frame, owns RSV3): appends a one-byte XOR checksum to
//!   every data frame; the receiver verifies and strips it (1007 on mismatch).
//!
//! Negotiated order is `x-caesar, x-frame-crc`: outgoing messages are shifted,
//! cut into frames, then checksummed; incoming frames are checked, then
//! un-shifted. Each extension is three small pieces: a factory (negotiation),
//! the negotiated extension (RSV bits, granularity), and an encoder/decoder
//! pair (one per direction).
//!
//! ```text
//! cargo run --example custom_extension
//! ```

use bytes::Bytes;
use std::any::Any;
use tokio::net::TcpListener;
use weft_core::ext::{
    Acceptance, ClientExtensionFactory, Extension, ExtensionDecoder, ExtensionEncoder,
    ExtensionError, ExtensionHeader, Granularity, NegotiationError, SendHints,
    ServerExtensionFactory,
};
use weft_core::{ClientBuilder, CloseCode, Config, Frame, Message, OpCode, Rsv, ServerBuilder};

// ---------------------------------------------------------------- x-caesar

/// Negotiates `x-caesar` in both roles.
#[derive(Clone, Copy)]
struct CaesarFactory {
    shift: u8,
}

/// The negotiated extension: just the agreed shift.
struct Caesar {
    shift: u8,
}

fn parse_shift(h: &ExtensionHeader) -> Result<u8, NegotiationError> {
    let bad = |why: &str| NegotiationError::rejected("x-caesar", why);
    if h.params.len() != 1 {
        return Err(bad("exactly one parameter, shift, is expected"));
    }
    let value = h
        .get("shift")
        .and_then(|p| p.value.as_deref())
        .ok_or_else(|| bad("shift=N is required"))?;
    match value.parse::<u8>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad("shift must be 1..=255")),
    }
}

impl ClientExtensionFactory for CaesarFactory {
    fn name(&self) -> &str {
        "x-caesar"
    }
    fn offers(&self) -> Vec<ExtensionHeader> {
        vec![ExtensionHeader::new("x-caesar").param("shift", Some(self.shift.to_string()))]
    }
    fn accept(
        &self,
        response: &ExtensionHeader,
        _: &[Box<dyn Extension>],
    ) -> Result<Box<dyn Extension>, NegotiationError> {
        // The server must agree to exactly what we offered.
        match parse_shift(response)? {
            s if s == self.shift => Ok(Box::new(Caesar { shift: s })),
            _ => Err(NegotiationError::rejected(
                "x-caesar",
                "server changed the shift",
            )),
        }
    }
}

impl ServerExtensionFactory for CaesarFactory {
    fn name(&self) -> &str {
        "x-caesar"
    }
    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        _: &[Box<dyn Extension>],
    ) -> Result<Option<Acceptance>, NegotiationError> {
        // Decline (rather than fail) offers we do not like: the client may
        // have listed an alternative.
        let Ok(shift) = parse_shift(offer) else {
            return Ok(None);
        };
        let response = ExtensionHeader::new("x-caesar").param("shift", Some(shift.to_string()));
        Ok(Some((response, Box::new(Caesar { shift }))))
    }
}

impl Extension for Caesar {
    fn name(&self) -> &str {
        "x-caesar"
    }
    fn rsv(&self) -> Rsv {
        Rsv::RSV2
    }
    fn granularity(&self) -> Granularity {
        Granularity::PerMessage
    }
    fn split(self: Box<Self>) -> (Box<dyn ExtensionEncoder>, Box<dyn ExtensionDecoder>) {
        (
            Box::new(CaesarCoder {
                shift: self.shift,
                active: false,
            }),
            Box::new(CaesarCoder {
                shift: self.shift.wrapping_neg(),
                active: false,
            }),
        )
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One direction of x-caesar. `active` remembers whether the message in
/// progress is transformed (decided on its first frame).
struct CaesarCoder {
    shift: u8,
    active: bool,
}

fn shifted(payload: &[u8], by: u8) -> Bytes {
    payload
        .iter()
        .map(|b| b.wrapping_add(by))
        .collect::<Vec<u8>>()
        .into()
}

impl ExtensionEncoder for CaesarCoder {
    fn encode(&mut self, frame: &mut Frame, hints: &SendHints) -> Result<(), ExtensionError> {
        if frame.opcode != OpCode::Continuation {
            self.active = hints.compress;
            if self.active {
                frame.rsv |= Rsv::RSV2;
            }
        }
        if self.active {
            frame.payload = shifted(&frame.payload, self.shift);
        }
        Ok(())
    }
}

impl ExtensionDecoder for CaesarCoder {
    fn decode(&mut self, frame: &mut Frame, _budget: usize) -> Result<(), ExtensionError> {
        // The output is as long as the input, so the budget cannot be exceeded.
        if frame.opcode != OpCode::Continuation {
            self.active = frame.rsv.contains(Rsv::RSV2);
        } else if frame.rsv.contains(Rsv::RSV2) {
            return Err(ExtensionError::protocol(
                "x-caesar: RSV2 on a continuation frame",
            ));
        }
        frame.rsv.remove(Rsv::RSV2);
        if self.active {
            frame.payload = shifted(&frame.payload, self.shift);
        }
        Ok(())
    }
}

// ------------------------------------------------------------- x-frame-crc

/// Negotiates `x-frame-crc` (no parameters) in both roles.
#[derive(Clone, Copy)]
struct CrcFactory;

/// The negotiated extension; it has no state.
struct Crc;

impl ClientExtensionFactory for CrcFactory {
    fn name(&self) -> &str {
        "x-frame-crc"
    }
    fn offers(&self) -> Vec<ExtensionHeader> {
        vec![ExtensionHeader::new("x-frame-crc")]
    }
    fn accept(
        &self,
        response: &ExtensionHeader,
        _: &[Box<dyn Extension>],
    ) -> Result<Box<dyn Extension>, NegotiationError> {
        if !response.params.is_empty() {
            return Err(NegotiationError::rejected(
                "x-frame-crc",
                "takes no parameters",
            ));
        }
        Ok(Box::new(Crc))
    }
}

impl ServerExtensionFactory for CrcFactory {
    fn name(&self) -> &str {
        "x-frame-crc"
    }
    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        _: &[Box<dyn Extension>],
    ) -> Result<Option<Acceptance>, NegotiationError> {
        if !offer.params.is_empty() {
            return Ok(None);
        }
        Ok(Some((ExtensionHeader::new("x-frame-crc"), Box::new(Crc))))
    }
}

impl Extension for Crc {
    fn name(&self) -> &str {
        "x-frame-crc"
    }
    fn rsv(&self) -> Rsv {
        Rsv::RSV3
    }
    fn granularity(&self) -> Granularity {
        Granularity::PerFrame
    }
    fn split(self: Box<Self>) -> (Box<dyn ExtensionEncoder>, Box<dyn ExtensionDecoder>) {
        (Box::new(Crc), Box::new(Crc))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |acc, b| acc ^ b)
}

impl ExtensionEncoder for Crc {
    fn encode(&mut self, frame: &mut Frame, _: &SendHints) -> Result<(), ExtensionError> {
        let mut out = Vec::with_capacity(frame.payload.len() + 1);
        out.extend_from_slice(&frame.payload);
        out.push(checksum(&frame.payload));
        frame.payload = out.into();
        frame.rsv |= Rsv::RSV3;
        Ok(())
    }
}

impl ExtensionDecoder for Crc {
    fn decode(&mut self, frame: &mut Frame, _budget: usize) -> Result<(), ExtensionError> {
        if !frame.rsv.contains(Rsv::RSV3) {
            return Err(ExtensionError::protocol("x-frame-crc: frame without RSV3"));
        }
        frame.rsv.remove(Rsv::RSV3);
        let Some((&sum, data)) = frame.payload.split_last() else {
            return Err(ExtensionError::protocol("x-frame-crc: empty frame"));
        };
        if checksum(data) != sum {
            return Err(ExtensionError::invalid_data(
                "x-frame-crc: checksum mismatch",
            ));
        }
        frame.payload.truncate(frame.payload.len() - 1);
        Ok(())
    }
}

// -------------------------------------------------------------------- demo

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = ServerBuilder::new()
        .extension(CaesarFactory { shift: 1 })
        .extension(CrcFactory);
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut ws = server.accept(stream).await.expect("server handshake");
        while let Some(Ok(m)) = ws.recv().await {
            if m.is_data() && ws.send(m).await.is_err() {
                break;
            }
        }
    });

    // Small frames so the per-frame checksum shows up several times per message.
    let client = ClientBuilder::new()
        .extension(CaesarFactory { shift: 3 })
        .extension(CrcFactory)
        .config(Config::default().send_frame_size(8));
    let (mut ws, response) = client.connect(&format!("ws://{addr}/")).await?;
    println!(
        "negotiated: {}",
        response.headers()["sec-websocket-extensions"].to_str()?
    );

    let messages = [
        Message::text("hello through two extensions"),
        Message::binary(vec![0u8, 1, 2, 253, 254, 255]),
        Message::text(""),
    ];
    for m in &messages {
        ws.send(m.clone()).await?;
        let echo = ws.recv().await.ok_or("closed early")??;
        if &echo != m {
            return Err(format!("echo mismatch: {echo:?} != {m:?}").into());
        }
        println!("echoed {:?} ({} bytes)", m, m.len());
    }
    // Opting one message out of x-caesar (x-frame-crc still applies).
    ws.feed_with(Message::text("sent as is"), SendHints { compress: false })
        .await?;
    ws.flush().await?;
    println!(
        "echoed {:?} without x-caesar",
        ws.recv().await.ok_or("closed early")??
    );
    ws.close(CloseCode::NORMAL, "bye").await?;
    println!("ok");
    Ok(())
}
