//! The SMLAD-structured int8 kernels (`tinycnn_kernels::int8::dsp`) against the naive twins
//! in `int8::reference`, bit for bit. On the host the DSP primitives are the plain-Rust
//! emulations, so these tests check the packing, lane pairing, tails and loop order; the
//! firmware (crates/mcu, QEMU) runs the same agreement check with the real instructions.
//!
//! Values cover the whole int8 range, -128 included (the sign extension of `SXTB16`), and
//! requantization scales over every binade `Requant` accepts, so both requantization paths
//! (shift below 33 and from 33 up) are exercised.

mod common;

use common::Rng;
use proptest::prelude::*;
use tinycnn_kernels::int8::{self, dsp, reference, ActRange, QLinearShape, Requant};
use tinycnn_kernels::*;

fn full_i8(rng: &mut Rng, n: usize) -> Vec<i8> {
    (0..n).map(|_| rng.below(256) as u8 as i8).collect()
}

/// Requantizers with scales from 2^-32 to 2^29 (shifts 62 down to 1).
fn requants(rng: &mut Rng, n: usize) -> Vec<Requant> {
    (0..n)
        .map(|_| {
            let exp = rng.below(62) as i32 - 32;
            let mant = 1.0 + rng.below(1 << 20) as f32 / (1 << 20) as f32;
            Requant::from_scale(mant * (exp as f32).exp2()).unwrap()
        })
        .collect()
}

fn act_range(rng: &mut Rng) -> ActRange {
    match rng.below(3) {
        0 => ActRange::FULL,
        1 => ActRange::RELU,
        _ => {
            let (a, b) = (rng.below(256) as u8 as i8, rng.below(256) as u8 as i8);
            ActRange {
                min: a.min(b),
                max: a.max(b),
            }
        }
    }
}

#[test]
fn primitives_match_the_architecture_manual() {
    // SXTB16: bytes 0 and 2 (or 1 and 3 after ROR #8), sign-extended to 16-bit lanes.
    assert_eq!(dsp::sxtb16(0x0000_0000), 0);
    assert_eq!(dsp::sxtb16(0x0080_007f), 0xff80_007f);
    assert_eq!(dsp::sxtb16(0x12ff_34fe), 0xffff_fffe);
    assert_eq!(dsp::sxtb16_ror8(0x80ff_7f01), 0xff80_007f);
    // SMLAD: two signed 16x16 products added to the accumulator, wrapping.
    assert_eq!(dsp::smlad(0x8000_8000, 0x8000_8000, 0), i32::MIN); // 2 * 2^30 wraps
    assert_eq!(dsp::smlad(0x0001_ffff, 0x0002_0003, 10), 10 - 3 + 2);
    assert_eq!(dsp::smlad(0x7fff_7fff, 0x7fff_7fff, i32::MAX), {
        let p = 0x7fffi64 * 0x7fff * 2;
        (i32::MAX as i64 + p) as i32
    });
    // Against the definition, on random words.
    let mut rng = Rng::new(1);
    for _ in 0..10_000 {
        let (x, y) = (rng.next_u64() as u32, rng.next_u64() as u32);
        let acc = rng.next_u64() as i32;
        let b = |v: u32, i: u32| (v >> (8 * i)) as u8 as i8 as i16 as u16 as u32;
        assert_eq!(dsp::sxtb16(x), b(x, 0) | b(x, 2) << 16);
        assert_eq!(dsp::sxtb16_ror8(x), b(x, 1) | b(x, 3) << 16);
        let h = |v: u32, i: u32| (v >> (16 * i)) as u16 as i16 as i64;
        let want = acc as i64 + h(x, 0) * h(y, 0) + h(x, 1) * h(y, 1);
        assert_eq!(dsp::smlad(x, y, acc), want as i32);
    }
}

#[test]
fn workspace_len_and_errors() {
    // LeNet's conv2: 6 * 5 * 5 = 150 taps, padded to 152: two widened columns of 76 words,
    // plus 38 words to gather one int8 column.
    let s = Conv2dShape::new(Conv2dParams::new(6, 16, (5, 5)), 1, 14, 14);
    assert_eq!(dsp::qconv2d_workspace_len(&s).unwrap(), 190);
    // Its window path: one output row reads 5 padded rows x 3 channel pairs of (2 blocks x 5
    // + 4) words, plus 15 pair rows x 5 weight words; each further row of a band 3 more
    // widened rows; the whole image (10 + 4) padded rows.
    assert_eq!(
        dsp::qconv2d_window_workspace_len(&s),
        Some(5 * 3 * 14 + 15 * 5)
    );
    assert_eq!(
        dsp::qconv2d_window_workspace_len_rows(&s, 2),
        Some(6 * 3 * 14 + 15 * 5)
    );
    assert_eq!(
        dsp::qconv2d_window_workspace_len_rows(&s, 10),
        Some(14 * 3 * 14 + 15 * 5)
    );
    assert_eq!(
        dsp::qconv2d_window_workspace_len_rows(&s, 99),
        Some(14 * 3 * 14 + 15 * 5)
    );
    assert_eq!(dsp::qconv2d_workspace_len_fast(&s).unwrap(), 663);
    // conv1: one input channel, row pairs: 28 + 4 rows of (6 x 5 + 4) words, 3 pair rows.
    let c1 = Conv2dShape::new(
        Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
        1,
        28,
        28,
    );
    assert_eq!(
        dsp::qconv2d_window_workspace_len_rows(&c1, 28),
        Some(32 * 34 + 3 * 5)
    );
    assert_eq!(dsp::qconv2d_workspace_len_fast(&c1).unwrap(), 1103);
    // One output row reads widened rows 0, 2 and 4 (padded rows 0 to 5), 5 of them.
    assert_eq!(dsp::qconv2d_window_workspace_len(&c1), Some(5 * 34 + 3 * 5));
    assert_eq!(
        dsp::qconv2d_window_workspace_len_rows(&c1, 24),
        Some(28 * 34 + 3 * 5)
    );
    // Not window shapes: 3-tap rows, stride 2, three input channels.
    for p in [
        Conv2dParams::new(2, 4, (3, 3)),
        Conv2dParams::new(2, 4, (5, 5)).with_stride((2, 2)),
        Conv2dParams::new(3, 4, (5, 5)),
    ] {
        let s = Conv2dShape::new(p, 1, 14, 14);
        assert_eq!(dsp::qconv2d_window_workspace_len(&s), None);
        assert_eq!(
            dsp::qconv2d_workspace_len_fast(&s).unwrap(),
            dsp::qconv2d_workspace_len(&s).unwrap()
        );
    }
    let s1 = Conv2dShape::new(
        Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
        1,
        28,
        28,
    );
    assert_eq!(dsp::qconv2d_workspace_len(&s1).unwrap(), 35);
    let (x, w) = (vec![0i8; 6 * 14 * 14], vec![0i8; 16 * 150]);
    let r = vec![Requant::from_scale(1.0).unwrap(); 16];
    let mut y = vec![0i8; 16 * 100];
    let mut ws = vec![0u32; 189];
    let e = dsp::qconv2d_forward(&s, &x, &w, None, &r, ActRange::FULL, &mut y, &mut ws);
    assert_eq!(
        e,
        Err(KernelError::BufferLength {
            buffer: "workspace",
            expected: 190,
            actual: 189
        })
    );
    // A longer workspace is fine; the other checks are the plain kernel's.
    let mut ws = vec![0u32; 400];
    dsp::qconv2d_forward(&s, &x, &w, None, &r, ActRange::FULL, &mut y, &mut ws).unwrap();
    assert!(
        dsp::qconv2d_forward(&s, &x[1..], &w, None, &r, ActRange::FULL, &mut y, &mut ws).is_err()
    );
    assert!(
        dsp::qconv2d_forward(&s, &x, &w, None, &r[1..], ActRange::FULL, &mut y, &mut ws).is_err()
    );
    let bad = ActRange { min: 1, max: 0 };
    assert!(dsp::qconv2d_forward(&s, &x, &w, None, &r, bad, &mut y, &mut ws).is_err());
    let l = QLinearShape::new(1, 4, 2);
    assert!(dsp::qlinear_forward_i32(&l, &[0; 4], &[0; 7], None, &mut [0; 2]).is_err());
    assert!(dsp::qlinear_forward(
        &l,
        &[0; 4],
        &[0; 8],
        None,
        &r[..1],
        ActRange::FULL,
        &mut [0; 2]
    )
    .is_err());
}

/// d2l's corr2d numbers through the DSP conv (patch of 4: one whole chunk, no tail).
#[test]
fn conv_hand_values() {
    let s = Conv2dShape::new(Conv2dParams::new(1, 1, (2, 2)), 1, 3, 3);
    let x: [i8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    let w: [i8; 4] = [0, 1, 2, 3];
    let r = [Requant::from_scale(1.0).unwrap()];
    let mut y = [0i8; 4];
    let mut ws = [0u32; 5];
    dsp::qconv2d_forward(&s, &x, &w, None, &r, ActRange::FULL, &mut y, &mut ws).unwrap();
    assert_eq!(y, [19, 25, 37, 43]);
    // With a bias of -20 and ReLU: [0, 5, 17, 23].
    dsp::qconv2d_forward(
        &s,
        &x,
        &w,
        Some(&[-20]),
        &r,
        ActRange::RELU,
        &mut y,
        &mut ws,
    )
    .unwrap();
    assert_eq!(y, [0, 5, 17, 23]);
}

fn check_conv(s: &Conv2dShape, rng: &mut Rng) -> std::result::Result<(), TestCaseError> {
    check_conv_with(s, rng, false)
}

/// Requantizers with scales from 2^-32 to 2^-3 (shifts 62 down to 33): the usual case,
/// which the DSP convolution runs through its whole-block path when there is a bias.
fn usual_requants(rng: &mut Rng, n: usize) -> Vec<Requant> {
    (0..n)
        .map(|_| {
            let exp = rng.below(30) as i32 - 32;
            let mant = 1.0 + rng.below(1 << 20) as f32 / (1 << 20) as f32;
            let r = Requant::from_scale(mant * (exp as f32).exp2()).unwrap();
            assert!(r.shift >= 33);
            r
        })
        .collect()
}

/// [`check_conv`]; with `usual`, always a bias and every shift at least 33.
fn check_conv_with(
    s: &Conv2dShape,
    rng: &mut Rng,
    usual: bool,
) -> std::result::Result<(), TestCaseError> {
    let x = full_i8(rng, s.input_len().unwrap());
    let w = full_i8(rng, s.weight_len());
    let oc = s.params.out_channels;
    let b: Vec<i32> = (0..oc)
        .map(|_| rng.below(2_000_001) as i32 - 1_000_000)
        .collect();
    let bias = if !usual && rng.below(4) == 0 {
        None
    } else {
        Some(&b[..])
    };
    let r = if usual {
        usual_requants(rng, oc)
    } else {
        requants(rng, oc)
    };
    let range = act_range(rng);
    let n = s.output_len().unwrap();
    let (mut y, mut want, mut plain) = (vec![0i8; n], vec![0i8; n], vec![0i8; n]);
    // Stale workspace contents must not matter.
    let ws_len = dsp::qconv2d_workspace_len(s).unwrap() + rng.below(5);
    let mut ws: Vec<u32> = (0..ws_len).map(|_| rng.next_u64() as u32).collect();
    dsp::qconv2d_forward(s, &x, &w, bias, &r, range, &mut y, &mut ws).unwrap();
    reference::qconv2d(s, &x, &w, bias, &r, range, &mut want).unwrap();
    int8::qconv2d_forward(s, &x, &w, bias, &r, range, &mut plain).unwrap();
    prop_assert_eq!(&y, &want, "{:?}", s);
    prop_assert_eq!(&plain, &want);
    // With the larger workspace, the window path where the shape has one.
    let fast_len = dsp::qconv2d_workspace_len_fast(s).unwrap() + rng.below(5);
    let mut ws: Vec<u32> = (0..fast_len).map(|_| rng.next_u64() as u32).collect();
    let mut fast = vec![0i8; n];
    dsp::qconv2d_forward(s, &x, &w, bias, &r, range, &mut fast, &mut ws).unwrap();
    prop_assert_eq!(&fast, &want, "window path {:?}", s);
    // Bands of fewer output rows than the output has: from one row (the least workspace of
    // the window path) up, stale contents again (at least the general path's workspace:
    // requantization shifts below 33 take it).
    if let Some(least) = dsp::qconv2d_window_workspace_len(s) {
        let least = least.max(ws_len);
        let banded_len = least + rng.below(fast_len.saturating_sub(least) + 1);
        let mut ws: Vec<u32> = (0..banded_len).map(|_| rng.next_u64() as u32).collect();
        let mut banded = vec![0i8; n];
        dsp::qconv2d_forward(s, &x, &w, bias, &r, range, &mut banded, &mut ws).unwrap();
        prop_assert_eq!(
            &banded,
            &want,
            "window path in bands, {} words {:?}",
            banded_len,
            s
        );
    }
    Ok(())
}

/// The LeNet layers (batch 1 and 2), exactly.
#[test]
fn lenet_layers_match_reference_exactly() {
    let mut rng = Rng::new(5);
    for batch in [1, 2] {
        let cases = [
            Conv2dShape::new(
                Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
                batch,
                28,
                28,
            ),
            Conv2dShape::new(Conv2dParams::new(6, 16, (5, 5)), batch, 14, 14),
        ];
        for s in cases {
            check_conv(&s, &mut rng).unwrap();
            check_conv_with(&s, &mut rng, true).unwrap();
        }
        for (inf, outf) in [(400, 120), (120, 84), (84, 10)] {
            check_linear(batch, inf, outf, &mut rng).unwrap();
        }
    }
}

fn check_linear(
    batch: usize,
    inf: usize,
    outf: usize,
    rng: &mut Rng,
) -> std::result::Result<(), TestCaseError> {
    let s = QLinearShape::new(batch, inf, outf);
    let x = full_i8(rng, batch * inf);
    let w = full_i8(rng, inf * outf);
    let b: Vec<i32> = (0..outf)
        .map(|_| rng.below(2_000_001) as i32 - 1_000_000)
        .collect();
    let bias = if rng.below(4) == 0 {
        None
    } else {
        Some(&b[..])
    };
    let (mut a, mut a_want) = (vec![0i32; batch * outf], vec![0i32; batch * outf]);
    dsp::qlinear_forward_i32(&s, &x, &w, bias, &mut a).unwrap();
    reference::qlinear_i32(&s, &x, &w, bias, &mut a_want).unwrap();
    prop_assert_eq!(a, a_want);
    let r = requants(rng, outf);
    let range = act_range(rng);
    let (mut y, mut y_want) = (vec![0i8; batch * outf], vec![0i8; batch * outf]);
    dsp::qlinear_forward(&s, &x, &w, bias, &r, range, &mut y).unwrap();
    reference::qlinear(&s, &x, &w, bias, &r, range, &mut y_want).unwrap();
    prop_assert_eq!(y, y_want);
    Ok(())
}

fn conv_case() -> impl Strategy<Value = Conv2dShape> {
    (
        1usize..3,
        1usize..4,
        1usize..4,
        1usize..6,
        (1usize..6, 1usize..6),
        (1usize..3, 1usize..3),
        (0usize..3, 0usize..3),
        (1usize..3, 1usize..3),
        (1usize..12, 1usize..14),
    )
        .prop_filter_map("valid conv", |(batch, g, cpg, opg, k, st, pad, dil, hw)| {
            let p = Conv2dParams::new(g * cpg, g * opg, k)
                .with_stride(st)
                .with_padding(pad)
                .with_dilation(dil)
                .with_groups(g);
            let s = Conv2dShape::new(p, batch, hw.0, hw.1);
            s.validate().ok().map(|_| s)
        })
}

/// Shapes the window path takes: stride 1, no dilation, 5-tap kernel rows, one or an even
/// number of input channels per group.
fn window_case() -> impl Strategy<Value = Conv2dShape> {
    (
        1usize..3,
        1usize..3,
        prop_oneof![Just(1usize), Just(2), Just(4)],
        1usize..4,
        1usize..7,
        (0usize..4, 0usize..4),
        (1usize..12, 1usize..14),
    )
        .prop_filter_map("valid conv", |(batch, g, cpg, opg, kh, pad, hw)| {
            let p = Conv2dParams::new(g * cpg, g * opg, (kh, 5))
                .with_padding(pad)
                .with_groups(g);
            let s = Conv2dShape::new(p, batch, hw.0, hw.1);
            s.validate().ok().map(|_| s)
        })
}

/// Shapes the depthwise path takes: 3x3, one input channel per group (1 to 3 output
/// channels per group), stride 1 or 2 across, 1 to 3 down, padding 0 to 2, no dilation.
fn depthwise_case() -> impl Strategy<Value = Conv2dShape> {
    (
        1usize..3,
        1usize..5,
        1usize..4,
        (1usize..4, 1usize..3),
        (0usize..3, 0usize..3),
        (1usize..12, 1usize..14),
    )
        .prop_filter_map("valid conv", |(batch, c, m, st, pad, hw)| {
            let p = Conv2dParams::new(c, c * m, (3, 3))
                .with_stride(st)
                .with_padding(pad)
                .with_groups(c);
            let s = Conv2dShape::new(p, batch, hw.0, hw.1);
            s.validate().ok().map(|_| s)
        })
}

/// The DS-CNN's depthwise layers (stride 2 from 28x28 and 14x14, stride 1 at 7x7) and its
/// first convolution (one input channel, 32 outputs), exactly.
#[test]
fn dscnn_depthwise_layers_match_reference_exactly() {
    let mut rng = Rng::new(9);
    for (c, m, hw, st) in [
        (32, 1, 28, 2),
        (64, 1, 14, 2),
        (128, 1, 7, 1),
        (1, 32, 28, 1),
    ] {
        let p = Conv2dParams::new(c, c * m, (3, 3))
            .with_stride((st, st))
            .with_padding((1, 1))
            .with_groups(c);
        let s = Conv2dShape::new(p, 1, hw, hw);
        let fast = dsp::qconv2d_workspace_len_fast(&s).unwrap();
        assert!(dsp::qconv2d_takes_depthwise(&s, fast));
        assert_eq!(dsp::qconv2d_path(&s, &[], fast), dsp::ConvPath::Depthwise);
        check_conv(&s, &mut rng).unwrap();
        check_conv_with(&s, &mut rng, true).unwrap();
    }
}

/// Shapes the pointwise path takes: 1x1, stride 1, no padding, one group.
fn pointwise_case() -> impl Strategy<Value = Conv2dShape> {
    (1usize..3, 1usize..40, 1usize..20, (1usize..9, 1usize..9)).prop_map(
        |(batch, cin, cout, hw)| {
            Conv2dShape::new(Conv2dParams::new(cin, cout, (1, 1)), batch, hw.0, hw.1)
        },
    )
}

/// The DS-CNN's pointwise layers (32 to 64 channels at 14x14, 64 to 128 and 128 to 128 at
/// 7x7), exactly, in bands of 16 pixels and of one.
#[test]
fn dscnn_pointwise_layers_match_reference_exactly() {
    let mut rng = Rng::new(10);
    for (cin, cout, hw) in [(32, 64, 14), (64, 128, 7), (128, 128, 7)] {
        let s = Conv2dShape::new(Conv2dParams::new(cin, cout, (1, 1)), 1, hw, hw);
        let one = dsp::qconv2d_pointwise_workspace_len(&s).unwrap();
        assert_eq!(one, (cin + cout) / 4);
        assert_eq!(
            dsp::qconv2d_pointwise_workspace_len_fast(&s),
            Some(16 * (cin + cout) / 4)
        );
        check_conv(&s, &mut rng).unwrap();
        check_conv_with(&s, &mut rng, true).unwrap();
        // Bands of one pixel.
        let x = full_i8(&mut rng, s.input_len().unwrap());
        let w = full_i8(&mut rng, s.weight_len());
        let r = usual_requants(&mut rng, cout);
        let n = s.output_len().unwrap();
        let (mut y, mut want) = (vec![0i8; n], vec![0i8; n]);
        let mut ws = vec![0u32; one];
        assert!(dsp::qconv2d_takes_pointwise(&s, one));
        assert_eq!(dsp::qconv2d_path(&s, &r, one), dsp::ConvPath::Pointwise);
        assert_eq!(dsp::qconv2d_path(&s, &r, one - 1), dsp::ConvPath::General);
        dsp::qconv2d_forward(&s, &x, &w, None, &r, ActRange::RELU, &mut y, &mut ws).unwrap();
        reference::qconv2d(&s, &x, &w, None, &r, ActRange::RELU, &mut want).unwrap();
        assert_eq!(y, want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn proptest_conv_pointwise_path_matches_reference(s in pointwise_case(), seed in any::<u64>()) {
        prop_assert!(dsp::qconv2d_pointwise_workspace_len(&s).is_some());
        check_conv_with(&s, &mut Rng::new(seed), seed % 2 == 0)?;
    }

    #[test]
    fn proptest_conv_depthwise_path_matches_reference(s in depthwise_case(), seed in any::<u64>()) {
        let need = dsp::qconv2d_depthwise_workspace_len(&s);
        prop_assert!(need.is_some());
        prop_assert!(dsp::qconv2d_workspace_len_fast(&s).unwrap() >= need.unwrap());
        check_conv_with(&s, &mut Rng::new(seed), seed % 2 == 0)?;
    }

    #[test]
    fn proptest_conv_window_path_matches_reference(s in window_case(), seed in any::<u64>()) {
        prop_assert!(dsp::qconv2d_window_workspace_len(&s).is_some());
        check_conv_with(&s, &mut Rng::new(seed), seed % 2 == 0)?;
    }

    #[test]
    fn proptest_conv_matches_reference(s in conv_case(), seed in any::<u64>()) {
        check_conv(&s, &mut Rng::new(seed))?;
    }

    #[test]
    fn proptest_conv_usual_case_matches_reference(s in conv_case(), seed in any::<u64>()) {
        check_conv_with(&s, &mut Rng::new(seed), true)?;
    }

    #[test]
    fn proptest_linear_matches_reference(
        batch in 1usize..4, inf in 1usize..70, outf in 1usize..12, seed in any::<u64>(),
    ) {
        check_linear(batch, inf, outf, &mut Rng::new(seed))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The word-at-a-time max pooling (LeNet's 2x2 stride-2 windows, odd widths and heights
    /// included, and other shapes through the plain kernel) against the naive twin.
    #[test]
    fn proptest_max_pool_matches_reference(
        batch in 1usize..3, ch in 1usize..4, h in 2usize..12, w in 2usize..13,
        k in 1usize..4, seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let p = if k == 2 { Pool2dParams::new(2) } else { Pool2dParams::new(k).with_stride((1, 2)) };
        let s = Pool2dShape::new(p, batch, ch, h, w);
        prop_assume!(s.validate().is_ok());
        let x = full_i8(&mut rng, batch * ch * h * w);
        let n = s.output_len().unwrap();
        let (mut y, mut want) = (vec![0i8; n], vec![0i8; n]);
        dsp::qmax_pool2d_forward(&s, &x, &mut y).unwrap();
        reference::qpool2d(&s, false, &x, &mut want).unwrap();
        prop_assert_eq!(y, want, "{:?}", s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The lane-wise average pooling (LeNet's 2x2 stride-2 windows, odd widths and heights
    /// included, and other shapes, with and without `count_include_pad`, through the plain
    /// kernel) against the naive twin.
    #[test]
    fn proptest_avg_pool_matches_reference(
        batch in 1usize..3, ch in 1usize..4, h in 2usize..12, w in 2usize..13,
        k in 1usize..4, pad in 0usize..2, include in any::<bool>(), seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let mut p = if k == 2 { Pool2dParams::new(2) } else { Pool2dParams::new(k).with_stride((1, 2)) };
        p.padding = (pad.min(k / 2), pad.min(k / 2));
        p.count_include_pad = include;
        let s = Pool2dShape::new(p, batch, ch, h, w);
        prop_assume!(s.validate().is_ok());
        let x = full_i8(&mut rng, batch * ch * h * w);
        let n = s.output_len().unwrap();
        let (mut y, mut want) = (vec![0i8; n], vec![0i8; n]);
        dsp::qavg_pool2d_forward(&s, &x, &mut y).unwrap();
        reference::qpool2d(&s, true, &x, &mut want).unwrap();
        prop_assert_eq!(y, want, "{:?}", s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A table op and the average pooling after it in one pass (LeNet's 2x2 stride-2
    /// windows in the asm block, odd sizes included, other shapes through the plain kernel)
    /// against the naive twin, and the twin against its definition: the table op into a
    /// buffer, then the average pooling of that.
    #[test]
    fn proptest_lut_avg_pool_matches_reference(
        batch in 1usize..3, ch in 1usize..4, h in 2usize..12, w in 2usize..13,
        k in 1usize..4, pad in 0usize..2, include in any::<bool>(), seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let mut p = if k == 2 { Pool2dParams::new(2) } else { Pool2dParams::new(k).with_stride((1, 2)) };
        p.padding = (pad.min(k / 2), pad.min(k / 2));
        p.count_include_pad = include;
        let s = Pool2dShape::new(p, batch, ch, h, w);
        prop_assume!(s.validate().is_ok());
        let x = full_i8(&mut rng, batch * ch * h * w);
        let table: [i8; 256] = full_i8(&mut rng, 256).try_into().unwrap();
        let n = s.output_len().unwrap();
        let (mut y, mut want) = (vec![0i8; n], vec![0i8; n]);
        dsp::qlut_avg_pool2d_forward(&table, &s, &x, &mut y).unwrap();
        reference::qlut_avg_pool2d(&table, &s, &x, &mut want).unwrap();
        prop_assert_eq!(&y, &want, "{:?}", s);
        let looked: Vec<i8> = x.iter().map(|&v| table[(v as i32 + 128) as usize]).collect();
        let mut composed = vec![0i8; n];
        reference::qpool2d(&s, true, &looked, &mut composed).unwrap();
        prop_assert_eq!(&want, &composed, "{:?}", s);
    }
}

/// Every 2x2 window sum from -512 to 508 (all four values equal, then one value moved) is
/// rounded as the naive twin rounds it: the quarter-lane rounding at its extremes and ties.
#[test]
fn avg_pool_rounds_every_window_sum() {
    let s = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 2, 4);
    for a in -128i32..=127 {
        for d in [-3i32, -2, -1, 0, 1, 2, 3] {
            let b = (a + d).clamp(-128, 127);
            let x = [a, b, a, a, a, a, b, a].map(|v| v as i8);
            let (mut y, mut want) = ([0i8; 2], [0i8; 2]);
            dsp::qavg_pool2d_forward(&s, &x, &mut y).unwrap();
            reference::qpool2d(&s, true, &x, &mut want).unwrap();
            assert_eq!(y, want, "{x:?}");
        }
    }
}

/// The DSP table op (eight values per pass, sign-extended offsets from the table's middle,
/// a Rust tail), out of place and in place: every byte value at every position of every
/// length up to 19, against the definition `table[v + 128]`.
#[test]
fn lut_matches_the_definition_at_every_length() {
    let table: [i8; 256] = core::array::from_fn(|i| (i as i32 * 7 - 300) as i8);
    let values: Vec<i8> = (0..=255u8).map(|b| b as i8).collect();
    for n in 0..20 {
        for start in 0..256 - n {
            let x = &values[start..start + n];
            let mut y = vec![0i8; n];
            dsp::qlut_forward(&table, x, &mut y).unwrap();
            let want: Vec<i8> = x
                .iter()
                .map(|&v| table[(v as i32 + 128) as usize])
                .collect();
            assert_eq!(y, want);
            // In place (the executor's pixel conversion): the same values.
            let mut v = x.to_vec();
            dsp::qlut_in_place(&table, &mut v);
            assert_eq!(v, want);
        }
    }
    assert!(dsp::qlut_forward(&table, &[0; 9], &mut [0; 8]).is_err());
}

#[test]
fn sxtab16_and_quarter_bias_against_the_definition() {
    let mut rng = Rng::new(11);
    let h = |v: u32, i: u32| (v >> (16 * i)) as u16 as i16;
    let b = |v: u32, i: u32| (v >> (8 * i)) as u8 as i8 as i16;
    let lanes = |lo: i16, hi: i16| lo as u16 as u32 | (hi as u16 as u32) << 16;
    for _ in 0..10_000 {
        let (a, x) = (rng.next_u64() as u32, rng.next_u64() as u32);
        let want = lanes(h(a, 0).wrapping_add(b(x, 0)), h(a, 1).wrapping_add(b(x, 2)));
        assert_eq!(dsp::sxtab16(a, x), want);
        let want = lanes(h(a, 0).wrapping_add(b(x, 1)), h(a, 1).wrapping_add(b(x, 3)));
        assert_eq!(dsp::sxtab16_ror8(a, x), want);
        let bias = |v: i16| v.wrapping_add(if v >= 1 { 2 } else { 1 });
        assert_eq!(dsp::quarter_bias(a), lanes(bias(h(a, 0)), bias(h(a, 1))));
    }
    // At the lane edges: 0 and -1 take 1, and the wrap of 0x7fff.
    assert_eq!(dsp::quarter_bias(0xffff_0000), 0x0000_0001);
    assert_eq!(dsp::quarter_bias(0x7fff_7ffe), 0x8001_8000);
}

#[test]
fn max8_against_the_definition() {
    let mut rng = Rng::new(9);
    for _ in 0..10_000 {
        let (a, b) = (rng.next_u64() as u32, rng.next_u64() as u32);
        let m = dsp::max8(a, b).to_le_bytes();
        let (la, lb) = (a.to_le_bytes(), b.to_le_bytes());
        for ((&m, &x), &y) in m.iter().zip(&la).zip(&lb) {
            assert_eq!(m as i8, (x as i8).max(y as i8));
        }
    }
}
