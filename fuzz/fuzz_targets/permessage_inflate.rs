//! The DEFLATE decoder behind permessage-deflate (`deflate::Decompressor`)
//! with a budget, against flate2.
//!
//! - Valid streams: messages compressed by flate2 (raw DEFLATE, sync flush,
//!   trailer stripped as RFC 7692 §7.2.1 says, context kept across
//!   messages), cut into arbitrary frames: the decoder returns exactly the
//!   messages, or fails with 1009 exactly when a message exceeds the
//!   budget.
//! - Arbitrary streams: whatever flate2 inflates from the same bytes (plus
//!   the trailer) within the budget, the decoder returns too; when flate2
//!   finds the data corrupt, the decoder fails (1007, or 1009 if the
//!   budget ran out first). One exception, found by the long run: a
//!   back-reference past the negotiated window, which zlib accepts when the
//!   bytes it names are in the output of the same call; the decoder, fed
//!   frame by frame, may refuse it (1007), and then flate2 with one byte of
//!   output per call must find it corrupt too (`strictly_corrupt`).
//! - Always: the output never exceeds the budget, its buffer never holds
//!   more than budget + 1 bytes, and no allocation exceeds that or the
//!   fixed size of the inflate state.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use weft_extensions::deflate::{Decompressor, Release};
use weft_extensions::{ContextPool, WindowBits};

#[global_allocator]
static ALLOC: weft_fuzz::CountingAlloc = weft_fuzz::CountingAlloc;

#[derive(Arbitrary, Debug)]
enum Mode {
    Valid {
        level: u8,
        messages: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Raw {
        chunks: Vec<Vec<u8>>,
    },
}

#[derive(Arbitrary, Debug)]
struct Case {
    bits: u8,
    budget: u16,
    release: u8,
    pooled: bool,
    mode: Mode,
}

/// zlib-rs inflate state with its window (at most 32 KiB) is well below.
const STATE: usize = 96 << 10;

/// flate2 with room for one output byte per call, so every back-reference
/// is checked against the window alone: true if that finds `all` corrupt
/// before producing more than `budget` bytes.
fn strictly_corrupt(all: &[u8], bits: u8, budget: usize) -> bool {
    let mut z = Decompress::new_with_window_bits(false, bits);
    let mut byte = [0u8; 1];
    loop {
        let i = z.total_in() as usize;
        let before = (z.total_in(), z.total_out());
        if z.decompress(&all[i..], &mut byte, FlushDecompress::Sync)
            .is_err()
        {
            return true;
        }
        if z.total_out() as usize > budget || (z.total_in(), z.total_out()) == before {
            return false;
        }
    }
}

fn cut<'a>(data: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    for &c in cuts {
        let k = (c as usize).min(rest.len());
        let (a, b) = rest.split_at(k);
        parts.push(a);
        rest = b;
    }
    parts.push(rest);
    parts
}

libfuzzer_sys::fuzz_target!(|case: Case| {
    let bits = 9 + case.bits % 7; // 9..=15: what the decoder inflates with
    let window = WindowBits::new(bits).unwrap();
    let budget = case.budget as usize;
    let release = match case.release % 3 {
        0 => Release::Never,
        1 => Release::WhenIdle,
        _ => Release::EveryMessage,
    };
    let pool = case
        .pooled
        .then(|| std::sync::Arc::new(ContextPool::new(2)));
    let mut d = Decompressor::new(window, pool, release);
    let run = |d: &mut Decompressor, parts: &[&[u8]]| -> (Result<(), u16>, BytesMut, usize) {
        let mut out = BytesMut::new();
        let base = weft_fuzz::measure_start();
        let mut r = Ok(());
        for (i, p) in parts.iter().enumerate() {
            if let Err(e) = d.decompress(p, i + 1 == parts.len(), budget, &mut out) {
                let code = e.code.as_u16();
                assert!(code == 1007 || code == 1009, "{e:?}");
                if code == 1009 {
                    assert!(e.message.contains("exceeds"), "{e:?}");
                }
                r = Err(code);
                break;
            }
        }
        let stats = weft_fuzz::measure_end(base);
        // On success within the budget; a failure may have produced the
        // one byte that crossed it.
        let limit = if r.is_ok() { budget } else { budget + 1 };
        assert!(out.len() <= limit, "{} > budget {budget}", out.len());
        assert!(
            out.capacity() <= budget + 1,
            "capacity {} > {}",
            out.capacity(),
            budget + 1
        );
        assert!(
            stats.largest <= (budget + 1).max(STATE),
            "allocation of {} (budget {budget})",
            stats.largest
        );
        (r, out, stats.largest)
    };
    match case.mode {
        Mode::Valid { level, messages } => {
            let mut c =
                Compress::new_with_window_bits(Compression::new((level % 10) as u32), false, bits);
            for (msg, cuts) in messages.iter().take(8) {
                let mut z = Vec::with_capacity(msg.len() * 2 + 64);
                let before = c.total_in();
                c.compress_vec(msg, &mut z, FlushCompress::Sync).unwrap();
                assert_eq!(c.total_in() - before, msg.len() as u64);
                if z.is_empty() {
                    // Nothing to flush: the empty stored block's header
                    // (RFC 7692 §7.2.3.6).
                    z.push(0);
                } else {
                    assert!(z.ends_with(&[0, 0, 0xff, 0xff]));
                    z.truncate(z.len() - 4);
                }
                let parts = cut(&z, cuts);
                let (r, out, _) = run(&mut d, &parts);
                match r {
                    Ok(()) => {
                        assert!(msg.len() <= budget);
                        assert_eq!(&out[..], &msg[..], "inflated differs");
                        d.end_message(true);
                    }
                    Err(code) => {
                        assert_eq!(code, 1009, "a valid stream failed with {code}");
                        assert!(msg.len() > budget);
                        // The connection is failed: nothing follows.
                        return;
                    }
                }
            }
        }
        Mode::Raw { chunks } => {
            let parts: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
            let mut all: Vec<u8> = chunks.concat();
            all.extend_from_slice(&[0, 0, 0xff, 0xff]);
            // Reference: flate2 on the whole stream, with room to spare.
            let mut reference = Decompress::new_with_window_bits(false, bits);
            let mut ref_out = Vec::with_capacity(budget + 1);
            let mut ref_result = Ok(false);
            loop {
                let before = (reference.total_in(), reference.total_out());
                let input = &all[reference.total_in() as usize..];
                match reference.decompress_vec(input, &mut ref_out, FlushDecompress::Sync) {
                    Ok(Status::StreamEnd) => {
                        ref_result = Ok(true);
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        ref_result = Err(());
                        break;
                    }
                }
                if ref_out.len() > budget {
                    break;
                }
                if (reference.total_in(), reference.total_out()) == before {
                    break;
                }
                ref_out.reserve(4096.min(budget + 1 - ref_out.len().min(budget)));
            }
            let (r, out, _) = run(&mut d, &parts);
            if ref_out.len() > budget {
                // flate2 produced more than the budget: weft must fail
                // (1009, or 1007 when zlib meets corrupt data in the same
                // call that reaches the budget).
                assert!(
                    r.is_err(),
                    "{} inflated bytes > budget {budget}",
                    ref_out.len()
                );
                return;
            }
            match ref_result {
                // A stream end inside the message starts a new stream in
                // our decoder (RFC 7692 §7.2.3.4); compare up to it.
                Ok(true) => {
                    if r.is_ok() {
                        assert!(out.starts_with(&ref_out), "output differs before BFINAL");
                    }
                }
                Ok(false) => {
                    if r == Err(1007) {
                        // zlib checks a back-reference against its window
                        // plus what the current call has written, so one
                        // call with a large buffer accepts distances past
                        // the negotiated window that the decoder, fed frame
                        // by frame, refuses. Such a stream breaks the
                        // window the peer agreed to (RFC 7692 §7.1.2):
                        // refusing it is right, but only if it really
                        // reaches past the window, which flate2 shows when
                        // it has no output of the call to look back into.
                        assert!(
                            strictly_corrupt(&all, bits, budget),
                            "flate2 inflated it within the window, weft failed"
                        );
                        return;
                    }
                    assert_eq!(r, Ok(()), "flate2 inflated it, weft failed");
                    assert_eq!(&out[..], &ref_out[..], "inflated differs from flate2");
                }
                Err(()) => assert!(r.is_err(), "flate2 found it corrupt, weft did not"),
            }
        }
    }
});
