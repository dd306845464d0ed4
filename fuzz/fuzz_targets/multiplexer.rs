//! The whole sans-I/O `Multiplexer`: a client and a server multiplexer
//! wired back to back, driven by arbitrary application commands on both
//! sides, arbitrary delivery of their physical messages, and arbitrary
//! physical messages injected into either.
//!
//! Checked: every physical message either end emits is a valid mux
//! message (decodes strictly); as long as nothing was injected, neither end
//! ever fails and every message sent on an open channel arrives intact and
//! in order on the other side; a failure is reported once, with a physical
//! drop code (2000-2999) that is the one `failure()` returns; the
//! allocations stay within the configured buffer limits plus what the
//! fuzzer supplied.
//!
//! Both wire formats: `variant_a` runs the pair in variant A (physical
//! frames with their own FIN and opcode, no flow control), with the same
//! invariants (a channel dropped at the buffer limit received a prefix).
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_core::ext::{ExtensionFactory, SendHints};
use weft_core::handshake::ServerOptions;
use weft_core::{Config, Frame, Message, Utf8Bytes};
use weft_extensions::PerMessageDeflate;
use weft_mux::wire::decode_physical;
use weft_mux::wire::variant_a::decode_physical_a;
use weft_mux::{ChannelId, DropCode, Multiplexer, MuxConfig, MuxEvent, MuxVariant};

#[global_allocator]
static ALLOC: weft_fuzz::CountingAlloc = weft_fuzz::CountingAlloc;

#[derive(Arbitrary, Debug)]
enum Op {
    Open {
        deflate: bool,
        path: u8,
    },
    /// Server: answer the oldest pending request.
    Answer {
        accept: bool,
    },
    /// Send on the n-th open channel of a side.
    Send {
        server: bool,
        nth: u8,
        text: bool,
        payload: Vec<u8>,
    },
    Close {
        server: bool,
        nth: u8,
    },
    Drop {
        server: bool,
        nth: u8,
        code: u16,
    },
    /// Read messages of a side's channels.
    Read {
        server: bool,
    },
    /// Deliver up to n physical messages in one direction.
    Deliver {
        to_server: bool,
        n: u8,
    },
    /// Inject a physical message.
    Inject {
        to_server: bool,
        text: bool,
        payload: Vec<u8>,
    },
    Tick(u16),
}

#[derive(Arbitrary, Debug)]
struct Case {
    window: u16,
    inner: u16,
    buffered: u16,
    slots: u8,
    max_message: u16,
    variant_a: bool,
    ops: Vec<Op>,
}

fn payload_of(m: &Message) -> Vec<u8> {
    match m {
        Message::Text(t) => t.as_bytes().to_vec(),
        Message::Binary(b) => b.to_vec(),
        _ => Vec::new(),
    }
}

struct Side {
    mux: Multiplexer,
    open: Vec<ChannelId>,
    pending: VecDeque<ChannelId>,
    /// What arrived per channel.
    got: HashMap<u32, Vec<Vec<u8>>>,
    failed: Option<DropCode>,
}

impl Side {
    fn events(&mut self) {
        while let Some(e) = self.mux.poll_event() {
            match e {
                MuxEvent::ChannelRequested { channel, .. } => self.pending.push_back(channel),
                MuxEvent::ChannelOpened { channel, .. } => self.open.push(channel),
                MuxEvent::ChannelRejected { .. } => {}
                MuxEvent::Readable(ch) => {
                    while let Some(m) = self.mux.take_message(ch) {
                        if let Message::Text(_) | Message::Binary(_) = &m {
                            self.got.entry(ch.get()).or_default().push(payload_of(&m));
                        }
                    }
                }
                MuxEvent::ChannelClosed { channel, .. } => {
                    self.open.retain(|c| *c != channel);
                    self.pending.retain(|c| *c != channel);
                }
                MuxEvent::Failed(code) => {
                    assert!(self.failed.is_none(), "failed twice");
                    assert!(code.is_physical(), "{code:?}");
                    assert_eq!(self.mux.failure(), Some(code));
                    self.failed = Some(code);
                }
            }
        }
    }

    fn output(&mut self, queue: &mut VecDeque<Frame>) {
        let a = self.mux.config().variant == MuxVariant::A;
        while let Some(f) = self.mux.poll_transmit_frame() {
            if a {
                decode_physical_a(f.fin, f.rsv, f.opcode, &f.payload, true)
                    .expect("emitted frames are valid");
            } else {
                assert!(f.fin && f.opcode == weft_core::OpCode::Binary);
                decode_physical(&f.payload, true).expect("emitted messages are valid");
            }
            queue.push_back(f);
        }
    }
}

libfuzzer_sys::fuzz_target!(|case: Case| {
    let mut cfg = MuxConfig::default();
    cfg.receive_window = case.window as u64 + 1;
    cfg.slot_quota = case.window as u64 + 1;
    cfg.implicit_quota = case.window as u64 + 1;
    cfg.max_inner_frame = case.inner as usize + 1;
    cfg.max_buffered_per_channel = case.buffered as usize;
    cfg.max_buffered_total = 4 * case.buffered as usize;
    cfg.slots = case.slots as u64 % 8;
    cfg.max_channels = 16;
    cfg.channel = Config::default().max_message_size(case.max_message as usize + 1);
    if case.variant_a {
        cfg.variant = MuxVariant::A;
    }
    let request = http::Request::builder()
        .uri("/")
        .header("host", "example.com")
        .body(())
        .unwrap();
    let mut client = Side {
        mux: Multiplexer::client(cfg.clone(), "example.com"),
        open: vec![ChannelId::IMPLICIT],
        pending: VecDeque::new(),
        got: HashMap::new(),
        failed: None,
    };
    let mut server = Side {
        mux: Multiplexer::server(cfg.clone(), &request, cfg.implicit_quota),
        open: vec![ChannelId::IMPLICIT],
        pending: VecDeque::new(),
        got: HashMap::new(),
        failed: None,
    };
    let options = ServerOptions::default().extension(PerMessageDeflate::new());
    let mut to_server: VecDeque<Frame> = VecDeque::new();
    let mut to_client: VecDeque<Frame> = VecDeque::new();
    let mut sent: HashMap<(bool, u32), Vec<Vec<u8>>> = HashMap::new();
    let mut injected = false;
    let mut supplied = 0usize;
    let start = Instant::now();
    let mut now = start;
    let mut ops = case.ops;
    for _ in 0..4 {
        ops.push(Op::Deliver {
            to_server: true,
            n: u8::MAX,
        });
        ops.push(Op::Deliver {
            to_server: false,
            n: u8::MAX,
        });
    }
    let base = weft_fuzz::measure_start();
    for op in ops {
        match op {
            Op::Open { deflate, path } => {
                let ext: Vec<Arc<dyn ExtensionFactory>> = match deflate {
                    true => vec![Arc::new(PerMessageDeflate::new())],
                    false => Vec::new(),
                };
                let _ = client.mux.open_channel(&format!("/{path}"), &[], &[], ext);
            }
            Op::Answer { accept } => {
                if let Some(ch) = server.pending.pop_front() {
                    if accept {
                        if server.mux.accept_channel(ch, &options).is_ok() {
                            server.open.push(ch);
                        }
                    } else {
                        let _ = server.mux.reject_channel(ch, http::StatusCode::FORBIDDEN);
                    }
                }
            }
            Op::Send {
                server: on_server,
                nth,
                text,
                payload,
            } => {
                let side = if on_server { &mut server } else { &mut client };
                if side.open.is_empty() {
                    continue;
                }
                let ch = side.open[nth as usize % side.open.len()];
                let msg = match text {
                    true => Message::Text(Utf8Bytes::from(
                        String::from_utf8_lossy(&payload).into_owned(),
                    )),
                    false => Message::Binary(Bytes::from(payload)),
                };
                let data = payload_of(&msg);
                if side.mux.send(ch, msg, &SendHints::default()).is_ok() {
                    sent.entry((on_server, ch.get())).or_default().push(data);
                }
            }
            Op::Close {
                server: on_server,
                nth,
            } => {
                let side = if on_server { &mut server } else { &mut client };
                if !side.open.is_empty() {
                    let ch = side.open[nth as usize % side.open.len()];
                    let _ = side
                        .mux
                        .send(ch, Message::Close(None), &SendHints::default());
                }
            }
            Op::Drop {
                server: on_server,
                nth,
                code,
            } => {
                let side = if on_server { &mut server } else { &mut client };
                if !side.open.is_empty() {
                    let ch = side.open[nth as usize % side.open.len()];
                    side.mux.drop_channel(ch, DropCode(3000 + code % 1000));
                }
            }
            Op::Read { server: on_server } => {
                let side = if on_server { &mut server } else { &mut client };
                side.events();
            }
            Op::Deliver { to_server: ts, n } => {
                let (queue, side) = match ts {
                    true => (&mut to_server, &mut server),
                    false => (&mut to_client, &mut client),
                };
                for _ in 0..n {
                    let Some(f) = queue.pop_front() else { break };
                    side.mux.handle_frame(f);
                    side.events();
                }
            }
            Op::Inject {
                to_server: ts,
                text,
                payload,
            } => {
                injected = true;
                supplied += payload.len();
                let side = if ts { &mut server } else { &mut client };
                let msg = match text {
                    true => Message::Text(Utf8Bytes::from(
                        String::from_utf8_lossy(&payload).into_owned(),
                    )),
                    false => Message::Binary(Bytes::from(payload)),
                };
                side.mux.handle_message(msg);
                side.events();
            }
            Op::Tick(ms) => {
                now += Duration::from_millis(ms as u64);
                client.mux.handle_timeout(now);
                server.mux.handle_timeout(now);
            }
        }
        client.output(&mut to_server);
        server.output(&mut to_client);
        client.events();
        server.events();
        if !injected {
            assert_eq!(client.failed, None, "client failed on honest traffic");
            assert_eq!(server.failed, None, "server failed on honest traffic");
        }
    }
    let stats = weft_fuzz::measure_end(base);
    let bound = 64 * (cfg.max_inner_frame + case.max_message as usize + case.buffered as usize)
        + 16 * supplied
        + (4 << 20);
    assert!(stats.largest <= bound, "allocation of {}", stats.largest);
    if !injected {
        // Everything sent on a channel that is still open on both sides
        // arrived, in order; on others, a prefix arrived.
        for ((from_server, ch), msgs) in &sent {
            let receiver = if *from_server { &client } else { &server };
            let got = receiver.got.get(ch).map(Vec::as_slice).unwrap_or(&[]);
            assert!(
                got.len() <= msgs.len(),
                "channel {ch}: more arrived than was sent"
            );
            for (g, m) in got.iter().zip(msgs) {
                assert_eq!(g, m, "channel {ch}: message changed");
            }
        }
    }
});
