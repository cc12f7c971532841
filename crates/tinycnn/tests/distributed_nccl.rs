//! The NCCL gradient path of data-parallel training (feature `nccl`, on a GPU):
//! `cargo test -p tinycnn --release --features nccl --test distributed_nccl`. One GPU holds
//! one NCCL rank, so this trains a one-rank group through NCCL (pack, all-reduce, unpack) and
//! holds it to the same training without data parallelism. Skips, saying why, without
//! libnccl.so.2 or a GPU. Several GPUs: run scripts/mpi-test.sh with --device cuda ranks.
#![cfg(feature = "nccl")]

use tinycnn::data::ResidentData;
use tinycnn::distributed::{Communicator, DataParallel, LocalGroup, Nccl};
use tinycnn::nn::{Conv2d, Flatten, Linear, Module, ReLU, Sequential};
use tinycnn::optim::Adam;
use tinycnn::train::Trainer;
use tinycnn::{Device, Rng, Tensor};

fn data(dev: Device) -> ResidentData {
    let n = 40;
    let x = Tensor::rand_with(&[n, 1, 6, 6], &mut Rng::seed_from(1)).to_vec();
    let y: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    ResidentData::new(&x, &[n, 1, 6, 6], &y, &dev).unwrap()
}

fn train(dev: Device, nccl: bool) -> Vec<Vec<f32>> {
    tinycnn::manual_seed(4);
    let net = Sequential::new()
        .append(Conv2d::new(1, 3, 3).unwrap())
        .append(ReLU)
        .append(Flatten::new())
        .append(Linear::new(48, 3));
    let opt = Adam::new(net.parameters(), 0.01).unwrap();
    let mut t = Trainer::new(&net, Box::new(opt), dev, 16).unwrap();
    if nccl {
        let comm = LocalGroup::new(1).pop().unwrap();
        let n = Nccl::new(&comm as &dyn Communicator, dev).unwrap();
        let dp = DataParallel::new(Box::new(comm)).with_nccl(n);
        t = t.data_parallel(dp).unwrap();
    }
    let d = data(dev);
    let order: Vec<usize> = (0..40).rev().collect();
    for e in 0..3 {
        t.train_epoch(&d, &order, e, &mut |_, _| {}).unwrap();
    }
    net.parameters().iter().map(|p| p.to_vec()).collect()
}

#[test]
fn one_nccl_rank_trains_like_one_process() {
    if !Nccl::is_available() {
        eprintln!("skipped: libnccl.so.2 cannot be loaded (NCCL not installed)");
        return;
    }
    match tinycnn::cuda::device(0) {
        Ok(d) if !d.is_emulated() => {}
        Ok(_) => return eprintln!("skipped: Device::Cuda(0) is the emulated device, without NCCL"),
        Err(e) => return eprintln!("skipped: no GPU ({e})"),
    }
    let dev = Device::Cuda(0);
    let want = train(dev, false);
    let got = train(dev, true);
    for (a, b) in got.iter().zip(&want) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
}
