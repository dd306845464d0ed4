//! Shared harness for weft's fuzz targets: a counting allocator, the close
//! codes RFC 6455 names for each protocol error, extension negotiation for
//! both ends, and the structure-aware `Connection` driver.
//!
//! Every target asserts invariants, not only "does not panic":
//!
//! - allocation: the [`CountingAlloc`] records the largest single allocation
//!   and the peak of live bytes while a target runs; targets check them
//!   against the limits they configured (so an attacker-chosen length can
//!   never become an allocation);
//! - errors: [`expected_close_code`] is written out from RFC 6455 §7.4.1
//!   and RFC 7692 independently of `ProtocolError::close_code`, and every
//!   error a target sees must agree with it, also on the wire (the Close
//!   frame the failing end sends);
//! - output: what an end writes is read by a second, honest end, which must
//!   never fail on it and must receive exactly the messages the first end
//!   accepted to send.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

pub mod conn;

/// A global allocator over `System` that counts (see the crate docs).
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
static ARMED: AtomicBool = AtomicBool::new(false);

// SAFETY: every call is forwarded to `System` unchanged; the counters are
// only bookkeeping.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Relaxed);
        note_alloc(new_size);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note_alloc(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    if ARMED.load(Relaxed) {
        PEAK.fetch_max(live, Relaxed);
        LARGEST.fetch_max(size, Relaxed);
    }
}

/// What the allocator saw between [`measure_start`] and [`measure_end`].
#[derive(Debug, Clone, Copy)]
pub struct AllocStats {
    /// Largest single allocation (or reallocation target), in bytes.
    pub largest: usize,
    /// Peak of live bytes above what was live at the start.
    pub peak_growth: usize,
}

/// Starts measuring; returns the baseline of live bytes.
pub fn measure_start() -> usize {
    let live = LIVE.load(Relaxed);
    PEAK.store(live, Relaxed);
    LARGEST.store(0, Relaxed);
    ARMED.store(true, Relaxed);
    live
}

/// Stops measuring.
pub fn measure_end(baseline: usize) -> AllocStats {
    ARMED.store(false, Relaxed);
    AllocStats {
        largest: LARGEST.load(Relaxed),
        peak_growth: PEAK.load(Relaxed).saturating_sub(baseline),
    }
}

/// The close code RFC 6455 §7.4.1 (and RFC 7692 §8 for permessage-deflate,
/// the per-frame digest for deflate-frame) names for a protocol error,
/// written out here independently of `ProtocolError::close_code`.
/// Panics on a variant the harness does not know, so a new variant must be
/// mapped here consciously.
pub fn expected_close_code(e: &weft_core::ProtocolError) -> u16 {
    use weft_core::ProtocolError as P;
    match e {
        // 1002: a protocol error (framing, masking, RSV, opcodes,
        // fragmentation, control frames, Close payload rules).
        P::UnmaskedFrame
        | P::MaskedFrame
        | P::ReservedBits(_)
        | P::ReservedOpcode(_)
        | P::FragmentedControlFrame
        | P::ControlFrameTooLong(_)
        | P::UnexpectedContinuation
        | P::ExpectedContinuation
        | P::LengthMsbSet
        | P::NonMinimalLength
        | P::InvalidClosePayload
        | P::InvalidCloseCode(_) => 1002,
        // 1007: data inconsistent with the message type.
        P::InvalidUtf8 | P::InvalidCloseReason => 1007,
        // 1009: too big to process.
        P::FrameTooLarge { .. } | P::MessageTooLarge { .. } => 1009,
        // Corrupt DEFLATE data is invalid payload (1007); a message that
        // inflates past the limit is too big (1009); an extension's framing
        // rule (RSV1 on a continuation) is a protocol error (1002). Never
        // 1011: no input may make an extension fail internally.
        P::Extension { code, message, .. } => {
            let c = code.as_u16();
            assert!(
                matches!(c, 1002 | 1007 | 1009),
                "extension error with close code {c}: {message}"
            );
            if message.contains("corrupt") {
                assert_eq!(c, 1007, "{e}");
            }
            if message.contains("exceeds") {
                assert_eq!(c, 1009, "{e}");
            }
            c
        }
        other => panic!("unmapped protocol error {other:?}"),
    }
}
