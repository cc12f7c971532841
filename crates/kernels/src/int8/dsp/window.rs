//! The window path of [`qconv2d_forward`]: its layout and workspace, the widening of
//! input rows and weights into 16-bit pairs, and the band loop; the row loop itself is in
//! [`super::window_rows`].

use super::super::{ActRange, Requant};
#[cfg(doc)]
use super::qconv2d_forward;
use super::window_rows::{window_rows, WindowChannel, WindowRun};
use super::{load4, pair, qconv2d_workspace_len, sxtb16, sxtb16_ror8};
use crate::error::Result;
use crate::shape::Conv2dShape;

// ---------------------------------------------------------------------------------------
// The window path: stride-1 convolutions with 5-tap kernel rows, five output pixels of one
// channel per block, each widened input word loaded once per block and kernel row.

/// Kernel width of the window path (the asm block is unrolled for it).
pub(super) const WINDOW_KW: usize = 5;
/// Output pixels per window block.
pub(super) const WINDOW_PIXELS: usize = 5;

/// How the window path lays a group's input out as rows of widened pairs (see
/// [`qconv2d_window_workspace_len`]).
#[derive(Clone, Copy)]
pub(super) struct WindowLayout {
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

pub(super) fn window_layout(s: &Conv2dShape) -> Option<WindowLayout> {
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
/// one band where the shape has one, the depthwise path's padded plane or the pointwise
/// path's bands of 16 pixels where it has those, else [`qconv2d_workspace_len`].
pub fn qconv2d_workspace_len_fast(s: &Conv2dShape) -> Result<usize> {
    let min = qconv2d_workspace_len(s)?;
    let (oh, _) = s.params.out_hw(s.in_h, s.in_w)?;
    let fast = qconv2d_window_workspace_len_rows(s, oh)
        .or_else(|| super::qconv2d_depthwise_workspace_len(s))
        .or_else(|| super::qconv2d_pointwise_workspace_len_fast(s));
    Ok(fast.map_or(min, |w| w.max(min)))
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

/// The window path of [`qconv2d_forward`] (shape checked by the caller, `workspace` at
/// least [`qconv2d_window_workspace_len`]): bands of as many output rows as the workspace
/// holds; per band the input rows it reads are widened once, then each output channel's
/// weights, then the band's rows of that channel in one call of [`window_rows`].
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(super) fn qconv2d_window(
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
    // Rows whose last block is partial with 1 to 3 pixels end with a tail block of 3.
    let tail = whole >= 1 && (1..=3).contains(&part);
    let run = |rows: usize, blocks: usize, tail: bool| WindowRun {
        rows,
        blocks,
        tail,
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
                    // A row's last partial block (5 pixels, or a tail of 3 where 1 to 3
                    // are left: none past a row of 5 k + 3) writes past the row into
                    // outputs computed later: the channel's next row (this band's or a later band's), or
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
                    let reach = run(1, whole + 1, tail).row_bytes();
                    let (full, blocks) = match part {
                        0 => (rows_here, whole),
                        _ => match (limit - at).checked_sub(reach) {
                            Some(room) => (rows_here.min(room / ow + 1), whole + 1),
                            None => (0, whole + 1),
                        },
                    };
                    if full > 0 {
                        let rn = run(full, blocks, tail);
                        let len = (full - 1) * ow + rn.row_bytes();
                        window_rows(img, wr, &mut y[at..at + len], &rn, &ch);
                    }
                    for r in full..rows_here {
                        let (xr, at) = (&img[r * row_words..], at + r * ow);
                        if whole > 0 {
                            let len = whole * WINDOW_PIXELS;
                            window_rows(xr, wr, &mut y[at..at + len], &run(1, whole, false), &ch);
                        }
                        let mut tmp = [0i8; WINDOW_PIXELS];
                        let xb = &xr[whole * WINDOW_PIXELS..];
                        window_rows(xb, wr, &mut tmp, &run(1, 1, false), &ch);
                        y[at + whole * WINDOW_PIXELS..at + ow].copy_from_slice(&tmp[..part]);
                    }
                }
            }
        }
    }
}
