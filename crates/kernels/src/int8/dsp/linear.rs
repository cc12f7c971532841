//! The linear kernels: four output rows at a time against one input row, widened on the
//! fly.

use super::super::{check_bias_requant, ActRange, QLinearShape, Requant};
#[cfg(not(tinycnn_arm_dsp))]
use super::word;
use super::{requantize, smlad, sxtb16, sxtb16_ror8, tail_word};
use crate::error::Result;

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
