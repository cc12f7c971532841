//! Per-channel bias add and its reduction.
//!
//! With `inner > 1` (NCHW planes) each channel's plane gets one splatted value; with
//! `inner == 1` (a linear layer's `[batch, features]`) a whole row of `channels` values is
//! added at once, so both layouts run on full vectors.

use crate::conv::rows;
use crate::error::{check_len, product, Result};
use crate::simd::{vectorize, Simd, WithSimd};

pub(crate) fn check_bias(
    outer: usize,
    channels: usize,
    inner: usize,
    bias_len: usize,
    x_len: usize,
) -> Result<()> {
    check_len("bias", bias_len, channels)?;
    check_len(
        "x",
        x_len,
        product("bias input", &[outer, channels, inner])?,
    )
}

/// `x[o, c, i] += bias[c]` over `[outer, channels, inner]`.
///
/// ```
/// use tinycnn_kernels::bias_add;
/// let mut x = [0.0; 8]; // [1, 2, 4]
/// bias_add(1, 2, 4, &[1.0, -1.0], &mut x).unwrap();
/// assert_eq!(x, [1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]);
/// ```
pub fn bias_add(
    outer: usize,
    channels: usize,
    inner: usize,
    bias: &[f32],
    x: &mut [f32],
) -> Result<()> {
    check_bias(outer, channels, inner, bias.len(), x.len())?;
    if x.is_empty() {
        return Ok(());
    }
    vectorize(BiasAdd {
        channels,
        inner,
        bias,
        x,
    });
    Ok(())
}

struct BiasAdd<'a> {
    channels: usize,
    inner: usize,
    bias: &'a [f32],
    x: &'a mut [f32],
}

impl WithSimd for BiasAdd<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        if self.inner == 1 {
            for row in self.x.chunks_exact_mut(self.channels) {
                rows::add_assign(s, self.bias, row);
            }
        } else {
            for (plane, &b) in self
                .x
                .chunks_exact_mut(self.inner)
                .zip(self.bias.iter().cycle())
            {
                rows::add_scalar(s, b, plane);
            }
        }
    }
}

/// `grad_bias[c] = sum over o, i of grad_y[o, c, i]` (overwrites).
pub fn bias_backward(
    outer: usize,
    channels: usize,
    inner: usize,
    grad_y: &[f32],
    grad_bias: &mut [f32],
) -> Result<()> {
    check_bias(outer, channels, inner, grad_bias.len(), grad_y.len())?;
    grad_bias.fill(0.0);
    if grad_y.is_empty() {
        return Ok(());
    }
    vectorize(BiasBackward {
        channels,
        inner,
        grad_y,
        grad_bias,
    });
    Ok(())
}

struct BiasBackward<'a> {
    channels: usize,
    inner: usize,
    grad_y: &'a [f32],
    grad_bias: &'a mut [f32],
}

impl WithSimd for BiasBackward<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        if self.inner == 1 {
            for row in self.grad_y.chunks_exact(self.channels) {
                rows::add_assign(s, row, self.grad_bias);
            }
        } else {
            for (block, _) in self
                .grad_y
                .chunks_exact(self.channels * self.inner)
                .zip(0..)
            {
                for (gb, plane) in self
                    .grad_bias
                    .iter_mut()
                    .zip(block.chunks_exact(self.inner))
                {
                    *gb += rows::sum(s, plane);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::reference;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn match_reference() {
        for (outer, channels, inner) in [
            (1, 1, 1),
            (3, 10, 1),
            (2, 3, 7),
            (4, 6, 28 * 28),
            (2, 17, 9),
            (0, 3, 4),
        ] {
            let n = outer * channels * inner;
            let x: Vec<f32> = (0..n).map(|i| ((i * 31) % 17) as f32 / 4.0 - 2.0).collect();
            let b: Vec<f32> = (0..channels).map(|c| c as f32 * 0.5 - 1.0).collect();
            let (mut a, mut r) = (x.clone(), x.clone());
            bias_add(outer, channels, inner, &b, &mut a).unwrap();
            reference::bias_add(outer, channels, inner, &b, &mut r).unwrap();
            assert_eq!(a, r, "bias_add {outer}x{channels}x{inner}");
            let (mut ga, mut gr) = (vec![f32::NAN; channels], vec![0.0; channels]);
            bias_backward(outer, channels, inner, &x, &mut ga).unwrap();
            reference::bias_backward(outer, channels, inner, &x, &mut gr).unwrap();
            for (p, q) in ga.iter().zip(&gr) {
                assert!(
                    (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                    "bias_backward {p} vs {q}"
                );
            }
        }
    }

    #[test]
    fn bad_lengths() {
        assert!(bias_add(2, 3, 4, &[0.0; 2], &mut [0.0; 24]).is_err());
        assert!(bias_backward(2, 3, 4, &[0.0; 23], &mut [0.0; 3]).is_err());
    }
}
