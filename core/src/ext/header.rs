//! The `Sec-WebSocket-Extensions` grammar (RFC 6455 §9.1, §4.3).
//!
//! ```text
//! extension-list  = 1#extension
//! extension       = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! A quoted value must unescape to a token. Several header lines are the same
//! as one comma-joined line, so [`parse_extensions`] takes any number of
//! values and appends to one list. Empty list elements (`a, , b`) are
//! tolerated as HTTP list syntax allows.

use std::fmt;

/// One parameter of an extension element: a name and an optional value.
/// A valueless parameter (`client_no_context_takeover`) has `value: None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionParam {
    /// Parameter name (a token).
    pub name: String,
    /// Parameter value (a token after unescaping), if present.
    pub value: Option<String>,
}

/// One element of a `Sec-WebSocket-Extensions` list: an extension name with
/// its parameters. Used both for client offers and for server responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionHeader {
    /// Extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters in the order given.
    pub params: Vec<ExtensionParam>,
}

impl ExtensionHeader {
    /// An element with no parameters.
    pub fn new(name: impl Into<String>) -> Self {
        ExtensionHeader {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter (builder style). Names and values must be tokens.
    pub fn param(mut self, name: impl Into<String>, value: Option<impl Into<String>>) -> Self {
        self.params.push(ExtensionParam {
            name: name.into(),
            value: value.map(Into::into),
        });
        self
    }

    /// The first parameter with this name (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&ExtensionParam> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for ExtensionHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for p in &self.params {
            write!(f, "; {}", p.name)?;
            if let Some(v) = &p.value {
                write!(f, "={v}")?;
            }
        }
        Ok(())
    }
}

/// Joins elements into one header value, `a; x=1, b`.
pub fn format_extensions(list: &[ExtensionHeader]) -> String {
    let mut out = String::new();
    for (i, e) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&e.to_string());
    }
    out
}

/// A `Sec-WebSocket-Extensions` value that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Sec-WebSocket-Extensions header at byte {position}: {what}")]
pub struct HeaderSyntaxError {
    /// Byte offset in the offending value.
    pub position: usize,
    /// What was expected.
    pub what: &'static str,
}

/// True for the RFC 7230 `tchar` set (token characters).
pub(crate) fn is_token_char(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// True if `s` is a non-empty token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t') {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn err(&self, what: &'static str) -> HeaderSyntaxError {
        HeaderSyntaxError {
            position: self.i,
            what,
        }
    }
    fn token(&mut self) -> Result<&'a str, HeaderSyntaxError> {
        let start = self.i;
        while self.i < self.s.len() && is_token_char(self.s[self.i]) {
            self.i += 1;
        }
        if start == self.i {
            return Err(self.err("expected a token"));
        }
        // Token characters are ASCII, so this is valid UTF-8.
        Ok(std::str::from_utf8(&self.s[start..self.i]).expect("token is ASCII"))
    }
    fn quoted(&mut self) -> Result<String, HeaderSyntaxError> {
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated quoted-string")),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c) if c.is_ascii() => {
                            out.push(c as char);
                            self.i += 1;
                        }
                        _ => return Err(self.err("bad escape in quoted-string")),
                    }
                }
                Some(c) if c.is_ascii() && !c.is_ascii_control() => {
                    out.push(c as char);
                    self.i += 1;
                }
                Some(_) => return Err(self.err("invalid character in quoted-string")),
            }
        }
        if !is_token(&out) {
            return Err(self.err("quoted value is not a token"));
        }
        Ok(out)
    }
}

/// Parses one header value and appends its elements to `out`.
pub(crate) fn parse_extensions_into(
    value: &str,
    out: &mut Vec<ExtensionHeader>,
) -> Result<(), HeaderSyntaxError> {
    let mut c = Cursor {
        s: value.as_bytes(),
        i: 0,
    };
    loop {
        c.ws();
        match c.peek() {
            None => return Ok(()),
            Some(b',') => {
                // Empty list element.
                c.i += 1;
                continue;
            }
            _ => {}
        }
        let name = c.token()?.to_owned();
        let mut ext = ExtensionHeader::new(name);
        loop {
            c.ws();
            match c.peek() {
                None => {
                    out.push(ext);
                    return Ok(());
                }
                Some(b',') => {
                    c.i += 1;
                    out.push(ext);
                    break;
                }
                Some(b';') => {
                    c.i += 1;
                    c.ws();
                    let pname = c.token()?.to_owned();
                    c.ws();
                    let value = if c.peek() == Some(b'=') {
                        c.i += 1;
                        c.ws();
                        Some(if c.peek() == Some(b'"') {
                            c.quoted()?
                        } else {
                            c.token()?.to_owned()
                        })
                    } else {
                        None
                    };
                    ext.params.push(ExtensionParam { name: pname, value });
                }
                Some(_) => return Err(c.err("expected ';' or ','")),
            }
        }
    }
}

/// Parses any number of header values (several header lines) into one list.
pub fn parse_extensions<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<ExtensionHeader>, HeaderSyntaxError> {
    let mut out = Vec::new();
    for v in values {
        parse_extensions_into(v, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_lines_equal_one_joined_line() {
        let two = parse_extensions(["foo", "bar; baz=2"]).unwrap();
        let one = parse_extensions(["foo, bar; baz=2"]).unwrap();
        assert_eq!(two, one);
        assert_eq!(one.len(), 2);
        assert_eq!(one[1].get("baz").unwrap().value.as_deref(), Some("2"));
    }

    #[test]
    fn quoted_values() {
        let l = parse_extensions([r#"x; a="10"; b = "a\bc" ; c"#]).unwrap();
        assert_eq!(l[0].params[0].value.as_deref(), Some("10"));
        assert_eq!(l[0].params[1].value.as_deref(), Some("abc"));
        assert_eq!(l[0].params[2].value, None);
        assert!(parse_extensions([r#"x; a="1 0""#]).is_err());
        assert!(parse_extensions([r#"x; a="10"#]).is_err());
        assert!(parse_extensions([r#"x; a="""#]).is_err());
    }

    #[test]
    fn several_offers_of_one_extension_keep_order() {
        let l = parse_extensions([
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate",
        ])
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].params.len(), 2);
        assert!(l[1].params.is_empty());
    }

    #[test]
    fn malformed() {
        for bad in [
            "a;", "a; =1", "a b", ";a", "a; b=", "a; b=c d", "a; b=\"x", "a@b", "a; b=(c)",
        ] {
            assert!(parse_extensions([bad]).is_err(), "{bad}");
        }
        assert_eq!(parse_extensions(["a, , b"]).unwrap().len(), 2);
        assert!(parse_extensions([""]).unwrap().is_empty());
    }

    #[test]
    fn format_round_trip() {
        let l = parse_extensions(["a; x=1; y, b"]).unwrap();
        assert_eq!(format_extensions(&l), "a; x=1; y, b");
    }
}
