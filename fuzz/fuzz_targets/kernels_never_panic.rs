//! Arbitrary shapes (zeros, huge values that overflow `usize`) and arbitrary slice lengths
//! into every public kernel, fast and reference: each call must return `Ok` or a
//! `KernelError`, never panic, hang or read out of bounds. Values are raw f32 bit patterns.
//!
//! Lengths are usually what the shape asks for (when that is small), so calls get past the
//! checks and compute; otherwise they are off by a little or random.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn_fuzz::Source;
use tinycnn_kernels::simd::Isa;
use tinycnn_kernels::*;

/// Largest buffer this target allocates, in elements.
const CAP: usize = 1 << 14;
/// Largest amount of multiply-adds a call may need before we deliberately break a length
/// (keeps each input fast; compute cost is not what this target is about).
const WORK_CAP: usize = 1 << 22;

fn dim(src: &mut Source) -> usize {
    let b = src.byte();
    if b < 224 {
        (b % 12) as usize
    } else {
        src.pick(&[
            0,
            1,
            31,
            1 << 16,
            1 << 31,
            (1 << 32) + 1,
            usize::MAX / 2,
            usize::MAX / 3,
            usize::MAX - 1,
            usize::MAX,
        ])
    }
}

fn pair(src: &mut Source) -> (usize, usize) {
    (dim(src), dim(src))
}

/// A buffer length for something that should hold `wanted` elements.
fn length(src: &mut Source, wanted: Option<usize>, affordable: bool) -> usize {
    match wanted {
        // Too much work: one element too many, so the call is refused before computing.
        Some(n) if n <= CAP && !affordable => n + 1,
        Some(n) if n <= CAP => match src.int(0, 5) {
            0..=3 => n,
            _ => n.saturating_add(src.int(0, 2)).saturating_sub(1),
        },
        _ => src.int(0, 64),
    }
}

fn buf(src: &mut Source, wanted: Option<usize>, affordable: bool) -> Vec<f32> {
    let n = length(src, wanted, affordable);
    src.raw_values(n)
}

fn conv(src: &mut Source) {
    let p = Conv2dParams {
        in_channels: dim(src),
        out_channels: dim(src),
        kernel: pair(src),
        stride: pair(src),
        padding: pair(src),
        dilation: pair(src),
        groups: dim(src),
    };
    let s = Conv2dShape::new(p, dim(src), dim(src), dim(src));
    let _ = (s.validate(), s.out_hw(), s.col_cols(), s.weight_len());
    // `col_rows` divides by `groups` unchecked (reported; see errors.rs
    // `conv_shape_helpers_do_not_panic`), so only ask it once groups is known non-zero.
    let rows = if p.groups != 0 {
        s.col_rows().ok()
    } else {
        None
    };
    let work = s
        .output_len()
        .ok()
        .zip(rows)
        .and_then(|(a, b)| a.checked_mul(b));
    let ok = work.is_some_and(|w| w <= WORK_CAP);
    let x = buf(src, s.input_len().ok(), ok);
    let w = buf(src, Some(s.weight_len()), ok);
    let b = buf(src, Some(p.out_channels), ok);
    let mut y = buf(src, s.output_len().ok(), ok);
    let with_bias = src.flag();
    let bias = with_bias.then_some(&b[..]);
    let algo = src.pick(&[ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2colGemm]);
    let mut ws = buf(src, Some(conv2d_workspace_len_for(algo, &s)), ok);
    let _ = (
        choose_algo(&s),
        choose_backward_input_algo(&s),
        choose_backward_weight_algo(&s),
    );
    let _ = conv2d_forward_with(algo, &s, &x, &w, bias, &mut y, &mut ws);
    let _ = reference::conv2d(&s, &x, &w, bias, &mut y);
    let mut gx = buf(src, s.input_len().ok(), ok);
    let mut ws = buf(
        src,
        Some(conv2d_backward_input_workspace_len_for(algo, &s)),
        ok,
    );
    let _ = conv2d_backward_input_with(algo, &s, &y, &w, &mut gx, &mut ws);
    let _ = conv2d_backward_input(&s, &y, &w, &mut gx, &mut ws);
    let _ = reference::conv2d_backward_input(&s, &y, &w, &mut gx);
    let mut gw = buf(src, Some(s.weight_len()), ok);
    let mut ws = buf(
        src,
        Some(conv2d_backward_weight_workspace_len_for(algo, &s)),
        ok,
    );
    let _ = conv2d_backward_weight_with(algo, &s, &x, &y, &mut gw, &mut ws);
    let _ = conv2d_backward_weight(&s, &x, &y, &mut gw, &mut ws);
    let _ = reference::conv2d_backward_weight(&s, &x, &y, &mut gw);
    let mut gb = buf(src, Some(p.out_channels), ok);
    let _ = conv2d_backward_bias(&s, &y, &mut gb);
    let _ = reference::conv2d_backward_bias(&s, &y, &mut gb);
}

fn corr(src: &mut Source) {
    let (xh, xw, kh, kw) = (dim(src), dim(src), dim(src), dim(src));
    let x = buf(src, xh.checked_mul(xw), true);
    let k = buf(src, kh.checked_mul(kw), true);
    let out_len = |x: usize, k: usize| x.checked_sub(k)?.checked_add(1);
    let out = out_len(xh, kh).zip(out_len(xw, kw));
    let mut y = buf(src, out.and_then(|(a, b)| a.checked_mul(b)), true);
    let _ = corr2d(&x, (xh, xw), &k, (kh, kw), &mut y);
    let _ = reference::corr2d(&x, (xh, xw), &k, (kh, kw), &mut y);
}

fn pool(src: &mut Source) {
    let p = Pool2dParams {
        kernel: pair(src),
        stride: pair(src),
        padding: pair(src),
        count_include_pad: src.flag(),
    };
    let s = Pool2dShape::new(p, dim(src), dim(src), dim(src), dim(src));
    let work = s
        .output_len()
        .ok()
        .and_then(|n| n.checked_mul(p.kernel.0)?.checked_mul(p.kernel.1));
    let ok = work.is_some_and(|w| w <= WORK_CAP);
    let x = buf(src, s.input_len().ok(), ok);
    let mut y = buf(src, s.output_len().ok(), ok);
    let n_arg = length(src, s.output_len().ok(), ok);
    // Argmax indices: mostly in range, sometimes not.
    let plane = s.in_h.saturating_mul(s.in_w).max(1);
    let mut arg: Vec<u32> = (0..n_arg)
        .map(|_| {
            let b = src.byte() as usize;
            if b == 255 {
                u32::MAX
            } else {
                (b * 7919 % plane) as u32
            }
        })
        .collect();
    let mut gx = buf(src, s.input_len().ok(), ok);
    if src.flag() {
        let _ = max_pool2d_forward(&s, &x, &mut y, &mut arg);
        let _ = reference::max_pool2d(&s, &x, &mut y, &mut arg);
    }
    let _ = max_pool2d_backward(&s, &y, &arg, &mut gx);
    let _ = reference::max_pool2d_backward(&s, &y, &arg, &mut gx);
    let _ = avg_pool2d_forward(&s, &x, &mut y);
    let _ = reference::avg_pool2d(&s, &x, &mut y);
    let _ = avg_pool2d_backward(&s, &y, &mut gx);
    let _ = reference::avg_pool2d_backward(&s, &y, &mut gx);
}

fn gemm(src: &mut Source) {
    let g = GemmShape {
        m: dim(src),
        n: dim(src),
        k: dim(src),
        trans_a: src.pick(&[Transpose::No, Transpose::Yes]),
        trans_b: src.pick(&[Transpose::No, Transpose::Yes]),
        lda: dim(src),
        ldb: dim(src),
        ldc: dim(src),
    };
    let need = |(r, c): (usize, usize), ld: usize| -> Option<usize> {
        if r == 0 || c == 0 {
            Some(0)
        } else {
            (r - 1).checked_mul(ld)?.checked_add(c)
        }
    };
    let ok =
        g.m.checked_mul(g.n)
            .and_then(|v| v.checked_mul(g.k))
            .is_some_and(|w| w <= WORK_CAP);
    let a = buf(src, need(g.a_stored(), g.lda), ok);
    let b = buf(src, need(g.b_stored(), g.ldb), ok);
    let mut c = buf(src, need((g.m, g.n), g.ldc), ok);
    let mut ws = buf(src, Some(sgemm_workspace_len(g.m, g.n, g.k)), ok);
    let alpha = src.raw_values(1)[0];
    let beta = src.pick(&[0.0f32, 1.0, f32::NAN, -2.0]);
    let _ = sgemm(&g, alpha, &a, &b, beta, &mut c, &mut ws);
    let isa = src.pick(&[Isa::Scalar, Isa::Sse2, Isa::Avx2Fma, Isa::Avx512, Isa::Neon]);
    let _ = sgemm_with_isa(isa, &g, alpha, &a, &b, beta, &mut c, &mut ws);
    let _ = reference::sgemm(&g, alpha, &a, &b, beta, &mut c);
}

fn elementwise(src: &mut Source) {
    let n = src.int(0, 80);
    let x = src.raw_values(n);
    let gy = buf(src, Some(n), true);
    let mut y = buf(src, Some(n), true);
    let _ = relu_forward(&x, &mut y);
    let _ = relu_backward(&x, &gy, &mut y);
    let _ = sigmoid_forward(&x, &mut y);
    let _ = sigmoid_backward(&x, &gy, &mut y);
    let _ = tanh_forward(&x, &mut y);
    let _ = tanh_backward(&x, &gy, &mut y);
    let _ = reference::relu(&x, &mut y);
    let _ = reference::sigmoid_backward(&x, &gy, &mut y);
    let (outer, channels, inner) = (dim(src), dim(src), dim(src));
    let total = outer
        .checked_mul(channels)
        .and_then(|v| v.checked_mul(inner));
    let bias = buf(src, Some(channels), true);
    let mut xb = buf(src, total, true);
    let _ = bias_add(outer, channels, inner, &bias, &mut xb);
    let mut gb = buf(src, Some(channels), true);
    let _ = bias_backward(outer, channels, inner, &xb, &mut gb);
    let _ = reference::bias_add(outer, channels, inner, &bias, &mut xb);
    let _ = reference::bias_backward(outer, channels, inner, &xb, &mut gb);
}

fn losses(src: &mut Source) {
    let (rows, cols) = (dim(src), dim(src));
    let total = rows.checked_mul(cols);
    let x = buf(src, total, true);
    let gy = buf(src, total, true);
    let mut y = buf(src, total, true);
    let n_labels = length(src, Some(rows), true);
    let labels: Vec<u32> = (0..n_labels)
        .map(|_| match src.byte() {
            255 => u32::MAX,
            b => (b as usize % cols.clamp(1, 64)) as u32 + (b >= 250) as u32 * 64,
        })
        .collect();
    let g = src.raw_values(1)[0];
    let _ = softmax_forward(rows, cols, &x, &mut y);
    let _ = softmax_backward(rows, cols, &x, &gy, &mut y);
    let _ = log_softmax_forward(rows, cols, &x, &mut y);
    let _ = log_softmax_backward(rows, cols, &x, &gy, &mut y);
    let _ = cross_entropy_forward(rows, cols, &x, &labels);
    let _ = cross_entropy_backward(rows, cols, &x, &labels, g, &mut y);
    let _ = reference::softmax(rows, cols, &x, &mut y);
    let _ = reference::log_softmax_backward(rows, cols, &x, &gy, &mut y);
    let _ = reference::cross_entropy(rows, cols, &x, &labels);
    let _ = reference::cross_entropy_backward(rows, cols, &x, &labels, g, &mut y);
}

fn optim(src: &mut Source) {
    let n = src.int(0, 80);
    let mut p = src.raw_values(n);
    let g = buf(src, Some(n), true);
    let mut buf1 = buf(src, Some(n), true);
    let mut buf2 = buf(src, Some(n), true);
    let raw = src.raw_values(5);
    let pick = |src: &mut Source, i: usize| {
        if src.flag() {
            raw[i]
        } else {
            src.pick(&[0.0f32, 0.1, 0.9, 1.0, -1.0])
        }
    };
    let sgd = SgdConfig {
        lr: pick(src, 0),
        momentum: pick(src, 1),
        dampening: pick(src, 2),
        weight_decay: pick(src, 3),
        nesterov: src.flag(),
    };
    let first = src.flag();
    let _ = sgd_step(&sgd, &mut p, &g, &mut buf1, first);
    let _ = reference::sgd_step(&sgd, &mut p, &g, &mut buf1, first);
    let adam = AdamConfig {
        lr: pick(src, 0),
        beta1: pick(src, 1),
        beta2: pick(src, 2),
        eps: pick(src, 3),
        weight_decay: pick(src, 4),
    };
    let step = src.pick(&[0u32, 1, 2, 1000, u32::MAX]);
    let _ = adam_step(&adam, step, &mut p, &g, &mut buf1, &mut buf2);
    let _ = reference::adam_step(&adam, step, &mut p, &g, &mut buf1, &mut buf2);
}

fuzz_target!(|data: &[u8]| {
    let mut src = Source::new(data);
    match src.int(0, 7) {
        0 | 1 => conv(&mut src),
        2 => corr(&mut src),
        3 => pool(&mut src),
        4 => gemm(&mut src),
        5 => elementwise(&mut src),
        6 => losses(&mut src),
        _ => optim(&mut src),
    }
});
