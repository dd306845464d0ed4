//! AddChannelRequest (mux opcode 0): `000 RRR EE` · channel · number(len) ·
//! handshake. Client to server only.

use super::{ChannelId, Encoding, WireError, length_prefixed, put_length_prefixed};
use bytes::Bytes;

/// A request to open a logical channel with an encapsulated handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddChannelRequest {
    /// The channel to open (chosen by the client).
    pub channel: ChannelId,
    /// Identity or delta encoding of the handshake.
    pub encoding: Encoding,
    /// The encapsulated HTTP request text.
    pub handshake: Bytes,
}

impl AddChannelRequest {
    pub(super) fn decode(flags: u8, buf: &[u8], strict: bool) -> Result<(Self, usize), WireError> {
        if flags & 0x1c != 0 {
            return Err(WireError::InvalidBlock(
                "reserved bits in AddChannelRequest",
            ));
        }
        let encoding = match flags & 0x03 {
            0 => Encoding::Identity,
            1 => Encoding::Delta,
            other => return Err(WireError::UnknownRequestEncoding(other)),
        };
        let (channel, n) = ChannelId::decode(buf, strict)
            .map_err(|_| WireError::InvalidBlock("bad channel ID"))?;
        let (handshake, m) = length_prefixed(&buf[n..])?;
        Ok((
            AddChannelRequest {
                channel,
                encoding,
                handshake,
            },
            n + m,
        ))
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.push(match self.encoding {
            Encoding::Identity => 0x00,
            Encoding::Delta => 0x01,
        });
        self.channel.encode(out);
        put_length_prefixed(&self.handshake, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Block;
    use super::*;

    fn round_trip(b: AddChannelRequest, want_prefix: &[u8]) {
        let mut out = Vec::new();
        Block::AddChannelRequest(b.clone()).encode(&mut out);
        assert_eq!(&out[..want_prefix.len()], want_prefix);
        assert_eq!(out.len(), want_prefix.len() + b.handshake.len());
        assert_eq!(
            Block::decode_all(&out, true).unwrap(),
            vec![Block::AddChannelRequest(b)]
        );
    }

    #[test]
    fn vectors() {
        let req = |ch: u32, len: usize| AddChannelRequest {
            channel: ChannelId::new(ch).unwrap(),
            encoding: Encoding::Identity,
            handshake: Bytes::from(vec![b'a'; len]),
        };
        round_trip(req(1, 1), &[0x00, 0x01, 0x01]);
        round_trip(req(2, 125), &[0x00, 0x02, 0x7d]);
        round_trip(req(3, 65535), &[0x00, 0x03, 0x7e, 0xff, 0xff]);
        round_trip(req(4, 65536), &[0x00, 0x04, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(
            Block::decode_all(&[0x00, 0x01, 0x01, 0x61], true).unwrap(),
            vec![Block::AddChannelRequest(req(1, 1))]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            Block::decode_all(&[0x04, 0x01, 0x00], true)
                .unwrap_err()
                .drop_code()
                .0,
            2005
        );
        assert_eq!(
            Block::decode_all(&[0x02, 0x01, 0x00], true)
                .unwrap_err()
                .drop_code()
                .0,
            2010
        );
        assert_eq!(
            Block::decode_all(&[0x03, 0x01, 0x00], true)
                .unwrap_err()
                .drop_code()
                .0,
            2010
        );
        assert_eq!(
            Block::decode_all(&[0x00, 0x01, 0x05, 0x61], true)
                .unwrap_err()
                .drop_code()
                .0,
            2005
        );
    }
}
