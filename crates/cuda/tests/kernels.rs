//! Every kernel against the CPU reference of tinycnn-kernels on random inputs (max-norm
//! relative error < 1e-4), through the public wrappers of `CudaDevice`. Each check runs
//! twice: `emu::<name>` on the emulated device (always), `gpu::<name>` on GPU 0, which
//! prints "skipping: no CUDA driver/GPU" and passes when `CudaDevice::new(0)` fails.

mod common;

use common::{assert_close, Rng};
use tinycnn_cuda::{launch, CudaDevice, CudaError};

/// One `#[test]` per check and device: `emu::<check>` and `gpu::<check>`.
macro_rules! on_every_device {
    ($($check:ident),* $(,)?) => {
        mod emu {
            $( #[test] fn $check() { super::$check(&super::common::emu_device()) } )*
        }
        mod gpu {
            $(
                #[test]
                fn $check() {
                    if let Some(dev) = super::common::device() {
                        super::$check(&dev)
                    }
                }
            )*
        }
    };
}

on_every_device!(
    sgemm_all_transposes_strides_alpha_beta,
    conv2d_forward_and_backward_match_reference,
    conv2d_weight_gradient_split_k_at_lenet_batch,
    pooling_matches_reference,
    activations_match_reference,
    bias_add_and_reduction_match_reference,
    softmax_losses_argmax_and_sum_match_reference,
    optimizers_match_reference_over_steps,
    wrong_buffers_are_refused_before_launch,
    vector_ops_match_reference,
    gather_batch_copies_the_permuted_rows,
    allocator_reuses_freed_blocks,
    shape_errors_name_kernel_and_shapes,
    views_and_copies_round_trip,
    sync_launches_still_compute,
    batch_norm_matches_reference,
    adaptive_pooling_matches_reference,
    augment_batch_applies_the_index_map,
);
use tinycnn_kernels::{
    reference, AdamConfig, AdaptivePool2dShape, BatchNormGrads, BatchNormShape, BatchNormStats,
    Conv2dParams, Conv2dShape, GemmShape, KernelError, Pool2dParams, Pool2dShape, SgdConfig,
    Transpose,
};

const TOL: f32 = 1e-4;

fn sgemm_all_transposes_strides_alpha_beta(dev: &CudaDevice) {
    let mut rng = Rng(1);
    for &(m, n, k) in &[
        (1, 1, 1),
        (7, 5, 3),
        (64, 64, 16),
        (65, 130, 33),
        (256, 120, 400),
        (10, 300, 1000),
    ] {
        for ta in [Transpose::No, Transpose::Yes] {
            for tb in [Transpose::No, Transpose::Yes] {
                for &(alpha, beta, pad) in &[(1.0f32, 0.0f32, 0usize), (0.5, -1.5, 3)] {
                    let g0 = GemmShape::new(m, n, k).with_transpose(ta, tb);
                    let g = g0.with_ld(g0.lda + pad, g0.ldb + pad, g0.ldc + pad);
                    let (ar, _) = g.a_stored();
                    let (br, _) = g.b_stored();
                    let a = rng.vec(ar * g.lda);
                    let b = rng.vec(br * g.ldb);
                    let c0 = rng.vec(m * g.ldc);
                    let mut want = c0.clone();
                    reference::sgemm(&g, alpha, &a, &b, beta, &mut want).unwrap();
                    let (da, db) = (dev.upload(&a).unwrap(), dev.upload(&b).unwrap());
                    let mut dc = dev.upload(&c0).unwrap();
                    dev.sgemm(&g, alpha, &da.view(), &db.view(), beta, &mut dc.view_mut())
                        .unwrap();
                    assert_close(
                        &format!("sgemm {m}x{n}x{k} {ta:?}{tb:?} beta {beta}"),
                        &dev.download(&dc).unwrap(),
                        &want,
                        TOL,
                    );
                }
            }
        }
    }
}

fn conv_cases() -> Vec<(Conv2dShape, bool)> {
    let p = Conv2dParams::new;
    vec![
        (
            Conv2dShape::new(p(1, 6, (5, 5)).with_padding((2, 2)), 8, 28, 28),
            true,
        ),
        (Conv2dShape::new(p(6, 16, (5, 5)), 8, 14, 14), true),
        (
            Conv2dShape::new(
                p(3, 4, (3, 3)).with_stride((2, 2)).with_padding((1, 1)),
                3,
                9,
                10,
            ),
            false,
        ),
        (
            Conv2dShape::new(
                p(4, 6, (3, 2))
                    .with_stride((2, 1))
                    .with_padding((1, 0))
                    .with_dilation((2, 3))
                    .with_groups(2),
                3,
                11,
                9,
            ),
            true,
        ),
        (
            Conv2dShape::new(p(8, 8, (3, 3)).with_padding((1, 1)).with_groups(8), 2, 7, 7),
            true,
        ),
        (Conv2dShape::new(p(32, 80, (1, 1)), 2, 5, 5), true),
        (
            Conv2dShape::new(
                p(3, 70, (3, 3)).with_dilation((2, 2)).with_stride((3, 2)),
                2,
                12,
                13,
            ),
            true,
        ),
    ]
}

fn conv2d_forward_and_backward_match_reference(dev: &CudaDevice) {
    let mut rng = Rng(2);
    for (s, with_bias) in conv_cases() {
        let (xl, wl, yl) = (
            s.input_len().unwrap(),
            s.weight_len(),
            s.output_len().unwrap(),
        );
        let (x, w, b, gy) = (
            rng.vec(xl),
            rng.vec(wl),
            rng.vec(s.params.out_channels),
            rng.vec(yl),
        );
        let (dx, dw, db, dgy) = (
            dev.upload(&x).unwrap(),
            dev.upload(&w).unwrap(),
            dev.upload(&b).unwrap(),
            dev.upload(&gy).unwrap(),
        );
        let name = format!("{s:?}");

        let mut want = vec![0.0; yl];
        reference::conv2d(&s, &x, &w, with_bias.then_some(&b[..]), &mut want).unwrap();
        let mut y = dev.zeros(yl).unwrap();
        dev.conv2d_forward(
            &s,
            &dx.view(),
            &dw.view(),
            with_bias.then_some(&db),
            &mut y.view_mut(),
        )
        .unwrap();
        assert_close(
            &format!("forward {name}"),
            &dev.download(&y).unwrap(),
            &want,
            TOL,
        );

        let mut want = vec![0.0; xl];
        reference::conv2d_backward_input(&s, &gy, &w, &mut want).unwrap();
        let mut gx = dev.upload(&rng.vec(xl)).unwrap(); // overwritten, not accumulated
        dev.conv2d_backward_input(&s, &dgy.view(), &dw.view(), &mut gx.view_mut())
            .unwrap();
        assert_close(
            &format!("backward input {name}"),
            &dev.download(&gx).unwrap(),
            &want,
            TOL,
        );

        let mut want = vec![0.0; wl];
        reference::conv2d_backward_weight(&s, &x, &gy, &mut want).unwrap();
        let mut gw = dev.upload(&rng.vec(wl)).unwrap();
        dev.conv2d_backward_weight(&s, &dx.view(), &dgy.view(), &mut gw.view_mut(), None)
            .unwrap();
        assert_close(
            &format!("backward weight {name}"),
            &dev.download(&gw).unwrap(),
            &want,
            TOL,
        );

        let mut want = vec![0.0; s.params.out_channels];
        reference::conv2d_backward_bias(&s, &gy, &mut want).unwrap();
        let mut gb = dev.zeros(want.len()).unwrap();
        dev.conv2d_backward_bias(&s, &dgy.view(), &mut gb.view_mut())
            .unwrap();
        assert_close(
            &format!("backward bias {name}"),
            &dev.download(&gb).unwrap(),
            &want,
            TOL,
        );
    }
}

fn conv2d_weight_gradient_split_k_at_lenet_batch(dev: &CudaDevice) {
    let mut rng = Rng(3);
    let s = Conv2dShape::new(
        Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
        256,
        28,
        28,
    );
    assert!(launch::conv2d_backward_weight(&s).unwrap().splits > 1);
    let (x, gy) = (
        rng.vec(s.input_len().unwrap()),
        rng.vec(s.output_len().unwrap()),
    );
    let mut want = vec![0.0; s.weight_len()];
    reference::conv2d_backward_weight(&s, &x, &gy, &mut want).unwrap();
    let (dx, dgy) = (dev.upload(&x).unwrap(), dev.upload(&gy).unwrap());
    let mut ws = dev
        .zeros(launch::conv2d_backward_weight_workspace_len(&s).unwrap())
        .unwrap();
    let mut gw = dev.zeros(s.weight_len()).unwrap();
    dev.conv2d_backward_weight(
        &s,
        &dx.view(),
        &dgy.view(),
        &mut gw.view_mut(),
        Some(&mut ws.view_mut()),
    )
    .unwrap();
    // 200704 random terms of both signs per weight: the sum is small next to its terms, so
    // compare against the sum of magnitudes instead of the result's own size.
    let got = dev.download(&gw).unwrap();
    let mut mag = vec![0.0; s.weight_len()];
    let ax: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    let agy: Vec<f32> = gy.iter().map(|v| v.abs()).collect();
    reference::conv2d_backward_weight(&s, &ax, &agy, &mut mag).unwrap();
    for i in 0..got.len() {
        assert!(
            (got[i] - want[i]).abs() <= TOL * mag[i],
            "weight {i}: {} vs {} (terms {})",
            got[i],
            want[i],
            mag[i]
        );
    }
}

fn pool_cases() -> Vec<Pool2dShape> {
    vec![
        Pool2dShape::new(Pool2dParams::new(2), 4, 6, 28, 28),
        Pool2dShape::new(
            Pool2dParams::new(3)
                .with_stride((2, 2))
                .with_padding((1, 1)),
            2,
            3,
            9,
            10,
        ),
        Pool2dShape::new(
            Pool2dParams::new(3)
                .with_stride((1, 1))
                .with_padding((1, 1))
                .with_count_include_pad(false),
            2,
            3,
            7,
            5,
        ),
        Pool2dShape::new(
            Pool2dParams::with_kernel((2, 3)).with_stride((1, 2)),
            1,
            2,
            5,
            8,
        ),
        Pool2dShape::new(Pool2dParams::new(2), 1, 1, 5, 5), // odd size: last row/column dropped
    ]
}

fn pooling_matches_reference(dev: &CudaDevice) {
    let mut rng = Rng(4);
    for s in pool_cases() {
        let (xl, yl) = (s.input_len().unwrap(), s.output_len().unwrap());
        let mut x = rng.vec(xl);
        x[xl / 2] = f32::NAN; // first NaN in a window wins, as in the reference
        let gy = rng.vec(yl);
        let (dx, dgy) = (dev.upload(&x).unwrap(), dev.upload(&gy).unwrap());
        let name = format!("{s:?}");

        let (mut want, mut want_idx) = (vec![0.0; yl], vec![0u32; yl]);
        reference::max_pool2d(&s, &x, &mut want, &mut want_idx).unwrap();
        let mut y = dev.zeros(yl).unwrap();
        let mut idx = dev.alloc_zeros::<u32>(yl).unwrap();
        dev.max_pool2d_forward(&s, &dx.view(), &mut y.view_mut(), &mut idx.view_mut())
            .unwrap();
        assert_close(
            &format!("max forward {name}"),
            &dev.download(&y).unwrap(),
            &want,
            TOL,
        );
        assert_eq!(
            dev.download_view(&idx.view()).unwrap(),
            want_idx,
            "argmax {name}"
        );

        let mut want = vec![0.0; xl];
        reference::max_pool2d_backward(&s, &gy, &want_idx, &mut want).unwrap();
        let mut gx = dev.upload(&rng.vec(xl)).unwrap();
        dev.max_pool2d_backward(&s, &dgy.view(), &idx.view(), &mut gx.view_mut())
            .unwrap();
        assert_close(
            &format!("max backward {name}"),
            &dev.download(&gx).unwrap(),
            &want,
            TOL,
        );

        let x = rng.vec(xl);
        let dx = dev.upload(&x).unwrap();
        let mut want = vec![0.0; yl];
        reference::avg_pool2d(&s, &x, &mut want).unwrap();
        dev.avg_pool2d_forward(&s, &dx.view(), &mut y.view_mut())
            .unwrap();
        assert_close(
            &format!("avg forward {name}"),
            &dev.download(&y).unwrap(),
            &want,
            TOL,
        );

        let mut want = vec![0.0; xl];
        reference::avg_pool2d_backward(&s, &gy, &mut want).unwrap();
        dev.avg_pool2d_backward(&s, &dgy.view(), &mut gx.view_mut())
            .unwrap();
        assert_close(
            &format!("avg backward {name}"),
            &dev.download(&gx).unwrap(),
            &want,
            TOL,
        );
    }
}

type Fwd = fn(&[f32], &mut [f32]) -> tinycnn_kernels::Result<()>;
type Bwd = fn(&[f32], &[f32], &mut [f32]) -> tinycnn_kernels::Result<()>;

fn activations_match_reference(dev: &CudaDevice) {
    let mut rng = Rng(5);
    let n = 10_007;
    let mut x: Vec<f32> = rng.vec(n).iter().map(|v| v * 8.0).collect();
    x[0] = 0.0; // relu's gradient at 0 is 0
    x[1] = 6.0; // and relu6's at 6
    let gy = rng.vec(n);
    let (dx, dgy) = (dev.upload(&x).unwrap(), dev.upload(&gy).unwrap());
    let cases: [(&str, Fwd, Bwd, bool); 4] = [
        ("relu", reference::relu, reference::relu_backward, true),
        ("relu6", reference::relu6, reference::relu6_backward, true),
        (
            "sigmoid",
            reference::sigmoid,
            reference::sigmoid_backward,
            false,
        ),
        ("tanh", reference::tanh, reference::tanh_backward, false),
    ];
    for (name, fwd, bwd, from_input) in cases {
        let mut want_y = vec![0.0; n];
        fwd(&x, &mut want_y).unwrap();
        let mut y = dev.zeros(n).unwrap();
        match name {
            "relu" => dev.relu_forward(&dx.view(), &mut y.view_mut()),
            "relu6" => dev.relu6_forward(&dx.view(), &mut y.view_mut()),
            "sigmoid" => dev.sigmoid_forward(&dx.view(), &mut y.view_mut()),
            _ => dev.tanh_forward(&dx.view(), &mut y.view_mut()),
        }
        .unwrap();
        assert_close(
            &format!("{name} forward"),
            &dev.download(&y).unwrap(),
            &want_y,
            TOL,
        );
        let saved = if from_input { &x } else { &want_y };
        let mut want = vec![0.0; n];
        bwd(saved, &gy, &mut want).unwrap();
        let dsaved = dev.upload(saved).unwrap();
        let mut gx = dev.zeros(n).unwrap();
        match name {
            "relu" => dev.relu_backward(&dsaved.view(), &dgy.view(), &mut gx.view_mut()),
            "relu6" => dev.relu6_backward(&dsaved.view(), &dgy.view(), &mut gx.view_mut()),
            "sigmoid" => dev.sigmoid_backward(&dsaved.view(), &dgy.view(), &mut gx.view_mut()),
            _ => dev.tanh_backward(&dsaved.view(), &dgy.view(), &mut gx.view_mut()),
        }
        .unwrap();
        assert_close(
            &format!("{name} backward"),
            &dev.download(&gx).unwrap(),
            &want,
            TOL,
        );
    }
}

fn bias_add_and_reduction_match_reference(dev: &CudaDevice) {
    let mut rng = Rng(6);
    for &(outer, channels, inner) in &[(256, 6, 784), (256, 120, 1), (3, 5, 7), (1, 1, 1)] {
        let n = outer * channels * inner;
        let (x, b) = (rng.vec(n), rng.vec(channels));
        let mut want = x.clone();
        reference::bias_add(outer, channels, inner, &b, &mut want).unwrap();
        let mut dx = dev.upload(&x).unwrap();
        let db = dev.upload(&b).unwrap();
        dev.bias_add(outer, channels, inner, &db.view(), &mut dx.view_mut())
            .unwrap();
        assert_close("bias_add", &dev.download(&dx).unwrap(), &want, TOL);
        let mut want = vec![0.0; channels];
        reference::bias_backward(outer, channels, inner, &x, &mut want).unwrap();
        let dx = dev.upload(&x).unwrap();
        let mut gb = dev.zeros(channels).unwrap();
        dev.bias_backward(outer, channels, inner, &dx.view(), &mut gb.view_mut())
            .unwrap();
        assert_close(
            &format!("bias_backward {outer}x{channels}x{inner}"),
            &dev.download(&gb).unwrap(),
            &want,
            TOL,
        );
    }
}

fn softmax_losses_argmax_and_sum_match_reference(dev: &CudaDevice) {
    let mut rng = Rng(7);
    for &(rows, cols) in &[(256, 10), (3, 1), (5, 100), (2, 33)] {
        let n = rows * cols;
        let x: Vec<f32> = rng.vec(n).iter().map(|v| v * 10.0).collect();
        let labels: Vec<u32> = (0..rows).map(|_| rng.below(cols as u32)).collect();
        let dx = dev.upload(&x).unwrap();
        let dl = dev.upload_u32(&labels).unwrap();

        let mut want = vec![0.0; n];
        reference::softmax(rows, cols, &x, &mut want).unwrap();
        let mut y = dev.zeros(n).unwrap();
        dev.softmax_forward(rows, cols, &dx.view(), &mut y.view_mut())
            .unwrap();
        assert_close("softmax", &dev.download(&y).unwrap(), &want, TOL);

        reference::log_softmax(rows, cols, &x, &mut want).unwrap();
        dev.log_softmax_forward(rows, cols, &dx.view(), &mut y.view_mut())
            .unwrap();
        assert_close("log_softmax", &dev.download(&y).unwrap(), &want, TOL);

        let want_loss = reference::cross_entropy(rows, cols, &x, &labels).unwrap();
        let loss = dev.cross_entropy(rows, cols, &dx.view(), &labels).unwrap();
        assert_close("cross_entropy", &[loss], &[want_loss], TOL);

        reference::cross_entropy_backward(rows, cols, &x, &labels, 0.5, &mut want).unwrap();
        dev.softmax_xent_backward(rows, cols, &dx.view(), &dl.view(), 0.5, &mut y.view_mut())
            .unwrap();
        assert_close(
            "cross_entropy_backward",
            &dev.download(&y).unwrap(),
            &want,
            TOL,
        );

        // First maximum of each row; correct = argmax == label.
        let want_arg: Vec<u32> = (0..rows)
            .map(|r| {
                let row = &x[r * cols..(r + 1) * cols];
                let mut best = 0;
                for c in 1..cols {
                    if row[c] > row[best] {
                        best = c;
                    }
                }
                best as u32
            })
            .collect();
        let mut arg = dev.alloc_zeros::<u32>(rows).unwrap();
        dev.argmax_rows(rows, cols, &dx.view(), &mut arg.view_mut())
            .unwrap();
        assert_eq!(dev.download_view(&arg.view()).unwrap(), want_arg);
        let mut correct = dev.zeros(rows).unwrap();
        dev.correct_rows(rows, cols, &dx.view(), &dl.view(), &mut correct.view_mut())
            .unwrap();
        let want_correct: Vec<f32> = want_arg
            .iter()
            .zip(&labels)
            .map(|(a, l)| (a == l) as u32 as f32)
            .collect();
        assert_eq!(dev.download(&correct).unwrap(), want_correct);
    }
    // Ties and NaN: first maximum; NaN beats everything.
    let x = [1.0, 3.0, 3.0, 0.0, /**/ 2.0, f32::NAN, 5.0, f32::NAN];
    let dx = dev.upload(&x).unwrap();
    let mut arg = dev.alloc_zeros::<u32>(2).unwrap();
    dev.argmax_rows(2, 4, &dx.view(), &mut arg.view_mut())
        .unwrap();
    assert_eq!(dev.download_view(&arg.view()).unwrap(), vec![1, 1]);

    for n in [1usize, 255, 256, 257, 60_000, 1 << 20] {
        let v = rng.vec(n);
        let want: f64 = v.iter().map(|&a| a as f64).sum();
        let scale: f64 = v.iter().map(|&a| a.abs() as f64).sum();
        let got = dev.sum(&dev.upload(&v).unwrap().view(), 1.0).unwrap();
        assert!(
            ((got as f64) - want).abs() <= 1e-5 * scale,
            "sum of {n}: {got} vs {want}"
        );
        let mean = dev
            .sum(&dev.upload(&v).unwrap().view(), 1.0 / n as f32)
            .unwrap();
        assert!(
            ((mean as f64) - want / n as f64).abs() <= 1e-5 * scale / n as f64,
            "mean of {n}"
        );
    }
}

fn optimizers_match_reference_over_steps(dev: &CudaDevice) {
    let mut rng = Rng(8);
    let n = 3001;
    let sgds = [
        SgdConfig::new(0.9),
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.1,
            weight_decay: 1e-2,
            nesterov: false,
        },
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 5e-4,
            nesterov: true,
        },
    ];
    for cfg in sgds {
        let (mut p, mut buf) = (rng.vec(n), vec![0.0; n]);
        let mut dp = dev.upload(&p).unwrap();
        let mut dbuf = dev.zeros(n).unwrap();
        for step in 0..4 {
            let g = rng.vec(n);
            reference::sgd_step(&cfg, &mut p, &g, &mut buf, step == 0).unwrap();
            let dg = dev.upload(&g).unwrap();
            let mb = (cfg.momentum != 0.0).then_some(&mut dbuf);
            dev.sgd_step(&cfg, &mut dp.view_mut(), &dg.view(), mb, step == 0)
                .unwrap();
        }
        assert_close(
            &format!("sgd {cfg:?}"),
            &dev.download(&dp).unwrap(),
            &p,
            TOL,
        );
    }
    for cfg in [
        AdamConfig::new(1e-3),
        AdamConfig {
            lr: 0.01,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            weight_decay: 0.1,
        },
    ] {
        let (mut p, mut m, mut v) = (rng.vec(n), vec![0.0; n], vec![0.0; n]);
        let mut dp = dev.upload(&p).unwrap();
        let (mut dm, mut dv) = (dev.zeros(n).unwrap(), dev.zeros(n).unwrap());
        for step in 1..=5 {
            let g = rng.vec(n);
            reference::adam_step(&cfg, step, &mut p, &g, &mut m, &mut v).unwrap();
            let dg = dev.upload(&g).unwrap();
            dev.adam_step(
                &cfg,
                step,
                &mut dp.view_mut(),
                &dg.view(),
                &mut dm.view_mut(),
                &mut dv.view_mut(),
            )
            .unwrap();
        }
        assert_close(
            &format!("adam {cfg:?}"),
            &dev.download(&dp).unwrap(),
            &p,
            TOL,
        );
        assert_close("adam m", &dev.download(&dm).unwrap(), &m, TOL);
        assert_close("adam v", &dev.download(&dv).unwrap(), &v, TOL);
    }
}

fn wrong_buffers_are_refused_before_launch(dev: &CudaDevice) {
    let s = Conv2dShape::new(Conv2dParams::new(1, 6, (5, 5)), 2, 8, 8);
    let x = dev.zeros(2 * 64).unwrap();
    let w = dev.zeros(150).unwrap();
    let mut y = dev.zeros(2 * 6 * 16 + 1).unwrap();
    match dev.conv2d_forward(&s, &x.view(), &w.view(), None, &mut y.view_mut()) {
        Err(CudaError::Shape {
            kernel: "conv2d_forward_t16",
            source:
                KernelError::BufferLength {
                    buffer: "y",
                    expected: 192,
                    actual: 193,
                },
            ..
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    let mut p = dev.zeros(4).unwrap();
    let g = dev.zeros(4).unwrap();
    let err = dev
        .sgd_step(
            &SgdConfig {
                momentum: 0.9,
                ..SgdConfig::new(0.1)
            },
            &mut p.view_mut(),
            &g.view(),
            None,
            true,
        )
        .unwrap_err();
    assert!(err.to_string().contains("momentum_buf"), "{err}");
    let err = dev
        .sgd_step(
            &SgdConfig::new(-1.0),
            &mut p.view_mut(),
            &g.view(),
            None,
            true,
        )
        .unwrap_err();
    assert!(err.to_string().contains("learning rate"), "{err}");
    // A buffer of another device is refused by name, before anything touches its memory.
    let other = common::emu_device();
    let foreign = other.zeros(4).unwrap();
    let err = dev.relu_forward(&foreign, &mut p).unwrap_err();
    assert!(err.to_string().contains("another device"), "{err}");
}

fn vector_ops_match_reference(dev: &CudaDevice) {
    let mut rng = Rng(11);
    for n in [1usize, 255, 1000, 5000] {
        let (x, y) = (rng.vec(n), rng.vec(n));
        let (dx, dy) = (dev.upload(&x).unwrap(), dev.upload(&y).unwrap());

        let mut acc = dev.upload(&y).unwrap();
        dev.add_inplace(&dx, &mut acc).unwrap();
        let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| b + a).collect();
        assert_close("add_inplace", &dev.download(&acc).unwrap(), &want, TOL);

        let mut out = dev.upload(&y).unwrap();
        dev.axpby(0.5, &dx, -2.0, &mut out).unwrap();
        let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| 0.5 * a - 2.0 * b).collect();
        assert_close("axpby", &dev.download(&out).unwrap(), &want, TOL);

        // beta == 0 does not read y: a fresh (on the emulator, NaN-filled) buffer is fine.
        let mut out = dev.alloc(n).unwrap();
        dev.axpby(3.0, &dx, 0.0, &mut out).unwrap();
        let want: Vec<f32> = x.iter().map(|a| 3.0 * a).collect();
        assert_close("axpby beta 0", &dev.download(&out).unwrap(), &want, TOL);

        let mut out = dev.upload(&y).unwrap();
        dev.scale(-0.25, &mut out).unwrap();
        let want: Vec<f32> = y.iter().map(|b| -0.25 * b).collect();
        assert_close("scale", &dev.download(&out).unwrap(), &want, TOL);

        dev.fill(1.5, &mut out).unwrap();
        assert_eq!(dev.download(&out).unwrap(), vec![1.5; n]);

        let mut z = dev.alloc(n).unwrap();
        dev.mul(&dx, &dy, &mut z).unwrap();
        let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
        assert_close("mul", &dev.download(&z).unwrap(), &want, TOL);

        // A [cols] row broadcast onto [rows, cols] is bias_add with inner == 1.
        let (rows, cols) = (3, n);
        let m = rng.vec(rows * cols);
        let mut dm = dev.upload(&m).unwrap();
        dev.bias_add(rows, cols, 1, &dx, &mut dm).unwrap();
        let want: Vec<f32> = m.iter().enumerate().map(|(i, v)| v + x[i % cols]).collect();
        assert_close("broadcast add", &dev.download(&dm).unwrap(), &want, TOL);
    }
    // Empty buffers are no-ops, not launches with an empty grid.
    let e = dev.alloc(0).unwrap();
    let mut f = dev.alloc(0).unwrap();
    dev.add_inplace(&e, &mut f).unwrap();
    dev.fill(1.0, &mut f).unwrap();
    assert!(dev.download(&f).unwrap().is_empty());
}

fn gather_batch_copies_the_permuted_rows(dev: &CudaDevice) {
    let (samples, sample_len, batch) = (10usize, 7usize, 4usize);
    let images: Vec<f32> = (0..samples * sample_len).map(|v| v as f32).collect();
    let labels: Vec<u32> = (0..samples as u32).map(|l| l * 3).collect();
    let perm: Vec<u32> = vec![9, 2, 5, 0, 7, 1, 3, 4, 6, 8];
    let (di, dl, dp) = (
        dev.upload(&images).unwrap(),
        dev.upload_u32(&labels).unwrap(),
        dev.upload_u32(&perm).unwrap(),
    );
    let mut oi = dev.alloc(batch * sample_len).unwrap();
    let mut ol = dev.alloc_u32(batch).unwrap();
    dev.gather_batch(batch, sample_len, &dp, 3, &di, &dl, &mut oi, &mut ol)
        .unwrap();
    let want_i: Vec<f32> = perm[3..3 + batch]
        .iter()
        .flat_map(|&s| images[s as usize * sample_len..][..sample_len].to_vec())
        .collect();
    let want_l: Vec<u32> = perm[3..3 + batch]
        .iter()
        .map(|&s| labels[s as usize])
        .collect();
    assert_eq!(dev.download(&oi).unwrap(), want_i);
    assert_eq!(dev.download_u32(&ol).unwrap(), want_l);
    let err = dev
        .gather_batch(batch, sample_len, &dp, 8, &di, &dl, &mut oi, &mut ol)
        .unwrap_err();
    assert!(err.to_string().contains("past the permutation"), "{err}");
}

fn allocator_reuses_freed_blocks(dev: &CudaDevice) {
    // Warm up one "training step" worth of shapes, then repeat it: no new allocations.
    let step = |dev: &CudaDevice| {
        let x = dev.zeros(8 * 6 * 24 * 24).unwrap();
        let mut y = dev.alloc(8 * 6 * 24 * 24).unwrap();
        dev.relu_forward(&x, &mut y).unwrap();
        let labels = dev.upload_u32(&[1, 2, 3]).unwrap();
        let _bias = dev.zeros(6).unwrap();
        drop((x, y, labels));
    };
    step(dev);
    let before = dev.memory_stats();
    for _ in 0..5 {
        step(dev);
    }
    let after = dev.memory_stats();
    assert_eq!(
        after.driver_allocs, before.driver_allocs,
        "steady state allocated from the driver: {before:?} -> {after:?}"
    );
    assert!(
        after.cache_hits >= before.cache_hits + 20,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.bytes_in_use, before.bytes_in_use);
    // A near size shares the class; the cache can be emptied.
    let a = dev.alloc(8 * 6 * 24 * 24 - 5).unwrap();
    assert_eq!(dev.memory_stats().driver_allocs, after.driver_allocs);
    drop(a);
    assert!(dev.empty_cache() > 0);
    assert_eq!(dev.memory_stats().bytes_cached, 0);
}

fn shape_errors_name_kernel_and_shapes(dev: &CudaDevice) {
    let x = dev.zeros(10).unwrap();
    let mut y = dev.zeros(11).unwrap();
    let err = dev.relu_forward(&x, &mut y).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("relu_forward"), "{msg}");
    assert!(msg.contains("x [10], y [11]"), "{msg}");
    assert!(matches!(
        err,
        CudaError::Shape {
            kernel: "relu_forward",
            ..
        }
    ));

    let s = Conv2dShape::new(Conv2dParams::new(2, 4, (3, 3)), 2, 6, 6);
    let (xl, wl) = (s.input_len().unwrap(), s.weight_len());
    let (x, w) = (dev.zeros(xl).unwrap(), dev.zeros(wl + 1).unwrap());
    let mut y = dev.zeros(s.output_len().unwrap()).unwrap();
    let msg = dev
        .conv2d_forward(&s, &x, &w, None, &mut y)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("conv2d_forward_t16"), "{msg}");
    assert!(msg.contains(&format!("w [{}]", wl + 1)), "{msg}");
    assert!(msg.contains("in_channels: 2"), "{msg}");

    let g = GemmShape::new(3, 4, 5);
    let (a, b) = (dev.zeros(15).unwrap(), dev.zeros(20).unwrap());
    let mut c = dev.zeros(11).unwrap();
    let msg = dev
        .sgemm(&g, 1.0, &a, &b, 0.0, &mut c)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("sgemm_nn") && msg.contains("c [11]"), "{msg}");
}

fn views_and_copies_round_trip(dev: &CudaDevice) {
    let data: Vec<f32> = (0..100).map(|v| v as f32).collect();
    let src = dev.upload(&data).unwrap();
    assert_eq!(src.len(), 100);
    assert_eq!(
        dev.download(&src.slice(10..20)).unwrap(),
        data[10..20].to_vec()
    );
    let mut dst = dev.zeros(100).unwrap();
    dev.copy_device(&src.slice(0..50), &mut dst.slice_mut(50..))
        .unwrap();
    let got = dev.download(&dst).unwrap();
    assert_eq!(&got[..50], &[0.0; 50]);
    assert_eq!(&got[50..], &data[..50]);
    let c = dev.clone_buffer(&src).unwrap();
    assert_eq!(dev.download(&c).unwrap(), data);
    // Wrappers take views: relu over the second half only.
    let neg: Vec<f32> = (0..100).map(|v| v as f32 - 50.0).collect();
    let x = dev.upload(&neg).unwrap();
    let mut y = dev.zeros(100).unwrap();
    dev.relu_forward(&x.slice(50..), &mut y.slice_mut(..50))
        .unwrap();
    assert_eq!(dev.download(&y.slice(..50)).unwrap(), neg[50..].to_vec());
    // Buffers are Send + Sync: the runtime keeps them in shared tensors.
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&x);
    assert_eq!(
        dev.download_u32(&dev.upload_u32(&[7, 8]).unwrap()).unwrap(),
        vec![7, 8]
    );
}

fn sync_launches_still_compute(dev: &CudaDevice) {
    // TINYCNN_CUDA_SYNC=1 sets this at creation; a test toggles it directly.
    let was = dev.sync_launches();
    dev.set_sync_launches(true);
    let x = dev.upload(&[-1.0, 2.0]).unwrap();
    let mut y = dev.alloc(2).unwrap();
    dev.relu_forward(&x, &mut y).unwrap();
    assert_eq!(dev.download(&y).unwrap(), vec![0.0, 2.0]);
    dev.set_sync_launches(was);
}

fn batch_norm_matches_reference(dev: &CudaDevice) {
    let mut rng = Rng(21);
    // [N, C] (spatial 1), a small image batch, and more values per channel than a block.
    for s in [
        BatchNormShape::new(5, 3, 1),
        BatchNormShape::new(4, 6, 49),
        BatchNormShape::new(3, 2, 700),
    ] {
        let n = s.len().unwrap();
        let x: Vec<f32> = rng.vec(n).iter().map(|v| 3.0 * v + 1.5).collect();
        let (gy, w, b) = (rng.vec(n), rng.vec(s.channels), rng.vec(s.channels));
        let (dx, dgy, dw, db) = (
            dev.upload(&x).unwrap(),
            dev.upload(&gy).unwrap(),
            dev.upload(&w).unwrap(),
            dev.upload(&b).unwrap(),
        );
        let (mut mean, mut var) = (vec![0.0; s.channels], vec![0.0; s.channels]);
        reference::batch_norm_stats(&s, &x, &mut mean, &mut var).unwrap();
        let (mut dmean, mut dvar) = (
            dev.alloc(s.channels).unwrap(),
            dev.alloc(s.channels).unwrap(),
        );
        dev.batch_norm_stats(&s, &dx, &mut dmean, &mut dvar)
            .unwrap();
        assert_close(
            "batch norm mean",
            &dev.download(&dmean).unwrap(),
            &mean,
            TOL,
        );
        assert_close("batch norm var", &dev.download(&dvar).unwrap(), &var, TOL);
        let eps = 1e-5;
        let stats = BatchNormStats {
            mean: &mean,
            var: &var,
            eps,
        };
        for affine in [true, false] {
            let (wr, br) = if affine {
                (Some(&w[..]), Some(&b[..]))
            } else {
                (None, None)
            };
            let (wd, bd) = if affine {
                (Some(&dw), Some(&db))
            } else {
                (None, None)
            };
            let mut want = vec![0.0; n];
            reference::batch_norm_forward(&s, &x, &stats, wr, br, &mut want).unwrap();
            let mut y = dev.alloc(n).unwrap();
            dev.batch_norm_forward(&s, &dx, &dmean, &dvar, eps, wd, bd, &mut y)
                .unwrap();
            assert_close("batch norm forward", &dev.download(&y).unwrap(), &want, TOL);
            for training in [true, false] {
                let (mut gx, mut gw, mut gb) =
                    (vec![0.0; n], vec![0.0; s.channels], vec![0.0; s.channels]);
                let grads = BatchNormGrads {
                    x: Some(&mut gx),
                    weight: Some(&mut gw),
                    bias: Some(&mut gb),
                };
                reference::batch_norm_backward(&s, &x, &gy, &stats, wr, training, grads).unwrap();
                let mut dgx = dev.alloc(n).unwrap();
                let (mut dgw, mut dgb) = (
                    dev.alloc(s.channels).unwrap(),
                    dev.alloc(s.channels).unwrap(),
                );
                dev.batch_norm_backward(
                    &s,
                    &dx,
                    &dgy,
                    &dmean,
                    &dvar,
                    eps,
                    wd,
                    training,
                    Some(&mut dgx),
                    Some(&mut dgw),
                    Some(&mut dgb),
                )
                .unwrap();
                let what = format!("batch norm backward {s:?} affine {affine} training {training}");
                assert_close(
                    &format!("{what}: x"),
                    &dev.download(&dgx).unwrap(),
                    &gx,
                    TOL,
                );
                assert_close(
                    &format!("{what}: weight"),
                    &dev.download(&dgw).unwrap(),
                    &gw,
                    TOL,
                );
                assert_close(
                    &format!("{what}: bias"),
                    &dev.download(&dgb).unwrap(),
                    &gb,
                    TOL,
                );
                // The input gradient alone (no parameter gradients asked for).
                let mut dgx2 = dev.alloc(n).unwrap();
                dev.batch_norm_backward(
                    &s,
                    &dx,
                    &dgy,
                    &dmean,
                    &dvar,
                    eps,
                    wd,
                    training,
                    Some(&mut dgx2),
                    None,
                    None,
                )
                .unwrap();
                assert_eq!(dev.download(&dgx2).unwrap(), dev.download(&dgx).unwrap());
            }
        }
    }
    // Wrong lengths and empty channels are refused before launch.
    let s = BatchNormShape::new(2, 3, 4);
    let x = dev.zeros(24).unwrap();
    let (mut m, mut v) = (dev.alloc(2).unwrap(), dev.alloc(3).unwrap());
    let err = dev.batch_norm_stats(&s, &x, &mut m, &mut v).unwrap_err();
    assert!(
        err.to_string().contains("mean") && err.to_string().contains("batch_norm_stats"),
        "{err}"
    );
    let mut m = dev.alloc(3).unwrap();
    let err = dev
        .batch_norm_stats(
            &BatchNormShape::new(0, 3, 4),
            &dev.zeros(0).unwrap(),
            &mut m,
            &mut v,
        )
        .unwrap_err();
    assert!(err.to_string().contains("values per channel"), "{err}");
}

fn adaptive_pooling_matches_reference(dev: &CudaDevice) {
    let mut rng = Rng(22);
    for (hw, out) in [
        ((7, 5), (3, 2)),
        ((8, 6), (4, 3)),
        ((9, 9), (1, 1)),
        ((3, 4), (5, 7)),
        ((10, 1), (3, 1)),
    ] {
        let s = AdaptivePool2dShape::new(2, 3, hw, out);
        let (xl, yl) = (s.input_len().unwrap(), s.output_len().unwrap());
        let (x, gy) = (rng.vec(xl), rng.vec(yl));
        let mut want = vec![0.0; yl];
        reference::adaptive_avg_pool2d(&s, &x, &mut want).unwrap();
        let mut y = dev.alloc(yl).unwrap();
        dev.adaptive_avg_pool2d_forward(&s, &dev.upload(&x).unwrap(), &mut y)
            .unwrap();
        assert_close(
            &format!("adaptive avg pool {s:?}"),
            &dev.download(&y).unwrap(),
            &want,
            TOL,
        );
        let mut gwant = vec![0.0; xl];
        reference::adaptive_avg_pool2d_backward(&s, &gy, &mut gwant).unwrap();
        let mut gx = dev.upload(&vec![f32::NAN; xl]).unwrap();
        dev.adaptive_avg_pool2d_backward(&s, &dev.upload(&gy).unwrap(), &mut gx)
            .unwrap();
        assert_close(
            &format!("adaptive avg pool backward {s:?}"),
            &dev.download(&gx).unwrap(),
            &gwant,
            TOL,
        );
    }
    let s = AdaptivePool2dShape::new(1, 1, (4, 4), (0, 2));
    let err = dev
        .adaptive_avg_pool2d_forward(&s, &dev.zeros(16).unwrap(), &mut dev.zeros(1).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("output height"), "{err}");
    // 50000 rows to 50000: the window bounds would overflow the kernels' 32-bit arithmetic.
    let s = AdaptivePool2dShape::new(1, 1, (50_000, 1), (50_000, 1));
    let (x, mut y) = (dev.zeros(50_000).unwrap(), dev.zeros(50_000).unwrap());
    match dev.adaptive_avg_pool2d_forward(&s, &x, &mut y) {
        Err(CudaError::TooLarge { what, .. }) => assert!(what.contains("height"), "{what}"),
        other => panic!("unexpected {other:?}"),
    }
}

fn augment_batch_applies_the_index_map(dev: &CudaDevice) {
    // Three 2-channel 3x4 images; (dy, dx, flip) per sample.
    let (batch, c, h, w) = (3usize, 2usize, 3usize, 4usize);
    let x: Vec<f32> = (0..batch * c * h * w).map(|v| v as f32 + 1.0).collect();
    let t: [(i32, i32, bool); 3] = [(0, 0, false), (1, -2, true), (-2, 3, false)];
    let packed: Vec<u32> = t
        .iter()
        .flat_map(|&(dy, dx, f)| [dy as u32, dx as u32, u32::from(f)])
        .collect();
    let mut want = vec![0.0; x.len()];
    for (s, &(dy, dx, flip)) in t.iter().enumerate() {
        for ch in 0..c {
            for oy in 0..h {
                for ox in 0..w {
                    let sx = if flip { w - 1 - ox } else { ox } as i32 + dx;
                    let sy = oy as i32 + dy;
                    let o = ((s * c + ch) * h + oy) * w + ox;
                    if (0..h as i32).contains(&sy) && (0..w as i32).contains(&sx) {
                        want[o] = x[((s * c + ch) * h + sy as usize) * w + sx as usize];
                    }
                }
            }
        }
    }
    let mut y = dev.upload(&vec![f32::NAN; x.len()]).unwrap();
    let dt = dev.upload_u32(&packed).unwrap();
    dev.augment_batch(batch, [c, h, w], &dt, &dev.upload(&x).unwrap(), &mut y)
        .unwrap();
    assert_eq!(dev.download(&y).unwrap(), want);
    // Sample 1 by hand: output row 0 reads input row 1 (values 29..=32) at column
    // (3 - ox) - 2 = 1 - ox: columns 1, 0, then the padding.
    assert_eq!(
        dev.download(&y).unwrap()[24..28],
        [30.0, 29.0, 0.0, 0.0][..]
    );
    let err = dev
        .augment_batch(
            batch,
            [c, h, w],
            &dev.upload_u32(&packed[..6]).unwrap(),
            &dev.upload(&x).unwrap(),
            &mut y,
        )
        .unwrap_err();
    assert!(err.to_string().contains("transforms"), "{err}");
}
