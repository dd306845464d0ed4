//! Encapsulated opening handshakes (docs/specs/mux.md §4.5).
//!
//! A request is HTTP/1.1 request text without `Upgrade`,
//! `Sec-WebSocket-Key` and `Sec-WebSocket-Version` (implied); a successful
//! response is `HTTP/1.1 101` with `Connection: Upgrade` and the
//! channel's subprotocol and extensions, without `Upgrade` and
//! `Sec-WebSocket-Accept`.
//!
//! Delta encoding: headers are read against a base header set; a header in
//! the delta replaces the base header of that name, and one with an empty
//! value removes it. The base starts as the physical handshake's request
//! headers; whether it then follows each identity-encoded request
//! (pywebsocket) or stays fixed is [`DeltaBase`].

use crate::wire::Encoding;
use weft_core::ext::{ExtensionHeader, format_extensions};

/// How the delta base evolves (uncertain in the drafts, docs/specs/mux.md §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeltaBase {
    /// Each successfully processed identity-encoded request becomes the new
    /// base (what pywebsocket does). The default.
    #[default]
    FollowIdentity,
    /// The base is always the physical connection's handshake headers.
    Physical,
}

/// Builds an identity-encoded request.
pub fn build_request(
    host: &str,
    path: &str,
    protocols: &[String],
    offers: &[ExtensionHeader],
    headers: &[(String, String)],
) -> Vec<u8> {
    let mut s = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n");
    if !protocols.is_empty() {
        s.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            protocols.join(", ")
        ));
    }
    if !offers.is_empty() {
        s.push_str(&format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            format_extensions(offers)
        ));
    }
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Builds a successful response; `extra` headers (from
/// [`ServerOptions::response_headers`](weft_core::handshake::ServerOptions::response_headers))
/// follow the WebSocket ones, value bytes as they are.
pub fn build_response(
    protocol: Option<&str>,
    extensions: &[ExtensionHeader],
    extra: &http::HeaderMap,
) -> Vec<u8> {
    let mut s = String::from("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n");
    if let Some(p) = protocol {
        s.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    if !extensions.is_empty() {
        s.push_str(&format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            format_extensions(extensions)
        ));
    }
    let mut out = s.into_bytes();
    for (name, value) in extra {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Builds a refusal: an HTTP error status line and an empty header block.
pub fn build_rejection(status: http::StatusCode) -> Vec<u8> {
    format!(
        "HTTP/1.1 {} {}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes()
}

/// Why an encapsulated handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad encapsulated handshake: {0}")]
pub struct BadHandshake(pub String);

fn with_final_crlf(text: &[u8]) -> Vec<u8> {
    let mut v = text.to_vec();
    if !v.ends_with(b"\r\n\r\n") {
        if !v.ends_with(b"\r\n") {
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Parses an encapsulated request, applying delta encoding against `base`.
/// Requires a GET request line and a `Host` header (after the delta).
pub fn parse_request(
    text: &[u8],
    encoding: Encoding,
    base: &http::HeaderMap,
    max_headers: usize,
) -> Result<http::Request<()>, BadHandshake> {
    let text = with_final_crlf(text);
    let (mut request, _) =
        weft_core::handshake::server::parse_request(&text, text.len(), max_headers)
            .map_err(|e| BadHandshake(e.to_string()))?
            .ok_or_else(|| BadHandshake("incomplete request".into()))?;
    if request.method() != http::Method::GET {
        return Err(BadHandshake(format!("method {}", request.method())));
    }
    if encoding == Encoding::Delta {
        let delta = std::mem::take(request.headers_mut());
        let mut merged = base.clone();
        let mut last = None;
        for (name, value) in delta {
            // `HeaderMap::into_iter` yields the name only for the first of a run.
            let name = name.or(last.clone()).expect("first entry has a name");
            last = Some(name.clone());
            merged.remove(&name);
            if !value.is_empty() {
                merged.append(name, value);
            }
        }
        // Removing then appending keeps several lines of one header in the delta.
        *request.headers_mut() = merged;
    }
    if !request.headers().contains_key(http::header::HOST) {
        return Err(BadHandshake("no Host header".into()));
    }
    Ok(request)
}

/// A parsed encapsulated response.
#[derive(Debug)]
pub struct ParsedResponse {
    /// The status (101 on success).
    pub status: http::StatusCode,
    /// `Sec-WebSocket-Protocol`, if any.
    pub protocol: Option<String>,
    /// `Sec-WebSocket-Extensions` values (all lines).
    pub extensions: Vec<String>,
    /// Every header of the response, the two above included.
    pub headers: http::HeaderMap,
}

/// Parses an encapsulated response (identity encoding; delta responses are
/// read the same way: a response has no base worth inheriting).
pub fn parse_response(text: &[u8]) -> Result<ParsedResponse, BadHandshake> {
    let text = with_final_crlf(text);
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&text) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(BadHandshake("malformed response".into())),
    }
    let status = http::StatusCode::from_u16(resp.code.unwrap_or(0))
        .map_err(|_| BadHandshake("bad status".into()))?;
    let mut protocol = None;
    let mut extensions = Vec::new();
    let mut headers = http::HeaderMap::new();
    for h in resp.headers.iter() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| BadHandshake("bad header name".into()))?;
        let header_value = http::HeaderValue::from_bytes(h.value)
            .map_err(|_| BadHandshake("bad header value".into()))?;
        headers.append(name, header_value);
        let value =
            std::str::from_utf8(h.value).map_err(|_| BadHandshake("non-UTF-8 header".into()))?;
        if h.name.eq_ignore_ascii_case("sec-websocket-protocol") {
            protocol = Some(value.trim().to_owned());
        } else if h.name.eq_ignore_ascii_case("sec-websocket-extensions") {
            extensions.push(value.to_owned());
        }
    }
    Ok(ParsedResponse {
        status,
        protocol,
        extensions,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_delta() {
        let base = parse_request(
            b"GET / HTTP/1.1\r\nHost: a\r\nOrigin: http://o\r\nCookie: c=1\r\n",
            Encoding::Identity,
            &http::HeaderMap::new(),
            64,
        )
        .unwrap()
        .headers()
        .clone();
        let r = parse_request(
            b"GET /chat HTTP/1.1\r\nCookie: c=2\r\nOrigin:\r\nX-New: y\r\n\r\n",
            Encoding::Delta,
            &base,
            64,
        )
        .unwrap();
        assert_eq!(r.uri(), "/chat");
        assert_eq!(r.headers()["host"], "a");
        assert_eq!(r.headers()["cookie"], "c=2");
        assert!(!r.headers().contains_key("origin"));
        assert_eq!(r.headers()["x-new"], "y");
        assert!(
            parse_request(
                b"GET / HTTP/1.1\r\nX: y\r\n",
                Encoding::Identity,
                &http::HeaderMap::new(),
                64
            )
            .is_err()
        );
        assert!(
            parse_request(
                b"POST / HTTP/1.1\r\nHost: a\r\n",
                Encoding::Identity,
                &http::HeaderMap::new(),
                64
            )
            .is_err()
        );
        assert!(
            parse_request(b"garbage", Encoding::Identity, &http::HeaderMap::new(), 64).is_err()
        );
    }

    #[test]
    fn responses() {
        let ext = weft_core::ext::parse_extensions(["permessage-deflate"]).unwrap();
        let mut extra = http::HeaderMap::new();
        extra.insert("x-served-by", http::HeaderValue::from_static("node-7"));
        let r = parse_response(&build_response(Some("chat"), &ext, &extra)).unwrap();
        assert_eq!(
            (r.status.as_u16(), r.protocol.as_deref()),
            (101, Some("chat"))
        );
        assert_eq!(r.extensions, ["permessage-deflate"]);
        assert_eq!(r.headers["x-served-by"], "node-7");
        assert_eq!(r.headers["sec-websocket-protocol"], "chat");
        let r = parse_response(&build_response(None, &[], &http::HeaderMap::new())).unwrap();
        assert_eq!(r.headers.len(), 1, "only Connection: {:?}", r.headers);
        let r = parse_response(&build_rejection(http::StatusCode::NOT_FOUND)).unwrap();
        assert_eq!(r.status, 404);
        let req = String::from_utf8(build_request(
            "h",
            "/p",
            &["chat".into()],
            &ext,
            &[("Cookie".into(), "x".into())],
        ))
        .unwrap();
        assert!(
            !req.contains("Upgrade:")
                && !req.contains("Sec-WebSocket-Key")
                && req.contains("Connection: Upgrade")
        );
    }
}
