//! Every op's gradient against central finite differences, plus the autograd rules:
//! accumulation, shared parameters, no_grad, detach, errors.

use tinycnn::{no_grad, Error, Pool2dParams, Result, Rng, Tensor};

/// Checks the analytic gradient of `sum(f(inputs) * r)` (fixed random `r`) with respect to
/// every input against central differences computed in f64.
fn gradcheck(name: &str, inputs: Vec<Tensor>, f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let mut rng = Rng::seed_from(99);
    let params: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.deep_clone().requires_grad_(true).unwrap())
        .collect();
    let out = f(&params).unwrap();
    let r = Tensor::uniform_with(0.5, 1.5, out.shape(), &mut rng).unwrap();
    let loss = out.mul(&r).unwrap().sum_all();
    loss.backward().unwrap();
    let rv = r.to_vec();
    let eval = |ps: &[Tensor]| -> f64 {
        let o = no_grad(|| f(ps)).unwrap().to_vec();
        o.iter().zip(&rv).map(|(&a, &b)| a as f64 * b as f64).sum()
    };
    let eps = 1e-2f32;
    for (pi, p) in params.iter().enumerate() {
        let analytic = p
            .grad()
            .unwrap_or_else(|| panic!("{name}: input {pi} got no gradient"))
            .to_vec();
        assert_eq!(
            analytic.len(),
            p.numel(),
            "{name}: gradient {pi} has the wrong size"
        );
        let base = p.to_vec();
        for i in 0..base.len() {
            let probe = |delta: f32| {
                let mut v = base.clone();
                v[i] += delta;
                let mut ps: Vec<Tensor> = params.iter().map(|t| t.detach()).collect();
                ps[pi] = Tensor::from_vec(v, p.shape()).unwrap();
                eval(&ps)
            };
            let numeric = (probe(eps) - probe(-eps)) / (2.0 * eps as f64);
            let a = analytic[i] as f64;
            assert!(
                (a - numeric).abs() <= 5e-3 + 2e-2 * numeric.abs(),
                "{name}: d/d input{pi}[{i}]: analytic {a}, numeric {numeric}"
            );
        }
    }
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn_with(shape, &mut Rng::seed_from(seed))
}

/// Values whose magnitudes stay away from 0 (for kinks: relu, abs, max).
fn away_from_zero(shape: &[usize], seed: u64) -> Tensor {
    let t = randn(shape, seed);
    let v = t
        .to_vec()
        .iter()
        .map(|&x| if x >= 0.0 { x + 0.2 } else { x - 0.2 })
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

/// A permutation of evenly spaced values: no ties, spaced more than the probe step.
fn distinct(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - n as f32 * 0.05).collect();
    Rng::seed_from(seed).shuffle(&mut v);
    Tensor::from_vec(v, shape).unwrap()
}

#[test]
fn elementwise_binary_with_broadcasting() {
    let a = randn(&[2, 3], 1);
    let b = randn(&[3], 2);
    let c = randn(&[2, 1], 3);
    gradcheck("add", vec![a.clone(), b.clone()], |p| p[0].add(&p[1]));
    gradcheck("sub", vec![a.clone(), c.clone()], |p| p[0].sub(&p[1]));
    gradcheck("mul", vec![c.clone(), b.clone()], |p| p[0].mul(&p[1]));
    let pos = (&randn(&[3], 4).abs() + 0.5).detach();
    gradcheck("div", vec![a.clone(), pos], |p| p[0].div(&p[1]));
    gradcheck("same input twice", vec![a.clone()], |p| p[0].mul(&p[0]));
}

#[test]
fn elementwise_unary() {
    let x = randn(&[2, 3], 5);
    let pos = (&x.abs() + 0.5).detach();
    gradcheck("add_scalar", vec![x.clone()], |p| Ok(&p[0] + 2.0));
    gradcheck("mul_scalar", vec![x.clone()], |p| Ok(&p[0] * -3.0));
    gradcheck("div_scalar", vec![x.clone()], |p| Ok(&p[0] / 4.0));
    gradcheck("rsub", vec![x.clone()], |p| Ok(1.0 - &p[0]));
    gradcheck("rdiv", vec![pos.clone()], |p| Ok(1.0 / &p[0]));
    gradcheck("pow", vec![pos.clone()], |p| Ok(p[0].pow(2.5)));
    gradcheck("square", vec![x.clone()], |p| Ok(p[0].pow(2.0)));
    gradcheck("exp", vec![x.clone()], |p| Ok(p[0].exp()));
    gradcheck("log", vec![pos.clone()], |p| Ok(p[0].log()));
    gradcheck("sqrt", vec![pos.clone()], |p| Ok(p[0].sqrt()));
    gradcheck("abs", vec![away_from_zero(&[2, 3], 6)], |p| Ok(p[0].abs()));
    gradcheck("neg", vec![x.clone()], |p| Ok(-&p[0]));
    gradcheck("relu", vec![away_from_zero(&[2, 3], 7)], |p| p[0].relu());
    gradcheck("sigmoid", vec![x.clone()], |p| p[0].sigmoid());
    gradcheck("tanh", vec![x.clone()], |p| p[0].tanh());
}

#[test]
fn reductions() {
    let x = randn(&[2, 3, 4], 8);
    gradcheck("sum_all", vec![x.clone()], |p| Ok(p[0].sum_all()));
    gradcheck("sum dims", vec![x.clone()], |p| p[0].sum(&[0, 2], false));
    gradcheck("sum keepdim", vec![x.clone()], |p| p[0].sum(&[1], true));
    gradcheck("mean_all", vec![x.clone()], |p| Ok(p[0].mean_all()));
    gradcheck("mean dim", vec![x.clone()], |p| p[0].mean(&[-1], false));
    let d = distinct(&[2, 3, 4], 9);
    gradcheck("max dim", vec![d.clone()], |p| Ok(p[0].max(1, false)?.0));
    gradcheck("max_all", vec![d.clone()], |p| p[0].max_all());
    gradcheck("min_all", vec![d], |p| p[0].min_all());
}

#[test]
fn shape_ops() {
    let x = randn(&[2, 3, 4], 10);
    gradcheck("reshape", vec![x.clone()], |p| {
        p[0].reshape([4, -1])?.mul(&Tensor::arange(6))
    });
    gradcheck("flatten", vec![x.clone()], |p| p[0].flatten(1, 2));
    gradcheck("permute", vec![x.clone()], |p| p[0].permute(&[2, 0, 1]));
    gradcheck("transpose", vec![x.clone()], |p| p[0].transpose(0, 2));
    gradcheck("narrow", vec![x.clone()], |p| p[0].narrow(2, 1, 2));
    gradcheck("select", vec![x.clone()], |p| p[0].select(1, 2));
    gradcheck("cat", vec![x.clone(), randn(&[2, 1, 4], 11)], |p| {
        Tensor::cat(&p[..2], 1)
    });
    gradcheck("stack", vec![randn(&[3], 12), randn(&[3], 13)], |p| {
        Tensor::stack(&p[..2], 1)
    });
    gradcheck("broadcast_to", vec![randn(&[3, 1], 14)], |p| {
        p[0].broadcast_to(&[2, 3, 4])
    });
    gradcheck("unsqueeze/squeeze", vec![randn(&[3], 15)], |p| {
        p[0].unsqueeze(0)?.squeeze(0)
    });
}

#[test]
fn matrix_products() {
    gradcheck(
        "matmul 2-D",
        vec![randn(&[3, 4], 16), randn(&[4, 5], 17)],
        |p| p[0].matmul(&p[1]),
    );
    gradcheck(
        "matmul batched broadcast",
        vec![randn(&[2, 3, 4], 18), randn(&[4, 2], 19)],
        |p| p[0].matmul(&p[1]),
    );
    gradcheck(
        "matmul batch both",
        vec![randn(&[2, 1, 2, 3], 20), randn(&[3, 3, 2], 21)],
        |p| p[0].matmul(&p[1]),
    );
    gradcheck("matvec", vec![randn(&[3, 4], 22), randn(&[4], 23)], |p| {
        p[0].matmul(&p[1])
    });
    gradcheck(
        "linear",
        vec![randn(&[5, 4], 24), randn(&[3, 4], 25), randn(&[3], 26)],
        |p| p[0].linear(&p[1], Some(&p[2])),
    );
    gradcheck(
        "linear no bias, 3-D input",
        vec![randn(&[2, 2, 4], 27), randn(&[3, 4], 28)],
        |p| p[0].linear(&p[1], None),
    );
}

#[test]
fn convolution() {
    let x = randn(&[2, 4, 6, 5], 30);
    gradcheck(
        "conv2d plain",
        vec![x.clone(), randn(&[3, 4, 3, 3], 31), randn(&[3], 32)],
        |p| p[0].conv2d(&p[1], Some(&p[2]), (1, 1), (0, 0), (1, 1), 1),
    );
    gradcheck(
        "conv2d stride/pad/dilation",
        vec![x.clone(), randn(&[2, 4, 2, 3], 33)],
        |p| p[0].conv2d(&p[1], None, (2, 1), (1, 2), (2, 1), 1),
    );
    gradcheck(
        "conv2d groups",
        vec![x.clone(), randn(&[4, 2, 3, 3], 34), randn(&[4], 35)],
        |p| p[0].conv2d(&p[1], Some(&p[2]), (1, 1), (1, 1), (1, 1), 2),
    );
    gradcheck(
        "corr2d",
        vec![randn(&[4, 5], 36), randn(&[2, 2], 37)],
        |p| p[0].corr2d(&p[1]),
    );
}

#[test]
fn convolution_batch_split_over_threads() {
    // Batch 5 over 2 threads: chunks of 3 and 2, partial weight gradients summed.
    tinycnn::set_num_threads(2).unwrap();
    gradcheck(
        "conv2d batch 5",
        vec![
            randn(&[5, 2, 5, 5], 38),
            randn(&[3, 2, 3, 3], 39),
            randn(&[3], 40),
        ],
        |p| p[0].conv2d(&p[1], Some(&p[2]), (1, 1), (1, 1), (1, 1), 1),
    );
    gradcheck(
        "max_pool2d batch 5",
        vec![distinct(&[5, 2, 4, 4], 41)],
        |p| p[0].max_pool2d(Pool2dParams::new(2)),
    );
    gradcheck("avg_pool2d batch 5", vec![randn(&[5, 2, 4, 4], 42)], |p| {
        p[0].avg_pool2d(Pool2dParams::new(2))
    });
}

#[test]
fn pooling() {
    let d = distinct(&[2, 2, 5, 5], 43);
    gradcheck("max_pool2d", vec![d.clone()], |p| {
        p[0].max_pool2d(Pool2dParams::new(2))
    });
    gradcheck("max_pool2d overlap pad", vec![d.clone()], |p| {
        p[0].max_pool2d(
            Pool2dParams::new(3)
                .with_stride((2, 2))
                .with_padding((1, 1)),
        )
    });
    gradcheck("avg_pool2d pad", vec![randn(&[2, 2, 5, 5], 44)], |p| {
        p[0].avg_pool2d(
            Pool2dParams::new(3)
                .with_stride((2, 2))
                .with_padding((1, 1)),
        )
    });
    gradcheck(
        "avg_pool2d exclude pad",
        vec![randn(&[1, 2, 5, 5], 45)],
        |p| {
            p[0].avg_pool2d(
                Pool2dParams::new(3)
                    .with_padding((1, 1))
                    .with_count_include_pad(false),
            )
        },
    );
}

#[test]
fn softmax_and_losses() {
    let x = randn(&[3, 5], 46);
    gradcheck("softmax", vec![x.clone()], |p| p[0].softmax(-1));
    gradcheck("softmax dim 0", vec![x.clone()], |p| p[0].softmax(0));
    gradcheck("log_softmax", vec![x.clone()], |p| p[0].log_softmax(1));
    gradcheck("cross_entropy", vec![x.clone()], |p| {
        p[0].cross_entropy(&[0, 4, 2])
    });
    gradcheck("cross_entropy tensor labels", vec![x.clone()], |p| {
        p[0].cross_entropy_t(&Tensor::new([1.0, 1.0, 3.0]))
    });
    gradcheck("mse_loss", vec![x.clone(), randn(&[3, 5], 47)], |p| {
        p[0].mse_loss(&p[1])
    });
}

#[test]
fn cross_entropy_value_and_label_errors() {
    // Uniform logits: loss = ln(C).
    let l = Tensor::zeros(&[2, 4]).cross_entropy(&[0, 3]).unwrap();
    assert!((l.item().unwrap() - 4f32.ln()).abs() < 1e-6);
    assert!(Tensor::zeros(&[2, 4]).cross_entropy(&[0, 4]).is_err());
    assert!(Tensor::zeros(&[2, 4]).cross_entropy(&[0]).is_err());
    assert!(Tensor::zeros(&[2, 4])
        .cross_entropy_t(&Tensor::new([0.5, 1.0]))
        .is_err());
}

#[test]
fn gradients_accumulate_and_shared_parameters_sum() {
    let w = Tensor::new([2.0, 3.0]).requires_grad_(true).unwrap();
    let x = Tensor::new([1.0, 4.0]);
    let loss = || w.mul(&x).unwrap().sum_all();
    loss().backward().unwrap();
    assert_eq!(w.grad().unwrap().to_vec(), [1.0, 4.0]);
    loss().backward().unwrap();
    assert_eq!(w.grad().unwrap().to_vec(), [2.0, 8.0]);
    w.zero_grad();
    assert!(w.grad().is_none());
    // A parameter used twice gets the sum: d/dw (w*x + w) = x + 1.
    w.mul(&x)
        .unwrap()
        .add(&w)
        .unwrap()
        .sum_all()
        .backward()
        .unwrap();
    assert_eq!(w.grad().unwrap().to_vec(), [2.0, 5.0]);
    // Same linear layer applied twice (FixedHiddenMLP's reuse) against finite differences.
    gradcheck(
        "shared linear",
        vec![randn(&[2, 3], 48), randn(&[3, 3], 49), randn(&[3], 50)],
        |p| {
            let h = p[0].linear(&p[1], Some(&p[2]))?.relu()?;
            h.linear(&p[1], Some(&p[2]))
        },
    );
}

#[test]
fn no_grad_detach_and_errors() {
    let w = Tensor::new([1.0]).requires_grad_(true).unwrap();
    let y = no_grad(|| &w * 2.0);
    assert!(!y.requires_grad() && y.grad_fn().is_none());
    let z = (&w * 2.0).detach();
    assert!(!z.requires_grad());
    {
        let _g = tinycnn::no_grad_guard();
        assert!(!tinycnn::grad_enabled());
    }
    assert!(tinycnn::grad_enabled());
    // backward from a non-scalar is an error.
    let v = (&Tensor::new([1.0, 2.0]).requires_grad_(true).unwrap() * 2.0).exp();
    assert!(matches!(v.backward(), Err(Error::Autograd(_))));
    v.backward_with(&Tensor::ones(&[2])).unwrap();
    // backward on something without a graph.
    assert!(Tensor::scalar(1.0).backward().is_err());
    // Data changed in place after use: refused, not silently wrong.
    let x = Tensor::new([3.0]);
    let y = w.mul(&x).unwrap();
    x.fill_(5.0).unwrap();
    let e = y.sum_all().backward().unwrap_err();
    assert!(e.to_string().contains("modified in place"), "{e}");
    // requires_grad_ only on leaves.
    assert!((&w * 1.0).requires_grad_(false).is_err());
}

#[test]
fn learn_the_edge_kernel() {
    // d2l 6.2.4: learn K = [1, -1] from X and Y with a 1x2 conv, lr 3e-2, loss falls to ~0.
    let x = Tensor::ones(&[6, 8]);
    x.slice_fill_(1, 2..6, 0.0).unwrap();
    let y = x
        .corr2d(&Tensor::new([[1.0, -1.0]]))
        .unwrap()
        .reshape([1, 1, 6, 7])
        .unwrap();
    let x = x.reshape([1, 1, 6, 8]).unwrap();
    tinycnn::manual_seed(0);
    let conv = tinycnn::nn::Conv2d::with(tinycnn::Conv2dParams::new(1, 1, (1, 2)), false).unwrap();
    use tinycnn::nn::Module;
    let mut losses = Vec::new();
    for _ in 0..30 {
        let y_hat = conv.forward(&x).unwrap();
        let l = (&y_hat - &y).unwrap().pow(2.0);
        conv.zero_grad();
        l.sum_all().backward().unwrap();
        let g = conv.weight.grad().unwrap();
        conv.weight.detach().sub_(&(&g * 3e-2)).unwrap();
        losses.push(l.sum_all().item().unwrap());
    }
    assert!(losses.windows(2).all(|w| w[1] <= w[0]), "{losses:?}");
    assert!(losses[29] < 1e-3, "{losses:?}");
    let w = conv.weight.reshape([1, 2]).unwrap();
    assert!(w.allclose(&Tensor::new([[1.0, -1.0]]), 0.0, 0.02), "{w}");
}
