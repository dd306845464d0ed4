//! Frame header encode and decode, for each length form.
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use weft_core::{FrameHeader, HeaderParse, OpCode, Rsv};

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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(1)).warm_up_time(std::time::Duration::from_millis(300));
    targets = bench
}
criterion_main!(benches);
