//! `FrameHeader::parse` on arbitrary bytes. A complete header re-encodes to
//! exactly the bytes it was parsed from (lengths must be minimal, so the
//! encoding is unique); an incomplete one asks for a number of bytes that
//! the header really lacks; every error is a 1002 protocol error.
#![no_main]

use weft_core::{FrameHeader, HeaderParse};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match FrameHeader::parse(data) {
        Ok(HeaderParse::Complete(h, n)) => {
            assert!((2..=14).contains(&n) && n <= data.len());
            let mut out = [0u8; 14];
            let m = h.encode(&mut out);
            assert_eq!(&out[..m], &data[..n], "{h:?}");
            if h.opcode.is_control() {
                assert!(h.fin && h.payload_len <= 125);
            }
            assert!(h.payload_len < 1 << 63);
            // Every prefix is incomplete and asks for no more than is missing.
            for k in 0..n {
                match FrameHeader::parse(&data[..k]) {
                    Ok(HeaderParse::Incomplete(more)) => {
                        assert!(more >= 1 && k + more <= n, "prefix {k} of {n} asks {more}")
                    }
                    other => panic!("prefix {k} of a complete header: {other:?}"),
                }
            }
        }
        Ok(HeaderParse::Incomplete(more)) => {
            assert!(more >= 1 && data.len() + more <= 14);
        }
        Err(e) => {
            let code = weft_fuzz::expected_close_code(&e);
            assert_eq!(code, 1002, "{e:?}");
            assert_eq!(e.close_code().as_u16(), code);
        }
    }
});
