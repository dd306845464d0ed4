//! Accepting server connections.

use super::WebSocket;
use super::head::HeadReader;
use super::ops::{Limit, Permit, ServerLink, ServerStats, Shutdown};
use crate::error::Error;
use crate::ext::{ExtensionFactory, Negotiated};
use crate::handshake::server::{accept_request, error_response, parse_request, write_response};
use crate::handshake::{HandshakeError, ServerOptions};
use crate::proto::{Config, Role};
use bytes::BytesMut;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Accepts a WebSocket on `stream` with default settings.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<WebSocket<S>, Error> {
    ServerBuilder::new().accept(stream).await
}

/// Looks at each request before the WebSocket checks and may answer it with
/// its own response instead (a plain HTTP page, a redirect, 401, 404...):
/// `None` goes on with the handshake, `Some(response)` answers and closes.
pub type RequestHook = dyn Fn(&http::Request<()>) -> Option<http::Response<String>> + Send + Sync;

/// Server settings: extensions, subprotocols, origin policy, request hook and
/// limits. Cheap to clone; build once and share across connections.
#[derive(Clone, Default)]
pub struct ServerBuilder {
    options: ServerOptions,
    config: Config,
    hook: Option<Arc<RequestHook>>,
    limit: Option<Arc<Limit>>,
    stats: Option<ServerStats>,
    shutdown: Option<Shutdown>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("options", &self.options)
            .field("config", &self.config)
            .field("max_connections", &self.limit.as_ref().map(|l| l.max()))
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// Default settings, no extensions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts an extension (see [`ExtensionFactory`]).
    pub fn extension(mut self, f: impl ExtensionFactory) -> Self {
        self.options = self.options.extension(f);
        self
    }

    /// Lets the server's order of extensions decide between alternatives
    /// the client offered (see [`crate::ext::Preference::Server`]).
    pub fn prefer_server_extension_order(mut self) -> Self {
        self.options = self.options.prefer_server_order();
        self
    }

    /// Selects the first client subprotocol found in `supported`.
    pub fn protocols(mut self, supported: &[&str]) -> Self {
        self.options = self.options.protocols(supported);
        self
    }

    /// Sets all handshake options at once.
    pub fn options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    /// Refuses requests whose Origin fails `check` with 403.
    pub fn origin_check(
        mut self,
        check: impl Fn(Option<&str>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.options = self.options.origin_check(check);
        self
    }

    /// Adds headers chosen by `f`, which sees the request, to every 101
    /// response (see [`ServerOptions::response_headers`]: headers the
    /// handshake owns cannot be overridden).
    ///
    /// ```
    /// let server = weft_core::ServerBuilder::new().response_headers(|request, headers| {
    ///     if request.headers().get("cookie").is_none() {
    ///         headers.insert("set-cookie", "session=new; HttpOnly".parse().unwrap());
    ///     }
    /// });
    /// ```
    pub fn response_headers(
        mut self,
        f: impl Fn(&http::Request<()>, &mut http::HeaderMap) + Send + Sync + 'static,
    ) -> Self {
        self.options = self.options.response_headers(f);
        self
    }

    /// Runs `hook` on every request first; a `Some(response)` is sent as is
    /// and the connection closed (see [`RequestHook`]): a plain HTTP page,
    /// a redirect, a 401.
    pub fn on_request(
        mut self,
        hook: impl Fn(&http::Request<()>) -> Option<http::Response<String>> + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Limits the WebSocket connections open at once to `max`, across this
    /// builder and its clones (one server): an upgrade request that would
    /// be one too many is answered with `503 Service Unavailable` before
    /// the upgrade (after the request hook, so plain HTTP pages are still
    /// served), and `accept` fails with a [`HandshakeError::Rejected`]
    /// carrying that response. A connection holds its slot from the 101
    /// response until the [`WebSocket`] is dropped. Default: no limit (the
    /// process's file descriptor limit is the only one). Calling it again
    /// starts a new count for the builder it returns.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.limit = Some(Limit::new(max));
        self
    }

    /// Sums the [`Stats`](super::Stats) of every connection this builder
    /// (and its clones) accepts into `stats` (see [`ServerStats`]).
    pub fn stats(mut self, stats: &ServerStats) -> Self {
        self.stats = Some(stats.clone());
        self
    }

    /// Ties every connection this builder accepts to `shutdown`: once it is
    /// triggered they close with 1001 after their queued messages, and new
    /// upgrades are answered with 503 (see [`Shutdown`]).
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// Admission for one more connection: `Err` with the 503 to send when
    /// the server is shutting down or full; the permit holds the slot.
    #[allow(clippy::result_large_err)]
    fn admit(&self, path: &str) -> Result<Option<Permit>, HandshakeError> {
        let refuse = |why: &str| {
            if let Some(s) = &self.stats {
                s.note_rejected();
            }
            tracing::info!(path, reason = why, "upgrade refused with 503");
            let response = http::Response::builder()
                .status(http::StatusCode::SERVICE_UNAVAILABLE)
                .header(http::header::CONNECTION, "close")
                .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .header(http::header::RETRY_AFTER, "5")
                .body(format!("{why}\n"))
                .expect("static response parts are valid");
            HandshakeError::Rejected(Box::new(response))
        };
        if self.shutdown.as_ref().is_some_and(Shutdown::is_triggered) {
            return Err(refuse("server shutting down"));
        }
        match &self.limit {
            None => Ok(None),
            Some(l) => l
                .try_acquire()
                .map(Some)
                .ok_or_else(|| refuse(&format!("connection limit of {} reached", l.max()))),
        }
    }

    fn link(&self, permit: Option<Permit>) -> Option<Box<ServerLink>> {
        ServerLink::new(self.stats.clone(), self.shutdown.clone(), permit)
    }

    /// Sets limits and timeouts.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The handshake options in use (extensions, subprotocol selection,
    /// Origin check).
    ///
    /// Not `options()`: that name is the builder's setter, and a builder
    /// keeps the plain name for the setter (the getters name what they
    /// return instead of taking a `get_` prefix).
    pub fn handshake_options(&self) -> &ServerOptions {
        &self.options
    }

    /// The connection settings (limits and timeouts) in use; `config` is
    /// the setter (see [`handshake_options`](Self::handshake_options)).
    pub fn connection_config(&self) -> &Config {
        &self.config
    }

    /// Reads and answers the opening handshake on `stream`, within the
    /// handshake timeout. A bad request is answered with an HTTP error and
    /// the stream is shut down before the error is returned.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> Result<WebSocket<S>, Error> {
        self.accept_with_request(stream).await.map(|(ws, _)| ws)
    }

    /// Like [`accept`](Self::accept), and also returns the request that
    /// opened the connection (path, headers, extension offers).
    pub async fn accept_with_request<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
    ) -> Result<(WebSocket<S>, http::Request<()>), Error> {
        match tokio::time::timeout(self.config.handshake_timeout, self.handshake(&mut stream)).await
        {
            Ok(Ok((accepted, leftover, request, permit))) => {
                let mut ws = WebSocket::from_parts(
                    stream,
                    Role::Server,
                    accepted.0,
                    accepted.1,
                    &self.config,
                    leftover,
                );
                ws.link = self.link(permit);
                Ok((ws, request))
            }
            Ok(Err(Error::Handshake(HandshakeError::Io(e)))) => Err(HandshakeError::Io(e).into()),
            Ok(Err(Error::Handshake(HandshakeError::Eof))) => Err(HandshakeError::Eof.into()),
            Ok(Err(Error::Handshake(e))) => {
                let mut out = Vec::new();
                write_response(&error_response(&e), &mut out);
                // Best effort, bounded: the peer may not read at all.
                let _ = tokio::time::timeout(self.config.close_timeout, async {
                    stream.write_all(&out).await?;
                    stream.shutdown().await
                })
                .await;
                Err(e.into())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                let mut out = Vec::new();
                write_response(&error_response(&HandshakeError::Timeout), &mut out);
                let _ = tokio::time::timeout(std::time::Duration::from_millis(100), async {
                    stream.write_all(&out).await?;
                    stream.shutdown().await
                })
                .await;
                Err(HandshakeError::Timeout.into())
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
    ) -> Result<
        (
            (Negotiated, Option<String>),
            BytesMut,
            http::Request<()>,
            Option<Permit>,
        ),
        Error,
    > {
        // Parsed only when a parse can finish: linear in the head's size
        // however it is cut into reads (see `head`).
        let mut head = HeadReader::new(self.config.max_handshake_size);
        let (request, used) = loop {
            if head.parse_due()
                && let Some(done) = parse_request(
                    head.bytes(),
                    self.config.max_handshake_size,
                    self.config.max_handshake_headers,
                )?
            {
                break done;
            }
            head.fill(stream).await?;
        };
        let mut buf = head.into_bytes();
        if let Some(hook) = &self.hook
            && let Some(r) = hook(&request)
        {
            return Err(HandshakeError::Rejected(Box::new(r)).into());
        }
        tracing::debug!(path = request.uri().path(), "websocket upgrade request");
        let accepted = accept_request(&request, &self.options)?;
        let permit = self.admit(request.uri().path())?;
        let mut out = Vec::with_capacity(256);
        write_response(&accepted.response.map(|()| ""), &mut out);
        stream.write_all(&out).await.map_err(HandshakeError::from)?;
        stream.flush().await.map_err(HandshakeError::from)?;
        let leftover = buf.split_off(used);
        Ok((
            (accepted.extensions, accepted.protocol),
            leftover,
            request,
            permit,
        ))
    }

    /// For servers that parse HTTP themselves (hyper, axum): validates the
    /// upgrade request and returns the 101 response to send, plus a
    /// [`PendingUpgrade`] that turns the upgraded transport into a
    /// [`WebSocket`].
    ///
    /// The connection limit, stats and shutdown attached to this builder
    /// apply: over the limit or during shutdown this fails with
    /// [`HandshakeError::Rejected`] holding the 503 to send, and the
    /// [`PendingUpgrade`] holds the connection's slot.
    pub fn upgrade<B>(
        &self,
        request: &http::Request<B>,
    ) -> Result<(http::Response<()>, PendingUpgrade), HandshakeError> {
        let accepted = accept_request(request, &self.options)?;
        let permit = self.admit(request.uri().path())?;
        Ok((
            accepted.response,
            PendingUpgrade {
                extensions: accepted.extensions,
                protocol: accepted.protocol,
                config: self.config.clone(),
                link: self.link(permit),
            },
        ))
    }
}

/// A validated upgrade waiting for its transport (see [`ServerBuilder::upgrade`]).
#[derive(Debug)]
pub struct PendingUpgrade {
    extensions: Negotiated,
    protocol: Option<String>,
    config: Config,
    link: Option<Box<ServerLink>>,
}

impl PendingUpgrade {
    /// The WebSocket over the upgraded transport.
    pub fn into_websocket<S: AsyncRead + AsyncWrite + Unpin>(self, io: S) -> WebSocket<S> {
        let mut ws = WebSocket::from_parts(
            io,
            Role::Server,
            self.extensions,
            self.protocol,
            &self.config,
            BytesMut::new(),
        );
        ws.link = self.link;
        ws
    }
}
