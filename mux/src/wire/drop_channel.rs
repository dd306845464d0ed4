//! DropChannel (mux opcode 3): `011 RRRRR` · channel · number(len) · reason,
//! where the reason is empty or a 2-byte code and a UTF-8 message.

use super::{ChannelId, WireError, length_prefixed, put_length_prefixed};
use std::fmt;

/// A DropChannel reason code (docs/specs/mux.md §4.8): 1000-1999 normal, 2000-2999
/// physical failures, 3000-3999 logical failures, 4000-4999 other.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DropCode(pub u16);

impl DropCode {
    /// 1000: normal closure.
    pub const NORMAL: DropCode = DropCode(1000);
    /// 2000: the physical connection failed.
    pub const PHYSICAL_FAILED: DropCode = DropCode(2000);
    /// 2006: the channel already exists.
    pub const CHANNEL_EXISTS: DropCode = DropCode(2006);
    /// 2007: AddChannelRequest without a slot.
    pub const SLOT_VIOLATION: DropCode = DropCode(2007);
    /// 2008: slot count overflow.
    pub const SLOT_OVERFLOW: DropCode = DropCode(2008);
    /// 2009: malformed encapsulated request.
    pub const BAD_REQUEST: DropCode = DropCode(2009);
    /// 2011: malformed encapsulated response.
    pub const BAD_RESPONSE: DropCode = DropCode(2011);
    /// 3000: the logical channel failed.
    pub const LOGICAL_FAILED: DropCode = DropCode(3000);
    /// 3005: more data than the granted quota.
    pub const QUOTA_VIOLATION: DropCode = DropCode(3005);
    /// 3006: quota above 2^63 - 1.
    pub const QUOTA_OVERFLOW: DropCode = DropCode(3006);
    /// 3007: idle timeout.
    pub const IDLE_TIMEOUT: DropCode = DropCode(3007);
    /// 3008: acknowledges the peer's DropChannel.
    pub const ACKNOWLEDGED: DropCode = DropCode(3008);
    /// 3009: the channel's frames broke RFC 6455 fragmentation rules.
    pub const BAD_FRAGMENTATION: DropCode = DropCode(3009);

    /// True for 2000-2999: the whole physical connection failed.
    pub fn is_physical(self) -> bool {
        (2000..3000).contains(&self.0)
    }
}

impl fmt::Debug for DropCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DropCode({})", self.0)
    }
}

impl fmt::Display for DropCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Terminates a logical channel (or, on channel 0, the connection) at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropChannel {
    /// The channel dropped (0: the physical connection).
    pub channel: ChannelId,
    /// The reason, if any.
    pub reason: Option<(DropCode, String)>,
}

impl DropChannel {
    pub(super) fn decode(flags: u8, buf: &[u8], strict: bool) -> Result<(Self, usize), WireError> {
        if flags != 0 {
            return Err(WireError::InvalidBlock("reserved bits in DropChannel"));
        }
        let (channel, n) = ChannelId::decode(buf, strict)
            .map_err(|_| WireError::InvalidBlock("bad channel ID"))?;
        let (reason, m) = length_prefixed(&buf[n..])?;
        let reason = match reason.len() {
            0 => None,
            1 => return Err(WireError::InvalidBlock("DropChannel reason of 1 byte")),
            _ => {
                let code = DropCode(u16::from_be_bytes([reason[0], reason[1]]));
                let msg = std::str::from_utf8(&reason[2..])
                    .map_err(|_| WireError::InvalidBlock("DropChannel reason is not UTF-8"))?;
                Some((code, msg.to_owned()))
            }
        };
        Ok((DropChannel { channel, reason }, n + m))
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.push(0x60);
        self.channel.encode(out);
        let mut reason = Vec::new();
        if let Some((code, msg)) = &self.reason {
            reason.extend_from_slice(&code.0.to_be_bytes());
            reason.extend_from_slice(msg.as_bytes());
        }
        put_length_prefixed(&reason, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Block;
    use super::*;

    #[test]
    fn vectors() {
        let ch = |n| ChannelId::new(n).unwrap();
        for (bytes, block) in [
            (
                &[0x60, 0x01, 0x00][..],
                DropChannel {
                    channel: ch(1),
                    reason: None,
                },
            ),
            (
                &[0x60, 0x01, 0x07, 0x07, 0xd0, b'e', b'r', b'r', b'o', b'r'],
                DropChannel {
                    channel: ch(1),
                    reason: Some((DropCode(2000), "error".into())),
                },
            ),
            (
                &[
                    0x60, 0x02, 0x09, 0x03, 0xe8, b'S', b'u', b'c', b'c', b'e', b's', b's',
                ],
                DropChannel {
                    channel: ch(2),
                    reason: Some((DropCode(1000), "Success".into())),
                },
            ),
        ] {
            assert_eq!(
                Block::decode_all(bytes, true).unwrap(),
                vec![Block::DropChannel(block.clone())]
            );
            let mut out = Vec::new();
            Block::DropChannel(block).encode(&mut out);
            assert_eq!(out, bytes);
        }
        assert_eq!(
            Block::decode_all(&[0x60, 0x00, 0x01, 0x00], true)
                .unwrap_err()
                .drop_code()
                .0,
            2005
        );
        assert_eq!(
            Block::decode_all(&[0x60, 0x01, 0x03, 0x03, 0xe8, 0xff], true)
                .unwrap_err()
                .drop_code()
                .0,
            2005
        );
        assert_eq!(
            Block::decode_all(&[0x61, 0x01, 0x00], true)
                .unwrap_err()
                .drop_code()
                .0,
            2005
        );
    }
}
