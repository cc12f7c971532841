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
//! Every kernel has a naive twin in [`reference`](mod@reference) (obvious loops, per-tap bounds checks);
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
mod pool;
mod quant;
pub mod reference;

pub(crate) use pool::{is_2x2_stride_2, qavg_pool2d_with};
pub use pool::{
    qavg_pool2d_forward, qlut_avg_pool2d_forward, qlut_forward, qlut_inplace, qmax_pool2d_forward,
};
pub use quant::{
    dequantize, quantize, quantize_bias, quantize_one, quantize_per_channel, sigmoid_lut,
};

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
