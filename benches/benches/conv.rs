//! conv2d at LeNet's two shapes: the naive reference loops against the fast kernels
//! (single thread), forward and backward. Throughput is in flops (2 per multiply-add), so
//! criterion's "elem/s" reads as flop/s.
//!
//! The naive loops run on a smaller batch (`NAIVE_BATCH`) to keep the run short; the
//! throughput of each benchmark is computed for its own batch, so rates compare directly.
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: the
//! build machine is shared with other jobs, and CPU time leaves out the slices the thread
//! spends descheduled. Throughputs print as Gflop/s.
//!
//! Rows `Auto-<isa>` run the automatic algorithm with each vector ISA this CPU has
//! (AVX-512, AVX2+FMA), forced through `tinycnn_kernels::simd::force_isa`; the other rows
//! use the detected ISA.
//!
//! Run: `cargo bench -p tinycnn-benches --bench conv`

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tinycnn_kernels::simd::{force_isa, Isa};
use tinycnn_kernels::{
    conv2d_backward_input_with, conv2d_backward_input_workspace_len_for,
    conv2d_backward_weight_with, conv2d_backward_weight_workspace_len_for, conv2d_forward_with,
    conv2d_workspace_len_for, reference, Conv2dParams, Conv2dShape, ConvAlgo,
};

/// The vector ISAs of this CPU compared by the `Auto-<isa>` rows.
fn vector_isas() -> Vec<Isa> {
    [Isa::Avx512, Isa::Avx2Fma]
        .into_iter()
        .filter(|i| i.is_available())
        .collect()
}

fn isa_id(isa: Isa) -> BenchmarkId {
    BenchmarkId::new(format!("Auto-{}", isa.name()), format!("batch{BATCH}"))
}

const BATCH: usize = 256;
const NAIVE_BATCH: usize = 16;

fn lenet_shapes() -> [(&'static str, Conv2dShape); 2] {
    [
        (
            "lenet1_1x28x28_6c_5x5_pad2",
            Conv2dShape::new(
                Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
                BATCH,
                28,
                28,
            ),
        ),
        (
            "lenet2_6x14x14_16c_5x5",
            Conv2dShape::new(Conv2dParams::new(6, 16, (5, 5)), BATCH, 14, 14),
        ),
    ]
}

/// Multiply-adds times two for one pass (forward, backward input and backward weight all
/// do the same number).
fn flops(s: &Conv2dShape) -> u64 {
    let out = s.output_len().unwrap() as u64;
    2 * out * s.col_rows().unwrap() as u64
}

fn data(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// CPU time of the calling thread.
struct ThreadCpuTime;

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// Linux's `CLOCK_THREAD_CPUTIME_ID`.
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

fn thread_cpu_now() -> Duration {
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; the clock id is a Linux constant.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Nanoseconds as ms/us, flops per nanosecond as Gflop/s.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns (cpu)")
        } else if ns < 1e6 {
            (1e-3, "us (cpu)")
        } else {
            (1e-6, "ms (cpu)")
        };
        for v in values {
            *v *= factor;
        }
        unit
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let per_iter = match *t {
            Throughput::Elements(e) => e as f64,
            Throughput::ElementsAndBytes { elements, .. } => elements as f64,
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => b as f64,
            Throughput::Bits(b) => b as f64,
        };
        for v in values {
            *v = per_iter / *v;
        }
        "Gflop/s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn bench_conv(c: &mut Criterion<ThreadCpuTime>) {
    for (name, s) in lenet_shapes() {
        let x = data(s.input_len().unwrap());
        let w = data(s.weight_len());
        let b = data(s.params.out_channels);
        let gy = data(s.output_len().unwrap());
        let mut y = vec![0.0; s.output_len().unwrap()];
        let mut gx = vec![0.0; x.len()];
        let mut gw = vec![0.0; w.len()];

        let small = s.with_batch(NAIVE_BATCH);
        let xs = &x[..small.input_len().unwrap()];
        let gys = &gy[..small.output_len().unwrap()];

        let mut group = c.benchmark_group(format!("conv2d_forward/{name}"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        group.throughput(Throughput::Elements(flops(&small)));
        group.bench_function(
            BenchmarkId::new("naive", format!("batch{NAIVE_BATCH}")),
            |bn| {
                let ys = &mut y[..small.output_len().unwrap()];
                bn.iter(|| reference::conv2d(&small, black_box(xs), &w, Some(&b), ys).unwrap())
            },
        );
        group.throughput(Throughput::Elements(flops(&s)));
        for algo in [ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2colGemm] {
            let mut ws = vec![0.0; conv2d_workspace_len_for(algo, &s)];
            group.bench_function(
                BenchmarkId::new(format!("{algo:?}"), format!("batch{BATCH}")),
                |bn| {
                    bn.iter(|| {
                        conv2d_forward_with(algo, &s, black_box(&x), &w, Some(&b), &mut y, &mut ws)
                            .unwrap()
                    })
                },
            );
        }
        for isa in vector_isas() {
            let mut ws = vec![0.0; conv2d_workspace_len_for(ConvAlgo::Auto, &s)];
            force_isa(Some(isa));
            group.bench_function(isa_id(isa), |bn| {
                bn.iter(|| {
                    conv2d_forward_with(
                        ConvAlgo::Auto,
                        &s,
                        black_box(&x),
                        &w,
                        Some(&b),
                        &mut y,
                        &mut ws,
                    )
                    .unwrap()
                })
            });
            force_isa(None);
        }
        group.finish();

        let mut group = c.benchmark_group(format!("conv2d_backward_input/{name}"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        group.throughput(Throughput::Elements(flops(&small)));
        group.bench_function(
            BenchmarkId::new("naive", format!("batch{NAIVE_BATCH}")),
            |bn| {
                let gxs = &mut gx[..small.input_len().unwrap()];
                bn.iter(|| {
                    reference::conv2d_backward_input(&small, black_box(gys), &w, gxs).unwrap()
                })
            },
        );
        group.throughput(Throughput::Elements(flops(&s)));
        for algo in [ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2colGemm] {
            let mut ws = vec![0.0; conv2d_backward_input_workspace_len_for(algo, &s)];
            group.bench_function(
                BenchmarkId::new(format!("{algo:?}"), format!("batch{BATCH}")),
                |bn| {
                    bn.iter(|| {
                        conv2d_backward_input_with(algo, &s, black_box(&gy), &w, &mut gx, &mut ws)
                            .unwrap()
                    })
                },
            );
        }
        for isa in vector_isas() {
            let mut ws = vec![0.0; conv2d_backward_input_workspace_len_for(ConvAlgo::Auto, &s)];
            force_isa(Some(isa));
            group.bench_function(isa_id(isa), |bn| {
                bn.iter(|| {
                    let gy = black_box(&gy);
                    conv2d_backward_input_with(ConvAlgo::Auto, &s, gy, &w, &mut gx, &mut ws)
                        .unwrap()
                })
            });
            force_isa(None);
        }
        group.finish();

        let mut group = c.benchmark_group(format!("conv2d_backward_weight/{name}"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        group.throughput(Throughput::Elements(flops(&small)));
        group.bench_function(
            BenchmarkId::new("naive", format!("batch{NAIVE_BATCH}")),
            |bn| {
                bn.iter(|| {
                    reference::conv2d_backward_weight(&small, black_box(xs), gys, &mut gw).unwrap()
                })
            },
        );
        group.throughput(Throughput::Elements(flops(&s)));
        for algo in [ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2colGemm] {
            let mut ws = vec![0.0; conv2d_backward_weight_workspace_len_for(algo, &s)];
            group.bench_function(
                BenchmarkId::new(format!("{algo:?}"), format!("batch{BATCH}")),
                |bn| {
                    bn.iter(|| {
                        conv2d_backward_weight_with(algo, &s, black_box(&x), &gy, &mut gw, &mut ws)
                            .unwrap()
                    })
                },
            );
        }
        for isa in vector_isas() {
            let mut ws = vec![0.0; conv2d_backward_weight_workspace_len_for(ConvAlgo::Auto, &s)];
            force_isa(Some(isa));
            group.bench_function(isa_id(isa), |bn| {
                bn.iter(|| {
                    let x = black_box(&x);
                    conv2d_backward_weight_with(ConvAlgo::Auto, &s, x, &gy, &mut gw, &mut ws)
                        .unwrap()
                })
            });
            force_isa(None);
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_conv
}
criterion_main!(benches);
