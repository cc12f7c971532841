//! LeNet inference timing for `benches/infer-vs-torch.sh`: the lean path ([`Inference`]) or
//! the autograd forward under `no_grad`, on random images, after a warm-up.
//!
//!     cargo run --release -p tinycnn-benches --bin infer-bench -- \
//!         [--model lenet|lenet-relu] [--batch 256] [--threads 2] [--path lean|autograd]
//!         [--seconds 2] [--calls N]
//!
//! `--calls N` makes exactly N calls and prints nothing (for `valgrind --tool=callgrind`).
//!
//! Prints one line: the median per-call latency in microseconds over rounds of calls, and
//! images per second at that median, with the CPU and the kernels' ISA.
use std::time::{Duration, Instant};
use tinycnn::nn::Module;
use tinycnn::{no_grad, Inference, Tensor};

fn main() {
    if let Err(e) = run() {
        eprintln!("infer-bench: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut model = "lenet".to_string();
    let (mut batch, mut threads, mut seconds) = (256usize, 2usize, 2.0f64);
    let mut path = "lean".to_string();
    let mut calls: Option<u32> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = val()?,
            "--batch" => batch = val()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--threads" => threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--seconds" => seconds = val()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--path" => path = val()?,
            "--calls" => calls = Some(val()?.parse().map_err(|e| format!("--calls: {e}"))?),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    tinycnn::set_num_threads(threads).map_err(|e| e.to_string())?;
    let m = tinycnn_models::by_name(&model).map_err(|e| e.to_string())?;
    let net = m.build();
    tinycnn_models::init_weights(&net).map_err(|e| e.to_string())?;
    let x = Tensor::rand(&[batch, 1, 28, 28]);
    let mut lean = Inference::new(&net, &[1, 28, 28]).map_err(|e| e.to_string())?;
    let mut call = || -> Result<Tensor, String> {
        match path.as_str() {
            "lean" => lean.run(&x).map_err(|e| e.to_string()),
            "autograd" => no_grad(|| net.forward(&x)).map_err(|e| e.to_string()),
            p => Err(format!("--path must be lean or autograd, got {p}")),
        }
    };
    // A fixed number of calls and no timing: for instruction counts under callgrind.
    if let Some(n) = calls {
        for _ in 0..n {
            call()?;
        }
        return Ok(());
    }
    // Warm-up: buffers, the thread pool, caches.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        call()?;
    }
    let mut rounds = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds || rounds.len() < 5 {
        let t = Instant::now();
        let mut calls = 0u32;
        while t.elapsed() < Duration::from_millis(50) {
            call()?;
            calls += 1;
        }
        rounds.push(t.elapsed().as_secs_f64() / f64::from(calls));
    }
    rounds.sort_by(|a, b| a.total_cmp(b));
    let med = rounds[rounds.len() / 2];
    println!(
        "tinycnn {path} {model} batch {batch} threads {threads}: {:.1} us/call, {:.0} img/s ({}, {})",
        med * 1e6,
        batch as f64 / med,
        tinycnn_benches::cpu_model(),
        tinycnn_kernels::simd::Isa::detect().name()
    );
    Ok(())
}
