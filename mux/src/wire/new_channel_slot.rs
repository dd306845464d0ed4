//! NewChannelSlot (mux opcode 4): `100 RRRR F` · number(slots) ·
//! number(initial quota). Server to client only; no channel ID.

use super::{WireError, number};

/// Grants the client more AddChannelRequests, each with an initial quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewChannelSlot {
    /// Additional channels the client may open.
    pub slots: u64,
    /// The client's initial send quota on each of them.
    pub quota: u64,
    /// The fallback flag (semantics uncertain in the drafts: "use another
    /// physical connection"; see [`crate::MuxConfig::fallback_rule`]).
    pub fallback: bool,
}

impl NewChannelSlot {
    pub(super) fn decode(flags: u8, buf: &[u8]) -> Result<(Self, usize), WireError> {
        if flags & 0x1e != 0 {
            return Err(WireError::InvalidBlock("reserved bits in NewChannelSlot"));
        }
        let (slots, n) = number::decode(buf)?;
        let (quota, m) = number::decode(&buf[n..])?;
        Ok((
            NewChannelSlot {
                slots,
                quota,
                fallback: flags & 1 != 0,
            },
            n + m,
        ))
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.push(0x80 | self.fallback as u8);
        number::encode(self.slots, out);
        number::encode(self.quota, out);
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
                &[0x80, 0x40, 0x7e, 0x20, 0x00][..],
                NewChannelSlot {
                    slots: 64,
                    quota: 8192,
                    fallback: false,
                },
            ),
            (
                &[0x81, 0x00, 0x00],
                NewChannelSlot {
                    slots: 0,
                    quota: 0,
                    fallback: true,
                },
            ),
        ] {
            assert_eq!(
                Block::decode_all(bytes, true).unwrap(),
                vec![Block::NewChannelSlot(block)]
            );
            let mut out = Vec::new();
            Block::NewChannelSlot(block).encode(&mut out);
            assert_eq!(out, bytes);
        }
        assert_eq!(
            Block::decode_all(&[0x82, 0x00, 0x00], true)
                .unwrap_err()
                .drop_code()
                .0,
            2005
        );
    }
}
