//! Parameter updates of SGD (momentum, weight decay) and Adam, as PyTorch defines them.
//!
//! TODO(helper-conv): SIMD fast paths replace the reference calls below.

use crate::error::{check_len, KernelError, Result};
use crate::reference;

/// Hyper-parameters of `torch.optim.SGD`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

impl SgdConfig {
    /// Plain SGD with learning rate `lr`.
    pub const fn new(lr: f32) -> Self {
        SgdConfig { lr, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
    pub(crate) fn check(&self, param: usize, grad: usize, buf: usize) -> Result<()> {
        if !(self.lr >= 0.0) || !self.lr.is_finite() {
            return Err(KernelError::InvalidArgument { what: "SGD learning rate must be finite and >= 0" });
        }
        if !(self.momentum >= 0.0) || !(self.weight_decay >= 0.0) {
            return Err(KernelError::InvalidArgument { what: "SGD momentum and weight decay must be >= 0" });
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(KernelError::InvalidArgument { what: "Nesterov momentum requires a momentum and zero dampening" });
        }
        check_len("grad", grad, param)?;
        if self.momentum != 0.0 {
            check_len("momentum_buf", buf, param)?;
        }
        Ok(())
    }
}

/// Hyper-parameters of `torch.optim.Adam`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl AdamConfig {
    /// PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub const fn new(lr: f32) -> Self {
        AdamConfig { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
    pub(crate) fn check(&self, step: u32, param: usize, grad: usize, m: usize, v: usize) -> Result<()> {
        if !(self.lr >= 0.0) || !self.lr.is_finite() {
            return Err(KernelError::InvalidArgument { what: "Adam learning rate must be finite and >= 0" });
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return Err(KernelError::InvalidArgument { what: "Adam betas must be in [0, 1)" });
        }
        if !(self.eps >= 0.0) || !(self.weight_decay >= 0.0) {
            return Err(KernelError::InvalidArgument { what: "Adam eps and weight decay must be >= 0" });
        }
        if step == 0 {
            return Err(KernelError::Zero { what: "Adam step (counts from 1)" });
        }
        check_len("grad", grad, param)?;
        check_len("m", m, param)?;
        check_len("v", v, param)
    }
}

/// One SGD step on one parameter tensor (see [`reference::sgd_step`] for the rule).
pub fn sgd_step(cfg: &SgdConfig, param: &mut [f32], grad: &[f32], momentum_buf: &mut [f32], first_step: bool) -> Result<()> {
    reference::sgd_step(cfg, param, grad, momentum_buf, first_step)
}

/// One Adam step on one parameter tensor; `step` counts from 1.
pub fn adam_step(cfg: &AdamConfig, step: u32, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) -> Result<()> {
    reference::adam_step(cfg, step, param, grad, m, v)
}
