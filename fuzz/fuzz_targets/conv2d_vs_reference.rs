//! Convolution forward (every `ConvAlgo`, with and without bias) and the three backward
//! kernels against `reference`, on small valid problems of every kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn_fuzz::{check_close_floor, max_abs, Source};
use tinycnn_kernels::*;

const ALGOS: [ConvAlgo; 3] = [ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2colGemm];

fuzz_target!(|data: &[u8]| {
    let mut src = Source::new(data);
    let s = src.conv_shape();
    let with_bias = src.flag();
    let x = src.values(s.input_len().unwrap());
    let w = src.values(s.weight_len());
    let b = src.values(s.params.out_channels);
    let gy = src.values(s.output_len().unwrap());
    let bias = with_bias.then_some(&b[..]);
    let ny = gy.len();

    // Sums can cancel to almost nothing: normalize by at least the size of their terms.
    let fwd_floor = max_abs(&x) * max_abs(&w);
    let bi_floor = max_abs(&gy) * max_abs(&w);
    let bw_floor = max_abs(&x) * max_abs(&gy);
    let mut y_ref = vec![0.0; ny];
    reference::conv2d(&s, &x, &w, bias, &mut y_ref).unwrap();
    for algo in ALGOS {
        let mut y = vec![f32::NAN; ny];
        let mut ws = vec![f32::NAN; conv2d_workspace_len_for(algo, &s)];
        conv2d_forward_with(algo, &s, &x, &w, bias, &mut y, &mut ws).unwrap();
        check_close_floor(
            &format!("conv2d_forward_with({algo:?})"),
            &y,
            &y_ref,
            fwd_floor,
            &s,
        );
    }

    let mut gx_ref = vec![0.0; x.len()];
    reference::conv2d_backward_input(&s, &gy, &w, &mut gx_ref).unwrap();
    for algo in ALGOS {
        let mut gx = vec![f32::NAN; x.len()];
        let mut ws = vec![f32::NAN; conv2d_backward_input_workspace_len_for(algo, &s)];
        conv2d_backward_input_with(algo, &s, &gy, &w, &mut gx, &mut ws).unwrap();
        check_close_floor(
            &format!("conv2d_backward_input_with({algo:?})"),
            &gx,
            &gx_ref,
            bi_floor,
            &s,
        );
    }

    let mut gw_ref = vec![0.0; w.len()];
    reference::conv2d_backward_weight(&s, &x, &gy, &mut gw_ref).unwrap();
    for algo in ALGOS {
        let mut gw = vec![f32::NAN; w.len()];
        let mut ws = vec![f32::NAN; conv2d_backward_weight_workspace_len_for(algo, &s)];
        conv2d_backward_weight_with(algo, &s, &x, &gy, &mut gw, &mut ws).unwrap();
        check_close_floor(
            &format!("conv2d_backward_weight_with({algo:?})"),
            &gw,
            &gw_ref,
            bw_floor,
            &s,
        );
    }

    let mut gb_ref = vec![0.0; b.len()];
    reference::conv2d_backward_bias(&s, &gy, &mut gb_ref).unwrap();
    let mut gb = vec![f32::NAN; b.len()];
    conv2d_backward_bias(&s, &gy, &mut gb).unwrap();
    check_close_floor("conv2d_backward_bias", &gb, &gb_ref, max_abs(&gy), &s);
});
