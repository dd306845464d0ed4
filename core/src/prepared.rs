//! Prepared messages: encode a broadcast message once per distinct
//! negotiated encoding, write the same bytes to every connection.
//!
//! A connection states how it takes prepared messages through its
//! [`BroadcastEncoding`] (see [`Session::broadcast_encoding`](crate::Session::broadcast_encoding)
//! and `WebSocket::broadcast_encoding`):
//!
//! - [`Plain`](BroadcastEncoding::Plain): no extension transforms data; the
//!   message's payload is sent as it is, shared by reference.
//! - [`Shared`](BroadcastEncoding::Shared): exactly one per-message
//!   extension (permessage-deflate) that offers a context-free
//!   [`SharedEncoder`]. Connections whose encoders have equal
//!   [`keys`](SharedEncoder::key) form one group; the message is encoded
//!   once per group, on first use, and every connection of the group sends
//!   the same `Bytes` (servers do not mask, so the frames are identical).
//! - [`PerConnection`](BroadcastEncoding::PerConnection): anything else (a
//!   per-frame extension, several extensions, an extension without a shared
//!   encoder). The message goes through that connection's own chain, as if
//!   sent with `send`: correct, but not encoded once.
//!
//! # Context takeover
//!
//! A shared encoding refers to no earlier message, so any peer decodes it,
//! whether or not the connection negotiated `server_no_context_takeover`.
//! The peer's decoder does append the message to its window, while this
//! connection's own compressor never saw it; so after sending a prepared
//! message with the extension's RSV bits the connection tells its encoder
//! ([`MessageEncoder::shared_sent`](crate::ext::MessageEncoder::shared_sent)),
//! which drops its context (RFC 7692 lets a server stop using its context
//! at any time: a compressor "MAY keep" its window, `docs/specs/permessage-deflate.md` §5). Later per-connection
//! messages are therefore always decodable; they only lose the
//! back-references into the messages before the prepared one.

use crate::ext::{ExtensionError, SharedEncoder};
use crate::proto::{Message, OpCode, Rsv, Utf8Bytes};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How one connection takes [`PreparedMessage`]s (see the module docs).
#[derive(Clone)]
pub enum BroadcastEncoding {
    /// No extension transforms data: the payload as it is.
    Plain,
    /// One per-message extension owning `rsv`, encoding with `encoder`.
    Shared {
        /// The extension's RSV bits, set on the frame when `encoder`
        /// transformed the message.
        rsv: Rsv,
        /// The context-free encoder of the connection's group.
        encoder: Arc<dyn SharedEncoder>,
    },
    /// The connection's own extension chain encodes every message.
    PerConnection,
}

impl std::fmt::Debug for BroadcastEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BroadcastEncoding::Plain => f.write_str("Plain"),
            BroadcastEncoding::Shared { rsv, encoder } => f
                .debug_struct("Shared")
                .field("rsv", rsv)
                .field("key", &encoder.key())
                .finish(),
            BroadcastEncoding::PerConnection => f.write_str("PerConnection"),
        }
    }
}

impl BroadcastEncoding {
    /// The group key: connections with equal keys send identical bytes.
    /// `Some("")` for [`Plain`](Self::Plain), `None` for
    /// [`PerConnection`](Self::PerConnection).
    pub fn key(&self) -> Option<&str> {
        match self {
            BroadcastEncoding::Plain => Some(""),
            BroadcastEncoding::Shared { encoder, .. } => Some(encoder.key()),
            BroadcastEncoding::PerConnection => None,
        }
    }
}

struct Encoded {
    key: Box<str>,
    rsv: Rsv,
    payload: Bytes,
}

/// A text or binary message to be sent to many connections, encoded at
/// most once per distinct [`BroadcastEncoding`] key (see the module docs).
///
/// Encodings are made on first use (by [`encoded`](Self::encoded), which
/// `WebSocket::feed_prepared` and the broadcast hub call) and kept, so
/// the message costs one compression per group however many connections
/// it reaches. Share it behind an `Arc`.
pub struct PreparedMessage {
    opcode: OpCode,
    payload: Bytes,
    encoded: Mutex<Vec<Encoded>>,
    compressions: AtomicUsize,
}

impl std::fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedMessage")
            .field("opcode", &self.opcode)
            .field("len", &self.payload.len())
            .field("compressions", &self.compressions())
            .finish_non_exhaustive()
    }
}

impl PreparedMessage {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::with(OpCode::Text, text.into().into_bytes())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::with(OpCode::Binary, data.into())
    }

    /// The message, if it is text or binary (control messages cannot be
    /// prepared).
    pub fn from_message(msg: Message) -> Option<Self> {
        match msg {
            Message::Text(t) => Some(Self::text(t)),
            Message::Binary(b) => Some(Self::binary(b)),
            _ => None,
        }
    }

    fn with(opcode: OpCode, payload: Bytes) -> Self {
        PreparedMessage {
            opcode,
            payload,
            encoded: Mutex::new(Vec::new()),
            compressions: AtomicUsize::new(0),
        }
    }

    /// `Text` or `Binary`.
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }

    /// The message as the application gave it.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The message as it is sent to connections with `encoding`: the RSV
    /// bits and the payload (shared by reference). Encodes on the first
    /// call for each key; `None` for
    /// [`PerConnection`](BroadcastEncoding::PerConnection), whose
    /// connections encode the message themselves.
    pub fn encoded(
        &self,
        encoding: &BroadcastEncoding,
    ) -> Result<Option<(Rsv, Bytes)>, ExtensionError> {
        let (rsv, encoder) = match encoding {
            BroadcastEncoding::Plain => return Ok(Some((Rsv::empty(), self.payload.clone()))),
            BroadcastEncoding::PerConnection => return Ok(None),
            BroadcastEncoding::Shared { rsv, encoder } => (*rsv, encoder),
        };
        let key = encoder.key();
        let mut done = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = done.iter().find(|e| &*e.key == key) {
            return Ok(Some((e.rsv, e.payload.clone())));
        }
        // Encoded under the lock: a second connection of the group waits
        // for this one instead of compressing the message again.
        let mut out = BytesMut::new();
        let (rsv, payload) = if encoder.encode(self.opcode, &self.payload, &mut out)? {
            self.compressions.fetch_add(1, Ordering::Relaxed);
            (rsv, out.freeze())
        } else {
            (Rsv::empty(), self.payload.clone())
        };
        done.push(Encoded {
            key: key.into(),
            rsv,
            payload: payload.clone(),
        });
        Ok(Some((rsv, payload)))
    }

    /// How many times an encoder transformed this message (one per group
    /// whose extension compressed it).
    pub fn compressions(&self) -> usize {
        self.compressions.load(Ordering::Relaxed)
    }

    /// The payload size sent to connections of the group `key` (see
    /// [`BroadcastEncoding::key`]), if that encoding was made; `""` is the
    /// plain payload.
    pub fn encoded_len(&self, key: &str) -> Option<usize> {
        if key.is_empty() {
            return Some(self.payload.len());
        }
        let done = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        done.iter()
            .find(|e| &*e.key == key)
            .map(|e| e.payload.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reverses the payload: a stand-in for a compressor.
    struct Reverse(AtomicUsize);
    impl SharedEncoder for Reverse {
        fn key(&self) -> &str {
            "reverse"
        }
        fn encode(&self, _: OpCode, p: &[u8], out: &mut BytesMut) -> Result<bool, ExtensionError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            if p.len() < 2 {
                return Ok(false);
            }
            out.extend(p.iter().rev());
            Ok(true)
        }
    }

    #[test]
    fn encodes_once_per_key_and_shares_bytes() {
        let enc = Arc::new(Reverse(AtomicUsize::new(0)));
        let shared = BroadcastEncoding::Shared {
            rsv: Rsv::RSV1,
            encoder: enc.clone(),
        };
        let m = PreparedMessage::text("abc");
        let (rsv, a) = m.encoded(&shared).unwrap().unwrap();
        let (_, b) = m.encoded(&shared).unwrap().unwrap();
        assert_eq!(rsv, Rsv::RSV1);
        assert_eq!(&a[..], b"cba");
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same bytes, not a copy");
        assert_eq!(enc.0.load(Ordering::Relaxed), 1);
        assert_eq!(m.compressions(), 1);
        assert_eq!(m.encoded_len("reverse"), Some(3));
        let (rsv, p) = m.encoded(&BroadcastEncoding::Plain).unwrap().unwrap();
        assert!(rsv.is_empty());
        assert_eq!(p.as_ptr(), m.payload().as_ptr());
        assert!(
            m.encoded(&BroadcastEncoding::PerConnection)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn untransformed_message_goes_without_rsv() {
        let enc = Arc::new(Reverse(AtomicUsize::new(0)));
        let shared = BroadcastEncoding::Shared {
            rsv: Rsv::RSV1,
            encoder: enc.clone(),
        };
        let m = PreparedMessage::binary(&b"x"[..]);
        let (rsv, p) = m.encoded(&shared).unwrap().unwrap();
        assert!(rsv.is_empty());
        assert_eq!(&p[..], b"x");
        m.encoded(&shared).unwrap();
        assert_eq!(enc.0.load(Ordering::Relaxed), 1, "the refusal is kept");
        assert_eq!(m.compressions(), 0);
        assert!(PreparedMessage::from_message(Message::Ping(Bytes::new())).is_none());
    }
}
