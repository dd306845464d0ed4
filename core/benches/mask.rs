//! Masking throughput: fast path vs the scalar reference, aligned and
//! unaligned, 1 B to 1 MiB, with a plain memory copy of the same size as the
//! yardstick (target: masking within 2x of copying for 64 KiB).
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use weft_core::proto::mask::{apply_mask_fast, apply_mask_scalar};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in [1usize, 16, 125, 1024, 4096, 65536, 1 << 20] {
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0x5au8; size + 1];
        let src = vec![0xa5u8; size];
        for (align, off) in [("aligned", 0usize), ("unaligned", 1)] {
            g.bench_with_input(
                BenchmarkId::new(format!("fast/{align}"), size),
                &size,
                |b, &n| b.iter(|| apply_mask_fast(black_box(&mut buf[off..off + n]), KEY)),
            );
            if size <= 65536 {
                g.bench_with_input(
                    BenchmarkId::new(format!("scalar/{align}"), size),
                    &size,
                    |b, &n| b.iter(|| apply_mask_scalar(black_box(&mut buf[off..off + n]), KEY)),
                );
            }
        }
        g.bench_with_input(BenchmarkId::new("memcpy", size), &size, |b, &n| {
            b.iter(|| buf[..n].copy_from_slice(black_box(&src[..n])))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(1)).warm_up_time(std::time::Duration::from_millis(300));
    targets = bench
}
criterion_main!(benches);
