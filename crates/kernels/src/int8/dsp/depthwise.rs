//! The depthwise path of [`qconv2d_forward`]: 3x3 kernels, one output channel per input
//! channel (MobileNet's and DS-CNN's depthwise convolutions), stride 1 or 2 across, any
//! stride down, any padding, no dilation.
//!
//! Each channel's plane is copied into a zero-padded plane in the workspace (its borders
//! are cleared once and stay zero: every channel writes only the inside), so no output
//! checks bounds. A kernel row meets a word of four input values `(x0, x1, x2, x3)`:
//! `SXTB16` gives the pairs `(x0, x2)` and, rotated, `(x1, x3)` as 16-bit lanes, and with
//! the row's weights as the pairs `(w0, w2)`, `(w1, 0)` and `(0, w1)` four `SMLAD`s give
//! the row's sums for two neighbouring outputs at stride 1 (`w0 x0 + w2 x2 + w1 x1` and
//! `w0 x1 + w2 x3 + w1 x2`), two `SMLAD`s the one output at stride 2 (its taps are `x0`,
//! `x1`, `x2`): 6 multiply-accumulates in one load, two extends and four `SMLAD`s.

use super::super::{ActRange, Requant};
#[cfg(doc)]
use super::qconv2d_forward;
use super::{load4, requantize, smlad, sxtb16, sxtb16_ror8};
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
    let depthwise = p.groups == p.in_channels && p.out_channels == p.in_channels;
    if !depthwise
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
/// channel plane), or `None` for a shape it does not take: a 3x3 depthwise convolution
/// (`groups` = input = output channels) with no dilation and stride 1 or 2 across.
///
/// ```
/// use tinycnn_kernels::int8::dsp::qconv2d_depthwise_workspace_len;
/// use tinycnn_kernels::{Conv2dParams, Conv2dShape};
/// // DS-CNN's 32 channels of 28x28, stride 2, padding 1: a plane of 29 rows of 29.
/// let p = Conv2dParams::new(32, 32, (3, 3)).with_stride((2, 2)).with_padding((1, 1)).with_groups(32);
/// assert_eq!(qconv2d_depthwise_workspace_len(&Conv2dShape::new(p, 1, 28, 28)), Some(211));
/// // A dense 3x3 convolution is not depthwise.
/// let dense = Conv2dParams::new(32, 32, (3, 3)).with_padding((1, 1));
/// assert_eq!(qconv2d_depthwise_workspace_len(&Conv2dShape::new(dense, 1, 28, 28)), None);
/// ```
pub fn qconv2d_depthwise_workspace_len(s: &Conv2dShape) -> Option<usize> {
    Some(depthwise_layout(s)?.bytes().div_ceil(4))
}

/// Two int8 values as the two 16-bit lanes of a word (`lo` in the low lane).
#[inline(always)]
fn pair(lo: i8, hi: i8) -> u32 {
    lo as i16 as u16 as u32 | (hi as i16 as u16 as u32) << 16
}

/// The depthwise path: `s` has [`depthwise_layout`] `l`, the sizes are checked and
/// `workspace` holds at least [`qconv2d_depthwise_workspace_len`] words.
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
    for b in 0..s.batch {
        for c in 0..p.in_channels {
            let xp = &x[(b * p.in_channels + c) * s.in_h * s.in_w..][..s.in_h * s.in_w];
            for iy in 0..rows {
                let at = (iy + ph) * l.width + pw;
                for (o, &v) in plane[at..at + cols].iter_mut().zip(&xp[iy * s.in_w..]) {
                    *o = v as u8;
                }
            }
            let k = &w[c * 9..c * 9 + 9];
            // Per kernel row: (w0, w2), (w1, 0), (0, w1).
            let taps: [[u32; 3]; 3] = core::array::from_fn(|r| {
                let (w0, w1, w2) = (k[3 * r], k[3 * r + 1], k[3 * r + 2]);
                [pair(w0, w2), pair(w1, 0), pair(0, w1)]
            });
            let start = bias.map_or(0, |b| b[c]);
            let rq = requant[c];
            let yp = &mut y[(b * p.out_channels + c) * oh * ow..][..oh * ow];
            for (oy, yr) in yp.chunks_exact_mut(ow).enumerate() {
                let top = oy * sh * l.width;
                let row = |r: usize, col: usize| {
                    let at = top + r * l.width + col;
                    let word = load4(as_i8(&plane[at..at + 4]));
                    (sxtb16(word), sxtb16_ror8(word))
                };
                if sw == 1 {
                    let mut pairs = yr.chunks_exact_mut(2);
                    for (i, o) in (&mut pairs).enumerate() {
                        let (mut a0, mut a1) = (start, start);
                        for (r, t) in taps.iter().enumerate() {
                            let (even, odd) = row(r, 2 * i);
                            a0 = smlad(t[1], odd, smlad(t[0], even, a0));
                            a1 = smlad(t[2], even, smlad(t[0], odd, a1));
                        }
                        o[0] = requantize(rq, a0, range);
                        o[1] = requantize(rq, a1, range);
                    }
                    if let [o] = pairs.into_remainder() {
                        let mut a = start;
                        for (r, t) in taps.iter().enumerate() {
                            let (even, odd) = row(r, ow - 1);
                            a = smlad(t[1], odd, smlad(t[0], even, a));
                        }
                        *o = requantize(rq, a, range);
                    }
                } else {
                    for (ox, o) in yr.iter_mut().enumerate() {
                        let mut a = start;
                        for (r, t) in taps.iter().enumerate() {
                            let (even, odd) = row(r, 2 * ox);
                            a = smlad(t[1], odd, smlad(t[0], even, a));
                        }
                        *o = requantize(rq, a, range);
                    }
                }
            }
        }
    }
}

/// Bytes as int8 values.
#[inline(always)]
fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size and alignment, and every bit pattern is valid.
    unsafe { &*(b as *const [u8] as *const [i8]) }
}
