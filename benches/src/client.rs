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
//! - permessage-deflate ([`EchoConn::connect_deflate`]): the client offers
//!   `permessage-deflate; client_max_window_bits`, compresses the message
//!   once per connection (raw deflate, level 6, the client window the
//!   server answered, a fresh context, sync flush, tail stripped: a message
//!   that needs no context, which RFC 7692 §7.2.1 lets a sender always
//!   send), and sends that frame every time; so the client costs the same
//!   whichever server it talks to and the server does all the deflate work
//!   (inflate every message, compress every echo with its own parameters).
//!   Echoes are checked once per connection by inflating them; afterwards
//!   they are counted (any length, compressed or not) without inflating.

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
    masked_frame_with(0x82, payload)
}

/// A masked frame with first byte `byte0` (FIN, RSV, opcode) carrying
/// `payload`.
fn masked_frame_with(byte0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(byte0);
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
    Ok(connect_with(addr, "").await?.0)
}

/// [`connect`] with `extra` header lines (each ending in CRLF) in the
/// request; also returns the response head.
async fn connect_with(addr: SocketAddr, extra: &str) -> std::io::Result<(TcpStream, String)> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connect_inner(addr, extra))
        .await
        .map_err(|_| Error::new(ErrorKind::TimedOut, "handshake timed out"))?
}

async fn connect_inner(addr: SocketAddr, extra: &str) -> std::io::Result<(TcpStream, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
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
    let head = head.into_owned();
    Ok((stream, head))
}

/// The permessage-deflate offer of [`EchoConn::connect_deflate`]: RFC 7692
/// defaults, and the client accepts any client window the server asks for.
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The server's permessage-deflate answer in a response head: the header
/// value and the client window it sets (15 when not given).
fn deflate_answer(head: &str) -> Option<(String, u8)> {
    let value = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("sec-websocket-extensions"))?
        .1
        .trim()
        .to_owned();
    let mut params = value.split(';').map(str::trim);
    if params.next()? != "permessage-deflate" {
        return None;
    }
    let mut bits = 15;
    for p in params {
        if let Some(v) = p.strip_prefix("client_max_window_bits=") {
            bits = v.trim_matches('"').parse().ok()?;
        }
    }
    Some((value, bits))
}

/// `payload` compressed as one permessage-deflate message with a fresh
/// context (raw deflate, level 6, `bits` window, sync flush, the final
/// `00 00 ff ff` removed): a masked final text frame with RSV1.
fn compressed_text_frame(payload: &[u8], bits: u8) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new_with_window_bits(Compression::new(6), false, bits);
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    loop {
        let done = c.total_in() as usize;
        out.reserve(4096);
        c.compress_vec(&payload[done..], &mut out, FlushCompress::Sync)
            .expect("deflate");
        if c.total_in() as usize == payload.len() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "sync flush tail");
    out.truncate(out.len() - 4);
    masked_frame_with(0xc1, &out)
}

/// Inflates one permessage-deflate message (tail re-added) with `d`.
fn inflate_message(d: &mut flate2::Decompress, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use flate2::FlushDecompress;
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(data.len() * 4 + 1024);
    let start = d.total_in();
    loop {
        let done = (d.total_in() - start) as usize;
        if done == input.len() {
            return Ok(out);
        }
        out.reserve(64 << 10);
        d.decompress_vec(&input[done..], &mut out, FlushDecompress::Sync)
            .map_err(|e| Error::other(format!("inflate: {e}")))?;
    }
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
    /// permessage-deflate: any final text or binary frame of any length
    /// (compressed or not) is one echo.
    compressed: bool,
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
            if self.compressed {
                if !matches!(h.byte0 & 0xbf, 0x81 | 0x82) {
                    return Err(Error::other(format!(
                        "unexpected frame: first byte {:#04x} (wanted a final text or binary frame)",
                        h.byte0
                    )));
                }
            } else if h.byte0 != 0x82 || h.len != self.expect {
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

    /// Connects offering [`DEFLATE_OFFER`], which the server must accept;
    /// builds the compressed frame of `payload` (sent as text) for the
    /// client window it answered and checks three echoes of it by inflating
    /// them (at least one must come back compressed). Returns the
    /// connection, the frame to send, and the server's answer.
    pub async fn connect_deflate(
        addr: SocketAddr,
        payload: &[u8],
    ) -> std::io::Result<(EchoConn, Vec<u8>, String)> {
        let offer = format!("Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n");
        let (stream, head) = connect_with(addr, &offer).await?;
        let Some((answer, bits)) = deflate_answer(&head) else {
            return Err(Error::other(format!(
                "permessage-deflate not accepted: {head:?}"
            )));
        };
        if !(9..=15).contains(&bits) {
            // zlib's raw deflate has no 8-bit window.
            return Err(Error::other(format!(
                "client_max_window_bits={bits}: not supported"
            )));
        }
        let frame = compressed_text_frame(payload, bits);
        let mut conn = EchoConn {
            stream,
            rbuf: vec![0u8; READ_BUF].into_boxed_slice(),
            parser: Skipper {
                compressed: true,
                ..Skipper::default()
            },
        };
        const CHECKS: usize = 3;
        conn.stream.write_all(&frame.repeat(CHECKS)).await?;
        // Server windows are at most 15 bits: a 15-bit decoder inflates
        // any of them, with context takeover or without.
        let mut d = flate2::Decompress::new_with_window_bits(false, 15);
        let mut got = Vec::new();
        let (mut echoes, mut compressed) = (0, 0);
        while echoes < CHECKS {
            if let Some(h) = parse_header(&got)
                && got.len() >= h.header_len + h.len
            {
                let body = &got[h.header_len..h.header_len + h.len];
                let plain = match h.byte0 {
                    0xc1 => {
                        compressed += 1;
                        inflate_message(&mut d, body)?
                    }
                    0x81 => body.to_vec(),
                    b => return Err(Error::other(format!("unexpected echo frame {b:#04x}"))),
                };
                if plain != payload {
                    return Err(Error::other("echo differs from the message sent"));
                }
                got.drain(..h.header_len + h.len);
                echoes += 1;
                continue;
            }
            let n = conn.stream.read(&mut conn.rbuf).await?;
            if n == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            got.extend_from_slice(&conn.rbuf[..n]);
        }
        if !got.is_empty() {
            return Err(Error::other("extra bytes after the echoes"));
        }
        if compressed == 0 {
            return Err(Error::other("no echo came back compressed"));
        }
        Ok((conn, frame, answer))
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

    #[test]
    fn deflate_answers_give_the_client_window() {
        let head = |ext: &str| {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Extensions: {ext}\r\n\r\n"
            )
        };
        let (v, bits) = deflate_answer(&head("permessage-deflate")).unwrap();
        assert_eq!((v.as_str(), bits), ("permessage-deflate", 15));
        let python = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12";
        assert_eq!(deflate_answer(&head(python)).unwrap().1, 12);
        assert!(deflate_answer(&head("x-webkit-deflate-frame")).is_none());
        assert!(deflate_answer("HTTP/1.1 101 Switching Protocols\r\n\r\n").is_none());
    }

    #[test]
    fn compressed_frames_inflate_to_the_payload() {
        let payload = crate::json::json_payload(64 << 10).into_bytes();
        for bits in [9u8, 12, 15] {
            let frame = compressed_text_frame(&payload, bits);
            assert_eq!(frame[0], 0xc1, "final text with RSV1");
            let h = parse_header(&frame).unwrap();
            assert!(h.len < payload.len() / 2, "compressed: {} B", h.len);
            let mut body = frame[h.header_len..].to_vec();
            for (i, b) in body.iter_mut().enumerate() {
                *b ^= MASK[i & 3];
            }
            let mut d = flate2::Decompress::new_with_window_bits(false, 15);
            assert_eq!(
                inflate_message(&mut d, &body).unwrap(),
                payload,
                "{bits} bits"
            );
            // A second copy inflates the same with the context kept: no
            // references into the first.
            assert_eq!(inflate_message(&mut d, &body).unwrap(), payload);
        }
    }
}
