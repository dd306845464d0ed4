//! `Sec-WebSocket-Extensions`: `parse_extensions` on arbitrary header
//! lines (one per input line), then each factory's negotiation on every
//! element, in both roles, and the server negotiation of the whole list
//! with both preferences.
//!
//! Checked: printing a parsed list and parsing it again gives the same
//! list (and printing is then stable); a server's answer prints and parses
//! back to itself, names only what was offered, each once, owns each RSV
//! bit at most once, and is accepted by a client whose factories made such
//! offers possible only if it is well formed (`client_accept` never
//! panics); each factory's answer to a single offer uses the offered token.
#![no_main]

use std::sync::Arc;
use weft_core::ext::{
    ExtensionFactory, Preference, client_accept, format_extensions, parse_extensions,
    server_negotiate_with,
};
use weft_extensions::{PerFrameDeflate, PerMessageDeflate};
use weft_mux::{MuxFactory, UnlessMux};

#[global_allocator]
static ALLOC: weft_fuzz::CountingAlloc = weft_fuzz::CountingAlloc;

fn factories() -> Vec<Arc<dyn ExtensionFactory>> {
    vec![
        Arc::new(PerMessageDeflate::new()),
        Arc::new(PerFrameDeflate::new()),
        Arc::new(PerFrameDeflate::webkit()),
        Arc::new(MuxFactory { quota: 1024 }),
        Arc::new(UnlessMux(Arc::new(PerMessageDeflate::low_memory()))),
    ]
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = weft_fuzz::measure_start();
    let parsed = parse_extensions(text.split('\n'));
    let stats = weft_fuzz::measure_end(base);
    assert!(
        stats.largest <= 64 * data.len() + 1024,
        "allocation of {}",
        stats.largest
    );
    let Ok(list) = parsed else {
        return;
    };
    let printed = format_extensions(&list);
    let again = parse_extensions([printed.as_str()]).expect("printed list parses");
    assert_eq!(again, list, "{printed}");
    assert_eq!(format_extensions(&again), printed);

    let all = factories();
    for f in &all {
        for offer in &list {
            // The framework asks a factory only about its own tokens.
            let handles = offer.name.eq_ignore_ascii_case(f.name())
                || f.aliases()
                    .iter()
                    .any(|a| offer.name.eq_ignore_ascii_case(a));
            if !handles {
                continue;
            }
            if let Ok(Some((response, ext))) = f.negotiate(offer, &[]) {
                assert!(
                    response.name.eq_ignore_ascii_case(&offer.name),
                    "{} answered {} with {}",
                    f.name(),
                    offer.name,
                    response.name
                );
                let _ = ext.rsv();
            }
            let _ = f.accept(offer, &[]);
        }
    }
    for preference in [Preference::Client, Preference::Server] {
        let Ok(n) = server_negotiate_with(&all, &list, preference) else {
            continue;
        };
        let answer = format_extensions(n.headers());
        let back = parse_extensions([answer.as_str()]).expect("answer parses");
        assert_eq!(back, n.headers(), "{answer}");
        let mut bits = weft_core::Rsv::empty();
        for (k, (h, e)) in n.headers().iter().zip(n.extensions()).enumerate() {
            assert!(list.iter().any(|o| o.name.eq_ignore_ascii_case(&h.name)));
            assert!(
                !n.headers()[..k]
                    .iter()
                    .any(|p| p.name.eq_ignore_ascii_case(&h.name)),
                "{answer}"
            );
            assert!((bits & e.rsv()).is_empty(), "{answer}");
            bits |= e.rsv();
        }
        let _ = client_accept(&all, n.headers());
        // The negotiated extensions make a session that sends and receives.
        let cfg = weft_core::Config::default();
        let mut s = weft_core::Session::with_extensions(weft_core::Role::Server, &cfg, n);
        let _ = s.send(
            weft_core::OpCode::Binary,
            bytes::Bytes::from_static(b"abcabcabc"),
            &weft_core::ext::SendHints::default(),
        );
        while s.poll_frame().is_some() {}
    }
    let _ = client_accept(&all, &list);
});
