//! A counting global allocator: live heap bytes per thread.
//!
//! The report measures memory per connection by counting allocations, not
//! with a formula: the `weft` binary installs [`CountingAlloc`] as its
//! `#[global_allocator]`, and the replay reads [`live_bytes`] around the
//! moments it wants to measure (see [`crate::replay`]). Counters are kept
//! per thread, so a progress-bar thread or a tokio worker cannot disturb a
//! measurement taken on the replay thread. A block freed on another thread
//! than the one that allocated it is counted on the freeing thread; the
//! replay keeps every object it measures on one thread.
//!
//! Programs that embed `weft_cli` (and its integration tests) install it
//! themselves:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: weft_cli::alloc::CountingAlloc = weft_cli::alloc::CountingAlloc;
//! ```
//!
//! Without it, [`is_installed`] is false and the report leaves memory
//! figures out (reported as 0 with a warning).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// The system allocator, counting live bytes per thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Bytes allocated minus bytes freed on this thread. `const`-initialised
    /// and without a destructor, so the allocator may touch it at any time,
    /// including while the thread-local system itself allocates.
    static LIVE: Cell<i64> = const { Cell::new(0) };
    /// The highest `LIVE` since the last [`reset_peak`].
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

#[inline]
fn add(delta: i64) {
    // `try_with` fails only while the thread is being torn down; a count
    // lost then cannot matter to a measurement.
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        if delta > 0 {
            let _ = PEAK.try_with(|p| {
                if v > p.get() {
                    p.set(v);
                }
            });
        }
    });
}

#[inline]
fn mark_installed() {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and only adds bookkeeping on a thread-local integer, so the
// `GlobalAlloc` contract holds exactly as it does for `System`.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            mark_installed();
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds the contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            mark_installed();
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, which
        // got it from `System` with the same layout.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; see `dealloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

/// Live heap bytes allocated on this thread (allocated minus freed), since
/// the thread started. Only differences between two readings on the same
/// thread mean anything.
pub fn live_bytes() -> i64 {
    LIVE.try_with(Cell::get).unwrap_or(0)
}

/// Starts a new peak: [`peak_bytes`] is the current live figure.
pub fn reset_peak() {
    let now = live_bytes();
    let _ = PEAK.try_with(|p| p.set(now));
}

/// The highest [`live_bytes`] on this thread since [`reset_peak`].
pub fn peak_bytes() -> i64 {
    PEAK.try_with(Cell::get).unwrap_or(0)
}

/// True once [`CountingAlloc`] has served an allocation, i.e. it is the
/// process's global allocator.
pub fn is_installed() -> bool {
    if INSTALLED.load(Ordering::Relaxed) {
        return true;
    }
    // Allocate once to find out.
    let probe = std::hint::black_box(Box::new(0u64));
    drop(probe);
    INSTALLED.load(Ordering::Relaxed)
}

/// Bytes freed by dropping `value`, measured on this thread.
pub fn freed_by_drop<T>(value: T) -> u64 {
    let before = live_bytes();
    drop(value);
    (before - live_bytes()).max(0) as u64
}
