//! How a library author plugs a new extension into weft: two toy extensions,
//! stacked on one connection (`cargo run --example custom_extension`).
//!
//! - `x-caesar` (per-message, RSV2) adds `shift` to every payload byte; the
//!   client offers `shift=3` and the server echoes any shift from 1 to 255. A
//!   message sent with `SendHints::uncompressed()` travels untouched.
//! - `x-frame-crc` (per-frame, RSV3) appends a one-byte XOR checksum to every
//!   data frame; the receiver verifies and strips it (1007 on mismatch).
//!
//! Each is a factory (negotiation, both roles) and a coder per direction; the
//! chain runs them in negotiated order (shift, fragment, checksum; reversed on
//! receipt), keeps the RSV rules and owns the output buffers.

use bytes::BytesMut as Buf;
use weft_core::ext::{Acceptance, Extension, ExtensionError as Error, ExtensionFactory};
use weft_core::ext::{ExtensionHeader as Header, NegotiationError as Refusal, SendHints};
use weft_core::ext::{FrameDecoder, FrameEncoder, MessageDecoder, MessageEncoder};
use weft_core::{ClientBuilder, CloseCode, Config, Message, Rsv, ServerBuilder};

/// Negotiates `x-caesar` in both roles; the shift is what a client offers.
struct CaesarFactory(u8);

/// One direction of x-caesar: adds its shift (the decoder's is negated).
struct Caesar(u8);

fn caesar(shift: u8) -> Extension {
    Extension::per_message(Rsv::RSV2, Caesar(shift), Caesar(shift.wrapping_neg()))
}

fn parse_shift(h: &Header) -> Result<u8, Refusal> {
    let shift = h
        .get("shift")
        .and_then(|p| p.value.as_deref()?.parse().ok());
    let valid = shift.filter(|&n| n > 0 && h.params.len() == 1);
    valid.ok_or_else(|| Refusal::rejected("x-caesar", "exactly shift=1..255 expected"))
}

impl ExtensionFactory for CaesarFactory {
    fn name(&self) -> &str {
        "x-caesar"
    }
    fn offers(&self) -> Vec<Header> {
        vec![Header::new("x-caesar").param("shift", Some(self.0.to_string()))]
    }
    fn accept(&self, response: &Header, _: &[Extension]) -> Result<Extension, Refusal> {
        // The server must agree to exactly what we offered.
        match parse_shift(response)? {
            s if s == self.0 => Ok(caesar(s)),
            _ => Err(Refusal::rejected("x-caesar", "server changed the shift")),
        }
    }
    fn negotiate(&self, offer: &Header, _: &[Extension]) -> Result<Option<Acceptance>, Refusal> {
        // Decline (rather than fail) offers we do not like: the client may
        // have listed an alternative.
        Ok(parse_shift(offer).ok().map(|s| (offer.clone(), caesar(s))))
    }
}

impl MessageEncoder for Caesar {
    // `begin` keeps its default: transform unless the hints say not to.
    fn encode(&mut self, input: &[u8], _fin: bool, out: &mut Buf) -> Result<(), Error> {
        out.extend(input.iter().map(|b| b.wrapping_add(self.0)));
        Ok(())
    }
}

impl MessageDecoder for Caesar {
    // The output is as long as the input, so the budget cannot be exceeded.
    fn decode(&mut self, input: &[u8], _: bool, _: usize, out: &mut Buf) -> Result<(), Error> {
        out.extend(input.iter().map(|b| b.wrapping_add(self.0)));
        Ok(())
    }
}

/// Negotiates `x-frame-crc` (no parameters) in both roles, and is its own
/// stateless coder.
struct Crc;

fn crc() -> Extension {
    Extension::per_frame(Rsv::RSV3, Crc, Crc)
}

fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |acc, b| acc ^ b)
}

impl ExtensionFactory for Crc {
    fn name(&self) -> &str {
        "x-frame-crc"
    }
    fn offers(&self) -> Vec<Header> {
        vec![Header::new("x-frame-crc")]
    }
    fn accept(&self, response: &Header, _: &[Extension]) -> Result<Extension, Refusal> {
        let refuse = || Refusal::rejected("x-frame-crc", "takes no parameters");
        response.params.is_empty().then(crc).ok_or_else(refuse)
    }
    fn negotiate(&self, offer: &Header, _: &[Extension]) -> Result<Option<Acceptance>, Refusal> {
        Ok(offer.params.is_empty().then(|| (offer.clone(), crc())))
    }
}

impl FrameEncoder for Crc {
    fn encode(&mut self, input: &[u8], _: &SendHints, out: &mut Buf) -> Result<bool, Error> {
        out.extend_from_slice(input);
        out.extend_from_slice(&[checksum(input)]);
        Ok(true) // transformed: the chain sets RSV3
    }
}

impl FrameDecoder for Crc {
    fn decode(&mut self, rsv3: bool, data: &[u8], _: usize, o: &mut Buf) -> Result<bool, Error> {
        match data.split_last() {
            _ if !rsv3 => Err(Error::protocol("x-frame-crc: frame without RSV3")),
            Some((&sum, rest)) if checksum(rest) == sum => {
                o.extend_from_slice(rest);
                Ok(true)
            }
            Some(_) => Err(Error::invalid_data("x-frame-crc: checksum mismatch")),
            None => Err(Error::protocol("x-frame-crc: empty frame")),
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = ServerBuilder::new().extension(CaesarFactory(1));
    let server = server.extension(Crc);
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
    let small_frames = Config::default().send_frame_size(8);
    let client = ClientBuilder::new().extension(CaesarFactory(3));
    let client = client.extension(Crc).config(small_frames);
    let (mut ws, response) = client.connect(&format!("ws://{addr}/")).await?;
    let agreed = &response.headers()["sec-websocket-extensions"];
    println!("negotiated: {agreed:?}");
    let binary = Message::binary(vec![0u8, 1, 2, 253, 254, 255]);
    let hello = Message::text("hello through two extensions");
    for m in [hello, binary, Message::text("")] {
        ws.send(m.clone()).await?;
        let echo = ws.recv().await.ok_or("closed early")??;
        assert_eq!(echo, m, "echo mismatch");
        println!("echoed {:?} ({} bytes)", m, m.len());
    }
    // Opting one message out of x-caesar (x-frame-crc still applies).
    let as_is = Message::text("sent as is");
    ws.feed_with(as_is.clone(), SendHints::uncompressed())
        .await?;
    ws.flush().await?;
    assert_eq!(ws.recv().await.ok_or("closed early")??, as_is);
    println!("echoed {as_is:?} without x-caesar");
    ws.close(CloseCode::NORMAL, "bye").await?;
    Ok(())
}

/// Runs the demo: two stacked toy extensions over loopback (no arguments).
#[derive(clap::Parser)]
struct Args {}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    <Args as clap::Parser>::parse();
    run().await
}

#[tokio::test]
async fn two_stacked_extensions_echo() {
    run().await.expect("the demo runs");
}
