//! Per-channel bias add and its reduction.
//!
//! TODO(helper-conv): SIMD fast paths replace the reference calls below.

use crate::error::{check_len, product, Result};
use crate::reference;

pub(crate) fn check_bias(outer: usize, channels: usize, inner: usize, bias_len: usize, x_len: usize) -> Result<()> {
    check_len("bias", bias_len, channels)?;
    check_len("x", x_len, product("bias input", &[outer, channels, inner])?)
}

/// `x[o, c, i] += bias[c]` over `[outer, channels, inner]`.
pub fn bias_add(outer: usize, channels: usize, inner: usize, bias: &[f32], x: &mut [f32]) -> Result<()> {
    reference::bias_add(outer, channels, inner, bias, x)
}
/// `grad_bias[c] = sum over o, i of grad_y[o, c, i]` (overwrites).
pub fn bias_backward(outer: usize, channels: usize, inner: usize, grad_y: &[f32], grad_bias: &mut [f32]) -> Result<()> {
    reference::bias_backward(outer, channels, inner, grad_y, grad_bias)
}
