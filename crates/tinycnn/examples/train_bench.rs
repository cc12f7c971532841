//! LeNet's training and evaluation throughput through `tinycnn::train`, on 60,000 random
//! 28x28 images (batch 256, SGD lr 0.9): one `JSON {...}` line each for
//! `scripts/torch_lenet_bench.py --tinycnn-json`, beside tinycnn-cuda's `gpu_bench`.
//!
//! `cargo run --release -p tinycnn --features cuda --example train_bench [cpu|cuda:N]`
//! (default `cuda:0`; exits 0 with a message when that device cannot be opened).

use std::time::Instant;
use tinycnn::data::ResidentData;
use tinycnn::nn::Module;
use tinycnn::optim::Sgd;
use tinycnn::train::Trainer;
use tinycnn::{Device, Rng, Tensor};

fn main() {
    let device: Device = match std::env::args().nth(1).unwrap_or("cuda:0".into()).parse() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("train_bench: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = Tensor::scalar(0.0).to(&device) {
        eprintln!("skipping: {e}");
        return;
    }
    if let Err(e) = run(device) {
        eprintln!("train_bench failed: {e}");
        std::process::exit(1);
    }
}

fn run(device: Device) -> tinycnn::Result<()> {
    let (examples, batch) = (60_000, 256);
    let images = Tensor::rand_with(&[examples, 1, 28, 28], &mut Rng::seed_from(42)).to_vec();
    let labels: Vec<u32> = (0..examples as u32).map(|i| i % 10).collect();
    let data = ResidentData::new(&images, &[examples, 1, 28, 28], &labels, &device)?;
    tinycnn::manual_seed(0);
    let net = tinycnn_models::lenet();
    tinycnn_models::init_weights(&net)?;
    let opt = Sgd::new(net.parameters(), 0.9)?;
    let mut trainer = Trainer::new(&net, Box::new(opt), device, batch)?;
    let order: Vec<usize> = (0..examples).map(|i| (i * 7919) % examples).collect();
    trainer.train_epoch(&data, &order, 0, &mut |_, _| {})?; // warm-up
    let epochs = 3;
    let t = Instant::now();
    for e in 1..=epochs {
        trainer.train_epoch(&data, &order, e, &mut |_, _| {})?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "JSON {{\"kernel\": \"lenet_train_epoch\", \"ms\": {:.3}, \"examples_per_sec\": {:.1}}}",
        secs * 1e3 / epochs as f64,
        (epochs * examples) as f64 / secs
    );
    let t = Instant::now();
    let (correct, total) = trainer.evaluate(&data)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "JSON {{\"kernel\": \"lenet_evaluate\", \"ms\": {:.3}, \"examples_per_sec\": {:.1}}}",
        secs * 1e3,
        examples as f64 / secs
    );
    eprintln!("random-label LeNet on {device} after 4 epochs: accuracy {correct}/{total}");
    Ok(())
}
