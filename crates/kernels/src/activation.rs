//! Elementwise activations and their gradients.
//!
//! TODO(helper-conv): SIMD fast paths replace the reference calls below.

use crate::error::{check_len, Result};
use crate::reference;

pub(crate) fn check_unary(x_len: usize, y_len: usize) -> Result<()> {
    check_len("output", y_len, x_len)
}

/// `y = max(x, 0)`.
pub fn relu_forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    reference::relu(x, y)
}
/// `grad_x = grad_y * (x > 0)`.
pub fn relu_backward(x: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    reference::relu_backward(x, grad_y, grad_x)
}
/// `y = 1 / (1 + exp(-x))`.
pub fn sigmoid_forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    reference::sigmoid(x, y)
}
/// `grad_x = grad_y * y * (1 - y)` from the forward output `y`.
pub fn sigmoid_backward(y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    reference::sigmoid_backward(y, grad_y, grad_x)
}
/// `y = tanh(x)`.
pub fn tanh_forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    reference::tanh(x, y)
}
/// `grad_x = grad_y * (1 - y^2)` from the forward output `y`.
pub fn tanh_backward(y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    reference::tanh_backward(y, grad_y, grad_x)
}
