//! The base framing layer (RFC 6455 §5.2): header parsing and encoding.
//!
//! [`FrameHeader::parse`] reads a header from a byte slice and answers
//! "need N more bytes" when the slice is short, so a reader never copies a
//! partial header. Header encoding writes into a 14-byte stack array.

use super::error::ProtocolError;
use bytes::Bytes;

bitflags::bitflags! {
    /// The three reserved bits of a frame header, as they sit in byte 0.
    ///
    /// Extensions declare the bits they own with this type; the core rejects
    /// any bit no negotiated extension declared, and any bit still set after
    /// the extension chain decoded the frame.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Rsv: u8 {
        /// RSV1 (0x40), used by permessage-deflate and per-frame deflate.
        const RSV1 = 0x40;
        /// RSV2 (0x20).
        const RSV2 = 0x20;
        /// RSV3 (0x10).
        const RSV3 = 0x10;
    }
}

/// A frame opcode (RFC 6455 §5.2). Reserved opcodes are rejected at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continuation of a fragmented message.
    Continuation,
    /// 0x1: text (UTF-8) data.
    Text,
    /// 0x2: binary data.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Decodes the 4-bit opcode.
    pub fn from_u8(v: u8) -> Result<OpCode, ProtocolError> {
        Ok(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong.
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// Maximum encoded header length: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;
/// Maximum control frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A parsed or to-be-encoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN bit: last frame of a message.
    pub fin: bool,
    /// Reserved bits.
    pub rsv: Rsv,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if MASK is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// Result of [`FrameHeader::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderParse {
    /// A full header: the header and how many bytes it took.
    Complete(FrameHeader, usize),
    /// At least this many more bytes are needed.
    Incomplete(usize),
}

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Checks everything that can be checked from the header alone: reserved
    /// opcodes, control frame FIN and length, the 64-bit length MSB and the
    /// minimal length encoding. RSV and mask checks depend on the negotiated
    /// extensions and the role and are made by the caller.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<HeaderParse, ProtocolError> {
        if buf.len() < 2 {
            return Ok(HeaderParse::Incomplete(2 - buf.len()));
        }
        let b0 = buf[0];
        let b1 = buf[1];
        let fin = b0 & 0x80 != 0;
        let rsv = Rsv::from_bits_truncate(b0);
        let opcode = OpCode::from_u8(b0 & 0x0F)?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        let ext_len = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + ext_len + if masked { 4 } else { 0 };
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if len7 > 125 {
                // Reported with the 7-bit marker; the real length is larger still.
                return Err(ProtocolError::ControlFrameTooLong(len7 as u64));
            }
        }
        if buf.len() < header_len {
            return Ok(HeaderParse::Incomplete(header_len - buf.len()));
        }
        let payload_len = match len7 {
            126 => {
                let v = u16::from_be_bytes([buf[2], buf[3]]) as u64;
                if v < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                v
            }
            127 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&buf[2..10]);
                let v = u64::from_be_bytes(a);
                if v & (1 << 63) != 0 {
                    return Err(ProtocolError::LengthMsbSet);
                }
                if v <= 0xFFFF {
                    return Err(ProtocolError::NonMinimalLength);
                }
                v
            }
            n => n as u64,
        };
        let mask = masked.then(|| {
            let at = 2 + ext_len;
            [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
        });
        Ok(HeaderParse::Complete(
            FrameHeader {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            header_len,
        ))
    }

    /// Encodes the header into `out`, returning the number of bytes written.
    /// The length is always minimally encoded.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (self.fin as u8) << 7 | self.rsv.bits() | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = if self.payload_len <= 125 {
            out[1] = mask_bit | self.payload_len as u8;
            2
        } else if self.payload_len <= 0xFFFF {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
            4
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
            10
        };
        if let Some(key) = self.mask {
            out[n..n + 4].copy_from_slice(&key);
            n += 4;
        }
        n
    }
}

/// A frame as the session layer and the extension chain see it: header bits
/// and an unmasked payload. Length and mask are a property of the wire form.
///
/// This is also the unit a non-socket transport (the mux) exchanges with a
/// [`Session`](crate::Session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Reserved bits.
    pub rsv: Rsv,
    /// The opcode.
    pub opcode: OpCode,
    /// The unmasked payload.
    pub payload: Bytes,
}

impl Frame {
    /// A final frame with no RSV bits.
    pub fn new(opcode: OpCode, payload: impl Into<Bytes>) -> Self {
        Frame {
            fin: true,
            rsv: Rsv::empty(),
            opcode,
            payload: payload.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(buf: &[u8]) -> (FrameHeader, usize) {
        match FrameHeader::parse(buf).unwrap() {
            HeaderParse::Complete(h, n) => (h, n),
            HeaderParse::Incomplete(n) => panic!("incomplete, need {n}"),
        }
    }

    #[test]
    fn rfc_5_7_vectors_parse() {
        let (h, n) = header(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.payload_len, n),
            (true, OpCode::Text, None, 5, 2)
        );
        let (h, n) = header(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f]);
        assert_eq!(
            (h.mask, h.payload_len, n),
            (Some([0x37, 0xfa, 0x21, 0x3d]), 5, 6)
        );
        let (h, _) = header(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert_eq!((h.fin, h.opcode), (false, OpCode::Text));
        let (h, _) = header(&[0x80, 0x02, 0x6c, 0x6f]);
        assert_eq!((h.fin, h.opcode), (true, OpCode::Continuation));
        let (h, _) = header(&[0x89, 0x05]);
        assert_eq!(h.opcode, OpCode::Ping);
        let (h, _) = header(&[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(h.opcode, OpCode::Pong);
        let (h, n) = header(&[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!((h.payload_len, n), (256, 4));
        let (h, n) = header(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn encode_matches_vectors_and_minimal_lengths() {
        let mut out = [0u8; MAX_HEADER_LEN];
        let cases: [(u64, &[u8]); 4] = [
            (125, &[0x82, 0x7d]),
            (126, &[0x82, 0x7e, 0x00, 0x7e]),
            (65535, &[0x82, 0x7e, 0xff, 0xff]),
            (65536, &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
        ];
        for (len, want) in cases {
            let h = FrameHeader {
                fin: true,
                rsv: Rsv::empty(),
                opcode: OpCode::Binary,
                mask: None,
                payload_len: len,
            };
            let n = h.encode(&mut out);
            assert_eq!(&out[..n], want);
            assert_eq!(header(&out[..n]), (h, n));
        }
        let h = FrameHeader {
            fin: true,
            rsv: Rsv::empty(),
            opcode: OpCode::Text,
            mask: Some([0x37, 0xfa, 0x21, 0x3d]),
            payload_len: 5,
        };
        let n = h.encode(&mut out);
        assert_eq!(&out[..n], &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
    }

    #[test]
    fn incomplete_reports_need() {
        assert_eq!(FrameHeader::parse(&[]), Ok(HeaderParse::Incomplete(2)));
        assert_eq!(FrameHeader::parse(&[0x82]), Ok(HeaderParse::Incomplete(1)));
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7e, 0x01]),
            Ok(HeaderParse::Incomplete(1))
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0xff, 0, 0]),
            Ok(HeaderParse::Incomplete(10))
        );
    }

    #[test]
    fn bad_headers() {
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x00]),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 0x7e]),
            Err(ProtocolError::ControlFrameTooLong(126))
        );
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x00]),
            Err(ProtocolError::ReservedOpcode(3))
        );
        assert_eq!(
            FrameHeader::parse(&[0x8b, 0x00]),
            Err(ProtocolError::ReservedOpcode(0xb))
        );
        assert_eq!(
            FrameHeader::parse(&[0x81, 0x7e, 0x00, 0x05]),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthMsbSet)
        );
        // RSV bits are reported, not rejected, by the header parser.
        let (h, _) = header(&[0xc1, 0x05]);
        assert_eq!(h.rsv, Rsv::RSV1);
    }
}
