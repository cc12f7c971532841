//! The general convolution path of [`qconv2d_forward`]: im2col of two output pixels at a
//! time (see [`super::im2col`]), then 2x2 blocks of two output channels by two pixels.

use super::super::{ActRange, Requant};
use super::im2col::{as_bytes, im2col, padded_patch, widen};
#[cfg(doc)]
use super::qconv2d_forward;
#[cfg(not(tinycnn_arm_dsp))]
use super::word;
use super::{qconv2d_workspace_len, requantize, smlad, sxtb16, sxtb16_ror8, tail_word};
use crate::error::{check_workspace, Result};
use crate::shape::Conv2dShape;

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

/// The general path of [`qconv2d_forward`] (shapes checked by the caller).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(super) fn qconv2d_general(
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
