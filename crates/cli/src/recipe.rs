//! Training recipes from the command line: the data set, SGD momentum / Nesterov / weight
//! decay, the learning-rate schedule, gradient clipping and augmentation. Each is recorded in
//! checkpoints (as JSON in the metadata), so `--resume` continues exactly; files of older
//! versions, which lack them, read as the defaults (plain SGD, no schedule, Fashion-MNIST).

use crate::checkpoint::RunConfig;
use crate::error::{runtime, Result};
use crate::{OptimizerName, TrainArgs};
use clap::ValueEnum;
use serde_json::{json, Value};
use tinycnn::data::{Augment, DatasetSpec, FASHION_MNIST_CLASSES, MNIST_CLASSES};
use tinycnn::optim::{
    Adam, AdamConfig, CosineAnnealingLR, LrScheduler, OneCycleConfig, OneCycleLR, Optimizer,
    ScheduleState, Sgd, SgdConfig, StepLR,
};
use tinycnn::train::ScheduleEvery;
use tinycnn::Tensor;
use tinycnn_models::{Augmentation, Model, Momentum, ScheduleKind};

/// The data set of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DatasetName {
    /// Zalando's Fashion-MNIST (d2l's data set).
    #[default]
    FashionMnist,
    /// LeCun's handwritten digits.
    Mnist,
}

impl DatasetName {
    /// The name on the command line and in file metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Mnist => "mnist",
        }
    }
    /// Parses the name stored in file metadata.
    pub fn parse(s: &str) -> Option<DatasetName> {
        match s {
            "fashion-mnist" => Some(DatasetName::FashionMnist),
            "mnist" => Some(DatasetName::Mnist),
            _ => None,
        }
    }
    /// Where and how the runtime finds it.
    pub fn spec(self) -> DatasetSpec {
        match self {
            DatasetName::FashionMnist => DatasetSpec::fashion_mnist(),
            DatasetName::Mnist => DatasetSpec::mnist(),
        }
    }
    /// Class names by label.
    pub fn classes(self) -> &'static [&'static str; 10] {
        match self {
            DatasetName::FashionMnist => &FASHION_MNIST_CLASSES,
            DatasetName::Mnist => &MNIST_CLASSES,
        }
    }
}

/// `--lr-schedule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleName {
    /// A constant learning rate.
    None,
    /// StepLR: times --gamma every --step-size epochs.
    Step,
    /// CosineAnnealingLR: down to --min-lr over the run's epochs (T_max = --epochs).
    Cosine,
    /// OneCycleLR up to --lr and down, stepped per batch (total_steps = epochs x batches);
    /// also cycles SGD's momentum (Adam's beta1) between 0.95 and 0.85, as PyTorch does.
    Onecycle,
}

/// `--augment`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AugmentName {
    /// No augmentation (switches off a model's default augmentation).
    None,
    /// torchvision RandomCrop(28, padding=--crop-padding): zero padding, random cut.
    Crop,
    /// torchvision RandomHorizontalFlip(p=0.5), after the crop.
    Flip,
}

/// A run's learning-rate schedule, with its horizon fixed when the run started.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Schedule {
    /// Constant.
    #[default]
    None,
    /// `StepLR(step_size, gamma)`, per epoch.
    Step {
        /// Epochs between decays.
        step_size: u64,
        /// Factor of each decay.
        gamma: f64,
    },
    /// `CosineAnnealingLR(T_max, eta_min)`, per epoch.
    Cosine {
        /// Epochs of the half cosine.
        t_max: u64,
        /// The lowest rate.
        eta_min: f64,
    },
    /// `OneCycleLR(max_lr = lr, total_steps)` with PyTorch's other defaults, per batch.
    OneCycle {
        /// Batches of the whole cycle (0 until the data set is known).
        total_steps: u64,
        /// Epochs of the whole cycle.
        epochs: u64,
    },
}

/// The recipe part of a run's settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recipe {
    /// SGD momentum.
    pub momentum: f32,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// L2 penalty added to the gradient (SGD, and Adam as `torch.optim.Adam` does).
    pub weight_decay: f32,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Largest total gradient norm.
    pub clip_grad_norm: Option<f32>,
    /// Zero padding of the random crop, when cropping.
    pub crop_padding: Option<usize>,
    /// Random horizontal flips.
    pub flip: bool,
}

/// `--crop-padding` when not given and the model's recipe does not crop.
const DEFAULT_CROP_PADDING: usize = 4;

/// The recipe a new run takes for the flags it leaves out: a zoo model's own (see
/// [`RecipeDefaults::of`]), else d2l's plain one ([`RecipeDefaults::default`]: no momentum,
/// no weight decay, a constant rate, no augmentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecipeDefaults {
    /// SGD's momentum and Nesterov, used when `--momentum` is not given.
    pub momentum: Momentum,
    /// Used when `--weight-decay` is not given.
    pub weight_decay: f32,
    /// Used when `--lr-schedule` is not given.
    pub schedule: ScheduleKind,
    /// Used when `--augment` is not given (its padding also for a bare `--augment crop`).
    pub augmentation: Augmentation,
}

impl Default for RecipeDefaults {
    fn default() -> RecipeDefaults {
        RecipeDefaults {
            momentum: Momentum::default(),
            weight_decay: 0.0,
            schedule: ScheduleKind::Constant,
            augmentation: Augmentation::default(),
        }
    }
}

impl RecipeDefaults {
    /// `model`'s defaults for `optimizer` (`default_momentum`, `default_weight_decay`,
    /// `default_schedule`, `default_augmentation` of [`Model`]); the plain recipe for a
    /// model that is not in the zoo.
    pub fn of(model: Option<Model>, optimizer: OptimizerName) -> RecipeDefaults {
        let Some(m) = model else {
            return RecipeDefaults::default();
        };
        let kind = optimizer.kind();
        RecipeDefaults {
            momentum: m.default_momentum(kind),
            weight_decay: m.default_weight_decay(kind),
            schedule: m.default_schedule(kind),
            augmentation: m.default_augmentation(),
        }
    }
}

impl Recipe {
    /// The recipe of a new run from its flags, checked, with `defaults` for the flags not
    /// given. An explicit `--momentum` replaces the default momentum and Nesterov both
    /// (Nesterov then only with `--nesterov`); `--lr-schedule none` and `--augment none`
    /// switch a default schedule or augmentation off.
    pub fn from_args(
        args: &TrainArgs,
        optimizer: OptimizerName,
        defaults: &RecipeDefaults,
    ) -> Result<Recipe> {
        let non_negative = |v: f32, flag: &str| {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(crate::cli_err!("{flag} must be a number >= 0, got {v}"))
            }
        };
        if optimizer == OptimizerName::Adam && (args.momentum.is_some() || args.nesterov) {
            return Err(crate::cli_err!(
                "--momentum and --nesterov are SGD's; Adam keeps PyTorch's betas (0.9, 0.999)"
            ));
        }
        let (momentum, nesterov) = match args.momentum {
            Some(m) => (non_negative(m, "--momentum")?, args.nesterov),
            None => (
                defaults.momentum.momentum,
                args.nesterov || defaults.momentum.nesterov,
            ),
        };
        let weight_decay = non_negative(
            args.weight_decay.unwrap_or(defaults.weight_decay),
            "--weight-decay",
        )?;
        let (default_schedule, default_min_lr) = match defaults.schedule {
            ScheduleKind::Constant => (ScheduleName::None, 0.0),
            ScheduleKind::Cosine { min_lr } => (ScheduleName::Cosine, min_lr),
            ScheduleKind::OneCycle => (ScheduleName::Onecycle, 0.0),
        };
        let schedule_name = args.lr_schedule.unwrap_or(default_schedule);
        if schedule_name != ScheduleName::Step && (args.step_size.is_some() || args.gamma.is_some())
        {
            return Err(crate::cli_err!(
                "--step-size and --gamma belong to --lr-schedule step"
            ));
        }
        if schedule_name != ScheduleName::Cosine && args.min_lr.is_some() {
            return Err(crate::cli_err!("--min-lr belongs to --lr-schedule cosine"));
        }
        let spans = matches!(schedule_name, ScheduleName::Cosine | ScheduleName::Onecycle);
        if !spans && args.schedule_epochs.is_some() {
            return Err(crate::cli_err!(
                "--schedule-epochs belongs to --lr-schedule cosine or onecycle"
            ));
        }
        let schedule_epochs = args.schedule_epochs.unwrap_or(args.epochs);
        if schedule_epochs == 0 {
            return Err(crate::cli_err!("--schedule-epochs must be at least 1"));
        }
        let schedule = match schedule_name {
            ScheduleName::None => Schedule::None,
            ScheduleName::Step => {
                let step_size = args.step_size.ok_or_else(|| {
                    crate::cli_err!("--lr-schedule step needs --step-size N (epochs)")
                })?;
                if step_size == 0 {
                    return Err(crate::cli_err!("--step-size must be at least 1"));
                }
                let gamma = args.gamma.unwrap_or(0.1);
                if !(gamma.is_finite() && gamma >= 0.0) {
                    return Err(crate::cli_err!(
                        "--gamma must be a number >= 0, got {gamma}"
                    ));
                }
                Schedule::Step { step_size, gamma }
            }
            ScheduleName::Cosine => {
                let eta_min = args.min_lr.unwrap_or(default_min_lr);
                if !(eta_min.is_finite() && eta_min >= 0.0) {
                    return Err(crate::cli_err!(
                        "--min-lr must be a number >= 0, got {eta_min}"
                    ));
                }
                Schedule::Cosine {
                    t_max: schedule_epochs as u64,
                    eta_min,
                }
            }
            // Known once the data set (its batches per epoch) is.
            ScheduleName::Onecycle => Schedule::OneCycle {
                total_steps: 0,
                epochs: schedule_epochs as u64,
            },
        };
        if let Some(c) = args.clip_grad_norm {
            if !(c.is_finite() && c > 0.0) {
                return Err(crate::cli_err!(
                    "--clip-grad-norm must be a positive number, got {c}"
                ));
            }
        }
        if args.augment.contains(&AugmentName::None) && args.augment.len() > 1 {
            return Err(crate::cli_err!(
                "--augment none cannot be combined with crop or flip"
            ));
        }
        let (crop, flip) = if args.augment.is_empty() {
            let a = &defaults.augmentation;
            (a.crop_padding.is_some(), a.flip)
        } else {
            (
                args.augment.contains(&AugmentName::Crop),
                args.augment.contains(&AugmentName::Flip),
            )
        };
        let crop_padding = match (crop, args.crop_padding) {
            (false, Some(_)) => {
                return Err(crate::cli_err!("--crop-padding belongs to --augment crop"))
            }
            (true, Some(0)) => return Err(crate::cli_err!("--crop-padding must be at least 1")),
            (true, p) => Some(
                p.or(defaults.augmentation.crop_padding)
                    .unwrap_or(DEFAULT_CROP_PADDING),
            ),
            (false, None) => None,
        };
        Ok(Recipe {
            momentum,
            nesterov,
            weight_decay,
            schedule,
            clip_grad_norm: args.clip_grad_norm,
            crop_padding,
            flip,
        })
    }

    /// The recipe's words for the run's first line (empty for d2l's plain recipe).
    pub fn describe(&self, lr: f32) -> String {
        let mut parts = Vec::new();
        if self.momentum != 0.0 {
            parts.push(format!("momentum {}", self.momentum));
        }
        if self.nesterov {
            parts.push("nesterov".to_string());
        }
        if self.weight_decay != 0.0 {
            parts.push(format!("weight decay {}", self.weight_decay));
        }
        match self.schedule {
            Schedule::None => {}
            Schedule::Step { step_size, gamma } => {
                parts.push(format!("step lr x{gamma} every {step_size} epochs"))
            }
            Schedule::Cosine { t_max, eta_min } => {
                parts.push(format!("cosine lr to {eta_min} over {t_max} epochs"))
            }
            Schedule::OneCycle { total_steps, .. } => parts.push(format!(
                "one-cycle lr {} -> {lr} -> {} over {total_steps} batches, momentum 0.95 -> 0.85 -> 0.95",
                lr / 25.0,
                lr / 25.0 / 1e4
            )),
        }
        if let Some(c) = self.clip_grad_norm {
            parts.push(format!("clip grad norm {c}"));
        }
        match (self.crop_padding, self.flip) {
            (Some(p), true) => parts.push(format!("augment crop (padding {p}) + flip")),
            (Some(p), false) => parts.push(format!("augment crop (padding {p})")),
            (None, true) => parts.push("augment flip".to_string()),
            (None, false) => {}
        }
        parts.join(", ")
    }

    /// The augmentation of the training batches, seeded by the run's seed.
    pub fn augment(&self, seed: u64) -> Augment {
        Augment {
            crop_padding: self.crop_padding,
            flip: self.flip,
            seed,
        }
    }

    /// The recipe as the JSON of the checkpoint's `recipe` metadata (every number reads
    /// back to the same bits).
    pub fn to_json(&self) -> String {
        let schedule = match self.schedule {
            Schedule::None => json!({"name": "none"}),
            Schedule::Step { step_size, gamma } => {
                json!({"name": "step", "step_size": step_size, "gamma": gamma})
            }
            Schedule::Cosine { t_max, eta_min } => {
                json!({"name": "cosine", "t_max": t_max, "eta_min": eta_min})
            }
            Schedule::OneCycle {
                total_steps,
                epochs,
            } => {
                json!({"name": "onecycle", "total_steps": total_steps, "epochs": epochs})
            }
        };
        json!({
            "momentum": self.momentum as f64,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay as f64,
            "lr_schedule": schedule,
            "clip_grad_norm": self.clip_grad_norm.map(f64::from),
            "crop_padding": self.crop_padding,
            "flip": self.flip,
        })
        .to_string()
    }

    /// Reads [`Recipe::to_json`]; `what` names the file in errors.
    pub fn from_json(text: &str, what: &str) -> Result<Recipe> {
        let bad = |m: &str| crate::cli_err!("{what}: recipe metadata: {m}");
        let v: Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
        let f32_of = |key: &str| -> Result<f32> {
            let x = v[key]
                .as_f64()
                .ok_or_else(|| bad(&format!("{key} is not a number")))?;
            if !(x.is_finite() && x >= 0.0) {
                return Err(bad(&format!("{key} = {x} is not a number >= 0")));
            }
            Ok(x as f32)
        };
        let bool_of = |key: &str| {
            v[key]
                .as_bool()
                .ok_or_else(|| bad(&format!("{key} is not true or false")))
        };
        let s = &v["lr_schedule"];
        let u64_of = |key: &str| {
            s[key]
                .as_u64()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(&format!("lr_schedule.{key} is not a positive count")))
        };
        let f64_of = |key: &str| {
            s[key]
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| bad(&format!("lr_schedule.{key} is not a number >= 0")))
        };
        let schedule = match s["name"].as_str() {
            Some("none") => Schedule::None,
            Some("step") => Schedule::Step {
                step_size: u64_of("step_size")?,
                gamma: f64_of("gamma")?,
            },
            Some("cosine") => Schedule::Cosine {
                t_max: u64_of("t_max")?,
                eta_min: f64_of("eta_min")?,
            },
            Some("onecycle") => Schedule::OneCycle {
                total_steps: u64_of("total_steps")?,
                epochs: u64_of("epochs")?,
            },
            _ => return Err(bad("lr_schedule has no known name")),
        };
        let clip_grad_norm = match &v["clip_grad_norm"] {
            Value::Null => None,
            _ => Some(f32_of("clip_grad_norm")?).filter(|&c| c > 0.0),
        };
        let crop_padding = match &v["crop_padding"] {
            Value::Null => None,
            p => Some(
                p.as_u64()
                    .filter(|&p| p > 0 && p <= u32::MAX as u64)
                    .ok_or_else(|| bad("crop_padding is not a positive count"))?
                    as usize,
            ),
        };
        Ok(Recipe {
            momentum: f32_of("momentum")?,
            nesterov: bool_of("nesterov")?,
            weight_decay: f32_of("weight_decay")?,
            schedule,
            clip_grad_norm,
            crop_padding,
            flip: bool_of("flip")?,
        })
    }

    /// The flags of a resumed run that differ from the checkpoint's recipe.
    pub fn clashes(&self, args: &TrainArgs, optimizer: OptimizerName) -> Vec<String> {
        let mut out = Vec::new();
        let mut differs = |flag: String, given: bool, ck: String| {
            if given {
                out.push(format!("{flag} (checkpoint: {ck})"));
            }
        };
        if let Some(m) = args.momentum {
            differs(
                format!("--momentum {m}"),
                m != self.momentum,
                self.momentum.to_string(),
            );
        }
        if args.nesterov && !self.nesterov {
            differs("--nesterov".into(), true, "no nesterov".into());
        }
        if let Some(w) = args.weight_decay {
            let ck = self.weight_decay;
            differs(format!("--weight-decay {w}"), w != ck, ck.to_string());
        }
        if let Some(c) = args.clip_grad_norm {
            let ck = self.clip_grad_norm;
            let name = ck.map_or("none".to_string(), |c| c.to_string());
            differs(format!("--clip-grad-norm {c}"), ck != Some(c), name);
        }
        // The schedule and augmentation flags are compared through a recipe built from them.
        let schedule_given = args.lr_schedule.is_some()
            || args.step_size.is_some()
            || args.gamma.is_some()
            || args.min_lr.is_some()
            || args.schedule_epochs.is_some();
        if schedule_given {
            let mut given = args.clone();
            // Without --schedule-epochs the checkpoint's span counts as given.
            if given.schedule_epochs.is_none() {
                match self.schedule {
                    Schedule::Cosine { t_max, .. } => given.schedule_epochs = Some(t_max as usize),
                    Schedule::OneCycle { epochs, .. } => {
                        given.schedule_epochs = Some(epochs as usize)
                    }
                    _ => {}
                }
            }
            // The checkpoint's recipe stands for the flags left out, not a model's defaults.
            match Recipe::from_args(&given, optimizer, &RecipeDefaults::default()) {
                Ok(r) => {
                    let same = match (&r.schedule, &self.schedule) {
                        (
                            Schedule::OneCycle { epochs: a, .. },
                            Schedule::OneCycle { epochs: b, .. },
                        ) => a == b,
                        (a, b) => a == b,
                    };
                    if !same {
                        differs(
                            "--lr-schedule and its options".into(),
                            true,
                            self.describe_schedule(),
                        );
                    }
                }
                Err(e) => out.push(e.to_string()),
            }
        }
        if !args.augment.is_empty() || args.crop_padding.is_some() {
            let crop = args.augment.contains(&AugmentName::Crop);
            let padding = crop.then(|| {
                args.crop_padding
                    .or(self.crop_padding)
                    .unwrap_or(DEFAULT_CROP_PADDING)
            });
            let flip = args.augment.contains(&AugmentName::Flip);
            if padding != self.crop_padding || flip != self.flip {
                let ck = match (self.crop_padding, self.flip) {
                    (None, false) => "none".to_string(),
                    (p, f) => format!("crop padding {p:?}, flip {f}"),
                };
                out.push(format!("--augment (checkpoint: {ck})"));
            }
        }
        out
    }

    fn describe_schedule(&self) -> String {
        match self.schedule {
            Schedule::None => "none".into(),
            Schedule::Step { step_size, gamma } => format!("step, size {step_size}, gamma {gamma}"),
            Schedule::Cosine { t_max, eta_min } => {
                format!("cosine, T_max {t_max}, min lr {eta_min}")
            }
            Schedule::OneCycle { total_steps, .. } => {
                format!("onecycle over {total_steps} batches")
            }
        }
    }
}

/// The configured optimizer over `params`: `torch.optim.SGD(lr, momentum, weight_decay,
/// nesterov)` or `torch.optim.Adam(lr, weight_decay)` (L2 added to the gradient, not AdamW).
pub fn optimizer(params: Vec<Tensor>, config: &RunConfig) -> Result<Box<dyn Optimizer>> {
    let r = &config.recipe;
    Ok(match config.optimizer {
        OptimizerName::Sgd => {
            let c = SgdConfig {
                momentum: r.momentum,
                weight_decay: r.weight_decay,
                nesterov: r.nesterov,
                ..SgdConfig::new(config.lr)
            };
            Box::new(Sgd::with_config(params, c).map_err(runtime("sgd"))?)
        }
        OptimizerName::Adam => {
            let c = AdamConfig {
                weight_decay: r.weight_decay,
                ..AdamConfig::new(config.lr)
            };
            Box::new(Adam::with_config(params, c).map_err(runtime("adam"))?)
        }
    })
}

/// The run's schedule on `optimizer` (which it sets to the schedule's start), and when it
/// steps; `None` without one.
pub fn scheduler(
    optimizer: &mut dyn Optimizer,
    config: &RunConfig,
) -> Result<Option<(Box<dyn LrScheduler>, ScheduleEvery)>> {
    let err = runtime("--lr-schedule");
    Ok(Some(match config.recipe.schedule {
        Schedule::None => return Ok(None),
        Schedule::Step { step_size, gamma } => (
            Box::new(StepLR::new(optimizer, step_size, gamma).map_err(err)?)
                as Box<dyn LrScheduler>,
            ScheduleEvery::Epoch,
        ),
        Schedule::Cosine { t_max, eta_min } => (
            Box::new(CosineAnnealingLR::new(optimizer, t_max, eta_min).map_err(err)?),
            ScheduleEvery::Epoch,
        ),
        Schedule::OneCycle { total_steps, .. } => {
            let c = OneCycleConfig::new(f64::from(config.lr), total_steps);
            (
                Box::new(OneCycleLR::new(optimizer, c).map_err(err)?),
                ScheduleEvery::Batch,
            )
        }
    }))
}

/// A schedule state as the JSON of the checkpoint's `lr_schedule_state` metadata.
pub fn state_to_json(state: &ScheduleState) -> String {
    let map: serde_json::Map<String, Value> = state
        .to_scalars()
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    Value::Object(map).to_string()
}

/// Reads [`state_to_json`]; `what` names the file in errors.
pub fn state_from_json(text: &str, what: &str) -> Result<ScheduleState> {
    let bad = |m: String| crate::cli_err!("{what}: lr_schedule_state: {m}");
    let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let scalars = v
        .as_object()
        .ok_or_else(|| bad("not an object".into()))?
        .iter()
        .map(|(k, x)| {
            x.as_f64()
                .map(|x| (k.clone(), x))
                .ok_or_else(|| bad(format!("{k} is not a number")))
        })
        .collect::<Result<Vec<_>>>()?;
    ScheduleState::from_scalars(&scalars).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_json_round_trips_exactly() {
        let r = Recipe {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            schedule: Schedule::Cosine {
                t_max: 10,
                eta_min: 1e-5,
            },
            clip_grad_norm: Some(0.1),
            crop_padding: Some(2),
            flip: true,
        };
        assert_eq!(Recipe::from_json(&r.to_json(), "f").unwrap(), r);
        for schedule in [
            Schedule::None,
            Schedule::Step {
                step_size: 3,
                gamma: 0.1,
            },
            Schedule::OneCycle {
                total_steps: 2350,
                epochs: 10,
            },
        ] {
            let r = Recipe {
                schedule,
                ..Recipe::default()
            };
            assert_eq!(Recipe::from_json(&r.to_json(), "f").unwrap(), r);
        }
        assert!(Recipe::from_json("{}", "f").is_err());
        let state = ScheduleState {
            last_epoch: 7,
            last_lr: 0.1 / 3.0,
            last_momentum: Some(0.85),
        };
        assert_eq!(state_from_json(&state_to_json(&state), "f").unwrap(), state);
    }
}
