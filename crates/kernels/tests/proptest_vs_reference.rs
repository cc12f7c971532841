//! Every fast kernel against its naive twin in `reference`, on random small problems.
//!
//! Tolerance: `max |fast - reference| <= 1e-4 * max(max |reference|, floor)` per output
//! buffer (max-abs-normalized), exact where the kernel only copies (max pooling, ReLU).
//! `floor` is the size of the terms a kernel sums (e.g. `max|x| * max|w|` for a convolution):
//! a sum that cancels to almost nothing is only accurate to rounding at that scale.
//! Output and workspace buffers start filled with NaN so a kernel that reads before it
//! writes, or leaves an element unwritten, fails; workspaces are exactly the advertised size.

mod common;

use common::{assert_close, assert_close_floor, assert_same, max_abs, Rng};
use proptest::prelude::*;
use proptest::test_runner::Config;
use tinycnn_kernels::simd::Isa;
use tinycnn_kernels::*;

const TOL: f32 = 1e-4;
const ALGOS: [ConvAlgo; 3] = [ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2colGemm];
/// Every ISA the fast kernels can be forced to (unavailable ones are skipped at run time).
const ISAS: [Isa; 5] = [Isa::Scalar, Isa::Sse2, Isa::Avx2Fma, Isa::Avx512, Isa::Neon];

/// The ISAs of [`ISAS`] this CPU runs; the first call names the x86 ones it skips and why.
fn available_isas() -> impl Iterator<Item = Isa> {
    static SKIPS: std::sync::Once = std::sync::Once::new();
    SKIPS.call_once(|| {
        if cfg!(target_arch = "x86_64") {
            for isa in [Isa::Avx2Fma, Isa::Avx512] {
                if !isa.is_available() {
                    eprintln!(
                        "skipping {}: this CPU lacks {}",
                        isa.name(),
                        isa.required_features()
                    );
                }
            }
        }
    });
    ISAS.into_iter().filter(|i| i.is_available())
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    }
}

// ---------------------------------------------------------------- strategies

/// A convolution problem whose kernel always fits the padded input.
#[derive(Debug, Clone)]
struct ConvCase {
    shape: Conv2dShape,
    with_bias: bool,
    seed: u64,
}

/// (in_channels, out_channels, groups): dense, grouped and depthwise (with multiplier).
fn channels() -> impl Strategy<Value = (usize, usize, usize)> {
    prop_oneof![
        3 => (1usize..=3, 1usize..=3).prop_map(|(ci, co)| (ci, co, 1)),
        2 => (2usize..=3, 1usize..=3, 1usize..=3).prop_map(|(g, ci, co)| (g * ci, g * co, g)),
        2 => (1usize..=6, 1usize..=2).prop_map(|(c, m)| (c, c * m, c)),
    ]
}

type Pair = (usize, usize);

/// (kernel, stride, padding, dilation); pointwise and "all ones" cases get their own weight
/// because the fast path special-cases 1x1 stride-1 unpadded convolutions.
fn geometry() -> impl Strategy<Value = (Pair, Pair, Pair, Pair)> {
    let k = || 1usize..=5;
    let st = || 1usize..=3;
    let pd = || 0usize..=2;
    let dl = || 1usize..=2;
    prop_oneof![
        6 => ((k(), k()), (st(), st()), (pd(), pd()), (dl(), dl())),
        2 => Just(((1, 1), (1, 1), (0, 0), (1, 1))),
        1 => ((st(), st()), (pd(), pd())).prop_map(|(s, p)| ((1, 1), s, p, (1, 1))),
        1 => (k(), k()).prop_map(|kk| (kk, (1, 1), (0, 0), (1, 1))),
    ]
}

/// Extra input size beyond the smallest that fits; 0 (kernel exactly as large as the padded
/// input) gets extra weight.
fn extra() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(0usize), 4 => 0usize..=20]
}

fn smallest_input(k: usize, pad: usize, dil: usize) -> usize {
    ((k - 1) * dil + 1).saturating_sub(2 * pad).max(1)
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        channels(),
        geometry(),
        prop_oneof![2 => Just(1usize), 1 => 2usize..=3],
        (extra(), extra()),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |((ci, co, g), (k, st, pad, dil), batch, (eh, ew), with_bias, seed)| {
                let p = Conv2dParams::new(ci, co, k)
                    .with_stride(st)
                    .with_padding(pad)
                    .with_dilation(dil)
                    .with_groups(g);
                let in_h = smallest_input(k.0, pad.0, dil.0) + eh;
                let in_w = smallest_input(k.1, pad.1, dil.1) + ew;
                ConvCase {
                    shape: Conv2dShape::new(p, batch, in_h, in_w),
                    with_bias,
                    seed,
                }
            },
        )
}

#[derive(Debug, Clone)]
struct PoolCase {
    shape: Pool2dShape,
    seed: u64,
    /// Values on a coarse grid, so max pooling windows hold ties.
    quantized: bool,
}

fn pool_case() -> impl Strategy<Value = PoolCase> {
    (
        (1usize..=4, 1usize..=4),
        (1usize..=4, 1usize..=4),
        (0usize..=2, 0usize..=2),
        any::<bool>(),
        (1usize..=2, 1usize..=3),
        (extra(), extra()),
        any::<u64>(),
        prop_oneof![3 => Just(false), 1 => Just(true)],
    )
        .prop_map(
            |(k, st, pad, include, (batch, ch), (eh, ew), seed, quantized)| {
                let pad = (pad.0.min(k.0 / 2), pad.1.min(k.1 / 2));
                let p = Pool2dParams::with_kernel(k)
                    .with_stride(st)
                    .with_padding(pad)
                    .with_count_include_pad(include);
                let in_h = smallest_input(k.0, pad.0, 1) + eh;
                let in_w = smallest_input(k.1, pad.1, 1) + ew;
                PoolCase {
                    shape: Pool2dShape::new(p, batch, ch, in_h, in_w),
                    seed,
                    quantized,
                }
            },
        )
}

#[derive(Debug, Clone)]
struct GemmCase {
    g: GemmShape,
    alpha: f32,
    beta: f32,
    seed: u64,
}

fn scalar_choice() -> impl Strategy<Value = f32> {
    prop_oneof![Just(0.0f32), Just(1.0f32), Just(-0.5f32), -2.0f32..2.0,]
}

fn gemm_case(max_mn: usize, max_k: usize) -> impl Strategy<Value = GemmCase> {
    let trans = || prop_oneof![Just(Transpose::No), Just(Transpose::Yes)];
    (
        (0usize..=max_mn, 0usize..=max_mn, 0usize..=max_k),
        (trans(), trans()),
        (0usize..=3, 0usize..=3, 0usize..=3),
        scalar_choice(),
        scalar_choice(),
        any::<u64>(),
    )
        .prop_map(|((m, n, k), (ta, tb), (xa, xb, xc), alpha, beta, seed)| {
            let g0 = GemmShape::new(m, n, k).with_transpose(ta, tb);
            let g = g0.with_ld(g0.lda.max(1) + xa, g0.ldb.max(1) + xb, n.max(1) + xc);
            GemmCase {
                g,
                alpha,
                beta,
                seed,
            }
        })
}

// ---------------------------------------------------------------- convolution

fn check_conv(c: &ConvCase) {
    let s = &c.shape;
    let mut rng = Rng::new(c.seed);
    let x = rng.vec(s.input_len().unwrap(), -1.0, 1.0);
    let w = rng.vec(s.weight_len(), -1.0, 1.0);
    let b = rng.vec(s.params.out_channels, -1.0, 1.0);
    let bias = c.with_bias.then_some(&b[..]);
    let ny = s.output_len().unwrap();

    // Outputs are sums that can cancel to almost nothing; rounding is relative to the size
    // of the terms (products of inputs), so that is the least the error is normalized by.
    let fwd_floor = max_abs(&x) * max_abs(&w);
    let mut y_ref = vec![0.0; ny];
    reference::conv2d(s, &x, &w, bias, &mut y_ref).unwrap();
    for algo in ALGOS {
        let mut y = vec![f32::NAN; ny];
        let mut ws = vec![f32::NAN; conv2d_workspace_len_for(algo, s)];
        conv2d_forward_with(algo, s, &x, &w, bias, &mut y, &mut ws).unwrap();
        assert_close_floor(
            &format!("conv2d_forward_with({algo:?})"),
            &y,
            &y_ref,
            TOL,
            fwd_floor,
        );
    }
    let mut y = vec![f32::NAN; ny];
    let mut ws = vec![f32::NAN; conv2d_workspace_len(s)];
    conv2d_forward(s, &x, &w, bias, &mut y, &mut ws).unwrap();
    assert_close_floor("conv2d_forward", &y, &y_ref, TOL, fwd_floor);

    let gy = rng.vec(ny, -1.0, 1.0);
    let mut gx_ref = vec![0.0; x.len()];
    reference::conv2d_backward_input(s, &gy, &w, &mut gx_ref).unwrap();
    let mut gx = vec![f32::NAN; x.len()];
    let mut ws = vec![f32::NAN; conv2d_backward_input_workspace_len(s)];
    conv2d_backward_input(s, &gy, &w, &mut gx, &mut ws).unwrap();
    let bi_floor = max_abs(&gy) * max_abs(&w);
    assert_close_floor("conv2d_backward_input", &gx, &gx_ref, TOL, bi_floor);
    for algo in ALGOS {
        let mut gx = vec![f32::NAN; x.len()];
        let mut ws = vec![f32::NAN; conv2d_backward_input_workspace_len_for(algo, s)];
        conv2d_backward_input_with(algo, s, &gy, &w, &mut gx, &mut ws).unwrap();
        assert_close_floor(
            &format!("conv2d_backward_input_with({algo:?})"),
            &gx,
            &gx_ref,
            TOL,
            bi_floor,
        );
    }

    let mut gw_ref = vec![0.0; w.len()];
    reference::conv2d_backward_weight(s, &x, &gy, &mut gw_ref).unwrap();
    let mut gw = vec![f32::NAN; w.len()];
    let mut ws = vec![f32::NAN; conv2d_backward_weight_workspace_len(s)];
    conv2d_backward_weight(s, &x, &gy, &mut gw, &mut ws).unwrap();
    let bw_floor = max_abs(&x) * max_abs(&gy);
    assert_close_floor("conv2d_backward_weight", &gw, &gw_ref, TOL, bw_floor);
    for algo in ALGOS {
        let mut gw = vec![f32::NAN; w.len()];
        let mut ws = vec![f32::NAN; conv2d_backward_weight_workspace_len_for(algo, s)];
        conv2d_backward_weight_with(algo, s, &x, &gy, &mut gw, &mut ws).unwrap();
        assert_close_floor(
            &format!("conv2d_backward_weight_with({algo:?})"),
            &gw,
            &gw_ref,
            TOL,
            bw_floor,
        );
    }

    let mut gb_ref = vec![0.0; b.len()];
    reference::conv2d_backward_bias(s, &gy, &mut gb_ref).unwrap();
    let mut gb = vec![f32::NAN; b.len()];
    conv2d_backward_bias(s, &gy, &mut gb).unwrap();
    assert_close_floor("conv2d_backward_bias", &gb, &gb_ref, TOL, max_abs(&gy));
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn conv2d_matches_reference(c in conv_case()) {
        check_conv(&c);
    }

    #[test]
    fn corr2d_matches_reference(
        (xh, xw, kh, kw) in (1usize..=20, 1usize..=20)
            .prop_flat_map(|(xh, xw)| (Just(xh), Just(xw), 1..=xh.min(6), 1..=xw.min(6))),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let x = rng.vec(xh * xw, -1.0, 1.0);
        let k = rng.vec(kh * kw, -1.0, 1.0);
        let n = (xh - kh + 1) * (xw - kw + 1);
        let mut y = vec![f32::NAN; n];
        let mut y_ref = vec![0.0; n];
        corr2d(&x, (xh, xw), &k, (kh, kw), &mut y).unwrap();
        reference::corr2d(&x, (xh, xw), &k, (kh, kw), &mut y_ref).unwrap();
        assert_close_floor("corr2d", &y, &y_ref, TOL, max_abs(&x) * max_abs(&k));
    }
}

// ---------------------------------------------------------------- pooling

fn pool_input(c: &PoolCase) -> (Rng, Vec<f32>) {
    let mut rng = Rng::new(c.seed);
    let n = c.shape.input_len().unwrap();
    let x = if c.quantized {
        (0..n).map(|_| rng.below(4) as f32 - 2.0).collect()
    } else {
        rng.vec(n, -1.0, 1.0)
    };
    (rng, x)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn max_pool_matches_reference(c in pool_case()) {
        let s = &c.shape;
        let (mut rng, x) = pool_input(&c);
        let ny = s.output_len().unwrap();
        let (mut y_ref, mut a_ref) = (vec![0.0; ny], vec![0u32; ny]);
        reference::max_pool2d(s, &x, &mut y_ref, &mut a_ref).unwrap();
        let (mut y, mut a) = (vec![f32::NAN; ny], vec![u32::MAX; ny]);
        max_pool2d_forward(s, &x, &mut y, &mut a).unwrap();
        assert_same("max_pool2d_forward", &y, &y_ref);
        prop_assert_eq!(&a, &a_ref, "argmax (ties go to the first element in row-major order)");

        let gy = rng.vec(ny, -1.0, 1.0);
        let mut gx_ref = vec![0.0; x.len()];
        reference::max_pool2d_backward(s, &gy, &a_ref, &mut gx_ref).unwrap();
        let mut gx = vec![f32::NAN; x.len()];
        max_pool2d_backward(s, &gy, &a_ref, &mut gx).unwrap();
        assert_close_floor("max_pool2d_backward", &gx, &gx_ref, TOL, max_abs(&gy));
    }

    #[test]
    fn max_pool_propagates_nan_like_reference(
        c in pool_case(),
        where_frac in 0.0f64..1.0,
        second in proptest::option::of(0.0f64..1.0),
    ) {
        // One or two NaNs: with two in a window, PyTorch (and the reference) takes the last.
        let s = &c.shape;
        let (mut rng, mut x) = pool_input(&c);
        for f in std::iter::once(where_frac).chain(second) {
            let i = ((x.len() as f64 * f) as usize).min(x.len() - 1);
            x[i] = f32::NAN;
        }
        let ny = s.output_len().unwrap();
        let (mut y_ref, mut a_ref) = (vec![0.0; ny], vec![0u32; ny]);
        reference::max_pool2d(s, &x, &mut y_ref, &mut a_ref).unwrap();
        let (mut y, mut a) = (vec![0.0; ny], vec![u32::MAX; ny]);
        max_pool2d_forward(s, &x, &mut y, &mut a).unwrap();
        assert_same("max_pool2d_forward with NaN", &y, &y_ref);
        prop_assert_eq!(&a, &a_ref);
        // Every NaN output points at a NaN input of its plane.
        let plane = s.in_h * s.in_w;
        let out_plane = ny / (s.batch * s.channels);
        for (o, (&v, &i)) in y.iter().zip(&a).enumerate() {
            if v.is_nan() {
                prop_assert!(x[(o / out_plane) * plane + i as usize].is_nan());
            }
        }
        let gy = rng.vec(ny, -1.0, 1.0);
        let (mut gx, mut gx_ref) = (vec![f32::NAN; x.len()], vec![0.0; x.len()]);
        max_pool2d_backward(s, &gy, &a, &mut gx).unwrap();
        reference::max_pool2d_backward(s, &gy, &a_ref, &mut gx_ref).unwrap();
        assert_close_floor("max_pool2d_backward with NaN", &gx, &gx_ref, TOL, max_abs(&gy));
    }

    #[test]
    fn avg_pool_matches_reference(c in pool_case()) {
        let s = &c.shape;
        let (mut rng, x) = pool_input(&c);
        let ny = s.output_len().unwrap();
        let mut y_ref = vec![0.0; ny];
        reference::avg_pool2d(s, &x, &mut y_ref).unwrap();
        let mut y = vec![f32::NAN; ny];
        avg_pool2d_forward(s, &x, &mut y).unwrap();
        assert_close_floor("avg_pool2d_forward", &y, &y_ref, TOL, max_abs(&x));

        let gy = rng.vec(ny, -1.0, 1.0);
        let mut gx_ref = vec![0.0; x.len()];
        reference::avg_pool2d_backward(s, &gy, &mut gx_ref).unwrap();
        let mut gx = vec![f32::NAN; x.len()];
        avg_pool2d_backward(s, &gy, &mut gx).unwrap();
        assert_close_floor("avg_pool2d_backward", &gx, &gx_ref, TOL, max_abs(&gy));
    }
}

// ---------------------------------------------------------------- GEMM

fn check_gemm(c: &GemmCase) {
    let g = &c.g;
    let mut rng = Rng::new(c.seed);
    let (ar, ac) = g.a_stored();
    let (br, bc) = g.b_stored();
    let len = |r: usize, cols: usize, ld: usize| {
        if r == 0 || cols == 0 {
            0
        } else {
            (r - 1) * ld + cols
        }
    };
    let a = rng.vec(len(ar, ac, g.lda), -1.0, 1.0);
    let b = rng.vec(len(br, bc, g.ldb), -1.0, 1.0);
    // Gaps between rows of C hold values the kernel must leave alone; with beta == 0 the
    // matrix itself holds NaN, which must be ignored.
    let mut c0 = rng.vec(len(g.m, g.n, g.ldc), -1.0, 1.0);
    if c.beta == 0.0 {
        for i in 0..g.m {
            for j in 0..g.n {
                c0[i * g.ldc + j] = f32::NAN;
            }
        }
    }
    let mut c_ref = c0.clone();
    reference::sgemm(g, c.alpha, &a, &b, c.beta, &mut c_ref).unwrap();
    let mut c_fast = c0.clone();
    let mut ws = vec![f32::NAN; sgemm_workspace_len(g.m, g.n, g.k)];
    sgemm(g, c.alpha, &a, &b, c.beta, &mut c_fast, &mut ws).unwrap();
    // Size of the terms summed into each element of C.
    let c_terms = c0
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let floor = c.alpha.abs() * max_abs(&a) * max_abs(&b) + c.beta.abs() * c_terms;
    compare_gemm_output("sgemm", g, c, &c_fast, &c_ref, floor);
    for isa in available_isas() {
        let mut c_fast = c0.clone();
        ws.fill(f32::NAN);
        sgemm_with_isa(isa, g, c.alpha, &a, &b, c.beta, &mut c_fast, &mut ws).unwrap();
        compare_gemm_output(
            &format!("sgemm_with_isa({isa:?})"),
            g,
            c,
            &c_fast,
            &c_ref,
            floor,
        );
    }
}

fn compare_gemm_output(
    what: &str,
    g: &GemmShape,
    c: &GemmCase,
    c_fast: &[f32],
    c_ref: &[f32],
    floor: f32,
) {
    let mut inside_fast = Vec::new();
    let mut inside_ref = Vec::new();
    for (idx, (&f, &r)) in c_fast.iter().zip(c_ref).enumerate() {
        let (i, j) = (idx / g.ldc, idx % g.ldc);
        if i < g.m && j < g.n {
            inside_fast.push(f);
            inside_ref.push(r);
        } else {
            assert!(
                f == r || (f.is_nan() && r.is_nan()),
                "{what} wrote C[{idx}] outside the matrix (ldc {}): {f} vs {r}",
                g.ldc
            );
        }
    }
    assert!(
        inside_fast.iter().all(|v| !v.is_nan()),
        "{what} left NaN in C (beta {})",
        c.beta
    );
    assert_close_floor(what, &inside_fast, &inside_ref, TOL, floor);
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn sgemm_matches_reference(c in gemm_case(40, 40)) {
        check_gemm(&c);
    }
}

proptest! {
    // Large enough to cross register and cache blocking boundaries; few cases (each is ~1M flops).
    #![proptest_config(config(48))]

    #[test]
    fn sgemm_blocked_sizes_match_reference(c in gemm_case(150, 300)) {
        check_gemm(&c);
    }
}

// ---------------------------------------------------------------- elementwise

fn scaled_vec(rng: &mut Rng, len: usize, scale: f32, zeros: bool) -> Vec<f32> {
    (0..len)
        .map(|_| {
            if zeros && rng.below(4) == 0 {
                0.0
            } else {
                rng.uniform(-scale, scale)
            }
        })
        .collect()
}

fn scale() -> impl Strategy<Value = f32> {
    prop_oneof![Just(1.0f32), Just(6.0f32), Just(30.0f32), Just(120.0f32)]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn activations_match_reference(len in 0usize..=67, sc in scale(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut x = scaled_vec(&mut rng, len, sc, true);
        // NaN and infinities in some places: they must come out where the reference has them.
        for v in x.iter_mut() {
            match rng.below(16) {
                0 => *v = f32::NAN,
                1 => *v = f32::INFINITY,
                2 => *v = f32::NEG_INFINITY,
                _ => {}
            }
        }
        let gy = rng.vec(len, -1.0, 1.0);
        let (mut y, mut y_ref) = (vec![f32::NAN; len], vec![0.0; len]);

        relu_forward(&x, &mut y).unwrap();
        reference::relu(&x, &mut y_ref).unwrap();
        assert_same("relu_forward", &y, &y_ref);
        relu_backward(&x, &gy, &mut y).unwrap();
        reference::relu_backward(&x, &gy, &mut y_ref).unwrap();
        assert_same("relu_backward", &y, &y_ref);

        y.fill(f32::NAN);
        relu6_forward(&x, &mut y).unwrap();
        reference::relu6(&x, &mut y_ref).unwrap();
        assert_same("relu6_forward", &y, &y_ref);
        relu6_backward(&x, &gy, &mut y).unwrap();
        reference::relu6_backward(&x, &gy, &mut y_ref).unwrap();
        assert_same("relu6_backward", &y, &y_ref);

        y.fill(f32::NAN);
        sigmoid_forward(&x, &mut y).unwrap();
        reference::sigmoid(&x, &mut y_ref).unwrap();
        assert_close("sigmoid_forward", &y, &y_ref, TOL);
        let s_out = y_ref.clone();
        y.fill(f32::NAN);
        sigmoid_backward(&s_out, &gy, &mut y).unwrap();
        reference::sigmoid_backward(&s_out, &gy, &mut y_ref).unwrap();
        assert_close("sigmoid_backward", &y, &y_ref, TOL);

        y.fill(f32::NAN);
        tanh_forward(&x, &mut y).unwrap();
        reference::tanh(&x, &mut y_ref).unwrap();
        assert_close("tanh_forward", &y, &y_ref, TOL);
        let t_out = y_ref.clone();
        y.fill(f32::NAN);
        tanh_backward(&t_out, &gy, &mut y).unwrap();
        reference::tanh_backward(&t_out, &gy, &mut y_ref).unwrap();
        assert_close("tanh_backward", &y, &y_ref, TOL);
    }

    #[test]
    fn bias_matches_reference(
        outer in 1usize..=3, channels in 1usize..=6, inner in 1usize..=37, seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let n = outer * channels * inner;
        let bias = rng.vec(channels, -1.0, 1.0);
        let x0 = rng.vec(n, -1.0, 1.0);
        let (mut x, mut x_ref) = (x0.clone(), x0.clone());
        bias_add(outer, channels, inner, &bias, &mut x).unwrap();
        reference::bias_add(outer, channels, inner, &bias, &mut x_ref).unwrap();
        assert_close_floor("bias_add", &x, &x_ref, TOL, max_abs(&x0) + max_abs(&bias));

        let mut gb = vec![f32::NAN; channels];
        let mut gb_ref = vec![0.0; channels];
        bias_backward(outer, channels, inner, &x0, &mut gb).unwrap();
        reference::bias_backward(outer, channels, inner, &x0, &mut gb_ref).unwrap();
        assert_close_floor("bias_backward", &gb, &gb_ref, TOL, max_abs(&x0));
    }
}

// ---------------------------------------------------------------- losses

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn softmax_family_matches_reference(
        rows in 1usize..=4, cols in 1usize..=37, sc in scale(), seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let n = rows * cols;
        let x = rng.vec(n, -sc, sc);
        let gy = rng.vec(n, -1.0, 1.0);
        let labels: Vec<u32> = (0..rows).map(|_| rng.below(cols) as u32).collect();
        let (mut y, mut y_ref) = (vec![f32::NAN; n], vec![0.0; n]);

        softmax_forward(rows, cols, &x, &mut y).unwrap();
        reference::softmax(rows, cols, &x, &mut y_ref).unwrap();
        assert_close("softmax_forward", &y, &y_ref, TOL);
        let s_out = y_ref.clone();
        y.fill(f32::NAN);
        softmax_backward(rows, cols, &s_out, &gy, &mut y).unwrap();
        reference::softmax_backward(rows, cols, &s_out, &gy, &mut y_ref).unwrap();
        // y * (g - sum(g y)) cancels when y is nearly one-hot: every output is then tiny
        // while the terms are of size max|y| max|g|; normalize by that.
        let floor = max_abs(&s_out) * max_abs(&gy);
        assert_close_floor("softmax_backward", &y, &y_ref, TOL, floor);

        y.fill(f32::NAN);
        log_softmax_forward(rows, cols, &x, &mut y).unwrap();
        reference::log_softmax(rows, cols, &x, &mut y_ref).unwrap();
        // x - logsumexp(x) is 0 up to rounding of x's size for a single column.
        assert_close_floor("log_softmax_forward", &y, &y_ref, TOL, max_abs(&x));
        let l_out = y_ref.clone();
        y.fill(f32::NAN);
        log_softmax_backward(rows, cols, &l_out, &gy, &mut y).unwrap();
        reference::log_softmax_backward(rows, cols, &l_out, &gy, &mut y_ref).unwrap();
        // g - softmax * sum(g): terms of size max|g|.
        assert_close_floor("log_softmax_backward", &y, &y_ref, TOL, max_abs(&gy));

        let loss = cross_entropy_forward(rows, cols, &x, &labels).unwrap();
        let loss_ref = reference::cross_entropy(rows, cols, &x, &labels).unwrap();
        // A loss near 0 is compared absolutely (floor 1), a large one relatively.
        prop_assert!(
            (loss - loss_ref).abs() <= TOL * loss_ref.abs().max(1.0),
            "cross_entropy_forward {} vs reference {}", loss, loss_ref
        );
        let grad_loss = rng.uniform(-2.0, 2.0);
        y.fill(f32::NAN);
        cross_entropy_backward(rows, cols, &x, &labels, grad_loss, &mut y).unwrap();
        reference::cross_entropy_backward(rows, cols, &x, &labels, grad_loss, &mut y_ref).unwrap();
        // (softmax - onehot) * grad_loss / rows: terms of size |grad_loss| / rows.
        let floor = grad_loss.abs() / rows as f32;
        assert_close_floor("cross_entropy_backward", &y, &y_ref, TOL, floor);
    }
}

// ---------------------------------------------------------------- optimizers

/// Compares the parameter *updates* (p - p0) in f64, so a small learning rate does not hide
/// an error under the rounding of p itself.
fn assert_updates_close(what: &str, p: &[f32], p_ref: &[f32], p0: &[f32]) {
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
    // f32 rounding of p (|p| <= ~2) is ~1.2e-7 absolute; allow that on top of the relative bound.
    let scale = d_ref.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (&a, &e)) in d.iter().zip(&d_ref).enumerate() {
        if a == e || (a.is_nan() && e.is_nan()) {
            continue;
        }
        assert!(
            (a - e).abs() <= TOL * scale + 4e-7,
            "{what}: update[{i}] {a} vs reference {e} (max update {scale})"
        );
    }
}

fn sgd_config() -> impl Strategy<Value = SgdConfig> {
    (
        0.01f32..1.0,
        prop_oneof![Just(0.0f32), Just(0.9f32), 0.0f32..1.0],
        prop_oneof![2 => Just(0.0f32), 1 => 0.0f32..1.0],
        prop_oneof![Just(0.0f32), 0.0f32..0.1],
        any::<bool>(),
    )
        .prop_map(|(lr, momentum, dampening, weight_decay, nesterov)| {
            let nesterov = nesterov && momentum > 0.0;
            SgdConfig {
                lr,
                momentum,
                dampening: if nesterov { 0.0 } else { dampening },
                weight_decay,
                nesterov,
            }
        })
}

fn adam_config() -> impl Strategy<Value = AdamConfig> {
    (
        0.01f32..0.5,
        prop_oneof![Just(0.9f32), 0.0f32..0.99],
        prop_oneof![Just(0.999f32), 0.9f32..0.9999],
        prop_oneof![Just(1e-8f32), Just(1e-3f32)],
        prop_oneof![Just(0.0f32), 0.0f32..0.1],
    )
        .prop_map(|(lr, beta1, beta2, eps, weight_decay)| AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn sgd_matches_reference(cfg in sgd_config(), len in 0usize..=67, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut p = rng.vec(len, -1.0, 1.0);
        let mut p_ref = p.clone();
        let buf_len = if cfg.momentum != 0.0 { len } else { 0 };
        let mut buf = vec![f32::NAN; buf_len];
        let mut buf_ref = vec![f32::NAN; buf_len];
        for step in 0..3 {
            let grad = rng.vec(len, -1.0, 1.0);
            let p0 = p_ref.clone();
            // momentum * buf + (1 - dampening) * d can cancel: terms of this size.
            let buf_floor = max_abs(&grad) + max_abs(&p0) + if step == 0 { 0.0 } else { max_abs(&buf_ref) };
            sgd_step(&cfg, &mut p, &grad, &mut buf, step == 0).unwrap();
            reference::sgd_step(&cfg, &mut p_ref, &grad, &mut buf_ref, step == 0).unwrap();
            assert_updates_close(&format!("sgd step {step}"), &p, &p_ref, &p0);
            assert_close_floor(&format!("sgd momentum buffer step {step}"), &buf, &buf_ref, TOL, buf_floor);
            // Continue both from the reference state so errors do not compound.
            p.copy_from_slice(&p_ref);
            buf.copy_from_slice(&buf_ref);
        }
    }

    #[test]
    fn adam_matches_reference(
        cfg in adam_config(), len in 0usize..=67, start in prop_oneof![Just(1u32), 1u32..=1000],
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let mut p = rng.vec(len, -1.0, 1.0);
        let mut p_ref = p.clone();
        // Later steps start from plausible moment estimates.
        let (mut m, mut v) = if start == 1 {
            (vec![0.0; len], vec![0.0; len])
        } else {
            (rng.vec(len, -0.1, 0.1), rng.vec(len, 0.0, 0.01))
        };
        let (mut m_ref, mut v_ref) = (m.clone(), v.clone());
        for step in start..start + 3 {
            let grad = rng.vec(len, -1.0, 1.0);
            let p0 = p_ref.clone();
            // beta1 * m + (1 - beta1) * g can cancel: terms of this size.
            let m_floor = max_abs(&m_ref) + max_abs(&grad) + max_abs(&p0);
            adam_step(&cfg, step, &mut p, &grad, &mut m, &mut v).unwrap();
            reference::adam_step(&cfg, step, &mut p_ref, &grad, &mut m_ref, &mut v_ref).unwrap();
            assert_updates_close(&format!("adam step {step}"), &p, &p_ref, &p0);
            assert_close_floor(&format!("adam m step {step}"), &m, &m_ref, TOL, m_floor);
            assert_close(&format!("adam v step {step}"), &v, &v_ref, TOL);
            p.copy_from_slice(&p_ref);
            m.copy_from_slice(&m_ref);
            v.copy_from_slice(&v_ref);
        }
    }
}

// ---------------------------------------------------------------- batch norm, adaptive pooling

fn batch_norm_case() -> impl Strategy<Value = (BatchNormShape, u64, bool, bool, bool)> {
    (
        1usize..=4,
        1usize..=5,
        1usize..=40,
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_filter("more than one value per channel", |(n, _, sp, ..)| {
            n * sp > 1
        })
        .prop_map(|(n, c, sp, seed, training, w, b)| {
            (BatchNormShape::new(n, c, sp), seed, training, w, b)
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn batch_norm_matches_reference(
        (s, seed, training, with_w, with_b) in batch_norm_case(),
        sc in scale(),
    ) {
        let mut rng = Rng::new(seed);
        let len = s.len().unwrap();
        // An offset per run, so the mean is not near zero (the two-pass variance matters).
        let offset = rng.uniform(-sc, sc);
        let x: Vec<f32> = rng.vec(len, -sc, sc).iter().map(|v| v + offset).collect();
        let c = s.channels;
        let (mut mean, mut var) = (vec![f32::NAN; c], vec![f32::NAN; c]);
        let (mut mean_ref, mut var_ref) = (vec![0.0; c], vec![0.0; c]);
        batch_norm_stats(&s, &x, &mut mean, &mut var).unwrap();
        reference::batch_norm_stats(&s, &x, &mut mean_ref, &mut var_ref).unwrap();
        assert_close_floor("batch_norm_stats mean", &mean, &mean_ref, TOL, max_abs(&x));
        assert_close_floor("batch_norm_stats var", &var, &var_ref, TOL, max_abs(&x).powi(2));

        // Training normalizes with the batch's statistics; evaluation with running ones.
        let (run_mean, run_var) = (rng.vec(c, -1.0, 1.0), rng.vec(c, 0.2, 3.0));
        let stats = if training {
            BatchNormStats { mean: &mean_ref, var: &var_ref, eps: 1e-5 }
        } else {
            BatchNormStats { mean: &run_mean, var: &run_var, eps: 1e-5 }
        };
        let w = rng.vec(c, -2.0, 2.0);
        let b = rng.vec(c, -1.0, 1.0);
        let (w, b) = (with_w.then_some(&w[..]), with_b.then_some(&b[..]));
        let (mut y, mut y_ref) = (vec![f32::NAN; len], vec![0.0; len]);
        batch_norm_forward(&s, &x, &stats, w, b, &mut y).unwrap();
        reference::batch_norm_forward(&s, &x, &stats, w, b, &mut y_ref).unwrap();
        // The normalized values are O(1) times |w| (O(max|x| / sqrt(var)) in evaluation).
        let floor = max_abs(&y_ref).max(1.0);
        assert_close_floor("batch_norm_forward", &y, &y_ref, TOL, floor);

        let gy = rng.vec(len, -1.0, 1.0);
        let (mut gx, mut gw, mut gb) = (vec![f32::NAN; len], vec![f32::NAN; c], vec![f32::NAN; c]);
        let (mut gx_r, mut gw_r, mut gb_r) = (vec![0.0; len], vec![0.0; c], vec![0.0; c]);
        let grads = BatchNormGrads { x: Some(&mut gx), weight: Some(&mut gw), bias: Some(&mut gb) };
        batch_norm_backward(&s, &x, &gy, &stats, w, training, grads).unwrap();
        let grads = BatchNormGrads { x: Some(&mut gx_r), weight: Some(&mut gw_r), bias: Some(&mut gb_r) };
        reference::batch_norm_backward(&s, &x, &gy, &stats, w, training, grads).unwrap();
        let count = s.count() as f32;
        let invstd_max = stats.var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).fold(0.0f32, f32::max);
        let w_max = w.map_or(1.0, max_abs);
        assert_close_floor("batch_norm_backward x", &gx, &gx_r, TOL, w_max * invstd_max * 3.0);
        assert_close_floor("batch_norm_backward weight", &gw, &gw_r, TOL, count * max_abs(&x) * invstd_max);
        assert_close_floor("batch_norm_backward bias", &gb, &gb_r, TOL, count);
        // Only the gradients asked for are written.
        let mut gb_only = vec![f32::NAN; c];
        let grads = BatchNormGrads { bias: Some(&mut gb_only), ..Default::default() };
        batch_norm_backward(&s, &x, &gy, &stats, w, training, grads).unwrap();
        prop_assert_eq!(gb_only, gb);
    }

    #[test]
    fn adaptive_avg_pool_matches_reference(
        (batch, ch) in (1usize..=2, 1usize..=3),
        (ih, iw) in (1usize..=12, 1usize..=12),
        (oh, ow) in (1usize..=7, 1usize..=7),
        seed in any::<u64>(),
    ) {
        let s = AdaptivePool2dShape::new(batch, ch, (ih, iw), (oh, ow));
        let mut rng = Rng::new(seed);
        let x = rng.vec(s.input_len().unwrap(), -1.0, 1.0);
        let ny = s.output_len().unwrap();
        let (mut y, mut y_ref) = (vec![f32::NAN; ny], vec![0.0; ny]);
        adaptive_avg_pool2d_forward(&s, &x, &mut y).unwrap();
        reference::adaptive_avg_pool2d(&s, &x, &mut y_ref).unwrap();
        assert_close_floor("adaptive_avg_pool2d_forward", &y, &y_ref, TOL, 1.0);
        let gy = rng.vec(ny, -1.0, 1.0);
        let (mut gx, mut gx_ref) = (vec![f32::NAN; x.len()], vec![0.0; x.len()]);
        adaptive_avg_pool2d_backward(&s, &gy, &mut gx).unwrap();
        reference::adaptive_avg_pool2d_backward(&s, &gy, &mut gx_ref).unwrap();
        assert_close_floor("adaptive_avg_pool2d_backward", &gx, &gx_ref, TOL, 1.0);
    }
}
