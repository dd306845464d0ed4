//! axum integration (feature `axum`): the [`WebSocketUpgrade`] extractor.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use weft_core::axum::WebSocketUpgrade;
//!
//! async fn ws(upgrade: WebSocketUpgrade) -> axum::response::Response {
//!     upgrade.on_upgrade(|mut ws| async move {
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if msg.is_data() && ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! # async fn serve() {
//! let app = Router::new().route("/ws", get(ws));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! # What it does
//!
//! The extractor validates the request with the same code as weft's own
//! server ([`accept_request`](crate::handshake::server::accept_request):
//! method, version, `Upgrade`, `Connection`, `Sec-WebSocket-Key`,
//! `Sec-WebSocket-Version`, Origin policy, extension offers), so a request
//! that is not a valid upgrade is answered like the plain server answers it
//! ([`error_response`]: 400, 405
//! with `Allow: GET`, 426 with `Sec-WebSocket-Version: 13`, 403 for a refused
//! Origin) and never reaches the handler. It takes hyper's
//! `OnUpgrade` from the request (axum's `serve` enables upgrades);
//! [`on_upgrade`](WebSocketUpgrade::on_upgrade) answers 101 with the
//! negotiated `Sec-WebSocket-Extensions` and `Sec-WebSocket-Protocol`, and
//! runs the callback with a [`WebSocket`] over the upgraded connection in a
//! new task.
//!
//! # Where the settings come from
//!
//! weft-core cannot name permessage-deflate (weft-extensions depends on
//! it), so the extractor takes its [`ServerBuilder`] (extensions,
//! subprotocols, Origin check, limits) from, in order:
//!
//! 1. a `ServerBuilder` in the request extensions, put there with
//!    `Router::layer(axum::Extension(builder))` (per router or route);
//! 2. the defaults `D` of `WebSocketUpgrade<D>` ([`ServerDefaults`]).
//!    `weft_core::axum::WebSocketUpgrade` (`D =` [`CoreDefaults`]) has no
//!    extension; `weft_extensions::axum::WebSocketUpgrade` (feature `axum` of
//!    weft-extensions) is the same extractor with permessage-deflate at its
//!    defaults, so axum users get compression without configuring anything.
//!
//! A type parameter rather than a global: the choice is visible in the
//! handler's signature, and different routes can use different defaults.
//!
//! # HTTP/2 (RFC 8441)
//!
//! WebSockets over HTTP/2 are served too: axum's `serve` (with this feature,
//! which enables axum's and hyper's `http2`) announces
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL`, and an extended CONNECT request
//! (`:method CONNECT`, `:protocol websocket`, `Sec-WebSocket-Version: 13`,
//! no `Sec-WebSocket-Key`) is answered 200 with the negotiated extensions and
//! subprotocol, then runs the WebSocket over the HTTP/2 stream (RFC 8441
//! §4 and §5). A route must accept CONNECT for that: `axum::routing::any`,
//! or `get(..).connect(..)`; a `get` route answers CONNECT with axum's 405.
//! A CONNECT without `:protocol websocket` is refused with 400.

use crate::ext::format_extensions;
use crate::handshake::server::{Agreement, error_response, negotiate_request};
use crate::handshake::{HandshakeError, ServerOptions};
use crate::io::{ServerBuilder, WebSocket};
use crate::proto::{Config, Role};
use ::axum::body::Body;
use ::axum::extract::FromRequestParts;
use ::axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http::request::Parts;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::marker::PhantomData;

/// The transport of a WebSocket accepted through axum.
pub type AxumStream = TokioIo<Upgraded>;

/// Default server settings for [`WebSocketUpgrade`] when the request
/// carries no `ServerBuilder` extension (see the module docs).
pub trait ServerDefaults: Send + Sync + 'static {
    /// The settings; built once and shared (extension factories keep
    /// shared state such as compression context pools).
    fn server() -> &'static ServerBuilder;
}

/// weft-core's defaults: no extensions, default limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreDefaults;

impl ServerDefaults for CoreDefaults {
    fn server() -> &'static ServerBuilder {
        static SERVER: std::sync::OnceLock<ServerBuilder> = std::sync::OnceLock::new();
        SERVER.get_or_init(ServerBuilder::new)
    }
}

/// Why an upgrade request was refused; its response is the one weft's own
/// server sends for the same request.
#[derive(Debug, thiserror::Error)]
pub enum WebSocketUpgradeRejection {
    /// The request is not a valid WebSocket upgrade (or was refused by the
    /// Origin check or extension negotiation).
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The connection cannot be upgraded (the server was not built with
    /// upgrade support: no hyper `OnUpgrade` in the request): 426.
    #[error("the connection cannot be upgraded (HTTP/1.1 upgrade support is required)")]
    NotUpgradable,
}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        tracing::debug!(error = %self, "refused WebSocket upgrade");
        match self {
            WebSocketUpgradeRejection::Handshake(e) => error_response(&e).map(Body::from),
            e @ WebSocketUpgradeRejection::NotUpgradable => (
                http::StatusCode::UPGRADE_REQUIRED,
                [(http::header::UPGRADE, "websocket")],
                format!("{e}\n"),
            )
                .into_response(),
        }
    }
}

/// An axum extractor for a WebSocket upgrade, negotiated by weft (see the
/// module docs). `D` supplies the settings when the request has no
/// `ServerBuilder` extension.
pub struct WebSocketUpgrade<D: ServerDefaults = CoreDefaults> {
    builder: ServerBuilder,
    request: http::Request<()>,
    on_upgrade: OnUpgrade,
    /// An RFC 8441 extended CONNECT over HTTP/2 rather than an HTTP/1.1
    /// upgrade.
    http2: bool,
    _defaults: PhantomData<fn() -> D>,
}

impl<D: ServerDefaults> std::fmt::Debug for WebSocketUpgrade<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("builder", &self.builder)
            .field("uri", self.request.uri())
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync, D: ServerDefaults> FromRequestParts<S> for WebSocketUpgrade<D> {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let builder = parts
            .extensions
            .get::<ServerBuilder>()
            .cloned()
            .unwrap_or_else(|| D::server().clone());
        let mut request = http::Request::new(());
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        // Validate now, so a bad request never reaches the handler; the
        // negotiation is repeated by `on_upgrade` with the final settings.
        let http2 = parts.version == http::Version::HTTP_2 && parts.method == http::Method::CONNECT;
        if http2 {
            let protocol = parts.extensions.get::<hyper::ext::Protocol>();
            if !protocol.is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket")) {
                return Err(HandshakeError::BadRequest(
                    "an HTTP/2 CONNECT needs :protocol websocket (RFC 8441 §4)".into(),
                )
                .into());
            }
            negotiate_http2(&request, builder.handshake_options())?;
        } else {
            builder.upgrade(&request)?;
        }
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(WebSocketUpgradeRejection::NotUpgradable)?;
        Ok(WebSocketUpgrade {
            builder,
            request,
            on_upgrade,
            http2,
            _defaults: PhantomData,
        })
    }
}

impl<D: ServerDefaults> WebSocketUpgrade<D> {
    /// Selects the first subprotocol the client offered that is in
    /// `supported` (replacing the builder's choice).
    pub fn protocols(mut self, supported: &[&str]) -> Self {
        self.builder = self.builder.protocols(supported);
        self
    }

    /// Replaces the connection limits and timeouts.
    pub fn config(mut self, config: Config) -> Self {
        self.builder = self.builder.config(config);
        self
    }

    /// Replaces all the settings (extensions, subprotocols, limits).
    pub fn server(mut self, builder: ServerBuilder) -> Self {
        self.builder = builder;
        self
    }

    /// The request that asked for the upgrade (path, headers, offers).
    pub fn request(&self) -> &http::Request<()> {
        &self.request
    }

    /// The subprotocols the client offered, in its order.
    pub fn requested_protocols(&self) -> Vec<&str> {
        self.request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// Answers 101 and runs `callback` with the WebSocket in a new task
    /// once hyper hands over the connection. If the settings changed since
    /// extraction and negotiation now fails, the error response is returned
    /// instead and `callback` never runs.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket<AxumStream>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.http2 {
            return self.on_upgrade_http2(callback);
        }
        let (response, pending) = match self.builder.upgrade(&self.request) {
            Ok(r) => r,
            Err(e) => return WebSocketUpgradeRejection::Handshake(e).into_response(),
        };
        tracing::debug!(
            uri = %self.request.uri(),
            extensions = ?response.headers().get("sec-websocket-extensions"),
            protocol = ?response.headers().get("sec-websocket-protocol"),
            "WebSocket upgrade accepted"
        );
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => callback(pending.into_websocket(TokioIo::new(upgraded))).await,
                Err(e) => tracing::debug!(error = %e, "HTTP upgrade failed"),
            }
        });
        response.map(|()| Body::empty())
    }
}

impl<D: ServerDefaults> WebSocketUpgrade<D> {
    /// RFC 8441 §5: 200 with the negotiated headers; the WebSocket runs over
    /// the HTTP/2 stream hyper hands over.
    fn on_upgrade_http2<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket<AxumStream>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let options = self.builder.handshake_options();
        let Agreement {
            protocol,
            extensions,
        } = match negotiate_http2(&self.request, options) {
            Ok(a) => a,
            Err(e) => return WebSocketUpgradeRejection::Handshake(e).into_response(),
        };
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        if let Some(add) = &options.response_headers {
            let mut extra = http::HeaderMap::new();
            add(&self.request, &mut extra);
            for (name, value) in extra.iter() {
                // The headers the handshake owns (see ServerOptions::response_headers).
                if name.as_str().starts_with("sec-websocket-")
                    || name == http::header::CONTENT_LENGTH
                    || name == http::header::TRANSFER_ENCODING
                    || name == http::header::CONNECTION
                    || name == http::header::UPGRADE
                {
                    continue;
                }
                headers.append(name.clone(), value.clone());
            }
        }
        if let Some(p) = &protocol
            && let Ok(v) = http::HeaderValue::from_str(p)
        {
            headers.insert("sec-websocket-protocol", v);
        }
        if !extensions.headers().is_empty()
            && let Ok(v) = http::HeaderValue::from_str(&format_extensions(extensions.headers()))
        {
            headers.insert("sec-websocket-extensions", v);
        }
        tracing::debug!(
            uri = %self.request.uri(),
            extensions = ?headers.get("sec-websocket-extensions"),
            protocol = ?protocol,
            "WebSocket over HTTP/2 accepted"
        );
        let config = self.builder.connection_config().clone();
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let ws = WebSocket::from_parts(
                        TokioIo::new(upgraded),
                        Role::Server,
                        extensions,
                        protocol,
                        &config,
                        BytesMut::new(),
                    );
                    callback(ws).await
                }
                Err(e) => tracing::debug!(error = %e, "HTTP/2 CONNECT upgrade failed"),
            }
        });
        response
    }
}

/// RFC 8441 §5: an extended CONNECT carries `Sec-WebSocket-Version: 13`
/// (and no key); subprotocol, extensions and Origin are negotiated as for
/// HTTP/1.1.
fn negotiate_http2(
    request: &http::Request<()>,
    options: &ServerOptions,
) -> Result<Agreement, HandshakeError> {
    let versions: Vec<&str> = request
        .headers()
        .get_all("sec-websocket-version")
        .iter()
        .map(|v| v.to_str().unwrap_or("?").trim())
        .collect();
    match versions.as_slice() {
        ["13"] => {}
        [] => {
            return Err(HandshakeError::BadRequest(
                "Sec-WebSocket-Version is required".into(),
            ));
        }
        _ => return Err(HandshakeError::UnsupportedVersion(versions.join(", "))),
    }
    negotiate_request(request.headers(), options)
}
