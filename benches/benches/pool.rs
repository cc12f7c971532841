//! Max and average pooling forward (2x2, stride 2) at LeNet's two pooling layers, batch 256:
//! the naive reference loops, the fast kernel on one thread, the fast kernel with the batch
//! split over all cores (rayon), and with `--features peers` candle-core's CPU pooling.
//!
//! Throughput is `Elements(ops)` with one op per window element (a compare for max, an add
//! for avg), so "elem/s" read as op/s. Wall-clock time.
//!
//! `cargo bench -p tinycnn-benches --bench pool [--features peers]`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

#[path = "../src/workloads.rs"]
mod workloads;
use workloads::*;

fn bench(c: &mut Criterion) {
    let threads = cores();
    let pool = thread_pool(threads);
    for case in pool_cases() {
        let s = case.shape;
        let mut bufs = PoolBufs::new(&s);
        for (kind, max) in [("max", true), ("avg", false)] {
            let id = case.name.replace("->", "to").replace(' ', "_");
            let mut g = c.benchmark_group(format!("{kind}_pool2d_fwd/{id}"));
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_millis(1000));
            g.throughput(Throughput::Elements(pool_ops(&s)));
            g.bench_function("naive", |b| b.iter(|| bufs.naive(black_box(&s), max)));
            g.bench_function("simd-1thread", |b| b.iter(|| bufs.simd(black_box(&s), max)));
            g.bench_function(format!("simd-{threads}threads"), |b| {
                b.iter(|| bufs.simd_parallel(black_box(&s), max, &pool))
            });
            #[cfg(feature = "peers")]
            {
                let x = candle_core::Tensor::from_vec(
                    bufs.x.clone(),
                    (s.batch, s.channels, s.in_h, s.in_w),
                    &candle_core::Device::Cpu,
                )
                .unwrap();
                g.bench_function("candle-all-threads", |b| {
                    b.iter(|| {
                        black_box(
                            if max {
                                x.max_pool2d(2)
                            } else {
                                x.avg_pool2d(2)
                            }
                            .unwrap(),
                        )
                    })
                });
            }
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
