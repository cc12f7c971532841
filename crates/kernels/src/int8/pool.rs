//! int8 pooling (max, average, and average of a table op's output) and the table op.

use super::*;

/// Max pooling on int8 (the scale is unchanged; padding never wins).
pub fn qmax_pool2d_forward(s: &Pool2dShape, x: &[i8], y: &mut [i8]) -> Result<()> {
    let (oh, ow) = check_pool2d(s, x.len(), y.len())?;
    let p = &s.params;
    let plane_in = s.in_h * s.in_w;
    if is_2x2_stride_2(s) {
        pool_2x2(s, oh, ow, x, y, |a, b, c, d| a.max(b).max(c.max(d)));
        return Ok(());
    }
    for (xp, yp) in x.chunks_exact(plane_in).zip(y.chunks_exact_mut(oh * ow)) {
        for oy in 0..oh {
            let (h0, h1) = window(oy, p.stride.0, p.padding.0, p.kernel.0, s.in_h);
            for ox in 0..ow {
                let (w0, w1) = window(ox, p.stride.1, p.padding.1, p.kernel.1, s.in_w);
                let mut best = i8::MIN;
                for iy in h0..h1 {
                    for &v in &xp[iy * s.in_w + w0..iy * s.in_w + w1] {
                        best = best.max(v);
                    }
                }
                yp[oy * ow + ox] = best;
            }
        }
    }
    Ok(())
}

/// Average pooling on int8: the window sum divided by the divisor (PyTorch's
/// `count_include_pad` rule), rounded half away from zero. The scale is unchanged.
pub fn qavg_pool2d_forward(s: &Pool2dShape, x: &[i8], y: &mut [i8]) -> Result<()> {
    qavg_pool2d_with(
        s,
        x,
        y,
        |v| v,
        |s, oh, ow, x, y| {
            pool_2x2(s, oh, ow, x, y, |a, b, c, d| {
                round_quarter(a as i32 + b as i32 + c as i32 + d as i32) as i8
            })
        },
    )
}

/// A table op followed by average pooling, in one pass: [`qlut_forward`] of `x` into a
/// buffer, then [`qavg_pool2d_forward`] of that, bit for bit, with each input value looked
/// up as the window sums it (the table's output never stored). The padding is the table's
/// output's padding: zeros that count in the divisor under `count_include_pad`, as in
/// PyTorch's `avg_pool2d(sigmoid(x))`. The output has the table's output scale.
///
/// ```
/// use tinycnn_kernels::int8::qlut_avg_pool2d_forward;
/// use tinycnn_kernels::shape::{Pool2dParams, Pool2dShape};
/// let mut table = [0i8; 256];
/// table[128 + 1] = 10; // 1 -> 10, everything else -> 0
/// let s = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 2, 2);
/// let mut y = [0i8; 1];
/// qlut_avg_pool2d_forward(&table, &s, &[1, 1, 1, 5], &mut y).unwrap();
/// assert_eq!(y, [8]); // (10 + 10 + 10 + 0) / 4 = 7.5, rounded half away from zero
/// ```
pub fn qlut_avg_pool2d_forward(
    table: &[i8; 256],
    s: &Pool2dShape,
    x: &[i8],
    y: &mut [i8],
) -> Result<()> {
    let look = |v: i8| table[(v as u8 ^ 0x80) as usize];
    qavg_pool2d_with(s, x, y, look, |s, oh, ow, x, y| {
        pool_2x2(s, oh, ow, x, y, |a, b, c, d| {
            let sum = look(a) as i32 + look(b) as i32 + look(c) as i32 + look(d) as i32;
            round_quarter(sum) as i8
        })
    })
}

/// [`qavg_pool2d_forward`] of `map` of each input value, with `two_by_two(s, oh, ow, x, y)`
/// computing LeNet's windows (2x2, stride 2, no padding: every window holds 4 values,
/// whatever `count_include_pad` says) once the shapes are checked: the DSP kernels bring
/// their own.
#[inline(always)]
pub(crate) fn qavg_pool2d_with(
    s: &Pool2dShape,
    x: &[i8],
    y: &mut [i8],
    map: impl Fn(i8) -> i8,
    two_by_two: impl FnOnce(&Pool2dShape, usize, usize, &[i8], &mut [i8]),
) -> Result<()> {
    let (oh, ow) = check_pool2d(s, x.len(), y.len())?;
    let p = &s.params;
    let plane_in = s.in_h * s.in_w;
    if is_2x2_stride_2(s) {
        two_by_two(s, oh, ow, x, y);
        return Ok(());
    }
    let full = (p.kernel.0 * p.kernel.1) as i32;
    for (xp, yp) in x.chunks_exact(plane_in).zip(y.chunks_exact_mut(oh * ow)) {
        for oy in 0..oh {
            let (h0, h1) = window(oy, p.stride.0, p.padding.0, p.kernel.0, s.in_h);
            for ox in 0..ow {
                let (w0, w1) = window(ox, p.stride.1, p.padding.1, p.kernel.1, s.in_w);
                let mut sum = 0i32;
                for iy in h0..h1 {
                    for &v in &xp[iy * s.in_w + w0..iy * s.in_w + w1] {
                        sum += map(v) as i32;
                    }
                }
                let div = if p.count_include_pad {
                    full
                } else {
                    ((h1 - h0) * (w1 - w0)) as i32
                };
                yp[oy * ow + ox] = div_round(sum, div) as i8;
            }
        }
    }
    Ok(())
}

/// LeNet's pooling: 2x2 windows, stride 2, no padding.
pub(crate) fn is_2x2_stride_2(s: &Pool2dShape) -> bool {
    let p = &s.params;
    p.kernel == (2, 2) && p.stride == (2, 2) && p.padding == (0, 0)
}

/// 2x2 windows with stride 2 and no padding, `f` of each window's four values: two input
/// rows per output row, no window arithmetic per output.
#[inline(always)]
fn pool_2x2(
    s: &Pool2dShape,
    oh: usize,
    ow: usize,
    x: &[i8],
    y: &mut [i8],
    f: impl Fn(i8, i8, i8, i8) -> i8,
) {
    let plane_in = s.in_h * s.in_w;
    for (xp, yp) in x.chunks_exact(plane_in).zip(y.chunks_exact_mut(oh * ow)) {
        for (oy, yr) in yp.chunks_exact_mut(ow).enumerate() {
            let r0 = &xp[2 * oy * s.in_w..][..2 * ow];
            let r1 = &xp[(2 * oy + 1) * s.in_w..][..2 * ow];
            for ((o, a), b) in yr
                .iter_mut()
                .zip(r0.chunks_exact(2))
                .zip(r1.chunks_exact(2))
            {
                *o = f(a[0], a[1], b[0], b[1]);
            }
        }
    }
}

/// The input rows (or columns) `[start, end)` of pooling window `o`, padding cut off.
#[inline]
fn window(o: usize, stride: usize, pad: usize, k: usize, size: usize) -> (usize, usize) {
    let start = o * stride;
    let lo = start.max(pad) - pad;
    let hi = (start + k).min(size + pad).saturating_sub(pad);
    (lo, hi.max(lo))
}

/// [`div_round`]`(num, 4)` without branches: the magnitude rounded, the sign put back.
#[inline(always)]
fn round_quarter(num: i32) -> i32 {
    let sign = num >> 31;
    let mag = (num ^ sign) - sign;
    (((mag + 2) >> 2) ^ sign) - sign
}

/// `num / den` rounded half away from zero (`den > 0`).
#[inline]
fn div_round(num: i32, den: i32) -> i32 {
    if num >= 0 {
        (num + den / 2) / den
    } else {
        -((-num + den / 2) / den)
    }
}

/// `y[i] = table[x[i] + 128]`: an elementwise function of an int8 tensor, tabulated.
pub fn qlut_forward(table: &[i8; 256], x: &[i8], y: &mut [i8]) -> Result<()> {
    check_len("output", y.len(), x.len())?;
    // `v + 128` as the byte `v ^ 0x80`: an index the compiler knows is below 256. Four
    // values per word read, so the loop's own cost is shared by four lookups.
    let (mut yc, mut xc) = (y.chunks_exact_mut(4), x.chunks_exact(4));
    for (o, c) in (&mut yc).zip(&mut xc) {
        let v = u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]) ^ 0x8080_8080;
        o[0] = table[(v & 0xff) as usize];
        o[1] = table[(v >> 8 & 0xff) as usize];
        o[2] = table[(v >> 16 & 0xff) as usize];
        o[3] = table[(v >> 24) as usize];
    }
    for (o, &v) in yc.into_remainder().iter_mut().zip(xc.remainder()) {
        *o = table[(v as u8 ^ 0x80) as usize];
    }
    Ok(())
}

/// [`qlut_forward`] in place.
pub fn qlut_inplace(table: &[i8; 256], x: &mut [i8]) {
    for v in x {
        *v = table[(*v as u8 ^ 0x80) as usize];
    }
}
