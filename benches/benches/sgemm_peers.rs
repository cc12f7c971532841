//! Square SGEMM (row-major, C = A B) against peer crates: tinycnn's packed SIMD kernel on one
//! thread and with the rows of C split over all cores (rayon), and with `--features peers`
//! `matrixmultiply::sgemm` (single-threaded build) and the `gemm` crate on one thread and on
//! all cores. The naive loops are in `sgemm.rs`.
//!
//! Throughput is `Elements(2 m n k)`: criterion's "elem/s" are flop/s. Wall-clock time.
//!
//! `cargo bench -p tinycnn-benches --features peers --bench sgemm_peers`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Duration;
use tinycnn_kernels::{sgemm, sgemm_workspace_len, GemmShape};

#[path = "../src/workloads.rs"]
mod workloads;
use workloads::*;

fn bench(c: &mut Criterion) {
    let threads = cores();
    let pool = thread_pool(threads);
    let mut g = c.benchmark_group("sgemm_peers");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    for n in [256usize, 512, 1024] {
        let a = data(n * n, 1);
        let b = data(n * n, 2);
        let mut out = vec![0.0f32; n * n];
        let rows = n.div_ceil(threads);
        let mut ws = vec![0.0f32; sgemm_workspace_len(n, n, n) * threads];
        let ws_len = sgemm_workspace_len(n, n, n);
        g.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        g.bench_with_input(BenchmarkId::new("tinycnn-1thread", n), &n, |bch, _| {
            bch.iter(|| {
                sgemm(
                    &GemmShape::new(n, n, n),
                    1.0,
                    black_box(&a),
                    &b,
                    0.0,
                    &mut out,
                    &mut ws[..ws_len],
                )
                .unwrap()
            })
        });
        g.bench_with_input(
            BenchmarkId::new(format!("tinycnn-{threads}threads"), n),
            &n,
            |bch, _| {
                bch.iter(|| {
                    pool.install(|| {
                        a.par_chunks(rows * n)
                            .zip(out.par_chunks_mut(rows * n))
                            .zip(ws.par_chunks_mut(ws_len))
                            .for_each(|((a, c), ws)| {
                                let m = a.len() / n;
                                sgemm(&GemmShape::new(m, n, n), 1.0, a, &b, 0.0, c, ws).unwrap()
                            })
                    })
                })
            },
        );
        #[cfg(feature = "peers")]
        {
            let (pa, pb, ld) = (a.as_ptr(), b.as_ptr(), n as isize);
            g.bench_with_input(
                BenchmarkId::new("matrixmultiply-1thread", n),
                &n,
                |bch, _| {
                    let pc = out.as_mut_ptr();
                    // SAFETY: row-major n x n matrices with strides (n, 1); all buffers n * n long.
                    bch.iter(|| unsafe {
                        matrixmultiply::sgemm(
                            n,
                            n,
                            n,
                            1.0,
                            black_box(pa),
                            ld,
                            1,
                            pb,
                            ld,
                            1,
                            0.0,
                            pc,
                            ld,
                            1,
                        )
                    })
                },
            );
            for (name, par) in [
                ("gemm-1thread".to_string(), gemm::Parallelism::None),
                (
                    format!("gemm-{threads}threads"),
                    gemm::Parallelism::Rayon(threads),
                ),
            ] {
                g.bench_with_input(BenchmarkId::new(name, n), &n, |bch, _| {
                    let pc = out.as_mut_ptr();
                    // SAFETY: as above; `gemm` takes (column stride, row stride) pairs and
                    // computes dst = alpha dst + beta lhs rhs (dst not read here).
                    bch.iter(|| unsafe {
                        gemm::gemm(
                            n,
                            n,
                            n,
                            pc,
                            1,
                            ld,
                            false,
                            black_box(pa),
                            1,
                            ld,
                            pb,
                            1,
                            ld,
                            0.0f32,
                            1.0f32,
                            false,
                            false,
                            false,
                            par,
                        )
                    })
                });
            }
        }
        black_box(&out);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
