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
//!   8 `SMLAD` for 16 multiply-accumulates, four such chunks per loop pass, all groups of
//!   a layer and their requantization in one asm block; the last one to three rows as one
//!   more group of repeated rows.
//! * [`qmax_pool2d_forward`] / [`qavg_pool2d_forward`]: 2x2 windows with stride 2, one
//!   plane per asm block, two outputs per step from a word of each input row: [`max8`]
//!   (`SSUB8` + `SEL`), or the window sums as 16-bit lanes ([`sxtab16`]) rounded both at
//!   once ([`quarter_bias`]); [`qlut_avg_pool2d_forward`], a table op and the average
//!   pooling after it in one pass (each value and its table entry read with `LDRSB`).
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

mod depthwise;
mod general;
mod im2col;
mod linear;
mod lut;
mod pointwise;
mod pool;
mod window;
mod window_rows;

pub use depthwise::qconv2d_depthwise_workspace_len;
pub use im2col::qconv2d_workspace_len;
pub use linear::{qlinear_forward, qlinear_forward_i32};
pub use lut::{qlut_forward, qlut_in_place};
pub use pointwise::{qconv2d_pointwise_workspace_len, qconv2d_pointwise_workspace_len_fast};
pub use pool::{qavg_pool2d_forward, qlut_avg_pool2d_forward, qmax_pool2d_forward};
pub use window::{
    qconv2d_window_workspace_len, qconv2d_window_workspace_len_rows, qconv2d_workspace_len_fast,
};

use super::{check_bias_requant, ActRange, Requant};
use crate::conv::check_conv2d;
use crate::error::{KernelError, Result};
use crate::shape::Conv2dShape;
use depthwise::{depthwise_layout, qconv2d_depthwise};
use general::qconv2d_general;
use pointwise::qconv2d_pointwise;
use window::{qconv2d_window, window_layout};

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

/// `SMMLA Rd, Rn, Rm, Ra`: the high word of `a * b + 2^32 ra`.
#[inline(always)]
fn smmla(a: i32, b: i32, ra: i32) -> i32 {
    #[cfg(tinycnn_arm_dsp)]
    {
        let r: i32;
        // SAFETY: a register-only instruction of ARMv7E-M, which this target implements.
        unsafe {
            core::arch::asm!("smmla {r}, {a}, {b}, {ra}", r = lateout(reg) r, a = in(reg) a,
                b = in(reg) b, ra = in(reg) ra, options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(tinycnn_arm_dsp))]
    {
        ((a as i64 * b as i64).wrapping_add((ra as i64) << 32) >> 32) as i32
    }
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

/// Two int8 values as the two 16-bit lanes of a word (`lo` in the low lane).
#[inline(always)]
fn pair(lo: i8, hi: i8) -> u32 {
    lo as i16 as u16 as u32 | (hi as i16 as u16 as u32) << 16
}

/// Four int8 values as a little-endian word.
#[inline(always)]
fn load4(c: &[i8]) -> u32 {
    u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8])
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
        depthwise: true,
        pointwise: true,
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
    /// The depthwise path (shapes and workspaces of [`qconv2d_takes_depthwise`]).
    pub depthwise: bool,
    /// The pointwise path (shapes and workspaces of [`qconv2d_takes_pointwise`]).
    pub pointwise: bool,
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

/// Whether [`qconv2d_forward`] takes its depthwise path for shape `s` with
/// `workspace_words` of workspace: a 3x3 depthwise shape with at least
/// [`qconv2d_depthwise_workspace_len`] words.
pub fn qconv2d_takes_depthwise(s: &Conv2dShape, workspace_words: usize) -> bool {
    qconv2d_depthwise_workspace_len(s).is_some_and(|need| workspace_words >= need)
}

/// Whether [`qconv2d_forward`] takes its pointwise path for shape `s` with
/// `workspace_words` of workspace: a 1x1 shape with stride 1, no padding and one group,
/// with at least [`qconv2d_pointwise_workspace_len`] words.
pub fn qconv2d_takes_pointwise(s: &Conv2dShape, workspace_words: usize) -> bool {
    qconv2d_pointwise_workspace_len(s).is_some_and(|need| workspace_words >= need)
}

/// The path [`qconv2d_forward`] runs a convolution on (the window, depthwise and pointwise
/// shapes do not overlap; any other shape, or one with too little workspace, takes the
/// general path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvPath {
    Window,
    Depthwise,
    Pointwise,
    General,
}

/// The path [`qconv2d_forward`] takes for shape `s` with `requant` and `workspace_words` of
/// workspace: what a firmware's build script links. [`qconv2d_forward_paths`] asks the
/// same questions in the same order one by one, each behind its path's flag, so that a
/// firmware's constant flags drop the other paths' code (dispatching on this function's
/// result measured 1.6 % slower on the DS-CNN firmware).
pub fn qconv2d_path(s: &Conv2dShape, requant: &[Requant], workspace_words: usize) -> ConvPath {
    if qconv2d_takes_window(s, requant, workspace_words) {
        ConvPath::Window
    } else if qconv2d_takes_depthwise(s, workspace_words) {
        ConvPath::Depthwise
    } else if qconv2d_takes_pointwise(s, workspace_words) {
        ConvPath::Pointwise
    } else {
        ConvPath::General
    }
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
    if paths.depthwise && qconv2d_takes_depthwise(s, workspace.len()) {
        if let Some(l) = depthwise_layout(s) {
            qconv2d_depthwise(s, &l, (oh, ow), x, w, bias, requant, range, y, workspace);
            return Ok(());
        }
    }
    if paths.pointwise && qconv2d_takes_pointwise(s, workspace.len()) {
        return qconv2d_pointwise(s, x, w, bias, requant, range, y, workspace);
    }
    if !paths.general {
        return Err(KernelError::InvalidArgument {
            what: "convolution: its path (the general one) is not linked in",
        });
    }
    qconv2d_general(s, (oh, ow), x, w, bias, requant, range, y, workspace)
}
