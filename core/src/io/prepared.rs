//! Sending [`PreparedMessage`]s, and the connection loop of a
//! [`Subscription`] (see [`crate::broadcast`]).
//!
//! Kept apart from `mod.rs`: it only adds methods built on the queueing and
//! polling the rest of the io layer already has.

use super::{Phase, WebSocket};
use crate::broadcast::Subscription;
use crate::error::Error;
use crate::ext::SendHints;
use crate::prepared::{BroadcastEncoding, PreparedMessage};
use crate::proto::{CloseCode, CloseFrame, CloseState, Message, SendError};
use std::future::poll_fn;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// How prepared messages are encoded for this connection: its
    /// broadcast group (see [`BroadcastEncoding`]).
    pub fn broadcast_encoding(&self) -> BroadcastEncoding {
        self.conn.session().broadcast_encoding()
    }

    /// Queues a prepared message (see [`PreparedMessage`]): its encoding for
    /// this connection's group is made on first use and shared, so
    /// the payload is neither encoded again nor copied (servers send it by
    /// reference; clients mask it into the write buffer). Waits only for
    /// backpressure, like [`feed`](Self::feed).
    pub async fn feed_prepared(&mut self, msg: &PreparedMessage) -> Result<(), Error> {
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        self.queue_prepared(msg)
    }

    /// [`feed_prepared`](Self::feed_prepared), then flush.
    pub async fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), Error> {
        self.feed_prepared(msg).await?;
        self.flush().await
    }

    pub(crate) fn queue_prepared(&mut self, msg: &PreparedMessage) -> Result<(), Error> {
        if !matches!(self.phase, Phase::Open) {
            return Err(Error::Closed);
        }
        self.mark_active();
        let encoding = self.conn.session().broadcast_encoding();
        let encoded = msg
            .encoded(&encoding)
            .map_err(|e| SendError::Extension(e.into_protocol("broadcast")))?;
        match encoded {
            Some((rsv, payload)) => {
                self.conn
                    .send_prepared(msg.opcode(), rsv, payload, &mut self.write_buf)?
            }
            None => self.conn.send_message(
                msg.opcode(),
                msg.payload().clone(),
                &SendHints::default(),
                &mut self.write_buf,
            )?,
        }
        // The application's bytes, as for `feed`: counted once per
        // connection that queued the message.
        self.count_sent(msg.payload().len() as u64, true);
        Ok(())
    }

    /// One turn of [`Subscription::run`]: delivers queued broadcast
    /// messages while the write buffer has room, reads (handing data
    /// messages to `on_message`), writes. Ready when the connection ends.
    pub(crate) fn poll_subscription(
        &mut self,
        cx: &mut Context<'_>,
        sub: &mut Subscription,
        closing: &mut bool,
        on_message: &mut dyn FnMut(Message),
    ) -> Poll<Result<(), Error>> {
        loop {
            while !*closing {
                let room = matches!(self.phase, Phase::Open)
                    && self.conn.session().state() == CloseState::Open
                    && self.write_buf.len() < self.write_high_water;
                match sub.poll_next(cx, room) {
                    Poll::Ready(Ok(msg)) => match self.queue_prepared(&msg) {
                        Ok(()) => {}
                        Err(Error::Closed | Error::Send(SendError::Closed)) => break,
                        Err(e) => {
                            let code = match &e {
                                Error::Send(SendError::Extension(p)) => p.close_code(),
                                _ => CloseCode::INTERNAL_ERROR,
                            };
                            *closing = true;
                            self.start_close(CloseFrame::new(code, "broadcast encoding failed"));
                        }
                    },
                    Poll::Ready(Err(frame)) => {
                        *closing = true;
                        self.start_close(frame);
                    }
                    Poll::Pending => break,
                }
            }
            match self.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Ok(msg))) => {
                    if msg.is_data() && !*closing {
                        on_message(msg);
                    }
                }
                // The peer went away after our Close: nothing more to do.
                Poll::Ready(Some(Err(Error::AbnormalClosure))) if *closing => {
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn start_close(&mut self, mut frame: CloseFrame) {
        if !frame.code.is_sendable() {
            // A policy configured with a code that may not be sent (1005,
            // 1006...): close anyway, as a policy violation.
            frame.code = CloseCode::POLICY_VIOLATION;
        }
        if self.conn.session().state() == CloseState::Open && matches!(self.phase, Phase::Open) {
            let _ = self.queue(Message::Close(Some(frame)), &SendHints::default());
        }
    }
}
