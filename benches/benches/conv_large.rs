//! conv2d forward at LeNet's shapes (batch 1 and 256) and at a 64->64-channel 3x3 layer on
//! 56x56 (batch 32, padding 1): the naive reference loops, the fast SIMD kernel on one
//! thread, the same kernel with the batch split over all cores (rayon), and, with
//! `--features peers`, candle-core's CPU conv2d (its own thread pool, all cores).
//!
//! Throughput is `Elements(flops)`: criterion's "elem/s" are flop/s (2 per multiply-add).
//! The naive loops run on a smaller batch (`naive_batch`: 16 images for batch 256, 1 image
//! for the 64-channel layer) with the throughput computed for that batch, so rates compare
//! directly. Wall-clock time.
//!
//! `cargo bench -p tinycnn-benches --bench conv_large [--features peers]`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

#[path = "../src/workloads.rs"]
mod workloads;
use workloads::*;

fn bench(c: &mut Criterion) {
    let threads = cores();
    let pool = thread_pool(threads);
    for case in conv_cases() {
        let s = case.shape;
        let mut bufs = ConvBufs::new(&s, threads);
        let id = case.name.replace("->", "to").replace(' ', "_");
        let mut g = c.benchmark_group(format!("conv2d_fwd/{id}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500));
        g.throughput(Throughput::Elements(conv_flops(
            &s.with_batch(case.naive_batch),
        )));
        g.bench_function(
            BenchmarkId::new("naive", format!("batch{}", case.naive_batch)),
            |b| b.iter(|| bufs.naive(&s, black_box(case.naive_batch))),
        );
        g.throughput(Throughput::Elements(conv_flops(&s)));
        g.bench_function(
            BenchmarkId::new("simd-1thread", format!("batch{}", s.batch)),
            |b| b.iter(|| bufs.simd(black_box(&s))),
        );
        g.bench_function(
            BenchmarkId::new(
                format!("simd-{threads}threads"),
                format!("batch{}", s.batch),
            ),
            |b| b.iter(|| bufs.simd_parallel(black_box(&s), &pool)),
        );
        #[cfg(feature = "peers")]
        {
            let cc = candle::CandleConv::new(&s);
            g.bench_function(
                BenchmarkId::new("candle", format!("batch{}", s.batch)),
                |b| b.iter(|| black_box(cc.forward())),
            );
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
