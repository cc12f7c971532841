//! SGEMM and the LeNet convolutions with each x86 ISA this CPU has, forced through
//! `sgemm_with_isa` / `vectorize_with`, in alternating rounds so that clock and neighbour
//! noise hit every ISA alike; prints the median of the rounds.
//!
//! ```text
//! cargo run --release -p tinycnn-benches --example isa_compare [-- ROUNDS]
//! ```
//!
//! SGEMM: 512^3 on one thread, 1024^3 on two (rows of C split in halves, one workspace
//! each). Time is wall-clock (`Instant`), each sample the best of 3 calls, so a preempted
//! call on a shared machine does not count.

use std::hint::black_box;
use std::time::Instant;
use tinycnn_kernels::simd::Isa;
use tinycnn_kernels::{sgemm_with_isa, sgemm_workspace_len, GemmShape};

fn data(len: usize, seed: u32) -> Vec<f32> {
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

/// Seconds of the fastest of three calls.
fn best_of_3(mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `C = A B` for `n x n` matrices on `threads` threads, each a band of rows of C.
fn gemm(isa: Isa, n: usize, threads: usize, a: &[f32], b: &[f32], c: &mut [f32], ws: &mut [f32]) {
    let rows = n.div_ceil(threads);
    let ws_len = ws.len() / threads;
    std::thread::scope(|sc| {
        for ((a, c), ws) in a
            .chunks(rows * n)
            .zip(c.chunks_mut(rows * n))
            .zip(ws.chunks_mut(ws_len))
        {
            let g = GemmShape::new(a.len() / n, n, n);
            if threads == 1 {
                sgemm_with_isa(isa, &g, 1.0, black_box(a), b, 0.0, c, ws).unwrap();
            } else {
                sc.spawn(move || {
                    sgemm_with_isa(isa, &g, 1.0, black_box(a), b, 0.0, c, ws).unwrap()
                });
            }
        }
    });
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|r| r.parse().expect("ROUNDS must be a number"))
        .unwrap_or(7);
    let isas: Vec<Isa> = [Isa::Avx2Fma, Isa::Avx512]
        .into_iter()
        .filter(|i| {
            let ok = i.is_available();
            if !ok {
                eprintln!(
                    "skipping {}: this CPU lacks {}",
                    i.name(),
                    i.required_features()
                );
            }
            ok
        })
        .collect();
    println!("detected ISA: {}", Isa::detect().name());
    for (n, threads) in [(512usize, 1usize), (1024, 2)] {
        let (a, b) = (data(n * n, 1), data(n * n, 2));
        let mut c = vec![0.0f32; n * n];
        let ws_len = sgemm_workspace_len(n, n, n);
        let mut ws = vec![0.0f32; ws_len * threads];
        let mut samples = vec![Vec::new(); isas.len()];
        for _ in 0..rounds {
            for (i, &isa) in isas.iter().enumerate() {
                let t = best_of_3(|| gemm(isa, n, threads, &a, &b, &mut c, &mut ws));
                samples[i].push(2.0 * (n * n * n) as f64 / t / 1e9);
            }
        }
        let med: Vec<f64> = samples.into_iter().map(median).collect();
        for (isa, g) in isas.iter().zip(&med) {
            println!(
                "sgemm {n}^3 {threads} thr {:>8}: {g:7.1} GFLOP/s",
                isa.name()
            );
        }
        if med.len() == 2 {
            println!(
                "sgemm {n}^3 {threads} thr avx512 / avx2+fma: {:.2}x",
                med[1] / med[0]
            );
        }
    }
}
