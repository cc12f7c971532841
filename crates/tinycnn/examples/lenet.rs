//! d2l "Convolutional Neural Networks (LeNet)" (卷积神经网络 LeNet) with tinycnn: the
//! layer-by-layer output shapes of LeNet on a 28x28 image, then the book's full `train_ch6`
//! recipe written out as in the notebook: Xavier init, cross-entropy, SGD at lr 0.9, batches
//! of 256, 10 epochs over all 60 000 Fashion-MNIST training images, accuracy on all 10 000
//! test images after each epoch. It prints one line per epoch (the points d2l's Animator
//! plots at each epoch's end) and d2l's two closing lines. On two (shared) cores it took a
//! minute and ended at `loss 0.452, train acc 0.830, test acc 0.820`.
//!
//! Run: `cargo run --release -p tinycnn --example lenet`
//!
//! Fashion-MNIST is found as `tinycnn train` finds it (`$TINYCNN_DATA`, `./data/fashion-mnist`,
//! `/usr/share/datasets/fashion-mnist`) and downloaded into `./data/fashion-mnist` when missing,
//! as d2l's `load_data_fashion_mnist` does.
//!
//! Quick mode, for CI (`scripts/run-examples.sh` sets it): `TINYCNN_EXAMPLES_QUICK=1` trains
//! one epoch on the first 2048 training images and tests on 1000, never downloads, and falls
//! back to a small synthetic set (saying so) when Fashion-MNIST is not on the machine. It
//! only shows that the code runs; its accuracy means nothing.
//!
//! The same recipe with a progress bar, the training curves as SVG and a checkpoint after
//! every epoch is the CLI: `cargo run --release -p tinycnn-cli -- train --plot curves.svg`.

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

/// The figures of one epoch: the points d2l's Animator draws at the epoch's end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochMetrics {
    /// Mean training loss over the epoch's examples.
    pub train_loss: f32,
    /// Training accuracy over the epoch's examples (with the weights of each batch's forward).
    pub train_acc: f32,
    /// Accuracy on the test set after the epoch.
    pub test_acc: f32,
}

/// What `train_ch6` prints at the end, and every epoch's figures.
pub struct TrainReport {
    pub train_loss: f32,
    pub train_acc: f32,
    pub test_acc: f32,
    pub examples_per_sec: f64,
    /// One entry per epoch, in order.
    pub history: Vec<EpochMetrics>,
}

/// `train_ch6(net, train_iter, test_iter, num_epochs, lr, device)` on the CPU. Where the
/// notebook adds a point to its Animator at the end of an epoch, this prints a line
/// `epoch N: loss L, train acc A, test acc T`.
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
    let mut history = Vec::with_capacity(num_epochs as usize);
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
        println!(
            "epoch {}: loss {train_l:.3}, train acc {train_acc:.3}, test acc {test_acc:.3}",
            epoch + 1
        );
        history.push(EpochMetrics {
            train_loss: train_l,
            train_acc,
            test_acc,
        });
    }
    let report = TrainReport {
        train_loss: train_l,
        train_acc,
        test_acc,
        examples_per_sec: seen as f64 / busy.max(1e-9),
        history,
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

/// The environment variable that selects the quick run (`scripts/run-examples.sh` sets it).
pub const QUICK_ENV: &str = "TINYCNN_EXAMPLES_QUICK";

/// What `main` trains: the book's recipe, or the quick run of CI.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    pub num_epochs: u64,
    pub lr: f32,
    pub batch_size: usize,
    /// Training images used (the first ones); `None`: all of them.
    pub train_images: Option<usize>,
    /// Test images used (the first ones); `None`: all of them.
    pub test_images: Option<usize>,
    /// Download Fashion-MNIST when it is not on the machine; otherwise train on
    /// [`synthetic_split`] in its place.
    pub download: bool,
}

impl Recipe {
    /// d2l's: `lr, num_epochs = 0.9, 10`, `batch_size = 256`, the whole data set.
    pub fn book() -> Recipe {
        Recipe {
            num_epochs: 10,
            lr: 0.9,
            batch_size: 256,
            train_images: None,
            test_images: None,
            download: true,
        }
    }

    /// One epoch on 2048 training and 1000 test images, nothing downloaded: a smoke test.
    pub fn quick() -> Recipe {
        Recipe {
            num_epochs: 1,
            train_images: Some(2048),
            test_images: Some(1000),
            download: false,
            ..Recipe::book()
        }
    }

    /// [`Recipe::quick`] when the value of [`QUICK_ENV`] is set to anything but `""` or `"0"`,
    /// else [`Recipe::book`].
    pub fn from_env_value(value: Option<&str>) -> Recipe {
        match value {
            Some(v) if !v.is_empty() && v != "0" => Recipe::quick(),
            _ => Recipe::book(),
        }
    }
}

/// The first `n` samples of a split (all of them for `None`), as a loader.
fn loader(
    split: &tinycnn::data::Split,
    n: Option<usize>,
    config: LoaderConfig,
) -> Result<DataLoader> {
    match n {
        None => DataLoader::from_split(split, config),
        Some(n) => {
            let n = n.min(split.len());
            let shape = split.sample_shape();
            let px: usize = shape.iter().product();
            DataLoader::new(
                split.images[..n * px].to_vec(),
                split.labels[..n].to_vec(),
                shape,
                config,
            )
        }
    }
    .map_err(data_err)
}

fn main() -> Result<()> {
    tinycnn::manual_seed(0);
    let recipe = Recipe::from_env_value(std::env::var(QUICK_ENV).ok().as_deref());

    println!("## LeNet");
    let net = tinycnn_models::lenet();
    println!("{}", net.repr());
    let x = Tensor::rand(&[1, 1, 28, 28]);
    for (name, shape) in shape_walk(&net, &x)? {
        println!("{name} output shape: \t {}", size_string(&shape));
    }

    let config = LoaderConfig {
        batch_size: recipe.batch_size,
        ..LoaderConfig::default()
    };
    let test_config = LoaderConfig {
        shuffle: false,
        ..config
    };
    let data = FashionMnist::load_with(LoadOptions {
        download: recipe.download,
        ..LoadOptions::default()
    });
    let (train_iter, test_iter) = match data {
        Ok(ds) => {
            println!("\nFashion-MNIST from {}", ds.dir.display());
            (
                loader(&ds.train, recipe.train_images, config)?,
                loader(&ds.test, recipe.test_images, test_config)?,
            )
        }
        Err(e) if !recipe.download => {
            println!("\nFashion-MNIST not found locally ({e}); using synthetic stripes instead");
            let (xi, yi) = synthetic_split(recipe.train_images.unwrap_or(2048), 1);
            let (xt, yt) = synthetic_split(recipe.test_images.unwrap_or(1000), 2);
            (
                DataLoader::new(xi, yi, [1, 28, 28], config).map_err(data_err)?,
                DataLoader::new(xt, yt, [1, 28, 28], test_config).map_err(data_err)?,
            )
        }
        Err(e) => {
            return Err(Error::Msg(format!(
                "Fashion-MNIST: {e}. The book's run needs it: put the four .gz files in \
                 ./data/fashion-mnist or $TINYCNN_DATA, or set {QUICK_ENV}=1 for the quick run"
            )))
        }
    };

    let quick = recipe != Recipe::book();
    println!(
        "\n## Training (模型训练): {} epoch(s) on {} training images, {} test images{}",
        recipe.num_epochs,
        train_iter.num_samples(),
        test_iter.num_samples(),
        if quick {
            format!(" (quick run: {QUICK_ENV} is set; without it, or at 0, the book's recipe)")
        } else {
            String::new()
        }
    );
    train_ch6(&net, &train_iter, &test_iter, recipe.num_epochs, recipe.lr)?;
    println!(
        "\nThe same recipe with a progress bar, the curves as SVG and checkpoints: \
         cargo run --release -p tinycnn-cli -- train --plot curves.svg"
    );
    Ok(())
}
