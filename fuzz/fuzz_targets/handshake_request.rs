//! The server handshake: `parse_request` on arbitrary bytes, then
//! `accept_request` with every extension factory (permessage-deflate,
//! both per-frame deflate names, mux) and a subprotocol list.
//!
//! Checked: the consumed length is within the input and the size limit; a
//! request is refused as too large exactly when it is; every failure has a
//! 4xx status and an error response that can be written; an accepted
//! request gets a 101 whose accept key is RFC 6455's for its key and whose
//! extension header parses back to what was negotiated; no allocation
//! grows past a fixed multiple of the input (no announced size becomes an
//! allocation).
#![no_main]

use std::sync::Arc;
use weft_core::ext::{ExtensionFactory, parse_extensions};
use weft_core::handshake::server::{accept_request, error_response, parse_request, write_response};
use weft_core::handshake::{HandshakeError, ServerOptions, accept_key};
use weft_extensions::{PerFrameDeflate, PerMessageDeflate};
use weft_mux::MuxFactory;

#[global_allocator]
static ALLOC: weft_fuzz::CountingAlloc = weft_fuzz::CountingAlloc;

const MAX_SIZE: usize = 16 << 10;
const MAX_HEADERS: usize = 64;

fn options(server_order: bool) -> ServerOptions {
    let extensions: Vec<Arc<dyn ExtensionFactory>> = vec![
        Arc::new(PerMessageDeflate::new()),
        Arc::new(PerFrameDeflate::new()),
        Arc::new(PerFrameDeflate::webkit()),
        Arc::new(MuxFactory { quota: 0 }),
    ];
    let mut o = ServerOptions::default().protocols(&["chat", "superchat"]);
    o.extensions = extensions;
    if server_order {
        o = o.prefer_server_order();
    }
    o
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let base = weft_fuzz::measure_start();
    let parsed = parse_request(data, MAX_SIZE, MAX_HEADERS);
    let stats = weft_fuzz::measure_end(base);
    let bound = 8 * data.len() + MAX_HEADERS * 64 + 4096;
    assert!(
        stats.largest <= bound,
        "allocation of {} for {} bytes",
        stats.largest,
        data.len()
    );
    let (request, n) = match parsed {
        Ok(None) => {
            assert!(data.len() <= MAX_SIZE, "an incomplete head past the limit");
            return;
        }
        Err(e) => {
            assert!(e.status().is_client_error(), "{e:?}");
            if matches!(e, HandshakeError::TooLarge(_)) {
                let lines = data.windows(2).filter(|w| w == b"\r\n").count()
                    + data.iter().filter(|&&b| b == b'\n').count();
                assert!(data.len() > MAX_SIZE || lines > MAX_HEADERS, "{e:?}");
            }
            let mut out = Vec::new();
            write_response(&error_response(&e), &mut out);
            assert!(out.starts_with(b"HTTP/1.1 4"));
            return;
        }
        Ok(Some(r)) => r,
    };
    assert!(n <= data.len() && n <= MAX_SIZE);
    // The same head is incomplete without its last byte.
    assert!(!matches!(
        parse_request(&data[..n - 1], MAX_SIZE, MAX_HEADERS),
        Ok(Some(_))
    ));
    for server_order in [false, true] {
        match accept_request(&request, &options(server_order)) {
            Ok(accepted) => {
                let r = &accepted.response;
                assert_eq!(r.status(), http::StatusCode::SWITCHING_PROTOCOLS);
                let key = request.headers()["sec-websocket-key"].to_str().unwrap();
                assert_eq!(
                    r.headers()["sec-websocket-accept"].to_str().unwrap(),
                    accept_key(key)
                );
                let answer: Vec<&str> = r
                    .headers()
                    .get_all("sec-websocket-extensions")
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect();
                assert_eq!(
                    parse_extensions(answer).unwrap(),
                    accepted.extensions.headers(),
                    "the answer header is what was negotiated"
                );
                if let Some(p) = &accepted.protocol {
                    assert!(p == "chat" || p == "superchat");
                }
                let mut out = Vec::new();
                let (parts, ()) = r.clone().into_parts();
                write_response(&http::Response::from_parts(parts, String::new()), &mut out);
                assert!(out.starts_with(b"HTTP/1.1 101"));
                // The session builds and the extensions run.
                let cfg = weft_core::Config::default();
                let _ = weft_core::Session::with_extensions(
                    weft_core::Role::Server,
                    &cfg,
                    accepted.extensions,
                );
            }
            Err(e) => {
                assert!(e.status().is_client_error(), "{e:?}");
                let mut out = Vec::new();
                write_response(&error_response(&e), &mut out);
            }
        }
    }
});
