//! The sans-I/O multiplexer: channel store, channel states, quotas, slots,
//! the fair scheduler and control-block dispatch.
//!
//! # Channel states
//!
//! ```text
//!            client: open_channel                 server: AddChannelRequest
//!                     |                                      |
//!                     v                                      v
//!                 Opening ---- AddChannelResponse ---->   Pending
//!                     |        (F=0)                         | accept_channel
//!                     |                                      v
//!                     +-------------------------------->   Open  <- channel 1 starts here
//!                                                            |
//!         closing handshake done / DropChannel / failure     |
//!                                                            v
//!                                                   removed (ChannelClosed)
//! ```
//!
//! A refused request (F=1, or `reject_channel`) removes the channel at
//! once. An open channel runs a full [`weft_core::Session`]: its messages,
//! fragmentation, ping/pong, closing handshake, UTF-8 checks, limits and
//! extensions are the core's; the multiplexer only carries its frames.
//!
//! # Flow control
//!
//! Every channel has a send quota (bytes the peer allows us) and a receive
//! allowance (bytes we allow the peer). An inner frame costs its payload
//! length plus one when its opcode is not continuation. The scheduler never
//! exceeds the send quota: it cuts data frames to fit (and to at most
//! `max_inner_frame` bytes), and waits for FlowControl otherwise. The receive
//! allowance is replenished as frames arrive, unless the channel (or the
//! connection) holds more unread data than its limit: then replenishing
//! waits until the application reads, which is how back-pressure reaches a
//! sender. While the peer still has half its window, the FlowControl is
//! deferred to ride along with the next output instead of costing a physical
//! message of its own. A peer exceeding its allowance loses the channel (3005).
//!
//! # Fairness
//!
//! Channels with output wait in a round-robin queue; each turn emits one
//! inner frame (at most `max_inner_frame` bytes) and moves the channel to the
//! back, so a channel streaming a large message never holds others up for
//! more than one inner frame each. Control blocks go first.
//!
//! # Variant A
//!
//! With [`MuxVariant::A`](crate::MuxVariant::A) the same channel machinery
//! speaks the reconstructed google-mux-03 format
//! ([`crate::wire::variant_a`]): the I/O layer exchanges physical *frames*
//! ([`Multiplexer::handle_frame`], [`Multiplexer::poll_transmit_frame`]),
//! a logical data frame is one physical frame with its own FIN and opcode,
//! logical control frames travel in EncapsulatedControlFrame blocks, and
//! blocks are encoded in variant A's layout. There is no flow control and
//! no slot: quotas are unlimited, no FlowControl or NewChannelSlot is sent,
//! and a channel whose unread messages pass the buffer limits is dropped
//! (3000) instead of being slowed down. DropChannel is not acknowledged
//! (variant A has no acknowledgement code). Encapsulated handshakes are
//! full ones (`Upgrade`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version`, and
//! `Sec-WebSocket-Accept` in the response, which the client checks), and
//! logical channels negotiate no extension.

use crate::config::{FallbackRule, MuxConfig, MuxVariant};
use crate::handshake::{self, DeltaBase};
use crate::wire::variant_a::{BlockA, DropChannelA, EncapsulatedControlFrame, PhysicalA};
use crate::wire::{
    AddChannelRequest, AddChannelResponse, Block, ChannelId, DropChannel, DropCode, Encoding,
    FlowControl, InnerFrame, NewChannelSlot, Physical, WireError, decode_physical,
    encode_inner_header,
};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use weft_core::ext::{
    ExtensionFactory, ExtensionHeader, Granularity, Negotiated, client_accept, client_offers,
    parse_extensions,
};
use weft_core::handshake::server::{Agreement, negotiate_request};
use weft_core::handshake::{HandshakeError, ServerOptions};
use weft_core::{CloseFrame, Frame, Message, OpCode, ProtocolError, Role, Rsv, SendError, Session};

/// Largest quota (docs/specs/mux.md §4.6).
const MAX_QUOTA: u64 = (1 << 63) - 1;

/// Something the application should know about.
#[derive(Debug)]
pub enum MuxEvent {
    /// Server: a client asks for a channel; answer with
    /// [`Multiplexer::accept_channel`] or [`Multiplexer::reject_channel`].
    ChannelRequested {
        /// The channel.
        channel: ChannelId,
        /// The encapsulated request (delta encoding already applied).
        request: http::Request<()>,
    },
    /// Client: a channel we asked for is open.
    ChannelOpened {
        /// The channel.
        channel: ChannelId,
        /// The subprotocol the server chose.
        protocol: Option<String>,
        /// The channel's extensions.
        extensions: Vec<ExtensionHeader>,
    },
    /// Client: a channel we asked for was refused.
    ChannelRejected {
        /// The channel.
        channel: ChannelId,
        /// The HTTP status of the refusal (400 for an unreadable response).
        status: http::StatusCode,
    },
    /// A channel has messages: see [`Multiplexer::take_message`].
    Readable(ChannelId),
    /// A channel ended; its ID may be reused.
    ChannelClosed {
        /// The channel.
        channel: ChannelId,
        /// How it ended.
        end: ChannelEnd,
    },
    /// The physical connection failed: DropChannel(0, code) is queued; send
    /// it, then close the physical connection with 1011.
    Failed(DropCode),
}

/// How a logical channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEnd {
    /// The closing handshake completed; the peer's Close frame.
    Closed(Option<CloseFrame>),
    /// The peer sent DropChannel.
    DroppedByPeer(Option<(DropCode, String)>),
    /// We dropped it (a fault, or [`Multiplexer::drop_channel`]).
    Dropped(DropCode),
}

/// The error of the mux crate: a command the multiplexer cannot carry out,
/// a refused or ended channel, or a failed physical connection. The
/// sans-I/O [`Multiplexer`] and the tokio API (`MuxClient`, `MuxServer`,
/// `Channel`: `send`, `recv`, `Sink`, `Stream`) all return it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MuxError {
    /// No such open channel.
    #[error("no open channel {0}")]
    UnknownChannel(ChannelId),
    /// Client: the server granted no slot for a new channel.
    #[error("no channel slot available")]
    NoSlot,
    /// The channel limit is reached.
    #[error("channel limit reached")]
    TooManyChannels,
    /// The physical connection failed.
    #[error("the physical connection failed ({0})")]
    Failed(DropCode),
    /// The channel's session refused the command.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A server command on a client or the other way round.
    #[error("not allowed in this role")]
    WrongRole,
    /// The server refused the channel with this HTTP status.
    #[error("channel refused with HTTP status {0}")]
    Rejected(http::StatusCode),
    /// Client: the channel ended before it opened (the server dropped it,
    /// with 2009 for a malformed request, or the physical connection
    /// failed).
    #[error("channel ended before it opened: {0:?}")]
    ChannelEnded(ChannelEnd),
    /// Server: the channel's encapsulated handshake was refused by
    /// [`negotiate_request`] (the Origin check, a malformed subprotocol or
    /// extension offer, a failed extension negotiation); the client was
    /// told (see [`Multiplexer::accept_channel`]).
    #[error("channel handshake refused: {0}")]
    Handshake(HandshakeError),
    /// The physical WebSocket failed or could not be opened (connect,
    /// handshake, I/O).
    #[error(transparent)]
    WebSocket(#[from] weft_core::Error),
}

/// What [`Multiplexer::accept_channel`] agreed to for a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelAccepted {
    /// The selected subprotocol.
    pub protocol: Option<String>,
    /// The channel's extensions, as its AddChannelResponse lists them.
    pub extensions: Vec<ExtensionHeader>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Opening,
    Pending,
    Open,
}

/// What a client needs to check the answer to its AddChannelRequest.
struct Opening {
    factories: Vec<Arc<dyn ExtensionFactory>>,
    protocols: Vec<String>,
    /// Variant A: the `Sec-WebSocket-Accept` the response must carry.
    accept: Option<String>,
}

struct Channel {
    state: State,
    session: Option<Session>,
    send_quota: u64,
    recv_allowance: u64,
    unreturned: u64,
    sending: Option<Frame>,
    inbox: VecDeque<Message>,
    inbox_bytes: usize,
    control_partial: Option<(OpCode, BytesMut)>,
    scheduled: bool,
    signalled: bool,
    /// In `Multiplexer::fc_deferred`: a FlowControl waits to ride along with
    /// the next output.
    fc_deferred: bool,
    ending: Option<DropCode>,
    opening: Option<Box<Opening>>,
    request: Option<Box<http::Request<()>>>,
}

/// The ordinary quotas of a new channel, or unlimited ones in variant A
/// (which has no flow control).
fn quotas(variant: MuxVariant, send: u64, recv: u64) -> (u64, u64) {
    match variant {
        MuxVariant::A => (MAX_QUOTA, MAX_QUOTA),
        MuxVariant::B => (send, recv),
    }
}

impl Channel {
    fn new(state: State, send_quota: u64, recv_allowance: u64) -> Self {
        Channel {
            state,
            session: None,
            send_quota,
            recv_allowance,
            unreturned: 0,
            sending: None,
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            control_partial: None,
            scheduled: false,
            signalled: false,
            fc_deferred: false,
            ending: None,
            opening: None,
            request: None,
        }
    }

    fn has_output(&self) -> bool {
        self.sending.is_some() || self.session.as_ref().is_some_and(Session::has_output)
    }
}

/// The multiplexer of one physical connection (see the module docs).
///
/// Call order for the I/O layer: feed every physical message to
/// [`handle_message`](Self::handle_message); send each
/// [`poll_transmit`](Self::poll_transmit) result as one physical binary
/// message; hand [`poll_event`](Self::poll_event)s to the application; call
/// [`handle_timeout`](Self::handle_timeout) now and then (channel close
/// timeouts).
pub struct Multiplexer {
    role: Role,
    config: MuxConfig,
    channels: HashMap<u32, Channel>,
    ready: VecDeque<u32>,
    control: Vec<u8>,
    /// Channels owed a FlowControl that is not urgent yet (see `after_input`).
    fc_deferred: Vec<u32>,
    events: VecDeque<MuxEvent>,
    failed: Option<DropCode>,
    buffered_total: usize,
    // Client side.
    host: String,
    slots: u64,
    slot_quotas: VecDeque<(u64, u64)>,
    next_id: u32,
    // Server side.
    granted: u64,
    delta_base: http::HeaderMap,
}

impl std::fmt::Debug for Multiplexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multiplexer")
            .field("role", &self.role)
            .field("channels", &self.channels.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Multiplexer {
    fn new(role: Role, config: MuxConfig) -> Self {
        Multiplexer {
            role,
            config,
            channels: HashMap::new(),
            ready: VecDeque::new(),
            control: Vec::new(),
            fc_deferred: Vec::new(),
            events: VecDeque::new(),
            failed: None,
            buffered_total: 0,
            host: String::new(),
            slots: 0,
            slot_quotas: VecDeque::new(),
            next_id: 2,
            granted: 0,
            delta_base: http::HeaderMap::new(),
        }
    }

    /// A client multiplexer. `host` goes into encapsulated requests; channel 1
    /// is open at once (the server may send `config.implicit_quota` bytes on
    /// it before we replenish; we wait for its FlowControl).
    pub fn client(config: MuxConfig, host: &str) -> Self {
        let mut m = Multiplexer::new(Role::Client, config);
        m.host = host.to_owned();
        let (send, recv) = quotas(m.config.variant, 0, m.config.implicit_quota);
        let mut ch = Channel::new(State::Open, send, recv);
        ch.session = Some(Session::new(Role::Client, &m.config.channel));
        m.channels.insert(1, ch);
        m
    }

    /// A server multiplexer for a connection whose physical handshake
    /// request was `request` and whose client offered `quota`. Channel 1 is
    /// open at once; the start-up FlowControl and NewChannelSlot are queued.
    pub fn server(config: MuxConfig, request: &http::Request<()>, quota: u64) -> Self {
        let mut m = Multiplexer::new(Role::Server, config);
        m.delta_base = request.headers().clone();
        let window = m.config.receive_window;
        let (send, recv) = quotas(m.config.variant, quota, window);
        let mut ch = Channel::new(State::Open, send, recv);
        ch.session = Some(Session::new(Role::Server, &m.config.channel));
        m.channels.insert(1, ch);
        if m.variant_a() {
            // Variant A has no flow control and no slots: nothing to start with.
            return m;
        }
        m.push_block(Block::FlowControl(FlowControl {
            channel: ChannelId::IMPLICIT,
            quota: window,
        }));
        m.top_up_slots();
        m
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &MuxConfig {
        &self.config
    }

    /// Channels currently known (open, opening or pending).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// True if the channel is open.
    pub fn is_open(&self, channel: ChannelId) -> bool {
        self.channels
            .get(&channel.get())
            .is_some_and(|c| c.state == State::Open)
    }

    /// The physical failure, if the connection failed.
    pub fn failure(&self) -> Option<DropCode> {
        self.failed
    }

    /// Client: slots left for new channels.
    pub fn slots(&self) -> u64 {
        self.slots
    }

    /// Our send quota on a channel.
    pub fn send_quota(&self, channel: ChannelId) -> Option<u64> {
        self.channels.get(&channel.get()).map(|c| c.send_quota)
    }

    fn variant_a(&self) -> bool {
        self.config.variant == MuxVariant::A
    }

    /// Queues a control block, in the layout of the configured variant.
    /// Variant A has no FlowControl or NewChannelSlot: those are not sent.
    fn push_block(&mut self, block: Block) {
        if !self.variant_a() {
            return block.encode(&mut self.control);
        }
        let a = match block {
            Block::AddChannelRequest(b) => BlockA::AddChannelRequest(b),
            Block::AddChannelResponse(b) => BlockA::AddChannelResponse(b),
            Block::DropChannel(d) => BlockA::DropChannel(DropChannelA::from_drop_channel(&d)),
            Block::FlowControl(_) | Block::NewChannelSlot(_) => return,
        };
        a.encode(&mut self.control);
    }

    fn schedule(&mut self, id: u32) {
        if let Some(ch) = self.channels.get_mut(&id)
            && !ch.scheduled
            && ch.has_output()
        {
            ch.scheduled = true;
            self.ready.push_back(id);
        }
    }

    /// Fails the physical connection with a 2000-2999 code.
    pub fn fail(&mut self, code: DropCode) {
        if self.failed.is_some() {
            return;
        }
        self.failed = Some(code);
        self.control.clear();
        self.push_block(Block::DropChannel(DropChannel {
            channel: ChannelId::CONTROL,
            reason: Some((code, String::new())),
        }));
        self.ready.clear();
        for (id, _) in self.channels.drain() {
            self.events.push_back(MuxEvent::ChannelClosed {
                channel: ChannelId::new(id).expect("stored IDs are valid"),
                end: ChannelEnd::Dropped(code),
            });
        }
        self.events.push_back(MuxEvent::Failed(code));
    }

    /// Drops a channel at once with `code` (3000-3999 for faults, 1000 for a
    /// normal end without closing handshake).
    pub fn drop_channel(&mut self, channel: ChannelId, code: DropCode) {
        if self.channels.remove(&channel.get()).is_some() {
            self.on_removed(channel);
            self.push_block(Block::DropChannel(DropChannel {
                channel,
                reason: Some((code, String::new())),
            }));
            self.events.push_back(MuxEvent::ChannelClosed {
                channel,
                end: ChannelEnd::Dropped(code),
            });
        }
    }

    fn on_removed(&mut self, _channel: ChannelId) {
        if self.role == Role::Server {
            self.top_up_slots();
        }
    }

    /// Server: grants slots so that open channels plus outstanding slots
    /// reach `min(slots, max_channels - open)`.
    fn top_up_slots(&mut self) {
        if self.variant_a() {
            return;
        }
        let room = (self.config.max_channels as u64).saturating_sub(self.channels.len() as u64);
        let target = self.config.slots.min(room);
        if self.granted < target && (self.granted <= target / 2 || self.granted == 0) {
            let more = target - self.granted;
            self.granted += more;
            let quota = self.config.slot_quota;
            self.push_block(Block::NewChannelSlot(NewChannelSlot {
                slots: more,
                quota,
                fallback: false,
            }));
        }
    }

    // ------------------------------------------------------------------ input

    /// Handles one physical message (variant B: text messages fail the
    /// connection).
    ///
    /// Variant A: the message is taken as one unfragmented physical frame.
    /// Use [`handle_frame`](Self::handle_frame) there: a transport that
    /// reassembles fragmented physical messages cannot carry variant A,
    /// whose fragments of different channels interleave.
    pub fn handle_message(&mut self, msg: Message) {
        if self.failed.is_some() {
            return;
        }
        match msg {
            Message::Binary(b) if self.variant_a() => {
                self.handle_frame(Frame::new(OpCode::Binary, b));
            }
            Message::Text(t) if self.variant_a() => {
                self.handle_frame(Frame::new(OpCode::Text, t.into_bytes()));
            }
            Message::Binary(b) => self.handle_binary(b),
            Message::Text(_) => self.fail(WireError::TextMessage.drop_code()),
            _ => {}
        }
    }

    /// Handles one physical data frame (text, binary or continuation).
    /// Physical Close, Ping and Pong belong to the I/O layer and are
    /// ignored here.
    ///
    /// Variant A: every frame is decoded on its own (docs/specs/mux.md
    /// §3.1). Variant B carries messages, not frames: a binary frame with
    /// FIN is a whole message; any other frame fails the connection (2001),
    /// so a variant B transport reassembles fragmented messages and calls
    /// [`handle_message`](Self::handle_message).
    pub fn handle_frame(&mut self, frame: Frame) {
        if self.failed.is_some() || frame.opcode.is_control() {
            return;
        }
        if !self.variant_a() {
            return match (frame.opcode, frame.fin) {
                (OpCode::Binary, true) if frame.rsv.is_empty() => self.handle_binary(frame.payload),
                _ => self.fail(WireError::TextMessage.drop_code()),
            };
        }
        let strict = self.config.strict_channel_ids;
        match crate::wire::variant_a::decode_physical_a(
            frame.fin,
            frame.rsv,
            frame.opcode,
            &frame.payload,
            strict,
        ) {
            Err(e) => self.fail(e.drop_code()),
            Ok(PhysicalA::Frame(f)) => self.handle_inner(f),
            Ok(PhysicalA::Control(blocks)) => {
                for block in blocks {
                    if self.failed.is_some() {
                        return;
                    }
                    match block {
                        BlockA::AddChannelRequest(b) => {
                            self.handle_block(Block::AddChannelRequest(b))
                        }
                        BlockA::AddChannelResponse(b) => {
                            self.handle_block(Block::AddChannelResponse(b))
                        }
                        BlockA::DropChannel(d) => {
                            self.handle_block(Block::DropChannel(d.to_drop_channel()))
                        }
                        BlockA::EncapsulatedControlFrame(f) => self.handle_inner(InnerFrame {
                            channel: f.channel,
                            fin: true,
                            rsv: Rsv::empty(),
                            opcode: f.opcode.as_u8(),
                            payload: f.payload,
                        }),
                    }
                }
            }
        }
    }

    fn handle_binary(&mut self, msg: Bytes) {
        match decode_physical(&msg, self.config.strict_channel_ids) {
            Err(e) => self.fail(e.drop_code()),
            Ok(Physical::Frame(f)) => self.handle_inner(f),
            Ok(Physical::Control(blocks)) => {
                for block in blocks {
                    if self.failed.is_some() {
                        return;
                    }
                    self.handle_block(block);
                }
            }
        }
    }

    fn handle_block(&mut self, block: Block) {
        let invalid = DropCode(2005);
        match block {
            Block::AddChannelRequest(req) => {
                if self.role != Role::Server {
                    return self.fail(invalid);
                }
                self.on_add_channel_request(req);
            }
            Block::AddChannelResponse(resp) => {
                if self.role != Role::Client {
                    return self.fail(invalid);
                }
                self.on_add_channel_response(resp);
            }
            Block::NewChannelSlot(slot) => {
                if self.role != Role::Client {
                    return self.fail(invalid);
                }
                self.on_new_channel_slot(slot);
            }
            Block::FlowControl(fc) => self.on_flow_control(fc),
            Block::DropChannel(d) => self.on_drop_channel(d),
        }
    }

    fn on_new_channel_slot(&mut self, slot: NewChannelSlot) {
        if slot.fallback {
            let ok = match self.config.fallback_rule {
                FallbackRule::ZeroGrant => slot.slots == 0 && slot.quota == 0,
                FallbackRule::NonZeroGrant => slot.slots > 0 && slot.quota > 0,
            };
            if !ok {
                return self.fail(DropCode(2005));
            }
            if self.config.fallback_rule == FallbackRule::ZeroGrant {
                // "Use another physical connection": no more channels here.
                self.slots = 0;
                self.slot_quotas.clear();
                return;
            }
        }
        if slot.quota > MAX_QUOTA {
            return self.fail(DropCode(2005));
        }
        match self.slots.checked_add(slot.slots) {
            Some(total) if total <= self.config.max_slots => {
                self.slots = total;
                if slot.slots > 0 {
                    self.slot_quotas.push_back((slot.slots, slot.quota));
                }
            }
            _ => self.fail(DropCode::SLOT_OVERFLOW),
        }
    }

    fn on_flow_control(&mut self, fc: FlowControl) {
        let id = fc.channel.get();
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        match ch.send_quota.checked_add(fc.quota) {
            Some(q) if q <= MAX_QUOTA => {
                ch.send_quota = q;
                self.schedule(id);
            }
            _ => self.drop_channel(fc.channel, DropCode::QUOTA_OVERFLOW),
        }
    }

    fn on_drop_channel(&mut self, d: DropChannel) {
        if d.channel == ChannelId::CONTROL {
            // The peer failed the physical connection.
            let code = d.reason.as_ref().map_or(DropCode::PHYSICAL_FAILED, |r| r.0);
            self.failed = Some(code);
            for (id, _) in self.channels.drain() {
                self.events.push_back(MuxEvent::ChannelClosed {
                    channel: ChannelId::new(id).expect("stored IDs are valid"),
                    end: ChannelEnd::DroppedByPeer(d.reason.clone()),
                });
            }
            self.events.push_back(MuxEvent::Failed(code));
            return;
        }
        if let Some(ch) = self.channels.remove(&d.channel.get()) {
            self.buffered_total -= ch.inbox_bytes;
            self.on_removed(d.channel);
            // Variant A has no acknowledgement code: not answered there.
            if !self.variant_a() && d.reason.as_ref().map(|r| r.0) != Some(DropCode::ACKNOWLEDGED) {
                self.push_block(Block::DropChannel(DropChannel {
                    channel: d.channel,
                    reason: Some((DropCode::ACKNOWLEDGED, String::new())),
                }));
            }
            self.events.push_back(MuxEvent::ChannelClosed {
                channel: d.channel,
                end: ChannelEnd::DroppedByPeer(d.reason),
            });
        }
    }

    fn on_add_channel_request(&mut self, req: AddChannelRequest) {
        let id = req.channel.get();
        if id == 0 || self.channels.contains_key(&id) {
            return self.fail(DropCode::CHANNEL_EXISTS);
        }
        if self.variant_a() {
            // No slots in variant A: the channel limit refuses, with 503.
            if self.channels.len() >= self.config.max_channels {
                return self.push_block(Block::AddChannelResponse(AddChannelResponse {
                    channel: req.channel,
                    rejected: true,
                    encoding: Encoding::Identity,
                    handshake: Bytes::from(handshake::build_rejection(
                        http::StatusCode::SERVICE_UNAVAILABLE,
                    )),
                }));
            }
        } else if self.granted == 0 {
            // Like pywebsocket, only this channel is refused.
            self.push_block(Block::DropChannel(DropChannel {
                channel: req.channel,
                reason: Some((DropCode::SLOT_VIOLATION, String::new())),
            }));
            return;
        }
        self.granted = self.granted.saturating_sub(1);
        let parsed = handshake::parse_request(
            &req.handshake,
            req.encoding,
            &self.delta_base,
            self.config.channel.max_handshake_headers,
        );
        let request = match parsed {
            Ok(r) => r,
            Err(_) => {
                self.push_block(Block::AddChannelResponse(AddChannelResponse {
                    channel: req.channel,
                    rejected: true,
                    encoding: Encoding::Identity,
                    handshake: Bytes::from(handshake::build_rejection(
                        http::StatusCode::BAD_REQUEST,
                    )),
                }));
                self.top_up_slots();
                return;
            }
        };
        if req.encoding == Encoding::Identity && self.config.delta_base == DeltaBase::FollowIdentity
        {
            self.delta_base = request.headers().clone();
        }
        let (send, recv) = quotas(self.config.variant, 0, self.config.slot_quota);
        let mut ch = Channel::new(State::Pending, send, recv);
        ch.request = Some(Box::new(request.clone()));
        self.channels.insert(id, ch);
        self.events.push_back(MuxEvent::ChannelRequested {
            channel: req.channel,
            request,
        });
    }

    fn on_add_channel_response(&mut self, resp: AddChannelResponse) {
        let id = resp.channel.get();
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        if ch.state != State::Opening {
            return self.fail(DropCode::BAD_RESPONSE);
        }
        let opening = ch
            .opening
            .take()
            .expect("opening channels keep their offers");
        let parsed = handshake::parse_response(&resp.handshake);
        let status = parsed
            .as_ref()
            .map_or(http::StatusCode::BAD_REQUEST, |p| p.status);
        if resp.rejected || status != http::StatusCode::SWITCHING_PROTOCOLS {
            self.channels.remove(&id);
            self.events.push_back(MuxEvent::ChannelRejected {
                channel: resp.channel,
                status,
            });
            return;
        }
        let parsed = parsed.expect("checked above");
        if let Some(want) = &opening.accept {
            let got = parsed
                .headers
                .get("sec-websocket-accept")
                .and_then(|v| v.to_str().ok());
            if got.map(str::trim) != Some(want.as_str()) {
                // Not an answer to our request.
                return self.drop_channel(resp.channel, DropCode::LOGICAL_FAILED);
            }
        }
        let negotiated = parse_extensions(parsed.extensions.iter().map(String::as_str))
            .map_err(|e| e.to_string())
            .and_then(|elements| {
                client_accept(&opening.factories, &elements).map_err(|e| e.to_string())
            });
        let protocol_ok = parsed
            .protocol
            .as_ref()
            .is_none_or(|p| opening.protocols.contains(p));
        match negotiated {
            Ok(n) if protocol_ok => {
                let headers = n.headers().to_vec();
                let ch = self.channels.get_mut(&id).expect("present");
                ch.session = Some(Session::with_extensions(
                    Role::Client,
                    &self.config.channel,
                    n,
                ));
                ch.state = State::Open;
                self.events.push_back(MuxEvent::ChannelOpened {
                    channel: resp.channel,
                    protocol: parsed.protocol,
                    extensions: headers,
                });
                self.schedule(id);
            }
            _ => {
                // The server accepted something we did not offer: fail the channel.
                self.drop_channel(resp.channel, DropCode::LOGICAL_FAILED);
            }
        }
    }

    fn handle_inner(&mut self, f: InnerFrame) {
        let id = f.channel.get();
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        if ch.state != State::Open {
            return;
        }
        let cost = f.payload.len() as u64 + u64::from(f.opcode != 0);
        if cost > ch.recv_allowance {
            return self.drop_channel(f.channel, DropCode::QUOTA_VIOLATION);
        }
        ch.recv_allowance -= cost;
        ch.unreturned += cost;
        let Ok(opcode) = OpCode::from_u8(f.opcode) else {
            return self.drop_channel(f.channel, DropCode::LOGICAL_FAILED);
        };
        // A control frame may arrive cut into inner frames (quota): reassemble.
        let frame = match (&mut ch.control_partial, opcode) {
            (Some((op, buf)), OpCode::Continuation) => {
                if buf.len() + f.payload.len() > 125 {
                    return self.drop_channel(f.channel, DropCode::BAD_FRAGMENTATION);
                }
                buf.extend_from_slice(&f.payload);
                if !f.fin {
                    return self.after_input(id);
                }
                let op = *op;
                let (_, buf) = ch.control_partial.take().expect("present");
                Frame {
                    fin: true,
                    rsv: f.rsv,
                    opcode: op,
                    payload: buf.freeze(),
                }
            }
            (Some(_), op) if op.is_control() => {
                return self.drop_channel(f.channel, DropCode::BAD_FRAGMENTATION);
            }
            (None, op) if op.is_control() && !f.fin => {
                ch.control_partial = Some((op, BytesMut::from(&f.payload[..])));
                return self.after_input(id);
            }
            _ => Frame {
                fin: f.fin,
                rsv: f.rsv,
                opcode,
                payload: f.payload,
            },
        };
        let session = ch.session.as_mut().expect("open channels have a session");
        match session.handle_frame(frame) {
            Ok(Some(msg)) => {
                let len = msg.len();
                ch.inbox_bytes += len;
                ch.inbox.push_back(msg);
                self.buffered_total += len;
                if self.config.variant == MuxVariant::A
                    && (ch.inbox_bytes > self.config.max_buffered_per_channel
                        || self.buffered_total > self.config.max_buffered_total)
                {
                    // No flow control to slow the sender down: the channel
                    // that went past the limit is dropped.
                    return self.drop_unread(f.channel);
                }
                if !ch.signalled {
                    ch.signalled = true;
                    self.events.push_back(MuxEvent::Readable(f.channel));
                }
            }
            Ok(None) => {}
            Err(ProtocolError::UnexpectedContinuation | ProtocolError::ExpectedContinuation) => {
                return self.drop_channel(f.channel, DropCode::BAD_FRAGMENTATION);
            }
            Err(_) => {
                // The session queued its Close; drop the channel once it is sent.
                ch.ending = Some(DropCode::LOGICAL_FAILED);
            }
        }
        self.schedule(id);
        self.after_input(id);
        self.maybe_finish(id);
    }

    /// Variant A: drops a channel whose unread messages passed the buffer
    /// limits (3000, "receive buffer limit"), discarding them.
    fn drop_unread(&mut self, channel: ChannelId) {
        if let Some(ch) = self.channels.remove(&channel.get()) {
            self.buffered_total -= ch.inbox_bytes;
            self.on_removed(channel);
            let code = DropCode::LOGICAL_FAILED;
            self.push_block(Block::DropChannel(DropChannel {
                channel,
                reason: Some((code, "receive buffer limit".into())),
            }));
            self.events.push_back(MuxEvent::ChannelClosed {
                channel,
                end: ChannelEnd::Dropped(code),
            });
        }
    }

    /// Returns consumed receive allowance to the peer unless too much is
    /// buffered unread.
    ///
    /// A channel's window is its allowance plus what it consumed and not yet
    /// returned (FlowControl returns exactly the consumed bytes, so the sum
    /// stays the initial grant). Nothing is returned below a quarter of the
    /// window. Between a quarter and half, the peer still has at least half
    /// its window, so the FlowControl is deferred: it leaves with the next
    /// physical write (typically the reply the application sends), instead of
    /// costing a write, a packet and a wakeup of its own per message. From
    /// half the window on it is queued at once, so a sender that streams
    /// without replies never waits for more than the deferral.
    fn after_input(&mut self, id: u32) {
        if !self.may_return(id) {
            return;
        }
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        let window = ch.recv_allowance + ch.unreturned;
        if ch.unreturned < window / 2 {
            if !ch.fc_deferred {
                ch.fc_deferred = true;
                self.fc_deferred.push(id);
            }
            return;
        }
        self.return_quota(id);
    }

    /// True if the channel has consumed allowance to return and the buffer
    /// limits allow returning it.
    fn may_return(&self, id: u32) -> bool {
        let Some(ch) = self.channels.get(&id) else {
            return false;
        };
        if self.variant_a() {
            // No flow control: nothing is ever returned.
            return false;
        }
        let window = ch.recv_allowance + ch.unreturned;
        ch.unreturned > 0
            && ch.unreturned >= window / 4
            && ch.inbox_bytes <= self.config.max_buffered_per_channel
            && self.buffered_total <= self.config.max_buffered_total
    }

    /// Queues FlowControl for everything the channel consumed.
    fn return_quota(&mut self, id: u32) {
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        let quota = std::mem::take(&mut ch.unreturned);
        if quota == 0 {
            return;
        }
        ch.recv_allowance += quota;
        self.push_block(Block::FlowControl(FlowControl {
            channel: ChannelId::new(id).expect("valid"),
            quota,
        }));
    }

    /// Queues the deferred FlowControl blocks that are still due.
    fn flush_deferred(&mut self) {
        let mut ids = std::mem::take(&mut self.fc_deferred);
        for &id in &ids {
            let Some(ch) = self.channels.get_mut(&id) else {
                continue;
            };
            ch.fc_deferred = false;
            if self.may_return(id) {
                self.return_quota(id);
            }
        }
        // Keep the allocation for the next round.
        ids.clear();
        self.fc_deferred = ids;
    }

    /// Removes a channel whose session finished once its output is sent.
    fn maybe_finish(&mut self, id: u32) {
        let Some(ch) = self.channels.get(&id) else {
            return;
        };
        let finished = ch.session.as_ref().is_some_and(Session::is_finished);
        if !finished || ch.has_output() || !ch.inbox.is_empty() {
            return;
        }
        let ch = self.channels.remove(&id).expect("present");
        let channel = ChannelId::new(id).expect("valid");
        self.on_removed(channel);
        match ch.ending {
            Some(code) => {
                self.push_block(Block::DropChannel(DropChannel {
                    channel,
                    reason: Some((code, String::new())),
                }));
                self.events.push_back(MuxEvent::ChannelClosed {
                    channel,
                    end: ChannelEnd::Dropped(code),
                });
            }
            None => {
                let close = ch.session.and_then(|s| s.peer_close().cloned()).flatten();
                self.events.push_back(MuxEvent::ChannelClosed {
                    channel,
                    end: ChannelEnd::Closed(close),
                });
            }
        }
    }

    // ------------------------------------------------------- application side

    /// Client: opens a channel to `path` with extra request headers,
    /// subprotocols and per-channel extension factories (permessage-deflate
    /// works; per-frame extensions are refused by servers).
    pub fn open_channel(
        &mut self,
        path: &str,
        headers: &[(String, String)],
        protocols: &[String],
        extensions: Vec<Arc<dyn ExtensionFactory>>,
    ) -> Result<ChannelId, MuxError> {
        if self.role != Role::Client {
            return Err(MuxError::WrongRole);
        }
        if let Some(code) = self.failed {
            return Err(MuxError::Failed(code));
        }
        if self.channels.len() >= self.config.max_channels {
            return Err(MuxError::TooManyChannels);
        }
        let a = self.variant_a();
        let quota = if a {
            MAX_QUOTA
        } else {
            let Some((count, quota)) = self.slot_quotas.front_mut() else {
                return Err(MuxError::NoSlot);
            };
            let quota = *quota;
            *count -= 1;
            if *count == 0 {
                self.slot_quotas.pop_front();
            }
            self.slots -= 1;
            quota
        };
        let mut id = self.next_id;
        while self.channels.contains_key(&id) {
            id = if id >= ChannelId::MAX { 2 } else { id + 1 };
        }
        self.next_id = if id >= ChannelId::MAX { 2 } else { id + 1 };
        let channel = ChannelId::new(id).expect("IDs wrap below the maximum");
        let (extensions, accept, headers) = if a {
            // Variant A: a full opening handshake, and no channel extension
            // (its frames cannot carry RSV bits).
            let key = weft_core::handshake::generate_key();
            let accept = weft_core::handshake::accept_key(&key);
            let mut full = vec![
                ("Upgrade".to_owned(), "websocket".to_owned()),
                ("Sec-WebSocket-Key".to_owned(), key),
                ("Sec-WebSocket-Version".to_owned(), "13".to_owned()),
            ];
            full.extend_from_slice(headers);
            (Vec::new(), Some(accept), full)
        } else {
            (extensions, None, headers.to_vec())
        };
        let text = handshake::build_request(
            &self.host,
            path,
            protocols,
            &client_offers(&extensions),
            &headers,
        );
        self.push_block(Block::AddChannelRequest(AddChannelRequest {
            channel,
            encoding: Encoding::Identity,
            handshake: Bytes::from(text),
        }));
        let window = if a {
            MAX_QUOTA
        } else {
            self.config.receive_window
        };
        self.push_block(Block::FlowControl(FlowControl {
            channel,
            quota: window,
        }));
        let mut ch = Channel::new(State::Opening, quota, window);
        ch.opening = Some(Box::new(Opening {
            factories: extensions,
            protocols: protocols.to_vec(),
            accept,
        }));
        self.channels.insert(id, ch);
        Ok(channel)
    }

    /// Server: accepts a requested channel, deciding its encapsulated
    /// handshake with the core's [`negotiate_request`] and `options`, as
    /// the physical handshake is decided: the Origin check, subprotocol
    /// selection, extension negotiation and the extra 101 headers of
    /// `options.response_headers` (called with the logical request). Per-frame
    /// extensions are never accepted on logical channels: the multiplexer re-cuts frames for
    /// flow control.
    ///
    /// A refused handshake removes the channel, tells the client and
    /// returns [`MuxError::Handshake`]: a malformed subprotocol or
    /// extension offer drops the channel with 2009 (bad request, digest
    /// §4.8; like the 2007 slot violation, only this channel is dropped),
    /// any other refusal (Origin: 403) is an AddChannelResponse with F=1
    /// and the error's HTTP status.
    pub fn accept_channel(
        &mut self,
        channel: ChannelId,
        options: &ServerOptions,
    ) -> Result<ChannelAccepted, MuxError> {
        let ch = self
            .channels
            .get_mut(&channel.get())
            .ok_or(MuxError::UnknownChannel(channel))?;
        if ch.state != State::Pending {
            return Err(MuxError::UnknownChannel(channel));
        }
        let request = ch
            .request
            .take()
            .expect("pending channels keep their request");
        let Agreement {
            protocol,
            extensions,
            ..
        } = match negotiate_request(request.headers(), options) {
            Ok(a) => a,
            Err(e) => {
                self.channels.remove(&channel.get());
                let block = match &e {
                    HandshakeError::ExtensionSyntax(_) | HandshakeError::BadRequest(_) => {
                        Block::DropChannel(DropChannel {
                            channel,
                            reason: Some((DropCode::BAD_REQUEST, String::new())),
                        })
                    }
                    _ => Block::AddChannelResponse(AddChannelResponse {
                        channel,
                        rejected: true,
                        encoding: Encoding::Identity,
                        handshake: Bytes::from(handshake::build_rejection(e.status())),
                    }),
                };
                self.push_block(block);
                self.top_up_slots();
                return Err(MuxError::Handshake(e));
            }
        };
        let mut kept = Negotiated::none();
        let a = self.variant_a();
        for (h, e) in extensions.into_parts() {
            // Variant A frames carry no RSV bits: no channel extension at all.
            if !a && e.granularity() != Granularity::PerFrame {
                let _ = kept.push(h, e);
            }
        }
        // Extra 101 headers, as the plain server adds them.
        let mut extra = http::HeaderMap::new();
        if let Some(add) = &options.response_headers {
            add(&request, &mut extra);
        }
        if a {
            // Variant A: a full 101 response.
            extra.insert(
                http::header::UPGRADE,
                http::HeaderValue::from_static("websocket"),
            );
            let key = request
                .headers()
                .get("sec-websocket-key")
                .and_then(|k| k.to_str().ok());
            if let Some(accept) = key
                .map(|k| weft_core::handshake::accept_key(k.trim()))
                .and_then(|v| http::HeaderValue::from_str(&v).ok())
            {
                extra.insert("sec-websocket-accept", accept);
            }
        }
        let text = handshake::build_response(protocol.as_deref(), kept.headers(), &extra);
        let accepted = ChannelAccepted {
            protocol,
            extensions: kept.headers().to_vec(),
        };
        let ch = self
            .channels
            .get_mut(&channel.get())
            .expect("checked above");
        ch.session = Some(Session::with_extensions(
            Role::Server,
            &self.config.channel,
            kept,
        ));
        ch.state = State::Open;
        self.push_block(Block::AddChannelResponse(AddChannelResponse {
            channel,
            rejected: false,
            encoding: Encoding::Identity,
            handshake: Bytes::from(text),
        }));
        // The client's send quota came with its slot; ours comes with the
        // FlowControl it sent after its request.
        self.top_up_slots();
        Ok(accepted)
    }

    /// Server: refuses a requested channel with an HTTP status.
    pub fn reject_channel(
        &mut self,
        channel: ChannelId,
        status: http::StatusCode,
    ) -> Result<(), MuxError> {
        match self.channels.get(&channel.get()) {
            Some(ch) if ch.state == State::Pending => {}
            _ => return Err(MuxError::UnknownChannel(channel)),
        }
        self.channels.remove(&channel.get());
        self.push_block(Block::AddChannelResponse(AddChannelResponse {
            channel,
            rejected: true,
            encoding: Encoding::Identity,
            handshake: Bytes::from(handshake::build_rejection(status)),
        }));
        self.top_up_slots();
        Ok(())
    }

    fn open_session(&mut self, channel: ChannelId) -> Result<&mut Session, MuxError> {
        if let Some(code) = self.failed {
            return Err(MuxError::Failed(code));
        }
        match self.channels.get_mut(&channel.get()) {
            Some(ch) if ch.state == State::Open => {
                Ok(ch.session.as_mut().expect("open channels have a session"))
            }
            _ => Err(MuxError::UnknownChannel(channel)),
        }
    }

    /// Queues a message on a channel.
    pub fn send(
        &mut self,
        channel: ChannelId,
        msg: Message,
        hints: &weft_core::ext::SendHints,
    ) -> Result<(), MuxError> {
        let s = self.open_session(channel)?;
        match msg {
            Message::Text(t) => s.send(OpCode::Text, t.into_bytes(), hints)?,
            Message::Binary(b) => s.send(OpCode::Binary, b, hints)?,
            Message::Ping(b) => s.ping(b)?,
            Message::Pong(b) => s.pong(b)?,
            Message::Close(f) => s.close(f, Instant::now())?,
        }
        self.schedule(channel.get());
        Ok(())
    }

    /// Bytes queued for sending on a channel and not yet transmitted
    /// (for back-pressure).
    pub fn pending_bytes(&self, channel: ChannelId) -> usize {
        self.channels.get(&channel.get()).map_or(0, |c| {
            c.sending.as_ref().map_or(0, |f| f.payload.len())
                + c.session.as_ref().map_or(0, Session::queued_bytes)
        })
    }

    /// Takes the next received message of a channel. Reading is what
    /// replenishes the peer's quota once the channel's buffer limit was hit.
    pub fn take_message(&mut self, channel: ChannelId) -> Option<Message> {
        let id = channel.get();
        let ch = self.channels.get_mut(&id)?;
        let msg = ch.inbox.pop_front();
        match &msg {
            Some(m) => {
                ch.inbox_bytes -= m.len();
                self.buffered_total -= m.len();
            }
            None => ch.signalled = false,
        }
        if ch.inbox.is_empty() {
            ch.signalled = false;
        }
        self.after_input(id);
        self.maybe_finish(id);
        msg
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        self.events.pop_front()
    }

    /// Advances the channels' close timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<u32> = self
            .channels
            .iter_mut()
            .filter_map(|(id, ch)| {
                let s = ch.session.as_mut()?;
                s.poll_timeout().is_some_and(|d| d <= now).then(|| {
                    s.handle_timeout(now);
                    *id
                })
            })
            .collect();
        for id in ids {
            self.maybe_finish(id);
        }
    }

    /// The earliest channel deadline (linear in the channel count).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.channels
            .values()
            .filter_map(|c| c.session.as_ref()?.poll_timeout())
            .min()
    }

    // ----------------------------------------------------------------- output

    /// True if [`poll_transmit`](Self::poll_transmit) has something that
    /// should be sent now. Deferred FlowControl blocks do not count: they
    /// are sent by the next `poll_transmit` call, whatever prompts it.
    pub fn has_output(&self) -> bool {
        !self.control.is_empty() || !self.ready.is_empty()
    }

    /// The next physical binary message to send, if any: pending control
    /// blocks (with any deferred FlowControl) first, then one inner frame of
    /// the next channel in turn.
    ///
    /// This is variant B's output. In variant A it gives only the payload
    /// of the next physical frame, without its opcode and FIN: use
    /// [`poll_transmit_frame`](Self::poll_transmit_frame) there.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.poll_transmit_parts().map(Transmit::into_bytes)
    }

    /// The next physical frame to send, if any (same order as
    /// [`poll_transmit`](Self::poll_transmit)). Variant B: always a binary
    /// frame with FIN, one whole message. Variant A: a binary frame of
    /// control blocks, or a logical data frame with its own FIN and opcode
    /// (docs/specs/mux.md §3.1). The I/O layer adds the physical header and,
    /// as a client, the mask.
    pub fn poll_transmit_frame(&mut self) -> Option<Frame> {
        let t = self.poll_transmit_parts()?;
        Some(Frame {
            fin: t.fin(),
            rsv: Rsv::empty(),
            opcode: t.opcode(),
            payload: t.into_bytes(),
        })
    }

    /// [`poll_transmit_frame`](Self::poll_transmit_frame) without joining
    /// the frame's payload: its short [`prefix`](Transmit::prefix) (the
    /// channel ID and, in variant B, the inner frame header; or the control
    /// channel's ID) and its payload, a slice of the channel's frame shared
    /// by reference. Send both as one physical frame, e.g. with
    /// `WebSocket::start_send_binary_prefixed` in variant B, so the payload
    /// is never copied on a server and copied once (while masking) on a
    /// client.
    pub fn poll_transmit_parts(&mut self) -> Option<Transmit> {
        if !self.fc_deferred.is_empty() && self.failed.is_none() {
            self.flush_deferred();
        }
        if !self.control.is_empty() {
            let control = std::mem::take(&mut self.control);
            return Some(Transmit::new(&[0], Bytes::from(control)));
        }
        if self.failed.is_some() {
            return None;
        }
        while let Some(id) = self.ready.pop_front() {
            if let Some(frame) = self.transmit_from(id) {
                return Some(frame);
            }
        }
        None
    }

    fn transmit_from(&mut self, id: u32) -> Option<Transmit> {
        let max_inner = self.config.max_inner_frame.max(1);
        let ch = self.channels.get_mut(&id)?;
        ch.scheduled = false;
        if ch.state != State::Open {
            return None;
        }
        if ch.sending.is_none() {
            ch.sending = ch.session.as_mut().and_then(Session::poll_frame);
        }
        let Some(mut frame) = ch.sending.take() else {
            self.maybe_finish(id);
            return None;
        };
        let opening = u64::from(frame.opcode != OpCode::Continuation);
        let len = frame.payload.len();
        let take = if frame.opcode.is_control() {
            // Control frames are never cut: wait for quota for the whole frame.
            if ch.send_quota < len as u64 + 1 {
                ch.sending = Some(frame);
                return None;
            }
            len
        } else {
            let avail = ch.send_quota.saturating_sub(opening);
            if ch.send_quota < opening || (avail == 0 && len > 0) {
                ch.sending = Some(frame);
                return None;
            }
            len.min(max_inner)
                .min(usize::try_from(avail).unwrap_or(usize::MAX))
        };
        let piece = frame.payload.split_to(take);
        let last = frame.payload.is_empty();
        ch.send_quota -= take as u64 + opening;
        let channel = ChannelId::new(id).expect("valid");
        let mut head = Vec::with_capacity(PREFIX_MAX);
        let msg = match self.config.variant {
            MuxVariant::B => {
                encode_inner_header(
                    channel,
                    frame.fin && last,
                    frame.rsv,
                    frame.opcode,
                    &mut head,
                );
                Transmit::new(&head, piece)
            }
            MuxVariant::A if frame.opcode.is_control() => {
                // A logical control frame: an EncapsulatedControlFrame block.
                let mut block = vec![0];
                BlockA::EncapsulatedControlFrame(EncapsulatedControlFrame {
                    channel,
                    opcode: frame.opcode,
                    payload: piece,
                })
                .encode(&mut block);
                Transmit::new(&[], Bytes::from(block))
            }
            MuxVariant::A => {
                // A logical data frame: a physical frame of its own.
                channel.encode(&mut head);
                Transmit::new(&head, piece).framed(frame.fin && last, frame.opcode)
            }
        };
        if !last {
            ch.sending = Some(Frame {
                fin: frame.fin,
                rsv: Rsv::empty(),
                opcode: OpCode::Continuation,
                payload: frame.payload,
            });
        }
        if ch.has_output() {
            ch.scheduled = true;
            self.ready.push_back(id);
        } else {
            self.maybe_finish(id);
        }
        Some(msg)
    }
}

/// Longest [`Transmit::prefix`]: a 4-byte channel ID and the inner frame
/// header byte, with room to spare.
const PREFIX_MAX: usize = 8;

/// One physical frame of [`Multiplexer::poll_transmit_parts`] (in variant B a
/// binary message; in variant A see [`fin`](Self::fin) and [`opcode`](Self::opcode)): a
/// short prefix and a payload, to be sent as one message (prefix first).
#[derive(Clone)]
pub struct Transmit {
    head: [u8; PREFIX_MAX],
    head_len: u8,
    fin: bool,
    opcode: OpCode,
    /// The rest of the message (shared, never copied by the multiplexer).
    pub payload: Bytes,
}

impl Transmit {
    fn new(prefix: &[u8], payload: Bytes) -> Self {
        let mut head = [0; PREFIX_MAX];
        head[..prefix.len()].copy_from_slice(prefix);
        Transmit {
            head,
            head_len: prefix.len() as u8,
            fin: true,
            opcode: OpCode::Binary,
            payload,
        }
    }

    /// A variant A data frame's own FIN and opcode.
    fn framed(mut self, fin: bool, opcode: OpCode) -> Self {
        self.fin = fin;
        self.opcode = opcode;
        self
    }

    /// The physical frame's FIN bit: always set in variant B (one whole
    /// message), the logical frame's in a variant A data frame.
    pub fn fin(&self) -> bool {
        self.fin
    }

    /// The physical frame's opcode: binary, except a variant A data frame,
    /// which carries the logical frame's.
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }

    /// The prefix and the payload joined (one copy).
    pub fn into_bytes(self) -> Bytes {
        if self.head_len == 0 {
            return self.payload;
        }
        let mut msg = Vec::with_capacity(self.len());
        msg.extend_from_slice(self.prefix());
        msg.extend_from_slice(&self.payload);
        Bytes::from(msg)
    }

    /// The bytes in front of the payload.
    pub fn prefix(&self) -> &[u8] {
        &self.head[..self.head_len as usize]
    }

    /// Length of the whole physical message.
    pub fn len(&self) -> usize {
        self.head_len as usize + self.payload.len()
    }

    /// True if the message is empty (never, for a transmitted message).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmit")
            .field("prefix", &self.prefix())
            .field("payload_len", &self.payload.len())
            .finish()
    }
}
