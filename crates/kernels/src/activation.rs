//! Elementwise activations and their gradients.
//!
//! The backward formulas are written with the [`Simd`] layer's separate multiply and
//! subtract, in the reference's order, so they round exactly as it does. ReLU forward and
//! backward are PyTorch's `threshold(x, 0, 0)`: `x <= 0 ? 0 : x` (and `x <= 0 ? 0 : grad`),
//! an explicit compare-and-select on the [`Simd`] layer. Written that way round, NaN fails
//! the compare and passes through, as in PyTorch; `max(x, 0)` would lose it on x86.
//! Sigmoid evaluates `exp` with a branch-free polynomial ([`exp_approx`]) that the compiler
//! vectorizes; it stays within a few ulp of the reference's `libm::expf` (the tests bound it).
//! Tanh calls `libm` per element, as the reference does.

use crate::error::{check_len, Result};
use crate::simd::{vectorize, Simd, WithSimd};

pub(crate) fn check_unary(x_len: usize, y_len: usize) -> Result<()> {
    check_len("output", y_len, x_len)
}

/// `y = max(x, 0)`, NaN staying NaN (PyTorch's `relu`: `x <= 0 ? 0 : x`).
///
/// ```
/// use tinycnn_kernels::relu_forward;
/// let mut y = [9.0; 3];
/// relu_forward(&[-1.0, 0.5, f32::NAN], &mut y).unwrap();
/// assert_eq!(y[..2], [0.0, 0.5]);
/// assert!(y[2].is_nan());
/// ```
pub fn relu_forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    check_unary(x.len(), y.len())?;
    vectorize(Relu { x, y });
    Ok(())
}

struct Relu<'a> {
    x: &'a [f32],
    y: &'a mut [f32],
}

impl WithSimd for Relu<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        threshold(s, self.x, self.x, self.y);
    }
}

/// `out = x <= 0 ? 0 : pass`, PyTorch's `threshold(x, 0, 0)` kernel: forward passes `x`,
/// backward passes the incoming gradient. NaN in `x` fails the compare, so it passes.
#[inline(always)]
fn threshold<S: Simd>(s: S, x: &[f32], pass: &[f32], out: &mut [f32]) {
    let l = S::LANES;
    let n = x.len().min(pass.len()).min(out.len());
    let (x, pass, out) = (&x[..n], &pass[..n], &mut out[..n]);
    let zero = s.zero();
    let mut i = 0;
    while i + l <= n {
        let off = s.le(s.load(&x[i..]), zero);
        s.store(&mut out[i..], s.select(off, zero, s.load(&pass[i..])));
        i += l;
    }
    for ((o, &v), &p) in out[i..].iter_mut().zip(&x[i..]).zip(&pass[i..]) {
        *o = if v <= 0.0 { 0.0 } else { p };
    }
}

/// `grad_x = x <= 0 ? 0 : grad_y` (PyTorch's `threshold_backward`): the gradient is 0 at
/// `x == 0` and passes through where `x` is NaN, as in PyTorch.
pub fn relu_backward(x: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    check_unary(x.len(), grad_x.len())?;
    check_len("grad_y", grad_y.len(), x.len())?;
    vectorize(ReluBackward { x, grad_y, grad_x });
    Ok(())
}

struct ReluBackward<'a> {
    x: &'a [f32],
    grad_y: &'a [f32],
    grad_x: &'a mut [f32],
}

impl WithSimd for ReluBackward<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        threshold(s, self.x, self.grad_y, self.grad_x);
    }
}

/// `y = min(max(x, 0), 6)`, NaN staying NaN (PyTorch's `relu6`, `hardtanh(x, 0, 6)`):
/// `x < 0 ? 0 : (x > 6 ? 6 : x)` as compare-and-select, so NaN fails both compares and
/// passes through, and `-0.0` stays `-0.0` as in PyTorch.
///
/// ```
/// use tinycnn_kernels::relu6_forward;
/// let mut y = [9.0; 4];
/// relu6_forward(&[-1.0, 0.5, 7.0, f32::NAN], &mut y).unwrap();
/// assert_eq!(y[..3], [0.0, 0.5, 6.0]);
/// assert!(y[3].is_nan());
/// ```
pub fn relu6_forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    check_unary(x.len(), y.len())?;
    vectorize(Relu6 { x, y });
    Ok(())
}

struct Relu6<'a> {
    x: &'a [f32],
    y: &'a mut [f32],
}

impl WithSimd for Relu6<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = S::LANES;
        let n = self.x.len().min(self.y.len());
        let (x, y) = (&self.x[..n], &mut self.y[..n]);
        let (zero, six) = (s.zero(), s.splat(6.0));
        let mut i = 0;
        while i + l <= n {
            let v = s.load(&x[i..]);
            let upper = s.select(s.gt(v, six), six, v);
            s.store(&mut y[i..], s.select(s.gt(zero, v), zero, upper));
            i += l;
        }
        for (o, &v) in y[i..].iter_mut().zip(&x[i..]) {
            // `clamp` keeps NaN and -0.0, like the compares above.
            *o = v.clamp(0.0, 6.0);
        }
    }
}

/// `grad_x = (x <= 0 || x >= 6) ? 0 : grad_y` (PyTorch's `hardtanh_backward`): no gradient
/// at the kinks 0 and 6, and the gradient passes where `x` is NaN.
pub fn relu6_backward(x: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    check_unary(x.len(), grad_x.len())?;
    check_len("grad_y", grad_y.len(), x.len())?;
    vectorize(Relu6Backward { x, grad_y, grad_x });
    Ok(())
}

struct Relu6Backward<'a> {
    x: &'a [f32],
    grad_y: &'a [f32],
    grad_x: &'a mut [f32],
}

impl WithSimd for Relu6Backward<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = S::LANES;
        let n = self.x.len().min(self.grad_y.len()).min(self.grad_x.len());
        let (x, g, gx) = (&self.x[..n], &self.grad_y[..n], &mut self.grad_x[..n]);
        let (zero, six) = (s.zero(), s.splat(6.0));
        let mut i = 0;
        while i + l <= n {
            let v = s.load(&x[i..]);
            let off = s.or(s.le(v, zero), s.le(six, v));
            s.store(&mut gx[i..], s.select(off, zero, s.load(&g[i..])));
            i += l;
        }
        for ((o, &v), &gv) in gx[i..].iter_mut().zip(&x[i..]).zip(&g[i..]) {
            *o = if v <= 0.0 || v >= 6.0 { 0.0 } else { gv };
        }
    }
}

/// `y = 1 / (1 + exp(-x))`, vectorized.
///
/// Agrees with [`crate::reference::sigmoid`] to within 4 ulp (relative error under 5e-7)
/// for every finite input and propagates NaN; for `x < -87` the result is a tiny positive
/// number where the reference may flush to 0.
///
/// ```
/// use tinycnn_kernels::sigmoid_forward;
/// let mut y = [0.0; 3];
/// sigmoid_forward(&[0.0, 20.0, -20.0], &mut y).unwrap();
/// assert_eq!(y[0], 0.5);
/// assert!((y[1] - 1.0).abs() < 1e-7 && (y[2] - 2.0611537e-9).abs() < 1e-15);
/// ```
pub fn sigmoid_forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    check_unary(x.len(), y.len())?;
    vectorize(Sigmoid { x, y });
    Ok(())
}

struct Sigmoid<'a> {
    x: &'a [f32],
    y: &'a mut [f32],
}

impl WithSimd for Sigmoid<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        // A plain loop over a branch-free body: inside `vectorize` the compiler turns it
        // into the detected ISA's vector code (8 lanes with AVX2).
        for (o, &v) in self.y.iter_mut().zip(self.x) {
            *o = 1.0 / (1.0 + exp_approx(-v));
        }
    }
}

/// `exp(x)` without libm and without branches, so that loops over it vectorize.
///
/// Cephes' `expf` scheme: `x = n ln2 + r` with `|r| <= ln2 / 2`, a degree-7 polynomial for
/// `exp(r)` and `2^n` built in the exponent bits. The input is clamped to `[-87, 88]`, where
/// `2^n` stays a normal number; NaN passes through (the comparisons are false for NaN).
#[inline(always)]
pub(crate) fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    // ln 2 split in two so that n * LN2_HI is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = if x > 88.0 { 88.0 } else { x };
    let x = if x < -87.0 { -87.0 } else { x };
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = p * r * r + r + 1.0;
    // The low bits of t hold n + 2^22 + 2^23 (as an integer); shifting n + 127 into the
    // exponent field gives 2^n.
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let two_n = f32::from_bits(n_bits.wrapping_add(127) << 23);
    e * two_n
}

/// `grad_x = grad_y * y * (1 - y)` from the forward output `y`.
pub fn sigmoid_backward(y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    check_unary(y.len(), grad_x.len())?;
    check_len("grad_y", grad_y.len(), y.len())?;
    vectorize(Backward {
        kind: Kind::Sigmoid,
        y,
        grad_y,
        grad_x,
    });
    Ok(())
}

/// `y = tanh(x)`.
pub fn tanh_forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    check_unary(x.len(), y.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = libm::tanhf(v);
    }
    Ok(())
}

/// `grad_x = grad_y * (1 - y^2)` from the forward output `y`.
pub fn tanh_backward(y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    check_unary(y.len(), grad_x.len())?;
    check_len("grad_y", grad_y.len(), y.len())?;
    vectorize(Backward {
        kind: Kind::Tanh,
        y,
        grad_y,
        grad_x,
    });
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    Sigmoid,
    Tanh,
}

/// The gradient of sigmoid or tanh from the forward output.
struct Backward<'a> {
    kind: Kind,
    y: &'a [f32],
    grad_y: &'a [f32],
    grad_x: &'a mut [f32],
}

impl Kind {
    #[inline(always)]
    fn scalar(self, y: f32, g: f32) -> f32 {
        match self {
            Kind::Sigmoid => g * y * (1.0 - y),
            Kind::Tanh => g * (1.0 - y * y),
        }
    }
    #[inline(always)]
    fn vector<S: Simd>(self, s: S, y: S::V, g: S::V) -> S::V {
        let one = s.splat(1.0);
        match self {
            Kind::Sigmoid => s.mul(s.mul(g, y), s.sub(one, y)),
            Kind::Tanh => s.mul(g, s.sub(one, s.mul(y, y))),
        }
    }
}

impl WithSimd for Backward<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = S::LANES;
        let n = self.y.len().min(self.grad_y.len()).min(self.grad_x.len());
        let (y, gy, gx) = (&self.y[..n], &self.grad_y[..n], &mut self.grad_x[..n]);
        let mut i = 0;
        while i + l <= n {
            let v = self.kind.vector(s, s.load(&y[i..]), s.load(&gy[i..]));
            s.store(&mut gx[i..], v);
            i += l;
        }
        for ((o, &yv), &g) in gx[i..].iter_mut().zip(&y[i..]).zip(&gy[i..]) {
            *o = self.kind.scalar(yv, g);
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::reference;
    use std::vec;
    use std::vec::Vec;

    fn inputs(n: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n)
            .map(|i| ((i * 37) % 101) as f32 / 12.5 - 4.0)
            .collect();
        if n > 3 {
            v[1] = f32::NAN;
            v[2] = -0.0;
            v[3] = 0.0;
        }
        v
    }

    fn same_bits(what: &str, a: &[f32], b: &[f32]) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{what} [{i}]: {x} vs {y}"
            );
        }
    }

    fn within_ulps(what: &str, a: &[f32], b: &[f32], ulps: u32) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            if x.is_nan() || y.is_nan() {
                assert!(x.is_nan() && y.is_nan(), "{what} [{i}]: {x} vs {y}");
                continue;
            }
            let d = (x.to_bits() as i64 - y.to_bits() as i64).unsigned_abs();
            assert!(d <= ulps as u64, "{what} [{i}]: {x} vs {y} ({d} ulp)");
        }
    }

    #[test]
    fn sigmoid_within_4_ulp_of_reference_over_its_range() {
        // Every 97th f32 bit pattern between -87 and 88 (both signs), plus the clamp edges.
        let mut x: Vec<f32> = Vec::new();
        let mut bits = 0u32;
        while bits < 0x42B0_0000 {
            x.push(f32::from_bits(bits));
            x.push(-f32::from_bits(bits));
            bits += 97 * 1024;
        }
        x.extend_from_slice(&[87.0, 88.0, -87.0, -86.9, 1e-30, -1e-30, 0.0]);
        let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        sigmoid_forward(&x, &mut a).unwrap();
        reference::sigmoid(&x, &mut b).unwrap();
        within_ulps("sigmoid", &a, &b, 4);
        // Beyond the clamp: saturated, finite, ordered.
        let far = [
            -1e30,
            -200.0,
            -90.0,
            90.0,
            200.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let mut y = [0.0; 7];
        sigmoid_forward(&far, &mut y).unwrap();
        assert!(y[..3].iter().all(|&v| (0.0..1e-37).contains(&v)), "{y:?}");
        assert!(y[3..6].iter().all(|&v| v == 1.0), "{y:?}");
        assert!((0.0..1e-37).contains(&y[6]), "{y:?}");
    }

    #[test]
    fn exp_approx_within_4_ulp_of_libm() {
        let mut worst = 0u64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let (a, b) = (exp_approx(x), libm::expf(x));
            let d = (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs();
            worst = worst.max(d);
            x += 0.001_7;
        }
        assert!(worst <= 4, "worst {worst} ulp");
        assert!(exp_approx(f32::NAN).is_nan());
    }

    #[test]
    fn match_reference_bit_for_bit() {
        for n in [0, 1, 7, 8, 9, 33, 100] {
            let x = inputs(n);
            let gy: Vec<f32> = x.iter().map(|v| 0.5 - v * 0.25).collect();
            let (mut a, mut b) = (vec![1.0; n], vec![2.0; n]);
            relu_forward(&x, &mut a).unwrap();
            reference::relu(&x, &mut b).unwrap();
            same_bits("relu", &a, &b);
            relu_backward(&x, &gy, &mut a).unwrap();
            reference::relu_backward(&x, &gy, &mut b).unwrap();
            same_bits("relu_backward", &a, &b);
            sigmoid_forward(&x, &mut a).unwrap();
            reference::sigmoid(&x, &mut b).unwrap();
            within_ulps("sigmoid", &a, &b, 4);
            let y = a.clone();
            sigmoid_backward(&y, &gy, &mut a).unwrap();
            reference::sigmoid_backward(&y, &gy, &mut b).unwrap();
            same_bits("sigmoid_backward", &a, &b);
            tanh_forward(&x, &mut a).unwrap();
            reference::tanh(&x, &mut b).unwrap();
            same_bits("tanh", &a, &b);
            let y = a.clone();
            tanh_backward(&y, &gy, &mut a).unwrap();
            reference::tanh_backward(&y, &gy, &mut b).unwrap();
            same_bits("tanh_backward", &a, &b);
        }
    }

    #[test]
    fn hand_values_and_errors() {
        let mut y = [0.0; 3];
        relu_forward(&[-2.0, 0.0, 3.0], &mut y).unwrap();
        assert_eq!(y, [0.0, 0.0, 3.0]);
        sigmoid_forward(&[0.0, 0.0, 0.0], &mut y).unwrap();
        assert_eq!(y, [0.5; 3]);
        let mut g = [0.0; 3];
        sigmoid_backward(&y, &[1.0; 3], &mut g).unwrap();
        assert_eq!(g, [0.25; 3]);
        assert!(relu_forward(&[1.0; 4], &mut y).is_err());
        assert!(tanh_backward(&[0.0; 3], &[0.0; 2], &mut g).is_err());
    }

    const NAN: f32 = f32::NAN;
    const INF: f32 = f32::INFINITY;

    fn isas() -> Vec<crate::simd::Isa> {
        use crate::simd::Isa;
        [Isa::Scalar, Isa::Sse2, Isa::Avx2Fma, Isa::Neon]
            .into_iter()
            .filter(|i| i.is_available())
            .collect()
    }

    #[test]
    fn relu_keeps_nan_and_handles_infinities_on_every_isa() {
        use crate::simd::vectorize_with;
        // PyTorch: relu(nan) = nan, relu(-inf) = 0, relu(inf) = inf, relu(-0.) = 0.
        // 19 elements, NaN moved through every lane of the vector body and the tail.
        for nan_at in 0..19 {
            let mut x = [-2.0, 3.0, -INF, INF, -0.0, 0.0, 1e-40, -1e-40, 0.5].repeat(3);
            x.truncate(19);
            x[nan_at] = NAN;
            let mut want: Vec<f32> = x.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect();
            want[nan_at] = NAN;
            for isa in isas() {
                let mut y = vec![7.0; 19];
                vectorize_with(isa, Relu { x: &x, y: &mut y });
                same_bits("relu", &y, &want);
                assert!(y[nan_at].is_nan(), "{isa:?} NaN at {nan_at}: {y:?}");
                assert_eq!(y.iter().filter(|v| v.is_nan()).count(), 1, "{isa:?}");
            }
            let mut y = vec![7.0; 19];
            reference::relu(&x, &mut y).unwrap();
            same_bits("reference relu", &y, &want);
            assert!(y[nan_at].is_nan());
        }
        let mut y = [9.0; 4];
        relu_forward(&[NAN, -INF, INF, -0.0], &mut y).unwrap();
        assert!(y[0].is_nan());
        assert_eq!(
            y[1..].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            [0, INF.to_bits(), 0]
        );
    }

    #[test]
    fn relu_backward_follows_threshold_backward_at_nan_zero_and_infinities() {
        use crate::simd::vectorize_with;
        // PyTorch's threshold_backward(g, x, 0) is `x <= 0 ? 0 : g`: NaN input passes the
        // gradient (NaN <= 0 is false), 0 and -0 block it, +inf passes, -inf blocks.
        let x = [NAN, -INF, INF, 0.0, -0.0, 1.0, -1.0, 1e-40, NAN, 2.0, -5.0];
        let g = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, NAN, -10.0, 11.0];
        let want = [1.0, 0.0, 3.0, 0.0, 0.0, 6.0, 0.0, 8.0, NAN, -10.0, 0.0];
        for isa in isas() {
            let mut gx = [9.0; 11];
            vectorize_with(
                isa,
                ReluBackward {
                    x: &x,
                    grad_y: &g,
                    grad_x: &mut gx,
                },
            );
            same_bits("relu_backward", &gx, &want);
            assert!(gx[8].is_nan() && !gx[0].is_nan(), "{isa:?}: {gx:?}");
        }
        let mut gx = [9.0; 11];
        relu_backward(&x, &g, &mut gx).unwrap();
        same_bits("relu_backward", &gx, &want);
        reference::relu_backward(&x, &g, &mut gx).unwrap();
        same_bits("reference relu_backward", &gx, &want);
    }

    #[test]
    fn sigmoid_and_tanh_propagate_nan_forward_and_backward() {
        for nan_at in 0..19 {
            let mut x: Vec<f32> = (0..19).map(|i| i as f32 * 0.3 - 2.0).collect();
            x[nan_at] = NAN;
            let gy = vec![1.0; 19];
            let (mut y, mut gx) = (vec![0.0; 19], vec![0.0; 19]);
            sigmoid_forward(&x, &mut y).unwrap();
            assert!(y[nan_at].is_nan() && y.iter().filter(|v| v.is_nan()).count() == 1);
            sigmoid_backward(&y, &gy, &mut gx).unwrap();
            assert!(gx[nan_at].is_nan() && gx.iter().filter(|v| v.is_nan()).count() == 1);
            tanh_forward(&x, &mut y).unwrap();
            assert!(y[nan_at].is_nan() && y.iter().filter(|v| v.is_nan()).count() == 1);
            tanh_backward(&y, &gy, &mut gx).unwrap();
            assert!(gx[nan_at].is_nan() && gx.iter().filter(|v| v.is_nan()).count() == 1);
        }
        // Saturation at the infinities is exact: sigmoid(+-inf) = 1, 0; tanh(+-inf) = +-1.
        let mut y = [0.0; 2];
        tanh_forward(&[INF, -INF], &mut y).unwrap();
        assert_eq!(y, [1.0, -1.0]);
    }

    fn special_values() -> impl proptest::strategy::Strategy<Value = Vec<f32>> {
        use proptest::prelude::*;
        let v = prop_oneof![
            4 => -50.0f32..50.0,
            1 => proptest::sample::select(vec![NAN, INF, -INF, 0.0, -0.0, 1e-40, -1e-40]),
        ];
        proptest::collection::vec(v, 0..70)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        /// Every ISA against the reference, NaN-aware: NaN must come out exactly where the
        /// reference has it.
        #[test]
        fn proptest_activations_match_reference_with_nan(x in special_values(), seed in 0u32..100) {
            use crate::simd::vectorize_with;
            let n = x.len();
            let gy: Vec<f32> = (0..n).map(|i| ((i as u32 * 7 + seed) % 13) as f32 - 6.0).collect();
            let (mut want, mut want_g) = (vec![0.0; n], vec![0.0; n]);
            reference::relu(&x, &mut want).unwrap();
            reference::relu_backward(&x, &gy, &mut want_g).unwrap();
            for isa in isas() {
                let (mut y, mut g) = (vec![1.0; n], vec![1.0; n]);
                vectorize_with(isa, Relu { x: &x, y: &mut y });
                vectorize_with(isa, ReluBackward { x: &x, grad_y: &gy, grad_x: &mut g });
                for i in 0..n {
                    proptest::prop_assert_eq!(y[i].is_nan(), want[i].is_nan());
                    proptest::prop_assert!(y[i].is_nan() || y[i].to_bits() == want[i].to_bits());
                    proptest::prop_assert_eq!(g[i].is_nan(), want_g[i].is_nan());
                    proptest::prop_assert!(g[i].is_nan() || g[i].to_bits() == want_g[i].to_bits());
                }
            }
            let (mut y, mut r) = (vec![0.0; n], vec![0.0; n]);
            sigmoid_forward(&x, &mut y).unwrap();
            reference::sigmoid(&x, &mut r).unwrap();
            for i in 0..n {
                proptest::prop_assert_eq!(y[i].is_nan(), r[i].is_nan());
            }
            tanh_forward(&x, &mut y).unwrap();
            reference::tanh(&x, &mut r).unwrap();
            for i in 0..n {
                proptest::prop_assert_eq!(y[i].is_nan(), r[i].is_nan());
            }
        }
    }
}
