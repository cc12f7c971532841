//! SGEMM and the LeNet convolutions with each x86 ISA this CPU has, forced through
//! `sgemm_with_isa` / `vectorize_with`, in alternating rounds so that clock and neighbour
//! noise hit every ISA alike; prints the median of the rounds.
//!
//! ```text
//! cargo run --release -p tinycnn-benches --example isa_compare [-- ROUNDS]
//! ```
//!
//! SGEMM: 512^3 on one thread, 1024^3 on two (rows of C split in halves, one workspace
//! each). Convolutions: LeNet's two layers and a 1-channel layer with 10-wide output rows
//! (narrower than an AVX-512 vector) at batch 256, one thread, forward and both
//! gradients with the automatic algorithm, the ISA forced with `simd::force_isa`. LeNet
//! (d2l's, in the tinycnn runtime) at batch 256 on one thread: inference forward and an SGD
//! training step. Time is
//! wall-clock (`Instant`), each sample the best of 3 calls, so a preempted call on a shared
//! machine does not count.

use std::hint::black_box;
use std::time::Instant;
use tinycnn_kernels::simd::{force_isa, Isa};
use tinycnn_kernels::{
    conv2d_backward_input, conv2d_backward_input_workspace_len, conv2d_backward_weight,
    conv2d_backward_weight_workspace_len, conv2d_forward, conv2d_workspace_len, sgemm_with_isa,
    sgemm_workspace_len, Conv2dParams, Conv2dShape, GemmShape,
};

#[path = "../src/workloads.rs"]
mod workloads;

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
    let lenet = [
        (
            "lenet1 1x28x28 6c 5x5 pad2",
            Conv2dShape::new(
                Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
                256,
                28,
                28,
            ),
        ),
        (
            "lenet2 6x14x14 16c 5x5",
            Conv2dShape::new(Conv2dParams::new(6, 16, (5, 5)), 256, 14, 14),
        ),
        // 10-wide output rows, narrower than 16 lanes: the direct algorithm's masked rows.
        (
            "narrow 1x14x14 6c 5x5",
            Conv2dShape::new(Conv2dParams::new(1, 6, (5, 5)), 256, 14, 14),
        ),
    ];
    for (name, s) in lenet {
        let (oh, ow) = s.out_hw().unwrap();
        let p = &s.params;
        let flops = 2.0
            * (s.batch * p.out_channels * oh * ow * p.in_per_group() * p.kernel.0 * p.kernel.1)
                as f64;
        let x = data(s.input_len().unwrap(), 3);
        let w = data(s.weight_len(), 4);
        let gy = data(s.output_len().unwrap(), 5);
        let (mut y, mut gx, mut gw) = (vec![0.0; gy.len()], vec![0.0; x.len()], vec![0.0; w.len()]);
        let ws_len = conv2d_workspace_len(&s)
            .max(conv2d_backward_input_workspace_len(&s))
            .max(conv2d_backward_weight_workspace_len(&s));
        let mut ws = vec![0.0f32; ws_len];
        for pass in ["forward", "grad input", "grad weight"] {
            let mut samples = vec![Vec::new(); isas.len()];
            for _ in 0..rounds {
                for (i, &isa) in isas.iter().enumerate() {
                    force_isa(Some(isa));
                    let t = best_of_3(|| match pass {
                        "forward" => {
                            conv2d_forward(&s, black_box(&x), &w, None, &mut y, &mut ws).unwrap()
                        }
                        "grad input" => {
                            conv2d_backward_input(&s, black_box(&gy), &w, &mut gx, &mut ws).unwrap()
                        }
                        _ => conv2d_backward_weight(&s, black_box(&x), &gy, &mut gw, &mut ws)
                            .unwrap(),
                    });
                    force_isa(None);
                    samples[i].push(flops / t / 1e9);
                }
            }
            let med: Vec<f64> = samples.into_iter().map(median).collect();
            let cells: Vec<String> = isas
                .iter()
                .zip(&med)
                .map(|(i, g)| format!("{} {g:6.1}", i.name()))
                .collect();
            let ratio = if med.len() == 2 {
                format!(" | ratio {:.2}x", med[1] / med[0])
            } else {
                String::new()
            };
            println!(
                "conv {name} {pass:<11} GFLOP/s: {}{ratio}",
                cells.join(" | ")
            );
        }
    }
    tinycnn::set_num_threads(1).unwrap();
    let mut net = workloads::RuntimeLenet::new(256);
    for what in ["forward", "train step"] {
        let mut samples = vec![Vec::new(); isas.len()];
        for _ in 0..rounds {
            for (i, &isa) in isas.iter().enumerate() {
                force_isa(Some(isa));
                let t = best_of_3(|| {
                    if what == "forward" {
                        black_box(net.forward());
                    } else {
                        black_box(net.train_step());
                    }
                });
                force_isa(None);
                samples[i].push(t * 1e3);
            }
        }
        let med: Vec<f64> = samples.into_iter().map(median).collect();
        let cells: Vec<String> = isas
            .iter()
            .zip(&med)
            .map(|(i, ms)| format!("{} {ms:6.2} ms", i.name()))
            .collect();
        let ratio = if med.len() == 2 {
            format!(" | avx512 speed-up {:.2}x", med[0] / med[1])
        } else {
            String::new()
        };
        println!("LeNet b256 1 thr {what:<10}: {}{ratio}", cells.join(" | "));
    }
}
