//! The session layer: messages, fragmentation, control frames, the closing
//! handshake, UTF-8 and limits, over a stream of [`Frame`]s.
//!
//! A [`Session`] knows nothing of bytes on a socket. The physical
//! [`Connection`](crate::Connection) feeds it frames parsed from the wire;
//! a multiplexer feeds it the inner frames of one logical channel. Either
//! way the calls are the same:
//!
//! 1. `handle_frame(frame)` for every incoming frame, which returns a
//!    complete [`Message`] when one is ready (or an error after which the
//!    session has queued the Close frame that fails the connection);
//! 2. `send`/`send_fragment`/`ping`/`pong`/`close` for application commands;
//! 3. `poll_frame()` until it returns `None`, transmitting each frame;
//! 4. `handle_timeout(now)` when [`poll_timeout`](Session::poll_timeout)'s
//!    deadline passes.
//!
//! Protocol obligations (the Pong answering a Ping, the Close answering a
//! Close, the Close that fails the connection) are queued here and leave
//! through `poll_frame` like any other frame; the I/O layer makes no
//! protocol decisions.

use super::close::{CloseCode, CloseFrame};
use super::config::Config;
use super::error::ProtocolError;
use super::frame::FrameHeader;
use super::frame::{Frame, MAX_CONTROL_PAYLOAD, OpCode, Rsv};
use super::message::{Message, Utf8Bytes};
use super::utf8::Utf8Validator;
use crate::ext::{DecoderChain, EncoderChain, Negotiated, SendHints};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Which end of the connection this is. Clients mask, servers do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the opening handshake request.
    Client,
    /// The end that answered it.
    Server,
}

/// Where the closing handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseState {
    /// No Close sent or received.
    Open,
    /// We sent a Close and wait for the peer's.
    CloseSent,
    /// Both Close frames were exchanged (or ours answers theirs): the
    /// transport may be closed once the output is flushed.
    Closed,
    /// The connection was failed; the input is ignored from now on.
    Failed,
}

/// An application command the session cannot carry out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A Close was already sent (or the connection failed): no more data.
    #[error("the connection is closing or closed")]
    Closed,
    /// A control frame payload over 125 bytes.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(usize),
    /// A close code that may not be sent (1005, 1006, 1015, or out of range).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A whole message was sent while a streamed message is unfinished, or a
    /// continuation was sent with no streamed message open.
    #[error("fragment sequence violated")]
    FragmentOrder,
    /// An extension failed to encode the message.
    #[error(transparent)]
    Extension(ProtocolError),
}

enum Assembled {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

struct Assembly {
    text: bool,
    data: Assembled,
    size: usize,
    utf8: Utf8Validator,
}

/// The protocol state machine of one WebSocket (see the module docs).
pub struct Session {
    role: Role,
    max_message_size: usize,
    send_frame_size: usize,
    close_timeout: Duration,
    encoders: EncoderChain,
    decoders: DecoderChain,
    assembly: Option<Assembly>,
    streaming_send: bool,
    out: VecDeque<Frame>,
    state: CloseState,
    peer_close: Option<Option<CloseFrame>>,
    deadline: Option<Instant>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("encoders", &self.encoders)
            .field("queued", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session with no extensions.
    pub fn new(role: Role, config: &Config) -> Self {
        Self::with_chains(
            role,
            config,
            EncoderChain::default(),
            DecoderChain::default(),
        )
    }

    /// A session running the negotiated extensions (outgoing frames in
    /// negotiated order, incoming ones in reverse).
    pub fn with_extensions(role: Role, config: &Config, extensions: Negotiated) -> Self {
        let (encoders, decoders) = extensions.into_chains();
        Self::with_chains(role, config, encoders, decoders)
    }

    fn with_chains(
        role: Role,
        config: &Config,
        encoders: EncoderChain,
        decoders: DecoderChain,
    ) -> Self {
        Session {
            role,
            max_message_size: config.max_message_size,
            send_frame_size: config.send_frame_size.max(1),
            close_timeout: config.close_timeout,
            encoders,
            decoders,
            assembly: None,
            streaming_send: false,
            out: VecDeque::new(),
            state: CloseState::Open,
            peer_close: None,
            deadline: None,
        }
    }

    /// This end's role.
    #[inline]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The closing handshake state.
    #[inline]
    pub fn state(&self) -> CloseState {
        self.state
    }

    /// Bytes of the message being assembled so far (decoded size).
    #[inline]
    fn assembled_len(&self) -> usize {
        self.assembly.as_ref().map_or(0, |a| a.size)
    }

    /// For fail-fast UTF-8 on frames that arrive in pieces: the validator
    /// state a text frame with `opcode` would start from, or `None` if the
    /// frame is not (plain) text. Plain means no extension may transform the
    /// payload, so the wire bytes are the message bytes.
    pub(crate) fn text_validator_for(&self, opcode: OpCode) -> Option<Utf8Validator> {
        if !self.decoders.is_empty() || self.is_finished() {
            return None;
        }
        match (opcode, &self.assembly) {
            (OpCode::Text, None) => Some(Utf8Validator::new()),
            (OpCode::Continuation, Some(a)) if a.text => Some(a.utf8.clone()),
            _ => None,
        }
    }

    /// Tells the extensions the connection is idle, so they can free what
    /// they can rebuild (see [`MessageEncoder::idle`](crate::ext::MessageEncoder::idle)).
    pub fn idle(&mut self) {
        self.encoders.idle();
        self.decoders.idle();
    }

    /// The Close frame the peer sent, once received: `Some(None)` when it had
    /// no status code (reported as 1005).
    pub fn peer_close(&self) -> Option<&Option<CloseFrame>> {
        self.peer_close.as_ref()
    }

    /// True when the session will produce nothing more and the transport can
    /// be closed once [`poll_frame`](Self::poll_frame) returned `None`.
    #[inline]
    pub fn is_finished(&self) -> bool {
        matches!(self.state, CloseState::Closed | CloseState::Failed)
    }

    /// Handles one incoming frame (unmasked, with its RSV bits), for
    /// transports that deliver whole frames (a multiplexer's logical
    /// channel). Everything a frame header can break is checked here;
    /// [`Connection`](crate::Connection) makes the same checks on the header
    /// before it reads the payload.
    ///
    /// Returns a complete message when one is ready. On a protocol error the
    /// session queues a Close with the error's code, stops reading, and
    /// returns the error; the caller should flush and close the transport.
    pub fn handle_frame(&mut self, frame: Frame) -> Result<Option<Message>, ProtocolError> {
        if self.is_finished() {
            // RFC 6455 §1.4/§7.1.7: nothing is processed after the peer's Close
            // or after failing.
            return Ok(None);
        }
        let result = self
            .check_frame(&frame)
            .and_then(|()| self.receive(frame, None));
        self.failed_on(result)
    }

    /// Handles a frame whose header passed [`check_header`](Self::check_header)
    /// (the wire path). `utf8` is the validator of a plain text frame that
    /// arrived in pieces, with the number of payload bytes it has seen.
    #[inline]
    pub(crate) fn handle_checked(
        &mut self,
        frame: Frame,
        utf8: Option<(Utf8Validator, usize)>,
    ) -> Result<Option<Message>, ProtocolError> {
        let result = self.receive(frame, utf8);
        self.failed_on(result)
    }

    #[inline]
    fn failed_on(
        &mut self,
        result: Result<Option<Message>, ProtocolError>,
    ) -> Result<Option<Message>, ProtocolError> {
        if let Err(e) = &result {
            self.fail(e);
        }
        result
    }

    /// The checks of a whole frame that the wire parser makes on its header
    /// (control frames unfragmented and short, RFC 6455 §5.5) plus
    /// [`check_header`](Self::check_header).
    fn check_frame(&self, frame: &Frame) -> Result<(), ProtocolError> {
        if frame.opcode.is_control() {
            if !frame.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if frame.payload.len() > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlFrameTooLong(
                    frame.payload.len() as u64
                ));
            }
        }
        self.check_header(&FrameHeader {
            fin: frame.fin,
            rsv: frame.rsv,
            opcode: frame.opcode,
            mask: None,
            payload_len: frame.payload.len() as u64,
        })
    }

    /// Checks a frame header before its payload is read: its RSV bits
    /// ([`check_rsv`](Self::check_rsv)) and the message size
    /// ([`check_size`](Self::check_size)).
    #[inline]
    fn check_header(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        self.check_rsv(header)?;
        self.check_size(header)
    }

    /// RSV bits: none on control frames, only the negotiated extensions' on
    /// data frames (RFC 6455 §5.2). The one place they are checked.
    #[inline]
    pub(crate) fn check_rsv(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        let allowed = match header.opcode.is_control() {
            true => Rsv::empty(),
            false => self.decoders.allowed_rsv(),
        };
        let unknown = header.rsv - allowed;
        match unknown.is_empty() {
            true => Ok(()),
            false => Err(ProtocolError::ReservedBits(unknown)),
        }
    }

    /// The message-size limit, when no extension decodes (so the wire size
    /// is the message size). The one place a plain message is measured;
    /// decoded messages are measured once, after decoding.
    #[inline]
    pub(crate) fn check_size(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        if !header.opcode.is_control()
            && self.decoders.is_empty()
            && self.assembled_len() as u64 + header.payload_len > self.max_message_size as u64
        {
            return Err(ProtocolError::MessageTooLarge {
                max: self.max_message_size,
            });
        }
        Ok(())
    }

    fn receive(
        &mut self,
        mut frame: Frame,
        utf8: Option<(Utf8Validator, usize)>,
    ) -> Result<Option<Message>, ProtocolError> {
        if frame.opcode.is_control() {
            // Control frames never pass through extensions.
            return self.handle_control(frame);
        }
        match (frame.opcode, self.assembly.is_some()) {
            (OpCode::Continuation, false) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, true) => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            _ => {}
        }
        if !self.decoders.is_empty() {
            let budget = self.max_message_size - self.assembled_len();
            self.decoders.decode(&mut frame, budget)?;
            if frame.payload.len() > budget {
                return Err(ProtocolError::MessageTooLarge {
                    max: self.max_message_size,
                });
            }
        }
        let len = frame.payload.len();
        if frame.fin && self.assembly.is_none() {
            // A whole message in one frame: no assembly state at all.
            if frame.opcode != OpCode::Text {
                return Ok(Some(Message::Binary(frame.payload)));
            }
            let valid = match utf8 {
                // Arrived in pieces: the start is validated already.
                Some((mut v, seen)) => v.feed(&frame.payload[seen..], true).is_ok(),
                None => simdutf8::basic::from_utf8(&frame.payload).is_ok(),
            };
            return match valid {
                true => Ok(Some(Message::Text(Utf8Bytes::from_validated(
                    frame.payload,
                )))),
                false => Err(ProtocolError::InvalidUtf8),
            };
        }
        let asm = self.assembly.get_or_insert_with(|| Assembly {
            text: frame.opcode == OpCode::Text,
            data: Assembled::Empty,
            size: 0,
            utf8: Utf8Validator::new(),
        });
        if asm.text {
            let rest = match utf8 {
                Some((v, seen)) => {
                    asm.utf8 = v;
                    &frame.payload[seen..]
                }
                None => &frame.payload[..],
            };
            if asm.utf8.feed(rest, frame.fin).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
        }
        asm.size += len;
        asm.data = match std::mem::replace(&mut asm.data, Assembled::Empty) {
            Assembled::Empty => Assembled::One(frame.payload),
            Assembled::One(first) if len == 0 => Assembled::One(first),
            Assembled::One(first) => {
                let mut buf = BytesMut::with_capacity((first.len() + len).max(256));
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&frame.payload);
                Assembled::Many(buf)
            }
            Assembled::Many(mut buf) => {
                buf.extend_from_slice(&frame.payload);
                Assembled::Many(buf)
            }
        };
        if !frame.fin {
            return Ok(None);
        }
        let asm = self.assembly.take().expect("assembly present");
        let data = match asm.data {
            Assembled::Empty => Bytes::new(),
            Assembled::One(b) => b,
            Assembled::Many(b) => b.freeze(),
        };
        Ok(Some(if asm.text {
            Message::Text(Utf8Bytes::from_validated(data))
        } else {
            Message::Binary(data)
        }))
    }

    fn handle_control(&mut self, frame: Frame) -> Result<Option<Message>, ProtocolError> {
        match frame.opcode {
            OpCode::Ping => {
                // Answer unless the peer's Close was received (RFC 6455 §5.5.2);
                // a Pong may still follow our own Close.
                if matches!(self.state, CloseState::Open | CloseState::CloseSent) {
                    self.out
                        .push_back(Frame::new(OpCode::Pong, frame.payload.clone()));
                }
                Ok(Some(Message::Ping(frame.payload)))
            }
            OpCode::Pong => Ok(Some(Message::Pong(frame.payload))),
            OpCode::Close => {
                let close = parse_close(&frame.payload)?;
                if self.state == CloseState::Open {
                    // Echo the peer's code (RFC 6455 §5.5.1); an empty Close is
                    // answered with an empty Close.
                    let reply = match &close {
                        Some(c) => Bytes::copy_from_slice(&c.code.as_u16().to_be_bytes()),
                        None => Bytes::new(),
                    };
                    self.out.push_back(Frame::new(OpCode::Close, reply));
                }
                self.state = CloseState::Closed;
                self.deadline = None;
                self.assembly = None;
                self.peer_close = Some(close.clone());
                Ok(Some(Message::Close(close)))
            }
            _ => unreachable!("only control opcodes reach handle_control"),
        }
    }

    /// Fails the connection: queues a Close with the error's close code (if
    /// no Close was sent yet) and ignores all further input.
    pub fn fail(&mut self, error: &ProtocolError) {
        if self.state == CloseState::Open {
            let frame = CloseFrame::new(error.close_code(), "");
            self.out
                .push_back(Frame::new(OpCode::Close, frame.encode()));
        }
        self.state = CloseState::Failed;
        self.assembly = None;
        self.deadline = None;
    }

    /// Queues a whole data message (text or binary), fragmenting it into
    /// frames of at most `send_frame_size` bytes after the per-message
    /// extensions ran.
    pub fn send(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        hints: &SendHints,
    ) -> Result<(), SendError> {
        debug_assert!(matches!(opcode, OpCode::Text | OpCode::Binary));
        if self.state != CloseState::Open {
            return Err(SendError::Closed);
        }
        if self.streaming_send {
            return Err(SendError::FragmentOrder);
        }
        self.send_data(
            Frame {
                fin: true,
                rsv: Rsv::empty(),
                opcode,
                payload,
            },
            hints,
        )
    }

    /// True if a whole message of `len` payload bytes sent now would be
    /// queued by [`send`](Self::send) as one frame exactly as given, behind
    /// nothing: the session is open, no streamed message is in progress, no
    /// extension encodes, the payload fits one frame and no frame waits in
    /// [`poll_frame`](Self::poll_frame). A transport may then frame it
    /// itself (see `Connection::send_message`), skipping the queue.
    #[inline]
    pub(crate) fn sends_as_is(&self, len: usize) -> bool {
        self.state == CloseState::Open
            && !self.streaming_send
            && self.one_plain_frame(len)
            && self.out.is_empty()
    }

    /// No extension encodes and `len` bytes fit one frame: a message goes
    /// out as the one frame it was given.
    #[inline]
    fn one_plain_frame(&self, len: usize) -> bool {
        self.encoders.is_empty() && len <= self.send_frame_size
    }

    /// Queues one fragment of a streamed message: the first with `Text` or
    /// `Binary`, later ones with `Continuation`, the last with `fin = true`.
    /// Per-message extensions see each fragment in order.
    pub fn send_fragment(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        fin: bool,
        hints: &SendHints,
    ) -> Result<(), SendError> {
        if self.state != CloseState::Open {
            return Err(SendError::Closed);
        }
        match (opcode, self.streaming_send) {
            (OpCode::Continuation, true) | (OpCode::Text | OpCode::Binary, false) => {}
            _ => return Err(SendError::FragmentOrder),
        }
        self.streaming_send = !fin;
        self.send_data(
            Frame {
                fin,
                rsv: Rsv::empty(),
                opcode,
                payload,
            },
            hints,
        )
    }

    fn send_data(&mut self, mut frame: Frame, hints: &SendHints) -> Result<(), SendError> {
        if self.one_plain_frame(frame.payload.len()) {
            // No extensions and one frame: nothing to transform or split.
            self.out.push_back(frame);
            return Ok(());
        }
        self.encoders
            .encode_message(&mut frame, hints)
            .map_err(SendError::Extension)?;
        let size = self.send_frame_size;
        if frame.payload.len() <= size {
            self.encoders
                .encode_frame(&mut frame, hints)
                .map_err(SendError::Extension)?;
            self.out.push_back(frame);
            return Ok(());
        }
        let Frame {
            fin,
            rsv,
            opcode,
            mut payload,
        } = frame;
        let mut first = true;
        while !payload.is_empty() {
            let chunk = payload.split_to(size.min(payload.len()));
            let mut f = Frame {
                fin: fin && payload.is_empty(),
                rsv: if first { rsv } else { Rsv::empty() },
                opcode: if first { opcode } else { OpCode::Continuation },
                payload: chunk,
            };
            first = false;
            self.encoders
                .encode_frame(&mut f, hints)
                .map_err(SendError::Extension)?;
            self.out.push_back(f);
        }
        Ok(())
    }

    /// Queues a whole data message encoded elsewhere, by this connection's
    /// [`BroadcastEncoding`](crate::BroadcastEncoding) (a
    /// [`PreparedMessage`](crate::PreparedMessage)): `rsv` holds the bits
    /// its encoder set, empty for a message sent as it is. The extension
    /// chain is skipped; when `rsv` is set, the per-message encoders are
    /// told ([`MessageEncoder::shared_sent`](crate::ext::MessageEncoder::shared_sent))
    /// so they drop their context. Cut into frames of at most
    /// `send_frame_size` bytes (RSV bits on the first) without copying.
    /// `payload` must be what [`PreparedMessage::encoded`](crate::PreparedMessage::encoded)
    /// returned for [`broadcast_encoding`](Self::broadcast_encoding).
    pub fn send_prepared(
        &mut self,
        opcode: OpCode,
        rsv: Rsv,
        mut payload: Bytes,
    ) -> Result<(), SendError> {
        debug_assert!(matches!(opcode, OpCode::Text | OpCode::Binary));
        if self.state != CloseState::Open {
            return Err(SendError::Closed);
        }
        if self.streaming_send {
            return Err(SendError::FragmentOrder);
        }
        self.note_prepared(rsv);
        let size = self.send_frame_size;
        let mut first = true;
        loop {
            let chunk = payload.split_to(size.min(payload.len()));
            self.out.push_back(Frame {
                fin: payload.is_empty(),
                rsv: if first { rsv } else { Rsv::empty() },
                opcode: if first { opcode } else { OpCode::Continuation },
                payload: chunk,
            });
            first = false;
            if payload.is_empty() {
                return Ok(());
            }
        }
    }

    /// True if a prepared message of `len` bytes sent now would be queued by
    /// [`send_prepared`](Self::send_prepared) as one frame behind nothing
    /// (see [`sends_as_is`](Self::sends_as_is)).
    #[inline]
    pub(crate) fn prepared_as_is(&self, len: usize) -> bool {
        self.state == CloseState::Open
            && !self.streaming_send
            && len <= self.send_frame_size
            && self.out.is_empty()
    }

    /// A prepared message with `rsv` goes out: the encoders drop their
    /// context if it was encoded (see [`send_prepared`](Self::send_prepared)).
    #[inline]
    pub(crate) fn note_prepared(&mut self, rsv: Rsv) {
        if !rsv.is_empty() {
            self.encoders.shared_sent();
        }
    }

    /// How [`PreparedMessage`](crate::PreparedMessage)s are encoded for
    /// this session (see [`BroadcastEncoding`](crate::BroadcastEncoding)).
    pub fn broadcast_encoding(&self) -> crate::BroadcastEncoding {
        self.encoders.broadcast_encoding()
    }

    /// Queues a Ping.
    pub fn ping(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Queues an unsolicited Pong (a one-way heartbeat).
    pub fn pong(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload)
    }

    fn send_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), SendError> {
        if !matches!(self.state, CloseState::Open | CloseState::CloseSent) {
            return Err(SendError::Closed);
        }
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong(payload.len()));
        }
        self.out.push_back(Frame::new(opcode, payload));
        Ok(())
    }

    /// Starts the closing handshake with `frame` (or an empty Close).
    /// `now` starts the close timeout: see [`poll_timeout`](Self::poll_timeout).
    pub fn close(&mut self, frame: Option<CloseFrame>, now: Instant) -> Result<(), SendError> {
        if self.state != CloseState::Open {
            return Err(SendError::Closed);
        }
        let body = match &frame {
            Some(f) if !f.code.is_sendable() => {
                return Err(SendError::InvalidCloseCode(f.code.as_u16()));
            }
            Some(f) => f.encode(),
            None => Bytes::new(),
        };
        self.out.push_back(Frame::new(OpCode::Close, body));
        self.state = CloseState::CloseSent;
        self.deadline = Some(now + self.close_timeout);
        Ok(())
    }

    /// The next frame to transmit, if any.
    #[inline]
    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.out.pop_front()
    }

    /// Payload bytes of the frames waiting in [`poll_frame`](Self::poll_frame)
    /// (for back-pressure in transports that pull frames lazily).
    pub fn queued_bytes(&self) -> usize {
        self.out.iter().map(|f| f.payload.len()).sum()
    }

    /// True if frames are waiting in [`poll_frame`](Self::poll_frame).
    #[inline]
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Advances timers. After the close timeout the session gives up on the
    /// peer's Close and becomes [`CloseState::Closed`] (reported as 1006).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(d) = self.deadline
            && now >= d
        {
            self.deadline = None;
            self.state = CloseState::Closed;
        }
    }
}

/// Parses a Close payload (RFC 6455 §5.5.1): empty, or a wire-valid code and a
/// UTF-8 reason.
pub(crate) fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::InvalidClosePayload),
        _ => {
            let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.as_u16()));
            }
            let reason = simdutf8::basic::from_utf8(&payload[2..])
                .map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some(CloseFrame::new(code, reason)))
        }
    }
}
