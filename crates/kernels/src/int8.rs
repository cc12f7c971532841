//! int8 inference kernels: symmetric quantization, i32 accumulators, fixed-point requantization.
//!
//! # Number format
//! A real tensor `r` is stored as `q = clamp(round(r / scale), -127, 127)` with one `f32`
//! scale per tensor (activations) or per output channel (weights). The zero point is always 0,
//! so zero padding stays 0 and a product of two quantized numbers needs no correction terms.
//!
//! A layer sums `x_q * w_q` products in an `i32` accumulator, adds an `i32` bias quantized at
//! `w_scale[c] * x_scale`, and converts the sum to the output scale with the real factor
//! `w_scale[c] * x_scale / y_scale`. That factor is applied in fixed point ([`Requant`]:
//! an `i32` multiplier and a right shift, exact integer arithmetic), so the kernels never
//! touch a float and give bit-identical results on every target, a microcontroller included.
//! The activation is folded into the final clamp ([`ActRange::RELU`]) or applied as a
//! 256-entry table ([`sigmoid_lut`], [`qlut_forward`]).
//!
//! Every kernel has a naive twin in [`reference`] (obvious loops, per-tap bounds checks);
//! the fast kernels hoist the bounds out of the loops and block output pixels, and must
//! agree with the twins exactly. [`dsp`] holds the same convolution and linear layers laid
//! out for the Cortex-M4's `SMLAD`/`SXTB16` (native on thumbv7em, emulated elsewhere), also
//! exact twins of these.
//!
//! ```
//! use tinycnn_kernels::int8::{qconv2d_forward, ActRange, Requant};
//! use tinycnn_kernels::{Conv2dParams, Conv2dShape};
//! // d2l's corr2d example, quantized with all scales 1: the sums come back unchanged.
//! let s = Conv2dShape::new(Conv2dParams::new(1, 1, (2, 2)), 1, 3, 3);
//! let x: [i8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
//! let w: [i8; 4] = [0, 1, 2, 3];
//! let rq = [Requant::from_scale(1.0).unwrap()];
//! let mut y = [0i8; 4];
//! qconv2d_forward(&s, &x, &w, None, &rq, ActRange::FULL, &mut y).unwrap();
//! assert_eq!(y, [19, 25, 37, 43]);
//! ```

use crate::conv::check_conv2d;
use crate::error::{check_len, KernelError, Result};
use crate::pool::check_pool2d;
use crate::shape::{Conv2dShape, Pool2dShape};

pub mod dsp;

/// Largest magnitude of a quantized value (symmetric range `[-127, 127]`).
pub const QMAX: i32 = 127;

/// A positive real factor `multiplier * 2^-shift` with `multiplier` in `[2^30, 2^31)`.
///
/// [`Requant::apply`] computes `floor(acc * multiplier / 2^shift + 1/2)` (round half up)
/// in 64-bit integers. [`Requant::from_scale`] takes the 24-bit mantissa of an `f32` scale,
/// so the conversion is exact: the factor equals the `f32` it came from.
///
/// ```
/// use tinycnn_kernels::int8::Requant;
/// let half = Requant::from_scale(0.5).unwrap();
/// assert_eq!((half.apply(7), half.apply(-7), half.apply(6)), (4, -3, 3));
/// assert_eq!(Requant::from_scale(0.1).unwrap().apply(1000), 100);
/// ```
/// `repr(C)`: deployment plans store it as two little-endian words and read it in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Requant {
    /// The factor's mantissa, in `[2^30, 2^31)`.
    pub multiplier: i32,
    /// Right shift, in `1..=62`.
    pub shift: u32,
}

impl Requant {
    /// The exact fixed-point form of `scale`, which must be finite and in `[2^-32, 2^30)`.
    pub fn from_scale(scale: f32) -> Result<Requant> {
        if !scale.is_finite() || scale <= 0.0 {
            return Err(KernelError::InvalidArgument {
                what: "requantization scale must be finite and positive",
            });
        }
        let bits = scale.to_bits();
        let biased = ((bits >> 23) & 0xff) as i32;
        // Subnormal scales (biased exponent 0) are far below the supported range.
        let exponent = biased - 127;
        if biased == 0 || !(-32..=29).contains(&exponent) {
            return Err(KernelError::InvalidArgument {
                what: "requantization scale outside [2^-32, 2^30)",
            });
        }
        let mantissa = (bits & 0x007f_ffff) | 0x0080_0000;
        Ok(Requant {
            multiplier: (mantissa << 7) as i32,
            shift: (30 - exponent) as u32,
        })
    }

    /// The factor as an `f64` (exact).
    pub fn factor(self) -> f64 {
        self.multiplier as f64 / (1u64 << self.shift) as f64
    }

    /// `round(acc * factor)`, ties rounded up, in 64 bits (cannot overflow).
    #[inline(always)]
    pub fn apply(self, acc: i32) -> i64 {
        let half = 1i64 << (self.shift - 1);
        (acc as i64 * self.multiplier as i64 + half) >> self.shift
    }

    /// [`Requant::apply`] clamped to `range`.
    #[inline(always)]
    pub fn apply_clamped(self, acc: i32, range: ActRange) -> i8 {
        self.apply(acc).clamp(range.min as i64, range.max as i64) as i8
    }
}

/// The range a requantized output is clamped to: the fused activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ActRange {
    pub min: i8,
    pub max: i8,
}

impl ActRange {
    /// No activation: the symmetric range `[-127, 127]`.
    pub const FULL: ActRange = ActRange {
        min: -127,
        max: 127,
    };
    /// ReLU fused into the clamp: `[0, 127]` (the zero point is 0).
    pub const RELU: ActRange = ActRange { min: 0, max: 127 };

    fn validate(self) -> Result<()> {
        if self.min > self.max {
            Err(KernelError::InvalidArgument {
                what: "activation range has min > max",
            })
        } else {
            Ok(())
        }
    }
}

/// A fully connected layer `y[b, o] = sum_i x[b, i] * w[o, i] + bias[o]` (PyTorch `nn.Linear`
/// layout: `w` is `[out_features, in_features]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QLinearShape {
    pub batch: usize,
    pub in_features: usize,
    pub out_features: usize,
}

impl QLinearShape {
    pub const fn new(batch: usize, in_features: usize, out_features: usize) -> Self {
        QLinearShape {
            batch,
            in_features,
            out_features,
        }
    }

    fn check(&self, x_len: usize, w_len: usize, y_len: usize) -> Result<()> {
        if self.batch == 0 {
            return Err(KernelError::Zero { what: "batch" });
        }
        if self.in_features == 0 {
            return Err(KernelError::Zero {
                what: "in_features",
            });
        }
        if self.out_features == 0 {
            return Err(KernelError::Zero {
                what: "out_features",
            });
        }
        let prod =
            |what, a: usize, b: usize| a.checked_mul(b).ok_or(KernelError::Overflow { what });
        check_len(
            "input",
            x_len,
            prod("linear input", self.batch, self.in_features)?,
        )?;
        check_len(
            "weight",
            w_len,
            prod("linear weight", self.out_features, self.in_features)?,
        )?;
        check_len(
            "output",
            y_len,
            prod("linear output", self.batch, self.out_features)?,
        )?;
        Ok(())
    }
}

fn check_bias_requant(
    channels: usize,
    bias: Option<&[i32]>,
    requant: Option<&[Requant]>,
) -> Result<()> {
    if let Some(b) = bias {
        check_len("bias", b.len(), channels)?;
    }
    if let Some(r) = requant {
        check_len("requant", r.len(), channels)?;
        if r.iter()
            .any(|r| !(1..=62).contains(&r.shift) || r.multiplier <= 0)
        {
            return Err(KernelError::InvalidArgument {
                what: "requant shift outside 1..=62 or multiplier not positive",
            });
        }
    }
    Ok(())
}

/// The range of output positions `o` whose tap `o * stride + k_off - pad` lands in
/// `[0, size)`, clipped to `[0, out)`.
#[inline]
fn valid_range(k_off: usize, pad: usize, stride: usize, size: usize, out: usize) -> (usize, usize) {
    // o * stride + k_off >= pad  <=>  o >= ceil((pad - k_off) / stride)
    let lo = if k_off >= pad {
        0
    } else {
        (pad - k_off).div_ceil(stride)
    };
    // o * stride + k_off - pad < size  <=>  o * stride < size + pad - k_off
    let hi = if size + pad <= k_off {
        0
    } else {
        (size + pad - k_off).div_ceil(stride)
    };
    (lo.min(out), hi.min(out).max(lo.min(out)))
}

/// Quantized convolution: `y = clamp(requant[c](conv(x, w) + bias[c]))`.
///
/// Same shapes and layout as [`crate::conv2d_forward`] (`x` `[batch, in, h, w]`, `w`
/// `[out, in / groups, kh, kw]`, `y` `[batch, out, oh, ow]`), with one [`Requant`] per
/// output channel and zero padding. Needs no workspace.
pub fn qconv2d_forward(
    s: &Conv2dShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    requant: &[Requant],
    range: ActRange,
    y: &mut [i8],
) -> Result<()> {
    let (oh, ow) = check_conv2d(s, x.len(), w.len(), y.len())?;
    check_bias_requant(s.params.out_channels, bias, Some(requant))?;
    range.validate()?;
    let p = &s.params;
    let (cin_g, cout_g) = (p.in_per_group(), p.out_per_group());
    let (kh, kw) = p.kernel;
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    let (dh, dw) = p.dilation;
    let in_plane = s.in_h * s.in_w;
    let out_plane = oh * ow;
    let taps = kh * kw;
    // Output columns whose whole window is inside the input row: no bounds checks there.
    let (full_lo, full_hi) = {
        let (a, _) = valid_range(0, pw, sw, s.in_w, ow);
        let (_, b) = valid_range((kw - 1) * dw, pw, sw, s.in_w, ow);
        (a, b.max(a))
    };
    const BLOCK: usize = 8;
    for n in 0..s.batch {
        for oc in 0..p.out_channels {
            let grp = oc / cout_g;
            let xg = &x[(n * p.in_channels + grp * cin_g) * in_plane..][..cin_g * in_plane];
            let wo = &w[oc * cin_g * taps..][..cin_g * taps];
            let b = bias.map_or(0, |b| b[oc]);
            let rq = requant[oc];
            let yo = &mut y[(n * p.out_channels + oc) * out_plane..][..out_plane];
            for oy in 0..oh {
                // Kernel rows that land inside the input for this output row.
                let ky_lo = (ph.saturating_sub(oy * sh)).div_ceil(dh);
                let ky_hi = if s.in_h + ph <= oy * sh {
                    0
                } else {
                    (s.in_h + ph - oy * sh).div_ceil(dh).min(kh)
                };
                let yr = &mut yo[oy * ow..][..ow];
                // One output pixel with per-tap column checks (the left and right borders).
                let edge = |ox: usize| -> i32 {
                    let mut acc = b;
                    let (kx_lo, kx_hi) = {
                        let c0 = ox * sw;
                        let lo = pw.saturating_sub(c0).div_ceil(dw);
                        let hi = if s.in_w + pw <= c0 {
                            0
                        } else {
                            (s.in_w + pw - c0).div_ceil(dw).min(kw)
                        };
                        (lo, hi)
                    };
                    for ic in 0..cin_g {
                        for ky in ky_lo..ky_hi {
                            let iy = oy * sh + ky * dh - ph;
                            let xr = &xg[ic * in_plane + iy * s.in_w..][..s.in_w];
                            let wr = &wo[ic * taps + ky * kw..][..kw];
                            for kx in kx_lo..kx_hi {
                                let ix = ox * sw + kx * dw - pw;
                                acc += xr[ix] as i32 * wr[kx] as i32;
                            }
                        }
                    }
                    acc
                };
                for (ox, out) in yr.iter_mut().enumerate().take(full_lo) {
                    *out = rq.apply_clamped(edge(ox), range);
                }
                // Interior: BLOCK outputs share every weight load.
                let mut ox = full_lo;
                if sw == 1 && dw == 1 && full_hi - full_lo >= 4 {
                    // Blocks of four; the last one is shifted left to end at `full_hi` and
                    // recomputes a few outputs (same arithmetic, same values).
                    let taps = Taps {
                        x: xg,
                        in_plane,
                        in_w: s.in_w,
                        w: wo,
                        kw,
                        ky: (ky_lo, ky_hi),
                        dh,
                        cin_g,
                    };
                    let iy0 = oy * sh + ky_lo * dh - ph;
                    while ox < full_hi {
                        let start = ox.min(full_hi - 4);
                        let acc = block4(&taps, iy0, start - pw, b);
                        for (o, &a) in yr[start..start + 4].iter_mut().zip(&acc) {
                            *o = rq.apply_clamped(a, range);
                        }
                        ox = start + 4;
                    }
                }
                while ox < full_hi {
                    let nb = BLOCK.min(full_hi - ox);
                    let mut acc = [b; BLOCK];
                    for ic in 0..cin_g {
                        for ky in ky_lo..ky_hi {
                            let iy = oy * sh + ky * dh - ph;
                            let xr = &xg[ic * in_plane + iy * s.in_w..][..s.in_w];
                            let wr = &wo[ic * taps + ky * kw..][..kw];
                            for (kx, &wv) in wr.iter().enumerate() {
                                let base = ox * sw + kx * dw - pw;
                                for (j, a) in acc.iter_mut().enumerate().take(nb) {
                                    *a += xr[base + j * sw] as i32 * wv as i32;
                                }
                            }
                        }
                    }
                    for (o, &a) in yr[ox..ox + nb].iter_mut().zip(&acc) {
                        *o = rq.apply_clamped(a, range);
                    }
                    ox += nb;
                }
                for ox in full_hi.max(full_lo)..ow {
                    yr[ox] = rq.apply_clamped(edge(ox), range);
                }
            }
        }
    }
    Ok(())
}

/// The input planes and weights that one block of a stride-1, undilated convolution reads.
struct Taps<'a> {
    /// The group's input planes.
    x: &'a [i8],
    in_plane: usize,
    in_w: usize,
    /// One output channel's weights `[cin_g, kh, kw]`.
    w: &'a [i8],
    kw: usize,
    /// Kernel rows `[lo, hi)` inside the input, and the row dilation.
    ky: (usize, usize),
    dh: usize,
    cin_g: usize,
}

/// Four adjacent outputs (all taps inside the input row) of a convolution with stride 1 and
/// no dilation along the width: the first kernel row reads input row `iy0`, the first tap
/// column `ix0`.
/// Four named accumulators (not an indexed array), so they stay in registers even on a
/// Cortex-M4 at `opt-level = "s"`.
#[inline(always)]
fn block4(t: &Taps<'_>, iy0: usize, ix0: usize, bias: i32) -> [i32; 4] {
    let (mut a0, mut a1, mut a2, mut a3) = (bias, bias, bias, bias);
    let kh = t.w.len() / t.cin_g / t.kw;
    for ic in 0..t.cin_g {
        for (r, ky) in (t.ky.0..t.ky.1).enumerate() {
            let row = &t.x[ic * t.in_plane + (iy0 + r * t.dh) * t.in_w..][..t.in_w];
            let xs = &row[ix0..ix0 + 3 + t.kw];
            let ws = &t.w[(ic * kh + ky) * t.kw..][..t.kw];
            for (win, &wv) in xs.windows(4).zip(ws) {
                let wv = wv as i32;
                a0 += win[0] as i32 * wv;
                a1 += win[1] as i32 * wv;
                a2 += win[2] as i32 * wv;
                a3 += win[3] as i32 * wv;
            }
        }
    }
    [a0, a1, a2, a3]
}

/// Dot product of two equal-length int8 rows: four named partial sums (registers, not
/// memory, on a Cortex-M4).
#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let (mut s0, mut s1, mut s2, mut s3) = (0i32, 0i32, 0i32, 0i32);
    let mut ai = a.chunks_exact(4);
    let mut bi = b.chunks_exact(4);
    for (x, y) in (&mut ai).zip(&mut bi) {
        s0 += x[0] as i32 * y[0] as i32;
        s1 += x[1] as i32 * y[1] as i32;
        s2 += x[2] as i32 * y[2] as i32;
        s3 += x[3] as i32 * y[3] as i32;
    }
    for (&x, &y) in ai.remainder().iter().zip(bi.remainder()) {
        s0 += x as i32 * y as i32;
    }
    s0 + s1 + s2 + s3
}

/// Quantized fully connected layer: `y[b, o] = clamp(requant[o](x[b] . w[o] + bias[o]))`.
pub fn qlinear_forward(
    s: &QLinearShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    requant: &[Requant],
    range: ActRange,
    y: &mut [i8],
) -> Result<()> {
    s.check(x.len(), w.len(), y.len())?;
    check_bias_requant(s.out_features, bias, Some(requant))?;
    range.validate()?;
    for (xr, yr) in x
        .chunks_exact(s.in_features)
        .zip(y.chunks_exact_mut(s.out_features))
    {
        for (o, (out, wr)) in yr.iter_mut().zip(w.chunks_exact(s.in_features)).enumerate() {
            let acc = dot_i8(xr, wr) + bias.map_or(0, |b| b[o]);
            *out = requant[o].apply_clamped(acc, range);
        }
    }
    Ok(())
}

/// Quantized fully connected layer without requantization: `y[b, o] = x[b] . w[o] + bias[o]`
/// as raw `i32` accumulators (at scale `w_scale[o] * x_scale`), e.g. for the logits.
pub fn qlinear_forward_i32(
    s: &QLinearShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    y: &mut [i32],
) -> Result<()> {
    s.check(x.len(), w.len(), y.len())?;
    check_bias_requant(s.out_features, bias, None)?;
    for (xr, yr) in x
        .chunks_exact(s.in_features)
        .zip(y.chunks_exact_mut(s.out_features))
    {
        for (o, (out, wr)) in yr.iter_mut().zip(w.chunks_exact(s.in_features)).enumerate() {
            *out = dot_i8(xr, wr) + bias.map_or(0, |b| b[o]);
        }
    }
    Ok(())
}

/// Max pooling on int8 (the scale is unchanged; padding never wins).
pub fn qmax_pool2d_forward(s: &Pool2dShape, x: &[i8], y: &mut [i8]) -> Result<()> {
    let (oh, ow) = check_pool2d(s, x.len(), y.len())?;
    let p = &s.params;
    let plane_in = s.in_h * s.in_w;
    if is_2x2_stride_2(s) {
        pool_2x2(s, oh, ow, x, y, |a, b, c, d| a.max(b).max(c.max(d)));
        return Ok(());
    }
    for (xp, yp) in x.chunks_exact(plane_in).zip(y.chunks_exact_mut(oh * ow)) {
        for oy in 0..oh {
            let (h0, h1) = window(oy, p.stride.0, p.padding.0, p.kernel.0, s.in_h);
            for ox in 0..ow {
                let (w0, w1) = window(ox, p.stride.1, p.padding.1, p.kernel.1, s.in_w);
                let mut best = i8::MIN;
                for iy in h0..h1 {
                    for &v in &xp[iy * s.in_w + w0..iy * s.in_w + w1] {
                        best = best.max(v);
                    }
                }
                yp[oy * ow + ox] = best;
            }
        }
    }
    Ok(())
}

/// Average pooling on int8: the window sum divided by the divisor (PyTorch's
/// `count_include_pad` rule), rounded half away from zero. The scale is unchanged.
pub fn qavg_pool2d_forward(s: &Pool2dShape, x: &[i8], y: &mut [i8]) -> Result<()> {
    qavg_pool2d_with(
        s,
        x,
        y,
        |v| v,
        |s, oh, ow, x, y| {
            pool_2x2(s, oh, ow, x, y, |a, b, c, d| {
                round_quarter(a as i32 + b as i32 + c as i32 + d as i32) as i8
            })
        },
    )
}

/// A table op followed by average pooling, in one pass: [`qlut_forward`] of `x` into a
/// buffer, then [`qavg_pool2d_forward`] of that, bit for bit, with each input value looked
/// up as the window sums it (the table's output never stored). The padding is the table's
/// output's padding: zeros that count in the divisor under `count_include_pad`, as in
/// PyTorch's `avg_pool2d(sigmoid(x))`. The output has the table's output scale.
///
/// ```
/// use tinycnn_kernels::int8::qlut_avg_pool2d_forward;
/// use tinycnn_kernels::shape::{Pool2dParams, Pool2dShape};
/// let mut table = [0i8; 256];
/// table[128 + 1] = 10; // 1 -> 10, everything else -> 0
/// let s = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 2, 2);
/// let mut y = [0i8; 1];
/// qlut_avg_pool2d_forward(&table, &s, &[1, 1, 1, 5], &mut y).unwrap();
/// assert_eq!(y, [8]); // (10 + 10 + 10 + 0) / 4 = 7.5, rounded half away from zero
/// ```
pub fn qlut_avg_pool2d_forward(
    table: &[i8; 256],
    s: &Pool2dShape,
    x: &[i8],
    y: &mut [i8],
) -> Result<()> {
    let look = |v: i8| table[(v as u8 ^ 0x80) as usize];
    qavg_pool2d_with(s, x, y, look, |s, oh, ow, x, y| {
        pool_2x2(s, oh, ow, x, y, |a, b, c, d| {
            let sum = look(a) as i32 + look(b) as i32 + look(c) as i32 + look(d) as i32;
            round_quarter(sum) as i8
        })
    })
}

/// [`qavg_pool2d_forward`] of `map` of each input value, with `two_by_two(s, oh, ow, x, y)`
/// computing LeNet's windows (2x2, stride 2, no padding: every window holds 4 values,
/// whatever `count_include_pad` says) once the shapes are checked: the DSP kernels bring
/// their own.
#[inline(always)]
pub(crate) fn qavg_pool2d_with(
    s: &Pool2dShape,
    x: &[i8],
    y: &mut [i8],
    map: impl Fn(i8) -> i8,
    two_by_two: impl FnOnce(&Pool2dShape, usize, usize, &[i8], &mut [i8]),
) -> Result<()> {
    let (oh, ow) = check_pool2d(s, x.len(), y.len())?;
    let p = &s.params;
    let plane_in = s.in_h * s.in_w;
    if is_2x2_stride_2(s) {
        two_by_two(s, oh, ow, x, y);
        return Ok(());
    }
    let full = (p.kernel.0 * p.kernel.1) as i32;
    for (xp, yp) in x.chunks_exact(plane_in).zip(y.chunks_exact_mut(oh * ow)) {
        for oy in 0..oh {
            let (h0, h1) = window(oy, p.stride.0, p.padding.0, p.kernel.0, s.in_h);
            for ox in 0..ow {
                let (w0, w1) = window(ox, p.stride.1, p.padding.1, p.kernel.1, s.in_w);
                let mut sum = 0i32;
                for iy in h0..h1 {
                    for &v in &xp[iy * s.in_w + w0..iy * s.in_w + w1] {
                        sum += map(v) as i32;
                    }
                }
                let div = if p.count_include_pad {
                    full
                } else {
                    ((h1 - h0) * (w1 - w0)) as i32
                };
                yp[oy * ow + ox] = div_round(sum, div) as i8;
            }
        }
    }
    Ok(())
}

/// LeNet's pooling: 2x2 windows, stride 2, no padding.
pub(crate) fn is_2x2_stride_2(s: &Pool2dShape) -> bool {
    let p = &s.params;
    p.kernel == (2, 2) && p.stride == (2, 2) && p.padding == (0, 0)
}

/// 2x2 windows with stride 2 and no padding, `f` of each window's four values: two input
/// rows per output row, no window arithmetic per output.
#[inline(always)]
fn pool_2x2(
    s: &Pool2dShape,
    oh: usize,
    ow: usize,
    x: &[i8],
    y: &mut [i8],
    f: impl Fn(i8, i8, i8, i8) -> i8,
) {
    let plane_in = s.in_h * s.in_w;
    for (xp, yp) in x.chunks_exact(plane_in).zip(y.chunks_exact_mut(oh * ow)) {
        for (oy, yr) in yp.chunks_exact_mut(ow).enumerate() {
            let r0 = &xp[2 * oy * s.in_w..][..2 * ow];
            let r1 = &xp[(2 * oy + 1) * s.in_w..][..2 * ow];
            for ((o, a), b) in yr
                .iter_mut()
                .zip(r0.chunks_exact(2))
                .zip(r1.chunks_exact(2))
            {
                *o = f(a[0], a[1], b[0], b[1]);
            }
        }
    }
}

/// The input rows (or columns) `[start, end)` of pooling window `o`, padding cut off.
#[inline]
fn window(o: usize, stride: usize, pad: usize, k: usize, size: usize) -> (usize, usize) {
    let start = o * stride;
    let lo = start.max(pad) - pad;
    let hi = (start + k).min(size + pad).saturating_sub(pad);
    (lo, hi.max(lo))
}

/// [`div_round`]`(num, 4)` without branches: the magnitude rounded, the sign put back.
#[inline(always)]
fn round_quarter(num: i32) -> i32 {
    let sign = num >> 31;
    let mag = (num ^ sign) - sign;
    (((mag + 2) >> 2) ^ sign) - sign
}

/// `num / den` rounded half away from zero (`den > 0`).
#[inline]
fn div_round(num: i32, den: i32) -> i32 {
    if num >= 0 {
        (num + den / 2) / den
    } else {
        -((-num + den / 2) / den)
    }
}

/// `y[i] = table[x[i] + 128]`: an elementwise function of an int8 tensor, tabulated.
pub fn qlut_forward(table: &[i8; 256], x: &[i8], y: &mut [i8]) -> Result<()> {
    check_len("output", y.len(), x.len())?;
    // `v + 128` as the byte `v ^ 0x80`: an index the compiler knows is below 256. Four
    // values per word read, so the loop's own cost is shared by four lookups.
    let (mut yc, mut xc) = (y.chunks_exact_mut(4), x.chunks_exact(4));
    for (o, c) in (&mut yc).zip(&mut xc) {
        let v = u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]) ^ 0x8080_8080;
        o[0] = table[(v & 0xff) as usize];
        o[1] = table[(v >> 8 & 0xff) as usize];
        o[2] = table[(v >> 16 & 0xff) as usize];
        o[3] = table[(v >> 24) as usize];
    }
    for (o, &v) in yc.into_remainder().iter_mut().zip(xc.remainder()) {
        *o = table[(v as u8 ^ 0x80) as usize];
    }
    Ok(())
}

/// [`qlut_forward`] in place.
pub fn qlut_inplace(table: &[i8; 256], x: &mut [i8]) {
    for v in x {
        *v = table[(*v as u8 ^ 0x80) as usize];
    }
}

/// The table of `q -> quantize(sigmoid(q * in_scale), out_scale)` for [`qlut_forward`].
///
/// ```
/// use tinycnn_kernels::int8::sigmoid_lut;
/// let t = sigmoid_lut(0.1, 1.0 / 127.0).unwrap();
/// assert_eq!(t[128], 64); // sigmoid(0) = 0.5 -> 63.5 -> 64
/// assert_eq!(t[255], 127); // sigmoid(12.7) ~ 1
/// ```
pub fn sigmoid_lut(in_scale: f32, out_scale: f32) -> Result<[i8; 256]> {
    check_scale(in_scale)?;
    check_scale(out_scale)?;
    let mut t = [0i8; 256];
    for (i, o) in t.iter_mut().enumerate() {
        let r = (i as i32 - 128) as f32 * in_scale;
        let s = 1.0 / (1.0 + libm::expf(-r));
        *o = quantize_one(s, out_scale);
    }
    Ok(t)
}

fn check_scale(scale: f32) -> Result<()> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(KernelError::InvalidArgument {
            what: "quantization scale must be finite and positive",
        })
    }
}

/// `clamp(round(r / scale), -127, 127)`, ties away from zero; NaN becomes 0.
#[inline]
pub fn quantize_one(r: f32, scale: f32) -> i8 {
    round_clamped(r / scale)
}

/// `clamp(round(v), -127, 127)` with ties away from zero (`libm::roundf`'s rounding), NaN
/// 0, without a call: `v` truncated (`as i32`: one `VCVT`, saturating, NaN 0) and the
/// fraction `v - t` decides the rounding. The fraction is exact in f32: for `|v| < 2^24`
/// `t` is 0 or within a factor of 2 of `v` (Sterbenz), above that `v` is an integer and
/// `t == v` until `t` saturates, where the saturating steps and the clamp give +-127 as
/// `roundf` does. Equal to the `roundf` form for every f32 (tests/int8.rs checks whole
/// binades, the special values, random bit patterns and every input quantization of a
/// byte pixel).
#[inline]
fn round_clamped(v: f32) -> i8 {
    let t = v as i32;
    let f = v - t as f32;
    let q = t
        .saturating_add((f >= 0.5) as i32)
        .saturating_sub((f <= -0.5) as i32);
    q.clamp(-QMAX, QMAX) as i8
}

/// Quantizes `x` at `scale` into `y` (see [`quantize_one`]).
pub fn quantize(x: &[f32], scale: f32, y: &mut [i8]) -> Result<()> {
    check_scale(scale)?;
    check_len("output", y.len(), x.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = quantize_one(v, scale);
    }
    Ok(())
}

/// `y = x * scale`.
pub fn dequantize(x: &[i8], scale: f32, y: &mut [f32]) -> Result<()> {
    check_len("output", y.len(), x.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = v as f32 * scale;
    }
    Ok(())
}

/// Symmetric per-output-channel weight quantization: `scales[c] = max|w[c]| / 127` (1 for an
/// all-zero channel) and `q = quantize(w, scales[c])`. `w` is `[channels, rest]`.
pub fn quantize_per_channel(
    w: &[f32],
    channels: usize,
    scales: &mut [f32],
    q: &mut [i8],
) -> Result<()> {
    if channels == 0 {
        return Err(KernelError::Zero { what: "channels" });
    }
    check_len("scales", scales.len(), channels)?;
    check_len("output", q.len(), w.len())?;
    if !w.len().is_multiple_of(channels) || w.is_empty() {
        return Err(KernelError::InvalidArgument {
            what: "weight length is not a non-zero multiple of the channel count",
        });
    }
    let per = w.len() / channels;
    for ((wc, qc), sc) in w
        .chunks_exact(per)
        .zip(q.chunks_exact_mut(per))
        .zip(scales.iter_mut())
    {
        let mut max = 0.0f32;
        for &v in wc {
            if !v.is_finite() {
                return Err(KernelError::InvalidArgument {
                    what: "weight is not finite",
                });
            }
            max = max.max(v.abs());
        }
        *sc = if max > 0.0 { max / QMAX as f32 } else { 1.0 };
        for (o, &v) in qc.iter_mut().zip(wc) {
            *o = quantize_one(v, *sc);
        }
    }
    Ok(())
}

/// `q[c] = round(bias[c] / (w_scales[c] * x_scale))`, the bias at its accumulator's scale.
pub fn quantize_bias(bias: &[f32], w_scales: &[f32], x_scale: f32, q: &mut [i32]) -> Result<()> {
    check_len("weight scales", w_scales.len(), bias.len())?;
    check_len("output", q.len(), bias.len())?;
    check_scale(x_scale)?;
    for ((o, &b), &ws) in q.iter_mut().zip(bias).zip(w_scales) {
        check_scale(ws)?;
        let v = libm::round(b as f64 / (ws as f64 * x_scale as f64));
        if !v.is_finite() || v.abs() > i32::MAX as f64 / 2.0 {
            return Err(KernelError::InvalidArgument {
                what: "quantized bias does not fit in i32",
            });
        }
        *o = v as i32;
    }
    Ok(())
}

/// Naive loops that define the int8 kernels (exact integer twins).
pub mod reference {
    use super::*;

    /// The input position a tap reads, or `None` in the zero padding.
    fn tap(
        out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        dil: usize,
        size: usize,
    ) -> Option<usize> {
        let pos = (out * stride + k * dil).checked_sub(pad)?;
        (pos < size).then_some(pos)
    }

    /// Twin of [`super::qconv2d_forward`].
    pub fn qconv2d(
        s: &Conv2dShape,
        x: &[i8],
        w: &[i8],
        bias: Option<&[i32]>,
        requant: &[Requant],
        range: ActRange,
        y: &mut [i8],
    ) -> Result<()> {
        let (oh, ow) = check_conv2d(s, x.len(), w.len(), y.len())?;
        check_bias_requant(s.params.out_channels, bias, Some(requant))?;
        range.validate()?;
        let p = &s.params;
        let (cin_g, cout_g) = (p.in_per_group(), p.out_per_group());
        for n in 0..s.batch {
            for oc in 0..p.out_channels {
                let grp = oc / cout_g;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc: i32 = bias.map_or(0, |b| b[oc]);
                        for icl in 0..cin_g {
                            let ic = grp * cin_g + icl;
                            for ky in 0..p.kernel.0 {
                                let Some(iy) =
                                    tap(oy, ky, p.stride.0, p.padding.0, p.dilation.0, s.in_h)
                                else {
                                    continue;
                                };
                                for kx in 0..p.kernel.1 {
                                    let Some(ix) =
                                        tap(ox, kx, p.stride.1, p.padding.1, p.dilation.1, s.in_w)
                                    else {
                                        continue;
                                    };
                                    let xv =
                                        x[((n * p.in_channels + ic) * s.in_h + iy) * s.in_w + ix];
                                    let wv =
                                        w[((oc * cin_g + icl) * p.kernel.0 + ky) * p.kernel.1 + kx];
                                    acc += xv as i32 * wv as i32;
                                }
                            }
                        }
                        y[((n * p.out_channels + oc) * oh + oy) * ow + ox] =
                            requant[oc].apply_clamped(acc, range);
                    }
                }
            }
        }
        Ok(())
    }

    /// Twin of [`super::qlinear_forward_i32`].
    pub fn qlinear_i32(
        s: &QLinearShape,
        x: &[i8],
        w: &[i8],
        bias: Option<&[i32]>,
        y: &mut [i32],
    ) -> Result<()> {
        s.check(x.len(), w.len(), y.len())?;
        check_bias_requant(s.out_features, bias, None)?;
        for b in 0..s.batch {
            for o in 0..s.out_features {
                let mut acc: i32 = bias.map_or(0, |v| v[o]);
                for i in 0..s.in_features {
                    acc += x[b * s.in_features + i] as i32 * w[o * s.in_features + i] as i32;
                }
                y[b * s.out_features + o] = acc;
            }
        }
        Ok(())
    }

    /// Twin of [`super::qlinear_forward`].
    pub fn qlinear(
        s: &QLinearShape,
        x: &[i8],
        w: &[i8],
        bias: Option<&[i32]>,
        requant: &[Requant],
        range: ActRange,
        y: &mut [i8],
    ) -> Result<()> {
        s.check(x.len(), w.len(), y.len())?;
        check_bias_requant(s.out_features, bias, Some(requant))?;
        range.validate()?;
        for b in 0..s.batch {
            for o in 0..s.out_features {
                let mut acc: i32 = bias.map_or(0, |v| v[o]);
                for i in 0..s.in_features {
                    acc += x[b * s.in_features + i] as i32 * w[o * s.in_features + i] as i32;
                }
                y[b * s.out_features + o] = requant[o].apply_clamped(acc, range);
            }
        }
        Ok(())
    }

    /// Twin of [`super::qmax_pool2d_forward`] and [`super::qavg_pool2d_forward`]
    /// (`average` picks which).
    pub fn qpool2d(s: &Pool2dShape, average: bool, x: &[i8], y: &mut [i8]) -> Result<()> {
        pool(s, average, x, y, |v| v)
    }

    /// Twin of [`super::qlut_avg_pool2d_forward`]: [`qpool2d`] (average) of
    /// `table[v + 128]` for each input value `v` in a window.
    pub fn qlut_avg_pool2d(
        table: &[i8; 256],
        s: &Pool2dShape,
        x: &[i8],
        y: &mut [i8],
    ) -> Result<()> {
        pool(s, true, x, y, |v| table[(v as i32 + 128) as usize])
    }

    fn pool(
        s: &Pool2dShape,
        average: bool,
        x: &[i8],
        y: &mut [i8],
        map: impl Fn(i8) -> i8,
    ) -> Result<()> {
        let (oh, ow) = check_pool2d(s, x.len(), y.len())?;
        let p = &s.params;
        for pl in 0..s.batch * s.channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = i8::MIN;
                    let mut sum = 0i32;
                    let mut count = 0i32;
                    for ky in 0..p.kernel.0 {
                        for kx in 0..p.kernel.1 {
                            let iy = tap(oy, ky, p.stride.0, p.padding.0, 1, s.in_h);
                            let ix = tap(ox, kx, p.stride.1, p.padding.1, 1, s.in_w);
                            if let (Some(iy), Some(ix)) = (iy, ix) {
                                let v = map(x[(pl * s.in_h + iy) * s.in_w + ix]);
                                best = best.max(v);
                                sum += v as i32;
                                count += 1;
                            }
                        }
                    }
                    let out = if average {
                        let div = if p.count_include_pad {
                            (p.kernel.0 * p.kernel.1) as i32
                        } else {
                            count
                        };
                        // Round half away from zero, in exact rational arithmetic.
                        let q = sum / div;
                        let r = sum % div;
                        if 2 * r.abs() >= div {
                            (q + sum.signum()) as i8
                        } else {
                            q as i8
                        }
                    } else {
                        best
                    };
                    y[(pl * oh + oy) * ow + ox] = out;
                }
            }
        }
        Ok(())
    }
}
