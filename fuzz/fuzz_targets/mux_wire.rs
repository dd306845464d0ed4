//! The mux wire format (weft_mux::wire) on arbitrary bytes.
//!
//! Checked: every control-block message that decodes strictly re-encodes
//! to exactly its bytes (decode → encode round trip); one that decodes
//! leniently (non-minimal channel IDs) re-encodes to a strict encoding of
//! the same blocks; a physical message's channel ID and inner header
//! re-encode to its prefix; channel IDs and numbers round-trip; every
//! error has the drop code docs/specs/mux.md §4.8 names for it.
//!
//! Variant A (weft_mux::wire::variant_a), with the first byte as the
//! physical frame's FIN/RSV/opcode byte and the rest as its payload: raw and
//! interpreted control blocks re-encode to blocks that decode the same
//! (byte-exact when the length fields were minimal), a data frame's payload
//! is the rest after its channel ID, and every error has its drop code.
#![no_main]

use bytes::Bytes;
use weft_core::{OpCode, Rsv};
use weft_mux::ChannelId;
use weft_mux::wire::variant_a::{BlockA, PhysicalA, RawBlock, decode_physical_a};
use weft_mux::wire::{Block, Physical, WireError, decode_physical, encode_inner_header, number};

fn expected_drop_code_a(e: &WireError) -> u16 {
    match e {
        WireError::BadPhysicalFrame(_) => 2001,
        WireError::ChannelIdTruncated | WireError::NonMinimalChannelId => 2002,
        WireError::UnknownOpcode(op) => {
            assert!([2, 5, 6, 7].contains(op));
            2004
        }
        WireError::InvalidBlock(_) => 2005,
        WireError::UnknownRequestEncoding(_) => 2010,
        WireError::UnknownResponseEncoding(_) => 2012,
        other => panic!("unmapped variant A wire error {other:?}"),
    }
}

fn variant_a(data: &[u8]) {
    if let Ok(raw) = RawBlock::decode_all(data, false) {
        let mut out = Vec::new();
        for b in &raw {
            b.encode(&mut out);
        }
        assert!(out.len() <= data.len());
        assert_eq!(
            RawBlock::decode_all(&out, true).expect("re-encoding decodes"),
            raw
        );
        if out.len() == data.len() && RawBlock::decode_all(data, true).is_ok() {
            assert_eq!(out, data);
        }
    }
    match BlockA::decode_all(data, true) {
        Ok(blocks) => {
            let mut out = Vec::new();
            for b in &blocks {
                b.encode(&mut out);
            }
            assert_eq!(
                BlockA::decode_all(&out, true).expect("re-encoding decodes"),
                blocks
            );
        }
        Err(e) => assert_eq!(e.drop_code().0, expected_drop_code_a(&e)),
    }
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let Ok(opcode) = OpCode::from_u8(head & 0x0f) else {
        return;
    };
    let payload = Bytes::copy_from_slice(rest);
    let rsv = Rsv::from_bits_truncate(head);
    let fin = head & 0x80 != 0;
    match decode_physical_a(fin, rsv, opcode, &payload, true) {
        Ok(PhysicalA::Control(_)) => {
            assert!(fin && opcode == OpCode::Binary && rsv.is_empty() && rest[0] == 0);
        }
        Ok(PhysicalA::Frame(f)) => {
            assert!(rsv.is_empty() && !opcode.is_control());
            let (id, n) = ChannelId::decode(rest, true).unwrap();
            assert_eq!((f.channel, f.fin, f.opcode), (id, fin, opcode.as_u8()));
            assert_eq!(&f.payload[..], &rest[n..]);
        }
        Err(e) => assert_eq!(e.drop_code().0, expected_drop_code_a(&e)),
    }
}

fn expected_drop_code(e: &WireError) -> u16 {
    match e {
        WireError::TextMessage => 2001,
        WireError::ChannelIdTruncated | WireError::NonMinimalChannelId => 2002,
        WireError::MissingInnerHeader => 2003,
        WireError::UnknownOpcode(op) => {
            assert!((5..=7).contains(op));
            2004
        }
        WireError::InvalidBlock(_) => 2005,
        WireError::UnknownRequestEncoding(_) => 2010,
        WireError::UnknownResponseEncoding(_) => 2012,
        other => panic!("unmapped wire error {other:?}"),
    }
}

fn encode_all(blocks: &[Block]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in blocks {
        b.encode(&mut out);
    }
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    variant_a(data);
    match Block::decode_all(data, true) {
        Ok(blocks) => assert_eq!(encode_all(&blocks), data, "{blocks:?}"),
        Err(e) => assert_eq!(e.drop_code().0, expected_drop_code(&e)),
    }
    if let Ok(blocks) = Block::decode_all(data, false) {
        let again = Block::decode_all(&encode_all(&blocks), true).expect("re-encoding decodes");
        assert_eq!(again, blocks);
    }
    let msg = Bytes::copy_from_slice(data);
    for strict in [true, false] {
        match decode_physical(&msg, strict) {
            Ok(Physical::Control(blocks)) => {
                if strict {
                    assert_eq!(data[0], 0);
                    let mut out = vec![0];
                    out.extend(encode_all(&blocks));
                    assert_eq!(out, data);
                }
            }
            Ok(Physical::Frame(f)) => {
                assert_ne!(f.channel, ChannelId::CONTROL);
                let (_, n) = ChannelId::decode(data, strict).unwrap();
                assert_eq!(&f.payload[..], &data[n + 1..]);
                if strict && let Ok(op) = weft_core::OpCode::from_u8(f.opcode) {
                    let mut out = Vec::new();
                    encode_inner_header(f.channel, f.fin, f.rsv, op, &mut out);
                    // The header byte's bits 4-6 are the RSV bits: all kept.
                    assert_eq!(&out[..], &data[..n + 1]);
                }
            }
            Err(e) => assert_eq!(e.drop_code().0, expected_drop_code(&e)),
        }
    }
    if let Ok((id, n)) = ChannelId::decode(data, true) {
        let mut out = Vec::new();
        id.encode(&mut out);
        assert_eq!(&out[..], &data[..n]);
    }
    if let Ok((v, n)) = number::decode(data) {
        let mut out = Vec::new();
        number::encode(v, &mut out);
        assert_eq!(&out[..], &data[..n]);
    }
});
