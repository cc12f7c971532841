//! Storage access cannot deadlock: readers and in-place writers of one tensor on several
//! threads, and closures that read the tensor they are updating, all finish. Each scenario
//! runs for a bounded number of iterations under a watchdog, so a deadlock fails the test
//! (with the scenario's name) instead of hanging the suite.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use tinycnn::nn::{Linear, Module, ReLU, Sequential};
use tinycnn::optim::{Optimizer, Sgd};
use tinycnn::{no_grad, Tensor};

/// Runs every closure on its own thread; panics if they have not all returned within `limit`.
fn all_finish_within(name: &str, limit: Duration, jobs: Vec<Box<dyn FnOnce() + Send>>) {
    let (tx, rx) = mpsc::channel();
    let n = jobs.len();
    for job in jobs {
        let tx = tx.clone();
        thread::spawn(move || {
            job();
            let _ = tx.send(());
        });
    }
    for done in 0..n {
        if rx.recv_timeout(limit).is_err() {
            panic!(
                "{name}: deadlock or hang: only {done} of {n} threads finished within {limit:?}"
            );
        }
    }
}

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn mul_of_a_tensor_with_itself_while_another_thread_writes_it() {
    // Before copy-on-write storage, `x.mul(&x)` took two read locks on one RwLock; a writer
    // queued between them deadlocked both threads within seconds.
    let x = Tensor::ones(&[64, 64]);
    let (r, w) = (x.clone(), x.clone());
    let step = Tensor::full(&[64, 64], 1e-3);
    all_finish_within(
        "mul vs sub_",
        LIMIT,
        vec![
            Box::new(move || {
                for _ in 0..20_000 {
                    let y = r.mul(&r).unwrap();
                    // Each product is of one consistent snapshot: every element equal.
                    let d = y.data();
                    assert!(d.iter().all(|&v| v == d[0]), "torn read");
                }
            }),
            Box::new(move || {
                for _ in 0..20_000 {
                    w.sub_(&step).unwrap();
                }
            }),
        ],
    );
    // 20,000 subtractions of 1e-3 from 1.0, each applied to all elements alike.
    let v = x.data()[0];
    let expected = (0..20_000).fold(1.0f32, |a, _| a - 1e-3);
    assert_eq!(v, expected);
}

#[test]
fn update_closure_may_read_the_tensor_it_updates() {
    // Re-entrant access: the closure sees the elements from before the update.
    let x = Tensor::new([1.0, 2.0, 3.0]);
    let x2 = x.clone();
    all_finish_within(
        "re-entrant update_",
        LIMIT,
        vec![Box::new(move || {
            x2.update_(|d| {
                let total = x2.sum_all().item().unwrap();
                let first = x2.get(&[0]).unwrap();
                for v in d.iter_mut() {
                    *v = *v * 10.0 + total + first;
                }
            })
            .unwrap();
        })],
    );
    // total 6, first 1: [1*10+7, 2*10+7, 3*10+7].
    assert_eq!(x.to_vec(), [17.0, 27.0, 37.0]);
}

#[test]
fn nested_writes_from_inside_an_update_finish() {
    // A closure that writes the same tensor: the inner write lands, then the outer one
    // (computed from the snapshot before both) replaces it.
    let x = Tensor::new([1.0, 2.0]);
    let x2 = x.clone();
    all_finish_within(
        "nested update_",
        LIMIT,
        vec![Box::new(move || {
            x2.update_(|d| {
                x2.fill_(100.0).unwrap();
                assert_eq!(x2.to_vec(), [100.0, 100.0]);
                d[0] += 1.0;
            })
            .unwrap();
        })],
    );
    assert_eq!(x.to_vec(), [2.0, 2.0]);
}

#[test]
fn optimizer_steps_while_other_threads_run_forward_passes() {
    let net = Sequential::new()
        .append(Linear::new(16, 32))
        .append(ReLU)
        .append(Linear::new(32, 4));
    let params = net.parameters();
    let input = Tensor::rand(&[8, 16]);
    // One backward pass gives every parameter a gradient that the optimizer then reuses.
    net.forward(&input).unwrap().sum_all().backward().unwrap();
    let net = std::sync::Arc::new(net);
    let mut jobs: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    for _ in 0..2 {
        let (net, input) = (net.clone(), input.clone());
        jobs.push(Box::new(move || {
            for _ in 0..2_000 {
                let y = no_grad(|| net.forward(&input)).unwrap();
                assert_eq!(y.shape(), &[8, 4]);
            }
        }));
    }
    jobs.push(Box::new(move || {
        let mut opt = Sgd::new(params, 1e-6).unwrap();
        for _ in 0..2_000 {
            opt.step().unwrap();
        }
    }));
    all_finish_within("optimizer vs forward", LIMIT, jobs);
}

#[test]
fn backward_and_gradient_accumulation_race_with_readers() {
    // Gradient accumulation writes the grad tensor in place; readers of the same grad tensor
    // on another thread must neither block it nor see a torn sum.
    let w = Tensor::ones(&[256]).requires_grad_(true).unwrap();
    (&w * 2.0).sum_all().backward().unwrap();
    let g = w.grad().unwrap();
    let w2 = w.clone();
    all_finish_within(
        "accumulate vs read",
        LIMIT,
        vec![
            Box::new(move || {
                for _ in 0..1_000 {
                    (&w2 * 2.0).sum_all().backward().unwrap();
                }
            }),
            Box::new(move || {
                for _ in 0..5_000 {
                    let d = g.data();
                    assert!(d.iter().all(|&v| v == d[0]), "torn gradient");
                }
            }),
        ],
    );
    // 1 + 1000 backward passes, each adding 2.
    assert!(w.grad().unwrap().to_vec().iter().all(|&v| v == 2002.0));
}
