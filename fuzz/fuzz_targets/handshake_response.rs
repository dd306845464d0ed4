//! The client handshake: `ClientHandshake::handle_response` on arbitrary
//! bytes, for a client offering permessage-deflate, deflate-frame and a
//! subprotocol. Every `@@` in the input is replaced by the right
//! `Sec-WebSocket-Accept` value (the key is random), so the fuzzer reaches
//! the extension and subprotocol checks.
//!
//! Checked: the consumed length is within the input and the limit; only a
//! 101 with the right accept key is accepted; an accepted answer names
//! only offered extensions, each once, and the subprotocol is one offered;
//! the negotiated extensions build a working session; allocations stay
//! within a fixed multiple of the input.
#![no_main]

use weft_core::handshake::{ClientHandshake, ClientOptions, HandshakeError, Target, accept_key};
use weft_extensions::{PerFrameDeflate, PerMessageDeflate};

#[global_allocator]
static ALLOC: weft_fuzz::CountingAlloc = weft_fuzz::CountingAlloc;

const MAX_SIZE: usize = 16 << 10;
const MAX_HEADERS: usize = 64;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let target = Target::parse("ws://example.com/chat").unwrap();
    let mut options = ClientOptions::default()
        .protocol("chat")
        .protocol("superchat")
        .extension(PerMessageDeflate::new());
    if data.first().is_some_and(|b| b & 1 == 1) {
        options = options.extension(PerFrameDeflate::new());
    }
    let (hs, request) = ClientHandshake::new(&target, options).unwrap();
    let text = String::from_utf8(request).unwrap();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap();
    let accept = accept_key(key);
    let mut input = Vec::with_capacity(data.len() + 64);
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(b"@@") {
            input.extend_from_slice(accept.as_bytes());
            i += 2;
        } else {
            input.push(data[i]);
            i += 1;
        }
    }
    let base = weft_fuzz::measure_start();
    let result = hs.handle_response(&input, MAX_SIZE, MAX_HEADERS);
    let stats = weft_fuzz::measure_end(base);
    let bound = 8 * input.len() + MAX_HEADERS * 64 + 4096;
    assert!(stats.largest <= bound, "allocation of {}", stats.largest);
    match result {
        Ok(None) => assert!(input.len() <= MAX_SIZE),
        Err(HandshakeError::TooLarge(_)) => {}
        Err(_) => {}
        Ok(Some((accepted, n))) => {
            assert!(n <= input.len() && n <= MAX_SIZE);
            assert_eq!(accepted.response.status(), 101);
            let got = accepted.response.headers()["sec-websocket-accept"]
                .to_str()
                .unwrap();
            assert_eq!(got.trim(), accept);
            if let Some(p) = &accepted.protocol {
                assert!(p == "chat" || p == "superchat", "{p}");
            }
            let names: Vec<String> = accepted
                .extensions
                .headers()
                .iter()
                .map(|h| h.name.to_ascii_lowercase())
                .collect();
            for (k, name) in names.iter().enumerate() {
                assert!(
                    name == "permessage-deflate" || name == "deflate-frame",
                    "{name}"
                );
                assert!(!names[..k].contains(name), "{name} twice");
            }
            // Both deflates own RSV1: never both.
            assert!(names.len() <= 1, "{names:?}");
            let cfg = weft_core::Config::default();
            let mut s = weft_core::Session::with_extensions(
                weft_core::Role::Client,
                &cfg,
                accepted.extensions,
            );
            s.send(
                weft_core::OpCode::Text,
                bytes::Bytes::from_static(b"hello hello hello"),
                &weft_core::ext::SendHints::default(),
            )
            .unwrap();
            assert!(s.poll_frame().is_some());
        }
    }
});
