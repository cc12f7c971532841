//! Optimizers over parameter lists: [`Sgd`] and [`Adam`], stepping with the kernel crate's
//! `sgd_step` / `adam_step`. Their state exports to a [`StateDict`] so training can be
//! checkpointed and resumed exactly. Learning-rate schedules ([`StepLR`],
//! [`CosineAnnealingLR`], [`OneCycleLR`]) and gradient clipping ([`clip_grad_norm_`]) work
//! with any of them.

mod clip;
mod schedule;

pub use clip::clip_grad_norm_;
pub use schedule::{
    Anneal, CosineAnnealingLR, LrScheduler, OneCycleConfig, OneCycleLR, ScheduleState, StepLR,
};

use crate::error::{Error, Result};
use crate::nn::StateDict;
use crate::tensor::Tensor;
pub use tinycnn_kernels::{AdamConfig, SgdConfig};

/// What every optimizer offers.
pub trait Optimizer {
    /// One update of every parameter that has a gradient (others are skipped, as in PyTorch).
    fn step(&mut self) -> Result<()>;
    /// Drops every parameter's gradient.
    fn zero_grad(&self);
    /// The learning rate.
    fn lr(&self) -> f32;
    /// Changes the learning rate (schedules).
    fn set_lr(&mut self, lr: f32);
    /// The momentum factor a schedule may cycle (PyTorch's `OneCycleLR` rule: SGD's
    /// `momentum`, Adam's `beta1`); `None` for an optimizer without one.
    fn momentum(&self) -> Option<f32> {
        None
    }
    /// Changes that momentum factor (in `[0, 1)`); an error for an optimizer without one.
    fn set_momentum(&mut self, momentum: f32) -> Result<()> {
        Err(Error::invalid(
            "Optimizer::set_momentum",
            format!("this optimizer has no momentum to set to {momentum}"),
        ))
    }
    /// The optimizer's state (buffers and step counts) as named tensors.
    fn state_dict(&self) -> StateDict;
    /// Restores a state exported by [`Optimizer::state_dict`] for the same parameter list.
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()>;
}

/// `v >= 0` and not NaN.
fn non_negative(v: f32) -> bool {
    v.partial_cmp(&0.0).is_some_and(|o| o.is_ge())
}

/// Per parameter of Adam: (step, m, v).
type AdamState = Option<(u32, Vec<f32>, Vec<f32>)>;

fn check_params(op: &'static str, params: &[Tensor]) -> Result<()> {
    for (i, p) in params.iter().enumerate() {
        if !p.is_leaf() || !p.requires_grad() {
            return Err(Error::invalid(
                op,
                format!("parameter {i} is not a leaf tensor that requires grad"),
            ));
        }
    }
    Ok(())
}

fn buffer_from(state: &StateDict, key: &str, param: &Tensor) -> Result<Option<Vec<f32>>> {
    match state.get(key) {
        None => Ok(None),
        Some(t) if t.shape() == param.shape() => Ok(Some(t.to_vec())),
        Some(t) => Err(Error::StateDict {
            key: key.to_string(),
            msg: format!("shape {:?}, parameter has {:?}", t.shape(), param.shape()),
        }),
    }
}

fn check_keys(state: &StateDict, allowed: impl Fn(&str) -> bool) -> Result<()> {
    match state.keys().find(|k| !allowed(k)) {
        Some(k) => Err(Error::StateDict {
            key: k.to_string(),
            msg: "not part of this optimizer's state".into(),
        }),
        None => Ok(()),
    }
}

fn index_of_key(key: &str, suffix: &str) -> Option<usize> {
    key.strip_prefix("state.")?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

/// Stochastic gradient descent (`torch.optim.SGD`): momentum, dampening, Nesterov, weight decay.
///
/// ```
/// use tinycnn::optim::{Optimizer, Sgd};
/// use tinycnn::Tensor;
/// let w = Tensor::new([1.0, 2.0]).requires_grad_(true).unwrap();
/// let mut opt = Sgd::new(vec![w.clone()], 0.1).unwrap();
/// (&w * &w).unwrap().sum_all().backward().unwrap(); // grad = 2w
/// opt.step().unwrap();
/// assert_eq!(w.to_vec(), [0.8, 1.6]);
/// ```
pub struct Sgd {
    params: Vec<Tensor>,
    pub config: SgdConfig,
    momentum: Vec<Option<Vec<f32>>>,
    /// Momentum buffers of parameters on a CUDA device (then the host entry is `None`).
    #[cfg(feature = "cuda")]
    momentum_cuda: Vec<Option<crate::cuda::CudaStorage>>,
}

impl Sgd {
    /// Plain SGD with learning rate `lr`.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Result<Sgd> {
        Sgd::with_config(params, SgdConfig::new(lr))
    }
    /// SGD with every option.
    pub fn with_config(params: Vec<Tensor>, config: SgdConfig) -> Result<Sgd> {
        check_params("Sgd", &params)?;
        if !non_negative(config.lr)
            || !config.lr.is_finite()
            || !non_negative(config.momentum)
            || !non_negative(config.weight_decay)
        {
            return Err(Error::invalid(
                "Sgd",
                format!("{config:?}: lr, momentum and weight decay must be >= 0"),
            ));
        }
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::invalid(
                "Sgd",
                "Nesterov momentum requires a momentum and zero dampening",
            ));
        }
        let n = params.len();
        Ok(Sgd {
            params,
            config,
            momentum: vec![None; n],
            #[cfg(feature = "cuda")]
            momentum_cuda: (0..n).map(|_| None).collect(),
        })
    }
    /// The parameters, in order.
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        for (i, (p, buf)) in self.params.iter().zip(self.momentum.iter_mut()).enumerate() {
            let Some(g) = p.grad() else { continue };
            #[cfg(feature = "cuda")]
            if cuda_steps::sgd(p, &g, &self.config, buf, &mut self.momentum_cuda[i])? {
                continue;
            }
            let _ = i;
            let g = g.to_vec();
            let first = buf.is_none();
            let mut b = match (self.config.momentum != 0.0, buf.take()) {
                (true, Some(b)) => b,
                (true, None) => vec![0.0; p.numel()],
                (false, _) => Vec::new(),
            };
            p.write_unchecked(|d| tinycnn_kernels::sgd_step(&self.config, d, &g, &mut b, first))?
                .map_err(Error::kernel("Sgd::step"))?;
            if self.config.momentum != 0.0 {
                *buf = Some(b);
            }
        }
        Ok(())
    }
    fn zero_grad(&self) {
        self.params.iter().for_each(|p| p.zero_grad());
    }
    fn lr(&self) -> f32 {
        self.config.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.config.lr = lr;
    }
    fn momentum(&self) -> Option<f32> {
        Some(self.config.momentum)
    }
    /// A momentum buffer is created at the first step with a non-zero momentum (PyTorch's
    /// rule when a schedule turns momentum on).
    fn set_momentum(&mut self, momentum: f32) -> Result<()> {
        if !(0.0..1.0).contains(&momentum) || (self.config.nesterov && momentum == 0.0) {
            return Err(Error::invalid(
                "Sgd::set_momentum",
                format!("momentum {momentum} is not in [0, 1) (above 0 with Nesterov)"),
            ));
        }
        self.config.momentum = momentum;
        Ok(())
    }
    /// `state.{i}.momentum_buffer` for every parameter that has one.
    fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        for (i, (p, b)) in self.params.iter().zip(&self.momentum).enumerate() {
            #[cfg(feature = "cuda")]
            let downloaded = self.momentum_cuda[i]
                .as_ref()
                .and_then(|c| c.download().ok());
            #[cfg(feature = "cuda")]
            let b = &downloaded.or_else(|| b.clone());
            if let Some(b) = b {
                sd.insert(
                    format!("state.{i}.momentum_buffer"),
                    Tensor::raw(b.clone(), p.shape().to_vec()),
                );
            }
        }
        sd
    }
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        let n = self.params.len();
        check_keys(state, |k| {
            index_of_key(k, ".momentum_buffer").is_some_and(|i| i < n)
        })?;
        let mut bufs = Vec::with_capacity(n);
        for (i, p) in self.params.iter().enumerate() {
            bufs.push(buffer_from(
                state,
                &format!("state.{i}.momentum_buffer"),
                p,
            )?);
        }
        self.momentum = bufs;
        #[cfg(feature = "cuda")]
        self.momentum_cuda.iter_mut().for_each(|c| *c = None);
        Ok(())
    }
}

/// Adam (`torch.optim.Adam`, not AMSGrad).
pub struct Adam {
    params: Vec<Tensor>,
    pub config: AdamConfig,
    /// Per parameter: (step, m, v), created at its first update.
    state: Vec<AdamState>,
    /// (m, v) of parameters on a CUDA device (then the host vectors are empty).
    #[cfg(feature = "cuda")]
    state_cuda: Vec<Option<(crate::cuda::CudaStorage, crate::cuda::CudaStorage)>>,
}

impl Adam {
    /// Adam with PyTorch's defaults (betas 0.9, 0.999, eps 1e-8) and learning rate `lr`.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Result<Adam> {
        Adam::with_config(params, AdamConfig::new(lr))
    }
    /// Adam with every option.
    pub fn with_config(params: Vec<Tensor>, config: AdamConfig) -> Result<Adam> {
        check_params("Adam", &params)?;
        let c = &config;
        if !non_negative(c.lr)
            || !c.lr.is_finite()
            || !(0.0..1.0).contains(&c.beta1)
            || !(0.0..1.0).contains(&c.beta2)
            || !non_negative(c.eps)
            || !non_negative(c.weight_decay)
        {
            return Err(Error::invalid(
                "Adam",
                format!("{config:?}: need lr, eps, weight decay >= 0 and betas in [0, 1)"),
            ));
        }
        let n = params.len();
        Ok(Adam {
            params,
            config,
            state: vec![None; n],
            #[cfg(feature = "cuda")]
            state_cuda: (0..n).map(|_| None).collect(),
        })
    }
    /// The parameters, in order.
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        for (i, (p, st)) in self.params.iter().zip(self.state.iter_mut()).enumerate() {
            let Some(g) = p.grad() else { continue };
            #[cfg(feature = "cuda")]
            if cuda_steps::adam(p, &g, &self.config, st, &mut self.state_cuda[i])? {
                continue;
            }
            let _ = i;
            let g = g.to_vec();
            let (step, m, v) =
                st.get_or_insert_with(|| (0, vec![0.0; p.numel()], vec![0.0; p.numel()]));
            let next = step
                .checked_add(1)
                .ok_or_else(|| Error::invalid("Adam::step", "step count overflows u32"))?;
            p.write_unchecked(|d| tinycnn_kernels::adam_step(&self.config, next, d, &g, m, v))?
                .map_err(Error::kernel("Adam::step"))?;
            *step = next;
        }
        Ok(())
    }
    fn zero_grad(&self) {
        self.params.iter().for_each(|p| p.zero_grad());
    }
    fn lr(&self) -> f32 {
        self.config.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.config.lr = lr;
    }
    /// Adam's `beta1`.
    fn momentum(&self) -> Option<f32> {
        Some(self.config.beta1)
    }
    fn set_momentum(&mut self, beta1: f32) -> Result<()> {
        if !(0.0..1.0).contains(&beta1) {
            return Err(Error::invalid(
                "Adam::set_momentum",
                format!("beta1 {beta1} is not in [0, 1)"),
            ));
        }
        self.config.beta1 = beta1;
        Ok(())
    }
    /// `state.{i}.step` (a scalar), `state.{i}.exp_avg`, `state.{i}.exp_avg_sq`, as PyTorch names them.
    fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        for (i, (p, st)) in self.params.iter().zip(&self.state).enumerate() {
            #[cfg(feature = "cuda")]
            let on_device = match (st, &self.state_cuda[i]) {
                (Some((step, _, _)), Some((m, v))) => match (m.download(), v.download()) {
                    (Ok(m), Ok(v)) => Some((*step, m, v)),
                    _ => None,
                },
                _ => None,
            };
            #[cfg(feature = "cuda")]
            let st = &on_device.or_else(|| st.clone());
            if let Some((step, m, v)) = st {
                sd.insert(format!("state.{i}.step"), Tensor::scalar(*step as f32));
                sd.insert(
                    format!("state.{i}.exp_avg"),
                    Tensor::raw(m.clone(), p.shape().to_vec()),
                );
                sd.insert(
                    format!("state.{i}.exp_avg_sq"),
                    Tensor::raw(v.clone(), p.shape().to_vec()),
                );
            }
        }
        sd
    }
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        let n = self.params.len();
        check_keys(state, |k| {
            [".step", ".exp_avg", ".exp_avg_sq"]
                .iter()
                .any(|s| index_of_key(k, s).is_some_and(|i| i < n))
        })?;
        let mut new_state = Vec::with_capacity(n);
        for (i, p) in self.params.iter().enumerate() {
            let key = |s: &str| format!("state.{i}.{s}");
            let step = state.get(&key("step"));
            let m = buffer_from(state, &key("exp_avg"), p)?;
            let v = buffer_from(state, &key("exp_avg_sq"), p)?;
            new_state.push(match (step, m, v) {
                (None, None, None) => None,
                (Some(s), Some(m), Some(v)) => {
                    let s = s.item()?;
                    if !non_negative(s - 1.0) || s.fract() != 0.0 || s > (1u32 << 24) as f32 {
                        return Err(Error::StateDict {
                            key: key("step"),
                            msg: format!("{s} is not a step count"),
                        });
                    }
                    Some((s as u32, m, v))
                }
                _ => {
                    return Err(Error::StateDict {
                        key: key("step"),
                        msg: "step, exp_avg and exp_avg_sq must be given together".into(),
                    })
                }
            });
        }
        self.state = new_state;
        #[cfg(feature = "cuda")]
        self.state_cuda.iter_mut().for_each(|c| *c = None);
        Ok(())
    }
}

/// Optimizer steps of parameters on a CUDA device: the update runs in one kernel per
/// parameter, its state stays on the device. Each returns false when the parameter is not on
/// CUDA (the host step runs instead).
#[cfg(feature = "cuda")]
mod cuda_steps {
    use super::{AdamConfig, AdamState, SgdConfig};
    use crate::cuda::{err, CudaStorage};
    use crate::error::{Error, Result};
    use crate::ops::on_cuda;
    use crate::storage::Buffer;
    use crate::tensor::Tensor;

    /// A device copy of the parameter to update (the old buffer may be shared by snapshots).
    fn param_copy(p: &CudaStorage, op: &'static str) -> Result<CudaStorage> {
        let mut np = p.alloc_like(p.buf.len())?;
        p.dev.copy_device(&p.buf, &mut np.buf).map_err(err(op))?;
        Ok(np)
    }

    /// `host` state moved to the device of `like` (zeros when there is none).
    fn state_on(like: &CudaStorage, host: Option<&[f32]>, op: &'static str) -> Result<CudaStorage> {
        let buf = match host {
            Some(h) if h.len() == like.buf.len() => like.dev.upload(h),
            _ => like.dev.zeros(like.buf.len()),
        }
        .map_err(err(op))?;
        Ok(CudaStorage {
            ordinal: like.ordinal,
            dev: like.dev.clone(),
            buf,
        })
    }

    pub(super) fn sgd(
        p: &Tensor,
        g: &Tensor,
        cfg: &SgdConfig,
        host: &mut Option<Vec<f32>>,
        device: &mut Option<CudaStorage>,
    ) -> Result<bool> {
        let (pb, gb) = (p.buffer(), g.buffer());
        let (Some(pc), Some(gc)) = (on_cuda(&pb), on_cuda(&gb)) else {
            return Ok(false);
        };
        let first = host.is_none() && device.is_none();
        if cfg.momentum != 0.0 && device.is_none() {
            *device = Some(state_on(pc, host.as_deref(), "Sgd::step")?);
            *host = None;
        }
        let mut np = param_copy(pc, "Sgd::step")?;
        let momentum = if cfg.momentum != 0.0 {
            device.as_mut().map(|m| &mut m.buf)
        } else {
            None
        };
        pc.dev
            .sgd_step(cfg, &mut np.buf, &gc.buf, momentum, first)
            .map_err(err("Sgd::step"))?;
        p.set_buffer(Buffer::Cuda(np));
        Ok(true)
    }

    pub(super) fn adam(
        p: &Tensor,
        g: &Tensor,
        cfg: &AdamConfig,
        host: &mut AdamState,
        device: &mut Option<(CudaStorage, CudaStorage)>,
    ) -> Result<bool> {
        let (pb, gb) = (p.buffer(), g.buffer());
        let (Some(pc), Some(gc)) = (on_cuda(&pb), on_cuda(&gb)) else {
            return Ok(false);
        };
        let (step, m, v) = host.get_or_insert_with(|| (0, Vec::new(), Vec::new()));
        if device.is_none() {
            let dm = state_on(pc, Some(m.as_slice()), "Adam::step")?;
            let dv = state_on(pc, Some(v.as_slice()), "Adam::step")?;
            *device = Some((dm, dv));
            // The device holds the moments from now on.
            (*m, *v) = (Vec::new(), Vec::new());
        }
        let next = step
            .checked_add(1)
            .ok_or_else(|| Error::invalid("Adam::step", "step count overflows u32"))?;
        let (dm, dv) = device.as_mut().expect("set above");
        let mut np = param_copy(pc, "Adam::step")?;
        pc.dev
            .adam_step(cfg, next, &mut np.buf, &gc.buf, &mut dm.buf, &mut dv.buf)
            .map_err(err("Adam::step"))?;
        p.set_buffer(Buffer::Cuda(np));
        *step = next;
        Ok(true)
    }
}
