//! BatchNorm2d, Dropout, ReLU6, AdaptiveAvgPool2d, Residual and the depthwise-separable
//! block: values against PyTorch (torch 2.15 CPU, printed by
//! `tests/fixtures/make_layer_fixtures.py`), gradients against finite differences, buffers
//! in state dicts.

// PyTorch fixture values are pasted as printed (9 significant digits).
#![allow(clippy::excessive_precision)]

use tinycnn::nn::{
    depthwise_separable, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Linear, Module, ReLU,
    ReLU6, Residual, Sequential,
};
use tinycnn::{no_grad, Error, Result, Rng, Tensor};

/// The fixture script's inputs: `x[i] = ((i * 7) % 11) * scale + offset`.
fn seq(n: usize, scale: f32, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7) % 11) as f32 * scale + offset)
        .collect()
}

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= tol * (1.0 + w.abs());
        assert!(ok, "{name}[{i}]: got {g}, want {w}");
    }
}

/// Checks the analytic gradient of `sum(f(inputs) * r)` (fixed random `r`) with respect to
/// every input against central differences in f64 (the pattern of tests/autograd.rs).
fn gradcheck(name: &str, inputs: Vec<Tensor>, f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let mut rng = Rng::seed_from(99);
    let params: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.deep_clone().requires_grad_(true).unwrap())
        .collect();
    let out = f(&params).unwrap();
    let r = Tensor::uniform_with(0.5, 1.5, out.shape(), &mut rng).unwrap();
    out.mul(&r).unwrap().sum_all().backward().unwrap();
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

fn bn_fixture() -> BatchNorm2d {
    let bn = BatchNorm2d::new(3);
    no_grad(|| {
        bn.weight
            .as_ref()
            .unwrap()
            .copy_(&Tensor::new([1.0, 2.0, -0.5]))?;
        bn.bias
            .as_ref()
            .unwrap()
            .copy_(&Tensor::new([0.0, 0.5, 1.0]))
    })
    .unwrap();
    bn
}

fn bn_inputs() -> (Tensor, Tensor) {
    let x1 = Tensor::from_vec(seq(24, 0.5, -2.0), &[2, 3, 2, 2]).unwrap();
    let x2 = Tensor::from_vec(seq(24, -0.25, 1.0), &[2, 3, 2, 2])
        .unwrap()
        .mul(&Tensor::from_vec(vec![1.0, 3.0, 0.1], &[1, 3, 1, 1]).unwrap())
        .unwrap();
    (x1, x2)
}

#[test]
fn batch_norm_training_steps_and_eval_match_pytorch() {
    let bn = bn_fixture();
    let (x1, x2) = bn_inputs();
    let y1 = bn.forward(&x1).unwrap();
    #[rustfmt::skip]
    let want_y1 = [-1.73863339e+00, 3.77963781e-01, -8.31520319e-01, 1.28507686e+00, 1.27820599e+00, -1.48874867e+00, 3.35342193e+00, 5.86467326e-01, 1.46852040e+00, 3.75306189e-01, 1.00000000e+00, 1.62469387e+00, 3.77963781e-01, -8.31520319e-01, 1.28507686e+00, 7.55927563e-02, -1.48874867e+00, 3.35342193e+00, 5.86467326e-01, -2.18048739e+00, 3.75306189e-01, 1.00000000e+00, 1.62469387e+00, 5.31479657e-01];
    assert_close("train output", &y1.to_vec(), &want_y1, 1e-5);
    let rm = bn.running_mean.as_ref().unwrap();
    let rv = bn.running_var.as_ref().unwrap();
    assert_close(
        "running_mean 1",
        &rm.to_vec(),
        &[8.74999985e-02, 4.37499993e-02, 0.0],
        1e-6,
    );
    assert_close(
        "running_var 1",
        &rv.to_vec(),
        &[1.21249998e+00, 1.13883924e+00, 1.19285715e+00],
        1e-6,
    );
    bn.forward(&x2).unwrap();
    assert_close(
        "running_mean 2",
        &rm.to_vec(),
        &[3.50000001e-02, -2.62500048e-02, 0.0],
        1e-6,
    );
    assert_close(
        "running_var 2",
        &rv.to_vec(),
        &[1.16937494e+00, 1.56234360e+00, 1.07430363e+00],
        1e-6,
    );
    let n = bn.num_batches_tracked.as_ref().unwrap();
    assert_eq!(n.shape(), &[] as &[usize]);
    assert_eq!(n.item().unwrap(), 2.0);

    bn.eval();
    let y = bn.forward(&x1).unwrap();
    #[rustfmt::skip]
    let want_eval = [-1.88185275e+00, 1.35474896e+00, -4.94737685e-01, 2.74186397e+00, 2.14207697e+00, -1.05807292e+00, 4.54218912e+00, 1.34203935e+00, 1.72359526e+00, 3.52063179e-02, 1.00000000e+00, 1.96479368e+00, 1.35474896e+00, -4.94737685e-01, 2.74186397e+00, 8.92377317e-01, -1.05807292e+00, 4.54218912e+00, 1.34203935e+00, -1.85811043e+00, 3.52063179e-02, 1.00000000e+00, 1.96479368e+00, 2.76404738e-01];
    assert_close("eval output", &y.to_vec(), &want_eval, 1e-5);
    // Evaluation leaves the statistics alone.
    assert_eq!(n.item().unwrap(), 2.0);
    assert_close(
        "running_mean after eval",
        &rm.to_vec(),
        &[3.50000001e-02, -2.62500048e-02, 0.0],
        1e-6,
    );
}

#[test]
fn batch_norm_gradients_match_pytorch() {
    let bn = bn_fixture();
    let (x1, _) = bn_inputs();
    let x = x1.requires_grad_(true).unwrap();
    let r = Tensor::from_vec(seq(24, 0.1, -0.3), &[2, 3, 2, 2]).unwrap();
    bn.forward(&x)
        .unwrap()
        .mul(&r)
        .unwrap()
        .sum_all()
        .backward()
        .unwrap();
    // PyTorch's input gradient is ~1e-6 (the pattern r is nearly removed by the
    // normalization), so it is checked with an absolute tolerance.
    let gx = x.grad().unwrap().to_vec();
    assert!(gx.iter().all(|g| g.abs() < 1e-5), "{gx:?}");
    let w = bn.weight.as_ref().unwrap().grad().unwrap().to_vec();
    let b = bn.bias.as_ref().unwrap().grad().unwrap().to_vec();
    assert_close(
        "grad weight",
        &w,
        &[2.64574647e+00, 2.31300139e+00, 2.56124473e+00],
        1e-5,
    );
    assert_close(
        "grad bias",
        &b,
        &[2.20000005e+00, 1.50000012e+00, 8.00000072e-01],
        1e-5,
    );
}

#[test]
fn batch_norm_gradients_match_finite_differences() {
    let mut rng = Rng::seed_from(5);
    let x = Tensor::randn_with(&[3, 2, 2, 3], &mut rng);
    let w = Tensor::uniform_with(0.5, 1.5, &[2], &mut rng).unwrap();
    let b = Tensor::randn_with(&[2], &mut rng);
    gradcheck(
        "batch_norm train",
        vec![x.clone(), w.clone(), b.clone()],
        |t| t[0].batch_norm(None, None, Some(&t[1]), Some(&t[2]), true, 0.1, 1e-5),
    );
    let rm = Tensor::new([0.3, -0.2]);
    let rv = Tensor::new([0.5, 2.0]);
    gradcheck("batch_norm eval", vec![x, w, b], |t| {
        t[0].batch_norm(
            Some(&rm),
            Some(&rv),
            Some(&t[1]),
            Some(&t[2]),
            false,
            0.1,
            1e-5,
        )
    });
}

#[test]
fn batch_norm_cumulative_momentum_and_repr() {
    let bn = BatchNorm2d::new(3).momentum(None);
    let (x1, x2) = bn_inputs();
    bn.forward(&x1).unwrap();
    bn.forward(&x2).unwrap();
    assert_close(
        "cumulative mean",
        &bn.running_mean.as_ref().unwrap().to_vec(),
        &[2.18750000e-01, -1.09375000e-01, 0.0],
        1e-6,
    );
    assert_close(
        "cumulative var",
        &bn.running_var.as_ref().unwrap().to_vec(),
        &[1.95312500e+00, 3.88113832e+00, 1.46794641e+00],
        1e-6,
    );
    assert_eq!(
        bn.repr(),
        "BatchNorm2d(3, eps=1e-05, momentum=None, affine=True, bias=True, track_running_stats=True)"
    );
    assert_eq!(
        BatchNorm2d::new(3).eps(1e-3).momentum(Some(0.01)).track_running_stats(false).repr(),
        "BatchNorm2d(3, eps=0.001, momentum=0.01, affine=True, bias=True, track_running_stats=False)"
    );
    assert_eq!(
        BatchNorm2d::new(3).affine(false).repr(),
        "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=False, bias=False, track_running_stats=True)"
    );
    let no_bias = BatchNorm2d::new(3).bias(false);
    assert_eq!(
        no_bias.state_dict().keys().collect::<Vec<_>>(),
        [
            "weight",
            "running_mean",
            "running_var",
            "num_batches_tracked"
        ]
    );
}

#[test]
fn batch_norm_without_running_stats_uses_batch_stats_in_eval() {
    let bn = BatchNorm2d::new(3).track_running_stats(false).affine(false);
    assert!(bn.state_dict().is_empty());
    let (x1, _) = bn_inputs();
    let train = bn.forward(&x1).unwrap();
    bn.eval();
    assert!(bn.forward(&x1).unwrap().allclose(&train, 0.0, 0.0));
}

#[test]
fn batch_norm_rejects_bad_inputs() {
    let bn = BatchNorm2d::new(3);
    let e = bn.forward(&Tensor::zeros(&[2, 3, 4])).unwrap_err();
    assert!(e.to_string().contains("4D"), "{e}");
    let e = bn.forward(&Tensor::zeros(&[2, 4, 1, 1])).unwrap_err();
    assert!(e.to_string().contains("4 channels"), "{e}");
    // One value per channel cannot be normalized with batch statistics (PyTorch's error).
    let e = bn.forward(&Tensor::zeros(&[1, 3, 1, 1])).unwrap_err();
    assert!(
        e.to_string().contains("more than 1 value per channel"),
        "{e}"
    );
    // The rejected inputs changed nothing.
    assert_eq!(
        bn.num_batches_tracked.as_ref().unwrap().item().unwrap(),
        0.0
    );
    assert_eq!(bn.running_var.as_ref().unwrap().to_vec(), vec![1.0; 3]);
    // In evaluation mode a single value is fine.
    bn.eval();
    assert_eq!(
        bn.forward(&Tensor::zeros(&[1, 3, 1, 1])).unwrap().shape(),
        &[1, 3, 1, 1]
    );
    let e = Tensor::zeros(&[2, 3])
        .batch_norm(None, None, Some(&Tensor::ones(&[2])), None, true, 0.1, 1e-5)
        .unwrap_err();
    assert!(e.to_string().contains("weight"), "{e}");
}

#[test]
fn buffers_in_state_dict_to_and_parameters() {
    let net = Sequential::new()
        .append(Conv2d::new(1, 2, 3).unwrap())
        .append(BatchNorm2d::new(2))
        .append(ReLU);
    assert_eq!(
        net.state_dict().keys().collect::<Vec<_>>(),
        [
            "0.weight",
            "0.bias",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "1.num_batches_tracked"
        ]
    );
    // Optimizers see parameters only.
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "1.weight", "1.bias"]);
    let buffers: Vec<String> = net.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        buffers,
        ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    );
    assert_eq!(net.num_parameters(), 2 * 9 + 2 + 2 + 2);

    // Train a step, copy everything into a fresh net, compare in eval mode.
    let x = Tensor::randn(&[4, 1, 5, 5]);
    net.forward(&x).unwrap();
    let copy = Sequential::new()
        .append(Conv2d::new(1, 2, 3).unwrap())
        .append(BatchNorm2d::new(2))
        .append(ReLU);
    copy.load_state_dict(&net.state_dict()).unwrap();
    let bn = copy.get::<BatchNorm2d>(1).unwrap();
    assert_eq!(
        bn.num_batches_tracked.as_ref().unwrap().item().unwrap(),
        1.0
    );
    net.eval();
    copy.eval();
    assert!(copy.forward(&x).unwrap().equal(&net.forward(&x).unwrap()));

    // A state dict without the buffers is refused, naming the first missing one.
    let mut sd = net.state_dict();
    sd.remove("1.running_var");
    let e = copy.load_state_dict(&sd).unwrap_err();
    assert!(
        matches!(&e, Error::StateDict { key, .. } if key == "1.running_var"),
        "{e}"
    );
    net.to(&tinycnn::Device::Cpu).unwrap();
}

#[test]
fn relu6_matches_pytorch_with_nan() {
    let x = Tensor::new([-3.0, 0.0, 0.5, 5.99, 6.0, 7.5, f32::NAN])
        .requires_grad_(true)
        .unwrap();
    let y = ReLU6.forward(&x).unwrap();
    assert_close(
        "relu6",
        &y.to_vec(),
        &[0.0, 0.0, 0.5, 5.99, 6.0, 6.0, f32::NAN],
        0.0,
    );
    y.sum_all().backward().unwrap();
    // PyTorch's hardtanh backward passes the gradient strictly inside (0, 6), and where
    // x is NaN (the comparisons that would stop it are false).
    assert_close(
        "relu6 grad",
        &x.grad().unwrap().to_vec(),
        &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0],
        0.0,
    );
    gradcheck(
        "relu6",
        vec![Tensor::new([-1.0, 0.3, 2.0, 5.5, 6.5, 9.0])],
        |t| t[0].relu6(),
    );
}

#[test]
fn adaptive_avg_pool_matches_pytorch_for_sizes_that_do_not_divide() {
    let x = Tensor::from_vec(seq(70, 1.0, 0.0), &[1, 2, 5, 7])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let y = AdaptiveAvgPool2d::new((3, 4)).forward(&x).unwrap();
    assert_eq!(y.shape(), &[1, 2, 3, 4]);
    #[rustfmt::skip]
    let want = [3.25000000e+00, 5.50000000e+00, 4.83333349e+00, 5.25000000e+00, 4.33333349e+00, 4.44444418e+00, 5.00000000e+00, 4.50000000e+00, 4.50000000e+00, 4.00000000e+00, 5.16666651e+00, 3.75000000e+00, 6.25000000e+00, 4.83333349e+00, 6.00000000e+00, 5.50000000e+00, 5.50000000e+00, 5.00000000e+00, 5.55555534e+00, 5.66666651e+00, 4.75000000e+00, 5.16666651e+00, 4.50000000e+00, 6.75000000e+00];
    assert_close("adaptive pool", &y.to_vec(), &want, 1e-6);
    let g = Tensor::from_vec(seq(24, 1.0, 1.0), &[1, 2, 3, 4]).unwrap();
    y.backward_with(&g).unwrap();
    #[rustfmt::skip]
    let want_g = [2.50000000e-01, 1.58333337e+00, 1.33333337e+00, 2.00000000e+00, 6.66666687e-01, 3.41666675e+00, 2.75000000e+00, 1.41666663e+00, 3.08333325e+00, 1.66666675e+00, 3.44444418e+00, 1.77777767e+00, 5.52777767e+00, 3.75000000e+00, 1.16666663e+00, 1.50000000e+00, 3.33333343e-01, 1.44444442e+00, 1.11111104e+00, 2.11111116e+00, 1.00000000e+00, 1.66666663e+00, 3.50000000e+00, 1.83333337e+00, 3.77777767e+00, 1.94444442e+00, 3.19444442e+00, 1.25000000e+00, 5.00000000e-01, 2.00000000e+00, 1.50000000e+00, 2.33333325e+00, 8.33333313e-01, 1.08333325e+00, 2.50000000e-01, 2.00000000e+00, 2.66666675e+00, 6.66666687e-01, 2.50000000e+00, 1.83333337e+00, 3.58333349e+00, 1.75000000e+00, 2.50000000e+00, 4.27777767e+00, 1.77777767e+00, 4.27777767e+00, 2.50000000e+00, 4.58333349e+00, 2.08333325e+00, 5.00000000e-01, 1.61111104e+00, 1.11111104e+00, 1.77777767e+00, 6.66666687e-01, 1.00000000e+00, 3.33333343e-01, 2.75000000e+00, 4.69444466e+00, 1.94444442e+00, 2.77777767e+00, 8.33333373e-01, 3.16666651e+00, 2.33333325e+00, 2.25000000e+00, 3.08333325e+00, 8.33333313e-01, 1.00000000e+00, 1.66666672e-01, 2.16666675e+00, 2.00000000e+00];
    assert_close(
        "adaptive pool grad",
        &x.grad().unwrap().to_vec(),
        &want_g,
        1e-6,
    );
    assert_eq!(
        AdaptiveAvgPool2d::new((3, 4)).repr(),
        "AdaptiveAvgPool2d(output_size=(3, 4))"
    );
    // Global average pooling, unbatched input, output larger than the input.
    let gap = AdaptiveAvgPool2d::new(1);
    let y = gap
        .forward(&Tensor::from_vec(seq(12, 1.0, 0.0), &[3, 2, 2]).unwrap())
        .unwrap();
    assert_eq!(y.shape(), &[3, 1, 1]);
    // Channels hold 0 7 3 10 | 6 2 9 5 | 1 8 4 0.
    assert_close("gap", &y.to_vec(), &[5.0, 5.5, 3.25], 1e-6);
    let up = Tensor::from_vec(vec![1.0, 2.0], &[1, 1, 1, 2])
        .unwrap()
        .adaptive_avg_pool2d((2, 3))
        .unwrap();
    assert_eq!(up.to_vec(), vec![1.0, 1.5, 2.0, 1.0, 1.5, 2.0]);
    gradcheck(
        "adaptive_avg_pool2d",
        vec![Tensor::randn(&[2, 1, 5, 3])],
        |t| t[0].adaptive_avg_pool2d((2, 2)),
    );
    assert!(Tensor::zeros(&[1, 1, 2, 2])
        .adaptive_avg_pool2d((0, 1))
        .is_err());
    assert!(Tensor::zeros(&[1, 2, 2])
        .unsqueeze(0)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .adaptive_avg_pool2d((1, 1))
        .is_err());
}

#[test]
fn dropout_scales_kept_elements_and_is_identity_in_eval() {
    tinycnn::manual_seed(3);
    let d = Dropout::new(0.2).unwrap();
    assert_eq!(d.repr(), "Dropout(p=0.2, inplace=False)");
    let x = Tensor::ones(&[10_000]).requires_grad_(true).unwrap();
    let y = d.forward(&x).unwrap();
    let v = y.to_vec();
    // PyTorch keeps 1 / (1 - 0.2) = 1.25.
    assert!(v.iter().all(|&e| e == 0.0 || e == 1.25), "{:?}", &v[..10]);
    let dropped = v.iter().filter(|&&e| e == 0.0).count();
    assert!(
        (1800..2200).contains(&dropped),
        "{dropped} of 10000 dropped"
    );
    // The gradient flows through the kept elements with the same scale.
    y.sum_all().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), v);
    // The same seed gives the same mask.
    tinycnn::manual_seed(3);
    assert_eq!(d.forward(&Tensor::ones(&[10_000])).unwrap().to_vec(), v);
    d.eval();
    let x = Tensor::randn(&[5]);
    assert!(d.forward(&x).unwrap().same(&x));
    // p = 1 multiplies by zero (NaN stays NaN, as in PyTorch); p outside [0, 1] is refused.
    let all = Dropout::new(1.0).unwrap();
    assert_close(
        "p=1",
        &all.forward(&Tensor::new([1.0, f32::NAN])).unwrap().to_vec(),
        &[0.0, f32::NAN],
        0.0,
    );
    assert!(Dropout::new(-0.1).is_err());
    assert!(Dropout::new(f32::NAN).is_err());
    assert!(Tensor::ones(&[2]).dropout(1.5, true).is_err());
}

#[test]
fn residual_adds_body_and_shortcut() {
    let block = Residual::new(Linear::new(3, 3));
    let x = Tensor::new([[1.0, -2.0, 0.5]]);
    let body = block.body.forward(&x).unwrap();
    assert!(block
        .forward(&x)
        .unwrap()
        .allclose(&body.add(&x).unwrap(), 0.0, 0.0));
    let projected = Residual::new(Linear::new(3, 2)).with_shortcut(Linear::new(3, 2));
    let names: Vec<String> = projected
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "body.weight",
            "body.bias",
            "shortcut.weight",
            "shortcut.bias"
        ]
    );
    let want = projected
        .body
        .forward(&x)
        .unwrap()
        .add(&projected.shortcut.as_ref().unwrap().forward(&x).unwrap())
        .unwrap();
    assert!(projected.forward(&x).unwrap().allclose(&want, 0.0, 0.0));
    assert_eq!(
        projected.repr(),
        "Residual(\n  (body): Linear(in_features=3, out_features=2, bias=True)\n  (shortcut): Linear(in_features=3, out_features=2, bias=True)\n)"
    );
    // A body that changes the shape without a shortcut is an error, not a broadcast.
    let e = Residual::new(Linear::new(3, 2)).forward(&x).unwrap_err();
    assert!(e.to_string().contains("shortcut"), "{e}");
    // Gradients flow through both paths.
    let w = Tensor::randn(&[2, 3]);
    gradcheck("residual", vec![Tensor::randn(&[2, 3]), w], |t| {
        let block = Residual::new(ReLU6);
        block.forward(&t[0])?.mul(&t[1])
    });
}

#[test]
fn depthwise_separable_block_layout() {
    let block = depthwise_separable(4, 8, 2).unwrap();
    assert_eq!(
        block.repr(),
        "Sequential(\n  (0): Conv2d(4, 4, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), groups=4, bias=False)\n  (1): BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)\n  (2): ReLU()\n  (3): Conv2d(4, 8, kernel_size=(1, 1), stride=(1, 1), bias=False)\n  (4): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)\n  (5): ReLU()\n)"
    );
    let y = block.forward(&Tensor::randn(&[2, 4, 7, 7])).unwrap();
    assert_eq!(y.shape(), &[2, 8, 4, 4]);
    assert!(y.to_vec().iter().all(|&v| v >= 0.0));
    assert!(depthwise_separable(0, 8, 1).is_err());
    assert!(depthwise_separable(4, 8, 0).is_err());
}

#[test]
fn the_lean_inference_path_refuses_training_mode_layers() {
    // `Inference` is the evaluation-mode forward: a BatchNorm2d or Dropout still in training
    // mode is refused (its callers then keep the autograd forward), and compiles after eval().
    for (name, layer) in [
        (
            "BatchNorm2d",
            Box::new(BatchNorm2d::new(1)) as Box<dyn Module>,
        ),
        ("Dropout", Box::new(Dropout::new(0.5).unwrap())),
    ] {
        let mut net = Sequential::new().append(Conv2d::new(1, 1, 3).unwrap());
        net.push_boxed(layer);
        let e = tinycnn::Inference::new(&net, &[1, 6, 6]).err();
        assert!(
            e.is_some_and(|e| e.to_string().contains("training mode")),
            "{name} compiled in training mode"
        );
        net.eval();
        assert!(tinycnn::Inference::new(&net, &[1, 6, 6]).is_ok(), "{name}");
    }
    // Unequal adaptive windows (5 into 2) are not an average pooling.
    let net = Sequential::new()
        .append(Conv2d::new(1, 1, 3).unwrap())
        .append(AdaptiveAvgPool2d::new(2));
    let e = tinycnn::Inference::new(&net, &[1, 7, 7]).err().unwrap();
    assert!(e.to_string().contains("unequal windows"), "{e}");
}
