//! The general path's columns: a pixel's receptive field gathered in weight order
//! (im2col) and widened into interleaved 16-bit lanes for two pixels.

#[cfg(doc)]
use super::qconv2d_forward;
#[cfg(not(tinycnn_arm_dsp))]
use super::{sxtb16, sxtb16_ror8};
use crate::error::{KernelError, Result};
use crate::shape::Conv2dShape;

/// Patch length of a convolution rounded up to whole 4-value chunks.
pub(super) fn padded_patch(s: &Conv2dShape) -> Result<usize> {
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

/// Length in words of the workspace [`qconv2d_forward`] needs: two widened im2col columns
/// (the patch `in_channels / groups * kh * kw` rounded up to a multiple of 4, one 32-bit word
/// per two taps and column) and one int8 column to gather into.
pub fn qconv2d_workspace_len(s: &Conv2dShape) -> Result<usize> {
    let kp = padded_patch(s)?;
    Ok(kp + kp / 4)
}

/// Writes output pixel `pix`'s receptive field (in weight order `[cin_g, kh, kw]`, zero
/// padding included) into `col[..patch]`.
#[inline(always)]
pub(super) fn im2col(s: &Conv2dShape, xg: &[i8], ow: usize, pix: usize, col: &mut [i8]) {
    let p = &s.params;
    let (kh, kw) = p.kernel;
    let (oy, ox) = (pix / ow, pix % ow);
    let (y0, x0) = (oy * p.stride.0, ox * p.stride.1);
    let (ph, pw) = p.padding;
    let (dh, dw) = p.dilation;
    // The whole window inside the input: row copies, no per-tap checks.
    let inside = y0 >= ph
        && x0 >= pw
        && y0 + (kh - 1) * dh < s.in_h + ph
        && x0 + (kw - 1) * dw < s.in_w + pw;
    if inside && dw == 1 {
        // Copies of a known width compile to a few loads and stores; a run-time width would
        // call memcpy, which costs ten times more for a 5-byte row.
        let (xs, ys) = (x0 - pw, y0 - ph);
        match kw {
            3 => gather_rows::<3>(s, xg, ys, xs, col),
            5 => gather_rows::<5>(s, xg, ys, xs, col),
            7 => gather_rows::<7>(s, xg, ys, xs, col),
            _ => gather_rows::<0>(s, xg, ys, xs, col),
        }
        return;
    }
    let in_plane = s.in_h * s.in_w;
    let mut k = 0;
    for plane in xg.chunks_exact(in_plane) {
        for ky in 0..kh {
            let dst = &mut col[k..k + kw];
            k += kw;
            let iy = (y0 + ky * dh).wrapping_sub(ph);
            if iy >= s.in_h {
                dst.fill(0);
                continue;
            }
            let row = &plane[iy * s.in_w..][..s.in_w];
            for (kx, d) in dst.iter_mut().enumerate() {
                let ix = (x0 + kx * dw).wrapping_sub(pw);
                *d = if ix < s.in_w { row[ix] } else { 0 };
            }
        }
    }
}

/// The inside-the-input case of [`im2col`] with stride-1 columns: `kh` rows of `kw`
/// contiguous values per input channel, starting at row `ys`, column `xs`. `KW` is `kw` when
/// known at compile time, 0 otherwise.
#[inline(always)]
fn gather_rows<const KW: usize>(s: &Conv2dShape, xg: &[i8], ys: usize, xs: usize, col: &mut [i8]) {
    let p = &s.params;
    let (kh, kw) = p.kernel;
    let kw = if KW > 0 { KW } else { kw };
    let dh = p.dilation.0;
    let in_plane = s.in_h * s.in_w;
    let mut dst = col.chunks_exact_mut(kw);
    for plane in xg.chunks_exact(in_plane) {
        for ky in 0..kh {
            let src = &plane[(ys + ky * dh) * s.in_w + xs..][..kw];
            if let Some(d) = dst.next() {
                if KW > 0 {
                    d[..KW].copy_from_slice(&src[..KW]);
                } else {
                    d.copy_from_slice(src);
                }
            }
        }
    }
}

/// Widens the gathered int8 column `patch` (as words) into lane `c` (0 or 1) of the
/// interleaved column pair `cols` (see `chunk_2x2` in [`super::general`]).
#[inline(always)]
pub(super) fn widen(patch: &[u32], c: usize, cols: &mut [u32]) {
    let n = patch.len().min(cols.len() / 4);
    if n == 0 || c > 1 {
        return;
    }
    #[cfg(tinycnn_arm_dsp)]
    // SAFETY: reads `n` words of `patch` and writes words `4 i + c` and `4 i + 2 + c` of
    // `cols` for i < n, all in bounds (n <= cols.len() / 4, c <= 1).
    unsafe {
        let base = cols.as_mut_ptr().add(c);
        core::arch::asm!(
            "2:",
            "ldr {w}, [{p}], #4",
            "sxtb16 {t}, {w}",
            "str {t}, [{d}]",
            "sxtb16 {t}, {w}, ror #8",
            "str {t}, [{d}, #8]",
            "add {d}, {d}, #16",
            "subs {n}, {n}, #1",
            "bne 2b",
            n = inout(reg) n => _,
            p = inout(reg) patch.as_ptr() => _,
            d = inout(reg) base => _,
            w = out(reg) _,
            t = out(reg) _,
            options(nostack),
        );
    }
    #[cfg(not(tinycnn_arm_dsp))]
    for (&w, chunk) in patch[..n].iter().zip(cols.chunks_exact_mut(4)) {
        chunk[c] = sxtb16(w);
        chunk[2 + c] = sxtb16_ror8(w);
    }
}

/// The int8 view of a gather buffer.
#[inline(always)]
pub(super) fn as_bytes(words: &mut [u32]) -> &mut [i8] {
    // SAFETY: u32 has no padding and i8 accepts any bit pattern; same memory, 4x the length,
    // alignment 1; the borrow of `words` is carried over.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut i8, words.len() * 4) }
}
