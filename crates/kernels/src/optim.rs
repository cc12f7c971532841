//! Parameter updates of SGD (momentum, weight decay) and Adam, as PyTorch defines them.
//!
//! Both updates are written with the [`Simd`] layer's separate multiplies and adds in the
//! reference's order (no fused multiply-add), so they round exactly as
//! [`crate::reference::sgd_step`] and [`crate::reference::adam_step`] do. Adam's square root
//! and division are the ISA's vector instructions, which IEEE rounds correctly, like
//! `libm::sqrtf` and `/`. (The update called `libm::sqrtf` per element before: a software
//! square root, 8 ms per step of LeNet's 61,706 parameters; vectorized it takes 50 us.)

use crate::error::{check_len, KernelError, Result};
use crate::simd::{vectorize, Simd, WithSimd};

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
        SgdConfig {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
    // `!(x >= 0.0)` on purpose: NaN must fail the check.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub(crate) fn check(&self, param: usize, grad: usize, buf: usize) -> Result<()> {
        if !(self.lr >= 0.0) || !self.lr.is_finite() {
            return Err(KernelError::InvalidArgument {
                what: "SGD learning rate must be finite and >= 0",
            });
        }
        if !(self.momentum >= 0.0) || !(self.weight_decay >= 0.0) {
            return Err(KernelError::InvalidArgument {
                what: "SGD momentum and weight decay must be >= 0",
            });
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(KernelError::InvalidArgument {
                what: "Nesterov momentum requires a momentum and zero dampening",
            });
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
        AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
    // `!(x >= 0.0)` on purpose: NaN must fail the check.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub(crate) fn check(
        &self,
        step: u32,
        param: usize,
        grad: usize,
        m: usize,
        v: usize,
    ) -> Result<()> {
        if !(self.lr >= 0.0) || !self.lr.is_finite() {
            return Err(KernelError::InvalidArgument {
                what: "Adam learning rate must be finite and >= 0",
            });
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return Err(KernelError::InvalidArgument {
                what: "Adam betas must be in [0, 1)",
            });
        }
        if !(self.eps >= 0.0) || !(self.weight_decay >= 0.0) {
            return Err(KernelError::InvalidArgument {
                what: "Adam eps and weight decay must be >= 0",
            });
        }
        if step == 0 {
            return Err(KernelError::Zero {
                what: "Adam step (counts from 1)",
            });
        }
        check_len("grad", grad, param)?;
        check_len("m", m, param)?;
        check_len("v", v, param)
    }
}

/// One SGD step on one parameter tensor (see [`crate::reference::sgd_step`] for the rule).
///
/// ```
/// use tinycnn_kernels::{sgd_step, SgdConfig};
/// let mut p = [1.0, 2.0];
/// sgd_step(&SgdConfig::new(0.5), &mut p, &[2.0, -2.0], &mut [], true).unwrap();
/// assert_eq!(p, [0.0, 3.0]);
/// ```
pub fn sgd_step(
    cfg: &SgdConfig,
    param: &mut [f32],
    grad: &[f32],
    momentum_buf: &mut [f32],
    first_step: bool,
) -> Result<()> {
    cfg.check(param.len(), grad.len(), momentum_buf.len())?;
    vectorize(Sgd {
        cfg: *cfg,
        param,
        grad,
        buf: momentum_buf,
        first_step,
    });
    Ok(())
}

struct Sgd<'a> {
    cfg: SgdConfig,
    param: &'a mut [f32],
    grad: &'a [f32],
    buf: &'a mut [f32],
    first_step: bool,
}

/// The reference's update of one element; `b` is its momentum buffer element (ignored
/// without momentum).
#[inline(always)]
fn sgd_scalar(c: &SgdConfig, first_step: bool, p: &mut f32, g: f32, b: &mut f32) {
    let mut d = g + c.weight_decay * *p;
    if c.momentum != 0.0 {
        let nb = if first_step {
            d
        } else {
            c.momentum * *b + (1.0 - c.dampening) * d
        };
        *b = nb;
        d = if c.nesterov { d + c.momentum * nb } else { nb };
    }
    *p -= c.lr * d;
}

impl WithSimd for Sgd<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = S::LANES;
        let c = self.cfg;
        let n = self.param.len();
        let has_momentum = c.momentum != 0.0;
        let (wd, mom, damp, lr) = (
            s.splat(c.weight_decay),
            s.splat(c.momentum),
            s.splat(1.0 - c.dampening),
            s.splat(c.lr),
        );
        let mut i = 0;
        let me = self;
        while i + l <= n {
            let p = s.load(&me.param[i..]);
            let mut d = s.add(s.load(&me.grad[i..]), s.mul(wd, p));
            if has_momentum {
                let b = if me.first_step {
                    d
                } else {
                    s.add(s.mul(mom, s.load(&me.buf[i..])), s.mul(damp, d))
                };
                s.store(&mut me.buf[i..], b);
                d = if c.nesterov {
                    s.add(d, s.mul(mom, b))
                } else {
                    b
                };
            }
            s.store(&mut me.param[i..], s.sub(p, s.mul(lr, d)));
            i += l;
        }
        let mut unused = 0.0f32;
        for j in i..n {
            let b = if has_momentum {
                me.buf.get_mut(j).unwrap_or(&mut unused)
            } else {
                &mut unused
            };
            sgd_scalar(&c, me.first_step, &mut me.param[j], me.grad[j], b);
        }
    }
}

/// One Adam step on one parameter tensor; `step` counts from 1.
///
/// ```
/// use tinycnn_kernels::{adam_step, AdamConfig};
/// // The first Adam step moves each parameter by about `lr` against its gradient's sign.
/// let (mut p, mut m, mut v) = ([1.0f32], [0.0], [0.0]);
/// adam_step(&AdamConfig::new(0.1), 1, &mut p, &[3.0], &mut m, &mut v).unwrap();
/// assert!((p[0] - 0.9).abs() < 1e-6);
/// ```
pub fn adam_step(
    cfg: &AdamConfig,
    step: u32,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<()> {
    cfg.check(step, param.len(), grad.len(), m.len(), v.len())?;
    let bc1 = 1.0 - libm::powf(cfg.beta1, step as f32);
    let bc2 = 1.0 - libm::powf(cfg.beta2, step as f32);
    vectorize(Adam {
        cfg: *cfg,
        step_size: cfg.lr / bc1,
        bc2_sqrt: libm::sqrtf(bc2),
        param,
        grad,
        m,
        v,
    });
    Ok(())
}

struct Adam<'a> {
    cfg: AdamConfig,
    step_size: f32,
    bc2_sqrt: f32,
    param: &'a mut [f32],
    grad: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

impl WithSimd for Adam<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        // Every operation below is a correctly rounded IEEE one (no fused multiply-add), in
        // the reference's order, so the results match it bit for bit.
        let c = self.cfg;
        let n = self.param.len().min(self.grad.len());
        let n = n.min(self.m.len()).min(self.v.len());
        let (wd, b1, b2) = (s.splat(c.weight_decay), s.splat(c.beta1), s.splat(c.beta2));
        let (nb1, nb2) = (s.splat(1.0 - c.beta1), s.splat(1.0 - c.beta2));
        let (step_size, bc2_sqrt, eps) = (
            s.splat(self.step_size),
            s.splat(self.bc2_sqrt),
            s.splat(c.eps),
        );
        let (p, g) = (&mut self.param[..n], &self.grad[..n]);
        let (m, v) = (&mut self.m[..n], &mut self.v[..n]);
        let mut i = 0;
        while i + S::LANES <= n {
            let pv = s.load(&p[i..]);
            let gv = s.add(s.load(&g[i..]), s.mul(wd, pv));
            let mv = s.add(s.mul(b1, s.load(&m[i..])), s.mul(nb1, gv));
            let vv = s.add(s.mul(b2, s.load(&v[i..])), s.mul(s.mul(nb2, gv), gv));
            let denom = s.add(s.div(s.sqrt(vv), bc2_sqrt), eps);
            let pv = s.sub(pv, s.div(s.mul(step_size, mv), denom));
            s.store(&mut m[i..], mv);
            s.store(&mut v[i..], vv);
            s.store(&mut p[i..], pv);
            i += S::LANES;
        }
        for j in i..n {
            let gj = g[j] + c.weight_decay * p[j];
            m[j] = c.beta1 * m[j] + (1.0 - c.beta1) * gj;
            v[j] = c.beta2 * v[j] + (1.0 - c.beta2) * gj * gj;
            let denom = libm::sqrtf(v[j]) / self.bc2_sqrt + c.eps;
            p[j] -= self.step_size * m[j] / denom;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::reference;
    use std::vec::Vec;

    fn same_bits(what: &str, a: &[f32], b: &[f32]) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x.to_bits(), y.to_bits(), "{what} [{i}]: {x} vs {y}");
        }
    }

    fn vals(n: usize, k: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * k) % 19) as f32 / 9.0 - 1.0).collect()
    }

    #[test]
    fn sgd_matches_reference_bit_for_bit() {
        let configs = [
            SgdConfig::new(0.1),
            SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                dampening: 0.1,
                weight_decay: 1e-3,
                nesterov: false,
            },
            SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                dampening: 0.0,
                weight_decay: 0.0,
                nesterov: true,
            },
        ];
        for cfg in configs {
            for n in [0, 1, 7, 8, 9, 37] {
                let g = vals(n, 7);
                let (mut p1, mut p2) = (vals(n, 3), vals(n, 3));
                let (mut b1, mut b2) = (vals(n, 5), vals(n, 5));
                let (b1s, b2s): (&mut [f32], &mut [f32]) = if cfg.momentum == 0.0 {
                    (&mut [], &mut [])
                } else {
                    (&mut b1, &mut b2)
                };
                for first in [true, false, false] {
                    sgd_step(&cfg, &mut p1, &g, b1s, first).unwrap();
                    reference::sgd_step(&cfg, &mut p2, &g, b2s, first).unwrap();
                }
                same_bits("sgd param", &p1, &p2);
                same_bits("sgd momentum", b1s, b2s);
            }
        }
    }

    #[test]
    fn adam_matches_reference_bit_for_bit() {
        let cfg = AdamConfig {
            weight_decay: 0.01,
            ..AdamConfig::new(1e-3)
        };
        for n in [1, 5, 8, 16, 17, 45] {
            let (mut p1, mut p2) = (vals(n, 3), vals(n, 3));
            let (mut m1, mut m2) = (vals(n, 2), vals(n, 2));
            let (mut v1, mut v2) = (
                vals(n, 4).iter().map(|x| x * x).collect::<Vec<_>>(),
                vals(n, 4).iter().map(|x| x * x).collect::<Vec<_>>(),
            );
            for step in 1..4 {
                let g = vals(n, 7 + step as usize);
                adam_step(&cfg, step, &mut p1, &g, &mut m1, &mut v1).unwrap();
                reference::adam_step(&cfg, step, &mut p2, &g, &mut m2, &mut v2).unwrap();
            }
            same_bits("adam param", &p1, &p2);
            same_bits("adam m", &m1, &m2);
            same_bits("adam v", &v1, &v2);
        }
    }

    #[test]
    fn config_checks() {
        let mut p = [0.0; 2];
        assert!(sgd_step(&SgdConfig::new(-1.0), &mut p, &[0.0; 2], &mut [], true).is_err());
        let nesterov_without_momentum = SgdConfig {
            nesterov: true,
            ..SgdConfig::new(0.1)
        };
        assert!(sgd_step(&nesterov_without_momentum, &mut p, &[0.0; 2], &mut [], true).is_err());
        let momentum = SgdConfig {
            momentum: 0.9,
            ..SgdConfig::new(0.1)
        };
        assert!(sgd_step(&momentum, &mut p, &[0.0; 2], &mut [0.0; 1], true).is_err());
        let (mut m, mut v) = ([0.0; 2], [0.0; 2]);
        assert!(adam_step(&AdamConfig::new(0.1), 0, &mut p, &[0.0; 2], &mut m, &mut v).is_err());
        let bad_beta = AdamConfig {
            beta1: 1.0,
            ..AdamConfig::new(0.1)
        };
        assert!(adam_step(&bad_beta, 1, &mut p, &[0.0; 2], &mut m, &mut v).is_err());
    }
}
