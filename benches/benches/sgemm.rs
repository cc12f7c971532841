//! Square SGEMM: naive reference loops, tinycnn's packed SIMD kernel (single-threaded, with
//! the detected ISA, then AVX-512 and AVX2+FMA at every size and SSE2 and scalar at 256,
//! each where this CPU has it) and, with `--features peers`, `matrixmultiply::sgemm`.
//!
//! Throughput is `Elements(2 m n k)`: criterion's "elements/s" are flop/s (read Gelem/s as
//! GFLOP/s).
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) on 64-bit Linux: the
//! kernels are single-threaded, and on a shared machine wall-clock time mostly measures how
//! often the scheduler ran someone else. `TINYCNN_BENCH_WALL=1` (and other systems) measure
//! wall-clock time instead.
//!
//! `cargo bench -p tinycnn-benches --features peers --bench sgemm`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};
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

/// CPU time consumed so far by the calling thread.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu_time() -> Option<Duration> {
    // `struct timespec` on 64-bit Linux; std links the C library, so no extra crate.
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.sec as u64, ts.nsec as u32))
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

/// Time of `iters` calls of `f`: thread CPU time where available (see the module docs).
fn measure(iters: u64, mut f: impl FnMut()) -> Duration {
    let wall = std::env::var_os("TINYCNN_BENCH_WALL").is_some();
    match thread_cpu_time().filter(|_| !wall) {
        Some(t0) => {
            for _ in 0..iters {
                f();
            }
            thread_cpu_time().unwrap_or(t0) - t0
        }
        None => {
            let t0 = Instant::now();
            for _ in 0..iters {
                f();
            }
            t0.elapsed()
        }
    }
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
                bch.iter_custom(|iters| {
                    measure(iters, || {
                        reference::sgemm(&g, 1.0, black_box(&a), black_box(&b), 0.0, &mut out)
                            .unwrap()
                    })
                })
            });
        }
        group.bench_with_input(BenchmarkId::new("tinycnn", n), &n, |bch, _| {
            bch.iter_custom(|iters| {
                measure(iters, || {
                    sgemm(
                        &g,
                        1.0,
                        black_box(&a),
                        black_box(&b),
                        0.0,
                        &mut out,
                        &mut ws,
                    )
                    .unwrap()
                })
            })
        });
        // The ISAs of this CPU by name: the wide ones at every size, the narrow ones at one
        // size only (the scalar token is slow).
        let isas: &[Isa] = if n == 256 {
            &[Isa::Avx512, Isa::Avx2Fma, Isa::Sse2, Isa::Scalar]
        } else {
            &[Isa::Avx512, Isa::Avx2Fma]
        };
        for &isa in isas.iter().filter(|i| i.is_available()) {
            let id = BenchmarkId::new(format!("tinycnn-{}", isa.name()), n);
            group.bench_with_input(id, &n, |bch, _| {
                bch.iter_custom(|iters| {
                    measure(iters, || {
                        let (a, b) = (black_box(&a), black_box(&b));
                        sgemm_with_isa(isa, &g, 1.0, a, b, 0.0, &mut out, &mut ws).unwrap()
                    })
                })
            });
        }
        #[cfg(feature = "peers")]
        group.bench_with_input(BenchmarkId::new("matrixmultiply", n), &n, |bch, _| {
            let (pa, pb, pc, ld) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr(), n as isize);
            bch.iter_custom(|iters| {
                measure(iters, || unsafe {
                    // SAFETY: row-major n x n matrices, strides (n, 1), all buffers n * n long.
                    matrixmultiply::sgemm(
                        n,
                        n,
                        n,
                        1.0,
                        black_box(pa),
                        ld,
                        1,
                        black_box(pb),
                        ld,
                        1,
                        0.0,
                        pc,
                        ld,
                        1,
                    )
                })
            })
        });
        black_box(&out);
    }
    group.finish();
}

criterion_group!(benches, bench_sgemm);
criterion_main!(benches);
