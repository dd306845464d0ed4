//! The `mbws.weft` frame codec (sans-I/O): both wire forms of every
//! operation, and their validation. `broker/PROTOCOL.md` is the
//! specification; its byte examples are this module's test vectors.
//!
//! Decoding takes one WebSocket data message ([`decode`]) or its bytes
//! ([`decode_text`], [`decode_binary`]) and returns a [`Frame`] whose fields
//! are validated newtypes, or a [`FrameError`] that names the problem and
//! the ERROR code ([`FrameError::code`]) to answer it with. It never panics
//! on any input (a property test feeds it arbitrary bytes). Bodies are split
//! off the message's `Bytes` without copying.
//!
//! Encoding ([`encode`]) writes the canonical form: fields in the order
//! PROTOCOL.md lists them, application headers last, `ack` always present in
//! SUBSCRIBE, `redelivered` only when true. `decode(encode(f)) == f` for
//! every valid frame, in both forms.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;
use std::sync::Arc;
use weft_core::{Message, Utf8Bytes};

/// Subprotocol token of the full profile (RECEIPTs, client acks).
pub const PROTOCOL: &str = "mbws.weft";
/// Subprotocol token of the light profile (fire and forget: no RECEIPT for
/// SEND, no client acks).
pub const PROTOCOL_LIGHT: &str = "mblws.weft";

/// Most header fields in one frame (PROTOCOL.md §2).
pub const MAX_HEADERS: usize = 32;
/// Most application headers in one SEND, so that the MESSAGE carrying them
/// with its five own fields stays within [`MAX_HEADERS`].
pub const MAX_APP_HEADERS: usize = 24;
/// Longest header name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest header value, in bytes.
pub const MAX_VALUE_LEN: usize = 1024;
/// Default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// Longest destination name (after `/queue/` or `/topic/`).
pub const MAX_DESTINATION_NAME: usize = 200;
/// Longest message id.
pub const MAX_MESSAGE_ID: usize = 128;
/// Longest subscription id.
pub const MAX_SUBSCRIPTION_ID: usize = 64;

/// Which of the two wire forms a frame travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// A WebSocket text message: header lines, a blank line, the body.
    Text,
    /// A WebSocket binary message: length-prefixed header fields, the body.
    Binary,
}

/// The protocol profile a connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// `mbws.weft`: RECEIPTs for SEND, `ack: client` subscriptions, ACK/NACK.
    Full,
    /// `mblws.weft`: no RECEIPT for SEND, every subscription `ack: auto`.
    Light,
}

impl Profile {
    /// The subprotocol token.
    pub fn token(self) -> &'static str {
        match self {
            Profile::Full => PROTOCOL,
            Profile::Light => PROTOCOL_LIGHT,
        }
    }

    /// The profile a subprotocol token names.
    pub fn from_token(token: &str) -> Option<Profile> {
        match token {
            PROTOCOL => Some(Profile::Full),
            PROTOCOL_LIGHT => Some(Profile::Light),
            _ => None,
        }
    }
}

/// Limits a decoder enforces beyond the fixed ones of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body accepted, in bytes (default [`DEFAULT_MAX_BODY`]).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// An ERROR code (PROTOCOL.md §6). Codes this version does not define are
/// kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(u16);

impl ErrorCode {
    /// 100: not a frame.
    pub const MALFORMED: ErrorCode = ErrorCode(100);
    /// 101: an operation this protocol does not define (or the wrong direction).
    pub const UNKNOWN_OPERATION: ErrorCode = ErrorCode(101);
    /// 102: a required field is absent.
    pub const MISSING_HEADER: ErrorCode = ErrorCode(102);
    /// 103: a field appears twice.
    pub const DUPLICATE_HEADER: ErrorCode = ErrorCode(103);
    /// 104: a field value with the wrong syntax, or a field that does not belong.
    pub const INVALID_HEADER: ErrorCode = ErrorCode(104);
    /// 105: a name, a value or the number of fields over its limit.
    pub const HEADER_TOO_LARGE: ErrorCode = ErrorCode(105);
    /// 106: the body is over the limit.
    pub const BODY_TOO_LARGE: ErrorCode = ErrorCode(106);
    /// 107: a binary-form header is not UTF-8.
    pub const INVALID_UTF8: ErrorCode = ErrorCode(107);
    /// 108: an invalid destination.
    pub const INVALID_DESTINATION: ErrorCode = ErrorCode(108);
    /// 200: ACK or NACK of a delivery this connection does not own.
    pub const UNKNOWN_DELIVERY: ErrorCode = ErrorCode(200);
    /// 201: a subscription that is not open on this connection.
    pub const UNKNOWN_SUBSCRIPTION: ErrorCode = ErrorCode(201);
    /// 202: a subscription id already open on this connection.
    pub const DUPLICATE_SUBSCRIPTION: ErrorCode = ErrorCode(202);
    /// 203: the credit window would exceed the broker's maximum.
    pub const CREDIT_OVERFLOW: ErrorCode = ErrorCode(203);
    /// 204: an operation the light profile does not have.
    pub const NOT_IN_PROFILE: ErrorCode = ErrorCode(204);
    /// 300: the destination is full; the SEND was not stored.
    pub const QUEUE_FULL: ErrorCode = ErrorCode(300);
    /// 500: the broker failed.
    pub const INTERNAL: ErrorCode = ErrorCode(500);
    /// 501: the backend is unreachable.
    pub const UNAVAILABLE: ErrorCode = ErrorCode(501);

    /// A code from its number; `None` outside 100..=999.
    pub const fn new(code: u16) -> Option<ErrorCode> {
        if code >= 100 && code <= 999 {
            Some(ErrorCode(code))
        } else {
            None
        }
    }

    /// The number.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// The name PROTOCOL.md gives the code, if this version defines it.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            100 => "malformed",
            101 => "unknown-operation",
            102 => "missing-header",
            103 => "duplicate-header",
            104 => "invalid-header",
            105 => "header-too-large",
            106 => "body-too-large",
            107 => "invalid-utf8",
            108 => "invalid-destination",
            200 => "unknown-delivery",
            201 => "unknown-subscription",
            202 => "duplicate-subscription",
            203 => "credit-overflow",
            204 => "not-in-profile",
            300 => "queue-full",
            500 => "internal",
            501 => "unavailable",
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{} ({n})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Why a frame could not be decoded or encoded. Each variant maps to one
/// ERROR code ([`FrameError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Not a frame at all (code 100).
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// A header name with characters outside `a-z 0-9 -` (code 100).
    #[error("malformed frame: invalid header name {0:?}")]
    InvalidHeaderName(String),
    /// A body on an operation that has none (code 100).
    #[error("malformed frame: {0} carries no body")]
    UnexpectedBody(Operation),
    /// An operation name or code this protocol does not define (code 101).
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    /// An operation that travels the other way (code 101).
    #[error("{0} is not accepted in this direction")]
    WrongDirection(Operation),
    /// A required field is absent (code 102).
    #[error("{operation} requires the header {name:?}")]
    MissingHeader {
        /// The operation.
        operation: Operation,
        /// The missing field.
        name: &'static str,
    },
    /// A field appears twice (code 103).
    #[error("duplicate header {0:?}")]
    DuplicateHeader(String),
    /// A field value with the wrong syntax (code 104).
    #[error("invalid value for header {name:?}: {reason}")]
    InvalidHeader {
        /// The field.
        name: String,
        /// What is wrong with its value.
        reason: &'static str,
    },
    /// A field the operation does not define (code 104).
    #[error("{operation} does not take the header {name:?}")]
    UnexpectedHeader {
        /// The operation.
        operation: Operation,
        /// The field.
        name: String,
    },
    /// An application header that uses a name MESSAGE reserves (code 104).
    #[error("header {0:?} is reserved and cannot be an application header")]
    ReservedHeader(String),
    /// A header name over [`MAX_NAME_LEN`] bytes (code 105).
    #[error("header name of {0} bytes exceeds the limit of 64")]
    HeaderNameTooLong(usize),
    /// A header value over [`MAX_VALUE_LEN`] bytes (code 105).
    #[error("value of header {name:?} has {len} bytes, over the limit of 1024")]
    HeaderValueTooLong {
        /// The field.
        name: String,
        /// Its value's length.
        len: usize,
    },
    /// More fields than [`MAX_HEADERS`], or application headers than
    /// [`MAX_APP_HEADERS`] (code 105).
    #[error("{count} header fields exceed the limit of {limit}")]
    TooManyHeaders {
        /// How many there are (at least).
        count: usize,
        /// The limit that applies.
        limit: usize,
    },
    /// The body is over the limit (code 106).
    #[error("body of {len} bytes exceeds the limit of {max}")]
    BodyTooLarge {
        /// The body's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A header (name or value) that is not UTF-8 (code 107).
    #[error("header field is not valid UTF-8")]
    InvalidUtf8,
    /// A body that is not UTF-8 cannot be encoded in the text form (code 107).
    #[error("a body that is not UTF-8 cannot travel in the text form")]
    TextBodyNotUtf8,
    /// An invalid destination (code 108).
    #[error("invalid destination {value:?}: {reason}")]
    InvalidDestination {
        /// The destination as received (at most 256 bytes of it).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl FrameError {
    /// The ERROR code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        use FrameError::*;
        match self {
            Malformed(_) | InvalidHeaderName(_) | UnexpectedBody(_) => ErrorCode::MALFORMED,
            UnknownOperation(_) | WrongDirection(_) => ErrorCode::UNKNOWN_OPERATION,
            MissingHeader { .. } => ErrorCode::MISSING_HEADER,
            DuplicateHeader(_) => ErrorCode::DUPLICATE_HEADER,
            InvalidHeader { .. } | UnexpectedHeader { .. } | ReservedHeader(_) => {
                ErrorCode::INVALID_HEADER
            }
            HeaderNameTooLong(_) | HeaderValueTooLong { .. } | TooManyHeaders { .. } => {
                ErrorCode::HEADER_TOO_LARGE
            }
            BodyTooLarge { .. } => ErrorCode::BODY_TOO_LARGE,
            InvalidUtf8 | TextBodyNotUtf8 => ErrorCode::INVALID_UTF8,
            InvalidDestination { .. } => ErrorCode::INVALID_DESTINATION,
        }
    }
}

/// The nine operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Publish (client to broker).
    Send,
    /// The broker's acknowledgement.
    Receipt,
    /// Open a subscription.
    Subscribe,
    /// Close a subscription.
    Unsubscribe,
    /// A delivery (broker to client).
    Message,
    /// Settle a delivery.
    Ack,
    /// Refuse a delivery: redeliver it.
    Nack,
    /// Add credit to a subscription.
    Credit,
    /// A refusal, with a code (broker to client).
    Error,
}

impl Operation {
    const ALL: [Operation; 9] = [
        Operation::Send,
        Operation::Receipt,
        Operation::Subscribe,
        Operation::Unsubscribe,
        Operation::Message,
        Operation::Ack,
        Operation::Nack,
        Operation::Credit,
        Operation::Error,
    ];

    /// The text form's name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Send => "SEND",
            Operation::Receipt => "RECEIPT",
            Operation::Subscribe => "SUBSCRIBE",
            Operation::Unsubscribe => "UNSUBSCRIBE",
            Operation::Message => "MESSAGE",
            Operation::Ack => "ACK",
            Operation::Nack => "NACK",
            Operation::Credit => "CREDIT",
            Operation::Error => "ERROR",
        }
    }

    /// The binary form's code.
    pub fn code(self) -> u8 {
        match self {
            Operation::Send => 0x01,
            Operation::Receipt => 0x02,
            Operation::Subscribe => 0x03,
            Operation::Unsubscribe => 0x04,
            Operation::Message => 0x05,
            Operation::Ack => 0x06,
            Operation::Nack => 0x07,
            Operation::Credit => 0x08,
            Operation::Error => 0x09,
        }
    }

    /// True for the operations a client sends to the broker.
    pub fn is_client_operation(self) -> bool {
        !matches!(
            self,
            Operation::Receipt | Operation::Message | Operation::Error
        )
    }

    fn from_name(name: &[u8]) -> Option<Operation> {
        Self::ALL
            .into_iter()
            .find(|op| op.name().as_bytes() == name)
    }

    fn from_code(code: u8) -> Option<Operation> {
        Self::ALL.into_iter().find(|op| op.code() == code)
    }

    fn has_body(self) -> bool {
        matches!(self, Operation::Send | Operation::Message)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Queue (competing consumers) or topic (fan-out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    /// `/queue/NAME`: each message to exactly one subscription.
    Queue,
    /// `/topic/NAME`: each message to every subscription.
    Topic,
}

/// A validated destination, `/queue/NAME` or `/topic/NAME`
/// (PROTOCOL.md §2). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination(Arc<str>);

impl Destination {
    /// Validates `s`.
    pub fn new(s: &str) -> Result<Destination, FrameError> {
        let bad = |reason| FrameError::InvalidDestination {
            value: truncated(s, 256),
            reason,
        };
        let name = s
            .strip_prefix("/queue/")
            .or_else(|| s.strip_prefix("/topic/"))
            .ok_or_else(|| bad("must start with /queue/ or /topic/"))?;
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        if name.len() > MAX_DESTINATION_NAME {
            return Err(bad("name longer than 200 bytes"));
        }
        if !name.bytes().all(|b| is_id_byte(b) || b == b'/') {
            return Err(bad("name may only hold A-Z a-z 0-9 _ . - and /"));
        }
        if name.split('/').any(str::is_empty) {
            return Err(bad("empty path segment"));
        }
        Ok(Destination(s.into()))
    }

    /// Queue or topic.
    pub fn kind(&self) -> DestinationKind {
        if self.0.starts_with("/queue/") {
            DestinationKind::Queue
        } else {
            DestinationKind::Topic
        }
    }

    /// The name after `/queue/` or `/topic/`.
    pub fn name(&self) -> &str {
        &self.0[7..]
    }

    /// The whole destination.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Destination {
    type Err = FrameError;
    fn from_str(s: &str) -> Result<Self, FrameError> {
        Destination::new(s)
    }
}

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident, $field:literal, $max:expr, $check:expr, $rule:literal) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `s`.
            pub fn new(s: &str) -> Result<$name, FrameError> {
                let check: fn(u8) -> bool = $check;
                if s.is_empty() || s.len() > $max || !s.bytes().all(check) {
                    return Err(FrameError::InvalidHeader {
                        name: $field.into(),
                        reason: $rule,
                    });
                }
                Ok($name(s.into()))
            }

            /// The id.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = FrameError;
            fn from_str(s: &str) -> Result<Self, FrameError> {
                $name::new(s)
            }
        }
    };
}

id_type!(
    /// A producer-chosen message id: 1 to 128 bytes of visible ASCII.
    MessageId,
    "message-id",
    MAX_MESSAGE_ID,
    |b| (0x21..=0x7e).contains(&b),
    "must be 1 to 128 bytes of visible ASCII"
);

id_type!(
    /// A client-chosen subscription id: 1 to 64 bytes of `A-Z a-z 0-9 _ . -`.
    SubscriptionId,
    "subscription",
    MAX_SUBSCRIPTION_ID,
    is_id_byte,
    "must be 1 to 64 bytes of A-Z a-z 0-9 _ . -"
);

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// How a subscription's deliveries are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AckMode {
    /// Settled when handed to the connection (at most once).
    #[default]
    Auto,
    /// Settled by the client's ACK; NACK or a lost connection redelivers
    /// (at least once).
    Client,
}

impl AckMode {
    fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
        }
    }
}

/// Application headers of a message, in order: valid names that are not
/// protocol fields, at most [`MAX_APP_HEADERS`]. Cheap to clone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Arc<Vec<(String, String)>>);

/// Names a SEND cannot use for application headers: its own fields and
/// the ones MESSAGE adds.
const RESERVED: [&str; 5] = [
    "destination",
    "message-id",
    "subscription",
    "delivery-id",
    "redelivered",
];

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Appends a header after validating its name and value.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), FrameError> {
        let (name, value) = (name.into(), value.into());
        check_name(&name)?;
        check_value(&name, &value)?;
        if RESERVED.contains(&name.as_str()) {
            return Err(FrameError::ReservedHeader(name));
        }
        if self.get(&name).is_some() {
            return Err(FrameError::DuplicateHeader(name));
        }
        if self.0.len() >= MAX_APP_HEADERS {
            return Err(FrameError::TooManyHeaders {
                count: self.0.len() + 1,
                limit: MAX_APP_HEADERS,
            });
        }
        Arc::make_mut(&mut self.0).push((name, value));
        Ok(())
    }

    /// Builder form of [`insert`](Self::insert).
    pub fn with(mut self, name: &str, value: &str) -> Result<Headers, FrameError> {
        self.insert(name, value)?;
        Ok(self)
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All headers, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

fn check_name(name: &str) -> Result<(), FrameError> {
    if name.len() > MAX_NAME_LEN {
        return Err(FrameError::HeaderNameTooLong(name.len()));
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(FrameError::InvalidHeaderName(truncated(name, 64)));
    }
    Ok(())
}

/// Control characters other than TAB (U+0000..U+001F, U+007F) may not
/// appear in header values.
fn is_forbidden_char(c: char) -> bool {
    (c < ' ' && c != '\t') || c == '\u{7f}'
}

fn check_value(name: &str, value: &str) -> Result<(), FrameError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(FrameError::HeaderValueTooLong {
            name: name.to_owned(),
            len: value.len(),
        });
    }
    if value.chars().any(is_forbidden_char) {
        return Err(FrameError::InvalidHeader {
            name: name.to_owned(),
            reason: "control characters are not allowed",
        });
    }
    Ok(())
}

/// SEND: publish a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFrame {
    /// Where to.
    pub destination: Destination,
    /// The producer's id for the message.
    pub message_id: MessageId,
    /// Application headers, delivered with the message.
    pub headers: Headers,
    /// The message.
    pub body: Bytes,
}

/// What a RECEIPT acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// The SEND with this message id is stored.
    Message(MessageId),
    /// The SUBSCRIBE or UNSUBSCRIBE of this subscription took effect.
    Subscription(SubscriptionId),
}

/// SUBSCRIBE: open a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFrame {
    /// The client's id for it.
    pub subscription: SubscriptionId,
    /// Where from.
    pub destination: Destination,
    /// How deliveries are settled.
    pub ack: AckMode,
    /// Initial credit (deliveries the broker may send).
    pub credit: u32,
}

/// MESSAGE: one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFrame {
    /// The subscription it is delivered to.
    pub subscription: SubscriptionId,
    /// The broker's id of this delivery, unique on the connection.
    pub delivery_id: u64,
    /// Where the message was sent.
    pub destination: Destination,
    /// The producer's id for the message.
    pub message_id: MessageId,
    /// True if the message was delivered before and not acknowledged.
    pub redelivered: bool,
    /// The SEND's application headers.
    pub headers: Headers,
    /// The message.
    pub body: Bytes,
}

/// ERROR: a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFrame {
    /// What kind of problem.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// The refused frame's message id, if it had one.
    pub message_id: Option<MessageId>,
    /// The refused frame's delivery id, if it had one.
    pub delivery_id: Option<u64>,
    /// The refused frame's subscription, if it had one.
    pub subscription: Option<SubscriptionId>,
}

impl ErrorFrame {
    /// An ERROR for `code` with `message` (cut to 1024 bytes, control
    /// characters replaced by spaces) and the references in `refs`.
    pub fn new(code: ErrorCode, message: &str, refs: References) -> ErrorFrame {
        let clean: String = message
            .chars()
            .map(|c| if is_forbidden_char(c) { ' ' } else { c })
            .collect();
        ErrorFrame {
            code,
            message: truncated(&clean, MAX_VALUE_LEN),
            message_id: refs.message_id,
            delivery_id: refs.delivery_id,
            subscription: refs.subscription,
        }
    }
}

/// One `mbws.weft` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Publish.
    Send(SendFrame),
    /// The broker's acknowledgement.
    Receipt(Receipt),
    /// Open a subscription.
    Subscribe(SubscribeFrame),
    /// Close a subscription.
    Unsubscribe {
        /// Which.
        subscription: SubscriptionId,
    },
    /// A delivery.
    Message(MessageFrame),
    /// Settle a delivery.
    Ack {
        /// Which.
        delivery_id: u64,
    },
    /// Refuse a delivery.
    Nack {
        /// Which.
        delivery_id: u64,
    },
    /// Add credit.
    Credit {
        /// To which subscription.
        subscription: SubscriptionId,
        /// How much (at least 1).
        credit: u32,
    },
    /// A refusal.
    Error(ErrorFrame),
}

impl Frame {
    /// The operation.
    pub fn operation(&self) -> Operation {
        match self {
            Frame::Send(_) => Operation::Send,
            Frame::Receipt(_) => Operation::Receipt,
            Frame::Subscribe(_) => Operation::Subscribe,
            Frame::Unsubscribe { .. } => Operation::Unsubscribe,
            Frame::Message(_) => Operation::Message,
            Frame::Ack { .. } => Operation::Ack,
            Frame::Nack { .. } => Operation::Nack,
            Frame::Credit { .. } => Operation::Credit,
            Frame::Error(_) => Operation::Error,
        }
    }
}

/// The references an ERROR can carry back: read from a frame, even one that
/// failed to decode, as far as its header could be read (see [`references`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// A valid `message-id` field.
    pub message_id: Option<MessageId>,
    /// A valid `delivery-id` field.
    pub delivery_id: Option<u64>,
    /// A valid `subscription` field.
    pub subscription: Option<SubscriptionId>,
}

// ---------------------------------------------------------------- decoding

/// Decodes one WebSocket message. Control messages (Ping, Pong, Close) are
/// not frames and are refused as malformed.
pub fn decode(msg: &Message, limits: &Limits) -> Result<Frame, FrameError> {
    match msg {
        Message::Text(t) => decode_text(t.as_bytes().clone(), limits),
        Message::Binary(b) => decode_binary(b.clone(), limits),
        _ => Err(FrameError::Malformed("not a data message")),
    }
}

/// Decodes a frame a client sent: like [`decode`], and refuses the
/// operations only the broker sends (RECEIPT, MESSAGE, ERROR) with
/// [`FrameError::WrongDirection`].
pub fn decode_from_client(msg: &Message, limits: &Limits) -> Result<Frame, FrameError> {
    let frame = decode(msg, limits)?;
    let op = frame.operation();
    if !op.is_client_operation() {
        return Err(FrameError::WrongDirection(op));
    }
    Ok(frame)
}

/// Decodes the text form from its bytes. The header lines are checked for
/// UTF-8 (the WebSocket layer already guarantees it for text messages; this
/// entry point may get bytes from elsewhere); the body is taken as it is.
pub fn decode_text(bytes: Bytes, limits: &Limits) -> Result<Frame, FrameError> {
    let mut fields = TextFields::new(&bytes)?;
    let op = fields.op;
    let mut items = Vec::new();
    for f in &mut fields {
        items.push(f?);
    }
    let body_at = fields.pos;
    build(op, items, bytes.slice(body_at..), limits)
}

/// Decodes the binary form.
pub fn decode_binary(bytes: Bytes, limits: &Limits) -> Result<Frame, FrameError> {
    let mut fields = BinaryFields::new(&bytes)?;
    let op = fields.op;
    let mut items = Vec::with_capacity(fields.remaining);
    for f in &mut fields {
        items.push(f?);
    }
    let body_at = fields.pos;
    build(op, items, bytes.slice(body_at..), limits)
}

/// Reads the `message-id`, `delivery-id` and `subscription` fields of a
/// message that may not be a valid frame, up to the first header problem,
/// so an ERROR can say which request it refuses.
pub fn references(msg: &Message) -> References {
    let mut refs = References::default();
    let mut note = |name: &str, value: &str| match name {
        "message-id" => refs.message_id = MessageId::new(value).ok(),
        "delivery-id" => refs.delivery_id = parse_u64(value),
        "subscription" => refs.subscription = SubscriptionId::new(value).ok(),
        _ => {}
    };
    match msg {
        Message::Text(t) => {
            if let Ok(fields) = TextFields::new(t.as_bytes()) {
                for (n, v) in fields.map_while(Result::ok) {
                    note(n, v);
                }
            }
        }
        Message::Binary(b) => {
            if let Ok(fields) = BinaryFields::new(b) {
                for (n, v) in fields.map_while(Result::ok) {
                    note(n, v);
                }
            }
        }
        _ => {}
    }
    refs
}

/// Header lines of the text form, one `(name, value)` at a time; after the
/// last one `pos` is where the body starts.
struct TextFields<'a> {
    bytes: &'a [u8],
    op: Operation,
    pos: usize,
    count: usize,
    done: bool,
}

impl<'a> TextFields<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let end =
            find_lf(bytes, 0).ok_or(FrameError::Malformed("no line feed after the operation"))?;
        let name = &bytes[..end];
        let op = Operation::from_name(name).ok_or_else(|| {
            FrameError::UnknownOperation(
                String::from_utf8_lossy(&name[..name.len().min(32)]).into(),
            )
        })?;
        Ok(TextFields {
            bytes,
            op,
            pos: end + 1,
            count: 0,
            done: false,
        })
    }
}

fn find_lf(bytes: &[u8], from: usize) -> Option<usize> {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i)
}

impl<'a> Iterator for TextFields<'a> {
    type Item = Result<(&'a str, &'a str), FrameError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_field();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

impl<'a> TextFields<'a> {
    fn next_field(&mut self) -> Option<Result<(&'a str, &'a str), FrameError>> {
        let bytes = self.bytes;
        match bytes.get(self.pos) {
            None => return Some(Err(FrameError::Malformed("no blank line after the header"))),
            Some(b'\n') => {
                self.pos += 1;
                return None;
            }
            Some(_) => {}
        }
        let Some(end) = find_lf(bytes, self.pos) else {
            return Some(Err(FrameError::Malformed("no blank line after the header")));
        };
        let line = &bytes[self.pos..end];
        self.pos = end + 1;
        self.count += 1;
        if self.count > MAX_HEADERS {
            return Some(Err(FrameError::TooManyHeaders {
                count: self.count,
                limit: MAX_HEADERS,
            }));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Some(Err(FrameError::Malformed("a header line without \": \"")));
        };
        Some(field(&line[..colon], line.get(colon + 1..), true))
    }
}

/// Validates one field's raw name and value (`rest` is what follows the
/// colon in the text form, or the value in the binary form).
fn field<'a>(
    name: &'a [u8],
    rest: Option<&'a [u8]>,
    text: bool,
) -> Result<(&'a str, &'a str), FrameError> {
    if name.len() > MAX_NAME_LEN {
        return Err(FrameError::HeaderNameTooLong(name.len()));
    }
    let name = std::str::from_utf8(name).map_err(|_| FrameError::InvalidUtf8)?;
    check_name(name)?;
    let value = match rest {
        Some(r) if text => r
            .strip_prefix(b" ")
            .ok_or(FrameError::Malformed("a header line without \": \""))?,
        Some(r) => r,
        None => return Err(FrameError::Malformed("a header line without \": \"")),
    };
    if value.len() > MAX_VALUE_LEN {
        return Err(FrameError::HeaderValueTooLong {
            name: name.to_owned(),
            len: value.len(),
        });
    }
    let value = std::str::from_utf8(value).map_err(|_| FrameError::InvalidUtf8)?;
    check_value(name, value)?;
    Ok((name, value))
}

/// Header fields of the binary form.
struct BinaryFields<'a> {
    bytes: &'a [u8],
    op: Operation,
    pos: usize,
    remaining: usize,
    failed: bool,
}

impl<'a> BinaryFields<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let (&code, rest) = bytes
            .split_first()
            .ok_or(FrameError::Malformed("empty binary message"))?;
        let op = Operation::from_code(code)
            .ok_or_else(|| FrameError::UnknownOperation(format!("0x{code:02x}")))?;
        let &count = rest
            .first()
            .ok_or(FrameError::Malformed("no header count"))?;
        if usize::from(count) > MAX_HEADERS {
            return Err(FrameError::TooManyHeaders {
                count: count.into(),
                limit: MAX_HEADERS,
            });
        }
        Ok(BinaryFields {
            bytes,
            op,
            pos: 2,
            remaining: count.into(),
            failed: false,
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let bytes = self.bytes;
        let s = bytes
            .get(self.pos..self.pos + n)
            .ok_or(FrameError::Malformed("truncated header field"))?;
        self.pos += n;
        Ok(s)
    }

    fn next_field(&mut self) -> Result<(&'a str, &'a str), FrameError> {
        let name_len = usize::from(self.take(1)?[0]);
        if name_len == 0 {
            return Err(FrameError::Malformed("empty header name"));
        }
        if name_len > MAX_NAME_LEN {
            return Err(FrameError::HeaderNameTooLong(name_len));
        }
        let name = self.take(name_len)?;
        let len = self.take(2)?;
        let value_len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if value_len > MAX_VALUE_LEN {
            // Name it in the error if it is readable.
            let name = String::from_utf8_lossy(name).into_owned();
            return Err(FrameError::HeaderValueTooLong {
                name,
                len: value_len,
            });
        }
        let value = self.take(value_len)?;
        field(name, Some(value), false)
    }
}

impl<'a> Iterator for BinaryFields<'a> {
    type Item = Result<(&'a str, &'a str), FrameError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 || self.failed {
            return None;
        }
        self.remaining -= 1;
        let r = self.next_field();
        self.failed = r.is_err();
        Some(r)
    }
}

/// The fields of one frame, taken out one by one; what is left at the end is
/// either an error (control operations) or application headers.
struct Fields<'a> {
    op: Operation,
    items: Vec<(&'a str, &'a str)>,
    taken: u64,
}

impl<'a> Fields<'a> {
    fn take(&mut self, name: &str) -> Option<&'a str> {
        let i = self.items.iter().position(|(n, _)| *n == name)?;
        self.taken |= 1 << i;
        Some(self.items[i].1)
    }

    fn require(&mut self, name: &'static str) -> Result<&'a str, FrameError> {
        self.take(name).ok_or(FrameError::MissingHeader {
            operation: self.op,
            name,
        })
    }

    fn rest(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.items
            .iter()
            .enumerate()
            .filter(|(i, _)| self.taken & (1 << i) == 0)
            .map(|(_, f)| *f)
    }

    /// Control operations define all their fields.
    fn finish(&self) -> Result<(), FrameError> {
        match self.rest().next() {
            None => Ok(()),
            Some((name, _)) => Err(FrameError::UnexpectedHeader {
                operation: self.op,
                name: name.to_owned(),
            }),
        }
    }

    fn app_headers(&self) -> Result<Headers, FrameError> {
        let mut h = Headers::new();
        for (name, value) in self.rest() {
            h.insert(name, value)?;
        }
        Ok(h)
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn number<T: TryFrom<u64>>(name: &str, value: &str, reason: &'static str) -> Result<T, FrameError> {
    parse_u64(value)
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| FrameError::InvalidHeader {
            name: name.to_owned(),
            reason,
        })
}

fn destination(value: &str) -> Result<Destination, FrameError> {
    Destination::new(value)
}

fn build(
    op: Operation,
    items: Vec<(&str, &str)>,
    body: Bytes,
    limits: &Limits,
) -> Result<Frame, FrameError> {
    for (i, (name, _)) in items.iter().enumerate() {
        if items[..i].iter().any(|(n, _)| n == name) {
            return Err(FrameError::DuplicateHeader((*name).to_owned()));
        }
    }
    if !op.has_body() && !body.is_empty() {
        return Err(FrameError::UnexpectedBody(op));
    }
    if body.len() > limits.max_body {
        return Err(FrameError::BodyTooLarge {
            len: body.len(),
            max: limits.max_body,
        });
    }
    let mut f = Fields {
        op,
        items,
        taken: 0,
    };
    const DELIVERY: &str = "must be a decimal number that fits in 64 bits";
    const CREDIT: &str = "must be a decimal number that fits in 32 bits";
    let frame = match op {
        Operation::Send => {
            let destination = destination(f.require("destination")?)?;
            let message_id = MessageId::new(f.require("message-id")?)?;
            Frame::Send(SendFrame {
                destination,
                message_id,
                headers: f.app_headers()?,
                body,
            })
        }
        Operation::Receipt => {
            let receipt = match (f.take("message-id"), f.take("subscription")) {
                (Some(m), None) => Receipt::Message(MessageId::new(m)?),
                (None, Some(s)) => Receipt::Subscription(SubscriptionId::new(s)?),
                (None, None) => {
                    return Err(FrameError::MissingHeader {
                        operation: op,
                        name: "message-id",
                    });
                }
                (Some(_), Some(_)) => {
                    return Err(FrameError::UnexpectedHeader {
                        operation: op,
                        name: "subscription".into(),
                    });
                }
            };
            f.finish()?;
            Frame::Receipt(receipt)
        }
        Operation::Subscribe => {
            let subscription = SubscriptionId::new(f.require("subscription")?)?;
            let destination = destination(f.require("destination")?)?;
            let ack = match f.take("ack") {
                None | Some("auto") => AckMode::Auto,
                Some("client") => AckMode::Client,
                Some(_) => {
                    return Err(FrameError::InvalidHeader {
                        name: "ack".into(),
                        reason: "must be auto or client",
                    });
                }
            };
            let credit = number("credit", f.require("credit")?, CREDIT)?;
            f.finish()?;
            Frame::Subscribe(SubscribeFrame {
                subscription,
                destination,
                ack,
                credit,
            })
        }
        Operation::Unsubscribe => {
            let subscription = SubscriptionId::new(f.require("subscription")?)?;
            f.finish()?;
            Frame::Unsubscribe { subscription }
        }
        Operation::Message => {
            let subscription = SubscriptionId::new(f.require("subscription")?)?;
            let delivery_id = number("delivery-id", f.require("delivery-id")?, DELIVERY)?;
            let destination = destination(f.require("destination")?)?;
            let message_id = MessageId::new(f.require("message-id")?)?;
            let redelivered = match f.take("redelivered") {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => {
                    return Err(FrameError::InvalidHeader {
                        name: "redelivered".into(),
                        reason: "must be true or false",
                    });
                }
            };
            Frame::Message(MessageFrame {
                subscription,
                delivery_id,
                destination,
                message_id,
                redelivered,
                headers: f.app_headers()?,
                body,
            })
        }
        Operation::Ack | Operation::Nack => {
            let delivery_id = number("delivery-id", f.require("delivery-id")?, DELIVERY)?;
            f.finish()?;
            if op == Operation::Ack {
                Frame::Ack { delivery_id }
            } else {
                Frame::Nack { delivery_id }
            }
        }
        Operation::Credit => {
            let subscription = SubscriptionId::new(f.require("subscription")?)?;
            let credit: u32 = number("credit", f.require("credit")?, CREDIT)?;
            if credit == 0 {
                return Err(FrameError::InvalidHeader {
                    name: "credit".into(),
                    reason: "must be at least 1",
                });
            }
            f.finish()?;
            Frame::Credit {
                subscription,
                credit,
            }
        }
        Operation::Error => {
            let raw = f.require("code")?;
            let code = (raw.len() == 3)
                .then(|| parse_u64(raw))
                .flatten()
                .and_then(|c| ErrorCode::new(c as u16))
                .ok_or_else(|| FrameError::InvalidHeader {
                    name: "code".into(),
                    reason: "must be three decimal digits",
                })?;
            let message = f.take("message").unwrap_or("").to_owned();
            let message_id = f.take("message-id").map(MessageId::new).transpose()?;
            let delivery_id = f
                .take("delivery-id")
                .map(|v| number("delivery-id", v, DELIVERY))
                .transpose()?;
            let subscription = f
                .take("subscription")
                .map(SubscriptionId::new)
                .transpose()?;
            f.finish()?;
            Frame::Error(ErrorFrame {
                code,
                message,
                message_id,
                delivery_id,
                subscription,
            })
        }
    };
    Ok(frame)
}

// ---------------------------------------------------------------- encoding

/// Where [`Writer`] puts the fields.
enum Out {
    Text(String),
    Binary(BytesMut),
}

/// Writes one frame in either form; fields are validated by their types.
struct Writer {
    out: Out,
    count_at: usize,
    count: usize,
}

impl Writer {
    fn new(op: Operation, form: Form, body_len: usize) -> Writer {
        match form {
            Form::Text => {
                let mut s = String::with_capacity(128 + body_len);
                s.push_str(op.name());
                s.push('\n');
                Writer {
                    out: Out::Text(s),
                    count_at: 0,
                    count: 0,
                }
            }
            Form::Binary => {
                let mut b = BytesMut::with_capacity(128 + body_len);
                b.put_u8(op.code());
                b.put_u8(0);
                Writer {
                    out: Out::Binary(b),
                    count_at: 1,
                    count: 0,
                }
            }
        }
    }

    fn field(&mut self, name: &str, value: &str) {
        self.count += 1;
        match &mut self.out {
            Out::Text(s) => {
                s.push_str(name);
                s.push_str(": ");
                s.push_str(value);
                s.push('\n');
            }
            Out::Binary(b) => {
                b.put_u8(name.len() as u8);
                b.put_slice(name.as_bytes());
                b.put_u16(value.len() as u16);
                b.put_slice(value.as_bytes());
            }
        }
    }

    fn number(&mut self, name: &str, value: u64) {
        let mut buf = [0u8; 20];
        self.field(name, fmt_u64(value, &mut buf));
    }

    fn headers(&mut self, h: &Headers) {
        for (n, v) in h.iter() {
            self.field(n, v);
        }
    }

    fn finish(self, body: &[u8]) -> Result<Message, FrameError> {
        debug_assert!(self.count <= MAX_HEADERS);
        match self.out {
            Out::Text(mut s) => {
                let body = std::str::from_utf8(body).map_err(|_| FrameError::TextBodyNotUtf8)?;
                s.push('\n');
                s.push_str(body);
                Ok(Message::Text(Utf8Bytes::from(s)))
            }
            Out::Binary(mut b) => {
                b[self.count_at] = self.count as u8;
                b.put_slice(body);
                Ok(Message::Binary(b.freeze()))
            }
        }
    }
}

fn fmt_u64(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("digits are ASCII")
}

/// Encodes `frame` in `form`. Fails only for a body over `limits.max_body`,
/// or a non-UTF-8 body in the text form ([`FrameError::TextBodyNotUtf8`]:
/// use [`Form::Binary`] for such bodies).
pub fn encode(frame: &Frame, form: Form, limits: &Limits) -> Result<Message, FrameError> {
    let op = frame.operation();
    let body: &[u8] = match frame {
        Frame::Send(s) => &s.body,
        Frame::Message(m) => &m.body,
        _ => &[],
    };
    if body.len() > limits.max_body {
        return Err(FrameError::BodyTooLarge {
            len: body.len(),
            max: limits.max_body,
        });
    }
    let mut w = Writer::new(op, form, body.len());
    match frame {
        Frame::Send(s) => {
            w.field("destination", s.destination.as_str());
            w.field("message-id", s.message_id.as_str());
            w.headers(&s.headers);
        }
        Frame::Receipt(Receipt::Message(m)) => w.field("message-id", m.as_str()),
        Frame::Receipt(Receipt::Subscription(s)) => w.field("subscription", s.as_str()),
        Frame::Subscribe(s) => {
            w.field("subscription", s.subscription.as_str());
            w.field("destination", s.destination.as_str());
            w.field("ack", s.ack.as_str());
            w.number("credit", s.credit.into());
        }
        Frame::Unsubscribe { subscription } => w.field("subscription", subscription.as_str()),
        Frame::Message(m) => {
            w.field("subscription", m.subscription.as_str());
            w.number("delivery-id", m.delivery_id);
            w.field("destination", m.destination.as_str());
            w.field("message-id", m.message_id.as_str());
            if m.redelivered {
                w.field("redelivered", "true");
            }
            w.headers(&m.headers);
        }
        Frame::Ack { delivery_id } | Frame::Nack { delivery_id } => {
            w.number("delivery-id", *delivery_id)
        }
        Frame::Credit {
            subscription,
            credit,
        } => {
            w.field("subscription", subscription.as_str());
            w.number("credit", (*credit).into());
        }
        Frame::Error(e) => {
            w.number("code", e.code.as_u16().into());
            // A message built by hand may break the value rules: clean it.
            if check_value("message", &e.message).is_ok() {
                w.field("message", &e.message);
            } else {
                let clean = ErrorFrame::new(e.code, &e.message, References::default()).message;
                w.field("message", &clean);
            }
            if let Some(m) = &e.message_id {
                w.field("message-id", m.as_str());
            }
            if let Some(d) = e.delivery_id {
                w.number("delivery-id", d);
            }
            if let Some(s) = &e.subscription {
                w.field("subscription", s.as_str());
            }
        }
    }
    w.finish(body)
}

#[cfg(test)]
mod tests;
