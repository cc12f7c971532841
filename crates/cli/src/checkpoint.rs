//! Weight files and training checkpoints, both safetensors.
//!
//! * A **weight file** holds the model's tensors under PyTorch's state-dict names (`0.weight`,
//!   `0.bias`, `3.weight`, ...: the index of the layer in the `nn.Sequential`) and the
//!   metadata `format = pt`, `model = lenet | lenet-relu` (for a model of the zoo) and
//!   `tinycnn.architecture` (the layers as JSON, `tinycnn::nn::arch`, for every model), so the
//!   file alone rebuilds its network. `safetensors.torch.load_file` reads it into d2l's `net`.
//!   A file without either (an older tinycnn's, or PyTorch's) is read as LeNet.
//! * A **checkpoint** adds the optimizer's per-parameter state under the names of PyTorch's
//!   optimizer `state_dict`, prefixed: `optimizer.state.{i}.{slot}`, `i` the parameter's index
//!   in state-dict order, `slot` one of `step` (a scalar), `exp_avg`, `exp_avg_sq` (Adam) or
//!   `momentum_buffer` (SGD with momentum). Both devices write and read this one form (the
//!   runtime's optimizers export it, downloading state kept on a GPU), so a run resumes on
//!   either. The metadata
//!   holds everything else a resumed run needs: the configuration, the number of finished
//!   epochs, the shuffle seed (epoch `e` is shuffled by ChaCha8 on stream `e` of that seed, so
//!   no generator state beyond the seed and epoch is needed), the optimizer's scalar state and
//!   the history (curve points, per-epoch figures, time spent).
//!
//! Both kinds name the data set the model was trained on (`dataset`: `fashion-mnist` or
//! `mnist`; files without it are Fashion-MNIST's). A checkpoint records the run's training
//! recipe (`recipe`: momentum, weight decay, schedule, clipping, augmentation, as JSON) and
//! its schedule's state (`lr_schedule_state`), both optional so that older checkpoints
//! load with the defaults.
//!
//! Weight readers accept either kind and ignore the `optimizer.` keys.

use crate::commands::model::ModelSpec;
use crate::commands::onnx_io;
use crate::error::{Context, Result};
use crate::plot::CurvePoint;
use crate::recipe::{self, DatasetName, Recipe};
use crate::tensorfile::{self, NamedTensor};
use crate::OptimizerName;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use tinycnn::nn::arch::{self, Architecture};
use tinycnn_models::Model;

/// Metadata value of `format` in a checkpoint.
pub const CHECKPOINT_FORMAT: &str = "tinycnn-checkpoint-1";
/// Key prefix of optimizer state tensors in a checkpoint.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// The settings that must not change between a run and its resumption.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// Network.
    pub model: ModelSpec,
    /// Update rule.
    pub optimizer: OptimizerName,
    /// Learning rate.
    pub lr: f32,
    /// Examples per mini-batch.
    pub batch_size: usize,
    /// Seed of initialization and shuffles.
    pub seed: u64,
    /// The data set trained on.
    pub dataset: DatasetName,
    /// Momentum, weight decay, schedule, clipping, augmentation.
    pub recipe: Recipe,
}

/// The figures printed after one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's examples.
    pub loss: f64,
    /// Training accuracy over the epoch's examples.
    pub train_acc: f64,
    /// Accuracy on the test set after the epoch.
    pub test_acc: f64,
    /// Training examples per second of training-step time (d2l's timer).
    pub examples_per_sec: f64,
}

/// Everything that accumulates over a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The Animator's points.
    pub points: Vec<CurvePoint>,
    /// One record per finished epoch.
    pub epochs: Vec<EpochRecord>,
    /// Seconds spent in training steps (d2l's `timer.sum()`).
    pub train_seconds: f64,
    /// Training examples processed (d2l's `metric[2] * num_epochs`).
    pub examples: u64,
}

/// Optimizer state: per-parameter tensors (`name` is `<param>.<slot>`, without the
/// `optimizer.` prefix) and scalars such as Adam's step count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerState {
    /// Per-parameter tensors.
    pub tensors: Vec<NamedTensor>,
    /// Scalar values by name.
    pub scalars: Vec<(String, f64)>,
}

/// A training checkpoint (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The run's fixed settings.
    pub config: RunConfig,
    /// Number of finished epochs.
    pub epochs_done: usize,
    /// The model's tensors.
    pub params: Vec<NamedTensor>,
    /// The optimizer's state.
    pub optimizer: OptimizerState,
    /// Curves and per-epoch figures so far.
    pub history: History,
    /// The learning-rate schedule's state, when the run has one.
    pub schedule: Option<tinycnn::optim::ScheduleState>,
}

fn weights_metadata(model: &ModelSpec) -> Result<HashMap<String, String>> {
    let mut m = HashMap::new();
    m.insert("format".to_string(), "pt".to_string());
    if let Some(name) = model.name() {
        m.insert("model".to_string(), name.to_string());
    }
    m.insert(
        arch::METADATA_KEY.to_string(),
        model
            .arch
            .to_json()
            .map_err(crate::error::runtime("the architecture"))?,
    );
    m.insert(
        "producer".to_string(),
        format!("tinycnn {}", env!("CARGO_PKG_VERSION")),
    );
    Ok(m)
}

/// Writes a weight file atomically.
pub fn save_weights(path: &Path, model: &ModelSpec, params: &[NamedTensor]) -> Result<()> {
    tensorfile::save(path, params, &weights_metadata(model)?)
}

/// Writes a weight file atomically, naming the data set it was trained on.
pub fn save_weights_of(
    path: &Path,
    model: &ModelSpec,
    dataset: DatasetName,
    params: &[NamedTensor],
) -> Result<()> {
    let mut meta = weights_metadata(model)?;
    meta.insert("dataset".to_string(), dataset.as_str().to_string());
    tensorfile::save(path, params, &meta)
}

/// The data set a file's metadata names (`None` for files that name none).
fn dataset_of(meta: &HashMap<String, String>, path: &Path) -> Result<Option<DatasetName>> {
    meta.get("dataset")
        .map(|d| {
            DatasetName::parse(d).ok_or_else(|| {
                crate::cli_err!("{}: unknown data set {d:?} in the metadata", path.display())
            })
        })
        .transpose()
}

/// The model tensors of a weight file, checkpoint or ONNX file, and what it records of its
/// model and data set.
pub struct LoadedWeights {
    /// Zoo model name from the metadata, when present.
    pub model: Option<Model>,
    /// The architecture the file records, when it does (always for ONNX).
    pub arch: Option<Architecture>,
    /// Model tensors (optimizer state left out).
    pub params: Vec<NamedTensor>,
    /// The data set it was trained on, when the file names one.
    pub dataset: Option<DatasetName>,
}

/// The zoo name and the architecture of a safetensors file's metadata, each when present.
fn recorded_model(
    path: &Path,
    metadata: &HashMap<String, String>,
) -> Result<(Option<Model>, Option<Architecture>)> {
    let model = match metadata.get("model") {
        None => None,
        Some(name) => Some(tinycnn_models::by_name(name).map_err(|_| {
            crate::cli_err!(
                "{}: unknown model {name:?} in the file's metadata",
                path.display()
            )
        })?),
    };
    let arch = match metadata.get(arch::METADATA_KEY) {
        None => None,
        Some(json) => Some(Architecture::from_json(json).map_err(|e| {
            crate::cli_err!(
                "{}: the architecture in the file's metadata cannot be used: {e}",
                path.display()
            )
        })?),
    };
    Ok((model, arch))
}

/// Reads the model tensors of a weight file, a checkpoint, or an ONNX model (by the
/// extension `.onnx`).
pub fn load_weights(path: &Path) -> Result<LoadedWeights> {
    if onnx_io::is_onnx(path) {
        let (arch, params) = onnx_io::load(path)?;
        check_finite(path, "weight", &params)?;
        return Ok(LoadedWeights {
            model: None,
            arch: Some(arch),
            params,
            // ONNX has no place for it: the data set comes from --dataset or the default.
            dataset: None,
        });
    }
    let file = tensorfile::load(path)?;
    let (model, arch) = recorded_model(path, &file.metadata)?;
    let params: Vec<NamedTensor> = file
        .tensors
        .into_iter()
        .filter(|t| !t.name.starts_with(OPTIMIZER_PREFIX))
        .collect();
    check_finite(path, "weight", &params)?;
    let dataset = dataset_of(&file.metadata, path)?;
    Ok(LoadedWeights {
        model,
        arch,
        params,
        dataset,
    })
}

/// Refuses tensors holding NaN or an infinity, naming the first such value: weights like
/// these make every prediction NaN (or, through ReLU and max pooling, silently wrong), and a
/// resumed run would train from garbage.
pub fn check_finite(path: &Path, what: &str, tensors: &[NamedTensor]) -> Result<()> {
    for t in tensors {
        if let Some((i, v)) = t.data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(crate::cli_err!(
                "{}: {what} {} holds {} at index {i}; the file cannot be used (written by a diverged run?)",
                path.display(),
                t.name,
                if v.is_nan() { "NaN".to_string() } else { v.to_string() }
            ));
        }
    }
    Ok(())
}

/// The optimizer state must be the one its metadata names, complete: resuming Adam without
/// its moments (or an SGD checkpoint relabelled `adam`) would silently restart Adam from
/// fresh state, and SGD cannot use Adam's moments. `num_params` is the model's tensor count;
/// the state's keys are `state.{i}.{slot}`.
fn check_optimizer_state(
    path: &Path,
    optimizer: OptimizerName,
    sgd_momentum: bool,
    epochs_done: usize,
    num_params: usize,
    state: &OptimizerState,
) -> Result<()> {
    // Checkpoints of an older cuda Adam run are refused when the state is loaded, with their
    // own reason (commands::model::load_optimizer_state).
    if state
        .scalars
        .iter()
        .any(|(k, _)| k == "cuda_adam_state_missing")
    {
        return Ok(());
    }
    let has = |name: &str| state.tensors.iter().any(|t| t.name == name);
    let slot_of = |t: &NamedTensor| t.name.rsplit('.').next().unwrap_or("").to_string();
    match optimizer {
        OptimizerName::Sgd => {
            // SGD keeps a momentum buffer per parameter when it has a momentum, else nothing.
            let foreign = state
                .tensors
                .iter()
                .find(|t| !sgd_momentum || slot_of(t) != "momentum_buffer");
            if let Some(t) = foreign {
                let kind = match slot_of(t).as_str() {
                    "step" | "exp_avg" | "exp_avg_sq" => "Adam state",
                    _ => "optimizer state",
                };
                return Err(unusable(
                    path,
                    &format!(
                        "its metadata says optimizer sgd, but it holds {kind} ({}{OPTIMIZER_PREFIX}{}); \
                         sgd {}, so the file is inconsistent",
                        if state.tensors.len() > 1 {
                            format!("{} tensors, e.g. ", state.tensors.len())
                        } else {
                            String::new()
                        },
                        t.name,
                        if sgd_momentum {
                            "with momentum keeps only momentum buffers"
                        } else {
                            "without momentum keeps none"
                        }
                    ),
                ));
            }
            if sgd_momentum && epochs_done > 0 {
                let missing: Vec<String> = (0..num_params)
                    .map(|i| format!("state.{i}.momentum_buffer"))
                    .filter(|k| !has(k))
                    .map(|k| format!("{OPTIMIZER_PREFIX}{k}"))
                    .collect();
                if !missing.is_empty() {
                    return Err(unusable(
                        path,
                        &format!(
                            "its metadata says sgd with momentum after {epochs_done} epochs, but the \
                             momentum buffers are missing ({}); resuming would restart the momentum",
                            crate::error::short_list(&missing, 3)
                        ),
                    ));
                }
            }
        }
        OptimizerName::Adam => {
            if let Some(t) = state
                .tensors
                .iter()
                .find(|t| !matches!(slot_of(t).as_str(), "step" | "exp_avg" | "exp_avg_sq"))
            {
                return Err(unusable(
                    path,
                    &format!(
                        "its metadata says optimizer adam, but it holds {OPTIMIZER_PREFIX}{}, which is not Adam state",
                        t.name
                    ),
                ));
            }
            if epochs_done > 0 {
                let missing: Vec<String> = (0..num_params)
                    .flat_map(|i| {
                        ["step", "exp_avg", "exp_avg_sq"].map(|s| format!("state.{i}.{s}"))
                    })
                    .filter(|k| !has(k))
                    .map(|k| format!("{OPTIMIZER_PREFIX}{k}"))
                    .collect();
                if !missing.is_empty() {
                    return Err(unusable(
                        path,
                        &format!(
                            "its metadata says optimizer adam after {epochs_done} epochs, but Adam's state is missing                              ({}); resuming would restart Adam from fresh moments",
                            crate::error::short_list(&missing, 3)
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn points_to_json(points: &[CurvePoint]) -> Value {
    Value::Array(
        points
            .iter()
            .map(|p| match *p {
                CurvePoint::Train { x, loss, acc } => json!(["train", x, loss, acc]),
                CurvePoint::Test { x, acc } => json!(["test", x, acc]),
            })
            .collect(),
    )
}

fn history_to_json(h: &History) -> Value {
    json!({
        "points": points_to_json(&h.points),
        "epochs": h.epochs.iter().map(|e| json!({
            "epoch": e.epoch, "loss": e.loss, "train_acc": e.train_acc,
            "test_acc": e.test_acc, "examples_per_sec": e.examples_per_sec,
        })).collect::<Vec<_>>(),
        "train_seconds": h.train_seconds,
        "examples": h.examples,
    })
}

fn bad(path: &Path, what: &str) -> crate::error::CliError {
    crate::cli_err!("{} is not a tinycnn checkpoint: {what}", path.display())
}

/// A well-formed checkpoint whose contents cannot be resumed.
fn unusable(path: &Path, what: &str) -> crate::error::CliError {
    crate::cli_err!("{} cannot be resumed: {what}", path.display())
}

fn num(v: &Value, path: &Path, what: &str) -> Result<f64> {
    v.as_f64()
        .ok_or_else(|| bad(path, &format!("{what} is not a number")))
}

fn history_from_json(v: &Value, path: &Path) -> Result<History> {
    let mut h = History::default();
    let points = v["points"]
        .as_array()
        .ok_or_else(|| bad(path, "history has no points"))?;
    for p in points {
        let a = p
            .as_array()
            .ok_or_else(|| bad(path, "malformed curve point"))?;
        let f = |i: usize| {
            a.get(i)
                .and_then(Value::as_f64)
                .ok_or_else(|| bad(path, "malformed curve point"))
        };
        h.points.push(match a.first().and_then(Value::as_str) {
            Some("train") => CurvePoint::Train {
                x: f(1)?,
                loss: f(2)?,
                acc: f(3)?,
            },
            Some("test") => CurvePoint::Test {
                x: f(1)?,
                acc: f(2)?,
            },
            _ => return Err(bad(path, "malformed curve point")),
        });
    }
    let epochs = v["epochs"]
        .as_array()
        .ok_or_else(|| bad(path, "history has no epochs"))?;
    for e in epochs {
        h.epochs.push(EpochRecord {
            epoch: num(&e["epoch"], path, "epoch")? as usize,
            loss: num(&e["loss"], path, "loss")?,
            train_acc: num(&e["train_acc"], path, "train_acc")?,
            test_acc: num(&e["test_acc"], path, "test_acc")?,
            examples_per_sec: num(&e["examples_per_sec"], path, "examples_per_sec")?,
        });
    }
    h.train_seconds = num(&v["train_seconds"], path, "train_seconds")?;
    h.examples = v["examples"]
        .as_u64()
        .ok_or_else(|| bad(path, "examples is not a count"))?;
    Ok(h)
}

/// Writes a checkpoint atomically.
pub fn save_checkpoint(path: &Path, ck: &Checkpoint) -> Result<()> {
    let mut meta = weights_metadata(&ck.config.model)?;
    meta.insert("format".to_string(), CHECKPOINT_FORMAT.to_string());
    meta.insert(
        "optimizer".to_string(),
        ck.config.optimizer.as_str().to_string(),
    );
    // f32 -> f64 is exact, and serde_json prints the shortest string that reads back the
    // same value, so the learning rate survives the round trip bit for bit.
    meta.insert("lr".to_string(), json!(ck.config.lr as f64).to_string());
    meta.insert("batch_size".to_string(), ck.config.batch_size.to_string());
    meta.insert("seed".to_string(), ck.config.seed.to_string());
    meta.insert(
        "rng".to_string(),
        format!("chacha8 seed {} stream = epoch index", ck.config.seed),
    );
    meta.insert("epochs_done".to_string(), ck.epochs_done.to_string());
    meta.insert(
        "dataset".to_string(),
        ck.config.dataset.as_str().to_string(),
    );
    meta.insert("recipe".to_string(), ck.config.recipe.to_json());
    if let Some(state) = &ck.schedule {
        meta.insert(
            "lr_schedule_state".to_string(),
            recipe::state_to_json(state),
        );
    }
    let scalars: serde_json::Map<String, Value> = ck
        .optimizer
        .scalars
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    meta.insert(
        "optimizer_scalars".to_string(),
        Value::Object(scalars).to_string(),
    );
    meta.insert(
        "history".to_string(),
        history_to_json(&ck.history).to_string(),
    );
    let mut tensors = ck.params.clone();
    for t in &ck.optimizer.tensors {
        tensors.push(NamedTensor {
            name: format!("{OPTIMIZER_PREFIX}{}", t.name),
            ..t.clone()
        });
    }
    tensorfile::save(path, &tensors, &meta)
}

/// Reads a checkpoint written by [`save_checkpoint`].
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    let file = tensorfile::load(path)?;
    let m = &file.metadata;
    let get = |k: &str| {
        m.get(k)
            .ok_or_else(|| bad(path, &format!("metadata has no {k:?}")))
    };
    if get("format")? != CHECKPOINT_FORMAT {
        return Err(bad(
            path,
            &format!(
                "format is {:?} (a weight file cannot be resumed; it has no optimizer state)",
                m["format"]
            ),
        ));
    }
    let (model, arch) = recorded_model(path, m)?;
    let model = ModelSpec::recorded(model, arch)?.ok_or_else(|| {
        bad(
            path,
            &format!(
                "metadata has neither \"model\" nor {:?}",
                arch::METADATA_KEY
            ),
        )
    })?;
    let optimizer = match get("optimizer")?.as_str() {
        "sgd" => OptimizerName::Sgd,
        "adam" => OptimizerName::Adam,
        other => return Err(bad(path, &format!("unknown optimizer {other:?}"))),
    };
    let lr: f64 = get("lr")?
        .parse()
        .map_err(|_| bad(path, "lr is not a number"))?;
    // Checked here, so that a bad value is reported as the file's, not as a bad flag.
    if !(lr.is_finite() && lr > 0.0 && (lr as f32).is_finite() && lr as f32 > 0.0) {
        return Err(unusable(
            path,
            &format!("its learning rate lr = {lr} is not a positive number"),
        ));
    }
    let batch_size: usize = get("batch_size")?
        .parse()
        .map_err(|_| bad(path, "batch_size is not a count"))?;
    if batch_size == 0 {
        return Err(unusable(path, "its batch_size is 0"));
    }
    let seed = get("seed")?
        .parse()
        .map_err(|_| bad(path, "seed is not an integer"))?;
    let epochs_done = get("epochs_done")?
        .parse()
        .map_err(|_| bad(path, "epochs_done is not a count"))?;
    let scalars_json: Value = serde_json::from_str(get("optimizer_scalars")?)
        .context(|| format!("{}: optimizer_scalars", path.display()))?;
    let scalars = scalars_json
        .as_object()
        .ok_or_else(|| bad(path, "optimizer_scalars is not an object"))?
        .iter()
        .map(|(k, v)| Ok((k.clone(), num(v, path, k)?)))
        .collect::<Result<Vec<_>>>()?;
    let history_json: Value =
        serde_json::from_str(get("history")?).context(|| format!("{}: history", path.display()))?;
    let history = history_from_json(&history_json, path)?;
    let what = path.display().to_string();
    let dataset = dataset_of(m, path)?.unwrap_or_default();
    let recipe = match m.get("recipe") {
        Some(text) => Recipe::from_json(text, &what)?,
        None => Recipe::default(),
    };
    let schedule = match m.get("lr_schedule_state") {
        Some(text) => Some(recipe::state_from_json(text, &what)?),
        None => None,
    };
    if schedule.is_some() != (recipe.schedule != recipe::Schedule::None) && epochs_done > 0 {
        return Err(unusable(
            path,
            "its learning-rate schedule and the schedule's state do not go together",
        ));
    }
    let mut params = Vec::new();
    let mut opt_tensors = Vec::new();
    for t in file.tensors {
        match t.name.strip_prefix(OPTIMIZER_PREFIX) {
            Some(rest) => opt_tensors.push(NamedTensor {
                name: rest.to_string(),
                ..t
            }),
            None => params.push(t),
        }
    }
    check_finite(path, "weight", &params)?;
    check_finite(path, "optimizer tensor", &opt_tensors)?;
    let optimizer_state = OptimizerState {
        tensors: opt_tensors,
        scalars,
    };
    // Momentum buffers exist when SGD has a momentum, or one is cycled by onecycle.
    let sgd_momentum =
        recipe.momentum != 0.0 || matches!(recipe.schedule, recipe::Schedule::OneCycle { .. });
    // The optimizer holds state for the trainable parameters only: the file's tensors also
    // hold the buffers (batch norm's running statistics), which it must not count. The
    // network is built only to name them; training reseeds before it builds its own.
    let buffers: std::collections::HashSet<String> = model
        .build()?
        .named_buffers()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let num_params = params.iter().filter(|t| !buffers.contains(&t.name)).count();
    check_optimizer_state(
        path,
        optimizer,
        sgd_momentum,
        epochs_done,
        num_params,
        &optimizer_state,
    )?;
    Ok(Checkpoint {
        config: RunConfig {
            model,
            optimizer,
            lr: lr as f32,
            batch_size,
            seed,
            dataset,
            recipe,
        },
        epochs_done,
        params,
        optimizer: optimizer_state,
        history,
        schedule,
    })
}

/// The default checkpoint path next to a weight file: `lenet.safetensors` ->
/// `lenet.ckpt.safetensors`.
pub fn default_checkpoint_path(out: &Path) -> std::path::PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".safetensors").unwrap_or(&name);
    out.with_file_name(format!("{stem}.ckpt.safetensors"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            config: RunConfig {
                model: ModelSpec::zoo(Model::LeNetRelu).unwrap(),
                optimizer: OptimizerName::Adam,
                lr: 0.001,
                batch_size: 256,
                seed: 7,
                dataset: DatasetName::Mnist,
                recipe: Recipe {
                    weight_decay: 1e-4,
                    schedule: recipe::Schedule::Step {
                        step_size: 2,
                        gamma: 0.5,
                    },
                    ..Recipe::default()
                },
            },
            epochs_done: 2,
            params: vec![NamedTensor {
                name: "0.bias".into(),
                shape: vec![2],
                data: vec![0.5, -0.25],
            }],
            optimizer: OptimizerState {
                tensors: vec![
                    NamedTensor {
                        name: "state.0.exp_avg".into(),
                        shape: vec![2],
                        data: vec![1e-3, 2e-3],
                    },
                    NamedTensor {
                        name: "state.0.exp_avg_sq".into(),
                        shape: vec![2],
                        data: vec![1e-6, 4e-6],
                    },
                    NamedTensor {
                        name: "state.0.step".into(),
                        shape: vec![],
                        data: vec![470.0],
                    },
                ],
                scalars: vec![("extra".into(), 0.5)],
            },
            history: History {
                points: vec![
                    CurvePoint::Train {
                        x: 0.2,
                        loss: 2.31,
                        acc: 0.1,
                    },
                    CurvePoint::Test {
                        x: 1.0,
                        acc: 0.1 / 3.0,
                    },
                ],
                epochs: vec![EpochRecord {
                    epoch: 1,
                    loss: 2.3,
                    train_acc: 0.1,
                    test_acc: 0.1 / 3.0,
                    examples_per_sec: 12345.6,
                }],
                train_seconds: 4.25,
                examples: 60000,
            },
            schedule: Some(tinycnn::optim::ScheduleState {
                last_epoch: 2,
                last_lr: 0.0005,
                last_momentum: None,
            }),
        }
    }

    #[test]
    fn checkpoint_round_trips_exactly() {
        let dir = std::env::temp_dir().join(format!("tinycnn-ck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("run.ckpt.safetensors");
        let ck = sample();
        save_checkpoint(&p, &ck).unwrap();
        assert_eq!(load_checkpoint(&p).unwrap(), ck);
        // A checkpoint also reads as a weight file, without the optimizer state.
        let w = load_weights(&p).unwrap();
        assert_eq!(w.model, Some(Model::LeNetRelu));
        assert_eq!(w.arch, Some(ck.config.model.arch.clone()));
        assert_eq!(w.params, ck.params);
        // A weight file is not a checkpoint.
        let wp = dir.join("w.safetensors");
        save_weights(&wp, &ModelSpec::zoo(Model::LeNet).unwrap(), &ck.params).unwrap();
        let e = load_checkpoint(&wp).unwrap_err();
        assert!(e.to_string().contains("not a tinycnn checkpoint"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_checkpoint_path_sits_next_to_the_weights() {
        assert_eq!(
            default_checkpoint_path(Path::new("out/lenet.safetensors")),
            Path::new("out/lenet.ckpt.safetensors")
        );
        assert_eq!(
            default_checkpoint_path(Path::new("w.bin")),
            Path::new("w.bin.ckpt.safetensors")
        );
    }
}
