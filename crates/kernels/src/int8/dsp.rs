//! int8 kernels laid out for the Cortex-M4's DSP extension: two 16-bit multiply-accumulates
//! per `SMLAD`, with the int8 operands widened to pairs of 16-bit lanes by `SXTB16`.
//!
//! # Packing
//! A 32-bit word holding four int8 values `[v0, v1, v2, v3]` (little-endian bytes) widens to
//! two words of two 16-bit lanes: [`sxtb16`] gives `(v0, v2)`, [`sxtb16_ror8`] `(v1, v3)`.
//! When both operands of a dot product are widened the same way, the lane pairs match up:
//! `smlad(sxtb16(w), sxtb16(x), smlad(sxtb16_ror8(w), sxtb16_ror8(x), acc))` adds
//! `w0*x0 + w2*x2 + w1*x1 + w3*x3`, the four products of the chunk in another order (the
//! "reordered" read of CMSIS-NN, with no `PKHBT` to restore the order). Integer sums do not
//! depend on their order, so the result is the plain kernel's, bit for bit.
//!
//! # Loop order
//! * [`qconv2d_forward`]: im2col of two output pixels at a time into an int8 workspace (the
//!   patch in weight order, zero-padded to a multiple of 4), then a 2x2 block: two output
//!   channels x two pixels, four accumulators, so each loaded weight word feeds two pixels
//!   and each patch word two channels: per 4 taps, 4 loads, 8 `SXTB16` and 8 `SMLAD` for
//!   16 multiply-accumulates.
//! * [`qlinear_forward`] / [`qlinear_forward_i32`]: two output rows at a time against one
//!   input row, widened on the fly (no workspace).
//!
//! # Where the instructions come from
//! On thumbv7em targets (build-script cfg `tinycnn_arm_dsp`, see [`NATIVE`]) the three
//! primitives are single instructions (`core::arch::asm!`). Elsewhere they are plain Rust
//! with the instructions' exact semantics (ARMv7-M Architecture Reference Manual, SXTB16 and
//! SMLAD), so the same packing and loop-order logic runs, and is tested, on the host. Off the
//! microcontroller the plain kernels of [`super`] are faster; these exist there for testing.
//!
//! ```
//! use tinycnn_kernels::int8::{dsp, reference, QLinearShape};
//! let s = QLinearShape::new(1, 6, 2);
//! let x: [i8; 6] = [1, -2, 3, -4, 5, -128];
//! let w: [i8; 12] = [7, 8, 9, 10, 11, 12, -1, -1, -1, -1, -1, 127];
//! let (mut fast, mut naive) = ([0i32; 2], [0i32; 2]);
//! dsp::qlinear_forward_i32(&s, &x, &w, Some(&[5, 0]), &mut fast).unwrap();
//! reference::qlinear_i32(&s, &x, &w, Some(&[5, 0]), &mut naive).unwrap();
//! assert_eq!(fast, naive);
//! assert_eq!(fast, [7 - 16 + 27 - 40 + 55 - 1536 + 5, -1 + 2 - 3 + 4 - 5 - 16256]);
//! ```

use super::{check_bias_requant, ActRange, QLinearShape, Requant};
use crate::conv::check_conv2d;
use crate::error::{check_workspace, KernelError, Result};
use crate::shape::Conv2dShape;

/// True when the primitives below are the real Cortex-M4 instructions (thumbv7em targets),
/// false where they are emulated in plain Rust.
pub const NATIVE: bool = cfg!(tinycnn_arm_dsp);

/// `SXTB16 Rd, Rm`: bytes 0 and 2 of `x`, sign-extended into the low and high 16-bit lanes.
///
/// ```
/// use tinycnn_kernels::int8::dsp::sxtb16;
/// assert_eq!(sxtb16(0x7f_40_80_ff), 0x0040_ffff); // (byte0 = -1, byte2 = 64)
/// ```
#[inline(always)]
pub fn sxtb16(x: u32) -> u32 {
    #[cfg(tinycnn_arm_dsp)]
    {
        let r: u32;
        // SAFETY: a register-only instruction of ARMv7E-M, which this target implements.
        unsafe {
            core::arch::asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x,
                options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(tinycnn_arm_dsp))]
    {
        let lo = x as u8 as i8 as i16 as u16 as u32;
        let hi = (x >> 16) as u8 as i8 as i16 as u16 as u32;
        lo | (hi << 16)
    }
}

/// `SXTB16 Rd, Rm, ROR #8`: bytes 1 and 3 of `x`, sign-extended into the two 16-bit lanes.
///
/// ```
/// use tinycnn_kernels::int8::dsp::sxtb16_ror8;
/// assert_eq!(sxtb16_ror8(0x7f_40_80_ff), 0x007f_ff80); // (byte1 = -128, byte3 = 127)
/// ```
#[inline(always)]
pub fn sxtb16_ror8(x: u32) -> u32 {
    #[cfg(tinycnn_arm_dsp)]
    {
        let r: u32;
        // SAFETY: a register-only instruction of ARMv7E-M, which this target implements.
        unsafe {
            core::arch::asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x,
                options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(tinycnn_arm_dsp))]
    {
        sxtb16(x.rotate_right(8))
    }
}

/// `SMLAD Rd, Rn, Rm, Ra`: `acc + lo(x) * lo(y) + hi(x) * hi(y)` with signed 16-bit lanes,
/// wrapping to 32 bits (the instruction sets the sticky Q flag on overflow; nothing reads it).
///
/// ```
/// use tinycnn_kernels::int8::dsp::smlad;
/// // (-2) * 3 + 5 * 7 + 100
/// assert_eq!(smlad(0x0005_fffe, 0x0007_0003, 100), 129);
/// ```
#[inline(always)]
pub fn smlad(x: u32, y: u32, acc: i32) -> i32 {
    #[cfg(tinycnn_arm_dsp)]
    {
        let r: i32;
        // SAFETY: a register-only instruction of ARMv7E-M, which this target implements. It
        // may set the Q flag, so the flags are not declared preserved.
        unsafe {
            core::arch::asm!("smlad {r}, {x}, {y}, {a}", r = lateout(reg) r, x = in(reg) x,
                y = in(reg) y, a = in(reg) acc, options(pure, nomem, nostack));
        }
        r
    }
    #[cfg(not(tinycnn_arm_dsp))]
    {
        let p0 = (x as u16 as i16 as i32) * (y as u16 as i16 as i32);
        let p1 = ((x >> 16) as u16 as i16 as i32) * ((y >> 16) as u16 as i16 as i32);
        acc.wrapping_add(p0).wrapping_add(p1)
    }
}

/// Four int8 values as one little-endian word (one `LDR`; the Cortex-M4 allows it unaligned).
#[inline(always)]
fn word(c: &[i8]) -> u32 {
    u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8])
}

/// The last 1 to 3 values of a row as a word, zero-filled (zeros add nothing to a sum).
#[inline(always)]
fn tail_word(c: &[i8]) -> u32 {
    let mut b = [0u8; 4];
    for (d, &v) in b.iter_mut().zip(c) {
        *d = v as u8;
    }
    u32::from_le_bytes(b)
}

/// `acc + dot(w, x)` for one 4-value chunk given as words.
#[inline(always)]
fn mac4(w: u32, x: u32, acc: i32) -> i32 {
    smlad(sxtb16_ror8(w), sxtb16_ror8(x), smlad(sxtb16(w), sxtb16(x), acc))
}

/// Two weight rows against one input row: `[a0 + w0 . x, a1 + w1 . x]`. The rows have
/// equal length; the input is widened once for both.
#[inline(always)]
fn dot_2x1(w0: &[i8], w1: &[i8], x: &[i8], mut a0: i32, mut a1: i32) -> (i32, i32) {
    let mut wc0 = w0.chunks_exact(4);
    let mut wc1 = w1.chunks_exact(4);
    let mut xc = x.chunks_exact(4);
    for ((c0, c1), cx) in (&mut wc0).zip(&mut wc1).zip(&mut xc) {
        let xw = word(cx);
        let (xa, xb) = (sxtb16(xw), sxtb16_ror8(xw));
        let ww0 = word(c0);
        a0 = smlad(sxtb16(ww0), xa, a0);
        a0 = smlad(sxtb16_ror8(ww0), xb, a0);
        let ww1 = word(c1);
        a1 = smlad(sxtb16(ww1), xa, a1);
        a1 = smlad(sxtb16_ror8(ww1), xb, a1);
    }
    if !xc.remainder().is_empty() {
        let xw = tail_word(xc.remainder());
        a0 = mac4(tail_word(wc0.remainder()), xw, a0);
        a1 = mac4(tail_word(wc1.remainder()), xw, a1);
    }
    (a0, a1)
}

/// One weight row against one input row: `a + w . x`.
#[inline(always)]
fn dot_1x1(w: &[i8], x: &[i8], mut a: i32) -> i32 {
    let mut wc = w.chunks_exact(4);
    let mut xc = x.chunks_exact(4);
    for (cw, cx) in (&mut wc).zip(&mut xc) {
        a = mac4(word(cw), word(cx), a);
    }
    if !xc.remainder().is_empty() {
        a = mac4(tail_word(wc.remainder()), tail_word(xc.remainder()), a);
    }
    a
}

/// Two weight rows of `k` values against two im2col columns (each `k` values, zero-padded to
/// a multiple of 4): the accumulators `[w0.c0, w0.c1, w1.c0, w1.c1]` added to `acc`.
#[inline(always)]
fn dot_2x2(w0: &[i8], w1: &[i8], c0: &[i8], c1: &[i8], acc: [i32; 4]) -> [i32; 4] {
    let [mut a00, mut a01, mut a10, mut a11] = acc;
    let mut wc0 = w0.chunks_exact(4);
    let mut wc1 = w1.chunks_exact(4);
    let mut cc0 = c0.chunks_exact(4);
    let mut cc1 = c1.chunks_exact(4);
    for ((r0, r1), (p0, p1)) in (&mut wc0).zip(&mut wc1).zip((&mut cc0).zip(&mut cc1)) {
        let ww0 = word(r0);
        let ww1 = word(r1);
        let (w0a, w0b) = (sxtb16(ww0), sxtb16_ror8(ww0));
        let (w1a, w1b) = (sxtb16(ww1), sxtb16_ror8(ww1));
        let xw0 = word(p0);
        let (x0a, x0b) = (sxtb16(xw0), sxtb16_ror8(xw0));
        a00 = smlad(w0a, x0a, a00);
        a00 = smlad(w0b, x0b, a00);
        a10 = smlad(w1a, x0a, a10);
        a10 = smlad(w1b, x0b, a10);
        let xw1 = word(p1);
        let (x1a, x1b) = (sxtb16(xw1), sxtb16_ror8(xw1));
        a01 = smlad(w0a, x1a, a01);
        a01 = smlad(w0b, x1b, a01);
        a11 = smlad(w1a, x1a, a11);
        a11 = smlad(w1b, x1b, a11);
    }
    let rest = wc0.remainder();
    if !rest.is_empty() {
        // The columns are zero-padded: their last chunk is whole.
        let (p0, p1) = (word(cc0.remainder_or_next()), word(cc1.remainder_or_next()));
        let (t0, t1) = (tail_word(rest), tail_word(wc1.remainder()));
        a00 = mac4(t0, p0, a00);
        a01 = mac4(t0, p1, a01);
        a10 = mac4(t1, p0, a10);
        a11 = mac4(t1, p1, a11);
    }
    [a00, a01, a10, a11]
}

/// The padded chunk that follows the whole chunks of a column.
trait NextChunk<'a> {
    fn remainder_or_next(&mut self) -> &'a [i8];
}

impl<'a> NextChunk<'a> for core::slice::ChunksExact<'a, i8> {
    #[inline(always)]
    fn remainder_or_next(&mut self) -> &'a [i8] {
        self.next().unwrap_or(&[0; 4])
    }
}

/// [`Requant::apply_clamped`] in fewer instructions: for `shift >= 33`, the usual case, it
/// keeps only the high word of the 64-bit product, since
/// `floor((p + 2^(s-1)) / 2^s) = (floor(p / 2^(s-1)) + 1) >> 1` and
/// `floor(p / 2^(s-1)) = (p >> 32) >> (s - 33)`. The same value, bit for bit.
#[inline(always)]
fn requantize(rq: Requant, acc: i32, range: ActRange) -> i8 {
    if rq.shift >= 33 {
        let hi = ((acc as i64 * rq.multiplier as i64) >> 32) as i32;
        let v = ((hi >> (rq.shift - 33)) + 1) >> 1;
        v.clamp(range.min as i32, range.max as i32) as i8
    } else {
        rq.apply_clamped(acc, range)
    }
}

/// Patch length of a convolution rounded up to whole 4-value chunks.
fn padded_patch(s: &Conv2dShape) -> Result<usize> {
    let p = &s.params;
    p.in_per_group()
        .checked_mul(p.kernel.0)
        .and_then(|v| v.checked_mul(p.kernel.1))
        .and_then(|v| v.checked_add(3))
        .map(|v| v & !3)
        .ok_or(KernelError::Overflow {
            what: "int8 conv patch",
        })
}

/// Length of the int8 workspace [`qconv2d_forward`] needs: two im2col columns, each the
/// patch `in_channels / groups * kh * kw` rounded up to a multiple of 4.
pub fn qconv2d_workspace_len(s: &Conv2dShape) -> Result<usize> {
    padded_patch(s)?.checked_mul(2).ok_or(KernelError::Overflow {
        what: "int8 conv workspace",
    })
}

/// Writes output pixel `pix`'s receptive field (in weight order `[cin_g, kh, kw]`, zero
/// padding included) into `col`, whose tail past the patch stays zero.
#[inline(always)]
fn im2col(s: &Conv2dShape, xg: &[i8], ow: usize, pix: usize, col: &mut [i8]) {
    let p = &s.params;
    let (kh, kw) = p.kernel;
    let (oy, ox) = (pix / ow, pix % ow);
    let (y0, x0) = (oy * p.stride.0, ox * p.stride.1);
    let (ph, pw) = p.padding;
    let (dh, dw) = p.dilation;
    let in_plane = s.in_h * s.in_w;
    // The whole window inside the input: plain copies, no per-tap checks.
    let inside = y0 >= ph
        && x0 >= pw
        && y0 + (kh - 1) * dh < s.in_h + ph
        && x0 + (kw - 1) * dw < s.in_w + pw;
    let mut k = 0;
    for plane in xg.chunks_exact(in_plane) {
        for ky in 0..kh {
            let dst = &mut col[k..k + kw];
            k += kw;
            let iy = (y0 + ky * dh).wrapping_sub(ph);
            if inside {
                let row = &plane[iy * s.in_w..][..s.in_w];
                let start = x0 - pw;
                if dw == 1 {
                    for (d, &v) in dst.iter_mut().zip(&row[start..start + kw]) {
                        *d = v;
                    }
                } else {
                    for (kx, d) in dst.iter_mut().enumerate() {
                        *d = row[start + kx * dw];
                    }
                }
            } else if iy >= s.in_h {
                dst.fill(0);
            } else {
                let row = &plane[iy * s.in_w..][..s.in_w];
                for (kx, d) in dst.iter_mut().enumerate() {
                    let ix = (x0 + kx * dw).wrapping_sub(pw);
                    *d = if ix < s.in_w { row[ix] } else { 0 };
                }
            }
        }
    }
}

/// Quantized convolution, the same function as [`super::qconv2d_forward`] (same shapes,
/// layout, requantization and result, bit for bit), computed with `SMLAD` (see the module
/// docs). `workspace` holds at least [`qconv2d_workspace_len`] values.
#[allow(clippy::too_many_arguments)]
pub fn qconv2d_forward(
    s: &Conv2dShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    requant: &[Requant],
    range: ActRange,
    y: &mut [i8],
    workspace: &mut [i8],
) -> Result<()> {
    let (oh, ow) = check_conv2d(s, x.len(), w.len(), y.len())?;
    check_bias_requant(s.params.out_channels, bias, Some(requant))?;
    range.validate()?;
    let kp = padded_patch(s)?;
    let need = qconv2d_workspace_len(s)?;
    check_workspace(workspace.len(), need)?;
    let p = &s.params;
    let (cin_g, cout_g) = (p.in_per_group(), p.out_per_group());
    let k = cin_g * p.kernel.0 * p.kernel.1;
    let in_plane = s.in_h * s.in_w;
    let pixels = oh * ow;
    let (col0, rest) = workspace[..need].split_at_mut(kp);
    let col1 = &mut rest[..kp];
    col0[k..].fill(0);
    col1[k..].fill(0);
    let bias_of = |oc: usize| bias.map_or(0, |b| b[oc]);
    for n in 0..s.batch {
        let yn = &mut y[n * p.out_channels * pixels..][..p.out_channels * pixels];
        for g in 0..p.groups {
            let xg = &x[(n * p.in_channels + g * cin_g) * in_plane..][..cin_g * in_plane];
            let wg = &w[g * cout_g * k..][..cout_g * k];
            let mut pix = 0;
            while pix < pixels {
                let pair = pix + 1 < pixels;
                im2col(s, xg, ow, pix, col0);
                if pair {
                    im2col(s, xg, ow, pix + 1, col1);
                }
                let (c0, c1) = (&col0[..kp], &col1[..kp]);
                let mut rows = wg.chunks_exact(k).enumerate();
                while let Some((o0, w0)) = rows.next() {
                    let oc0 = g * cout_g + o0;
                    let (b0, rq0) = (bias_of(oc0), requant[oc0]);
                    match (rows.next(), pair) {
                        (Some((_, w1)), true) => {
                            let oc1 = oc0 + 1;
                            let (b1, rq1) = (bias_of(oc1), requant[oc1]);
                            let [a00, a01, a10, a11] = dot_2x2(w0, w1, c0, c1, [b0, b0, b1, b1]);
                            yn[oc0 * pixels + pix] = requantize(rq0, a00, range);
                            yn[oc0 * pixels + pix + 1] = requantize(rq0, a01, range);
                            yn[oc1 * pixels + pix] = requantize(rq1, a10, range);
                            yn[oc1 * pixels + pix + 1] = requantize(rq1, a11, range);
                        }
                        (Some((_, w1)), false) => {
                            let oc1 = oc0 + 1;
                            let (b1, rq1) = (bias_of(oc1), requant[oc1]);
                            let (a0, a1) = dot_2x1(w0, w1, &c0[..k], b0, b1);
                            yn[oc0 * pixels + pix] = requantize(rq0, a0, range);
                            yn[oc1 * pixels + pix] = requantize(rq1, a1, range);
                        }
                        (None, true) => {
                            let (a0, a1) = dot_2x1(&c0[..k], &c1[..k], w0, b0, b0);
                            yn[oc0 * pixels + pix] = requantize(rq0, a0, range);
                            yn[oc0 * pixels + pix + 1] = requantize(rq0, a1, range);
                        }
                        (None, false) => {
                            let a = dot_1x1(w0, &c0[..k], b0);
                            yn[oc0 * pixels + pix] = requantize(rq0, a, range);
                        }
                    }
                }
                pix += 2;
            }
        }
    }
    Ok(())
}

/// Output rows two at a time: `out(o, acc)` receives `bias[o] + x . w[o]` for each `o`.
#[inline(always)]
fn linear_rows(
    s: &QLinearShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    mut out: impl FnMut(usize, usize, i32),
) {
    let bias_of = |o: usize| bias.map_or(0, |b| b[o]);
    for (b, xr) in x.chunks_exact(s.in_features).enumerate() {
        let mut rows = w.chunks_exact(s.in_features).enumerate();
        while let Some((o, w0)) = rows.next() {
            match rows.next() {
                Some((_, w1)) => {
                    let (a0, a1) = dot_2x1(w0, w1, xr, bias_of(o), bias_of(o + 1));
                    out(b, o, a0);
                    out(b, o + 1, a1);
                }
                None => out(b, o, dot_1x1(w0, xr, bias_of(o))),
            }
        }
    }
}

/// Quantized fully connected layer, the same function as [`super::qlinear_forward`]
/// (bit for bit), computed with `SMLAD`.
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
    let of = s.out_features;
    linear_rows(s, x, w, bias, |b, o, acc| {
        y[b * of + o] = requantize(requant[o], acc, range);
    });
    Ok(())
}

/// Quantized fully connected layer with raw `i32` outputs, the same function as
/// [`super::qlinear_forward_i32`] (bit for bit), computed with `SMLAD`.
pub fn qlinear_forward_i32(
    s: &QLinearShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    y: &mut [i32],
) -> Result<()> {
    s.check(x.len(), w.len(), y.len())?;
    check_bias_requant(s.out_features, bias, None)?;
    let of = s.out_features;
    linear_rows(s, x, w, bias, |b, o, acc| y[b * of + o] = acc);
    Ok(())
}
