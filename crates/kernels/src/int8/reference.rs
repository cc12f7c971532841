//! Naive loops that define the int8 kernels (exact integer twins): obvious loops with
//! per-tap bounds checks, which every fast kernel of [`super`] and [`super::dsp`] must match bit for bit.

use super::*;

/// The input position a tap reads, or `None` in the zero padding.
fn tap(out: usize, k: usize, stride: usize, pad: usize, dil: usize, size: usize) -> Option<usize> {
    let pos = (out * stride + k * dil).checked_sub(pad)?;
    (pos < size).then_some(pos)
}

/// Twin of [`super::qconv2d_forward`].
pub fn qconv2d(
    s: &Conv2dShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    requant: &[Requant],
    range: ActRange,
    y: &mut [i8],
) -> Result<()> {
    let (oh, ow) = check_conv2d(s, x.len(), w.len(), y.len())?;
    check_bias_requant(s.params.out_channels, bias, Some(requant))?;
    range.validate()?;
    let p = &s.params;
    let (cin_g, cout_g) = (p.in_per_group(), p.out_per_group());
    for n in 0..s.batch {
        for oc in 0..p.out_channels {
            let grp = oc / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc: i32 = bias.map_or(0, |b| b[oc]);
                    for icl in 0..cin_g {
                        let ic = grp * cin_g + icl;
                        for ky in 0..p.kernel.0 {
                            let Some(iy) =
                                tap(oy, ky, p.stride.0, p.padding.0, p.dilation.0, s.in_h)
                            else {
                                continue;
                            };
                            for kx in 0..p.kernel.1 {
                                let Some(ix) =
                                    tap(ox, kx, p.stride.1, p.padding.1, p.dilation.1, s.in_w)
                                else {
                                    continue;
                                };
                                let xv = x[((n * p.in_channels + ic) * s.in_h + iy) * s.in_w + ix];
                                let wv =
                                    w[((oc * cin_g + icl) * p.kernel.0 + ky) * p.kernel.1 + kx];
                                acc += xv as i32 * wv as i32;
                            }
                        }
                    }
                    y[((n * p.out_channels + oc) * oh + oy) * ow + ox] =
                        requant[oc].apply_clamped(acc, range);
                }
            }
        }
    }
    Ok(())
}

/// Twin of [`super::qlinear_forward_i32`].
pub fn qlinear_i32(
    s: &QLinearShape,
    x: &[i8],
    w: &[i8],
    bias: Option<&[i32]>,
    y: &mut [i32],
) -> Result<()> {
    s.check(x.len(), w.len(), y.len())?;
    check_bias_requant(s.out_features, bias, None)?;
    for b in 0..s.batch {
        for o in 0..s.out_features {
            let mut acc: i32 = bias.map_or(0, |v| v[o]);
            for i in 0..s.in_features {
                acc += x[b * s.in_features + i] as i32 * w[o * s.in_features + i] as i32;
            }
            y[b * s.out_features + o] = acc;
        }
    }
    Ok(())
}

/// Twin of [`super::qlinear_forward`].
pub fn qlinear(
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
    for b in 0..s.batch {
        for o in 0..s.out_features {
            let mut acc: i32 = bias.map_or(0, |v| v[o]);
            for i in 0..s.in_features {
                acc += x[b * s.in_features + i] as i32 * w[o * s.in_features + i] as i32;
            }
            y[b * s.out_features + o] = requant[o].apply_clamped(acc, range);
        }
    }
    Ok(())
}

/// Twin of [`super::qmax_pool2d_forward`] and [`super::qavg_pool2d_forward`]
/// (`average` picks which).
pub fn qpool2d(s: &Pool2dShape, average: bool, x: &[i8], y: &mut [i8]) -> Result<()> {
    pool(s, average, x, y, |v| v)
}

/// Twin of [`super::qlut_avg_pool2d_forward`]: [`qpool2d`] (average) of
/// `table[v + 128]` for each input value `v` in a window.
pub fn qlut_avg_pool2d(table: &[i8; 256], s: &Pool2dShape, x: &[i8], y: &mut [i8]) -> Result<()> {
    pool(s, true, x, y, |v| table[(v as i32 + 128) as usize])
}

fn pool(
    s: &Pool2dShape,
    average: bool,
    x: &[i8],
    y: &mut [i8],
    map: impl Fn(i8) -> i8,
) -> Result<()> {
    let (oh, ow) = check_pool2d(s, x.len(), y.len())?;
    let p = &s.params;
    for pl in 0..s.batch * s.channels {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = i8::MIN;
                let mut sum = 0i32;
                let mut count = 0i32;
                for ky in 0..p.kernel.0 {
                    for kx in 0..p.kernel.1 {
                        let iy = tap(oy, ky, p.stride.0, p.padding.0, 1, s.in_h);
                        let ix = tap(ox, kx, p.stride.1, p.padding.1, 1, s.in_w);
                        if let (Some(iy), Some(ix)) = (iy, ix) {
                            let v = map(x[(pl * s.in_h + iy) * s.in_w + ix]);
                            best = best.max(v);
                            sum += v as i32;
                            count += 1;
                        }
                    }
                }
                let out = if average {
                    let div = if p.count_include_pad {
                        (p.kernel.0 * p.kernel.1) as i32
                    } else {
                        count
                    };
                    // Round half away from zero, in exact rational arithmetic.
                    let q = sum / div;
                    let r = sum % div;
                    if 2 * r.abs() >= div {
                        (q + sum.signum()) as i8
                    } else {
                        q as i8
                    }
                } else {
                    best
                };
                y[(pl * oh + oy) * ow + ox] = out;
            }
        }
    }
    Ok(())
}
