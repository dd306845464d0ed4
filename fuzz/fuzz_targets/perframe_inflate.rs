//! The per-frame deflate decoder (deflate-frame), through the public
//! layer above it: a server `Session` that negotiated deflate-frame,
//! fed frames.
//!
//! Honest frames are compressed by flate2 (raw DEFLATE, 32 KiB window,
//! context kept, sync flush, trailer stripped, RSV1) or sent plain, and
//! grouped into fragmented messages; the session must return exactly those
//! messages, or fail with 1009 exactly when one exceeds `max_message_size`.
//! Once a hand-made frame (any RSV/opcode bits, arbitrary payload) was
//! fed, only the error mapping is checked: every error has the RFC's close
//! code, and no allocation exceeds the message limit plus the fixed inflate
//! state.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use weft_core::{Config, Frame, Message, OpCode, ProtocolError, Role, Rsv, Session};

#[global_allocator]
static ALLOC: weft_fuzz::CountingAlloc = weft_fuzz::CountingAlloc;

#[derive(Arbitrary, Debug)]
enum Op {
    /// One message: binary or text (ASCII), in fragments, each compressed
    /// or not.
    Message {
        text: bool,
        parts: Vec<(bool, Vec<u8>)>,
    },
    /// A hand-made frame.
    Frame {
        b0: u8,
        payload: Vec<u8>,
    },
    Ping(Vec<u8>),
    Idle,
}

#[derive(Arbitrary, Debug)]
struct Case {
    max_message: u16,
    ops: Vec<Op>,
}

fn deflate(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut z = Vec::with_capacity(data.len() * 2 + 64);
    let before = c.total_in();
    c.compress_vec(data, &mut z, FlushCompress::Sync).unwrap();
    assert_eq!(c.total_in() - before, data.len() as u64);
    if z.is_empty() {
        // Nothing to flush: an empty stored block's header stands for the
        // empty frame (RFC 7692 §7.2.3.6).
        return vec![0];
    }
    assert!(z.ends_with(&[0, 0, 0xff, 0xff]));
    z.truncate(z.len() - 4);
    z
}

libfuzzer_sys::fuzz_target!(|case: Case| {
    let max_message = case.max_message as usize;
    let ext = weft_fuzz::conn::ExtChoice::PerFrame {
        bits: 7,
        nct: false,
    };
    let (_, server) = weft_fuzz::conn::negotiate(&ext);
    let cfg = Config::default().max_message_size(max_message);
    let mut s = Session::with_extensions(Role::Server, &cfg, server);
    let mut c = Compress::new_with_window_bits(Compression::default(), false, 15);
    let mut tainted = false;
    let feed = |s: &mut Session, f: Frame, tainted: bool| -> Result<Option<Message>, u16> {
        let base = weft_fuzz::measure_start();
        let r = s.handle_frame(f);
        let stats = weft_fuzz::measure_end(base);
        assert!(
            stats.largest <= 2 * max_message + (256 << 10),
            "allocation of {}",
            stats.largest
        );
        match r {
            Ok(m) => Ok(m),
            Err(e) => {
                let code = weft_fuzz::expected_close_code(&e);
                assert_eq!(e.close_code().as_u16(), code);
                if !tainted {
                    assert!(
                        matches!(
                            e,
                            ProtocolError::Extension { .. } | ProtocolError::MessageTooLarge { .. }
                        ),
                        "honest frames failed: {e:?}"
                    );
                    assert_eq!(code, 1009, "honest frames failed: {e:?}");
                }
                Err(code)
            }
        }
    };
    for op in case.ops {
        if s.is_finished() {
            break;
        }
        match op {
            Op::Message { text, parts } => {
                if parts.is_empty() {
                    continue;
                }
                let n = parts.len();
                let mut whole = Vec::new();
                let mut result = Ok(None);
                for (i, (compress, data)) in parts.into_iter().enumerate() {
                    let data: Vec<u8> = match text {
                        true => data.into_iter().map(|b| b & 0x7f).collect(),
                        false => data,
                    };
                    whole.extend_from_slice(&data);
                    let (payload, rsv) = match compress {
                        true => (deflate(&mut c, &data), Rsv::RSV1),
                        false => (data, Rsv::empty()),
                    };
                    let opcode = match (i, text) {
                        (0, true) => OpCode::Text,
                        (0, false) => OpCode::Binary,
                        _ => OpCode::Continuation,
                    };
                    let f = Frame {
                        fin: i + 1 == n,
                        rsv,
                        opcode,
                        payload: Bytes::from(payload),
                    };
                    result = feed(&mut s, f, tainted);
                    if result.is_err() {
                        break;
                    }
                }
                if tainted {
                    continue;
                }
                match result {
                    Ok(Some(Message::Text(t))) => {
                        assert!(text);
                        assert_eq!(t.as_bytes(), &whole[..]);
                    }
                    Ok(Some(Message::Binary(b))) => {
                        assert!(!text);
                        assert_eq!(&b[..], &whole[..]);
                    }
                    Ok(other) => panic!("{other:?} for a whole message"),
                    Err(1009) => {
                        assert!(
                            whole.len() > max_message,
                            "{} <= {max_message}",
                            whole.len()
                        );
                        return;
                    }
                    Err(code) => panic!("honest message failed with {code}"),
                }
                assert!(whole.len() <= max_message);
            }
            Op::Frame { b0, payload } => {
                let Ok(opcode) = OpCode::from_u8(b0 & 0xf) else {
                    continue;
                };
                tainted = true;
                let f = Frame {
                    fin: b0 & 0x80 != 0,
                    rsv: Rsv::from_bits_truncate(b0),
                    opcode,
                    payload: Bytes::from(payload),
                };
                let _ = feed(&mut s, f, true);
            }
            Op::Ping(p) => {
                let long = p.len() > 125;
                let r = feed(&mut s, Frame::new(OpCode::Ping, p), true);
                assert_eq!(r.is_err(), long);
            }
            Op::Idle => s.idle(),
        }
    }
});
