//! Data-parallel training on in-process ranks (`LocalGroup`: the collectives of MPI over
//! threads): N ranks, each on its shard of every batch, end with the weights and epoch
//! figures of one process trained on the whole batches, on the CPU and the emulated CUDA
//! device. The MPI transport itself is tested by scripts/mpi-test.sh under mpirun.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tinycnn::data::ResidentData;
use tinycnn::distributed::{DataParallel, LocalCommunicator, LocalGroup};
use tinycnn::nn::{Conv2d, Flatten, Linear, Module, ReLU, Sequential};
use tinycnn::optim::{Adam, Optimizer, Sgd, SgdConfig};
use tinycnn::train::{Callbacks, EpochReport, Trainer};
use tinycnn::{Device, Error, Rng, Tensor};

const N: usize = 37;

/// `n` 1x6x6 images of 3 classes: class `c` lights row `2c` over a little noise.
fn resident(n: usize, seed: u64, dev: Device) -> ResidentData {
    let noise = Tensor::rand_with(&[n, 1, 6, 6], &mut Rng::seed_from(seed)).to_vec();
    let labels: Vec<u32> = (0..n).map(|i| ((i * 7 + 1) % 3) as u32).collect();
    let mut x: Vec<f32> = noise.iter().map(|v| 0.3 * v).collect();
    for (i, &c) in labels.iter().enumerate() {
        for col in 0..6 {
            x[i * 36 + 2 * c as usize * 6 + col] += 1.0;
        }
    }
    ResidentData::new(&x, &[n, 1, 6, 6], &labels, &dev).unwrap()
}

fn conv_net(seed: u64) -> Sequential {
    tinycnn::manual_seed(seed);
    Sequential::new()
        .append(Conv2d::new(1, 3, 3).unwrap())
        .append(ReLU)
        .append(Flatten::new())
        .append(Linear::new(3 * 4 * 4, 3))
}

fn device(cuda: bool) -> Device {
    if cuda {
        tinycnn::cuda::emulate(true);
        Device::Cuda(0)
    } else {
        Device::Cpu
    }
}

fn optimizer(net: &Sequential, adam: bool) -> Box<dyn Optimizer> {
    if adam {
        Box::new(Adam::new(net.parameters(), 0.02).unwrap())
    } else {
        let config = SgdConfig {
            momentum: 0.9,
            ..SgdConfig::new(0.1)
        };
        Box::new(Sgd::with_config(net.parameters(), config).unwrap())
    }
}

struct Log(Vec<EpochReport>);

impl Callbacks for Log {
    type Error = Error;
    fn on_epoch(&mut self, r: &EpochReport, _: &dyn Optimizer) -> Result<(), Error> {
        self.0.push(r.clone());
        Ok(())
    }
}

/// A fixed shuffle per epoch.
fn order(epoch: u64) -> Vec<usize> {
    let mut o: Vec<usize> = (0..N).collect();
    o.rotate_left((epoch as usize * 11) % N);
    o.reverse();
    o
}

/// Trains for 3 epochs; `dp` makes this one rank. Returns the reports and the weights.
fn train(
    seed: u64,
    dev: Device,
    batch: usize,
    adam: bool,
    dp: Option<DataParallel>,
) -> (Vec<EpochReport>, Vec<Vec<f32>>) {
    let net = conv_net(seed);
    let opt = optimizer(&net, adam);
    let mut t = Trainer::new(&net, opt, dev, batch).unwrap().marks_every(2);
    if let Some(dp) = dp {
        t = t.data_parallel(dp).unwrap();
    }
    let (train, test) = (resident(N, 1, dev), resident(13, 2, dev));
    let mut log = Log(Vec::new());
    t.fit(&train, &test, 0..3, &order, &mut log).unwrap();
    let weights = net.parameters().iter().map(|p| p.to_vec()).collect();
    (log.0, weights)
}

/// Runs `f` on each rank's thread.
fn on_ranks<R: Send>(
    comms: Vec<LocalCommunicator>,
    f: impl Fn(usize, LocalCommunicator) -> R + Sync,
) -> Vec<R> {
    std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .enumerate()
            .map(|(r, c)| {
                let f = &f;
                s.spawn(move || f(r, c))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}: {a} vs {b}");
}

#[test]
fn ranks_end_with_the_weights_of_one_process() {
    // Batch 8: every rank has examples in every batch (the last holds 5). Batch 9 with 3
    // ranks: the last batch holds one example, so two ranks have none in it.
    for (cuda, ranks, batch, adam) in [
        (false, 2, 8, false),
        (false, 2, 8, true),
        (false, 3, 9, false),
        (false, 3, 9, true),
        (true, 2, 8, true),
        (true, 3, 9, false),
    ] {
        let case = format!("cuda {cuda}, {ranks} ranks, batch {batch}, adam {adam}");
        let dev = device(cuda);
        let (single, want) = train(5, dev, batch, adam, None);
        // Each rank starts from other weights: the broadcast from rank 0 must fix that.
        let got = on_ranks(LocalGroup::new(ranks), |r, c| {
            let dp = DataParallel::new(Box::new(c));
            train(5 + r as u64 * 100, dev, batch, adam, Some(dp))
        });
        for (r, (reports, weights)) in got.iter().enumerate() {
            // The all-reduce gives every rank the same bits.
            assert_eq!(weights, &got[0].1, "{case}: rank {r} differs from rank 0");
            for (w, p) in weights.iter().zip(&want) {
                for (a, b) in w.iter().zip(p) {
                    assert_close(*a as f64, *b as f64, 1e-4, &case);
                }
            }
            for (a, b) in reports.iter().zip(&single) {
                assert_eq!(a.stats.examples, b.stats.examples, "{case}");
                assert_close(a.loss, b.loss, 1e-5, &case);
                assert_close(a.train_acc, b.train_acc, 1e-9, &case);
                assert_close(a.test_acc, b.test_acc, 1e-9, &case);
                assert_eq!(a.stats.marks.len(), b.stats.marks.len(), "{case}");
                for (m, n) in a.stats.marks.iter().zip(&b.stats.marks) {
                    assert_eq!(m.batches, n.batches, "{case}");
                    assert_close(m.loss, n.loss, 1e-5, &case);
                    assert_close(m.acc, n.acc, 1e-9, &case);
                }
            }
        }
    }
}

#[test]
fn every_rank_stops_at_the_same_diverged_batch() {
    let got = on_ranks(LocalGroup::new(2), |_, c| {
        let net = conv_net(1);
        let opt = Sgd::new(net.parameters(), 1e30).unwrap();
        let mut t = Trainer::new(&net, Box::new(opt), Device::Cpu, 8)
            .unwrap()
            .data_parallel(DataParallel::new(Box::new(c)))
            .unwrap();
        let data = resident(N, 1, Device::Cpu);
        t.train_epoch(&data, &order(0), 4, &mut |_, _| {})
            .unwrap_err()
    });
    let batches: Vec<_> = got
        .iter()
        .map(|e| match e {
            Error::Diverged {
                epoch: 4,
                batch,
                loss,
            } if !loss.is_finite() => *batch,
            other => panic!("{other}"),
        })
        .collect();
    assert!(batches[0].is_some_and(|b| b >= 1), "{batches:?}");
    assert_eq!(batches[0], batches[1]);
}

#[test]
fn a_stop_on_one_rank_stops_all_before_the_same_update() {
    let got = on_ranks(LocalGroup::new(2), |r, c| {
        let net = conv_net(2);
        let opt = Sgd::new(net.parameters(), 0.1).unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        let mut t = Trainer::new(&net, Box::new(opt), Device::Cpu, 8)
            .unwrap()
            .stop_flag(flag.clone())
            .data_parallel(DataParallel::new(Box::new(c)))
            .unwrap();
        let data = resident(N, 1, Device::Cpu);
        let e = t
            .train_epoch(&data, &order(0), 0, &mut |i, _| {
                if r == 1 && i == 2 {
                    flag.store(true, Ordering::SeqCst);
                }
            })
            .unwrap_err();
        (e.to_string(), net.parameters()[0].to_vec())
    });
    // As for one process: the flag set during batch 2 (0-based) stops before batch 3.
    assert!(
        got[0].0.contains("before batch 4 of epoch 1"),
        "{}",
        got[0].0
    );
    assert_eq!(got[0], got[1]);
}

#[test]
fn a_rank_that_never_joins_is_an_error_in_bounded_time() {
    let mut comms = LocalGroup::with_timeout(2, Duration::from_millis(200));
    let absent = comms.pop();
    let net = conv_net(3);
    let opt = Sgd::new(net.parameters(), 0.1).unwrap();
    let started = Instant::now();
    let dp = DataParallel::new(Box::new(comms.pop().unwrap()));
    let e = Trainer::new(&net, Box::new(opt), Device::Cpu, 8)
        .unwrap()
        .data_parallel(dp)
        .err()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.to_string().contains("waited"), "{e}");
    drop(absent);
}

#[test]
fn ranks_share_rank_zeros_batch_norm_statistics() {
    // Each rank normalizes its own shards in training mode, so its running statistics
    // differ; as with DDP's broadcast_buffers, every rank ends an epoch with rank 0's, so
    // the ranks evaluate (and checkpoint) one model.
    let got = on_ranks(LocalGroup::new(2), |r, c| {
        tinycnn::manual_seed(7 + r as u64);
        let net = Sequential::new()
            .append(Conv2d::new(1, 3, 3).unwrap())
            .append(tinycnn::nn::BatchNorm2d::new(3))
            .append(ReLU)
            .append(Flatten::new())
            .append(Linear::new(3 * 4 * 4, 3));
        let opt = optimizer(&net, false);
        let mut t = Trainer::new(&net, opt, Device::Cpu, 8)
            .unwrap()
            .data_parallel(DataParallel::new(Box::new(c)))
            .unwrap();
        let (train, test) = (resident(N, 1, Device::Cpu), resident(13, 2, Device::Cpu));
        let mut log = Log(Vec::new());
        t.fit(&train, &test, 0..2, &order, &mut log).unwrap();
        let state: Vec<(String, Vec<f32>)> = net
            .state_dict()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        (state, log.0.last().unwrap().test_acc)
    });
    let (state0, acc0) = &got[0];
    let mean = &state0
        .iter()
        .find(|(k, _)| k == "1.running_mean")
        .unwrap()
        .1;
    assert!(mean.iter().any(|&m| m != 0.0), "running mean never updated");
    for (state, acc) in &got[1..] {
        assert_eq!(
            state, state0,
            "rank 1's parameters or buffers differ from rank 0's"
        );
        assert_eq!(acc, acc0);
    }
}
