//! Times LeNet training steps (forward, cross-entropy, backward, SGD) on random data.
//!
//! `cargo run --release -p tinycnn-models --example lenet_step -- [batch] [steps] [threads]`

use std::time::Instant;
use tinycnn::nn::Module;
use tinycnn::optim::{Optimizer, Sgd};
use tinycnn::Tensor;

fn main() -> tinycnn::Result<()> {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (batch, steps) = (arg(1, 256), arg(2, 10));
    if let Some(t) = std::env::args().nth(3).and_then(|s| s.parse().ok()) {
        tinycnn::set_num_threads(t)?;
    }
    let net = tinycnn_models::lenet();
    let mut opt = Sgd::new(net.parameters(), 0.9)?;
    let x = Tensor::rand(&[batch, 1, 28, 28]);
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let mut times = Vec::new();
    for _ in 0..steps {
        let t0 = Instant::now();
        opt.zero_grad();
        let loss = net.forward(&x)?.cross_entropy(&labels)?;
        loss.backward()?;
        opt.step()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "lenet batch {batch}, {} threads: median step {:.1} ms, {:.0} examples/s",
        tinycnn::num_threads(),
        median * 1e3,
        batch as f64 / median
    );
    Ok(())
}
