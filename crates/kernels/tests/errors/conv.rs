//! Convolution parameters, buffers and workspaces; corr2d.

use super::*;

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
