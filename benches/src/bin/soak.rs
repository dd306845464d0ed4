//! Soak: rounds of connections opening and closing continuously against
//! one weft server for a set time, with mixed traffic: plain WebSockets,
//! permessage-deflate, and mux connections with several channels; every
//! `--vanish-every`-th client disappears without a closing handshake (its
//! TCP connection is just dropped).
//!
//! ```text
//! cargo run --release -p weft-benches --bin soak -- --conns 10000 --seconds 300
//! ```
//!
//! The server (`MuxServerBuilder` over a `ServerBuilder` with
//! permessage-deflate, echoing on every connection and channel) runs in a
//! child process of this binary (`--serve`). After every round the parent
//! samples the child's RSS (`/proc/<pid>/status`), open file descriptors
//! (`/proc/<pid>/fd`) and live tokio tasks (asked over the child's stdin).
//! One JSON line per round, then a summary line with the checks:
//! `rss_within_10pct` (final RSS against the RSS after the first round),
//! `fds_back`, `tasks_back` (against the idle baseline) and `errors` (other
//! than the injected disappearances; must be 0).
//!
//! Bounded: `--seconds` of rounds (a round that is running finishes), at
//! most `--concurrency` clients at a time; loopback only.

use clap::Parser;
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use weft_core::handshake::ServerOptions;
use weft_core::{ClientBuilder, CloseCode, Message, ServerBuilder};
use weft_extensions::PerMessageDeflate;
use weft_mux::{Accepted, MuxClient, MuxConfig, MuxServerBuilder};

#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// Connections per round.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Run rounds for this long.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Clients open at the same time.
    #[arg(long, default_value_t = 500)]
    concurrency: usize,
    /// Every n-th client vanishes without a close (0: none).
    #[arg(long, default_value_t = 10)]
    vanish_every: usize,
    /// Internal: run as the server child.
    #[arg(long)]
    serve: bool,
}

#[derive(Serialize)]
struct Round {
    round: usize,
    conns: usize,
    secs: f64,
    errors: usize,
    vanished: usize,
    rss_bytes: u64,
    fds: usize,
    tasks: usize,
}

#[derive(Serialize)]
struct Summary {
    summary: bool,
    rounds: usize,
    conns_total: usize,
    errors: usize,
    rss_baseline_bytes: u64,
    rss_after_first_round_bytes: u64,
    rss_final_bytes: u64,
    rss_within_10pct: bool,
    fds_baseline: usize,
    fds_final: usize,
    fds_back: bool,
    tasks_baseline: usize,
    tasks_final: usize,
    tasks_back: bool,
}

fn serve() -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    println!("PORT {}", listener.local_addr().unwrap().port());
    let plain = ServerBuilder::new().extension(PerMessageDeflate::new());
    let channels = ServerOptions::default().extension(PerMessageDeflate::new());
    let server = MuxServerBuilder::new(plain, MuxConfig::default(), channels);
    rt.spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let server = server.clone();
            tokio::spawn(async move {
                match server.accept(s).await {
                    Ok(Accepted::Plain(ws)) => weft_benches::servers::weft_echo(ws).await,
                    Ok(Accepted::Mux(mut mux)) => {
                        while let Some(incoming) = mux.next_channel().await {
                            let Ok(mut ch) = incoming.accept() else {
                                continue;
                            };
                            tokio::spawn(async move {
                                while let Some(Ok(m)) = ch.recv().await {
                                    if m.is_data() && ch.send(m).await.is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                    }
                    Err(_) => {}
                }
            });
        }
    });
    // Commands on stdin: `stats` prints the live tasks; EOF ends the child.
    let handle = rt.handle().clone();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        match line.as_deref() {
            Ok("stats") => {
                println!("TASKS {}", handle.metrics().num_alive_tasks());
                let _ = std::io::stdout().flush();
            }
            _ => break,
        }
    }
    std::process::exit(0)
}

fn message(i: usize, k: usize) -> Message {
    match (i + k) % 2 {
        0 => Message::text("soak ".repeat(1 + (i * 7 + k) % 200)),
        _ => Message::binary(vec![(i + k) as u8; 1 + (i * 13 + k) % 3000]),
    }
}

/// One client; `Ok(true)` when it vanished on purpose.
async fn client(addr: SocketAddr, i: usize, vanish: bool) -> Result<bool, String> {
    let url = format!("ws://{addr}/soak");
    match i % 3 {
        0 | 1 => {
            let builder = match i % 3 {
                0 => ClientBuilder::new(),
                _ => ClientBuilder::new().extension(PerMessageDeflate::new()),
            };
            let (mut ws, _) = builder.connect(&url).await.map_err(|e| e.to_string())?;
            for k in 0..3 {
                let m = message(i, k);
                ws.send(m.clone()).await.map_err(|e| e.to_string())?;
                match ws.recv().await {
                    Some(Ok(r)) if r == m => {}
                    other => return Err(format!("echo: {other:?}")),
                }
            }
            if vanish {
                drop(ws);
                return Ok(true);
            }
            ws.close(CloseCode::NORMAL, "")
                .await
                .map_err(|e| e.to_string())?;
            Ok(false)
        }
        _ => {
            let mux = MuxClient::connect(url.as_str(), MuxConfig::default())
                .await
                .map_err(|e| e.to_string())?;
            let mut chans = vec![mux.implicit_channel()];
            for _ in 0..2 {
                chans.push(
                    mux.open_channel("/ch", &[], vec![Arc::new(PerMessageDeflate::new())])
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            for (k, ch) in chans.iter_mut().enumerate() {
                let m = message(i, k);
                ch.send(m.clone()).await.map_err(|e| e.to_string())?;
                match ch.recv().await {
                    Some(Ok(r)) if r == m => {}
                    other => return Err(format!("mux echo: {other:?}")),
                }
            }
            if vanish {
                drop(chans);
                drop(mux);
                return Ok(true);
            }
            for mut ch in chans {
                let _ = ch.close(CloseCode::NORMAL, "").await;
            }
            mux.close();
            Ok(false)
        }
    }
}

struct Child {
    pid: u32,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Child {
    fn tasks(&mut self) -> usize {
        writeln!(self.stdin, "stats").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().strip_prefix("TASKS ").unwrap().parse().unwrap()
    }
    fn rss(&self) -> u64 {
        test_support::proc_status(self.pid)
            .map(|s| s.vm_rss)
            .unwrap_or(0)
    }
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn main() {
    let args = Args::parse();
    let fd_limit = weft_benches::raise_fd_limit() as usize;
    if args.serve {
        serve();
    }
    if fd_limit < args.concurrency * 2 + 256 {
        eprintln!("RLIMIT_NOFILE is {fd_limit}: too low for --concurrency");
        std::process::exit(1);
    }
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("server child");
    let mut child = Child {
        pid: proc.id(),
        stdin: proc.stdin.take().unwrap(),
        stdout: BufReader::new(proc.stdout.take().unwrap()),
    };
    let mut line = String::new();
    child.stdout.read_line(&mut line).unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let settle = || std::thread::sleep(Duration::from_millis(1500));
    settle();
    let (rss0, fds0, tasks0) = (child.rss(), child.fds(), child.tasks());
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut round = 0;
    let mut total_errors = 0;
    let mut first_rss = 0;
    let mut last = (rss0, fds0, tasks0);
    while round == 0 || Instant::now() < end {
        let t = Instant::now();
        let errors = Arc::new(AtomicUsize::new(0));
        let vanished = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let gate = Arc::new(Semaphore::new(args.concurrency));
            let mut tasks = Vec::with_capacity(args.conns);
            for i in 0..args.conns {
                let permit = gate.clone().acquire_owned().await.unwrap();
                let (errors, vanished) = (errors.clone(), vanished.clone());
                let vanish =
                    args.vanish_every > 0 && i % args.vanish_every == args.vanish_every - 1;
                tasks.push(tokio::spawn(async move {
                    let r = tokio::time::timeout(Duration::from_secs(30), client(addr, i, vanish))
                        .await;
                    match r {
                        Ok(Ok(true)) => {
                            vanished.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Ok(false)) => {}
                        Ok(Err(e)) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("client {i}: {e}");
                            }
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    drop(permit);
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
        let secs = t.elapsed().as_secs_f64();
        settle();
        let r = Round {
            round,
            conns: args.conns,
            secs,
            errors: errors.load(Ordering::Relaxed),
            vanished: vanished.load(Ordering::Relaxed),
            rss_bytes: child.rss(),
            fds: child.fds(),
            tasks: child.tasks(),
        };
        total_errors += r.errors;
        if round == 0 {
            first_rss = r.rss_bytes;
        }
        last = (r.rss_bytes, r.fds, r.tasks);
        println!("{}", serde_json::to_string(&r).unwrap());
        round += 1;
    }
    let s = Summary {
        summary: true,
        rounds: round,
        conns_total: round * args.conns,
        errors: total_errors,
        rss_baseline_bytes: rss0,
        rss_after_first_round_bytes: first_rss,
        rss_final_bytes: last.0,
        rss_within_10pct: (last.0 as f64) <= first_rss as f64 * 1.10,
        fds_baseline: fds0,
        fds_final: last.1,
        fds_back: last.1 <= fds0,
        tasks_baseline: tasks0,
        tasks_final: last.2,
        tasks_back: last.2 <= tasks0,
    };
    println!("{}", serde_json::to_string(&s).unwrap());
    drop(child.stdin);
    let _ = proc.wait();
    let ok = s.errors == 0 && s.rss_within_10pct && s.fds_back && s.tasks_back;
    std::process::exit(if ok { 0 } else { 1 });
}
