//! Frame header encode and decode, for each length form; and the sans-I/O
//! work of a server echoing one message (parse, unmask, assemble, queue the
//! reply, encode it into the write buffer), without sockets.
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use weft_core::ext::SendHints;
use weft_core::proto::WriteBuffer;
use weft_core::{
    Config, Connection, FrameHeader, HeaderParse, Message, OpCode, Role, Rsv, Session,
};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    g.throughput(Throughput::Elements(1));
    for (name, len) in [("7bit", 100u64), ("16bit", 1000), ("64bit", 1 << 20)] {
        for mask in [None, Some([1, 2, 3, 4])] {
            let h = FrameHeader {
                fin: true,
                rsv: Rsv::empty(),
                opcode: OpCode::Binary,
                mask,
                payload_len: len,
            };
            let label = format!(
                "{name}/{}",
                if mask.is_some() { "masked" } else { "unmasked" }
            );
            g.bench_with_input(BenchmarkId::new("encode", &label), &h, |b, h| {
                let mut out = [0u8; 14];
                b.iter(|| black_box(h).encode(&mut out))
            });
            let mut out = [0u8; 14];
            let n = h.encode(&mut out);
            g.bench_with_input(BenchmarkId::new("decode", &label), &out[..n], |b, bytes| {
                b.iter(|| match FrameHeader::parse(black_box(bytes)) {
                    Ok(HeaderParse::Complete(h, n)) => (h.payload_len, n),
                    _ => unreachable!(),
                })
            });
        }
    }
    g.finish();
}

/// A masked binary client frame.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut hdr = [0u8; 14];
    let n = FrameHeader {
        fin: true,
        rsv: Rsv::empty(),
        opcode: OpCode::Binary,
        mask: Some(key),
        payload_len: payload.len() as u64,
    }
    .encode(&mut hdr);
    let mut out = hdr[..n].to_vec();
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    out
}

fn echo(c: &mut Criterion) {
    let mut g = c.benchmark_group("server_echo_sans_io");
    g.throughput(Throughput::Elements(1));
    for size in [16usize, 1024, 65536] {
        let wire = client_frame(&vec![7u8; size]);
        let config = Config::default();
        let mut conn = Connection::new(Session::new(Role::Server, &config), &config);
        let mut wb = WriteBuffer::new();
        let hints = SendHints::default();
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                // What the I/O layer does with a small read: an allocation of
                // exactly what arrived.
                let mut buf = BytesMut::from(black_box(&wire[..]));
                let Ok(Some(Message::Binary(p))) = conn.handle_read(&mut buf) else {
                    unreachable!()
                };
                conn.session_mut().send(OpCode::Binary, p, &hints).unwrap();
                conn.poll_transmit(&mut wb);
                let n = wb.len();
                wb.advance(n);
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(1)).warm_up_time(std::time::Duration::from_millis(300));
    targets = bench, echo
}
criterion_main!(benches);
