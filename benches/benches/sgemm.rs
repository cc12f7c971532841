//! Square SGEMM: naive reference loops, tinycnn's packed SIMD kernel (single-threaded, and
//! each ISA this CPU has) and, with `--features peers`, `matrixmultiply::sgemm`.
//!
//! Throughput is `Elements(2 m n k)`: criterion's "elements/s" are flop/s (read Gelem/s as
//! GFLOP/s).
//!
//! `cargo bench -p tinycnn-benches --features peers --bench sgemm`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tinycnn_kernels::simd::Isa;
use tinycnn_kernels::{reference, sgemm, sgemm_with_isa, sgemm_workspace_len, GemmShape};

fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn bench_sgemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    for &n in &[64usize, 256, 512, 1024] {
        let g = GemmShape::new(n, n, n);
        let a = values(n * n, 1);
        let b = values(n * n, 2);
        let mut out = vec![0.0f32; n * n];
        let mut ws = vec![0.0f32; sgemm_workspace_len(n, n, n)];
        group.throughput(Throughput::Elements(2 * (n * n * n) as u64));

        // The naive loop takes seconds at 1024: measured up to 512 only.
        if n <= 512 {
            group.bench_with_input(BenchmarkId::new("naive", n), &n, |bch, _| {
                bch.iter(|| reference::sgemm(&g, 1.0, black_box(&a), black_box(&b), 0.0, &mut out))
            });
        }
        group.bench_with_input(BenchmarkId::new("tinycnn", n), &n, |bch, _| {
            bch.iter(|| {
                sgemm(
                    &g,
                    1.0,
                    black_box(&a),
                    black_box(&b),
                    0.0,
                    &mut out,
                    &mut ws,
                )
            })
        });
        if n == 256 {
            // The other ISAs of this CPU, one size only (the scalar token is slow).
            for isa in [Isa::Sse2, Isa::Scalar]
                .into_iter()
                .filter(|i| i.is_available())
            {
                let id = BenchmarkId::new(format!("tinycnn-{}", isa.name()), n);
                group.bench_with_input(id, &n, |bch, _| {
                    bch.iter(|| {
                        sgemm_with_isa(
                            isa,
                            &g,
                            1.0,
                            black_box(&a),
                            black_box(&b),
                            0.0,
                            &mut out,
                            &mut ws,
                        )
                    })
                });
            }
        }
        #[cfg(feature = "peers")]
        group.bench_with_input(BenchmarkId::new("matrixmultiply", n), &n, |bch, _| {
            bch.iter(|| unsafe {
                // SAFETY: row-major n x n matrices, strides (n, 1), all buffers n * n long.
                matrixmultiply::sgemm(
                    n,
                    n,
                    n,
                    1.0,
                    black_box(a.as_ptr()),
                    n as isize,
                    1,
                    black_box(b.as_ptr()),
                    n as isize,
                    1,
                    0.0,
                    out.as_mut_ptr(),
                    n as isize,
                    1,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_sgemm);
criterion_main!(benches);
