//! Gradient-norm clipping: PyTorch's `torch.nn.utils.clip_grad_norm_`.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Scales the gradients of `params` so that their total L2 norm is at most `max_norm`, and
/// returns the total norm before clipping (a 0-d tensor on the gradients' device), as
/// `torch.nn.utils.clip_grad_norm_(params, max_norm)` does with its defaults.
///
/// The total norm is the norm of the per-tensor norms; when it exceeds `max_norm` every
/// gradient is multiplied by `max_norm / (norm + 1e-6)`. Parameters without a gradient are
/// skipped; with none at all the norm is 0. A non-finite norm is not an error (PyTorch's
/// `error_if_nonfinite=False`): the gradients are scaled by the NaN or zero factor that
/// results, so they turn NaN and a training loop's divergence check reports the run.
///
/// The norms are computed with tensor ops on the gradients' device; the total is read back
/// once (4 bytes) to decide the factor, so on a GPU the call waits for the backward pass.
///
/// ```
/// use tinycnn::optim::clip_grad_norm_;
/// use tinycnn::Tensor;
/// let a = Tensor::new([1.0]).requires_grad_(true).unwrap();
/// let b = Tensor::new([1.0]).requires_grad_(true).unwrap();
/// a.set_grad(Some(Tensor::new([3.0]))).unwrap();
/// b.set_grad(Some(Tensor::new([4.0]))).unwrap();
/// let norm = clip_grad_norm_(&[a.clone(), b.clone()], 1.0).unwrap();
/// assert_eq!(norm.item().unwrap(), 5.0);
/// assert!((a.grad().unwrap().item().unwrap() - 0.6).abs() < 1e-6);
/// assert!((b.grad().unwrap().item().unwrap() - 0.8).abs() < 1e-6);
/// ```
pub fn clip_grad_norm_(params: &[Tensor], max_norm: f32) -> Result<Tensor> {
    if !(max_norm.is_finite() && max_norm >= 0.0) {
        return Err(Error::invalid(
            "clip_grad_norm_",
            format!("max_norm must be a finite number >= 0, got {max_norm}"),
        ));
    }
    let _guard = crate::no_grad_guard();
    let grads: Vec<(&Tensor, Tensor)> = params
        .iter()
        .filter_map(|p| p.grad().map(|g| (p, g)))
        .collect();
    if grads.is_empty() {
        return Ok(Tensor::scalar(0.0));
    }
    let norms = grads
        .iter()
        .map(|(_, g)| g.mul(g)?.sum_all().sqrt().reshape([1]))
        .collect::<Result<Vec<_>>>()?;
    let norms = Tensor::cat(&norms, 0)?;
    let total = norms.mul(&norms)?.sum_all().sqrt();
    // PyTorch: clamp(max_norm / (total + 1e-6), max=1.0), in f32; clamp keeps a NaN.
    let coef = max_norm / (total.item()? + 1e-6);
    let coef = if coef > 1.0 { 1.0 } else { coef };
    // Multiplying by 1 changes nothing, so an unclipped step leaves the gradients alone.
    if coef != 1.0 {
        for (p, g) in &grads {
            p.set_grad(Some(g.mul_scalar(coef)))?;
        }
    }
    Ok(total)
}
