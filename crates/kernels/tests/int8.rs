//! int8 kernels: hand-computed values, exact agreement with the naive twins (proptest), and
//! agreement with the f32 kernels up to the quantization error.

mod common;

use common::Rng;
use proptest::prelude::*;
use tinycnn_kernels::int8::{self, reference, ActRange, QLinearShape, Requant};
use tinycnn_kernels::*;

fn rq(scale: f32) -> Requant {
    Requant::from_scale(scale).unwrap()
}

fn rand_i8(rng: &mut Rng, n: usize) -> Vec<i8> {
    (0..n)
        .map(|_| (rng.below(255) as i32 - 127) as i8)
        .collect()
}

#[test]
fn requant_is_exact_and_rounds_half_up() {
    // 0.75 = 0b1.1 * 2^-1: mantissa 0xC00000 << 7, shift 31.
    let r = rq(0.75);
    assert_eq!((r.multiplier, r.shift), (0x6000_0000, 31));
    assert_eq!(r.factor(), 0.75);
    // 10 * 0.75 = 7.5 -> 8 ; -10 * 0.75 = -7.5 -> -7 (half up) ; 3 * 0.75 = 2.25 -> 2.
    assert_eq!((r.apply(10), r.apply(-10), r.apply(3)), (8, -7, 2));
    // 1.0 is the identity; 2.0 doubles.
    assert_eq!(rq(1.0).apply(-123_456), -123_456);
    assert_eq!(rq(2.0).apply(21), 42);
    // The factor equals the f32 it came from, for a spread of scales.
    for &s in &[1e-9f32, 3.1e-5, 0.0123, 0.5, 0.999_999_9, 1.5, 1000.0] {
        assert_eq!(rq(s).factor(), s as f64, "{s}");
    }
    // Extreme accumulators do not overflow.
    // 0.9999999f32 is 1 - 2^-23: (2^31 - 1)(1 - 2^-23) = 2^31 - 257 + 2^-23 -> 2147483391.
    assert_eq!(rq(0.999_999_9).apply(i32::MAX), 2_147_483_391);
    assert_eq!(rq(0.5).apply(i32::MIN), (i32::MIN / 2) as i64);
    assert_eq!(rq(1.0).apply_clamped(300, ActRange::FULL), 127);
    assert_eq!(rq(1.0).apply_clamped(-5, ActRange::RELU), 0);
}

#[test]
fn requant_rejects_bad_scales() {
    for &s in &[
        0.0f32,
        -1.0,
        f32::NAN,
        f32::INFINITY,
        1e-12,
        2e9,
        f32::MIN_POSITIVE / 4.0,
    ] {
        assert!(Requant::from_scale(s).is_err(), "{s}");
    }
}

#[test]
fn conv_hand_values_with_padding_and_relu() {
    // 1 channel 3x3 input, 3x3 kernel of ones, padding 1: each output is the sum of its
    // in-bounds 3x3 neighbourhood. x = 1..9:
    //  corners: 1+2+4+5=12, 2+3+5+6=16, 4+5+7+8=24, 5+6+8+9=28
    //  edges: 1+2+3+4+5+6=21, 1+2+4+5+7+8=27, 2+3+5+6+8+9=33, 4+5+6+7+8+9=39; centre 45.
    let s = Conv2dShape::new(
        Conv2dParams::new(1, 1, (3, 3)).with_padding((1, 1)),
        1,
        3,
        3,
    );
    let x: Vec<i8> = (1..=9).collect();
    let w = [1i8; 9];
    let mut y = [0i8; 9];
    int8::qconv2d_forward(&s, &x, &w, None, &[rq(1.0)], ActRange::FULL, &mut y).unwrap();
    assert_eq!(y, [12, 21, 16, 27, 45, 33, 24, 39, 28]);
    // Bias -30 and ReLU: max(v - 30, 0).
    int8::qconv2d_forward(&s, &x, &w, Some(&[-30]), &[rq(1.0)], ActRange::RELU, &mut y).unwrap();
    assert_eq!(y, [0, 0, 0, 0, 15, 3, 0, 9, 0]);
    // Scale 0.25: 12*0.25=3, 21*.25=5.25->5, 16->4, 27->6.75->7, 45->11.25->11, 33->8.25->8,
    // 24->6, 39->9.75->10, 28->7.
    int8::qconv2d_forward(&s, &x, &w, None, &[rq(0.25)], ActRange::FULL, &mut y).unwrap();
    assert_eq!(y, [3, 5, 4, 7, 11, 8, 6, 10, 7]);
}

#[test]
fn pool_hand_values() {
    // 1x1x2x4 input, 2x2 windows: max and rounded averages.
    let s = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 2, 4);
    let x: [i8; 8] = [1, -2, 3, 4, -5, 6, 7, -9];
    let mut y = [0i8; 2];
    int8::qmax_pool2d_forward(&s, &x, &mut y).unwrap();
    assert_eq!(y, [6, 7]);
    // (1-2-5+6)/4 = 0 ; (3+4+7-9)/4 = 5/4 = 1.25 -> 1.
    int8::qavg_pool2d_forward(&s, &x, &mut y).unwrap();
    assert_eq!(y, [0, 1]);
    // Halves round away from zero: 6/4 = 1.5 -> 2, -6/4 -> -2.
    let x: [i8; 8] = [1, 1, -1, -1, 2, 2, -2, -2];
    int8::qavg_pool2d_forward(&s, &x, &mut y).unwrap();
    assert_eq!(y, [2, -2]);
}

#[test]
fn linear_hand_values() {
    // x = [1, 2, 3], w = [[1, 0, -1], [2, 2, 2]], bias [10, -1]: [1-3+10, 2+4+6-1] = [8, 11].
    let s = QLinearShape::new(1, 3, 2);
    let (x, w) = ([1i8, 2, 3], [1i8, 0, -1, 2, 2, 2]);
    let mut acc = [0i32; 2];
    int8::qlinear_forward_i32(&s, &x, &w, Some(&[10, -1]), &mut acc).unwrap();
    assert_eq!(acc, [8, 11]);
    let mut y = [0i8; 2];
    int8::qlinear_forward(
        &s,
        &x,
        &w,
        Some(&[10, -1]),
        &[rq(0.5), rq(1.0)],
        ActRange::FULL,
        &mut y,
    )
    .unwrap();
    assert_eq!(y, [4, 11]);
}

#[test]
fn lut_and_quantize_helpers() {
    let t = int8::sigmoid_lut(0.05, 1.0 / 127.0).unwrap();
    // q = 0 -> sigmoid(0) = 0.5 -> 63.5 -> 64 ; q = -127 -> sigmoid(-6.35) = 0.001741 -> 0.22 -> 0
    assert_eq!(t[128], 64);
    assert_eq!(t[1], 0);
    let mut y = [0i8; 3];
    int8::qlut_forward(&t, &[0, -127, 127], &mut y).unwrap();
    assert_eq!(y[..2], [64, 0]);
    // sigmoid(6.35) = 0.998259 -> 126.78 -> 127
    assert_eq!(y[2], 127);

    let mut q = [0i8; 5];
    int8::quantize(&[0.0, 0.25, -0.25, 10.0, f32::NAN], 0.1, &mut q).unwrap();
    // 2.5 -> 3 (ties away), -2.5 -> -3, 100 -> 100, NaN -> 0
    assert_eq!(q, [0, 3, -3, 100, 0]);
    // Per-channel: channel 0 max 2.54 -> scale 0.02; channel 1 all zero -> scale 1.
    let mut scales = [0.0f32; 2];
    let mut qw = [0i8; 4];
    int8::quantize_per_channel(&[2.54, -1.27, 0.0, 0.0], 2, &mut scales, &mut qw).unwrap();
    assert_eq!(scales, [0.02, 1.0]);
    assert_eq!(qw, [127, -64, 0, 0]);
    let mut qb = [0i32; 2];
    int8::quantize_bias(&[1.0, -0.5], &[0.02, 1.0], 0.1, &mut qb).unwrap();
    assert_eq!(qb, [500, -5]);
}

#[test]
fn bad_arguments_are_errors() {
    let s = Conv2dShape::new(Conv2dParams::new(1, 2, (3, 3)), 1, 4, 4);
    let (x, w) = ([0i8; 16], [0i8; 18]);
    let mut y = [0i8; 8];
    let r = [rq(1.0); 2];
    assert!(int8::qconv2d_forward(&s, &x[..15], &w, None, &r, ActRange::FULL, &mut y).is_err());
    assert!(int8::qconv2d_forward(&s, &x, &w, None, &r[..1], ActRange::FULL, &mut y).is_err());
    assert!(int8::qconv2d_forward(&s, &x, &w, Some(&[0]), &r, ActRange::FULL, &mut y).is_err());
    let bad_range = ActRange { min: 5, max: 4 };
    assert!(int8::qconv2d_forward(&s, &x, &w, None, &r, bad_range, &mut y).is_err());
    let bad_rq = [Requant {
        multiplier: 1 << 30,
        shift: 0,
    }; 2];
    assert!(int8::qconv2d_forward(&s, &x, &w, None, &bad_rq, ActRange::FULL, &mut y).is_err());
    assert!(int8::qconv2d_forward(&s, &x, &w, None, &r, ActRange::FULL, &mut y[..7]).is_err());
    let l = QLinearShape::new(1, 0, 2);
    assert!(int8::qlinear_forward_i32(&l, &[], &[], None, &mut [0; 2]).is_err());
    let p = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 4, 4);
    assert!(int8::qmax_pool2d_forward(&p, &[0; 16], &mut [0; 3]).is_err());
    assert!(int8::qlut_forward(&[0; 256], &[0; 3], &mut [0; 2]).is_err());
    assert!(int8::sigmoid_lut(0.0, 1.0).is_err());
}

/// The LeNet layers, exactly, against the twins.
#[test]
fn lenet_layers_match_reference_exactly() {
    let mut rng = Rng::new(7);
    let cases = [
        Conv2dShape::new(
            Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
            2,
            28,
            28,
        ),
        Conv2dShape::new(Conv2dParams::new(6, 16, (5, 5)), 2, 14, 14),
    ];
    for s in cases {
        let x = rand_i8(&mut rng, s.input_len().unwrap());
        let w = rand_i8(&mut rng, s.weight_len());
        let oc = s.params.out_channels;
        let b: Vec<i32> = (0..oc).map(|i| i as i32 * 977 - 3000).collect();
        let r: Vec<Requant> = (0..oc).map(|i| rq(1e-3 * (i + 1) as f32)).collect();
        for range in [ActRange::FULL, ActRange::RELU] {
            let n = s.output_len().unwrap();
            let (mut y, mut want) = (vec![0i8; n], vec![1i8; n]);
            int8::qconv2d_forward(&s, &x, &w, Some(&b), &r, range, &mut y).unwrap();
            reference::qconv2d(&s, &x, &w, Some(&b), &r, range, &mut want).unwrap();
            assert_eq!(y, want, "{s:?} {range:?}");
        }
    }
}

/// int8 conv, dequantized, tracks the f32 conv within the quantization error.
#[test]
fn quantized_conv_tracks_f32_conv() {
    let mut rng = Rng::new(11);
    let s = Conv2dShape::new(Conv2dParams::new(6, 16, (5, 5)), 1, 14, 14);
    let x = rng.vec(s.input_len().unwrap(), 0.0, 1.0);
    let w = rng.vec(s.weight_len(), -0.2, 0.2);
    let b = rng.vec(16, -0.1, 0.1);
    let mut want = vec![0.0; s.output_len().unwrap()];
    tinycnn_kernels::reference::conv2d(&s, &x, &w, Some(&b), &mut want).unwrap();
    let y_max = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let (x_scale, y_scale) = (1.0 / 127.0, y_max / 127.0);
    let mut xq = vec![0i8; x.len()];
    int8::quantize(&x, x_scale, &mut xq).unwrap();
    let mut ws = vec![0.0f32; 16];
    let mut wq = vec![0i8; w.len()];
    int8::quantize_per_channel(&w, 16, &mut ws, &mut wq).unwrap();
    let mut bq = vec![0i32; 16];
    int8::quantize_bias(&b, &ws, x_scale, &mut bq).unwrap();
    let r: Vec<Requant> = ws.iter().map(|&s| rq(s * x_scale / y_scale)).collect();
    let mut yq = vec![0i8; want.len()];
    int8::qconv2d_forward(&s, &xq, &wq, Some(&bq), &r, ActRange::FULL, &mut yq).unwrap();
    let mut y = vec![0.0f32; want.len()];
    int8::dequantize(&yq, y_scale, &mut y).unwrap();
    // 150-term sums of products each off by at most half a step in x and in w, plus the
    // output's own half step: a few output steps in all.
    let worst = y
        .iter()
        .zip(&want)
        .fold(0.0f32, |m, (a, e)| m.max((a - e).abs()));
    assert!(worst <= 4.0 * y_scale, "worst {worst} vs step {y_scale}");
}

fn conv_case() -> impl Strategy<Value = (Conv2dShape, u64)> {
    (
        1usize..3,
        1usize..4,
        1usize..4,
        (1usize..5, 1usize..5),
        (1usize..3, 1usize..3),
        (0usize..3, 0usize..3),
        (1usize..3, 1usize..3),
        (1usize..12, 1usize..20),
        0u64..10_000,
    )
        .prop_filter_map(
            "valid conv",
            |(batch, g, cpg, k, st, pad, dil, hw, seed)| {
                let p = Conv2dParams::new(g * cpg, g * (1 + seed as usize % 3), k)
                    .with_stride(st)
                    .with_padding(pad)
                    .with_dilation(dil)
                    .with_groups(g);
                let s = Conv2dShape::new(p, batch, hw.0, hw.1);
                s.validate().ok().map(|_| (s, seed))
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn proptest_conv_matches_reference((s, seed) in conv_case(), relu in any::<bool>()) {
        let mut rng = Rng::new(seed);
        let x = rand_i8(&mut rng, s.input_len().unwrap());
        let w = rand_i8(&mut rng, s.weight_len());
        let oc = s.params.out_channels;
        let b: Vec<i32> = (0..oc).map(|_| rng.below(20_001) as i32 - 10_000).collect();
        let r: Vec<Requant> = (0..oc).map(|_| rq(rng.uniform(1e-4, 0.1))).collect();
        let range = if relu { ActRange::RELU } else { ActRange::FULL };
        let n = s.output_len().unwrap();
        let (mut y, mut want) = (vec![0i8; n], vec![0i8; n]);
        int8::qconv2d_forward(&s, &x, &w, Some(&b), &r, range, &mut y).unwrap();
        reference::qconv2d(&s, &x, &w, Some(&b), &r, range, &mut want).unwrap();
        prop_assert_eq!(y, want);
    }

    #[test]
    fn proptest_linear_matches_reference(
        batch in 1usize..4, inf in 1usize..70, outf in 1usize..20, seed in 0u64..10_000,
    ) {
        let mut rng = Rng::new(seed);
        let s = QLinearShape::new(batch, inf, outf);
        let x = rand_i8(&mut rng, batch * inf);
        let w = rand_i8(&mut rng, inf * outf);
        let b: Vec<i32> = (0..outf).map(|_| rng.below(2001) as i32 - 1000).collect();
        let r: Vec<Requant> = (0..outf).map(|_| rq(rng.uniform(1e-3, 0.5))).collect();
        let (mut a, mut a_want) = (vec![0i32; batch * outf], vec![0i32; batch * outf]);
        int8::qlinear_forward_i32(&s, &x, &w, Some(&b), &mut a).unwrap();
        reference::qlinear_i32(&s, &x, &w, Some(&b), &mut a_want).unwrap();
        prop_assert_eq!(a, a_want);
        let (mut y, mut y_want) = (vec![0i8; batch * outf], vec![0i8; batch * outf]);
        int8::qlinear_forward(&s, &x, &w, Some(&b), &r, ActRange::RELU, &mut y).unwrap();
        reference::qlinear(&s, &x, &w, Some(&b), &r, ActRange::RELU, &mut y_want).unwrap();
        prop_assert_eq!(y, y_want);
    }

    #[test]
    fn proptest_pools_match_reference(
        batch in 1usize..3, ch in 1usize..4, k in (1usize..4, 1usize..4),
        st in (1usize..4, 1usize..4), pad in (0usize..2, 0usize..2), hw in (1usize..10, 1usize..10),
        include in any::<bool>(), seed in 0u64..10_000,
    ) {
        let p = Pool2dParams::with_kernel(k).with_stride(st).with_padding(pad)
            .with_count_include_pad(include);
        let s = Pool2dShape::new(p, batch, ch, hw.0, hw.1);
        prop_assume!(s.validate().is_ok());
        let mut rng = Rng::new(seed);
        let x = rand_i8(&mut rng, s.input_len().unwrap());
        let n = s.output_len().unwrap();
        for average in [false, true] {
            let (mut y, mut want) = (vec![0i8; n], vec![0i8; n]);
            if average {
                int8::qavg_pool2d_forward(&s, &x, &mut y).unwrap();
            } else {
                int8::qmax_pool2d_forward(&s, &x, &mut y).unwrap();
            }
            reference::qpool2d(&s, average, &x, &mut want).unwrap();
            prop_assert_eq!(&y, &want, "average {}", average);
        }
        // A table op fused into the average pooling, against its twin.
        let table: [i8; 256] = rand_i8(&mut rng, 256).try_into().unwrap();
        let (mut y, mut want) = (vec![0i8; n], vec![0i8; n]);
        int8::qlut_avg_pool2d_forward(&table, &s, &x, &mut y).unwrap();
        reference::qlut_avg_pool2d(&table, &s, &x, &mut want).unwrap();
        prop_assert_eq!(&y, &want, "table");
    }
}

/// The 2x2 / stride 2 / no padding pooling path (LeNet's) against the twin, odd sizes
/// included (the last row and column are dropped), values over the whole int8 range.
#[test]
fn pool_2x2_stride_2_matches_reference() {
    let mut rng = Rng::new(21);
    for (h, w) in [(2, 2), (28, 28), (10, 10), (7, 9), (3, 2)] {
        for include in [false, true] {
            let p = Pool2dParams::new(2).with_count_include_pad(include);
            let s = Pool2dShape::new(p, 2, 3, h, w);
            let x: Vec<i8> = (0..s.input_len().unwrap())
                .map(|_| rng.below(256) as u8 as i8)
                .collect();
            let n = s.output_len().unwrap();
            for average in [false, true] {
                let (mut y, mut want) = (vec![0i8; n], vec![1i8; n]);
                if average {
                    int8::qavg_pool2d_forward(&s, &x, &mut y).unwrap();
                } else {
                    int8::qmax_pool2d_forward(&s, &x, &mut y).unwrap();
                }
                reference::qpool2d(&s, average, &x, &mut want).unwrap();
                assert_eq!(y, want, "{h}x{w} average {average}");
            }
        }
    }
    // Hand values: max and rounded mean (half away from zero) of [[1, -2], [3, -4]] -> 3, -0.5 -> -1.
    let s = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 2, 2);
    let (mut m, mut a) = ([0i8], [0i8]);
    int8::qmax_pool2d_forward(&s, &[1, -2, 3, -4], &mut m).unwrap();
    int8::qavg_pool2d_forward(&s, &[1, -2, 3, -4], &mut a).unwrap();
    assert_eq!((m, a), ([3], [-1]));
}

/// The table op, eight values per pass (two words) plus a tail: every byte value at every
/// position of every length up to 19, against the definition `table[v + 128]`.
#[test]
fn lut_matches_the_definition_at_every_length() {
    let table: [i8; 256] = core::array::from_fn(|i| (i as i32 * 7 - 300) as i8);
    let values: Vec<i8> = (0..=255u8).map(|b| b as i8).collect();
    for n in 0..20 {
        for start in 0..256 - n {
            let x = &values[start..start + n];
            let mut y = vec![0i8; n];
            int8::qlut_forward(&table, x, &mut y).unwrap();
            let want: Vec<i8> = x
                .iter()
                .map(|&v| table[(v as i32 + 128) as usize])
                .collect();
            assert_eq!(y, want);
            let mut z = x.to_vec();
            int8::qlut_inplace(&table, &mut z);
            assert_eq!(z, want);
        }
    }
}

/// `quantize_one`'s first form: `libm::roundf`, NaN 0, clamped.
fn quantize_one_roundf(r: f32, scale: f32) -> i8 {
    let v = libm::roundf(r / scale);
    if v.is_nan() {
        0
    } else {
        v.clamp(-127.0, 127.0) as i8
    }
}

/// `quantize_one` rounds by truncation and the exact fraction instead of calling `roundf`:
/// equal to the `roundf` form for every f32 of magnitude in [2^-3, 2^9), [2^22, 2^25) and
/// [2^29, 2^33) (both signs, about 320 million values), for the special values, for random
/// bit patterns, and for every byte pixel quantized as the executor does (`p / divisor` at
/// the input's scale, `deploy::PixelTable`) over many divisors and scales.
#[test]
fn quantize_one_equals_the_roundf_form() {
    // Every value where the rounding or the clamp can go either way, and the binades
    // where f32 values become integers (2^23, 2^24) and where `as i32` saturates (2^31).
    for exp in (124u32..136).chain(149..152).chain(156..160) {
        for sign in [0u32, 1 << 31] {
            for m in 0..1u32 << 23 {
                let v = f32::from_bits(sign | exp << 23 | m);
                if int8::quantize_one(v, 1.0) != quantize_one_roundf(v, 1.0) {
                    panic!(
                        "{v:e}: {} vs {}",
                        int8::quantize_one(v, 1.0),
                        quantize_one_roundf(v, 1.0)
                    );
                }
            }
        }
    }
    let specials = [
        0.0f32,
        -0.0,
        0.5,
        -0.5,
        1.5,
        -1.5,
        126.5,
        -126.5,
        127.49999,
        127.5,
        -127.5,
        128.0,
        -128.5,
        1e-45,
        -1e-45,
        f32::MIN_POSITIVE,
        1e10,
        -1e10,
        2147483648.0,
        -2147483904.0,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
    ];
    for v in specials {
        assert_eq!(
            int8::quantize_one(v, 1.0),
            quantize_one_roundf(v, 1.0),
            "{v:e}"
        );
    }
    let mut rng = Rng::new(16);
    for _ in 0..1_000_000 {
        let v = f32::from_bits(rng.next_u64() as u32);
        let s = f32::from_bits(rng.next_u64() as u32 & 0x7fff_ffff);
        assert_eq!(
            int8::quantize_one(v, s),
            quantize_one_roundf(v, s),
            "{v:e} / {s:e}"
        );
    }
    let bytes: Vec<u8> = (0..=255u8)
        .chain((0..=255u8).rev())
        .chain([7, 7, 200])
        .collect();
    for divisor in [1.0f32, 127.5, 255.0, 256.0, 3.0, 0.7] {
        for _ in 0..2000 {
            let scale = rng.uniform(1e-3, 0.1);
            let mut table = tinycnn_kernels::deploy::PixelTable::EMPTY;
            table.fill_at_scale(divisor, scale);
            for &p in &bytes {
                let q = table.value(p);
                let r = p as f32 / divisor;
                assert_eq!(
                    q,
                    quantize_one_roundf(r, scale),
                    "{p} / {divisor} at {scale}"
                );
            }
        }
    }
}
