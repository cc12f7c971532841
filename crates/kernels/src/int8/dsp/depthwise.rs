//! The depthwise path of [`qconv2d_forward`]: 3x3 kernels, one input channel per group
//! (MobileNet's and DS-CNN's depthwise convolutions, with any number of output channels
//! per group, so also a first convolution of a one-channel image), stride 1 or 2 across,
//! any stride down, any padding, no dilation.
//!
//! Each channel's plane is copied into a zero-padded plane in the workspace (its borders
//! are cleared once and stay zero: every channel writes only the inside), so no output
//! checks bounds. A kernel row meets the word of four input values `(x0, x1, x2, x3)` at
//! the output's first column: `SXTB16` gives the pairs `(x0, x2)` and, rotated, `(x1, x3)`
//! as 16-bit lanes, and with the row's weights as the pairs `(w0, w2)` and `(w1, 0)` two
//! `SMLAD`s give the row's three products (`x3` meets the 0): an output's 9
//! multiply-accumulates in three word loads, six extends and six `SMLAD`s, at stride 1 or
//! 2. (Two neighbouring outputs per step at stride 1, sharing the words, measured slower:
//! the compiler spills the twelve live pairs.)

use super::super::{ActRange, Requant};
#[cfg(doc)]
use super::qconv2d_forward;
use super::{pair, smlad, smmla, sxtb16, sxtb16_ror8};
use crate::shape::Conv2dShape;

/// The zero-padded plane a channel's outputs read: `rows` rows of `width` values (the
/// padded input cut to what the outputs reach), then one value for the last word load's
/// fourth byte (its weight is 0).
#[derive(Clone, Copy)]
pub(super) struct DepthwiseLayout {
    rows: usize,
    width: usize,
}

impl DepthwiseLayout {
    fn bytes(&self) -> usize {
        self.rows * self.width + 1
    }
}

/// The layout for shape `s`, or `None` for a shape the path does not take.
pub(super) fn depthwise_layout(s: &Conv2dShape) -> Option<DepthwiseLayout> {
    let p = &s.params;
    if p.groups == 0
        || p.in_channels != p.groups
        || p.kernel != (3, 3)
        || p.dilation != (1, 1)
        || !(1..=2).contains(&p.stride.1)
        || p.stride.0 == 0
    {
        return None;
    }
    let (oh, ow) = p.out_hw(s.in_h, s.in_w).ok()?;
    if oh == 0 || ow == 0 {
        return None;
    }
    Some(DepthwiseLayout {
        rows: (oh - 1).checked_mul(p.stride.0)?.checked_add(3)?,
        width: (ow - 1).checked_mul(p.stride.1)?.checked_add(3)?,
    })
}

/// Words of workspace with which [`qconv2d_forward`] takes its depthwise path (one padded
/// channel plane), or `None` for a shape it does not take: a 3x3 convolution with one
/// input channel per group (`groups` = input channels: depthwise, any output channels per
/// group) with no dilation and stride 1 or 2 across.
///
/// ```
/// use tinycnn_kernels::int8::dsp::qconv2d_depthwise_workspace_len;
/// use tinycnn_kernels::{Conv2dParams, Conv2dShape};
/// // DS-CNN's 32 channels of 28x28, stride 2, padding 1: a plane of 29 rows of 29.
/// let p = Conv2dParams::new(32, 32, (3, 3)).with_stride((2, 2)).with_padding((1, 1)).with_groups(32);
/// assert_eq!(qconv2d_depthwise_workspace_len(&Conv2dShape::new(p, 1, 28, 28)), Some(211));
/// // A one-channel image's first 3x3 convolution takes it too; a dense one on 32 does not.
/// let first = Conv2dParams::new(1, 32, (3, 3)).with_padding((1, 1));
/// assert_eq!(qconv2d_depthwise_workspace_len(&Conv2dShape::new(first, 1, 28, 28)), Some(226));
/// let dense = Conv2dParams::new(32, 32, (3, 3)).with_padding((1, 1));
/// assert_eq!(qconv2d_depthwise_workspace_len(&Conv2dShape::new(dense, 1, 28, 28)), None);
/// ```
pub fn qconv2d_depthwise_workspace_len(s: &Conv2dShape) -> Option<usize> {
    Some(depthwise_layout(s)?.bytes().div_ceil(4))
}

/// One channel's requantization in the form of the window path (`SMMLA` with `2^post` as
/// the high word of the addend, one shift by `post + 1`: the `shift >= 33` form of
/// [`super::requantize`], bit for bit) and its clamp.
#[derive(Clone, Copy)]
struct Output {
    multiplier: i32,
    round: i32,
    shift: u32,
    min: i32,
    max: i32,
}

impl Output {
    #[inline(always)]
    fn of(&self, acc: i32) -> i8 {
        (smmla(acc, self.multiplier, self.round) >> self.shift).clamp(self.min, self.max) as i8
    }
}

/// The depthwise path: `s` has [`depthwise_layout`] `l`, the sizes are checked and
/// `workspace` holds at least
/// [`qconv2d_depthwise_workspace_len`] words.
#[allow(clippy::too_many_arguments)]
pub(super) fn qconv2d_depthwise(
    s: &Conv2dShape,
    l: &DepthwiseLayout,
    (oh, ow): (usize, usize),
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    requant: &[Requant],
    range: ActRange,
    y: &mut [i8],
    workspace: &mut [u32],
) {
    let p = &s.params;
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    let plane = &mut crate::deploy::words_as_bytes_mut(workspace)[..l.bytes()];
    // The borders stay zero: each channel writes only the input's rows and columns.
    plane.fill(0);
    // Input rows and columns inside the padded plane (the rest no output reads).
    let rows = s.in_h.min(l.rows.saturating_sub(ph));
    let cols = s.in_w.min(l.width.saturating_sub(pw));
    // Output channel `c` reads input channel `c / per` (its group's one input channel).
    let per = p.out_channels / p.groups;
    for b in 0..s.batch {
        for c in 0..p.out_channels {
            if c % per == 0 {
                let g = b * p.in_channels + c / per;
                let xp = &x[g * s.in_h * s.in_w..][..s.in_h * s.in_w];
                for iy in 0..rows {
                    let at = (iy + ph) * l.width + pw;
                    for (o, &v) in plane[at..at + cols].iter_mut().zip(&xp[iy * s.in_w..]) {
                        *o = v as u8;
                    }
                }
            }
            let k = &w[c * 9..c * 9 + 9];
            // Per kernel row: (w0, w2), (w1, 0).
            let taps: [[u32; 2]; 3] = core::array::from_fn(|r| {
                let (w0, w1, w2) = (k[3 * r], k[3 * r + 1], k[3 * r + 2]);
                [pair(w0, w2), pair(w1, 0)]
            });
            let start = bias.map_or(0, |b| b[c]);
            let rq = requant[c];
            let yp = &mut y[(b * p.out_channels + c) * oh * ow..][..oh * ow];
            // The usual requantization (a scale below 1/4) in the window path's form; the
            // rest (a BatchNorm can scale a channel up) in the general one.
            if rq.shift >= 33 {
                let post = rq.shift - 33;
                let q = Output {
                    multiplier: rq.multiplier,
                    round: 1 << post,
                    shift: post + 1,
                    min: range.min as i32,
                    max: range.max as i32,
                };
                channel(plane, l, (sh, sw), &taps, start, |a| q.of(a), yp, ow);
            } else {
                let out = |a| rq.apply_clamped(a, range);
                channel(plane, l, (sh, sw), &taps, start, out, yp, ow);
            }
        }
    }
}

/// One channel's outputs `yp` (rows of `ow`) from its padded plane.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn channel(
    plane: &[u8],
    l: &DepthwiseLayout,
    (sh, sw): (usize, usize),
    taps: &[[u32; 2]; 3],
    start: i32,
    q: impl Fn(i32) -> i8,
    yp: &mut [i8],
    ow: usize,
) {
    let width = l.width;
    for (oy, yr) in yp.chunks_exact_mut(ow).enumerate() {
        let top = oy * sh * width;
        // Every word read below lies in the plane: output row `oy` reads its rows
        // `oy sh .. oy sh + 2` (below `l.rows`), and columns up to `(ow - 1) sw + 3`, which
        // is the row's width: one byte into the next row, or the plane's last byte.
        assert!(top + 2 * width + (ow - 1) * sw + 4 <= plane.len());
        let base = plane[top..].as_ptr();
        // The pairs (x0, x2), (x1, x3) of the word at column `col` of kernel row `r`.
        let row = |r: usize, col: usize| {
            // SAFETY: `r <= 2` and `col + 3 <= (ow - 1) sw + 3` (the callers' columns), so
            // the four bytes lie in the plane (the assert above); any alignment.
            let word = unsafe { (base.add(r * width + col) as *const u32).read_unaligned() };
            (sxtb16(word), sxtb16_ror8(word))
        };
        for (ox, o) in yr.iter_mut().enumerate() {
            let mut a = start;
            for (r, t) in taps.iter().enumerate() {
                let (even, odd) = row(r, sw * ox);
                a = smlad(t[1], odd, smlad(t[0], even, a));
            }
            *o = q(a);
        }
    }
}
