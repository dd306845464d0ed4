//! Protocol violations and their close codes.

use super::close::CloseCode;
use super::frame::Rsv;

/// A violation of RFC 6455 (or of a negotiated extension, or of a local
/// limit) by the peer. Each variant maps to the close code sent when the
/// connection is failed, see [`ProtocolError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A server received a frame without a mask (RFC 6455 §5.1).
    #[error("received an unmasked frame from a client")]
    UnmaskedFrame,
    /// A client received a masked frame (RFC 6455 §5.1).
    #[error("received a masked frame from a server")]
    MaskedFrame,
    /// RSV bits that no negotiated extension owns or consumed (§5.2).
    #[error("reserved bits {0:?} set without a negotiated extension defining them")]
    ReservedBits(Rsv),
    /// An opcode that is reserved (0x3–0x7, 0xB–0xF).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame with FIN=0 (§5.5).
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A control frame longer than 125 bytes (§5.5).
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlFrameTooLong(u64),
    /// A continuation frame while no message was in progress (§5.4).
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message was in progress.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A 64-bit length with the most significant bit set (§5.2).
    #[error("64-bit payload length has its most significant bit set")]
    LengthMsbSet,
    /// A length not in its minimal encoding (§5.2).
    #[error("payload length not minimally encoded")]
    NonMinimalLength,
    /// Invalid UTF-8 in a text message (§8.1).
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// Invalid UTF-8 in a Close reason.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A Close payload of exactly one byte (§5.5.1).
    #[error("close frame payload of 1 byte")]
    InvalidClosePayload,
    /// A close code that may not appear on the wire (§7.4).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A frame larger than the configured frame limit.
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced payload length.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message larger than the configured message limit (after decoding).
    #[error("message exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The configured limit.
        max: usize,
    },
    /// A negotiated extension rejected the data.
    #[error("extension {extension}: {message}")]
    Extension {
        /// The extension's name.
        extension: String,
        /// The close code to fail the connection with.
        code: CloseCode,
        /// What went wrong.
        message: String,
    },
}

impl ProtocolError {
    /// The close code to fail the connection with (docs/specs/rfc6455.md §8).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            ProtocolError::Extension { code, .. } => *code,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}
