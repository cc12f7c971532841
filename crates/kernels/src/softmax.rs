//! Row-wise softmax, log-softmax and cross-entropy, forward and backward.
//!
//! TODO(helper-conv): SIMD fast paths replace the reference calls below.

use crate::error::{check_len, mul, KernelError, Result};
use crate::reference;

pub(crate) fn check_rows(rows: usize, cols: usize, x_len: usize, y_len: usize) -> Result<()> {
    if rows == 0 {
        return Err(KernelError::Zero { what: "rows" });
    }
    if cols == 0 {
        return Err(KernelError::Zero { what: "cols" });
    }
    let n = mul("softmax matrix", rows, cols)?;
    check_len("input", x_len, n)?;
    check_len("output", y_len, n)
}

pub(crate) fn check_labels(rows: usize, cols: usize, labels: &[u32]) -> Result<()> {
    check_len("labels", labels.len(), rows)?;
    for (row, &l) in labels.iter().enumerate() {
        if l as usize >= cols {
            return Err(KernelError::LabelOutOfRange {
                row,
                label: l as usize,
                classes: cols,
            });
        }
    }
    Ok(())
}

/// Row-wise softmax of a `rows x cols` matrix.
pub fn softmax_forward(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    reference::softmax(rows, cols, x, y)
}
/// Gradient of [`softmax_forward`] from its output `y`.
pub fn softmax_backward(rows: usize, cols: usize, y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    reference::softmax_backward(rows, cols, y, grad_y, grad_x)
}
/// Row-wise log-softmax.
pub fn log_softmax_forward(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    reference::log_softmax(rows, cols, x, y)
}
/// Gradient of [`log_softmax_forward`] from its output `y`.
pub fn log_softmax_backward(rows: usize, cols: usize, y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    reference::log_softmax_backward(rows, cols, y, grad_y, grad_x)
}
/// Mean cross-entropy of logits against labels (PyTorch's `F.cross_entropy`).
pub fn cross_entropy_forward(rows: usize, cols: usize, logits: &[f32], labels: &[u32]) -> Result<f32> {
    reference::cross_entropy(rows, cols, logits, labels)
}
/// `grad_logits = (softmax(logits) - onehot(labels)) * grad_loss / rows`.
pub fn cross_entropy_backward(rows: usize, cols: usize, logits: &[f32], labels: &[u32], grad_loss: f32, grad_logits: &mut [f32]) -> Result<()> {
    reference::cross_entropy_backward(rows, cols, logits, labels, grad_loss, grad_logits)
}
