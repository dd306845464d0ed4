//! The `WindowBits` newtype.

use std::fmt;

/// Base-2 logarithm of an LZ77 window, 8 to 15 (RFC 7692 §7.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowBits(u8);

impl WindowBits {
    /// The smallest window, 256 bytes.
    pub const MIN: WindowBits = WindowBits(8);
    /// The largest (and default) window, 32 KiB.
    pub const MAX: WindowBits = WindowBits(15);

    /// `Some` for 8..=15.
    pub const fn new(bits: u8) -> Option<WindowBits> {
        if bits >= 8 && bits <= 15 {
            Some(WindowBits(bits))
        } else {
            None
        }
    }

    /// The number of bits.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Parses a parameter value: decimal digits without leading zeros, 8..=15
    /// (`08`, `7`, `16`, `0xa`, `10.0` and the empty string are invalid).
    pub fn parse(value: &str) -> Option<WindowBits> {
        if value.is_empty()
            || value.len() > 2
            || value.starts_with('0')
            || !value.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        value.parse::<u8>().ok().and_then(WindowBits::new)
    }
}

impl Default for WindowBits {
    fn default() -> Self {
        WindowBits::MAX
    }
}

impl fmt::Display for WindowBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        for ok in 8..=15u8 {
            assert_eq!(WindowBits::parse(&ok.to_string()), Some(WindowBits(ok)));
        }
        for bad in [
            "", "7", "16", "08", "0xa", "10.0", "-9", "+9", "１０", "999",
        ] {
            assert_eq!(WindowBits::parse(bad), None, "{bad}");
        }
    }
}
