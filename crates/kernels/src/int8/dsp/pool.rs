//! 2x2, stride-2 max and average pooling of int8 planes (average pooling also of a table
//! op's output, fused), two outputs per step.

#[cfg(not(tinycnn_arm_dsp))]
use super::{load4, max8, quarter_bias, sxtab16, sxtab16_ror8, sxtb16};
use crate::error::Result;
use crate::pool::check_pool2d;
use crate::shape::Pool2dShape;

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

/// Average pooling on int8, the same function as [`crate::int8::qavg_pool2d_forward`] (bit for
/// bit): LeNet's 2x2 windows with stride 2 and no padding one plane per asm block on the
/// Cortex-M4, two outputs per step (the two window sums as 16-bit lanes from a word of each
/// input row by four `SXTAB16`s, both rounded at once: `SSUB16`, `SEL`, `SADD16`, then each
/// lane's bits 2 to 9 are its output; 18 cycles per two outputs in the TRM model), an odd
/// width's last window with byte loads; other shapes as the plain kernel computes them.
pub fn qavg_pool2d_forward(s: &Pool2dShape, x: &[i8], y: &mut [i8]) -> Result<()> {
    super::super::qavg_pool2d_with(
        s,
        x,
        y,
        |v| v,
        |s, oh, ow, x, y| {
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
        },
    )
}

/// Two outputs of [`qlut_avg_pool2d_forward`] from four columns of each input row, in the
/// native loop's order: each value through the table (`table[128 + v]`), each window's
/// four results summed (top pair, bottom pair, then both) and rounded as [`avg_one`].
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn lut_avg_pair(table: &[i8; 256], a: u32, b: u32) -> [i8; 2] {
    let look = |w: u32, i: u32| table[(128 + (w >> (8 * i)) as u8 as i8 as i32) as usize];
    let window = |i: u32| {
        let top = look(a, i) as i32 + look(a, i + 1) as i32;
        let bottom = look(b, i) as i32 + look(b, i + 1) as i32;
        let sum = top + bottom;
        ((sum + (sum >> 31) + 2) >> 2) as i8
    };
    [window(0), window(2)]
}

/// A table op followed by average pooling in one pass, the same function as
/// [`crate::int8::qlut_avg_pool2d_forward`] (bit for bit): each input value is read once and
/// its table value summed straight into its window, so the table's output is never
/// written. LeNet's 2x2 windows with stride 2 and no padding one plane per asm block on the
/// Cortex-M4, two outputs per step: eight `LDRSB`s of the two input rows, eight `LDRSB`s of
/// the table at the values as signed offsets from its middle (sixteen loads that pipeline
/// into about 17 cycles), each window's sum rounded a quarter half away from zero (`ADD`
/// of the sign, `ADD #2`, `ASR #2`); an odd width's last window the same way with one
/// output. Other shapes as the plain kernel computes them.
pub fn qlut_avg_pool2d_forward(
    table: &[i8; 256],
    s: &Pool2dShape,
    x: &[i8],
    y: &mut [i8],
) -> Result<()> {
    let look = |v: i8| table[(v as u8 ^ 0x80) as usize];
    super::super::qavg_pool2d_with(s, x, y, look, |s, oh, ow, x, y| {
        let w = s.in_w;
        for (xp, yp) in x.chunks_exact(s.in_h * w).zip(y.chunks_exact_mut(oh * ow)) {
            #[cfg(not(tinycnn_arm_dsp))]
            pool_plane(
                xp,
                yp,
                w,
                ow,
                |a, b| lut_avg_pair(table, a, b),
                |a, b, c, d| avg_one(look(a), look(b), look(c), look(d)),
            );
            #[cfg(tinycnn_arm_dsp)]
            {
                let (rows, pairs, odd, skip) = plane_geometry(xp, yp, w, oh, ow);
                if rows == 0 {
                    continue;
                }
                // SAFETY: as in qavg_pool2d_forward: per output row, reads 4 * pairs + 2 *
                // odd <= w bytes of two input rows inside the plane (`p1` = `p0` + w) and
                // writes ow bytes of `yp` (plane_geometry asserts the sizes); every table
                // read is at 128 + v for an int8 v, inside the table.
                unsafe {
                    core::arch::asm!(
                        "1:",
                        "movs {n}, {pairs}",
                        "beq 3f",
                        "2:",
                        "ldrsb {a}, [{p0}], #4",
                        "ldrsb {b}, [{p0}, #-3]",
                        "ldrsb {c}, [{p1}], #4",
                        "ldrsb {d}, [{p1}, #-3]",
                        "ldrsb {a}, [{mid}, {a}]",
                        "ldrsb {b}, [{mid}, {b}]",
                        "ldrsb {c}, [{mid}, {c}]",
                        "ldrsb {d}, [{mid}, {d}]",
                        "add {a}, {a}, {b}",
                        "add {c}, {c}, {d}",
                        "ldrsb {b}, [{p0}, #-2]",
                        "ldrsb {d}, [{p0}, #-1]",
                        "add {a}, {a}, {c}",
                        "add {a}, {a}, {a}, asr #31",
                        "adds {a}, {a}, #2",
                        "asrs {a}, {a}, #2",
                        "strb {a}, [{py}], #2",
                        "ldrsb {a}, [{p1}, #-2]",
                        "ldrsb {c}, [{p1}, #-1]",
                        "ldrsb {b}, [{mid}, {b}]",
                        "ldrsb {d}, [{mid}, {d}]",
                        "ldrsb {a}, [{mid}, {a}]",
                        "ldrsb {c}, [{mid}, {c}]",
                        "add {b}, {b}, {d}",
                        "add {a}, {a}, {c}",
                        "add {a}, {a}, {b}",
                        "add {a}, {a}, {a}, asr #31",
                        "adds {a}, {a}, #2",
                        "asrs {a}, {a}, #2",
                        "strb {a}, [{py}, #-1]",
                        "subs {n}, {n}, #1",
                        "bne 2b",
                        "3:",
                        "cmp {odd}, #0",
                        "beq 4f",
                        "ldrsb {a}, [{p0}]",
                        "ldrsb {b}, [{p0}, #1]",
                        "ldrsb {c}, [{p1}]",
                        "ldrsb {d}, [{p1}, #1]",
                        "ldrsb {a}, [{mid}, {a}]",
                        "ldrsb {b}, [{mid}, {b}]",
                        "ldrsb {c}, [{mid}, {c}]",
                        "ldrsb {d}, [{mid}, {d}]",
                        "add {a}, {a}, {b}",
                        "add {c}, {c}, {d}",
                        "add {a}, {a}, {c}",
                        "add {a}, {a}, {a}, asr #31",
                        "adds {a}, {a}, #2",
                        "asrs {a}, {a}, #2",
                        "strb {a}, [{py}], #1",
                        "4:",
                        "add {p0}, {p0}, {skip}",
                        "add {p1}, {p1}, {skip}",
                        "subs {rows}, {rows}, #1",
                        "bne 1b",
                        p0 = inout(reg) xp.as_ptr() => _,
                        p1 = inout(reg) xp.as_ptr().add(w) => _,
                        py = inout(reg) yp.as_mut_ptr() => _,
                        mid = in(reg) table.as_ptr().add(128),
                        rows = inout(reg) rows => _,
                        n = out(reg) _,
                        a = out(reg) _,
                        b = out(reg) _,
                        c = out(reg) _,
                        d = out(reg) _,
                        pairs = in(reg) pairs,
                        odd = in(reg) odd,
                        skip = in(reg) skip,
                        options(nostack),
                    );
                }
            }
        }
    })
}

/// Max pooling on int8, the same function as [`crate::int8::qmax_pool2d_forward`] (bit for bit):
/// LeNet's 2x2 windows with stride 2 and no padding one plane per asm block on the
/// Cortex-M4, two outputs per step (a word of each input row, two [`max8`]s: `SSUB8` +
/// `SEL`), an odd width's last window with byte loads and compares; other shapes through
/// the plain kernel.
pub fn qmax_pool2d_forward(s: &Pool2dShape, x: &[i8], y: &mut [i8]) -> Result<()> {
    if !super::super::is_2x2_stride_2(s) {
        return super::super::qmax_pool2d_forward(s, x, y);
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
