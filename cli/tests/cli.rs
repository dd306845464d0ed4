//! The `weft` binary: bad input to `report`, `capture` against a good, a
//! refusing and a dropping upstream (the file stays valid JSON Lines, ctrl-c
//! exits cleanly), `connect` and `serve` (echo, broadcast, mux). Loopback
//! only; every wait is bounded.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_cli::corpus::{self, Direction, ReadOptions};
use weft_core::{ClientBuilder, CloseCode, Message, ServerBuilder};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn weft(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(WEFT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = wait_output(child, Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_output(mut child: Child, limit: Duration) -> std::process::Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("weft did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A long-running `weft` child whose first stderr line names its address.
struct Daemon {
    child: Child,
    addr: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Daemon {
    fn start(args: &[&str]) -> Daemon {
        let mut child = Command::new(WEFT)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a listening line");
        let addr = first
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split([',', ' ']).next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_string();
        Daemon {
            child,
            addr,
            stderr: rx,
        }
    }

    /// Sends SIGINT (what ctrl-c sends) and waits for a clean exit.
    fn interrupt(mut self) -> i32 {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                panic!("no exit after SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn report_refuses_an_empty_corpus() {
    let p = tmp("empty.jsonl");
    std::fs::write(&p, b"").unwrap();
    let (code, _, err) = weft(&["report", "--corpus", p.to_str().unwrap(), "-q"], b"");
    assert_eq!(code, 1);
    assert!(err.contains("holds no messages"), "{err}");
    let (code, _, err) = weft(&["report", "--corpus", "/nonexistent/x.jsonl", "-q"], b"");
    assert_eq!(code, 1);
    assert!(err.contains("cannot open"), "{err}");
}

#[test]
fn report_names_the_bad_line_of_binary_garbage_in_lines_mode() {
    let p = tmp("garbage.txt");
    std::fs::write(&p, b"good line\n\xff\xfe\x00garbage\nanother good line\n").unwrap();
    let path = p.to_str().unwrap();
    let (code, _, err) = weft(&["report", "--corpus", path, "--lines", "-q"], b"");
    assert_eq!(code, 1);
    assert!(err.contains("line 2: not valid UTF-8"), "{err}");
    let (code, out, err) = weft(
        &["report", "--corpus", path, "--lines", "--skip-bad", "-q"],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("skipped 1 bad"), "{err}");
    assert!(out.contains("2 messages"), "{out}");
}

#[test]
fn report_writes_every_output() {
    let p = tmp("small.jsonl");
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(
            &serde_json::json!({"text": format!("{{\"n\":{i},\"v\":\"value {}\"}}", i % 9), "dir": "received"})
                .to_string(),
        );
        text.push('\n');
    }
    text.push_str("{\"text\":\"up\",\"dir\":\"sent\"}\n");
    std::fs::write(&p, text).unwrap();
    let (json, csv, svg, html) = (tmp("r.json"), tmp("r.csv"), tmp("r.svg"), tmp("r.html"));
    let (code, out, err) = weft(
        &[
            "report",
            "--corpus",
            p.to_str().unwrap(),
            "--dir",
            "received",
            "--max-memory-per-conn",
            "64KiB",
            "--max-cpu-us-per-msg",
            "100000",
            "--repeat",
            "2",
            "--json",
            json.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
            "-q",
        ],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("left out 1 other messages"), "{err}");
    assert!(
        out.contains("Recommended (memory per connection <= 64.0 KiB"),
        "{out}"
    );
    assert!(out.contains("weft_core::ServerBuilder::new()"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["corpus"]["messages"], 200);
    assert_eq!(
        v["settings"].as_array().unwrap().len(),
        weft_cli::settings::default_grid().len()
    );
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap().lines().count(),
        1 + weft_cli::settings::default_grid().len()
    );
    roxmltree::Document::parse(&std::fs::read_to_string(&svg).unwrap()).unwrap();
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));
}

fn read_corpus(p: &Path) -> corpus::Corpus {
    corpus::read(p, &ReadOptions::default()).expect("valid JSON Lines")
}

/// A weft echo server on 127.0.0.1 for `capture` to forward to.
async fn echo_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let server = ServerBuilder::new().extension(weft_extensions::PerMessageDeflate::new());
        while let Ok((tcp, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = server.accept(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_data() && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("ws://{addr}/echo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_records_both_directions_and_stops_cleanly_on_ctrl_c() {
    let upstream = echo_upstream().await;
    let out = tmp("capture.jsonl");
    let d = Daemon::start(&[
        "capture",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--out",
        out.to_str().unwrap(),
    ]);
    let client = ClientBuilder::new().extension(weft_extensions::PerMessageDeflate::new());
    let (mut ws, _) = client.connect(format!("ws://{}/", d.addr)).await.unwrap();
    assert_eq!(ws.extensions()[0].name, "permessage-deflate");
    let msgs = [
        Message::text("hello \"capture\"\n"),
        Message::binary(vec![0u8, 159, 255, 10]),
        Message::text("x".repeat(100_000)),
    ];
    for m in &msgs {
        ws.send(m.clone()).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(10), ws.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(&echo, m);
    }
    ws.close(CloseCode::NORMAL, "done").await.unwrap();
    while let Some(Ok(_)) = ws.recv().await {}
    // A second session, left open: ctrl-c must close it and keep the file.
    let (mut ws2, _) = client.connect(format!("ws://{}/", d.addr)).await.unwrap();
    ws2.send(Message::text("second")).await.unwrap();
    let _ = ws2.recv().await;
    assert_eq!(d.interrupt(), 0);
    // The open session was closed with 1001.
    let mut code = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), ws2.recv()).await {
        match m {
            Ok(Message::Close(Some(f))) => code = Some(f.code),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(CloseCode::GOING_AWAY));
    let c = read_corpus(&out);
    let sent: Vec<_> = c
        .entries
        .iter()
        .filter(|e| e.dir == Some(Direction::Sent))
        .collect();
    let received: Vec<_> = c
        .entries
        .iter()
        .filter(|e| e.dir == Some(Direction::Received))
        .collect();
    assert_eq!(sent.len(), 4);
    assert_eq!(received.len(), 4);
    assert_eq!(&sent[0].payload[..], b"hello \"capture\"\n");
    assert!(sent[0].text);
    assert_eq!(&sent[1].payload[..], &[0u8, 159, 255, 10]);
    assert!(!sent[1].text);
    assert_eq!(sent[2].payload.len(), 100_000);
    assert_eq!(&received[3].payload[..], b"second");
    assert!(c.entries.iter().all(|e| e.t.is_some_and(|t| t > 1.0e9)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_survives_an_upstream_that_refuses_the_handshake() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let out = tmp("refused.jsonl");
    std::fs::write(&out, b"old content\n").unwrap();
    let d = Daemon::start(&[
        "capture",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &format!("ws://{addr}/"),
        "--out",
        out.to_str().unwrap(),
    ]);
    let (mut ws, _) = ClientBuilder::new()
        .connect(format!("ws://{}/", d.addr))
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), ws.recv())
        .await
        .unwrap();
    match m {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::BAD_GATEWAY),
        other => panic!("expected a 1014 close, got {other:?}"),
    }
    // The refusal is logged (read until the line comes, bounded).
    let start = Instant::now();
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("upstream ws://")) {
        assert!(start.elapsed() < Duration::from_secs(10), "{log:?}");
        if let Ok(l) = d.stderr.recv_timeout(Duration::from_millis(100)) {
            log.push(l);
        }
    }
    assert_eq!(d.interrupt(), 0);
    let c = read_corpus(&out);
    assert!(c.entries.is_empty(), "truncated, and nothing recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_keeps_the_file_valid_when_upstream_drops_mid_message() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0);
            req.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&req);
        let key = text
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| v.trim().to_string())
            })
            .unwrap();
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            weft_core::handshake::accept_key(&key)
        );
        tcp.write_all(resp.as_bytes()).await.unwrap();
        // One whole text message, then 10 bytes of a 1000-byte one, then drop.
        tcp.write_all(b"\x81\x05first").await.unwrap();
        tcp.write_all(b"\x81\x7e\x03\xe8partial...").await.unwrap();
        tcp.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(tcp);
    });
    let out = tmp("dropped.jsonl");
    let d = Daemon::start(&[
        "capture",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &format!("ws://{addr}/"),
        "--out",
        out.to_str().unwrap(),
        "--extension",
        "none",
        "--max-sessions",
        "1",
    ]);
    let (mut ws, _) = ClientBuilder::new()
        .connect(format!("ws://{}/", d.addr))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), ws.recv())
        .await
        .unwrap();
    assert_eq!(first.unwrap().unwrap(), Message::text("first"));
    let next = tokio::time::timeout(Duration::from_secs(10), ws.recv())
        .await
        .unwrap();
    match next {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::BAD_GATEWAY),
        other => panic!("expected a 1014 close, got {other:?}"),
    }
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await {}
    // --max-sessions 1: exits by itself once the session ended.
    let mut d = d;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "capture did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let raw = std::fs::read_to_string(&out).unwrap();
    assert!(raw.ends_with('\n'));
    let c = read_corpus(&out);
    assert_eq!(c.entries.len(), 1);
    assert_eq!(&c.entries[0].payload[..], b"first");
    assert_eq!(c.entries[0].dir, Some(Direction::Received));
}

#[test]
fn connect_and_serve_echo_one_message() {
    let d = Daemon::start(&["serve", "--addr", "127.0.0.1:0", "--echo"]);
    let url = format!("ws://{}/", d.addr);
    let (code, out, err) = weft(
        &[
            "connect",
            &url,
            "-1",
            "--extension",
            "permessage-deflate",
            "--param",
            "client_max_window_bits=10",
            "--param",
            "client_no_context_takeover",
            "-H",
            "X-Test: yes",
        ],
        b"hello one\nnot sent\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello one\n");
    assert!(err.contains("client_max_window_bits=10"), "{err}");
    let (code, out, err) = weft(&["connect", &url, "--binary"], b"a\nbb\nccc\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "a\nbb\nccc\n");
    let (code, _, err) = weft(
        &[
            "connect",
            &url,
            "--extension",
            "permessage-deflate",
            "--param",
            "level=x",
        ],
        b"",
    );
    assert_eq!(code, 1);
    assert!(err.contains("--param level"), "{err}");
}

#[test]
fn connect_prints_ping_round_trips() {
    let d = Daemon::start(&["serve", "--addr", "127.0.0.1:0"]);
    let url = format!("ws://{}/", d.addr);
    let mut child = Command::new(WEFT)
        .args([
            "connect",
            &url,
            "--ping-interval",
            "0.05",
            "--close-delay",
            "0.3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"x\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(stdin);
    let out = wait_output(child, Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ping rtt: "), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_broadcasts_to_the_other_clients() {
    let d = Daemon::start(&["serve", "--addr", "127.0.0.1:0", "--broadcast"]);
    let url = format!("ws://{}/", d.addr);
    let b = ClientBuilder::new().extension(weft_extensions::PerMessageDeflate::new());
    let (mut a, _) = b.connect(url.as_str()).await.unwrap();
    let (mut c, _) = b.connect(url.as_str()).await.unwrap();
    let (mut e, _) = b.connect(url.as_str()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.send(Message::text("to everyone")).await.unwrap();
    for ws in [&mut c, &mut e] {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.recv())
            .await
            .unwrap();
        assert_eq!(m.unwrap().unwrap(), Message::text("to everyone"));
    }
    // The sender does not get its own message back.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), a.recv())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_drops_a_client_that_does_not_read() {
    let mut d = Daemon::start(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--broadcast",
        "--queue",
        "4",
        "--extension",
        "none",
    ]);
    let url = format!("ws://{}/", d.addr);
    let b = ClientBuilder::new();
    let (mut sender, _) = b.connect(url.as_str()).await.unwrap();
    let (mut reader, _) = b.connect(url.as_str()).await.unwrap();
    // Connected, never reads.
    let (_stalled, _) = b.connect(url.as_str()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut seed = 1u64;
    let mut kicked_after = None;
    for i in 0..200 {
        let msg: Vec<u8> = (0..256 * 1024)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 56) as u8
            })
            .collect();
        let msg = Message::binary(msg);
        sender.send(msg.clone()).await.unwrap();
        // Paced by the reading client, whose queue never fills.
        let got = tokio::time::timeout(Duration::from_secs(10), reader.recv())
            .await
            .expect("the reading client keeps getting messages")
            .unwrap()
            .unwrap();
        assert_eq!(got, msg);
        if let Ok(line) = d.stderr.try_recv()
            && line.contains("too slow")
        {
            kicked_after = Some(i + 1);
            break;
        }
    }
    let n = kicked_after.expect("the stalled client was dropped");
    assert!(
        n > 4,
        "dropped only once its socket and queue were full ({n})"
    );
    // The others go on.
    sender.send(Message::text("still here")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), reader.recv())
        .await
        .unwrap();
    assert_eq!(got.unwrap().unwrap(), Message::text("still here"));
    let _ = d.child.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_max_message_at_the_limit_and_one_past() {
    let upstream = echo_upstream().await;
    let out = tmp("limit.jsonl");
    let d = Daemon::start(&[
        "capture",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--out",
        out.to_str().unwrap(),
        "--max-message",
        "1000",
    ]);
    let (mut ws, _) = ClientBuilder::new()
        .connect(format!("ws://{}/", d.addr))
        .await
        .unwrap();
    let at = Message::text("a".repeat(1000));
    ws.send(at.clone()).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(10), ws.recv())
        .await
        .unwrap();
    assert_eq!(echo.unwrap().unwrap(), at);
    ws.send(Message::text("b".repeat(1001))).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), ws.recv())
        .await
        .unwrap();
    match next {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::MESSAGE_TOO_BIG),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
    assert_eq!(d.interrupt(), 0);
    let c = read_corpus(&out);
    assert_eq!(c.entries.len(), 2, "the message at the limit, both ways");
    assert!(c.entries.iter().all(|e| e.payload.len() == 1000));
}

#[test]
fn connect_opens_mux_channels() {
    let d = Daemon::start(&["serve", "--addr", "127.0.0.1:0", "--mux"]);
    let url = format!("ws://{}/chat", d.addr);
    let (code, out, err) = weft(&["connect", &url, "--mux-channels", "3"], b"m1\nm2\nm3\n");
    assert_eq!(code, 0, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 3, "{out}");
    let channels: std::collections::HashSet<&str> = lines
        .iter()
        .map(|l| l.split("] ").next().unwrap())
        .collect();
    assert_eq!(channels.len(), 3, "one message per channel: {out}");
    let mut bodies: Vec<&str> = lines
        .iter()
        .map(|l| l.split("] ").nth(1).unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["m1", "m2", "m3"]);
}
