//! One waker that wakes both the reading and the writing task.
//!
//! A tokio I/O object remembers one waker per direction: the last one given.
//! When the reader task flushes a Pong while the writer task waits for
//! write readiness, the reader's waker would replace the writer's and the
//! writer would never wake. So every poll of the transport uses this combined
//! waker, and each task registers its own waker in its slot.

use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

#[derive(Default)]
pub(crate) struct WakeSlots {
    read: Mutex<Option<Waker>>,
    write: Mutex<Option<Waker>>,
}

fn store(slot: &Mutex<Option<Waker>>, waker: &Waker) {
    let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
    match &*s {
        Some(w) if w.will_wake(waker) => {}
        _ => *s = Some(waker.clone()),
    }
}

impl WakeSlots {
    pub(crate) fn register_read(&self, waker: &Waker) {
        store(&self.read, waker);
    }
    pub(crate) fn register_write(&self, waker: &Waker) {
        store(&self.write, waker);
    }
}

impl Wake for WakeSlots {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        // Taken, not kept: a task that moved on to other work must not be
        // woken by every later readiness event.
        for slot in [&self.read, &self.write] {
            if let Some(w) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                w.wake();
            }
        }
    }
}

pub(crate) fn combined(slots: &Arc<WakeSlots>) -> Waker {
    Waker::from(slots.clone())
}
