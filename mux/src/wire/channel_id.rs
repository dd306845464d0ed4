//! Channel IDs: 1 to 4 bytes, big-endian, the count of leading 1-bits of the
//! first byte giving the extra length (docs/specs/mux.md §1.1).
//!
//! ```text
//! 0xxxxxxx                              0 ..= 127
//! 10xxxxxx xxxxxxxx                     0 ..= 16 383
//! 110xxxxx xxxxxxxx xxxxxxxx            0 ..= 2 097 151
//! 111xxxxx xxxxxxxx xxxxxxxx xxxxxxxx   0 ..= 536 870 911
//! ```

use super::WireError;
use std::fmt;

/// A logical channel ID (0 is the control channel, 1 the implicit channel).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(u32);

impl ChannelId {
    /// The control channel.
    pub const CONTROL: ChannelId = ChannelId(0);
    /// The channel opened by the physical handshake.
    pub const IMPLICIT: ChannelId = ChannelId(1);
    /// The largest encodable ID, 2^29 - 1.
    pub const MAX: u32 = (1 << 29) - 1;

    /// `Some` for IDs up to [`ChannelId::MAX`].
    pub const fn new(id: u32) -> Option<ChannelId> {
        if id <= Self::MAX {
            Some(ChannelId(id))
        } else {
            None
        }
    }

    /// The numeric ID.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Appends the minimal encoding.
    pub fn encode(self, out: &mut Vec<u8>) {
        let v = self.0;
        match v {
            0..=0x7f => out.push(v as u8),
            0x80..=0x3fff => out.extend_from_slice(&[0x80 | (v >> 8) as u8, v as u8]),
            0x4000..=0x1f_ffff => {
                out.extend_from_slice(&[0xc0 | (v >> 16) as u8, (v >> 8) as u8, v as u8])
            }
            _ => out.extend_from_slice(&(0xe000_0000 | v).to_be_bytes()),
        }
    }

    /// Decodes from the front of `buf`: the ID and its length. Truncation is
    /// [`WireError::ChannelIdTruncated`]; a non-minimal encoding is rejected
    /// when `strict`.
    pub fn decode(buf: &[u8], strict: bool) -> Result<(ChannelId, usize), WireError> {
        let first = *buf.first().ok_or(WireError::ChannelIdTruncated)?;
        let (len, mut v) = match first {
            0x00..=0x7f => (1, u32::from(first)),
            0x80..=0xbf => (2, u32::from(first & 0x3f)),
            0xc0..=0xdf => (3, u32::from(first & 0x1f)),
            _ => (4, u32::from(first & 0x1f)),
        };
        let bytes = buf.get(1..len).ok_or(WireError::ChannelIdTruncated)?;
        for b in bytes {
            v = v << 8 | u32::from(*b);
        }
        let min = match len {
            1 => 0,
            2 => 0x80,
            3 => 0x4000,
            _ => 0x20_0000,
        };
        if strict && v < min {
            return Err(WireError::NonMinimalChannelId);
        }
        Ok((ChannelId(v), len))
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ch{}", self.0)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u32) -> Vec<u8> {
        let mut out = Vec::new();
        ChannelId::new(v).unwrap().encode(&mut out);
        out
    }

    #[test]
    fn digest_vectors() {
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(1), [0x01]);
        assert_eq!(enc(200), [0x80, 0xc8]);
        assert_eq!(enc((1 << 14) - 1), [0xbf, 0xff]);
        assert_eq!(enc(1 << 14), [0xc0, 0x40, 0x00]);
        assert_eq!(enc((1 << 21) - 1), [0xdf, 0xff, 0xff]);
        assert_eq!(enc(1 << 21), [0xe0, 0x20, 0x00, 0x00]);
        assert_eq!(enc((1 << 29) - 1), [0xff, 0xff, 0xff, 0xff]);
        assert!(ChannelId::new(1 << 29).is_none());
        let mut buf: &[u8] = &[
            0x00, 0x01, 0xbf, 0xff, 0xdf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        let mut got = Vec::new();
        while !buf.is_empty() {
            let (id, n) = ChannelId::decode(buf, true).unwrap();
            got.push(id.get());
            buf = &buf[n..];
        }
        assert_eq!(got, [0, 1, 16383, 2097151, 536870911]);
    }

    #[test]
    fn truncated_and_non_minimal() {
        assert_eq!(
            ChannelId::decode(&[], true),
            Err(WireError::ChannelIdTruncated)
        );
        assert_eq!(
            ChannelId::decode(&[0x80], true),
            Err(WireError::ChannelIdTruncated)
        );
        assert_eq!(
            ChannelId::decode(&[0xe0, 0, 0], true),
            Err(WireError::ChannelIdTruncated)
        );
        assert_eq!(
            ChannelId::decode(&[0x80, 0x05], true),
            Err(WireError::NonMinimalChannelId)
        );
        assert_eq!(ChannelId::decode(&[0x80, 0x05], false).unwrap().0.get(), 5);
    }

    #[test]
    fn round_trip() {
        for v in [
            0,
            1,
            127,
            128,
            16383,
            16384,
            2097151,
            2097152,
            ChannelId::MAX,
        ] {
            let e = enc(v);
            assert_eq!(
                ChannelId::decode(&e, true).unwrap(),
                (ChannelId(v), e.len())
            );
        }
    }
}
