//! How many large buffers the reader allocates: a counting global allocator
//! (this test binary's own) counts allocations of 1 MiB or more while a
//! server receives 1 MiB messages. Reading each message into a fresh buffer
//! costs the kernel a megabyte of page faults per message once the
//! allocator has given the memory back; the reader reuses the buffers of
//! earlier messages whose payloads were dropped instead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use test_support::tcp_pair;
use weft_core::{ClientBuilder, Message, ServerBuilder};

struct Counting;

static LARGE: AtomicUsize = AtomicUsize::new(0);
const LARGE_SIZE: usize = 1 << 20;
/// Allocations of at least [`MID_SIZE`] and below [`LARGE_SIZE`].
static MID: AtomicUsize = AtomicUsize::new(0);
const MID_SIZE: usize = 4 << 10;

thread_local! {
    /// Set on the thread that runs the server side (the test's own
    /// thread; the client runs on the runtime's workers, and masking its
    /// messages allocates too).
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call is passed on unchanged to the system allocator, which
// upholds GlobalAlloc's contract; counting touches no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE_SIZE && counted() {
            LARGE.fetch_add(1, Ordering::Relaxed);
        } else if layout.size() >= MID_SIZE && counted() {
            MID.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's `layout` contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above, i.e. from System.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= LARGE_SIZE && new_size > layout.size() && counted() {
            LARGE.fetch_add(1, Ordering::Relaxed);
        } else if new_size >= MID_SIZE && new_size > layout.size() && counted() {
            MID.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from System with `layout`, as the caller promises.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const T: Duration = Duration::from_secs(20);
const MESSAGES: usize = 16;

/// The server (on the test's thread) receives `MESSAGES` 1 MiB messages, holding each payload
/// until the next `held` have arrived (0: dropped at once); returns how
/// many large allocations the server side made.
async fn server_large_allocations(held: usize) -> usize {
    let sizes = vec![1 << 20; MESSAGES];
    server_large_allocations_for(&sizes, held).await
}

/// As [`server_large_allocations`] for messages of `sizes`.
async fn server_large_allocations_for(sizes: &[usize], held: usize) -> usize {
    server_allocations_for(sizes, held, &LARGE).await
}

/// As [`server_large_allocations_for`], counting with `counter`.
async fn server_allocations_for(sizes: &[usize], held: usize, counter: &AtomicUsize) -> usize {
    let (mut c, mut s) = tcp_pair(ClientBuilder::new(), ServerBuilder::new()).await;
    // The client runs on the runtime's worker thread, outside the count.
    let msgs: Vec<Message> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| Message::binary(vec![k as u8; n]))
        .collect();
    let client = tokio::spawn(async move {
        for m in msgs {
            // One at a time, after the server asks: the server's payloads
            // are dropped (or held) exactly as the test says.
            c.send(m).await.unwrap();
            let ack = tokio::time::timeout(T, c.recv()).await.unwrap();
            assert!(matches!(ack, Some(Ok(Message::Text(_)))));
        }
        c
    });
    COUNTED.with(|c| c.set(true));
    let before = counter.load(Ordering::Relaxed);
    let mut window = std::collections::VecDeque::new();
    for (k, &size) in sizes.iter().enumerate() {
        let m = tokio::time::timeout(T, s.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Binary(b) = m else {
            panic!("expected binary")
        };
        assert!(
            b.len() == size && b.iter().all(|&x| x == k as u8),
            "message {k}"
        );
        window.push_back(b);
        while window.len() > held {
            window.pop_front();
        }
        s.send(Message::text("next")).await.unwrap();
    }
    let after = counter.load(Ordering::Relaxed);
    COUNTED.with(|c| c.set(false));
    drop(client.await.unwrap());
    after - before
}

// One test function: the allocation counter is process-wide, so the cases
// must not run in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn large_messages_are_read_into_reused_buffers() {
    // Payloads dropped at once: one buffer serves every message (the first
    // message allocates it; at most one more for the alternation).
    let n = server_large_allocations(0).await;
    assert!(n <= 2, "{MESSAGES} messages, {n} large allocations");
    // Each payload held while the next arrives (an echo writing message k
    // while k+1 is read): two buffers alternate.
    let n = server_large_allocations(1).await;
    assert!(
        n <= 3,
        "{MESSAGES} messages, one held: {n} large allocations"
    );
    // Three held: more than the kept buffers, so messages need new ones,
    // and every payload stays intact (checked above).
    let n = server_large_allocations(3).await;
    assert!(n <= MESSAGES + 1, "{n}");
    // A connection that stops receiving large messages frees the kept
    // buffers (after 64 reads without one): the next large message after
    // 100 small ones needs a new buffer again, while one after 10 small
    // ones does not.
    let mut sizes = vec![1 << 20, 1 << 20];
    sizes.extend([100; 10]);
    sizes.push(1 << 20);
    assert!(server_large_allocations_for(&sizes, 0).await <= 2);
    let mut sizes = vec![1 << 20, 1 << 20];
    sizes.extend([100; 100]);
    sizes.push(1 << 20);
    let n = server_large_allocations_for(&sizes, 0).await;
    assert!(n >= 2, "kept buffers were not freed: {n} large allocations");
    // 64 KiB messages one at a time: after the first, each is read
    // straight into the kept buffer of the one before (freed by then), so
    // the reader allocates no mid-sized buffer per message (reading each
    // message's first bytes through the stack would make one exact
    // allocation per message).
    let sizes = vec![64 << 10; MESSAGES];
    let n = server_allocations_for(&sizes, 0, &MID).await;
    assert!(
        n <= 3,
        "{MESSAGES} messages of 64 KiB, {n} allocations of 4 KiB to 1 MiB"
    );
}
