//! The lean inference path gives the autograd forward's values (which the kernel and
//! gradient tests pin to the naive reference) for every supported layer, batch size and
//! thread count, and refuses what it cannot run with the layer's name.

use tinycnn::nn::{
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity, Linear,
    MaxPool2d, Module, ReLU, ReLU6, Sequential, Sigmoid, Softmax, Tanh,
};
use tinycnn::{no_grad, Conv2dParams, Inference, Rng, Tensor};

fn conv(p: Conv2dParams) -> Conv2d {
    Conv2d::with(p, true).unwrap()
}

fn lenet(relu: bool) -> Sequential {
    let act = |s: Sequential| {
        if relu {
            s.append(ReLU)
        } else {
            s.append(Sigmoid)
        }
    };
    let pool = |s: Sequential| {
        if relu {
            s.append(MaxPool2d::new(2).stride(2))
        } else {
            s.append(AvgPool2d::new(2).stride(2))
        }
    };
    let s = Sequential::new().append(conv(Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2))));
    let s = pool(act(s));
    let s = pool(act(s.append(conv(Conv2dParams::new(6, 16, (5, 5))))));
    let s = act(s.append(Flatten::new()).append(Linear::new(400, 120)));
    act(s.append(Linear::new(120, 84))).append(Linear::new(84, 10))
}

fn check(net: &Sequential, input: &[usize], batches: &[usize]) {
    let mut fast = Inference::new(net, input).unwrap();
    let mut rng = Rng::seed_from(3);
    for &n in batches {
        let mut shape = vec![n];
        shape.extend_from_slice(input);
        let x = Tensor::randn_with(&shape, &mut rng);
        let want = no_grad(|| net.forward(&x)).unwrap();
        let got = fast.run(&x).unwrap();
        assert_eq!(got.shape(), want.shape(), "batch {n}");
        assert!(
            got.allclose(&want, 1e-5, 1e-5),
            "batch {n}: {:?} vs {:?}",
            &got.to_vec()[..4.min(got.numel())],
            &want.to_vec()[..4.min(want.numel())]
        );
    }
}

#[test]
fn lenet_both_variants_match_the_autograd_forward() {
    for relu in [false, true] {
        check(&lenet(relu), &[1, 28, 28], &[1, 2, 7, 64, 257]);
    }
}

/// Gives every batch norm running statistics and an affine transform far from the identity,
/// so folding them into the convolution is really tested.
fn randomize_batch_norms(net: &Sequential, rng: &mut Rng) {
    let _no_grad = tinycnn::no_grad_guard();
    net.apply(&mut |m| {
        if let Some(bn) = m.downcast_ref::<BatchNorm2d>() {
            let c = bn.num_features;
            let set = |t: &Option<Tensor>, v: Tensor| t.as_ref().map_or(Ok(()), |t| t.copy_(&v));
            set(&bn.running_mean, Tensor::randn_with(&[c], rng))?;
            set(
                &bn.running_var,
                Tensor::rand_with(&[c], rng).add_scalar(0.5),
            )?;
            set(&bn.weight, Tensor::randn_with(&[c], rng))?;
            set(&bn.bias, Tensor::randn_with(&[c], rng))?;
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn dscnn_batch_norm_relu6_dropout_and_adaptive_pooling_match_in_eval_mode() {
    let mut rng = Rng::seed_from(21);
    // The zoo's DS-CNN: BatchNorm after every convolution (folded), depthwise convolutions,
    // global average pooling.
    let net = tinycnn_models::dscnn();
    randomize_batch_norms(&net, &mut rng);
    net.eval();
    check(&net, &[1, 28, 28], &[1, 3, 33]);
    // A batch norm with nothing to fold into (after pooling, after an activation), ReLU6,
    // Dropout, an adaptive pooling with 2x2 windows, a batch norm without affine parameters.
    let net = Sequential::new()
        .append(BatchNorm2d::new(2))
        .append(conv(Conv2dParams::new(2, 4, (3, 3)).with_padding((1, 1))))
        .append(ReLU6)
        .append(BatchNorm2d::new(4))
        .append(MaxPool2d::new(2).stride(2))
        .append(BatchNorm2d::new(4).affine(false))
        .append(Dropout::new(0.3).unwrap())
        .append(AdaptiveAvgPool2d::new(2))
        .append(Flatten::new())
        .append(Linear::new(16, 3));
    randomize_batch_norms(&net, &mut rng);
    net.eval();
    check(&net, &[2, 8, 8], &[1, 5, 40]);
}

#[test]
fn same_values_on_one_and_two_threads() {
    let net = lenet(true);
    let x = Tensor::randn_with(&[130, 1, 28, 28], &mut Rng::seed_from(9));
    let mut fast = Inference::new(&net, &[1, 28, 28]).unwrap();
    tinycnn::set_num_threads(1).unwrap();
    let one = fast.run(&x).unwrap();
    tinycnn::set_num_threads(2).unwrap();
    let two = fast.run(&x).unwrap();
    assert!(one.allclose(&two, 1e-6, 1e-7));
}

#[test]
fn strides_groups_dilation_padding_tanh_and_nested_blocks() {
    let block = Sequential::new()
        .append(conv(
            Conv2dParams::new(4, 8, (3, 3))
                .with_padding((1, 2))
                .with_stride((2, 1))
                .with_groups(2),
        ))
        .append(Tanh)
        .append(Identity);
    let net = Sequential::new()
        .append(conv(Conv2dParams::new(3, 4, (3, 2)).with_dilation((2, 1))))
        .append(ReLU)
        .append(block)
        .append(MaxPool2d::new(3).stride(2).padding(1))
        .append(Sigmoid)
        .append(AvgPool2d::new(2))
        .append(Flatten::new())
        .append(Linear::new(8 * 4, 5))
        .append(Tanh);
    check(&net, &[3, 13, 17], &[1, 5, 33]);
}

#[test]
fn linear_on_the_last_dimension_and_partial_flatten() {
    // PyTorch's Linear applies to the last dim of any input; Flatten(2, 3) keeps channels.
    let net = Sequential::new()
        .append(Flatten {
            start_dim: 2,
            end_dim: 3,
        })
        .append(Linear::new(20, 6))
        .append(ReLU)
        .append(Linear::new(6, 3));
    check(&net, &[2, 4, 5], &[1, 9]);
}

#[test]
fn nan_in_the_input_reaches_the_output_as_in_the_autograd_forward() {
    let net = lenet(true);
    let mut x = Tensor::randn_with(&[2, 1, 28, 28], &mut Rng::seed_from(1)).to_vec();
    x[14 * 28 + 14] = f32::NAN;
    let x = Tensor::from_vec(x, &[2, 1, 28, 28]).unwrap();
    let got = Inference::new(&net, &[1, 28, 28]).unwrap().run(&x).unwrap();
    let want = no_grad(|| net.forward(&x)).unwrap();
    let (g, w) = (got.to_vec(), want.to_vec());
    for (a, b) in g.iter().zip(&w) {
        assert_eq!(a.is_nan(), b.is_nan());
    }
}

#[test]
fn unsupported_layers_and_wrong_shapes_are_named_errors() {
    let net = Sequential::new()
        .append(Linear::new(4, 2))
        .append(Softmax { dim: 1 });
    let e = Inference::new(&net, &[4]).err().unwrap().to_string();
    assert!(e.contains("layer 1 (Softmax)"), "{e}");

    let net = lenet(false);
    let e = Inference::new(&net, &[3, 28, 28])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("layer 0 (Conv2d)") && e.contains("input channels"),
        "{e}"
    );

    let mut fast = Inference::new(&net, &[1, 28, 28]).unwrap();
    let e = fast
        .run(&Tensor::zeros(&[2, 1, 27, 28]))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("expected [batch, [1, 28, 28]]"), "{e}");

    let net = Sequential::new().append(Flatten {
        start_dim: 0,
        end_dim: 1,
    });
    let e = Inference::new(&net, &[4]).err().unwrap().to_string();
    assert!(e.contains("batch dimension"), "{e}");
}

#[test]
fn empty_batch_gives_an_empty_output() {
    let mut fast = Inference::new(&lenet(true), &[1, 28, 28]).unwrap();
    let y = fast.run(&Tensor::zeros(&[0, 1, 28, 28])).unwrap();
    assert_eq!(y.shape(), &[0, 10]);
}

#[test]
fn follows_weight_updates_made_after_compiling() {
    let net = Sequential::new().append(Linear::new(3, 2));
    let mut fast = Inference::new(&net, &[3]).unwrap();
    let lin = net.get::<Linear>(0).unwrap();
    lin.weight.detach().fill_(1.0).unwrap();
    lin.bias.as_ref().unwrap().detach().fill_(0.5).unwrap();
    let y = fast.run(&Tensor::new([[1.0, 2.0, 3.0]])).unwrap();
    assert_eq!(y.to_vec(), [6.5, 6.5]);
}
