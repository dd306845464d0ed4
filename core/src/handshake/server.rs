//! Server side of the opening handshake (RFC 6455 §4.2).

use super::{HandshakeError, accept_key, header_has_token, header_strs, to_header_map};
use crate::ext::{
    ExtensionFactory, Negotiated, Preference, format_extensions, is_token, parse_extensions,
    server_negotiate_with,
};
use base64::Engine as _;
use std::fmt::Write as _;
use std::sync::Arc;

/// Chooses a subprotocol from the client's list (in the client's order).
/// Returning a value the client did not offer is treated as no choice.
pub type ProtocolSelector = dyn Fn(&[&str]) -> Option<String> + Send + Sync;
/// Decides whether an `Origin` (absent for non-browser clients) is allowed.
pub type OriginCheck = dyn Fn(Option<&str>) -> bool + Send + Sync;
/// Adds headers (`Set-Cookie`, ...) to a 101 response, seeing the request
/// it answers. Headers the handshake owns are left out (see
/// [`ServerOptions::response_headers`]).
pub type ResponseHeaders = dyn Fn(&http::Request<()>, &mut http::HeaderMap) + Send + Sync;

/// What a server accepts: extension factories, subprotocol and origin policy.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Extension factories, in the server's order of preference for
    /// tie-breaks (offers are still taken in the client's order).
    pub extensions: Vec<Arc<dyn ExtensionFactory>>,
    /// Subprotocol selection; `None` selects no subprotocol.
    pub protocol: Option<Arc<ProtocolSelector>>,
    /// Origin check; `None` allows every origin.
    pub origin: Option<Arc<OriginCheck>>,
    /// Whose preference decides between alternative extension offers.
    pub preference: Preference,
    /// Extra headers for the 101 response; `None` adds none.
    pub response_headers: Option<Arc<ResponseHeaders>>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field(
                "extensions",
                &self
                    .extensions
                    .iter()
                    .map(|e| e.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .field("protocol", &self.protocol.is_some())
            .field("origin", &self.origin.is_some())
            .field("preference", &self.preference)
            .field("response_headers", &self.response_headers.is_some())
            .finish()
    }
}

impl ServerOptions {
    /// Adds an extension factory.
    pub fn extension(mut self, f: impl ExtensionFactory) -> Self {
        self.extensions.push(Arc::new(f));
        self
    }

    /// Selects the first offered subprotocol that is in `supported`.
    pub fn protocols(mut self, supported: &[&str]) -> Self {
        let supported: Vec<String> = supported.iter().map(|s| s.to_string()).collect();
        self.protocol = Some(Arc::new(move |offered: &[&str]| {
            offered
                .iter()
                .find(|p| supported.iter().any(|s| s == *p))
                .map(|p| p.to_string())
        }));
        self
    }

    /// Lets the order of [`extensions`](Self::extensions) decide between
    /// alternatives the client offered (see [`Preference::Server`]).
    pub fn prefer_server_order(mut self) -> Self {
        self.preference = Preference::Server;
        self
    }

    /// Sets the origin check.
    pub fn origin_check(
        mut self,
        f: impl Fn(Option<&str>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.origin = Some(Arc::new(f));
        self
    }

    /// Lets `f` add headers to every 101 response (a `Set-Cookie`, a
    /// server name...), seeing the request it answers. Headers the
    /// WebSocket handshake owns cannot be overridden: `Upgrade`,
    /// `Connection`, every `Sec-WebSocket-*` header, `Content-Length` and
    /// `Transfer-Encoding` set by `f` are left out.
    pub fn response_headers(
        mut self,
        f: impl Fn(&http::Request<()>, &mut http::HeaderMap) + Send + Sync + 'static,
    ) -> Self {
        self.response_headers = Some(Arc::new(f));
        self
    }
}

/// What a server agreed to for one request (see [`negotiate_request`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Agreement {
    /// The selected subprotocol.
    pub protocol: Option<String>,
    /// Negotiated extensions, in order.
    pub extensions: Negotiated,
}

/// True for response headers the WebSocket handshake owns (RFC 6455
/// §4.2.2) or that would give a 101 response a body.
fn is_reserved_response_header(name: &http::HeaderName) -> bool {
    name == http::header::UPGRADE
        || name == http::header::CONNECTION
        || name == http::header::CONTENT_LENGTH
        || name == http::header::TRANSFER_ENCODING
        || name.as_str().starts_with("sec-websocket-")
}

/// A validated request: the 101 response to send and what was negotiated.
#[derive(Debug)]
#[non_exhaustive]
pub struct ServerAccepted {
    /// The 101 response (headers only).
    pub response: http::Response<()>,
    /// Negotiated extensions, in order.
    pub extensions: Negotiated,
    /// The selected subprotocol.
    pub protocol: Option<String>,
}

/// Parses a request head from `buf`. `Ok(None)` means incomplete; on success
/// returns the request and the number of bytes it took (anything after it
/// already belongs to the WebSocket stream).
pub fn parse_request(
    buf: &[u8],
    max_size: usize,
    max_headers: usize,
) -> Result<Option<(http::Request<()>, usize)>, HandshakeError> {
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > max_size {
                return Err(HandshakeError::TooLarge(max_size));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge(max_size)),
        Err(e) => {
            return Err(HandshakeError::BadRequest(format!(
                "malformed HTTP request: {e}"
            )));
        }
    };
    if n > max_size {
        return Err(HandshakeError::TooLarge(max_size));
    }
    let version = match req.version {
        Some(1) => http::Version::HTTP_11,
        _ => http::Version::HTTP_10,
    };
    // An invalid method or target makes the builder fail at `body`, so the
    // headers are set on the built request, never on a failed builder.
    let mut request = http::Request::builder()
        .method(req.method.unwrap_or("GET"))
        .uri(req.path.unwrap_or("/"))
        .version(version)
        .body(())
        .map_err(|e| HandshakeError::BadRequest(format!("invalid request line: {e}")))?;
    *request.headers_mut() = to_header_map(req.headers)?;
    Ok(Some((request, n)))
}

/// Validates a WebSocket upgrade request (RFC 6455 §4.2.1) and negotiates
/// subprotocol and extensions ([`negotiate_request`]); the 101 response
/// carries [`ServerOptions::response_headers`]. Works for requests parsed
/// here or by another HTTP server.
pub fn accept_request<B>(
    request: &http::Request<B>,
    options: &ServerOptions,
) -> Result<ServerAccepted, HandshakeError> {
    if request.method() != http::Method::GET {
        return Err(HandshakeError::MethodNotAllowed(
            request.method().to_string(),
        ));
    }
    if request.version() < http::Version::HTTP_11 {
        return Err(HandshakeError::BadRequest(
            "HTTP/1.1 or later is required".into(),
        ));
    }
    let h = request.headers();
    if h.get_all(http::header::HOST).iter().count() != 1 {
        return Err(HandshakeError::BadRequest(
            "exactly one Host header is required".into(),
        ));
    }
    if !header_has_token(h, "upgrade", "websocket") {
        return Err(HandshakeError::BadRequest(
            "Upgrade: websocket is required".into(),
        ));
    }
    if !header_has_token(h, "connection", "upgrade") {
        return Err(HandshakeError::BadRequest(
            "Connection: Upgrade is required".into(),
        ));
    }
    let versions = header_strs(h, "sec-websocket-version")?;
    match versions.as_slice() {
        [] => {
            return Err(HandshakeError::BadRequest(
                "Sec-WebSocket-Version is required".into(),
            ));
        }
        [v] if v.trim() == "13" => {}
        [v] => return Err(HandshakeError::UnsupportedVersion(v.to_string())),
        _ => return Err(HandshakeError::UnsupportedVersion(versions.join(", "))),
    }
    let keys = header_strs(h, "sec-websocket-key")?;
    let key = match keys.as_slice() {
        [k] => k.trim(),
        _ => {
            return Err(HandshakeError::BadRequest(
                "exactly one Sec-WebSocket-Key is required".into(),
            ));
        }
    };
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => {
            return Err(HandshakeError::BadRequest(
                "Sec-WebSocket-Key must be 16 bytes in base64".into(),
            ));
        }
    }
    let Agreement {
        protocol,
        extensions,
    } = negotiate_request(h, options)?;

    let mut response = http::Response::builder()
        .status(http::StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::CONNECTION, "Upgrade")
        .header("sec-websocket-accept", accept_key(key));
    if let Some(p) = &protocol {
        response = response.header("sec-websocket-protocol", p.as_str());
    }
    if !extensions.headers().is_empty() {
        response = response.header(
            "sec-websocket-extensions",
            format_extensions(extensions.headers()),
        );
    }
    let mut response = response
        .body(())
        .map_err(|e| HandshakeError::BadRequest(format!("cannot build response: {e}")))?;
    if let Some(add) = &options.response_headers {
        let mut extra = http::HeaderMap::new();
        add(&without_body(request), &mut extra);
        let mut last = None;
        for (name, value) in extra {
            // `HeaderMap::into_iter` names only the first value of a run.
            let name = match name {
                Some(n) => last.insert(n).clone(),
                None => last.clone().expect("the first entry has a name"),
            };
            if !is_reserved_response_header(&name) {
                response.headers_mut().append(name, value);
            }
        }
    }
    Ok(ServerAccepted {
        response,
        extensions,
        protocol,
    })
}

/// The head of `request` as an `http::Request<()>`, for the response
/// headers callback (extensions are not copied).
fn without_body<B>(request: &http::Request<B>) -> http::Request<()> {
    let mut r = http::Request::new(());
    *r.method_mut() = request.method().clone();
    *r.uri_mut() = request.uri().clone();
    *r.version_mut() = request.version();
    *r.headers_mut() = request.headers().clone();
    r
}

/// Decides what a connection runs with, from its request headers: the
/// Origin check ([`ServerOptions::origin`]), subprotocol selection
/// ([`ServerOptions::protocol`], offers checked to be tokens) and extension
/// negotiation ([`ServerOptions::extensions`], offers checked against the
/// RFC 6455 §9.1 grammar).
///
/// This is the part of [`accept_request`] that does not depend on the
/// transport, so it also decides the encapsulated handshakes of
/// multiplexed logical channels (weft-mux), which carry no `Upgrade` or
/// `Sec-WebSocket-Key`. Errors: [`HandshakeError::OriginRejected`] (403),
/// [`HandshakeError::BadRequest`] for a malformed subprotocol offer or a
/// non-ASCII offer header, [`HandshakeError::ExtensionSyntax`] for a
/// malformed extension offer, [`HandshakeError::Negotiation`] when a
/// factory fails the handshake.
pub fn negotiate_request(
    headers: &http::HeaderMap,
    options: &ServerOptions,
) -> Result<Agreement, HandshakeError> {
    if let Some(check) = &options.origin {
        let origin = headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if !check(origin) {
            return Err(HandshakeError::OriginRejected(origin.map(str::to_owned)));
        }
    }
    let mut offered = Vec::new();
    for line in header_strs(headers, "sec-websocket-protocol")? {
        for p in line.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !is_token(p) {
                return Err(HandshakeError::BadRequest(format!(
                    "invalid subprotocol {p:?}"
                )));
            }
            offered.push(p);
        }
    }
    let protocol = match &options.protocol {
        Some(select) if !offered.is_empty() => {
            select(&offered).filter(|p| offered.contains(&p.as_str()))
        }
        _ => None,
    };
    let offers = parse_extensions(header_strs(headers, "sec-websocket-extensions")?)?;
    let extensions = server_negotiate_with(&options.extensions, &offers, options.preference)?;
    Ok(Agreement {
        protocol,
        extensions,
    })
}

/// Serializes a response head (and body) as HTTP/1.1.
pub fn write_response<B: AsRef<[u8]>>(response: &http::Response<B>, out: &mut Vec<u8>) {
    let status = response.status();
    let mut head = String::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        let _ = write!(head, "{}: ", name.as_str());
        out.extend_from_slice(head.as_bytes());
        head.clear();
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let body = response.body().as_ref();
    if !status.is_informational()
        && !response
            .headers()
            .contains_key(http::header::CONTENT_LENGTH)
    {
        let _ = write!(head, "content-length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
}

/// The HTTP error response a server sends for a failed handshake: the
/// error's status, `Connection: close`, a short text body, and
/// `Sec-WebSocket-Version: 13` when the version was the problem.
pub fn error_response(error: &HandshakeError) -> http::Response<String> {
    if let HandshakeError::Rejected(r) = error {
        let mut b = http::Response::builder()
            .status(r.status())
            .version(r.version());
        if let Some(h) = b.headers_mut() {
            *h = r.headers().clone();
        }
        return b.body(r.body().clone()).expect("parts of a valid response");
    }
    let status = error.status();
    let mut b = http::Response::builder()
        .status(status)
        .header(http::header::CONNECTION, "close")
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8");
    if status == http::StatusCode::UPGRADE_REQUIRED {
        b = b
            .header("sec-websocket-version", "13")
            .header(http::header::UPGRADE, "websocket");
    }
    if status == http::StatusCode::METHOD_NOT_ALLOWED {
        b = b.header(http::header::ALLOW, "GET");
    }
    b.body(format!("{error}\n"))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn parse(s: &str) -> http::Request<()> {
        parse_request(s.as_bytes(), 16384, 64).unwrap().unwrap().0
    }

    fn accept(s: &str) -> Result<ServerAccepted, HandshakeError> {
        accept_request(
            &parse(s),
            &ServerOptions::default().protocols(&["superchat"]),
        )
    }

    #[test]
    fn rfc_example_is_accepted() {
        let a = accept(RFC_REQUEST).unwrap();
        assert_eq!(a.response.status(), 101);
        assert_eq!(
            a.response.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(a.protocol.as_deref(), Some("superchat"));
        let mut out = Vec::new();
        write_response(&a.response.map(|()| ""), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert!(!text.contains("content-length"));
    }

    #[test]
    fn partial_and_complete() {
        let full = RFC_REQUEST.as_bytes();
        assert!(parse_request(&full[..40], 16384, 64).unwrap().is_none());
        let mut more = full.to_vec();
        more.extend_from_slice(&[0x81, 0x80]);
        let (_, n) = parse_request(&more, 16384, 64).unwrap().unwrap();
        assert_eq!(n, full.len());
    }

    #[test]
    fn case_insensitive_tokens_and_lists() {
        let req = RFC_REQUEST
            .replace("Upgrade: websocket", "Upgrade: WebSocket")
            .replace("Connection: Upgrade", "Connection: keep-alive, upgrade");
        assert!(accept(&req).is_ok());
    }

    #[test]
    fn bad_requests_get_the_right_status() {
        let cases: Vec<(String, u16)> = vec![
            (RFC_REQUEST.replace("GET", "POST"), 405),
            (RFC_REQUEST.replace("HTTP/1.1", "HTTP/1.0"), 400),
            (RFC_REQUEST.replace("Upgrade: websocket\r\n", ""), 400),
            (
                RFC_REQUEST.replace("Upgrade: websocket", "Upgrade: h2c"),
                400,
            ),
            (
                RFC_REQUEST.replace("Connection: Upgrade", "Connection: keep-alive"),
                400,
            ),
            (RFC_REQUEST.replace("Host: server.example.com\r\n", ""), 400),
            (
                RFC_REQUEST.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="),
                400,
            ),
            (
                RFC_REQUEST.replace("dGhlIHNhbXBsZSBub25jZQ==", "not base64!"),
                400,
            ),
            (
                RFC_REQUEST.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                400,
            ),
            (
                RFC_REQUEST.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
                426,
            ),
            (
                RFC_REQUEST.replace("Sec-WebSocket-Version: 13\r\n", ""),
                400,
            ),
            (
                RFC_REQUEST.replace("chat, superchat", "chat, super chat"),
                400,
            ),
            (
                RFC_REQUEST.replace("Origin:", "Sec-WebSocket-Extensions: a;\r\nOrigin:"),
                400,
            ),
        ];
        for (req, status) in cases {
            let err = accept(&req).unwrap_err();
            assert_eq!(err.status().as_u16(), status, "{req}: {err}");
            let resp = error_response(&err);
            assert_eq!(resp.status().as_u16(), status);
            if status == 426 {
                assert_eq!(resp.headers()["sec-websocket-version"], "13");
            }
        }
    }

    #[test]
    fn header_limits() {
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(20000)
        );
        assert!(matches!(
            parse_request(huge.as_bytes(), 16384, 64),
            Err(HandshakeError::TooLarge(_))
        ));
        assert!(matches!(
            parse_request(&huge.as_bytes()[..17000], 16384, 64),
            Err(HandshakeError::TooLarge(_))
        ));
        // Exactly at the limit is fine, one past is not.
        let n = RFC_REQUEST.len();
        assert!(
            parse_request(RFC_REQUEST.as_bytes(), n, 64)
                .unwrap()
                .is_some()
        );
        assert!(parse_request(RFC_REQUEST.as_bytes(), n - 1, 64).is_err());
        // 7 header lines: a limit of 7 passes, 6 fails.
        assert!(
            parse_request(RFC_REQUEST.as_bytes(), 16384, 7)
                .unwrap()
                .is_some()
        );
        assert!(matches!(
            parse_request(RFC_REQUEST.as_bytes(), 16384, 6),
            Err(HandshakeError::TooLarge(_))
        ));
        assert_eq!(error_response(&HandshakeError::TooLarge(1)).status(), 431);
    }

    #[test]
    fn origin_check() {
        let opts = ServerOptions::default().origin_check(|o| o == Some("http://good.example"));
        let err = accept_request(&parse(RFC_REQUEST), &opts).unwrap_err();
        assert_eq!(err.status(), 403);
        let ok = RFC_REQUEST.replace("http://example.com", "http://good.example");
        assert!(accept_request(&parse(&ok), &opts).is_ok());
    }

    #[test]
    fn negotiation_alone_needs_no_upgrade_headers() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = http::HeaderMap::new();
            for (n, v) in pairs {
                h.append(*n, http::HeaderValue::from_static(v));
            }
            h
        };
        let opts = ServerOptions::default()
            .protocols(&["superchat"])
            .origin_check(|o| o != Some("http://evil.example"));
        let a = negotiate_request(
            &headers(&[("sec-websocket-protocol", "chat, superchat")]),
            &opts,
        )
        .unwrap();
        assert_eq!(a.protocol.as_deref(), Some("superchat"));
        assert!(a.extensions.headers().is_empty());
        let err = |pairs| negotiate_request(&headers(pairs), &opts).unwrap_err();
        assert!(matches!(
            err(&[("origin", "http://evil.example")]),
            HandshakeError::OriginRejected(Some(_))
        ));
        assert!(matches!(
            err(&[("sec-websocket-protocol", "a b")]),
            HandshakeError::BadRequest(_)
        ));
        assert!(matches!(
            err(&[("sec-websocket-extensions", "x; =")]),
            HandshakeError::ExtensionSyntax(_)
        ));
    }

    #[test]
    fn no_protocol_when_none_acceptable() {
        let req = RFC_REQUEST.replace("chat, superchat", "chat");
        let a = accept(&req).unwrap();
        assert_eq!(a.protocol, None);
        assert!(!a.response.headers().contains_key("sec-websocket-protocol"));
    }
}
