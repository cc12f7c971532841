//! d2l's LeNet (sigmoid, average pooling) at batch 256: a forward pass and a training step
//! (forward, cross-entropy, backward, SGD lr 0.9) through the tinycnn runtime
//! (`tinycnn_models::lenet()`), on one thread (`tinycnn::set_num_threads(1)`) and on all
//! cores; the forward pass also as the naive reference loops chained by hand (batch 16,
//! throughput per its own batch); and with `--features peers` the same network written
//! with candle-core ops (CPU, its own thread pool).
//!
//! Throughput is `Elements(flops)` of the convolutions and linear layers (forward: 2 per
//! multiply-add; a training step counts 3x the forward, for the two backward products), so
//! "elem/s" read as flop/s. There is no naive training step: the runtime has no naive mode
//! and the reference loops have no autograd. Wall-clock time.
//!
//! `cargo bench -p tinycnn-benches --bench lenet [--features peers]`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

#[path = "../src/workloads.rs"]
mod workloads;
use workloads::*;

const BATCH: usize = 256;
const NAIVE_BATCH: usize = 16;

fn bench(c: &mut Criterion) {
    let threads = cores();
    let fwd = lenet_forward_flops_per_image();
    let mut g = c.benchmark_group("lenet_forward");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(2000));
    let wt = LenetWeights::new();
    let xs = data(NAIVE_BATCH * 28 * 28, 5);
    g.throughput(Throughput::Elements(fwd * NAIVE_BATCH as u64));
    g.bench_function(
        BenchmarkId::new("naive", format!("batch{NAIVE_BATCH}")),
        |b| b.iter(|| black_box(lenet_forward_naive(&wt, NAIVE_BATCH, black_box(&xs)))),
    );
    g.throughput(Throughput::Elements(fwd * BATCH as u64));
    let net = RuntimeLenet::new(BATCH);
    for t in [1, threads] {
        tinycnn::set_num_threads(t).unwrap();
        g.bench_function(
            BenchmarkId::new(format!("tinycnn-{t}threads"), format!("batch{BATCH}")),
            |b| b.iter(|| black_box(net.forward())),
        );
    }
    #[cfg(feature = "peers")]
    {
        let cl = candle::CandleLenet::new(BATCH);
        g.bench_function(BenchmarkId::new("candle", format!("batch{BATCH}")), |b| {
            b.iter(|| black_box(cl.forward().unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("lenet_train_step");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(3000));
    g.throughput(Throughput::Elements(3 * fwd * BATCH as u64));
    let mut net = RuntimeLenet::new(BATCH);
    for t in [1, threads] {
        tinycnn::set_num_threads(t).unwrap();
        g.bench_function(
            BenchmarkId::new(format!("tinycnn-{t}threads"), format!("batch{BATCH}")),
            |b| b.iter(|| black_box(net.train_step())),
        );
    }
    #[cfg(feature = "peers")]
    {
        let mut cl = candle::CandleLenet::new(BATCH);
        g.bench_function(BenchmarkId::new("candle", format!("batch{BATCH}")), |b| {
            b.iter(|| black_box(cl.train_step().unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
