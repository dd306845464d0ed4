//! The tokio API for [`MuxVariant::A`]: its physical handshake and driver.
//!
//! Variant A interleaves fragments of different channels' messages at the
//! physical level (docs/specs/mux.md §3.1), which a message-level
//! [`WebSocket`] would reassemble or reject. So a variant A connection runs
//! the physical opening handshake with the core's sans-I/O pieces
//! ([`ClientHandshake`], [`parse_request`] and [`accept_request`]) and then
//! reads and writes physical *frames* itself: [`FrameReader`] checks each
//! header (masking by role, [`Config::max_frame_size`], RFC 6455 header
//! rules), answers physical Pings and the closing handshake, and hands
//! data frames to [`Multiplexer::handle_frame`]; the writer encodes
//! [`Multiplexer::poll_transmit_frame`]'s frames (masked as a client). The
//! channel handles, events and shared state are the variant B driver's.
//!
//! What the variant B path has and this one does not (documented on
//! [`MuxServerBuilder::new`]): the physical keepalive, and on the server the
//! [`ServerBuilder`](weft_core::ServerBuilder)'s connection limit, stats,
//! shutdown and `on_request` hook (the handshake options, limits and
//! extensions are applied). Frames are copied once into the write buffer;
//! variant A is for compatibility, not for speed.

use super::{
    Accepted, MuxClient, MuxServer, MuxServerBuilder, Shared, WRITE_BATCH, new_state, tune_tcp,
};
use crate::mux::{Multiplexer, MuxError};
use crate::negotiate::{GoogleMuxFactory, MuxFactory, find_mux};
use crate::wire::ChannelId;
use crate::{MuxConfig, MuxVariant};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use weft_core::ext::Extension;
use weft_core::handshake::server::{accept_request, error_response, parse_request, write_response};
use weft_core::handshake::{
    ClientHandshake, ClientOptions, HandshakeError, IntoClientRequest, ServerOptions, Target,
};
use weft_core::proto::mask::apply_mask;
use weft_core::proto::{FrameHeader, HeaderParse, MAX_HEADER_LEN};
use weft_core::{ClientBuilder, CloseCode, Config, Frame, OpCode, Role, Rsv, WebSocket};

fn physical(e: HandshakeError) -> MuxError {
    MuxError::WebSocket(e.into())
}

fn is_variant_a(extensions: &[Extension]) -> bool {
    find_mux(extensions).is_some_and(|m| m.variant == MuxVariant::A)
}

/// The `Host` of a client request: its header, or the URL's authority.
pub(super) fn host_of(request: &http::Request<()>) -> Result<String, MuxError> {
    match request.headers().get(http::header::HOST) {
        Some(h) => Ok(h
            .to_str()
            .map_err(|_| physical(HandshakeError::InvalidRequest("Host is not ASCII".into())))?
            .to_owned()),
        None => Ok(Target::from_uri(request.uri()).map_err(physical)?.authority),
    }
}

/// Reads a handshake head of at most `max` bytes, trying `parse` only when
/// a blank line arrived (or the limit passed), so the work stays linear in
/// the head's size. Returns what `parse` produced and the bytes after the
/// head.
async fn read_head<S: AsyncRead + Unpin, T>(
    stream: &mut S,
    max: usize,
    mut parse: impl FnMut(&[u8]) -> Result<Option<(T, usize)>, HandshakeError>,
) -> Result<(T, BytesMut), HandshakeError> {
    let mut buf = BytesMut::with_capacity(1024);
    let mut searched = 0usize;
    loop {
        let room = (max + 1).saturating_sub(buf.len()).clamp(1, 4096);
        buf.reserve(room);
        let n = stream.read_buf(&mut (&mut buf).limit(room)).await?;
        if n == 0 {
            return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let from = searched.saturating_sub(3);
        let blank = buf[from..].windows(2).any(|w| w == b"\n\n")
            || buf[from..].windows(4).any(|w| w == b"\r\n\r\n");
        searched = buf.len();
        if (blank || buf.len() > max)
            && let Some((t, used)) = parse(&buf)?
        {
            let rest = buf.split_off(used);
            return Ok((t, rest));
        }
        if buf.len() > max {
            return Err(HandshakeError::TooLarge(max));
        }
    }
}

impl MuxClient {
    /// Runs the physical handshake on an already connected stream (TCP,
    /// TLS, an in-memory pipe...) and starts multiplexing in
    /// `config.variant`, within the handshake timeout of `config.channel`.
    /// Variant B offers `mux` (as [`MuxClient::connect`] does), variant A
    /// `x-google-mux`; fails if the server does not accept it.
    pub async fn connect_on<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        stream: S,
        request: impl IntoClientRequest,
        config: MuxConfig,
    ) -> Result<MuxClient, MuxError> {
        let request = request.into_client_request().map_err(physical)?;
        let host = host_of(&request)?;
        if config.variant == MuxVariant::B {
            let (ws, _) = ClientBuilder::new()
                .extension(MuxFactory {
                    quota: config.implicit_quota,
                })
                .config(config.channel.clone())
                .connect_on(stream, request)
                .await?;
            return MuxClient::start(ws, &host, config);
        }
        let timeout = config.channel.handshake_timeout;
        tokio::time::timeout(timeout, client_handshake(stream, request, host, config))
            .await
            .map_err(|_| physical(HandshakeError::Timeout))?
    }
}

/// Variant A's [`MuxClient::connect`]: `ws://` only (for TLS, connect the
/// stream yourself and use [`MuxClient::connect_on`]).
pub(super) async fn connect(
    request: impl IntoClientRequest,
    config: MuxConfig,
) -> Result<MuxClient, MuxError> {
    let request = request.into_client_request().map_err(physical)?;
    let target = Target::from_uri(request.uri()).map_err(physical)?;
    if target.tls {
        return Err(physical(HandshakeError::InvalidRequest(
            "variant A connects ws:// only; for wss://, connect TLS and use MuxClient::connect_on"
                .into(),
        )));
    }
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| physical(e.into()))?;
    tcp.set_nodelay(true).map_err(|e| physical(e.into()))?;
    // A tuning, not a requirement: the connection works without it.
    let _ = tune_tcp(&tcp, &config);
    MuxClient::connect_on(tcp, request, config).await
}

async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut stream: S,
    request: http::Request<()>,
    host: String,
    config: MuxConfig,
) -> Result<MuxClient, MuxError> {
    let options = ClientOptions::default().extension(GoogleMuxFactory);
    let (hs, _, bytes) = ClientHandshake::with_request(&request, options).map_err(physical)?;
    let io = |e: std::io::Error| physical(e.into());
    stream.write_all(&bytes).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let max = config.channel.max_handshake_size;
    let headers = config.channel.max_handshake_headers;
    let (accepted, leftover) = read_head(&mut stream, max, |b| hs.handle_response(b, max, headers))
        .await
        .map_err(physical)?;
    if !is_variant_a(accepted.extensions.extensions()) {
        return Err(physical(HandshakeError::InvalidResponse(
            "the server did not accept x-google-mux".into(),
        )));
    }
    let channel_config = config.channel.clone();
    let max_pending = config.max_buffered_per_channel;
    let shared = Arc::new(Shared {
        state: Mutex::new(new_state(Multiplexer::client(config, &host))),
        max_pending,
        channel_options: ServerOptions::default(),
        implicit_protocol: accepted.protocol,
    });
    tokio::spawn(drive(
        shared.clone(),
        stream,
        leftover,
        Role::Client,
        channel_config,
    ));
    Ok(MuxClient { shared })
}

/// Variant A's [`MuxServerBuilder::accept`].
pub(super) async fn accept<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    builder: &MuxServerBuilder,
    mut stream: S,
) -> Result<Accepted<S>, MuxError> {
    let config = builder.physical.connection_config().clone();
    let options = builder.physical.handshake_options();
    let max = config.max_handshake_size;
    let headers = config.max_handshake_headers;
    let handshake = async {
        let agreed = read_head(&mut stream, max, |b| parse_request(b, max, headers))
            .await
            .and_then(|(request, leftover)| {
                let accepted = accept_request(&request, options)?;
                Ok((request, accepted, leftover))
            });
        let mut out = Vec::new();
        match agreed {
            Ok((request, mut accepted, leftover)) => {
                let response = std::mem::replace(&mut accepted.response, http::Response::new(()));
                write_response(&response.map(|()| ""), &mut out);
                stream.write_all(&out).await?;
                stream.flush().await?;
                Ok((request, accepted, leftover))
            }
            Err(e) => {
                // The plain server's answers: 400, 431, 426, 403, ...
                write_response(&error_response(&e), &mut out);
                let _ = stream.write_all(&out).await;
                let _ = stream.shutdown().await;
                Err(e)
            }
        }
    };
    let (request, accepted, leftover) =
        match tokio::time::timeout(config.handshake_timeout, handshake).await {
            Ok(r) => r.map_err(physical)?,
            Err(_) => {
                // 408, as the plain server answers a handshake that took too long.
                let mut out = Vec::new();
                write_response(&error_response(&HandshakeError::Timeout), &mut out);
                let _ = stream.write_all(&out).await;
                let _ = stream.shutdown().await;
                return Err(physical(HandshakeError::Timeout));
            }
        };
    if !is_variant_a(accepted.extensions.extensions()) {
        return Ok(Accepted::Plain(WebSocket::from_parts(
            stream,
            Role::Server,
            accepted.extensions,
            accepted.protocol,
            &config,
            leftover,
        )));
    }
    let mux = Multiplexer::server(builder.config.clone(), &request, 0);
    let mut state = new_state(mux);
    state.incoming.push_back((ChannelId::IMPLICIT, request));
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        max_pending: builder.config.max_buffered_per_channel,
        channel_options: builder.channel_options.clone(),
        implicit_protocol: accepted.protocol,
    });
    // The physical connection's limits are the physical builder's, as for
    // variant B.
    tokio::spawn(drive(
        shared.clone(),
        stream,
        leftover,
        Role::Server,
        config,
    ));
    Ok(Accepted::Mux(MuxServer { shared }))
}

/// Reads physical frames (RFC 6455 §5.2) from the read half.
struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
    role: Role,
    max_frame: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// The next frame, unmasked; `Ok(None)` at the end of the stream (or an
    /// I/O error); `Err` with the close code for a frame breaking RFC 6455
    /// (1002) or the frame size limit (1009).
    async fn next(&mut self) -> Result<Option<Frame>, CloseCode> {
        loop {
            let want = match FrameHeader::parse(&self.buf) {
                Err(_) => return Err(CloseCode::PROTOCOL_ERROR),
                Ok(HeaderParse::Incomplete(n)) => n,
                Ok(HeaderParse::Complete(h, n)) => {
                    // Clients mask, servers do not (RFC 6455 §5.1).
                    if h.mask.is_some() != (self.role == Role::Server) {
                        return Err(CloseCode::PROTOCOL_ERROR);
                    }
                    if h.opcode.is_control() && !h.rsv.is_empty() {
                        return Err(CloseCode::PROTOCOL_ERROR);
                    }
                    if h.payload_len > self.max_frame as u64 {
                        return Err(CloseCode::MESSAGE_TOO_BIG);
                    }
                    let total = n + h.payload_len as usize;
                    if self.buf.len() >= total {
                        self.buf.advance(n);
                        let mut payload = self.buf.split_to(total - n);
                        if let Some(key) = h.mask {
                            apply_mask(&mut payload, key);
                        }
                        return Ok(Some(Frame {
                            fin: h.fin,
                            rsv: h.rsv,
                            opcode: h.opcode,
                            payload: payload.freeze(),
                        }));
                    }
                    total - self.buf.len()
                }
            };
            self.buf.reserve(want.max(16 << 10));
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }
}

/// Appends a physical frame, masked with a fresh key when `role` is the
/// client's.
fn put_frame(out: &mut Vec<u8>, role: Role, fin: bool, opcode: OpCode, payload: &[u8]) {
    let mask = (role == Role::Client).then(rand::random::<[u8; 4]>);
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader {
        fin,
        rsv: Rsv::empty(),
        opcode,
        mask,
        payload_len: payload.len() as u64,
    }
    .encode(&mut head);
    out.extend_from_slice(&head[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key);
    }
}

/// What the reader leaves for the writer: Pongs to send, and how the
/// reading ended.
#[derive(Default)]
struct Owed {
    pongs: Vec<Bytes>,
    /// The peer's Close (with its code, if any).
    peer_close: Option<Option<u16>>,
    /// The peer broke RFC 6455: close with this.
    error: Option<CloseCode>,
}

fn lock(owed: &Mutex<Owed>) -> std::sync::MutexGuard<'_, Owed> {
    owed.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a variant A physical connection until it closes or fails (the
/// reading in its own task, like the variant B driver, so that a peer
/// blocked writing can never stop us from reading).
async fn drive<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    shared: Arc<Shared>,
    stream: S,
    leftover: BytesMut,
    role: Role,
    config: Config,
) {
    let (rd, mut wr) = tokio::io::split(stream);
    let owed = Arc::new(Mutex::new(Owed::default()));
    let read_side = shared.clone();
    let read_owed = owed.clone();
    let mut reader = FrameReader {
        rd,
        buf: leftover,
        role,
        max_frame: config.max_frame_size,
    };
    let read_task = tokio::spawn(async move {
        loop {
            let frame = match reader.next().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(code) => {
                    lock(&read_owed).error = Some(code);
                    break;
                }
            };
            match frame.opcode {
                OpCode::Ping => {
                    lock(&read_owed).pongs.push(frame.payload);
                    read_side.lock().kick();
                }
                OpCode::Pong => {}
                OpCode::Close => {
                    let p = &frame.payload;
                    lock(&read_owed).peer_close =
                        Some((p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])));
                    break;
                }
                _ => {
                    let output = {
                        let mut st = read_side.lock();
                        st.mux.handle_frame(frame);
                        st.dispatch();
                        st.mux.has_output() || st.mux.failure().is_some()
                    };
                    if output {
                        read_side.lock().kick();
                    }
                }
            }
        }
        {
            let mut st = read_side.lock();
            st.shut();
            st.physical_closed = true;
        }
        read_side.lock().kick();
    });
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::new();
    loop {
        let (failed, close, ended, full) = {
            let mut st = shared.lock();
            for pong in lock(&owed).pongs.drain(..) {
                put_frame(&mut out, role, true, OpCode::Pong, &pong);
            }
            let mut batch = 0;
            while batch < WRITE_BATCH {
                let Some(f) = st.mux.poll_transmit_frame() else {
                    break;
                };
                batch += f.payload.len();
                put_frame(&mut out, role, f.fin, f.opcode, &f.payload);
            }
            st.dispatch();
            for w in st.writers.drain(..) {
                w.wake();
            }
            (
                st.mux.failure(),
                st.close_requested || Arc::strong_count(&shared) <= DRIVER_REFS_A,
                st.physical_closed,
                batch >= WRITE_BATCH,
            )
        };
        if !out.is_empty() {
            let written = wr.write_all(&out).await.and(wr.flush().await);
            out.clear();
            if written.is_err() {
                shared.lock().shut();
                return;
            }
        }
        if ended {
            // The peer closed (answer its Close), broke the protocol (close
            // with 1002 or 1009) or went away.
            let owed = std::mem::take(&mut *lock(&owed));
            let answer = match (owed.error, owed.peer_close) {
                (Some(code), _) => Some(code.as_u16().to_be_bytes().to_vec()),
                (None, Some(Some(code))) => Some(code.to_be_bytes().to_vec()),
                (None, Some(None)) => Some(Vec::new()),
                (None, None) => None,
            };
            if let Some(payload) = answer {
                put_frame(&mut out, role, true, OpCode::Close, &payload);
                let _ = wr.write_all(&out).await;
            }
            let _ = wr.shutdown().await;
            shared.lock().shut();
            return;
        }
        if failed.is_some() || close {
            // A failed physical connection closes with 1011 (docs/specs/mux.md §4.8).
            let code = if failed.is_some() {
                CloseCode::INTERNAL_ERROR
            } else {
                CloseCode::NORMAL
            };
            put_frame(
                &mut out,
                role,
                true,
                OpCode::Close,
                &code.as_u16().to_be_bytes(),
            );
            let _ = wr.write_all(&out).await;
            let _ = wr.flush().await;
            shared.lock().shut();
            // The peer's Close ends the reader; bounded by the close timeout.
            let mut read_task = read_task;
            if tokio::time::timeout(config.close_timeout, &mut read_task)
                .await
                .is_err()
            {
                read_task.abort();
            }
            let _ = wr.shutdown().await;
            return;
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = wait_for_work(&shared, &owed) => {}
            _ = tick.tick() => shared.lock().mux.handle_timeout(Instant::now()),
        }
    }
}

/// References to [`Shared`] the variant A driver holds itself: its writer
/// loop and its reader task (variant B's driver is one task and holds one).
/// More means a handle is alive.
const DRIVER_REFS_A: usize = 2;

/// Waits until there is work for the writer: output from the multiplexer, a
/// Pong owed, a failure, a close, or every handle gone. The check and the
/// registration of the waker in `State::driver` happen under the state
/// lock, and whatever creates work calls `State::kick` under it, so no
/// wake-up is lost.
fn wait_for_work<'a>(
    shared: &'a Arc<Shared>,
    owed: &'a Mutex<Owed>,
) -> impl std::future::Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        let mut st = shared.lock();
        if st.mux.has_output()
            || st.mux.failure().is_some()
            || st.close_requested
            || st.physical_closed
            || Arc::strong_count(shared) <= DRIVER_REFS_A
            || !lock(owed).pongs.is_empty()
        {
            return std::task::Poll::Ready(());
        }
        st.driver = Some(cx.waker().clone());
        std::task::Poll::Pending
    })
}
