//! Close status codes (RFC 6455 §7.4) and the close frame body.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// A close status code as carried in a Close frame (RFC 6455 §7.4).
///
/// Any `u16` can be held; [`CloseCode::is_valid_on_wire`] tells which codes
/// may appear in a Close frame and [`CloseCode::is_sendable`] which ones this
/// library lets an application send.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (local pseudo-code, never sent).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: closed without a Close frame (local pseudo-code, never sent).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: payload data inconsistent with the message type (bad UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: (client) an expected extension was not negotiated.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: internal error.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: service restart (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: bad gateway (IANA registry).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: TLS handshake failure (local pseudo-code, never sent).
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Wraps a raw code without checking it.
    pub const fn from_u16(code: u16) -> Self {
        CloseCode(code)
    }

    /// The raw value.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// True if the code may appear in a Close frame on the wire (RFC 6455
    /// §7.4.1/§7.4.2): 1000–1003, 1007–1014 and 3000–4999. A received Close
    /// with any other code is a protocol error (1002).
    pub const fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// True if an application may send this code: the wire-valid codes.
    pub const fn is_sendable(self) -> bool {
        self.is_valid_on_wire()
    }
}

impl From<u16> for CloseCode {
    fn from(v: u16) -> Self {
        CloseCode(v)
    }
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> u16 {
        c.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The body of a Close frame: a code and a UTF-8 reason of at most 123 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, valid UTF-8 (checked on receipt, truncated on send).
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with a code and a reason.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }

    /// Encodes the body; the reason is cut at a character boundary so the
    /// whole payload fits the 125-byte control frame limit.
    pub fn encode(&self) -> Bytes {
        let mut reason = self.reason.as_str();
        if reason.len() > 123 {
            let mut end = 123;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason = &reason[..end];
        }
        let mut out = BytesMut::with_capacity(2 + reason.len());
        out.put_u16(self.code.as_u16());
        out.put_slice(reason.as_bytes());
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_matches_digest_checklist() {
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!CloseCode::from(bad).is_valid_on_wire(), "{bad}");
        }
        for good in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
        ] {
            assert!(CloseCode::from(good).is_valid_on_wire(), "{good}");
        }
    }

    #[test]
    fn encode_truncates_on_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let body = CloseFrame::new(CloseCode::NORMAL, long).encode();
        assert!(body.len() <= 125);
        assert!(std::str::from_utf8(&body[2..]).is_ok());
        assert_eq!(&body[..2], &[0x03, 0xe8]);
    }
}
