//! Fast convolution against the reference loops, every algorithm, a spread of shapes.

extern crate std;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::error::KernelError;
use crate::reference;

/// Deterministic values in [-1, 1) (xorshift), so failures reproduce.
fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], terms: usize) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let tol = 1e-6 * (terms as f32 + 8.0);
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}: element {i}: got {a}, reference {b}"
        );
    }
}

const ALGOS: [ConvAlgo; 3] = [ConvAlgo::Direct, ConvAlgo::Im2colGemm, ConvAlgo::Auto];

/// Forward (with and without bias), backward input, weight and bias of every algorithm
/// against the reference.
fn check(s: Conv2dShape) {
    let x = data(s.input_len().unwrap(), 1);
    let w = data(s.weight_len(), 2);
    let b = data(s.params.out_channels, 3);
    let ylen = s.output_len().unwrap();
    let gy = data(ylen, 4);
    let terms = s.col_rows().unwrap();

    let mut want_y = vec![0.0; ylen];
    let mut want_y_nb = vec![0.0; ylen];
    reference::conv2d(&s, &x, &w, Some(&b), &mut want_y).unwrap();
    reference::conv2d(&s, &x, &w, None, &mut want_y_nb).unwrap();
    let mut want_gx = vec![0.0; x.len()];
    reference::conv2d_backward_input(&s, &gy, &w, &mut want_gx).unwrap();
    let mut want_gw = vec![0.0; w.len()];
    reference::conv2d_backward_weight(&s, &x, &gy, &mut want_gw).unwrap();
    let mut want_gb = vec![0.0; b.len()];
    reference::conv2d_backward_bias(&s, &gy, &mut want_gb).unwrap();

    for algo in ALGOS {
        let tag = |part: &str| std::format!("{part} {algo:?} {s:?}");
        // NaN-filled outputs and scratch: every element must be written.
        let mut ws = vec![f32::NAN; conv2d_workspace_len_for(algo, &s)];
        let mut y = vec![f32::NAN; ylen];
        conv2d_forward_with(algo, &s, &x, &w, Some(&b), &mut y, &mut ws).unwrap();
        assert_close(&tag("forward+bias"), &y, &want_y, terms);
        let mut y = vec![f32::NAN; ylen];
        conv2d_forward_with(algo, &s, &x, &w, None, &mut y, &mut ws).unwrap();
        assert_close(&tag("forward"), &y, &want_y_nb, terms);

        let mut ws = vec![f32::NAN; conv2d_backward_input_workspace_len_for(algo, &s)];
        let mut gx = vec![f32::NAN; x.len()];
        conv2d_backward_input_with(algo, &s, &gy, &w, &mut gx, &mut ws).unwrap();
        assert_close(&tag("backward input"), &gx, &want_gx, terms);

        let mut ws = vec![f32::NAN; conv2d_backward_weight_workspace_len_for(algo, &s)];
        let mut gw = vec![f32::NAN; w.len()];
        conv2d_backward_weight_with(algo, &s, &x, &gy, &mut gw, &mut ws).unwrap();
        assert_close(&tag("backward weight"), &gw, &want_gw, ylen);
    }
    let mut gb = vec![f32::NAN; b.len()];
    conv2d_backward_bias(&s, &gy, &mut gb).unwrap();
    assert_close("backward bias", &gb, &want_gb, ylen);
}

fn shape(
    cin: usize,
    cout: usize,
    k: (usize, usize),
    batch: usize,
    hw: (usize, usize),
) -> Conv2dShape {
    Conv2dShape::new(Conv2dParams::new(cin, cout, k), batch, hw.0, hw.1)
}

#[test]
fn lenet_shapes() {
    let p1 = Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2));
    check(Conv2dShape::new(p1, 2, 28, 28));
    check(shape(6, 16, (5, 5), 2, (14, 14)));
}

/// The kernels above run with the detected ISA only; this forces each one this CPU has
/// (one test, so no other test forces an ISA concurrently; others may run with it, which
/// changes nothing they check). Widths 10 and 14 are narrower than 16 lanes: AVX-512's
/// masked rows; 28 is one full and one shifted vector.
#[test]
fn every_isa_at_lenet_shapes_and_short_rows() {
    use crate::simd::{force_isa, Isa};
    for isa in [Isa::Scalar, Isa::Sse2, Isa::Avx2Fma, Isa::Avx512, Isa::Neon] {
        if !isa.is_available() {
            if cfg!(target_arch = "x86_64") && matches!(isa, Isa::Avx2Fma | Isa::Avx512) {
                std::eprintln!(
                    "skipping {}: this CPU lacks {}",
                    isa.name(),
                    isa.required_features()
                );
            }
            continue;
        }
        force_isa(Some(isa));
        let p1 = Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2));
        check(Conv2dShape::new(p1, 2, 28, 28));
        check(shape(6, 16, (5, 5), 1, (14, 14)));
        for w in [9, 12, 14, 18, 21] {
            check(shape(1, 5, (5, 5), 1, (7, w)));
            check(shape(2, 3, (3, 3), 1, (4, w)));
        }
        force_isa(None);
    }
}

#[test]
fn padding_stride_dilation() {
    let base = Conv2dParams::new(3, 4, (3, 3));
    check(Conv2dShape::new(base.with_padding((1, 1)), 1, 9, 10));
    check(Conv2dShape::new(
        base.with_stride((2, 2)).with_padding((1, 1)),
        2,
        9,
        10,
    ));
    check(Conv2dShape::new(
        base.with_dilation((2, 2)).with_padding((2, 2)),
        1,
        11,
        9,
    ));
    check(Conv2dShape::new(
        base.with_stride((2, 1))
            .with_dilation((1, 3))
            .with_padding((0, 2)),
        1,
        13,
        21,
    ));
    check(Conv2dShape::new(
        base.with_stride((3, 3)).with_padding((2, 0)),
        1,
        12,
        17,
    ));
    // Padding larger than the kernel: whole rows of taps land in the padding.
    check(Conv2dShape::new(
        Conv2dParams::new(2, 3, (2, 3)).with_padding((3, 4)),
        1,
        5,
        6,
    ));
}

#[test]
fn odd_widths_and_tails() {
    for w in [1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 37] {
        check(shape(2, 3, (3, 3), 1, (5, w + 2)));
        let p = Conv2dParams::new(2, 3, (1, 3)).with_padding((0, 1));
        check(Conv2dShape::new(p, 1, 2, w));
    }
}

#[test]
fn groups_and_depthwise() {
    let grouped = Conv2dParams::new(4, 6, (3, 3))
        .with_padding((1, 1))
        .with_groups(2);
    check(Conv2dShape::new(grouped, 2, 7, 11));
    let depthwise = Conv2dParams::new(5, 5, (3, 3))
        .with_padding((1, 1))
        .with_groups(5);
    check(Conv2dShape::new(depthwise, 2, 17, 19));
    let multiplier = Conv2dParams::new(3, 6, (5, 5))
        .with_stride((1, 2))
        .with_padding((2, 2))
        .with_groups(3);
    check(Conv2dShape::new(multiplier, 1, 12, 13));
    let dw_stride2 = Conv2dParams::new(4, 4, (3, 3))
        .with_stride((2, 2))
        .with_padding((1, 1))
        .with_groups(4);
    check(Conv2dShape::new(dw_stride2, 1, 16, 16));
}

#[test]
fn one_by_one() {
    check(shape(7, 5, (1, 1), 3, (6, 9)));
    check(Conv2dShape::new(
        Conv2dParams::new(8, 6, (1, 1)).with_groups(2),
        2,
        5,
        5,
    ));
    check(Conv2dShape::new(
        Conv2dParams::new(3, 4, (1, 1)).with_stride((2, 2)),
        1,
        7,
        8,
    ));
    check(Conv2dShape::new(
        Conv2dParams::new(3, 4, (1, 1)).with_padding((1, 1)),
        1,
        4,
        5,
    ));
}

#[test]
fn kernel_as_large_as_padded_input() {
    check(Conv2dShape::new(
        Conv2dParams::new(2, 3, (6, 7)).with_padding((1, 1)),
        2,
        4,
        5,
    ));
    check(shape(1, 1, (4, 9), 1, (4, 9)));
    check(shape(2, 2, (1, 1), 1, (1, 1)));
}

#[test]
fn choose_algo_picks_a_concrete_algorithm() {
    let lenet1 = Conv2dShape::new(
        Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
        256,
        28,
        28,
    );
    let lenet2 = shape(6, 16, (5, 5), 256, (14, 14));
    let pointwise = shape(16, 32, (1, 1), 1, (8, 8));
    let depthwise = Conv2dShape::new(Conv2dParams::new(8, 8, (3, 3)).with_groups(8), 1, 9, 9);
    for s in [lenet1, lenet2, pointwise, depthwise] {
        assert_ne!(choose_algo(&s), ConvAlgo::Auto);
    }
    assert_eq!(choose_algo(&pointwise), ConvAlgo::Im2colGemm);
    assert_eq!(choose_algo(&depthwise), ConvAlgo::Direct);
    // Pointwise needs no column matrix, only the GEMM's own scratch.
    assert_eq!(
        conv2d_workspace_len(&pointwise),
        crate::gemm::sgemm_workspace_len(32, 64, 16)
    );
}

#[test]
fn corr2d_d2l_values() {
    let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
    let mut y = [0.0; 4];
    corr2d(&x, (3, 3), &[0.0, 1.0, 2.0, 3.0], (2, 2), &mut y).unwrap();
    assert_eq!(y, [19.0, 25.0, 37.0, 43.0]);
    // d2l's edge detector: K = [[1, -1]] on a 6x8 image of ones with a zero band.
    let mut img = [1.0f32; 48];
    for r in 0..6 {
        for c in 2..6 {
            img[r * 8 + c] = 0.0;
        }
    }
    let mut edges = [0.0; 42];
    corr2d(&img, (6, 8), &[1.0, -1.0], (1, 2), &mut edges).unwrap();
    for r in 0..6 {
        assert_eq!(
            &edges[r * 7..r * 7 + 7],
            &[0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0]
        );
    }
}

#[test]
fn corr2d_matches_reference() {
    for (xh, xw, kh, kw) in [
        (3, 3, 2, 2),
        (20, 37, 3, 5),
        (9, 8, 9, 8),
        (5, 40, 1, 1),
        (16, 17, 4, 2),
    ] {
        let x = data(xh * xw, 7);
        let k = data(kh * kw, 8);
        let n = (xh - kh + 1) * (xw - kw + 1);
        let mut got = vec![f32::NAN; n];
        let mut want = vec![0.0; n];
        corr2d(&x, (xh, xw), &k, (kh, kw), &mut got).unwrap();
        reference::corr2d(&x, (xh, xw), &k, (kh, kw), &mut want).unwrap();
        assert_close("corr2d", &got, &want, kh * kw);
    }
}

#[test]
fn bad_arguments_are_errors() {
    let s = Conv2dShape::new(
        Conv2dParams::new(2, 4, (3, 3)).with_padding((1, 1)),
        1,
        5,
        5,
    );
    let x = vec![0.0; 50];
    let w = vec![0.0; 72];
    let mut y = vec![0.0; 100];
    let mut ws = vec![0.0; conv2d_workspace_len_for(ConvAlgo::Im2colGemm, &s)];
    assert!(matches!(
        conv2d_forward_with(ConvAlgo::Im2colGemm, &s, &x, &w, None, &mut y, &mut ws[1..]),
        Err(KernelError::BufferLength {
            buffer: "workspace",
            ..
        })
    ));
    assert!(matches!(
        conv2d_forward(&s, &x[1..], &w, None, &mut y, &mut ws),
        Err(KernelError::BufferLength {
            buffer: "input",
            ..
        })
    ));
    assert!(matches!(
        conv2d_forward(&s, &x, &w, Some(&[0.0; 3]), &mut y, &mut ws),
        Err(KernelError::BufferLength { buffer: "bias", .. })
    ));
    let bad_groups = Conv2dShape::new(Conv2dParams::new(3, 4, (3, 3)).with_groups(2), 1, 5, 5);
    assert_eq!(conv2d_workspace_len(&bad_groups), 0);
    assert!(conv2d_forward(&bad_groups, &[], &[], None, &mut [], &mut []).is_err());
    let mut y4 = [0.0; 4];
    assert!(corr2d(&[0.0; 8], (3, 3), &[0.0; 4], (2, 2), &mut y4).is_err());
    assert!(corr2d(&[0.0; 9], (3, 3), &[0.0; 16], (4, 4), &mut y4).is_err());
}

/// Regression (fuzz `kernels_never_panic`): a padding that makes the padded width reach
/// `usize::MAX` passed `validate` (every buffer length still fits), and then the
/// backward-weight copy's `padded width + ROW_MARGIN` overflowed: a panic in debug builds,
/// a wrapped, too-small workspace length in release. Every derived size is now checked
/// once, in `Geom::new`.
#[test]
fn huge_padding_gives_errors_not_overflow() {
    let half = (usize::MAX - 1) / 2;
    for (padding, in_hw) in [
        ((0, half), (1, 1)),           // padded width exactly usize::MAX
        ((0, half - 7), (1, 1)),       // padded width fits, plus the margin does not
        ((half, 0), (1, 1)),           // the same on the height
        ((0, usize::MAX / 2), (1, 2)), // 2 * padding + width overflows
    ] {
        let p = Conv2dParams::new(1, 1, (1, 1)).with_padding(padding);
        let s = Conv2dShape::new(p, 1, in_hw.0, in_hw.1);
        for algo in [ConvAlgo::Direct, ConvAlgo::Im2colGemm, ConvAlgo::Auto] {
            let f = conv2d_workspace_len_for(algo, &s);
            let bw = conv2d_backward_weight_workspace_len_for(algo, &s);
            let _ = conv2d_backward_input_workspace_len_for(algo, &s);
            // No length that wrapped around to something small: 0 (refused) or at least
            // one padded row, which is over usize::MAX / 4 here.
            for (what, len) in [("forward", f), ("backward weight", bw)] {
                assert!(
                    len == 0 || len > usize::MAX / 4,
                    "{what} {algo:?} {padding:?}: {len}"
                );
            }
            let mut ws = [0.0f32; 4];
            assert!(
                conv2d_forward_with(algo, &s, &[0.0], &[1.0], None, &mut [0.0], &mut ws).is_err()
            );
            assert!(
                conv2d_backward_weight_with(algo, &s, &[0.0], &[0.0], &mut [0.0], &mut ws).is_err()
            );
            assert!(
                conv2d_backward_input_with(algo, &s, &[0.0], &[1.0], &mut [0.0], &mut ws).is_err()
            );
        }
    }
    // The exact shape the fuzzer found, by its workspace function: refused, not wrapped.
    let p = Conv2dParams::new(1, 1, (1, 1)).with_padding((0, half - 7));
    let s = Conv2dShape::new(p, 1, 1, 1);
    assert_eq!(
        conv2d_backward_weight_workspace_len_for(ConvAlgo::Direct, &s),
        0
    );
}
