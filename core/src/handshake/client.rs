//! Client side of the opening handshake (RFC 6455 §4.1).

use super::{
    HandshakeError, accept_key, generate_key, header_has_token, header_strs, to_header_map,
};
use crate::ext::{
    ExtensionFactory, Negotiated, client_accept, client_offers, format_extensions, is_token,
    parse_extensions,
};
use std::io::Write as _;
use std::sync::Arc;

/// Where a client connects, from a `ws://` or `wss://` URL (RFC 6455 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// True for `wss://`.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (80 / 443 by default).
    pub port: u16,
    /// The `Host` header value: the authority as written.
    pub authority: String,
    /// Resource name: path (`/` if empty) and `?query`.
    pub resource: String,
}

impl Target {
    /// Parses a WebSocket URL. Fragments are rejected (RFC 6455 §3).
    pub fn parse(url: &str) -> Result<Target, HandshakeError> {
        let uri = parse_url(url)?;
        Target::from_uri(&uri)
    }

    /// The target of a parsed URI: scheme `ws` or `wss`, a host, no user
    /// info (RFC 6455 §3). (`http::Uri` drops fragments when it parses.)
    pub fn from_uri(uri: &http::Uri) -> Result<Target, HandshakeError> {
        let bad = |why: &str| HandshakeError::InvalidUrl(format!("{uri}: {why}"));
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("ws") => false,
            Some(s) if s.eq_ignore_ascii_case("wss") => true,
            _ => return Err(bad("scheme must be ws or wss")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user info is not supported"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let resource = match uri.path_and_query().map(|pq| pq.as_str()) {
            None | Some("") => "/".to_owned(),
            Some(s) if s.starts_with('/') => s.to_owned(),
            // "ws://h?q": the path is empty, the query is not.
            Some(s) => format!("/{s}"),
        };
        Ok(Target {
            tls,
            host,
            port,
            authority: authority.as_str().to_owned(),
            resource,
        })
    }
}

/// A URL string as a URI; fragments are rejected (RFC 6455 §3).
fn parse_url(url: &str) -> Result<http::Uri, HandshakeError> {
    let bad = |why: &str| HandshakeError::InvalidUrl(format!("{url}: {why}"));
    if url.contains('#') {
        return Err(bad("fragments are not allowed"));
    }
    url.parse().map_err(|_| bad("not a URI"))
}

/// What a client can connect to: a `ws://` or `wss://` URL (`&str`,
/// `String`, `http::Uri`) or a whole `http::Request<()>` whose headers
/// (Authorization, Cookie, Origin, ...) go into the opening handshake.
///
/// `ClientBuilder::connect` and `weft_core::connect` (feature `tokio`)
/// take any of these, like tokio-tungstenite's trait of the same name.
///
/// The WebSocket headers are ours: a request that sets `Upgrade`,
/// `Connection`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version` or
/// `Sec-WebSocket-Extensions` is refused with
/// [`HandshakeError::InvalidRequest`] (extensions are offered by adding
/// factories to the builder). A `Sec-WebSocket-Protocol` header is the
/// subprotocol offer: its values are offered after those of
/// [`ClientOptions::protocols`], and the server's choice is checked against
/// both. A `Host` header replaces the one taken from the URI. The method
/// must be GET and the version HTTP/1.1.
///
/// ```
/// use weft_core::IntoClientRequest;
/// let mut request = "wss://example.com/chat".into_client_request()?;
/// request
///     .headers_mut()
///     .insert("authorization", "Bearer abc".parse().unwrap());
/// // `ClientBuilder::new().connect(request)` would send it.
/// # Ok::<(), weft_core::handshake::HandshakeError>(())
/// ```
pub trait IntoClientRequest {
    /// The request to open: GET, the URL as its URI, and any headers the
    /// caller set. Fails with [`HandshakeError::InvalidUrl`] for a string
    /// that is not a URI or has a fragment; the scheme and host are checked
    /// when connecting.
    fn into_client_request(self) -> Result<http::Request<()>, HandshakeError>;
}

fn request_for(uri: http::Uri) -> Result<http::Request<()>, HandshakeError> {
    http::Request::builder()
        .method(http::Method::GET)
        .uri(uri)
        .body(())
        .map_err(|e| HandshakeError::InvalidUrl(e.to_string()))
}

impl IntoClientRequest for &str {
    fn into_client_request(self) -> Result<http::Request<()>, HandshakeError> {
        request_for(parse_url(self)?)
    }
}

impl IntoClientRequest for String {
    fn into_client_request(self) -> Result<http::Request<()>, HandshakeError> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for &String {
    fn into_client_request(self) -> Result<http::Request<()>, HandshakeError> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for http::Uri {
    fn into_client_request(self) -> Result<http::Request<()>, HandshakeError> {
        request_for(self)
    }
}

impl IntoClientRequest for &http::Uri {
    fn into_client_request(self) -> Result<http::Request<()>, HandshakeError> {
        request_for(self.clone())
    }
}

impl IntoClientRequest for http::Request<()> {
    fn into_client_request(self) -> Result<http::Request<()>, HandshakeError> {
        Ok(self)
    }
}

/// Request headers that the handshake writes itself (RFC 6455 §4.1); a
/// caller setting them would make the request contradict our checks of the
/// response.
const RESERVED_HEADERS: [&str; 5] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];

/// Files one caller-supplied request header: a reserved one is refused,
/// `Host` replaces the URI's authority (once), `Sec-WebSocket-Protocol`
/// adds to the offered subprotocols, anything else is sent as is.
fn sort_header(
    name: &http::HeaderName,
    value: &http::HeaderValue,
    host: &mut Option<http::HeaderValue>,
    protocols: &mut Vec<String>,
    extra: &mut http::HeaderMap,
) -> Result<(), HandshakeError> {
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(HandshakeError::InvalidRequest(format!(
            "{name} is set by the WebSocket handshake itself; remove it from the request \
             (offer extensions with ClientBuilder::extension)"
        )));
    }
    if name == http::header::HOST {
        if host.replace(value.clone()).is_some() {
            return Err(HandshakeError::InvalidRequest(
                "more than one Host header".into(),
            ));
        }
    } else if name == "sec-websocket-protocol" {
        let list = value.to_str().map_err(|_| {
            HandshakeError::InvalidRequest("Sec-WebSocket-Protocol is not ASCII".into())
        })?;
        for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !protocols.iter().any(|o| o == p) {
                protocols.push(p.to_owned());
            }
        }
    } else {
        extra.append(name, value.clone());
    }
    Ok(())
}

/// What a client asks for.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Extension factories, offered in this order.
    pub extensions: Vec<Arc<dyn ExtensionFactory>>,
    /// Subprotocols, most preferred first.
    pub protocols: Vec<String>,
    /// Extra request headers (cookies, authorization, origin).
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field(
                "extensions",
                &self
                    .extensions
                    .iter()
                    .map(|e| e.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .field("protocols", &self.protocols)
            .field("headers", &self.headers)
            .finish()
    }
}

impl ClientOptions {
    /// Adds an extension factory.
    pub fn extension(mut self, f: impl ExtensionFactory) -> Self {
        self.extensions.push(Arc::new(f));
        self
    }
    /// Adds a subprotocol to offer.
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.protocols.push(p.into());
        self
    }
    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The result of a successful client handshake.
#[derive(Debug)]
#[non_exhaustive]
pub struct ClientAccepted {
    /// The server's 101 response (headers only).
    pub response: http::Response<()>,
    /// Negotiated extensions, in order.
    pub extensions: Negotiated,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
}

/// A client handshake in progress: [`ClientHandshake::new`] gives the request
/// bytes; feed the response to [`ClientHandshake::handle_response`].
#[derive(Debug)]
pub struct ClientHandshake {
    expected_accept: String,
    options: ClientOptions,
}

impl ClientHandshake {
    /// Builds the request for `target`. Returns the handshake state and the
    /// request bytes to send.
    pub fn new(target: &Target, options: ClientOptions) -> Result<(Self, Vec<u8>), HandshakeError> {
        Self::write(target, None, http::HeaderMap::new(), options)
    }

    /// Builds the request for `request` (see [`IntoClientRequest`] for
    /// what it may carry): its URI gives the target, its headers are sent
    /// after ours, a `Sec-WebSocket-Protocol` header adds to the offered
    /// subprotocols. Returns the handshake state, the target (where to
    /// connect) and the request bytes.
    pub fn with_request(
        request: &http::Request<()>,
        mut options: ClientOptions,
    ) -> Result<(Self, Target, Vec<u8>), HandshakeError> {
        let target = Target::from_uri(request.uri())?;
        if request.method() != http::Method::GET {
            return Err(HandshakeError::InvalidRequest(format!(
                "method {} instead of GET",
                request.method()
            )));
        }
        if request.version() != http::Version::HTTP_11 {
            return Err(HandshakeError::InvalidRequest(format!(
                "{:?} instead of HTTP/1.1",
                request.version()
            )));
        }
        let mut host = None;
        let mut extra = http::HeaderMap::new();
        for (name, value) in request.headers() {
            sort_header(name, value, &mut host, &mut options.protocols, &mut extra)?;
        }
        let (hs, bytes) = Self::write(&target, host, extra, options)?;
        Ok((hs, target, bytes))
    }

    fn write(
        target: &Target,
        mut host: Option<http::HeaderValue>,
        mut extra: http::HeaderMap,
        mut options: ClientOptions,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        // Everything is validated before anything is written.
        for (name, value) in &options.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                HandshakeError::InvalidRequest(format!("invalid header name {name:?}"))
            })?;
            let value = http::HeaderValue::from_str(value).map_err(|_| {
                HandshakeError::InvalidRequest(format!("invalid value for header {name}"))
            })?;
            sort_header(&name, &value, &mut host, &mut options.protocols, &mut extra)?;
        }
        for p in &options.protocols {
            if !is_token(p) {
                return Err(HandshakeError::InvalidRequest(format!(
                    "subprotocol {p:?} is not a token"
                )));
            }
        }
        let key = generate_key();
        let mut req = Vec::with_capacity(256);
        let _ = write!(req, "GET {} HTTP/1.1\r\nHost: ", target.resource);
        match &host {
            Some(h) => req.extend_from_slice(h.as_bytes()),
            None => req.extend_from_slice(target.authority.as_bytes()),
        }
        let _ = write!(
            req,
            "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        if !options.protocols.is_empty() {
            let _ = write!(
                req,
                "Sec-WebSocket-Protocol: {}\r\n",
                options.protocols.join(", ")
            );
        }
        let offers = client_offers(&options.extensions);
        if !offers.is_empty() {
            let _ = write!(
                req,
                "Sec-WebSocket-Extensions: {}\r\n",
                format_extensions(&offers)
            );
        }
        for (name, value) in &extra {
            req.extend_from_slice(name.as_str().as_bytes());
            req.extend_from_slice(b": ");
            req.extend_from_slice(value.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        Ok((
            ClientHandshake {
                expected_accept: accept_key(&key),
                options,
            },
            req,
        ))
    }

    /// Parses and validates the response head in `buf`. `Ok(None)` means
    /// incomplete; on success returns the result and the bytes consumed
    /// (anything after belongs to the WebSocket stream).
    pub fn handle_response(
        &self,
        buf: &[u8],
        max_size: usize,
        max_headers: usize,
    ) -> Result<Option<(ClientAccepted, usize)>, HandshakeError> {
        let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) if n <= max_size => n,
            Ok(httparse::Status::Complete(_)) => return Err(HandshakeError::TooLarge(max_size)),
            Ok(httparse::Status::Partial) if buf.len() > max_size => {
                return Err(HandshakeError::TooLarge(max_size));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge(max_size)),
            Err(e) => {
                return Err(HandshakeError::InvalidResponse(format!(
                    "malformed HTTP response: {e}"
                )));
            }
        };
        let status = http::StatusCode::from_u16(resp.code.unwrap_or(0))
            .map_err(|_| HandshakeError::InvalidResponse("bad status code".into()))?;
        if status != http::StatusCode::SWITCHING_PROTOCOLS {
            return Err(HandshakeError::Status(status));
        }
        let map = to_header_map(resp.headers)?;
        let invalid = |s: &str| HandshakeError::InvalidResponse(s.to_owned());
        if !header_has_token(&map, "upgrade", "websocket") {
            return Err(invalid("missing Upgrade: websocket"));
        }
        if !header_has_token(&map, "connection", "upgrade") {
            return Err(invalid("missing Connection: Upgrade"));
        }
        match header_strs(&map, "sec-websocket-accept")?.as_slice() {
            [a] if a.trim() == self.expected_accept => {}
            [_] => return Err(invalid("wrong Sec-WebSocket-Accept")),
            _ => return Err(invalid("exactly one Sec-WebSocket-Accept is required")),
        }
        let protocol = match header_strs(&map, "sec-websocket-protocol")?.as_slice() {
            [] => None,
            [p] if self.options.protocols.iter().any(|o| o == p.trim()) => {
                Some(p.trim().to_owned())
            }
            [p] => {
                return Err(HandshakeError::InvalidResponse(format!(
                    "subprotocol {p:?} was not offered"
                )));
            }
            _ => return Err(invalid("more than one Sec-WebSocket-Protocol")),
        };
        let ext_lines = header_strs(&map, "sec-websocket-extensions")?;
        if ext_lines.len() > 1 {
            return Err(invalid("more than one Sec-WebSocket-Extensions header"));
        }
        let elements = parse_extensions(ext_lines)?;
        let extensions = client_accept(&self.options.extensions, &elements)?;
        let mut response = http::Response::builder()
            .status(status)
            .body(())
            .map_err(|e| invalid(&e.to_string()))?;
        *response.headers_mut() = map;
        Ok(Some((
            ClientAccepted {
                response,
                extensions,
                protocol,
            },
            n,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("ws://127.0.0.1:9001/path?x=1").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.resource.as_str()),
            (false, "127.0.0.1", 9001, "/path?x=1")
        );
        assert_eq!(t.authority, "127.0.0.1:9001");
        let t = Target::parse("wss://example.com").unwrap();
        assert_eq!((t.tls, t.port, t.resource.as_str()), (true, 443, "/"));
        let t = Target::parse("ws://[::1]:80/").unwrap();
        assert_eq!(t.host, "::1");
        let t = Target::parse("ws://h?q").unwrap();
        assert_eq!(t.resource, "/?q");
        for bad in [
            "http://x/",
            "ws://x/#frag",
            "ws:///path",
            "nonsense",
            "ws://u@h/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    fn respond(
        hs: &ClientHandshake,
        accept: &str,
        extra: &str,
    ) -> Result<Option<(ClientAccepted, usize)>, HandshakeError> {
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        );
        hs.handle_response(resp.as_bytes(), 16384, 64)
    }

    #[test]
    fn request_and_response_validation() {
        let target = Target::parse("ws://server.example.com/chat").unwrap();
        let (hs, req) =
            ClientHandshake::new(&target, ClientOptions::default().protocol("chat")).unwrap();
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("GET /chat HTTP/1.1\r\nHost: server.example.com\r\n"));
        assert!(req.contains("Sec-WebSocket-Protocol: chat\r\n"));
        let key = req
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let good = accept_key(key);

        assert!(respond(&hs, &good, "").unwrap().is_some());
        let a = respond(&hs, &good, "Sec-WebSocket-Protocol: chat\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(a.0.protocol.as_deref(), Some("chat"));
        assert!(matches!(
            respond(&hs, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ""),
            Err(HandshakeError::InvalidResponse(_))
        ));
        assert!(respond(&hs, &good, "Sec-WebSocket-Protocol: other\r\n").is_err());
        assert!(matches!(
            respond(
                &hs,
                &good,
                "Sec-WebSocket-Extensions: permessage-deflate\r\n"
            ),
            Err(HandshakeError::Negotiation(_))
        ));
        assert!(matches!(
            respond(&hs, &good, "Sec-WebSocket-Extensions: a;;\r\n"),
            Err(HandshakeError::ExtensionSyntax(_))
        ));
        let not_101 = hs.handle_response(b"HTTP/1.1 404 Not Found\r\n\r\n", 16384, 64);
        assert!(matches!(not_101, Err(HandshakeError::Status(s)) if s == 404));
        let no_upgrade = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {good}\r\n\r\n"
        );
        assert!(
            hs.handle_response(no_upgrade.as_bytes(), 16384, 64)
                .is_err()
        );
        assert!(
            hs.handle_response(b"HTTP/1.1 101 Swi", 16384, 64)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn no_protocol_offered_but_one_returned() {
        let target = Target::parse("ws://h/").unwrap();
        let (hs, req) = ClientHandshake::new(&target, ClientOptions::default()).unwrap();
        let req = String::from_utf8(req).unwrap();
        let key = req
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        assert!(respond(&hs, &accept_key(key), "Sec-WebSocket-Protocol: chat\r\n").is_err());
    }
}
