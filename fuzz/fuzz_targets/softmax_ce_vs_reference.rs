//! Softmax, log-softmax and cross-entropy, forward and backward, against `reference`, with
//! logits up to +-1000 (the fast kernels must stay as stable as the max-shifted reference)
//! and, on some inputs, NaN and infinities (NaN must come out where the reference has it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn_fuzz::{check_close, check_close_floor, max_abs, Source, TOL};
use tinycnn_kernels::*;

fuzz_target!(|data: &[u8]| {
    let mut src = Source::new(data);
    let rows = src.int(1, 8);
    let cols = src.int(1, 70);
    let scale = src.pick(&[8.0f32, 1.0, 30.0, 100.0, 1000.0]);
    let n = rows * cols;
    let specials = src.flag();
    let mut x = src.values_scaled(n, scale);
    if specials {
        // NaN and infinities in some rows: a row holding NaN must be NaN in both.
        for (v, s) in x.iter_mut().zip(src.values_with_specials(n, true)) {
            if !s.is_finite() {
                *v = s;
            }
        }
    }
    let gy = src.values(n);
    let labels: Vec<u32> = (0..rows).map(|_| src.int(0, cols - 1) as u32).collect();
    let grad_loss = src.value();
    let context = (rows, cols, scale);

    let (mut y, mut y_ref) = (vec![f32::NAN; n], vec![0.0; n]);
    softmax_forward(rows, cols, &x, &mut y).unwrap();
    reference::softmax(rows, cols, &x, &mut y_ref).unwrap();
    check_close("softmax_forward", &y, &y_ref, &context);
    let s = y_ref.clone();
    y.fill(f32::NAN);
    softmax_backward(rows, cols, &s, &gy, &mut y).unwrap();
    reference::softmax_backward(rows, cols, &s, &gy, &mut y_ref).unwrap();
    // y * (g - sum(g y)) cancels for a nearly one-hot y: normalize by the terms' size.
    check_close_floor(
        "softmax_backward",
        &y,
        &y_ref,
        max_abs(&s) * max_abs(&gy),
        &context,
    );

    y.fill(f32::NAN);
    log_softmax_forward(rows, cols, &x, &mut y).unwrap();
    reference::log_softmax(rows, cols, &x, &mut y_ref).unwrap();
    check_close_floor("log_softmax_forward", &y, &y_ref, max_abs(&x), &context);
    let l = y_ref.clone();
    y.fill(f32::NAN);
    log_softmax_backward(rows, cols, &l, &gy, &mut y).unwrap();
    reference::log_softmax_backward(rows, cols, &l, &gy, &mut y_ref).unwrap();
    check_close_floor("log_softmax_backward", &y, &y_ref, max_abs(&gy), &context);

    let loss = cross_entropy_forward(rows, cols, &x, &labels).unwrap();
    let loss_ref = reference::cross_entropy(rows, cols, &x, &labels).unwrap();
    assert!(
        (loss.is_nan() && loss_ref.is_nan())
            || loss == loss_ref
            || (loss - loss_ref).abs() <= TOL * loss_ref.abs().max(1.0),
        "cross_entropy_forward {loss} vs reference {loss_ref}; problem: {context:?}"
    );
    y.fill(f32::NAN);
    cross_entropy_backward(rows, cols, &x, &labels, grad_loss, &mut y).unwrap();
    reference::cross_entropy_backward(rows, cols, &x, &labels, grad_loss, &mut y_ref).unwrap();
    let floor = grad_loss.abs() / rows as f32;
    check_close_floor("cross_entropy_backward", &y, &y_ref, floor, &context);
});
