//! The window path's row loop: blocks of five output pixels of one channel, requantized
//! and stored, as one asm block on the Cortex-M4 and its plain Rust twin elsewhere.

use super::super::{ActRange, Requant};
use super::window::{WINDOW_KW, WINDOW_PIXELS};
#[cfg(not(tinycnn_arm_dsp))]
use super::{max8, min8, smlad, smmla, ssat8};

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
pub(super) struct WindowChannel {
    pub(super) bias: i32,
    pub(super) rq: Requant,
    pub(super) range: ActRange,
}

/// Where a call of [`window_rows`] reads and writes: `rows` output rows of `blocks` blocks
/// of 5 pixels, `row_words` widened words and `out_row` output bytes apart; per output
/// pixel `taps_rows` kernel pair rows, `pair_words` widened words apart. With `tail`, each
/// row's last block is a tail of 3 pixels (3 accumulators: 15 `SMLAD`s per pair row
/// instead of 25, for rows such as conv1's 28 = 5 x 5 + 3), which writes 3 bytes (a row of
/// 5 k + 3 pixels ends exactly: no spill past it).
#[derive(Clone, Copy)]
pub(super) struct WindowRun {
    pub(super) rows: usize,
    pub(super) blocks: usize,
    pub(super) tail: bool,
    pub(super) row_words: usize,
    pub(super) out_row: usize,
    pub(super) taps_rows: usize,
    pub(super) pair_words: usize,
}

impl WindowRun {
    /// Bytes that one row's blocks write: 5 per full block, 3 for a tail.
    pub(super) fn row_bytes(&self) -> usize {
        WINDOW_PIXELS * self.blocks - 2 * self.tail as usize
    }
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
    /// For the `rest = taps_rows - 1` pair rows after the block's first (which starts the
    /// accumulators from the bias): `(ceil(rest / 3) - 1) << 18 | entry << 16 | (pair row
    /// stride in bytes)`, `entry` 2, 1, 0 for `rest % 3` 2, 1, 0 (`0xfffc_0000 | stride`
    /// where `rest` is 0: past the loop): `UXTAH` steps, `SUBS` counts the loop's
    /// iterations of three pair rows, bits 16 and 17 say where the first iteration enters.
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
    /// `taps_rows` where each row ends with a tail block of 3 pixels, else 0.
    tail_rows: u32,
}

/// `run.rows` output rows of `run.blocks` blocks of 5 pixels of one channel: the sums of
/// [`window_accs`] requantized, clamped and stored. The requantization is `SMMLA` with
/// `2^post` as the high word of the addend, then one arithmetic shift by `post + 1` and
/// `SSAT` to 8 bits: `floor((p + 2^(32 + post)) / 2^(33 + post))` for the product `p`,
/// which equals the `shift >= 33` form of [`requantize`](super::requantize),
/// `((floor(p / 2^32) >> post) + 1) >> 1` (nested floors of divisions by powers of two are
/// one floor, and `floor((n + 1) / 2)` = `floor((y + 1) / 2)` for `n = floor(y)`),
/// saturated to int8 before the clamp (the clamp's bounds are int8, so saturating first
/// changes nothing). The first four outputs of a block are packed into one word and clamped
/// lane-wise (`SSUB8` + `SEL` against the minimum, then the maximum), the fifth the same
/// way in the low byte of its word. Checks the bounds (the panics are the caller's bugs):
/// `x` holds `(rows - 1) row_words + 5 (blocks - 1) + (taps_rows - 1) pair_words + 9`
/// words, `w` `5 taps_rows`, `out` `(rows - 1) out_row + 5 blocks` bytes (`- 2` with a
/// tail);
/// `1 <= taps_rows <= 255`, `rows >= 1`, `blocks >= 1` (2 with a tail: at least one full
/// block per row), the shift 33 to 62 and the pair row stride below 64 KiB.
#[inline(never)]
pub(super) fn window_rows(
    x: &[u32],
    w: &[u32],
    out: &mut [i8],
    run: &WindowRun,
    ch: &WindowChannel,
) {
    let r = run;
    assert!(
        r.rows >= 1
            && r.blocks > r.tail as usize
            && (1..=255).contains(&r.taps_rows)
            && 4 * r.pair_words < 1 << 16
            && (33..=62).contains(&ch.rq.shift)
            && x.len()
                >= (r.rows - 1) * r.row_words
                    + WINDOW_PIXELS * (r.blocks - 1)
                    + (r.taps_rows - 1) * r.pair_words
                    + 9
            && w.len() >= r.taps_rows * WINDOW_KW
            && out.len() >= (r.rows - 1) * r.out_row + r.row_bytes()
    );
    let post = ch.rq.shift - 33;
    let bytes = |v: i8| v as u8 as u32 * 0x0101_0101;
    #[cfg(tinycnn_arm_dsp)]
    {
        // The full blocks of a row (the tail, if any, runs after them).
        let full = (WINDOW_PIXELS * (r.blocks - r.tail as usize)) as u32;
        let mut a = WindowArgs {
            x: x.as_ptr(),
            w: w.as_ptr(),
            stride_rows: match r.taps_rows as u32 - 1 {
                // Only the bias-start row: past the loop (bit 31 set, bits 16, 17 clear).
                0 => 0xfffc_0000,
                rest => (rest.div_ceil(3) - 1) << 18 | [0, 1 << 16, 1 << 17][rest as usize % 3],
            } | (4 * r.pair_words) as u32,
            bias: ch.bias,
            multiplier: ch.rq.multiplier,
            round: 1 << post,
            post: post + 1,
            lo: bytes(ch.range.min),
            hi: bytes(ch.range.max),
            out: out.as_mut_ptr(),
            row_end: out.as_mut_ptr().wrapping_add(full as usize),
            row_bytes: full,
            x_skip: (4 * r.row_words as u32).wrapping_sub(4 * (WINDOW_PIXELS * r.blocks) as u32),
            out_skip: (r.out_row as u32).wrapping_sub(full),
            rows: r.rows as u32,
            x_back: (4 * WINDOW_PIXELS as u32)
                .wrapping_sub((4 * r.taps_rows * r.pair_words) as u32),
            tail_rows: if r.tail { r.taps_rows as u32 } else { 0 },
        };
        window_rows_asm(&mut a);
    }
    #[cfg(not(tinycnn_arm_dsp))]
    {
        let (lo, hi) = (bytes(ch.range.min), bytes(ch.range.max));
        for row in 0..r.rows {
            for b in 0..r.blocks {
                let at = row * r.row_words + WINDOW_PIXELS * b;
                let o = &mut out[row * r.out_row + WINDOW_PIXELS * b..];
                if r.tail && b == r.blocks - 1 {
                    // The tail: 3 pixels, packed with a 0 in the fourth byte and clamped
                    // as a word, three bytes stored.
                    let acc = window_accs::<3>(&x[at..], r.pair_words, r.taps_rows, w, ch.bias);
                    let v = acc.map(|a| ssat8(smmla(a, ch.rq.multiplier, 1 << post) >> (post + 1)));
                    let three = u32::from_le_bytes([v[0] as u8, v[1] as u8, v[2] as u8, 0]);
                    let three = min8(max8(three, lo), hi);
                    for (o, v) in o[..3].iter_mut().zip(&three.to_le_bytes()) {
                        *o = *v as i8;
                    }
                    continue;
                }
                let acc =
                    window_accs::<WINDOW_PIXELS>(&x[at..], r.pair_words, r.taps_rows, w, ch.bias);
                let v = acc.map(|a| ssat8(smmla(a, ch.rq.multiplier, 1 << post) >> (post + 1)));
                let four = u32::from_le_bytes([v[0] as u8, v[1] as u8, v[2] as u8, v[3] as u8]);
                // The minimum's clamp, then the maximum's only where it is below 127 (the
                // native block's branch).
                let (mut four, mut fifth) = (max8(four, lo), max8(v[4] as u32, lo));
                if hi != 0x7f7f_7f7f {
                    four = min8(four, hi);
                    fifth = min8(fifth, hi);
                }
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
/// the step register). The block's first pair row is its own copy whose first tap adds to
/// the bias (loaded into `a0` only, `a0`'s own `SMLAD` last): no `MOV`s copy the bias per
/// block. The loop then runs three pair rows per iteration (one `SUBS`, one `BCS`), its
/// first iteration entered at the row that leaves a multiple of three: for the usual
/// shapes (`taps_rows % 3 == 0`) the second, by the `BCS` after the first pair row.
/// Per block: 5 x (`SMMLA`, `ASR`, `SSAT`), the first four packed (`UXTB`, 3 `BFI`), two
/// lane-wise clamps to the minimum of 2 instructions, to the maximum only where it is below
/// 127 (out of line: `CMP` and a branch not taken for the usual ranges, whose maximum 127
/// `SSAT` already gives), one word and one byte stored; the input pointer
/// stays in `px` (plus `x_back` to the next block), the output pointer is stored back and
/// compared with the row's end, and only at a row's end are the other args updated. A row's
/// tail block of 3 pixels (`tail_rows` not 0) runs after its full blocks: per pair row 7
/// input and 5 weight loads, 15 `SMLAD`s, one pair row per loop iteration.
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
    // The block's first kernel pair row: as `pair_row!`, its first tap's `SMLAD`s adding to
    // the bias in `a0` (a0's own last), so that no `MOV`s copy the bias.
    macro_rules! first_pair_row {
        () => {
            concat!(
                "ldr {x0}, [{px}]\n",
                "ldr {x1}, [{px}, #4]\n",
                "ldr {x2}, [{px}, #8]\n",
                "ldr {x3}, [{px}, #12]\n",
                "ldr r7, [{px}, #16]\n",
                "ldr {w}, [{pw}], #4\n",
                "smlad {a1}, {w}, {x1}, {a0}\n",
                "smlad {a2}, {w}, {x2}, {a0}\n",
                "smlad {a3}, {w}, {x3}, {a0}\n",
                "smlad {a4}, {w}, r7, {a0}\n",
                "smlad {a0}, {w}, {x0}, {a0}\n",
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
            // Three pair rows per iteration after the block's first, entered at the
            // first, second or third row (bits 17, 16 of the step register: `rest % 3` is
            // 2, 1) so that the first iteration runs the rows left over; the iterations
            // left in the bits from 18, which borrow (carry clear) after the last. Out of
            // the block's way (the usual shapes, `rest % 3 == 2`, branch from the first
            // pair row to the second row): entered with N = bit 16, bit 31 set where no
            // rows are left.
            "7:",
            "bmi 5f",
            "tst {st}, #0x80000000",
            "bne 10f",
            "b 2f",
            // A block's clamp to a maximum below 127, back to the block's store.
            "4:",
            "ssub8 {x0}, r7, {a0}",
            "sel {a0}, {a0}, r7",
            "ssub8 {x0}, r7, {a4}",
            "sel {a4}, {a4}, r7",
            "b 11f",
            // A block: `px` the block's first widened word, `st` the args.
            "3:",
            "ldr {pw}, [{st}, #4]",
            "ldr {a0}, [{st}, #12]",
            "ldr {st}, [{st}, #8]",
            first_pair_row!(),
            "lsls {w}, {st}, #15",
            "bcs 6f",
            "b 7b",
            "2:",
            pair_row!(),
            "6:",
            pair_row!(),
            "5:",
            pair_row!(),
            "subs {st}, {st}, #0x40000",
            "bcs 2b",
            "10:",
            // The block's args in one run of pipelined loads: the requantization (x0,
            // x1, x2), the clamp (x3, r7), the output (w) and `x_back` (pw).
            "ldr {st}, [sp]",
            "ldr {x0}, [{st}, #16]",
            "ldr {x1}, [{st}, #20]",
            "ldr {x2}, [{st}, #24]",
            "ldr {x3}, [{st}, #28]",
            "ldr r7, [{st}, #32]",
            "ldr {w}, [{st}, #36]",
            "ldr {pw}, [{st}, #60]",
            requant!("{a0}"),
            requant!("{a1}"),
            requant!("{a2}"),
            requant!("{a3}"),
            requant!("{a4}"),
            "uxtb {a0}, {a0}",
            "bfi {a0}, {a1}, #8, #8",
            "bfi {a0}, {a2}, #16, #8",
            "bfi {a0}, {a3}, #24, #8",
            "ssub8 {x0}, {a0}, {x3}",
            "sel {a0}, {a0}, {x3}",
            "ssub8 {x0}, {a4}, {x3}",
            "sel {a4}, {a4}, {x3}",
            // The maximum's clamp only where the maximum is below 127 (out of line: the
            // usual ranges, FULL and RELU, take one compare and a branch not taken).
            "cmp r7, #0x7f7f7f7f",
            "bne 4b",
            "11:",
            "ldr {x2}, [{st}, #40]",
            "str {a0}, [{w}]",
            "strb {a4}, [{w}, #4]",
            "add {w}, {w}, #5",
            "str {w}, [{st}, #36]",
            "add {px}, {px}, {pw}",
            "cmp {w}, {x2}",
            "bne 3b",
            // The row's full blocks are done: its tail of 3 pixels where `tail_rows` is
            // not 0 (`px` and `w` its first word and output), one pair row per iteration
            // (`a4` counts them, `a3` the pair row stride: `stride_rows`' low halfword),
            // the window x0, x1, x2, the weight in x3; `w` stays at the tail's output
            // for the row's step.
            "ldr {a4}, [{st}, #64]",
            "cmp {a4}, #0",
            "beq 9f",
            "ldr {pw}, [{st}, #4]",
            "ldr {a0}, [{st}, #12]",
            "ldrh {a3}, [{st}, #8]",
            "mov {a1}, {a0}",
            "mov {a2}, {a0}",
            "8:",
            "ldr {x0}, [{px}]",
            "ldr {x1}, [{px}, #4]",
            "ldr {x2}, [{px}, #8]",
            "ldr {x3}, [{pw}], #4",
            "smlad {a0}, {x3}, {x0}, {a0}",
            "smlad {a1}, {x3}, {x1}, {a1}",
            "smlad {a2}, {x3}, {x2}, {a2}",
            "ldr {x0}, [{px}, #12]",
            "ldr {x3}, [{pw}], #4",
            "smlad {a0}, {x3}, {x1}, {a0}",
            "smlad {a1}, {x3}, {x2}, {a1}",
            "smlad {a2}, {x3}, {x0}, {a2}",
            "ldr {x1}, [{px}, #16]",
            "ldr {x3}, [{pw}], #4",
            "smlad {a0}, {x3}, {x2}, {a0}",
            "smlad {a1}, {x3}, {x0}, {a1}",
            "smlad {a2}, {x3}, {x1}, {a2}",
            "ldr {x2}, [{px}, #20]",
            "ldr {x3}, [{pw}], #4",
            "smlad {a0}, {x3}, {x0}, {a0}",
            "smlad {a1}, {x3}, {x1}, {a1}",
            "smlad {a2}, {x3}, {x2}, {a2}",
            "ldr {x0}, [{px}, #24]",
            "ldr {x3}, [{pw}], #4",
            "smlad {a0}, {x3}, {x1}, {a0}",
            "smlad {a1}, {x3}, {x2}, {a1}",
            "smlad {a2}, {x3}, {x0}, {a2}",
            "add {px}, {px}, {a3}",
            "subs {a4}, {a4}, #1",
            "bne 8b",
            "ldr {x3}, [{st}, #60]",
            "ldr {x0}, [{st}, #16]",
            "ldr {x1}, [{st}, #20]",
            "ldr {x2}, [{st}, #24]",
            "add {px}, {px}, {x3}",
            requant!("{a0}"),
            requant!("{a1}"),
            requant!("{a2}"),
            "ldr {x0}, [{st}, #28]",
            "ldr {x1}, [{st}, #32]",
            "uxtb {a0}, {a0}",
            "bfi {a0}, {a1}, #8, #8",
            "bfi {a0}, {a2}, #16, #8",
            "ssub8 {x3}, {a0}, {x0}",
            "sel {a0}, {a0}, {x0}",
            "ssub8 {x3}, {x1}, {a0}",
            "sel {a0}, {a0}, {x1}",
            "strh {a0}, [{w}]",
            "lsrs {a0}, {a0}, #16",
            "strb {a0}, [{w}, #2]",
            // The next row's first block, or the end.
            "9:",
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
            "str {w}, [{st}, #36]",
            // Z: the row has ended and no rows are left.
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
