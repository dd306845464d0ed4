//! The mux wire format, variant B of docs/specs/mux.md (draft-ietf-hybi-websocket-
//! multiplexing -05 to -08, as pywebsocket and Jetty 9 implement it).
//!
//! Every logical ("inner") frame is one physical binary message:
//!
//! ```text
//! +------------------+-------------+-----------------------------+
//! | channel ID (1-4) | F R R R op  | inner payload (to the end)  |
//! +------------------+-------------+-----------------------------+
//! ```
//!
//! Channel 0 carries control blocks instead (`00` then blocks back to
//! back). One file per block type, each with its byte vectors.
//!
//! [`variant_a`] holds the older variant A format (the google-mux-03
//! generation, reconstructed; see its docs), which reuses the channel IDs,
//! the request and response block types and the errors of this module.

mod add_channel_request;
mod add_channel_response;
mod channel_id;
mod drop_channel;
mod flow_control;
mod new_channel_slot;
pub mod number;
pub mod variant_a;

pub use add_channel_request::AddChannelRequest;
pub use add_channel_response::AddChannelResponse;
pub use channel_id::ChannelId;
pub use drop_channel::{DropChannel, DropCode};
pub use flow_control::FlowControl;
pub use new_channel_slot::NewChannelSlot;

use bytes::Bytes;
use weft_core::{OpCode, Rsv};

/// How an encapsulated handshake is encoded (AddChannelRequest/Response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The full header set.
    Identity,
    /// Headers relative to the delta base (docs/specs/mux.md §4.5).
    Delta,
}

/// A malformed physical message; each maps to a drop code (docs/specs/mux.md §4.8)
/// with which the physical connection is failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A physical text message (2001).
    #[error("text message on a mux connection")]
    TextMessage,
    /// Variant A: a physical frame that cannot carry mux data (RSV bits,
    /// control blocks in a text or fragmented frame) (2001).
    #[error("invalid encapsulating frame: {0}")]
    BadPhysicalFrame(&'static str),
    /// The channel ID is cut short (2002).
    #[error("channel ID truncated")]
    ChannelIdTruncated,
    /// The channel ID is not minimally encoded (2002, strict decoding only).
    #[error("channel ID not minimally encoded")]
    NonMinimalChannelId,
    /// A channel ID but no inner header byte (2003).
    #[error("encapsulated frame without an inner header")]
    MissingInnerHeader,
    /// A mux opcode 5 to 7 (2004).
    #[error("unknown mux opcode {0}")]
    UnknownOpcode(u8),
    /// A reserved bit, a bad number, a length past the end, ... (2005).
    #[error("invalid control block: {0}")]
    InvalidBlock(&'static str),
    /// AddChannelRequest encoding 2 or 3 (2010).
    #[error("unknown request encoding {0}")]
    UnknownRequestEncoding(u8),
    /// AddChannelResponse encoding 2 or 3 (2012).
    #[error("unknown response encoding {0}")]
    UnknownResponseEncoding(u8),
}

impl WireError {
    /// The drop code that fails the physical connection.
    pub fn drop_code(&self) -> DropCode {
        DropCode(match self {
            WireError::TextMessage | WireError::BadPhysicalFrame(_) => 2001,
            WireError::ChannelIdTruncated | WireError::NonMinimalChannelId => 2002,
            WireError::MissingInnerHeader => 2003,
            WireError::UnknownOpcode(_) => 2004,
            WireError::InvalidBlock(_) => 2005,
            WireError::UnknownRequestEncoding(_) => 2010,
            WireError::UnknownResponseEncoding(_) => 2012,
        })
    }
}

/// One control block (docs/specs/mux.md §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// Opcode 0.
    AddChannelRequest(AddChannelRequest),
    /// Opcode 1.
    AddChannelResponse(AddChannelResponse),
    /// Opcode 2.
    FlowControl(FlowControl),
    /// Opcode 3.
    DropChannel(DropChannel),
    /// Opcode 4.
    NewChannelSlot(NewChannelSlot),
}

impl Block {
    /// Appends the block's encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Block::AddChannelRequest(b) => b.encode(out),
            Block::AddChannelResponse(b) => b.encode(out),
            Block::FlowControl(b) => b.encode(out),
            Block::DropChannel(b) => b.encode(out),
            Block::NewChannelSlot(b) => b.encode(out),
        }
    }

    /// Decodes every block of a control-channel message (after the `00`
    /// channel byte); the message must end exactly at a block boundary.
    pub fn decode_all(mut buf: &[u8], strict: bool) -> Result<Vec<Block>, WireError> {
        let mut blocks = Vec::new();
        while let Some(&first) = buf.first() {
            let rest = &buf[1..];
            let flags = first & 0x1f;
            let (block, used) = match first >> 5 {
                0 => AddChannelRequest::decode(flags, rest, strict)
                    .map(|(b, n)| (Block::AddChannelRequest(b), n))?,
                1 => AddChannelResponse::decode(flags, rest, strict)
                    .map(|(b, n)| (Block::AddChannelResponse(b), n))?,
                2 => FlowControl::decode(flags, rest, strict)
                    .map(|(b, n)| (Block::FlowControl(b), n))?,
                3 => DropChannel::decode(flags, rest, strict)
                    .map(|(b, n)| (Block::DropChannel(b), n))?,
                4 => NewChannelSlot::decode(flags, rest)
                    .map(|(b, n)| (Block::NewChannelSlot(b), n))?,
                op => return Err(WireError::UnknownOpcode(op)),
            };
            blocks.push(block);
            buf = &rest[used..];
        }
        Ok(blocks)
    }
}

/// Reads `number(len) ‖ bytes[len]` from the front of `buf`.
fn length_prefixed(buf: &[u8]) -> Result<(Bytes, usize), WireError> {
    let (len, n) = number::decode(buf)?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| n.checked_add(l))
        .ok_or(WireError::InvalidBlock("length past the end"))?;
    let data = buf
        .get(n..end)
        .ok_or(WireError::InvalidBlock("length past the end"))?;
    Ok((Bytes::copy_from_slice(data), end))
}

fn put_length_prefixed(data: &[u8], out: &mut Vec<u8>) {
    number::encode(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// An inner frame parsed from a physical binary message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerFrame {
    /// The logical channel (never 0).
    pub channel: ChannelId,
    /// FIN bit of the inner header.
    pub fin: bool,
    /// RSV bits of the inner header (the logical channel's extensions').
    pub rsv: Rsv,
    /// Raw inner opcode (validated by the channel's session).
    pub opcode: u8,
    /// The rest of the physical message.
    pub payload: Bytes,
}

/// What one physical binary message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Physical {
    /// Control blocks (channel 0).
    Control(Vec<Block>),
    /// One inner frame of a logical channel.
    Frame(InnerFrame),
}

/// Parses a physical binary message.
pub fn decode_physical(msg: &Bytes, strict: bool) -> Result<Physical, WireError> {
    let (channel, n) = ChannelId::decode(msg, strict)?;
    if channel == ChannelId::CONTROL {
        return Block::decode_all(&msg[n..], strict).map(Physical::Control);
    }
    let header = *msg.get(n).ok_or(WireError::MissingInnerHeader)?;
    Ok(Physical::Frame(InnerFrame {
        channel,
        fin: header & 0x80 != 0,
        rsv: Rsv::from_bits_truncate(header),
        opcode: header & 0x0f,
        payload: msg.slice(n + 1..),
    }))
}

/// Encodes the prefix of an inner frame's physical message: channel ID and
/// inner header. The payload follows.
pub fn encode_inner_header(
    channel: ChannelId,
    fin: bool,
    rsv: Rsv,
    opcode: OpCode,
    out: &mut Vec<u8>,
) {
    channel.encode(out);
    out.push((fin as u8) << 7 | rsv.bits() | opcode.as_u8());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_messages() {
        let m = Bytes::from_static(&[0x01, 0x81, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        match decode_physical(&m, true).unwrap() {
            Physical::Frame(f) => {
                assert_eq!(
                    (f.channel, f.fin, f.opcode, &f.payload[..]),
                    (ChannelId::IMPLICIT, true, 1, &b"Hello"[..])
                );
            }
            other => panic!("{other:?}"),
        }
        let code = |b: &'static [u8]| {
            decode_physical(&Bytes::from_static(b), true)
                .unwrap_err()
                .drop_code()
                .0
        };
        assert_eq!(code(&[0x80]), 2002);
        assert_eq!(code(&[0x01]), 2003);
        assert_eq!(code(&[0x00, 0xa0]), 2004);
        assert_eq!(code(&[0x00, 0x60, 0x00, 0x01, 0x00]), 2005);
        assert_eq!(code(&[0x00, 0x40, 0x01, 0x7e, 0x00, 0x7d]), 2005);
        assert_eq!(code(&[0x00, 0x40, 0x01, 0x80]), 2005);
        assert_eq!(code(&[0x00, 0x40, 0x01]), 2005);
        assert_eq!(WireError::TextMessage.drop_code().0, 2001);
    }

    #[test]
    fn several_blocks_in_one_message() {
        let mut out = vec![0x00];
        Block::FlowControl(FlowControl {
            channel: ChannelId::IMPLICIT,
            quota: 8192,
        })
        .encode(&mut out);
        Block::NewChannelSlot(NewChannelSlot {
            slots: 64,
            quota: 8192,
            fallback: false,
        })
        .encode(&mut out);
        assert_eq!(
            out,
            [
                0x00, 0x40, 0x01, 0x7e, 0x20, 0x00, 0x80, 0x40, 0x7e, 0x20, 0x00
            ]
        );
        match decode_physical(&Bytes::from(out), true).unwrap() {
            Physical::Control(blocks) => assert_eq!(blocks.len(), 2),
            other => panic!("{other:?}"),
        }
        let mut inner = Vec::new();
        encode_inner_header(
            ChannelId::IMPLICIT,
            true,
            Rsv::empty(),
            OpCode::Text,
            &mut inner,
        );
        assert_eq!(inner, [0x01, 0x81]);
    }
}
