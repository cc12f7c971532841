//! One-screen speed summary: each kernel at its shapes, naive reference against the SIMD
//! kernel (one thread, then all cores), with GFLOP/s and the share of this CPU's peak.
//!
//! ```text
//! cargo run --release -p tinycnn-benches --bin bench-screen [-- --ghz 3.5 --reps 7 --isa avx2+fma]
//! ```
//!
//! Timing is a plain `std::time::Instant` loop: each row is the median of `--reps` runs
//! (default 5; naive rows 3), after one warm-up run.
//!
//! The kernels run with the ISA detected at run time, or the one `--isa` forces (through
//! `tinycnn_kernels::simd::force_isa`); each row names the ISA its SIMD kernel ran with.
//! Peak = cores x GHz x flop/cycle/core of that ISA, an estimate that assumes two vector
//! FMA units per core: 64 for AVX-512 (2 x 16 lanes x 2 flops), 32 for AVX2+FMA, 16 for
//! SSE2 and NEON (4 lanes; SSE2's multiply and add on separate units), 4 for the scalar
//! token. CPUs that split AVX-512 into 256-bit halves reach only 32 with it: Zen 4 (AMD
//! family 0x19) is recognized from /proc/cpuinfo and its peak taken as 32; others like it
//! are not, so read their "% peak" with that in mind. Single-thread rows use one core. GHz
//! comes from `--ghz`, else `TINYCNN_CPU_GHZ`, else (x86-64) is measured: a chain of
//! dependent integer adds retires one add per cycle, so adds per second is the clock the
//! core runs at under load, boost included (CPUs that clock down for wide vector code, as
//! older Xeons do for AVX-512, run the kernels slower than that); else the highest
//! "cpu MHz" in /proc/cpuinfo, which virtual machines often report as the nominal clock
//! (2.6 GHz on the Zen 5 machine of `benches/README.md`, whose cores ran at 4.2).
//! Cores come from `std::thread::available_parallelism`.
//!
//! Naive rows marked `*` were timed on a smaller batch (or size) and scaled linearly to the
//! full problem (per image for convolutions and LeNet, by n^3 for SGEMM). Pooling does one
//! compare/add per window element, counted as one "flop"; it is memory-bound, so its share
//! of the FMA peak is only indicative.

use rayon::prelude::*;
use std::hint::black_box;
use std::time::Instant;
use tinycnn_kernels::simd::{active_isa, force_isa, Isa};
use tinycnn_kernels::{reference, sgemm, sgemm_workspace_len, GemmShape};

#[path = "../workloads.rs"]
mod workloads;
use workloads::*;

/// Estimated peak f32 flop per cycle per core of `isa` (two vector FMA units), and why
/// when it departs from that.
fn flops_per_cycle(isa: Isa, cpu: &CpuId) -> (f64, &'static str) {
    match isa {
        Isa::Avx512 if cpu.is_zen4() => {
            (32.0, "Zen 4 executes AVX-512 on 256-bit units: 32, not 64")
        }
        Isa::Avx512 => (64.0, "2 FMA units x 16 lanes x 2"),
        Isa::Avx2Fma => (32.0, "2 FMA units x 8 lanes x 2"),
        Isa::Sse2 => (16.0, "4 lanes, multiply and add on 2 units"),
        Isa::Neon => (16.0, "2 FMA units x 4 lanes x 2"),
        Isa::Scalar => (4.0, "portable code, 2 FMA units x 1 lane x 2"),
    }
}

/// Vendor and family of this CPU, from /proc/cpuinfo.
struct CpuId {
    vendor: String,
    family: Option<u32>,
}

impl CpuId {
    fn read() -> CpuId {
        let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find(|l| l.split(':').next().map(str::trim) == Some(name))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        };
        CpuId {
            vendor: field("vendor_id").unwrap_or_default(),
            family: field("cpu family").and_then(|f| f.parse().ok()),
        }
    }

    /// AMD family 0x19 (Zen 3 and Zen 4; only Zen 4 has AVX-512).
    fn is_zen4(&self) -> bool {
        self.vendor == "AuthenticAMD" && self.family == Some(0x19)
    }
}

struct Options {
    ghz: f64,
    ghz_source: String,
    reps: usize,
    isa: Option<Isa>,
}

/// The ISA named `name` (as `Isa::name` spells it).
fn parse_isa(name: &str) -> Result<Isa, String> {
    [Isa::Avx512, Isa::Avx2Fma, Isa::Sse2, Isa::Neon, Isa::Scalar]
        .into_iter()
        .find(|i| i.name() == name)
        .ok_or(format!(
            "--isa {name}: expected avx512, avx2+fma, sse2, neon or scalar"
        ))
}

fn parse_options() -> Result<Options, String> {
    let mut ghz = None;
    let mut reps = 5;
    let mut isa = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--ghz" => {
                let v = value("--ghz")?;
                ghz = Some(v.parse::<f64>().map_err(|e| format!("--ghz {v}: {e}"))?);
            }
            "--reps" => {
                let v = value("--reps")?;
                reps = v
                    .parse::<usize>()
                    .map_err(|e| format!("--reps {v}: {e}"))?
                    .max(1);
            }
            "--isa" => {
                let i = parse_isa(&value("--isa")?)?;
                if !i.is_available() {
                    return Err(format!(
                        "--isa {}: this CPU lacks {}",
                        i.name(),
                        i.required_features()
                    ));
                }
                isa = Some(i);
            }
            "-h" | "--help" => {
                println!("usage: bench-screen [--ghz GHZ] [--reps N] [--isa avx512|avx2+fma|sse2|neon|scalar]   (env TINYCNN_CPU_GHZ also sets GHz)");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    let (ghz, ghz_source) = match ghz {
        Some(g) => (g, "--ghz".to_string()),
        None => match std::env::var("TINYCNN_CPU_GHZ") {
            Ok(v) => (
                v.parse::<f64>()
                    .map_err(|e| format!("TINYCNN_CPU_GHZ={v}: {e}"))?,
                "TINYCNN_CPU_GHZ".to_string(),
            ),
            Err(_) => match (measured_ghz(), cpuinfo_ghz()) {
                (Some(g), Some(c)) => (
                    g,
                    format!("measured with dependent adds; /proc/cpuinfo says {c:.2}"),
                ),
                (Some(g), None) => (g, "measured with dependent adds".to_string()),
                (None, Some(c)) => (c, "/proc/cpuinfo cpu MHz".to_string()),
                (None, None) => {
                    return Err("cannot read the clock from /proc/cpuinfo: pass --ghz".into())
                }
            },
        },
    };
    if !(ghz.is_finite() && ghz > 0.0) {
        return Err(format!("clock {ghz} GHz is not a positive number"));
    }
    Ok(Options {
        ghz,
        ghz_source,
        reps,
        isa,
    })
}

/// The clock of the core running this thread, in GHz: 8 dependent adds per loop iteration
/// take 8 cycles (one-cycle latency; the loop counter is a separate chain). Best of 25 runs
/// of about 5 ms: short enough that on a busy machine some run between preemptions.
#[cfg(target_arch = "x86_64")]
fn measured_ghz() -> Option<f64> {
    const ITERS: u64 = 2_500_000;
    let mut best = f64::INFINITY;
    for _ in 0..25 {
        let (mut x, mut n) = (0u64, ITERS);
        let t0 = Instant::now();
        // SAFETY: register arithmetic and a local branch only; no memory, no stack.
        unsafe {
            std::arch::asm!(
                "2:",
                "add {x}, 1",
                "add {x}, 1",
                "add {x}, 1",
                "add {x}, 1",
                "add {x}, 1",
                "add {x}, 1",
                "add {x}, 1",
                "add {x}, 1",
                "dec {n}",
                "jnz 2b",
                x = inout(reg) x,
                n = inout(reg) n,
                options(nomem, nostack),
            );
        }
        best = best.min(t0.elapsed().as_secs_f64());
        black_box((x, n));
    }
    let ghz = 8.0 * ITERS as f64 / best / 1e9;
    (ghz.is_finite() && ghz > 0.1).then_some(ghz)
}

#[cfg(not(target_arch = "x86_64"))]
fn measured_ghz() -> Option<f64> {
    None
}

/// The highest "cpu MHz" of any core, in GHz.
fn cpuinfo_ghz() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .filter(|l| l.starts_with("cpu MHz"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        .map(|mhz| mhz / 1000.0)
}

/// Median wall time of `reps` runs of `f` in milliseconds, after one warm-up run.
fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

struct Row {
    kernel: String,
    /// The ISA the SIMD kernel ran with.
    isa: Isa,
    shape: String,
    threads: usize,
    /// Naive time for the full problem, and whether it was scaled from a smaller one.
    naive_ms: Option<(f64, bool)>,
    fast_ms: f64,
    flops: f64,
}

struct Table {
    rows: Vec<Row>,
    ghz: f64,
    cpu: CpuId,
}

impl Table {
    fn print(&self) {
        println!(
            "| {:<17} | {:<30} | {:<8} | {:>3} | {:>10} | {:>9} | {:>8} | {:>8} | {:>6} |",
            "kernel", "shape", "ISA", "thr", "naive ms", "SIMD ms", "speed-up", "GFLOP/s", "% peak"
        );
        println!(
            "|{:-<19}|{:-<32}|{:-<10}|{:->5}|{:->12}|{:->11}|{:->10}|{:->10}|{:->8}|",
            "", "", "", ":", ":", ":", ":", ":", ":"
        );
        for r in &self.rows {
            let (naive, speedup) = match r.naive_ms {
                Some((ms, scaled)) => (
                    format!("{}{}", fmt_ms(ms), if scaled { "*" } else { "" }),
                    format!("{:.1}x", ms / r.fast_ms),
                ),
                None => ("-".into(), "-".into()),
            };
            let gflops = r.flops / (r.fast_ms * 1e-3) / 1e9;
            let peak = r.threads as f64 * self.ghz * flops_per_cycle(r.isa, &self.cpu).0;
            println!(
                "| {:<17} | {:<30} | {:<8} | {:>3} | {:>10} | {:>9} | {:>8} | {:>8.1} | {:>5.1}% |",
                r.kernel,
                r.shape,
                r.isa.name(),
                r.threads,
                naive,
                fmt_ms(r.fast_ms),
                speedup,
                gflops,
                100.0 * gflops / peak
            );
        }
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.3}")
    }
}

fn main() {
    let opt = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    force_isa(opt.isa);
    let isa = active_isa();
    let cpu = CpuId::read();
    let threads = cores();
    let pool = thread_pool(threads);
    let naive_reps = opt.reps.min(3);
    let mut rows = Vec::new();

    for case in conv_cases() {
        let s = case.shape;
        let mut b = ConvBufs::new(&s, threads);
        let scale = s.batch as f64 / case.naive_batch as f64;
        let naive = median_ms(naive_reps, || b.naive(&s, case.naive_batch)) * scale;
        let naive = Some((naive, case.naive_batch != s.batch));
        let one = median_ms(opt.reps, || b.simd(black_box(&s)));
        let all = median_ms(opt.reps, || b.simd_parallel(black_box(&s), &pool));
        let flops = conv_flops(&s) as f64;
        for (t, ms) in [(1, one), (threads, all)] {
            rows.push(Row {
                isa,
                kernel: "conv2d fwd".into(),
                shape: case.name.into(),
                threads: t,
                naive_ms: naive,
                fast_ms: ms,
                flops,
            });
        }
    }

    for case in pool_cases() {
        let s = case.shape;
        let mut b = PoolBufs::new(&s);
        for (kind, max) in [("max_pool2d fwd", true), ("avg_pool2d fwd", false)] {
            let naive = Some((median_ms(naive_reps, || b.naive(&s, max)), false));
            let one = median_ms(opt.reps, || b.simd(black_box(&s), max));
            let all = median_ms(opt.reps, || b.simd_parallel(black_box(&s), max, &pool));
            let flops = pool_ops(&s) as f64;
            for (t, ms) in [(1, one), (threads, all)] {
                rows.push(Row {
                    isa,
                    kernel: kind.into(),
                    shape: case.name.into(),
                    threads: t,
                    naive_ms: naive,
                    fast_ms: ms,
                    flops,
                });
            }
        }
    }

    for n in [256usize, 512, 1024] {
        let a = data(n * n, 1);
        let bm = data(n * n, 2);
        let mut c = vec![0.0f32; n * n];
        let ws_len = sgemm_workspace_len(n, n, n);
        let mut ws = vec![0.0f32; ws_len * threads];
        // The naive loop at 1024 takes seconds: time it at 512 and scale by n^3.
        let naive_n = n.min(512);
        let gn = GemmShape::new(naive_n, naive_n, naive_n);
        let naive = median_ms(naive_reps, || {
            reference::sgemm(
                &gn,
                1.0,
                &a[..naive_n * naive_n],
                &bm[..naive_n * naive_n],
                0.0,
                &mut c[..naive_n * naive_n],
            )
            .unwrap()
        }) * (n as f64 / naive_n as f64).powi(3);
        let naive = Some((naive, naive_n != n));
        let g = GemmShape::new(n, n, n);
        let one = median_ms(opt.reps, || {
            sgemm(&g, 1.0, black_box(&a), &bm, 0.0, &mut c, &mut ws[..ws_len]).unwrap()
        });
        let rows_per = n.div_ceil(threads);
        let all = median_ms(opt.reps, || {
            pool.install(|| {
                a.par_chunks(rows_per * n)
                    .zip(c.par_chunks_mut(rows_per * n))
                    .zip(ws.par_chunks_mut(ws_len))
                    .for_each(|((a, c), ws)| {
                        sgemm(&GemmShape::new(a.len() / n, n, n), 1.0, a, &bm, 0.0, c, ws).unwrap()
                    })
            })
        });
        let flops = 2.0 * (n * n * n) as f64;
        for (t, ms) in [(1, one), (threads, all)] {
            rows.push(Row {
                isa,
                kernel: "sgemm".into(),
                shape: format!("{n}x{n}x{n}"),
                threads: t,
                naive_ms: naive,
                fast_ms: ms,
                flops,
            });
        }
    }

    const BATCH: usize = 256;
    const NAIVE_BATCH: usize = 16;
    let fwd = lenet_forward_flops_per_image() as f64;
    let wt = LenetWeights::new();
    let xs = data(NAIVE_BATCH * 28 * 28, 5);
    let naive = median_ms(naive_reps, || {
        black_box(lenet_forward_naive(&wt, NAIVE_BATCH, &xs));
    }) * (BATCH / NAIVE_BATCH) as f64;
    let mut net = RuntimeLenet::new(BATCH);
    for t in [1, threads] {
        tinycnn::set_num_threads(t).unwrap();
        let ms = median_ms(opt.reps, || {
            black_box(net.forward());
        });
        rows.push(Row {
            isa,
            kernel: "LeNet forward".into(),
            shape: format!("b{BATCH} 1x28x28 (runtime)"),
            threads: t,
            naive_ms: Some((naive, true)),
            fast_ms: ms,
            flops: fwd * BATCH as f64,
        });
    }
    for t in [1, threads] {
        tinycnn::set_num_threads(t).unwrap();
        let ms = median_ms(opt.reps, || {
            black_box(net.train_step());
        });
        rows.push(Row {
            isa,
            kernel: "LeNet train step".into(),
            shape: format!("b{BATCH} SGD (runtime)"),
            threads: t,
            naive_ms: None,
            fast_ms: ms,
            flops: 3.0 * fwd * BATCH as f64,
        });
    }

    let (fpc, why) = flops_per_cycle(isa, &cpu);
    println!(
        "tinycnn bench-screen: {} | ISA {} ({}) | {} cores | {:.2} GHz ({}) | median of {} runs (naive {})",
        tinycnn_benches::cpu_model(),
        isa.name(),
        if opt.isa.is_some() { "forced by --isa" } else { "detected" },
        threads,
        opt.ghz,
        opt.ghz_source,
        opt.reps,
        naive_reps
    );
    println!(
        "peak (an estimate): {fpc} flop/cycle/core ({why}) x {:.2} GHz = {:.1} GFLOP/s per core, {:.1} all cores",
        opt.ghz,
        opt.ghz * fpc,
        opt.ghz * fpc * threads as f64,
    );
    Table {
        rows,
        ghz: opt.ghz,
        cpu,
    }
    .print();
    println!("* naive timed on a smaller batch/size and scaled linearly (see --help / source docs); pooling counts 1 op per window element; LeNet flops = conv + linear (train step = 3x forward).");
}
