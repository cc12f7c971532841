//! Quantization: activations and weights to int8, biases to i32, the sigmoid table.

use super::*;

/// The table of `q -> quantize(sigmoid(q * in_scale), out_scale)` for [`qlut_forward`].
///
/// ```
/// use tinycnn_kernels::int8::sigmoid_lut;
/// let t = sigmoid_lut(0.1, 1.0 / 127.0).unwrap();
/// assert_eq!(t[128], 64); // sigmoid(0) = 0.5 -> 63.5 -> 64
/// assert_eq!(t[255], 127); // sigmoid(12.7) ~ 1
/// ```
pub fn sigmoid_lut(in_scale: f32, out_scale: f32) -> Result<[i8; 256]> {
    check_scale(in_scale)?;
    check_scale(out_scale)?;
    let mut t = [0i8; 256];
    for (i, o) in t.iter_mut().enumerate() {
        let r = (i as i32 - 128) as f32 * in_scale;
        let s = 1.0 / (1.0 + libm::expf(-r));
        *o = quantize_one(s, out_scale);
    }
    Ok(t)
}

fn check_scale(scale: f32) -> Result<()> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(KernelError::InvalidArgument {
            what: "quantization scale must be finite and positive",
        })
    }
}

/// `clamp(round(r / scale), -127, 127)`, ties away from zero; NaN becomes 0.
#[inline]
pub fn quantize_one(r: f32, scale: f32) -> i8 {
    round_clamped(r / scale)
}

/// `clamp(round(v), -127, 127)` with ties away from zero (`libm::roundf`'s rounding), NaN
/// 0, without a call: `v` truncated (`as i32`: one `VCVT`, saturating, NaN 0) and the
/// fraction `v - t` decides the rounding. The fraction is exact in f32: for `|v| < 2^24`
/// `t` is 0 or within a factor of 2 of `v` (Sterbenz), above that `v` is an integer and
/// `t == v` until `t` saturates, where the saturating steps and the clamp give +-127 as
/// `roundf` does. Equal to the `roundf` form for every f32 (tests/int8.rs checks whole
/// binades, the special values, random bit patterns and every input quantization of a
/// byte pixel).
#[inline]
fn round_clamped(v: f32) -> i8 {
    let t = v as i32;
    let f = v - t as f32;
    let q = t
        .saturating_add((f >= 0.5) as i32)
        .saturating_sub((f <= -0.5) as i32);
    q.clamp(-QMAX, QMAX) as i8
}

/// Quantizes `x` at `scale` into `y` (see [`quantize_one`]).
pub fn quantize(x: &[f32], scale: f32, y: &mut [i8]) -> Result<()> {
    check_scale(scale)?;
    check_len("output", y.len(), x.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = quantize_one(v, scale);
    }
    Ok(())
}

/// `y = x * scale`.
pub fn dequantize(x: &[i8], scale: f32, y: &mut [f32]) -> Result<()> {
    check_len("output", y.len(), x.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = v as f32 * scale;
    }
    Ok(())
}

/// Symmetric per-output-channel weight quantization: `scales[c] = max|w[c]| / 127` (1 for an
/// all-zero channel) and `q = quantize(w, scales[c])`. `w` is `[channels, rest]`.
pub fn quantize_per_channel(
    w: &[f32],
    channels: usize,
    scales: &mut [f32],
    q: &mut [i8],
) -> Result<()> {
    if channels == 0 {
        return Err(KernelError::Zero { what: "channels" });
    }
    check_len("scales", scales.len(), channels)?;
    check_len("output", q.len(), w.len())?;
    if !w.len().is_multiple_of(channels) || w.is_empty() {
        return Err(KernelError::InvalidArgument {
            what: "weight length is not a non-zero multiple of the channel count",
        });
    }
    let per = w.len() / channels;
    for ((wc, qc), sc) in w
        .chunks_exact(per)
        .zip(q.chunks_exact_mut(per))
        .zip(scales.iter_mut())
    {
        let mut max = 0.0f32;
        for &v in wc {
            if !v.is_finite() {
                return Err(KernelError::InvalidArgument {
                    what: "weight is not finite",
                });
            }
            max = max.max(v.abs());
        }
        *sc = if max > 0.0 { max / QMAX as f32 } else { 1.0 };
        for (o, &v) in qc.iter_mut().zip(wc) {
            *o = quantize_one(v, *sc);
        }
    }
    Ok(())
}

/// `q[c] = round(bias[c] / (w_scales[c] * x_scale))`, the bias at its accumulator's scale.
pub fn quantize_bias(bias: &[f32], w_scales: &[f32], x_scale: f32, q: &mut [i32]) -> Result<()> {
    check_len("weight scales", w_scales.len(), bias.len())?;
    check_len("output", q.len(), bias.len())?;
    check_scale(x_scale)?;
    for ((o, &b), &ws) in q.iter_mut().zip(bias).zip(w_scales) {
        check_scale(ws)?;
        let v = libm::round(b as f64 / (ws as f64 * x_scale as f64));
        if !v.is_finite() || v.abs() > i32::MAX as f64 / 2.0 {
            return Err(KernelError::InvalidArgument {
                what: "quantized bias does not fit in i32",
            });
        }
        *o = v as i32;
    }
    Ok(())
}
