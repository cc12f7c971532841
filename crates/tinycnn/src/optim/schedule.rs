//! Learning-rate schedules with PyTorch's rules (`torch.optim.lr_scheduler`): [`StepLR`],
//! [`CosineAnnealingLR`] and [`OneCycleLR`] (which also cycles the momentum, as PyTorch's does
//! by default).
//!
//! A schedule does not own its optimizer (the training loop does): [`LrScheduler::step`]
//! takes it and writes the new learning rate into it. The rates are computed in `f64` with
//! PyTorch's own (recursive, where PyTorch's is) formulas, so the sequence matches
//! `scheduler.get_last_lr()` to the last bits; the optimizer receives them rounded to `f32`.
//! The base rate is read from the optimizer, so it is the `f32` nearest PyTorch's (`0.1` is
//! `0.10000000149...`), and the sequences agree to `f32` precision, exactly for rates that
//! `f32` holds exactly.
//! Call `step` after the optimizer's step, as in PyTorch: once per epoch for [`StepLR`] and
//! [`CosineAnnealingLR`], once per batch for [`OneCycleLR`].
//!
//! ```
//! use tinycnn::optim::{LrScheduler, Optimizer, Sgd, StepLR};
//! use tinycnn::Tensor;
//! let w = Tensor::new([1.0]).requires_grad_(true).unwrap();
//! let mut opt = Sgd::new(vec![w], 0.5).unwrap();
//! let mut sched = StepLR::new(&mut opt, 2, 0.5).unwrap();
//! let mut lrs = vec![sched.last_lr()];
//! for _ in 0..4 {
//!     opt.step().unwrap(); // after the epoch's updates
//!     sched.step(&mut opt).unwrap();
//!     lrs.push(sched.last_lr());
//! }
//! assert_eq!(lrs, [0.5, 0.5, 0.25, 0.25, 0.125]);
//! assert_eq!(opt.lr(), 0.125);
//! ```

use super::Optimizer;
use crate::error::{Error, Result};
use std::f64::consts::PI;

/// What a schedule needs to continue exactly where it stopped (for a checkpoint).
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleState {
    /// Steps taken (PyTorch's `last_epoch`; 0 right after construction).
    pub last_epoch: u64,
    /// The current learning rate, unrounded (PyTorch's `get_last_lr()[0]`).
    pub last_lr: f64,
    /// The current momentum (or Adam's beta1) of a schedule that cycles it.
    pub last_momentum: Option<f64>,
}

impl ScheduleState {
    /// The state as named numbers (`last_epoch`, `last_lr`, `last_momentum`), for metadata.
    /// Every value converts to `f64` and back exactly.
    pub fn to_scalars(&self) -> Vec<(String, f64)> {
        let mut v = vec![
            ("last_epoch".to_string(), self.last_epoch as f64),
            ("last_lr".to_string(), self.last_lr),
        ];
        if let Some(m) = self.last_momentum {
            v.push(("last_momentum".to_string(), m));
        }
        v
    }

    /// Reads [`ScheduleState::to_scalars`] back; an unknown, missing or bad value is an error.
    pub fn from_scalars(scalars: &[(String, f64)]) -> Result<ScheduleState> {
        let bad = |msg: String| Error::invalid("ScheduleState", msg);
        if let Some((k, _)) = scalars
            .iter()
            .find(|(k, _)| !matches!(k.as_str(), "last_epoch" | "last_lr" | "last_momentum"))
        {
            return Err(bad(format!("unknown entry {k:?}")));
        }
        let get = |name: &str| scalars.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let last_epoch = get("last_epoch").ok_or_else(|| bad("no last_epoch".into()))?;
        if !(0.0..=(1u64 << 53) as f64).contains(&last_epoch) || last_epoch.fract() != 0.0 {
            return Err(bad(format!("last_epoch {last_epoch} is not a step count")));
        }
        let last_lr = get("last_lr").ok_or_else(|| bad("no last_lr".into()))?;
        // Negative is possible: a linear one-cycle stepped past its end extrapolates.
        if !last_lr.is_finite() {
            return Err(bad(format!("last_lr {last_lr} is not a learning rate")));
        }
        let last_momentum = get("last_momentum");
        if let Some(m) = last_momentum {
            if !(0.0..1.0).contains(&m) {
                return Err(bad(format!("last_momentum {m} is not in [0, 1)")));
            }
        }
        Ok(ScheduleState {
            last_epoch: last_epoch as u64,
            last_lr,
            last_momentum,
        })
    }
}

/// A learning-rate schedule over any [`Optimizer`].
pub trait LrScheduler {
    /// Advances one step (an epoch or a batch, as the schedule is meant) and writes the new
    /// learning rate (and momentum, if cycled) into `optimizer`.
    fn step(&mut self, optimizer: &mut dyn Optimizer) -> Result<()>;
    /// The learning rate set by the last step or by construction (PyTorch's `get_last_lr()`).
    fn last_lr(&self) -> f64;
    /// The state a checkpoint saves.
    fn state(&self) -> ScheduleState;
    /// Continues from a saved state: restores the counters and writes its learning rate (and
    /// momentum) into `optimizer`. The schedule must be built with the same settings.
    fn load_state(&mut self, state: &ScheduleState, optimizer: &mut dyn Optimizer) -> Result<()>;
}

fn finite_non_negative(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

/// Writes `lr` into the optimizer (rounded to its `f32`).
fn apply_lr(optimizer: &mut dyn Optimizer, lr: f64) {
    optimizer.set_lr(lr as f32);
}

/// Restores the shared part of a plain (non-cycling) schedule's state.
fn load_plain(
    op: &'static str,
    state: &ScheduleState,
    optimizer: &mut dyn Optimizer,
) -> Result<(u64, f64)> {
    if state.last_momentum.is_some() {
        return Err(Error::invalid(
            op,
            "the state cycles a momentum; this schedule does not",
        ));
    }
    apply_lr(optimizer, state.last_lr);
    Ok((state.last_epoch, state.last_lr))
}

/// `torch.optim.lr_scheduler.StepLR`: the learning rate is multiplied by `gamma` every
/// `step_size` steps.
#[derive(Clone, Debug)]
pub struct StepLR {
    step_size: u64,
    gamma: f64,
    last_epoch: u64,
    lr: f64,
}

impl StepLR {
    /// Starts from the optimizer's learning rate (unchanged until the first decay).
    pub fn new(optimizer: &mut dyn Optimizer, step_size: u64, gamma: f64) -> Result<StepLR> {
        if step_size == 0 {
            return Err(Error::invalid("StepLR", "step_size must be at least 1"));
        }
        if !finite_non_negative(gamma) {
            return Err(Error::invalid(
                "StepLR",
                format!("gamma must be a finite number >= 0, got {gamma}"),
            ));
        }
        Ok(StepLR {
            step_size,
            gamma,
            last_epoch: 0,
            lr: f64::from(optimizer.lr()),
        })
    }
}

impl LrScheduler for StepLR {
    fn step(&mut self, optimizer: &mut dyn Optimizer) -> Result<()> {
        self.last_epoch += 1;
        if self.last_epoch.is_multiple_of(self.step_size) {
            self.lr *= self.gamma;
        }
        apply_lr(optimizer, self.lr);
        Ok(())
    }
    fn last_lr(&self) -> f64 {
        self.lr
    }
    fn state(&self) -> ScheduleState {
        ScheduleState {
            last_epoch: self.last_epoch,
            last_lr: self.lr,
            last_momentum: None,
        }
    }
    fn load_state(&mut self, state: &ScheduleState, optimizer: &mut dyn Optimizer) -> Result<()> {
        (self.last_epoch, self.lr) = load_plain("StepLR::load_state", state, optimizer)?;
        Ok(())
    }
}

/// `torch.optim.lr_scheduler.CosineAnnealingLR`: from the optimizer's learning rate down to
/// `eta_min` over `t_max` steps along half a cosine (and back up after, as PyTorch's does).
#[derive(Clone, Debug)]
pub struct CosineAnnealingLR {
    t_max: u64,
    eta_min: f64,
    base_lr: f64,
    last_epoch: u64,
    lr: f64,
}

impl CosineAnnealingLR {
    /// Anneals from the optimizer's learning rate to `eta_min` in `t_max` steps.
    pub fn new(
        optimizer: &mut dyn Optimizer,
        t_max: u64,
        eta_min: f64,
    ) -> Result<CosineAnnealingLR> {
        if t_max == 0 {
            return Err(Error::invalid(
                "CosineAnnealingLR",
                "T_max must be at least 1",
            ));
        }
        if !finite_non_negative(eta_min) {
            return Err(Error::invalid(
                "CosineAnnealingLR",
                format!("eta_min must be a finite number >= 0, got {eta_min}"),
            ));
        }
        let lr = f64::from(optimizer.lr());
        Ok(CosineAnnealingLR {
            t_max,
            eta_min,
            base_lr: lr,
            last_epoch: 0,
            lr,
        })
    }
}

impl LrScheduler for CosineAnnealingLR {
    fn step(&mut self, optimizer: &mut dyn Optimizer) -> Result<()> {
        self.last_epoch += 1;
        let (e, t) = (self.last_epoch as f64, self.t_max as f64);
        // PyTorch's recursive form, term for term (its closed form differs in the last bits).
        self.lr = if (self.last_epoch - 1 + self.t_max).is_multiple_of(2 * self.t_max) {
            // (e - 1 - T_max) % (2 T_max) == 0, written without going below zero.
            self.lr + (self.base_lr - self.eta_min) * (1.0 - (PI / t).cos()) / 2.0
        } else {
            (1.0 + (PI * e / t).cos()) / (1.0 + (PI * (e - 1.0) / t).cos())
                * (self.lr - self.eta_min)
                + self.eta_min
        };
        apply_lr(optimizer, self.lr);
        Ok(())
    }
    fn last_lr(&self) -> f64 {
        self.lr
    }
    fn state(&self) -> ScheduleState {
        ScheduleState {
            last_epoch: self.last_epoch,
            last_lr: self.lr,
            last_momentum: None,
        }
    }
    fn load_state(&mut self, state: &ScheduleState, optimizer: &mut dyn Optimizer) -> Result<()> {
        (self.last_epoch, self.lr) = load_plain("CosineAnnealingLR::load_state", state, optimizer)?;
        Ok(())
    }
}

/// How [`OneCycleLR`] moves between its anchor values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anneal {
    /// Half a cosine (PyTorch's default `"cos"`).
    Cos,
    /// A straight line (`"linear"`).
    Linear,
}

impl Anneal {
    fn at(self, start: f64, end: f64, pct: f64) -> f64 {
        match self {
            Anneal::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            Anneal::Linear => (end - start) * pct + start,
        }
    }
}

/// The settings of [`OneCycleLR`], with PyTorch's defaults from [`OneCycleConfig::new`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneCycleConfig {
    /// The peak learning rate.
    pub max_lr: f64,
    /// Steps in the cycle (PyTorch's `total_steps`: epochs times batches per epoch).
    pub total_steps: u64,
    /// Fraction of the steps spent rising (0.3).
    pub pct_start: f64,
    /// The curve between anchors (cosine).
    pub anneal: Anneal,
    /// Whether the momentum (SGD) or beta1 (Adam) moves against the learning rate (true).
    pub cycle_momentum: bool,
    /// The momentum at the peak learning rate (0.85).
    pub base_momentum: f64,
    /// The momentum at the start and end (0.95).
    pub max_momentum: f64,
    /// The start rate is `max_lr / div_factor` (25).
    pub div_factor: f64,
    /// The final rate is the start rate over `final_div_factor` (1e4).
    pub final_div_factor: f64,
    /// Rise, fall back to the start rate, then anneal to the final rate (false).
    pub three_phase: bool,
}

impl OneCycleConfig {
    /// PyTorch's defaults for `max_lr` and `total_steps`.
    pub fn new(max_lr: f64, total_steps: u64) -> OneCycleConfig {
        OneCycleConfig {
            max_lr,
            total_steps,
            pct_start: 0.3,
            anneal: Anneal::Cos,
            cycle_momentum: true,
            base_momentum: 0.85,
            max_momentum: 0.95,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
        }
    }
}

/// One segment of the cycle: it ends at step `end` (a fraction, as PyTorch computes it) and
/// moves the rate and momentum between the anchors.
#[derive(Clone, Copy, Debug)]
struct Phase {
    end: f64,
    lr: (f64, f64),
    momentum: (f64, f64),
}

/// `torch.optim.lr_scheduler.OneCycleLR`: the 1cycle policy, stepped once per batch. The
/// learning rate rises from `max_lr / div_factor` to `max_lr` over the first `pct_start` of
/// the steps and then falls far below the start; with `cycle_momentum` (the default, as in
/// PyTorch) the optimizer's momentum (SGD) or beta1 (Adam) moves the other way between
/// `max_momentum` and `base_momentum`, overriding the optimizer's own value.
#[derive(Clone, Debug)]
pub struct OneCycleLR {
    config: OneCycleConfig,
    phases: Vec<Phase>,
    last_epoch: u64,
    lr: f64,
    momentum: Option<f64>,
}

impl OneCycleLR {
    /// Sets the optimizer's learning rate (and momentum) to the cycle's start values.
    pub fn new(optimizer: &mut dyn Optimizer, config: OneCycleConfig) -> Result<OneCycleLR> {
        let c = &config;
        let invalid = |msg: String| Err(Error::invalid("OneCycleLR", msg));
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if c.total_steps == 0 {
            return invalid("total_steps must be at least 1".into());
        }
        if !positive(c.max_lr) {
            return invalid(format!(
                "max_lr must be a positive number, got {}",
                c.max_lr
            ));
        }
        if !(0.0..=1.0).contains(&c.pct_start) {
            return invalid(format!("pct_start must be in [0, 1], got {}", c.pct_start));
        }
        if !(positive(c.div_factor) && positive(c.final_div_factor)) {
            return invalid("div_factor and final_div_factor must be positive numbers".into());
        }
        if c.cycle_momentum {
            if !(0.0..1.0).contains(&c.base_momentum) || !(0.0..1.0).contains(&c.max_momentum) {
                return invalid(format!(
                    "base_momentum {} and max_momentum {} must be in [0, 1)",
                    c.base_momentum, c.max_momentum
                ));
            }
            if optimizer.momentum().is_none() {
                return invalid(
                    "the optimizer has no momentum or beta1 to cycle; set cycle_momentum to false"
                        .into(),
                );
            }
        }
        let initial = c.max_lr / c.div_factor;
        let min = initial / c.final_div_factor;
        let (max_m, base_m) = (c.max_momentum, c.base_momentum);
        let total = c.total_steps as f64;
        let phases = if c.three_phase {
            vec![
                Phase {
                    end: c.pct_start * total - 1.0,
                    lr: (initial, c.max_lr),
                    momentum: (max_m, base_m),
                },
                Phase {
                    end: 2.0 * c.pct_start * total - 2.0,
                    lr: (c.max_lr, initial),
                    momentum: (base_m, max_m),
                },
                Phase {
                    end: total - 1.0,
                    lr: (initial, min),
                    momentum: (max_m, max_m),
                },
            ]
        } else {
            vec![
                Phase {
                    end: c.pct_start * total - 1.0,
                    lr: (initial, c.max_lr),
                    momentum: (max_m, base_m),
                },
                Phase {
                    end: total - 1.0,
                    lr: (c.max_lr, min),
                    momentum: (base_m, max_m),
                },
            ]
        };
        let mut s = OneCycleLR {
            config,
            phases,
            last_epoch: 0,
            lr: initial,
            momentum: None,
        };
        s.apply(optimizer)?;
        Ok(s)
    }

    /// The momentum set by the last step, when the schedule cycles it.
    pub fn last_momentum(&self) -> Option<f64> {
        self.momentum
    }

    /// Rate and momentum at `last_epoch` (PyTorch's `get_lr`).
    fn compute(&mut self) -> Result<()> {
        let step = self.last_epoch as f64;
        if self.last_epoch > self.config.total_steps {
            return Err(Error::invalid(
                "OneCycleLR::step",
                format!(
                    "stepped {} times, past total_steps {}",
                    self.last_epoch, self.config.total_steps
                ),
            ));
        }
        let mut start = 0.0;
        let last = self.phases.len() - 1;
        for (i, p) in self.phases.iter().enumerate() {
            if step <= p.end || i == last {
                let pct = (step - start) / (p.end - start);
                self.lr = self.config.anneal.at(p.lr.0, p.lr.1, pct);
                if self.config.cycle_momentum {
                    let m = self.config.anneal.at(p.momentum.0, p.momentum.1, pct);
                    self.momentum = Some(m);
                }
                break;
            }
            start = p.end;
        }
        Ok(())
    }

    fn apply(&mut self, optimizer: &mut dyn Optimizer) -> Result<()> {
        self.compute()?;
        apply_lr(optimizer, self.lr);
        if let Some(m) = self.momentum {
            optimizer.set_momentum(m as f32)?;
        }
        Ok(())
    }
}

impl LrScheduler for OneCycleLR {
    fn step(&mut self, optimizer: &mut dyn Optimizer) -> Result<()> {
        self.last_epoch += 1;
        self.apply(optimizer)
    }
    fn last_lr(&self) -> f64 {
        self.lr
    }
    fn state(&self) -> ScheduleState {
        ScheduleState {
            last_epoch: self.last_epoch,
            last_lr: self.lr,
            last_momentum: self.momentum,
        }
    }
    fn load_state(&mut self, state: &ScheduleState, optimizer: &mut dyn Optimizer) -> Result<()> {
        if state.last_epoch > self.config.total_steps {
            return Err(Error::invalid(
                "OneCycleLR::load_state",
                format!(
                    "the state is at step {}, past total_steps {}",
                    state.last_epoch, self.config.total_steps
                ),
            ));
        }
        if state.last_momentum.is_some() != self.config.cycle_momentum {
            return Err(Error::invalid(
                "OneCycleLR::load_state",
                "the state and the schedule disagree on cycling the momentum",
            ));
        }
        self.last_epoch = state.last_epoch;
        self.lr = state.last_lr;
        self.momentum = state.last_momentum;
        apply_lr(optimizer, self.lr);
        if let Some(m) = self.momentum {
            optimizer.set_momentum(m as f32)?;
        }
        Ok(())
    }
}
