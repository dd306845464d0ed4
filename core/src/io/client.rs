//! Opening a client connection.

use super::WebSocket;
use crate::error::Error;
use crate::ext::ClientExtensionFactory;
use crate::handshake::{ClientHandshake, ClientOptions, HandshakeError, Target};
use crate::proto::{Config, Role};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects to a `ws://` URL with default settings.
///
/// Returns the connection and the server's 101 response.
pub async fn connect(url: &str) -> Result<(WebSocket<TcpStream>, http::Response<()>), Error> {
    ClientBuilder::new().connect(url).await
}

/// Client settings: extensions, subprotocols, headers and limits.
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    options: ClientOptions,
    config: Config,
}

impl ClientBuilder {
    /// Default settings, no extensions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers an extension (offers go out in the order added).
    pub fn extension(mut self, f: impl ClientExtensionFactory) -> Self {
        self.options = self.options.extension(f);
        self
    }

    /// Offers a subprotocol.
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.options = self.options.protocol(p);
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.options = self.options.header(name, value);
        self
    }

    /// Sets limits and timeouts.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Opens a TCP connection to the URL's host and runs the handshake.
    ///
    /// `wss://` URLs are refused: connect a TLS stream yourself and use
    /// [`connect_on`](Self::connect_on).
    pub async fn connect(
        &self,
        url: &str,
    ) -> Result<(WebSocket<TcpStream>, http::Response<()>), Error> {
        let target = Target::parse(url)?;
        if target.tls {
            return Err(HandshakeError::InvalidUrl(format!(
                "{url}: wss:// needs a TLS stream; pass one to ClientBuilder::connect_on"
            ))
            .into());
        }
        let timeout = self.config.handshake_timeout;
        let stream = tokio::time::timeout(
            timeout,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| HandshakeError::Timeout)??;
        stream.set_nodelay(true)?;
        self.connect_on(stream, url).await
    }

    /// Runs the client handshake on an already connected stream (plain TCP,
    /// TLS, or anything else), within the handshake timeout.
    pub async fn connect_on<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        url: &str,
    ) -> Result<(WebSocket<S>, http::Response<()>), Error> {
        let target = Target::parse(url)?;
        tokio::time::timeout(
            self.config.handshake_timeout,
            self.handshake(stream, &target),
        )
        .await
        .map_err(|_| HandshakeError::Timeout)?
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        target: &Target,
    ) -> Result<(WebSocket<S>, http::Response<()>), Error> {
        let (hs, request) = ClientHandshake::new(target, self.options.clone())?;
        stream
            .write_all(&request)
            .await
            .map_err(HandshakeError::from)?;
        stream.flush().await.map_err(HandshakeError::from)?;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if buf.capacity() == buf.len() {
                buf.reserve(1024);
            }
            let n = stream
                .read_buf(&mut buf)
                .await
                .map_err(HandshakeError::from)?;
            if n == 0 {
                return Err(HandshakeError::Eof.into());
            }
            let max = self.config.max_handshake_size;
            if let Some((accepted, used)) =
                hs.handle_response(&buf, max, self.config.max_handshake_headers)?
            {
                let leftover = buf.split_off(used);
                let ws = WebSocket::from_parts(
                    stream,
                    Role::Client,
                    accepted.extensions,
                    accepted.protocol,
                    &self.config,
                    leftover,
                );
                return Ok((ws, accepted.response));
            }
        }
    }
}
