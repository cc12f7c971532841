//! Trains LeNet on Fashion-MNIST from weights it writes to a file, in file order (no
//! shuffle), and writes the loss of every batch: `benches/torch_lenet_cpu.py --init
//! DIR/init.safetensors --in-order --losses DIR/losses_torch.txt` trains PyTorch from the
//! same start on the same batches, so the two runs can be compared step by step
//! (`benches/same-start.sh` runs both and compares).
//!
//! `cargo run --release -p tinycnn-models --example same_start -- DIR [lenet|lenet-relu]
//! [sgd|adam] [lr] [epochs] [seed]`

use std::io::Write;
use tinycnn::data::{DataLoader, FashionMnist, LoaderConfig};
use tinycnn::nn::Module;
use tinycnn::optim::{Adam, Optimizer, Sgd};
use tinycnn::{io, Error, Result, Tensor};

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or(default.to_string());
    let dir = std::path::PathBuf::from(arg(0, "same-start"));
    let (model, optimizer) = (arg(1, "lenet-relu"), arg(2, "adam"));
    let parse = |s: String| {
        s.parse::<f64>()
            .map_err(|e| Error::Msg(format!("{s:?}: {e}")))
    };
    let lr = parse(arg(3, "0.001"))? as f32;
    let epochs = parse(arg(4, "1"))? as usize;
    let seed = parse(arg(5, "0"))? as u64;
    std::fs::create_dir_all(&dir).map_err(|e| Error::Msg(format!("{}: {e}", dir.display())))?;

    // The CLI's initialization: default layer init from the seeded generator, then d2l's
    // xavier_uniform on every Linear and Conv2d weight.
    tinycnn::manual_seed(seed);
    let net = match model.as_str() {
        "lenet" => tinycnn_models::lenet(),
        "lenet-relu" => tinycnn_models::lenet_relu(),
        other => return Err(format!("unknown model {other:?}").into()),
    };
    tinycnn_models::init_weights(&net)?;
    io::save(dir.join("init.safetensors"), &net.state_dict())?;

    let mut opt: Box<dyn Optimizer> = match optimizer.as_str() {
        "sgd" => Box::new(Sgd::new(net.parameters(), lr)?),
        "adam" => Box::new(Adam::new(net.parameters(), lr)?),
        other => return Err(format!("unknown optimizer {other:?}").into()),
    };
    let data = FashionMnist::load(None)?;
    let in_order = |split, batch_size| {
        DataLoader::from_split(
            split,
            LoaderConfig {
                batch_size,
                shuffle: false,
                seed: 0,
                drop_last: false,
                prefetch: 2,
            },
        )
    };
    let (train, test) = (in_order(&data.train, 256)?, in_order(&data.test, 256)?);
    let mut losses = String::new();
    for epoch in 0..epochs {
        net.train();
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        for batch in train.epoch(epoch as u64) {
            let x = Tensor::from_vec(batch.images, &batch.shape)?;
            opt.zero_grad();
            let loss = net.forward(&x)?.cross_entropy(&batch.labels)?;
            loss.backward()?;
            opt.step()?;
            let l = loss.item()?;
            losses.push_str(&format!("{l:.7e}\n"));
            loss_sum += l as f64 * batch.len as f64;
            seen += batch.len;
        }
        net.eval();
        let mut correct = 0usize;
        tinycnn::no_grad(|| -> Result<()> {
            for batch in test.epoch(0) {
                let x = Tensor::from_vec(batch.images, &batch.shape)?;
                let pred = net.forward(&x)?.argmax(1, false)?.to_vec();
                correct += pred
                    .iter()
                    .zip(&batch.labels)
                    .filter(|(p, &l)| **p as u32 == l)
                    .count();
            }
            Ok(())
        })?;
        println!(
            "epoch {}: loss {:.3}, test acc {:.3}",
            epoch + 1,
            loss_sum / seen as f64,
            correct as f64 / data.test.len() as f64
        );
    }
    let path = dir.join("losses_tinycnn.txt");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(losses.as_bytes()))
        .map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
    println!(
        "wrote {} and {}",
        dir.join("init.safetensors").display(),
        path.display()
    );
    Ok(())
}
