//! Sending a binary message as a short prefix plus a shared payload,
//! without joining them (see [`Connection::send_binary_prefixed`]).
//!
//! Kept apart from `mod.rs` (like `prepared.rs`): it only adds methods built
//! on the queueing and polling the rest of the io layer already has.
//!
//! [`Connection::send_binary_prefixed`]: crate::proto::Connection::send_binary_prefixed

use super::{Phase, WebSocket};
use crate::error::Error;
use bytes::Bytes;
use std::future::poll_fn;
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Queues one binary message whose payload is `prefix` followed by
    /// `payload`, without copying `payload` into a joined buffer: a server
    /// writes a large `payload` by reference with a vectored write; a client
    /// copies it once into the write buffer, masking it there (client frames
    /// must be masked and the `Bytes` may be shared, so it is not masked in
    /// place). Small messages (up to 4 KiB) are copied next to their header,
    /// as every small frame is. Where the connection would not send the
    /// message as one plain frame (an extension, the frame size), the parts
    /// are joined and sent as [`feed`](Self::feed) sends a message. Waits
    /// only for backpressure, like `feed`; call [`flush`](Self::flush) to
    /// write.
    ///
    /// Made for framing headers in front of large bodies, such as a
    /// multiplexer's channel ID and inner frame header.
    pub async fn feed_binary_prefixed(
        &mut self,
        prefix: &[u8],
        payload: Bytes,
    ) -> Result<(), Error> {
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        self.start_send_binary_prefixed(prefix, payload)
    }

    /// [`feed_binary_prefixed`](Self::feed_binary_prefixed) without waiting:
    /// for poll-based callers, after `Sink::poll_ready` returned ready (it
    /// queues regardless of backpressure, like `Sink::start_send`).
    pub fn start_send_binary_prefixed(
        &mut self,
        prefix: &[u8],
        payload: Bytes,
    ) -> Result<(), Error> {
        if !matches!(self.phase, Phase::Open) {
            return Err(Error::Closed);
        }
        self.mark_active();
        let len = (prefix.len() + payload.len()) as u64;
        self.conn
            .send_binary_prefixed(prefix, payload, &mut self.write_buf)?;
        self.count_sent(len, true);
        Ok(())
    }
}
