//! The two places a network can run, behind one interface: the tinycnn runtime on the CPU
//! (autograd, `nn::Sequential`, `optim`) and the tinycnn-cuda executor on a GPU.

use crate::checkpoint::{OptimizerState, RunConfig};
use crate::error::Result;
use crate::tensorfile::NamedTensor;
use crate::{DeviceName, ModelName, OptimizerName};
use tinycnn::data::Split;
use tinycnn::nn::{Module, Sequential, StateDict};
use tinycnn::optim::{Adam, Optimizer, Sgd};
use tinycnn::Tensor;

/// What one training step reports.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// Mean cross-entropy of the batch (before the update, as d2l's `l`).
    pub loss: f32,
    /// Rows whose arg-max is the label (d2l's `accuracy(y_hat, y)`).
    pub correct: usize,
    /// Rows in the batch.
    pub examples: usize,
}

/// A network with (for training) its optimizer.
pub trait Engine {
    /// `cpu` or `cuda`, for d2l's `training on ...` and `... examples/sec on ...` lines.
    fn device_name(&self) -> &'static str;
    /// Forward, cross-entropy, backward and one optimizer step on a batch `[N, 1, 28, 28]`.
    fn train_step(&mut self, images: &[f32], shape: [usize; 4], labels: &[u32]) -> Result<Step>;
    /// Class scores `[N, 10]`, row-major, without recording gradients.
    fn logits(&mut self, images: &[f32], shape: [usize; 4]) -> Result<Vec<f32>>;
    /// The parameters under PyTorch's state-dict names.
    fn params(&self) -> Result<Vec<NamedTensor>>;
    /// Replaces every parameter; names and shapes must match exactly.
    fn load_params(&mut self, params: &[NamedTensor]) -> Result<()>;
    /// The optimizer's state, for a checkpoint.
    fn optimizer_state(&self) -> Result<OptimizerState>;
    /// Restores [`Engine::optimizer_state`] output.
    fn load_optimizer_state(&mut self, state: &OptimizerState) -> Result<()>;

    /// Keeps a copy of the training and test sets on the engine's device, so that
    /// [`Engine::train_resident`] and [`Engine::evaluate_resident`] run without host batches.
    /// Returns `false` (the default) for an engine without that mode: the caller then feeds
    /// host batches to [`Engine::train_step`] and [`Engine::logits`].
    fn upload_data(&mut self, _train: &Split, _test: &Split) -> Result<bool> {
        Ok(false)
    }
    /// Trains on the uploaded training set: mini-batches of the run's batch size taken from
    /// `order` (sample indices; the last batch may be smaller), one update each, one
    /// [`Step`] per batch. A step with a non-finite loss may be followed by others, trained
    /// from the diverged weights; the caller stops at the first.
    fn train_resident(&mut self, _order: &[u32]) -> Result<Vec<Step>> {
        Err(crate::cli_err!(
            "this engine holds no data set; feed host batches"
        ))
    }
    /// d2l's `evaluate_accuracy_gpu` on the uploaded test set.
    fn evaluate_resident(&mut self) -> Result<f64> {
        Err(crate::cli_err!(
            "this engine holds no data set; feed host batches"
        ))
    }
}

/// Scalar a cuda Adam run wrote into its checkpoints before the GPU executor exported
/// Adam's moments; such a checkpoint has no moments and cannot be resumed exactly.
const LEGACY_CUDA_ADAM_MARKER: &str = "cuda_adam_state_missing";

fn reject_legacy_cuda_adam(state: &OptimizerState) -> Result<()> {
    if state
        .scalars
        .iter()
        .any(|(k, _)| k == LEGACY_CUDA_ADAM_MARKER)
    {
        return Err(crate::cli_err!(
            "the checkpoint was written by an Adam run on cuda by an older tinycnn, which did not save Adam's moments; \
             it cannot be resumed exactly (its weights still load: start a new run from them, or retrain)"
        ));
    }
    Ok(())
}

/// Optimizer tensor names of a checkpoint, as the CPU optimizers' `state_dict` writes them
/// (PyTorch's): `state.{i}.{slot}`, `i` the parameter's index in state-dict order.
fn parse_state_key(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("state.")?;
    let (index, slot) = rest.split_once('.')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((index.parse().ok()?, slot))
}

/// The checkpoint form of the GPU executor's optimizer state: `<param>.exp_avg` becomes
/// `state.{i}.exp_avg` (likewise `exp_avg_sq`, `momentum_buffer`), and the executor's one
/// Adam step count becomes `state.{i}.step` (a scalar) of every parameter with Adam moments,
/// exactly what the CPU `Adam` writes after the same number of steps.
pub fn optimizer_state_from_cuda(
    params: &[(String, Vec<usize>)],
    state: &tinycnn_cuda::net::OptimizerState,
) -> Result<OptimizerState> {
    let mut tensors = Vec::new();
    for (i, (param, shape)) in params.iter().enumerate() {
        let find = |slot: &str| {
            let key = format!("{param}.{slot}");
            state.buffers.iter().find(|(n, _, _)| *n == key)
        };
        let tensor = |slot: &str, s: &[usize], data: &[f32]| -> Result<NamedTensor> {
            if s != shape.as_slice() || data.len() != shape.iter().product::<usize>() {
                return Err(crate::cli_err!(
                    "cuda optimizer state: {param}.{slot} has shape {s:?}, the parameter {shape:?}"
                ));
            }
            Ok(NamedTensor {
                name: format!("state.{i}.{slot}"),
                shape: s.to_vec(),
                data: data.to_vec(),
            })
        };
        match (find("exp_avg"), find("exp_avg_sq"), find("momentum_buffer")) {
            (Some(m), Some(v), None) => {
                if state.adam_steps == 0 {
                    return Err(crate::cli_err!(
                        "cuda optimizer state: Adam moments of {param} without a step count"
                    ));
                }
                tensors.push(NamedTensor {
                    name: format!("state.{i}.step"),
                    shape: Vec::new(),
                    data: vec![state.adam_steps as f32],
                });
                tensors.push(tensor("exp_avg", &m.1, &m.2)?);
                tensors.push(tensor("exp_avg_sq", &v.1, &v.2)?);
            }
            (None, None, Some(b)) => tensors.push(tensor("momentum_buffer", &b.1, &b.2)?),
            (None, None, None) => {}
            _ => {
                return Err(crate::cli_err!(
                    "cuda optimizer state of {param}: needs either momentum_buffer or both exp_avg and exp_avg_sq"
                ))
            }
        }
    }
    let known = state.buffers.iter().all(|(n, _, _)| {
        params.iter().any(|(p, _)| {
            ["exp_avg", "exp_avg_sq", "momentum_buffer"]
                .iter()
                .any(|slot| *n == format!("{p}.{slot}"))
        })
    });
    if !known {
        return Err(crate::cli_err!(
            "cuda optimizer state names a buffer of no parameter"
        ));
    }
    Ok(OptimizerState {
        tensors,
        scalars: Vec::new(),
    })
}

/// The inverse of [`optimizer_state_from_cuda`], for a checkpoint written on either device.
/// The GPU executor keeps one Adam step count for all parameters, so every parameter must
/// carry Adam state with the same `step`, or none may.
pub fn optimizer_state_to_cuda(
    params: &[(String, Vec<usize>)],
    state: &OptimizerState,
) -> Result<tinycnn_cuda::net::OptimizerState> {
    reject_legacy_cuda_adam(state)?;
    if let Some((k, _)) = state.scalars.first() {
        return Err(crate::cli_err!(
            "the checkpoint's optimizer state has a scalar {k:?} that no optimizer uses"
        ));
    }
    let mut buffers = Vec::new();
    let mut steps: Vec<(usize, u32)> = Vec::new();
    for t in &state.tensors {
        let (i, slot) = parse_state_key(&t.name)
            .filter(|(i, _)| *i < params.len())
            .ok_or_else(|| {
                crate::cli_err!(
                    "the checkpoint's optimizer tensor {} belongs to no parameter of the model ({} parameters)",
                    t.name,
                    params.len()
                )
            })?;
        let (param, shape) = &params[i];
        match slot {
            "step" => {
                let s = match t.data.as_slice() {
                    [s] if t.shape.iter().product::<usize>() == 1 => *s,
                    _ => {
                        return Err(crate::cli_err!(
                            "the checkpoint's optimizer tensor {} is not a scalar",
                            t.name
                        ))
                    }
                };
                if !(1.0..=(1u32 << 24) as f32).contains(&s) || s.fract() != 0.0 {
                    return Err(crate::cli_err!(
                        "the checkpoint's optimizer tensor {} = {s} is not a step count",
                        t.name
                    ));
                }
                steps.push((i, s as u32));
            }
            "exp_avg" | "exp_avg_sq" | "momentum_buffer" => {
                if &t.shape != shape || t.data.len() != shape.iter().product::<usize>() {
                    return Err(crate::cli_err!(
                        "the checkpoint's optimizer tensor {} has shape {:?}, parameter {param} has {shape:?}",
                        t.name,
                        t.shape
                    ));
                }
                buffers.push((format!("{param}.{slot}"), t.shape.clone(), t.data.clone()));
            }
            _ => {
                return Err(crate::cli_err!(
                    "the checkpoint's optimizer tensor {} has an unknown slot {slot:?}",
                    t.name
                ))
            }
        }
    }
    let has = |param: &str, slot: &str| {
        let key = format!("{param}.{slot}");
        buffers.iter().any(|(n, _, _)| *n == key)
    };
    let mut adam = 0;
    for (i, (param, _)) in params.iter().enumerate() {
        let step = steps.iter().any(|(j, _)| *j == i);
        let (m, v) = (has(param, "exp_avg"), has(param, "exp_avg_sq"));
        if !(step == m && m == v) || (m && has(param, "momentum_buffer")) {
            return Err(crate::cli_err!(
                "the checkpoint's optimizer state of parameter {param}: step, exp_avg and exp_avg_sq must be given together"
            ));
        }
        adam += m as usize;
    }
    let adam_steps = match steps.first() {
        None => 0,
        Some(&(_, first)) => {
            if adam != params.len() || steps.iter().any(|&(_, s)| s != first) {
                return Err(crate::cli_err!(
                    "the checkpoint's Adam state covers {} of {} parameters with step counts {:?}; \
                     the cuda executor needs one step count shared by every parameter",
                    adam,
                    params.len(),
                    steps.iter().map(|&(_, s)| s).collect::<Vec<_>>()
                ));
            }
            first
        }
    };
    Ok(tinycnn_cuda::net::OptimizerState {
        adam_steps,
        buffers,
    })
}

fn rt<T>(r: tinycnn::Result<T>) -> Result<T> {
    r.map_err(|e| crate::cli_err!("{e}"))
}

/// Sets the CPU kernels' thread count.
pub fn set_num_threads(n: usize) -> Result<()> {
    rt(tinycnn::set_num_threads(n))
}

/// The untrained network (PyTorch's default layer initialization from the global generator).
pub fn build_net(model: ModelName) -> Result<Sequential> {
    let name = model.as_str();
    rt(tinycnn_models::build_by_name(name)).map_err(|e| crate::cli_err!("cannot build {name}: {e}"))
}

/// d2l's `init_weights`: `xavier_uniform_` on the weight of every `Linear` and `Conv2d`;
/// biases keep the layer's default initialization.
fn xavier_init(net: &Sequential) -> Result<()> {
    rt(tinycnn_models::init_weights(net))
}

/// A freshly initialized network: global generator seeded with `seed`, default layer init,
/// then d2l's Xavier init. The same seed gives the same weights on every machine.
pub fn init_net(model: ModelName, seed: u64) -> Result<Sequential> {
    tinycnn::manual_seed(seed);
    let net = build_net(model)?;
    xavier_init(&net)?;
    Ok(net)
}

fn to_named(sd: &StateDict) -> Vec<NamedTensor> {
    sd.iter()
        .map(|(k, t)| NamedTensor {
            name: k.to_string(),
            shape: t.shape().to_vec(),
            data: t.to_vec(),
        })
        .collect()
}

fn to_state_dict(tensors: &[NamedTensor]) -> Result<StateDict> {
    let mut sd = StateDict::new();
    for t in tensors {
        sd.insert(
            t.name.clone(),
            rt(Tensor::from_vec(t.data.clone(), &t.shape))?,
        );
    }
    Ok(sd)
}

/// Compares a file's tensors with the network's, naming the first key that is missing,
/// unexpected or of another shape.
pub fn check_params(expected: &[(String, Vec<usize>)], got: &[NamedTensor]) -> Result<()> {
    for (name, shape) in expected {
        match got.iter().find(|t| &t.name == name) {
            None => {
                let have: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
                return Err(crate::cli_err!(
                    "key {name} (shape {shape:?}) is missing; the file has {} keys: {}",
                    crate::error::group_thousands(have.len()),
                    crate::error::short_list(&have, 5)
                ));
            }
            Some(t) if &t.shape != shape => {
                return Err(crate::cli_err!(
                    "key {name} has shape {:?} in the file but {shape:?} in the model",
                    t.shape
                ))
            }
            Some(_) => {}
        }
    }
    let extra: Vec<&NamedTensor> = got
        .iter()
        .filter(|t| !expected.iter().any(|(n, _)| *n == t.name))
        .collect();
    if let Some(first) = extra.first() {
        let want: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        let names: Vec<&str> = extra.iter().map(|t| t.name.as_str()).collect();
        return Err(crate::cli_err!(
            "key {} (shape {:?}) is not a parameter of the model, which has {}; unexpected keys: {}",
            first.name,
            first.shape,
            crate::error::short_list(&want, 12),
            crate::error::short_list(&names, 3)
        ));
    }
    Ok(())
}

/// Counts rows of `logits` (`[N, 10]`) whose arg-max equals the label.
pub fn count_correct(logits: &[f32], labels: &[u32]) -> usize {
    logits
        .chunks_exact(10)
        .zip(labels)
        .filter(|(row, &l)| crate::report::argmax(row) == l as usize)
        .count()
}

/// One layer of `summary`.
pub struct LayerInfo {
    /// PyTorch class name (`Conv2d`, `Sigmoid`, ...).
    pub name: String,
    /// Output shape for a `[1, 1, 28, 28]` input.
    pub output_shape: Vec<usize>,
    /// Number of parameters the layer owns.
    pub params: usize,
}

/// d2l's shape walk: a `[1, 1, 28, 28]` input through each layer in turn.
pub fn layer_walk(model: ModelName) -> Result<Vec<LayerInfo>> {
    let net = build_net(model)?;
    let x = Tensor::rand(&[1, 1, 28, 28]);
    let outs = rt(tinycnn::no_grad(|| net.forward_trace(&x)))?;
    Ok(net
        .iter()
        .zip(outs)
        .map(|((_, layer), out)| LayerInfo {
            name: layer.type_name(),
            output_shape: out.shape().to_vec(),
            params: layer.num_parameters(),
        })
        .collect())
}

/// The CPU engine: the tinycnn runtime.
pub struct CpuEngine {
    net: Sequential,
    optimizer: Option<Box<dyn Optimizer>>,
    /// The lean forward path, compiled on first use for one image shape; it reads the
    /// current weights at every call, so training between evaluations needs no rebuild.
    inference: Option<(Vec<usize>, tinycnn::Inference)>,
}

impl CpuEngine {
    fn new(net: Sequential, config: Option<&RunConfig>) -> Result<CpuEngine> {
        let optimizer: Option<Box<dyn Optimizer>> = match config {
            None => None,
            Some(c) => Some(match c.optimizer {
                OptimizerName::Sgd => Box::new(rt(Sgd::new(net.parameters(), c.lr))?),
                OptimizerName::Adam => Box::new(rt(Adam::new(net.parameters(), c.lr))?),
            }),
        };
        Ok(CpuEngine {
            net,
            optimizer,
            inference: None,
        })
    }

    fn input(images: &[f32], shape: [usize; 4]) -> Result<Tensor> {
        rt(Tensor::from_vec(images.to_vec(), &shape))
    }
}

impl Engine for CpuEngine {
    fn device_name(&self) -> &'static str {
        "cpu"
    }

    fn train_step(&mut self, images: &[f32], shape: [usize; 4], labels: &[u32]) -> Result<Step> {
        let opt = self
            .optimizer
            .as_mut()
            .ok_or_else(|| crate::cli_err!("this network was loaded for inference only"))?;
        let x = Self::input(images, shape)?;
        opt.zero_grad();
        let y_hat = rt(self.net.forward(&x))?;
        let l = rt(y_hat.cross_entropy(labels))?;
        let loss = rt(l.item())?;
        if !loss.is_finite() {
            // Report before the update; the caller stops here.
            return Ok(Step {
                loss,
                correct: 0,
                examples: labels.len(),
            });
        }
        rt(l.backward())?;
        rt(opt.step())?;
        let correct = rt(tinycnn::nn::accuracy(&y_hat, labels))?;
        Ok(Step {
            loss,
            correct,
            examples: labels.len(),
        })
    }

    fn logits(&mut self, images: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        let image = shape[1..].to_vec();
        if self.inference.as_ref().is_none_or(|(s, _)| *s != image) {
            // Every built-in model compiles; the autograd forward stays as the fallback.
            self.inference = tinycnn::Inference::new(&self.net, &image)
                .ok()
                .map(|i| (image, i));
        }
        let x = Self::input(images, shape)?;
        let y = match &mut self.inference {
            Some((_, lean)) => rt(lean.run(&x))?,
            None => rt(tinycnn::no_grad(|| self.net.forward(&x)))?,
        };
        Ok(y.to_vec())
    }

    fn params(&self) -> Result<Vec<NamedTensor>> {
        Ok(to_named(&self.net.state_dict()))
    }

    fn load_params(&mut self, params: &[NamedTensor]) -> Result<()> {
        let expected: Vec<(String, Vec<usize>)> = self
            .net
            .state_dict()
            .iter()
            .map(|(k, t)| (k.to_string(), t.shape().to_vec()))
            .collect();
        check_params(&expected, params)?;
        rt(self.net.load_state_dict(&to_state_dict(params)?))
    }

    fn optimizer_state(&self) -> Result<OptimizerState> {
        let opt = self
            .optimizer
            .as_ref()
            .ok_or_else(|| crate::cli_err!("no optimizer"))?;
        Ok(OptimizerState {
            tensors: to_named(&opt.state_dict()),
            scalars: Vec::new(),
        })
    }

    fn load_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let opt = self
            .optimizer
            .as_mut()
            .ok_or_else(|| crate::cli_err!("no optimizer"))?;
        reject_legacy_cuda_adam(state)?;
        rt(opt.load_state_dict(&to_state_dict(&state.tensors)?))
            .map_err(|e| crate::cli_err!("the checkpoint's optimizer state does not fit: {e}"))
    }
}

/// A network for training: fresh weights from `config.seed` (replaced by the checkpoint's
/// when resuming) and the configured optimizer.
pub fn create(device: DeviceName, config: &RunConfig) -> Result<Box<dyn Engine>> {
    let net = init_net(config.model, config.seed)?;
    match device {
        DeviceName::Cpu => Ok(Box::new(CpuEngine::new(net, Some(config))?)),
        DeviceName::Cuda => cuda::create(config, &to_named(&net.state_dict())),
    }
}

/// A network for inference (weights loaded by the caller). On cuda, [`Engine::logits`]
/// takes any number of images and runs them [`INFERENCE_BATCH`] at a time.
pub fn create_for_inference(device: DeviceName, model: ModelName) -> Result<Box<dyn Engine>> {
    match device {
        DeviceName::Cpu => Ok(Box::new(CpuEngine::new(build_net(model)?, None)?)),
        DeviceName::Cuda => cuda::create_for_inference(model),
    }
}

/// Images per forward pass of an inference engine on cuda (the size its buffers are planned
/// for).
pub const INFERENCE_BATCH: usize = 256;

mod cuda {
    //! The GPU engine: tinycnn-cuda's `CudaSequential`. The initial weights come from the CPU
    //! network (same seed, same weights on both devices).

    use super::*;
    use std::sync::Arc;
    use tinycnn_cuda::net::{CudaSequential, GpuDataset, Layer, Optimizer as CudaOptimizer};
    use tinycnn_cuda::CudaDevice;
    use tinycnn_kernels::{AdamConfig, Conv2dParams, Pool2dParams, SgdConfig};

    fn layers(model: ModelName) -> Vec<Layer> {
        match model {
            ModelName::Lenet => tinycnn_cuda::net::lenet(),
            ModelName::LenetRelu => vec![
                Layer::Conv2d {
                    params: Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
                    bias: true,
                },
                Layer::ReLU,
                Layer::MaxPool2d(Pool2dParams::new(2)),
                Layer::Conv2d {
                    params: Conv2dParams::new(6, 16, (5, 5)),
                    bias: true,
                },
                Layer::ReLU,
                Layer::MaxPool2d(Pool2dParams::new(2)),
                Layer::Flatten,
                Layer::Linear {
                    in_features: 16 * 5 * 5,
                    out_features: 120,
                    bias: true,
                },
                Layer::ReLU,
                Layer::Linear {
                    in_features: 120,
                    out_features: 84,
                    bias: true,
                },
                Layer::ReLU,
                Layer::Linear {
                    in_features: 84,
                    out_features: 10,
                    bias: true,
                },
            ],
        }
    }

    fn cu<T>(r: tinycnn_cuda::Result<T>) -> Result<T> {
        r.map_err(|e| crate::cli_err!("cuda: {e}"))
    }

    pub struct CudaEngine {
        // Keeps the context alive as long as the network.
        dev: Arc<CudaDevice>,
        net: CudaSequential,
        /// `None` for an inference-only engine.
        optimizer: Option<CudaOptimizer>,
        batch_size: usize,
        /// Training and test sets, once [`Engine::upload_data`] has run.
        data: Option<(GpuDataset, GpuDataset)>,
    }

    fn open_device() -> Result<Arc<CudaDevice>> {
        CudaDevice::new(0).map_err(|e| {
            crate::cli_err!("--device cuda: no usable NVIDIA GPU ({e}); use --device cpu")
        })
    }

    pub fn create(config: &RunConfig, init: &[NamedTensor]) -> Result<Box<dyn Engine>> {
        let dev = open_device()?;
        let mut net = cu(CudaSequential::new(
            &dev,
            layers(config.model),
            [1, 28, 28],
            config.batch_size,
        ))?;
        let state: Vec<_> = init
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone(), t.data.clone()))
            .collect();
        cu(net.import_state_dict(&state))?;
        let optimizer = match config.optimizer {
            OptimizerName::Sgd => CudaOptimizer::Sgd(SgdConfig::new(config.lr)),
            OptimizerName::Adam => CudaOptimizer::Adam(AdamConfig::new(config.lr)),
        };
        Ok(Box::new(CudaEngine {
            dev,
            net,
            optimizer: Some(optimizer),
            batch_size: config.batch_size,
            data: None,
        }))
    }

    /// Parameters start at zero; the caller loads a weight file.
    pub fn create_for_inference(model: ModelName) -> Result<Box<dyn Engine>> {
        let dev = open_device()?;
        let net = cu(CudaSequential::new(
            &dev,
            layers(model),
            [1, 28, 28],
            INFERENCE_BATCH,
        ))?;
        Ok(Box::new(CudaEngine {
            dev,
            net,
            optimizer: None,
            batch_size: INFERENCE_BATCH,
            data: None,
        }))
    }

    impl CudaEngine {
        fn optimizer(&self) -> Result<CudaOptimizer> {
            self.optimizer
                .ok_or_else(|| crate::cli_err!("this network was loaded for inference only"))
        }
    }

    fn upload(dev: &CudaDevice, split: &Split, what: &str) -> Result<GpuDataset> {
        let labels: Vec<u32> = split.labels.iter().map(|&l| l as u32).collect();
        GpuDataset::upload(dev, &split.images, &labels, split.sample_shape(), 10)
            .map_err(|e| crate::cli_err!("cuda: cannot upload the {what} set: {e}"))
    }

    impl Engine for CudaEngine {
        fn device_name(&self) -> &'static str {
            "cuda"
        }

        fn train_step(
            &mut self,
            images: &[f32],
            _shape: [usize; 4],
            labels: &[u32],
        ) -> Result<Step> {
            let opt = self.optimizer()?;
            let (loss, correct) = cu(self.net.train_step_counted(images, labels, &opt))?;
            Ok(Step {
                loss,
                correct,
                examples: labels.len(),
            })
        }

        fn logits(&mut self, images: &[f32], _shape: [usize; 4]) -> Result<Vec<f32>> {
            // The buffers hold at most `max_batch` images per pass.
            let per_pass = self.net.max_batch() * 28 * 28;
            let mut out = Vec::with_capacity(images.len() / (28 * 28) * self.net.classes());
            for part in images.chunks(per_pass) {
                out.extend(cu(self.net.forward(part))?);
            }
            Ok(out)
        }

        fn params(&self) -> Result<Vec<NamedTensor>> {
            Ok(cu(self.net.export_state_dict())?
                .into_iter()
                .map(|(name, shape, data)| NamedTensor { name, shape, data })
                .collect())
        }

        fn load_params(&mut self, params: &[NamedTensor]) -> Result<()> {
            check_params(&self.net.param_specs(), params)?;
            let state: Vec<_> = params
                .iter()
                .map(|t| (t.name.clone(), t.shape.clone(), t.data.clone()))
                .collect();
            cu(self.net.import_state_dict(&state))
        }

        fn optimizer_state(&self) -> Result<OptimizerState> {
            self.optimizer()?;
            optimizer_state_from_cuda(
                &self.net.param_specs(),
                &cu(self.net.export_optimizer_state())?,
            )
        }

        fn load_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
            let converted = optimizer_state_to_cuda(&self.net.param_specs(), state)?;
            let wants_adam = matches!(self.optimizer()?, CudaOptimizer::Adam(_));
            let has_adam = converted.adam_steps > 0;
            let has_momentum = converted
                .buffers
                .iter()
                .any(|(n, _, _)| n.ends_with(".momentum_buffer"));
            if (has_adam && !wants_adam) || (has_momentum && wants_adam) {
                return Err(crate::cli_err!(
                    "the checkpoint's optimizer state is not {}'s",
                    if wants_adam { "adam" } else { "sgd" }
                ));
            }
            cu(self.net.import_optimizer_state(&converted))
                .map_err(|e| crate::cli_err!("the checkpoint's optimizer state does not fit: {e}"))
        }

        fn upload_data(&mut self, train: &Split, test: &Split) -> Result<bool> {
            self.data = Some((
                upload(&self.dev, train, "training")?,
                upload(&self.dev, test, "test")?,
            ));
            Ok(true)
        }

        fn train_resident(&mut self, order: &[u32]) -> Result<Vec<Step>> {
            let opt = self.optimizer()?;
            let (train, _) = self
                .data
                .as_ref()
                .ok_or_else(|| crate::cli_err!("cuda: no data set uploaded"))?;
            let stats = cu(self.net.train_batches(train, order, self.batch_size, &opt))?;
            Ok(stats
                .into_iter()
                .map(|b| Step {
                    loss: b.loss,
                    correct: b.correct,
                    examples: b.examples,
                })
                .collect())
        }

        fn evaluate_resident(&mut self) -> Result<f64> {
            let (_, test) = self
                .data
                .as_ref()
                .ok_or_else(|| crate::cli_err!("cuda: no data set uploaded"))?;
            let stats = cu(self.net.evaluate(test, self.batch_size))?;
            // The executor reports the mean of 0/1 hits in f32; round back to a count so the
            // figure equals d2l's correct / total.
            let n = stats.examples as f64;
            Ok((stats.accuracy as f64 * n).round() / n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{load_checkpoint, save_checkpoint, Checkpoint, History};
    use tinycnn_cuda::net::OptimizerState as CudaState;

    fn specs() -> Vec<(String, Vec<usize>)> {
        vec![
            ("0.weight".into(), vec![2, 1]),
            ("0.bias".into(), vec![2]),
            ("3.weight".into(), vec![1, 2]),
        ]
    }

    fn cuda_adam_state() -> CudaState {
        CudaState {
            adam_steps: 7,
            buffers: vec![
                ("0.weight.exp_avg".into(), vec![2, 1], vec![0.5, -1.0]),
                ("0.weight.exp_avg_sq".into(), vec![2, 1], vec![0.25, 1.0]),
                ("0.bias.exp_avg".into(), vec![2], vec![0.125, 2.0]),
                ("0.bias.exp_avg_sq".into(), vec![2], vec![4.0, 8.0]),
                ("3.weight.exp_avg".into(), vec![1, 2], vec![-3.0, 3.0]),
                ("3.weight.exp_avg_sq".into(), vec![1, 2], vec![9.0, 9.5]),
            ],
        }
    }

    fn tensor(name: &str, shape: &[usize], data: &[f32]) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn cuda_adam_state_takes_the_cpu_optimizers_names() {
        let cpu = optimizer_state_from_cuda(&specs(), &cuda_adam_state()).unwrap();
        assert!(cpu.scalars.is_empty());
        assert_eq!(
            cpu.tensors,
            vec![
                tensor("state.0.step", &[], &[7.0]),
                tensor("state.0.exp_avg", &[2, 1], &[0.5, -1.0]),
                tensor("state.0.exp_avg_sq", &[2, 1], &[0.25, 1.0]),
                tensor("state.1.step", &[], &[7.0]),
                tensor("state.1.exp_avg", &[2], &[0.125, 2.0]),
                tensor("state.1.exp_avg_sq", &[2], &[4.0, 8.0]),
                tensor("state.2.step", &[], &[7.0]),
                tensor("state.2.exp_avg", &[1, 2], &[-3.0, 3.0]),
                tensor("state.2.exp_avg_sq", &[1, 2], &[9.0, 9.5]),
            ]
        );
        assert_eq!(
            optimizer_state_to_cuda(&specs(), &cpu).unwrap(),
            cuda_adam_state()
        );
        // Momentum buffers and the empty state (plain SGD, or before the first step).
        let sgd = CudaState {
            adam_steps: 0,
            buffers: vec![("0.bias.momentum_buffer".into(), vec![2], vec![1.0, 2.0])],
        };
        let cpu = optimizer_state_from_cuda(&specs(), &sgd).unwrap();
        assert_eq!(
            cpu.tensors,
            vec![tensor("state.1.momentum_buffer", &[2], &[1.0, 2.0])]
        );
        assert_eq!(optimizer_state_to_cuda(&specs(), &cpu).unwrap(), sgd);
        let empty = OptimizerState::default();
        assert_eq!(
            optimizer_state_from_cuda(&specs(), &CudaState::default()).unwrap(),
            empty
        );
        assert_eq!(
            optimizer_state_to_cuda(&specs(), &empty).unwrap(),
            CudaState::default()
        );
    }

    /// The CPU `Adam`'s own state goes to the cuda form and back unchanged, and a CPU run
    /// resumed from the round-tripped state continues bit for bit.
    #[test]
    fn cpu_adam_state_survives_the_cuda_form_and_resumes_exactly() {
        let config = RunConfig {
            model: ModelName::LenetRelu,
            optimizer: OptimizerName::Adam,
            lr: 0.01,
            batch_size: 4,
            seed: 3,
        };
        let x: Vec<f32> = (0..4 * 784)
            .map(|i| ((i * 37) % 101) as f32 / 101.0)
            .collect();
        let y = [3u32, 1, 4, 1];
        let mut a = create(DeviceName::Cpu, &config).unwrap();
        for _ in 0..3 {
            a.train_step(&x, [4, 1, 28, 28], &y).unwrap();
        }
        let specs: Vec<(String, Vec<usize>)> = a
            .params()
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.shape))
            .collect();
        assert_eq!(specs.len(), 10);
        let cpu_state = a.optimizer_state().unwrap();
        let cuda = optimizer_state_to_cuda(&specs, &cpu_state).unwrap();
        assert_eq!(cuda.adam_steps, 3);
        assert_eq!(cuda.buffers.len(), 20);
        assert_eq!(cuda.buffers[0].0, "0.weight.exp_avg");
        assert_eq!(cuda.buffers[0].1, vec![6, 1, 5, 5]);
        assert_eq!(cuda.buffers[19].0, "11.bias.exp_avg_sq");
        let back = optimizer_state_from_cuda(&specs, &cuda).unwrap();
        let sorted = |s: &OptimizerState| {
            let mut t = s.tensors.clone();
            t.sort_by(|p, q| p.name.cmp(&q.name));
            t
        };
        assert_eq!(sorted(&back), sorted(&cpu_state));

        let mut b = create(DeviceName::Cpu, &config).unwrap();
        b.load_params(&a.params().unwrap()).unwrap();
        b.load_optimizer_state(&back).unwrap();
        for _ in 0..2 {
            let sa = a.train_step(&x, [4, 1, 28, 28], &y).unwrap();
            let sb = b.train_step(&x, [4, 1, 28, 28], &y).unwrap();
            assert_eq!(sa.loss.to_bits(), sb.loss.to_bits());
        }
        assert_eq!(a.params().unwrap(), b.params().unwrap());
    }

    /// A cuda Adam state written into a checkpoint file reads back to the same cuda state.
    #[test]
    fn cuda_state_round_trips_through_a_checkpoint_file() {
        let dir = std::env::temp_dir().join(format!("tinycnn-cuda-ck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.ckpt.safetensors");
        let params: Vec<NamedTensor> = specs()
            .into_iter()
            .map(|(name, shape)| NamedTensor {
                data: vec![0.5; shape.iter().product()],
                name,
                shape,
            })
            .collect();
        let ck = Checkpoint {
            config: RunConfig {
                model: ModelName::Lenet,
                optimizer: OptimizerName::Adam,
                lr: 0.001,
                batch_size: 256,
                seed: 0,
            },
            epochs_done: 1,
            params,
            optimizer: optimizer_state_from_cuda(&specs(), &cuda_adam_state()).unwrap(),
            history: History::default(),
        };
        save_checkpoint(&path, &ck).unwrap();
        let read = load_checkpoint(&path).unwrap();
        assert_eq!(
            optimizer_state_to_cuda(&specs(), &read.optimizer).unwrap(),
            cuda_adam_state()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Inference on cuda gives the CPU's class scores, also past one pass of
    /// [`INFERENCE_BATCH`] images. Without a GPU: a clear error, and the rest is skipped.
    #[test]
    fn cuda_inference_matches_the_cpu() {
        let mut gpu = match create_for_inference(DeviceName::Cuda, ModelName::Lenet) {
            Ok(e) => e,
            Err(e) => {
                assert!(e.0.contains("no usable NVIDIA GPU"), "{e}");
                assert!(e.0.contains("--device cpu"), "{e}");
                eprintln!("skipping: no CUDA GPU for cuda inference ({e})");
                return;
            }
        };
        let config = RunConfig {
            model: ModelName::Lenet,
            optimizer: OptimizerName::Sgd,
            lr: 0.9,
            batch_size: 256,
            seed: 4,
        };
        let mut cpu = create(DeviceName::Cpu, &config).unwrap();
        gpu.load_params(&cpu.params().unwrap()).unwrap();
        let n = INFERENCE_BATCH + 44;
        let x: Vec<f32> = (0..n * 784)
            .map(|i| ((i * 29) % 97) as f32 / 97.0)
            .collect();
        let want = cpu.logits(&x, [n, 1, 28, 28]).unwrap();
        let got = gpu.logits(&x, [n, 1, 28, 28]).unwrap();
        assert_eq!(got.len(), n * 10);
        let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * scale,
                "logit {i}: cuda {g}, cpu {w}"
            );
        }
        let e = gpu.train_step(&x[..784], [1, 1, 28, 28], &[0]).unwrap_err();
        assert!(e.0.contains("inference only"), "{e}");
    }

    #[test]
    fn unusable_optimizer_states_are_refused_with_the_reason() {
        let err = |s: &OptimizerState| optimizer_state_to_cuda(&specs(), s).unwrap_err().0;
        let good = optimizer_state_from_cuda(&specs(), &cuda_adam_state()).unwrap();

        let legacy = OptimizerState {
            tensors: Vec::new(),
            scalars: vec![(LEGACY_CUDA_ADAM_MARKER.into(), 1.0)],
        };
        assert!(err(&legacy).contains("did not save Adam's moments"));
        // The CPU engine refuses it too.
        let config = RunConfig {
            model: ModelName::Lenet,
            optimizer: OptimizerName::Adam,
            lr: 0.001,
            batch_size: 2,
            seed: 0,
        };
        let mut cpu = create(DeviceName::Cpu, &config).unwrap();
        let e = cpu.load_optimizer_state(&legacy).unwrap_err().0;
        assert!(e.contains("did not save Adam's moments"), "{e}");

        let mut steps_differ = good.clone();
        steps_differ.tensors[3].data = vec![6.0];
        assert!(err(&steps_differ).contains("one step count"));

        let mut partial = good.clone();
        partial.tensors.truncate(6); // parameter 2 has no Adam state
        assert!(err(&partial).contains("covers 2 of 3"));

        let mut no_sq = good.clone();
        no_sq.tensors.remove(2);
        assert!(err(&no_sq).contains("must be given together"));

        let mut shape = good.clone();
        shape.tensors[1].shape = vec![1, 2];
        assert!(err(&shape).contains("[2, 1]"));

        let mut past = good.clone();
        past.tensors[0].name = "state.3.step".into();
        assert!(err(&past).contains("state.3.step"));

        let mut junk = good.clone();
        junk.tensors[0].name = "0.weight.exp_avg".into();
        assert!(err(&junk).contains("belongs to no parameter"));

        let mut not_count = good.clone();
        not_count.tensors[0].data = vec![2.5];
        assert!(err(&not_count).contains("not a step count"));

        let mut slot = good;
        slot.tensors[1].name = "state.0.velocity".into();
        assert!(err(&slot).contains("velocity"));

        // A cuda state naming a buffer of no parameter.
        let mut stray = cuda_adam_state();
        stray
            .buffers
            .push(("9.weight.exp_avg".into(), vec![1], vec![0.0]));
        assert!(optimizer_state_from_cuda(&specs(), &stray)
            .unwrap_err()
            .0
            .contains("no parameter"));
    }
}
