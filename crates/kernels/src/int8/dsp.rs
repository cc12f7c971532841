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
//! * [`qconv2d_forward`], window path (stride 1, no dilation, 5-tap kernel rows, one or an
//!   even number of input channels per group, every shift at least 33, and a workspace of
//!   at least [`qconv2d_window_workspace_len`] words): in bands of as many output rows as
//!   the workspace holds, the zero-padded input rows the band reads widened once into
//!   16-bit pairs (channel pairs, or row pairs for one input channel), then per output
//!   channel its weights into matching pairs and blocks of five output pixels along each
//!   output row of the band: per kernel row 9 input and 5 weight loads, 25 `SMLAD`s for 50
//!   multiply-accumulates, no im2col; requantization and stores in the same asm block.
//! * [`qconv2d_forward`], general path: im2col of two output pixels at a time (the patch in
//!   weight order, zero-padded to a multiple of 4), widened once per pixel with `SXTB16`
//!   (CMSIS-NN's q7 to q15 expansion) and interleaved so that one `LDRD` fetches both
//!   pixels' lanes; then a 2x2 block per pair of output channels: four accumulators, each
//!   weight word widened once for two pixels. Per 4 taps: 2 `LDR`, 2 `LDRD`, 4 `SXTB16`
//!   and 8 `SMLAD` for 16 multiply-accumulates.
//! * [`qlinear_forward`] / [`qlinear_forward_i32`]: four output rows at a time against one
//!   input row, widened on the fly (no workspace): per 4 inputs, 5 loads, 10 `SXTB16` and
//!   8 `SMLAD` for 16 multiply-accumulates, four such chunks per loop pass; the last one
//!   to three rows in plain loops.
//! * [`qmax_pool2d_forward`] / [`qavg_pool2d_forward`]: 2x2 windows with stride 2, one
//!   plane per asm block, two outputs per step from a word of each input row: [`max8`]
//!   (`SSUB8` + `SEL`), or the window sums as 16-bit lanes ([`sxtab16`]) rounded both at
//!   once ([`quarter_bias`]).
//! * [`qlut_forward`]: the table op, eight values per pass, sign-extended values as offsets
//!   from the table's middle, word stores.
//!
//! # Where the instructions come from
//! On thumbv7em targets (build-script cfg `tinycnn_arm_dsp`, see [`NATIVE`]) the
//! primitives are single instructions (`core::arch::asm!`) and the inner loops asm
//! blocks. Elsewhere they are plain Rust with the instructions' exact semantics (ARMv7-M
//! Architecture Reference Manual: SXTB16, SMLAD, SSUB8, SEL), and each asm block has a
//! Rust twin running the same sequence, so the packing and loop-order logic runs, and is
//! tested, on the host. Off the microcontroller the plain kernels of [`super`] are faster;
//! these exist there for testing.
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
use crate::error::{check_len, check_workspace, KernelError, Result};
use crate::pool::check_pool2d;
use crate::shape::{Conv2dShape, Pool2dShape};

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
/// Only the emulated loops use it: the native ones load words in asm.
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn word(c: &[i8]) -> u32 {
    u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8])
}

/// The last 1 to 3 values of a row as a word, zero-filled (zeros add nothing to a sum).
#[inline(always)]
fn tail_word(c: &[i8]) -> u32 {
    match *c {
        [a] => a as u8 as u32,
        [a, b] => a as u8 as u32 | (b as u8 as u32) << 8,
        [a, b, c, ..] => a as u8 as u32 | (b as u8 as u32) << 8 | (c as u8 as u32) << 16,
        [] => 0,
    }
}

/// One chunk of the 2x2 block: weight words `ww0`, `ww1` (4 taps each) against the
/// widened, interleaved chunk `c = [A(col0), A(col1), B(col0), B(col1)]` of two columns,
/// where `A = sxtb16(patch word)` holds taps 0 and 2 and `B = sxtb16_ror8(patch word)`
/// taps 1 and 3. `acc` is `[w0.col0, w0.col1, w1.col0, w1.col1]`. The native loop in
/// [`dot_2x2`] runs exactly this sequence.
#[inline(always)]
fn chunk_2x2(ww0: u32, ww1: u32, c: &[u32], acc: &mut [i32; 4]) {
    let (ca0, ca1, cb0, cb1) = (c[0], c[1], c[2], c[3]);
    let t = sxtb16(ww0);
    acc[0] = smlad(t, ca0, acc[0]);
    acc[1] = smlad(t, ca1, acc[1]);
    let t = sxtb16(ww1);
    acc[2] = smlad(t, ca0, acc[2]);
    acc[3] = smlad(t, ca1, acc[3]);
    let t = sxtb16_ror8(ww0);
    acc[0] = smlad(t, cb0, acc[0]);
    acc[1] = smlad(t, cb1, acc[1]);
    let t = sxtb16_ror8(ww1);
    acc[2] = smlad(t, cb0, acc[2]);
    acc[3] = smlad(t, cb1, acc[3]);
}

/// Two weight rows against two widened, interleaved columns, over whole chunks only:
/// `acc + [w0.c0, w0.c1, w1.c0, w1.c1]` for the first `w0.len() / 4` chunks (`w1` and
/// `cols` at least as long as `w0`).
#[inline(always)]
fn dot_2x2_whole(w0: &[i8], w1: &[i8], cols: &[u32], acc: [i32; 4]) -> [i32; 4] {
    let chunks = w0.len() / 4;
    if chunks == 0 {
        return acc;
    }
    #[cfg(tinycnn_arm_dsp)]
    {
        dot_2x2_asm(w0, w1, cols, chunks, acc)
    }
    #[cfg(not(tinycnn_arm_dsp))]
    {
        let mut acc = acc;
        for ((c0, c1), c) in w0
            .chunks_exact(4)
            .zip(w1.chunks_exact(4))
            .zip(cols.chunks_exact(4))
        {
            chunk_2x2(word(c0), word(c1), c, &mut acc);
        }
        acc
    }
}

/// Two weight rows of `k` taps (`w0`, `w1`) against two widened, interleaved columns
/// (`cols`: 4 words per 4-tap chunk, zero-padded past `k`), the last partial chunk
/// assembled byte by byte: `acc + [w0.c0, w0.c1, w1.c0, w1.c1]`.
#[inline(always)]
fn dot_2x2(w0: &[i8], w1: &[i8], cols: &[u32], acc: [i32; 4]) -> [i32; 4] {
    let k = w0.len();
    let whole = k & !3;
    let mut acc = dot_2x2_whole(&w0[..whole], &w1[..k], cols, acc);
    if whole < k {
        let (t0, t1) = (&w0[whole..], &w1[whole..k]);
        chunk_2x2(
            tail_word(t0),
            tail_word(t1),
            &cols[whole..whole + 4],
            &mut acc,
        );
    }
    acc
}

/// [`chunk_2x2`] over `chunks` chunks, as one loop of Cortex-M4 instructions (an odd chunk
/// first, then two per iteration). Twelve registers are live (2 pointers, the row offset,
/// 4 accumulators, 2 weight words, 2 column words, 1 widened weight), one more than `asm!`
/// operands may take, so the loop counter lives in r7 (the frame pointer), saved and
/// restored around the loop.
#[cfg(tinycnn_arm_dsp)]
#[inline(always)]
fn dot_2x2_asm(w0: &[i8], w1: &[i8], cols: &[u32], chunks: usize, acc: [i32; 4]) -> [i32; 4] {
    assert!(4 * chunks <= w0.len() && w0.len() <= w1.len() && w0.len() <= cols.len());
    let [mut a00, mut a01, mut a10, mut a11] = acc;
    let off = (w1.as_ptr() as usize).wrapping_sub(w0.as_ptr() as usize);
    macro_rules! chunk {
        () => {
            concat!(
                "ldr {w1}, [{pw}, {off}]\n",
                "ldr {w0}, [{pw}], #4\n",
                "ldrd {c0}, {c1}, [{pc}], #8\n",
                "sxtb16 {t}, {w0}\n",
                "smlad {a00}, {t}, {c0}, {a00}\n",
                "smlad {a01}, {t}, {c1}, {a01}\n",
                "sxtb16 {t}, {w1}\n",
                "smlad {a10}, {t}, {c0}, {a10}\n",
                "smlad {a11}, {t}, {c1}, {a11}\n",
                "ldrd {c0}, {c1}, [{pc}], #8\n",
                "sxtb16 {t}, {w0}, ror #8\n",
                "smlad {a00}, {t}, {c0}, {a00}\n",
                "smlad {a01}, {t}, {c1}, {a01}\n",
                "sxtb16 {t}, {w1}, ror #8\n",
                "smlad {a10}, {t}, {c0}, {a10}\n",
                "smlad {a11}, {t}, {c1}, {a11}\n",
            )
        };
    }
    // SAFETY: reads 4 * chunks bytes from each weight row and 4 * chunks words from `cols`,
    // all in bounds (asserted above; chunks >= 1 by the caller, the loop would otherwise
    // run 2^31 times); r7 is pushed and popped, so sp and r7 are restored.
    unsafe {
        core::arch::asm!(
            "push {{r7}}",
            "lsrs r7, {t}, #1",
            "bcc 3f",
            chunk!(),
            "3:",
            "cmp r7, #0",
            "beq 4f",
            "2:",
            chunk!(),
            chunk!(),
            "subs r7, r7, #1",
            "bne 2b",
            "4:",
            "pop {{r7}}",
            t = inout(reg) chunks => _,
            pw = inout(reg) w0.as_ptr() => _,
            off = in(reg) off,
            pc = inout(reg) cols.as_ptr() => _,
            w0 = out(reg) _,
            w1 = out(reg) _,
            c0 = out(reg) _,
            c1 = out(reg) _,
            a00 = inout(reg) a00,
            a01 = inout(reg) a01,
            a10 = inout(reg) a10,
            a11 = inout(reg) a11,
            options(readonly),
        );
    }
    [a00, a01, a10, a11]
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
fn im2col(s: &Conv2dShape, xg: &[i8], ow: usize, pix: usize, col: &mut [i8]) {
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
/// interleaved column pair `cols` (see [`chunk_2x2`]).
#[inline(always)]
fn widen(patch: &[u32], c: usize, cols: &mut [u32]) {
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
fn as_bytes(words: &mut [u32]) -> &mut [i8] {
    // SAFETY: u32 has no padding and i8 accepts any bit pattern; same memory, 4x the length,
    // alignment 1; the borrow of `words` is carried over.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut i8, words.len() * 4) }
}

/// All output channels of one group at the two pixels `y0` and `y1` (equal for a lone last
/// pixel) whose widened columns are in `cols`: channel pairs through [`dot_2x2`], bias,
/// requantization, stores into the group's output `planes` (`pixels` values each). A
/// function of its own so that the hot loop gets a register file free of the outer loops.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn channels_2x2(
    wg: &[i8],
    k: usize,
    cout_g: usize,
    cols: &[u32],
    bias: Option<&[i32]>,
    requant: &[Requant],
    range: ActRange,
    planes: &mut [i8],
    pixels: usize,
    y0: usize,
    y1: usize,
) {
    if y0 >= pixels || y1 >= pixels {
        return;
    }
    let kp = (k + 3) & !3;
    let cols = &cols[..kp];
    let mut outs = planes.chunks_exact_mut(pixels);
    let mut rq = requant.iter();
    let mut o = 0;
    while o + 1 < cout_g {
        let (b0, b1) = bias.map_or((0, 0), |b| (b[o], b[o + 1]));
        let acc = [b0, b0, b1, b1];
        let rows = &wg[o * k..];
        // Where the second row's last chunk can be read whole without leaving the weights,
        // it is: the bytes past the row meet zero column lanes and add nothing.
        let [a00, a01, a10, a11] = match rows.get(..k + kp) {
            Some(both) => dot_2x2_whole(&both[..kp], &both[k..], cols, acc),
            None => dot_2x2(&rows[..k], &rows[k..], cols, acc),
        };
        let (Some(p0), Some(p1), Some(&r0), Some(&r1)) =
            (outs.next(), outs.next(), rq.next(), rq.next())
        else {
            return;
        };
        // For a lone last pixel, y1 = y0 and the real value is written last.
        p0[y1] = requantize(r0, a01, range);
        p0[y0] = requantize(r0, a00, range);
        p1[y1] = requantize(r1, a11, range);
        p1[y0] = requantize(r1, a10, range);
        o += 2;
    }
    if let (true, Some(p0), Some(&r0)) = (o < cout_g, outs.next(), rq.next()) {
        // A lone last channel, paired with itself.
        let w0 = &wg[o * k..][..k];
        let b0 = bias.map_or(0, |b| b[o]);
        let [a00, a01, _, _] = dot_2x2(w0, w0, cols, [b0, b0, b0, b0]);
        p0[y1] = requantize(r0, a01, range);
        p0[y0] = requantize(r0, a00, range);
    }
}

/// The last 1 to 4 taps of a row of `k >= 4` taps (`row` starts at the row, holds at least
/// `k` bytes) as a word with the taps past `k` zeroed, read as the word that ends at the
/// row's end, shifted down: nothing past the row is read.
#[cfg_attr(tinycnn_arm_dsp, allow(dead_code))] // the native block reads it in asm
#[inline(always)]
fn last_word(row: &[i8], k: usize) -> u32 {
    let w = u32::from_le_bytes([
        row[k - 4] as u8,
        row[k - 3] as u8,
        row[k - 2] as u8,
        row[k - 1] as u8,
    ]);
    let whole = (k - 1) & !3;
    w >> (8 * (4 - (k - whole)))
}

/// What the native pair block ([`pair_block_asm`]) reads and advances, in memory so the asm
/// keeps all registers for the loop. Offsets are fixed (`repr(C)`, 32-bit target).
#[cfg(tinycnn_arm_dsp)]
#[repr(C)]
struct PairBlock {
    /// First weight row of the pair (advanced by `2 k` per pair).
    w: *const i8,
    k: usize,
    /// Chunks in the loop: all but the last, `(k - 1) / 4`.
    loop_chunks: usize,
    cols: *const u32,
    /// The pair's two biases (advanced by 2 per pair).
    bias: *const i32,
    /// The last chunk: the word at `k - 4` shifted right by `tail_shift` bits;
    /// `tail_off = k - 4 - 4 * loop_chunks` (0 to -3) moves the loop's end pointer there.
    tail_shift: u32,
    tail_off: isize,
    m0: i32,
    post0: u32,
    m1: i32,
    post1: u32,
    min: i32,
    max: i32,
    /// Outputs of the pair's first channel at pixels y0 and y1 (advanced by 2 planes).
    out0: *mut i8,
    out1: *mut i8,
    stride: usize,
}

/// One channel pair at the pixel pair of `cols`, whole: the `SMLAD` loop over all chunks
/// but the last, the last chunk from [`last_word`]-style reads, requantization (the
/// `shift >= 33` form of [`requantize`]: `SMMUL`, shift, round, clamp) and the four stores;
/// then advances the block to the next pair. The same arithmetic as [`channels_2x2`].
#[cfg(tinycnn_arm_dsp)]
#[inline(always)]
fn pair_block_asm(b: &mut PairBlock) {
    macro_rules! body {
        () => {
            concat!(
                "ldrd {c0}, {c1}, [{pc}], #8\n",
                "sxtb16 {t}, {w0}\n",
                "smlad {a00}, {t}, {c0}, {a00}\n",
                "smlad {a01}, {t}, {c1}, {a01}\n",
                "sxtb16 {t}, {w1}\n",
                "smlad {a10}, {t}, {c0}, {a10}\n",
                "smlad {a11}, {t}, {c1}, {a11}\n",
                "ldrd {c0}, {c1}, [{pc}], #8\n",
                "sxtb16 {t}, {w0}, ror #8\n",
                "smlad {a00}, {t}, {c0}, {a00}\n",
                "smlad {a01}, {t}, {c1}, {a01}\n",
                "sxtb16 {t}, {w1}, ror #8\n",
                "smlad {a10}, {t}, {c0}, {a10}\n",
                "smlad {a11}, {t}, {c1}, {a11}\n",
            )
        };
    }
    macro_rules! chunk {
        () => {
            concat!(
                "ldr {w1}, [{pw}, {off}]\n",
                "ldr {w0}, [{pw}], #4\n",
                body!()
            )
        };
    }
    macro_rules! requant {
        ($x:literal, $y:literal, $m:literal, $post:literal) => {
            concat!(
                "ldr {w0}, [{t}, #",
                $m,
                "]\n",
                "ldr {w1}, [{t}, #",
                $post,
                "]\n",
                "smmul {",
                $x,
                "}, {",
                $x,
                "}, {w0}\n",
                "smmul {",
                $y,
                "}, {",
                $y,
                "}, {w0}\n",
                "asr {",
                $x,
                "}, {",
                $x,
                "}, {w1}\n",
                "asr {",
                $y,
                "}, {",
                $y,
                "}, {w1}\n",
                "add {",
                $x,
                "}, {",
                $x,
                "}, #1\n",
                "add {",
                $y,
                "}, {",
                $y,
                "}, #1\n",
                "asr {",
                $x,
                "}, {",
                $x,
                "}, #1\n",
                "asr {",
                $y,
                "}, {",
                $y,
                "}, #1\n",
                "cmp {",
                $x,
                "}, {c0}\n",
                "it lt\n",
                "movlt {",
                $x,
                "}, {c0}\n",
                "cmp {",
                $x,
                "}, {c1}\n",
                "it gt\n",
                "movgt {",
                $x,
                "}, {c1}\n",
                "cmp {",
                $y,
                "}, {c0}\n",
                "it lt\n",
                "movlt {",
                $y,
                "}, {c0}\n",
                "cmp {",
                $y,
                "}, {c1}\n",
                "it gt\n",
                "movgt {",
                $y,
                "}, {c1}\n",
            )
        };
    }
    // SAFETY: the caller (`channels_fast`) checked that the pair's two rows of k >= 4 bytes,
    // its two biases, `cols` (4 * ceil(k / 4) words) and both output planes at y0 and y1
    // are in bounds; the loop reads rows 0 .. 4 * loop_chunks and the last word at
    // k - 4 .. k of each row, so nothing past a row. r7 is pushed and popped, and the
    // params pointer is pushed and popped around the loop: sp is restored.
    unsafe {
        core::arch::asm!(
            "push {{r7}}",
            "ldr {pw}, [{t}, #0]",
            "ldr {off}, [{t}, #4]",
            "ldr r7, [{t}, #8]",
            "ldr {pc}, [{t}, #12]",
            "ldr {w0}, [{t}, #16]",
            "ldr {a00}, [{w0}]",
            "ldr {a10}, [{w0}, #4]",
            "mov {a01}, {a00}",
            "mov {a11}, {a10}",
            "push {{{t}}}",
            "lsrs r7, r7, #1",
            "bcc 3f",
            chunk!(),
            "3:",
            "cmp r7, #0",
            "beq 4f",
            "2:",
            chunk!(),
            chunk!(),
            "subs r7, r7, #1",
            "bne 2b",
            "4:",
            "ldr {c1}, [sp]",
            "ldr {t}, [{c1}, #24]",
            "add {pw}, {pw}, {t}",
            "ldr {c0}, [{c1}, #20]",
            "ldr {w1}, [{pw}, {off}]",
            "ldr {w0}, [{pw}]",
            "lsr {w0}, {w0}, {c0}",
            "lsr {w1}, {w1}, {c0}",
            body!(),
            "pop {{{t}}}",
            "ldr {c0}, [{t}, #44]",
            "ldr {c1}, [{t}, #48]",
            requant!("a00", "a01", "28", "32"),
            requant!("a10", "a11", "36", "40"),
            "ldr {w0}, [{t}, #52]",
            "ldr {w1}, [{t}, #56]",
            "ldr {pc}, [{t}, #60]",
            "strb {a01}, [{w1}]",
            "strb {a00}, [{w0}]",
            "strb {a11}, [{w1}, {pc}]",
            "strb {a10}, [{w0}, {pc}]",
            "add {w0}, {w0}, {pc}, lsl #1",
            "add {w1}, {w1}, {pc}, lsl #1",
            "str {w0}, [{t}, #52]",
            "str {w1}, [{t}, #56]",
            "ldr {w0}, [{t}, #0]",
            "add {w0}, {w0}, {off}, lsl #1",
            "str {w0}, [{t}, #0]",
            "ldr {w0}, [{t}, #16]",
            "add {w0}, {w0}, #8",
            "str {w0}, [{t}, #16]",
            "pop {{r7}}",
            t = inout(reg) b as *mut PairBlock => _,
            pw = out(reg) _,
            off = out(reg) _,
            pc = out(reg) _,
            w0 = out(reg) _,
            w1 = out(reg) _,
            c0 = out(reg) _,
            c1 = out(reg) _,
            a00 = out(reg) _,
            a01 = out(reg) _,
            a10 = out(reg) _,
            a11 = out(reg) _,
        );
    }
}

/// [`channels_2x2`] for the usual case, with the whole per-pair work in one block of
/// instructions (see [`pair_block_asm`]; plain Rust with the same order elsewhere): rows of
/// `k >= 4` taps, a bias, every requantization shift at least 33 (checked by the caller).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn channels_fast(
    wg: &[i8],
    k: usize,
    cout_g: usize,
    cols: &[u32],
    bias: &[i32],
    requant: &[Requant],
    range: ActRange,
    planes: &mut [i8],
    pixels: usize,
    y0: usize,
    y1: usize,
) {
    let kp = (k + 3) & !3;
    let pairs = cout_g / 2;
    if k < 4
        || y0 >= pixels
        || y1 >= pixels
        || wg.len() < cout_g * k
        || cols.len() < kp
        || bias.len() < cout_g
        || requant.len() < cout_g
        || planes.len() < cout_g * pixels
        || requant[..cout_g].iter().any(|r| r.shift < 33)
    {
        channels_2x2(
            wg,
            k,
            cout_g,
            cols,
            Some(bias),
            requant,
            range,
            planes,
            pixels,
            y0,
            y1,
        );
        return;
    }
    #[cfg(tinycnn_arm_dsp)]
    {
        let loop_chunks = (k - 1) / 4;
        let mut b = PairBlock {
            w: wg.as_ptr(),
            k,
            loop_chunks,
            cols: cols.as_ptr(),
            bias: bias.as_ptr(),
            tail_shift: 8 * (4 - (k - 4 * loop_chunks)) as u32,
            tail_off: k as isize - 4 - 4 * loop_chunks as isize,
            m0: 0,
            post0: 0,
            m1: 0,
            post1: 0,
            min: range.min as i32,
            max: range.max as i32,
            out0: planes[y0..].as_mut_ptr(),
            out1: planes[y1..].as_mut_ptr(),
            stride: pixels,
        };
        for rq in requant[..2 * pairs].chunks_exact(2) {
            b.m0 = rq[0].multiplier;
            b.post0 = rq[0].shift - 33;
            b.m1 = rq[1].multiplier;
            b.post1 = rq[1].shift - 33;
            pair_block_asm(&mut b);
        }
    }
    #[cfg(not(tinycnn_arm_dsp))]
    for o in (0..2 * pairs).step_by(2) {
        let (r0, r1) = (&wg[o * k..][..k], &wg[(o + 1) * k..][..k]);
        let whole = (k - 1) & !3;
        let acc = [bias[o], bias[o], bias[o + 1], bias[o + 1]];
        let mut acc = dot_2x2_whole(&r0[..whole], &r1[..whole], cols, acc);
        chunk_2x2(
            last_word(r0, k),
            last_word(r1, k),
            &cols[whole..whole + 4],
            &mut acc,
        );
        let [a00, a01, a10, a11] = acc;
        planes[o * pixels + y1] = requantize(requant[o], a01, range);
        planes[o * pixels + y0] = requantize(requant[o], a00, range);
        planes[(o + 1) * pixels + y1] = requantize(requant[o + 1], a11, range);
        planes[(o + 1) * pixels + y0] = requantize(requant[o + 1], a10, range);
    }
    if cout_g % 2 == 1 {
        // A lone last channel, paired with itself.
        let o = cout_g - 1;
        let w0 = &wg[o * k..][..k];
        let [a00, a01, _, _] = dot_2x2(w0, w0, cols, [bias[o]; 4]);
        planes[o * pixels + y1] = requantize(requant[o], a01, range);
        planes[o * pixels + y0] = requantize(requant[o], a00, range);
    }
}

/// Quantized convolution, the same function as [`super::qconv2d_forward`] (same shapes,
/// layout, requantization and result, bit for bit), computed with `SMLAD` (see the module
/// docs). `workspace` holds at least [`qconv2d_workspace_len`] words; with
/// [`qconv2d_workspace_len_fast`] words, shapes of the window path take it.
#[allow(clippy::too_many_arguments)]
pub fn qconv2d_forward(
    s: &Conv2dShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    requant: &[Requant],
    range: ActRange,
    y: &mut [i8],
    workspace: &mut [u32],
) -> Result<()> {
    let all = ConvPaths {
        window: true,
        general: true,
    };
    qconv2d_forward_paths(all, s, x, w, bias, requant, range, y, workspace)
}

/// Which paths [`qconv2d_forward_paths`] may take. A firmware that runs one plan passes
/// constants: the code of a path it leaves out is not linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvPaths {
    /// The window path (shapes and workspaces of [`qconv2d_takes_window`]).
    pub window: bool,
    /// The general path (im2col and 2x2 blocks): every other convolution.
    pub general: bool,
}

/// Whether [`qconv2d_forward`] takes its window path for shape `s` with `requant` and
/// `workspace_words` of workspace: a window shape ([`qconv2d_window_workspace_len`] is
/// `Some`), at least that much workspace, and every requantization shift at least 33 (the
/// only form the path's requantization has; every real layer's, a scale below 1/4).
pub fn qconv2d_takes_window(s: &Conv2dShape, requant: &[Requant], workspace_words: usize) -> bool {
    qconv2d_window_workspace_len(s).is_some_and(|need| workspace_words >= need)
        && requant.iter().all(|r| r.shift >= 33)
}

/// [`qconv2d_forward`] restricted to the paths in `paths`: a convolution that needs a path
/// left out is an [`KernelError::InvalidArgument`] error. Inlined, so that constant `paths`
/// drop the other path's code.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn qconv2d_forward_paths(
    paths: ConvPaths,
    s: &Conv2dShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    requant: &[Requant],
    range: ActRange,
    y: &mut [i8],
    workspace: &mut [u32],
) -> Result<()> {
    let (oh, ow) = check_conv2d(s, x.len(), w.len(), y.len())?;
    check_bias_requant(s.params.out_channels, bias, Some(requant))?;
    range.validate()?;
    if paths.window && qconv2d_takes_window(s, requant, workspace.len()) {
        if let Some(l) = window_layout(s) {
            qconv2d_window(s, &l, (oh, ow), x, w, bias, requant, range, y, workspace);
            return Ok(());
        }
    }
    if !paths.general {
        return Err(KernelError::InvalidArgument {
            what: "convolution: its path (the general one) is not linked in",
        });
    }
    qconv2d_general(s, (oh, ow), x, w, bias, requant, range, y, workspace)
}

/// The general path of [`qconv2d_forward`] (shapes checked by the caller).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn qconv2d_general(
    s: &Conv2dShape,
    (oh, ow): (usize, usize),
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    requant: &[Requant],
    range: ActRange,
    y: &mut [i8],
    workspace: &mut [u32],
) -> Result<()> {
    let kp = padded_patch(s)?;
    let need = qconv2d_workspace_len(s)?;
    check_workspace(workspace.len(), need)?;
    let p = &s.params;
    let (cin_g, cout_g) = (p.in_per_group(), p.out_per_group());
    let k = cin_g * p.kernel.0 * p.kernel.1;
    let in_plane = s.in_h * s.in_w;
    let pixels = oh * ow;
    let (cols, gather) = workspace[..need].split_at_mut(kp);
    // The gather column's tail past the patch stays zero: zero taps in the last chunk.
    as_bytes(gather)[k..].fill(0);
    for n in 0..s.batch {
        let yn = &mut y[n * p.out_channels * pixels..][..p.out_channels * pixels];
        for g in 0..p.groups {
            let xg = &x[(n * p.in_channels + g * cin_g) * in_plane..][..cin_g * in_plane];
            // The group's rows, and everything after them (see `dot_2x2`).
            let wg = &w[g * cout_g * k..];
            let mut pix = 0;
            while pix < pixels {
                // Two pixels; a lone last one is paired with zeros and its twin dropped.
                let pair = pix + 1 < pixels;
                im2col(s, xg, ow, pix, as_bytes(gather));
                widen(gather, 0, cols);
                if pair {
                    im2col(s, xg, ow, pix + 1, as_bytes(gather));
                    widen(gather, 1, cols);
                } else {
                    for chunk in cols.chunks_exact_mut(4) {
                        chunk[1] = 0;
                        chunk[3] = 0;
                    }
                }
                let planes = &mut yn[g * cout_g * pixels..][..cout_g * pixels];
                let (bg, rg) = (
                    bias.map(|b| &b[g * cout_g..][..cout_g]),
                    &requant[g * cout_g..][..cout_g],
                );
                let y1 = pix + pair as usize;
                match bg {
                    Some(bg) => {
                        channels_fast(wg, k, cout_g, cols, bg, rg, range, planes, pixels, pix, y1)
                    }
                    None => {
                        channels_2x2(wg, k, cout_g, cols, bg, rg, range, planes, pixels, pix, y1)
                    }
                }
                pix += 2;
            }
        }
    }
    Ok(())
}

/// Four weight rows (`w`: rows of `k = x.len()` taps, one after another) against one input
/// row: `acc[r] + w[r] . x`. The input is widened once per chunk for all four rows. Not
/// inlined: both linear kernels share one copy.
#[inline(never)]
fn dot_4x1(w: &[i8], x: &[i8], mut acc: [i32; 4]) -> [i32; 4] {
    let k = x.len();
    let w = &w[..4 * k];
    let whole = k & !3;
    if whole > 0 {
        #[cfg(tinycnn_arm_dsp)]
        {
            acc = dot_4x1_asm(w, k, &x[..whole], acc);
        }
        #[cfg(not(tinycnn_arm_dsp))]
        for (c, cx) in x[..whole].chunks_exact(4).enumerate() {
            let ww = [0, 1, 2, 3].map(|r| word(&w[r * k + 4 * c..]));
            chunk_4x1(ww, word(cx), &mut acc);
        }
    }
    if whole < k {
        let ww = [0, 1, 2, 3].map(|r| tail_word(&w[r * k + whole..(r + 1) * k]));
        chunk_4x1(ww, tail_word(&x[whole..]), &mut acc);
    }
    acc
}

/// One chunk of [`dot_4x1`]: weight words `ww` (one per row) against input word `xw`, in
/// the order of the native loop.
#[inline(always)]
fn chunk_4x1(ww: [u32; 4], xw: u32, acc: &mut [i32; 4]) {
    let (xa, xb) = (sxtb16(xw), sxtb16_ror8(xw));
    for (a, &w) in acc.iter_mut().zip(&ww) {
        *a = smlad(sxtb16(w), xa, *a);
        *a = smlad(sxtb16_ror8(w), xb, *a);
    }
}

/// [`chunk_4x1`] over the whole chunks of `x` (at least one), as one loop of Cortex-M4
/// instructions: per 4 inputs, 5 loads, 10 `SXTB16` and 8 `SMLAD` for 16 multiply-
/// accumulates; the loop body is four chunks (one counter update and branch per 64
/// multiply-accumulates), the first pass entered part way when the count is not a
/// multiple of four. Rows 1 and 3
/// are read at offset `k` from rows 0 and 2. Fourteen registers: thirteen operands and r7
/// (the counter of passes), pushed and popped around the loop.
#[cfg(tinycnn_arm_dsp)]
#[inline(always)]
fn dot_4x1_asm(w: &[i8], k: usize, x: &[i8], acc: [i32; 4]) -> [i32; 4] {
    let chunks = x.len() / 4;
    assert!(chunks >= 1 && x.len() <= k && w.len() >= 4 * k);
    let [mut a0, mut a1, mut a2, mut a3] = acc;
    // One chunk: the input word and rows 0 and 1 in one run of loads, rows 2 and 3 in a
    // second run (the TRM pipelines a load after a load).
    macro_rules! chunk {
        () => {
            concat!(
                "ldr {xa}, [{px}], #4\n",
                "ldr {w1}, [{p0}, {k}]\n",
                "ldr {w0}, [{p0}], #4\n",
                "sxtb16 {xb}, {xa}, ror #8\n",
                "sxtb16 {xa}, {xa}\n",
                "sxtb16 {t}, {w0}\n",
                "smlad {a0}, {t}, {xa}, {a0}\n",
                "sxtb16 {w0}, {w0}, ror #8\n",
                "smlad {a0}, {w0}, {xb}, {a0}\n",
                "sxtb16 {t}, {w1}\n",
                "smlad {a1}, {t}, {xa}, {a1}\n",
                "sxtb16 {w1}, {w1}, ror #8\n",
                "smlad {a1}, {w1}, {xb}, {a1}\n",
                "ldr {w1}, [{p2}, {k}]\n",
                "ldr {w0}, [{p2}], #4\n",
                "sxtb16 {t}, {w0}\n",
                "smlad {a2}, {t}, {xa}, {a2}\n",
                "sxtb16 {w0}, {w0}, ror #8\n",
                "smlad {a2}, {w0}, {xb}, {a2}\n",
                "sxtb16 {t}, {w1}\n",
                "smlad {a3}, {t}, {xa}, {a3}\n",
                "sxtb16 {w1}, {w1}, ror #8\n",
                "smlad {a3}, {w1}, {xb}, {a3}\n",
            )
        };
    }
    // SAFETY: reads 4 * chunks <= k bytes of `x` and of each of the four rows (asserted):
    // ceil(chunks / 4) passes, the first one entered at chunk 4 - chunks % 4 of the body
    // when chunks % 4 != 0. r7 is pushed and popped, so sp and r7 are restored.
    unsafe {
        core::arch::asm!(
            "push {{r7}}",
            "adds r7, {w0}, #3",
            "lsrs r7, r7, #2",
            "ands {t}, {w0}, #3",
            "beq 2f",
            "cmp {t}, #2",
            "blo 5f",
            "beq 4f",
            "b 3f",
            "2:",
            chunk!(),
            "3:",
            chunk!(),
            "4:",
            chunk!(),
            "5:",
            chunk!(),
            "subs r7, r7, #1",
            "bne 2b",
            "pop {{r7}}",
            t = out(reg) _,
            k = in(reg) k,
            w0 = inout(reg) chunks => _,
            w1 = out(reg) _,
            xa = out(reg) _,
            xb = out(reg) _,
            px = inout(reg) x.as_ptr() => _,
            p0 = inout(reg) w.as_ptr() => _,
            p2 = inout(reg) w[2 * k..].as_ptr() => _,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            a3 = inout(reg) a3,
            options(readonly),
        );
    }
    [a0, a1, a2, a3]
}

/// Output rows four at a time (the last one to three in plain loops): each output `y[b][o]`
/// becomes `emit(o, bias[o] + x[b] . w[o])`, a whole group of four at once through
/// `emit4(o, accs, outs)`. Iterators over the output rows, so the loop holds little index
/// arithmetic or bounds checking of its own.
#[inline(always)]
fn linear_rows<T>(
    s: &QLinearShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    y: &mut [T],
    emit: impl Fn(usize, i32) -> T,
    emit4: impl Fn(usize, [i32; 4], &mut [T]),
) {
    let bias_of = |o: usize| bias.map_or(0, |b| b[o]);
    let (k, of) = (s.in_features, s.out_features);
    for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(of)) {
        let mut quads = yr.chunks_exact_mut(4);
        for ((q, yq), wq) in (&mut quads).enumerate().zip(w.chunks_exact(4 * k)) {
            let o = 4 * q;
            let acc = match bias {
                Some(b) => [b[o], b[o + 1], b[o + 2], b[o + 3]],
                None => [0; 4],
            };
            emit4(o, dot_4x1(wq, xr, acc), yq);
        }
        // The last one to three rows: few multiply-accumulates, plain loops.
        let first = of - of % 4;
        for ((o, v), wr) in quads
            .into_remainder()
            .iter_mut()
            .enumerate()
            .map(|(j, v)| (first + j, v))
            .zip(w[first * k..].chunks_exact(k))
        {
            let acc = xr.iter().zip(wr).fold(bias_of(o), |a, (&u, &v)| {
                a.wrapping_add(u as i32 * v as i32)
            });
            *v = emit(o, acc);
        }
    }
}

/// Four outputs of the linear layer requantized ([`requantize`]). Not inlined: a small
/// function of its own keeps its values in registers, where the caller has few left.
#[inline(never)]
fn requantize4(rq: &[Requant], acc: [i32; 4], range: ActRange, out: &mut [i8]) {
    for ((o, &r), a) in out.iter_mut().zip(rq).zip(acc) {
        *o = requantize(r, a, range);
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
    let requant = &requant[..s.out_features];
    linear_rows(
        s,
        x,
        w,
        bias,
        y,
        |o, acc| requantize(requant[o], acc, range),
        |o, acc, out| requantize4(&requant[o..o + 4], acc, range, out),
    );
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
    linear_rows(
        s,
        x,
        w,
        bias,
        y,
        |_, acc| acc,
        |_, acc, out| out.copy_from_slice(&acc),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The window path: stride-1 convolutions with 5-tap kernel rows, five output pixels of one
// channel per block, each widened input word loaded once per block and kernel row.

/// Kernel width of the window path (the asm block is unrolled for it).
const WINDOW_KW: usize = 5;
/// Output pixels per window block.
const WINDOW_PIXELS: usize = 5;

/// How the window path lays a group's input out as rows of widened pairs (see
/// [`qconv2d_window_workspace_len`]).
#[derive(Clone, Copy)]
struct WindowLayout {
    /// Words per widened row: the output row rounded up to whole blocks, plus `kw - 1`.
    wp: usize,
    /// Widened rows in the group's image.
    rows: usize,
    /// Kernel pair rows per output pixel (`kh * cin_g / 2`, or `ceil(kh / 2)` for one
    /// input channel).
    taps_rows: usize,
    /// Widened rows between an output row's first rows and the next output row's, and
    /// between two consecutive kernel pair rows.
    row_step: usize,
    pair_step: usize,
}

fn window_layout(s: &Conv2dShape) -> Option<WindowLayout> {
    let p = &s.params;
    let cin_g = p.in_per_group();
    let (kh, kw) = p.kernel;
    if p.stride != (1, 1)
        || p.dilation != (1, 1)
        || kw != WINDOW_KW
        || !(cin_g == 1 || cin_g.is_multiple_of(2))
    {
        return None;
    }
    let (oh, ow) = p.out_hw(s.in_h, s.in_w).ok()?;
    let wp = ow.div_ceil(WINDOW_PIXELS) * WINDOW_PIXELS + kw - 1;
    let padded_h = oh + kh - 1;
    let l = if cin_g == 1 {
        // Row pairs: widened row r holds padded input rows r and r + 1.
        WindowLayout {
            wp,
            rows: padded_h,
            taps_rows: kh.div_ceil(2),
            row_step: 1,
            pair_step: 2,
        }
    } else {
        // Channel pairs: widened row (y, cp) holds channels 2 cp and 2 cp + 1 of padded
        // row y, rows ordered y-major, so an output row's kh * cin_g / 2 rows follow
        // each other.
        let cp = cin_g / 2;
        WindowLayout {
            wp,
            rows: padded_h * cp,
            taps_rows: kh * cp,
            row_step: cp,
            pair_step: 1,
        }
    };
    // The native row loop keeps the row count and the stride in a halfword each.
    let stride_bytes = l.pair_step.checked_mul(l.wp)?.checked_mul(4)?;
    (l.taps_rows <= 255 && stride_bytes < 1 << 16).then_some(l)
}

impl WindowLayout {
    /// Widened rows that `band` consecutive output rows read: the first row's
    /// `(taps_rows - 1) * pair_step + 1`, then `row_step` more per further row (at most
    /// the whole image's `rows`).
    fn strip_rows(&self, band: usize) -> usize {
        let first = (self.taps_rows - 1) * self.pair_step + 1;
        (first + (band.max(1) - 1) * self.row_step).min(self.rows)
    }

    /// Words of workspace for bands of `band` output rows: the band's strip of widened
    /// rows plus one output channel's widened weights.
    fn words(&self, band: usize) -> Option<usize> {
        self.strip_rows(band)
            .checked_mul(self.wp)?
            .checked_add(self.taps_rows.checked_mul(WINDOW_KW)?)
    }

    /// The most output rows per band that `words` of workspace hold (0: not even one).
    fn band_for(&self, words: usize, oh: usize) -> usize {
        let Some(w) = words.checked_sub(self.taps_rows * WINDOW_KW) else {
            return 0;
        };
        let rows = w / self.wp;
        if rows >= self.strip_rows(oh) {
            return oh;
        }
        let first = (self.taps_rows - 1) * self.pair_step + 1;
        rows.checked_sub(first)
            .map_or(0, |more| 1 + more / self.row_step)
    }
}

/// Words of workspace with which [`qconv2d_forward`] takes its window path (the least: bands
/// of one output row), or `None` for a shape it does not take (stride and dilation other
/// than 1, kernel rows other than 5 taps, an odd number of input channels per group other
/// than 1). The path widens the zero-padded input rows that a band of output rows reads
/// into pairs of 16-bit lanes (channel pairs, or row pairs for a single input channel) and
/// one output channel's weights into matching pairs, then runs blocks of five output
/// pixels: per kernel row 9 input words and 5 weight words feed 25 `SMLAD`s (50
/// multiply-accumulates), with no im2col. With more workspace the bands are taller (fewer
/// rows and weights widened twice), up to [`qconv2d_window_workspace_len_rows`] with all
/// output rows: the whole image widened once.
pub fn qconv2d_window_workspace_len(s: &Conv2dShape) -> Option<usize> {
    qconv2d_window_workspace_len_rows(s, 1)
}

/// Words of workspace with which the window path of [`qconv2d_forward`] runs bands of
/// `band` output rows (at most the output's height: the whole image in one band), or
/// `None` for a shape it does not take (see [`qconv2d_window_workspace_len`]).
pub fn qconv2d_window_workspace_len_rows(s: &Conv2dShape, band: usize) -> Option<usize> {
    window_layout(s)?.words(band)
}

/// The workspace [`qconv2d_forward`] runs fastest with: the window path's whole image in
/// one band where the shape has one, else [`qconv2d_workspace_len`].
pub fn qconv2d_workspace_len_fast(s: &Conv2dShape) -> Result<usize> {
    let min = qconv2d_workspace_len(s)?;
    let (oh, _) = s.params.out_hw(s.in_h, s.in_w)?;
    Ok(qconv2d_window_workspace_len_rows(s, oh).map_or(min, |w| w.max(min)))
}

/// Two int8 values as the two 16-bit lanes of a word (`lo` in the low lane).
#[inline(always)]
fn pair(lo: i8, hi: i8) -> u32 {
    lo as i16 as u16 as u32 | (hi as i16 as u16 as u32) << 16
}

/// Four int8 pairs `(a[i], b[i])` (`a`, `b`: four values as words) as four words of two
/// 16-bit lanes: `SXTB16` gives lanes 0, 2 and 1, 3, the halfword packs (`PKHBT`, `PKHTB`)
/// pair them up.
#[inline(always)]
fn pair4(ua: u32, ub: u32) -> [u32; 4] {
    let (a02, b02) = (sxtb16(ua), sxtb16(ub));
    let (a13, b13) = (sxtb16_ror8(ua), sxtb16_ror8(ub));
    [
        (a02 & 0xffff) | (b02 << 16),
        (a13 & 0xffff) | (b13 << 16),
        (a02 >> 16) | (b02 & 0xffff_0000),
        (a13 >> 16) | (b13 & 0xffff_0000),
    ]
}

/// `o[i] = pair(a[i], b[i])` (`a`, `b` at least as long as `o`): four words at a time from
/// one word of each (`SXTB16` and halfword packs, [`pair4`]), the rest one by one.
#[inline(always)]
fn widen_pairs(o: &mut [u32], a: &[i8], b: &[i8]) {
    let n = o.len();
    let (a, b) = (&a[..n], &b[..n]);
    let mut os = o.chunks_exact_mut(4);
    for ((o, a), b) in (&mut os).zip(a.chunks_exact(4)).zip(b.chunks_exact(4)) {
        o.copy_from_slice(&pair4(load4(a), load4(b)));
    }
    let rest = os.into_remainder();
    let done = n - rest.len();
    for ((o, &u), &v) in rest.iter_mut().zip(&a[done..]).zip(&b[done..]) {
        *o = pair(u, v);
    }
}

/// Widens rows `first..first + rows` of group input `xg` (`cin_g` planes) in the layout
/// `l` into `img` (`rows * l.wp` words), zero padding included.
#[inline(never)]
fn window_widen(
    s: &Conv2dShape,
    l: &WindowLayout,
    xg: &[i8],
    first: usize,
    rows: usize,
    img: &mut [u32],
) {
    let p = &s.params;
    let cin_g = p.in_per_group();
    let (ph, pw) = p.padding;
    let in_plane = s.in_h * s.in_w;
    // Input row `y` (padded coordinates) of channel `c`, or `None` in the padding.
    let line = |c: usize, y: usize| -> Option<&[i8]> {
        let iy = y.checked_sub(ph).filter(|&iy| iy < s.in_h)?;
        xg.get(c * in_plane + iy * s.in_w..)?.get(..s.in_w)
    };
    let (lo, hi) = (pw.min(l.wp), (pw + s.in_w).min(l.wp));
    let zeros = |o: &mut [u32]| o.iter_mut().for_each(|v| *v = 0);
    let img = &mut img[..rows * l.wp];
    // A row's right padding and the next row's left padding are one stretch: one clear
    // per row (the first row's left padding before the loop).
    zeros(&mut img[..lo]);
    for i in 0..rows {
        let r = first + i;
        let (a, b) = if cin_g == 1 {
            (line(0, r), line(0, r + 1))
        } else {
            let (y, cp) = (r / (cin_g / 2), r % (cin_g / 2));
            (line(2 * cp, y), line(2 * cp + 1, y))
        };
        let o = &mut img[i * l.wp + lo..i * l.wp + hi];
        match (a, b) {
            (Some(a), Some(b)) => widen_pairs(o, a, b),
            (None, None) => zeros(o),
            _ => {
                // One row of the pair in the padding reads as zeros.
                let at = |v: Option<&[i8]>, i: usize| v.map_or(0, |v| v[i]);
                for (i, o) in o.iter_mut().enumerate() {
                    *o = pair(at(a, i), at(b, i));
                }
            }
        }
        let end = ((i + 1) * l.wp + lo).min(rows * l.wp);
        zeros(&mut img[i * l.wp + hi..end]);
    }
}

/// `outer` groups of `inner` rows of 5 pairs, row `(g, i)` (written at `o[5 (g inner + i)..]`)
/// `pair(a[at + kx], b[at + kx])` with `at = g outer_step + i step`: per row two word loads
/// and two byte loads, `SXTB16` and halfword packs (the same sequence as [`pair4`] and
/// [`pair`]). Checks the bounds (the panics are the caller's bugs): `a` and `b` hold
/// `(outer - 1) outer_step + (inner - 1) step + 5` bytes, `o` `5 inner outer` words.
#[inline(never)]
fn window_weight_rows(
    o: &mut [u32],
    (a, b): (&[i8], &[i8]),
    (step, inner): (usize, usize),
    (outer_step, outer): (usize, usize),
) {
    const KW: usize = WINDOW_KW;
    if inner == 0 || outer == 0 {
        return;
    }
    let need = (outer - 1) * outer_step + (inner - 1) * step + KW;
    assert!(a.len() >= need && b.len() >= need && o.len() >= KW * inner * outer);
    #[cfg(tinycnn_arm_dsp)]
    // SAFETY: row (g, i) reads a[at..][..5] and b[at..][..5] (unaligned word loads, which
    // ARMv7-M allows for LDR) and writes o[5 (g inner + i)..][..5]: in bounds by the check
    // above, inner and outer >= 1. After a group the pointers move back by `inner step`
    // and on by `outer_step` (`back`, modulo 2^32). The pointers are copies, advanced in
    // registers; the flags are clobbered (SUBS).
    unsafe {
        core::arch::asm!(
            "1:",
            "mov {n}, {inner}",
            "2:",
            "ldr {ua}, [{pa}]",
            "ldr {ub}, [{pb}]",
            "sxtb16 {t}, {ua}",
            "sxtb16 {u}, {ub}",
            "pkhbt {v}, {t}, {u}, lsl #16",
            "pkhtb {u}, {u}, {t}, asr #16",
            "str {v}, [{o}]",
            "str {u}, [{o}, #8]",
            "sxtb16 {t}, {ua}, ror #8",
            "sxtb16 {u}, {ub}, ror #8",
            "pkhbt {v}, {t}, {u}, lsl #16",
            "pkhtb {u}, {u}, {t}, asr #16",
            "str {v}, [{o}, #4]",
            "str {u}, [{o}, #12]",
            "ldrsb {t}, [{pa}, #4]",
            "ldrsb {u}, [{pb}, #4]",
            "pkhbt {v}, {t}, {u}, lsl #16",
            "str {v}, [{o}, #16]",
            "add {o}, {o}, #20",
            "add {pa}, {pa}, {step}",
            "add {pb}, {pb}, {step}",
            "subs {n}, {n}, #1",
            "bne 2b",
            "add {pa}, {pa}, {back}",
            "add {pb}, {pb}, {back}",
            "subs {outer}, {outer}, #1",
            "bne 1b",
            o = inout(reg) o.as_mut_ptr() => _,
            pa = inout(reg) a.as_ptr() => _,
            pb = inout(reg) b.as_ptr() => _,
            step = in(reg) step,
            inner = in(reg) inner,
            back = in(reg) outer_step.wrapping_sub(inner * step),
            outer = inout(reg) outer => _,
            n = out(reg) _,
            ua = out(reg) _,
            ub = out(reg) _,
            t = out(reg) _,
            u = out(reg) _,
            v = out(reg) _,
            options(nostack),
        );
    }
    #[cfg(not(tinycnn_arm_dsp))]
    for (r, o) in o.chunks_exact_mut(KW).take(inner * outer).enumerate() {
        let at = r / inner * outer_step + r % inner * step;
        let (a, b) = (&a[at..][..KW], &b[at..][..KW]);
        let [w0, w1, w2, w3] = pair4(load4(a), load4(b));
        o.copy_from_slice(&[w0, w1, w2, w3, pair(a[4], b[4])]);
    }
}

/// Output channel `o`'s weights (`wo`: `[cin_g, kh, kw]`) as pairs matching the widened
/// rows: `taps_rows` rows of `kw` words (a missing second kernel row is zero).
#[inline(never)]
fn window_weights(s: &Conv2dShape, l: &WindowLayout, wo: &[i8], out: &mut [u32]) {
    const KW: usize = WINDOW_KW;
    let p = &s.params;
    let cin_g = p.in_per_group();
    let kh = p.kernel.0;
    let plane = kh * KW;
    let (wo, out) = (&wo[..cin_g * plane], &mut out[..l.taps_rows * KW]);
    if cin_g == 1 {
        // Row t pairs kernel rows 2 t and 2 t + 1; an odd last kernel row pairs with zeros.
        let full = kh / 2;
        window_weight_rows(out, (wo, &wo[KW..]), (2 * KW, full), (0, 1));
        if kh % 2 == 1 {
            let (o, last) = (&mut out[full * KW..], &wo[(kh - 1) * KW..]);
            for (o, &v) in o.iter_mut().zip(last) {
                *o = pair(v, 0);
            }
        }
    } else {
        // Rows in (ky, channel pair) order: per ky one row per channel pair, the pairs two
        // planes apart, a pair's channels one plane apart.
        let pairs = cin_g / 2;
        window_weight_rows(out, (wo, &wo[plane..]), (2 * plane, pairs), (KW, kh));
    }
}

/// `C` output pixels of one channel from `bias`: `acc[j] = bias + sum over rows r < rows,
/// taps kx < 5 of smlad(w[5 r + kx], x[r * stride + j + kx])`. `x` holds at least
/// `(rows - 1) * stride + C + 4` words, `w` at least `5 rows`. The native row loop
/// ([`window_rows`]) runs the same `SMLAD`s (sums do not depend on their order).
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn window_accs<const C: usize>(
    x: &[u32],
    stride: usize,
    rows: usize,
    w: &[u32],
    bias: i32,
) -> [i32; C] {
    let mut acc = [bias; C];
    for r in 0..rows {
        let (xr, wr) = (&x[r * stride..], &w[r * WINDOW_KW..][..WINDOW_KW]);
        for (kx, &wv) in wr.iter().enumerate() {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = smlad(wv, xr[j + kx], *a);
            }
        }
    }
    acc
}

/// One output channel's requantization as the window path's native loop reads it.
#[derive(Clone, Copy)]
struct WindowChannel {
    bias: i32,
    rq: Requant,
    range: ActRange,
}

/// Where a call of [`window_rows`] reads and writes: `rows` output rows of `blocks` blocks
/// of 5 pixels, `row_words` widened words and `out_row` output bytes apart; per output
/// pixel `taps_rows` kernel pair rows, `pair_words` widened words apart.
#[derive(Clone, Copy)]
struct WindowRun {
    rows: usize,
    blocks: usize,
    row_words: usize,
    out_row: usize,
    taps_rows: usize,
    pair_words: usize,
}

/// What [`window_rows_asm`] reads and advances (`repr(C)`: the native loop loads the
/// fields by offset, 32-bit target).
#[cfg_attr(not(tinycnn_arm_dsp), allow(dead_code))]
#[repr(C)]
struct WindowArgs {
    /// The first block's first widened word (read once: the native loop keeps the current
    /// block's in a register, advanced by `x_back` bytes after a block's kernel rows, and
    /// by `x_skip` more after a row's last block).
    x: *const u32,
    /// The channel's widened weights, `taps_rows` rows of 5 words.
    w: *const u32,
    /// `(ceil(taps_rows / 3) - 1) << 18 | (taps_rows % 3) << 16 | (pair row stride in
    /// bytes)`: `UXTAH` steps, `SUBS` counts the loop's iterations of three pair rows,
    /// bits 16 and 17 say where the first iteration enters.
    stride_rows: u32,
    bias: i32,
    multiplier: i32,
    /// `2^(shift - 33)` (the shift is 33 to 62): the rounding term, as `SMMLA`'s high addend.
    round: i32,
    /// `shift - 32`: the one arithmetic shift after `SMMLA`.
    post: u32,
    /// The clamp's minimum and maximum, each in all four bytes (`SSUB8` + `SEL`).
    lo: u32,
    hi: u32,
    /// Where the current block's 5 outputs go (advanced by 5 per block, and by `out_skip`
    /// more after a row's last block).
    out: *mut i8,
    /// Where the current row's blocks end (`out` after the row's last block), and the
    /// bytes of a row's blocks (`5 blocks`).
    row_end: *mut i8,
    row_bytes: u32,
    /// `4 row_words - 20 blocks` and `out_row - 5 blocks`, modulo `2^32`.
    x_skip: u32,
    out_skip: u32,
    /// Output rows left (counted down).
    rows: u32,
    /// `20 - 4 taps_rows pair_words` modulo `2^32`: from where the kernel rows leave the
    /// input pointer to the next block's first word.
    x_back: u32,
}

/// `SMMLA Rd, Rn, Rm, Ra`: the high word of `a * b + 2^32 ra` (emulation).
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn smmla(a: i32, b: i32, ra: i32) -> i32 {
    ((a as i64 * b as i64).wrapping_add((ra as i64) << 32) >> 32) as i32
}

/// `SSAT Rd, #8, Rn`: `v` saturated to `[-128, 127]` (emulation).
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn ssat8(v: i32) -> i32 {
    v.clamp(-128, 127)
}

/// `SSUB8` + `SEL` with the operands the other way round from [`max8`]: the lane-wise
/// signed minimum (emulation).
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn min8(a: u32, b: u32) -> u32 {
    let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
    let m = |i: usize| (a[i] as i8).min(b[i] as i8) as u8;
    u32::from_le_bytes([m(0), m(1), m(2), m(3)])
}

/// `run.rows` output rows of `run.blocks` blocks of 5 pixels of one channel: the sums of
/// [`window_accs`] requantized, clamped and stored. The requantization is `SMMLA` with
/// `2^post` as the high word of the addend, then one arithmetic shift by `post + 1` and
/// `SSAT` to 8 bits: `floor((p + 2^(32 + post)) / 2^(33 + post))` for the product `p`,
/// which equals the `shift >= 33` form of [`requantize`],
/// `((floor(p / 2^32) >> post) + 1) >> 1` (nested floors of divisions by powers of two are
/// one floor, and `floor((n + 1) / 2)` = `floor((y + 1) / 2)` for `n = floor(y)`),
/// saturated to int8 before the clamp (the clamp's bounds are int8, so saturating first
/// changes nothing). The first four outputs of a block are packed into one word and clamped
/// lane-wise (`SSUB8` + `SEL` against the minimum, then the maximum), the fifth the same
/// way in the low byte of its word. Checks the bounds (the panics are the caller's bugs):
/// `x` holds `(rows - 1) row_words + 5 (blocks - 1) + (taps_rows - 1) pair_words + 9`
/// words, `w` `5 taps_rows`, `out` `(rows - 1) out_row + 5 blocks` bytes;
/// `1 <= taps_rows <= 255`, `rows, blocks >= 1`, the shift 33 to 62 and the pair row
/// stride below 64 KiB.
#[inline(never)]
fn window_rows(x: &[u32], w: &[u32], out: &mut [i8], run: &WindowRun, ch: &WindowChannel) {
    let r = run;
    assert!(
        r.rows >= 1
            && r.blocks >= 1
            && (1..=255).contains(&r.taps_rows)
            && 4 * r.pair_words < 1 << 16
            && (33..=62).contains(&ch.rq.shift)
            && x.len()
                >= (r.rows - 1) * r.row_words
                    + WINDOW_PIXELS * (r.blocks - 1)
                    + (r.taps_rows - 1) * r.pair_words
                    + 9
            && w.len() >= r.taps_rows * WINDOW_KW
            && out.len() >= (r.rows - 1) * r.out_row + WINDOW_PIXELS * r.blocks
    );
    let post = ch.rq.shift - 33;
    let bytes = |v: i8| v as u8 as u32 * 0x0101_0101;
    #[cfg(tinycnn_arm_dsp)]
    {
        let mut a = WindowArgs {
            x: x.as_ptr(),
            w: w.as_ptr(),
            stride_rows: ((r.taps_rows as u32).div_ceil(3) - 1) << 18
                | (r.taps_rows as u32 % 3) << 16
                | (4 * r.pair_words) as u32,
            bias: ch.bias,
            multiplier: ch.rq.multiplier,
            round: 1 << post,
            post: post + 1,
            lo: bytes(ch.range.min),
            hi: bytes(ch.range.max),
            out: out.as_mut_ptr(),
            row_end: out.as_mut_ptr().wrapping_add(WINDOW_PIXELS * r.blocks),
            row_bytes: (WINDOW_PIXELS * r.blocks) as u32,
            x_skip: (4 * r.row_words as u32).wrapping_sub(4 * (WINDOW_PIXELS * r.blocks) as u32),
            out_skip: (r.out_row as u32).wrapping_sub((WINDOW_PIXELS * r.blocks) as u32),
            rows: r.rows as u32,
            x_back: (4 * WINDOW_PIXELS as u32)
                .wrapping_sub((4 * r.taps_rows * r.pair_words) as u32),
        };
        window_rows_asm(&mut a);
    }
    #[cfg(not(tinycnn_arm_dsp))]
    {
        let (lo, hi) = (bytes(ch.range.min), bytes(ch.range.max));
        for row in 0..r.rows {
            for b in 0..r.blocks {
                let at = row * r.row_words + WINDOW_PIXELS * b;
                let acc =
                    window_accs::<WINDOW_PIXELS>(&x[at..], r.pair_words, r.taps_rows, w, ch.bias);
                let v = acc.map(|a| ssat8(smmla(a, ch.rq.multiplier, 1 << post) >> (post + 1)));
                let four = u32::from_le_bytes([v[0] as u8, v[1] as u8, v[2] as u8, v[3] as u8]);
                let four = min8(max8(four, lo), hi);
                let fifth = min8(max8(v[4] as u32, lo), hi);
                let o = &mut out[row * r.out_row + WINDOW_PIXELS * b..][..WINDOW_PIXELS];
                for (o, v) in o.iter_mut().zip(four.to_le_bytes()) {
                    *o = v as i8;
                }
                o[4] = fifth as u8 as i8;
            }
        }
    }
}

/// [`window_rows`] as Cortex-M4 instructions. Per kernel pair row of a block: 9 input and 5
/// weight loads, 25 `SMLAD`s (five accumulators, a window of five input words that rotates
/// one register per tap) and the step to the next pair row (`UXTAH` of the low halfword of
/// the step register); the loop runs three pair rows per iteration (one `SUBS`, one `BCS`),
/// its first iteration entered at the row that leaves a multiple of three.
/// Per block: 5 x (`SMMLA`, `ASR`, `SSAT`), the first four packed (`UXTB`, 3 `BFI`), two
/// lane-wise clamps of 4 instructions, one word and one byte stored; the input pointer
/// stays in `px` (plus `x_back` to the next block), the output pointer is stored back and
/// compared with the row's end, and only at a row's end are the other args updated.
/// Fourteen registers: thirteen `asm!` operands and r7 (the frame pointer, which operands
/// may not name), pushed and popped. The args pointer waits on the stack while the row
/// loop runs.
#[cfg(tinycnn_arm_dsp)]
#[inline(always)]
fn window_rows_asm(a: &mut WindowArgs) {
    // One kernel pair row of a block, then the step to the next pair row.
    macro_rules! pair_row {
        () => {
            concat!(
                "ldr {x0}, [{px}]\n",
                "ldr {x1}, [{px}, #4]\n",
                "ldr {x2}, [{px}, #8]\n",
                "ldr {x3}, [{px}, #12]\n",
                "ldr r7, [{px}, #16]\n",
                "ldr {w}, [{pw}], #4\n",
                "smlad {a0}, {w}, {x0}, {a0}\n",
                "smlad {a1}, {w}, {x1}, {a1}\n",
                "smlad {a2}, {w}, {x2}, {a2}\n",
                "smlad {a3}, {w}, {x3}, {a3}\n",
                "smlad {a4}, {w}, r7, {a4}\n",
                "ldr {x0}, [{px}, #20]\n",
                "ldr {w}, [{pw}], #4\n",
                "smlad {a0}, {w}, {x1}, {a0}\n",
                "smlad {a1}, {w}, {x2}, {a1}\n",
                "smlad {a2}, {w}, {x3}, {a2}\n",
                "smlad {a3}, {w}, r7, {a3}\n",
                "smlad {a4}, {w}, {x0}, {a4}\n",
                "ldr {x1}, [{px}, #24]\n",
                "ldr {w}, [{pw}], #4\n",
                "smlad {a0}, {w}, {x2}, {a0}\n",
                "smlad {a1}, {w}, {x3}, {a1}\n",
                "smlad {a2}, {w}, r7, {a2}\n",
                "smlad {a3}, {w}, {x0}, {a3}\n",
                "smlad {a4}, {w}, {x1}, {a4}\n",
                "ldr {x2}, [{px}, #28]\n",
                "ldr {w}, [{pw}], #4\n",
                "smlad {a0}, {w}, {x3}, {a0}\n",
                "smlad {a1}, {w}, r7, {a1}\n",
                "smlad {a2}, {w}, {x0}, {a2}\n",
                "smlad {a3}, {w}, {x1}, {a3}\n",
                "smlad {a4}, {w}, {x2}, {a4}\n",
                "ldr {x3}, [{px}, #32]\n",
                "ldr {w}, [{pw}], #4\n",
                "smlad {a0}, {w}, r7, {a0}\n",
                "smlad {a1}, {w}, {x0}, {a1}\n",
                "smlad {a2}, {w}, {x1}, {a2}\n",
                "smlad {a3}, {w}, {x2}, {a3}\n",
                "smlad {a4}, {w}, {x3}, {a4}\n",
                "uxtah {px}, {px}, {st}\n",
            )
        };
    }
    macro_rules! requant {
        ($a:literal) => {
            concat!(
                "smmla ",
                $a,
                ", ",
                $a,
                ", {x0}, {x1}\n",
                "asr ",
                $a,
                ", ",
                $a,
                ", {x2}\n",
                "ssat ",
                $a,
                ", #8, ",
                $a,
                "\n",
            )
        };
    }
    // SAFETY: `window_rows` checked the bounds: row i, block b, kernel row r reads words
    // x[i row_words + 5 b + r pair_words ..][..9] and w[5 r ..][..5], and writes
    // out[i out_row + 5 b ..][..5]. r7 is pushed first and popped last, the args pointer
    // pushed and popped in between: sp and r7 are restored. SSUB8 sets the GE flags and
    // SMLAD the Q flag: the flags are not declared preserved.
    unsafe {
        core::arch::asm!(
            "push {{r7}}",
            "push {{{px}}}",
            "mov {st}, {px}",
            "ldr {px}, [{st}, #0]",
            "b 3f",
            // Three pair rows per iteration, entered at the first, second or third row
            // (bits 17, 16 of the step register: `taps_rows % 3` is 2, 1) so that the
            // first iteration runs the rows left over; the iterations left in the bits
            // from 18, which borrow (carry clear) after the last. Out of the block's way:
            // the usual shapes (`taps_rows % 3 == 0`) take one `TST` and a branch not
            // taken.
            "7:",
            "lsls {w}, {st}, #15",
            "bmi 5f",
            "b 6f",
            // A block: `px` the block's first widened word, `st` the args.
            "3:",
            "ldr {pw}, [{st}, #4]",
            "ldr {a0}, [{st}, #12]",
            "ldr {st}, [{st}, #8]",
            "mov {a1}, {a0}",
            "mov {a2}, {a0}",
            "mov {a3}, {a0}",
            "mov {a4}, {a0}",
            "tst {st}, #0x30000",
            "bne 7b",
            "2:",
            pair_row!(),
            "6:",
            pair_row!(),
            "5:",
            pair_row!(),
            "subs {st}, {st}, #0x40000",
            "bcs 2b",
            "ldr {st}, [sp]",
            "ldr {x0}, [{st}, #16]",
            "ldr {x1}, [{st}, #20]",
            "ldr {x2}, [{st}, #24]",
            requant!("{a0}"),
            requant!("{a1}"),
            requant!("{a2}"),
            requant!("{a3}"),
            requant!("{a4}"),
            "ldr {x0}, [{st}, #28]",
            "ldr {x1}, [{st}, #32]",
            "uxtb {a0}, {a0}",
            "bfi {a0}, {a1}, #8, #8",
            "bfi {a0}, {a2}, #16, #8",
            "bfi {a0}, {a3}, #24, #8",
            "ssub8 {w}, {a0}, {x0}",
            "sel {a0}, {a0}, {x0}",
            "ssub8 {w}, {x1}, {a0}",
            "sel {a0}, {a0}, {x1}",
            "ssub8 {w}, {a4}, {x0}",
            "sel {a4}, {a4}, {x0}",
            "ssub8 {w}, {x1}, {a4}",
            "sel {a4}, {a4}, {x1}",
            "ldr {w}, [{st}, #36]",
            "ldr {x3}, [{st}, #60]",
            "ldr {x2}, [{st}, #40]",
            "str {a0}, [{w}]",
            "strb {a4}, [{w}, #4]",
            "add {w}, {w}, #5",
            "add {px}, {px}, {x3}",
            "cmp {w}, {x2}",
            "bne 4f",
            // The row's last block: the next row's first block, or the end.
            "ldr {a1}, [{st}, #48]",
            "ldr {a2}, [{st}, #52]",
            "ldr {x2}, [{st}, #44]",
            "ldr {a3}, [{st}, #56]",
            "add {px}, {px}, {a1}",
            "add {w}, {w}, {a2}",
            "add {x2}, {x2}, {w}",
            "str {x2}, [{st}, #40]",
            "subs {a3}, {a3}, #1",
            "str {a3}, [{st}, #56]",
            // Z: the row has ended and no rows are left.
            "4:",
            "str {w}, [{st}, #36]",
            "bne 3b",
            "pop {{{px}}}",
            "pop {{r7}}",
            px = inout(reg) a as *mut WindowArgs => _,
            pw = out(reg) _,
            st = out(reg) _,
            w = out(reg) _,
            x0 = out(reg) _,
            x1 = out(reg) _,
            x2 = out(reg) _,
            x3 = out(reg) _,
            a0 = out(reg) _,
            a1 = out(reg) _,
            a2 = out(reg) _,
            a3 = out(reg) _,
            a4 = out(reg) _,
        );
    }
}

/// The window path of [`qconv2d_forward`] (shape checked by the caller, `workspace` at
/// least [`qconv2d_window_workspace_len`]): bands of as many output rows as the workspace
/// holds; per band the input rows it reads are widened once, then each output channel's
/// weights, then the band's rows of that channel in one call of [`window_rows`].
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn qconv2d_window(
    s: &Conv2dShape,
    l: &WindowLayout,
    out: (usize, usize),
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    requant: &[Requant],
    range: ActRange,
    y: &mut [i8],
    workspace: &mut [u32],
) {
    let p = &s.params;
    let (cin_g, cout_g) = (p.in_per_group(), p.out_per_group());
    let (kh, kw) = p.kernel;
    let k = cin_g * kh * kw;
    let (oh, ow) = out;
    let in_plane = s.in_h * s.in_w;
    let pixels = oh * ow;
    let band = l.band_for(workspace.len(), oh).max(1);
    let (img, wr) = workspace.split_at_mut(l.strip_rows(band) * l.wp);
    let wr = &mut wr[..l.taps_rows * kw];
    let row_words = l.row_step * l.wp;
    // Whole blocks of an output row, and the pixels of a last partial one.
    let (whole, part) = (ow / WINDOW_PIXELS, ow % WINDOW_PIXELS);
    let run = |rows: usize, blocks: usize| WindowRun {
        rows,
        blocks,
        row_words,
        out_row: ow,
        taps_rows: l.taps_rows,
        pair_words: l.pair_step * l.wp,
    };
    for n in 0..s.batch {
        for g in 0..p.groups {
            let xg = &x[(n * p.in_channels + g * cin_g) * in_plane..][..cin_g * in_plane];
            for oy0 in (0..oh).step_by(band) {
                let rows_here = band.min(oh - oy0);
                let strip = l.strip_rows(rows_here);
                window_widen(s, l, xg, oy0 * l.row_step, strip, img);
                let img = &img[..strip * l.wp];
                for o in g * cout_g..(g + 1) * cout_g {
                    window_weights(s, l, &w[o * k..][..k], wr);
                    let ch = WindowChannel {
                        bias: bias.map_or(0, |b| b[o]),
                        rq: requant[o],
                        range,
                    };
                    let at = (n * p.out_channels + o) * pixels + oy0 * ow;
                    // A row's last partial block writes past the row into outputs computed
                    // later: the channel's next row (this band's or a later band's), or
                    // from the plane's last row with one band the next channel's or
                    // example's first row. With several bands, a spill past the plane
                    // would reach a next channel's first band, already computed, and at
                    // the very end of `y` there is nothing: the rows whose spill would
                    // reach past `limit` (the band's last rows) take their partial block
                    // through a scratch block.
                    let limit = match band >= oh {
                        true => y.len(),
                        false => y.len().min((n * p.out_channels + o + 1) * pixels),
                    };
                    let reach = (whole + 1) * WINDOW_PIXELS;
                    let (full, blocks) = match part {
                        0 => (rows_here, whole),
                        _ => match (limit - at).checked_sub(reach) {
                            Some(room) => (rows_here.min(room / ow + 1), whole + 1),
                            None => (0, whole + 1),
                        },
                    };
                    if full > 0 {
                        let len = (full - 1) * ow + blocks * WINDOW_PIXELS;
                        window_rows(img, wr, &mut y[at..at + len], &run(full, blocks), &ch);
                    }
                    for r in full..rows_here {
                        let (xr, at) = (&img[r * row_words..], at + r * ow);
                        if whole > 0 {
                            let len = whole * WINDOW_PIXELS;
                            window_rows(xr, wr, &mut y[at..at + len], &run(1, whole), &ch);
                        }
                        let mut tmp = [0i8; WINDOW_PIXELS];
                        let xb = &xr[whole * WINDOW_PIXELS..];
                        window_rows(xb, wr, &mut tmp, &run(1, 1), &ch);
                        y[at + whole * WINDOW_PIXELS..at + ow].copy_from_slice(&tmp[..part]);
                    }
                }
            }
        }
    }
}

/// Lane-wise signed maximum of two words of four int8 values (`SSUB8` sets a GE flag per
/// lane where `a >= b`, `SEL` picks by them).
///
/// ```
/// use tinycnn_kernels::int8::dsp::max8;
/// // lanes (little-endian bytes): [-128, 5, 127, -1] and [-127, 5, -128, -2]
/// assert_eq!(max8(0xff7f_0580, 0xfe80_0581), 0xff7f_0581);
/// ```
#[inline(always)]
pub fn max8(a: u32, b: u32) -> u32 {
    #[cfg(tinycnn_arm_dsp)]
    {
        let r: u32;
        // SAFETY: register-only instructions of ARMv7E-M; they set and read the APSR GE
        // flags, so the flags are not declared preserved.
        unsafe {
            core::arch::asm!("ssub8 {t}, {a}, {b}", "sel {r}, {a}, {b}", t = out(reg) _,
                r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
                options(pure, nomem, nostack));
        }
        r
    }
    #[cfg(not(tinycnn_arm_dsp))]
    {
        let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
        let m = |i: usize| (a[i] as i8).max(b[i] as i8) as u8;
        u32::from_le_bytes([m(0), m(1), m(2), m(3)])
    }
}

/// `SXTAB16 Rd, Rn, Rm`: `acc` plus bytes 0 and 2 of `x` sign-extended, lane by lane
/// (16-bit lanes, wrapping).
///
/// ```
/// use tinycnn_kernels::int8::dsp::sxtab16;
/// assert_eq!(sxtab16(0x0005_0001, 0x00fe_00ff), 0x0003_0000); // (1 - 1, 5 - 2)
/// ```
#[inline(always)]
pub fn sxtab16(acc: u32, x: u32) -> u32 {
    #[cfg(tinycnn_arm_dsp)]
    {
        let r: u32;
        // SAFETY: a register-only instruction of ARMv7E-M, which this target implements.
        unsafe {
            core::arch::asm!("sxtab16 {r}, {a}, {x}", r = lateout(reg) r, a = in(reg) acc,
                x = in(reg) x, options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(tinycnn_arm_dsp))]
    {
        add16(acc, sxtb16(x))
    }
}

/// `SXTAB16 Rd, Rn, Rm, ROR #8`: `acc` plus bytes 1 and 3 of `x` sign-extended, lane by
/// lane.
///
/// ```
/// use tinycnn_kernels::int8::dsp::sxtab16_ror8;
/// assert_eq!(sxtab16_ror8(0x0005_0001, 0x8000_7f00), 0xff85_0080); // (1 + 127, 5 - 128)
/// ```
#[inline(always)]
pub fn sxtab16_ror8(acc: u32, x: u32) -> u32 {
    #[cfg(tinycnn_arm_dsp)]
    {
        let r: u32;
        // SAFETY: a register-only instruction of ARMv7E-M, which this target implements.
        unsafe {
            core::arch::asm!("sxtab16 {r}, {a}, {x}, ror #8", r = lateout(reg) r, a = in(reg) acc,
                x = in(reg) x, options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(tinycnn_arm_dsp))]
    {
        add16(acc, sxtb16_ror8(x))
    }
}

/// Two 16-bit lanes added lane by lane, wrapping (`SADD16`'s sums, without its flags).
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn add16(a: u32, b: u32) -> u32 {
    let lo = (a as u16).wrapping_add(b as u16) as u32;
    let hi = ((a >> 16) as u16).wrapping_add((b >> 16) as u16) as u32;
    lo | hi << 16
}

/// Two signed 16-bit window sums `s` (lanes) prepared for rounding a quarter half away from
/// zero: each lane becomes `s + 2` where `s >= 1`, `s + 1` where `s <= 0`, so that
/// `lane >> 2` (an arithmetic shift) is `s / 4` rounded half away from zero (`SSUB16` of
/// the lanes `(1, 1)` sets a GE flag per lane where `s - 1 >= 0`, `SEL` picks 2 or 1 by
/// them, `SADD16` adds; a zero sum gets 1, whose quarter rounds to 0 as with 2).
///
/// ```
/// use tinycnn_kernels::int8::dsp::quarter_bias;
/// // lanes (6, -6): 6 + 2 = 8 (8 >> 2 = 2 = round(1.5)), -6 + 1 = -5 (-5 >> 2 = -2)
/// assert_eq!(quarter_bias(0xfffa_0006), 0xfffb_0008);
/// ```
#[inline(always)]
pub fn quarter_bias(s: u32) -> u32 {
    #[cfg(tinycnn_arm_dsp)]
    {
        let r: u32;
        // SAFETY: register-only instructions of ARMv7E-M; they set and read the APSR GE
        // flags (and SADD16 sets them again), so the flags are not declared preserved.
        unsafe {
            core::arch::asm!("ssub16 {r}, {s}, {one}", "sel {r}, {two}, {one}",
                "sadd16 {r}, {s}, {r}", r = out(reg) r, s = in(reg) s,
                two = in(reg) 0x0002_0002u32, one = in(reg) 0x0001_0001u32,
                options(pure, nomem, nostack));
        }
        r
    }
    #[cfg(not(tinycnn_arm_dsp))]
    {
        let lane = |v: u32| {
            let v = v as u16 as i16;
            v.wrapping_add(if v >= 1 { 2 } else { 1 }) as u16 as u32
        };
        lane(s) | lane(s >> 16) << 16
    }
}

/// Four int8 values as a little-endian word.
#[inline(always)]
fn load4(c: &[i8]) -> u32 {
    u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8])
}

/// Four table lookups as the native loop of [`qlut_forward`] does them: each value `v`
/// (sign-extended, as `LDRSB` reads it) indexes the table's middle, `table[128 + v]`, and
/// the four results make one little-endian word.
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn lut4(table: &[i8; 256], c: &[i8]) -> u32 {
    let look = |v: i8| table[(128 + v as i32) as usize] as u8 as u32;
    look(c[0]) | look(c[1]) << 8 | look(c[2]) << 16 | look(c[3]) << 24
}

/// The table op, the same function as [`super::qlut_forward`] (bit for bit): on the
/// Cortex-M4 one loop of eight values per pass, each value read sign-extended (`LDRSB`)
/// and used as a signed offset from the table's middle (no `+ 128`), all sixteen loads of
/// a pass in one pipelined run (1 cycle each after the first), four results per word
/// store (`STR`: `y` need not be aligned); the last 1 to 7 values in Rust.
pub fn qlut_forward(table: &[i8; 256], x: &[i8], y: &mut [i8]) -> Result<()> {
    check_len("output", y.len(), x.len())?;
    let passes = x.len() / 8;
    let done = 8 * passes;
    if passes > 0 {
        #[cfg(tinycnn_arm_dsp)]
        // SAFETY: reads 8 * passes <= x.len() bytes of `x` and writes as many of `y` (same
        // length, checked); every table read is at 128 + v for an int8 v, inside the table.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldrsb {v0}, [{px}], #8",
                "ldrsb {v1}, [{px}, #-7]",
                "ldrsb {v2}, [{px}, #-6]",
                "ldrsb {v3}, [{px}, #-5]",
                "ldrb {v0}, [{mid}, {v0}]",
                "ldrb {v1}, [{mid}, {v1}]",
                "ldrb {v2}, [{mid}, {v2}]",
                "ldrb {v3}, [{mid}, {v3}]",
                "ldrsb {v4}, [{px}, #-4]",
                "ldrsb {v5}, [{px}, #-3]",
                "ldrsb {v6}, [{px}, #-2]",
                "ldrsb {v7}, [{px}, #-1]",
                "ldrb {v4}, [{mid}, {v4}]",
                "ldrb {v5}, [{mid}, {v5}]",
                "ldrb {v6}, [{mid}, {v6}]",
                "ldrb {v7}, [{mid}, {v7}]",
                "orr {v0}, {v0}, {v1}, lsl #8",
                "orr {v0}, {v0}, {v2}, lsl #16",
                "orr {v0}, {v0}, {v3}, lsl #24",
                "orr {v4}, {v4}, {v5}, lsl #8",
                "orr {v4}, {v4}, {v6}, lsl #16",
                "orr {v4}, {v4}, {v7}, lsl #24",
                "str {v0}, [{py}], #8",
                "str {v4}, [{py}, #-4]",
                "subs {n}, {n}, #1",
                "bne 2b",
                px = inout(reg) x.as_ptr() => _,
                py = inout(reg) y.as_mut_ptr() => _,
                mid = in(reg) table.as_ptr().add(128),
                n = inout(reg) passes => _,
                v0 = out(reg) _,
                v1 = out(reg) _,
                v2 = out(reg) _,
                v3 = out(reg) _,
                v4 = out(reg) _,
                v5 = out(reg) _,
                v6 = out(reg) _,
                v7 = out(reg) _,
                options(nostack),
            );
        }
        #[cfg(not(tinycnn_arm_dsp))]
        for (o, c) in y[..done].chunks_exact_mut(4).zip(x.chunks_exact(4)) {
            o.copy_from_slice(&lut4(table, c).to_le_bytes().map(|b| b as i8));
        }
    }
    for (o, &v) in y[done..].iter_mut().zip(&x[done..]) {
        *o = table[(128 + v as i32) as usize];
    }
    Ok(())
}

/// The last window of an odd-width output row, average pooling: the sum of `a`, `b` (top
/// row) and `c`, `d` rounded a quarter half away from zero.
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn avg_one(a: i8, b: i8, c: i8, d: i8) -> i8 {
    let sum = a as i32 + b as i32 + c as i32 + d as i32;
    ((sum + 2 + (sum >> 31)) >> 2) as i8
}

/// Two outputs of [`qavg_pool2d_forward`] from a word of each input row (four columns):
/// the two window sums as 16-bit lanes (four [`sxtab16`]s), both rounded at once
/// ([`quarter_bias`], then each lane's bits 2 to 9 are its output). The native loop runs
/// this sequence.
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn avg_pair(a: u32, b: u32) -> [i8; 2] {
    let sums = sxtab16_ror8(sxtab16(sxtab16_ror8(sxtb16(a), a), b), b);
    // A sum lies in [-512, 508]: its quarter, rounded, fits the lane's bits 2 to 9.
    let v = quarter_bias(sums);
    [(v >> 2) as u8 as i8, (v >> 18) as u8 as i8]
}

/// Two outputs of [`qmax_pool2d_forward`] from a word of each input row: two [`max8`]s, the
/// second against the first shifted by a lane, leave the windows' maxima in lanes 0 and 2.
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn max_pair(a: u32, b: u32) -> [i8; 2] {
    let m = max8(a, b);
    let m = max8(m, m >> 8);
    [m as u8 as i8, (m >> 16) as u8 as i8]
}

/// One plane of LeNet's pooling (2x2 windows, stride 2, no padding) in the order of the
/// native loops: per output row, two outputs per step from a word of each of the two input
/// rows (`pair`), then an odd width's last window (`one`).
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn pool_plane(
    xp: &[i8],
    yp: &mut [i8],
    w: usize,
    ow: usize,
    pair: impl Fn(u32, u32) -> [i8; 2],
    one: impl Fn(i8, i8, i8, i8) -> i8,
) {
    for (rows, yr) in xp.chunks_exact(2 * w).zip(yp.chunks_exact_mut(ow)) {
        let (r0, r1) = (&rows[..2 * ow], &rows[w..w + 2 * ow]);
        let mut outs = yr.chunks_exact_mut(2);
        for ((o, a), b) in (&mut outs).zip(r0.chunks_exact(4)).zip(r1.chunks_exact(4)) {
            o.copy_from_slice(&pair(load4(a), load4(b)));
        }
        if let [o] = outs.into_remainder() {
            *o = one(
                r0[2 * ow - 2],
                r0[2 * ow - 1],
                r1[2 * ow - 2],
                r1[2 * ow - 1],
            );
        }
    }
}

/// The geometry of one plane for the native pooling loops, checked: `(rows, pairs, odd,
/// skip)`, where `skip` moves the input pointer from after a row's pairs to the next
/// output row's top input row. The loops read `2 * rows` input rows of `w` values (the
/// first `2 * ow` of each) and write `rows * ow` outputs.
#[cfg(tinycnn_arm_dsp)]
#[inline(always)]
fn plane_geometry(
    xp: &[i8],
    yp: &[i8],
    w: usize,
    oh: usize,
    ow: usize,
) -> (usize, usize, usize, usize) {
    assert!(2 * ow <= w && xp.len() >= 2 * oh * w && yp.len() >= oh * ow);
    (oh, ow / 2, ow % 2, 2 * w - 4 * (ow / 2))
}

/// Average pooling on int8, the same function as [`super::qavg_pool2d_forward`] (bit for
/// bit): LeNet's 2x2 windows with stride 2 and no padding one plane per asm block on the
/// Cortex-M4, two outputs per step (the two window sums as 16-bit lanes from a word of each
/// input row by four `SXTAB16`s, both rounded at once: `SSUB16`, `SEL`, `SADD16`, then each
/// lane's bits 2 to 9 are its output; 18 cycles per two outputs in the TRM model), an odd
/// width's last window with byte loads; other shapes as the plain kernel computes them.
pub fn qavg_pool2d_forward(s: &Pool2dShape, x: &[i8], y: &mut [i8]) -> Result<()> {
    super::qavg_pool2d_with(s, x, y, |s, oh, ow, x, y| {
        let w = s.in_w;
        for (xp, yp) in x.chunks_exact(s.in_h * w).zip(y.chunks_exact_mut(oh * ow)) {
            #[cfg(not(tinycnn_arm_dsp))]
            pool_plane(xp, yp, w, ow, avg_pair, avg_one);
            #[cfg(tinycnn_arm_dsp)]
            {
                let (rows, pairs, odd, skip) = plane_geometry(xp, yp, w, oh, ow);
                if rows == 0 {
                    continue;
                }
                // SAFETY: per output row, reads 4 * pairs + 2 * odd <= 2 * ow <= w bytes
                // of two input rows inside the plane and writes ow bytes of `yp`
                // (plane_geometry asserts the sizes). Sets and reads the GE flags.
                unsafe {
                    core::arch::asm!(
                        "1:",
                        "movs {n}, {pairs}",
                        "beq 3f",
                        "2:",
                        "ldr {b}, [{p0}, {w}]",
                        "ldr {a}, [{p0}], #4",
                        "sxtb16 {t}, {a}",
                        "sxtab16 {t}, {t}, {a}, ror #8",
                        "sxtab16 {t}, {t}, {b}",
                        "sxtab16 {t}, {t}, {b}, ror #8",
                        "ssub16 {a}, {t}, {one}",
                        "sel {a}, {two}, {one}",
                        "sadd16 {t}, {t}, {a}",
                        "lsrs {a}, {t}, #2",
                        "strb {a}, [{py}], #2",
                        "lsrs {t}, {t}, #18",
                        "strb {t}, [{py}, #-1]",
                        "subs {n}, {n}, #1",
                        "bne 2b",
                        "3:",
                        "cmp {odd}, #0",
                        "beq 4f",
                        "ldrsb {a}, [{p0}]",
                        "ldrsb {b}, [{p0}, #1]",
                        "add {a}, {a}, {b}",
                        "add {t}, {p0}, {w}",
                        "ldrsb {b}, [{t}]",
                        "add {a}, {a}, {b}",
                        "ldrsb {b}, [{t}, #1]",
                        "add {a}, {a}, {b}",
                        "add {a}, {a}, {a}, asr #31",
                        "adds {a}, {a}, #2",
                        "asrs {a}, {a}, #2",
                        "strb {a}, [{py}], #1",
                        "4:",
                        "add {p0}, {p0}, {skip}",
                        "subs {rows}, {rows}, #1",
                        "bne 1b",
                        p0 = inout(reg) xp.as_ptr() => _,
                        py = inout(reg) yp.as_mut_ptr() => _,
                        rows = inout(reg) rows => _,
                        n = out(reg) _,
                        a = out(reg) _,
                        b = out(reg) _,
                        t = out(reg) _,
                        w = in(reg) w,
                        pairs = in(reg) pairs,
                        odd = in(reg) odd,
                        skip = in(reg) skip,
                        one = in(reg) 0x0001_0001u32,
                        two = in(reg) 0x0002_0002u32,
                        options(nostack),
                    );
                }
            }
        }
    })
}

/// Max pooling on int8, the same function as [`super::qmax_pool2d_forward`] (bit for bit):
/// LeNet's 2x2 windows with stride 2 and no padding one plane per asm block on the
/// Cortex-M4, two outputs per step (a word of each input row, two [`max8`]s: `SSUB8` +
/// `SEL`), an odd width's last window with byte loads and compares; other shapes through
/// the plain kernel.
pub fn qmax_pool2d_forward(s: &Pool2dShape, x: &[i8], y: &mut [i8]) -> Result<()> {
    if !super::is_2x2_stride_2(s) {
        return super::qmax_pool2d_forward(s, x, y);
    }
    let (oh, ow) = check_pool2d(s, x.len(), y.len())?;
    let w = s.in_w;
    for (xp, yp) in x.chunks_exact(s.in_h * w).zip(y.chunks_exact_mut(oh * ow)) {
        #[cfg(not(tinycnn_arm_dsp))]
        pool_plane(xp, yp, w, ow, max_pair, |a, b, c, d| a.max(b).max(c.max(d)));
        #[cfg(tinycnn_arm_dsp)]
        {
            let (rows, pairs, odd, skip) = plane_geometry(xp, yp, w, oh, ow);
            if rows == 0 {
                continue;
            }
            // SAFETY: as in qavg_pool2d_forward: inside the plane and `yp` (asserted). Sets
            // and reads the GE and condition flags.
            unsafe {
                core::arch::asm!(
                    "1:",
                    "movs {n}, {pairs}",
                    "beq 3f",
                    "2:",
                    "ldr {b}, [{p0}, {w}]",
                    "ldr {a}, [{p0}], #4",
                    "ssub8 {t}, {a}, {b}",
                    "sel {a}, {a}, {b}",
                    "lsrs {b}, {a}, #8",
                    "ssub8 {t}, {a}, {b}",
                    "sel {a}, {a}, {b}",
                    "strb {a}, [{py}], #2",
                    "lsrs {a}, {a}, #16",
                    "strb {a}, [{py}, #-1]",
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    "3:",
                    "cmp {odd}, #0",
                    "beq 4f",
                    "ldrsb {a}, [{p0}]",
                    "ldrsb {b}, [{p0}, #1]",
                    "cmp {a}, {b}",
                    "it lt",
                    "movlt {a}, {b}",
                    "add {t}, {p0}, {w}",
                    "ldrsb {b}, [{t}]",
                    "cmp {a}, {b}",
                    "it lt",
                    "movlt {a}, {b}",
                    "ldrsb {b}, [{t}, #1]",
                    "cmp {a}, {b}",
                    "it lt",
                    "movlt {a}, {b}",
                    "strb {a}, [{py}], #1",
                    "4:",
                    "add {p0}, {p0}, {skip}",
                    "subs {rows}, {rows}, #1",
                    "bne 1b",
                    p0 = inout(reg) xp.as_ptr() => _,
                    py = inout(reg) yp.as_mut_ptr() => _,
                    rows = inout(reg) rows => _,
                    n = out(reg) _,
                    a = out(reg) _,
                    b = out(reg) _,
                    t = out(reg) _,
                    w = in(reg) w,
                    pairs = in(reg) pairs,
                    odd = in(reg) odd,
                    skip = in(reg) skip,
                    options(nostack),
                );
            }
        }
    }
    Ok(())
}
