//! The int8 kernels (`tinycnn_kernels::int8`, and the SMLAD-structured `int8::dsp` ones with
//! their instructions emulated) against their naive twins in `int8::reference`, which must
//! agree bit for bit: quantized conv2d (dense, grouped,
//! depthwise, any stride/padding/dilation, with/without bias, any activation range,
//! per-channel requantization), quantized linear (i8 and i32 outputs) and max/avg pooling (average
//! pooling also with a table op fused in).
//!
//! Biases stay within +-2^20 so that `acc + bias` fits an i32 accumulator for every problem
//! drawn here (at most 127 * 127 * 6400 per product sum); the kernels' contract leaves
//! larger sums to the caller.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn_fuzz::Source;
use tinycnn_kernels::int8::{self, ActRange, QLinearShape, Requant};

fn i8s(src: &mut Source, n: usize) -> Vec<i8> {
    (0..n).map(|_| src.byte() as i8).collect()
}

fn biases(src: &mut Source, n: usize) -> Vec<i32> {
    (0..n)
        .map(|_| {
            let b = [src.byte(), src.byte(), src.byte()];
            (i32::from_le_bytes([b[0], b[1], b[2], 0]) & 0x1f_ffff) - (1 << 20)
        })
        .collect()
}

/// Per-channel requantizers with scales over every binade `Requant` accepts (2^-32 .. 2^30).
fn requants(src: &mut Source, n: usize) -> Vec<Requant> {
    (0..n)
        .map(|_| {
            let mant = 1.0 + src.byte() as f32 / 256.0;
            let exp = src.int(0, 61) as i32 - 32;
            Requant::from_scale(mant * (exp as f32).exp2()).expect("scale in range")
        })
        .collect()
}

fn act_range(src: &mut Source) -> ActRange {
    match src.int(0, 2) {
        0 => ActRange::FULL,
        1 => ActRange::RELU,
        _ => {
            let (a, b) = (src.byte() as i8, src.byte() as i8);
            ActRange {
                min: a.min(b),
                max: a.max(b),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut src = Source::new(data);
    match src.int(0, 2) {
        0 => {
            let s = src.conv_shape();
            let p = s.params;
            let x = i8s(&mut src, s.input_len().unwrap());
            let w = i8s(&mut src, s.weight_len());
            let bias = src.flag().then(|| biases(&mut src, p.out_channels));
            let rq = requants(&mut src, p.out_channels);
            let range = act_range(&mut src);
            let n = s.output_len().unwrap();
            let (mut y, mut y_ref) = (vec![0x55i8; n], vec![0i8; n]);
            int8::reference::qconv2d(&s, &x, &w, bias.as_deref(), &rq, range, &mut y_ref).unwrap();
            int8::qconv2d_forward(&s, &x, &w, bias.as_deref(), &rq, range, &mut y).unwrap();
            assert!(
                y == y_ref,
                "qconv2d_forward differs from reference; problem: {s:?} {range:?}"
            );
            // The SMLAD-structured kernel (emulated instructions off the Cortex-M4), with a
            // workspace holding stale values.
            let mut ws = vec![0xa5a5_a5a5u32; int8::dsp::qconv2d_workspace_len(&s).unwrap()];
            let mut y = vec![0x55i8; n];
            int8::dsp::qconv2d_forward(&s, &x, &w, bias.as_deref(), &rq, range, &mut y, &mut ws)
                .unwrap();
            assert!(
                y == y_ref,
                "dsp::qconv2d_forward differs from reference; problem: {s:?} {range:?}"
            );
        }
        1 => {
            let s = QLinearShape::new(src.int(1, 8), src.int(1, 400), src.int(1, 130));
            let x = i8s(&mut src, s.batch * s.in_features);
            let w = i8s(&mut src, s.out_features * s.in_features);
            let bias = src.flag().then(|| biases(&mut src, s.out_features));
            let rq = requants(&mut src, s.out_features);
            let range = act_range(&mut src);
            let n = s.batch * s.out_features;
            let (mut y, mut y_ref) = (vec![0x55i8; n], vec![0i8; n]);
            int8::reference::qlinear(&s, &x, &w, bias.as_deref(), &rq, range, &mut y_ref).unwrap();
            int8::qlinear_forward(&s, &x, &w, bias.as_deref(), &rq, range, &mut y).unwrap();
            assert!(
                y == y_ref,
                "qlinear_forward differs from reference; problem: {s:?} {range:?}"
            );
            let (mut a, mut a_ref) = (vec![0x5555i32; n], vec![0i32; n]);
            int8::reference::qlinear_i32(&s, &x, &w, bias.as_deref(), &mut a_ref).unwrap();
            int8::qlinear_forward_i32(&s, &x, &w, bias.as_deref(), &mut a).unwrap();
            assert!(
                a == a_ref,
                "qlinear_forward_i32 differs from reference; problem: {s:?}"
            );
            let mut y = vec![0x55i8; n];
            int8::dsp::qlinear_forward(&s, &x, &w, bias.as_deref(), &rq, range, &mut y).unwrap();
            assert!(
                y == y_ref,
                "dsp::qlinear_forward differs from reference; problem: {s:?} {range:?}"
            );
            let mut a = vec![0x5555i32; n];
            int8::dsp::qlinear_forward_i32(&s, &x, &w, bias.as_deref(), &mut a).unwrap();
            assert!(
                a == a_ref,
                "dsp::qlinear_forward_i32 differs from reference; problem: {s:?}"
            );
        }
        _ => {
            let s = src.pool_shape();
            let x = i8s(&mut src, s.input_len().unwrap());
            let n = s.output_len().unwrap();
            for average in [false, true] {
                let (mut y, mut y_ref) = (vec![0x55i8; n], vec![0i8; n]);
                int8::reference::qpool2d(&s, average, &x, &mut y_ref).unwrap();
                if average {
                    int8::qavg_pool2d_forward(&s, &x, &mut y).unwrap();
                } else {
                    int8::qmax_pool2d_forward(&s, &x, &mut y).unwrap();
                }
                assert!(
                    y == y_ref,
                    "q{}_pool2d_forward differs from reference; problem: {s:?}",
                    if average { "avg" } else { "max" }
                );
            }
            // A table op fused into the average pooling, plain and DSP.
            let table: [i8; 256] = core::array::from_fn(|i| (i as u8 ^ x.len() as u8) as i8);
            let mut y_ref = vec![0i8; n];
            int8::reference::qlut_avg_pool2d(&table, &s, &x, &mut y_ref).unwrap();
            let mut y = vec![0x55i8; n];
            int8::qlut_avg_pool2d_forward(&table, &s, &x, &mut y).unwrap();
            assert!(y == y_ref, "qlut_avg_pool2d_forward differs from reference; problem: {s:?}");
            let mut y = vec![0x55i8; n];
            int8::dsp::qlut_avg_pool2d_forward(&table, &s, &x, &mut y).unwrap();
            assert!(
                y == y_ref,
                "dsp::qlut_avg_pool2d_forward differs from reference; problem: {s:?}"
            );
        }
    }
});
