//! The AVX-512 token, 16 lanes, in its own file so that adding a method to [`Simd`] touches
//! one self-contained block per ISA. Mirrors `Avx2Fma` in `simd.rs` method for method.

use super::{Isa, Simd};
use core::arch::x86_64::*;

/// AVX-512 (F and VL), 16 lanes, with mask registers for partial loads and stores.
/// Only [`super::vectorize`] creates it, after detection.
#[derive(Debug, Clone, Copy)]
pub struct Avx512(pub(super) ());

impl Avx512 {
    /// The token, if this CPU has AVX-512 F and VL (and the OS saves zmm state).
    pub fn try_new() -> Option<Self> {
        if Isa::Avx512.is_available() {
            Some(Avx512(()))
        } else {
            None
        }
    }
}

/// The mask selecting the first `min(n, 16)` lanes.
#[inline(always)]
fn first_lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Adds the two 256-bit halves, so the 8-lane reductions finish the job in the same tree
/// order as `Avx2Fma`'s (lane i with lane i + 8 first).
#[inline(always)]
unsafe fn halves(v: __m512) -> (__m256, __m256) {
    unsafe {
        let lo = _mm512_castps512_ps256(v);
        // extractf64x4 is AVX-512F; the f32x8 form would need DQ.
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        (lo, hi)
    }
}

/// All bits set in the lanes of `k`, clear elsewhere.
#[inline(always)]
unsafe fn mask_to_vector(k: __mmask16) -> __m512 {
    unsafe { _mm512_castsi512_ps(_mm512_maskz_set1_epi32(k, -1)) }
}

// SAFETY (whole impl): an `Avx512` exists only where AVX-512 F and VL (with AVX2 and FMA)
// were detected, and its methods are inlined into `run_avx512`, compiled with those features.
impl Simd for Avx512 {
    const LANES: usize = 16;
    type V = __m512;
    const ISA: Isa = Isa::Avx512;
    const MASKED_TAILS: bool = true;
    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load_ptr(self, p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store_ptr(self, p: *mut f32, v: __m512) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn min(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    fn sqrt(self, a: __m512) -> __m512 {
        unsafe { _mm512_sqrt_ps(a) }
    }
    // The trait's masks are vectors (all bits set or clear per lane), as on AVX2; AVX-512
    // compares give mask registers, widened here and narrowed again in `select` (F only).
    #[inline(always)]
    fn gt(self, a: __m512, b: __m512) -> __m512 {
        unsafe { mask_to_vector(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b)) }
    }
    #[inline(always)]
    fn le(self, a: __m512, b: __m512) -> __m512 {
        unsafe { mask_to_vector(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(a, b)) }
    }
    #[inline(always)]
    fn is_nan(self, a: __m512) -> __m512 {
        unsafe { mask_to_vector(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a)) }
    }
    #[inline(always)]
    fn select(self, m: __m512, a: __m512, b: __m512) -> __m512 {
        unsafe {
            // A lane is selected where its sign bit is set, as `blendv` does on AVX2.
            let k = _mm512_cmplt_epi32_mask(_mm512_castps_si512(m), _mm512_setzero_si512());
            _mm512_mask_blend_ps(k, b, a)
        }
    }
    #[inline(always)]
    fn or(self, a: __m512, b: __m512) -> __m512 {
        unsafe {
            _mm512_castsi512_ps(_mm512_or_si512(
                _mm512_castps_si512(a),
                _mm512_castps_si512(b),
            ))
        }
    }
    #[inline(always)]
    fn reduce_sum(self, v: __m512) -> f32 {
        unsafe {
            let (lo, hi) = halves(v);
            let v = _mm256_add_ps(lo, hi);
            let lo = _mm256_castps256_ps128(v);
            let hi = _mm256_extractf128_ps::<1>(v);
            let s = _mm_add_ps(lo, hi);
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
            _mm_cvtss_f32(s)
        }
    }
    #[inline(always)]
    fn reduce_max(self, v: __m512) -> f32 {
        unsafe {
            let (lo, hi) = halves(v);
            let v = _mm256_max_ps(lo, hi);
            let lo = _mm256_castps256_ps128(v);
            let hi = _mm256_extractf128_ps::<1>(v);
            let s = _mm_max_ps(lo, hi);
            let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_max_ss(s, _mm_shuffle_ps::<0b01>(s, s));
            _mm_cvtss_f32(s)
        }
    }
    #[inline(always)]
    fn prefetch(self, s: &[f32]) {
        // SAFETY: a prefetch is only a hint; it never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(s.as_ptr() as *const i8) }
    }
    #[inline(always)]
    fn load_partial(self, s: &[f32], fill: f32) -> __m512 {
        // SAFETY: masked-off lanes are not accessed (AVX-512 masked loads suppress their
        // faults), and the mask covers at most `s.len()` elements.
        unsafe { _mm512_mask_loadu_ps(_mm512_set1_ps(fill), first_lanes(s.len()), s.as_ptr()) }
    }
    #[inline(always)]
    fn store_partial(self, s: &mut [f32], v: __m512) {
        // SAFETY: as for `load_partial`: only the first `min(s.len(), 16)` lanes are written.
        unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr(), first_lanes(s.len()), v) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::{vectorize_with, Isa, Simd, WithSimd};
    use std::vec::Vec;

    /// Whether this CPU runs the token; says so when it does not.
    fn available() -> bool {
        let ok = Isa::Avx512.is_available();
        if !ok {
            std::eprintln!(
                "skipping: this CPU lacks {}",
                Isa::Avx512.required_features()
            );
        }
        ok
    }

    /// Every lane-wise op and both reductions on two fixed vectors, run inside
    /// `run_avx512`; returns each result as 16 floats.
    struct Ops<'a>(&'a [f32; 16], &'a [f32; 16]);

    impl WithSimd for Ops<'_> {
        type Output = (Isa, Vec<[f32; 16]>, f32, f32);
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> Self::Output {
            let (a, b) = (s.load(self.0), s.load(self.1));
            let c = s.splat(0.5);
            let vs = [
                s.add(a, b),
                s.sub(a, b),
                s.mul(a, b),
                s.mul_add(a, b, c),
                s.max(a, b),
                s.min(a, b),
                s.div(a, b),
                s.sqrt(b),
            ];
            let out = vs
                .iter()
                .map(|&v| {
                    let mut o = [0.0f32; 16];
                    s.store(&mut o, v);
                    o
                })
                .collect();
            (S::ISA, out, s.reduce_sum(a), s.reduce_max(a))
        }
    }

    #[test]
    fn lane_ops_match_scalar_arithmetic() {
        if !available() {
            return;
        }
        let a: [f32; 16] = core::array::from_fn(|i| i as f32 - 7.5);
        let b: [f32; 16] = core::array::from_fn(|i| (i * i) as f32 + 0.25);
        let (isa, got, sum, max) = vectorize_with(Isa::Avx512, Ops(&a, &b));
        assert_eq!(isa, Isa::Avx512);
        let want: [fn(f32, f32) -> f32; 8] = [
            |x, y| x + y,
            |x, y| x - y,
            |x, y| x * y,
            |x, y| x.mul_add(y, 0.5),
            f32::max,
            f32::min,
            |x, y| x / y,
            |_, y| y.sqrt(),
        ];
        for (op, (g, f)) in got.iter().zip(want).enumerate() {
            for i in 0..16 {
                assert_eq!(g[i].to_bits(), f(a[i], b[i]).to_bits(), "op {op} lane {i}");
            }
        }
        // -7.5 + -6.5 + ... + 7.5 = 0, and the largest lane is the last.
        assert_eq!(sum, 0.0);
        assert_eq!(max, 7.5);
    }

    /// `load_partial` of `src` with fill -1, then `store_partial` into `dst`.
    struct Partial<'a> {
        src: &'a [f32],
        dst: &'a mut [f32],
    }

    impl WithSimd for Partial<'_> {
        type Output = [f32; 16];
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> [f32; 16] {
            let v = s.load_partial(self.src, -1.0);
            s.store_partial(self.dst, v);
            let mut all = [0.0f32; 16];
            s.store(&mut all, v);
            all
        }
    }

    #[test]
    fn masked_partial_load_and_store_touch_only_their_lanes() {
        if !available() {
            return;
        }
        let data: Vec<f32> = (1..=20).map(|v| v as f32).collect();
        for n in 0..=20 {
            // The source slice ends at n, the destination has n slots and a NaN guard after.
            let mut dst = [f32::NAN; 21];
            let (head, guard) = dst.split_at_mut(n);
            let got = vectorize_with(
                Isa::Avx512,
                Partial {
                    src: &data[..n],
                    dst: head,
                },
            );
            let lanes = n.min(16);
            for (i, &g) in got.iter().enumerate() {
                let want = if i < lanes { (i + 1) as f32 } else { -1.0 };
                assert_eq!(g, want, "n {n} lane {i}");
            }
            for (i, &d) in head.iter().enumerate() {
                if i < 16 {
                    assert_eq!(d, (i + 1) as f32, "n {n} stored {i}");
                } else {
                    assert!(d.is_nan(), "n {n}: wrote lane {i} past 16");
                }
            }
            assert!(
                guard.iter().all(|g| g.is_nan()),
                "n {n}: wrote past the slice"
            );
        }
    }
}
