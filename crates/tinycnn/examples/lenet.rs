//! d2l "Convolutional Neural Networks (LeNet)" (卷积神经网络 LeNet) with tinycnn: the
//! layer-by-layer output shapes of LeNet on a 28x28 image, then `train_ch6` (Xavier init,
//! SGD at lr 0.9, cross-entropy, batches of 256) for one epoch on a small subset.
//!
//! Run: `cargo run --release -p tinycnn --example lenet [TRAIN_IMAGES]` (default 2048).
//!
//! Fashion-MNIST is read from the usual places (`$TINYCNN_DATA`, `./data/fashion-mnist`,
//! `/usr/share/datasets/fashion-mnist`) but never downloaded here; without it the example
//! trains on a small synthetic set instead and says so. The full 10-epoch run of the book is
//! `tinycnn train` (the CLI), not an example.

use std::time::Instant;
use tinycnn::data::{DataLoader, FashionMnist, LoadOptions, LoaderConfig};
use tinycnn::nn::{accuracy, init, Conv2d, Linear, Module, Sequential};
use tinycnn::optim::{Optimizer, Sgd};
use tinycnn::{no_grad, size_string, Error, Result, Rng, Tensor};

/// `for layer in net: X = layer(X); print(layer.__class__.__name__, 'output shape: \t', X.shape)`
pub fn shape_walk(net: &Sequential, x: &Tensor) -> Result<Vec<(String, Vec<usize>)>> {
    let mut x = x.clone();
    let mut out = Vec::new();
    for (_, layer) in net.iter() {
        x = layer.forward(&x)?;
        out.push((layer.type_name(), x.shape().to_vec()));
    }
    Ok(out)
}

/// d2l's `init_weights`: Xavier-uniform weights for every `Linear` and `Conv2d`.
pub fn init_weights(net: &Sequential) -> Result<()> {
    net.apply(&mut |m| {
        if let Some(l) = m.downcast_ref::<Linear>() {
            init::xavier_uniform_(&l.weight, 1.0)?;
        } else if let Some(c) = m.downcast_ref::<Conv2d>() {
            init::xavier_uniform_(&c.weight, 1.0)?;
        }
        Ok(())
    })
}

fn data_err(e: tinycnn::data::DataError) -> Error {
    Error::Msg(format!("data: {e}"))
}

fn batch_tensor(b: &tinycnn::data::Batch) -> Result<Tensor> {
    Tensor::from_vec(b.images.clone(), &b.shape)
}

/// `evaluate_accuracy_gpu`: the fraction of correctly classified examples, in eval mode and
/// without recording the graph.
pub fn evaluate_accuracy(net: &Sequential, data: &DataLoader) -> Result<f32> {
    net.eval();
    let (mut correct, mut total) = (0usize, 0usize);
    no_grad(|| -> Result<()> {
        for b in data.epoch(0) {
            correct += accuracy(&net.forward(&batch_tensor(&b)?)?, &b.labels)?;
            total += b.len;
        }
        Ok(())
    })?;
    Ok(correct as f32 / total.max(1) as f32)
}

/// What `train_ch6` prints at the end.
pub struct TrainReport {
    pub train_loss: f32,
    pub train_acc: f32,
    pub test_acc: f32,
    pub examples_per_sec: f64,
}

/// `train_ch6(net, train_iter, test_iter, num_epochs, lr, device)` on the CPU.
pub fn train_ch6(
    net: &Sequential,
    train_iter: &DataLoader,
    test_iter: &DataLoader,
    num_epochs: u64,
    lr: f32,
) -> Result<TrainReport> {
    init_weights(net)?;
    println!("training on cpu");
    let mut optimizer = Sgd::new(net.parameters(), lr)?;
    let (mut train_l, mut train_acc, mut test_acc) = (f32::NAN, 0.0, 0.0);
    let (mut seen, mut busy) = (0usize, 0f64);
    for epoch in 0..num_epochs {
        // Sum of training loss, number of correct predictions, number of examples.
        let (mut loss_sum, mut correct, mut n) = (0f64, 0usize, 0usize);
        net.train();
        for b in train_iter.epoch(epoch) {
            let start = Instant::now();
            optimizer.zero_grad();
            let x = batch_tensor(&b)?;
            let y_hat = net.forward(&x)?;
            let l = y_hat.cross_entropy(&b.labels)?;
            l.backward()?;
            optimizer.step()?;
            loss_sum += f64::from(l.item()?) * b.len as f64;
            correct += accuracy(&y_hat.detach(), &b.labels)?;
            n += b.len;
            busy += start.elapsed().as_secs_f64();
        }
        seen += n;
        train_l = (loss_sum / n.max(1) as f64) as f32;
        train_acc = correct as f32 / n.max(1) as f32;
        test_acc = evaluate_accuracy(net, test_iter)?;
    }
    let report = TrainReport {
        train_loss: train_l,
        train_acc,
        test_acc,
        examples_per_sec: seen as f64 / busy.max(1e-9),
    };
    println!(
        "loss {:.3}, train acc {:.3}, test acc {:.3}",
        report.train_loss, report.train_acc, report.test_acc
    );
    println!("{:.1} examples/sec on cpu", report.examples_per_sec);
    Ok(report)
}

/// A learnable stand-in for Fashion-MNIST: class `c` is noise plus a bright horizontal band
/// at rows `2c + 4 .. 2c + 6`.
pub fn synthetic_split(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut rng = Rng::seed_from(seed);
    let mut images = Vec::with_capacity(n * 28 * 28);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.below(10);
        labels.push(c as u8);
        for r in 0..28 {
            let band = r >= 2 * c + 4 && r < 2 * c + 6;
            for _ in 0..28 {
                let noise = 0.3 * rng.uniform();
                images.push(if band { 0.7 + noise } else { noise });
            }
        }
    }
    (images, labels)
}

fn main() -> Result<()> {
    tinycnn::manual_seed(0);
    let train_size: usize = match std::env::args().nth(1) {
        Some(s) => s.parse().map_err(|_| {
            Error::invalid_argument("lenet", format!("TRAIN_IMAGES must be a count, got `{s}`"))
        })?,
        None => 2048,
    };
    let test_size = 1000;

    println!("## LeNet");
    let net = tinycnn_models::lenet();
    println!("{}", net.repr());
    let x = Tensor::rand(&[1, 1, 28, 28]);
    for (name, shape) in shape_walk(&net, &x)? {
        println!("{name} output shape: \t {}", size_string(&shape));
    }

    println!("\n## Training (模型训练): 1 epoch on {train_size} training images");
    let batch_size = 256;
    let config = LoaderConfig {
        batch_size,
        ..LoaderConfig::default()
    };
    let test_config = LoaderConfig {
        shuffle: false,
        ..config
    };
    let local = FashionMnist::load_with(LoadOptions {
        download: false,
        ..LoadOptions::default()
    });
    let (train_iter, test_iter) = match local {
        Ok(ds) => {
            println!("Fashion-MNIST from {}", ds.dir.display());
            let (tr, te) = (train_size.min(ds.train.len()), test_size.min(ds.test.len()));
            let px = 28 * 28;
            (
                DataLoader::new(
                    ds.train.images[..tr * px].to_vec(),
                    ds.train.labels[..tr].to_vec(),
                    [1, 28, 28],
                    config,
                )
                .map_err(data_err)?,
                DataLoader::new(
                    ds.test.images[..te * px].to_vec(),
                    ds.test.labels[..te].to_vec(),
                    [1, 28, 28],
                    test_config,
                )
                .map_err(data_err)?,
            )
        }
        Err(e) => {
            println!("Fashion-MNIST not found locally ({e}); using synthetic stripes instead");
            let (xi, yi) = synthetic_split(train_size, 1);
            let (xt, yt) = synthetic_split(test_size, 2);
            (
                DataLoader::new(xi, yi, [1, 28, 28], config).map_err(data_err)?,
                DataLoader::new(xt, yt, [1, 28, 28], test_config).map_err(data_err)?,
            )
        }
    };
    let (lr, num_epochs) = (0.9, 1);
    train_ch6(&net, &train_iter, &test_iter, num_epochs, lr)?;
    Ok(())
}
