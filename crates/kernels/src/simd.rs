//! The lane-generic vector layer the fast kernels are written over.
//!
//! # Why a hand-written layer
//! The kernels must build for `thumbv7em-none-eabihf` without `std` or `alloc`, on stable Rust,
//! and pick AVX-512 or AVX2+FMA at run time on x86-64. `core::simd` is nightly-only; `pulp`
//! and `wide` either need `std` for run-time detection or fix the ISA at compile time. What
//! we need is small (load, store, add, mul, fma, max, min, IEEE div and sqrt, compare and
//! select, a NaN-propagating max, reductions, partial loads and stores), so it is written
//! here (this file, plus `simd/avx512.rs` for the AVX-512 token, kept apart so a new trait
//! method is one self-contained block per ISA), with
//! [`cpufeatures`](https://docs.rs/cpufeatures) (no_std, cpuid-based) for detection on x86.
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

    /// Lane mask of `a > b`: all bits set where true, zero where false. An ordered compare,
    /// so lanes where either side is NaN are false.
    fn gt(self, a: Self::V, b: Self::V) -> Self::V;
    /// Lane mask of `a <= b` (ordered: false where either side is NaN).
    fn le(self, a: Self::V, b: Self::V) -> Self::V;
    /// Lane mask of the NaN lanes of `a` (an unordered compare of `a` with itself).
    fn is_nan(self, a: Self::V) -> Self::V;
    /// Per lane, `a` where `mask` is set and `b` where it is clear. `mask` must come from
    /// [`Simd::gt`], [`Simd::le`], [`Simd::is_nan`] or [`Simd::or`] (all bits set or none).
    fn select(self, mask: Self::V, a: Self::V, b: Self::V) -> Self::V;
    /// Bitwise or, to combine masks.
    fn or(self, a: Self::V, b: Self::V) -> Self::V;

    /// Maximum that propagates NaN (PyTorch's `maximum`): a lane is NaN when either input
    /// lane is. [`Simd::max`] follows the ISA instead (x86 `maxps` returns its second operand
    /// when either is NaN, `f32::max` ignores NaN), so it must not be used where NaN matters.
    #[inline(always)]
    fn max_nan(self, a: Self::V, b: Self::V) -> Self::V {
        let either_nan = self.or(self.is_nan(a), self.is_nan(b));
        // a + b is NaN whenever either lane is, whatever the ISA's max does with it.
        self.select(either_nan, self.add(a, b), self.max(a, b))
    }
    /// The largest lane, or NaN if any lane is NaN.
    #[inline(always)]
    fn reduce_max_nan(self, v: Self::V) -> f32 {
        let mut buf = [0.0f32; 16];
        // SAFETY: buf holds 16 >= LANES elements.
        unsafe { self.store_ptr(buf.as_mut_ptr(), v) };
        buf[..Self::LANES]
            .iter()
            .fold(f32::NEG_INFINITY, |m, &x| max_nan(m, x))
    }

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

/// `max(a, b)`, NaN if either is NaN (PyTorch's `maximum`); the scalar twin of
/// [`Simd::max_nan`]. `f32::max` would return the other operand instead.
#[inline(always)]
pub fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        a + b
    } else if a > b {
        a
    } else {
        b
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
    #[inline(always)]
    fn gt(self, a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        core::array::from_fn(|i| mask(a[i] > b[i]))
    }
    #[inline(always)]
    fn le(self, a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        core::array::from_fn(|i| mask(a[i] <= b[i]))
    }
    #[inline(always)]
    fn is_nan(self, a: [f32; 4]) -> [f32; 4] {
        a.map(|v| mask(v.is_nan()))
    }
    #[inline(always)]
    fn select(self, m: [f32; 4], a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        // Bitwise, as the vector ISAs blend: a mask lane is all ones or all zeros.
        core::array::from_fn(|i| {
            let m = m[i].to_bits();
            f32::from_bits((a[i].to_bits() & m) | (b[i].to_bits() & !m))
        })
    }
    #[inline(always)]
    fn or(self, a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        core::array::from_fn(|i| f32::from_bits(a[i].to_bits() | b[i].to_bits()))
    }
}

/// A [`Scalar`] mask lane: all bits set for true (a NaN pattern, as on the vector ISAs).
#[inline(always)]
fn mask(b: bool) -> f32 {
    f32::from_bits(if b { u32::MAX } else { 0 })
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
        fn gt(self, a: __m128, b: __m128) -> __m128 {
            unsafe { _mm_cmpgt_ps(a, b) }
        }
        #[inline(always)]
        fn le(self, a: __m128, b: __m128) -> __m128 {
            unsafe { _mm_cmple_ps(a, b) }
        }
        #[inline(always)]
        fn is_nan(self, a: __m128) -> __m128 {
            unsafe { _mm_cmpunord_ps(a, a) }
        }
        #[inline(always)]
        fn select(self, m: __m128, a: __m128, b: __m128) -> __m128 {
            // SSE2 has no blend instruction (SSE4.1 does): and / andnot / or.
            unsafe { _mm_or_ps(_mm_and_ps(m, a), _mm_andnot_ps(m, b)) }
        }
        #[inline(always)]
        fn or(self, a: __m128, b: __m128) -> __m128 {
            unsafe { _mm_or_ps(a, b) }
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
        fn gt(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_cmp_ps::<_CMP_GT_OQ>(a, b) }
        }
        #[inline(always)]
        fn le(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_cmp_ps::<_CMP_LE_OQ>(a, b) }
        }
        #[inline(always)]
        fn is_nan(self, a: __m256) -> __m256 {
            unsafe { _mm256_cmp_ps::<_CMP_UNORD_Q>(a, a) }
        }
        #[inline(always)]
        fn select(self, m: __m256, a: __m256, b: __m256) -> __m256 {
            // blendv takes the second operand where the mask's sign bit is set.
            unsafe { _mm256_blendv_ps(b, a, m) }
        }
        #[inline(always)]
        fn or(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_or_ps(a, b) }
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
        #[inline(always)]
        fn gt(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
            unsafe { vreinterpretq_f32_u32(vcgtq_f32(a, b)) }
        }
        #[inline(always)]
        fn le(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
            unsafe { vreinterpretq_f32_u32(vcleq_f32(a, b)) }
        }
        #[inline(always)]
        fn is_nan(self, a: float32x4_t) -> float32x4_t {
            // A lane is NaN exactly when it does not equal itself.
            unsafe { vreinterpretq_f32_u32(vmvnq_u32(vceqq_f32(a, a))) }
        }
        #[inline(always)]
        fn select(self, m: float32x4_t, a: float32x4_t, b: float32x4_t) -> float32x4_t {
            unsafe { vbslq_f32(vreinterpretq_u32_f32(m), a, b) }
        }
        #[inline(always)]
        fn or(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
            unsafe {
                vreinterpretq_f32_u32(vorrq_u32(
                    vreinterpretq_u32_f32(a),
                    vreinterpretq_u32_f32(b),
                ))
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub use arm::Neon;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    const NAN: f32 = f32::NAN;
    const INF: f32 = f32::INFINITY;

    /// Pairs covering NaN on either side and both, infinities, signed zeros, ties.
    const A: [f32; 16] = [
        NAN, 1.0, NAN, -INF, INF, -0.0, 0.0, 2.0, -3.0, NAN, 5.0, -1.0, 0.5, INF, -INF, 7.0,
    ];
    const B: [f32; 16] = [
        1.0, NAN, NAN, NAN, 3.0, 0.0, -0.0, 2.0, -4.0, -INF, INF, -1.0, 0.25, INF, -INF, -7.0,
    ];

    /// Runs every mask op and `max_nan` over `A` and `B` with one ISA; masks come back as
    /// `select(mask, 1, 0)`.
    struct Ops;
    impl WithSimd for Ops {
        type Output = [Vec<f32>; 4];
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> [Vec<f32>; 4] {
            let (one, zero) = (s.splat(1.0), s.zero());
            let mut out: [Vec<f32>; 4] = Default::default();
            let mut buf = [0.0f32; 16];
            for i in (0..16).step_by(S::LANES) {
                let (a, b) = (s.load(&A[i..]), s.load(&B[i..]));
                let results = [
                    s.select(s.gt(a, b), one, zero),
                    s.select(s.le(a, b), one, zero),
                    s.select(s.or(s.is_nan(a), s.is_nan(b)), one, zero),
                    s.max_nan(a, b),
                ];
                for (o, r) in out.iter_mut().zip(results) {
                    s.store(&mut buf, r);
                    o.extend_from_slice(&buf[..S::LANES]);
                }
            }
            out
        }
    }

    #[test]
    fn compare_select_and_max_nan_agree_with_ieee_on_every_isa() {
        // Hand-derived from IEEE 754: ordered compares are false with NaN; max_nan is NaN
        // whenever either side is.
        let gt: Vec<f32> = A
            .iter()
            .zip(&B)
            .map(|(a, b)| if a > b { 1.0 } else { 0.0 })
            .collect();
        let le: Vec<f32> = A
            .iter()
            .zip(&B)
            .map(|(a, b)| if a <= b { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(gt[..9], [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(le[..9], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]);
        let want_max = [
            NAN, NAN, NAN, NAN, INF, 0.0, 0.0, 2.0, -3.0, NAN, INF, -1.0, 0.5, INF, -INF, 7.0,
        ];
        for isa in [Isa::Scalar, Isa::Sse2, Isa::Avx2Fma, Isa::Neon] {
            if !isa.is_available() {
                continue;
            }
            let [g, l, n, m] = vectorize_with(isa, Ops);
            assert_eq!(g, gt, "gt {isa:?}");
            assert_eq!(l, le, "le {isa:?}");
            for i in 0..16 {
                let either = A[i].is_nan() || B[i].is_nan();
                assert_eq!(n[i], if either { 1.0 } else { 0.0 }, "is_nan {isa:?} [{i}]");
                assert!(
                    m[i] == want_max[i] || (m[i].is_nan() && want_max[i].is_nan()),
                    "max_nan {isa:?} [{i}]: {} vs {}",
                    m[i],
                    want_max[i]
                );
                assert_eq!(m[i].is_nan(), want_max[i].is_nan(), "max_nan {isa:?} [{i}]");
                assert_eq!(max_nan(A[i], B[i]).is_nan(), either);
            }
        }
    }

    #[test]
    fn reduce_max_nan_sees_a_nan_in_any_lane() {
        struct R(usize);
        impl WithSimd for R {
            type Output = (f32, f32);
            #[inline(always)]
            fn with_simd<S: Simd>(self, s: S) -> (f32, f32) {
                let mut v = [1.0f32; 16];
                v[self.0 % S::LANES] = NAN;
                let w: [f32; 16] = core::array::from_fn(|i| i as f32 - 20.0);
                (s.reduce_max_nan(s.load(&v)), s.reduce_max_nan(s.load(&w)))
            }
        }
        for isa in [Isa::Scalar, Isa::Sse2, Isa::Avx2Fma, Isa::Neon] {
            if !isa.is_available() {
                continue;
            }
            for lane in 0..isa.lanes() {
                let (with_nan, plain) = vectorize_with(isa, R(lane));
                assert!(with_nan.is_nan(), "{isa:?} lane {lane}");
                assert_eq!(plain, isa.lanes() as f32 - 21.0, "{isa:?}");
            }
        }
    }
}
