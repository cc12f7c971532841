//! `sgemm` against `reference::sgemm`: all transposes, padded leading dimensions, special
//! alpha/beta; elements between rows of C must stay untouched, and with beta = 0 the old
//! contents of C (NaN here) must be ignored.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn_fuzz::{check_close_floor, max_abs, Source};
use tinycnn_kernels::simd::Isa;
use tinycnn_kernels::*;

fuzz_target!(|data: &[u8]| {
    let mut src = Source::new(data);
    let big = src.int(0, 7) == 0;
    let g = if big {
        src.gemm_shape(160, 320)
    } else {
        src.gemm_shape(48, 48)
    };
    let alpha = src.pick(&[1.0f32, 0.0, -1.0, 0.5, 2.0]);
    let beta = src.pick(&[0.0f32, 1.0, -1.0, 0.5]);
    let len = |rows: usize, cols: usize, ld: usize| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * ld + cols
        }
    };
    let (ar, ac) = g.a_stored();
    let (br, bc) = g.b_stored();
    let a = src.values(len(ar, ac, g.lda));
    let b = src.values(len(br, bc, g.ldb));
    let mut c0 = src.values(len(g.m, g.n, g.ldc));
    if beta == 0.0 {
        for i in 0..g.m {
            for j in 0..g.n {
                c0[i * g.ldc + j] = f32::NAN;
            }
        }
    }
    // Each element of C sums terms of this size; a sum that cancels is only accurate to that.
    let c_terms = c0
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let floor = alpha.abs() * max_abs(&a) * max_abs(&b) + beta.abs() * c_terms;
    let mut c_ref = c0.clone();
    reference::sgemm(&g, alpha, &a, &b, beta, &mut c_ref).unwrap();
    // The best ISA of this CPU, or one forced (falls back to scalar where unavailable).
    let isa = src.pick(&[
        None,
        Some(Isa::Scalar),
        Some(Isa::Sse2),
        Some(Isa::Avx2Fma),
        Some(Isa::Avx512),
    ]);
    let mut c = c0;
    let mut ws = vec![f32::NAN; sgemm_workspace_len(g.m, g.n, g.k)];
    match isa {
        None => sgemm(&g, alpha, &a, &b, beta, &mut c, &mut ws).unwrap(),
        Some(isa) => sgemm_with_isa(isa, &g, alpha, &a, &b, beta, &mut c, &mut ws).unwrap(),
    }

    let context = (g, alpha, beta, isa);
    let (mut inside, mut inside_ref) = (Vec::new(), Vec::new());
    for (idx, (&f, &r)) in c.iter().zip(&c_ref).enumerate() {
        if idx % g.ldc < g.n {
            inside.push(f);
            inside_ref.push(r);
        } else {
            assert!(
                f == r || (f.is_nan() && r.is_nan()),
                "sgemm wrote C[{idx}] between rows: {f} vs {r}; problem: {context:?}"
            );
        }
    }
    check_close_floor("sgemm", &inside, &inside_ref, floor, &context);
});
