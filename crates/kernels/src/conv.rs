//! 2-D cross-correlation ("convolution" in deep learning), forward and backward.
//!
//! TODO(helper-conv): fast paths (direct, im2col + GEMM, 1x1 straight to GEMM) replace the
//! reference calls below.

use crate::error::{check_len, check_workspace, mul, KernelError, Result};
use crate::reference;
use crate::shape::{Conv2dParams, Conv2dShape};

/// Checks a conv problem and its buffer lengths; returns the output (height, width).
pub(crate) fn check_conv2d(
    s: &Conv2dShape,
    x_len: usize,
    w_len: usize,
    y_len: usize,
) -> Result<(usize, usize)> {
    s.validate()?;
    check_len("input", x_len, s.input_len()?)?;
    check_len("weight", w_len, s.weight_len())?;
    check_len("output", y_len, s.output_len()?)?;
    s.out_hw()
}

/// Checks d2l's corr2d arguments; returns the output (height, width).
pub(crate) fn check_corr2d(
    x_len: usize,
    x_hw: (usize, usize),
    k_len: usize,
    k_hw: (usize, usize),
    y_len: usize,
) -> Result<(usize, usize)> {
    let p = Conv2dParams::new(1, 1, k_hw);
    p.validate()?;
    let (oh, ow) = p.out_hw(x_hw.0, x_hw.1)?;
    check_len("x", x_len, mul("corr2d input", x_hw.0, x_hw.1)?)?;
    check_len("k", k_len, mul("corr2d kernel", k_hw.0, k_hw.1)?)?;
    check_len("y", y_len, mul("corr2d output", oh, ow)?)?;
    Ok((oh, ow))
}

/// Which algorithm computes a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvAlgo {
    /// Chosen from the shape (see [`choose_algo`]).
    Auto,
    /// Loops over output pixels with SIMD along the output row; no workspace for the data.
    Direct,
    /// Unfold the input into columns, then one GEMM per image and group; 1x1 stride-1
    /// unpadded convolutions skip the unfold.
    Im2colGemm,
}

/// The algorithm [`ConvAlgo::Auto`] picks for `s`.
pub fn choose_algo(s: &Conv2dShape) -> ConvAlgo {
    let _ = s;
    ConvAlgo::Im2colGemm
}

/// Scratch elements [`conv2d_forward`] needs for `s` (0 for an invalid shape).
pub fn conv2d_workspace_len(s: &Conv2dShape) -> usize {
    let _ = s;
    0
}

/// Scratch elements [`conv2d_backward_input`] needs.
pub fn conv2d_backward_input_workspace_len(s: &Conv2dShape) -> usize {
    let _ = s;
    0
}

/// Scratch elements [`conv2d_backward_weight`] needs.
pub fn conv2d_backward_weight_workspace_len(s: &Conv2dShape) -> usize {
    let _ = s;
    0
}

/// d2l's `corr2d`, single channel, no padding, stride 1 (see [`reference::corr2d`]).
pub fn corr2d(
    x: &[f32],
    x_hw: (usize, usize),
    k: &[f32],
    k_hw: (usize, usize),
    y: &mut [f32],
) -> Result<()> {
    reference::corr2d(x, x_hw, k, k_hw, y)
}

/// `y = conv2d(x, w) + bias` with the algorithm picked by [`choose_algo`].
///
/// `x` is `[batch, in, in_h, in_w]`, `w` is `[out, in / groups, kh, kw]`, `bias` is `[out]`,
/// `y` is `[batch, out, out_h, out_w]`; `workspace` holds at least [`conv2d_workspace_len`].
pub fn conv2d_forward(
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    workspace: &mut [f32],
) -> Result<()> {
    conv2d_forward_with(ConvAlgo::Auto, s, x, w, bias, y, workspace)
}

/// [`conv2d_forward`] with an explicit algorithm.
pub fn conv2d_forward_with(
    algo: ConvAlgo,
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    workspace: &mut [f32],
) -> Result<()> {
    let _ = algo;
    check_workspace(workspace.len(), conv2d_workspace_len(s))?;
    reference::conv2d(s, x, w, bias, y)
}

/// Gradient with respect to the input (overwrites `grad_x`).
pub fn conv2d_backward_input(
    s: &Conv2dShape,
    grad_y: &[f32],
    w: &[f32],
    grad_x: &mut [f32],
    workspace: &mut [f32],
) -> Result<()> {
    check_workspace(workspace.len(), conv2d_backward_input_workspace_len(s))?;
    reference::conv2d_backward_input(s, grad_y, w, grad_x)
}

/// Gradient with respect to the weight, summed over the batch (overwrites `grad_w`).
pub fn conv2d_backward_weight(
    s: &Conv2dShape,
    x: &[f32],
    grad_y: &[f32],
    grad_w: &mut [f32],
    workspace: &mut [f32],
) -> Result<()> {
    check_workspace(workspace.len(), conv2d_backward_weight_workspace_len(s))?;
    reference::conv2d_backward_weight(s, x, grad_y, grad_w)
}

/// Gradient with respect to the bias (overwrites `grad_b`).
pub fn conv2d_backward_bias(s: &Conv2dShape, grad_y: &[f32], grad_b: &mut [f32]) -> Result<()> {
    reference::conv2d_backward_bias(s, grad_y, grad_b)
}

#[allow(dead_code)]
fn _unused(_: KernelError) {}
