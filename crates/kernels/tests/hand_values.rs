//! Numbers printed by the seed notebooks (PyTorch, d2l chapter 6) and small hand-computed
//! cases. Every expected value here comes from the notebook text or from arithmetic done by
//! hand in the comments, never from the code under test.

mod common;

use common::{arange, assert_all_close};
use tinycnn_kernels::*;

/// Runs the fast forward convolution with each algorithm and checks all agree, returning one.
fn conv(s: &Conv2dShape, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let n = s.output_len().unwrap();
    let mut first: Option<Vec<f32>> = None;
    for algo in [ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2colGemm] {
        let mut y = vec![f32::NAN; n];
        let mut ws = vec![f32::NAN; conv2d_workspace_len_for(algo, s)];
        conv2d_forward_with(algo, s, x, w, b, &mut y, &mut ws).unwrap();
        match &first {
            None => first = Some(y),
            Some(f) => assert_all_close(&format!("{algo:?} vs Auto"), &y, f, 1e-5),
        }
    }
    let mut y_ref = vec![0.0; n];
    reference::conv2d(s, x, w, b, &mut y_ref).unwrap();
    let y = first.unwrap();
    assert_all_close("fast vs reference", &y, &y_ref, 1e-5);
    y
}

fn corr2d_both(x: &[f32], x_hw: (usize, usize), k: &[f32], k_hw: (usize, usize)) -> Vec<f32> {
    let n = (x_hw.0 - k_hw.0 + 1) * (x_hw.1 - k_hw.1 + 1);
    let mut y = vec![f32::NAN; n];
    corr2d(x, x_hw, k, k_hw, &mut y).unwrap();
    let mut y_ref = vec![f32::NAN; n];
    reference::corr2d(x, x_hw, k, k_hw, &mut y_ref).unwrap();
    assert_eq!(y, y_ref, "corr2d fast vs reference");
    y
}

// ---------------------------------------------------------------- cross-correlation

#[test]
fn corr2d_d2l_example() {
    // X = 0..9 as 3x3, K = [[0,1],[2,3]]: 0*0+1*1+3*2+4*3 = 19, and so on.
    let y = corr2d_both(&arange(9), (3, 3), &[0.0, 1.0, 2.0, 3.0], (2, 2));
    assert_eq!(y, [19.0, 25.0, 37.0, 43.0]);
}

#[test]
fn corr2d_d2l_example_as_conv2d_with_bias() {
    // The notebook's Conv2D layer is corr2d + bias; bias 0.5 shifts every output.
    let s = Conv2dShape::new(Conv2dParams::new(1, 1, (2, 2)), 1, 3, 3);
    let y = conv(&s, &arange(9), &[0.0, 1.0, 2.0, 3.0], Some(&[0.5]));
    assert_eq!(y, [19.5, 25.5, 37.5, 43.5]);
}

/// The notebook's 6x8 image: ones, with columns 2..6 black (zero).
fn edge_image() -> Vec<f32> {
    let mut x = vec![1.0f32; 6 * 8];
    for r in 0..6 {
        for c in 2..6 {
            x[r * 8 + c] = 0.0;
        }
    }
    x
}

#[test]
fn edge_detection_finds_vertical_edges() {
    let x = edge_image();
    let k = [1.0, -1.0];
    let y = corr2d_both(&x, (6, 8), &k, (1, 2));
    // Notebook: every row is [0, 1, 0, 0, 0, -1, 0].
    let row = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0];
    let expected: Vec<f32> = (0..6).flat_map(|_| row).collect();
    assert_eq!(y, expected);
    // Same through conv2d (batch 1, one channel).
    let s = Conv2dShape::new(Conv2dParams::new(1, 1, (1, 2)), 1, 6, 8);
    assert_eq!(conv(&s, &x, &k, None), expected);
}

#[test]
fn edge_detection_misses_horizontal_edges() {
    let x = edge_image();
    let mut xt = vec![0.0f32; 8 * 6];
    for r in 0..6 {
        for c in 0..8 {
            xt[c * 6 + r] = x[r * 8 + c];
        }
    }
    // Notebook: corr2d(X.t(), K) is an 8x5 matrix of zeros.
    let y = corr2d_both(&xt, (8, 6), &[1.0, -1.0], (1, 2));
    assert_eq!(y, vec![0.0; 8 * 5]);
}

#[test]
fn diagonal_image_with_3x3_vertical_edge_kernel() {
    // Notebook 004, exercise 1: 6x6 image with a diagonal edge, K = [[1,0,-1]] * 3 rows.
    #[rustfmt::skip]
    let x = [
        1., 1., 1., 0., 0., 0.,
        1., 1., 1., 0., 0., 0.,
        1., 1., 1., 0., 0., 0.,
        0., 0., 0., 1., 1., 1.,
        0., 0., 0., 1., 1., 1.,
        0., 0., 0., 1., 1., 1.,
    ];
    let k = [1., 0., -1., 1., 0., -1., 1., 0., -1.];
    #[rustfmt::skip]
    let expected = [
        0.,  3.,  3., 0.,
        0.,  1.,  1., 0.,
        0., -1., -1., 0.,
        0., -3., -3., 0.,
    ];
    let s = Conv2dShape::new(Conv2dParams::new(1, 1, (3, 3)), 1, 6, 6);
    assert_eq!(conv(&s, &x, &k, None), expected);
    // The image is symmetric, so its transpose gives the same output (as printed).
    let mut xt = [0.0f32; 36];
    for r in 0..6 {
        for c in 0..6 {
            xt[c * 6 + r] = x[r * 6 + c];
        }
    }
    assert_eq!(conv(&s, &xt, &k, None), expected);
}

#[test]
fn conv_via_matmul_example() {
    // Notebook 004, exercise 3: X = 1..9 (3x3), K = [[1,0],[0,-1]] -> all -4.
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let s = Conv2dShape::new(Conv2dParams::new(1, 1, (2, 2)), 1, 3, 3);
    assert_eq!(conv(&s, &x, &[1., 0., 0., -1.], None), [-4.0; 4]);
}

#[test]
fn laplacian_and_box_filter_with_padding() {
    // Notebook 004: same diagonal image, padding 1, Laplacian and 3x3 mean kernels.
    #[rustfmt::skip]
    let x = [
        1., 1., 1., 0., 0., 0.,
        1., 1., 1., 0., 0., 0.,
        1., 1., 1., 0., 0., 0.,
        0., 0., 0., 1., 1., 1.,
        0., 0., 0., 1., 1., 1.,
        0., 0., 0., 1., 1., 1.,
    ];
    let s = Conv2dShape::new(
        Conv2dParams::new(1, 1, (3, 3)).with_padding((1, 1)),
        1,
        6,
        6,
    );
    let laplacian = [0., 1., 0., 1., -4., 1., 0., 1., 0.];
    #[rustfmt::skip]
    let expected_laplacian = [
        -2., -1., -2.,  1.,  0.,  0.,
        -1.,  0., -1.,  1.,  0.,  0.,
        -2., -1., -2.,  2.,  1.,  1.,
         1.,  1.,  2., -2., -1., -2.,
         0.,  0.,  1., -1.,  0., -1.,
         0.,  0.,  1., -2., -1., -2.,
    ];
    assert_eq!(conv(&s, &x, &laplacian, None), expected_laplacian);

    let mean = [1.0 / 9.0; 9];
    // Printed with 4 decimals: 0.4444 = 4/9, 0.6667 = 6/9, ...; counts of ones in each window.
    #[rustfmt::skip]
    let ninths = [
        4., 6., 4., 2., 0., 0.,
        6., 9., 6., 3., 0., 0.,
        4., 6., 5., 4., 3., 2.,
        2., 3., 4., 5., 6., 4.,
        0., 0., 3., 6., 9., 6.,
        0., 0., 2., 4., 6., 4.,
    ];
    let expected: Vec<f32> = ninths.iter().map(|v| v / 9.0).collect();
    assert_all_close("box filter", &conv(&s, &x, &mean, None), &expected, 1e-6);
}

// ---------------------------------------------------------------- padding and stride

#[test]
fn padding_and_stride_output_shapes() {
    // Notebook: 8x8 input through four Conv2d layers.
    let cases: [(
        (usize, usize),
        (usize, usize),
        (usize, usize),
        (usize, usize),
    ); 4] = [
        ((3, 3), (1, 1), (1, 1), (8, 8)),
        ((5, 3), (2, 1), (1, 1), (8, 8)),
        ((3, 3), (1, 1), (2, 2), (4, 4)),
        ((3, 5), (0, 1), (3, 4), (2, 2)),
    ];
    let mut rng = common::Rng::new(7);
    let x = rng.vec(64, -1.0, 1.0);
    for (kernel, padding, stride, out) in cases {
        assert_eq!(
            out_size("height", 8, kernel.0, stride.0, padding.0, 1).unwrap(),
            out.0
        );
        assert_eq!(
            out_size("width", 8, kernel.1, stride.1, padding.1, 1).unwrap(),
            out.1
        );
        let p = Conv2dParams::new(1, 1, kernel)
            .with_padding(padding)
            .with_stride(stride);
        assert_eq!(p.out_hw(8, 8).unwrap(), out);
        let s = Conv2dShape::new(p, 1, 8, 8);
        assert_eq!(s.out_hw().unwrap(), out);
        assert_eq!(s.output_len().unwrap(), out.0 * out.1);
        let w = rng.vec(kernel.0 * kernel.1, -1.0, 1.0);
        let y = conv(&s, &x, &w, None);
        assert_eq!(y.len(), out.0 * out.1);
        // The window of output (0, 0) starts at (-padding) in each axis; check it by hand.
        let mut acc = 0.0f32;
        for ky in 0..kernel.0 {
            for kx in 0..kernel.1 {
                let (iy, ix) = (
                    ky as isize - padding.0 as isize,
                    kx as isize - padding.1 as isize,
                );
                if (0..8).contains(&iy) && (0..8).contains(&ix) {
                    acc += x[iy as usize * 8 + ix as usize] * w[ky * kernel.1 + kx];
                }
            }
        }
        assert!(
            (y[0] - acc).abs() < 1e-5,
            "{kernel:?}: y[0] {} vs {acc}",
            y[0]
        );
    }
}

#[test]
fn lenet_shapes() {
    // LeNet on 28x28: conv 5x5 pad 2 -> 28, pool 2 -> 14, conv 5x5 -> 10, pool 2 -> 5.
    assert_eq!(out_size("height", 28, 5, 1, 2, 1).unwrap(), 28);
    assert_eq!(Pool2dParams::new(2).out_hw(28, 28).unwrap(), (14, 14));
    assert_eq!(
        Conv2dParams::new(6, 16, (5, 5)).out_hw(14, 14).unwrap(),
        (10, 10)
    );
    assert_eq!(Pool2dParams::new(2).out_hw(10, 10).unwrap(), (5, 5));
    // Dilation 2 makes a 3x3 kernel span 5: (8 - 5) / 1 + 1 = 4.
    assert_eq!(out_size("height", 8, 3, 1, 0, 2).unwrap(), 4);
}

// ---------------------------------------------------------------- channels

#[test]
fn multi_input_channels() {
    // Notebook 002: X = [0..9, 1..10] (two 3x3 channels), K = [[0,1],[2,3]], [[1,2],[3,4]].
    let mut x = arange(9);
    x.extend((1..=9).map(|v| v as f32));
    let k = [0., 1., 2., 3., 1., 2., 3., 4.];
    let s = Conv2dShape::new(Conv2dParams::new(2, 1, (2, 2)), 1, 3, 3);
    assert_eq!(conv(&s, &x, &k, None), [56., 72., 104., 120.]);
}

#[test]
fn multi_input_and_output_channels() {
    // Notebook 002: K4 = stack(K, K+1, K+2) -> 3 output channels.
    let mut x = arange(9);
    x.extend((1..=9).map(|v| v as f32));
    let k = [0., 1., 2., 3., 1., 2., 3., 4.];
    let w: Vec<f32> = (0..3)
        .flat_map(|d| k.iter().map(move |v| v + d as f32))
        .collect();
    let s = Conv2dShape::new(Conv2dParams::new(2, 3, (2, 2)), 1, 3, 3);
    #[rustfmt::skip]
    let expected = [
        56., 72., 104., 120.,
        76., 100., 148., 172.,
        96., 128., 192., 224.,
    ];
    assert_eq!(conv(&s, &x, &w, None), expected);
}

#[test]
fn three_channel_example_from_notebook_000() {
    // X: three 2x3 channels, K: three 2x2 kernels; outputs 1x2 per output channel.
    #[rustfmt::skip]
    let x = [
        0., 1., 2., 1., 2., 3.,
        3., 4., 5., 4., 5., 6.,
        6., 7., 8., 7., 8., 9.,
    ];
    let k = [0., 1., 2., 3., 1., 2., 3., 4., 2., 3., 4., 5.];
    let w: Vec<f32> = (0..3)
        .flat_map(|d| k.iter().map(move |v| v + d as f32))
        .collect();
    let s = Conv2dShape::new(Conv2dParams::new(3, 3, (2, 2)), 1, 2, 3);
    assert_eq!(conv(&s, &x, &w, None), [153., 183., 201., 243., 249., 303.]);
}

#[test]
fn one_by_one_conv_is_a_matmul() {
    // corr2d_multi_in_out_1x1: Y = K (c_o x c_i) @ X (c_i x h*w). Small integers keep it exact.
    let mut rng = common::Rng::new(11);
    let x: Vec<f32> = (0..27).map(|_| (rng.below(9) as f32) - 4.0).collect();
    let k: Vec<f32> = (0..6).map(|_| (rng.below(7) as f32) - 3.0).collect();
    let s = Conv2dShape::new(Conv2dParams::new(3, 2, (1, 1)), 1, 3, 3);
    let y_conv = conv(&s, &x, &k, None);

    let mut by_hand = vec![0.0f32; 18];
    for o in 0..2 {
        for p in 0..9 {
            by_hand[o * 9 + p] = (0..3).map(|c| k[o * 3 + c] * x[c * 9 + p]).sum();
        }
    }
    assert_eq!(y_conv, by_hand);

    let g = GemmShape::new(2, 9, 3);
    let mut y_mm = vec![f32::NAN; 18];
    let mut ws = vec![0.0; sgemm_workspace_len(2, 9, 3)];
    sgemm(&g, 1.0, &k, &x, 0.0, &mut y_mm, &mut ws).unwrap();
    assert_eq!(y_mm, by_hand);
}

// ---------------------------------------------------------------- pooling

fn max_pool(s: &Pool2dShape, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let n = s.output_len().unwrap();
    let (mut y, mut arg) = (vec![f32::NAN; n], vec![u32::MAX; n]);
    max_pool2d_forward(s, x, &mut y, &mut arg).unwrap();
    let (mut yr, mut ar) = (vec![0.0; n], vec![0; n]);
    reference::max_pool2d(s, x, &mut yr, &mut ar).unwrap();
    common::assert_same("max pool fast vs reference", &y, &yr);
    assert_eq!(arg, ar, "max pool argmax fast vs reference");
    (y, arg)
}

fn avg_pool(s: &Pool2dShape, x: &[f32]) -> Vec<f32> {
    let n = s.output_len().unwrap();
    let mut y = vec![f32::NAN; n];
    avg_pool2d_forward(s, x, &mut y).unwrap();
    let mut yr = vec![0.0; n];
    reference::avg_pool2d(s, x, &mut yr).unwrap();
    assert_all_close("avg pool fast vs reference", &y, &yr, 1e-6);
    y
}

#[test]
fn pool2d_2x2_stride_1() {
    // d2l's pool2d(X, (2, 2)) on 0..9: stride 1, no padding.
    let p = Pool2dParams::new(2).with_stride((1, 1));
    let s = Pool2dShape::new(p, 1, 1, 3, 3);
    let (y, arg) = max_pool(&s, &arange(9));
    assert_eq!(y, [4., 5., 7., 8.]);
    assert_eq!(arg, [4, 5, 7, 8]);
    // 'avg': (0+1+3+4)/4 = 2, ...
    assert_eq!(avg_pool(&s, &arange(9)), [2., 3., 5., 6.]);
}

#[test]
fn max_pool_padding_and_stride_on_4x4() {
    let x = arange(16);
    // nn.MaxPool2d(3): stride defaults to the kernel -> one window, max 10.
    let (y, arg) = max_pool(&Pool2dShape::new(Pool2dParams::new(3), 1, 1, 4, 4), &x);
    assert_eq!(y, [10.]);
    assert_eq!(arg, [10]);
    // nn.MaxPool2d(3, padding=1, stride=2).
    let p = Pool2dParams::new(3)
        .with_padding((1, 1))
        .with_stride((2, 2));
    let (y, arg) = max_pool(&Pool2dShape::new(p, 1, 1, 4, 4), &x);
    assert_eq!(y, [5., 7., 13., 15.]);
    assert_eq!(arg, [5, 7, 13, 15]);
    // nn.MaxPool2d((2, 3), stride=(2, 3), padding=(0, 1))   (notebook 003).
    let p = Pool2dParams::with_kernel((2, 3)).with_padding((0, 1));
    assert_eq!(p.stride, (2, 3));
    let (y, _) = max_pool(&Pool2dShape::new(p, 1, 1, 4, 4), &x);
    assert_eq!(y, [5., 7., 13., 15.]);
    // nn.MaxPool2d((2, 3), padding=(1, 1), stride=(2, 3))   (notebook 000): 3x2 output.
    let p = Pool2dParams::with_kernel((2, 3)).with_padding((1, 1));
    let s = Pool2dShape::new(p, 1, 1, 4, 4);
    assert_eq!(s.out_hw().unwrap(), (3, 2));
    let (y, _) = max_pool(&s, &x);
    assert_eq!(y, [1., 3., 9., 11., 13., 15.]);
}

#[test]
fn max_pool_two_channels() {
    // X = cat(X, X + 1) on the channel axis; MaxPool2d(3, padding=1, stride=2).
    let mut x = arange(16);
    x.extend((1..=16).map(|v| v as f32));
    let p = Pool2dParams::new(3)
        .with_padding((1, 1))
        .with_stride((2, 2));
    let (y, arg) = max_pool(&Pool2dShape::new(p, 1, 2, 4, 4), &x);
    assert_eq!(y, [5., 7., 13., 15., 6., 8., 14., 16.]);
    // argmax indexes within each channel's plane.
    assert_eq!(arg, [5, 7, 13, 15, 5, 7, 13, 15]);
}

#[test]
fn avg_pool_padding_divisors() {
    // 4x4 arange, kernel 3, padding 1, stride 2. Window of output (0,0) covers rows/cols -1..1:
    // real elements 0,1,4,5 (sum 10). With count_include_pad the divisor is 9, else 4.
    let x = arange(16);
    let p = Pool2dParams::new(3)
        .with_padding((1, 1))
        .with_stride((2, 2));
    let y = avg_pool(&Pool2dShape::new(p, 1, 1, 4, 4), &x);
    // (0,1): rows -1..1, cols 1..3 -> 1+2+3+5+6+7 = 24; (1,0): rows 1..3, cols -1..1 -> 4+5+8+9+12+13 = 51;
    // (1,1): rows 1..3, cols 1..3 -> 5+6+7+9+10+11+13+14+15 = 90.
    assert_all_close(
        "include pad",
        &y,
        &[10. / 9., 24. / 9., 51. / 9., 90. / 9.],
        1e-6,
    );
    let y = avg_pool(
        &Pool2dShape::new(p.with_count_include_pad(false), 1, 1, 4, 4),
        &x,
    );
    assert_all_close(
        "exclude pad",
        &y,
        &[10. / 4., 24. / 6., 51. / 6., 90. / 9.],
        1e-6,
    );
}

#[test]
fn max_pool_backward_routes_to_argmax() {
    let x = arange(16);
    let p = Pool2dParams::new(3)
        .with_padding((1, 1))
        .with_stride((2, 2));
    let s = Pool2dShape::new(p, 1, 1, 4, 4);
    let (_, arg) = max_pool(&s, &x);
    let mut gx = vec![f32::NAN; 16];
    max_pool2d_backward(&s, &[1., 2., 3., 4.], &arg, &mut gx).unwrap();
    let mut expected = [0.0f32; 16];
    expected[5] = 1.;
    expected[7] = 2.;
    expected[13] = 3.;
    expected[15] = 4.;
    assert_eq!(gx, expected);
}

#[test]
fn avg_pool_backward_spreads_evenly() {
    // 2x2 windows, stride 2 on 4x4: each input gets grad / 4 of its window's output.
    let s = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 4, 4);
    let mut gx = vec![f32::NAN; 16];
    avg_pool2d_backward(&s, &[4., 8., 12., 16.], &mut gx).unwrap();
    #[rustfmt::skip]
    let expected = [
        1., 1., 2., 2.,
        1., 1., 2., 2.,
        3., 3., 4., 4.,
        3., 3., 4., 4.,
    ];
    assert_eq!(gx, expected);
}

#[test]
fn max_pool_nan_propagates() {
    // PyTorch's max pooling propagates NaN; the reference documents "first NaN wins".
    let mut x = arange(16);
    x[6] = f32::NAN;
    let s = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 4, 4);
    let (y, arg) = max_pool(&s, &x);
    assert_eq!(y[0], 5.0);
    assert!(y[1].is_nan(), "window with NaN gave {}", y[1]);
    assert_eq!(arg[1], 6);
    assert_eq!(&y[2..], &[13., 15.]);
}

// ---------------------------------------------------------------- GEMM

#[test]
fn sgemm_2x3_by_3x2() {
    // [[1,2,3],[4,5,6]] @ [[7,8],[9,10],[11,12]] = [[58,64],[139,154]].
    let a = [1., 2., 3., 4., 5., 6.];
    let b = [7., 8., 9., 10., 11., 12.];
    let at = [1., 4., 2., 5., 3., 6.]; // A^T stored 3x2
    let bt = [7., 9., 11., 8., 10., 12.]; // B^T stored 2x3
    let expected = [58., 64., 139., 154.];
    let mut ws = vec![0.0; sgemm_workspace_len(2, 2, 3)];
    for (ta, tb) in [
        (Transpose::No, Transpose::No),
        (Transpose::Yes, Transpose::No),
        (Transpose::No, Transpose::Yes),
        (Transpose::Yes, Transpose::Yes),
    ] {
        let g = GemmShape::new(2, 2, 3).with_transpose(ta, tb);
        let aa: &[f32] = if ta == Transpose::No { &a } else { &at };
        let bb: &[f32] = if tb == Transpose::No { &b } else { &bt };
        let mut c = [f32::NAN; 4];
        sgemm(&g, 1.0, aa, bb, 0.0, &mut c, &mut ws).unwrap();
        assert_eq!(c, expected, "{ta:?} {tb:?}");
        // alpha 2, beta 0.5 on C = 1: 2 * AB + 0.5.
        let mut c = [1.0f32; 4];
        sgemm(&g, 2.0, aa, bb, 0.5, &mut c, &mut ws).unwrap();
        assert_eq!(c, [116.5, 128.5, 278.5, 308.5], "{ta:?} {tb:?}");
    }
}

#[test]
fn sgemm_leading_dimensions_leave_gaps_untouched() {
    // A is 2x3 inside rows of 5, B 3x2 inside rows of 4, C 2x2 inside rows of 3.
    let a = [1., 2., 3., -9., -9., 4., 5., 6.];
    let b = [7., 8., -9., -9., 9., 10., -9., -9., 11., 12.];
    let mut c = [0., 0., 99., 0., 0.];
    let g = GemmShape::new(2, 2, 3).with_ld(5, 4, 3);
    let mut ws = vec![0.0; sgemm_workspace_len(2, 2, 3)];
    sgemm(&g, 1.0, &a, &b, 0.0, &mut c, &mut ws).unwrap();
    assert_eq!(c, [58., 64., 99., 139., 154.]);
}

#[test]
fn sgemm_k_zero_scales_c() {
    // An empty sum: C = beta * C.
    let g = GemmShape::new(2, 2, 0).with_ld(1, 2, 2);
    let mut c = [1., 2., 3., 4.];
    let mut ws = vec![0.0; sgemm_workspace_len(2, 2, 0)];
    sgemm(&g, 3.0, &[], &[], 0.5, &mut c, &mut ws).unwrap();
    assert_eq!(c, [0.5, 1.0, 1.5, 2.0]);
}

// ---------------------------------------------------------------- losses

#[test]
fn softmax_of_zero_and_ln2() {
    // exp(0) : exp(ln 2) = 1 : 2.
    let x = [0.0, std::f32::consts::LN_2];
    let mut y = [f32::NAN; 2];
    softmax_forward(1, 2, &x, &mut y).unwrap();
    assert_all_close("softmax", &y, &[1. / 3., 2. / 3.], 1e-6);
    log_softmax_forward(1, 2, &x, &mut y).unwrap();
    let ln3 = 3.0f32.ln();
    assert_all_close(
        "log_softmax",
        &y,
        &[-ln3, std::f32::consts::LN_2 - ln3],
        1e-6,
    );
    // Shifting by 1000 changes nothing (stability).
    let x = [1000.0, 1000.0 + std::f32::consts::LN_2];
    softmax_forward(1, 2, &x, &mut y).unwrap();
    assert_all_close("softmax shifted", &y, &[1. / 3., 2. / 3.], 1e-4);
}

#[test]
fn softmax_and_log_softmax_backward() {
    // softmax y = [1/3, 2/3], grad_y = [1, 0]: sum(g*y) = 1/3, grad_x = y * (g - 1/3) = [2/9, -2/9].
    let y = [1. / 3., 2. / 3.];
    let mut gx = [f32::NAN; 2];
    softmax_backward(1, 2, &y, &[1., 0.], &mut gx).unwrap();
    assert_all_close("softmax backward", &gx, &[2. / 9., -2. / 9.], 1e-6);
    // log_softmax: grad_x = g - softmax * sum(g) = [1 - 1/3, -2/3].
    let ly = [(1.0f32 / 3.0).ln(), (2.0f32 / 3.0).ln()];
    log_softmax_backward(1, 2, &ly, &[1., 0.], &mut gx).unwrap();
    assert_all_close("log_softmax backward", &gx, &[2. / 3., -2. / 3.], 1e-6);
}

#[test]
fn cross_entropy_two_rows() {
    // Row 0: logits [0, ln 2], label 0 -> -log(1/3) = ln 3.
    // Row 1: logits [ln 3, 0], label 1 -> softmax [3/4, 1/4] -> -log(1/4) = ln 4.
    // Mean: (ln 3 + ln 4) / 2 = ln(12) / 2.
    let logits = [0.0, std::f32::consts::LN_2, 3.0f32.ln(), 0.0];
    let labels = [0u32, 1];
    let loss = cross_entropy_forward(2, 2, &logits, &labels).unwrap();
    assert!((loss - 12.0f32.ln() / 2.0).abs() < 1e-6, "loss {loss}");
    // grad = (softmax - onehot) / rows: row 0 [-2/3, 2/3] / 2, row 1 [3/4, -3/4] / 2; times 2.0.
    let mut g = [f32::NAN; 4];
    cross_entropy_backward(2, 2, &logits, &labels, 2.0, &mut g).unwrap();
    assert_all_close(
        "ce backward",
        &g,
        &[-2. / 3., 2. / 3., 3. / 4., -3. / 4.],
        1e-6,
    );
}

#[test]
fn cross_entropy_is_stable_for_large_logits() {
    // [1000, 0]: label 0 costs ~exp(-1000) = 0, label 1 costs 1000.
    let loss = cross_entropy_forward(1, 2, &[1000.0, 0.0], &[0]).unwrap();
    assert!(loss.abs() < 1e-6, "loss {loss}");
    let loss = cross_entropy_forward(1, 2, &[1000.0, 0.0], &[1]).unwrap();
    assert!((loss - 1000.0).abs() < 1e-3, "loss {loss}");
    // Uniform logits over 10 classes: ln 10.
    let loss = cross_entropy_forward(1, 10, &[-3.0; 10], &[7]).unwrap();
    assert!((loss - 10.0f32.ln()).abs() < 1e-6, "loss {loss}");
}

// ---------------------------------------------------------------- activations and bias

#[test]
fn activations_by_hand() {
    let mut y = [f32::NAN; 3];
    relu_forward(&[-1.0, 0.0, 2.0], &mut y).unwrap();
    assert_eq!(y, [0.0, 0.0, 2.0]);
    // Gradient at exactly 0 is 0 (PyTorch).
    relu_backward(&[-1.0, 0.0, 2.0], &[5.0, 5.0, 5.0], &mut y).unwrap();
    assert_eq!(y, [0.0, 0.0, 5.0]);

    // ReLU6 (PyTorch's hardtanh(0, 6)): clamps, keeps NaN; no gradient at 0 and 6, the
    // gradient passes where x is NaN. 17 elements, so the vector loop and the tail both run.
    let x = [
        -1.0,
        0.0,
        2.0,
        6.0,
        7.0,
        f32::NAN,
        5.5,
        -0.0,
        6.5,
        1.0,
        3.0,
        4.0,
        9.0,
        -3.0,
        0.5,
        6.0,
        f32::NAN,
    ];
    let mut y6 = [f32::NAN; 17];
    relu6_forward(&x, &mut y6).unwrap();
    let want = [
        0.0,
        0.0,
        2.0,
        6.0,
        6.0,
        f32::NAN,
        5.5,
        0.0,
        6.0,
        1.0,
        3.0,
        4.0,
        6.0,
        0.0,
        0.5,
        6.0,
        f32::NAN,
    ];
    for (i, (a, b)) in y6.iter().zip(want).enumerate() {
        assert!(
            a == &b || (a.is_nan() && b.is_nan()),
            "relu6[{i}]: {a} vs {b}"
        );
    }
    relu6_backward(&x, &[5.0; 17], &mut y6).unwrap();
    assert_eq!(
        y6,
        [0.0, 0.0, 5.0, 0.0, 0.0, 5.0, 5.0, 0.0, 0.0, 5.0, 5.0, 5.0, 0.0, 0.0, 5.0, 0.0, 5.0]
    );

    // sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4.
    let l3 = 3.0f32.ln();
    sigmoid_forward(&[0.0, l3, -l3], &mut y).unwrap();
    assert_all_close("sigmoid", &y, &[0.5, 0.75, 0.25], 1e-6);
    // grad = g * y (1 - y): 1 * 1/4, 2 * 3/16, 4 * 3/16.
    sigmoid_backward(&[0.5, 0.75, 0.25], &[1.0, 2.0, 4.0], &mut y).unwrap();
    assert_all_close("sigmoid backward", &y, &[0.25, 0.375, 0.75], 1e-6);

    // tanh(ln 2) = (2 - 1/2) / (2 + 1/2) = 0.6.
    let l2 = std::f32::consts::LN_2;
    tanh_forward(&[0.0, l2, -l2], &mut y).unwrap();
    assert_all_close("tanh", &y, &[0.0, 0.6, -0.6], 1e-6);
    // grad = g (1 - y^2): 1, 0.64 * 2, 0.64 * 3.
    tanh_backward(&[0.0, 0.6, -0.6], &[1.0, 2.0, 3.0], &mut y).unwrap();
    assert_all_close("tanh backward", &y, &[1.0, 1.28, 1.92], 1e-6);
}

#[test]
fn activations_saturate_without_nan() {
    let x = [
        -1000.0,
        -100.0,
        100.0,
        1000.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    let mut y = [f32::NAN; 6];
    // sigmoid(-100) = 3.7e-44 (subnormal), so compare with an absolute tolerance.
    sigmoid_forward(&x, &mut y).unwrap();
    assert_all_close("sigmoid", &y, &[0.0, 0.0, 1.0, 1.0, 1.0, 0.0], 1e-6);
    assert!(y.iter().all(|v| (0.0..=1.0).contains(v)), "{y:?}");
    tanh_forward(&x, &mut y).unwrap();
    assert_all_close("tanh", &y, &[-1.0, -1.0, 1.0, 1.0, 1.0, -1.0], 1e-6);
    assert!(y.iter().all(|v| (-1.0..=1.0).contains(v)), "{y:?}");
}

#[test]
fn bias_add_and_backward() {
    // [outer 2, channels 3, inner 2]
    let mut x = vec![0.0f32; 12];
    bias_add(2, 3, 2, &[1., 2., 3.], &mut x).unwrap();
    assert_eq!(x, [1., 1., 2., 2., 3., 3., 1., 1., 2., 2., 3., 3.]);
    // Channel c gets the sum of its 4 entries.
    let g = arange(12);
    let mut gb = [f32::NAN; 3];
    bias_backward(2, 3, 2, &g, &mut gb).unwrap();
    // c0: 0+1+6+7 = 14, c1: 2+3+8+9 = 22, c2: 4+5+10+11 = 30.
    assert_eq!(gb, [14., 22., 30.]);
}

#[test]
fn conv_bias_backward_sums_batch_and_space() {
    // batch 2, 2 output channels of 2x2: gradient per channel = sum of its 8 entries.
    let s = Conv2dShape::new(Conv2dParams::new(1, 2, (1, 1)), 2, 2, 2);
    let g = arange(16);
    let mut gb = [f32::NAN; 2];
    conv2d_backward_bias(&s, &g, &mut gb).unwrap();
    // c0: (0+1+2+3) + (8+9+10+11) = 44; c1: (4+..+7) + (12+..+15) = 76.
    assert_eq!(gb, [44., 76.]);
}

// ---------------------------------------------------------------- optimizers

#[test]
fn sgd_plain_and_weight_decay() {
    // p = 1, g = 0.5, lr = 0.1: p -= 0.05.
    let mut p = [1.0f32];
    sgd_step(&SgdConfig::new(0.1), &mut p, &[0.5], &mut [], true).unwrap();
    assert_all_close("plain", &p, &[0.95], 1e-6);
    // weight decay 0.1: d = 0.5 + 0.1 * 1 = 0.6, p = 1 - 0.06.
    let mut p = [1.0f32];
    let cfg = SgdConfig {
        weight_decay: 0.1,
        ..SgdConfig::new(0.1)
    };
    sgd_step(&cfg, &mut p, &[0.5], &mut [], true).unwrap();
    assert_all_close("weight decay", &p, &[0.94], 1e-6);
}

#[test]
fn sgd_momentum_two_steps() {
    // momentum 0.9: step 1 buf = g = 0.5, p = 0.95; step 2 buf = 0.45 + 0.5 = 0.95, p = 0.855.
    let cfg = SgdConfig {
        momentum: 0.9,
        ..SgdConfig::new(0.1)
    };
    let (mut p, mut buf) = ([1.0f32], [f32::NAN]);
    sgd_step(&cfg, &mut p, &[0.5], &mut buf, true).unwrap();
    assert_all_close("step 1", &p, &[0.95], 1e-6);
    assert_all_close("buf 1", &buf, &[0.5], 1e-6);
    sgd_step(&cfg, &mut p, &[0.5], &mut buf, false).unwrap();
    assert_all_close("step 2", &p, &[0.855], 1e-6);
    assert_all_close("buf 2", &buf, &[0.95], 1e-6);

    // dampening 0.1 (not applied on the first step, as in PyTorch): buf2 = 0.45 + 0.9 * 0.5 = 0.9.
    let cfg = SgdConfig {
        dampening: 0.1,
        ..cfg
    };
    let (mut p, mut buf) = ([1.0f32], [0.0f32]);
    sgd_step(&cfg, &mut p, &[0.5], &mut buf, true).unwrap();
    sgd_step(&cfg, &mut p, &[0.5], &mut buf, false).unwrap();
    assert_all_close("dampened buf", &buf, &[0.9], 1e-6);
    assert_all_close("dampened p", &p, &[0.95 - 0.09], 1e-6);
}

#[test]
fn sgd_nesterov_two_steps() {
    // step 1: buf = 0.5, d = 0.5 + 0.9 * 0.5 = 0.95, p = 0.905.
    // step 2: buf = 0.45 + 0.5 = 0.95, d = 0.5 + 0.855 = 1.355, p = 0.7695.
    let cfg = SgdConfig {
        momentum: 0.9,
        nesterov: true,
        ..SgdConfig::new(0.1)
    };
    let (mut p, mut buf) = ([1.0f32], [0.0f32]);
    sgd_step(&cfg, &mut p, &[0.5], &mut buf, true).unwrap();
    assert_all_close("step 1", &p, &[0.905], 1e-6);
    sgd_step(&cfg, &mut p, &[0.5], &mut buf, false).unwrap();
    assert_all_close("step 2", &p, &[0.7695], 1e-6);
}

#[test]
fn adam_first_step_moves_by_lr() {
    // Step 1 with m = v = 0: m_hat = g, v_hat = g^2, so p -= lr * g / (|g| + eps) ~ lr * sign(g).
    let cfg = AdamConfig::new(0.1);
    let mut p = [1.0f32, 1.0, 1.0, 1.0];
    let g = [0.5f32, -2.0, 0.0, 1e-3];
    let (mut m, mut v) = ([0.0f32; 4], [0.0f32; 4]);
    adam_step(&cfg, 1, &mut p, &g, &mut m, &mut v).unwrap();
    assert_all_close("p", &p, &[0.9, 1.1, 1.0, 0.9], 1e-5);
    assert_all_close("m", &m, &[0.05, -0.2, 0.0, 1e-4], 1e-6);
    assert_all_close("v", &v, &[0.00025, 0.004, 0.0, 1e-9], 1e-6);
}

#[test]
fn adam_second_step_closed_form() {
    // Two steps with g1 = 0.5, g2 = 0.25, weight decay 0.01 (L2, added to the gradient).
    let (lr, b1, b2, eps, wd) = (0.1f64, 0.9f64, 0.999f64, 1e-8f64, 0.01f64);
    let mut pe = 1.0f64;
    let (mut me, mut ve) = (0.0f64, 0.0f64);
    for (t, g) in [(1, 0.5f64), (2, 0.25)] {
        let g = g + wd * pe;
        me = b1 * me + (1.0 - b1) * g;
        ve = b2 * ve + (1.0 - b2) * g * g;
        let mh = me / (1.0 - b1.powi(t));
        let vh = ve / (1.0 - b2.powi(t));
        pe -= lr * mh / (vh.sqrt() + eps);
    }
    let cfg = AdamConfig {
        weight_decay: 0.01,
        ..AdamConfig::new(0.1)
    };
    let (mut p, mut m, mut v) = ([1.0f32], [0.0f32], [0.0f32]);
    adam_step(&cfg, 1, &mut p, &[0.5], &mut m, &mut v).unwrap();
    adam_step(&cfg, 2, &mut p, &[0.25], &mut m, &mut v).unwrap();
    assert!((p[0] as f64 - pe).abs() < 1e-5, "p {} vs {pe}", p[0]);
    assert!((m[0] as f64 - me).abs() < 1e-6, "m {} vs {me}", m[0]);
    assert!((v[0] as f64 - ve).abs() < 1e-7, "v {} vs {ve}", v[0]);
}

// ---------------------------------------------------------------- batch norm, adaptive pooling

#[test]
fn batch_norm_by_hand() {
    // One channel holding 1, 3 (image 0) and 5, 7 (image 1); a second channel of 2s.
    let s = BatchNormShape::new(2, 2, 2);
    let x = [1.0, 3.0, 2.0, 2.0, 5.0, 7.0, 2.0, 2.0];
    let (mut mean, mut var) = ([0.0; 2], [0.0; 2]);
    batch_norm_stats(&s, &x, &mut mean, &mut var).unwrap();
    // Mean 4, biased variance (9 + 1 + 1 + 9) / 4 = 5; the constant channel has variance 0.
    assert_eq!((mean, var), ([4.0, 2.0], [5.0, 0.0]));
    let stats = BatchNormStats {
        mean: &[4.0, 2.0],
        var: &[4.0, 0.0],
        eps: 0.0,
    };
    let mut y = [f32::NAN; 8];
    batch_norm_forward(&s, &x, &stats, Some(&[2.0, 1.0]), Some(&[1.0, 0.5]), &mut y).unwrap();
    // (x - 4) / 2 * 2 + 1 = x - 3; the zero-variance channel: 0 / 0 -> NaN, as PyTorch with eps 0.
    assert_eq!(y[..2], [-2.0, 0.0]);
    assert_eq!(y[4..6], [2.0, 4.0]);
    assert!(y[2].is_nan());
    // Evaluation: grad_x = dy * w / sqrt(var + eps); grad_bias = sum dy; grad_weight = sum dy * xhat.
    let stats = BatchNormStats {
        mean: &[4.0, 2.0],
        var: &[4.0, 1.0],
        eps: 0.0,
    };
    let (mut gx, mut gw, mut gb) = ([0.0; 8], [0.0; 2], [0.0; 2]);
    let grads = BatchNormGrads {
        x: Some(&mut gx),
        weight: Some(&mut gw),
        bias: Some(&mut gb),
    };
    batch_norm_backward(&s, &x, &[1.0; 8], &stats, Some(&[2.0, 1.0]), false, grads).unwrap();
    assert_eq!(gx, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    assert_eq!(gb, [4.0, 4.0]);
    // xhat of channel 0: -1.5, -0.5, 0.5, 1.5 -> sum 0.
    assert_eq!(gw, [0.0, 0.0]);
    // Training with a constant upstream gradient: the mean's gradient cancels it exactly.
    let stats = BatchNormStats {
        mean: &[4.0, 2.0],
        var: &[5.0, 1.0],
        eps: 0.0,
    };
    let grads = BatchNormGrads {
        x: Some(&mut gx),
        ..Default::default()
    };
    batch_norm_backward(&s, &x, &[1.0; 8], &stats, None, true, grads).unwrap();
    assert!(gx.iter().all(|g| g.abs() < 1e-7), "{gx:?}");
}

#[test]
fn adaptive_avg_pool_by_hand() {
    // A 3x3 plane 0..9 pooled to 2x2: windows rows 0..2 / 1..3, columns likewise.
    let s = AdaptivePool2dShape::new(1, 1, (3, 3), (2, 2));
    let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
    let mut y = [0.0; 4];
    adaptive_avg_pool2d_forward(&s, &x, &mut y).unwrap();
    assert_eq!(y, [2.0, 3.0, 5.0, 6.0]);
    let mut gx = [f32::NAN; 9];
    adaptive_avg_pool2d_backward(&s, &[4.0; 4], &mut gx).unwrap();
    // The centre is in all four windows, edges in two, corners in one.
    assert_eq!(gx, [1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]);
    // Global average pooling.
    let g = AdaptivePool2dShape::new(2, 1, (3, 3), (1, 1));
    let x2: Vec<f32> = (0..18).map(|v| v as f32).collect();
    let mut y2 = [0.0; 2];
    adaptive_avg_pool2d_forward(&g, &x2, &mut y2).unwrap();
    assert_eq!(y2, [4.0, 13.0]);
    let mut gx2 = [f32::NAN; 18];
    adaptive_avg_pool2d_backward(&g, &[9.0, 18.0], &mut gx2).unwrap();
    assert_eq!(gx2[..9], [1.0; 9]);
    assert_eq!(gx2[9..], [2.0; 9]);
}
