//! The error type of the client library.

use crate::frame::{ErrorCode, ErrorFrame, FrameError};

/// What can go wrong for a [`Client`](crate::Client).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The WebSocket connection failed (handshake refused, I/O error, ...).
    #[error("WebSocket: {0}")]
    WebSocket(#[from] weft_core::Error),
    /// A frame could not be built locally (an invalid destination, a body
    /// over the limit, ...); nothing was sent.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The broker refused the request with an ERROR.
    #[error("the broker refused the request: {} {}", .0.code, .0.message)]
    Broker(ErrorFrame),
    /// The server accepted the WebSocket without selecting the broker's
    /// subprotocol (it is not a weft-broker).
    #[error("the server did not select the subprotocol {0}")]
    NoProtocol(&'static str),
    /// The connection to the broker is closed.
    #[error("the broker connection is closed")]
    Closed,
}

impl Error {
    /// The ERROR code, for a refusal by the broker or a local frame error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Broker(e) => Some(e.code),
            Error::Frame(e) => Some(e.code()),
            _ => None,
        }
    }
}
