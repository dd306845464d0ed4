//! A pool of compressor contexts shared by connections.
//!
//! Under no context takeover a compressor is reset after every message, so
//! it carries nothing from one message to the next and can serve many
//! connections in turn: an idle connection then holds no zlib state at all.

use super::DeflateParams;
use std::sync::Mutex;
use zlib_rs::Deflate;

/// Reset compressors waiting for reuse, by parameters, up to a bound.
pub struct ContextPool {
    max: usize,
    free: Mutex<Vec<(DeflateParams, Box<Deflate>)>>,
}

impl std::fmt::Debug for ContextPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextPool")
            .field("max", &self.max)
            .field("idle", &self.len())
            .finish()
    }
}

impl ContextPool {
    /// A pool that keeps at most `max` idle contexts (more are freed).
    pub fn new(max: usize) -> Self {
        ContextPool {
            max,
            free: Mutex::new(Vec::new()),
        }
    }

    /// Idle contexts held.
    pub fn len(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True if no context is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn take(&self, params: &DeflateParams) -> Option<Box<Deflate>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let i = free.iter().rposition(|(p, _)| p == params)?;
        Some(free.swap_remove(i).1)
    }

    pub(crate) fn put(&self, params: DeflateParams, ctx: Box<Deflate>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.max {
            free.push((params, ctx));
        }
    }
}
