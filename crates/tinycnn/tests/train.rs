//! `tinycnn::train` on the CPU and on the emulated CUDA device. The CPU trainer is pinned to a
//! hand-written reference loop (plain forward, cross-entropy, backward, step over host
//! batches); the device runs are then held to the CPU's figures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tinycnn::data::{DataLoader, LoaderConfig, ResidentData};
use tinycnn::nn::{Conv2d, Flatten, Linear, Module, ReLU, Sequential};
use tinycnn::optim::{Adam, Optimizer, Sgd};
use tinycnn::train::{Callbacks, EpochReport, Trainer};
use tinycnn::{Device, Error, Rng, Tensor};

const N: usize = 37; // 5 batches of 8, the last of 5
const BATCH: usize = 8;

/// `n` 1x6x6 images of 3 classes: class `c` lights row `2c` over a little noise.
fn images(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let noise = Tensor::rand_with(&[n, 1, 6, 6], &mut Rng::seed_from(seed)).to_vec();
    let labels: Vec<u32> = (0..n).map(|i| ((i * 7 + 1) % 3) as u32).collect();
    let mut x: Vec<f32> = noise.iter().map(|v| 0.3 * v).collect();
    for (i, &c) in labels.iter().enumerate() {
        for col in 0..6 {
            x[i * 36 + 2 * c as usize * 6 + col] += 1.0;
        }
    }
    (x, labels)
}

fn conv_net(seed: u64) -> Sequential {
    tinycnn::manual_seed(seed);
    Sequential::new()
        .append(Conv2d::new(1, 3, 3).unwrap())
        .append(ReLU)
        .append(Flatten::new())
        .append(Linear::new(3 * 4 * 4, 3))
}

fn loader(seed: u64) -> DataLoader {
    let (x, y) = images(N, 1);
    let y: Vec<u8> = y.iter().map(|&l| l as u8).collect();
    let config = LoaderConfig {
        batch_size: BATCH,
        shuffle: true,
        seed,
        drop_last: false,
        prefetch: 0,
    };
    DataLoader::new(x, y, [1, 6, 6], config).unwrap()
}

fn resident(n: usize, seed: u64, dev: Device) -> ResidentData {
    let (x, y) = images(n, seed);
    ResidentData::new(&x, &[n, 1, 6, 6], &y, &dev).unwrap()
}

fn device(cuda: bool) -> Device {
    if cuda {
        tinycnn::cuda::emulate(true);
        Device::Cuda(0)
    } else {
        Device::Cpu
    }
}

/// Every epoch's report.
struct Log(Vec<EpochReport>);

impl Callbacks for Log {
    type Error = Error;
    fn on_epoch(&mut self, r: &EpochReport, _: &dyn Optimizer) -> Result<(), Error> {
        self.0.push(r.clone());
        Ok(())
    }
}

/// Trains `net` for `epochs` with Adam on the shuffles of seed 3.
fn fit(net: &dyn Module, dev: Device, epochs: usize) -> Vec<EpochReport> {
    let opt = Adam::new(net.parameters(), 0.02).unwrap();
    let mut t = Trainer::new(net, Box::new(opt), dev, BATCH)
        .unwrap()
        .marks_every(2);
    let (train, test) = (resident(N, 1, dev), resident(12, 2, dev));
    let order = loader(3);
    let mut log = Log(Vec::new());
    t.fit(&train, &test, 0..epochs, &|e| order.order(e), &mut log)
        .unwrap();
    log.0
}

fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}: {a} vs {b}");
}

#[test]
fn cpu_trainer_matches_a_hand_written_loop() {
    let net = conv_net(5);
    let got = fit(&net, Device::Cpu, 3);

    let reference = conv_net(5);
    let mut opt = Adam::new(reference.parameters(), 0.02).unwrap();
    let order = loader(3);
    for (epoch, report) in got.iter().enumerate() {
        let (mut loss, mut correct) = (0.0f64, 0usize);
        for b in order.epoch(epoch as u64) {
            let x = Tensor::from_vec(b.images, &b.shape).unwrap();
            opt.zero_grad();
            let y = reference.forward(&x).unwrap();
            let l = y.cross_entropy(&b.labels).unwrap();
            loss += l.item().unwrap() as f64 * b.len as f64;
            l.backward().unwrap();
            opt.step().unwrap();
            correct += tinycnn::nn::accuracy(&y, &b.labels).unwrap();
        }
        assert_eq!(report.epoch, epoch);
        assert_eq!(report.loss, loss / N as f64, "epoch {epoch}");
        assert_eq!(report.stats.correct, correct as u64, "epoch {epoch}");
        assert_eq!(report.stats.examples, N as u64);
        // Batches 2 and 4 of 5, then the last; the last mark is the epoch's figure.
        let marks: Vec<usize> = report.stats.marks.iter().map(|m| m.batches).collect();
        assert_eq!(marks, [2, 4, 5]);
        assert_eq!(report.stats.marks[2].loss, report.loss);
        assert_eq!(report.stats.marks[2].acc, report.train_acc);
        // Test accuracy: the reference network's own count on the test set.
        let (tx, ty) = images(12, 2);
        let logits = tinycnn::no_grad(|| {
            reference.forward(&Tensor::from_vec(tx.clone(), &[12, 1, 6, 6]).unwrap())
        })
        .unwrap();
        let hits = tinycnn::nn::accuracy(&logits, &ty).unwrap();
        assert_eq!(report.test_acc, hits as f64 / 12.0, "epoch {epoch}");
    }
    let values = |m: &dyn Module| -> Vec<Vec<f32>> {
        m.state_dict().iter().map(|(_, t)| t.to_vec()).collect()
    };
    assert_eq!(values(&net), values(&reference));
    // It learned: the loss fell and the test set is mostly right.
    assert!(got[2].loss < 0.7 * got[0].loss, "{got:?}");
}

#[test]
fn cpu_and_emulated_cuda_give_the_same_epochs() {
    let cpu = fit(&conv_net(7), device(false), 3);
    let cuda = fit(&conv_net(7), device(true), 3);
    assert!(cpu[2].loss < 0.7 * cpu[0].loss, "{cpu:?}");
    for (c, g) in cpu.iter().zip(&cuda) {
        assert_close(g.loss, c.loss, 1e-4, "loss");
        assert_eq!(g.stats.examples, c.stats.examples);
        // Rounding could flip a near tie; none is expected on this data.
        assert_eq!(g.stats.correct, c.stats.correct, "train hits");
        assert_eq!(g.test_acc, c.test_acc, "test acc");
        for (mc, mg) in c.stats.marks.iter().zip(&g.stats.marks) {
            assert_eq!(mc.batches, mg.batches);
            assert_close(mg.loss, mc.loss, 1e-4, "mark loss");
        }
    }
}

/// A module written by the user, not a `Sequential` (so evaluation takes the autograd forward
/// on the CPU too, not `Inference`).
struct Tiny {
    conv: Conv2d,
    head: Linear,
}

impl Module for Tiny {
    fn forward(&self, x: &Tensor) -> tinycnn::Result<Tensor> {
        let h = self.conv.forward(x)?.relu()?.flatten(1, -1)?;
        self.head.forward(&h)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![("conv".into(), &self.conv), ("head".into(), &self.head)]
    }
}

fn tiny() -> Tiny {
    tinycnn::manual_seed(9);
    Tiny {
        conv: Conv2d::new(1, 2, 3).unwrap(),
        head: Linear::new(2 * 4 * 4, 3),
    }
}

#[test]
fn a_user_written_module_trains_on_both_devices() {
    let cpu = fit(&tiny(), device(false), 4);
    let net = tiny();
    let cuda = fit(&net, device(true), 4);
    assert!(cpu[3].loss < 0.7 * cpu[0].loss, "{cpu:?}");
    for (c, g) in cpu.iter().zip(&cuda) {
        assert_close(g.loss, c.loss, 1e-4, "loss");
    }
    // The parameters stayed on the device they were moved to.
    assert!(net
        .parameters()
        .iter()
        .all(|p| p.device() == Device::Cuda(0)));
}

#[test]
fn divergence_names_the_batch_on_the_cpu_and_the_epoch_on_cuda() {
    for cuda in [false, true] {
        let dev = device(cuda);
        let net = conv_net(1);
        let opt = Sgd::new(net.parameters(), 1e30).unwrap();
        let mut t = Trainer::new(&net, Box::new(opt), dev, BATCH).unwrap();
        let data = resident(N, 1, dev);
        let order: Vec<usize> = (0..N).collect();
        let e = t.train_epoch(&data, &order, 4, &mut |_, _| {}).unwrap_err();
        match e {
            Error::Diverged { epoch, batch, loss } => {
                assert_eq!(epoch, 4);
                assert!(!loss.is_finite());
                if cuda {
                    assert_eq!(batch, None);
                } else {
                    // The first update blows the weights up; the first loss is finite.
                    assert!(matches!(batch, Some(b) if b >= 1), "{batch:?}");
                }
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn the_stop_flag_ends_the_epoch_between_batches() {
    for cuda in [false, true] {
        let dev = device(cuda);
        let net = conv_net(2);
        let opt = Sgd::new(net.parameters(), 0.1).unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        let mut t = Trainer::new(&net, Box::new(opt), dev, BATCH)
            .unwrap()
            .stop_flag(flag.clone());
        let data = resident(N, 1, dev);
        let order: Vec<usize> = (0..N).collect();
        let mut seen = Vec::new();
        let e = t
            .train_epoch(&data, &order, 0, &mut |i, n| {
                seen.push((i, n));
                if i == 2 {
                    flag.store(true, Ordering::SeqCst);
                }
            })
            .unwrap_err();
        assert!(matches!(e, Error::Stopped { epoch: 0, batch: 3 }), "{e}");
        assert_eq!(seen, [(0, 5), (1, 5), (2, 5)]);
    }
}

#[test]
fn bad_arguments_are_errors() {
    let net = conv_net(0);
    let opt = || Box::new(Sgd::new(net.parameters(), 0.1).unwrap());
    let e = Trainer::new(&net, opt(), Device::Cpu, 0).err().unwrap();
    assert!(e.to_string().contains("batch size"), "{e}");

    let mut t = Trainer::new(&net, opt(), Device::Cpu, 4).unwrap();
    let data = resident(6, 1, Device::Cpu);
    let e = t.train_epoch(&data, &[], 0, &mut |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let e = t
        .train_epoch(&data, &[0, 6], 0, &mut |_, _| {})
        .unwrap_err();
    assert!(e.to_string().contains("index 6"), "{e}");

    let on_cuda = resident(6, 1, device(true));
    let e = t.evaluate(&on_cuda).unwrap_err();
    assert!(e.to_string().contains("cpu and cuda:0"), "{e}");
}
