//! Single-precision GEMM: packed panels, a register-blocked micro-kernel per ISA.
//!
//! TODO(helper-gemm): the packing/blocking driver and micro-kernels replace the reference call.

use crate::error::{check_workspace, Result};
use crate::reference;
use crate::shape::GemmShape;

/// Scratch elements [`sgemm`] needs for an `m x n x k` product (independent of the ISA picked at run time).
pub fn sgemm_workspace_len(m: usize, n: usize, k: usize) -> usize {
    let _ = (m, n, k);
    0
}

/// `C = alpha op(A) op(B) + beta C` (row-major; see [`GemmShape`]). With `beta == 0` C is not read.
pub fn sgemm(g: &GemmShape, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32], workspace: &mut [f32]) -> Result<()> {
    check_workspace(workspace.len(), sgemm_workspace_len(g.m, g.n, g.k))?;
    reference::sgemm(g, alpha, a, b, beta, c)
}
