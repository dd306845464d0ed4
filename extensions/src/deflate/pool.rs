//! A pool of zlib contexts shared by connections.
//!
//! A context that is given up after a message goes back here instead of
//! being freed, so the number of zlib states a server holds follows the
//! number of messages being (de)compressed at the same moment, not the
//! number of connections.
//!
//! # Affinity
//!
//! A context given back under context takeover still holds its owner's
//! window. It is put back *tagged* with its owner, untouched: if the owner
//! comes back before anyone else needed a context, it gets the same one,
//! still warm, and skips the reset and the preset dictionary (the common
//! case for a connection exchanging a burst of messages). A context taken by
//! anyone else is reset and primed with the taker's saved window first, so
//! nothing leaks between connections. Untagged or foreign contexts are taken
//! oldest first, so the contexts of recently busy connections survive
//! longest.
//!
//! A `Mutex` guards the pool: it is held for a few comparisons, never while
//! compressing. A server with many cores and very high message rates may
//! prefer one pool per group of connections (any [`Arc<ContextPool>`]
//! given to a factory is shared by exactly the connections that factory
//! serves).
//!
//! [`Arc<ContextPool>`]: std::sync::Arc

use super::DeflateParams;
use flate2::Decompress;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use zlib_rs::Deflate;

/// Identifies the compressor or decompressor a pooled context last served.
pub(crate) type Owner = u64;

/// No owner: the context must be reset before use.
pub(crate) const NO_OWNER: Owner = 0;

/// A fresh owner identity (never [`NO_OWNER`]).
pub(crate) fn new_owner() -> Owner {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Entry<K, C> {
    key: K,
    owner: Owner,
    ctx: Box<C>,
}

/// What [`ContextPool`] hands out.
pub(crate) enum Taken<C> {
    /// The caller's own context, untouched since it gave it back.
    Own(Box<C>),
    /// Another connection's (or nobody's) context: reset it before use.
    Foreign(Box<C>),
    /// Nothing suitable: allocate one (the pool has counted it).
    Allocate,
}

/// Contexts of one kind: those waiting (oldest first) and how many exist.
pub(crate) struct Shelf<K, C> {
    entries: VecDeque<Entry<K, C>>,
    /// Contexts allocated through this shelf and not freed: waiting here or
    /// in use.
    live: usize,
}

impl<K: PartialEq, C> Shelf<K, C> {
    const fn new() -> Self {
        Shelf {
            entries: VecDeque::new(),
            live: 0,
        }
    }

    /// The owner's own context if it is still here; else a new one while
    /// fewer than `max` exist (so up to `max` busy connections keep warm
    /// contexts); else the oldest waiting one with the same key.
    fn take(&mut self, max: usize, key: &K, owner: Owner) -> Taken<C> {
        if owner != NO_OWNER
            && let Some(i) = self
                .entries
                .iter()
                .rposition(|e| e.owner == owner && e.key == *key)
            && let Some(e) = self.entries.remove(i)
        {
            return Taken::Own(e.ctx);
        }
        // Contexts nobody can resume are reused before allocating.
        let spare = self
            .entries
            .iter()
            .position(|e| e.key == *key && (e.owner == NO_OWNER || self.live >= max));
        match spare.and_then(|i| self.entries.remove(i)) {
            Some(e) => Taken::Foreign(e.ctx),
            None => {
                self.live += 1;
                Taken::Allocate
            }
        }
    }

    /// Takes a context back; `NO_OWNER` ones are reused first. Frees the
    /// oldest waiting context while more than `max` exist.
    fn put(&mut self, max: usize, key: K, owner: Owner, ctx: Box<C>) {
        let e = Entry { key, owner, ctx };
        if owner == NO_OWNER {
            self.entries.push_front(e);
        } else {
            self.entries.push_back(e);
        }
        while self.live > max && self.entries.pop_front().is_some() {
            self.live -= 1;
        }
    }
}

/// Compressor and decompressor contexts shared by connections, by
/// parameters, with at most `max` of each kind kept (see the module docs for
/// how contexts are matched to connections). While fewer than `max` exist,
/// a connection whose own context is gone gets a new one rather than
/// another connection's warm one.
pub struct ContextPool {
    max: usize,
    deflate: Mutex<Shelf<DeflateParams, Deflate>>,
    inflate: Mutex<Shelf<u8, Decompress>>,
}

impl std::fmt::Debug for ContextPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextPool")
            .field("max", &self.max)
            .field("idle", &self.len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ContextPool {
    /// A pool that keeps at most `max` compressor contexts and `max`
    /// decompressor contexts (more are freed, oldest first, when given
    /// back).
    pub fn new(max: usize) -> Self {
        ContextPool {
            max,
            deflate: Mutex::new(Shelf::new()),
            inflate: Mutex::new(Shelf::new()),
        }
    }

    /// Idle contexts held, both kinds together.
    pub fn len(&self) -> usize {
        lock(&self.deflate).entries.len() + lock(&self.inflate).entries.len()
    }

    /// True if no context is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Idle compressor contexts held.
    pub fn compressors(&self) -> usize {
        lock(&self.deflate).entries.len()
    }

    /// Idle decompressor contexts held.
    pub fn decompressors(&self) -> usize {
        lock(&self.inflate).entries.len()
    }

    /// Compressor contexts in existence (waiting here or in use).
    pub fn live_compressors(&self) -> usize {
        lock(&self.deflate).live
    }
}

/// A zlib context kind the pool keeps: how to find its shelf and how to
/// make a reused context forget its previous user.
pub(crate) trait Pooled: Sized {
    /// What contexts must agree on to be interchangeable.
    type Key: PartialEq + Copy;
    fn shelf(pool: &ContextPool) -> &Mutex<Shelf<Self::Key, Self>>;
    fn reset(&mut self);
}

impl Pooled for Deflate {
    type Key = DeflateParams;
    fn shelf(pool: &ContextPool) -> &Mutex<Shelf<DeflateParams, Deflate>> {
        &pool.deflate
    }
    fn reset(&mut self) {
        Deflate::reset(self);
    }
}

impl Pooled for Decompress {
    /// Window bits.
    type Key = u8;
    fn shelf(pool: &ContextPool) -> &Mutex<Shelf<u8, Decompress>> {
        &pool.inflate
    }
    fn reset(&mut self) {
        Decompress::reset(self, false);
    }
}

/// A context for `owner`: its own one back from the pool untouched (`true`:
/// it still holds the owner's window), or a reset or new one (`false`).
pub(crate) fn lease<C: Pooled>(
    pool: Option<&ContextPool>,
    key: &C::Key,
    owner: Owner,
    make: impl FnOnce() -> Box<C>,
) -> (Box<C>, bool) {
    let taken = match pool {
        Some(p) => lock(C::shelf(p)).take(p.max, key, owner),
        None => Taken::Allocate,
    };
    match taken {
        Taken::Own(c) => (c, true),
        Taken::Foreign(mut c) => {
            c.reset();
            (c, false)
        }
        Taken::Allocate => (make(), false),
    }
}

/// Gives a context back to the pool (or frees it without one), tagged with
/// `owner` ([`NO_OWNER`]: reset before any reuse).
pub(crate) fn give_back<C: Pooled>(
    pool: Option<&ContextPool>,
    key: C::Key,
    owner: Owner,
    ctx: Box<C>,
) {
    if let Some(p) = pool {
        lock(C::shelf(p)).put(p.max, key, owner, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn took(t: Taken<u32>) -> (Option<u32>, bool) {
        match t {
            Taken::Own(c) => (Some(*c), true),
            Taken::Foreign(c) => (Some(*c), false),
            Taken::Allocate => (None, false),
        }
    }

    #[test]
    fn owners_get_their_own_back_and_new_ones_until_max() {
        let mut s: Shelf<u8, u32> = Shelf::new();
        for owner in [1, 2] {
            assert!(matches!(s.take(3, &9, owner), Taken::Allocate));
        }
        s.put(3, 9, 1, Box::new(10));
        s.put(3, 9, 2, Box::new(20));
        // Owner 2 gets its own, untouched.
        assert_eq!(took(s.take(3, &9, 2)), (Some(20), true));
        // Below the bound a stranger gets a new context: warm ones stay.
        assert_eq!(took(s.take(3, &9, 7)), (None, false));
        assert_eq!(s.live, 3);
        // At the bound it gets the oldest, to be reset.
        assert_eq!(took(s.take(3, &9, 8)), (Some(10), false));
        // Keys must match.
        assert_eq!(took(s.take(3, &8, 1)), (None, false));
    }

    #[test]
    fn unowned_contexts_are_reused_first() {
        let mut s: Shelf<u8, u32> = Shelf::new();
        for owner in [1, 2] {
            let _ = s.take(8, &0, owner);
        }
        s.put(8, 0, 1, Box::new(1));
        s.put(8, 0, NO_OWNER, Box::new(2));
        assert_eq!(took(s.take(8, &0, 5)), (Some(2), false));
        assert_eq!(s.live, 2);
    }

    #[test]
    fn bounded_freeing_the_oldest() {
        let mut s: Shelf<u8, u32> = Shelf::new();
        // Five in use at once (nothing waiting to reuse), then all returned.
        for i in 1..=5 {
            assert!(matches!(s.take(2, &0, i), Taken::Allocate));
        }
        for i in 1..=5 {
            s.put(2, 0, i, Box::new(i as u32));
        }
        assert_eq!((s.entries.len(), s.live), (2, 2));
        assert_eq!(took(s.take(2, &0, 5)), (Some(5), true));
        assert_eq!(took(s.take(2, &0, 1)), (Some(4), false));
        assert_eq!(s.live, 2);
    }
}
