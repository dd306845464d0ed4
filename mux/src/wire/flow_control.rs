//! FlowControl (mux opcode 2): `010 RRRRR` · channel · number(quota to add).

use super::{ChannelId, WireError, number};

/// Adds send quota to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowControl {
    /// The channel whose sender gets more quota.
    pub channel: ChannelId,
    /// Bytes of quota to add.
    pub quota: u64,
}

impl FlowControl {
    pub(super) fn decode(flags: u8, buf: &[u8], strict: bool) -> Result<(Self, usize), WireError> {
        if flags != 0 {
            return Err(WireError::InvalidBlock("reserved bits in FlowControl"));
        }
        let (channel, n) = ChannelId::decode(buf, strict)
            .map_err(|_| WireError::InvalidBlock("bad channel ID"))?;
        let (quota, m) = number::decode(&buf[n..])?;
        Ok((FlowControl { channel, quota }, n + m))
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.push(0x40);
        self.channel.encode(out);
        number::encode(self.quota, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Block;
    use super::*;

    #[test]
    fn vectors() {
        for (bytes, quota) in [
            (&[0x40, 0x01, 0x02][..], 2u64),
            (&[0x40, 0x01, 0x7e, 0x20, 0x00], 8192),
        ] {
            let b = Block::FlowControl(FlowControl {
                channel: ChannelId::IMPLICIT,
                quota,
            });
            assert_eq!(Block::decode_all(bytes, true).unwrap(), vec![b.clone()]);
            let mut out = Vec::new();
            b.encode(&mut out);
            assert_eq!(out, bytes);
        }
        assert_eq!(
            Block::decode_all(&[0x41, 0x01, 0x02], true)
                .unwrap_err()
                .drop_code()
                .0,
            2005
        );
    }
}
