//! A [`Session`] over a byte stream: frame parsing, masking and the write
//! buffer.
//!
//! Call order for the I/O layer:
//!
//! 1. append bytes read from the socket to a `BytesMut` and call
//!    [`Connection::handle_read`] until it returns `Ok(None)` (more bytes
//!    needed; [`Connection::read_hint`] says how many at least);
//! 2. issue application commands on [`Connection::session`];
//! 3. call [`Connection::poll_transmit`] to move queued frames into the
//!    [`WriteBuffer`], then write its [`chunks`](WriteBuffer::chunks) with a
//!    vectored write and [`advance`](WriteBuffer::advance) it.

use super::config::Config;
use super::error::ProtocolError;
use super::frame::{Frame, FrameHeader, HeaderParse, MAX_HEADER_LEN, OpCode, Rsv};
use super::mask::{apply_mask, apply_mask_at};
use super::message::Message;
use super::session::{Role, SendError, Session};
use super::utf8::Utf8Validator;
use crate::ext::SendHints;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::mem::MaybeUninit;

/// Payloads up to this size are copied next to their header, so runs of small
/// frames go out as one contiguous buffer; larger ones are queued as their own
/// chunk without copying (servers) .
const COPY_THRESHOLD: usize = 4096;

/// Room beyond a partial frame reserved in the read buffer (see
/// `parse_frame`).
const READ_SLACK: usize = 2048;

/// How the transport fills the read buffer handed to
/// [`Connection::handle_read`], which decides whether a frame may take the
/// whole buffer over as its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadStrategy {
    /// One read buffer is reused for every read (the default): payloads are
    /// split off it, and the reader gets the memory back once they are
    /// dropped.
    #[default]
    Reuse,
    /// Reads of at most `max` bytes arrive in buffers allocated to their
    /// exact size (the tokio layer reads small messages through a stack
    /// buffer this way, so waiting connections hold no read buffer). A
    /// frame that is such a whole buffer takes it over as its payload,
    /// without a shared header; larger buffers stay with the reader, which
    /// reuses them once the payload is dropped. The reader also makes room
    /// for a frame whose remaining bytes ([`Connection::read_hint`]) exceed
    /// `max`: [`Connection::handle_read`] does not grow the buffer for it.
    ExactSmallReads {
        /// The largest read that arrives in an exact-size buffer.
        max: usize,
    },
}

/// Outgoing bytes: a queue of chunks plus a contiguous tail that small frames
/// are appended to.
///
/// A frame queued into an empty buffer by a server is not copied at all: its
/// header is kept inline and its payload by reference (the "lone" frame),
/// and it is written with a vectored write. This is the whole of the
/// traffic of a request/response connection, which so costs no allocation
/// and no copy on the way out. A second frame moves the lone one into the
/// tail first, so runs of small frames still go out as one buffer.
#[derive(Debug, Default)]
pub struct WriteBuffer {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
    /// The lone frame's header (`head[head_at..head_len]` still to write).
    head: [u8; MAX_HEADER_LEN],
    head_at: u8,
    head_len: u8,
    /// The lone frame's unwritten payload.
    body: Bytes,
}

impl WriteBuffer {
    /// An empty buffer (no allocation until used).
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting to be written.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
    }

    fn has_lone(&self) -> bool {
        self.head_len != 0
    }

    /// Moves the lone frame's unwritten bytes into the (empty) tail, or a
    /// large payload into the chunk queue by reference; `extra` is room to
    /// reserve for the frame about to follow.
    fn spill_lone(&mut self, extra: usize) {
        let head = &self.head[self.head_at as usize..self.head_len as usize];
        let body = std::mem::take(&mut self.body);
        if body.len() > COPY_THRESHOLD {
            self.tail = BytesMut::from(head);
            self.seal_tail();
            self.chunks.push_back(body);
        } else {
            self.tail = BytesMut::with_capacity(head.len() + body.len() + extra);
            self.tail.put_slice(head);
            self.tail.put_slice(&body);
        }
        self.head_len = 0;
        self.head_at = 0;
    }

    fn push_frame(&mut self, frame: Frame, mask: Option<[u8; 4]>) {
        let header = FrameHeader {
            fin: frame.fin,
            rsv: frame.rsv,
            opcode: frame.opcode,
            mask,
            payload_len: frame.payload.len() as u64,
        };
        let mut hdr = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut hdr);
        let size = n + frame.payload.len();
        if self.len == 0 && mask.is_none() {
            // Nothing queued: keep this frame as the lone one (see above).
            self.head = hdr;
            self.head_at = 0;
            self.head_len = n as u8;
            self.body = frame.payload;
            self.len = size;
            return;
        }
        let small = mask.is_some() || frame.payload.len() <= COPY_THRESHOLD;
        if self.has_lone() {
            self.spill_lone(if small { size } else { n });
        }
        self.len += size;
        if self.tail.capacity() == 0 && small {
            // A drained buffer holds nothing (see `advance`): allocate for
            // this frame directly.
            self.tail = BytesMut::with_capacity(size);
        }
        match mask {
            Some(key) => {
                // Masking needs a private copy; mask it in place in the tail.
                self.tail.reserve(size);
                self.tail.put_slice(&hdr[..n]);
                let start = self.tail.len();
                self.tail.put_slice(&frame.payload);
                apply_mask(&mut self.tail[start..], key);
            }
            None if small => {
                self.tail.reserve(size);
                self.tail.put_slice(&hdr[..n]);
                self.tail.put_slice(&frame.payload);
            }
            None => {
                self.tail.put_slice(&hdr[..n]);
                self.seal_tail();
                self.chunks.push_back(frame.payload);
            }
        }
    }

    /// Queues one frame whose payload is `prefix` followed by `payload`
    /// (see [`Connection::send_binary_prefixed`]). Without a mask, a payload
    /// above the copy threshold is queued by reference behind a chunk
    /// holding the header and the prefix: it is never copied. With a mask
    /// (client role) the frame is copied into the tail and masked there, as
    /// every masked frame is: masking in the caller's `Bytes` would change
    /// memory the caller may share.
    fn push_prefixed(
        &mut self,
        opcode: OpCode,
        prefix: &[u8],
        payload: Bytes,
        mask: Option<[u8; 4]>,
    ) {
        let total = prefix.len() + payload.len();
        let header = FrameHeader {
            fin: true,
            rsv: Rsv::empty(),
            opcode,
            mask,
            payload_len: total as u64,
        };
        let mut hdr = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut hdr);
        let size = n + total;
        let small = mask.is_some() || total <= COPY_THRESHOLD;
        if self.has_lone() {
            self.spill_lone(if small { size } else { n + prefix.len() });
        }
        self.len += size;
        if self.tail.capacity() == 0 {
            self.tail = BytesMut::with_capacity(if small { size } else { n + prefix.len() });
        }
        self.tail
            .reserve(if small { size } else { n + prefix.len() });
        self.tail.put_slice(&hdr[..n]);
        let start = self.tail.len();
        self.tail.put_slice(prefix);
        if small {
            self.tail.put_slice(&payload);
            if let Some(key) = mask {
                apply_mask(&mut self.tail[start..], key);
            }
        } else {
            self.seal_tail();
            self.chunks.push_back(payload);
        }
    }

    /// The pending bytes when they are one contiguous run (the common case
    /// of small frames), so the writer can skip building an I/O vector.
    #[inline]
    pub fn contiguous(&self) -> Option<&[u8]> {
        if self.has_lone() {
            return self.body.is_empty().then(|| self.lone_head());
        }
        self.chunks.is_empty().then_some(&self.tail[..])
    }

    fn lone_head(&self) -> &[u8] {
        &self.head[self.head_at as usize..self.head_len as usize]
    }

    /// Fills `dst` with slices of the pending bytes, in order; returns how many.
    pub fn chunks<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        if self.has_lone() {
            for part in [self.lone_head(), &self.body[..]] {
                if n < dst.len() && !part.is_empty() {
                    dst[n] = IoSlice::new(part);
                    n += 1;
                }
            }
            return n;
        }
        for c in &self.chunks {
            if n == dst.len() {
                return n;
            }
            dst[n] = IoSlice::new(c);
            n += 1;
        }
        if n < dst.len() && !self.tail.is_empty() {
            dst[n] = IoSlice::new(&self.tail);
            n += 1;
        }
        n
    }

    /// Copies up to `dst.len()` pending bytes from the front into `dst`
    /// (without consuming them) and returns them. For writers that cannot
    /// write vectors, so the lone frame still goes out in one write.
    pub fn copy_front<'a>(&self, dst: &'a mut [MaybeUninit<u8>]) -> &'a [u8] {
        let mut n = 0;
        let mut put = |part: &[u8]| {
            let m = part.len().min(dst.len() - n);
            // SAFETY: `MaybeUninit<u8>` has the layout of `u8`; writing
            // initialized bytes into it is always sound.
            let src: &[MaybeUninit<u8>] =
                unsafe { std::slice::from_raw_parts(part.as_ptr().cast(), m) };
            dst[n..n + m].copy_from_slice(src);
            n += m;
        };
        if self.has_lone() {
            // The case this is for: two parts, no I/O vector to build.
            put(self.lone_head());
            put(&self.body);
        } else {
            let mut slices = [IoSlice::new(&[]); 2];
            let k = self.chunks(&mut slices);
            for s in &slices[..k] {
                put(s);
            }
        }
        // SAFETY: the first `n` bytes were just initialized by `put`.
        unsafe { std::slice::from_raw_parts(dst.as_ptr().cast(), n) }
    }

    /// Whether the pending bytes are the lone frame only (a header and a
    /// payload in two places).
    #[inline]
    pub fn is_lone(&self) -> bool {
        self.has_lone()
    }

    /// Marks `n` bytes as written.
    pub fn advance(&mut self, mut n: usize) {
        self.len -= n;
        if self.has_lone() {
            let head = (self.head_len - self.head_at) as usize;
            if n < head {
                self.head_at += n as u8;
                return;
            }
            self.head_at = self.head_len;
            self.body.advance(n - head);
            if self.len == 0 {
                self.head_len = 0;
                self.head_at = 0;
                self.body = Bytes::new();
            }
            return;
        }
        while n > 0 {
            match self.chunks.front_mut() {
                Some(c) if c.len() <= n => {
                    n -= c.len();
                    self.chunks.pop_front();
                }
                Some(c) => {
                    c.advance(n);
                    return;
                }
                None => {
                    self.tail.advance(n);
                    n = 0;
                }
            }
        }
        if self.len == 0 {
            // Let an idle connection hold no buffer.
            self.tail = BytesMut::new();
            if self.chunks.capacity() > 64 {
                self.chunks = VecDeque::new();
            }
        }
    }
}

/// Progress on a frame whose payload has only partly arrived.
#[derive(Debug, Default)]
struct Partial {
    /// Payload bytes already unmasked in place.
    unmasked: usize,
    /// For plain text: a validator fed with the unmasked bytes so far, so
    /// invalid UTF-8 fails the connection before the frame is complete
    /// (Autobahn 6.4.3/6.4.4). The session goes on from it when the frame
    /// is complete, so every byte is validated once.
    utf8: Option<Utf8Validator>,
}

/// A [`Session`] plus the wire codec for one physical connection.
#[derive(Debug)]
pub struct Connection {
    session: Session,
    max_frame_size: usize,
    /// See [`ReadStrategy::ExactSmallReads`]; 0 for [`ReadStrategy::Reuse`].
    take_max: usize,
    need: usize,
    partial: Option<Partial>,
}

impl Connection {
    /// Wraps a session; `config` supplies the frame limit.
    pub fn new(session: Session, config: &Config) -> Self {
        Connection {
            session,
            max_frame_size: config.max_frame_size,
            take_max: 0,
            need: 2,
            partial: None,
        }
    }

    /// Tells the connection how its read buffers are filled (default
    /// [`ReadStrategy::Reuse`]).
    pub fn set_read_strategy(&mut self, strategy: ReadStrategy) {
        self.take_max = match strategy {
            ReadStrategy::Reuse => 0,
            ReadStrategy::ExactSmallReads { max } => max,
        };
    }

    /// The session, read-only (state, role, deadlines).
    ///
    /// ```
    /// use weft_core::{CloseState, Config, Connection, Role, Session};
    /// let cfg = Config::default();
    /// let conn = Connection::new(Session::new(Role::Client, &cfg), &cfg);
    /// // A shared borrow is enough to look.
    /// assert_eq!(conn.session().state(), CloseState::Open);
    /// ```
    #[inline]
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, for application commands (send, ping, close) and
    /// timer input.
    #[inline]
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Lower bound on the bytes the next call to `handle_read` needs.
    #[inline]
    pub fn read_hint(&self) -> usize {
        self.need
    }

    /// Parses frames from the front of `buf` and feeds them to the session
    /// until a message is complete (`Ok(Some)`) or more bytes are needed
    /// (`Ok(None)`). Consumed bytes are removed from `buf`; payloads are
    /// unmasked in place and split off without copying.
    ///
    /// On an error the session has already queued the failing Close frame.
    pub fn handle_read(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        loop {
            if self.session.is_finished() {
                // Nothing is processed after the peer's Close or a failure.
                buf.clear();
                return Ok(None);
            }
            let (frame, utf8) = match self.parse_frame(buf) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.session.fail(&e);
                    return Err(e);
                }
            };
            if let Some(msg) = self.session.handle_checked(frame, utf8)? {
                return Ok(Some(msg));
            }
        }
    }

    /// The next complete frame, with the UTF-8 validator of a plain text
    /// frame that arrived in pieces (and how many payload bytes it saw).
    #[allow(clippy::type_complexity)]
    fn parse_frame(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<(Frame, Option<(Utf8Validator, usize)>)>, ProtocolError> {
        if buf.len() < 2 {
            // The common "drained" case, without building a parse result.
            self.need = 2 - buf.len();
            return Ok(None);
        }
        let (header, header_len) = match FrameHeader::parse(buf)? {
            HeaderParse::Complete(h, n) => (h, n),
            HeaderParse::Incomplete(n) => {
                self.need = n;
                return Ok(None);
            }
        };
        match (self.session.role(), header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        // RSV bits no extension declared, an oversized frame and (without
        // decoding extensions) an oversized message fail before the payload
        // is read.
        self.session.check_rsv(&header)?;
        if header.payload_len > self.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge {
                size: header.payload_len,
                max: self.max_frame_size,
            });
        }
        self.session.check_size(&header)?;
        let len = header.payload_len as usize;
        let total = header_len + len;
        if buf.len() < total {
            self.need = total - buf.len();
            self.check_partial(&header, &mut buf[header_len..])?;
            // A little more than the frame needs: the read that completes it
            // then does not fill the buffer exactly, and a reader that got
            // less than it offered knows the socket is drained without
            // another read (tokio clears readiness on a short read). A
            // reader with ReadStrategy::ExactSmallReads finds the room for
            // frames past its small reads itself (`read_hint`), so that it
            // can reuse buffers of earlier frames.
            if self.take_max == 0 || self.need <= self.take_max {
                buf.reserve(self.need + READ_SLACK);
            }
            return Ok(None);
        }
        let mut payload = if total == buf.len() && buf.capacity() == total && total <= self.take_max
        {
            // The frame is the whole (small) buffer, allocated to fit
            // (ReadStrategy::ExactSmallReads): take it over, so it becomes
            // the payload without a shared header. Larger buffers stay with
            // the reader, which reuses them once the payload is dropped
            // (taking those would make every large frame start a new
            // buffer).
            let mut all = std::mem::take(buf);
            all.advance(header_len);
            all
        } else {
            buf.advance(header_len);
            buf.split_to(len)
        };
        let (done, utf8) = match self.partial.take() {
            Some(p) => (p.unmasked, p.utf8.map(|v| (v, p.unmasked))),
            None => (0, None),
        };
        if let Some(key) = header.mask {
            apply_mask_at(&mut payload[done..], key, done);
        }
        self.need = 2;
        let frame = Frame {
            fin: header.fin,
            rsv: header.rsv,
            opcode: header.opcode,
            payload: payload.freeze(),
        };
        Ok(Some((frame, utf8)))
    }

    /// Unmasks and, for plain text, validates the part of an incomplete
    /// frame's payload that has arrived.
    fn check_partial(
        &mut self,
        header: &FrameHeader,
        available: &mut [u8],
    ) -> Result<(), ProtocolError> {
        if header.opcode.is_control() || available.is_empty() {
            return Ok(());
        }
        let session = &self.session;
        let partial = self.partial.get_or_insert_with(|| Partial {
            unmasked: 0,
            utf8: session.text_validator_for(header.opcode),
        });
        let new = &mut available[partial.unmasked..];
        if new.is_empty() {
            return Ok(());
        }
        if let Some(key) = header.mask {
            apply_mask_at(new, key, partial.unmasked);
        }
        partial.unmasked += new.len();
        if let Some(v) = &mut partial.utf8 {
            v.feed(new, false).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// Sends a whole data message (`Text` or `Binary`) and moves it into
    /// `out`: the same frames, in the same order, as
    /// [`Session::send`] followed by [`poll_transmit`](Self::poll_transmit).
    /// When the session would queue the message as one frame exactly as
    /// given, behind nothing, it goes into `out`
    /// directly, without the session's frame queue.
    pub fn send_message(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        hints: &SendHints,
        out: &mut WriteBuffer,
    ) -> Result<(), SendError> {
        debug_assert!(matches!(opcode, OpCode::Text | OpCode::Binary));
        if self.session.sends_as_is(payload.len()) {
            let mask = self.mask_key();
            let frame = Frame {
                fin: true,
                rsv: Rsv::empty(),
                opcode,
                payload,
            };
            out.push_frame(frame, mask);
            return Ok(());
        }
        self.session.send(opcode, payload, hints)?;
        self.poll_transmit(out);
        Ok(())
    }

    /// Sends a whole data message already encoded for this connection's
    /// broadcast group (see [`Session::send_prepared`]) and moves it into
    /// `out`; like [`send_message`](Self::send_message), a message that is
    /// one frame behind nothing goes into `out` directly.
    pub fn send_prepared(
        &mut self,
        opcode: OpCode,
        rsv: Rsv,
        payload: Bytes,
        out: &mut WriteBuffer,
    ) -> Result<(), SendError> {
        if self.session.prepared_as_is(payload.len()) {
            self.session.note_prepared(rsv);
            let mask = self.mask_key();
            let frame = Frame {
                fin: true,
                rsv,
                opcode,
                payload,
            };
            out.push_frame(frame, mask);
            return Ok(());
        }
        self.session.send_prepared(opcode, rsv, payload)?;
        self.poll_transmit(out);
        Ok(())
    }

    /// Sends one whole binary message made of `prefix` followed by
    /// `payload` and moves it into `out`, without joining the two: a server
    /// queues a large `payload` by reference (the write is vectored), so its
    /// bytes are never copied; a client copies it once, masking as it goes
    /// (RFC 6455 §5.3 masks every client frame, and the caller's `Bytes` may
    /// be shared, so it is not masked in place). For short framing headers
    /// in front of a large body, such as a multiplexer's channel ID.
    ///
    /// When the session would not send the message as one frame exactly as
    /// given (an extension encodes data, the message exceeds the frame size,
    /// frames are queued before it, a streamed message is in progress), the
    /// two parts are joined (one copy) and sent as
    /// [`send_message`](Self::send_message) sends them, so the result on the
    /// wire is always that of sending the joined message.
    pub fn send_binary_prefixed(
        &mut self,
        prefix: &[u8],
        payload: Bytes,
        out: &mut WriteBuffer,
    ) -> Result<(), SendError> {
        let total = prefix.len() + payload.len();
        if self.session.sends_as_is(total) {
            let mask = self.mask_key();
            out.push_prefixed(OpCode::Binary, prefix, payload, mask);
            return Ok(());
        }
        let mut joined = BytesMut::with_capacity(total);
        joined.put_slice(prefix);
        joined.put_slice(&payload);
        self.send_message(OpCode::Binary, joined.freeze(), &SendHints::default(), out)
    }

    /// Moves every queued frame into `out`, masking with fresh random keys on
    /// a client. Returns true if anything was added.
    #[inline]
    pub fn poll_transmit(&mut self, out: &mut WriteBuffer) -> bool {
        // Called on every turn of the I/O loop; usually nothing is queued.
        self.session.has_output() && self.transmit(out)
    }

    /// A fresh random masking key on a client (RFC 6455 §5.3), none on a
    /// server.
    #[inline]
    fn mask_key(&self) -> Option<[u8; 4]> {
        (self.session.role() == Role::Client).then(rand::random::<[u8; 4]>)
    }

    fn transmit(&mut self, out: &mut WriteBuffer) -> bool {
        let mut any = false;
        while let Some(frame) = self.session.poll_frame() {
            out.push_frame(frame, self.mask_key());
            any = true;
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OpCode, ext::SendHints};

    fn drain(out: &WriteBuffer) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = out.chunks(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn server_writes_rfc_vectors() {
        let cfg = Config::default();
        let mut c = Connection::new(Session::new(Role::Server, &cfg), &cfg);
        c.session_mut()
            .send(
                OpCode::Text,
                Bytes::from_static(b"Hello"),
                &SendHints::default(),
            )
            .unwrap();
        c.session_mut().ping(Bytes::from_static(b"Hello")).unwrap();
        c.session_mut()
            .send(
                OpCode::Binary,
                Bytes::from(vec![7u8; 65536]),
                &SendHints::default(),
            )
            .unwrap();
        let mut out = WriteBuffer::new();
        assert!(c.poll_transmit(&mut out));
        let bytes = drain(&out);
        assert_eq!(&bytes[..7], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(&bytes[7..14], &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(&bytes[14..24], &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(bytes.len(), 24 + 65536);
        let total = out.len();
        out.advance(total);
        assert!(out.is_empty());
    }

    fn hints() -> SendHints {
        SendHints::default()
    }

    /// `send_message` of a static payload with default hints.
    fn send(
        c: &mut Connection,
        opcode: OpCode,
        payload: &'static [u8],
        out: &mut WriteBuffer,
    ) -> Result<(), SendError> {
        c.send_message(opcode, Bytes::from_static(payload), &hints(), out)
    }

    #[test]
    fn send_message_writes_what_the_session_queue_writes() {
        let cfg = Config::default();
        for len in [0usize, 5, 125, 126, 4096, 4097, 70_000] {
            let payload = Bytes::from(vec![9u8; len]);
            let mut direct = Connection::new(Session::new(Role::Server, &cfg), &cfg);
            let mut a = WriteBuffer::new();
            direct
                .send_message(OpCode::Binary, payload.clone(), &hints(), &mut a)
                .unwrap();
            assert!(!direct.session().has_output(), "len {len}");
            let mut queued = Connection::new(Session::new(Role::Server, &cfg), &cfg);
            queued
                .session_mut()
                .send(OpCode::Binary, payload, &hints())
                .unwrap();
            let mut b = WriteBuffer::new();
            assert!(queued.poll_transmit(&mut b));
            assert_eq!(drain(&a), drain(&b), "len {len}");
            assert_eq!(drain(&a), wire(&vec![9u8; len]), "len {len}");
        }
    }

    #[test]
    fn send_message_goes_behind_frames_already_queued() {
        let cfg = Config::default();
        let mut c = Connection::new(Session::new(Role::Server, &cfg), &cfg);
        // A Pong the session queued (say, for a Ping just read) goes first.
        c.session_mut().pong(Bytes::from_static(b"p")).unwrap();
        let mut out = WriteBuffer::new();
        send(&mut c, OpCode::Text, b"Hello", &mut out).unwrap();
        send(&mut c, OpCode::Binary, b"!", &mut out).unwrap();
        assert_eq!(
            drain(&out),
            [
                &[0x8a, 0x01, b'p'][..],
                &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o'],
                &[0x82, 0x01, b'!'],
            ]
            .concat()
        );
    }

    #[test]
    fn send_message_fragments_and_refuses_as_send_does() {
        let cfg = Config::default().send_frame_size(4);
        let mut c = Connection::new(Session::new(Role::Server, &cfg), &cfg);
        let mut out = WriteBuffer::new();
        // Four bytes fit one frame; ten are split at the frame size.
        send(&mut c, OpCode::Binary, b"abcd", &mut out).unwrap();
        send(&mut c, OpCode::Text, b"abcdefghij", &mut out).unwrap();
        assert_eq!(
            drain(&out),
            [
                &[0x82, 0x04, b'a', b'b', b'c', b'd'][..],
                &[0x01, 0x04, b'a', b'b', b'c', b'd'],
                &[0x00, 0x04, b'e', b'f', b'g', b'h'],
                &[0x80, 0x02, b'i', b'j'],
            ]
            .concat()
        );
        // Inside a streamed message: refused, nothing written.
        let before = out.len();
        c.session_mut()
            .send_fragment(OpCode::Binary, Bytes::from_static(b"x"), false, &hints())
            .unwrap();
        assert_eq!(
            send(&mut c, OpCode::Binary, b"y", &mut out),
            Err(SendError::FragmentOrder)
        );
        c.session_mut()
            .send_fragment(OpCode::Continuation, Bytes::new(), true, &hints())
            .unwrap();
        c.poll_transmit(&mut out);
        assert_eq!(out.len(), before + 3 + 2);
        // After Close: refused.
        c.session_mut()
            .close(None, std::time::Instant::now())
            .unwrap();
        assert_eq!(
            send(&mut c, OpCode::Binary, b"z", &mut out),
            Err(SendError::Closed)
        );
    }

    #[test]
    fn client_send_message_is_masked_and_reads_back() {
        let cfg = Config::default();
        let mut client = Connection::new(Session::new(Role::Client, &cfg), &cfg);
        let mut out = WriteBuffer::new();
        let text = "h\u{e9}llo w\u{f6}rld";
        client
            .send_message(OpCode::Text, Bytes::from(text), &hints(), &mut out)
            .unwrap();
        let wire = drain(&out);
        assert_eq!(wire[0], 0x81);
        assert_eq!(wire[1], 0x80 | text.len() as u8, "masked, 7-bit length");
        let mut server = Connection::new(Session::new(Role::Server, &cfg), &cfg);
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(
            server.handle_read(&mut buf).unwrap(),
            Some(Message::text(text))
        );
    }

    fn binary(payload: Vec<u8>) -> Frame {
        Frame {
            fin: true,
            rsv: Default::default(),
            opcode: OpCode::Binary,
            payload: Bytes::from(payload),
        }
    }

    /// Expected wire bytes of a server binary frame.
    fn wire(payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader {
            fin: true,
            rsv: Default::default(),
            opcode: OpCode::Binary,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut hdr = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut hdr);
        [&hdr[..n], payload].concat()
    }

    #[test]
    fn lone_frame_is_written_without_a_copy() {
        let payload = Bytes::from(vec![5u8; 300]);
        let ptr = payload.as_ptr();
        let mut out = WriteBuffer::new();
        out.push_frame(
            Frame {
                fin: true,
                rsv: Default::default(),
                opcode: OpCode::Binary,
                payload,
            },
            None,
        );
        assert!(out.is_lone());
        assert_eq!(out.contiguous(), None);
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(out.chunks(&mut slices), 2);
        assert_eq!(&slices[0][..], &[0x82, 126, 1, 44]);
        assert_eq!(slices[1].as_ptr(), ptr, "the payload is not copied");
        let mut joined = [MaybeUninit::uninit(); 512];
        assert_eq!(out.copy_front(&mut joined), &wire(&[5u8; 300])[..]);
        // A destination shorter than the header, and one ending in the payload.
        let mut short = [MaybeUninit::uninit(); 2];
        assert_eq!(out.copy_front(&mut short), &wire(&[5u8; 300])[..2]);
        let mut part = [MaybeUninit::uninit(); 100];
        assert_eq!(out.copy_front(&mut part), &wire(&[5u8; 300])[..100]);
        // Partial writes inside the header, then inside the payload.
        out.advance(1);
        assert_eq!(drain(&out), wire(&[5u8; 300])[1..].to_vec());
        out.advance(200);
        assert_eq!(out.len(), 103);
        assert_eq!(drain(&out), vec![5u8; 103]);
        out.advance(103);
        assert!(out.is_empty() && !out.is_lone());
    }

    #[test]
    fn a_second_frame_moves_the_lone_one_into_the_queue() {
        for (first, second) in [(10usize, 20usize), (10_000, 20), (10, 10_000), (0, 0)] {
            let a: Vec<u8> = (0..first).map(|i| i as u8).collect();
            let b: Vec<u8> = (0..second).map(|i| (i * 7) as u8).collect();
            let mut out = WriteBuffer::new();
            out.push_frame(binary(a.clone()), None);
            // Part of the lone frame is already out when the next arrives.
            out.advance(1);
            out.push_frame(binary(b.clone()), None);
            assert!(!out.is_lone());
            let mut expected = wire(&a)[1..].to_vec();
            expected.extend_from_slice(&wire(&b));
            assert_eq!(out.len(), expected.len(), "{first}/{second}");
            assert_eq!(drain(&out), expected, "{first}/{second}");
            let mut front = [MaybeUninit::uninit(); 64];
            let k = expected.len().min(64);
            assert_eq!(
                out.copy_front(&mut front),
                &expected[..k],
                "{first}/{second}"
            );
            let total = out.len();
            out.advance(total);
            assert!(out.is_empty());
            // Drained: the next frame is a lone one again.
            out.push_frame(binary(b.clone()), None);
            assert!(out.is_lone());
            assert_eq!(drain(&out), wire(&b));
        }
    }

    #[test]
    fn prefixed_send_is_the_joined_message_and_does_not_copy_large_payloads() {
        let cfg = Config::default();
        let prefix = [0x81u8, 0x02, 0x82];
        for len in [0usize, 5, 120, 4093, 4094, 70_000] {
            let body: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let payload = Bytes::from(body.clone());
            let ptr = payload.as_ptr();
            let mut c = Connection::new(Session::new(Role::Server, &cfg), &cfg);
            let mut out = WriteBuffer::new();
            // Behind a lone frame, so that path is covered too.
            send(&mut c, OpCode::Text, b"hi", &mut out).unwrap();
            c.send_binary_prefixed(&prefix, payload, &mut out).unwrap();
            let joined = [&prefix[..], &body].concat();
            let expected = [&[0x81, 0x02, b'h', b'i'][..], &wire(&joined)].concat();
            assert_eq!(out.len(), expected.len(), "{len}");
            assert_eq!(drain(&out), expected, "{len}");
            let mut slices = [IoSlice::new(&[]); 8];
            let n = out.chunks(&mut slices);
            let by_reference = slices[..n]
                .iter()
                .any(|s| s.as_ptr() == ptr && s.len() == len);
            // Above the copy threshold (prefix + payload), the payload is
            // queued by reference.
            assert_eq!(by_reference, len + prefix.len() > COPY_THRESHOLD, "{len}");
            let total = out.len();
            out.advance(total);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn client_prefixed_send_is_masked_and_reads_back() {
        let cfg = Config::default();
        for len in [3usize, 10_000] {
            let body: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut client = Connection::new(Session::new(Role::Client, &cfg), &cfg);
            let mut out = WriteBuffer::new();
            client
                .send_binary_prefixed(b"\x05\x82", Bytes::from(body.clone()), &mut out)
                .unwrap();
            let wire = drain(&out);
            assert_eq!(wire[0], 0x82);
            assert_eq!(wire[1] & 0x80, 0x80, "masked");
            let mut server = Connection::new(Session::new(Role::Server, &cfg), &cfg);
            let mut buf = BytesMut::from(&wire[..]);
            assert_eq!(
                server.handle_read(&mut buf).unwrap(),
                Some(Message::binary([&b"\x05\x82"[..], &body].concat()))
            );
        }
    }

    #[test]
    fn prefixed_send_falls_back_to_the_joined_message() {
        // Larger than the frame size: fragmented exactly as the joined
        // message would be.
        let cfg = Config::default().send_frame_size(4);
        let mut c = Connection::new(Session::new(Role::Server, &cfg), &cfg);
        let mut out = WriteBuffer::new();
        c.send_binary_prefixed(b"ab", Bytes::from_static(b"cdefg"), &mut out)
            .unwrap();
        assert_eq!(
            drain(&out),
            [
                &[0x02, 0x04, b'a', b'b', b'c', b'd'][..],
                &[0x80, 0x03, b'e', b'f', b'g'],
            ]
            .concat()
        );
        // After Close: refused like any send.
        c.session_mut()
            .close(None, std::time::Instant::now())
            .unwrap();
        assert_eq!(
            c.send_binary_prefixed(b"a", Bytes::new(), &mut out),
            Err(SendError::Closed)
        );
    }

    #[test]
    fn client_frames_are_never_lone() {
        let mut out = WriteBuffer::new();
        out.push_frame(binary(vec![1, 2, 3]), Some([1, 2, 3, 4]));
        assert!(!out.is_lone());
        assert_eq!(drain(&out), vec![0x82, 0x83, 1, 2, 3, 4, 0, 0, 0]);
    }

    #[test]
    fn server_reads_masked_and_fragmented_vectors() {
        let cfg = Config::default();
        let mut c = Connection::new(Session::new(Role::Server, &cfg), &cfg);
        let mut buf = BytesMut::from(
            &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ][..],
        );
        assert_eq!(
            c.handle_read(&mut buf).unwrap(),
            Some(Message::text("Hello"))
        );
        assert!(buf.is_empty());

        let mut c = Connection::new(Session::new(Role::Client, &cfg), &cfg);
        let mut buf = BytesMut::from(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c][..]);
        assert_eq!(c.handle_read(&mut buf).unwrap(), None);
        assert_eq!(c.read_hint(), 1);
        buf.put_u8(0x6f);
        assert_eq!(
            c.handle_read(&mut buf).unwrap(),
            Some(Message::text("Hello"))
        );
    }
}
