//! Max and average pooling, forward and backward.
//!
//! TODO(helper-conv): SIMD fast paths replace the reference calls below.

use crate::error::{check_len, Result};
use crate::reference;
use crate::shape::Pool2dShape;

/// Checks a pooling problem and its buffer lengths; returns the output (height, width).
pub(crate) fn check_pool2d(s: &Pool2dShape, x_len: usize, y_len: usize) -> Result<(usize, usize)> {
    s.validate()?;
    if s.in_h.saturating_mul(s.in_w) > u32::MAX as usize {
        return Err(crate::KernelError::Overflow {
            what: "pool plane (argmax is u32)",
        });
    }
    check_len("input", x_len, s.input_len()?)?;
    check_len("output", y_len, s.output_len()?)?;
    s.out_hw()
}

/// Max pooling; `argmax[o]` is the index within its `in_h * in_w` plane that output `o` took.
pub fn max_pool2d_forward(s: &Pool2dShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) -> Result<()> {
    reference::max_pool2d(s, x, y, argmax)
}

/// Gradient of [`max_pool2d_forward`] (overwrites `grad_x`).
pub fn max_pool2d_backward(s: &Pool2dShape, grad_y: &[f32], argmax: &[u32], grad_x: &mut [f32]) -> Result<()> {
    reference::max_pool2d_backward(s, grad_y, argmax, grad_x)
}

/// Average pooling (zero padding; divisor per `count_include_pad`).
pub fn avg_pool2d_forward(s: &Pool2dShape, x: &[f32], y: &mut [f32]) -> Result<()> {
    reference::avg_pool2d(s, x, y)
}

/// Gradient of [`avg_pool2d_forward`] (overwrites `grad_x`).
pub fn avg_pool2d_backward(s: &Pool2dShape, grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    reference::avg_pool2d_backward(s, grad_y, grad_x)
}
