//! Numbers in control blocks: the RFC 6455 payload-length encoding with the
//! top bit of the first byte forced to 0, minimal form required (docs/specs/mux.md §4.3).

use super::WireError;

/// Appends `v` (at most 2^63 - 1) in its minimal form.
pub fn encode(v: u64, out: &mut Vec<u8>) {
    debug_assert!(v < 1 << 63);
    if v <= 125 {
        out.push(v as u8);
    } else if v <= 0xffff {
        out.push(0x7e);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else {
        out.push(0x7f);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Decodes from the front of `buf`: the value and its length.
pub fn decode(buf: &[u8]) -> Result<(u64, usize), WireError> {
    let first = *buf
        .first()
        .ok_or(WireError::InvalidBlock("number truncated"))?;
    match first {
        0x00..=0x7d => Ok((u64::from(first), 1)),
        0x7e => {
            let b = buf
                .get(1..3)
                .ok_or(WireError::InvalidBlock("number truncated"))?;
            let v = u64::from(u16::from_be_bytes([b[0], b[1]]));
            if v < 126 {
                return Err(WireError::InvalidBlock("number not minimally encoded"));
            }
            Ok((v, 3))
        }
        0x7f => {
            let b = buf
                .get(1..9)
                .ok_or(WireError::InvalidBlock("number truncated"))?;
            let v = u64::from_be_bytes(b.try_into().expect("8 bytes"));
            if v >> 63 != 0 {
                return Err(WireError::InvalidBlock("number has its top bit set"));
            }
            if v <= 0xffff {
                return Err(WireError::InvalidBlock("number not minimally encoded"));
            }
            Ok((v, 9))
        }
        _ => Err(WireError::InvalidBlock("number has its top bit set")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_errors() {
        for (v, bytes) in [
            (0u64, &[0x00][..]),
            (125, &[0x7d]),
            (126, &[0x7e, 0x00, 0x7e]),
            (8192, &[0x7e, 0x20, 0x00]),
            (65535, &[0x7e, 0xff, 0xff]),
            (65536, &[0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            encode(v, &mut out);
            assert_eq!(out, bytes);
            assert_eq!(decode(bytes).unwrap(), (v, bytes.len()));
        }
        for bad in [
            &[0x7e, 0x00, 0x7d][..],
            &[0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
            &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0x80],
            &[0x7e, 0x01],
            &[],
        ] {
            assert!(decode(bad).is_err(), "{bad:02x?}");
        }
    }
}
