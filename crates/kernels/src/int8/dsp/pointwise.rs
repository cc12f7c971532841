//! The pointwise path of [`qconv2d_forward`]: 1x1 convolutions with stride 1, no padding
//! and one group (MobileNet's and DS-CNN's pointwise layers) as the linear layer's kernel.
//!
//! A 1x1 convolution is a linear layer applied to every pixel: output channel `o` of pixel
//! `p` is `sum_c w[o, c] x[c, p]`. The input is channel-major (`x[c, p]`), the linear kernel
//! wants each pixel's channels in a row, so a band of pixels is transposed into the
//! workspace (`[band, in]`), run through [`super::qlinear_forward`] (four output channels
//! at a time against one pixel's channels, widened on the fly: about 1.6 cycles per
//! multiply-accumulate on the Cortex-M4) into the workspace (`[band, out]`), and
//! transposed back into the output's planes.

use super::super::{ActRange, QLinearShape, Requant};
#[cfg(doc)]
use super::qconv2d_forward;
use crate::error::Result;
use crate::shape::Conv2dShape;

/// Pixels per band at most: the workspace of [`qconv2d_pointwise_workspace_len_fast`] (a
/// band's transposes cost about a cycle per byte, a band's call a few hundred cycles).
const FAST_BAND: usize = 16;

/// Whether `s` is a pointwise shape (1x1 kernel, stride 1, no padding, one group).
fn is_pointwise(s: &Conv2dShape) -> bool {
    let p = &s.params;
    p.kernel == (1, 1)
        && p.stride == (1, 1)
        && p.padding == (0, 0)
        && p.groups == 1
        && p.in_channels > 0
        && p.out_channels > 0
}

/// Words of workspace for bands of `band` pixels (`None` on overflow).
fn band_words(s: &Conv2dShape, band: usize) -> Option<usize> {
    let row = s.params.in_channels.checked_add(s.params.out_channels)?;
    Some(band.checked_mul(row)?.div_ceil(4))
}

/// Words of workspace with which [`qconv2d_forward`] takes its pointwise path (bands of one
/// pixel: its input and output channels), or `None` for a shape it does not take (a 1x1
/// kernel with stride 1, no padding and one group).
///
/// ```
/// use tinycnn_kernels::int8::dsp::qconv2d_pointwise_workspace_len;
/// use tinycnn_kernels::{Conv2dParams, Conv2dShape};
/// let p = Conv2dParams::new(32, 64, (1, 1));
/// assert_eq!(qconv2d_pointwise_workspace_len(&Conv2dShape::new(p, 1, 14, 14)), Some(24));
/// ```
pub fn qconv2d_pointwise_workspace_len(s: &Conv2dShape) -> Option<usize> {
    match is_pointwise(s) {
        true => band_words(s, 1),
        false => None,
    }
}

/// The pointwise path's workspace for bands of up to 16 pixels (the image's, if fewer).
pub fn qconv2d_pointwise_workspace_len_fast(s: &Conv2dShape) -> Option<usize> {
    if !is_pointwise(s) {
        return None;
    }
    band_words(s, (s.in_h * s.in_w).clamp(1, FAST_BAND))
}

/// The pointwise path: `s` is a pointwise shape, the sizes are checked and `workspace`
/// holds at least [`qconv2d_pointwise_workspace_len`] words.
#[allow(clippy::too_many_arguments)]
pub(super) fn qconv2d_pointwise(
    s: &Conv2dShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    requant: &[Requant],
    range: ActRange,
    y: &mut [i8],
    workspace: &mut [u32],
) -> Result<()> {
    let (cin, cout) = (s.params.in_channels, s.params.out_channels);
    let pixels = s.in_h * s.in_w;
    // SAFETY: i8 and u32 have no invalid bit patterns, and i8's alignment divides u32's.
    let bytes: &mut [i8] = unsafe {
        core::slice::from_raw_parts_mut(workspace.as_mut_ptr() as *mut i8, 4 * workspace.len())
    };
    let band = (bytes.len() / (cin + cout)).min(pixels).max(1);
    let (rows_in, rest) = bytes.split_at_mut(band * cin);
    let rows_out = &mut rest[..band * cout];
    for b in 0..s.batch {
        let xb = &x[b * cin * pixels..][..cin * pixels];
        let yb = &mut y[b * cout * pixels..][..cout * pixels];
        let mut first = 0;
        while first < pixels {
            let n = band.min(pixels - first);
            // rows_in[j][c] = x[c][first + j]: each pixel's channels, a stride apart.
            for (j, row) in rows_in.chunks_exact_mut(cin).take(n).enumerate() {
                gather(row, &xb[first + j..], pixels);
            }
            let shape = QLinearShape::new(n, cin, cout);
            super::qlinear_forward(
                &shape,
                &rows_in[..n * cin],
                w,
                bias,
                requant,
                range,
                &mut rows_out[..n * cout],
            )?;
            // y[o][first + j] = rows_out[j][o]: each pixel's outputs, a stride apart.
            for (j, row) in rows_out.chunks_exact(cout).take(n).enumerate() {
                scatter(&mut yb[first + j..], pixels, row);
            }
            first += n;
        }
    }
    Ok(())
}

/// `row[c] = x[c * stride]` for every `c` (`x` holds them), four per loop pass.
#[inline(always)]
fn gather(row: &mut [i8], x: &[i8], stride: usize) {
    assert!(row.is_empty() || (row.len() - 1) * stride < x.len());
    let src = x.as_ptr();
    let mut quads = row.chunks_exact_mut(4);
    let mut at = 0;
    // SAFETY: every index read is `c * stride` for a `c < row.len()`, inside `x` (the
    // assert above).
    unsafe {
        for q in &mut quads {
            q[0] = *src.add(at);
            q[1] = *src.add(at + stride);
            q[2] = *src.add(at + 2 * stride);
            q[3] = *src.add(at + 3 * stride);
            at += 4 * stride;
        }
        for v in quads.into_remainder() {
            *v = *src.add(at);
            at += stride;
        }
    }
}

/// `y[o * stride] = row[o]` for every `o` (`y` holds them), four per loop pass.
#[inline(always)]
fn scatter(y: &mut [i8], stride: usize, row: &[i8]) {
    assert!(row.is_empty() || (row.len() - 1) * stride < y.len());
    let dst = y.as_mut_ptr();
    let mut quads = row.chunks_exact(4);
    let mut at = 0;
    // SAFETY: every index written is `o * stride` for an `o < row.len()`, inside `y` (the
    // assert above).
    unsafe {
        for q in &mut quads {
            *dst.add(at) = q[0];
            *dst.add(at + stride) = q[1];
            *dst.add(at + 2 * stride) = q[2];
            *dst.add(at + 3 * stride) = q[3];
            at += 4 * stride;
        }
        for &v in quads.remainder() {
            *dst.add(at) = v;
            at += stride;
        }
    }
}
