//! The linear kernels: four output rows at a time against one input row, widened on the
//! fly; a layer's groups of four, their starting sums and their requantization in one asm
//! block.

use super::super::{check_bias_requant, ActRange, QLinearShape, Requant};
use super::requantize;
#[cfg(not(tinycnn_arm_dsp))]
use super::{max8, min8, smlad, smmla, ssat8, sxtb16, sxtb16_ror8, word};
use crate::error::Result;

/// Where the sums of [`layer`] go.
enum Dest<'a> {
    /// Requantized by `rq` (four per group, every shift in 33..=62 and every multiplier
    /// positive), clamped lane-wise to `[lo, hi]` (the range's bounds in each byte of a
    /// word), four bytes per group.
    Fused {
        rq: &'a [Requant],
        y: &'a mut [i8],
        lo: u32,
        hi: u32,
    },
    /// The raw sums, four per group.
    Raw(&'a mut [i32]),
}

/// `groups` groups of four rows of `w` against the whole chunks `x` (`x.len()` a multiple
/// of 4): group `g`'s rows start at byte `rows[j] + g * stride` of `w`, its starting sums
/// are `start[4 g..][..4]` (zeros without), and its four sums go to `dest` in row order.
/// Rows may repeat (the last one to three rows of a layer run as one group), but
/// `rows[1] - rows[0] == rows[3] - rows[2]`. Not inlined: one copy of the asm block.
#[inline(never)]
fn layer(
    x: &[i8],
    w: &[i8],
    rows: [usize; 4],
    stride: usize,
    groups: usize,
    start: Option<&[i32]>,
    dest: Dest<'_>,
) {
    let n = x.len() & !3;
    let x = &x[..n];
    let koff = rows[1].wrapping_sub(rows[0]);
    assert!(
        groups >= 1
            && rows[3].wrapping_sub(rows[2]) == koff
            && rows.iter().max().unwrap() + n + stride * (groups - 1) <= w.len()
            && start.is_none_or(|s| s.len() >= 4 * groups)
    );
    match &dest {
        Dest::Fused { rq, y, .. } => assert!(rq.len() >= 4 * groups && y.len() >= 4 * groups),
        Dest::Raw(y) => assert!(y.len() >= 4 * groups),
    }
    #[cfg(tinycnn_arm_dsp)]
    {
        let (rq, out, lo, hi) = match dest {
            Dest::Fused { rq, y, lo, hi } => (rq.as_ptr(), y.as_mut_ptr() as *mut u8, lo, hi),
            Dest::Raw(y) => (core::ptr::null(), y.as_mut_ptr() as *mut u8, 0, 0),
        };
        let mut a = LayerArgs {
            x: x.as_ptr(),
            chunks: (n / 4) as u32,
            w: w[rows[0]..].as_ptr(),
            koff: koff as u32,
            p2off: rows[2].wrapping_sub(rows[0]) as u32,
            step: (rows[0] + stride).wrapping_sub(rows[2] + n) as u32,
            start: start.map_or(core::ptr::null(), |s| s.as_ptr()),
            rq,
            out,
            lo,
            hi,
            groups: groups as u32,
        };
        layer_asm(&mut a);
    }
    #[cfg(not(tinycnn_arm_dsp))]
    {
        let mut dest = dest;
        for g in 0..groups {
            let r = rows.map(|r| r + g * stride);
            let mut acc = match start {
                Some(s) => [s[4 * g], s[4 * g + 1], s[4 * g + 2], s[4 * g + 3]],
                None => [0; 4],
            };
            for (c, cx) in x.chunks_exact(4).enumerate() {
                let ww = r.map(|r| word(&w[r + 4 * c..]));
                let (xa, xb) = (sxtb16(word(cx)), sxtb16_ror8(word(cx)));
                for (a, &w) in acc.iter_mut().zip(&ww) {
                    *a = smlad(sxtb16(w), xa, *a);
                    *a = smlad(sxtb16_ror8(w), xb, *a);
                }
            }
            match &mut dest {
                Dest::Fused { rq, y, lo, hi } => {
                    // SMMUL, SUB #33, ASR, ADD #1, SSAT #8 (ASR #1) per row; three BFI
                    // pack the bytes; SSUB8 + SEL twice clamp the four lanes.
                    let v: [i32; 4] = core::array::from_fn(|j| {
                        let q = rq[4 * g + j];
                        let h = smmla(acc[j], q.multiplier, 0) >> (q.shift - 33);
                        ssat8((h + 1) >> 1)
                    });
                    let four = u32::from_le_bytes(v.map(|v| v as u8));
                    let four = min8(max8(four, *lo), *hi);
                    for (o, b) in y[4 * g..4 * g + 4].iter_mut().zip(four.to_le_bytes()) {
                        *o = b as i8;
                    }
                }
                Dest::Raw(y) => y[4 * g..4 * g + 4].copy_from_slice(&acc),
            }
        }
    }
}

/// The asm block's arguments (offsets fixed: the block reads and updates them by offset).
#[cfg(tinycnn_arm_dsp)]
#[repr(C)]
struct LayerArgs {
    /// 0: the input's first word.
    x: *const i8,
    /// 4: words of input per row.
    chunks: u32,
    /// 8: row 0 of the next group.
    w: *const i8,
    /// 12: row 1 (3) from row 0 (2).
    koff: u32,
    /// 16: row 2 from row 0 (wrapping).
    p2off: u32,
    /// 20: the next group's row 0 from the end of row 2 (wrapping).
    step: u32,
    /// 24: the next group's four starting sums, or null (zeros).
    start: *const i32,
    /// 28: the next group's four requantizers, or null (raw sums stored).
    rq: *const Requant,
    /// 32: the next group's output.
    out: *mut u8,
    /// 36, 40: the clamp bounds, four bytes each.
    lo: u32,
    hi: u32,
    /// 44: groups left.
    groups: u32,
}

/// [`layer`] as Cortex-M4 instructions. Per group: the row pointers and starting sums
/// from the args; per 4 inputs, 5 loads, 10 `SXTB16` and 8 `SMLAD` for 16 multiply-
/// accumulates, the loop body four chunks (one counter update and branch per 64
/// multiply-accumulates), the first pass entered part way when the count is not a
/// multiple of four; then per row `SMMUL`, `SUB`, `ASR`, `ADD`, `SSAT` (the
/// shift-at-least-33 form of [`requantize`]), three `BFI`, two lane-wise clamps and one
/// word stored (or the four sums stored raw). Fourteen registers: thirteen operands and
/// r7 (the counter of passes, then a requantizer word), pushed and popped; the args
/// pointer waits on the stack.
#[cfg(tinycnn_arm_dsp)]
#[inline(always)]
fn layer_asm(a: &mut LayerArgs) {
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
    // One row's requantization: accumulator `$a`, multiplier `$m`, shift `$s`.
    macro_rules! requant {
        ($a:literal, $m:literal, $s:literal) => {
            concat!(
                "smmul ",
                $a,
                ", ",
                $a,
                ", ",
                $m,
                "\n",
                "sub ",
                $s,
                ", ",
                $s,
                ", #33\n",
                "asr ",
                $a,
                ", ",
                $a,
                ", ",
                $s,
                "\n",
                "add ",
                $a,
                ", ",
                $a,
                ", #1\n",
                "ssat ",
                $a,
                ", #8, ",
                $a,
                ", asr #1\n",
            )
        };
    }
    // SAFETY: `layer` asserted the bounds: group g reads x.len() bytes of `x` and of rows
    // rows[j] + g stride of `w`, four starting sums, four requantizers (word-aligned:
    // `Requant` is two words) and writes four output bytes (fused) or words (raw). The
    // loop runs ceil(chunks / 4) passes, the first one entered at chunk 4 - chunks % 4 of
    // the body when chunks % 4 != 0, none when chunks is 0. r7 is pushed first and popped
    // last, the args pointer pushed and popped in between: sp and r7 are restored. SSUB8
    // sets the GE flags and SMLAD the Q flag: the flags are not declared preserved.
    unsafe {
        core::arch::asm!(
            "push {{r7}}",
            "push {{{t}}}",
            // A group: the args pointer in `t`.
            "6:",
            "ldr {t}, [sp]",
            "ldr {px}, [{t}]",
            "ldr {w0}, [{t}, #4]",
            "ldr {p0}, [{t}, #8]",
            "ldr {k}, [{t}, #12]",
            "ldr {p2}, [{t}, #16]",
            "ldr {w1}, [{t}, #24]",
            "add {p2}, {p2}, {p0}",
            "cmp {w1}, #0",
            "beq 7f",
            "ldr {a0}, [{w1}]",
            "ldr {a1}, [{w1}, #4]",
            "ldr {a2}, [{w1}, #8]",
            "ldr {a3}, [{w1}, #12]",
            "add {w1}, {w1}, #16",
            "str {w1}, [{t}, #24]",
            "1:",
            "adds r7, {w0}, #3",
            "lsrs r7, r7, #2",
            "beq 8f",
            "ands {xa}, {w0}, #3",
            "beq 2f",
            "cmp {xa}, #2",
            "blo 5f",
            "beq 4f",
            "b 3f",
            // No starting sums: zeros (out of the usual path).
            "7:",
            "movs {a0}, #0",
            "movs {a1}, #0",
            "movs {a2}, #0",
            "movs {a3}, #0",
            "b 1b",
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
            // The group's end: the next group's row 0, then its outputs.
            "8:",
            "ldr {t}, [sp]",
            "ldr {w0}, [{t}, #20]",
            "ldr {w1}, [{t}, #28]",
            "ldr {xa}, [{t}, #32]",
            "add {p2}, {p2}, {w0}",
            "str {p2}, [{t}, #8]",
            "cmp {w1}, #0",
            "beq 11f",
            "ldr {px}, [{w1}]",
            "ldr {p0}, [{w1}, #4]",
            "ldr {p2}, [{w1}, #8]",
            "ldr {k}, [{w1}, #12]",
            "ldr {w0}, [{w1}, #16]",
            "ldr r7, [{w1}, #20]",
            requant!("{a0}", "{px}", "{p0}"),
            requant!("{a1}", "{p2}", "{k}"),
            requant!("{a2}", "{w0}", "r7"),
            "ldr {px}, [{w1}, #24]",
            "ldr {p0}, [{w1}, #28]",
            "ldr {xb}, [{t}, #36]",
            "ldr {w0}, [{t}, #40]",
            requant!("{a3}", "{px}", "{p0}"),
            "add {w1}, {w1}, #32",
            "str {w1}, [{t}, #28]",
            "bfi {a0}, {a1}, #8, #8",
            "bfi {a0}, {a2}, #16, #8",
            "bfi {a0}, {a3}, #24, #8",
            "ssub8 {k}, {a0}, {xb}",
            "sel {a0}, {a0}, {xb}",
            "ssub8 {k}, {w0}, {a0}",
            "sel {a0}, {a0}, {w0}",
            "str {a0}, [{xa}], #4",
            "12:",
            "str {xa}, [{t}, #32]",
            "ldr {w0}, [{t}, #44]",
            "subs {w0}, {w0}, #1",
            "str {w0}, [{t}, #44]",
            "bne 6b",
            "b 13f",
            // Raw sums (out of the usual path).
            "11:",
            "str {a0}, [{xa}]",
            "str {a1}, [{xa}, #4]",
            "str {a2}, [{xa}, #8]",
            "str {a3}, [{xa}, #12]",
            "add {xa}, {xa}, #16",
            "b 12b",
            "13:",
            "pop {{{t}}}",
            "pop {{r7}}",
            t = inout(reg) a as *mut LayerArgs => _,
            k = out(reg) _,
            w0 = out(reg) _,
            w1 = out(reg) _,
            xa = out(reg) _,
            xb = out(reg) _,
            px = out(reg) _,
            p0 = out(reg) _,
            p2 = out(reg) _,
            a0 = out(reg) _,
            a1 = out(reg) _,
            a2 = out(reg) _,
            a3 = out(reg) _,
        );
    }
}

/// The outputs of [`linear_rows`]: int8 values requantized by `rq` and clamped to `range`
/// (with `fused`, every shift in 33..=62 and every multiplier positive: requantized in
/// the asm block), or the raw `i32` sums.
enum Out<'a> {
    I8 {
        y: &'a mut [i8],
        rq: &'a [Requant],
        range: ActRange,
        fused: bool,
    },
    I32(&'a mut [i32]),
}

/// Output rows four at a time through [`layer`]: `y[b][o]` is `bias[o] + x[b] . w[o]`,
/// requantized or raw ([`Out`]). The usual case (inputs a multiple of 4, requantization
/// fused or raw outputs) takes the whole groups in one call per input row; the other
/// groups, and the last one to three rows, run one call each, their starting sums the bias
/// plus the products of the last `k % 4` inputs in plain Rust, their raw sums emitted
/// here. A last group of one to three rows repeats rows (`(o, o, o, o)`,
/// `(o, o+1, o, o+1)` or `(o+1, o+2, o, o+1)`).
fn linear_rows(s: &QLinearShape, x: &[i8], w: &[i8], bias: Option<&[i32]>, mut out: Out<'_>) {
    let (k, of) = (s.in_features, s.out_features);
    let whole = k & !3;
    let full = of / 4;
    for (b, xr) in x.chunks_exact(k).enumerate() {
        let (xw, xt) = xr.split_at(whole);
        let base = b * of;
        let quad = [0, k, 2 * k, 3 * k];
        let bias4 = bias.map(|b| &b[..4 * full]);
        let mut o = 0;
        if xt.is_empty() && full > 0 {
            match &mut out {
                Out::I8 {
                    y,
                    rq,
                    range,
                    fused: true,
                } => {
                    let dest = Dest::Fused {
                        rq,
                        y: &mut y[base..base + 4 * full],
                        lo: u32::from_ne_bytes([range.min as u8; 4]),
                        hi: u32::from_ne_bytes([range.max as u8; 4]),
                    };
                    layer(xw, w, quad, 4 * k, full, bias4, dest);
                    o = 4 * full;
                }
                Out::I32(y) => {
                    let dest = Dest::Raw(&mut y[base..base + 4 * full]);
                    layer(xw, w, quad, 4 * k, full, bias4, dest);
                    o = 4 * full;
                }
                _ => {}
            }
        }
        while o < of {
            let left = of - o;
            // Rows of the four slots, and which slot holds output o + j.
            let (r, slot): ([usize; 4], [usize; 4]) = match left {
                1 => ([o; 4], [0; 4]),
                2 => ([o, o + 1, o, o + 1], [0, 1, 0, 0]),
                3 => ([o + 1, o + 2, o, o + 1], [2, 0, 1, 0]),
                _ => ([o, o + 1, o + 2, o + 3], [0, 1, 2, 3]),
            };
            let mut init = [0i32; 4];
            for (a, &r) in init.iter_mut().zip(&r) {
                *a = start_sum(&w[r * k..(r + 1) * k], xt, bias.map_or(0, |b| b[r]));
            }
            let mut sums = [0; 4];
            layer(
                xw,
                w,
                r.map(|r| r * k),
                0,
                1,
                Some(&init),
                Dest::Raw(&mut sums),
            );
            for (j, &sl) in slot.iter().enumerate().take(left) {
                emit(&mut out, base + o + j, o + j, sums[sl]);
            }
            o += 4;
        }
    }
}

/// A group's starting sum for weight row `wr`: `bias` plus the products of the last
/// `xt.len()` (`k % 4`) inputs. Not inlined: called per slot, small.
#[inline(never)]
fn start_sum(wr: &[i8], xt: &[i8], bias: i32) -> i32 {
    let wt = &wr[wr.len() - xt.len()..];
    xt.iter()
        .zip(wt)
        .fold(bias, |a, (&u, &v)| a.wrapping_add(u as i32 * v as i32))
}

/// Output `at` (row `o` of the layer) from the raw sum `a`: requantized or stored. Not
/// inlined: called per output of the groups outside the usual case, small.
#[inline(never)]
fn emit(out: &mut Out<'_>, at: usize, o: usize, a: i32) {
    match out {
        Out::I8 { y, rq, range, .. } => y[at] = requantize(rq[o], a, *range),
        Out::I32(y) => y[at] = a,
    }
}

/// Quantized fully connected layer, the same function as [`crate::int8::qlinear_forward`]
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
    check_bias_requant(s.out_features, bias, None)?;
    if requant.len() != s.out_features {
        // The length error of the shared check.
        check_bias_requant(s.out_features, None, Some(requant))?;
    }
    range.validate()?;
    // Whether every shift takes the fused form (33..=62) with a positive multiplier: the
    // sign bit of the OR of `s - 33`, `62 - s`, `m` and `m - 1` (each non-negative exactly
    // then; `m | (m - 1)` is negative for 0 and for i32::MIN), no branch per entry. When
    // not, the shared check's exact test, with its error.
    let sign = |acc: i32, r: &Requant| {
        let s = r.shift as i32;
        acc | s.wrapping_sub(33)
            | 62i32.wrapping_sub(s)
            | r.multiplier
            | r.multiplier.wrapping_sub(1)
    };
    // Four entries per pass: one loop branch per four.
    let quads = requant.chunks_exact(4);
    let rest = quads.remainder().iter().fold(0, sign);
    let signs = quads.fold(rest, |acc, q| q.iter().fold(acc, sign));
    let fused = signs >= 0;
    if !fused {
        check_bias_requant(s.out_features, None, Some(requant))?;
    }
    let out = Out::I8 {
        y,
        rq: requant,
        range,
        fused,
    };
    linear_rows(s, x, w, bias, out);
    Ok(())
}

/// Quantized fully connected layer with raw `i32` outputs, the same function as
/// [`crate::int8::qlinear_forward_i32`] (bit for bit), computed with `SMLAD`.
pub fn qlinear_forward_i32(
    s: &QLinearShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    y: &mut [i32],
) -> Result<()> {
    s.check(x.len(), w.len(), y.len())?;
    check_bias_requant(s.out_features, bias, None)?;
    linear_rows(s, x, w, bias, Out::I32(y));
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::int8::reference;
    use std::vec;
    use std::vec::Vec;

    /// xorshift32: deterministic test data.
    struct Rng(u32);
    impl Rng {
        fn next(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            self.0
        }
        fn i8s(&mut self, n: usize) -> Vec<i8> {
            (0..n).map(|_| self.next() as u8 as i8).collect()
        }
    }

    /// Every shape class of `linear_rows` (the usual one-call path, k % 4 != 0, k < 4, the
    /// last one to three rows, batches) against the naive reference, bit for bit: fused
    /// requantization (every shift in 33..=62), a mixed set (one shift below 33: the
    /// per-group path), and raw `i32` outputs.
    #[test]
    fn linear_paths_match_reference() {
        let mut rng = Rng(0x9e37_79b9);
        for &(batch, k, of) in &[
            (1, 400, 120),
            (1, 120, 84),
            (1, 84, 10),
            (2, 8, 4),
            (1, 4, 1),
            (1, 1, 5),
            (2, 3, 6),
            (1, 5, 7),
            (3, 17, 9),
            (1, 16, 2),
            (1, 13, 3),
        ] {
            let s = QLinearShape::new(batch, k, of);
            let x = rng.i8s(batch * k);
            let w = rng.i8s(k * of);
            let b: Vec<i32> = (0..of)
                .map(|_| (rng.next() % 2_000_001) as i32 - 1_000_000)
                .collect();
            for bias in [None, Some(&b[..])] {
                let (mut a, mut a_want) = (vec![0; batch * of], vec![0; batch * of]);
                qlinear_forward_i32(&s, &x, &w, bias, &mut a).unwrap();
                reference::qlinear_i32(&s, &x, &w, bias, &mut a_want).unwrap();
                assert_eq!(a, a_want, "i32 {batch} {k} {of}");
                for mixed in [false, true] {
                    let mut rq: Vec<Requant> = (0..of)
                        .map(|_| Requant {
                            multiplier: (1 << 30) + (rng.next() >> 2) as i32,
                            shift: 33 + rng.next() % 30,
                        })
                        .collect();
                    if mixed {
                        rq[of - 1].shift = 1 + rng.next() % 32;
                    }
                    for range in [ActRange::FULL, ActRange::RELU, ActRange { min: -5, max: 9 }] {
                        let (mut y, mut y_want) = (vec![0; batch * of], vec![0; batch * of]);
                        qlinear_forward(&s, &x, &w, bias, &rq, range, &mut y).unwrap();
                        reference::qlinear(&s, &x, &w, bias, &rq, range, &mut y_want).unwrap();
                        assert_eq!(y, y_want, "i8 {batch} {k} {of} mixed {mixed}");
                    }
                }
            }
        }
    }

    /// The one-pass requantizer check rejects what the shared check rejects, with its
    /// error, and an extreme multiplier still takes the exact path.
    #[test]
    fn bad_requantizers_are_errors() {
        let s = QLinearShape::new(1, 4, 4);
        let (x, w) = ([1i8; 4], [1i8; 16]);
        let good = Requant {
            multiplier: 1 << 30,
            shift: 40,
        };
        for bad in [
            Requant {
                multiplier: 0,
                shift: 40,
            },
            Requant {
                multiplier: i32::MIN,
                shift: 40,
            },
            Requant {
                multiplier: 1 << 30,
                shift: 63,
            },
            Requant {
                multiplier: 1 << 30,
                shift: 0,
            },
            Requant {
                multiplier: 1 << 30,
                shift: u32::MAX,
            },
        ] {
            let rq = [good, good, bad, good];
            let mut y = [0i8; 4];
            assert!(qlinear_forward(&s, &x, &w, None, &rq, ActRange::FULL, &mut y).is_err());
            // The same entry past the last whole four.
            let s5 = QLinearShape::new(1, 4, 5);
            let rq = [good, good, good, good, bad];
            let mut y = [0i8; 5];
            let r = qlinear_forward(&s5, &x, &[1; 20], None, &rq, ActRange::FULL, &mut y);
            assert!(r.is_err());
        }
        let mut y = [0i8; 4];
        assert!(qlinear_forward(&s, &x, &w, None, &[good; 3], ActRange::FULL, &mut y).is_err());
        let big = Requant {
            multiplier: i32::MAX,
            shift: 62,
        };
        let (mut y, mut want) = ([0i8; 4], [0i8; 4]);
        qlinear_forward(&s, &x, &w, None, &[big; 4], ActRange::FULL, &mut y).unwrap();
        reference::qlinear(&s, &x, &w, None, &[big; 4], ActRange::FULL, &mut want).unwrap();
        assert_eq!(y, want);
    }
}
