//! The opening handshake (RFC 6455 §4), sans-I/O.
//!
//! - [`client`]: builds the request from a `ws://` / `wss://` URL or an
//!   `http::Request` ([`IntoClientRequest`]) and validates the
//!   101 response (accept key, Upgrade/Connection, subprotocol, extensions).
//! - [`server`]: parses the request with `httparse` into an
//!   [`http::Request`], validates it, negotiates the subprotocol and
//!   extensions, and produces either the 101 response or an HTTP error
//!   response. Requests already parsed by another server (hyper, axum) go
//!   through the same validation.

pub mod client;
pub mod server;

use base64::Engine as _;
use sha1::{Digest, Sha1};

pub use client::{ClientAccepted, ClientHandshake, ClientOptions, IntoClientRequest, Target};
pub use server::{ServerAccepted, ServerOptions};

use crate::ext::{HeaderSyntaxError, NegotiationError};

/// The GUID appended to the key before hashing (RFC 6455 §1.3).
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2): the
/// base64 SHA-1 of the key as transmitted (trimmed) followed by the GUID.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A fresh random `Sec-WebSocket-Key` (16 random bytes, base64).
pub fn generate_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

/// Why an opening handshake failed. On the server each variant has an HTTP
/// status ([`HandshakeError::status`]) that is sent back before closing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Malformed HTTP or a missing/invalid WebSocket header.
    #[error("bad handshake: {0}")]
    BadRequest(String),
    /// A method other than GET.
    #[error("method {0} not allowed, expected GET")]
    MethodNotAllowed(String),
    /// `Sec-WebSocket-Version` other than 13.
    #[error("unsupported Sec-WebSocket-Version {0:?}, expected 13")]
    UnsupportedVersion(String),
    /// The request or response head exceeded the size or header-count limit.
    #[error("handshake head exceeds the limit of {0} bytes or the header-count limit")]
    TooLarge(usize),
    /// The Origin check refused the request.
    #[error("origin {0:?} not allowed")]
    OriginRejected(Option<String>),
    /// The application refused the request with its own response.
    #[error("request rejected by the application with status {}", .0.status())]
    Rejected(Box<http::Response<String>>),
    /// The server answered with a status other than 101.
    #[error("server answered with HTTP status {0}")]
    Status(http::StatusCode),
    /// The server's 101 response is invalid (accept key, Upgrade, ...).
    #[error("invalid handshake response: {0}")]
    InvalidResponse(String),
    /// The `Sec-WebSocket-Extensions` header is malformed.
    #[error(transparent)]
    ExtensionSyntax(#[from] HeaderSyntaxError),
    /// Extension negotiation failed.
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
    /// The URL is not a valid `ws://` / `wss://` URL (scheme, host, user
    /// info, fragment, or a host that is not a valid TLS server name).
    #[error("invalid WebSocket URL: {0}")]
    InvalidUrl(String),
    /// The client request cannot be sent as given: a header the handshake
    /// sets itself, an invalid header name or value, a subprotocol that is
    /// not a token, a method other than GET (client side; URL problems are
    /// [`InvalidUrl`](Self::InvalidUrl)).
    #[error("invalid WebSocket request: {0}")]
    InvalidRequest(String),
    /// A `wss://` URL in a build without TLS: enable the `rustls` feature
    /// of weft-core, or connect a TLS stream yourself and hand it to
    /// `ClientBuilder::connect_on`.
    #[error(
        "{0}: wss:// needs TLS: enable the \"rustls\" feature of weft-core, \
         or pass a TLS stream to ClientBuilder::connect_on"
    )]
    TlsNotEnabled(String),
    /// The handshake took longer than the handshake timeout.
    #[error("handshake timed out")]
    Timeout,
    /// The transport closed before the handshake completed.
    #[error("connection closed during the handshake")]
    Eof,
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl HandshakeError {
    /// The HTTP status a server sends for this error.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            HandshakeError::MethodNotAllowed(_) => S::METHOD_NOT_ALLOWED,
            HandshakeError::UnsupportedVersion(_) => S::UPGRADE_REQUIRED,
            HandshakeError::TooLarge(_) => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HandshakeError::OriginRejected(_) => S::FORBIDDEN,
            HandshakeError::Rejected(r) => r.status(),
            HandshakeError::Timeout => S::REQUEST_TIMEOUT,
            _ => S::BAD_REQUEST,
        }
    }
}

/// True if a comma-separated header list contains `token` (ASCII
/// case-insensitive), across all lines of that header.
pub(crate) fn header_has_token(headers: &http::HeaderMap, name: &str, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// All values of a header as strings; a non-ASCII value is an error.
pub(crate) fn header_strs<'a>(
    headers: &'a http::HeaderMap,
    name: &str,
) -> Result<Vec<&'a str>, HandshakeError> {
    headers
        .get_all(name)
        .iter()
        .map(|v| {
            v.to_str()
                .map_err(|_| HandshakeError::BadRequest(format!("{name} is not ASCII")))
        })
        .collect()
}

/// Copies httparse headers into a `HeaderMap`.
pub(crate) fn to_header_map(
    headers: &[httparse::Header<'_>],
) -> Result<http::HeaderMap, HandshakeError> {
    let mut map = http::HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = http::HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HandshakeError::BadRequest(format!("invalid header name {:?}", h.name)))?;
        let value = http::HeaderValue::from_bytes(h.value)
            .map_err(|_| HandshakeError::BadRequest(format!("invalid value for {}", h.name)))?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_key_vector() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            accept_key(" dGhlIHNhbXBsZSBub25jZQ== "),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn generated_keys_are_16_random_bytes() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&a)
                .unwrap()
                .len(),
            16
        );
    }
}
