//! Every test here runs twice: on the CPU (`cpu::name`) and on the emulated CUDA device
//! (`cuda_emu::name`: tinycnn-cuda's kernels compiled for the host, behind the same
//! allocation, launch and dispatch code as a GPU). Expected values come from the naive
//! reference loops of `tinycnn_kernels::reference` or from hand computation.

use tinycnn::data::ResidentData;
use tinycnn::nn::{Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential};
use tinycnn::optim::{Adam, Optimizer, Sgd};
use tinycnn::{Conv2dParams, Device, Labels, Pool2dParams, Rng, Tensor};
use tinycnn_kernels::{reference as r, Conv2dShape, Pool2dShape};

macro_rules! device_tests {
    ($($name:ident($dev:ident) $body:block)*) => {
        mod cpu {
            use super::*;
            $(#[test] fn $name() { let $dev = Device::Cpu; $body })*
        }
        mod cuda_emu {
            use super::*;
            $(#[test] fn $name() {
                tinycnn::cuda::emulate(true);
                let $dev = Device::Cuda(0);
                $body
            })*
        }
    };
}

fn rand(shape: &[usize], seed: u64) -> Vec<f32> {
    Tensor::randn_with(shape, &mut Rng::seed_from(seed)).to_vec()
}

/// A leaf on `dev` that requires grad.
fn param(data: &[f32], shape: &[usize], dev: Device) -> Tensor {
    let t = Tensor::from_vec(data.to_vec(), shape).unwrap();
    t.to(&dev).unwrap().detach().requires_grad_(true).unwrap()
}

fn on(data: &[f32], shape: &[usize], dev: Device) -> Tensor {
    Tensor::from_vec(data.to_vec(), shape)
        .unwrap()
        .to(&dev)
        .unwrap()
}

#[track_caller]
fn close(got: &Tensor, want: &[f32], tol: f32) {
    let g = got.to_host().unwrap();
    assert_eq!(g.len(), want.len());
    for (i, (a, b)) in g.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "element {i}: {a} vs {b}"
        );
    }
}

fn grad_of(t: &Tensor) -> Tensor {
    t.grad().expect("a gradient")
}

device_tests! {
    tensors_move_and_keep_their_values(dev) {
        let x = on(&[1.0, -2.0, 3.5], &[3], dev);
        assert_eq!(x.device(), dev);
        assert_eq!(x.to_host().unwrap(), [1.0, -2.0, 3.5]);
        assert_eq!(x.to(&Device::Cpu).unwrap().to_vec(), [1.0, -2.0, 3.5]);
    }

    gradients_flow_back_through_to(dev) {
        let w = Tensor::new([1.0, 2.0]).requires_grad_(true).unwrap();
        let y = w.to(&dev).unwrap().mul_scalar(3.0).sum_all();
        y.backward().unwrap();
        let g = grad_of(&w);
        assert_eq!(g.device(), Device::Cpu);
        assert_eq!(g.to_vec(), [3.0, 3.0]);
    }

    add_sub_and_their_gradients(dev) {
        let a = param(&[1.0, 2.0, 3.0], &[3], dev);
        let b = param(&[0.5, -1.0, 4.0], &[3], dev);
        let y = a.add(&b).unwrap().sub(&b.mul_scalar(2.0)).unwrap();
        close(&y, &[0.5, 3.0, -1.0], 0.0);
        y.sum_all().backward().unwrap();
        assert_eq!(grad_of(&a).device(), dev);
        close(&grad_of(&a), &[1.0, 1.0, 1.0], 0.0);
        close(&grad_of(&b), &[-1.0, -1.0, -1.0], 0.0);
    }

    activations_forward_and_backward(dev) {
        let xs = [-2.0, -0.5, 0.0, 0.5, 2.0, f32::NAN];
        for act in ["relu", "sigmoid", "tanh"] {
            let x = param(&xs, &[6], dev);
            let y = match act {
                "relu" => x.relu(),
                "sigmoid" => x.sigmoid(),
                _ => x.tanh(),
            }
            .unwrap();
            let mut want = [0.0; 6];
            let mut gwant = [0.0; 6];
            let ones = [1.0; 6];
            match act {
                "relu" => {
                    r::relu(&xs, &mut want).unwrap();
                    r::relu_backward(&xs, &ones, &mut gwant).unwrap();
                }
                "sigmoid" => {
                    r::sigmoid(&xs, &mut want).unwrap();
                    r::sigmoid_backward(&want, &ones, &mut gwant).unwrap();
                }
                _ => {
                    r::tanh(&xs, &mut want).unwrap();
                    r::tanh_backward(&want, &ones, &mut gwant).unwrap();
                }
            }
            let got = y.to_host().unwrap();
            for (a, b) in got.iter().zip(&want) {
                assert!(a.is_nan() == b.is_nan() && (a.is_nan() || (a - b).abs() < 1e-6), "{act}");
            }
            y.sum_all().backward().unwrap();
            let g = grad_of(&x).to_host().unwrap();
            for (a, b) in g.iter().zip(&gwant) {
                assert!(a.is_nan() == b.is_nan() && (a.is_nan() || (a - b).abs() < 1e-6), "{act} grad");
            }
        }
    }

    add_scalar_and_copy_stay_on_the_device(dev) {
        let x = param(&[1.0, -2.0, 0.5], &[3], dev);
        let y = x.add_scalar(2.5);
        assert_eq!(y.device(), dev);
        close(&y, &[3.5, 0.5, 3.0], 0.0);
        y.mul(&y).unwrap().sum_all().backward().unwrap();
        close(&grad_of(&x), &[7.0, 1.0, 6.0], 0.0);
        // copy_ shares the source's buffer; a later write to either leaves the other alone.
        let a = on(&[0.0; 3], &[3], dev);
        let b = on(&[4.0, 5.0, 6.0], &[3], dev);
        a.copy_(&b).unwrap();
        assert_eq!(a.device(), dev);
        b.fill_(1.0).unwrap();
        close(&a, &[4.0, 5.0, 6.0], 0.0);
        close(&b, &[1.0; 3], 0.0);
        a.copy_(&Tensor::new([7.0, 8.0, 9.0])).unwrap();
        assert_eq!(a.device(), dev);
        close(&a, &[7.0, 8.0, 9.0], 0.0);
    }

    relu6_forward_and_backward(dev) {
        // By hand: the clamp keeps NaN and -0.0; no gradient at the kinks 0 and 6.
        let xs = [-1.0, -0.0, 0.0, 3.0, 6.0, 7.5, f32::NAN, 5.5];
        let x = param(&xs, &[8], dev);
        let y = x.relu6().unwrap();
        assert_eq!(y.device(), dev);
        let got = y.to_host().unwrap();
        let want = [0.0, -0.0, 0.0, 3.0, 6.0, 6.0, f32::NAN, 5.5];
        for (a, b) in got.iter().zip(&want) {
            assert!(a.is_nan() == b.is_nan() && (a.is_nan() || a.to_bits() == b.to_bits()), "{got:?}");
        }
        let gy = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        y.backward_with(&on(&gy, &[8], dev)).unwrap();
        close(&grad_of(&x), &[0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 7.0, 8.0], 0.0);
        // Random values over both kinks, against the naive reference.
        let xs: Vec<f32> = rand(&[3, 700], 40).iter().map(|v| 4.0 * v + 3.0).collect();
        let gy = rand(&[3, 700], 41);
        let x = param(&xs, &[3, 700], dev);
        let y = x.relu6().unwrap();
        let (mut want, mut gwant) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        r::relu6(&xs, &mut want).unwrap();
        r::relu6_backward(&xs, &gy, &mut gwant).unwrap();
        close(&y, &want, 0.0);
        y.backward_with(&on(&gy, &[3, 700], dev)).unwrap();
        close(&grad_of(&x), &gwant, 0.0);
    }

    batch_norm_training_by_hand(dev) {
        // One channel, values 1, 3 | 5, 7: mean 4, biased variance 5, unbiased 20 / 3.
        let x = param(&[1.0, 3.0, 5.0, 7.0], &[2, 1, 2], dev);
        let w = param(&[2.0], &[1], dev);
        let b = param(&[1.0], &[1], dev);
        let rm = on(&[0.5], &[1], dev);
        let rv = on(&[1.0], &[1], dev);
        let y = x.batch_norm(Some(&rm), Some(&rv), Some(&w), Some(&b), true, 0.1, 0.0).unwrap();
        assert_eq!(y.device(), dev);
        let s = 5.0f32.sqrt();
        close(&y, &[1.0 - 6.0 / s, 1.0 - 2.0 / s, 1.0 + 2.0 / s, 1.0 + 6.0 / s], 1e-6);
        // running = 0.9 * old + 0.1 * batch statistic.
        close(&rm, &[0.9 * 0.5 + 0.4], 1e-6);
        close(&rv, &[0.9 + 0.1 * 20.0 / 3.0], 1e-6);
        assert_eq!(rm.device(), dev);
        // d(sum y)/dx is 0 (the normalized values always sum to 0); dweight = sum of the
        // normalized values = 0; dbias = 4.
        y.sum_all().backward().unwrap();
        close(&grad_of(&x), &[0.0; 4], 1e-6);
        close(&grad_of(&w), &[0.0], 1e-6);
        close(&grad_of(&b), &[4.0], 0.0);
    }

    batch_norm_matches_reference(dev) {
        use tinycnn_kernels::{BatchNormGrads, BatchNormShape, BatchNormStats};
        let (n, c, hw) = (4, 3, 25);
        let s = BatchNormShape::new(n, c, hw);
        let xv: Vec<f32> = rand(&[n, c, 5, 5], 42).iter().map(|v| 2.0 * v + 1.0).collect();
        let (wv, bv, gy) = (rand(&[c], 43), rand(&[c], 44), rand(&[n, c, 5, 5], 45));
        let (rm0, rv0) = (vec![0.1, -0.2, 0.3], vec![1.5, 0.5, 2.0]);
        for training in [true, false] {
            let x = param(&xv, &[n, c, 5, 5], dev);
            let w = param(&wv, &[c], dev);
            let b = param(&bv, &[c], dev);
            let (rm, rv) = (on(&rm0, &[c], dev), on(&rv0, &[c], dev));
            let y = x.batch_norm(Some(&rm), Some(&rv), Some(&w), Some(&b), training, 0.25, 1e-5).unwrap();
            let (mut mean, mut var) = (rm0.clone(), rv0.clone());
            if training {
                r::batch_norm_stats(&s, &xv, &mut mean, &mut var).unwrap();
            }
            let stats = BatchNormStats { mean: &mean, var: &var, eps: 1e-5 };
            let mut want = vec![0.0; xv.len()];
            r::batch_norm_forward(&s, &xv, &stats, Some(&wv), Some(&bv), &mut want).unwrap();
            close(&y, &want, 1e-5);
            let (want_rm, want_rv): (Vec<f32>, Vec<f32>) = if training {
                let unbias = (n * hw) as f32 / (n * hw - 1) as f32;
                (
                    rm0.iter().zip(&mean).map(|(o, m)| 0.75 * o + 0.25 * m).collect(),
                    rv0.iter().zip(&var).map(|(o, v)| 0.75 * o + 0.25 * v * unbias).collect(),
                )
            } else {
                (rm0.clone(), rv0.clone())
            };
            close(&rm, &want_rm, 1e-5);
            close(&rv, &want_rv, 1e-5);
            y.backward_with(&on(&gy, y.shape(), dev)).unwrap();
            let (mut gx, mut gw, mut gb) = (vec![0.0; xv.len()], vec![0.0; c], vec![0.0; c]);
            let grads = BatchNormGrads { x: Some(&mut gx), weight: Some(&mut gw), bias: Some(&mut gb) };
            r::batch_norm_backward(&s, &xv, &gy, &stats, Some(&wv), training, grads).unwrap();
            close(&grad_of(&x), &gx, 1e-4);
            close(&grad_of(&w), &gw, 1e-4);
            close(&grad_of(&b), &gb, 1e-4);
            assert_eq!(grad_of(&w).device(), dev);
        }
        // Without weight, bias and running statistics; [N, C] input.
        let xv = rand(&[6, 2], 46);
        let x = param(&xv, &[6, 2], dev);
        let y = x.batch_norm(None, None, None, None, false, 0.1, 1e-3).unwrap();
        let s = BatchNormShape::new(6, 2, 1);
        let (mut mean, mut var) = (vec![0.0; 2], vec![0.0; 2]);
        r::batch_norm_stats(&s, &xv, &mut mean, &mut var).unwrap();
        let stats = BatchNormStats { mean: &mean, var: &var, eps: 1e-3 };
        let mut want = vec![0.0; 12];
        r::batch_norm_forward(&s, &xv, &stats, None, None, &mut want).unwrap();
        close(&y, &want, 1e-5);
        let gy = rand(&[6, 2], 47);
        y.backward_with(&on(&gy, &[6, 2], dev)).unwrap();
        let mut gx = vec![0.0; 12];
        let grads = BatchNormGrads { x: Some(&mut gx), ..Default::default() };
        r::batch_norm_backward(&s, &xv, &gy, &stats, None, true, grads).unwrap();
        close(&grad_of(&x), &gx, 1e-4);
    }

    adaptive_avg_pool_forward_and_backward(dev) {
        use tinycnn_kernels::AdaptivePool2dShape;
        // By hand: 3x3 to 2x2 takes the four overlapping 2x2 windows.
        let x = param(&(0..9).map(|v| v as f32).collect::<Vec<_>>(), &[1, 1, 3, 3], dev);
        let y = x.adaptive_avg_pool2d((2, 2)).unwrap();
        assert_eq!(y.device(), dev);
        close(&y, &[2.0, 3.0, 5.0, 6.0], 0.0);
        y.sum_all().backward().unwrap();
        close(&grad_of(&x), &[0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25], 0.0);
        // Random: unequal windows, equal ones, global pooling and upsampling.
        for (i, (h, w, oh, ow)) in [(7, 5, 3, 2), (6, 4, 3, 2), (5, 5, 1, 1), (2, 3, 4, 5)].into_iter().enumerate() {
            let s = AdaptivePool2dShape::new(2, 3, (h, w), (oh, ow));
            let xv = rand(&[2, 3, h, w], 50 + i as u64);
            let x = param(&xv, &[2, 3, h, w], dev);
            let y = x.adaptive_avg_pool2d((oh, ow)).unwrap();
            let mut want = vec![0.0; 2 * 3 * oh * ow];
            r::adaptive_avg_pool2d(&s, &xv, &mut want).unwrap();
            close(&y, &want, 1e-6);
            let gy = rand(y.shape(), 60 + i as u64);
            y.backward_with(&on(&gy, y.shape(), dev)).unwrap();
            let mut gx = vec![0.0; xv.len()];
            r::adaptive_avg_pool2d_backward(&s, &gy, &mut gx).unwrap();
            close(&grad_of(&x), &gx, 1e-6);
        }
    }

    augmented_batches_match_the_host_transform(dev) {
        use tinycnn::data::{Augment, SampleTransform};
        // By hand (the SampleTransform example): padding 1, one row down, one column left,
        // then flipped.
        let image: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let data = ResidentData::new(&image, &[1, 1, 3, 3], &[0], &dev).unwrap();
        let order = data.order(&[0]).unwrap();
        let t = SampleTransform { dy: 1, dx: -1, flip: true };
        let (x, _) = data.batch_augmented(&order, 0, 1, &[t]).unwrap();
        assert_eq!(x.device(), dev);
        close(&x, &[5.0, 4.0, 0.0, 8.0, 7.0, 0.0, 0.0, 0.0, 0.0], 0.0);
        // A seeded epoch of crops and flips over 2-channel images, against SampleTransform::apply.
        let (n, c, h, w) = (7, 2, 5, 4);
        let images = rand(&[n, c, h, w], 70);
        let labels: Vec<u32> = (0..n as u32).collect();
        let data = ResidentData::new(&images, &[n, c, h, w], &labels, &dev).unwrap();
        let visit = [3usize, 0, 6, 1, 5, 2, 4];
        let order = data.order(&visit).unwrap();
        let aug = Augment { crop_padding: Some(2), flip: true, seed: 9 };
        let ts = aug.epoch_transforms(1, n);
        assert!(ts.iter().any(|t| t.flip) && ts.iter().any(|t| t.dx != 0));
        let (x, y) = data.batch_augmented(&order, 2, 4, &ts[2..6]).unwrap();
        let per = c * h * w;
        let mut want = vec![0.0; 4 * per];
        for (k, &i) in visit[2..6].iter().enumerate() {
            ts[2 + k].apply(&images[i * per..(i + 1) * per], [c, h, w], &mut want[k * per..(k + 1) * per]);
        }
        close(&x, &want, 0.0);
        assert_eq!(y.to_vec().unwrap(), [6, 1, 5, 2]);
    }

    dropout_is_the_same_on_every_device_for_a_seed(dev) {
        let xv = rand(&[4, 50], 80);
        let gy = rand(&[4, 50], 81);
        // The CPU result for this seed.
        tinycnn::manual_seed(3);
        let xc = param(&xv, &[4, 50], Device::Cpu);
        let yc = xc.dropout(0.3, true).unwrap();
        yc.backward_with(&Tensor::from_vec(gy.clone(), &[4, 50]).unwrap()).unwrap();
        let (want, gwant) = (yc.to_vec(), grad_of(&xc).to_vec());
        assert!(want.iter().zip(&xv).all(|(y, x)| *y == 0.0 || (y - x / 0.7).abs() < 1e-6));
        assert!(want.contains(&0.0) && want.iter().any(|&v| v != 0.0));
        tinycnn::manual_seed(3);
        let x = param(&xv, &[4, 50], dev);
        let y = x.dropout(0.3, true).unwrap();
        assert_eq!(y.device(), dev);
        close(&y, &want, 0.0);
        y.backward_with(&on(&gy, &[4, 50], dev)).unwrap();
        close(&grad_of(&x), &gwant, 0.0);
        close(&x.dropout(0.3, false).unwrap(), &xv, 0.0);
    }

    conv2d_forward_matches_reference(dev) {
        let p = Conv2dParams::new(3, 4, (3, 3)).with_padding((1, 1)).with_stride((2, 1));
        let s = Conv2dShape::new(p, 2, 7, 6);
        let (xv, wv, bv) = (rand(&[2, 3, 7, 6], 1), rand(&[4, 3, 3, 3], 2), rand(&[4], 3));
        let x = on(&xv, &[2, 3, 7, 6], dev);
        let w = on(&wv, &[4, 3, 3, 3], dev);
        let b = on(&bv, &[4], dev);
        let y = x.conv2d(&w, Some(&b), (2, 1), (1, 1), (1, 1), 1).unwrap();
        assert_eq!(y.device(), dev);
        let mut want = vec![0.0; s.output_len().unwrap()];
        r::conv2d(&s, &xv, &wv, Some(&bv), &mut want).unwrap();
        close(&y, &want, 1e-5);
    }

    conv2d_backward_matches_reference(dev) {
        let p = Conv2dParams::new(4, 6, (3, 3)).with_padding((1, 1)).with_groups(2);
        let s = Conv2dShape::new(p, 3, 5, 5);
        let (xv, wv, bv) = (rand(&[3, 4, 5, 5], 4), rand(&[6, 2, 3, 3], 5), rand(&[6], 6));
        let x = param(&xv, &[3, 4, 5, 5], dev);
        let w = param(&wv, &[6, 2, 3, 3], dev);
        let b = param(&bv, &[6], dev);
        let y = x.conv2d(&w, Some(&b), (1, 1), (1, 1), (1, 1), 2).unwrap();
        let gy = rand(y.shape(), 7);
        y.backward_with(&on(&gy, y.shape(), dev)).unwrap();
        let mut gx = vec![0.0; xv.len()];
        let mut gw = vec![0.0; wv.len()];
        let mut gb = vec![0.0; 6];
        r::conv2d_backward_input(&s, &gy, &wv, &mut gx).unwrap();
        r::conv2d_backward_weight(&s, &xv, &gy, &mut gw).unwrap();
        r::conv2d_backward_bias(&s, &gy, &mut gb).unwrap();
        close(&grad_of(&x), &gx, 1e-4);
        close(&grad_of(&w), &gw, 1e-4);
        close(&grad_of(&b), &gb, 1e-4);
        assert_eq!(grad_of(&w).device(), dev);
    }

    max_pool_forward_and_backward(dev) {
        let params = Pool2dParams::new(2).with_stride((2, 2));
        let s = Pool2dShape::new(params, 2, 3, 6, 4);
        let xv = rand(&[2, 3, 6, 4], 8);
        let x = param(&xv, &[2, 3, 6, 4], dev);
        let y = x.max_pool2d(params).unwrap();
        let mut want = vec![0.0; 2 * 3 * 3 * 2];
        let mut idx = vec![0u32; want.len()];
        r::max_pool2d(&s, &xv, &mut want, &mut idx).unwrap();
        close(&y, &want, 0.0);
        let gy = rand(y.shape(), 9);
        y.backward_with(&on(&gy, y.shape(), dev)).unwrap();
        let mut gx = vec![0.0; xv.len()];
        r::max_pool2d_backward(&s, &gy, &idx, &mut gx).unwrap();
        close(&grad_of(&x), &gx, 0.0);
    }

    avg_pool_forward_and_backward(dev) {
        let params = Pool2dParams::new(3).with_stride((2, 2)).with_padding((1, 1));
        let s = Pool2dShape::new(params, 1, 2, 5, 5);
        let xv = rand(&[1, 2, 5, 5], 10);
        let x = param(&xv, &[1, 2, 5, 5], dev);
        let y = x.avg_pool2d(params).unwrap();
        let mut want = vec![0.0; 2 * 3 * 3];
        r::avg_pool2d(&s, &xv, &mut want).unwrap();
        close(&y, &want, 1e-6);
        let gy = rand(y.shape(), 11);
        y.backward_with(&on(&gy, y.shape(), dev)).unwrap();
        let mut gx = vec![0.0; xv.len()];
        r::avg_pool2d_backward(&s, &gy, &mut gx).unwrap();
        close(&grad_of(&x), &gx, 1e-6);
    }

    linear_forward_and_backward(dev) {
        // y = x w^T + b by hand: x [2, 3], w [2, 3].
        let x = param(&[1.0, 2.0, 3.0, -1.0, 0.0, 2.0], &[2, 3], dev);
        let w = param(&[0.5, -1.0, 2.0, 1.0, 1.0, 1.0], &[2, 3], dev);
        let b = param(&[0.25, -0.5], &[2], dev);
        let y = x.linear(&w, Some(&b)).unwrap();
        close(&y, &[4.75, 5.5, 3.75, 0.5], 0.0);
        y.sum_all().backward().unwrap();
        // dx = ones w = column sums of w; dw = ones^T x = column sums of x; db = rows.
        close(&grad_of(&x), &[1.5, 0.0, 3.0, 1.5, 0.0, 3.0], 0.0);
        close(&grad_of(&w), &[0.0, 2.0, 5.0, 0.0, 2.0, 5.0], 0.0);
        close(&grad_of(&b), &[2.0, 2.0], 0.0);
    }

    cross_entropy_and_its_gradient(dev) {
        let lv = rand(&[4, 5], 12);
        let labels = [0u32, 4, 2, 2];
        let logits = param(&lv, &[4, 5], dev);
        let loss = logits.cross_entropy(&labels).unwrap();
        assert_eq!(loss.device(), dev);
        let want = r::cross_entropy(4, 5, &lv, &labels).unwrap();
        close(&loss, &[want], 1e-5);
        loss.backward().unwrap();
        let mut g = vec![0.0; 20];
        r::cross_entropy_backward(4, 5, &lv, &labels, 1.0, &mut g).unwrap();
        close(&grad_of(&logits), &g, 1e-5);
    }

    sum_and_mean(dev) {
        let x = param(&[1.0, 2.0, 3.0, 4.0], &[2, 2], dev);
        close(&x.sum_all(), &[10.0], 0.0);
        let m = x.mean_all();
        close(&m, &[2.5], 0.0);
        m.backward().unwrap();
        close(&grad_of(&x), &[0.25; 4], 0.0);
    }

    flatten_is_a_view_on_the_device(dev) {
        let x = param(&rand(&[2, 3, 2, 2], 13), &[2, 3, 2, 2], dev);
        let y = x.flatten(1, -1).unwrap();
        assert_eq!(y.shape(), &[2, 12]);
        assert_eq!(y.device(), dev);
        y.mul_scalar(2.0).sum_all().backward().unwrap();
        close(&grad_of(&x), &[2.0; 24], 0.0);
        assert_eq!(grad_of(&x).device(), dev);
        assert_eq!(grad_of(&x).shape(), &[2, 3, 2, 2]);
    }

    sgd_with_momentum_steps_like_the_reference(dev) {
        let w = param(&[1.0, -2.0, 0.5], &[3], dev);
        let cfg = tinycnn::optim::SgdConfig { momentum: 0.9, ..tinycnn::optim::SgdConfig::new(0.1) };
        let mut opt = Sgd::with_config(vec![w.clone()], cfg).unwrap();
        let mut want = vec![1.0, -2.0, 0.5];
        let mut buf = vec![0.0; 3];
        for step in 0..3 {
            opt.zero_grad();
            w.mul(&w).unwrap().sum_all().backward().unwrap(); // grad 2w
            opt.step().unwrap();
            let g: Vec<f32> = want.iter().map(|v| 2.0 * v).collect();
            r::sgd_step(&cfg, &mut want, &g, &mut buf, step == 0).unwrap();
        }
        assert_eq!(w.device(), dev);
        close(&w, &want, 1e-6);
    }

    adam_steps_like_the_reference(dev) {
        let w = param(&[1.0, -2.0, 0.5], &[3], dev);
        let cfg = tinycnn::optim::AdamConfig::new(0.01);
        let mut opt = Adam::with_config(vec![w.clone()], cfg).unwrap();
        let mut want = vec![1.0, -2.0, 0.5];
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        for step in 1..=3 {
            opt.zero_grad();
            w.mul(&w).unwrap().sum_all().backward().unwrap();
            opt.step().unwrap();
            let g: Vec<f32> = want.iter().map(|x| 2.0 * x).collect();
            r::adam_step(&cfg, step, &mut want, &g, &mut m, &mut v).unwrap();
        }
        close(&w, &want, 1e-5);
        let sd = opt.state_dict();
        assert_eq!(sd.get("state.0.step").unwrap().item().unwrap(), 3.0);
    }

    resident_data_gathers_batches_in_order(dev) {
        let images: Vec<f32> = (0..5 * 2 * 3).map(|v| v as f32).collect();
        let data = ResidentData::new(&images, &[5, 1, 2, 3], &[4, 3, 2, 1, 0], &dev).unwrap();
        assert_eq!(data.device(), dev);
        let order = data.order(&[2, 4, 0, 1, 3]).unwrap();
        let (x, y) = data.batch(&order, 1, 3).unwrap();
        assert_eq!(x.shape(), &[3, 1, 2, 3]);
        assert_eq!(x.device(), dev);
        let want: Vec<f32> = [4usize, 0, 1].iter().flat_map(|&i| (i * 6..i * 6 + 6).map(|v| v as f32)).collect();
        close(&x, &want, 0.0);
        assert_eq!(y.device(), dev);
        assert_eq!(y.to_vec().unwrap(), [0, 4, 3]);
        assert!(data.batch(&order, 4, 2).is_err());
        assert!(data.order(&[5]).is_err());
    }

    count_correct_and_cross_entropy_with_device_labels(dev) {
        let logits = param(&[2.0, 0.0, 0.0, 1.0, 3.0, 1.0, f32::NAN, 0.0], &[4, 2], dev);
        let labels = Labels::new(&[0, 1, 1, 0]).to(&dev).unwrap();
        // Rows 0 and 1 are right, row 2 is wrong, row 3's NaN is its maximum (index 0).
        let n = logits.count_correct(&labels).unwrap();
        assert_eq!(n.device(), dev);
        close(&n, &[3.0], 0.0);
        let lv = rand(&[3, 4], 16);
        let logits = param(&lv, &[3, 4], dev);
        let loss = logits.cross_entropy_labels(&Labels::new(&[3, 0, 2]).to(&dev).unwrap()).unwrap();
        close(&loss, &[r::cross_entropy(3, 4, &lv, &[3, 0, 2]).unwrap()], 1e-5);
        loss.backward().unwrap();
        let mut g = vec![0.0; 12];
        r::cross_entropy_backward(3, 4, &lv, &[3, 0, 2], 1.0, &mut g).unwrap();
        close(&grad_of(&logits), &g, 1e-5);
    }

    a_user_module_with_two_conv_blocks_trains(dev) {
        // Not LeNet: two conv blocks with ReLU and max-pooling, then a linear classifier,
        // trained on a fixed batch until it fits it; the loss must fall on every device.
        let net = Sequential::new()
            .append(Conv2d::with(Conv2dParams::new(1, 4, (3, 3)).with_padding((1, 1)), true).unwrap())
            .append(ReLU)
            .append(MaxPool2d::new(2))
            .append(Conv2d::with(Conv2dParams::new(4, 8, (3, 3)).with_padding((1, 1)), true).unwrap())
            .append(ReLU)
            .append(MaxPool2d::new(2))
            .append(Flatten::new())
            .append(Linear::new(8 * 2 * 2, 3));
        tinycnn::manual_seed(5);
        for p in net.parameters() {
            tinycnn::nn::init::normal_(&p, 0.0, 0.3).unwrap();
        }
        net.to(&dev).unwrap();
        assert!(net.parameters().iter().all(|p| p.device() == dev));
        let x = on(&rand(&[6, 1, 8, 8], 14), &[6, 1, 8, 8], dev);
        let labels = [0u32, 1, 2, 0, 1, 2];
        let mut opt = Sgd::new(net.parameters(), 0.1).unwrap();
        let mut losses = Vec::new();
        for _ in 0..30 {
            opt.zero_grad();
            let loss = net.forward(&x).unwrap().cross_entropy(&labels).unwrap();
            assert_eq!(loss.device(), dev);
            loss.backward().unwrap();
            opt.step().unwrap();
            losses.push(loss.item().unwrap());
        }
        assert!(losses[29] < 0.5 * losses[0], "{losses:?}");
    }
}

#[test]
fn mixing_devices_is_an_error_naming_both() {
    tinycnn::cuda::emulate(true);
    let a = on(&[1.0], &[1], Device::Cuda(0));
    let b = Tensor::new([1.0]);
    let e = a.mul(&b).unwrap_err().to_string();
    assert!(e.contains("cuda:0") && e.contains("cpu"), "{e}");
}

#[test]
fn emulated_and_cpu_training_agree() {
    // The same module, start and batches on both devices: the losses agree to float
    // rounding (the CPU result is itself pinned to the reference by the kernel tests).
    tinycnn::cuda::emulate(true);
    let run = |dev: Device| {
        let net = Sequential::new()
            .append(Conv2d::new(1, 3, 3).unwrap())
            .append(ReLU)
            .append(Flatten::new())
            .append(Linear::new(3 * 4 * 4, 2));
        tinycnn::manual_seed(11);
        for p in net.parameters() {
            tinycnn::nn::init::normal_(&p, 0.0, 0.2).unwrap();
        }
        net.to(&dev).unwrap();
        let x = on(&rand(&[4, 1, 6, 6], 15), &[4, 1, 6, 6], dev);
        let mut opt = Adam::new(net.parameters(), 0.01).unwrap();
        (0..5)
            .map(|_| {
                opt.zero_grad();
                let loss = net
                    .forward(&x)
                    .unwrap()
                    .cross_entropy(&[0, 1, 1, 0])
                    .unwrap();
                loss.backward().unwrap();
                opt.step().unwrap();
                loss.item().unwrap()
            })
            .collect::<Vec<f32>>()
    };
    let (cpu, cuda) = (run(Device::Cpu), run(Device::Cuda(0)));
    for (a, b) in cpu.iter().zip(&cuda) {
        assert!((a - b).abs() < 1e-4, "{cpu:?} vs {cuda:?}");
    }
}

#[test]
fn a_batch_norm_network_trains_the_same_on_cpu_and_emulated_device() {
    // BatchNorm2d, ReLU6, global average pooling, dropout and a residual block, each with
    // its device kernels on the emulated device. Losses, running statistics and the
    // eval-mode output must agree with the CPU run (the same seed draws the same dropout
    // masks on both).
    use tinycnn::nn::{AdaptiveAvgPool2d, BatchNorm2d, Dropout, ReLU6, Residual};
    tinycnn::cuda::emulate(true);
    let run = |dev: Device| {
        tinycnn::manual_seed(12);
        // Convolutions before a batch norm have no bias: its gradient is zero up to
        // rounding, which Adam would blow up into full steps of noise.
        let conv = |i, o, k| Conv2d::with(Conv2dParams::new(i, o, (k, k)), false).unwrap();
        let net = Sequential::new()
            .append(conv(1, 4, 3))
            .append(BatchNorm2d::new(4))
            .append(ReLU6)
            .append(Residual::new(
                Sequential::new()
                    .append(conv(4, 4, 1))
                    .append(BatchNorm2d::new(4).momentum(None)),
            ))
            .append(AdaptiveAvgPool2d::new(1))
            .append(Flatten::new())
            .append(Dropout::new(0.25).unwrap())
            .append(Linear::new(4, 2));
        net.to(&dev).unwrap();
        let x = on(&rand(&[6, 1, 6, 6], 16), &[6, 1, 6, 6], dev);
        let mut opt = Adam::new(net.parameters(), 0.05).unwrap();
        let losses: Vec<f32> = (0..6)
            .map(|_| {
                opt.zero_grad();
                let loss = net
                    .forward(&x)
                    .unwrap()
                    .cross_entropy(&[0, 1, 1, 0, 1, 0])
                    .unwrap();
                loss.backward().unwrap();
                opt.step().unwrap();
                loss.item().unwrap()
            })
            .collect();
        net.eval();
        let y = net.forward(&x).unwrap();
        assert_eq!(y.device(), dev);
        let state: Vec<(String, Vec<f32>)> = net
            .state_dict()
            .iter()
            .map(|(k, t)| {
                assert_eq!(t.device(), dev, "{k}");
                (k.to_string(), t.to_host().unwrap())
            })
            .collect();
        (losses, y.to_host().unwrap(), state)
    };
    let (cpu, cuda) = (run(Device::Cpu), run(Device::Cuda(0)));
    for (a, b) in cpu.0.iter().zip(&cuda.0) {
        assert!((a - b).abs() < 1e-4, "losses {:?} vs {:?}", cpu.0, cuda.0);
    }
    assert!(cpu.0[5] < cpu.0[0], "the network learns: {:?}", cpu.0);
    for ((k, a), (_, b)) in cpu.2.iter().zip(&cuda.2) {
        for (u, v) in a.iter().zip(b) {
            assert!(
                (u - v).abs() < 1e-3 * (1.0 + u.abs()),
                "{k}: {a:?} vs {b:?}"
            );
        }
    }
    for (a, b) in cpu.1.iter().zip(&cuda.1) {
        assert!(
            (a - b).abs() < 1e-3,
            "eval outputs {:?} vs {:?}",
            cpu.1,
            cuda.1
        );
    }
    let tracked = cpu
        .2
        .iter()
        .find(|(k, _)| k == "1.num_batches_tracked")
        .unwrap();
    assert_eq!(tracked.1, vec![6.0]);
}

#[test]
fn the_cpu_inference_path_refuses_device_tensors() {
    tinycnn::cuda::emulate(true);
    let net = Sequential::new().append(Linear::new(3, 2));
    let mut lean = tinycnn::Inference::new(&net, &[3]).unwrap();
    let x = on(&[1.0, 2.0, 3.0], &[1, 3], Device::Cuda(0));
    let e = lean.run(&x).unwrap_err().to_string();
    assert!(e.contains("cuda:0"), "{e}");
    net.to(&Device::Cuda(0)).unwrap();
    let e = lean
        .run(&Tensor::new([[1.0, 2.0, 3.0]]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("parameters") && e.contains("cuda:0"), "{e}");
}
