//! Shared bench helpers: echo servers written with each implementation under
//! test ([`servers`]) and one raw, library-independent WebSocket client
//! ([`client`]) that drives all of them identically.

pub mod client;
pub mod json;

/// Message sizes of the echo benches, with their names in the output.
pub const ECHO_SIZES: [(usize, &str); 4] = [
    (16, "16B"),
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

/// A load shape of the echo benches.
#[derive(Clone, Copy, Debug)]
pub struct EchoMode {
    /// `c1` or `c64`.
    pub name: &'static str,
    /// Connections.
    pub conns: usize,
    /// Messages in flight per connection, by message size.
    pub window: fn(usize) -> u64,
}

/// `c1`: one connection, one message in flight; `c64`: 64 connections,
/// pipelined (16 messages in flight each, 2 for 1 MiB).
pub const ECHO_MODES: [EchoMode; 2] = [
    EchoMode {
        name: "c1",
        conns: 1,
        window: |_| 1,
    },
    EchoMode {
        name: "c64",
        conns: 64,
        window: |size| if size >= 1 << 20 { 2 } else { 16 },
    },
];
pub mod scripted;
pub mod servers;

/// What `getrusage(RUSAGE_SELF)` reports for this process so far. Client and
/// server of a bench run in it, so differences between two readings do not
/// depend on what else the machine runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User plus system CPU time.
    pub cpu: std::time::Duration,
    /// Minor page faults.
    pub minor_faults: u64,
}

/// Reads this process's [`Usage`]; all zero if `getrusage` fails.
pub fn usage() -> Usage {
    // SAFETY: getrusage only writes the struct we pass, which is plain data
    // (all-zero is valid) living on the stack for the call.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Usage::default();
    }
    let tv = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Usage {
        cpu: tv(u.ru_utime) + tv(u.ru_stime),
        minor_faults: u.ru_minflt as u64,
    }
}

/// `x` rounded to `decimals` decimal places, for JSON output (serde_json
/// prints the shortest form that reads back the same, so 0.123456 rounded
/// to 4 places prints as `0.1235`).
pub fn rounded(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// `x` rounded to a whole number, for JSON output; `None` (`null`) if it is
/// not finite (a ratio of two figures of which one was not measured).
pub fn whole(x: f64) -> Option<i64> {
    x.is_finite().then(|| x.round() as i64)
}

/// Raises `RLIMIT_NOFILE` to its hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: `getrlimit`/`setrlimit` only read and write the `rlimit` struct
    // we pass, which lives on the stack for the duration of the calls.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim = wanted;
            }
        }
        lim.rlim_cur
    }
}

/// The current thread's CPU affinity mask (Linux `sched_getaffinity`).
pub fn thread_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: `cpu_set_t` is plain data (all-zero is a valid empty set), and
    // `sched_getaffinity` writes at most `size_of::<cpu_set_t>()` bytes to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then_some(set)
    }
}

/// Sets the current thread's CPU affinity mask; false on failure.
pub fn set_thread_affinity(set: &libc::cpu_set_t) -> bool {
    // SAFETY: `set` is a valid, initialized `cpu_set_t` of the size passed.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

/// The lowest CPU in `set`, as a one-CPU mask.
pub fn first_cpu_of(set: &libc::cpu_set_t) -> Option<libc::cpu_set_t> {
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `CPU_ISSET`/`CPU_SET` index inside the set (cpu < max), and an
    // all-zero `cpu_set_t` is a valid empty set.
    unsafe {
        let cpu = (0..max).find(|&c| libc::CPU_ISSET(c, set))?;
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        Some(one)
    }
}

/// Set to run the single-connection cells of the loopback benches unpinned
/// (see `benches/echo.rs`).
pub const NO_PIN_ENV: &str = "WEFT_BENCH_NO_PIN";

/// What every loopback bench sets up first: the file descriptor limit
/// raised, a current-thread runtime for the client on the calling thread,
/// and the CPUs to pin single-connection cells to.
#[derive(Debug)]
pub struct BenchHost {
    /// The client's runtime (runs on the thread that created the host).
    pub client_rt: tokio::runtime::Runtime,
    all_cpus: Option<libc::cpu_set_t>,
    one_cpu: Option<libc::cpu_set_t>,
}

impl BenchHost {
    /// Sets up the host; single-connection cells are pinned unless
    /// [`NO_PIN_ENV`] is set.
    pub fn new() -> BenchHost {
        raise_fd_limit();
        let client_rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        let all_cpus = thread_affinity();
        let one_cpu = if std::env::var_os(NO_PIN_ENV).is_none() {
            all_cpus.as_ref().and_then(first_cpu_of)
        } else {
            None
        };
        BenchHost {
            client_rt,
            all_cpus,
            one_cpu,
        }
    }

    /// The server runtime for cells of `conns` connections: with one
    /// connection, its workers and the calling thread share one CPU (see
    /// `benches/echo.rs`). Call [`end_cells`](Self::end_cells) after
    /// shutting it down.
    pub fn server_runtime(&self, conns: usize) -> tokio::runtime::Runtime {
        server_runtime(if conns == 1 { self.one_cpu } else { None })
    }

    /// Lets the calling thread use every CPU again.
    pub fn end_cells(&self) {
        if let Some(all) = &self.all_cpus {
            set_thread_affinity(all);
        }
    }
}

impl Default for BenchHost {
    fn default() -> Self {
        BenchHost::new()
    }
}

/// The server runtime of the echo benches: multi-thread, with the calling
/// thread and every worker pinned to `pin` when given (the `c1` cells).
pub fn server_runtime(pin: Option<libc::cpu_set_t>) -> tokio::runtime::Runtime {
    if let Some(set) = &pin {
        set_thread_affinity(set);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(set) = pin {
        builder.on_thread_start(move || {
            set_thread_affinity(&set);
        });
    }
    builder.build().expect("server runtime")
}
