//! Activations (forward and backward), bias add/backward, and the SGD / Adam steps against
//! `reference`. Activation inputs reach +-1000 and may be infinite or NaN (saturation must
//! not turn into NaN where the reference gives 0 or 1, and NaN must stay NaN).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn_fuzz::{check_close, check_close_floor, check_same, max_abs, Source};
use tinycnn_kernels::*;

fuzz_target!(|data: &[u8]| {
    let mut src = Source::new(data);
    match src.int(0, 3) {
        0 => activations(&mut src),
        1 => bias(&mut src),
        2 => sgd(&mut src),
        _ => adam(&mut src),
    }
});

fn activations(src: &mut Source) {
    let len = src.int(0, 100);
    let scale = src.pick(&[8.0f32, 1.0, 30.0, 1000.0]);
    let specials = src.flag();
    let mut x = src.values_with_specials(len, specials);
    for v in &mut x {
        // NaN stays: every activation must propagate it exactly where the reference does
        // (`check_same` / `check_close` count NaN == NaN and fail on NaN vs number).
        *v *= scale / 8.0;
    }
    let gy = src.values(len);
    let context = (len, scale);
    let (mut y, mut y_ref) = (vec![f32::NAN; len], vec![0.0; len]);

    relu_forward(&x, &mut y).unwrap();
    reference::relu(&x, &mut y_ref).unwrap();
    check_same("relu_forward", &y, &y_ref, &context);
    relu_backward(&x, &gy, &mut y).unwrap();
    reference::relu_backward(&x, &gy, &mut y_ref).unwrap();
    check_same("relu_backward", &y, &y_ref, &context);

    y.fill(f32::NAN);
    sigmoid_forward(&x, &mut y).unwrap();
    reference::sigmoid(&x, &mut y_ref).unwrap();
    check_close("sigmoid_forward", &y, &y_ref, &context);
    let s = y_ref.clone();
    y.fill(f32::NAN);
    sigmoid_backward(&s, &gy, &mut y).unwrap();
    reference::sigmoid_backward(&s, &gy, &mut y_ref).unwrap();
    check_close("sigmoid_backward", &y, &y_ref, &context);

    y.fill(f32::NAN);
    tanh_forward(&x, &mut y).unwrap();
    reference::tanh(&x, &mut y_ref).unwrap();
    check_close("tanh_forward", &y, &y_ref, &context);
    let t = y_ref.clone();
    y.fill(f32::NAN);
    tanh_backward(&t, &gy, &mut y).unwrap();
    reference::tanh_backward(&t, &gy, &mut y_ref).unwrap();
    check_close("tanh_backward", &y, &y_ref, &context);
}

fn bias(src: &mut Source) {
    let (outer, channels, inner) = (src.int(1, 4), src.int(1, 9), src.int(0, 70));
    let b = src.values(channels);
    let x0 = src.values(outer * channels * inner);
    let context = (outer, channels, inner);
    let (mut x, mut x_ref) = (x0.clone(), x0.clone());
    bias_add(outer, channels, inner, &b, &mut x).unwrap();
    reference::bias_add(outer, channels, inner, &b, &mut x_ref).unwrap();
    check_close_floor("bias_add", &x, &x_ref, max_abs(&x0) + max_abs(&b), &context);
    let (mut gb, mut gb_ref) = (vec![f32::NAN; channels], vec![0.0; channels]);
    bias_backward(outer, channels, inner, &x0, &mut gb).unwrap();
    reference::bias_backward(outer, channels, inner, &x0, &mut gb_ref).unwrap();
    check_close_floor("bias_backward", &gb, &gb_ref, max_abs(&x0), &context);
}

/// Compares the updates `p - p0` (computed in f64), not the parameters, so a small step
/// is not hidden by the rounding of `p`.
fn check_update(what: &str, p: &[f32], p_ref: &[f32], p0: &[f32], context: &dyn core::fmt::Debug) {
    let d: Vec<f32> = p
        .iter()
        .zip(p0)
        .map(|(&a, &b)| (a as f64 - b as f64) as f32)
        .collect();
    let d_ref: Vec<f32> = p_ref
        .iter()
        .zip(p0)
        .map(|(&a, &b)| (a as f64 - b as f64) as f32)
        .collect();
    let scale = d_ref.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (&a, &e)) in d.iter().zip(&d_ref).enumerate() {
        if a == e || (a.is_nan() && e.is_nan()) {
            continue; // eps = 0 with v = 0: x / 0 in both (inf, or NaN for 0 / 0)
        }
        // p is within [-8, 8]: its own f32 rounding is up to ~5e-7.
        assert!(
            (a - e).abs() <= 1e-4 * scale + 1e-6,
            "{what}: update[{i}] fast {a} vs reference {e}; problem: {context:?}"
        );
    }
}

fn sgd(src: &mut Source) {
    let len = src.int(0, 100);
    let momentum = src.pick(&[0.0f32, 0.9, 0.5, 0.99]);
    let nesterov = momentum > 0.0 && src.flag();
    let cfg = SgdConfig {
        lr: src.pick(&[0.1f32, 0.01, 1.0, 0.5]),
        momentum,
        dampening: if nesterov {
            0.0
        } else {
            src.pick(&[0.0f32, 0.1, 0.5])
        },
        weight_decay: src.pick(&[0.0f32, 1e-4, 0.1]),
        nesterov,
    };
    let mut p = src.values(len);
    let mut p_ref = p.clone();
    let buf_len = if cfg.momentum != 0.0 { len } else { 0 };
    let (mut buf, mut buf_ref) = (vec![f32::NAN; buf_len], vec![f32::NAN; buf_len]);
    for step in 0..3 {
        let grad = src.values(len);
        let p0 = p_ref.clone();
        let buf_floor =
            max_abs(&grad) + max_abs(&p0) + if step == 0 { 0.0 } else { max_abs(&buf_ref) };
        sgd_step(&cfg, &mut p, &grad, &mut buf, step == 0).unwrap();
        reference::sgd_step(&cfg, &mut p_ref, &grad, &mut buf_ref, step == 0).unwrap();
        check_update("sgd_step", &p, &p_ref, &p0, &(cfg, step));
        check_close_floor(
            "sgd momentum buffer",
            &buf,
            &buf_ref,
            buf_floor,
            &(cfg, step),
        );
        p.copy_from_slice(&p_ref);
        buf.copy_from_slice(&buf_ref);
    }
}

fn adam(src: &mut Source) {
    let len = src.int(0, 100);
    let cfg = AdamConfig {
        lr: src.pick(&[1e-3f32, 0.1, 0.01, 0.5]),
        beta1: src.pick(&[0.9f32, 0.0, 0.5, 0.99]),
        beta2: src.pick(&[0.999f32, 0.9, 0.99, 0.0]),
        eps: src.pick(&[1e-8f32, 1e-3, 0.0]),
        weight_decay: src.pick(&[0.0f32, 1e-4, 0.1]),
    };
    let start = src.pick(&[1u32, 2, 10, 1000, 100_000]);
    let mut p = src.values(len);
    let mut p_ref = p.clone();
    let (mut m, mut v) = if start == 1 {
        (vec![0.0; len], vec![0.0; len])
    } else {
        let m = src.values_scaled(len, 0.1);
        let v = src
            .values_scaled(len, 0.1)
            .iter()
            .map(|x| x.abs())
            .collect();
        (m, v)
    };
    let (mut m_ref, mut v_ref) = (m.clone(), v.clone());
    for step in start..start + 3 {
        let grad = src.values(len);
        let p0 = p_ref.clone();
        let m_floor = max_abs(&m_ref) + max_abs(&grad) + max_abs(&p0);
        adam_step(&cfg, step, &mut p, &grad, &mut m, &mut v).unwrap();
        reference::adam_step(&cfg, step, &mut p_ref, &grad, &mut m_ref, &mut v_ref).unwrap();
        check_update("adam_step", &p, &p_ref, &p0, &(cfg, step));
        check_close_floor("adam m", &m, &m_ref, m_floor, &(cfg, step));
        check_close("adam v", &v, &v_ref, &(cfg, step));
        p.copy_from_slice(&p_ref);
        m.copy_from_slice(&m_ref);
        v.copy_from_slice(&v_ref);
    }
}
