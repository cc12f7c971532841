//! Max and average pooling, forward and backward.
//!
//! Windows are separable, so the clipped row range is computed once per output row and the
//! column range once per output column, instead of once per output as in the reference.
//! The common non-overlapping 2x2 window (LeNet, d2l's `MaxPool2d(2)`/`AvgPool2d(2)`) has
//! its own unrolled loop. Max pooling scans each window in the reference's order with the
//! same comparisons ([`takes`]), so values and argmax indices agree bit for bit (first
//! maximum wins; a NaN wins over any number, the last NaN of the window over earlier ones,
//! as in PyTorch's CPU kernel). Average pooling with stride 1 sums windows a vector of outputs at a
//! time.

use crate::conv::rows;
use crate::error::{add, check_len, mul, KernelError, Result};
use crate::shape::Pool2dShape;
use crate::simd::{vectorize, Simd, WithSimd};

/// Checks a pooling problem and its buffer lengths; returns the output (height, width).
pub(crate) fn check_pool2d(s: &Pool2dShape, x_len: usize, y_len: usize) -> Result<(usize, usize)> {
    // The sizes `validate` computes, not computed again (flash on a microcontroller).
    let (input, output, hw) = s.checked_sizes()?;
    if s.in_h.saturating_mul(s.in_w) > u32::MAX as usize {
        return Err(KernelError::Overflow {
            what: "pool plane (argmax is u32)",
        });
    }
    check_len("input", x_len, input)?;
    check_len("output", y_len, output)?;
    Ok(hw)
}

/// The window of output `o` along one axis, clipped to the input: `(lo, hi, full)` where
/// `full` counts the padding too (PyTorch's `count_include_pad` divisor).
///
/// `padded` is `size + 2 * pad`, checked when the [`Geom`] was built; validation guarantees
/// `o * stride + kernel <= padded` for every output `o`, so nothing here can overflow.
#[inline(always)]
fn window(
    o: usize,
    stride: usize,
    kernel: usize,
    pad: usize,
    padded: usize,
) -> (usize, usize, usize) {
    // Coordinates shifted by the padding, so nothing goes negative.
    let start = o * stride;
    let end = (start + kernel).min(padded);
    let lo = start.max(pad) - pad;
    let hi = end.min(padded - pad).saturating_sub(pad);
    (lo, hi, end - start)
}

/// Geometry shared by the pooling loops, after validation.
#[derive(Clone, Copy)]
struct Geom {
    in_h: usize,
    in_w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    /// `in_h + 2 * ph` and `in_w + 2 * pw`.
    hp: usize,
    wp: usize,
    include_pad: bool,
}

impl Geom {
    /// After validation; the padded sizes are computed checked here, once, so the loops can
    /// use plain arithmetic.
    fn new(s: &Pool2dShape, (oh, ow): (usize, usize)) -> Result<Geom> {
        let p = &s.params;
        let padded = |what, size: usize, pad: usize| add(what, size, mul(what, pad, 2)?);
        Ok(Geom {
            hp: padded("padded pool height", s.in_h, p.padding.0)?,
            wp: padded("padded pool width", s.in_w, p.padding.1)?,
            in_h: s.in_h,
            in_w: s.in_w,
            oh,
            ow,
            kh: p.kernel.0,
            kw: p.kernel.1,
            sh: p.stride.0,
            sw: p.stride.1,
            ph: p.padding.0,
            pw: p.padding.1,
            include_pad: p.count_include_pad,
        })
    }
    fn rows(&self, oy: usize) -> (usize, usize, usize) {
        window(oy, self.sh, self.kh, self.ph, self.hp)
    }
    fn cols(&self, ox: usize) -> (usize, usize, usize) {
        window(ox, self.sw, self.kw, self.pw, self.wp)
    }
    /// Non-overlapping, unpadded 2x2 windows.
    fn is_2x2(&self) -> bool {
        (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw) == (2, 2, 2, 2, 0, 0)
    }
    fn divisor(
        &self,
        (h0, h1, fh): (usize, usize, usize),
        (w0, w1, fw): (usize, usize, usize),
    ) -> f32 {
        if self.include_pad {
            (fh * fw) as f32
        } else {
            ((h1 - h0) * (w1 - w0)) as f32
        }
    }
}

/// Whether a max-pool scan moves its maximum to `v`: PyTorch's CPU rule
/// `val > maxval || isnan(val)`. A NaN always takes over and nothing but a later NaN
/// replaces it, so a window holding NaN gives NaN, at the position of its last NaN in
/// row-major order (PyTorch's index too); otherwise the first maximum wins ties.
#[inline(always)]
pub(crate) fn takes(v: f32, best: f32) -> bool {
    v > best || v.is_nan()
}

/// Max pooling; `argmax[o]` is the index within its `in_h * in_w` plane that output `o` took.
///
/// NaN propagates as in PyTorch: a window holding NaN gives NaN, and `argmax` points at its
/// last NaN (row-major scan), so the backward pass sends the gradient there.
///
/// ```
/// use tinycnn_kernels::{max_pool2d_forward, Pool2dParams, Pool2dShape};
/// let s = Pool2dShape::new(Pool2dParams::new(2).with_stride((1, 1)), 1, 1, 3, 3);
/// let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
/// let (mut y, mut idx) = ([0.0; 4], [0u32; 4]);
/// max_pool2d_forward(&s, &x, &mut y, &mut idx).unwrap();
/// assert_eq!(y, [4.0, 5.0, 7.0, 8.0]);
/// assert_eq!(idx, [4, 5, 7, 8]);
/// ```
pub fn max_pool2d_forward(
    s: &Pool2dShape,
    x: &[f32],
    y: &mut [f32],
    argmax: &mut [u32],
) -> Result<()> {
    let hw = check_pool2d(s, x.len(), y.len())?;
    check_len("argmax", argmax.len(), y.len())?;
    let g = Geom::new(s, hw)?;
    if g.is_2x2() {
        vectorize(MaxPool2x2 {
            g: &g,
            x,
            y,
            argmax,
        });
        return Ok(());
    }
    let (plane_in, plane_out) = (g.in_h * g.in_w, g.oh * g.ow);
    let planes = x.chunks_exact(plane_in).zip(
        y.chunks_exact_mut(plane_out)
            .zip(argmax.chunks_exact_mut(plane_out)),
    );
    for (xp, (yp, ap)) in planes {
        for oy in 0..g.oh {
            let yr = &mut yp[oy * g.ow..][..g.ow];
            let ar = &mut ap[oy * g.ow..][..g.ow];
            let (h0, h1, _) = g.rows(oy);
            for (ox, (yo, ao)) in yr.iter_mut().zip(ar.iter_mut()).enumerate() {
                let (w0, w1, _) = g.cols(ox);
                let mut best = f32::NEG_INFINITY;
                let mut idx = h0 * g.in_w + w0;
                for iy in h0..h1 {
                    let row = &xp[iy * g.in_w..][w0..w1];
                    for (j, &v) in row.iter().enumerate() {
                        if takes(v, best) {
                            best = v;
                            idx = iy * g.in_w + w0 + j;
                        }
                    }
                }
                *yo = best;
                *ao = idx as u32;
            }
        }
    }
    Ok(())
}

/// Max pooling over non-overlapping, unpadded 2x2 windows (LeNet's), vectorized along the
/// output row without branches: which tap of a window wins is unpredictable on real data,
/// and a mispredicted branch per window made the scalar loop 4x slower than its arithmetic.
///
/// Lane `j` of a vector at column `c` holds the window candidate pair `(c + j, c + j + 1)`:
/// a load at `c` and one at `c + 1` line up both columns of every window in the even lanes
/// (the odd lanes straddle two windows and are computed but not used), so no shuffle is
/// needed. Taps go in PyTorch's scan order (row 0 left, right, row 1 left, right): a tap
/// replaces the best so far when it is greater or NaN, so ties keep the first tap and the
/// last NaN wins, as [`crate::reference::max_pool2d`] defines.
struct MaxPool2x2<'a> {
    g: &'a Geom,
    x: &'a [f32],
    y: &'a mut [f32],
    argmax: &'a mut [u32],
}

impl WithSimd for MaxPool2x2<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let g = self.g;
        let (plane_in, plane_out) = (g.in_h * g.in_w, g.oh * g.ow);
        let width = 2 * g.ow; // the columns the windows cover (an odd last column is not)
        let lanes = S::LANES;
        let (mut best_buf, mut tap_buf) = ([0.0f32; 16], [0.0f32; 16]);
        let taps: [S::V; 4] = [s.splat(0.0), s.splat(1.0), s.splat(2.0), s.splat(3.0)];
        let planes = self.x.chunks_exact(plane_in).zip(
            self.y
                .chunks_exact_mut(plane_out)
                .zip(self.argmax.chunks_exact_mut(plane_out)),
        );
        for (xp, (yp, ap)) in planes {
            for oy in 0..g.oh {
                let r0 = &xp[2 * oy * g.in_w..][..width];
                let r1 = &xp[(2 * oy + 1) * g.in_w..][..width];
                let yr = &mut yp[oy * g.ow..][..g.ow];
                let ar = &mut ap[oy * g.ow..][..g.ow];
                let mut c = 0;
                while c < width {
                    let load = |r: &[f32], at: usize| {
                        let r = r.get(at..).unwrap_or_default();
                        if r.len() >= lanes {
                            s.load(r)
                        } else {
                            s.load_partial(r, f32::NEG_INFINITY)
                        }
                    };
                    let cand = [load(r0, c), load(r0, c + 1), load(r1, c), load(r1, c + 1)];
                    let (mut best, mut tap) = (cand[0], taps[0]);
                    for k in 1..4 {
                        let t = s.or(s.gt(cand[k], best), s.is_nan(cand[k]));
                        best = s.select(t, cand[k], best);
                        tap = s.select(t, taps[k], tap);
                    }
                    s.store(&mut best_buf[..lanes], best);
                    s.store(&mut tap_buf[..lanes], tap);
                    let ox0 = c / 2;
                    let n = (lanes / 2).min(g.ow - ox0);
                    for k in 0..n {
                        let t = tap_buf[2 * k] as usize;
                        yr[ox0 + k] = best_buf[2 * k];
                        ar[ox0 + k] = ((2 * oy + (t >> 1)) * g.in_w + c + 2 * k + (t & 1)) as u32;
                    }
                    c += lanes;
                }
            }
        }
    }
}

/// Gradient of [`max_pool2d_forward`] (overwrites `grad_x`); an `argmax` entry outside its
/// plane is an error.
pub fn max_pool2d_backward(
    s: &Pool2dShape,
    grad_y: &[f32],
    argmax: &[u32],
    grad_x: &mut [f32],
) -> Result<()> {
    let hw = check_pool2d(s, grad_x.len(), grad_y.len())?;
    check_len("argmax", argmax.len(), grad_y.len())?;
    let g = Geom::new(s, hw)?;
    let (plane_in, plane_out) = (g.in_h * g.in_w, g.oh * g.ow);
    if argmax.iter().any(|&i| i as usize >= plane_in) {
        return Err(KernelError::InvalidArgument {
            what: "argmax index outside the input plane",
        });
    }
    grad_x.fill(0.0);
    let planes = grad_x.chunks_exact_mut(plane_in).zip(
        grad_y
            .chunks_exact(plane_out)
            .zip(argmax.chunks_exact(plane_out)),
    );
    for (gx, (gy, am)) in planes {
        for (&gv, &i) in gy.iter().zip(am) {
            if let Some(slot) = gx.get_mut(i as usize) {
                *slot += gv;
            }
        }
    }
    Ok(())
}

/// Average pooling (zero padding; divisor per `count_include_pad`).
///
/// ```
/// use tinycnn_kernels::{avg_pool2d_forward, Pool2dParams, Pool2dShape};
/// let s = Pool2dShape::new(Pool2dParams::new(2).with_stride((1, 1)), 1, 1, 3, 3);
/// let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
/// let mut y = [0.0; 4];
/// avg_pool2d_forward(&s, &x, &mut y).unwrap();
/// assert_eq!(y, [2.0, 3.0, 5.0, 6.0]);
/// ```
pub fn avg_pool2d_forward(s: &Pool2dShape, x: &[f32], y: &mut [f32]) -> Result<()> {
    let hw = check_pool2d(s, x.len(), y.len())?;
    let g = Geom::new(s, hw)?;
    vectorize(AvgForward { g, x, y });
    Ok(())
}

struct AvgForward<'a> {
    g: Geom,
    x: &'a [f32],
    y: &'a mut [f32],
}

impl WithSimd for AvgForward<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let g = self.g;
        let l = S::LANES;
        let (plane_in, plane_out) = (g.in_h * g.in_w, g.oh * g.ow);
        for (xp, yp) in self
            .x
            .chunks_exact(plane_in)
            .zip(self.y.chunks_exact_mut(plane_out))
        {
            for oy in 0..g.oh {
                let yr = &mut yp[oy * g.ow..][..g.ow];
                if g.is_2x2() {
                    let r0 = &xp[2 * oy * g.in_w..][..g.in_w];
                    let r1 = &xp[(2 * oy + 1) * g.in_w..][..g.in_w];
                    for (ox, yo) in yr.iter_mut().enumerate() {
                        let c = 2 * ox;
                        *yo = (r0[c] + r0[c + 1] + r1[c] + r1[c + 1]) / 4.0;
                    }
                    continue;
                }
                let rows_y = g.rows(oy);
                let (h0, h1, _) = rows_y;
                let mut ox = 0;
                if g.sw == 1 {
                    // Outputs whose whole column range is inside the input: a vector of
                    // them reads `kw` shifted vectors per input row.
                    let first = g.pw.min(g.ow);
                    let inner_end = (g.wp - g.pw + 1).saturating_sub(g.kw).min(g.ow).max(first);
                    for (o, out) in yr[..first].iter_mut().enumerate() {
                        *out = window_mean(&g, xp, rows_y, g.cols(o));
                    }
                    ox = first;
                    while ox + l <= inner_end {
                        let mut acc = s.zero();
                        for iy in h0..h1 {
                            let row = &xp[iy * g.in_w + ox - g.pw..];
                            for kx in 0..g.kw {
                                acc = s.add(acc, s.load(&row[kx..]));
                            }
                        }
                        // Whole windows inside the row: one divisor for the vector. Divide
                        // lane-wise (the Simd layer has no division; a true division keeps
                        // the reference's rounding).
                        let div = g.divisor(rows_y, g.cols(ox));
                        let mut buf = [0.0f32; 16];
                        s.store(&mut buf, acc);
                        for (o, &v) in yr[ox..ox + l].iter_mut().zip(&buf) {
                            *o = v / div;
                        }
                        ox += l;
                    }
                }
                for (o, out) in yr.iter_mut().enumerate().skip(ox) {
                    *out = window_mean(&g, xp, rows_y, g.cols(o));
                }
            }
        }
    }
}

#[inline(always)]
fn window_mean(
    g: &Geom,
    xp: &[f32],
    rows_y: (usize, usize, usize),
    cols_x: (usize, usize, usize),
) -> f32 {
    let (h0, h1, _) = rows_y;
    let (w0, w1, _) = cols_x;
    let mut acc = 0.0f32;
    for iy in h0..h1 {
        for &v in &xp[iy * g.in_w..][w0..w1] {
            acc += v;
        }
    }
    acc / g.divisor(rows_y, cols_x)
}

/// Gradient of [`avg_pool2d_forward`] (overwrites `grad_x`).
pub fn avg_pool2d_backward(s: &Pool2dShape, grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    let hw = check_pool2d(s, grad_x.len(), grad_y.len())?;
    let g = Geom::new(s, hw)?;
    vectorize(AvgBackward { g, grad_y, grad_x });
    Ok(())
}

struct AvgBackward<'a> {
    g: Geom,
    grad_y: &'a [f32],
    grad_x: &'a mut [f32],
}

impl WithSimd for AvgBackward<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let g = self.g;
        let (plane_in, plane_out) = (g.in_h * g.in_w, g.oh * g.ow);
        if g.is_2x2() {
            // Each input takes a quarter of at most one output's gradient, so every element
            // is written once and nothing needs clearing first.
            for (gx, gy) in self
                .grad_x
                .chunks_exact_mut(plane_in)
                .zip(self.grad_y.chunks_exact(plane_out))
            {
                avg_backward_2x2_plane(&g, gy, gx);
            }
            return;
        }
        self.grad_x.fill(0.0);
        for (gx, gy) in self
            .grad_x
            .chunks_exact_mut(plane_in)
            .zip(self.grad_y.chunks_exact(plane_out))
        {
            for oy in 0..g.oh {
                let gyr = &gy[oy * g.ow..][..g.ow];
                let rows_y = g.rows(oy);
                let (h0, h1, _) = rows_y;
                for (ox, &gv) in gyr.iter().enumerate() {
                    let cols_x = g.cols(ox);
                    let (w0, w1, _) = cols_x;
                    let share = gv / g.divisor(rows_y, cols_x);
                    for iy in h0..h1 {
                        rows::add_scalar(s, share, &mut gx[iy * g.in_w..][w0..w1]);
                    }
                }
            }
        }
    }
}

/// One plane of the 2x2 average-pool gradient; rows and columns past the last whole window
/// (odd sizes, floor mode) get zero.
#[inline(always)]
fn avg_backward_2x2_plane(g: &Geom, gy: &[f32], gx: &mut [f32]) {
    let w = g.in_w;
    for oy in 0..g.oh {
        let gyr = &gy[oy * g.ow..][..g.ow];
        let (r0, r1) = gx[2 * oy * w..][..2 * w].split_at_mut(w);
        for (ox, &gv) in gyr.iter().enumerate() {
            // The reference divides, then adds to zero: the same rounding.
            let share = gv / 4.0;
            r0[2 * ox] = share;
            r0[2 * ox + 1] = share;
            r1[2 * ox] = share;
            r1[2 * ox + 1] = share;
        }
        r0[2 * g.ow..].fill(0.0);
        r1[2 * g.ow..].fill(0.0);
    }
    gx[2 * g.oh * w..].fill(0.0);
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::reference;
    use crate::shape::Pool2dParams;
    use std::vec;
    use std::vec::Vec;

    /// The vectorized 2x2 path on every ISA this CPU has (through `vectorize_with`, so no
    /// global ISA switch), against the reference: LeNet's widths, an odd width (its last
    /// column belongs to no window), widths shorter than a vector, ties and NaNs in every
    /// tap position.
    #[test]
    fn max_pool_2x2_matches_reference_on_every_isa() {
        use crate::simd::{vectorize_with, Isa};
        for isa in [Isa::Scalar, Isa::Sse2, Isa::Avx2Fma, Isa::Avx512, Isa::Neon] {
            if !isa.is_available() {
                continue;
            }
            for (c, h, w) in [(6, 28, 28), (16, 10, 10), (2, 7, 9), (3, 4, 2), (1, 6, 40)] {
                let s = Pool2dShape::new(Pool2dParams::new(2), 2, c, h, w);
                let mut x = data(2 * c * h * w, h + w);
                for (k, v) in x.iter_mut().enumerate() {
                    if k % 13 == 5 || k % 29 == 0 {
                        *v = f32::NAN;
                    }
                }
                let n = s.output_len().unwrap();
                let (mut y, mut a) = (vec![0.0; n], vec![0u32; n]);
                let (mut yr, mut ar) = (vec![0.0; n], vec![0u32; n]);
                let g = Geom::new(&s, s.out_hw().unwrap()).unwrap();
                vectorize_with(
                    isa,
                    MaxPool2x2 {
                        g: &g,
                        x: &x,
                        y: &mut y,
                        argmax: &mut a,
                    },
                );
                reference::max_pool2d(&s, &x, &mut yr, &mut ar).unwrap();
                for (o, (p, q)) in y.iter().zip(&yr).enumerate() {
                    assert!(
                        p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()),
                        "{} {c}x{h}x{w}: y[{o}] = {p}, reference {q}",
                        isa.name()
                    );
                }
                assert_eq!(a, ar, "{} {c}x{h}x{w}: argmax", isa.name());
            }
        }
    }

    fn data(n: usize, seed: usize) -> Vec<f32> {
        // Few distinct values, so windows hold ties and the first-maximum rule matters.
        (0..n)
            .map(|i| ((i * 7 + seed * 13) % 11) as f32 - 5.0)
            .collect()
    }

    fn shapes() -> Vec<Pool2dShape> {
        let mut v = Vec::new();
        for (k, st, pad) in [
            ((2, 2), (2, 2), (0, 0)),
            ((3, 3), (1, 1), (1, 1)),
            ((3, 3), (2, 2), (1, 1)),
            ((2, 3), (1, 2), (1, 0)),
            ((3, 2), (3, 1), (0, 1)),
            ((5, 5), (1, 1), (2, 2)),
            ((4, 4), (1, 1), (0, 2)),
            ((1, 1), (1, 1), (0, 0)),
            ((2, 2), (1, 1), (0, 0)),
        ] {
            for (h, w) in [(5, 5), (7, 12), (6, 23), (4, 37)] {
                if k.0 > h + 2 * pad.0 || k.1 > w + 2 * pad.1 {
                    continue;
                }
                for include in [true, false] {
                    let p = Pool2dParams::with_kernel(k)
                        .with_stride(st)
                        .with_padding(pad)
                        .with_count_include_pad(include);
                    v.push(Pool2dShape::new(p, 2, 3, h, w));
                }
            }
        }
        v
    }

    #[test]
    fn max_pool_matches_reference_bit_for_bit() {
        for s in shapes() {
            let mut x = data(s.input_len().unwrap(), 1);
            // NaNs and -inf in a few places: the first NaN of a window wins.
            x[3] = f32::NAN;
            x[10] = f32::NAN;
            x[5] = f32::NEG_INFINITY;
            let n = s.output_len().unwrap();
            let (mut y1, mut y2) = (vec![0.0; n], vec![0.0; n]);
            let (mut a1, mut a2) = (vec![0u32; n], vec![0u32; n]);
            max_pool2d_forward(&s, &x, &mut y1, &mut a1).unwrap();
            reference::max_pool2d(&s, &x, &mut y2, &mut a2).unwrap();
            assert_eq!(a1, a2, "argmax {s:?}");
            for (p, q) in y1.iter().zip(&y2) {
                assert!(p.to_bits() == q.to_bits(), "max {s:?}: {p} vs {q}");
            }
            let gy = data(n, 2);
            let (mut g1, mut g2) = (vec![f32::NAN; x.len()], vec![0.0; x.len()]);
            max_pool2d_backward(&s, &gy, &a1, &mut g1).unwrap();
            reference::max_pool2d_backward(&s, &gy, &a2, &mut g2).unwrap();
            assert_eq!(g1, g2, "max backward {s:?}");
        }
    }

    #[test]
    fn avg_pool_matches_reference() {
        for s in shapes() {
            let x: Vec<f32> = data(s.input_len().unwrap(), 3)
                .iter()
                .map(|v| v * 0.37)
                .collect();
            let n = s.output_len().unwrap();
            let (mut y1, mut y2) = (vec![f32::NAN; n], vec![0.0; n]);
            avg_pool2d_forward(&s, &x, &mut y1).unwrap();
            reference::avg_pool2d(&s, &x, &mut y2).unwrap();
            for (p, q) in y1.iter().zip(&y2) {
                assert!(
                    (p - q).abs() <= 1e-6 * q.abs().max(1.0),
                    "avg {s:?}: {p} vs {q}"
                );
            }
            let gy = data(n, 4);
            let (mut g1, mut g2) = (vec![f32::NAN; x.len()], vec![0.0; x.len()]);
            avg_pool2d_backward(&s, &gy, &mut g1).unwrap();
            reference::avg_pool2d_backward(&s, &gy, &mut g2).unwrap();
            for (p, q) in g1.iter().zip(&g2) {
                assert!(
                    (p - q).abs() <= 1e-6 * q.abs().max(1.0),
                    "avg backward {s:?}: {p} vs {q}"
                );
            }
        }
    }

    #[test]
    fn d2l_hand_values() {
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let s = Pool2dShape::new(Pool2dParams::new(2).with_stride((1, 1)), 1, 1, 3, 3);
        let (mut y, mut idx) = ([0.0; 4], [0u32; 4]);
        max_pool2d_forward(&s, &x, &mut y, &mut idx).unwrap();
        assert_eq!(y, [4.0, 5.0, 7.0, 8.0]);
        avg_pool2d_forward(&s, &x, &mut y).unwrap();
        assert_eq!(y, [2.0, 3.0, 5.0, 6.0]);
        // d2l: MaxPool2d(3) on arange(16) as 1x1x4x4 gives [[10]]; padding 1, stride 2 gives
        // [[5, 7], [13, 15]].
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let s = Pool2dShape::new(Pool2dParams::new(3), 1, 1, 4, 4);
        let (mut y1, mut i1) = ([0.0; 1], [0u32; 1]);
        max_pool2d_forward(&s, &x, &mut y1, &mut i1).unwrap();
        assert_eq!(y1, [10.0]);
        let s = Pool2dShape::new(
            Pool2dParams::new(3)
                .with_padding((1, 1))
                .with_stride((2, 2)),
            1,
            1,
            4,
            4,
        );
        max_pool2d_forward(&s, &x, &mut y, &mut idx).unwrap();
        assert_eq!(y, [5.0, 7.0, 13.0, 15.0]);
    }

    #[test]
    fn bad_arguments() {
        let s = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 4, 4);
        let x = [0.0; 16];
        let (mut y, mut idx) = ([0.0; 4], [0u32; 4]);
        assert!(max_pool2d_forward(&s, &x, &mut y, &mut idx[..3]).is_err());
        assert!(avg_pool2d_forward(&s, &x[..15], &mut y).is_err());
        let mut gx = [0.0; 16];
        assert!(matches!(
            max_pool2d_backward(&s, &[1.0; 4], &[0, 1, 2, 16], &mut gx),
            Err(KernelError::InvalidArgument { .. })
        ));
        let too_much_pad = Pool2dShape::new(Pool2dParams::new(2).with_padding((2, 2)), 1, 1, 4, 4);
        assert!(avg_pool2d_forward(&too_much_pad, &x, &mut y).is_err());
    }

    /// Runs fast and reference max pooling on `x` and checks both against the expected
    /// values (NaN-aware) and argmax, then checks the gradient lands on the argmax.
    fn check_max(s: &Pool2dShape, x: &[f32], want_y: &[f32], want_idx: &[u32]) {
        let n = s.output_len().unwrap();
        let (mut y, mut idx) = (vec![0.0; n], vec![0u32; n]);
        max_pool2d_forward(s, x, &mut y, &mut idx).unwrap();
        let (mut yr, mut ir) = (vec![0.0; n], vec![0u32; n]);
        reference::max_pool2d(s, x, &mut yr, &mut ir).unwrap();
        for (what, y, idx) in [("fast", &y, &idx), ("reference", &yr, &ir)] {
            for (o, (a, e)) in y.iter().zip(want_y).enumerate() {
                assert!(
                    a.to_bits() == e.to_bits() || (a.is_nan() && e.is_nan()),
                    "{what} y[{o}] = {a}, want {e}; x = {x:?}"
                );
            }
            assert_eq!(idx.as_slice(), want_idx, "{what} argmax; x = {x:?}");
        }
        let gy: Vec<f32> = (0..n).map(|o| o as f32 + 1.0).collect();
        let mut gx = vec![7.0; x.len()];
        max_pool2d_backward(s, &gy, &idx, &mut gx).unwrap();
        let mut want_gx = vec![0.0; x.len()];
        for (o, &i) in want_idx.iter().enumerate() {
            want_gx[i as usize] += gy[o];
        }
        assert_eq!(gx, want_gx, "backward; x = {x:?}");
    }

    #[test]
    fn max_pool_nan_in_each_position_of_a_2x2_window() {
        // One 2x2 window, NaN at each of its four positions, among values where the
        // maximum (9) sits elsewhere: PyTorch gives NaN and the NaN's index.
        let s = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 2, 2);
        for p in 0..4 {
            let mut x = [1.0, 9.0, -3.0, 4.0];
            x[p] = f32::NAN;
            check_max(&s, &x, &[f32::NAN], &[p as u32]);
        }
        // No NaN: plain max; all -inf: -inf at the first position.
        check_max(&s, &[1.0, 9.0, -3.0, 9.0], &[9.0], &[1]);
        check_max(&s, &[f32::NEG_INFINITY; 4], &[f32::NEG_INFINITY], &[0]);
        // Two NaNs: PyTorch's CPU scan (`val > maxval || isnan(val)`) keeps the last one.
        for (a, b) in [(0, 1), (0, 3), (1, 2), (2, 3)] {
            let mut x = [1.0, 9.0, f32::INFINITY, 4.0];
            x[a] = f32::NAN;
            x[b] = f32::NAN;
            check_max(&s, &x, &[f32::NAN], &[b as u32]);
        }
    }

    #[test]
    fn max_pool_nan_in_each_position_of_a_padded_3x3_window() {
        // 3x3 input, kernel 3, stride 1, padding 1: 9 windows, each clipped to the input.
        // NaN at input position p is in every window covering it; the others take their max.
        let s = Pool2dShape::new(
            Pool2dParams::new(3)
                .with_stride((1, 1))
                .with_padding((1, 1)),
            1,
            1,
            3,
            3,
        );
        let base: [f32; 9] = [5.0, -1.0, 2.0, 8.0, 0.0, -7.0, 3.0, 6.0, 1.0];
        for p in 0..9 {
            let mut x = base;
            x[p] = f32::NAN;
            let (py, px) = (p / 3, p % 3);
            let mut want_y = [0.0f32; 9];
            let mut want_i = [0u32; 9];
            for oy in 0..3usize {
                for ox in 0..3usize {
                    let (h0, h1) = (oy.saturating_sub(1), (oy + 2).min(3));
                    let (w0, w1) = (ox.saturating_sub(1), (ox + 2).min(3));
                    let o = oy * 3 + ox;
                    if (h0..h1).contains(&py) && (w0..w1).contains(&px) {
                        want_y[o] = f32::NAN;
                        want_i[o] = p as u32;
                    } else {
                        // Hand rule: the largest of the window, first on ties.
                        let mut best = (f32::NEG_INFINITY, 0);
                        for iy in h0..h1 {
                            for ix in w0..w1 {
                                if x[iy * 3 + ix] > best.0 {
                                    best = (x[iy * 3 + ix], iy * 3 + ix);
                                }
                            }
                        }
                        want_y[o] = best.0;
                        want_i[o] = best.1 as u32;
                    }
                }
            }
            check_max(&s, &x, &want_y, &want_i);
        }
        // Spot value from PyTorch's documented semantics, by hand: the centre window sees
        // the whole input, max 8 at index 3.
        let mut y = [0.0; 9];
        let mut i = [0u32; 9];
        max_pool2d_forward(&s, &base, &mut y, &mut i).unwrap();
        assert_eq!((y[4], i[4]), (8.0, 3));
        // Two NaNs in the centre window (indices 1 and 7): the last one, 7.
        let mut x = base;
        x[1] = f32::NAN;
        x[7] = f32::NAN;
        max_pool2d_forward(&s, &x, &mut y, &mut i).unwrap();
        assert!(y[4].is_nan());
        assert_eq!(i[4], 7);
        assert_eq!(i[0], 1); // top-left window: rows 0-1, cols 0-1, only NaN at 1
    }

    #[test]
    fn avg_pool_propagates_nan_to_the_windows_holding_it() {
        let s = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 4, 4);
        for p in 0..16 {
            let mut x = [1.0f32; 16];
            x[p] = f32::NAN;
            let mut y = [0.0; 4];
            avg_pool2d_forward(&s, &x, &mut y).unwrap();
            let window = (p / 4 / 2) * 2 + (p % 4) / 2;
            for (o, v) in y.iter().enumerate() {
                assert_eq!(v.is_nan(), o == window, "NaN at {p}: {y:?}");
            }
        }
    }
}
