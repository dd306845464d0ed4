//! The error type of the I/O layer and of the crate's convenience APIs.

use crate::handshake::HandshakeError;
use crate::proto::{ProtocolError, SendError};

/// Everything that can go wrong on a WebSocket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer violated the protocol; the connection was failed with
    /// [`ProtocolError::close_code`].
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The opening handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// An application command was refused.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The transport closed without a closing handshake (close code 1006).
    #[error("connection closed without a closing handshake")]
    AbnormalClosure,
    /// The connection is closed; no more messages can be sent or received.
    #[error("connection closed")]
    Closed,
    /// No Pong arrived within [`Config::keepalive_timeout`] of a keepalive
    /// Ping: the connection was closed with 1011.
    ///
    /// [`Config::keepalive_timeout`]: crate::Config::keepalive_timeout
    #[error("keepalive timeout: no Pong within {0:?}")]
    KeepaliveTimeout(std::time::Duration),
    /// [`WebSocket::close`](crate::WebSocket::close) could not write its
    /// Close within [`Config::close_timeout`] (the peer stopped reading);
    /// the transport was given up.
    ///
    /// [`Config::close_timeout`]: crate::Config::close_timeout
    #[error("close timeout: the Close could not be written within {0:?}")]
    CloseTimeout(std::time::Duration),
    /// The server's [`Shutdown::drain`](crate::Shutdown::drain) grace period
    /// ended before this connection closed; it was dropped without flushing.
    #[error("server shutdown: grace period over, connection aborted")]
    ShutdownAborted,
}

impl Error {
    /// The protocol error, if this is one.
    pub fn as_protocol(&self) -> Option<&ProtocolError> {
        match self {
            Error::Protocol(p) => Some(p),
            _ => None,
        }
    }
}
