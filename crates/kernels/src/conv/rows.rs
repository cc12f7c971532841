//! Row primitives over the [`Simd`] layer, shared by the convolution, pooling, bias and
//! softmax kernels: sum, dot, axpy, add. Each is `#[inline(always)]` so it compiles into
//! the ISA-specific body of the kernel that calls it.
//!
//! Where the ISA has cheap masks ([`Simd::MASKED_TAILS`]) the reductions (`sum`, `dot`) load
//! their last partial vector masked instead of a scalar tail: with 16 lanes a tail can be 15
//! elements, as long as the rows themselves (LeNet's are 10 to 28 wide). The primitives that
//! store keep scalar tails: their callers (col2im, the direct input gradient) read back
//! soon what they wrote, at shifted offsets, and a load cannot take its data from a masked
//! store still in flight; masked tails there made LeNet's input gradients 20-25 % slower
//! on Zen 5 (`benches/README.md`, "AVX-512").

use crate::simd::{max_nan, Simd};

/// `sum(x)`, two vector accumulators, scalar tail.
#[inline(always)]
pub(crate) fn sum<S: Simd>(s: S, x: &[f32]) -> f32 {
    let l = S::LANES;
    let (mut a0, mut a1) = (s.zero(), s.zero());
    let mut pairs = x.chunks_exact(2 * l);
    for c in &mut pairs {
        a0 = s.add(a0, s.load(c));
        a1 = s.add(a1, s.load(&c[l..]));
    }
    let mut rest = pairs.remainder();
    if rest.len() >= l {
        a0 = s.add(a0, s.load(rest));
        rest = &rest[l..];
    }
    if S::MASKED_TAILS && !rest.is_empty() {
        a1 = s.add(a1, s.load_partial(rest, 0.0));
        rest = &[];
    }
    let mut total = s.reduce_sum(s.add(a0, a1));
    for &v in rest {
        total += v;
    }
    total
}

/// `sum(a[i] * b[i])` over the shorter of the two.
#[inline(always)]
pub(crate) fn dot<S: Simd>(s: S, a: &[f32], b: &[f32]) -> f32 {
    let l = S::LANES;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (mut a0, mut a1) = (s.zero(), s.zero());
    let mut i = 0;
    while i + 2 * l <= n {
        a0 = s.mul_add(s.load(&a[i..]), s.load(&b[i..]), a0);
        a1 = s.mul_add(s.load(&a[i + l..]), s.load(&b[i + l..]), a1);
        i += 2 * l;
    }
    if i + l <= n {
        a0 = s.mul_add(s.load(&a[i..]), s.load(&b[i..]), a0);
        i += l;
    }
    if S::MASKED_TAILS && i < n {
        let (u, v) = (s.load_partial(&a[i..], 0.0), s.load_partial(&b[i..], 0.0));
        a1 = s.mul_add(u, v, a1);
        i = n;
    }
    let mut total = s.reduce_sum(s.add(a0, a1));
    for (&u, &v) in a[i..].iter().zip(&b[i..]) {
        total += u * v;
    }
    total
}

/// `y += alpha * x` over the shorter of the two.
#[inline(always)]
pub(crate) fn axpy<S: Simd>(s: S, alpha: f32, x: &[f32], y: &mut [f32]) {
    let l = S::LANES;
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let va = s.splat(alpha);
    let mut i = 0;
    while i + l <= n {
        let v = s.mul_add(va, s.load(&x[i..]), s.load(&y[i..]));
        s.store(&mut y[i..], v);
        i += l;
    }
    for (o, &v) in y[i..].iter_mut().zip(&x[i..]) {
        *o += alpha * v;
    }
}

/// `y += x` over the shorter of the two.
#[inline(always)]
pub(crate) fn add_assign<S: Simd>(s: S, x: &[f32], y: &mut [f32]) {
    let l = S::LANES;
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let mut i = 0;
    while i + l <= n {
        let v = s.add(s.load(&y[i..]), s.load(&x[i..]));
        s.store(&mut y[i..], v);
        i += l;
    }
    for (o, &v) in y[i..].iter_mut().zip(&x[i..]) {
        *o += v;
    }
}

/// `y += c` for every element.
#[inline(always)]
pub(crate) fn add_scalar<S: Simd>(s: S, c: f32, y: &mut [f32]) {
    let l = S::LANES;
    let vc = s.splat(c);
    let n = y.len();
    let mut i = 0;
    while i + l <= n {
        let v = s.add(s.load(&y[i..]), vc);
        s.store(&mut y[i..], v);
        i += l;
    }
    for o in &mut y[i..] {
        *o += c;
    }
}

/// The largest element, NaN if any element is NaN (PyTorch's `max`); `-inf` for an empty
/// slice.
#[inline(always)]
pub(crate) fn max<S: Simd>(s: S, x: &[f32]) -> f32 {
    let l = S::LANES;
    let mut acc = s.splat(f32::NEG_INFINITY);
    let mut chunks = x.chunks_exact(l);
    for c in &mut chunks {
        acc = s.max_nan(s.load(c), acc);
    }
    let mut m = s.reduce_max_nan(acc);
    for &v in chunks.remainder() {
        m = max_nan(m, v);
    }
    m
}
