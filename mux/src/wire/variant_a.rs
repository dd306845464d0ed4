//! The variant A wire format (docs/specs/mux.md §3): the
//! draft-tamplin-hybi-google-mux-03 generation, **reconstructed** from the
//! earliest public implementation of the lineage (pywebsocket's `mux.py` as
//! first written for draft-ietf-hybi-websocket-multiplexing-01). The -03
//! text itself could not be obtained, so nothing here was checked against
//! it; only the parts the digest marks `[-01]` are implemented, and every
//! `[?]` item is refused rather than guessed (see below).
//!
//! # Physical frames (§3.1)
//!
//! A logical data frame is **one physical frame** with the logical frame's
//! own FIN and opcode (text, binary, continuation); its payload is the
//! channel ID followed by the logical payload. Fragments of different
//! channels' messages therefore interleave at the physical level, so a
//! variant A connection needs a frame-level physical transport (the tokio
//! driver reads and writes physical frames itself; a message-level
//! WebSocket would reassemble or reject them).
//!
//! ```text
//! physical frame:  FIN RSV(000) opcode | len | mask | channel ID (1-4) | logical payload
//! ```
//!
//! Channel 0 carries control blocks in binary, unfragmented physical frames:
//! `00` then blocks back to back.
//!
//! # Control blocks (§3.2)
//!
//! ```text
//! +----------------------+--------------------+--------------------+--------------+
//! | objective channel ID | opcode(3) flags(3) | length (S+1 bytes, | value        |
//! | (1-4 bytes)          | S(2)               | big-endian)        | (length)     |
//! +----------------------+--------------------+--------------------+--------------+
//! ```
//!
//! | opcode | block | flags |
//! |---|---|---|
//! | 0 | AddChannelRequest | `R` (reserved, must be 0) and `Enc` (2 bits) |
//! | 1 | AddChannelResponse | `F` (1: refused) and `Enc` |
//! | 3 | DropChannel | `M` ("mux error") and 2 reserved bits |
//! | 4 | EncapsulatedControlFrame | 0; no length: the inner RFC 6455 control frame delimits itself |
//!
//! # What is refused (the `[?]` items)
//!
//! - Opcode 2 (FlowControl: not implemented at -01, layout only known from
//!   ietf-03) and 5 to 7 (NewChannelSlot was a TODO at -01): unknown
//!   opcode, 2004. Variant A therefore has no flow control and no channel
//!   slots.
//! - Delta encoding (`Enc` = 1) of a request, and `Enc` 2 or 3: 2010 (the
//!   -01 implementation did not implement delta either). A response's `Enc`
//!   1 is read like identity (a response inherits nothing); 2 or 3: 2012.
//! - RSV bits on a physical frame: 2001 (the -01 implementation rejected
//!   them; logical extensions that need RSV bits cannot run on variant A).
//!
//! # Decided where the evidence is silent
//!
//! - Physical Close, Ping and Pong are plain RFC 6455 control frames of the
//!   physical connection, without a channel ID (the -01 implementation
//!   required channel 0 in front of any control opcode but never handled
//!   physical control frames; a Close code behind a channel byte would be
//!   unreadable to any WebSocket stack). A failed physical connection sends
//!   DropChannel(0, `M` = 1) and then Close 1011, as in variant B.
//! - Control blocks travel in one unfragmented binary frame. An objective
//!   channel ID must be minimal when decoding is strict, like every
//!   channel ID; a length field need not be (it is unambiguous). Encoders
//!   always write the shortest forms.
//! - DropChannel is not acknowledged (variant B's 3008 has no variant A
//!   counterpart, and an acknowledgement of an acknowledgement could loop
//!   with an unknown peer).
//!
//! # Drop reasons
//!
//! Variant A predates numeric drop codes: DropChannel has a "mux error"
//! flag and opaque reason bytes, and the -01 implementation contradicts
//! itself on when a reason may be present, so any reason is read with either
//! flag. weft's convention when it sends one: `M` = 1 for physical failures
//! (2000-2999), and the reason is the decimal code as text, then a space and
//! the message if there is one (`"2005"`, `"3000 receive buffer limit"`).
//! [`DropChannelA::to_drop_channel`] reads the code back from such a reason
//! and otherwise uses 2000 (`M` = 1) or 1000 (`M` = 0), with the reason
//! text as the message.

use super::{
    AddChannelRequest, AddChannelResponse, ChannelId, DropChannel, DropCode, Encoding, InnerFrame,
    WireError,
};
use bytes::Bytes;
use weft_core::{OpCode, Rsv};

/// Mux opcode of AddChannelRequest.
pub const OP_ADD_CHANNEL_REQUEST: u8 = 0;
/// Mux opcode of AddChannelResponse.
pub const OP_ADD_CHANNEL_RESPONSE: u8 = 1;
/// Mux opcode of DropChannel.
pub const OP_DROP_CHANNEL: u8 = 3;
/// Mux opcode of EncapsulatedControlFrame.
pub const OP_ENCAPSULATED_CONTROL_FRAME: u8 = 4;

/// A control block as it sits on the wire, before its opcode and flags are
/// interpreted: what the §3.3 vectors describe byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBlock {
    /// The objective channel.
    pub channel: ChannelId,
    /// The mux opcode (0 to 7).
    pub opcode: u8,
    /// The 3 flag bits (0 to 7; bit 2 of this value is bit 4 of the opcode
    /// byte).
    pub flags: u8,
    /// The value: for EncapsulatedControlFrame the whole inner frame (header
    /// and payload), otherwise the bytes the length field counts.
    pub value: Bytes,
}

fn length_size(len: usize) -> u8 {
    match len {
        0..=0xff => 0,
        0x100..=0xffff => 1,
        0x1_0000..=0xff_ffff => 2,
        _ => 3,
    }
}

impl RawBlock {
    /// Appends the block: the length field in its shortest form (EncapsulatedControlFrame has none).
    ///
    /// Values are at most 2^32 - 1 bytes; longer ones are cut there (weft
    /// never builds one: encapsulated handshakes are bounded by the
    /// handshake size limits).
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.channel.encode(out);
        let value = &self.value[..self.value.len().min(u32::MAX as usize)];
        if self.opcode == OP_ENCAPSULATED_CONTROL_FRAME {
            out.push(self.opcode << 5 | (self.flags & 7) << 2);
            out.extend_from_slice(value);
            return;
        }
        let s = length_size(value.len());
        out.push(self.opcode << 5 | (self.flags & 7) << 2 | s);
        let len = (value.len() as u32).to_be_bytes();
        out.extend_from_slice(&len[3 - s as usize..]);
        out.extend_from_slice(value);
    }

    /// Decodes one block from the front of `buf`: the block and its length.
    /// Anything cut short is an invalid block (2005); a channel ID that is
    /// not minimally encoded too, when `strict`.
    pub fn decode(buf: &[u8], strict: bool) -> Result<(RawBlock, usize), WireError> {
        let (channel, n) = ChannelId::decode(buf, strict)
            .map_err(|_| WireError::InvalidBlock("bad objective channel ID"))?;
        let head = *buf
            .get(n)
            .ok_or(WireError::InvalidBlock("block without an opcode byte"))?;
        let opcode = head >> 5;
        let flags = (head >> 2) & 7;
        let at = n + 1;
        let (start, len) = if opcode == OP_ENCAPSULATED_CONTROL_FRAME {
            // No length field: the inner frame's header gives its size. Only
            // a 7-bit length can belong to a control frame.
            if head & 3 != 0 {
                return Err(WireError::InvalidBlock(
                    "length bits in EncapsulatedControlFrame",
                ));
            }
            let b1 = *buf
                .get(at + 1)
                .ok_or(WireError::InvalidBlock("encapsulated frame truncated"))?;
            let len7 = usize::from(b1 & 0x7f);
            if len7 > 125 {
                return Err(WireError::InvalidBlock(
                    "encapsulated frame longer than a control frame",
                ));
            }
            if b1 & 0x80 != 0 {
                return Err(WireError::InvalidBlock("encapsulated frame is masked"));
            }
            (at, 2 + len7)
        } else {
            let s = usize::from(head & 3) + 1;
            let bytes = buf
                .get(at..at + s)
                .ok_or(WireError::InvalidBlock("block length truncated"))?;
            let len = bytes.iter().fold(0usize, |v, b| v << 8 | usize::from(*b));
            (at + s, len)
        };
        let end = start
            .checked_add(len)
            .filter(|&e| e <= buf.len())
            .ok_or(WireError::InvalidBlock("length past the end"))?;
        let value = Bytes::copy_from_slice(&buf[start..end]);
        Ok((
            RawBlock {
                channel,
                opcode,
                flags,
                value,
            },
            end,
        ))
    }

    /// Decodes every block of a control message (after the `00` channel
    /// byte); the message must end exactly at a block boundary.
    pub fn decode_all(mut buf: &[u8], strict: bool) -> Result<Vec<RawBlock>, WireError> {
        let mut blocks = Vec::new();
        while !buf.is_empty() {
            let (b, n) = RawBlock::decode(buf, strict)?;
            blocks.push(b);
            buf = &buf[n..];
        }
        Ok(blocks)
    }
}

/// DropChannel of variant A: a "mux error" flag and opaque reason bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropChannelA {
    /// The channel dropped (0: the physical connection).
    pub channel: ChannelId,
    /// The `M` flag.
    pub mux_error: bool,
    /// The reason bytes.
    pub reason: Bytes,
}

impl DropChannelA {
    /// Encodes a [`DropChannel`] in weft's convention (module docs).
    pub fn from_drop_channel(d: &DropChannel) -> DropChannelA {
        let (mux_error, reason) = match &d.reason {
            None => (false, Bytes::new()),
            Some((code, msg)) => {
                let text = if msg.is_empty() {
                    code.0.to_string()
                } else {
                    format!("{} {msg}", code.0)
                };
                (code.is_physical(), Bytes::from(text))
            }
        };
        DropChannelA {
            channel: d.channel,
            mux_error,
            reason,
        }
    }

    /// Reads the reason in weft's convention (module docs): a leading
    /// 4-digit code, otherwise 2000 or 1000 by the `M` flag, the (lossily
    /// decoded) text as the message. An empty reason is none.
    pub fn to_drop_channel(&self) -> DropChannel {
        if self.reason.is_empty() {
            return DropChannel {
                channel: self.channel,
                reason: None,
            };
        }
        let text = String::from_utf8_lossy(&self.reason);
        let coded = text.len() >= 4
            && text.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && (text.len() == 4 || text.as_bytes()[4] == b' ');
        let reason = if coded {
            let code = text[..4].parse().expect("four ASCII digits");
            (DropCode(code), text.get(5..).unwrap_or("").to_owned())
        } else {
            let code = if self.mux_error {
                DropCode::PHYSICAL_FAILED
            } else {
                DropCode::NORMAL
            };
            (code, text.into_owned())
        };
        DropChannel {
            channel: self.channel,
            reason: Some(reason),
        }
    }
}

/// A logical channel's Close, Ping or Pong, carried on the control channel
/// (mux opcode 4). The inner frame is unmasked, FIN = 1, no RSV bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncapsulatedControlFrame {
    /// The logical channel (never 0).
    pub channel: ChannelId,
    /// Close, Ping or Pong.
    pub opcode: OpCode,
    /// At most 125 bytes.
    pub payload: Bytes,
}

/// One interpreted variant A control block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockA {
    /// Opcode 0.
    AddChannelRequest(AddChannelRequest),
    /// Opcode 1.
    AddChannelResponse(AddChannelResponse),
    /// Opcode 3.
    DropChannel(DropChannelA),
    /// Opcode 4.
    EncapsulatedControlFrame(EncapsulatedControlFrame),
}

impl BlockA {
    /// The wire form.
    pub fn to_raw(&self) -> RawBlock {
        let enc = |e: Encoding| match e {
            Encoding::Identity => 0,
            Encoding::Delta => 1,
        };
        match self {
            BlockA::AddChannelRequest(b) => RawBlock {
                channel: b.channel,
                opcode: OP_ADD_CHANNEL_REQUEST,
                flags: enc(b.encoding),
                value: b.handshake.clone(),
            },
            BlockA::AddChannelResponse(b) => RawBlock {
                channel: b.channel,
                opcode: OP_ADD_CHANNEL_RESPONSE,
                flags: (b.rejected as u8) << 2 | enc(b.encoding),
                value: b.handshake.clone(),
            },
            BlockA::DropChannel(b) => RawBlock {
                channel: b.channel,
                opcode: OP_DROP_CHANNEL,
                flags: (b.mux_error as u8) << 2,
                value: b.reason.clone(),
            },
            BlockA::EncapsulatedControlFrame(f) => {
                let payload = &f.payload[..f.payload.len().min(125)];
                let mut value = Vec::with_capacity(2 + payload.len());
                value.push(0x80 | f.opcode.as_u8());
                value.push(payload.len() as u8);
                value.extend_from_slice(payload);
                RawBlock {
                    channel: f.channel,
                    opcode: OP_ENCAPSULATED_CONTROL_FRAME,
                    flags: 0,
                    value: Bytes::from(value),
                }
            }
        }
    }

    /// Appends the block.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.to_raw().encode(out);
    }

    /// Interprets a raw block (see the module docs for what is refused).
    pub fn from_raw(raw: RawBlock) -> Result<BlockA, WireError> {
        let RawBlock {
            channel,
            opcode,
            flags,
            value,
        } = raw;
        Ok(match opcode {
            OP_ADD_CHANNEL_REQUEST => {
                if flags & 4 != 0 {
                    return Err(WireError::InvalidBlock("reserved bit in AddChannelRequest"));
                }
                if flags & 3 != 0 {
                    // Delta (1) is not implemented in variant A; 2 and 3 are unknown.
                    return Err(WireError::UnknownRequestEncoding(flags & 3));
                }
                BlockA::AddChannelRequest(AddChannelRequest {
                    channel,
                    encoding: Encoding::Identity,
                    handshake: value,
                })
            }
            OP_ADD_CHANNEL_RESPONSE => {
                let encoding = match flags & 3 {
                    0 => Encoding::Identity,
                    1 => Encoding::Delta,
                    other => return Err(WireError::UnknownResponseEncoding(other)),
                };
                BlockA::AddChannelResponse(AddChannelResponse {
                    channel,
                    rejected: flags & 4 != 0,
                    encoding,
                    handshake: value,
                })
            }
            OP_DROP_CHANNEL => {
                if flags & 3 != 0 {
                    return Err(WireError::InvalidBlock("reserved bits in DropChannel"));
                }
                BlockA::DropChannel(DropChannelA {
                    channel,
                    mux_error: flags & 4 != 0,
                    reason: value,
                })
            }
            OP_ENCAPSULATED_CONTROL_FRAME => {
                if flags != 0 {
                    return Err(WireError::InvalidBlock("flags in EncapsulatedControlFrame"));
                }
                if channel == ChannelId::CONTROL {
                    return Err(WireError::InvalidBlock(
                        "EncapsulatedControlFrame for channel 0",
                    ));
                }
                // RawBlock::decode checked the mask bit and the length.
                let b0 = value[0];
                if b0 & 0x80 == 0 {
                    return Err(WireError::InvalidBlock(
                        "encapsulated control frame without FIN",
                    ));
                }
                if b0 & 0x70 != 0 {
                    return Err(WireError::InvalidBlock(
                        "RSV bits in an encapsulated control frame",
                    ));
                }
                let op = OpCode::from_u8(b0 & 0x0f)
                    .ok()
                    .filter(|op| op.is_control())
                    .ok_or(WireError::InvalidBlock(
                        "encapsulated frame is not a control frame",
                    ))?;
                BlockA::EncapsulatedControlFrame(EncapsulatedControlFrame {
                    channel,
                    opcode: op,
                    payload: value.slice(2..),
                })
            }
            // 2: FlowControl (not at -01), 5-7: unknown.
            op => return Err(WireError::UnknownOpcode(op)),
        })
    }

    /// Decodes and interprets every block of a control message (after the
    /// `00` channel byte).
    pub fn decode_all(buf: &[u8], strict: bool) -> Result<Vec<BlockA>, WireError> {
        RawBlock::decode_all(buf, strict)?
            .into_iter()
            .map(BlockA::from_raw)
            .collect()
    }
}

/// What one variant A physical data frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhysicalA {
    /// Control blocks (channel 0).
    Control(Vec<BlockA>),
    /// One logical data frame (FIN and opcode are the physical frame's).
    Frame(InnerFrame),
}

/// Parses a physical data frame (text, binary or continuation; the caller
/// handles physical Close, Ping and Pong). Errors: RSV bits, control
/// blocks in a text or fragmented frame, a control opcode (2001); a
/// missing, truncated or (when `strict`) non-minimal channel ID (2002);
/// any block error.
pub fn decode_physical_a(
    fin: bool,
    rsv: Rsv,
    opcode: OpCode,
    payload: &Bytes,
    strict: bool,
) -> Result<PhysicalA, WireError> {
    if !rsv.is_empty() {
        return Err(WireError::BadPhysicalFrame("RSV bits on a variant A frame"));
    }
    if opcode.is_control() {
        return Err(WireError::BadPhysicalFrame(
            "a physical control frame is not a mux frame",
        ));
    }
    let (channel, n) = ChannelId::decode(payload, strict)?;
    if channel == ChannelId::CONTROL {
        if opcode != OpCode::Binary || !fin {
            return Err(WireError::BadPhysicalFrame(
                "control blocks need one unfragmented binary frame",
            ));
        }
        return BlockA::decode_all(&payload[n..], strict).map(PhysicalA::Control);
    }
    Ok(PhysicalA::Frame(InnerFrame {
        channel,
        fin,
        rsv: Rsv::empty(),
        opcode: opcode.as_u8(),
        payload: payload.slice(n..),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::proto::{FrameHeader, MAX_HEADER_LEN};

    fn ch(n: u32) -> ChannelId {
        ChannelId::new(n).unwrap()
    }

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn raw(channel: u32, opcode: u8, flags: u8, value: Vec<u8>) -> RawBlock {
        RawBlock {
            channel: ch(channel),
            opcode,
            flags,
            value: Bytes::from(value),
        }
    }

    fn encoded(b: &RawBlock) -> Vec<u8> {
        let mut out = Vec::new();
        b.encode(&mut out);
        out
    }

    /// An unmasked server frame as bytes.
    fn server_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = FrameHeader {
            fin,
            rsv: Rsv::empty(),
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        }
        .encode(&mut head);
        let mut out = head[..n].to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn control_frame(blocks: &[BlockA]) -> Vec<u8> {
        let mut payload = vec![0];
        for b in blocks {
            b.encode(&mut payload);
        }
        server_frame(true, OpCode::Binary, &payload)
    }

    fn code(r: Result<impl std::fmt::Debug, WireError>) -> u16 {
        r.unwrap_err().drop_code().0
    }

    /// §3.3, first three rows: block layout, flags and the S field, byte-exact both ways.
    #[test]
    fn variant_a_raw_block_vectors() {
        let cases = [
            (
                raw(1, 0, 7, b"Hello, world!".to_vec()),
                [hex("01 1c 0d"), b"Hello, world!".to_vec()].concat(),
            ),
            (
                raw(2, 1, 0, vec![b'a'; 256]),
                [hex("02 21 01 00"), vec![b'a'; 256]].concat(),
            ),
            (
                raw(3, 3, 0, vec![b'b'; 65536]),
                [hex("03 62 01 00 00"), vec![b'b'; 65536]].concat(),
            ),
        ];
        for (block, bytes) in cases {
            assert_eq!(encoded(&block), bytes);
            assert_eq!(
                RawBlock::decode(&bytes, true).unwrap(),
                (block, bytes.len())
            );
        }
    }

    /// §3.3, the parsed sequence of four blocks in one message.
    #[test]
    fn variant_a_parsed_sequence_vector() {
        let bytes = [
            hex("01 00 00"),
            hex("02 61 01 00"),
            vec![b'x'; 256],
            hex("03 0a 01 00 00"),
            vec![b'y'; 65536],
            hex("04 63 01 00 00 00"),
            vec![b'z'; 1 << 24],
        ]
        .concat();
        let blocks = RawBlock::decode_all(&bytes, true).unwrap();
        let summary: Vec<_> = blocks
            .iter()
            .map(|b| (b.channel.get(), b.opcode, b.flags, b.value.len()))
            .collect();
        assert_eq!(
            summary,
            [
                (1, 0, 0, 0),
                (2, 3, 0, 256),
                (3, 0, 2, 65536),
                (4, 3, 0, 1 << 24)
            ]
        );
        // Re-encoding gives the same bytes.
        let mut out = Vec::new();
        for b in &blocks {
            b.encode(&mut out);
        }
        assert_eq!(out, bytes);
        // Interpreted: the third is a request with encoding 2 (2010).
        let typed: Vec<_> = blocks.into_iter().map(BlockA::from_raw).collect();
        assert!(matches!(
            typed[0],
            Ok(BlockA::AddChannelRequest(AddChannelRequest { ref handshake, .. })) if handshake.is_empty()
        ));
        assert!(matches!(typed[1], Ok(BlockA::DropChannel(_))));
        assert_eq!(typed[2], Err(WireError::UnknownRequestEncoding(2)));
        assert_eq!(typed[2].as_ref().unwrap_err().drop_code().0, 2010);
        assert!(matches!(typed[3], Ok(BlockA::DropChannel(ref d)) if d.reason.len() == 1 << 24));
    }

    /// §3.3, EncapsulatedControlFrame and its two invalid forms.
    #[test]
    fn variant_a_encapsulated_control_frame_vectors() {
        let close = BlockA::EncapsulatedControlFrame(EncapsulatedControlFrame {
            channel: ch(1),
            opcode: OpCode::Close,
            payload: Bytes::from_static(b"FooBar"),
        });
        let bytes = hex("01 80 88 06 46 6f 6f 42 61 72");
        let mut out = Vec::new();
        close.encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(BlockA::decode_all(&bytes, true).unwrap(), vec![close]);
        for bad in [
            "01 80 08 06 46 6f 6f 42 61 72", // FIN = 0
            "01 80 80 06 46 6f 6f 42 61 72", // continuation: not a control opcode
            "01 80 82 06 46 6f 6f 42 61 72", // binary
            "01 80 c9 00",                   // RSV1
            "01 80 89 86 00 00 00 00",       // masked
            "01 80 89 7e 00 80",             // longer than 125
            "01 84 89 00",                   // flags
            "01 81 89 00",                   // S bits
            "00 80 89 00",                   // channel 0
            "01 80 89 06 46 6f",             // payload past the end
            "01 80 89",                      // header cut short
        ] {
            assert_eq!(code(BlockA::decode_all(&hex(bad), true)), 2005, "{bad}");
        }
    }

    /// §3.3, the whole server frames: physical header, channel 0, blocks.
    #[test]
    fn variant_a_server_frame_vectors() {
        let resp = |channel, rejected, encoding, text: &'static [u8]| {
            BlockA::AddChannelResponse(AddChannelResponse {
                channel: ch(channel),
                rejected,
                encoding,
                handshake: Bytes::from_static(text),
            })
        };
        let drop = |mux_error, reason: &'static [u8]| {
            BlockA::DropChannel(DropChannelA {
                channel: ch(1),
                mux_error,
                reason: Bytes::from_static(reason),
            })
        };
        let cases = [
            (
                resp(1, false, Encoding::Identity, b"FooBar"),
                "82 0a 00 01 20 06 46 6f 6f 42 61 72",
            ),
            (
                resp(2, true, Encoding::Delta, b"Hello"),
                "82 09 00 02 34 05 48 65 6c 6c 6f",
            ),
            (drop(false, b""), "82 04 00 01 60 00"),
            (drop(true, b"error"), "82 09 00 01 70 05 65 72 72 6f 72"),
            (
                BlockA::EncapsulatedControlFrame(EncapsulatedControlFrame {
                    channel: ch(1),
                    opcode: OpCode::Close,
                    payload: Bytes::from_static(b"FooBar"),
                }),
                "82 0b 00 01 80 88 06 46 6f 6f 42 61 72",
            ),
        ];
        for (block, frame) in cases {
            let frame = hex(frame);
            assert_eq!(control_frame(std::slice::from_ref(&block)), frame);
            let payload = Bytes::copy_from_slice(&frame[2..]);
            assert_eq!(
                decode_physical_a(true, Rsv::empty(), OpCode::Binary, &payload, true).unwrap(),
                PhysicalA::Control(vec![block])
            );
        }
        // A logical text frame: the physical opcode is the logical one.
        let mut payload = Vec::new();
        ch(1).encode(&mut payload);
        payload.extend_from_slice(b"Hello");
        assert_eq!(
            server_frame(true, OpCode::Text, &payload),
            hex("81 06 01 48 65 6c 6c 6f")
        );
        match decode_physical_a(true, Rsv::empty(), OpCode::Text, &payload.into(), true).unwrap() {
            PhysicalA::Frame(f) => assert_eq!(
                (f.channel, f.fin, f.opcode, &f.payload[..]),
                (ch(1), true, 1, &b"Hello"[..])
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn variant_a_round_trips() {
        for channel in [1, 127, 128, 16383, 16384, 2097152, ChannelId::MAX] {
            for len in [0usize, 1, 255, 256, 65535, 65536] {
                let blocks = [
                    BlockA::AddChannelRequest(AddChannelRequest {
                        channel: ch(channel),
                        encoding: Encoding::Identity,
                        handshake: Bytes::from(vec![b'r'; len]),
                    }),
                    BlockA::AddChannelResponse(AddChannelResponse {
                        channel: ch(channel),
                        rejected: len % 2 == 1,
                        encoding: Encoding::Identity,
                        handshake: Bytes::from(vec![b's'; len]),
                    }),
                    BlockA::DropChannel(DropChannelA {
                        channel: ch(channel),
                        mux_error: len % 2 == 0,
                        reason: Bytes::from(vec![b't'; len]),
                    }),
                    BlockA::EncapsulatedControlFrame(EncapsulatedControlFrame {
                        channel: ch(channel),
                        opcode: OpCode::Ping,
                        payload: Bytes::from(vec![b'u'; len.min(125)]),
                    }),
                ];
                let mut out = Vec::new();
                for b in &blocks {
                    b.encode(&mut out);
                }
                assert_eq!(BlockA::decode_all(&out, true).unwrap(), blocks);
            }
        }
    }

    #[test]
    fn variant_a_bad_blocks_and_frames() {
        fn phys(opcode: OpCode, fin: bool, rsv: Rsv, bytes: &str) -> u16 {
            code(decode_physical_a(
                fin,
                rsv,
                opcode,
                &Bytes::from(hex(bytes)),
                true,
            ))
        }
        fn bin(bytes: &str) -> u16 {
            phys(OpCode::Binary, true, Rsv::empty(), bytes)
        }
        // Channel IDs of the physical frame: missing, truncated, non-minimal.
        assert_eq!(bin(""), 2002);
        assert_eq!(bin("80"), 2002);
        assert_eq!(bin("e0 00 00"), 2002);
        assert_eq!(bin("80 05 41"), 2002);
        // The encapsulation itself.
        assert_eq!(phys(OpCode::Binary, true, Rsv::RSV1, "01 41"), 2001);
        assert_eq!(phys(OpCode::Text, true, Rsv::empty(), "00 01 00 00"), 2001);
        assert_eq!(
            phys(OpCode::Binary, false, Rsv::empty(), "00 01 00 00"),
            2001
        );
        assert_eq!(phys(OpCode::Ping, true, Rsv::empty(), "00"), 2001);
        // Unknown or unsupported opcodes.
        for op in [2u8, 5, 6, 7] {
            let b = format!("00 01 {:02x} 00", op << 5);
            assert_eq!(bin(&b), 2004, "opcode {op}");
        }
        // Blocks cut short or with bad fields.
        for (bytes, want) in [
            ("00 80", 2005),                // objective channel ID truncated
            ("00 80 05 00 00", 2005),       // objective channel ID non-minimal
            ("00 01", 2005),                // no opcode byte
            ("00 01 01 00", 2005),          // 2-byte length cut short
            ("00 01 03 00 00 00", 2005),    // 4-byte length cut short
            ("00 01 00 05 61", 2005),       // value past the end
            ("00 01 03 ff ff ff ff", 2005), // 4 GiB value in a short message
            ("00 01 10 00", 2005),          // AddChannelRequest reserved bit
            ("00 01 04 00", 2010),          // delta request: not in variant A
            ("00 01 0c 00", 2010),          // encoding 3
            ("00 01 28 00", 2012),          // response encoding 2
            ("00 01 64 00", 2005),          // DropChannel reserved bit
            ("00 01 20 00 01", 2005),       // trailing byte after a block
        ] {
            assert_eq!(bin(bytes), want, "{bytes}");
        }
        // Lenient where the evidence is: a non-minimal length is unambiguous.
        assert!(BlockA::decode_all(&hex("01 61 00 00"), true).is_ok());
        // An empty logical frame is legal (there is no inner header).
        assert!(matches!(
            decode_physical_a(true, Rsv::empty(), OpCode::Binary, &Bytes::from(hex("05")), true),
            Ok(PhysicalA::Frame(InnerFrame { ref payload, .. })) if payload.is_empty()
        ));
    }

    #[test]
    fn variant_a_drop_reason_convention() {
        let d = |reason: Option<(u16, &str)>| DropChannel {
            channel: ch(3),
            reason: reason.map(|(c, m)| (DropCode(c), m.to_owned())),
        };
        for (drop, mux_error, text) in [
            (d(None), false, ""),
            (d(Some((2005, ""))), true, "2005"),
            (
                d(Some((3000, "receive buffer limit"))),
                false,
                "3000 receive buffer limit",
            ),
            (d(Some((1000, "bye"))), false, "1000 bye"),
        ] {
            let a = DropChannelA::from_drop_channel(&drop);
            assert_eq!((a.mux_error, &a.reason[..]), (mux_error, text.as_bytes()));
            assert_eq!(a.to_drop_channel(), drop);
        }
        // Reasons from other peers: the flag decides the code.
        let other = |mux_error, reason: &'static [u8]| {
            DropChannelA {
                channel: ch(1),
                mux_error,
                reason: Bytes::from_static(reason),
            }
            .to_drop_channel()
            .reason
            .unwrap()
        };
        assert_eq!(other(true, b"error"), (DropCode(2000), "error".into()));
        assert_eq!(other(false, b"12345"), (DropCode(1000), "12345".into()));
        assert_eq!(other(false, b"\xff"), (DropCode(1000), "\u{fffd}".into()));
    }
}
