//! The `Connection` driver shared by `connection_server` and
//! `connection_client`.
//!
//! The end under test ("target") talks to an honest end of the other role
//! ("peer") that negotiated the same extensions. The fuzzer chooses the
//! limits, the extensions, and a sequence of operations: application
//! commands on either end, honest peer traffic, hand-made frames (any
//! header bits, masked or not, any length field) and raw bytes for the
//! target, the read chunking, and the clock. Checked:
//!
//! 1. every error the target reports maps to the RFC's close code
//!    ([`expected_close_code`]), and the Close frame it sends carries it;
//! 2. messages the target delivers respect `max_message_size`, and text
//!    is valid UTF-8;
//! 3. the peer never fails on what the target wrote, and receives exactly
//!    the data messages the target accepted to send, in order;
//! 4. no single allocation while the target works exceeds what the limits
//!    allow (the configured frame and message limits plus the bytes the
//!    fuzzer actually supplied), whatever lengths the frames announce.

use crate::{expected_close_code, measure_end, measure_start};
use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_core::ext::{
    ExtensionFactory, Negotiated, SendHints, client_accept, client_offers, format_extensions,
    parse_extensions, server_negotiate,
};
use weft_core::proto::WriteBuffer;
use weft_core::{
    CloseCode, CloseFrame, CloseState, Config, Connection, FrameHeader, Message, OpCode, Role, Rsv,
    SendError, Session,
};
use weft_extensions::{MemoryStrategy, PerFrameDeflate, PerMessageDeflate, WindowBits};

/// Which extension both ends negotiate.
#[derive(Arbitrary, Debug, Clone)]
pub enum ExtChoice {
    /// None.
    Plain,
    /// permessage-deflate with these parameters.
    PerMessage {
        /// server_max_window_bits - 8 (mod 8).
        server_bits: u8,
        /// client_max_window_bits - 8 (mod 8).
        client_bits: u8,
        /// server_no_context_takeover.
        server_nct: bool,
        /// client_no_context_takeover.
        client_nct: bool,
        /// 0 Keep, 1 HibernateWhenIdle, 2 Hibernate.
        memory: u8,
        /// Messages shorter than this go uncompressed.
        threshold: u8,
    },
    /// deflate-frame.
    PerFrame {
        /// Compressor window - 8 (mod 8).
        bits: u8,
        /// no_context_takeover.
        nct: bool,
    },
}

/// Limits of the target (small, so that the limit paths are reached).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Limits {
    /// `max_frame_size`.
    pub max_frame: u16,
    /// `max_message_size`.
    pub max_message: u16,
    /// `send_frame_size`.
    pub send_frame: u8,
}

/// One step.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// The peer sends a message (honest traffic for the target).
    PeerSend {
        /// Text (lossy UTF-8 of the payload) or binary.
        text: bool,
        /// The payload.
        payload: Vec<u8>,
    },
    /// The peer streams a message in fragments.
    PeerFragments {
        /// Text or binary.
        text: bool,
        /// The fragments.
        parts: Vec<Vec<u8>>,
    },
    /// The peer pings.
    PeerPing(Vec<u8>),
    /// The peer starts the closing handshake.
    PeerClose(u16, String),
    /// A hand-made frame for the target: any bits, masked or not, the
    /// length field as the fuzzer likes (possibly lying).
    Frame {
        /// First header byte (FIN, RSV, opcode).
        b0: u8,
        /// Mask the payload (what a server expects).
        masked: bool,
        /// The mask key.
        key: [u8; 4],
        /// Announce this length instead of the real one (0: real).
        lie: u32,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Raw bytes for the target.
    Raw(Vec<u8>),
    /// Deliver to the target up to this many of the bytes written to it, in
    /// reads of `chunk` bytes (0: all at once).
    Deliver {
        /// Read size.
        chunk: u8,
        /// How much.
        amount: u16,
    },
    /// The target's application sends a message.
    Send {
        /// Text (lossy UTF-8) or binary.
        text: bool,
        /// The payload.
        payload: Vec<u8>,
        /// Through `Connection::send_message` rather than `Session::send`.
        direct: bool,
        /// `SendHints::compress`.
        compress: bool,
    },
    /// The target streams a fragment.
    SendFragment {
        /// 0 continuation, 1 text, 2 binary.
        opcode: u8,
        /// The payload.
        payload: Vec<u8>,
        /// Last fragment.
        fin: bool,
    },
    /// The target pings.
    Ping(Vec<u8>),
    /// The target sends an unsolicited Pong.
    Pong(Vec<u8>),
    /// The target starts the closing handshake.
    Close(Option<(u16, String)>),
    /// The clock moves on this many milliseconds; timers fire.
    Tick(u16),
    /// The connection is idle (extensions free their contexts).
    Idle,
}

/// A fuzz case.
#[derive(Arbitrary, Debug)]
pub struct Case {
    /// The extension.
    pub ext: ExtChoice,
    /// The target's limits.
    pub limits: Limits,
    /// Read into exact-size buffers of at most this many bytes, as the
    /// tokio layer does (`ReadStrategy::ExactSmallReads`), instead of one
    /// reused buffer.
    pub exact_small_reads: Option<u16>,
    /// The steps.
    pub ops: Vec<Op>,
}

fn window(b: u8) -> WindowBits {
    WindowBits::new(8 + b % 8).expect("8..=15")
}

fn factories(ext: &ExtChoice) -> Vec<Arc<dyn ExtensionFactory>> {
    match ext {
        ExtChoice::Plain => Vec::new(),
        ExtChoice::PerMessage {
            server_bits,
            client_bits,
            server_nct,
            client_nct,
            memory,
            threshold,
        } => {
            let memory = match memory % 3 {
                0 => MemoryStrategy::Keep,
                1 => MemoryStrategy::HibernateWhenIdle,
                _ => MemoryStrategy::Hibernate,
            };
            vec![Arc::new(
                PerMessageDeflate::new()
                    .server_max_window_bits(window(*server_bits))
                    .client_max_window_bits(window(*client_bits))
                    .server_no_context_takeover(*server_nct)
                    .client_no_context_takeover(*client_nct)
                    .memory(memory)
                    .threshold(*threshold as usize),
            )]
        }
        ExtChoice::PerFrame { bits, nct } => vec![Arc::new(
            PerFrameDeflate::new()
                .window_bits(window(*bits))
                .no_context_takeover(*nct),
        )],
    }
}

/// Negotiates `ext` the way the handshake does (offer header printed and
/// parsed, answer printed and parsed): (client's, server's) extensions.
pub fn negotiate(ext: &ExtChoice) -> (Negotiated, Negotiated) {
    let f = factories(ext);
    let offers = client_offers(&f);
    let offers = parse_extensions([format_extensions(&offers).as_str()]).expect("offer parses");
    let server = server_negotiate(&f, &offers).expect("server negotiation");
    let answer =
        parse_extensions([format_extensions(server.headers()).as_str()]).expect("answer parses");
    let client = client_accept(&f, &answer).expect("client accepts the server's answer");
    assert_eq!(
        client.headers().len(),
        f.len(),
        "an honest offer is accepted"
    );
    (client, server)
}

struct End {
    conn: Connection,
    out: WriteBuffer,
}

impl End {
    fn new(role: Role, config: &Config, ext: Negotiated) -> Self {
        End {
            conn: Connection::new(Session::with_extensions(role, config, ext), config),
            out: WriteBuffer::new(),
        }
    }

    /// Moves queued frames into the write buffer and takes all its bytes.
    fn drain(&mut self, sink: &mut Vec<u8>) {
        self.conn.poll_transmit(&mut self.out);
        let mut tmp = vec![std::mem::MaybeUninit::new(0u8); self.out.len()];
        let bytes = self.out.copy_front(&mut tmp);
        assert_eq!(bytes.len(), self.out.len(), "copy_front copies everything");
        sink.extend_from_slice(bytes);
        self.out.advance(bytes.len());
        assert!(self.out.is_empty());
    }
}

/// A message the application handed over, as the other end must see it.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Text(Vec<u8>),
    Binary(Vec<u8>),
}

fn data_of(m: &Message) -> Option<Sent> {
    match m {
        Message::Text(t) => Some(Sent::Text(t.as_bytes().to_vec())),
        Message::Binary(b) => Some(Sent::Binary(b.to_vec())),
        _ => None,
    }
}

fn text_payload(text: bool, payload: Vec<u8>) -> Bytes {
    match text {
        true => Bytes::from(String::from_utf8_lossy(&payload).into_owned()),
        false => Bytes::from(payload),
    }
}

/// What a case did, for checking that a seed exercises what it was made
/// for (`seeds/make_seeds.py --check`; printed by the connection targets
/// when `WEFT_FUZZ_SUMMARY` is set).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Data messages the target delivered to its application.
    pub delivered: usize,
    /// The close code of the first error the target reported.
    pub error: Option<u16>,
    /// The first Close the target sent, as the peer read it: `Some(None)`
    /// for a Close without a code.
    pub close_sent: Option<Option<u16>>,
    /// Data messages the peer received from the target.
    pub peer_received: usize,
}

impl Summary {
    /// One line: `delivered=N error=C close=C peer_received=N` (`-` for none).
    pub fn line(&self) -> String {
        let opt = |c: Option<u16>| c.map_or("-".to_string(), |c| c.to_string());
        format!(
            "delivered={} error={} close={} peer_received={}",
            self.delivered,
            opt(self.error),
            match self.close_sent {
                None => "-".to_string(),
                Some(None) => "none".to_string(),
                Some(Some(c)) => c.to_string(),
            },
            self.peer_received
        )
    }

    /// Prints [`Summary::line`] to stderr if `WEFT_FUZZ_SUMMARY` is set
    /// (read once).
    pub fn report(&self) {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *ON.get_or_init(|| std::env::var_os("WEFT_FUZZ_SUMMARY").is_some()) {
            eprintln!("weft-fuzz-summary {}", self.line());
        }
    }
}

/// Runs one case with the target in `role`.
pub fn run(role: Role, case: Case) -> Summary {
    let mut summary = Summary::default();
    let limits = case.limits;
    let max_frame = limits.max_frame as usize;
    let max_message = limits.max_message as usize;
    let config = Config::default()
        .max_frame_size(max_frame)
        .max_message_size(max_message)
        .send_frame_size(limits.send_frame as usize + 1)
        .close_timeout(Duration::from_millis(500));
    let peer_config = Config::default().close_timeout(Duration::from_millis(500));
    let (client_ext, server_ext) = negotiate(&case.ext);
    let (target_ext, peer_ext) = match role {
        Role::Client => (client_ext, server_ext),
        Role::Server => (server_ext, client_ext),
    };
    let peer_role = match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let mut target = End::new(role, &config, target_ext);
    if let Some(max) = case.exact_small_reads {
        target
            .conn
            .set_read_strategy(weft_core::proto::ReadStrategy::ExactSmallReads {
                max: max as usize,
            });
    }
    let mut peer = End::new(peer_role, &peer_config, peer_ext);
    let start = Instant::now();
    let mut now = start;

    // Bytes written to the target but not yet read by it.
    let mut to_target: Vec<u8> = Vec::new();
    let mut target_rbuf = BytesMut::new();
    let mut peer_rbuf = BytesMut::new();
    // Messages the target accepted to send, and the peer's view of them.
    let mut accepted: Vec<Sent> = Vec::new();
    let mut streaming: Option<(bool, Vec<u8>)> = None;
    let mut received: Vec<Sent> = Vec::new();
    // The code the target's failing Close must carry.
    let mut expected_close: Option<u16> = None;
    let mut peer_got_close = false;
    let mut supplied = 0usize;

    let mut ops = case.ops;
    // Always end by delivering everything both ways.
    ops.push(Op::Deliver {
        chunk: 0,
        amount: u16::MAX,
    });
    for op in ops {
        let hints = SendHints::default();
        match op {
            Op::PeerSend { text, payload } => {
                let p = text_payload(text, payload);
                let opc = if text { OpCode::Text } else { OpCode::Binary };
                let _ = peer.conn.session_mut().send(opc, p, &hints);
                peer.drain(&mut to_target);
            }
            Op::PeerFragments { text, parts } => {
                let n = parts.len();
                for (i, part) in parts.into_iter().enumerate() {
                    let opc = match (i, text) {
                        (0, true) => OpCode::Text,
                        (0, false) => OpCode::Binary,
                        _ => OpCode::Continuation,
                    };
                    // Lossy UTF-8 per fragment keeps the whole message valid.
                    let p = text_payload(text, part);
                    let _ = peer
                        .conn
                        .session_mut()
                        .send_fragment(opc, p, i + 1 == n, &hints);
                }
                peer.drain(&mut to_target);
            }
            Op::PeerPing(p) => {
                let _ = peer.conn.session_mut().ping(Bytes::from(p));
                peer.drain(&mut to_target);
            }
            Op::PeerClose(code, reason) => {
                let _ = peer
                    .conn
                    .session_mut()
                    .close(Some(CloseFrame::new(CloseCode::from(code), reason)), now);
                peer.drain(&mut to_target);
            }
            Op::Frame {
                b0,
                masked,
                key,
                lie,
                mut payload,
            } => {
                let len = if lie != 0 {
                    lie as u64
                } else {
                    payload.len() as u64
                };
                let mut hdr = [0u8; 14];
                let n = FrameHeader {
                    fin: b0 & 0x80 != 0,
                    rsv: Rsv::from_bits_truncate(b0),
                    opcode: OpCode::from_u8(b0 & 0xf).unwrap_or(OpCode::Binary),
                    mask: masked.then_some(key),
                    payload_len: len,
                }
                .encode(&mut hdr);
                // Keep the real first byte (a reserved opcode, say).
                hdr[0] = b0;
                if masked {
                    weft_core::proto::mask::apply_mask(&mut payload, key);
                }
                to_target.extend_from_slice(&hdr[..n]);
                to_target.extend_from_slice(&payload);
            }
            Op::Raw(bytes) => to_target.extend_from_slice(&bytes),
            Op::Deliver { chunk, amount } => {
                // Peer -> target.
                let amount = (amount as usize).min(to_target.len());
                let data: Vec<u8> = to_target.drain(..amount).collect();
                supplied += data.len();
                let chunk = if chunk == 0 {
                    data.len().max(1)
                } else {
                    chunk as usize
                };
                for piece in data.chunks(chunk) {
                    match case.exact_small_reads {
                        // A small read on a drained buffer arrives in an
                        // allocation of exactly its size.
                        Some(max) if target_rbuf.is_empty() && piece.len() <= max as usize => {
                            target_rbuf = BytesMut::from(piece)
                        }
                        _ => target_rbuf.extend_from_slice(piece),
                    }
                    let was_open = target.conn.session().state() == CloseState::Open;
                    // The peer may have sent much more than the limits: count
                    // what actually arrived.
                    let base = measure_start();
                    let mut errored = None;
                    loop {
                        match target.conn.handle_read(&mut target_rbuf) {
                            Ok(Some(m)) => {
                                if let Some(d) = data_of(&m) {
                                    summary.delivered += 1;
                                    let len = match &d {
                                        Sent::Text(t) => {
                                            assert!(std::str::from_utf8(t).is_ok());
                                            t.len()
                                        }
                                        Sent::Binary(b) => b.len(),
                                    };
                                    assert!(len <= max_message, "message of {len} > {max_message}");
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                let code = expected_close_code(&e);
                                assert_eq!(e.close_code().as_u16(), code, "{e:?}");
                                errored = Some(code);
                                summary.error.get_or_insert(code);
                                break;
                            }
                        }
                    }
                    let stats = measure_end(base);
                    // Frames are bounded by max_frame and messages by
                    // max_message; buffers may double, zlib state is fixed
                    // size (about 64 KiB inflate window and tables).
                    let bound = 2 * (max_frame + max_message + supplied) + (512 << 10);
                    assert!(
                        stats.largest <= bound,
                        "allocation of {} bytes (bound {bound})",
                        stats.largest
                    );
                    if let Some(code) = errored
                        && was_open
                    {
                        expected_close = Some(code);
                    }
                }
                // Target -> peer: everything the target wrote.
                let mut to_peer = Vec::new();
                target.drain(&mut to_peer);
                peer_rbuf.extend_from_slice(&to_peer);
                loop {
                    match peer.conn.handle_read(&mut peer_rbuf) {
                        Ok(Some(m)) => {
                            if let Some(d) = data_of(&m) {
                                received.push(d);
                            }
                            if let Message::Close(c) = &m
                                && !peer_got_close
                            {
                                peer_got_close = true;
                                summary.close_sent = Some(c.as_ref().map(|c| c.code.as_u16()));
                                if let Some(code) = expected_close {
                                    let got = c.as_ref().map(|c| c.code.as_u16());
                                    assert_eq!(got, Some(code), "failing Close carries the code");
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(e) => panic!("the peer failed on the target's output: {e:?}"),
                    }
                }
                peer.drain(&mut to_target);
            }
            Op::Send {
                text,
                payload,
                direct,
                compress,
            } => {
                let p = text_payload(text, payload);
                let opc = if text { OpCode::Text } else { OpCode::Binary };
                let mut hints = SendHints::default();
                hints.compress = compress;
                let r = if direct {
                    target
                        .conn
                        .send_message(opc, p.clone(), &hints, &mut target.out)
                } else {
                    target.conn.session_mut().send(opc, p.clone(), &hints)
                };
                match r {
                    Ok(()) => accepted.push(if text {
                        Sent::Text(p.to_vec())
                    } else {
                        Sent::Binary(p.to_vec())
                    }),
                    Err(SendError::Closed | SendError::FragmentOrder) => {}
                    Err(e) => panic!("send failed: {e:?}"),
                }
            }
            Op::SendFragment {
                opcode,
                payload,
                fin,
            } => {
                let opc = match opcode % 3 {
                    0 => OpCode::Continuation,
                    1 => OpCode::Text,
                    _ => OpCode::Binary,
                };
                // Text fragments may split code points; only the whole is
                // checked by the peer, so keep the whole valid: ASCII.
                let payload: Vec<u8> = match (opc, &streaming) {
                    (OpCode::Text, _) | (OpCode::Continuation, Some((true, _))) => {
                        payload.into_iter().map(|b| b & 0x7f).collect()
                    }
                    _ => payload,
                };
                let r = target.conn.session_mut().send_fragment(
                    opc,
                    Bytes::from(payload.clone()),
                    fin,
                    &hints,
                );
                match r {
                    Ok(()) => {
                        let text = match opc {
                            OpCode::Text => true,
                            OpCode::Binary => false,
                            _ => streaming.as_ref().expect("continuation accepted").0,
                        };
                        let buf = &mut streaming.get_or_insert_with(|| (text, Vec::new())).1;
                        buf.extend_from_slice(&payload);
                        if fin {
                            let (text, all) = streaming.take().expect("set above");
                            accepted.push(if text {
                                Sent::Text(all)
                            } else {
                                Sent::Binary(all)
                            });
                        }
                    }
                    Err(SendError::Closed) => streaming = None,
                    Err(SendError::FragmentOrder) => {}
                    Err(e) => panic!("send_fragment failed: {e:?}"),
                }
            }
            Op::Ping(p) => {
                let long = p.len() > 125;
                match target.conn.session_mut().ping(Bytes::from(p)) {
                    Err(SendError::ControlTooLong(_)) => assert!(long),
                    Ok(()) => assert!(!long),
                    Err(SendError::Closed) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
            Op::Pong(p) => {
                let _ = target.conn.session_mut().pong(Bytes::from(p));
            }
            Op::Close(c) => {
                let frame = c.map(|(code, reason)| CloseFrame::new(CloseCode::from(code), reason));
                let sendable = frame.as_ref().is_none_or(|f| f.code.is_sendable());
                let was_open = target.conn.session().state() == CloseState::Open;
                match target.conn.session_mut().close(frame, now) {
                    Ok(()) => assert!(was_open && sendable),
                    Err(SendError::InvalidCloseCode(_)) => assert!(!sendable),
                    Err(SendError::Closed) => assert!(!was_open),
                    Err(e) => panic!("close failed: {e:?}"),
                }
            }
            Op::Tick(ms) => {
                now += Duration::from_millis(ms as u64);
                for end in [&mut target, &mut peer] {
                    if end.conn.session().poll_timeout().is_some_and(|d| d <= now) {
                        end.conn.session_mut().handle_timeout(now);
                    }
                }
            }
            Op::Idle => {
                target.conn.session_mut().idle();
                peer.conn.session_mut().idle();
            }
        }
    }
    // Everything the target accepted reached the peer, unless the peer
    // stopped reading (its Close arrived first, or it closed) before.
    let peer_state = peer.conn.session().state();
    if peer_state == CloseState::Open && !peer_got_close {
        assert_eq!(
            received.len(),
            accepted.len(),
            "peer got {} of {} messages",
            received.len(),
            accepted.len()
        );
    }
    assert!(received.len() <= accepted.len());
    for (r, a) in received.iter().zip(&accepted) {
        assert_eq!(r, a, "the peer received what the target sent");
    }
    summary.peer_received = received.len();
    summary
}
