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

// SAFETY (whole impl): an `Avx512` exists only where AVX-512 F and VL (with AVX2 and FMA)
// were detected, and its methods are inlined into `run_avx512`, compiled with those features.
impl Simd for Avx512 {
    const LANES: usize = 16;
    type V = __m512;
    const ISA: Isa = Isa::Avx512;
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
