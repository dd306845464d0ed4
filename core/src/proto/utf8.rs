//! Streaming UTF-8 validation that fails fast across fragment boundaries.
//!
//! Text messages may be split anywhere, including inside a code point, so the
//! validator carries at most three bytes of an incomplete sequence from one
//! chunk to the next. Everything else is checked with `simdutf8`, whose
//! `compat` API tells an invalid sequence (fail now) from a truncated but still
//! possibly valid one (wait for more).

/// Incremental UTF-8 validator for one message.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

/// The input can never become valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

/// Length of the sequence a leading byte announces (1 for invalid leads: the
/// validator reports those as invalid anyway).
fn sequence_len(first: u8) -> usize {
    match first {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

impl Utf8Validator {
    /// A validator with no pending bytes.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Validates the next chunk of the message. `fin` marks the last chunk:
    /// an incomplete sequence at its end is invalid.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], fin: bool) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let need = sequence_len(self.partial[0]) - have;
            let take = need.min(chunk.len());
            self.partial[have..have + take].copy_from_slice(&chunk[..take]);
            let now = have + take;
            match simdutf8::compat::from_utf8(&self.partial[..now]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix; the chunk was too short to finish it.
                    self.partial_len = now as u8;
                    return if fin { Err(InvalidUtf8) } else { Ok(()) };
                }
                Err(_) => return Err(InvalidUtf8),
            }
            chunk = &chunk[take..];
        }
        match simdutf8::compat::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) => {
                if e.error_len().is_some() || fin {
                    return Err(InvalidUtf8);
                }
                let tail = &chunk[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// True when no incomplete sequence is pending.
    #[cfg(test)]
    fn is_complete(&self) -> bool {
        self.partial_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_everywhere(bytes: &[u8]) -> Vec<bool> {
        // Result for every two-way split of `bytes`.
        (0..=bytes.len())
            .map(|i| {
                let mut v = Utf8Validator::new();
                v.feed(&bytes[..i], false).is_ok() && v.feed(&bytes[i..], true).is_ok()
            })
            .collect()
    }

    #[test]
    fn valid_text_split_anywhere() {
        let s = "κόσμε 𝄞 a€b".as_bytes();
        assert!(split_everywhere(s).iter().all(|ok| *ok));
    }

    #[test]
    fn invalid_text_split_anywhere() {
        for bad in [
            &b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"[..],
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"abc\xff",
            b"\xe0\x80\x80",
        ] {
            assert!(split_everywhere(bad).iter().all(|ok| !*ok), "{bad:?}");
        }
    }

    #[test]
    fn fails_fast_before_fin() {
        let mut v = Utf8Validator::new();
        // F4 90 can never start a valid sequence (> U+10FFFF).
        assert_eq!(v.feed(b"ok\xf4\x90", false), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"ok\xf4", false).is_ok());
        assert_eq!(v.feed(b"\x90", false), Err(InvalidUtf8));
    }

    #[test]
    fn truncated_at_fin_is_invalid() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xe2\x82", false).is_ok());
        assert!(!v.is_complete());
        assert_eq!(v.feed(b"", true), Err(InvalidUtf8));
    }

    #[test]
    fn byte_by_byte() {
        let s = "héllo wörld 𝄞".as_bytes();
        let mut v = Utf8Validator::new();
        for (i, b) in s.iter().enumerate() {
            assert!(v.feed(std::slice::from_ref(b), i + 1 == s.len()).is_ok());
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Text that is mostly valid UTF-8 (every code point length), with
        /// corruptions: a stray byte, a dropped byte, a swapped pair.
        fn almost_text() -> impl Strategy<Value = Vec<u8>> {
            (
                prop::collection::vec(any::<char>(), 0..40),
                prop::collection::vec((any::<u8>(), any::<u8>(), 0u8..4), 0..3),
            )
                .prop_map(|(chars, edits)| {
                    let mut b = chars.into_iter().collect::<String>().into_bytes();
                    for (at, byte, kind) in edits {
                        if b.is_empty() {
                            b.push(byte);
                            continue;
                        }
                        let i = at as usize % b.len();
                        match kind {
                            0 => b[i] = byte,
                            1 => {
                                b.remove(i);
                            }
                            2 => b.insert(i, byte),
                            _ => {
                                let j = (i + 1) % b.len();
                                b.swap(i, j);
                            }
                        }
                    }
                    b
                })
        }

        /// Feeds `bytes` split at `cuts` (sorted offsets); Ok iff valid.
        fn streamed(bytes: &[u8], cuts: &[usize]) -> bool {
            let mut v = Utf8Validator::new();
            let mut at = 0;
            for &c in cuts {
                if v.feed(&bytes[at..c], false).is_err() {
                    return false;
                }
                at = c;
            }
            v.feed(&bytes[at..], true).is_ok()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Streaming validation agrees with `std::str::from_utf8` for
            /// any bytes split into any number of pieces anywhere.
            #[test]
            fn agrees_with_std_on_any_split(
                bytes in prop_oneof![almost_text(), prop::collection::vec(any::<u8>(), 0..24)],
                raw_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                let mut cuts: Vec<usize> =
                    raw_cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
                cuts.sort_unstable();
                prop_assert_eq!(streamed(&bytes, &cuts), std::str::from_utf8(&bytes).is_ok());
            }

            /// Fail-fast never rejects early what a continuation could
            /// still make valid: any prefix of valid text passes with
            /// `fin = false`.
            #[test]
            fn valid_prefixes_are_never_rejected(s in ".{0,40}", cut in any::<prop::sample::Index>()) {
                let b = s.as_bytes();
                let k = cut.index(b.len() + 1);
                let mut v = Utf8Validator::new();
                prop_assert!(v.feed(&b[..k], false).is_ok());
                prop_assert!(v.feed(&b[k..], true).is_ok());
            }
        }
    }
}
