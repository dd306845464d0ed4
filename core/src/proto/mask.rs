//! Payload masking (RFC 6455 §5.3).
//!
//! `out[i] = in[i] ^ key[i % 4]`. The fast path XORs 16 bytes at a time with
//! the key repeated four times, which compilers turn into SIMD; the scalar
//! path is the byte-by-byte definition and is kept as the reference the fast
//! path is tested against.

/// Masks (or unmasks: the operation is its own inverse) `buf` in place with
/// `key`, starting at key offset 0.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_fast(buf, key);
}

/// Masks `buf` in place as if it started `offset` bytes into a masked payload.
///
/// Used when a payload is unmasked in several pieces.
#[inline]
pub fn apply_mask_at(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let r = offset & 3;
    let rotated = [key[r], key[(r + 1) & 3], key[(r + 2) & 3], key[(r + 3) & 3]];
    apply_mask_fast(buf, rotated);
}

/// The fast path: 16-byte lanes, then 4-byte words, then single bytes.
#[inline]
pub fn apply_mask_fast(buf: &mut [u8], key: [u8; 4]) {
    let k32 = u32::from_ne_bytes(key);
    let k128 = u128::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3], key[0], key[1], key[2],
        key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut lanes = buf.chunks_exact_mut(16);
    for lane in &mut lanes {
        // `chunks_exact_mut(16)` guarantees 16 bytes, so the conversion cannot fail.
        let arr: &mut [u8; 16] = lane.try_into().expect("16-byte chunk");
        *arr = (u128::from_ne_bytes(*arr) ^ k128).to_ne_bytes();
    }
    // Every lane is a multiple of 4 bytes, so the key phase is unchanged here.
    let rest = lanes.into_remainder();
    let mut words = rest.chunks_exact_mut(4);
    for word in &mut words {
        let arr: &mut [u8; 4] = word.try_into().expect("4-byte chunk");
        *arr = (u32::from_ne_bytes(*arr) ^ k32).to_ne_bytes();
    }
    for (b, k) in words.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// The scalar reference: one byte at a time, exactly as RFC 6455 §5.3 states it.
#[inline]
pub fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_vector() {
        let mut hello = *b"Hello";
        apply_mask(&mut hello, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(hello, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn fast_matches_scalar_on_unaligned_input() {
        let data: Vec<u8> = (0..1024u32).map(|i| (i * 31 + 7) as u8).collect();
        let key = [0xde, 0xad, 0xbe, 0xef];
        for start in 0..17 {
            for len in [0usize, 1, 3, 4, 5, 15, 16, 17, 31, 33, 64, 100, 1000] {
                if start + len > data.len() {
                    continue;
                }
                let mut a = data.clone();
                let mut b = data.clone();
                apply_mask_fast(&mut a[start..start + len], key);
                apply_mask_scalar(&mut b[start..start + len], key);
                assert_eq!(a, b, "start {start} len {len}");
            }
        }
    }

    #[test]
    fn offset_masking_equals_whole_masking() {
        let data: Vec<u8> = (0..200u8).collect();
        let key = [1, 2, 3, 4];
        let mut whole = data.clone();
        apply_mask_scalar(&mut whole, key);
        for split in 0..50 {
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask_at(a, key, 0);
            apply_mask_at(b, key, split);
            assert_eq!(parts, whole, "split {split}");
        }
    }
}
