//! AddChannelResponse (mux opcode 1): `001 F RR EE` · channel · number(len)
//! · handshake. Server to client only; F = 1 refuses the channel.

use super::{ChannelId, Encoding, WireError, length_prefixed, put_length_prefixed};
use bytes::Bytes;

/// The answer to an AddChannelRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddChannelResponse {
    /// The channel the request named.
    pub channel: ChannelId,
    /// True if the channel was refused (the handshake is an HTTP error).
    pub rejected: bool,
    /// Identity or delta encoding.
    pub encoding: Encoding,
    /// The encapsulated HTTP response text.
    pub handshake: Bytes,
}

impl AddChannelResponse {
    pub(super) fn decode(flags: u8, buf: &[u8], strict: bool) -> Result<(Self, usize), WireError> {
        if flags & 0x0c != 0 {
            return Err(WireError::InvalidBlock(
                "reserved bits in AddChannelResponse",
            ));
        }
        let encoding = match flags & 0x03 {
            0 => Encoding::Identity,
            1 => Encoding::Delta,
            other => return Err(WireError::UnknownResponseEncoding(other)),
        };
        let (channel, n) = ChannelId::decode(buf, strict)
            .map_err(|_| WireError::InvalidBlock("bad channel ID"))?;
        let (handshake, m) = length_prefixed(&buf[n..])?;
        Ok((
            AddChannelResponse {
                channel,
                rejected: flags & 0x10 != 0,
                encoding,
                handshake,
            },
            n + m,
        ))
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        let enc = match self.encoding {
            Encoding::Identity => 0,
            Encoding::Delta => 1,
        };
        out.push(0x20 | (self.rejected as u8) << 4 | enc);
        self.channel.encode(out);
        put_length_prefixed(&self.handshake, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Block;
    use super::*;

    #[test]
    fn vectors() {
        for (bytes, block) in [
            (
                &[0x20, 0x01, 0x06, b'F', b'o', b'o', b'B', b'a', b'r'][..],
                AddChannelResponse {
                    channel: ChannelId::IMPLICIT,
                    rejected: false,
                    encoding: Encoding::Identity,
                    handshake: Bytes::from_static(b"FooBar"),
                },
            ),
            (
                &[0x31, 0x02, 0x05, b'H', b'e', b'l', b'l', b'o'],
                AddChannelResponse {
                    channel: ChannelId::new(2).unwrap(),
                    rejected: true,
                    encoding: Encoding::Delta,
                    handshake: Bytes::from_static(b"Hello"),
                },
            ),
        ] {
            assert_eq!(
                Block::decode_all(bytes, true).unwrap(),
                vec![Block::AddChannelResponse(block.clone())]
            );
            let mut out = Vec::new();
            Block::AddChannelResponse(block).encode(&mut out);
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            Block::decode_all(&[0x28, 0x01, 0x00], true)
                .unwrap_err()
                .drop_code()
                .0,
            2005
        );
        assert_eq!(
            Block::decode_all(&[0x22, 0x01, 0x00], true)
                .unwrap_err()
                .drop_code()
                .0,
            2012
        );
    }
}
