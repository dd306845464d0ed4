//! The DEFLATE codec shared by permessage-deflate and per-frame deflate.
//!
//! - [`Compressor`]: raw DEFLATE with sync flushes, allocated lazily on first
//!   use, optionally reset and handed back to a [`ContextPool`] between
//!   messages. Built on `zlib-rs` directly (the backend flate2 uses here)
//!   because flate2 does not expose zlib's `memLevel`, which sets the hash
//!   table and pending buffer sizes: the main memory knob besides the window.
//! - [`Decompressor`]: raw inflate through flate2's `Decompress` (zlib-rs
//!   backend), with a hard output budget: it is never given room for more
//!   than `budget + 1` bytes, so a decompression bomb stops at the limit.
//!
//! # Window bits 8
//!
//! zlib cannot compress with a 256-byte window. Like Chromium, a compressor
//! whose agreed window is 8 bits runs with 9: zlib never emits distances
//! beyond `2^w - 262` (250 bytes for w = 9), so its output decodes with a
//! 256-byte window. Decompression always uses at least 9 bits too: a larger
//! window than the peer's is always safe.

mod pool;
mod window;

pub use pool::ContextPool;
pub use window::WindowBits;

use pool::{NO_OWNER, Owner, give_back, lease, new_owner};

use bytes::BytesMut;
use flate2::{Decompress, FlushDecompress};
use std::sync::Arc;
use weft_core::ext::ExtensionError;
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Strategy};

/// The four bytes a sync flush ends with (RFC 7692 §7.2.1).
pub const SYNC_TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compressor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeflateParams {
    /// Compression level, 0 (store) to 9 (best).
    pub level: u8,
    /// zlib memLevel, 1 to 9: hash table of `2^(mem+7)` entries and a pending
    /// buffer of `2^(mem+8)` bytes.
    pub mem_level: u8,
    /// The LZ77 window (8 runs as 9, see the module docs).
    pub window: WindowBits,
}

impl DeflateParams {
    fn config(&self) -> DeflateConfig {
        DeflateConfig {
            level: i32::from(self.level.min(9)),
            window_bits: -i32::from(self.window.get().max(9)),
            mem_level: i32::from(self.mem_level.clamp(1, 9)),
            strategy: Strategy::Default,
            ..DeflateConfig::default()
        }
    }
}

/// Keeps the last `2^w` bytes of a stream: all a DEFLATE context needs to
/// carry over to the next message, at a fraction of the full zlib state. A
/// ring buffer, so recording a message costs one copy of (at most) its last
/// window, never a shift of the whole history.
#[derive(Debug, Default)]
struct History {
    buf: Vec<u8>,
    /// Index of the oldest byte once `buf` is full.
    head: usize,
    max: usize,
}

impl History {
    fn new(window: WindowBits) -> Self {
        History {
            buf: Vec::new(),
            head: 0,
            max: 1 << window.get().max(9),
        }
    }

    fn push(&mut self, mut data: &[u8]) {
        if data.len() >= self.max {
            self.buf.clear();
            self.grow_for(self.max);
            self.buf.extend_from_slice(&data[data.len() - self.max..]);
            self.head = 0;
            return;
        }
        if self.buf.len() < self.max {
            let take = (self.max - self.buf.len()).min(data.len());
            self.grow_for(take);
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        while !data.is_empty() {
            let n = data.len().min(self.max - self.head);
            self.buf[self.head..self.head + n].copy_from_slice(&data[..n]);
            self.head = (self.head + n) % self.max;
            data = &data[n..];
        }
    }

    /// Makes room for `more` bytes, doubling as `Vec` would but never past
    /// the window: the buffer ends at exactly `max` bytes, not up to twice
    /// that.
    fn grow_for(&mut self, more: usize) {
        let need = self.buf.len() + more;
        if need > self.buf.capacity() {
            let target = need.max(self.buf.capacity() * 2).min(self.max);
            self.buf.reserve_exact(target - self.buf.len());
        }
    }

    /// The history, oldest byte first.
    fn contiguous(&mut self) -> &[u8] {
        if self.head != 0 {
            self.buf.rotate_left(self.head);
            self.head = 0;
        }
        &self.buf
    }

    fn clear(&mut self) {
        self.buf = Vec::new();
        self.head = 0;
    }
}

/// The pool tag of a context given up: its owner's when it still matches
/// the owner's saved window (so it can come back warm), else none (reset
/// before any reuse).
fn tag(warm: bool, keeps_history: bool, owner: Owner) -> Owner {
    if warm && keeps_history {
        owner
    } else {
        NO_OWNER
    }
}

/// When a context gives up its zlib state (see [`crate::MemoryStrategy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Never (while the window matters).
    Never,
    /// When the connection has been idle (see `weft_core::Config::release_idle_after`).
    WhenIdle,
    /// After every message.
    EveryMessage,
}

/// A raw-DEFLATE compressor for one direction of one connection.
///
/// With a [`Release`] policy other than `Never`, the zlib state is given up
/// (after every message, or when the connection is idle) and only the
/// window's worth of recent input is kept; the next message starts a context
/// primed with it as a preset dictionary. The peer sees exactly the same
/// stream semantics as with a live context (back-references into earlier
/// messages), while a connection between messages holds at most `2^w` bytes
/// instead of the full state (over 128 KiB: zlib-rs uses a fixed 64 Ki-entry
/// hash table). With a [`ContextPool`] the state goes back to the pool, and
/// comes back warm (no priming) if no other connection needed it meanwhile.
pub struct Compressor {
    params: DeflateParams,
    inner: Option<Box<Deflate>>,
    pool: Option<Arc<ContextPool>>,
    owner: Owner,
    history: Option<History>,
    release: Release,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("params", &self.params)
            .field("allocated", &self.inner.is_some())
            .finish()
    }
}

impl Compressor {
    /// A compressor that allocates nothing until it is first used.
    pub fn new(params: DeflateParams, pool: Option<Arc<ContextPool>>, release: Release) -> Self {
        let history = (release != Release::Never).then(|| History::new(params.window));
        Compressor {
            params,
            inner: None,
            pool,
            owner: new_owner(),
            history,
            release,
        }
    }

    /// True while zlib state is held.
    pub fn is_allocated(&self) -> bool {
        self.inner.is_some()
    }

    /// Compresses `input` and appends the sync-flushed output (ending in
    /// `00 00 ff ff` unless nothing was pending) to `out`.
    pub fn compress(&mut self, mut input: &[u8], out: &mut BytesMut) -> Result<(), ExtensionError> {
        if self.inner.is_none() {
            let params = self.params;
            let (mut d, warm) = lease(self.pool.as_deref(), &params, self.owner, || {
                Box::new(Deflate::new_with_config(params.config()))
            });
            if !warm && let Some(h) = self.history.as_mut().filter(|h| !h.buf.is_empty()) {
                d.set_dictionary(h.contiguous()).map_err(|e| {
                    ExtensionError::internal(format!("deflate dictionary: {}", e.as_str()))
                })?;
            }
            self.inner = Some(d);
        }
        if let Some(h) = &mut self.history {
            h.push(input);
        }
        let d = self.inner.as_mut().expect("allocated above");
        loop {
            // A sync flush needs a few bytes even for empty input; incompressible
            // data grows by about 5 bytes per 16 KiB stored block.
            let want = input.len() + input.len() / 1024 + 32;
            out.reserve(want.min(1 << 20));
            let spare = out.spare_capacity_mut();
            let room = spare.len();
            let (in0, out0) = (d.total_in(), d.total_out());
            d.compress_uninit(input, spare, DeflateFlush::SyncFlush)
                .map_err(|e| ExtensionError::internal(format!("deflate failed: {}", e.as_str())))?;
            let consumed = (d.total_in() - in0) as usize;
            let produced = (d.total_out() - out0) as usize;
            // SAFETY: zlib initialized exactly `produced` bytes of the spare
            // capacity it was given.
            unsafe { out.set_len(out.len() + produced) };
            input = &input[consumed..];
            // Output space left over means the flush completed (zlib manual).
            if input.is_empty() && produced < room {
                return Ok(());
            }
        }
    }

    /// Ends a message. `takeover` keeps the LZ77 window for the next one
    /// (context takeover); otherwise it is forgotten. State is given back to
    /// the pool (or freed) when the window is forgotten and a pool or
    /// release policy allows, or after every message with
    /// [`Release::EveryMessage`]; otherwise it is reset in place or kept.
    pub fn end_message(&mut self, takeover: bool) {
        if !takeover && let Some(h) = &mut self.history {
            h.clear();
        }
        let give_up = self.release == Release::EveryMessage
            || (!takeover && (self.pool.is_some() || self.release != Release::Never));
        if give_up {
            self.give_up(takeover);
        } else if !takeover && let Some(d) = &mut self.inner {
            d.reset();
        }
    }

    /// The compressor's parameters.
    pub(crate) fn params(&self) -> DeflateParams {
        self.params
    }

    /// The pool its contexts come from, if any.
    pub(crate) fn pool(&self) -> Option<&Arc<ContextPool>> {
        self.pool.as_ref()
    }

    /// Forgets everything compressed so far, as if the stream started
    /// again: the next message refers to nothing before it. Used when a
    /// message compressed elsewhere (a broadcast) went out in between, so
    /// the peer's window no longer matches ours. A context this compressor
    /// left in the pool is not taken back warm (its owner tag is renewed).
    pub fn forget(&mut self) {
        if let Some(h) = &mut self.history {
            h.clear();
        }
        self.owner = new_owner();
        if let Some(d) = &mut self.inner {
            d.reset();
        }
    }

    /// The connection is idle: with a release policy, give the zlib state up
    /// and keep only the window.
    pub fn idle(&mut self) {
        if self.release != Release::Never {
            // Every `compress` ends with a sync flush, so the state always
            // matches the history here.
            self.give_up(true);
        }
    }

    /// Frees the state or gives it to the pool; `warm` says it still
    /// matches the history, so it can come back to us without priming.
    fn give_up(&mut self, warm: bool) {
        let Some(d) = self.inner.take() else {
            return;
        };
        let owner = tag(warm, self.history.is_some(), self.owner);
        give_back(self.pool.as_deref(), self.params, owner, d);
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        // A pooled context outlives its connection: anyone may reuse it.
        self.give_up(false);
    }
}

/// A raw-DEFLATE decompressor for one direction of one connection.
///
/// With a [`Release`] policy other than `Never` the zlib state is given up
/// between messages (never inside one: inflate state in the middle of a
/// block cannot be rebuilt) and only the last `2^w` bytes of output are
/// kept, restored as a preset dictionary when the next message starts (see
/// [`Compressor`]); with a [`ContextPool`] the state goes back to the pool.
pub struct Decompressor {
    window: WindowBits,
    inner: Option<Box<Decompress>>,
    pool: Option<Arc<ContextPool>>,
    owner: Owner,
    history: Option<History>,
    release: Release,
    /// Inside a message (its last frame not seen yet).
    in_message: bool,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("window", &self.window)
            .field("allocated", &self.inner.is_some())
            .finish()
    }
}

impl Decompressor {
    /// A decompressor that allocates nothing until it is first used.
    pub fn new(window: WindowBits, pool: Option<Arc<ContextPool>>, release: Release) -> Self {
        let history = (release != Release::Never).then(|| History::new(window));
        Decompressor {
            window,
            inner: None,
            pool,
            owner: new_owner(),
            history,
            release,
            in_message: false,
        }
    }

    /// True while zlib state is held.
    pub fn is_allocated(&self) -> bool {
        self.inner.is_some()
    }

    /// The window inflate runs with (at least 9 bits, see the module docs).
    fn bits(&self) -> u8 {
        self.window.get().max(9)
    }

    fn make(&self) -> Box<Decompress> {
        Box::new(Decompress::new_with_window_bits(false, self.bits()))
    }

    /// Inflates `input` (then the sync trailer if `finish`), appending to
    /// `out`, which must not grow past `budget` bytes: more fails with 1009.
    /// Corrupt data fails with 1007.
    pub fn decompress(
        &mut self,
        input: &[u8],
        finish: bool,
        budget: usize,
        out: &mut BytesMut,
    ) -> Result<(), ExtensionError> {
        if self.inner.is_none() {
            let (mut d, warm) = lease(self.pool.as_deref(), &self.bits(), self.owner, || {
                self.make()
            });
            if !warm && let Some(h) = self.history.as_mut().filter(|h| !h.buf.is_empty()) {
                d.set_dictionary(h.contiguous())
                    .map_err(|e| ExtensionError::internal(format!("inflate dictionary: {e}")))?;
            }
            self.inner = Some(d);
        }
        self.in_message = !finish;
        let start = out.len();
        let mut ended = self.feed(input, budget, out)?;
        if finish && !ended {
            ended = self.feed(&SYNC_TRAILER, budget, out)?;
        }
        if let Some(h) = &mut self.history {
            h.push(&out[start..]);
        }
        if ended {
            // A BFINAL block ended the DEFLATE stream inside the message
            // (RFC 7692 §7.2.3.4). Start a new stream primed with the last
            // window of output so later back-references still resolve, as far
            // as this message's output reaches.
            let keep = out.len().min(1 << self.bits());
            let d = self.inner.as_mut().expect("allocated above");
            d.reset(false);
            if keep > 0 {
                let _ = d.set_dictionary(&out[out.len() - keep..]);
            }
        }
        Ok(())
    }

    /// Returns true if the DEFLATE stream ended (BFINAL).
    fn feed(
        &mut self,
        mut input: &[u8],
        budget: usize,
        out: &mut BytesMut,
    ) -> Result<bool, ExtensionError> {
        let d = self.inner.as_mut().expect("allocated by decompress");
        loop {
            if out.len() > budget {
                return Err(ExtensionError::too_big(format!(
                    "decompressed message exceeds {budget} bytes"
                )));
            }
            // Never offer room for more than budget + 1 bytes in total.
            let limit = budget + 1 - out.len();
            let want = (input.len().saturating_mul(4))
                .clamp(4096, 1 << 20)
                .min(limit);
            if out.capacity() - out.len() < want {
                reserve_exact(out, want.max(out.len().min(limit)).min(limit));
            }
            let room = (out.capacity() - out.len()).min(limit);
            let (in0, out0) = (d.total_in(), d.total_out());
            let cap_before = out.capacity();
            // Give zlib at most `room` bytes of spare capacity.
            let status = {
                let len = out.len();
                let spare = &mut out.spare_capacity_mut()[..room];
                let r = d.decompress_uninit(input, spare, FlushDecompress::Sync);
                let produced = (d.total_out() - out0) as usize;
                // SAFETY: zlib initialized exactly `produced` bytes of the
                // spare capacity it was given.
                unsafe { out.set_len(len + produced) };
                r
            };
            debug_assert_eq!(cap_before, out.capacity());
            let status = status
                .map_err(|e| ExtensionError::invalid_data(format!("corrupt DEFLATE data: {e}")))?;
            let consumed = (d.total_in() - in0) as usize;
            let produced = (d.total_out() - out0) as usize;
            input = &input[consumed..];
            if out.len() > budget {
                return Err(ExtensionError::too_big(format!(
                    "decompressed message exceeds {budget} bytes"
                )));
            }
            match status {
                flate2::Status::StreamEnd => return Ok(true),
                _ if input.is_empty() && produced < room => return Ok(false),
                _ if consumed == 0 && produced == 0 && room > 0 => return Ok(false),
                _ => {}
            }
        }
    }

    /// Ends a message. `takeover` says the peer may refer back to it (its
    /// context takeover). Without it the window is dropped, so a peer that
    /// breaks its own no-context-takeover promise fails with 1007 on its next
    /// back-reference instead of being silently tolerated. With
    /// [`Release::EveryMessage`] the state is freed (keeping only the window
    /// when `takeover`).
    pub fn end_message(&mut self, takeover: bool) {
        self.in_message = false;
        if !takeover && let Some(h) = &mut self.history {
            h.clear();
        }
        if self.release == Release::EveryMessage {
            self.give_up(takeover);
        } else if !takeover && let Some(d) = &mut self.inner {
            d.reset(false);
        }
    }

    /// The connection is idle: with a release policy, give the zlib state up
    /// and keep only the window (not in the middle of a message).
    pub fn idle(&mut self) {
        if self.release != Release::Never && !self.in_message {
            self.give_up(true);
        }
    }

    /// Frees the state or gives it to the pool; `warm` says it still
    /// matches the history, so it can come back to us without priming.
    fn give_up(&mut self, warm: bool) {
        let Some(d) = self.inner.take() else {
            return;
        };
        let owner = tag(warm, self.history.is_some(), self.owner);
        give_back(self.pool.as_deref(), self.bits(), owner, d);
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        self.give_up(false);
    }
}

/// Makes room for exactly `additional` more bytes (`BytesMut::reserve` may
/// double the buffer, which would let a decompression bomb's buffer grow
/// past its budget).
fn reserve_exact(out: &mut BytesMut, additional: usize) {
    if out.capacity() - out.len() >= additional {
        return;
    }
    let mut grown = BytesMut::with_capacity(out.len() + additional);
    grown.extend_from_slice(out);
    *out = grown;
}

/// Strips the sync trailer from a finished message's output (RFC 7692
/// §7.2.1); an empty result becomes the single byte `00` (RFC 7692
/// §7.2.3.6), never an empty compressed payload.
pub fn finish_message(out: &mut BytesMut) {
    if out.ends_with(&SYNC_TRAILER) {
        out.truncate(out.len() - 4);
    }
    if out.is_empty() {
        out.extend_from_slice(&[0x00]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn params(window: u8) -> DeflateParams {
        DeflateParams {
            level: 6,
            mem_level: 8,
            window: WindowBits::new(window).unwrap(),
        }
    }

    /// The finished payload of one message.
    fn finish(mut out: BytesMut) -> Bytes {
        finish_message(&mut out);
        out.freeze()
    }

    fn inflate(d: &mut Decompressor, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        d.decompress(payload, true, 1 << 20, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn rfc7692_vectors_decode() {
        for payload in [
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
            &[
                0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
            ],
        ] {
            let mut d = Decompressor::new(WindowBits::MAX, None, Release::Never);
            assert_eq!(inflate(&mut d, payload), b"Hello", "{payload:02x?}");
        }
        // Shared window: the second message is a back-reference.
        let mut d = Decompressor::new(WindowBits::MAX, None, Release::Never);
        assert_eq!(
            inflate(&mut d, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
        assert_eq!(inflate(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]), b"Hello");
        // Empty message, then a normal one.
        assert_eq!(inflate(&mut d, &[0x00]), b"");
        assert_eq!(inflate(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]), b"Hello");
        // A BFINAL message, then a message referring back into it.
        let mut d = Decompressor::new(WindowBits::MAX, None, Release::Never);
        assert_eq!(
            inflate(&mut d, &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]),
            b"Hello"
        );
        assert_eq!(inflate(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]), b"Hello");
    }

    #[test]
    fn compressor_matches_rfc_vectors() {
        let mut c = Compressor::new(params(15), None, Release::Never);
        let mut out = BytesMut::new();
        c.compress(b"Hello", &mut out).unwrap();
        assert_eq!(
            finish(out).as_ref(),
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
        let mut out = BytesMut::new();
        c.compress(b"Hello", &mut out).unwrap();
        assert_eq!(finish(out).as_ref(), [0xf2, 0x00, 0x11, 0x00, 0x00]);
        c.end_message(false);
        let mut out = BytesMut::new();
        c.compress(b"Hello", &mut out).unwrap();
        assert_eq!(
            finish(out).as_ref(),
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
        // Empty input after a flush yields no bytes: the message becomes `00`.
        let mut out = BytesMut::new();
        c.compress(b"", &mut out).unwrap();
        assert_eq!(finish(out).as_ref(), [0x00]);
    }

    #[test]
    fn round_trip_all_windows_and_sizes() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| ((i * 7919) % 253) as u8 ^ (i / 1000) as u8)
            .collect();
        for w in 8..=15 {
            let mut c = Compressor::new(params(w), None, Release::Never);
            let mut d = Decompressor::new(WindowBits::new(w).unwrap(), None, Release::Never);
            for len in [0usize, 1, 100, 5000, 70_000, 300_000] {
                let mut out = BytesMut::new();
                c.compress(&data[..len], &mut out).unwrap();
                let payload = finish(out);
                assert_eq!(inflate(&mut d, &payload), &data[..len], "w={w} len={len}");
            }
        }
    }

    #[test]
    fn budget_at_limit_and_one_past() {
        let data = vec![b'a'; 10_000];
        let mut c = Compressor::new(params(15), None, Release::Never);
        let mut out = BytesMut::new();
        c.compress(&data, &mut out).unwrap();
        let payload = finish(out);
        let mut d = Decompressor::new(WindowBits::MAX, None, Release::Never);
        let mut out = BytesMut::new();
        d.decompress(&payload, true, 10_000, &mut out).unwrap();
        assert_eq!(out.len(), 10_000);
        let mut d = Decompressor::new(WindowBits::MAX, None, Release::Never);
        let mut out = BytesMut::new();
        let e = d.decompress(&payload, true, 9_999, &mut out).unwrap_err();
        assert_eq!(e.code.as_u16(), 1009);
        assert!(out.capacity() <= 10_000, "{}", out.capacity());
    }

    #[test]
    fn hibernating_contexts_keep_context_takeover_semantics() {
        // A hibernating pair produces and accepts back-references across
        // messages while holding only the window between them.
        let pool = Arc::new(ContextPool::new(4));
        for (hc, hd) in [(true, true), (true, false), (false, true)] {
            let rel = |h: bool| {
                if h {
                    Release::EveryMessage
                } else {
                    Release::Never
                }
            };
            let mut c = Compressor::new(params(12), Some(pool.clone()), rel(hc));
            let mut d = Decompressor::new(WindowBits::new(12).unwrap(), None, rel(hd));
            let mut live = Decompressor::new(WindowBits::new(12).unwrap(), None, Release::Never);
            let msg = b"the same sentence, again and again, the same sentence".repeat(3);
            let mut sizes = Vec::new();
            for _ in 0..4 {
                let mut out = BytesMut::new();
                c.compress(&msg, &mut out).unwrap();
                c.end_message(true);
                assert_eq!(c.is_allocated(), !hc);
                let payload = finish(out);
                sizes.push(payload.len());
                assert_eq!(inflate(&mut d, &payload), msg);
                d.end_message(true);
                assert_eq!(d.is_allocated(), !hd);
                assert_eq!(inflate(&mut live, &payload), msg);
            }
            // Later messages are mostly back-references to the first.
            assert!(sizes[1] < sizes[0] / 3, "{sizes:?}");
        }
    }

    #[test]
    fn idle_release_keeps_context_takeover() {
        let pool = Arc::new(ContextPool::new(4));
        let mut c = Compressor::new(params(15), Some(pool.clone()), Release::WhenIdle);
        let mut d = Decompressor::new(WindowBits::MAX, None, Release::WhenIdle);
        let msg = b"a sentence long enough to be worth a back-reference, twice".repeat(2);
        let mut sizes = Vec::new();
        for i in 0..4 {
            let mut out = BytesMut::new();
            c.compress(&msg, &mut out).unwrap();
            c.end_message(true);
            let payload = finish(out);
            sizes.push(payload.len());
            assert_eq!(inflate(&mut d, &payload), msg);
            d.end_message(true);
            // Busy connections keep their contexts between messages.
            assert!(c.is_allocated() && d.is_allocated());
            if i % 2 == 1 {
                c.idle();
                d.idle();
                assert!(!c.is_allocated() && !d.is_allocated());
                assert_eq!(pool.len(), 1);
            }
        }
        // Every message after the first refers back, across idle periods too.
        assert!(sizes[1..].iter().all(|s| *s < sizes[0] / 3), "{sizes:?}");
    }

    #[test]
    fn history_never_holds_more_than_its_window() {
        for (bits, chunk) in [(9u8, 100usize), (13, 1000), (15, 3000), (15, 40_000)] {
            let mut h = History::new(WindowBits::new(bits).unwrap());
            for _ in 0..50 {
                h.push(&vec![7u8; chunk]);
                assert!(h.buf.len() <= h.max);
                assert!(
                    h.buf.capacity() <= h.max,
                    "window {bits}, chunk {chunk}: capacity {} > {}",
                    h.buf.capacity(),
                    h.max
                );
            }
            assert_eq!(h.buf.len(), h.max);
        }
    }

    #[test]
    fn history_ring_keeps_the_last_window() {
        let mut h = History::new(WindowBits::new(9).unwrap());
        let data: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        for chunk in data.chunks(37) {
            h.push(chunk);
        }
        assert_eq!(h.contiguous(), &data[2000 - 512..]);
        h.push(&data[..100]);
        let mut want = data[2000 - 412..].to_vec();
        want.extend_from_slice(&data[..100]);
        assert_eq!(h.contiguous(), &want[..]);
    }

    #[test]
    fn a_peer_breaking_no_context_takeover_is_caught() {
        // The second "Hello" refers back into the first message.
        let mut d = Decompressor::new(WindowBits::MAX, None, Release::Never);
        assert_eq!(
            inflate(&mut d, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
        d.end_message(false);
        let mut out = BytesMut::new();
        let e = d
            .decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, 1000, &mut out)
            .unwrap_err();
        assert_eq!(e.code.as_u16(), 1007);
    }

    #[test]
    fn corrupt_data_is_1007() {
        let mut d = Decompressor::new(WindowBits::MAX, None, Release::Never);
        let mut out = BytesMut::new();
        let e = d
            .decompress(&[0xff, 0xff, 0xff, 0xff, 0x00], true, 1000, &mut out)
            .unwrap_err();
        assert_eq!(e.code.as_u16(), 1007);
    }

    #[test]
    fn pooled_compressor_is_reused() {
        let pool = Arc::new(ContextPool::new(4));
        let mut c = Compressor::new(params(10), Some(pool.clone()), Release::Never);
        let mut out = BytesMut::new();
        c.compress(b"Hello", &mut out).unwrap();
        c.end_message(false);
        assert!(!c.is_allocated());
        assert_eq!(pool.len(), 1);
        let mut c2 = Compressor::new(params(10), Some(pool.clone()), Release::Never);
        let mut out = BytesMut::new();
        c2.compress(b"Hello", &mut out).unwrap();
        assert_eq!(pool.len(), 0);
        // A reset context compresses like a fresh one.
        assert_eq!(
            finish(out).as_ref(),
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
    }

    #[test]
    fn pooled_contexts_serve_interleaved_connections_correctly() {
        // Three connection pairs share pools bounded at two contexts, so
        // contexts are taken over, reset and primed from saved windows, and
        // still every message decodes and refers back to earlier ones.
        let cpool = Arc::new(ContextPool::new(2));
        let dpool = Arc::new(ContextPool::new(2));
        let w = WindowBits::new(10).unwrap();
        let mut pairs: Vec<_> = (0..3)
            .map(|_| {
                (
                    Compressor::new(params(10), Some(cpool.clone()), Release::EveryMessage),
                    Decompressor::new(w, Some(dpool.clone()), Release::EveryMessage),
                )
            })
            .collect();
        let mut sizes = vec![Vec::new(); 3];
        for round in 0..6 {
            for (i, (c, d)) in pairs.iter_mut().enumerate() {
                let msg =
                    format!("connection {i} says the same long sentence again, round {round}")
                        .repeat(4);
                let mut out = BytesMut::new();
                c.compress(msg.as_bytes(), &mut out).unwrap();
                c.end_message(true);
                let payload = finish(out);
                sizes[i].push(payload.len());
                assert_eq!(
                    inflate(d, &payload),
                    msg.as_bytes(),
                    "pair {i} round {round}"
                );
                d.end_message(true);
            }
        }
        assert!(cpool.live_compressors() <= 2);
        assert!(cpool.compressors() <= 2 && dpool.decompressors() <= 2);
        for s in &sizes {
            assert!(s[1..].iter().all(|n| *n < s[0] / 2), "{s:?}");
        }
        // Dropped connections give their contexts back for anyone to reuse.
        drop(pairs);
        assert_eq!(cpool.compressors(), 2);
    }

    #[test]
    fn a_connection_gets_its_own_context_back_warm() {
        let pool = Arc::new(ContextPool::new(4));
        let mut c = Compressor::new(params(12), Some(pool.clone()), Release::EveryMessage);
        let mut other = Compressor::new(params(12), Some(pool.clone()), Release::EveryMessage);
        let mut d = Decompressor::new(WindowBits::new(12).unwrap(), None, Release::Never);
        let mut od = Decompressor::new(WindowBits::new(12).unwrap(), None, Release::Never);
        for _ in 0..3 {
            for (c, d) in [(&mut c, &mut d), (&mut other, &mut od)] {
                let mut out = BytesMut::new();
                c.compress(b"warm context, warm context, warm context", &mut out)
                    .unwrap();
                c.end_message(true);
                assert_eq!(
                    inflate(d, &finish(out)),
                    b"warm context, warm context, warm context"
                );
            }
        }
        // Below the bound each connection kept its own context: two exist.
        assert_eq!(pool.live_compressors(), 2);
    }

    #[test]
    fn idle_inside_a_message_keeps_the_inflate_state() {
        let data: Vec<u8> = (0..20_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 97) as u8)
            .collect();
        let mut c = Compressor::new(params(15), None, Release::Never);
        let mut out = BytesMut::new();
        c.compress(&data, &mut out).unwrap();
        let payload = finish(out);
        let pool = Arc::new(ContextPool::new(4));
        let mut d = Decompressor::new(WindowBits::MAX, Some(pool.clone()), Release::WhenIdle);
        let (a, b) = payload.split_at(payload.len() / 2);
        let mut got = BytesMut::new();
        d.decompress(a, false, 1 << 20, &mut got).unwrap();
        // The connection goes idle between two frames of one message.
        d.idle();
        assert!(d.is_allocated());
        d.decompress(b, true, 1 << 20, &mut got).unwrap();
        d.end_message(true);
        assert_eq!(got, data);
        d.idle();
        assert!(!d.is_allocated());
        assert_eq!(pool.decompressors(), 1);
    }
}
