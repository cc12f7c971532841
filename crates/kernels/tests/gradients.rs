//! Every backward kernel against central finite differences of its forward kernel.
//!
//! For a forward `y = f(v)` and a fixed random `r`, the scalar `L(v) = sum_i r_i y_i` is
//! accumulated in f64; its numeric gradient `(L(v + eps e_j) - L(v - eps e_j)) / (2 eps)`
//! must match the backward kernel fed `grad_y = r`, within 1e-2 of the gradient's largest
//! magnitude. Both the fast kernels and the `reference` loops are checked, so a wrong
//! reference cannot hide behind the proptests.

mod common;

use common::Rng;
use tinycnn_kernels::*;

const EPS: f32 = 1e-2;
const TOL: f32 = 1e-2;

fn dot(r: &[f32], y: &[f32]) -> f64 {
    r.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Central differences of `loss` with respect to each element of `v`.
fn numeric_grad(v: &[f32], mut loss: impl FnMut(&[f32]) -> f64) -> Vec<f32> {
    let mut w = v.to_vec();
    (0..v.len())
        .map(|j| {
            let (plus, minus) = (v[j] + EPS, v[j] - EPS);
            w[j] = plus;
            let lp = loss(&w);
            w[j] = minus;
            let lm = loss(&w);
            w[j] = v[j];
            // The step actually taken after f32 rounding.
            ((lp - lm) / (plus as f64 - minus as f64)) as f32
        })
        .collect()
}

#[track_caller]
fn assert_grad(what: &str, analytic: &[f32], numeric: &[f32]) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: length");
    let scale = numeric.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
        assert!(
            (a - n).abs() <= TOL * scale,
            "{what}: d/dv[{i}] analytic {a} vs numeric {n} (max |grad| {scale})"
        );
    }
}

// ---------------------------------------------------------------- convolution

fn conv_shapes() -> Vec<Conv2dShape> {
    let p = Conv2dParams::new;
    vec![
        // dense, padding 1, batch 2
        Conv2dShape::new(p(2, 3, (3, 3)).with_padding((1, 1)), 2, 5, 6),
        // stride, asymmetric padding, dilation
        Conv2dShape::new(
            p(3, 2, (3, 2))
                .with_stride((2, 1))
                .with_padding((1, 0))
                .with_dilation((1, 2)),
            1,
            7,
            8,
        ),
        // two groups with everything non-trivial
        Conv2dShape::new(
            p(4, 6, (2, 3))
                .with_groups(2)
                .with_stride((2, 1))
                .with_padding((0, 1))
                .with_dilation((2, 1)),
            2,
            6,
            5,
        ),
        // depthwise, and depthwise with channel multiplier 2
        Conv2dShape::new(p(3, 3, (3, 3)).with_groups(3).with_padding((1, 1)), 1, 5, 5),
        Conv2dShape::new(p(2, 4, (3, 1)).with_groups(2).with_stride((1, 2)), 2, 4, 7),
        // pointwise
        Conv2dShape::new(p(3, 2, (1, 1)), 2, 3, 5),
        // kernel exactly as large as the padded input: 3 + 2 = 5
        Conv2dShape::new(p(2, 2, (5, 5)).with_padding((1, 1)), 1, 3, 3),
    ]
}

fn conv_fwd(fast: bool, s: &Conv2dShape, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; s.output_len().unwrap()];
    if fast {
        let mut ws = vec![0.0; conv2d_workspace_len(s)];
        conv2d_forward(s, x, w, Some(b), &mut y, &mut ws).unwrap();
    } else {
        reference::conv2d(s, x, w, Some(b), &mut y).unwrap();
    }
    y
}

fn check_conv_grads(fast: bool) {
    let tag = if fast { "fast" } else { "reference" };
    for (case, s) in conv_shapes().iter().enumerate() {
        let mut rng = Rng::new(100 + case as u64);
        let x = rng.vec(s.input_len().unwrap(), -1.0, 1.0);
        let w = rng.vec(s.weight_len(), -1.0, 1.0);
        let b = rng.vec(s.params.out_channels, -1.0, 1.0);
        let r = rng.vec(s.output_len().unwrap(), -1.0, 1.0);

        let mut gx = vec![0.0; x.len()];
        let mut gw = vec![0.0; w.len()];
        let mut gb = vec![0.0; b.len()];
        if fast {
            let mut ws = vec![0.0; conv2d_backward_input_workspace_len(s)];
            conv2d_backward_input(s, &r, &w, &mut gx, &mut ws).unwrap();
            let mut ws = vec![0.0; conv2d_backward_weight_workspace_len(s)];
            conv2d_backward_weight(s, &x, &r, &mut gw, &mut ws).unwrap();
            conv2d_backward_bias(s, &r, &mut gb).unwrap();
        } else {
            reference::conv2d_backward_input(s, &r, &w, &mut gx).unwrap();
            reference::conv2d_backward_weight(s, &x, &r, &mut gw).unwrap();
            reference::conv2d_backward_bias(s, &r, &mut gb).unwrap();
        }
        let nx = numeric_grad(&x, |v| dot(&r, &conv_fwd(fast, s, v, &w, &b)));
        assert_grad(&format!("{tag} conv case {case} input ({s:?})"), &gx, &nx);
        let nw = numeric_grad(&w, |v| dot(&r, &conv_fwd(fast, s, &x, v, &b)));
        assert_grad(&format!("{tag} conv case {case} weight ({s:?})"), &gw, &nw);
        if fast {
            // Each algorithm's backward pass against the same numeric gradients.
            for algo in [ConvAlgo::Direct, ConvAlgo::Im2colGemm] {
                let mut gx = vec![f32::NAN; x.len()];
                let mut ws = vec![0.0; conv2d_backward_input_workspace_len_for(algo, s)];
                conv2d_backward_input_with(algo, s, &r, &w, &mut gx, &mut ws).unwrap();
                assert_grad(
                    &format!("{algo:?} conv case {case} input ({s:?})"),
                    &gx,
                    &nx,
                );
                let mut gw = vec![f32::NAN; w.len()];
                let mut ws = vec![0.0; conv2d_backward_weight_workspace_len_for(algo, s)];
                conv2d_backward_weight_with(algo, s, &x, &r, &mut gw, &mut ws).unwrap();
                assert_grad(
                    &format!("{algo:?} conv case {case} weight ({s:?})"),
                    &gw,
                    &nw,
                );
            }
        }
        let nb = numeric_grad(&b, |v| dot(&r, &conv_fwd(fast, s, &x, &w, v)));
        assert_grad(&format!("{tag} conv case {case} bias ({s:?})"), &gb, &nb);
    }
}

#[test]
fn conv2d_gradients_fast() {
    check_conv_grads(true);
}

#[test]
fn conv2d_gradients_reference() {
    check_conv_grads(false);
}

#[test]
fn corr2d_gradient_matches_single_channel_conv() {
    // corr2d has no backward of its own; its gradient wrt K is conv2d_backward_weight of the
    // equivalent 1-channel conv, so check that against differences of corr2d itself.
    let (xh, xw, kh, kw) = (5, 7, 2, 3);
    let mut rng = Rng::new(5);
    let x = rng.vec(xh * xw, -1.0, 1.0);
    let k = rng.vec(kh * kw, -1.0, 1.0);
    let r = rng.vec((xh - kh + 1) * (xw - kw + 1), -1.0, 1.0);
    let s = Conv2dShape::new(Conv2dParams::new(1, 1, (kh, kw)), 1, xh, xw);
    let mut gk = vec![0.0; k.len()];
    let mut ws = vec![0.0; conv2d_backward_weight_workspace_len(&s)];
    conv2d_backward_weight(&s, &x, &r, &mut gk, &mut ws).unwrap();
    let nk = numeric_grad(&k, |v| {
        let mut y = vec![0.0; r.len()];
        corr2d(&x, (xh, xw), v, (kh, kw), &mut y).unwrap();
        dot(&r, &y)
    });
    assert_grad("corr2d kernel", &gk, &nk);
}

// ---------------------------------------------------------------- pooling

fn pool_shapes() -> Vec<Pool2dShape> {
    let p = Pool2dParams::new;
    vec![
        Pool2dShape::new(p(2), 2, 2, 4, 6),
        Pool2dShape::new(p(3).with_padding((1, 1)).with_stride((2, 2)), 1, 2, 5, 5),
        // overlapping windows (stride 1): one input feeds several outputs
        Pool2dShape::new(p(3).with_stride((1, 1)).with_padding((1, 0)), 1, 1, 4, 5),
        Pool2dShape::new(
            Pool2dParams::with_kernel((2, 3))
                .with_padding((1, 1))
                .with_stride((2, 3)),
            2,
            1,
            4,
            7,
        ),
        Pool2dShape::new(
            Pool2dParams::with_kernel((3, 2))
                .with_stride((1, 2))
                .with_padding((1, 1))
                .with_count_include_pad(false),
            1,
            3,
            5,
            4,
        ),
    ]
}

/// Distinct values at least 0.05 apart (well above 2 * EPS), so no perturbation changes
/// which element of a window is the maximum.
fn distinct_values(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.05 - n as f32 * 0.025).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

fn check_max_pool_grads(fast: bool) {
    let tag = if fast { "fast" } else { "reference" };
    for (case, s) in pool_shapes().iter().enumerate() {
        let mut rng = Rng::new(200 + case as u64);
        let x = distinct_values(&mut rng, s.input_len().unwrap());
        let ny = s.output_len().unwrap();
        let r = rng.vec(ny, -1.0, 1.0);
        let fwd = |v: &[f32], arg: &mut [u32]| {
            let mut y = vec![0.0; ny];
            if fast {
                max_pool2d_forward(s, v, &mut y, arg).unwrap();
            } else {
                reference::max_pool2d(s, v, &mut y, arg).unwrap();
            }
            y
        };
        let mut arg = vec![0u32; ny];
        fwd(&x, &mut arg);
        let mut gx = vec![0.0; x.len()];
        if fast {
            max_pool2d_backward(s, &r, &arg, &mut gx).unwrap();
        } else {
            reference::max_pool2d_backward(s, &r, &arg, &mut gx).unwrap();
        }
        let mut scratch = vec![0u32; ny];
        let nx = numeric_grad(&x, |v| dot(&r, &fwd(v, &mut scratch)));
        assert_grad(&format!("{tag} max pool case {case} ({s:?})"), &gx, &nx);
    }
}

fn check_avg_pool_grads(fast: bool) {
    let tag = if fast { "fast" } else { "reference" };
    for (case, s) in pool_shapes().iter().enumerate() {
        for include in [true, false] {
            let mut s = *s;
            s.params.count_include_pad = include;
            let mut rng = Rng::new(300 + case as u64);
            let x = rng.vec(s.input_len().unwrap(), -1.0, 1.0);
            let ny = s.output_len().unwrap();
            let r = rng.vec(ny, -1.0, 1.0);
            let mut gx = vec![0.0; x.len()];
            if fast {
                avg_pool2d_backward(&s, &r, &mut gx).unwrap();
            } else {
                reference::avg_pool2d_backward(&s, &r, &mut gx).unwrap();
            }
            let nx = numeric_grad(&x, |v| {
                let mut y = vec![0.0; ny];
                if fast {
                    avg_pool2d_forward(&s, v, &mut y).unwrap();
                } else {
                    reference::avg_pool2d(&s, v, &mut y).unwrap();
                }
                dot(&r, &y)
            });
            assert_grad(&format!("{tag} avg pool case {case} ({s:?})"), &gx, &nx);
        }
    }
}

#[test]
fn max_pool_gradients() {
    check_max_pool_grads(true);
    check_max_pool_grads(false);
}

#[test]
fn avg_pool_gradients() {
    check_avg_pool_grads(true);
    check_avg_pool_grads(false);
}

// ---------------------------------------------------------------- elementwise

type Unary = fn(&[f32], &mut [f32]) -> Result<()>;
type UnaryBackward = fn(&[f32], &[f32], &mut [f32]) -> Result<()>;

/// `backward_from_output`: sigmoid and tanh take the forward output, ReLU takes the input.
fn check_unary(what: &str, fwd: Unary, bwd: UnaryBackward, backward_from_output: bool) {
    let mut rng = Rng::new(400);
    // Keep away from ReLU's kink at 0 (the difference quotient straddles it within EPS).
    let x: Vec<f32> = (0..37)
        .map(|_| {
            let v = rng.uniform(-3.0, 3.0);
            if v.abs() < 0.05 {
                v + 0.1f32.copysign(v)
            } else {
                v
            }
        })
        .collect();
    let r = rng.vec(x.len(), -1.0, 1.0);
    let mut y = vec![0.0; x.len()];
    fwd(&x, &mut y).unwrap();
    let mut gx = vec![0.0; x.len()];
    bwd(if backward_from_output { &y } else { &x }, &r, &mut gx).unwrap();
    let nx = numeric_grad(&x, |v| {
        let mut y = vec![0.0; v.len()];
        fwd(v, &mut y).unwrap();
        dot(&r, &y)
    });
    assert_grad(what, &gx, &nx);
}

#[test]
fn relu6_gradient_on_both_sides_of_both_kinks() {
    let mut rng = Rng::new(401);
    // In [-2, 8], at least 0.05 from the kinks 0 and 6.
    let x: Vec<f32> = (0..41)
        .map(|_| {
            let v = rng.uniform(-2.0, 8.0);
            let near = if (v - 6.0).abs() < 0.05 { 6.0 } else { 0.0 };
            if (v - near).abs() < 0.05 {
                near + 0.1f32.copysign(v - near)
            } else {
                v
            }
        })
        .collect();
    let r = rng.vec(x.len(), -1.0, 1.0);
    for (what, fwd, bwd) in [
        (
            "relu6",
            relu6_forward as Unary,
            relu6_backward as UnaryBackward,
        ),
        (
            "reference relu6",
            reference::relu6,
            reference::relu6_backward,
        ),
    ] {
        let mut gx = vec![0.0; x.len()];
        bwd(&x, &r, &mut gx).unwrap();
        let nx = numeric_grad(&x, |v| {
            let mut y = vec![0.0; v.len()];
            fwd(v, &mut y).unwrap();
            dot(&r, &y)
        });
        assert_grad(what, &gx, &nx);
    }
}

#[test]
fn activation_gradients() {
    check_unary("relu", relu_forward, relu_backward, false);
    check_unary("sigmoid", sigmoid_forward, sigmoid_backward, true);
    check_unary("tanh", tanh_forward, tanh_backward, true);
    check_unary(
        "reference relu",
        reference::relu,
        reference::relu_backward,
        false,
    );
    check_unary(
        "reference sigmoid",
        reference::sigmoid,
        reference::sigmoid_backward,
        true,
    );
    check_unary(
        "reference tanh",
        reference::tanh,
        reference::tanh_backward,
        true,
    );
}

#[test]
fn bias_gradients() {
    let (outer, channels, inner) = (3, 4, 5);
    let mut rng = Rng::new(500);
    let x = rng.vec(outer * channels * inner, -1.0, 1.0);
    let b = rng.vec(channels, -1.0, 1.0);
    let r = rng.vec(x.len(), -1.0, 1.0);
    for fast in [true, false] {
        let mut gb = vec![0.0; channels];
        if fast {
            bias_backward(outer, channels, inner, &r, &mut gb).unwrap();
        } else {
            reference::bias_backward(outer, channels, inner, &r, &mut gb).unwrap();
        }
        let nb = numeric_grad(&b, |v| {
            let mut y = x.clone();
            if fast {
                bias_add(outer, channels, inner, v, &mut y).unwrap();
            } else {
                reference::bias_add(outer, channels, inner, v, &mut y).unwrap();
            }
            dot(&r, &y)
        });
        assert_grad(if fast { "bias" } else { "reference bias" }, &gb, &nb);
    }
}

// ---------------------------------------------------------------- losses

type RowFn = fn(usize, usize, &[f32], &mut [f32]) -> Result<()>;
type RowBackward = fn(usize, usize, &[f32], &[f32], &mut [f32]) -> Result<()>;

fn check_rowwise(what: &str, fwd: RowFn, bwd: RowBackward) {
    let (rows, cols) = (3, 7);
    let mut rng = Rng::new(600);
    let x = rng.vec(rows * cols, -3.0, 3.0);
    let r = rng.vec(x.len(), -1.0, 1.0);
    let mut y = vec![0.0; x.len()];
    fwd(rows, cols, &x, &mut y).unwrap();
    let mut gx = vec![0.0; x.len()];
    bwd(rows, cols, &y, &r, &mut gx).unwrap();
    let nx = numeric_grad(&x, |v| {
        let mut y = vec![0.0; v.len()];
        fwd(rows, cols, v, &mut y).unwrap();
        dot(&r, &y)
    });
    assert_grad(what, &gx, &nx);
}

#[test]
fn softmax_gradients() {
    check_rowwise("softmax", softmax_forward, softmax_backward);
    check_rowwise("log_softmax", log_softmax_forward, log_softmax_backward);
    check_rowwise(
        "reference softmax",
        reference::softmax,
        reference::softmax_backward,
    );
    check_rowwise(
        "reference log_softmax",
        reference::log_softmax,
        reference::log_softmax_backward,
    );
}

#[test]
fn cross_entropy_gradients() {
    let (rows, cols) = (4, 6);
    let mut rng = Rng::new(700);
    let x = rng.vec(rows * cols, -3.0, 3.0);
    let labels: Vec<u32> = (0..rows).map(|_| rng.below(cols) as u32).collect();
    let grad_loss = 1.7f32;
    for fast in [true, false] {
        let mut g = vec![0.0; x.len()];
        if fast {
            cross_entropy_backward(rows, cols, &x, &labels, grad_loss, &mut g).unwrap();
        } else {
            reference::cross_entropy_backward(rows, cols, &x, &labels, grad_loss, &mut g).unwrap();
        }
        let n = numeric_grad(&x, |v| {
            let l = if fast {
                cross_entropy_forward(rows, cols, v, &labels).unwrap()
            } else {
                reference::cross_entropy(rows, cols, v, &labels).unwrap()
            };
            grad_loss as f64 * l as f64
        });
        assert_grad(
            if fast {
                "cross_entropy"
            } else {
                "reference cross_entropy"
            },
            &g,
            &n,
        );
    }
}

// ---------------------------------------------------------------- GEMM identities

#[test]
fn sgemm_gradient_identities() {
    // C = alpha A B (A m x k, B k x n); with L = sum R * C:
    // dL/dA = alpha R B^T (an m x k GEMM with B transposed), dL/dB = alpha A^T R.
    let (m, n, k, alpha) = (3, 5, 4, 0.7f32);
    let mut rng = Rng::new(800);
    let a = rng.vec(m * k, -1.0, 1.0);
    let b = rng.vec(k * n, -1.0, 1.0);
    let r = rng.vec(m * n, -1.0, 1.0);
    let mm = |g: &GemmShape, a: &[f32], b: &[f32], out: usize| {
        let mut c = vec![0.0; out];
        let mut ws = vec![0.0; sgemm_workspace_len(g.m, g.n, g.k)];
        sgemm(g, alpha, a, b, 0.0, &mut c, &mut ws).unwrap();
        c
    };
    let fwd = GemmShape::new(m, n, k);
    let ga = mm(
        &GemmShape::new(m, k, n).with_transpose(Transpose::No, Transpose::Yes),
        &r,
        &b,
        m * k,
    );
    let gb = mm(
        &GemmShape::new(k, n, m).with_transpose(Transpose::Yes, Transpose::No),
        &a,
        &r,
        k * n,
    );
    let na = numeric_grad(&a, |v| dot(&r, &mm(&fwd, v, &b, m * n)));
    assert_grad("sgemm dA", &ga, &na);
    let nb = numeric_grad(&b, |v| dot(&r, &mm(&fwd, &a, v, m * n)));
    assert_grad("sgemm dB", &gb, &nb);
}

// ---------------------------------------------------------------- batch norm, adaptive pooling

#[test]
fn batch_norm_gradients() {
    let s = BatchNormShape::new(3, 2, 5);
    let mut rng = Rng::new(410);
    let x = rng.vec(s.len().unwrap(), -2.0, 2.0);
    let w = rng.vec(2, 0.5, 1.5);
    let b = rng.vec(2, -1.0, 1.0);
    let r = rng.vec(x.len(), -1.0, 1.0);
    let (run_mean, run_var) = ([0.3f32, -0.2], [0.7f32, 1.9]);
    for training in [true, false] {
        // The loss as a function of (x, w, b); training recomputes the batch statistics.
        let loss = |x: &[f32], w: &[f32], b: &[f32]| {
            let (mut m, mut v) = ([0.0; 2], [0.0; 2]);
            if training {
                batch_norm_stats(&s, x, &mut m, &mut v).unwrap();
            } else {
                (m, v) = (run_mean, run_var);
            }
            let stats = BatchNormStats {
                mean: &m,
                var: &v,
                eps: 1e-5,
            };
            let mut y = vec![0.0; x.len()];
            batch_norm_forward(&s, x, &stats, Some(w), Some(b), &mut y).unwrap();
            dot(&r, &y)
        };
        let (mut m, mut v) = ([0.0; 2], [0.0; 2]);
        if training {
            batch_norm_stats(&s, &x, &mut m, &mut v).unwrap();
        } else {
            (m, v) = (run_mean, run_var);
        }
        let stats = BatchNormStats {
            mean: &m,
            var: &v,
            eps: 1e-5,
        };
        let (mut gx, mut gw, mut gb) = (vec![0.0; x.len()], vec![0.0; 2], vec![0.0; 2]);
        let grads = BatchNormGrads {
            x: Some(&mut gx),
            weight: Some(&mut gw),
            bias: Some(&mut gb),
        };
        batch_norm_backward(&s, &x, &r, &stats, Some(&w), training, grads).unwrap();
        let what = if training {
            "batch_norm (training)"
        } else {
            "batch_norm (eval)"
        };
        assert_grad(what, &gx, &numeric_grad(&x, |xv| loss(xv, &w, &b)));
        assert_grad(what, &gw, &numeric_grad(&w, |wv| loss(&x, wv, &b)));
        assert_grad(what, &gb, &numeric_grad(&b, |bv| loss(&x, &w, bv)));
    }
}

#[test]
fn adaptive_avg_pool_gradients() {
    for out in [(1, 1), (3, 2), (4, 6)] {
        let s = AdaptivePool2dShape::new(2, 2, (5, 4), out);
        let mut rng = Rng::new(420);
        let x = rng.vec(s.input_len().unwrap(), -1.0, 1.0);
        let r = rng.vec(s.output_len().unwrap(), -1.0, 1.0);
        let mut gx = vec![0.0; x.len()];
        adaptive_avg_pool2d_backward(&s, &r, &mut gx).unwrap();
        let nx = numeric_grad(&x, |v| {
            let mut y = vec![0.0; r.len()];
            adaptive_avg_pool2d_forward(&s, v, &mut y).unwrap();
            dot(&r, &y)
        });
        assert_grad(&format!("adaptive_avg_pool2d {out:?}"), &gx, &nx);
    }
}
