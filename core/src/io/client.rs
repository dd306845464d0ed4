//! Opening a client connection.

use super::head::HeadReader;
use super::{MaybeTlsStream, WebSocket};
use crate::error::Error;
use crate::ext::ExtensionFactory;
use crate::handshake::{ClientHandshake, ClientOptions, HandshakeError, IntoClientRequest, Target};
use crate::proto::{Config, Role};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Connects to a `ws://` or `wss://` URL (or a request with custom
/// headers, see [`IntoClientRequest`]) with default settings.
///
/// Returns the connection and the server's 101 response. `wss://` needs the
/// `rustls` feature.
pub async fn connect(
    request: impl IntoClientRequest,
) -> Result<(WebSocket<MaybeTlsStream>, http::Response<()>), Error> {
    ClientBuilder::new().connect(request).await
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

    /// Adds a request header (sent with every connection this builder
    /// opens; the same rules as for a request's headers apply, see
    /// [`IntoClientRequest`]).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.options = self.options.header(name, value);
        self
    }

    /// Sets limits and timeouts.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Opens a connection and runs the handshake, all within the handshake
    /// timeout: TCP to the URL's host (with Nagle off), for `wss://` a TLS
    /// handshake that verifies the server's certificate for the URL's host
    /// name or IP address (feature `rustls`; see
    /// `tls_config`), then the WebSocket handshake.
    ///
    /// `request` is a URL or a whole `http::Request<()>` with custom
    /// headers (see [`IntoClientRequest`]). Without the `rustls` feature a
    /// `wss://` URL fails with [`HandshakeError::TlsNotEnabled`]; to use
    /// another TLS stack, connect it yourself and use
    /// [`connect_on`](Self::connect_on).
    pub async fn connect(
        &self,
        request: impl IntoClientRequest,
    ) -> Result<(WebSocket<MaybeTlsStream>, http::Response<()>), Error> {
        let request = request.into_client_request()?;
        let target = Target::from_uri(request.uri())?;
        let deadline = Instant::now() + self.config.handshake_timeout;
        let stream = if target.tls {
            self.tls(&target, deadline).await?
        } else {
            MaybeTlsStream::Plain(self.tcp(&target, deadline).await?)
        };
        tokio::time::timeout_at(deadline, self.handshake(stream, &request))
            .await
            .map_err(|_| HandshakeError::Timeout)?
    }

    /// The TCP connection, by `deadline`, with Nagle off.
    async fn tcp(&self, target: &Target, deadline: Instant) -> Result<TcpStream, Error> {
        let stream = tokio::time::timeout_at(
            deadline,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| HandshakeError::Timeout)??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    #[cfg(not(feature = "rustls"))]
    async fn tls(&self, target: &Target, _deadline: Instant) -> Result<MaybeTlsStream, Error> {
        Err(HandshakeError::TlsNotEnabled(format!("wss://{}", target.authority)).into())
    }

    /// TCP and a TLS handshake for `target`, by `deadline`.
    #[cfg(feature = "rustls")]
    async fn tls(&self, target: &Target, deadline: Instant) -> Result<MaybeTlsStream, Error> {
        use tokio_rustls::rustls::pki_types::ServerName;
        let name = ServerName::try_from(target.host.clone()).map_err(|_| {
            HandshakeError::InvalidUrl(format!("{}: not a valid TLS server name", target.host))
        })?;
        let config = match &self.tls {
            Some(c) => c.clone(),
            None => tls::default_config()?,
        };
        let tcp = self.tcp(target, deadline).await?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream = tokio::time::timeout_at(deadline, connector.connect(name, tcp))
            .await
            .map_err(|_| HandshakeError::Timeout)?
            .map_err(HandshakeError::from)?;
        Ok(MaybeTlsStream::Rustls(Box::new(stream)))
    }

    /// The TLS settings [`connect`](Self::connect) uses for `wss://`. By
    /// default it trusts Mozilla's root certificates (`webpki-roots`) with
    /// rustls' safe defaults and the ring provider. Leave ALPN empty or
    /// offer only `http/1.1`: the WebSocket handshake is HTTP/1.1.
    #[cfg(feature = "rustls")]
    pub fn tls_config(
        mut self,
        config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> Self {
        self.tls = Some(config);
        self
    }

    /// Runs the client handshake on an already connected stream (plain TCP,
    /// TLS from any crate, an in-memory pipe...), within the handshake
    /// timeout. The URL's scheme only decides the default port of the
    /// `Host` header here: the stream is used as it is.
    pub async fn connect_on<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        request: impl IntoClientRequest,
    ) -> Result<(WebSocket<S>, http::Response<()>), Error> {
        let request = request.into_client_request()?;
        tokio::time::timeout(
            self.config.handshake_timeout,
            self.handshake(stream, &request),
        )
        .await
        .map_err(|_| HandshakeError::Timeout)?
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        request: &http::Request<()>,
    ) -> Result<(WebSocket<S>, http::Response<()>), Error> {
        tracing::debug!(url = %request.uri(), "websocket connect");
        let (hs, _, request) = ClientHandshake::with_request(request, self.options.clone())?;
        stream
            .write_all(&request)
            .await
            .map_err(HandshakeError::from)?;
        stream.flush().await.map_err(HandshakeError::from)?;
        // Parsed only when a parse can finish (see `head`).
        let max = self.config.max_handshake_size;
        let mut head = HeadReader::new(max);
        loop {
            head.fill(&mut stream).await?;
            if !head.parse_due() {
                continue;
            }
            if let Some((accepted, used)) =
                hs.handle_response(head.bytes(), max, self.config.max_handshake_headers)?
            {
                let leftover = head.into_bytes().split_off(used);
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
