//! Idle memory per connection of each implementation's echo server.
//!
//! ```text
//! cargo run --release -p weft-benches --bin idle_memory -- --impl weft --conns 2000
//! cargo run --release -p weft-benches --bin idle_memory -- --impl all --conns 2000 [--after-echo]
//! ```
//!
//! For each implementation the binary starts itself as a child process in
//! `--serve` mode (the echo server of `weft_benches::servers` on a tokio
//! multi-thread runtime, on 127.0.0.1:0), so only the server's memory is
//! measured. The parent then:
//!
//! 1. opens and closes 50 warm-up connections (first-use costs: code pages,
//!    allocator arenas, runtime structures), waits 300 ms;
//! 2. reads the child's `VmRSS` and `RssAnon` from `/proc/<pid>/status`;
//! 3. opens `--conns` raw connections (hand-written handshake, 100 at a
//!    time), which stay idle after the 101 — or, with `--after-echo`, after
//!    one 16-byte message was echoed on each;
//! 4. waits 500 ms and reads the child's memory again.
//!
//! It prints one JSON line per implementation:
//! `{"impl":"weft","conns":2000,"bytes_per_conn":...,"anon_bytes_per_conn":...,...}`.
//! Kernel socket buffers are not part of a process's RSS and are not counted.

use clap::Parser;
use serde::Serialize;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_benches::client::{connect, masked_frame, payload};
use weft_benches::servers::{Impl, serve};

const WARMUP_CONNS: usize = 50;
const CONCURRENCY: usize = 100;
/// A `--serve` child exits after this long even if its parent never closes
/// its stdin.
const SERVE_MAX: Duration = Duration::from_secs(600);
/// Upper bound for opening all connections of one implementation.
const OPEN_TIMEOUT: Duration = Duration::from_secs(120);

/// Idle memory per connection of each implementation's echo server (run in
/// a child process), printed as one JSON line per implementation.
#[derive(Debug, Parser)]
#[command(name = "idle_memory")]
struct Args {
    /// Implementation to measure: weft, tokio-tungstenite, fastwebsockets,
    /// tokio-websockets, or all.
    #[arg(long = "impl", value_name = "IMPL", default_value = "all", value_parser = impl_arg)]
    imp: String,
    /// Connections to open.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    conns: usize,
    /// Echo one 16-byte message on every connection before measuring.
    #[arg(long)]
    after_echo: bool,
    /// Internal: run as the echo server child of `--impl` (one
    /// implementation) on 127.0.0.1:0.
    #[arg(long)]
    serve: bool,
}

/// `--impl`: an implementation's name or `all`.
fn impl_arg(s: &str) -> Result<String, String> {
    if s == "all" || Impl::parse(s).is_some() {
        Ok(s.to_owned())
    } else {
        let names: Vec<&str> = Impl::ALL.iter().map(|i| i.name()).collect();
        Err(format!("expected all or one of {}", names.join(", ")))
    }
}

fn main() {
    let args = Args::parse();
    let fd_limit = weft_benches::raise_fd_limit();

    if args.serve {
        match Impl::parse(&args.imp) {
            Some(imp) => run_server(imp),
            None => {
                eprintln!("--serve needs one implementation in --impl");
                std::process::exit(2)
            }
        }
    }

    let impls: Vec<Impl> = match Impl::parse(&args.imp) {
        Some(imp) => vec![imp],
        None => Impl::ALL.to_vec(),
    };
    let conns = args.conns;
    if (fd_limit as usize) < conns + 64 {
        eprintln!("RLIMIT_NOFILE is {fd_limit}: too low for {conns} connections (raise ulimit -n)");
        std::process::exit(1);
    }
    for imp in impls {
        match measure(imp, conns, args.after_echo) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{}: {e}", imp.name());
                std::process::exit(1);
            }
        }
    }
}

/// `--serve`: echo server on 127.0.0.1:0; prints `PORT <n>`; exits when stdin
/// closes (the parent is done or gone) or after [`SERVE_MAX`].
fn run_server(imp: Impl) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    rt.spawn(serve(imp, listener));
    println!("PORT {port}");
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    std::thread::sleep(SERVE_MAX);
    std::process::exit(0)
}

/// `VmRSS` and `RssAnon` of `pid`, in bytes.
fn memory(pid: u32) -> std::io::Result<(u64, u64)> {
    let status = test_support::proc_status(pid)?;
    Ok((status.vm_rss, status.rss_anon))
}

/// Kills the child when dropped.
struct ServerChild(Child);

impl Drop for ServerChild {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server(imp: Impl) -> std::io::Result<(ServerChild, SocketAddr)> {
    let mut child = ServerChild(
        Command::new(std::env::current_exe()?)
            .args(["--serve", "--impl", imp.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("child said {line:?}")))?;
    Ok((child, SocketAddr::from(([127, 0, 0, 1], port))))
}

/// Opens `n` connections, `CONCURRENCY` at a time; with `echo`, each one
/// echoes one 16-byte message before it is kept.
async fn open(addr: SocketAddr, n: usize, echo: bool) -> std::io::Result<Vec<TcpStream>> {
    let frame = masked_frame(&payload(16));
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let batch = CONCURRENCY.min(n - out.len());
        let opened = futures_util::future::join_all((0..batch).map(|_| async {
            let mut s = connect(addr).await?;
            if echo {
                s.write_all(&frame).await?;
                let mut echoed = [0u8; 18];
                s.read_exact(&mut echoed).await?;
                if echoed[..2] != [0x82, 16] {
                    return Err(std::io::Error::other("bad echo"));
                }
            }
            Ok::<_, std::io::Error>(s)
        }))
        .await;
        for s in opened {
            out.push(s?);
        }
    }
    Ok(out)
}

/// Runs `fut` on `rt` within [`OPEN_TIMEOUT`].
fn bounded<T>(
    rt: &tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    rt.block_on(async {
        tokio::time::timeout(OPEN_TIMEOUT, fut)
            .await
            .map_err(|_| std::io::Error::other("opening connections timed out"))?
    })
}

fn measure(imp: Impl, conns: usize, after_echo: bool) -> std::io::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (child, addr) = spawn_server(imp)?;
    let pid = child.0.id();
    let warm = bounded(&rt, open(addr, WARMUP_CONNS, after_echo))?;
    drop(warm);
    std::thread::sleep(Duration::from_millis(300));
    let (rss0, anon0) = memory(pid)?;

    let started = Instant::now();
    let clients = bounded(&rt, open(addr, conns, after_echo))?;
    let open_ms = started.elapsed().as_millis() as u64;
    std::thread::sleep(Duration::from_millis(500));
    let (rss1, anon1) = memory(pid)?;
    drop(child); // server first, so the TIME_WAIT states land on its side
    drop(clients);

    let per = |a: u64, b: u64| (b as i64 - a as i64) / conns as i64;
    let line = Line {
        imp: imp.name(),
        conns,
        after_echo,
        bytes_per_conn: per(rss0, rss1),
        anon_bytes_per_conn: per(anon0, anon1),
        rss_before_kib: rss0 / 1024,
        rss_after_kib: rss1 / 1024,
        open_ms,
    };
    Ok(serde_json::to_string(&line).expect("a measurement serializes"))
}

/// One implementation's measurement, printed as a JSON line.
#[derive(Serialize)]
struct Line {
    #[serde(rename = "impl")]
    imp: &'static str,
    conns: usize,
    after_echo: bool,
    bytes_per_conn: i64,
    anon_bytes_per_conn: i64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    open_ms: u64,
}
