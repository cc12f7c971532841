//! The lane-generic vector layer the fast kernels are written over.
//!
//! # Why a hand-written layer
//! The kernels must build for `thumbv7em-none-eabihf` without `std` or `alloc`, on stable Rust,
//! and pick AVX-512 or AVX2+FMA at run time on x86-64. `core::simd` is nightly-only; `pulp`
//! and `wide` either need `std` for run-time detection or fix the ISA at compile time. What
//! we need is small (load, store, add, mul, fma, max, min, IEEE div and sqrt, two
//! reductions, partial loads and stores), so it is written here (this file, plus
//! `simd/avx512.rs` for the AVX-512 token, kept apart so a new trait method is one
//! self-contained block per ISA), with [`cpufeatures`](https://docs.rs/cpufeatures)
//! (no_std, cpuid-based) for detection on x86.
//!
//! # How it works
//! A kernel is a struct implementing [`WithSimd`]; its `with_simd` body is generic over a
//! [`Simd`] token and marked `#[inline(always)]`. [`vectorize`] detects the ISA once (cached),
//! then calls it from a function compiled with `#[target_feature(enable = "avx2,fma")]` (or
//! `"avx512f,avx512vl,avx2,fma"`, or the baseline), so the whole kernel body, the token's methods inlined into it, is compiled
//! for that ISA. A token can only be obtained where its ISA is present, so its methods are safe.
//!
//! | ISA | token | lanes |
//! |-----|-------|-------|
//! | x86-64 with AVX-512 F and VL | [`Avx512`] | 16 (masked tails) |
//! | x86-64 with AVX2 and FMA | [`Avx2Fma`] | 8 |
//! | other x86-64 (SSE2 is baseline) | [`Sse2`] | 4 |
//! | aarch64 (NEON is baseline) | [`Neon`] | 4 |
//! | anything else (Cortex-M4F, ...) | [`Scalar`] | 4 (plain arrays; LLVM unrolls them) |

use core::sync::atomic::{AtomicU8, Ordering};

/// Which instruction set the fast kernels run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable code over `[f32; 4]`.
    Scalar,
    /// x86 SSE2, 4 lanes, multiply then add.
    Sse2,
    /// x86 AVX2 with FMA, 8 lanes.
    Avx2Fma,
    /// x86 AVX-512 F and VL (with AVX2 and FMA), 16 lanes, masked partial loads and stores.
    /// Preferred over [`Isa::Avx2Fma`] wherever present, also on CPUs that execute it on
    /// 256-bit units (Zen 4), where it still halves the instruction count.
    Avx512,
    /// aarch64 NEON, 4 lanes, fused multiply-add.
    Neon,
}

impl Isa {
    /// The best ISA this CPU supports (detected once, then cached).
    #[inline]
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            // cpufeatures also checks that the OS saves the zmm / ymm state (XCR0).
            cpufeatures::new!(avx512, "avx512f", "avx512vl", "avx2", "fma");
            cpufeatures::new!(avx2_fma, "avx2", "fma");
            if avx512::get() {
                Isa::Avx512
            } else if avx2_fma::get() {
                Isa::Avx2Fma
            } else {
                Isa::Sse2
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            Isa::Neon
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            Isa::Scalar
        }
    }

    /// Whether this CPU can run `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Sse2 => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => matches!(Isa::detect(), Isa::Avx2Fma | Isa::Avx512),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Isa::detect() == Isa::Avx512,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Lanes of one vector of this ISA.
    pub const fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2Fma => 8,
            _ => 4,
        }
    }

    /// The CPU features `self` needs, as `/proc/cpuinfo` spells them (for skip messages).
    pub const fn required_features(self) -> &'static str {
        match self {
            Isa::Scalar => "nothing",
            Isa::Sse2 => "x86-64 (sse2)",
            Isa::Avx2Fma => "avx2 and fma",
            Isa::Avx512 => "avx512f and avx512vl",
            Isa::Neon => "aarch64 (neon)",
        }
    }

    /// A short lowercase name ("avx512", "avx2+fma", "sse2", "neon", "scalar").
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Sse2 => "sse2",
            Isa::Avx2Fma => "avx2+fma",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }
}

/// A vector ISA: a zero-sized token whose existence proves the CPU supports it.
///
/// All methods are `#[inline(always)]` so they compile into the `#[target_feature]` function
/// [`vectorize`] calls the kernel from.
pub trait Simd: Copy + Send + Sync + 'static {
    /// Lanes of f32 in one vector.
    const LANES: usize;
    /// The vector register type.
    type V: Copy;
    /// Which ISA this token stands for.
    const ISA: Isa;
    /// Whether [`Simd::load_partial`] and [`Simd::store_partial`] are single masked
    /// instructions, about as cheap as full ones, so a kernel may vectorize rows shorter
    /// than `LANES` with them instead of falling back to scalar loops.
    const MASKED_TAILS: bool = false;

    fn splat(self, x: f32) -> Self::V;
    fn zero(self) -> Self::V {
        self.splat(0.0)
    }
    /// Loads `LANES` elements from the start of `s`.
    ///
    /// # Safety
    /// `p` must be valid for `LANES` reads.
    unsafe fn load_ptr(self, p: *const f32) -> Self::V;
    /// Stores `LANES` elements.
    ///
    /// # Safety
    /// `p` must be valid for `LANES` writes.
    unsafe fn store_ptr(self, p: *mut f32, v: Self::V);
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c` (fused where the ISA has it).
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a / b`, correctly rounded (IEEE), so it matches scalar `/` bit for bit.
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    /// Square root, correctly rounded (IEEE), so it matches `libm::sqrtf` bit for bit.
    fn sqrt(self, a: Self::V) -> Self::V;
    fn reduce_sum(self, v: Self::V) -> f32;
    fn reduce_max(self, v: Self::V) -> f32;

    /// Hints that the cache line holding `s[0]` will be accessed soon. A no-op where the ISA
    /// has no prefetch instruction; never faults (an empty `s` is fine).
    #[inline(always)]
    fn prefetch(self, s: &[f32]) {
        let _ = s;
    }

    /// Loads the first `LANES` elements of `s` (panics if `s` is shorter: bounds are checked).
    #[inline(always)]
    fn load(self, s: &[f32]) -> Self::V {
        assert!(s.len() >= Self::LANES);
        // SAFETY: length checked above.
        unsafe { self.load_ptr(s.as_ptr()) }
    }
    /// Stores into the first `LANES` elements of `s` (panics if `s` is shorter).
    #[inline(always)]
    fn store(self, s: &mut [f32], v: Self::V) {
        assert!(s.len() >= Self::LANES);
        // SAFETY: length checked above.
        unsafe { self.store_ptr(s.as_mut_ptr(), v) }
    }
    /// Loads up to `LANES` elements, filling the rest with `fill` (for tails).
    #[inline(always)]
    fn load_partial(self, s: &[f32], fill: f32) -> Self::V {
        let mut buf = [fill; 16];
        let n = s.len().min(Self::LANES);
        buf[..n].copy_from_slice(&s[..n]);
        // SAFETY: buf holds 16 >= LANES elements.
        unsafe { self.load_ptr(buf.as_ptr()) }
    }
    /// Stores the first `min(s.len(), LANES)` lanes (for tails).
    #[inline(always)]
    fn store_partial(self, s: &mut [f32], v: Self::V) {
        let mut buf = [0.0f32; 16];
        // SAFETY: buf holds 16 >= LANES elements.
        unsafe { self.store_ptr(buf.as_mut_ptr(), v) };
        let n = s.len().min(Self::LANES);
        s[..n].copy_from_slice(&buf[..n]);
    }
}

/// A computation generic over the vector ISA; see [`vectorize`].
pub trait WithSimd {
    type Output;
    /// Implementations must be `#[inline(always)]` so they compile for the ISA of the caller.
    fn with_simd<S: Simd>(self, simd: S) -> Self::Output;
}

/// The ISA forced by [`force_isa`], as `Isa::code() + 1`; 0 when none is.
static FORCED: AtomicU8 = AtomicU8::new(0);

impl Isa {
    /// Every ISA, in the order of [`Isa::code`].
    const ALL: [Isa; 5] = [Isa::Scalar, Isa::Sse2, Isa::Avx2Fma, Isa::Avx512, Isa::Neon];

    const fn code(self) -> u8 {
        match self {
            Isa::Scalar => 0,
            Isa::Sse2 => 1,
            Isa::Avx2Fma => 2,
            Isa::Avx512 => 3,
            Isa::Neon => 4,
        }
    }
}

/// Makes [`vectorize`], and so every kernel that picks its ISA at run time ([`crate::sgemm`]
/// included), run with `isa` instead of the detected best one; `None` returns to detection.
/// Process-wide, for benchmarks and tests that compare ISAs on one machine. An ISA this CPU
/// lacks runs as [`Isa::Scalar`], as with [`vectorize_with`].
pub fn force_isa(isa: Option<Isa>) {
    FORCED.store(isa.map_or(0, |i| i.code() + 1), Ordering::Relaxed);
}

/// The ISA [`vectorize`] runs with now: the one [`force_isa`] set, else [`Isa::detect`].
#[inline]
pub fn active_isa() -> Isa {
    match FORCED.load(Ordering::Relaxed) {
        0 => Isa::detect(),
        code => Isa::ALL[usize::from(code - 1)],
    }
}

/// Runs `op` with the best ISA of this CPU (or the one [`force_isa`] set).
///
/// ```
/// use tinycnn_kernels::simd::{vectorize, Simd, WithSimd};
/// struct Sum<'a>(&'a [f32]);
/// impl WithSimd for Sum<'_> {
///     type Output = f32;
///     #[inline(always)]
///     fn with_simd<S: Simd>(self, s: S) -> f32 {
///         let mut acc = s.zero();
///         let mut chunks = self.0.chunks_exact(S::LANES);
///         for c in &mut chunks {
///             acc = s.add(acc, s.load(c));
///         }
///         s.reduce_sum(acc) + chunks.remainder().iter().sum::<f32>()
///     }
/// }
/// assert_eq!(vectorize(Sum(&[1.0; 19])), 19.0);
/// ```
#[inline]
pub fn vectorize<Op: WithSimd>(op: Op) -> Op::Output {
    vectorize_with(active_isa(), op)
}

/// Runs `op` with `isa`, or with [`Isa::Scalar`] when this CPU lacks `isa`.
#[inline]
pub fn vectorize_with<Op: WithSimd>(isa: Isa, op: Op) -> Op::Output {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() => {
            // SAFETY: AVX-512 F and VL, AVX2 and FMA were detected on this CPU.
            unsafe { run_avx512(op) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma if isa.is_available() => {
            // SAFETY: AVX2 and FMA were detected on this CPU.
            unsafe { run_avx2_fma(op) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Sse2 => op.with_simd(Sse2(())),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => op.with_simd(Neon(())),
        _ => op.with_simd(Scalar),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2_fma<Op: WithSimd>(op: Op) -> Op::Output {
    op.with_simd(Avx2Fma(()))
}

// `avx512f` implies AVX2 and FMA in LLVM; they are named so the function does not rely on it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn run_avx512<Op: WithSimd>(op: Op) -> Op::Output {
    op.with_simd(Avx512(()))
}

/// Portable fallback: four lanes in a plain array.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scalar;

impl Simd for Scalar {
    const LANES: usize = 4;
    type V = [f32; 4];
    const ISA: Isa = Isa::Scalar;
    #[inline(always)]
    fn splat(self, x: f32) -> [f32; 4] {
        [x; 4]
    }
    #[inline(always)]
    unsafe fn load_ptr(self, p: *const f32) -> [f32; 4] {
        // SAFETY: caller guarantees 4 readable elements.
        unsafe { core::ptr::read_unaligned(p as *const [f32; 4]) }
    }
    #[inline(always)]
    unsafe fn store_ptr(self, p: *mut f32, v: [f32; 4]) {
        // SAFETY: caller guarantees 4 writable elements.
        unsafe { core::ptr::write_unaligned(p as *mut [f32; 4], v) }
    }
    #[inline(always)]
    fn add(self, a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]
    }
    #[inline(always)]
    fn sub(self, a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        [a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]]
    }
    #[inline(always)]
    fn mul(self, a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        [a[0] * b[0], a[1] * b[1], a[2] * b[2], a[3] * b[3]]
    }
    #[inline(always)]
    fn mul_add(self, a: [f32; 4], b: [f32; 4], c: [f32; 4]) -> [f32; 4] {
        // Separate multiply and add: the Cortex-M4F has VFMA but libm-free `mul_add` would
        // call out to software on targets without it.
        [
            a[0] * b[0] + c[0],
            a[1] * b[1] + c[1],
            a[2] * b[2] + c[2],
            a[3] * b[3] + c[3],
        ]
    }
    #[inline(always)]
    fn max(self, a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        [
            a[0].max(b[0]),
            a[1].max(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ]
    }
    #[inline(always)]
    fn min(self, a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        [
            a[0].min(b[0]),
            a[1].min(b[1]),
            a[2].min(b[2]),
            a[3].min(b[3]),
        ]
    }
    #[inline(always)]
    fn div(self, a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        [a[0] / b[0], a[1] / b[1], a[2] / b[2], a[3] / b[3]]
    }
    #[inline(always)]
    fn sqrt(self, a: [f32; 4]) -> [f32; 4] {
        a.map(libm::sqrtf)
    }
    #[inline(always)]
    fn reduce_sum(self, v: [f32; 4]) -> f32 {
        (v[0] + v[1]) + (v[2] + v[3])
    }
    #[inline(always)]
    fn reduce_max(self, v: [f32; 4]) -> f32 {
        v[0].max(v[1]).max(v[2].max(v[3]))
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Isa, Simd};
    use core::arch::x86_64::*;

    /// SSE2 (baseline on x86-64), 4 lanes.
    #[derive(Debug, Clone, Copy)]
    pub struct Sse2(pub(super) ());

    impl Sse2 {
        /// SSE2 is part of x86-64, so this always succeeds.
        pub fn new() -> Self {
            Sse2(())
        }
    }

    impl Default for Sse2 {
        fn default() -> Self {
            Self::new()
        }
    }

    // SAFETY (whole impl): SSE2 is baseline on x86-64.
    impl Simd for Sse2 {
        const LANES: usize = 4;
        type V = __m128;
        const ISA: Isa = Isa::Sse2;
        #[inline(always)]
        fn splat(self, x: f32) -> __m128 {
            unsafe { _mm_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load_ptr(self, p: *const f32) -> __m128 {
            unsafe { _mm_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store_ptr(self, p: *mut f32, v: __m128) {
            unsafe { _mm_storeu_ps(p, v) }
        }
        #[inline(always)]
        fn add(self, a: __m128, b: __m128) -> __m128 {
            unsafe { _mm_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m128, b: __m128) -> __m128 {
            unsafe { _mm_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m128, b: __m128) -> __m128 {
            unsafe { _mm_mul_ps(a, b) }
        }
        #[inline(always)]
        fn mul_add(self, a: __m128, b: __m128, c: __m128) -> __m128 {
            unsafe { _mm_add_ps(_mm_mul_ps(a, b), c) }
        }
        #[inline(always)]
        fn max(self, a: __m128, b: __m128) -> __m128 {
            unsafe { _mm_max_ps(a, b) }
        }
        #[inline(always)]
        fn min(self, a: __m128, b: __m128) -> __m128 {
            unsafe { _mm_min_ps(a, b) }
        }
        #[inline(always)]
        fn div(self, a: __m128, b: __m128) -> __m128 {
            unsafe { _mm_div_ps(a, b) }
        }
        #[inline(always)]
        fn sqrt(self, a: __m128) -> __m128 {
            unsafe { _mm_sqrt_ps(a) }
        }
        #[inline(always)]
        fn reduce_sum(self, v: __m128) -> f32 {
            let mut a = [0.0f32; 4];
            unsafe { _mm_storeu_ps(a.as_mut_ptr(), v) };
            (a[0] + a[1]) + (a[2] + a[3])
        }
        #[inline(always)]
        fn reduce_max(self, v: __m128) -> f32 {
            let mut a = [0.0f32; 4];
            unsafe { _mm_storeu_ps(a.as_mut_ptr(), v) };
            a[0].max(a[1]).max(a[2].max(a[3]))
        }
        #[inline(always)]
        fn prefetch(self, s: &[f32]) {
            // SAFETY: a prefetch is only a hint; it never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(s.as_ptr() as *const i8) }
        }
    }

    /// AVX2 with FMA, 8 lanes. Only [`super::vectorize`] creates it, after detection.
    #[derive(Debug, Clone, Copy)]
    pub struct Avx2Fma(pub(super) ());

    impl Avx2Fma {
        /// The token, if this CPU has AVX2 and FMA.
        pub fn try_new() -> Option<Self> {
            if Isa::Avx2Fma.is_available() {
                Some(Avx2Fma(()))
            } else {
                None
            }
        }
    }

    // SAFETY (whole impl): an `Avx2Fma` exists only where AVX2 and FMA were detected, and its
    // methods are inlined into `run_avx2_fma`, which is compiled with those features.
    impl Simd for Avx2Fma {
        const LANES: usize = 8;
        type V = __m256;
        const ISA: Isa = Isa::Avx2Fma;
        #[inline(always)]
        fn splat(self, x: f32) -> __m256 {
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load_ptr(self, p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store_ptr(self, p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        fn add(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn max(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_max_ps(a, b) }
        }
        #[inline(always)]
        fn min(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_min_ps(a, b) }
        }
        #[inline(always)]
        fn div(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_div_ps(a, b) }
        }
        #[inline(always)]
        fn sqrt(self, a: __m256) -> __m256 {
            unsafe { _mm256_sqrt_ps(a) }
        }
        #[inline(always)]
        fn reduce_sum(self, v: __m256) -> f32 {
            unsafe {
                let lo = _mm256_castps256_ps128(v);
                let hi = _mm256_extractf128_ps::<1>(v);
                let s = _mm_add_ps(lo, hi);
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
                _mm_cvtss_f32(s)
            }
        }
        #[inline(always)]
        fn reduce_max(self, v: __m256) -> f32 {
            unsafe {
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
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2Fma, Sse2};

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub use avx512::Avx512;

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{Isa, Simd};
    use core::arch::aarch64::*;

    /// NEON (baseline on aarch64), 4 lanes.
    #[derive(Debug, Clone, Copy)]
    pub struct Neon(pub(super) ());

    // SAFETY (whole impl): NEON is baseline on aarch64.
    impl Simd for Neon {
        const LANES: usize = 4;
        type V = float32x4_t;
        const ISA: Isa = Isa::Neon;
        #[inline(always)]
        fn splat(self, x: f32) -> float32x4_t {
            unsafe { vdupq_n_f32(x) }
        }
        #[inline(always)]
        unsafe fn load_ptr(self, p: *const f32) -> float32x4_t {
            unsafe { vld1q_f32(p) }
        }
        #[inline(always)]
        unsafe fn store_ptr(self, p: *mut f32, v: float32x4_t) {
            unsafe { vst1q_f32(p, v) }
        }
        #[inline(always)]
        fn add(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
            unsafe { vaddq_f32(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
            unsafe { vsubq_f32(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
            unsafe { vmulq_f32(a, b) }
        }
        #[inline(always)]
        fn mul_add(self, a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
            unsafe { vfmaq_f32(c, a, b) }
        }
        #[inline(always)]
        fn max(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
            unsafe { vmaxq_f32(a, b) }
        }
        #[inline(always)]
        fn min(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
            unsafe { vminq_f32(a, b) }
        }
        #[inline(always)]
        fn div(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
            unsafe { vdivq_f32(a, b) }
        }
        #[inline(always)]
        fn sqrt(self, a: float32x4_t) -> float32x4_t {
            unsafe { vsqrtq_f32(a) }
        }
        #[inline(always)]
        fn reduce_sum(self, v: float32x4_t) -> f32 {
            unsafe { vaddvq_f32(v) }
        }
        #[inline(always)]
        fn reduce_max(self, v: float32x4_t) -> f32 {
            unsafe { vmaxvq_f32(v) }
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub use arm::Neon;
