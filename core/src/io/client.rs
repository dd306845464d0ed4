//! Opening a client connection.

use super::WebSocket;
use crate::error::Error;
use crate::ext::ExtensionFactory;
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

/// Client settings: extensions, subprotocols, headers, limits and (with
/// the `rustls` feature) TLS.
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    options: ClientOptions,
    config: Config,
    #[cfg(feature = "rustls")]
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl ClientBuilder {
    /// Default settings, no extensions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers an extension (offers go out in the order added).
    pub fn extension(mut self, f: impl ExtensionFactory) -> Self {
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
    /// `wss://` URLs are refused: use `connect_tls`
    /// (feature `rustls`), or connect a TLS stream yourself and use
    /// [`connect_on`](Self::connect_on).
    pub async fn connect(
        &self,
        url: &str,
    ) -> Result<(WebSocket<TcpStream>, http::Response<()>), Error> {
        let target = Target::parse(url)?;
        if target.tls {
            return Err(HandshakeError::InvalidUrl(format!(
                "{url}: wss:// needs TLS: use ClientBuilder::connect_tls (feature \"rustls\") \
                 or pass a TLS stream to ClientBuilder::connect_on"
            ))
            .into());
        }
        let stream = self.tcp(&target).await?;
        self.connect_on(stream, url).await
    }

    /// The TCP connection, within the handshake timeout, with Nagle off.
    async fn tcp(&self, target: &Target) -> Result<TcpStream, Error> {
        let stream = tokio::time::timeout(
            self.config.handshake_timeout,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| HandshakeError::Timeout)??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// The TLS settings [`connect_tls`](Self::connect_tls) uses. By default
    /// it trusts Mozilla's root certificates (`webpki-roots`) with rustls'
    /// safe defaults and the ring provider. Leave ALPN empty or offer only
    /// `http/1.1`: the WebSocket handshake is HTTP/1.1.
    #[cfg(feature = "rustls")]
    pub fn tls_config(
        mut self,
        config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> Self {
        self.tls = Some(config);
        self
    }

    /// Connects to a `wss://` URL: TCP, a TLS handshake that verifies the
    /// server's certificate for the URL's host name (or IP address), then
    /// the WebSocket handshake, all within the handshake timeout. `ws://`
    /// URLs are refused (use [`connect`](Self::connect)).
    #[cfg(feature = "rustls")]
    pub async fn connect_tls(
        &self,
        url: &str,
    ) -> Result<
        (
            WebSocket<tokio_rustls::client::TlsStream<TcpStream>>,
            http::Response<()>,
        ),
        Error,
    > {
        use tokio_rustls::rustls::pki_types::ServerName;
        let target = Target::parse(url)?;
        if !target.tls {
            return Err(HandshakeError::InvalidUrl(format!(
                "{url}: connect_tls needs a wss:// URL; use ClientBuilder::connect"
            ))
            .into());
        }
        let name = ServerName::try_from(target.host.clone()).map_err(|_| {
            HandshakeError::InvalidUrl(format!("{url}: not a valid TLS server name"))
        })?;
        let config = match &self.tls {
            Some(c) => c.clone(),
            None => tls::default_config()?,
        };
        let started = tokio::time::Instant::now();
        let tcp = self.tcp(&target).await?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream = tokio::time::timeout_at(
            started + self.config.handshake_timeout,
            connector.connect(name, tcp),
        )
        .await
        .map_err(|_| HandshakeError::Timeout)?
        .map_err(HandshakeError::from)?;
        tokio::time::timeout_at(
            started + self.config.handshake_timeout,
            self.handshake(stream, &target),
        )
        .await
        .map_err(|_| HandshakeError::Timeout)?
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

#[cfg(feature = "rustls")]
mod tls {
    use super::{Error, HandshakeError};
    use std::sync::{Arc, OnceLock};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

    /// rustls' safe defaults with the ring provider (explicitly, so another
    /// crate enabling a second provider cannot make this ambiguous) and
    /// Mozilla's roots; built once.
    pub(super) fn default_config() -> Result<Arc<ClientConfig>, Error> {
        static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        if let Some(c) = CONFIG.get() {
            return Ok(c.clone());
        }
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| HandshakeError::Io(std::io::Error::other(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(CONFIG.get_or_init(|| Arc::new(config)).clone())
    }
}
