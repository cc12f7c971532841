//! Max and average pooling, forward and backward, against `reference`; inputs may hold NaN
//! and infinities (max pooling must propagate NaN and pick the same argmax as the reference).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn_fuzz::{check_close_floor, check_same, max_abs, Source};
use tinycnn_kernels::*;

fuzz_target!(|data: &[u8]| {
    let mut src = Source::new(data);
    let s = src.pool_shape();
    let specials = src.flag();
    let x = src.values_with_specials(s.input_len().unwrap(), specials);
    let ny = s.output_len().unwrap();
    let gy = src.values(ny);

    let (mut y_ref, mut a_ref) = (vec![0.0; ny], vec![0u32; ny]);
    reference::max_pool2d(&s, &x, &mut y_ref, &mut a_ref).unwrap();
    let (mut y, mut a) = (vec![f32::NAN; ny], vec![u32::MAX; ny]);
    max_pool2d_forward(&s, &x, &mut y, &mut a).unwrap();
    check_same("max_pool2d_forward", &y, &y_ref, &s);
    assert_eq!(a, a_ref, "max_pool2d_forward argmax; problem: {s:?}");

    let mut gx_ref = vec![0.0; x.len()];
    reference::max_pool2d_backward(&s, &gy, &a_ref, &mut gx_ref).unwrap();
    let mut gx = vec![f32::NAN; x.len()];
    max_pool2d_backward(&s, &gy, &a_ref, &mut gx).unwrap();
    check_close_floor("max_pool2d_backward", &gx, &gx_ref, max_abs(&gy), &s);

    let mut y_ref = vec![0.0; ny];
    reference::avg_pool2d(&s, &x, &mut y_ref).unwrap();
    let mut y = vec![f32::NAN; ny];
    avg_pool2d_forward(&s, &x, &mut y).unwrap();
    let x_floor = x
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    check_close_floor("avg_pool2d_forward", &y, &y_ref, x_floor, &s);

    let mut gx_ref = vec![0.0; x.len()];
    reference::avg_pool2d_backward(&s, &gy, &mut gx_ref).unwrap();
    let mut gx = vec![f32::NAN; x.len()];
    avg_pool2d_backward(&s, &gy, &mut gx).unwrap();
    check_close_floor("avg_pool2d_backward", &gx, &gx_ref, max_abs(&gy), &s);
});
