//! A raw WebSocket client on a tokio `TcpStream`, written for the benches so
//! that the client side costs the same whichever server it talks to and
//! depends on none of the libraries under test.
//!
//! - handshake: a fixed request with the RFC 6455 sample key; the response
//!   must be `101` with the matching `Sec-WebSocket-Accept`;
//! - sending: frames are masked once, up front ([`masked_frame`]); a send is a
//!   `write_all` of pre-built bytes (a pipelined burst of `k` frames is one
//!   write);
//! - receiving: a streaming frame parser that checks opcode, FIN and length
//!   of every echo and skips the payload without copying it anywhere; the
//!   payload bytes are compared once per connection with [`EchoConn::verify`].

use std::cell::Cell;
use std::io::{Error, ErrorKind};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// The RFC 6455 sample key, and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// The mask every client frame uses (servers must not depend on its value).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// Read buffer per connection.
const READ_BUF: usize = 64 << 10;
/// Upper bound for one handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A deterministic payload of `len` bytes.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) + 7) as u8).collect()
}

/// A final, masked binary frame carrying `payload`.
pub fn masked_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x82);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
    out
}

/// Connects to `addr` and completes the opening handshake; the stream is
/// ready for frames afterwards (the server sends nothing unprompted).
pub async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connect_inner(addr))
        .await
        .map_err(|_| Error::new(ErrorKind::TimedOut, "handshake timed out"))?
}

async fn connect_inner(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if i + 4 != buf.len() {
                return Err(Error::other("server sent data after the 101"));
            }
            break;
        }
        if buf.len() > 8192 {
            return Err(Error::other("response head too large"));
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let status_ok = head.starts_with("HTTP/1.1 101");
    let accept_ok = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .any(|(n, v)| n.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == ACCEPT);
    if !status_ok || !accept_ok {
        return Err(Error::other(format!("bad handshake response: {head:?}")));
    }
    Ok(stream)
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
struct Header {
    byte0: u8,
    len: usize,
    header_len: usize,
}

/// Parses a server frame header from the front of `buf`; `None` if more bytes
/// are needed.
fn parse_header(buf: &[u8]) -> Option<Header> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let len7 = (buf[1] & 0x7f) as usize;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + ext + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        return None;
    }
    let len = match ext {
        0 => len7,
        2 => u16::from_be_bytes([buf[2], buf[3]]) as usize,
        _ => u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize,
    };
    Some(Header {
        byte0: buf[0],
        len,
        header_len,
    })
}

/// Streaming parser for echoed frames: counts complete binary messages of
/// the expected length and skips their payloads.
#[derive(Debug, Default)]
struct Skipper {
    hdr: [u8; 14],
    hdr_len: usize,
    remaining: usize,
    expect: usize,
}

impl Skipper {
    /// Consumes `data`; returns how many echoes it completed.
    fn feed(&mut self, mut data: &[u8]) -> std::io::Result<u64> {
        let mut done = 0;
        while !data.is_empty() {
            if self.remaining > 0 {
                let k = self.remaining.min(data.len());
                self.remaining -= k;
                data = &data[k..];
                if self.remaining == 0 {
                    done += 1;
                }
                continue;
            }
            let old = self.hdr_len;
            let take = (self.hdr.len() - old).min(data.len());
            self.hdr[old..old + take].copy_from_slice(&data[..take]);
            let Some(h) = parse_header(&self.hdr[..old + take]) else {
                self.hdr_len = old + take;
                data = &data[take..];
                continue;
            };
            data = &data[h.header_len - old..];
            self.hdr_len = 0;
            if h.byte0 != 0x82 || h.len != self.expect {
                return Err(Error::other(format!(
                    "unexpected frame: first byte {:#04x}, length {} (wanted 0x82, {})",
                    h.byte0, h.len, self.expect
                )));
            }
            self.remaining = h.len;
            if h.len == 0 {
                done += 1;
            }
        }
        Ok(done)
    }
}

/// One connection of the echo bench.
#[derive(Debug)]
pub struct EchoConn {
    stream: TcpStream,
    rbuf: Box<[u8]>,
    parser: Skipper,
}

impl EchoConn {
    /// Connects and handshakes.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<EchoConn> {
        Ok(EchoConn {
            stream: connect(addr).await?,
            rbuf: vec![0u8; READ_BUF].into_boxed_slice(),
            parser: Skipper::default(),
        })
    }

    /// Connects, handshakes and checks one echo of `frame` (a
    /// [`masked_frame`] of `payload`): byte for byte against `payload`, or,
    /// for the raw TCP baseline (`raw`), against `frame` itself.
    pub async fn connect_checked(
        addr: SocketAddr,
        raw: bool,
        frame: &[u8],
        payload: &[u8],
    ) -> std::io::Result<EchoConn> {
        let mut conn = EchoConn::connect(addr).await?;
        if raw {
            conn.verify_raw(frame).await?;
        } else {
            conn.verify(frame, payload).await?;
        }
        Ok(conn)
    }

    /// Sends `frame` (a [`masked_frame`] of `payload`) once and checks that
    /// the echo carries exactly `payload`.
    pub async fn verify(&mut self, frame: &[u8], payload: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(frame).await?;
        let mut got = Vec::with_capacity(payload.len() + 14);
        loop {
            if let Some(h) = parse_header(&got)
                && got.len() >= h.header_len + h.len
            {
                if got.len() > h.header_len + h.len {
                    return Err(Error::other("extra bytes after the echo"));
                }
                if h.byte0 != 0x82 || &got[h.header_len..] != payload {
                    return Err(Error::other("echo differs from the message sent"));
                }
                return Ok(());
            }
            let n = self.stream.read(&mut self.rbuf).await?;
            if n == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            got.extend_from_slice(&self.rbuf[..n]);
        }
    }

    /// For the raw TCP baseline: sends `frame` once and checks that exactly
    /// the same bytes come back.
    pub async fn verify_raw(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(frame).await?;
        let mut got = vec![0u8; frame.len()];
        self.stream.read_exact(&mut got).await?;
        if got != frame {
            return Err(Error::other("echo differs from the frame sent"));
        }
        Ok(())
    }

    /// Sends `count` messages and waits for all their echoes, keeping at most
    /// `window` in flight. `burst` holds `window` copies of one frame of
    /// `frame_len` bytes whose payload is `payload_len` bytes, so that `k`
    /// sends are one write.
    pub async fn run(
        &mut self,
        burst: &[u8],
        frame_len: usize,
        payload_len: usize,
        window: u64,
        count: u64,
    ) -> std::io::Result<()> {
        debug_assert_eq!(burst.len() as u64, frame_len as u64 * window);
        let EchoConn {
            stream,
            rbuf,
            parser,
        } = self;
        parser.expect = payload_len;
        let (mut rd, mut wr) = stream.split();
        let received = Cell::new(0u64);
        let progress = Notify::new();
        let writer = async {
            let mut sent = 0u64;
            while sent < count {
                let in_flight = sent - received.get();
                if in_flight >= window {
                    progress.notified().await;
                    continue;
                }
                let k = (window - in_flight).min(count - sent);
                wr.write_all(&burst[..k as usize * frame_len]).await?;
                sent += k;
            }
            Ok::<(), Error>(())
        };
        let reader = async {
            while received.get() < count {
                let n = rd.read(rbuf).await?;
                if n == 0 {
                    return Err(Error::from(ErrorKind::UnexpectedEof));
                }
                let done = parser.feed(&rbuf[..n])?;
                if done > 0 {
                    received.set(received.get() + done);
                    progress.notify_one();
                }
            }
            Ok(())
        };
        tokio::try_join!(writer, reader)?;
        if received.get() != count {
            return Err(Error::other("more echoes than messages sent"));
        }
        Ok(())
    }
}

/// Runs `count` messages on every connection at once (each as
/// [`EchoConn::run`]) and returns the time they took together; an error if
/// any run failed or all of them did not end within `timeout`.
pub async fn run_all(
    conns: &mut [EchoConn],
    burst: &[u8],
    frame_len: usize,
    payload_len: usize,
    window: u64,
    count: u64,
    timeout: Duration,
) -> std::io::Result<Duration> {
    let start = std::time::Instant::now();
    let all = futures_util::future::join_all(
        conns
            .iter_mut()
            .map(|c| c.run(burst, frame_len, payload_len, window, count)),
    );
    let results = tokio::time::timeout(timeout, all)
        .await
        .map_err(|_| Error::new(ErrorKind::TimedOut, "echo run timed out"))?;
    let elapsed = start.elapsed();
    results.into_iter().collect::<std::io::Result<Vec<()>>>()?;
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipper_counts_split_frames() {
        for len in [0usize, 5, 125, 126, 65535, 65536, 70000] {
            let mut wire = Vec::new();
            for _ in 0..3 {
                let mut f = vec![0x82];
                if len < 126 {
                    f.push(len as u8);
                } else if len <= 65535 {
                    f.push(126);
                    f.extend_from_slice(&(len as u16).to_be_bytes());
                } else {
                    f.push(127);
                    f.extend_from_slice(&(len as u64).to_be_bytes());
                }
                f.extend(std::iter::repeat_n(1u8, len));
                wire.extend(f);
            }
            for step in [1usize, 3, 7, 1000, usize::MAX] {
                let mut p = Skipper {
                    expect: len,
                    ..Skipper::default()
                };
                let total: u64 = wire
                    .chunks(step.min(wire.len()).max(1))
                    .map(|c| p.feed(c).unwrap())
                    .sum();
                assert_eq!(total, 3, "len {len} step {step}");
            }
        }
    }

    #[test]
    fn accept_key_matches_rfc_sample() {
        assert_eq!(weft_core::handshake::accept_key(KEY), ACCEPT);
    }
}
