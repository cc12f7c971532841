//! Invalid parameters and wrongly sized buffers come back as the right `KernelError`,
//! never as a panic, and the messages name the problem.

use tinycnn_kernels::*;

fn conv_fwd(s: &Conv2dShape, x: usize, w: usize, b: Option<usize>, y: usize) -> Result<()> {
    let bias = b.map(|n| vec![0.0f32; n]);
    let mut ws = vec![0.0f32; conv2d_workspace_len(s)];
    conv2d_forward(
        s,
        &vec![0.0; x],
        &vec![0.0; w],
        bias.as_deref(),
        &mut vec![0.0; y],
        &mut ws,
    )
}

/// Runs every conv entry point (forward with each algorithm, the three backward kernels and
/// the reference) on correctly sized buffers where the shape allows, expecting `err` from all.
#[track_caller]
fn assert_conv_rejects(s: &Conv2dShape, err: KernelError) {
    // Buffer sizes cannot be computed for an invalid shape; any small ones will do, the
    // shape must be rejected first.
    let (x, w, y) = (
        s.input_len().unwrap_or(4).min(1 << 16),
        s.weight_len().min(1 << 16),
        s.output_len().unwrap_or(4).min(1 << 16),
    );
    let (xv, wv, mut yv) = (vec![0.0f32; x], vec![0.0f32; w], vec![0.0f32; y]);
    // Workspace queries must not panic on a bad shape.
    let ws_len = conv2d_workspace_len(s)
        .max(conv2d_backward_input_workspace_len(s))
        .max(conv2d_backward_weight_workspace_len(s));
    let mut ws = vec![0.0f32; ws_len.min(1 << 20)];
    for algo in [ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2colGemm] {
        assert_eq!(
            conv2d_forward_with(algo, s, &xv, &wv, None, &mut yv, &mut ws),
            Err(err),
            "forward {algo:?}"
        );
        assert_eq!(
            conv2d_backward_input_with(algo, s, &yv.clone(), &wv, &mut xv.clone(), &mut ws),
            Err(err),
            "backward input {algo:?}"
        );
        assert_eq!(
            conv2d_backward_weight_with(algo, s, &xv, &yv.clone(), &mut wv.clone(), &mut ws),
            Err(err),
            "backward weight {algo:?}"
        );
    }
    assert_eq!(
        conv2d_backward_input(s, &yv.clone(), &wv, &mut xv.clone(), &mut ws),
        Err(err),
        "backward input"
    );
    assert_eq!(
        conv2d_backward_weight(s, &xv, &yv.clone(), &mut wv.clone(), &mut ws),
        Err(err),
        "backward weight"
    );
    assert_eq!(
        conv2d_backward_bias(s, &yv, &mut vec![0.0; s.params.out_channels.min(1 << 16)]),
        Err(err),
        "backward bias"
    );
    assert_eq!(
        reference::conv2d(s, &xv, &wv, None, &mut yv),
        Err(err),
        "reference"
    );
}

fn shape(p: Conv2dParams) -> Conv2dShape {
    Conv2dShape::new(p, 1, 5, 5)
}

// ---------------------------------------------------------------- conv parameters

#[test]
fn conv_zero_sizes() {
    let base = Conv2dParams::new(2, 2, (3, 3));
    let cases = [
        (
            Conv2dParams {
                in_channels: 0,
                ..base
            },
            "in_channels",
        ),
        (
            Conv2dParams {
                out_channels: 0,
                ..base
            },
            "out_channels",
        ),
        (Conv2dParams { groups: 0, ..base }, "groups"),
        (
            Conv2dParams {
                kernel: (0, 3),
                ..base
            },
            "kernel",
        ),
        (
            Conv2dParams {
                kernel: (3, 0),
                ..base
            },
            "kernel",
        ),
        (
            Conv2dParams {
                stride: (0, 1),
                ..base
            },
            "stride",
        ),
        (
            Conv2dParams {
                stride: (1, 0),
                ..base
            },
            "stride",
        ),
        (
            Conv2dParams {
                dilation: (0, 1),
                ..base
            },
            "dilation",
        ),
        (
            Conv2dParams {
                dilation: (1, 0),
                ..base
            },
            "dilation",
        ),
    ];
    for (p, what) in cases {
        assert_eq!(p.validate(), Err(KernelError::Zero { what }), "{p:?}");
        assert_conv_rejects(&shape(p), KernelError::Zero { what });
    }
    assert_conv_rejects(
        &Conv2dShape::new(base, 0, 5, 5),
        KernelError::Zero { what: "batch" },
    );
    for (h, w) in [(0, 5), (5, 0)] {
        let e = Conv2dShape::new(base, 1, h, w).validate().unwrap_err();
        assert!(matches!(e, KernelError::Zero { .. }), "{h}x{w}: {e:?}");
        assert_conv_rejects(&Conv2dShape::new(base, 1, h, w), e);
    }
}

#[test]
fn conv_channels_not_divisible_by_groups() {
    let p = Conv2dParams::new(3, 4, (1, 1)).with_groups(2);
    assert_conv_rejects(
        &shape(p),
        KernelError::ChannelsNotDivisibleByGroups {
            what: "in_channels",
            channels: 3,
            groups: 2,
        },
    );
    let p = Conv2dParams::new(4, 3, (1, 1)).with_groups(2);
    assert_conv_rejects(
        &shape(p),
        KernelError::ChannelsNotDivisibleByGroups {
            what: "out_channels",
            channels: 3,
            groups: 2,
        },
    );
    // More groups than channels.
    let p = Conv2dParams::new(2, 4, (1, 1)).with_groups(4);
    assert!(matches!(
        p.validate(),
        Err(KernelError::ChannelsNotDivisibleByGroups { .. })
    ));
}

#[test]
fn conv_kernel_larger_than_padded_input() {
    // 5x5 input, kernel 6: padded height 5.
    assert_conv_rejects(
        &shape(Conv2dParams::new(1, 1, (6, 3))),
        KernelError::KernelTooLarge {
            axis: "height",
            kernel: 6,
            padded_input: 5,
        },
    );
    // Width: kernel 4 with dilation 2 spans 7 > 5 + 2*0.
    assert_conv_rejects(
        &shape(Conv2dParams::new(1, 1, (1, 4)).with_dilation((1, 2))),
        KernelError::KernelTooLarge {
            axis: "width",
            kernel: 7,
            padded_input: 5,
        },
    );
    // Exactly as large as the padded input is fine: 5 + 2 = 7.
    let s = shape(Conv2dParams::new(1, 1, (7, 7)).with_padding((1, 1)));
    assert_eq!(s.out_hw(), Ok((1, 1)));
    assert_eq!(conv_fwd(&s, 25, 49, None, 1), Ok(()));
    // out_size on its own.
    assert_eq!(
        out_size("height", 3, 4, 1, 0, 1),
        Err(KernelError::KernelTooLarge {
            axis: "height",
            kernel: 4,
            padded_input: 3
        })
    );
}

#[test]
fn conv_sizes_that_overflow_usize() {
    let big = usize::MAX / 2;
    // Weight: out * in * kh * kw overflows.
    let p = Conv2dParams::new(1, big, (3, 3));
    assert!(matches!(p.validate(), Err(KernelError::Overflow { .. })));
    assert_conv_rejects(&shape(p), p.validate().unwrap_err());
    // Input: batch * channels * h * w overflows.
    let s = Conv2dShape::new(Conv2dParams::new(4, 1, (1, 1)), big, 2, 2);
    let e = s.validate().unwrap_err();
    assert!(matches!(e, KernelError::Overflow { .. }), "{e:?}");
    assert_conv_rejects(&s, e);
    // Output: huge padding makes a huge output plane.
    let s = Conv2dShape::new(
        Conv2dParams::new(1, 1, (1, 1)).with_padding((big / 2, big / 2)),
        1,
        1,
        1,
    );
    assert!(s.validate().is_err());
    assert_conv_rejects(&s, s.validate().unwrap_err());
    // Padding and dilation arithmetic itself.
    assert!(matches!(
        out_size("height", 4, 1, 1, usize::MAX, 1),
        Err(KernelError::Overflow { .. })
    ));
    assert!(matches!(
        out_size("height", 4, 3, 1, 0, usize::MAX),
        Err(KernelError::Overflow { .. })
    ));
    assert!(matches!(
        out_size("height", usize::MAX, 3, 1, 1, 1),
        Err(KernelError::Overflow { .. })
    ));
}

#[test]
fn conv_wrong_buffer_lengths() {
    // 2 -> 3 channels, 3x3 kernel, 5x5 input: x 50, w 54, y 27 (3x3 outputs), bias 3.
    let s = Conv2dShape::new(Conv2dParams::new(2, 3, (3, 3)), 1, 5, 5);
    assert_eq!(s.input_len(), Ok(50));
    assert_eq!(s.weight_len(), 54);
    assert_eq!(s.output_len(), Ok(27));
    assert_eq!(conv_fwd(&s, 50, 54, Some(3), 27), Ok(()));
    let len_err = |buffer, expected, actual| KernelError::BufferLength {
        buffer,
        expected,
        actual,
    };
    for (x, w, b, y, err) in [
        (49, 54, None, 27, len_err("input", 50, 49)),
        (51, 54, None, 27, len_err("input", 50, 51)),
        (50, 53, None, 27, len_err("weight", 54, 53)),
        (50, 55, None, 27, len_err("weight", 54, 55)),
        (50, 54, None, 26, len_err("output", 27, 26)),
        (50, 54, None, 28, len_err("output", 27, 28)),
        (50, 54, Some(2), 27, len_err("bias", 3, 2)),
        (50, 54, Some(4), 27, len_err("bias", 3, 4)),
    ] {
        assert_eq!(conv_fwd(&s, x, w, b, y), Err(err));
    }

    // Backward kernels: wrong gradient / weight / input lengths are BufferLength errors.
    let mut ws_i = vec![0.0; conv2d_backward_input_workspace_len(&s)];
    let mut ws_w = vec![0.0; conv2d_backward_weight_workspace_len(&s)];
    let is_len_err = |r: Result<()>, expected: usize, actual: usize| match r {
        Err(KernelError::BufferLength {
            expected: e,
            actual: a,
            ..
        }) => e == expected && a == actual,
        _ => false,
    };
    let (x, w, gy) = (vec![0.0; 50], vec![0.0; 54], vec![0.0; 27]);
    assert!(is_len_err(
        conv2d_backward_input(&s, &gy[..26], &w, &mut [0.0; 50], &mut ws_i),
        27,
        26
    ));
    assert!(is_len_err(
        conv2d_backward_input(&s, &gy, &w[..53], &mut [0.0; 50], &mut ws_i),
        54,
        53
    ));
    assert!(is_len_err(
        conv2d_backward_input(&s, &gy, &w, &mut vec![0.0; 51], &mut ws_i),
        50,
        51
    ));
    assert!(is_len_err(
        conv2d_backward_weight(&s, &x[..49], &gy, &mut vec![0.0; 54], &mut ws_w),
        50,
        49
    ));
    assert!(is_len_err(
        conv2d_backward_weight(&s, &x, &gy, &mut vec![0.0; 55], &mut ws_w),
        54,
        55
    ));
    assert!(is_len_err(
        conv2d_backward_weight(&s, &x, &[0.0; 28], &mut vec![0.0; 54], &mut ws_w),
        27,
        28
    ));
    assert!(is_len_err(
        conv2d_backward_bias(&s, &gy, &mut [0.0; 2]),
        3,
        2
    ));
    assert!(is_len_err(
        conv2d_backward_bias(&s, &gy[..20], &mut [0.0; 3]),
        27,
        20
    ));
}

#[test]
fn conv_short_workspace() {
    // Each entry point asks for its own workspace size; one element short must be refused
    // (checked wherever a size is non-zero), and a longer workspace is fine.
    const ALGOS: [ConvAlgo; 3] = [ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2colGemm];
    let shapes = [
        Conv2dShape::new(
            Conv2dParams::new(3, 8, (3, 3)).with_padding((1, 1)),
            2,
            9,
            9,
        ),
        Conv2dShape::new(
            Conv2dParams::new(4, 4, (3, 3))
                .with_groups(2)
                .with_stride((2, 2)),
            1,
            8,
            8,
        ),
        Conv2dShape::new(
            Conv2dParams::new(6, 6, (3, 3))
                .with_groups(6)
                .with_padding((1, 1)),
            1,
            7,
            7,
        ),
    ];
    let short = |need: usize| vec![0.0f32; need - 1];
    let refused = |r: Result<()>, need: usize| {
        r == Err(KernelError::BufferLength {
            buffer: "workspace",
            expected: need,
            actual: need - 1,
        })
    };
    for s in shapes {
        let (x, w, y) = (
            vec![0.0; s.input_len().unwrap()],
            vec![0.0; s.weight_len()],
            vec![0.0; s.output_len().unwrap()],
        );
        for algo in ALGOS {
            let need = conv2d_workspace_len_for(algo, &s);
            if need > 0 {
                let r =
                    conv2d_forward_with(algo, &s, &x, &w, None, &mut y.clone(), &mut short(need));
                assert!(refused(r, need), "forward {algo:?}: {r:?}");
            }
            let mut ws = vec![0.0; need + 7];
            assert_eq!(
                conv2d_forward_with(algo, &s, &x, &w, None, &mut y.clone(), &mut ws),
                Ok(())
            );

            let need = conv2d_backward_input_workspace_len_for(algo, &s);
            if need > 0 {
                let r =
                    conv2d_backward_input_with(algo, &s, &y, &w, &mut x.clone(), &mut short(need));
                assert!(refused(r, need), "backward input {algo:?}: {r:?}");
            }
            let mut ws = vec![0.0; need + 7];
            assert_eq!(
                conv2d_backward_input_with(algo, &s, &y, &w, &mut x.clone(), &mut ws),
                Ok(())
            );

            let need = conv2d_backward_weight_workspace_len_for(algo, &s);
            if need > 0 {
                let r =
                    conv2d_backward_weight_with(algo, &s, &x, &y, &mut w.clone(), &mut short(need));
                assert!(refused(r, need), "backward weight {algo:?}: {r:?}");
            }
            let mut ws = vec![0.0; need + 7];
            assert_eq!(
                conv2d_backward_weight_with(algo, &s, &x, &y, &mut w.clone(), &mut ws),
                Ok(())
            );
        }
        // The Auto queries agree with the algorithms Auto resolves to.
        let picked = choose_algo(&s);
        assert_ne!(picked, ConvAlgo::Auto);
        assert_eq!(
            conv2d_workspace_len(&s),
            conv2d_workspace_len_for(picked, &s)
        );
        let picked = choose_backward_input_algo(&s);
        assert_ne!(picked, ConvAlgo::Auto);
        assert_eq!(
            conv2d_backward_input_workspace_len(&s),
            conv2d_backward_input_workspace_len_for(picked, &s)
        );
        let picked = choose_backward_weight_algo(&s);
        assert_ne!(picked, ConvAlgo::Auto);
        assert_eq!(
            conv2d_backward_weight_workspace_len(&s),
            conv2d_backward_weight_workspace_len_for(picked, &s)
        );
    }
}

#[test]
fn workspace_queries_do_not_panic_on_absurd_shapes() {
    let big = usize::MAX / 3;
    for s in [
        Conv2dShape::new(Conv2dParams::new(big, big, (big, big)), big, big, big),
        Conv2dShape::new(Conv2dParams::new(1, 1, (3, 3)), 1, 1, 1),
        Conv2dShape::new(Conv2dParams::new(0, 0, (0, 0)).with_groups(0), 0, 0, 0),
        Conv2dShape::new(
            Conv2dParams::new(3, 3, (1, 1)).with_groups(3),
            big,
            1 << 20,
            1 << 20,
        ),
    ] {
        let _ = conv2d_workspace_len(&s);
        let _ = conv2d_backward_input_workspace_len(&s);
        let _ = conv2d_backward_weight_workspace_len(&s);
        let _ = choose_algo(&s);
        let _ = (
            choose_backward_input_algo(&s),
            choose_backward_weight_algo(&s),
        );
        for algo in [ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2colGemm] {
            let lens = [
                conv2d_workspace_len_for(algo, &s),
                conv2d_backward_input_workspace_len_for(algo, &s),
                conv2d_backward_weight_workspace_len_for(algo, &s),
            ];
            if s.validate().is_err() {
                assert_eq!(lens, [0; 3], "{algo:?} on an invalid shape");
            }
        }
    }
    let _ = sgemm_workspace_len(usize::MAX, usize::MAX, usize::MAX);
    let _ = sgemm_workspace_len(0, 0, 0);
}

#[test]
fn conv_shape_helpers_do_not_panic() {
    // The Result-returning size helpers must report a bad shape, not divide by zero.
    // (Found by fuzz/kernels_never_panic: `col_rows` with groups = 0 panicked.)
    let s = Conv2dShape::new(Conv2dParams::new(4, 4, (3, 3)).with_groups(0), 1, 5, 5);
    assert!(s.validate().is_err());
    let _ = s.out_hw();
    let _ = s.input_len();
    let _ = s.output_len();
    let _ = s.col_cols();
    assert_eq!(s.weight_len(), 0);
    let rows = std::panic::catch_unwind(|| s.col_rows());
    assert!(
        matches!(rows, Ok(Err(_))),
        "Conv2dShape::col_rows with groups = 0 must return an error, got {}",
        match rows {
            Ok(r) => format!("{r:?}"),
            Err(_) => "a panic".to_string(),
        }
    );
}

#[test]
fn corr2d_errors() {
    let x = [0.0; 9];
    let k = [0.0; 4];
    let mut y = [0.0; 4];
    assert_eq!(corr2d(&x, (3, 3), &k, (2, 2), &mut y), Ok(()));
    assert_eq!(
        corr2d(&x, (3, 3), &k, (4, 1), &mut y),
        Err(KernelError::KernelTooLarge {
            axis: "height",
            kernel: 4,
            padded_input: 3
        })
    );
    assert_eq!(
        corr2d(&x, (3, 3), &k, (0, 2), &mut y),
        Err(KernelError::Zero { what: "kernel" })
    );
    assert!(matches!(
        corr2d(&x, (0, 3), &k, (1, 1), &mut y),
        Err(KernelError::Zero { .. })
    ));
    let len = |r: Result<()>| match r {
        Err(KernelError::BufferLength {
            expected, actual, ..
        }) => Some((expected, actual)),
        _ => None,
    };
    assert_eq!(
        len(corr2d(&x[..8], (3, 3), &k, (2, 2), &mut y)),
        Some((9, 8))
    );
    assert_eq!(
        len(corr2d(&x, (3, 3), &k[..3], (2, 2), &mut y)),
        Some((4, 3))
    );
    assert_eq!(
        len(corr2d(&x, (3, 3), &k, (2, 2), &mut [0.0; 5])),
        Some((4, 5))
    );
    assert!(matches!(
        corr2d(&x, (usize::MAX, 2), &k, (1, 1), &mut y),
        Err(KernelError::Overflow { .. })
    ));
}

// ---------------------------------------------------------------- pooling

fn pool_all(s: &Pool2dShape, x: usize, y: usize, arg: usize) -> [Result<()>; 4] {
    let xv = vec![0.0f32; x];
    let mut yv = vec![0.0f32; y];
    let mut av = vec![0u32; arg];
    [
        max_pool2d_forward(s, &xv, &mut yv, &mut av),
        max_pool2d_backward(s, &yv.clone(), &av, &mut xv.clone()),
        avg_pool2d_forward(s, &xv, &mut yv),
        avg_pool2d_backward(s, &yv.clone(), &mut xv.clone()),
    ]
}

#[test]
fn pool_invalid_parameters() {
    let ok = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 4, 4);
    assert_eq!(pool_all(&ok, 16, 4, 4), [Ok(()), Ok(()), Ok(()), Ok(())]);
    let cases = [
        (
            Pool2dParams {
                kernel: (0, 2),
                ..Pool2dParams::new(2)
            },
            KernelError::Zero { what: "kernel" },
        ),
        (
            Pool2dParams::new(2).with_stride((2, 0)),
            KernelError::Zero { what: "stride" },
        ),
        (
            Pool2dParams::new(3).with_padding((2, 1)),
            KernelError::PaddingTooLarge {
                axis: "height",
                padding: 2,
                kernel: 3,
            },
        ),
        (
            Pool2dParams::with_kernel((2, 3)).with_padding((1, 2)),
            KernelError::PaddingTooLarge {
                axis: "width",
                padding: 2,
                kernel: 3,
            },
        ),
        (
            Pool2dParams::new(1).with_padding((0, 1)),
            KernelError::PaddingTooLarge {
                axis: "width",
                padding: 1,
                kernel: 1,
            },
        ),
        (
            Pool2dParams::new(5),
            KernelError::KernelTooLarge {
                axis: "height",
                kernel: 5,
                padded_input: 4,
            },
        ),
    ];
    for (p, err) in cases {
        let s = Pool2dShape::new(p, 1, 1, 4, 4);
        for r in pool_all(&s, 16, 4, 4) {
            assert_eq!(r, Err(err), "{p:?}");
        }
    }
    for (b, c) in [(0, 1), (1, 0)] {
        let s = Pool2dShape::new(Pool2dParams::new(2), b, c, 4, 4);
        for r in pool_all(&s, 16, 4, 4) {
            assert!(matches!(r, Err(KernelError::Zero { .. })), "{r:?}");
        }
    }
}

#[test]
fn pool_sizes_that_overflow() {
    let big = usize::MAX / 2;
    let s = Pool2dShape::new(Pool2dParams::new(2), big, 4, 2, 2);
    for r in pool_all(&s, 16, 4, 4) {
        assert!(matches!(r, Err(KernelError::Overflow { .. })), "{r:?}");
    }
    // A plane with more than u32::MAX elements cannot be indexed by a u32 argmax.
    let s = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 1 << 17, 1 << 17);
    for r in pool_all(&s, 16, 4, 4) {
        assert!(matches!(r, Err(KernelError::Overflow { .. })), "{r:?}");
    }
}

#[test]
fn pool_wrong_buffer_lengths() {
    let s = Pool2dShape::new(Pool2dParams::new(2), 2, 3, 4, 4); // x 96, y 24
    let len = |r: &Result<()>| match *r {
        Err(KernelError::BufferLength {
            expected, actual, ..
        }) => Some((expected, actual)),
        _ => None,
    };
    for r in pool_all(&s, 95, 24, 24) {
        assert_eq!(len(&r), Some((96, 95)), "{r:?}");
    }
    for r in pool_all(&s, 96, 25, 25) {
        assert_eq!(len(&r), Some((24, 25)), "{r:?}");
    }
    // argmax must match the output.
    let [fwd, bwd, _, _] = pool_all(&s, 96, 24, 23);
    assert_eq!(len(&fwd), Some((24, 23)), "{fwd:?}");
    assert_eq!(len(&bwd), Some((24, 23)), "{bwd:?}");
    // An argmax outside its plane (a corrupted index) is refused, not written out of bounds.
    let mut arg = vec![0u32; 24];
    arg[5] = 16;
    let r = max_pool2d_backward(&s, &[1.0; 24], &arg, &mut [0.0; 96]);
    assert!(
        matches!(r, Err(KernelError::InvalidArgument { .. })),
        "{r:?}"
    );
    arg[5] = u32::MAX;
    let r = max_pool2d_backward(&s, &[1.0; 24], &arg, &mut [0.0; 96]);
    assert!(
        matches!(r, Err(KernelError::InvalidArgument { .. })),
        "{r:?}"
    );
}

// ---------------------------------------------------------------- GEMM

fn gemm(g: &GemmShape, a: usize, b: usize, c: usize) -> Result<()> {
    let mut ws = vec![0.0; sgemm_workspace_len(g.m, g.n, g.k).min(1 << 24)];
    sgemm(
        g,
        1.0,
        &vec![0.0; a],
        &vec![0.0; b],
        0.0,
        &mut vec![0.0; c],
        &mut ws,
    )
}

#[test]
fn sgemm_leading_dimensions() {
    let g = GemmShape::new(2, 3, 4); // A 2x4, B 4x3, C 2x3
    assert_eq!(gemm(&g, 8, 12, 6), Ok(()));
    assert_eq!(
        gemm(&g.with_ld(3, 3, 3), 8, 12, 6),
        Err(KernelError::LeadingDimension {
            matrix: "A",
            ld: 3,
            min: 4
        })
    );
    assert_eq!(
        gemm(&g.with_ld(4, 2, 3), 8, 12, 6),
        Err(KernelError::LeadingDimension {
            matrix: "B",
            ld: 2,
            min: 3
        })
    );
    assert_eq!(
        gemm(&g.with_ld(4, 3, 2), 8, 12, 6),
        Err(KernelError::LeadingDimension {
            matrix: "C",
            ld: 2,
            min: 3
        })
    );
    // Transposed A is stored k x m = 4 x 2, so lda >= 2; transposed B is 3 x 4, ldb >= 4.
    let gt = g.with_transpose(Transpose::Yes, Transpose::Yes);
    assert_eq!((gt.lda, gt.ldb), (2, 4));
    assert_eq!(gemm(&gt, 8, 12, 6), Ok(()));
    assert_eq!(
        gemm(&gt.with_ld(1, 4, 3), 8, 12, 6),
        Err(KernelError::LeadingDimension {
            matrix: "A",
            ld: 1,
            min: 2
        })
    );
    assert_eq!(
        gemm(&gt.with_ld(2, 3, 3), 8, 12, 6),
        Err(KernelError::LeadingDimension {
            matrix: "B",
            ld: 3,
            min: 4
        })
    );
}

#[test]
fn sgemm_buffer_lengths() {
    let g = GemmShape::new(2, 3, 4);
    let len = |r: Result<()>| match r {
        Err(KernelError::BufferLength {
            buffer,
            expected,
            actual,
        }) => Some((buffer, expected, actual)),
        _ => None,
    };
    assert_eq!(len(gemm(&g, 7, 12, 6)), Some(("a", 8, 7)));
    assert_eq!(len(gemm(&g, 8, 11, 6)), Some(("b", 12, 11)));
    assert_eq!(len(gemm(&g, 8, 12, 5)), Some(("c", 6, 5)));
    // Longer slices are fine (sub-matrices of bigger buffers).
    assert_eq!(gemm(&g, 100, 100, 100), Ok(()));
    // With lda 10 the last row of A starts at 10 and needs 4 more: 14.
    assert_eq!(
        len(gemm(&g.with_ld(10, 3, 3), 13, 12, 6)),
        Some(("a", 14, 13))
    );
    assert_eq!(gemm(&g.with_ld(10, 3, 3), 14, 12, 6), Ok(()));
}

#[test]
fn sgemm_sizes_that_overflow() {
    let big = usize::MAX / 2;
    let g = GemmShape::new(big, 2, 4);
    assert!(matches!(
        gemm(&g, 8, 8, 8),
        Err(KernelError::Overflow { .. })
    ));
    let g = GemmShape::new(2, 2, 2).with_ld(usize::MAX, 2, 2);
    assert!(matches!(
        gemm(&g, 8, 8, 8),
        Err(KernelError::Overflow { .. })
    ));
    let g = GemmShape::new(2, 2, 2).with_ld(2, 2, usize::MAX);
    assert!(matches!(
        gemm(&g, 8, 8, 8),
        Err(KernelError::Overflow { .. })
    ));
}

#[test]
fn sgemm_short_workspace() {
    for (m, n, k) in [(64, 64, 64), (200, 300, 100), (1, 1, 1)] {
        let need = sgemm_workspace_len(m, n, k);
        if need == 0 {
            continue;
        }
        let g = GemmShape::new(m, n, k);
        let mut ws = vec![0.0; need - 1];
        let r = sgemm(
            &g,
            1.0,
            &vec![0.0; m * k],
            &vec![0.0; k * n],
            0.0,
            &mut vec![0.0; m * n],
            &mut ws,
        );
        assert!(
            matches!(
                r,
                Err(KernelError::BufferLength {
                    buffer: "workspace",
                    ..
                })
            ),
            "{m}x{n}x{k}: {r:?}"
        );
    }
}

// ---------------------------------------------------------------- elementwise and losses

#[test]
fn activation_length_mismatch() {
    type Fwd = fn(&[f32], &mut [f32]) -> Result<()>;
    type Bwd = fn(&[f32], &[f32], &mut [f32]) -> Result<()>;
    let fwd: [Fwd; 4] = [relu_forward, relu6_forward, sigmoid_forward, tanh_forward];
    let bwd: [Bwd; 4] = [
        relu_backward,
        relu6_backward,
        sigmoid_backward,
        tanh_backward,
    ];
    for f in fwd {
        assert!(matches!(
            f(&[0.0; 5], &mut [0.0; 4]),
            Err(KernelError::BufferLength {
                expected: 5,
                actual: 4,
                ..
            })
        ));
        assert_eq!(f(&[], &mut []), Ok(()));
    }
    for b in bwd {
        assert!(matches!(
            b(&[0.0; 5], &[0.0; 5], &mut [0.0; 6]),
            Err(KernelError::BufferLength { .. })
        ));
        assert!(matches!(
            b(&[0.0; 5], &[0.0; 4], &mut [0.0; 5]),
            Err(KernelError::BufferLength {
                expected: 5,
                actual: 4,
                ..
            })
        ));
    }
}

#[test]
fn bias_errors() {
    assert_eq!(bias_add(2, 3, 4, &[0.0; 3], &mut [0.0; 24]), Ok(()));
    assert_eq!(
        bias_add(2, 3, 4, &[0.0; 2], &mut [0.0; 24]),
        Err(KernelError::BufferLength {
            buffer: "bias",
            expected: 3,
            actual: 2
        })
    );
    assert!(matches!(
        bias_add(2, 3, 4, &[0.0; 3], &mut [0.0; 23]),
        Err(KernelError::BufferLength {
            expected: 24,
            actual: 23,
            ..
        })
    ));
    assert!(matches!(
        bias_backward(2, 3, 4, &[0.0; 24], &mut [0.0; 4]),
        Err(KernelError::BufferLength {
            expected: 3,
            actual: 4,
            ..
        })
    ));
    assert!(matches!(
        bias_backward(2, 3, 4, &[0.0; 25], &mut [0.0; 3]),
        Err(KernelError::BufferLength {
            expected: 24,
            actual: 25,
            ..
        })
    ));
    assert!(matches!(
        bias_add(usize::MAX, 2, 2, &[0.0; 2], &mut [0.0; 4]),
        Err(KernelError::Overflow { .. })
    ));
}

#[test]
fn softmax_errors() {
    type Fwd = fn(usize, usize, &[f32], &mut [f32]) -> Result<()>;
    type Bwd = fn(usize, usize, &[f32], &[f32], &mut [f32]) -> Result<()>;
    let fwd: [Fwd; 2] = [softmax_forward, log_softmax_forward];
    let bwd: [Bwd; 2] = [softmax_backward, log_softmax_backward];
    for f in fwd {
        assert_eq!(
            f(0, 3, &[], &mut []),
            Err(KernelError::Zero { what: "rows" })
        );
        assert_eq!(
            f(2, 0, &[], &mut []),
            Err(KernelError::Zero { what: "cols" })
        );
        assert!(matches!(
            f(2, 3, &[0.0; 5], &mut [0.0; 6]),
            Err(KernelError::BufferLength {
                expected: 6,
                actual: 5,
                ..
            })
        ));
        assert!(matches!(
            f(2, 3, &[0.0; 6], &mut [0.0; 7]),
            Err(KernelError::BufferLength {
                expected: 6,
                actual: 7,
                ..
            })
        ));
        assert!(matches!(
            f(usize::MAX, 3, &[0.0; 6], &mut [0.0; 6]),
            Err(KernelError::Overflow { .. })
        ));
    }
    for b in bwd {
        assert!(matches!(
            b(2, 3, &[0.0; 6], &[0.0; 5], &mut [0.0; 6]),
            Err(KernelError::BufferLength {
                expected: 6,
                actual: 5,
                ..
            })
        ));
        assert!(matches!(
            b(2, 3, &[0.0; 6], &[0.0; 6], &mut [0.0; 5]),
            Err(KernelError::BufferLength { .. })
        ));
    }
}

#[test]
fn cross_entropy_errors() {
    let x = [0.0f32; 6];
    assert!(cross_entropy_forward(2, 3, &x, &[0, 2]).is_ok());
    assert_eq!(
        cross_entropy_forward(2, 3, &x, &[0, 3]),
        Err(KernelError::LabelOutOfRange {
            row: 1,
            label: 3,
            classes: 3
        })
    );
    assert_eq!(
        cross_entropy_forward(2, 3, &x, &[u32::MAX, 0]),
        Err(KernelError::LabelOutOfRange {
            row: 0,
            label: u32::MAX as usize,
            classes: 3
        })
    );
    assert_eq!(
        cross_entropy_forward(2, 3, &x, &[0]),
        Err(KernelError::BufferLength {
            buffer: "labels",
            expected: 2,
            actual: 1
        })
    );
    assert!(matches!(
        cross_entropy_forward(2, 3, &x[..5], &[0, 0]),
        Err(KernelError::BufferLength {
            expected: 6,
            actual: 5,
            ..
        })
    ));
    assert_eq!(
        cross_entropy_forward(0, 3, &[], &[]),
        Err(KernelError::Zero { what: "rows" })
    );
    let mut g = [0.0f32; 6];
    assert_eq!(
        cross_entropy_backward(2, 3, &x, &[3, 0], 1.0, &mut g),
        Err(KernelError::LabelOutOfRange {
            row: 0,
            label: 3,
            classes: 3
        })
    );
    assert!(matches!(
        cross_entropy_backward(2, 3, &x, &[0, 0], 1.0, &mut g[..5]),
        Err(KernelError::BufferLength {
            expected: 6,
            actual: 5,
            ..
        })
    ));
    assert!(matches!(
        cross_entropy_backward(2, 3, &x, &[0, 0, 0], 1.0, &mut g),
        Err(KernelError::BufferLength {
            expected: 2,
            actual: 3,
            ..
        })
    ));
}

// ---------------------------------------------------------------- optimizers

#[test]
fn sgd_errors() {
    let mut p = [0.0f32; 4];
    let g = [0.0f32; 4];
    let bad_lr = [-0.1, f32::NAN, f32::INFINITY];
    for lr in bad_lr {
        let r = sgd_step(&SgdConfig::new(lr), &mut p, &g, &mut [], true);
        assert!(
            matches!(r, Err(KernelError::InvalidArgument { .. })),
            "lr {lr}: {r:?}"
        );
    }
    for cfg in [
        SgdConfig {
            momentum: -0.5,
            ..SgdConfig::new(0.1)
        },
        SgdConfig {
            weight_decay: -1.0,
            ..SgdConfig::new(0.1)
        },
        SgdConfig {
            nesterov: true,
            ..SgdConfig::new(0.1)
        },
        SgdConfig {
            nesterov: true,
            momentum: 0.9,
            dampening: 0.1,
            ..SgdConfig::new(0.1)
        },
    ] {
        let r = sgd_step(&cfg, &mut p, &g, &mut [0.0; 4], true);
        assert!(
            matches!(r, Err(KernelError::InvalidArgument { .. })),
            "{cfg:?}: {r:?}"
        );
    }
    assert!(matches!(
        sgd_step(&SgdConfig::new(0.1), &mut p, &g[..3], &mut [], true),
        Err(KernelError::BufferLength {
            expected: 4,
            actual: 3,
            ..
        })
    ));
    let momentum = SgdConfig {
        momentum: 0.9,
        ..SgdConfig::new(0.1)
    };
    assert!(matches!(
        sgd_step(&momentum, &mut p, &g, &mut [0.0; 3], true),
        Err(KernelError::BufferLength {
            expected: 4,
            actual: 3,
            ..
        })
    ));
    // Without momentum the buffer is not used and may be empty.
    assert_eq!(
        sgd_step(&SgdConfig::new(0.1), &mut p, &g, &mut [], true),
        Ok(())
    );
}

#[test]
fn adam_errors() {
    let mut p = [0.0f32; 4];
    let g = [0.0f32; 4];
    let (mut m, mut v) = ([0.0f32; 4], [0.0f32; 4]);
    for cfg in [
        AdamConfig::new(-1.0),
        AdamConfig::new(f32::NAN),
        AdamConfig {
            beta1: 1.0,
            ..AdamConfig::new(0.1)
        },
        AdamConfig {
            beta2: 1.5,
            ..AdamConfig::new(0.1)
        },
        AdamConfig {
            beta1: -0.1,
            ..AdamConfig::new(0.1)
        },
        AdamConfig {
            eps: -1e-8,
            ..AdamConfig::new(0.1)
        },
        AdamConfig {
            weight_decay: -0.1,
            ..AdamConfig::new(0.1)
        },
    ] {
        let r = adam_step(&cfg, 1, &mut p, &g, &mut m, &mut v);
        assert!(
            matches!(r, Err(KernelError::InvalidArgument { .. })),
            "{cfg:?}: {r:?}"
        );
    }
    let cfg = AdamConfig::new(0.1);
    assert!(matches!(
        adam_step(&cfg, 0, &mut p, &g, &mut m, &mut v),
        Err(KernelError::Zero { .. })
    ));
    assert!(matches!(
        adam_step(&cfg, 1, &mut p, &g[..3], &mut m, &mut v),
        Err(KernelError::BufferLength {
            expected: 4,
            actual: 3,
            ..
        })
    ));
    assert_eq!(
        adam_step(&cfg, 1, &mut p, &g, &mut m[..3], &mut v),
        Err(KernelError::BufferLength {
            buffer: "m",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        adam_step(&cfg, 1, &mut p, &g, &mut m, &mut [0.0; 5]),
        Err(KernelError::BufferLength {
            buffer: "v",
            expected: 4,
            actual: 5
        })
    );
    assert_eq!(adam_step(&cfg, 1, &mut p, &g, &mut m, &mut v), Ok(()));
}

#[test]
fn failed_calls_leave_outputs_untouched() {
    // A refused call must not have written half its output.
    let s = Conv2dShape::new(Conv2dParams::new(1, 1, (2, 2)), 1, 3, 3);
    let mut y = [7.0f32; 4];
    let mut ws = vec![0.0; conv2d_workspace_len(&s)];
    assert!(conv2d_forward(&s, &[0.0; 8], &[0.0; 4], None, &mut y, &mut ws).is_err());
    assert_eq!(y, [7.0; 4]);
    let mut p = [1.0f32; 3];
    assert!(sgd_step(&SgdConfig::new(0.1), &mut p, &[1.0; 2], &mut [], true).is_err());
    assert_eq!(p, [1.0; 3]);
    let mut c = [7.0f32; 4];
    let mut ws = vec![0.0; sgemm_workspace_len(2, 2, 2)];
    assert!(sgemm(
        &GemmShape::new(2, 2, 2),
        1.0,
        &[0.0; 3],
        &[0.0; 4],
        0.0,
        &mut c,
        &mut ws
    )
    .is_err());
    assert_eq!(c, [7.0; 4]);
}

// ---------------------------------------------------------------- messages

#[test]
fn display_messages_name_the_problem() {
    let cases: [(KernelError, &[&str]); 9] = [
        (KernelError::Zero { what: "stride" }, &["stride", "0"]),
        (
            KernelError::ChannelsNotDivisibleByGroups {
                what: "in_channels",
                channels: 3,
                groups: 2,
            },
            &["in_channels", "3", "groups", "2"],
        ),
        (
            KernelError::KernelTooLarge {
                axis: "width",
                kernel: 7,
                padded_input: 5,
            },
            &["kernel", "width", "7", "5"],
        ),
        (
            KernelError::PaddingTooLarge {
                axis: "height",
                padding: 2,
                kernel: 3,
            },
            &["padding", "height", "2", "3"],
        ),
        (
            KernelError::BufferLength {
                buffer: "weight",
                expected: 54,
                actual: 53,
            },
            &["weight", "54", "53"],
        ),
        (
            KernelError::LeadingDimension {
                matrix: "B",
                ld: 2,
                min: 3,
            },
            &["leading dimension", "B", "2", "3"],
        ),
        (
            KernelError::Overflow { what: "conv input" },
            &["conv input", "overflow"],
        ),
        (
            KernelError::LabelOutOfRange {
                row: 1,
                label: 10,
                classes: 10,
            },
            &["label", "10", "row 1"],
        ),
        (
            KernelError::InvalidArgument {
                what: "Adam betas must be in [0, 1)",
            },
            &["Adam betas"],
        ),
    ];
    for (e, words) in cases {
        let msg = e.to_string();
        for w in words {
            assert!(
                msg.contains(w),
                "{e:?} displays as {msg:?}, which lacks {w:?}"
            );
        }
        // Usable as a std error.
        let _: &dyn std::error::Error = &e;
    }
    // The errors a kernel returns carry the real numbers into the message.
    let s = Conv2dShape::new(Conv2dParams::new(2, 3, (3, 3)), 1, 5, 5);
    let msg = conv_fwd(&s, 50, 53, None, 27).unwrap_err().to_string();
    assert!(
        msg.contains("weight") && msg.contains("54") && msg.contains("53"),
        "{msg}"
    );
    let msg = shape(Conv2dParams::new(1, 1, (6, 3)))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("height") && msg.contains('6') && msg.contains('5'),
        "{msg}"
    );
}

#[test]
fn batch_norm_and_adaptive_pool_errors() {
    let s = BatchNormShape::new(2, 3, 4);
    let x = [0.0; 24];
    let (mut m, mut v) = ([0.0; 3], [0.0; 3]);
    assert!(matches!(
        batch_norm_stats(&s, &x[..23], &mut m, &mut v),
        Err(KernelError::BufferLength {
            buffer: "x",
            expected: 24,
            actual: 23
        })
    ));
    assert!(matches!(
        batch_norm_stats(&s, &x, &mut m[..2], &mut v),
        Err(KernelError::BufferLength { buffer: "mean", .. })
    ));
    assert!(matches!(
        batch_norm_stats(&BatchNormShape::new(0, 3, 4), &[], &mut m, &mut v),
        Err(KernelError::Zero { .. })
    ));
    let stats = BatchNormStats {
        mean: &[0.0; 3],
        var: &[1.0; 3],
        eps: 1e-5,
    };
    let mut y = [0.0; 24];
    assert!(matches!(
        batch_norm_forward(&s, &x, &stats, Some(&[1.0; 2]), None, &mut y),
        Err(KernelError::BufferLength {
            buffer: "weight",
            ..
        })
    ));
    assert!(matches!(
        batch_norm_forward(&s, &x, &stats, None, None, &mut y[..20]),
        Err(KernelError::BufferLength { buffer: "y", .. })
    ));
    let short = BatchNormStats {
        mean: &[0.0; 3],
        var: &[1.0; 4],
        eps: 1e-5,
    };
    assert!(matches!(
        batch_norm_forward(&s, &x, &short, None, None, &mut y),
        Err(KernelError::BufferLength { buffer: "var", .. })
    ));
    let mut gw = [0.0; 2];
    let grads = BatchNormGrads {
        weight: Some(&mut gw),
        ..Default::default()
    };
    assert!(matches!(
        batch_norm_backward(&s, &x, &x, &stats, None, true, grads),
        Err(KernelError::BufferLength {
            buffer: "grad_weight",
            ..
        })
    ));
    assert!(BatchNormShape::new(usize::MAX, 2, 2).len().is_err());

    let p = AdaptivePool2dShape::new(1, 1, (4, 4), (0, 2));
    assert!(matches!(
        adaptive_avg_pool2d_forward(&p, &[0.0; 16], &mut []),
        Err(KernelError::Zero {
            what: "output height"
        })
    ));
    let p = AdaptivePool2dShape::new(1, 1, (4, 4), (2, 2));
    assert!(matches!(
        adaptive_avg_pool2d_forward(&p, &[0.0; 16], &mut [0.0; 3]),
        Err(KernelError::BufferLength {
            buffer: "output",
            ..
        })
    ));
    assert!(matches!(
        adaptive_avg_pool2d_backward(&p, &[0.0; 4], &mut [0.0; 15]),
        Err(KernelError::BufferLength {
            buffer: "input",
            ..
        })
    ));
}
