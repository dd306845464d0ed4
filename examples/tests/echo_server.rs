//! The `echo_server` example as a separate process on 127.0.0.1: `wss://`
//! with a self-signed certificate (rcgen) trusted by our client, graceful
//! shutdown on SIGTERM (1001 to every client, exit status 0), and
//! `--max-connections` (503 past it).
//!
//! The binary is the one `cargo test` builds next to this test
//! (`target/<profile>/examples/echo_server`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use weft_core::handshake::HandshakeError;
use weft_core::tokio_rustls::rustls::{self, RootCertStore, pki_types::CertificateDer};
use weft_core::{ClientBuilder, CloseCode, Error, Message};

const T: Duration = Duration::from_secs(30);

fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("examples").join("echo_server");
    assert!(
        bin.exists(),
        "{} not built: run `cargo test -p weft-examples` (it builds the examples)",
        bin.display()
    );
    bin
}

/// A running echo_server, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(binary())
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // "echo_server listening on ws://127.0.0.1:PORT (...)"
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { child, addr }
    }

    /// Sends SIGTERM and returns the exit status and the rest of stdout.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let mut out = String::new();
        let mut stdout = self.child.stdout.take().unwrap();
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        (self.child.wait().unwrap(), out)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for 127.0.0.1 in PEM files, and a client
/// config trusting only it.
fn certificate(tag: &str) -> (PathBuf, PathBuf, Arc<rustls::ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("weft-echo-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ck.cert.der().to_vec()))
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    (cert, key, Arc::new(client))
}

#[tokio::test]
async fn wss_echo_with_a_self_signed_certificate() {
    let (cert, key, client_tls) = certificate("echo");
    let server = Server::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("wss://{}/", server.addr);
    let builder = ClientBuilder::new()
        .tls_config(client_tls.clone())
        .extension(weft_extensions::PerMessageDeflate::new());
    let (mut ws, _) = tokio::time::timeout(T, builder.connect(&url))
        .await
        .unwrap()
        .expect("wss handshake");
    assert!(ws.get_ref().is_tls());
    assert_eq!(ws.extensions()[0].name, "permessage-deflate");
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    for m in [
        Message::text("hello over TLS"),
        Message::binary(big),
        Message::text("x".repeat(100_000)),
    ] {
        ws.send(m.clone()).await.unwrap();
        let back = tokio::time::timeout(T, ws.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back, m);
    }
    // The repetitive text compressed well on the way back.
    assert!(
        ws.stats().compression_saved_received() > 0.5,
        "{:?}",
        ws.stats()
    );
    ws.close(CloseCode::NORMAL, "").await.unwrap();

    // A client that does not trust the certificate is refused by TLS.
    let untrusting = ClientBuilder::new();
    match untrusting.connect(&url).await {
        Err(Error::Handshake(HandshakeError::Io(_))) => {}
        other => panic!("expected a TLS failure, got {:?}", other.map(|_| ())),
    }
    let (status, out) = server.terminate();
    assert!(status.success(), "{status:?}\n{out}");
    let _ = std::fs::remove_dir_all(cert.parent().unwrap());
}

#[tokio::test]
async fn sigterm_closes_every_client_with_1001_and_exits_cleanly() {
    let server = Server::start(&["--shutdown-grace", "5"]);
    let url = format!("ws://{}/", server.addr);
    let mut clients = Vec::new();
    for i in 0..3 {
        let (mut ws, _) = weft_core::connect(&url).await.unwrap();
        ws.send(Message::text(format!("hi {i}"))).await.unwrap();
        assert!(matches!(ws.recv().await, Some(Ok(Message::Text(_)))));
        clients.push(ws);
    }
    let terminated = tokio::task::spawn_blocking(move || server.terminate());
    for ws in &mut clients {
        match tokio::time::timeout(T, ws.recv()).await.unwrap() {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::GOING_AWAY),
            other => panic!("{other:?}"),
        }
        assert!(ws.recv().await.is_none());
    }
    let (status, out) = terminated.await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(out.contains("(0 connections aborted)"), "{out}");
    assert!(out.contains("3 connections served"), "{out}");
}

#[tokio::test]
async fn max_connections_answers_503_past_the_limit() {
    let server = Server::start(&["--max-connections", "2"]);
    let url = format!("ws://{}/", server.addr);
    let (_a, _) = weft_core::connect(&url).await.expect("first");
    let (_b, _) = weft_core::connect(&url).await.expect("second");
    match weft_core::connect(&url).await {
        Err(Error::Handshake(HandshakeError::Status(s))) => assert_eq!(s.as_u16(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn rust_log_prints_the_connection_events_to_stderr() {
    let mut child = Command::new(binary())
        .args(["--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "weft_core=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let (mut ws, _) =
        tokio::time::timeout(T, ClientBuilder::new().connect(&format!("ws://{addr}/")))
            .await
            .unwrap()
            .unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(
        tokio::time::timeout(T, ws.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        Message::text("hi")
    );
    tokio::time::timeout(T, ws.close(CloseCode::NORMAL, "bye"))
        .await
        .unwrap()
        .unwrap();
    // The server logs the close when the connection is dropped; give it a
    // moment, then stop it and read what it wrote.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let _ = child.wait();
    assert!(err.contains("websocket open: negotiated"), "stderr: {err}");
    assert!(err.contains("websocket closed"), "stderr: {err}");
    assert!(err.contains("peer_code=1000"), "stderr: {err}");
    assert!(
        err.contains("peer_reason=\"bye\"") || err.contains("peer_reason=bye"),
        "stderr: {err}"
    );
}

#[tokio::test]
async fn without_rust_log_nothing_is_logged() {
    let mut child = Command::new(binary())
        .args(["--addr", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let (mut ws, _) =
        tokio::time::timeout(T, ClientBuilder::new().connect(&format!("ws://{addr}/")))
            .await
            .unwrap()
            .unwrap();
    tokio::time::timeout(T, ws.close(CloseCode::NORMAL, ""))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let _ = child.wait();
    assert!(err.is_empty(), "stderr without RUST_LOG: {err}");
}
